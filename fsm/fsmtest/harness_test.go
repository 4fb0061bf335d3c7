package fsmtest

import (
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
