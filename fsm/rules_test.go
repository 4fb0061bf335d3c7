package fsm

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// loadErr loads src as t.yaml and returns its diagnostics as text, ""
// when the table loads.
func loadErr(t *testing.T, src string) string {
	t.Helper()
	_, err := Load("t.yaml", []byte(src))
	if err == nil {
		return ""
	}
	return err.Error()
}

// manyTable is base with n events (E1…En) and n guards (G1…Gn), each
// used by a row of its own.
func manyTable(events, guards int) string {
	var b strings.Builder
	b.WriteString(strings.Replace(base, "  Go: {}\n", "  Go: {}\n"+func() string {
		var e strings.Builder
		for i := 1; i <= events; i++ {
			fmt.Fprintf(&e, "  E%d: {}\n", i)
		}
		return e.String()
	}(), 1))
	for i := 1; i <= events; i++ {
		fmt.Fprintf(&b, "  - {from: A, on: E%d, noop: true}\n", i)
	}
	for i := 1; i <= guards; i++ {
		fmt.Fprintf(&b, "  - {from: B, on: Go, if: [G%d], noop: true}\n", i)
	}
	if guards > 0 {
		b.WriteString("guards:\n")
		for i := 1; i <= guards; i++ {
			fmt.Fprintf(&b, "  G%d: {error: ErrNo}\n", i)
		}
	}
	return b.String()
}

// crowdedCell is base with n more rows for Go in B, none shadowing
// another: each needs its own pair of the 12 guards.
func crowdedCell(n int) string {
	var b strings.Builder
	b.WriteString(base)
	for i := range 12 {
		for j := i + 1; j < 12 && n > 0; j++ {
			fmt.Fprintf(&b, "  - {from: B, on: Go, if: [G%d, G%d], noop: true}\n", i, j)
			n--
		}
	}
	b.WriteString("guards:\n")
	for i := range 12 {
		fmt.Fprintf(&b, "  G%d: {error: ErrNo}\n", i)
	}
	return b.String()
}

// The loader refuses, each with its diagnostic at its place, what
// docs/table.md says it refuses, and accepts what it says is valid.
func TestLoadRulesOfTheSchema(t *testing.T) {
	for _, c := range []struct {
		name, src, want string // want: the diagnostics, "" when the table loads
	}{
		{"an identifier starting with a digit", strings.Replace(base, "  B: {terminal: true}", "  B: {terminal: true}\n  1C: {}", 1),
			"t.yaml:8:3: state 1C is unreachable from the initial state A\n" +
				`t.yaml:8:3: state name "1C" must be a Go identifier`},
		{"a package name with an underscore", strings.Replace(base, "package: p", "package: my_pkg", 1),
			`t.yaml:2:10: package "my_pkg" must be a lower-case Go package name`},
		{"an unhandled policy that is another word than ignore", strings.Replace(base, "unhandled: {refuse: ErrNo}", "unhandled: refuse", 1),
			`t.yaml:4:12: unhandled must be "ignore" or {refuse: ErrSomething}, not "refuse"`},
		{"a refuse row with actions", base + "  - {from: A, on: Go, refuse: ErrNo, do: [Act]}\nactions:\n  Act: {}\n",
			"t.yaml:14:42: a refuse row runs no actions"},
		{"an error named Err alone", strings.Replace(base, "  ErrNo: {}", "  ErrNo: {}\n  Err: {}", 1),
			"t.yaml:12:3: error Err is declared but never used\n" +
				`t.yaml:12:3: error name "Err" must start with "Err" and say more`},
		{"a field an action uses twice", strings.Replace(base, "  Go: {}", "  Go: {payload: {n: int}}", 1) +
			"  - {from: B, on: Go, stay: true, do: [Act]}\nactions:\n  Act: {uses: [n, n]}\n",
			`t.yaml:16:19: Act uses payload field "n" twice`},
		{"a second YAML document", base + "---\n" + base,
			"t.yaml:15:1: a table file holds one YAML document"},
		{"an import without a path", "imports: {x: \"\"}\n" + base,
			"t.yaml:1:11: import x is declared but never used\n" +
				`t.yaml:1:14: import "x" needs a path`},
		{"a guard named as an action", strings.Replace(base, "to: B}", "if: [Same], to: B, do: [Same]}", 1) +
			"guards:\n  Same: {error: ErrNo}\nactions:\n  Same: {}\n",
			"t.yaml:15:3: guard Same has the name of an action: both are methods of one interface"},
		{"a machine named as an event constant", strings.Replace(base, "machine: M", "machine: EventGo", 1),
			"t.yaml:9:3: event Go would be generated as EventGo, which is already machine EventGo (1:10)"},
		{"a table with no state", strings.Replace(base, "states:\n  A: {}\n  B: {terminal: true}\n", "states: {}\n", 1),
			"t.yaml:1:1: the table declares no state\n" +
				`t.yaml:3:10: unknown state "A"` + "\n" +
				`t.yaml:11:12: unknown state "A"` + "\n" +
				`t.yaml:11:27: unknown state "B"`},
		{"a table with no state and a row from \"*\"", strings.Replace(strings.Replace(base, "states:\n  A: {}\n  B: {terminal: true}\n", "states: {}\n", 1),
			"{from: A, on: Go, to: B}", `{from: "*", on: Go, noop: true}`, 1),
			"t.yaml:1:1: the table declares no state\n" + `t.yaml:3:10: unknown state "A"`},
		{"255 events", manyTable(254, 0), ""},
		{"256 events", manyTable(255, 0), "t.yaml:264:3: more than 255 events"},
		{"64 guards", manyTable(0, 64), ""},
		{"65 guards", manyTable(0, 65), "t.yaml:144:3: more than 64 guards"},
		{"64 rows in one cell", crowdedCell(64), ""},
		{"65 rows in one cell", crowdedCell(65), "t.yaml:78:5: more than 64 rows handle Go in B (this one and those after)"},
		{"import paths with an element Windows reserves, before a dot", strings.NewReplacer("Go: {}", "Go: {payload: {v: x.T, w: y.T}}",
			"machine: M", "machine: M\nimports: {x: example.com/nul.txt, y: example.com/con.d/auxiliary}").Replace(base),
			`t.yaml:2:11: import x: "example.com/nul.txt" is not an import path (an element that is a reserved file name on Windows)` + "\n" +
				`t.yaml:2:35: import y: "example.com/con.d/auxiliary" is not an import path (an element that is a reserved file name on Windows)`},
		// Valid tables.
		{"a re-entry into a terminal state", base + "  - {from: B, on: Go, to: B}\n", ""},
		{"two guards reading fields of one name with different types", strings.Replace(base, "  Go: {}", "  Go: {payload: {n: int}}\n  Set: {payload: {n: string}}", 1) +
			"  - {from: B, on: Go, if: [IntOK], noop: true}\n  - {from: B, on: Set, if: [StrOK], noop: true}\n" +
			"guards:\n  IntOK: {error: ErrNo, uses: n}\n  StrOK: {error: ErrNo, uses: n}\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := loadErr(t, c.src); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// A message written as a block scalar (message: |) is its text without
// the line break YAML ends the block with; so is a doc.
func TestBlockScalarsLoseTheirFinalLineBreak(t *testing.T) {
	src := strings.Replace(base, "  ErrNo: {}", "  ErrNo:\n    message: |\n      too late\n    doc: |\n      Comes too late.\n", 1)
	table, err := Load("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if e := table.Errors[0]; e.Message != "too late" || e.Doc != "Comes too late." {
		t.Errorf("message %q, doc %q", e.Message, e.Doc)
	}
}

// An underscore in an error's name does not start a word of the message
// derived from it.
func TestMessageFromNameWithUnderscore(t *testing.T) {
	for name, want := range map[string]string{
		"ErrNot_Ready":    "not_ready",
		"ErrNot_ready":    "not_ready",
		"ErrHTTP_Timeout": "http_timeout",
	} {
		if got := messageFromName(name); got != want {
			t.Errorf("messageFromName(%q) = %q, want %q", name, got, want)
		}
	}
}

// A "*" row shadowed in a state by two earlier rows (each needing a
// subset of its guards) is still a fallback there: the state is dropped
// from its From, and the row is kept for the states where it can be
// taken.
func TestWildcardShadowedByTwoRows(t *testing.T) {
	src := `machine: M
package: p
initial: A
unhandled: ignore
states:
  A: {}
  C: {}
  B: {terminal: true}
events:
  Go: {}
  Step: {}
guards:
  G: {error: ErrNo}
  H: {error: ErrNo}
errors:
  ErrNo: {}
rows:
  - {from: A, on: Step, to: C}
  - {from: A, on: Go, if: [G], to: B}
  - {from: A, on: Go, if: [H], to: B}
  - {from: "*", on: Go, if: [G, H], to: B}
`
	table, err := Load("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if from := table.Rows[3].From; !slices.Equal(from, []string{"C"}) {
		t.Errorf(`the "*" row applies in %v, want [C]`, from)
	}
}

// Where the YAML parser places a position past the end of its line (the
// empty value of a key that ends the file), the column keeps the
// parser's count beyond the line: on a line of ASCII, the parser's
// column.
func TestColumnPastTheEndOfALine(t *testing.T) {
	src := strings.TrimSuffix(strings.Replace(base, "  - {from: A, on: Go, to: B}\n", "", 1), "\n")
	if !strings.HasSuffix(src, "\nrows:") {
		t.Fatalf("the table does not end with rows: %q", src)
	}
	want := "t.yaml:12:7: rows must be a list of rows, not empty"
	if got := loadErr(t, src); !strings.Contains(got, want) {
		t.Errorf("got\n%s\nwant among them\n%s", got, want)
	}
}

// An alias (*name) is not mistaken for a bare * where the file does not
// parse: the parser's own complaint is reported, and no hint about "*".
func TestAliasIsNotABareStar(t *testing.T) {
	src := strings.Replace(base, "  A: {}", "  &a A: {}", 1) +
		"  - {from: *a, on: Go, to: B}\n" +
		"  - {from: A, on: Go, to: B\n"
	got := loadErr(t, src)
	if got == "" || strings.Contains(got, "unquoted *") || strings.Contains(got, "t.yaml:14:") {
		t.Errorf("got\n%s\nwant the parser's complaint about line 15 only", got)
	}
}

// A diagnostic stays valid UTF-8: an invalid byte in its message or in
// the file's name is written as Go writes it in a quoted string.
func TestDiagnosticsAreValidUTF8(t *testing.T) {
	d := Diagnostic{Pos: Pos{File: "t\xff.yaml", Line: 1, Col: 2}, Msg: "name \"a\xffb\" is odd"}
	got := d.Error()
	if !utf8.ValidString(got) {
		t.Errorf("%q is not valid UTF-8", got)
	}
	if want := `"t\xff.yaml":1:2: `; !strings.HasPrefix(got, want) {
		t.Errorf("%q does not start with %q", got, want)
	}
	_, err := Load("t\xff.yaml", []byte(strings.Replace(base, "initial: A", "initial: Z", 1)))
	if err == nil || !utf8.ValidString(err.Error()) {
		t.Errorf("Load: %q", err)
	}
}

// Cells finds the rows of a cell as Group does, also for a row whose
// From names the state twice (a Table built by hand): once.
func TestCellsOfARowNamingAStateTwice(t *testing.T) {
	table := &Table{
		States: []State{{Name: "A"}, {Name: "B", Terminal: true}},
		Events: []Event{{Name: "Go"}},
		Rows:   []Row{{From: []string{"A", "B", "A"}, On: "Go", Kind: Noop}},
	}
	if got, want := table.Cells().Group("A", "Go"), table.Group("A", "Go"); !slices.Equal(got, want) || len(want) != 1 {
		t.Errorf("Cells().Group = %v, Group = %v, want [0]", got, want)
	}
}

// WithoutPositions copies the fields guards and actions use: changing
// the copy leaves the table as it was.
func TestWithoutPositionsCopiesUses(t *testing.T) {
	table := &Table{
		Guards:  []Guard{{Name: "G", Uses: []string{"a"}}},
		Actions: []Action{{Name: "A", Uses: []string{"b"}}},
	}
	c := table.WithoutPositions()
	c.Guards[0].Uses[0], c.Actions[0].Uses[0] = "changed", "changed"
	if table.Guards[0].Uses[0] != "a" || table.Actions[0].Uses[0] != "b" {
		t.Errorf("the copy shares its uses with the table: %v, %v", table.Guards[0].Uses, table.Actions[0].Uses)
	}
}
