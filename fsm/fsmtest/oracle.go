// Package fsmtest is test support for generated machines: the Harness
// that generated tests run their cases on, through a Fake of the
// machine's handlers; an Oracle built on github.com/looplab/fsm from a
// parsed table, which the harness's random walk fires the same events at
// as the machine and compares after every step; and the payloads tests
// fire (Value) and check the guards and actions get (Same).
//
// It is imported by tests only; looplab/fsm never runs in production.
package fsmtest

import (
	"context"
	"errors"
	"fmt"
	"slices"

	looplab "github.com/looplab/fsm"

	"github.com/tablefsm/tablefsm/fsm"
)

// Oracle tracks a machine's state with looplab/fsm. Each row of the table
// is one looplab event ("row:<index>") from the row's states to its
// target (or back to the same state for rows that do not move); a
// before-event callback evaluates the row's guards and actions and cancels
// the looplab event when one fails.
type Oracle struct {
	table *fsm.Table
	fsm   *looplab.FSM

	// Set for the duration of one Fire.
	holds, fails func(string) bool
	called       []string
}

// Result is what the oracle says one event does.
type Result struct {
	To     string   // the state afterwards
	Row    int      // the row taken, -1 if none
	Err    string   // the declared error of a refusal, "" if none
	Guard  string   // the guard whose failure refused the event
	Action string   // the action that failed, "" if none
	Called []string // guards and actions called, in order
}

type guardFailed struct{ guard string }

func (g guardFailed) Error() string { return "guard " + g.guard + " failed" }

type actionFailed struct{ action string }

func (a actionFailed) Error() string { return "action " + a.action + " failed" }

func rowEvent(i int) string { return fmt.Sprintf("row:%d", i) }

// NewOracle builds an oracle in the table's initial state.
func NewOracle(t *fsm.Table) (*Oracle, error) {
	o := &Oracle{table: t}
	var events looplab.Events
	callbacks := looplab.Callbacks{}
	for i, r := range t.Rows {
		for _, from := range r.From {
			to := from
			if r.Kind == fsm.Move {
				to = r.To
			}
			events = append(events, looplab.EventDesc{Name: rowEvent(i), Src: []string{from}, Dst: to})
		}
		callbacks["before_"+rowEvent(i)] = func(_ context.Context, e *looplab.Event) {
			for _, g := range r.If {
				o.called = append(o.called, g)
				if !o.holds(g) {
					e.Cancel(guardFailed{g})
					return
				}
			}
			if r.Kind != fsm.Move && r.Kind != fsm.Stay {
				return
			}
			for _, a := range r.Do {
				o.called = append(o.called, a)
				if o.fails(a) {
					e.Cancel(actionFailed{a})
					return
				}
			}
		}
	}
	if _, ok := t.State(t.Initial); !ok {
		return nil, fmt.Errorf("fsmtest: initial state %q is not a state", t.Initial)
	}
	o.fsm = looplab.NewFSM(t.Initial, events, callbacks)
	return o, nil
}

// State returns the oracle's current state.
func (o *Oracle) State() string { return o.fsm.Current() }

// Fire applies event given which guards hold and which actions fail, and
// returns what the table says happens.
func (o *Oracle) Fire(event string, holds, fails func(string) bool) Result {
	o.holds, o.fails, o.called = holds, fails, nil
	from := o.State()
	res := Result{Row: -1, To: from}
	applied := false
	firstFailed := ""
	for i, r := range o.table.Rows {
		if r.On != event {
			continue
		}
		err := o.fsm.Event(context.Background(), rowEvent(i))
		var invalid looplab.InvalidEventError
		var canceled looplab.CanceledError
		var same looplab.NoTransitionError
		switch {
		case errors.As(err, &invalid):
			continue // the row does not apply in this state
		case errors.As(err, &canceled):
			applied = true
			var g guardFailed
			var a actionFailed
			switch {
			case errors.As(canceled.Err, &g):
				if firstFailed == "" {
					firstFailed = g.guard
				}
				continue
			case errors.As(canceled.Err, &a):
				res.Row, res.Action = i, a.action
				res.Called = o.called
				return res
			}
			panic(fmt.Sprintf("fsmtest: unexpected cancellation %v", canceled.Err))
		case err == nil, errors.As(err, &same):
			res.Row, res.To, res.Called = i, o.State(), o.called
			if r.Kind == fsm.Refuse {
				res.Err = r.Refuse
			}
			return res
		default:
			panic(fmt.Sprintf("fsmtest: looplab: %v", err))
		}
	}
	res.Called = o.called
	if applied {
		res.Guard = firstFailed
		i := slices.IndexFunc(o.table.Guards, func(g fsm.Guard) bool { return g.Name == firstFailed })
		res.Err = o.table.Guards[i].Error
		return res
	}
	if p := o.table.PolicyFor(from); p.Kind == fsm.PolicyRefuse {
		res.Err = p.Error
	}
	return res
}
