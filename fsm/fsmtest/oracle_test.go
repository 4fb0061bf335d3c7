package fsmtest

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"pgregory.net/rapid"

	"github.com/tablefsm/tablefsm/fsm"
)

// Harness.StateFromAnyGoroutine starts a goroutine, which it ends before
// it returns (TestStateFromAnyGoroutineEndsItsReader).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOracleAgreesWithEvaluate walks the oracle and the reference
// semantics of fsm.Table.Evaluate side by side: two implementations of one
// contract, one on looplab/fsm.
func TestOracleAgreesWithEvaluate(t *testing.T) {
	for _, file := range []string{"../testdata/semantics.yaml", "../../gen/testdata/job/job.yaml", "../../transitions.yaml"} {
		table, err := fsm.LoadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(table.Machine, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				o, err := NewOracle(table)
				if err != nil {
					rt.Fatal(err)
				}
				state := table.Initial
				for i := rapid.IntRange(1, 40).Draw(rt, "steps"); i > 0; i-- {
					ev := rapid.SampledFrom(table.Events).Draw(rt, "event").Name
					holds := map[string]bool{}
					for _, g := range table.Guards {
						holds[g.Name] = rapid.Bool().Draw(rt, g.Name)
					}
					failing := ""
					if len(table.Actions) > 0 && rapid.IntRange(0, 3).Draw(rt, "fail?") == 0 {
						failing = rapid.SampledFrom(table.Actions).Draw(rt, "failing").Name
					}
					isHeld := func(g string) bool { return holds[g] }
					fails := func(a string) bool { return a == failing }
					want := table.Evaluate(state, ev, isHeld, fails)
					got := o.Fire(ev, isHeld, fails)
					wantRes := Result{To: want.To, Row: want.Row, Err: want.Err, Guard: want.Guard, Action: want.Action, Called: want.Called}
					if diff := cmp.Diff(wantRes, got); diff != "" {
						rt.Fatalf("%s in %s (-Evaluate +oracle):\n%s", ev, state, diff)
					}
					state = want.To
				}
			})
		})
	}
}

func TestNewOracleRejectsUnknownInitial(t *testing.T) {
	if _, err := NewOracle(&fsm.Table{Initial: "Nowhere"}); err == nil {
		t.Fatal("no error")
	}
}
