package fsm

import "errors"

// Refusal describes why a generated machine refused an event: a refusing
// row, a failed guard, or the unhandled policy. The error the machine
// returns (see Refused) unwraps to the declared sentinel, so callers match
// it with errors.Is, and errors.As gives a *Refusal: a copy of its own,
// which the caller may change without changing any later refusal.
//
// Generated code keeps its refusals in static tables: refusing allocates
// nothing.
type Refusal struct {
	Machine string // e.g. "Lifecycle"
	State   string // the state the event was refused in
	Event   string
	Guard   string // the failed guard; "" when a row or the policy refused
	Err     error  // the declared sentinel
}

func (r *Refusal) Error() string {
	msg := r.Machine + ": " + r.Event + " refused in " + r.State
	if r.Guard != "" {
		msg += " (guard " + r.Guard + " failed)"
	}
	return msg + ": " + r.Err.Error()
}

// Unwrap returns the declared sentinel.
func (r *Refusal) Unwrap() error { return r.Err }

// Refused returns the error a machine refuses an event with, r being an
// entry of its static table of refusals. Making it allocates nothing.
// Its text is r's; it unwraps to r's sentinel; errors.As gives a
// *Refusal that is a copy of r: r itself stays out of the callers' reach.
func Refused(r *Refusal) error { return refused{r} }

// refused is a refusal as an error. It holds a single pointer, so that
// making an error of it does not allocate.
type refused struct{ r *Refusal }

func (e refused) Error() string { return e.r.Error() }

func (e refused) Unwrap() error { return e.r.Err }

// As sets target, a **Refusal, to a copy of the refusal.
func (e refused) As(target any) bool {
	if t, ok := target.(**Refusal); ok {
		c := *e.r
		*t = &c
		return true
	}
	return false
}

// Step is what a machine did with one event: reported to an Observer.
type Step struct {
	Machine string
	From    string // the state the event arrived in
	Event   string
	To      string // the state afterwards; From when it stayed or failed
	Row     int    // the index of the taken row in the table, -1 if none
	// Err is nil when the event was accepted, the refusal (an error that
	// errors.As makes a *Refusal of) when it was refused, or the error of
	// the action that failed.
	Err error
}

// Observer sees every step of a machine, after the step is complete and
// while the caller still serializes the machine. It must not fire events
// on the same machine. Observe is called on the machine's goroutine: keep
// it cheap.
type Observer interface {
	Observe(Step)
}

// ObserverFunc adapts a function to an Observer.
type ObserverFunc func(Step)

// Observe calls f(s).
func (f ObserverFunc) Observe(s Step) { f(s) }

// ErrNoMachine is returned by the event methods of a generated machine
// that was not made by its constructor (its zero value), or that its
// constructor was given nil handlers.
var ErrNoMachine = errors.New("fsm: machine not created by its constructor")
