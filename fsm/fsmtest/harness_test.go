package fsmtest

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/tablefsm/tablefsm/fsm"
)

// lamp is a hand-written machine of two states, Off (1) and On (2), that
// Toggle (1) swaps: enough for the harness checks that need no table.
type lamp struct{ state atomic.Uint32 }

type (
	lampState uint8
	lampEvent uint8
)

func (s lampState) String() string { return [...]string{"State(0)", "Off", "On"}[s] }
func (s lampState) Terminal() bool { return false }
func (e lampEvent) String() string { return "Toggle" }

func (l *lamp) State() lampState         { return lampState(l.state.Load()) }
func (l *lamp) SetObserver(fsm.Observer) {}

// TestStateFromAnyGoroutineEndsItsReader: on a machine that publishes its
// state atomically the check passes, and the goroutine it starts has
// ended when it returns (TestMain checks for leaks).
func TestStateFromAnyGoroutineEndsItsReader(t *testing.T) {
	h := &Harness[*lamp, lampState, lampEvent]{
		New: func(*Fake) *lamp {
			l := &lamp{}
			l.state.Store(1)
			return l
		},
		Fire: func(l *lamp, _ lampEvent, _ int) error {
			l.state.Store(3 - l.state.Load())
			return nil
		},
		Paths: map[lampState][]Step[lampEvent]{1: {}, 2: {{Event: 1}}},
	}
	h.StateFromAnyGoroutine(t)
}

// wide is a machine type with as many states and events as a table may
// have (fsm.MaxStates, fsm.MaxEvents): S1…S255, the last one terminal,
// and E1…E255, named as generated code names them.
type (
	wideState   uint8
	wideEvent   uint8
	wideMachine struct{}
)

func (s wideState) String() string {
	if s == 0 {
		return "State(0)"
	}
	return "S" + strconv.Itoa(int(s))
}
func (s wideState) Terminal() bool { return s == fsm.MaxStates }
func (e wideEvent) String() string {
	if e == 0 {
		return "Event(0)"
	}
	return "E" + strconv.Itoa(int(e))
}
func (wideMachine) State() wideState         { return 1 }
func (wideMachine) SetObserver(fsm.Observer) {}

// TestStringsOfTheLargestTable: with every value of the enum types naming
// a state or an event, there is no value past the last one to check.
func TestStringsOfTheLargestTable(t *testing.T) {
	table := &fsm.Table{}
	for i := 1; i <= fsm.MaxStates; i++ {
		table.States = append(table.States, fsm.State{Name: "S" + strconv.Itoa(i), Terminal: i == fsm.MaxStates})
	}
	for i := 1; i <= fsm.MaxEvents; i++ {
		table.Events = append(table.Events, fsm.Event{Name: "E" + strconv.Itoa(i)})
	}
	h := &Harness[wideMachine, wideState, wideEvent]{Table: table}
	h.Strings(t)
}
