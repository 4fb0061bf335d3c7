package fsm

import (
	"fmt"
	"go/token"
	"testing"
)

// fieldTable is a valid table but for its one event's one payload field,
// named field (at line 9, column 18).
func fieldTable(field string) string {
	return `machine: M
package: p
initial: A
unhandled: ignore
states:
  A: {}
  B: {terminal: true}
events:
  Go: {payload: {` + field + `: int}}
rows:
  - {from: A, on: Go, to: B}
`
}

// Every Go keyword is refused as a payload field name (a parameter of
// the generated event method): the list is checked against go/token's,
// not against a copy of it.
func TestEveryGoKeywordRefusedAsAFieldName(t *testing.T) {
	n := 0
	for tok := token.Token(0); tok < 1000; tok++ {
		if !tok.IsKeyword() {
			continue
		}
		n++
		kw := tok.String()
		want := fmt.Sprintf("t.yaml:9:18: payload field %q must not be a Go keyword", kw)
		if got := loadErr(t, fieldTable(kw)); got != want {
			t.Errorf("field %s: got\n%s\nwant\n%s", kw, got, want)
		}
	}
	if n != 25 {
		t.Fatalf("go/token knows %d keywords, want 25", n)
	}
}

// The names the generated event methods use for themselves are refused
// as payload field names: a parameter of that name would hide the
// receiver (m), the state switched on (from), the refusal being built
// (refused) or the fsm package, and the generated code would not compile.
func TestGeneratedLocalsRefusedAsFieldNames(t *testing.T) {
	for _, name := range []string{"m", "from", "refused", "fsm"} {
		want := fmt.Sprintf("t.yaml:9:18: payload field %q must not shadow a Go predeclared name or a name the generated methods use (m, from, refused, fsm)", name)
		if got := loadErr(t, fieldTable(name)); got != want {
			t.Errorf("field %s: got\n%s\nwant\n%s", name, got, want)
		}
	}
}

// An event is a method of the generated machine: one named after a
// method the machine has already (State, SetObserver) is refused.
func TestEventsNamedAfterMachineMethodsRefused(t *testing.T) {
	for _, name := range []string{"State", "SetObserver"} {
		src := `machine: M
package: p
initial: A
unhandled: ignore
states:
  A: {}
  B: {terminal: true}
events:
  ` + name + `: {}
rows:
  - {from: A, on: ` + name + `, to: B}
`
		want := fmt.Sprintf("t.yaml:9:3: event name %q collides with a method of the generated machine", name)
		if got := loadErr(t, src); got != want {
			t.Errorf("event %s: got\n%s\nwant\n%s", name, got, want)
		}
	}
}
