package bench

import (
	"context"
	"testing"

	looplab "github.com/looplab/fsm"
	"github.com/qmuntal/stateless"

	"github.com/tablefsm/tablefsm/bench/turnstile"
)

// The FSM benchmarks fire the same guarded transitions through three
// implementations: Locked --Coin[EnoughMoney]/Collect--> Unlocked
// --Push[ArmFree]/Count--> Locked. The work the guards and actions do is
// the same trivial Meter in each. One op is a Coin and a Push;
// ns/transition is the figure to compare.

func BenchmarkTransition(b *testing.B) {
	b.Run("tablefsm", func(b *testing.B) {
		meter := &turnstile.Meter{Fare: 50}
		m := turnstile.NewTurnstile(meter)
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Coin(50); err != nil {
				b.Fatal(err)
			}
			if err := m.Push(); err != nil {
				b.Fatal(err)
			}
		}
		reportPerTransition(b)
	})

	b.Run("looplab", func(b *testing.B) {
		meter := &turnstile.Meter{Fare: 50}
		f := looplabTurnstile(meter)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if err := f.Event(ctx, "Coin", 50); err != nil {
				b.Fatal(err)
			}
			if err := f.Event(ctx, "Push"); err != nil {
				b.Fatal(err)
			}
		}
		reportPerTransition(b)
	})

	b.Run("stateless", func(b *testing.B) {
		meter := &turnstile.Meter{Fare: 50}
		sm := statelessTurnstile(meter)
		b.ReportAllocs()
		for b.Loop() {
			if err := sm.Fire("Coin", 50); err != nil {
				b.Fatal(err)
			}
			if err := sm.Fire("Push"); err != nil {
				b.Fatal(err)
			}
		}
		reportPerTransition(b)
	})
}

// reportPerTransition reports the time and allocations of one transition:
// an op of BenchmarkTransition is two of them (Coin, then Push), so that the
// machine is back where it started and the loop itself weighs half as much
// (at a few nanoseconds per transition, the loop is a tenth of the time).
func reportPerTransition(b *testing.B) {
	if b.N == 0 {
		return
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/transition")
}

// looplabTurnstile is the turnstile in looplab/fsm: guards cancel the
// event in a before-event callback, actions run in it.
func looplabTurnstile(meter *turnstile.Meter) *looplab.FSM {
	return looplab.NewFSM("Locked",
		looplab.Events{
			{Name: "Coin", Src: []string{"Locked"}, Dst: "Unlocked"},
			{Name: "Push", Src: []string{"Unlocked"}, Dst: "Locked"},
			{Name: "Smash", Src: []string{"Locked", "Unlocked"}, Dst: "Broken"},
		},
		looplab.Callbacks{
			"before_Coin": func(_ context.Context, e *looplab.Event) {
				cents := e.Args[0].(int)
				if !meter.EnoughMoney(cents) {
					e.Cancel(turnstile.ErrTooCheap)
					return
				}
				if err := meter.Collect(cents); err != nil {
					e.Cancel(err)
				}
			},
			"before_Push": func(_ context.Context, e *looplab.Event) {
				if !meter.ArmFree() {
					e.Cancel(turnstile.ErrJammed)
					return
				}
				if err := meter.Count(); err != nil {
					e.Cancel(err)
				}
			},
		})
}

// statelessTurnstile is the turnstile in qmuntal/stateless: guards are
// PermitIf conditions, actions run on entry from the trigger.
func statelessTurnstile(meter *turnstile.Meter) *stateless.StateMachine {
	sm := stateless.NewStateMachine("Locked")
	sm.Configure("Locked").
		Permit("Coin", "Unlocked", func(_ context.Context, args ...any) bool { return meter.EnoughMoney(args[0].(int)) }).
		Permit("Smash", "Broken").
		OnEntryFrom("Push", func(_ context.Context, _ ...any) error { return meter.Count() })
	sm.Configure("Unlocked").
		Permit("Push", "Locked", func(_ context.Context, _ ...any) bool { return meter.ArmFree() }).
		Permit("Smash", "Broken").
		OnEntryFrom("Coin", func(_ context.Context, args ...any) error { return meter.Collect(args[0].(int)) })
	return sm
}

// TestTurnstilesAgree checks that the three machines the benchmark
// compares do the same thing.
func TestTurnstilesAgree(t *testing.T) {
	ctx := context.Background()
	mt, ml, ms := &turnstile.Meter{Fare: 50}, &turnstile.Meter{Fare: 50}, &turnstile.Meter{Fare: 50}
	m, l, s := turnstile.NewTurnstile(mt), looplabTurnstile(ml), statelessTurnstile(ms)
	steps := []struct {
		event string
		cents int
	}{{"Coin", 10}, {"Coin", 60}, {"Push", 0}, {"Push", 0}, {"Coin", 50}, {"Push", 0}}
	for _, st := range steps {
		var errT, errL, errS error
		if st.event == "Coin" {
			errT, errL, errS = m.Coin(st.cents), l.Event(ctx, "Coin", st.cents), s.Fire("Coin", st.cents)
		} else {
			errT, errL, errS = m.Push(), l.Event(ctx, "Push"), s.Fire("Push")
		}
		if (errT == nil) != (errL == nil) || (errT == nil) != (errS == nil) {
			t.Fatalf("%v: tablefsm %v, looplab %v, stateless %v", st, errT, errL, errS)
		}
		if m.State().String() != l.Current() || l.Current() != s.MustState().(string) {
			t.Fatalf("%v: states %v %v %v", st, m.State(), l.Current(), s.MustState())
		}
	}
	if *mt != *ml || *ml != *ms {
		t.Fatalf("meters differ: %+v %+v %+v", mt, ml, ms)
	}
}
