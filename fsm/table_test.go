package fsm

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// A machine named in capitals only gets its lowerCamel prefix in lower
// case, as does a run of capitals followed by more.
func TestNamesOfAMachineInCapitals(t *testing.T) {
	for machine, lower := range map[string]string{"HTTP": "http", "AB": "ab", "A": "a", "HTTPServer": "httpServer", "Job": "job", "ÉTAT": "état"} {
		if got := (&Table{Machine: machine}).Names().Lower; got != lower {
			t.Errorf("machine %s: Lower %q, want %q", machine, got, lower)
		}
	}
	if got := loadErr(t, replaceOnce(base, "machine: M", "machine: HTTP")); got != "" {
		t.Errorf("machine HTTP: refused:\n%s", got)
	}
}

// Sort orders diagnostics by file first.
func TestDiagnosticsSortedByFileFirst(t *testing.T) {
	l := Diagnostics{
		{Pos{File: "b.yaml", Line: 1, Col: 1}, "x"},
		{Pos{File: "a.yaml", Line: 9, Col: 1}, "x"},
		{Pos{File: "b.yaml", Line: 1, Col: 1}, "x"},
	}
	l.Sort()
	want := "a.yaml:9:1: x\nb.yaml:1:1: x"
	if got := l.Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// WithoutPositions differs from the table in its positions only: an empty
// list (uses: []) stays an empty list, not none.
func TestWithoutPositionsChangesOnlyPositions(t *testing.T) {
	src := replaceOnce(base, "errors:", "guards:\n  G: {error: ErrNo, uses: []}\nactions:\n  Act: {uses: []}\nerrors:") +
		"  - {from: B, on: Go, if: [G], stay: true, do: [Act]}\n"
	table, err := Load("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if table.Guards[0].Uses == nil || table.Actions[0].Uses == nil {
		t.Fatal("uses: [] read as no list")
	}
	if diff := cmp.Diff(table, table.WithoutPositions(), cmpopts.IgnoreTypes(Pos{})); diff != "" {
		t.Errorf("WithoutPositions changed more than positions (-table +copy):\n%s", diff)
	}
}

func replaceOnce(s, old, new string) string {
	if n := strings.Count(s, old); n != 1 {
		panic(fmt.Sprintf("%q occurs %d times", old, n))
	}
	return strings.Replace(s, old, new, 1)
}
