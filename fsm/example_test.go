package fsm_test

import (
	"errors"
	"fmt"

	"github.com/tablefsm/tablefsm/fsm"
)

// ExampleLoad loads a table with two mistakes: every problem is reported
// at once, sorted, with its position.
func ExampleLoad() {
	src := []byte(`machine: Door
package: door
initial: Closed
unhandled: ignore
states:
  Closed: {}
  Open: {}
  Gone: {terminal: true}
events:
  Push: {}
  Remove: {}
  Kick: {}
rows:
  - {from: Closed, on: Push, to: Opened}
  - {from: Open, on: Push, to: Closed}
  - {from: "*", on: Remove, to: Gone}
`)
	_, err := fsm.Load("door.yaml", src)
	fmt.Println(err)

	var diags fsm.Diagnostics
	if errors.As(err, &diags) {
		for _, d := range diags {
			fmt.Printf("line %d, column %d: %s\n", d.Pos.Line, d.Pos.Col, d.Msg)
		}
	}
	// Output:
	// door.yaml:12:3: event Kick is declared but never used
	// door.yaml:14:34: unknown state "Opened" (did you mean "Open"?)
	// line 12, column 3: event Kick is declared but never used
	// line 14, column 34: unknown state "Opened" (did you mean "Open"?)
}

// ExampleTable_Evaluate asks a table what an event does, given which
// guards hold: the reference semantics that generated code is tested
// against, usable by tools.
func ExampleTable_Evaluate() {
	t, err := fsm.Load("lamp.yaml", []byte(`machine: Lamp
package: lamp
initial: Off
unhandled: {refuse: ErrBroken}
states:
  Off: {}
  On: {}
  Broken: {terminal: true}
events:
  Switch: {}
  Drop: {}
guards:
  HasPower: {error: ErrNoPower}
actions:
  Light: {}
errors:
  ErrNoPower: {}
  ErrBroken: {}
rows:
  - {from: Off, on: Switch, if: [HasPower], to: On, do: [Light]}
  - {from: On, on: Switch, to: Off}
  - {from: "*", on: Drop, to: Broken}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, power := range []bool{true, false} {
		out := t.Evaluate("Off", "Switch",
			func(guard string) bool { return power },
			func(action string) bool { return false })
		fmt.Printf("power %v: to %s, refused with %q, calls %v\n", power, out.To, out.Err, out.Called)
	}
	// Output:
	// power true: to On, refused with "", calls [HasPower Light]
	// power false: to Off, refused with "ErrNoPower", calls [HasPower]
}
