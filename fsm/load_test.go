package fsm

import (
	"errors"
	"fmt"
	"go/token"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func mustLoad(t *testing.T, file string) *Table {
	t.Helper()
	table, err := LoadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

func TestLoadKeepsPositionsAndOrder(t *testing.T) {
	table := mustLoad(t, "testdata/semantics.yaml")
	var states []string
	for _, s := range table.States {
		states = append(states, s.Name)
	}
	if diff := cmp.Diff([]string{"Closed", "Open", "Locked", "Broken"}, states); diff != "" {
		t.Errorf("states in source order (-want +got):\n%s", diff)
	}
	if got := table.Rows[1].Pos; got != (Pos{File: "testdata/semantics.yaml", Line: 30, Col: 5}) {
		t.Errorf("row 1 at %v", got)
	}
	if got := table.Rows[6].From; !cmp.Equal(got, []string{"Closed", "Open", "Locked"}) {
		t.Errorf(`"*" expands to %v, want every live state`, got)
	}
	if e, _ := table.Event("Push"); !cmp.Equal(e.Payload, []Field{{Name: "force", Type: "int", Pos: Pos{"testdata/semantics.yaml", 11, 20}}}) {
		t.Errorf("payload %+v", e.Payload)
	}
	jam := table.Errors[len(table.Errors)-1]
	if jam.Message != "the door is jammed" || table.Errors[0].Message != "not now" {
		t.Errorf("messages %q, %q", jam.Message, table.Errors[0].Message)
	}
	if p := table.PolicyFor("Broken"); p.Kind != PolicyIgnore {
		t.Errorf("Broken policy %+v", p)
	}
	if p := table.PolicyFor("Open"); p.Kind != PolicyRefuse || p.Error != "ErrNotNow" {
		t.Errorf("Open policy %+v", p)
	}
}

func TestLoadFollowerTable(t *testing.T) {
	table := mustLoad(t, "../transitions.yaml")
	if table.Machine != "lifecycle" || table.Initial != "NotMember" {
		t.Fatalf("machine %s, initial %s", table.Machine, table.Initial)
	}
}

// TestEvaluate pins the semantics of a table: first row whose guards hold,
// the first failing guard's error, unhandled policies, failing actions.
func TestEvaluate(t *testing.T) {
	table := mustLoad(t, "testdata/semantics.yaml")
	tests := []struct {
		state, event string
		holds        string // guards that hold, comma-separated
		fails        string
		want         Outcome
	}{
		{"Closed", "Push", "Light,Strong", "", Outcome{Row: 0, Kind: Move, To: "Open", Called: []string{"Light", "Swing"}}},
		{"Closed", "Push", "Strong", "", Outcome{Row: 1, Kind: Move, To: "Broken", Called: []string{"Light", "Strong", "Log"}}},
		{"Closed", "Push", "", "", Outcome{Row: -1, Kind: Refuse, To: "Closed", Err: "ErrTooHard", Guard: "Light", Called: []string{"Light", "Strong"}}},
		{"Closed", "Push", "Light", "Swing", Outcome{Row: 0, Kind: Move, To: "Closed", Action: "Swing", Called: []string{"Light", "Swing"}}},
		{"Closed", "Lock", "HasKey", "Log", Outcome{Row: 3, Kind: Move, To: "Closed", Action: "Log", Called: []string{"HasKey", "Turn", "Log"}}},
		{"Open", "Push", "Light", "", Outcome{Row: 2, Kind: Stay, To: "Open", Called: []string{"Light", "Swing", "Log"}}},
		{"Open", "Lock", "HasKey", "", Outcome{Row: -1, Kind: Refuse, To: "Open", Err: "ErrNotNow"}},
		{"Locked", "Lock", "", "", Outcome{Row: 4, Kind: Noop, To: "Locked"}},
		{"Locked", "Push", "Light", "", Outcome{Row: 5, Kind: Refuse, To: "Locked", Err: "ErrJammed"}},
		{"Broken", "Push", "Light", "", Outcome{Row: -1, Kind: Noop, To: "Broken"}},
		{"Broken", "Kick", "", "", Outcome{Row: -1, Kind: Noop, To: "Broken"}},
		{"Open", "Kick", "", "", Outcome{Row: 6, Kind: Move, To: "Broken"}},
	}
	for _, tt := range tests {
		holds := strings.Split(tt.holds, ",")
		got := table.Evaluate(tt.state, tt.event,
			func(g string) bool { return contains(holds, g) },
			func(a string) bool { return a == tt.fails })
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s in %s with %q holding, %q failing (-want +got):\n%s", tt.event, tt.state, tt.holds, tt.fails, diff)
		}
	}
}

func TestDiagnosticsAreSortedAndComplete(t *testing.T) {
	src := `machine: M
package: m
initial: A
unhandled: ignore
states:
  A: {}
  B: {terminal: true}
  C: {}
events:
  Go: {}
rows:
  - {from: Z, on: Go, to: B}
  - {from: A, on: Nope, to: B}
  - {from: A, on: Go, to: B}
`
	_, err := Load("t.yaml", []byte(src))
	var diags Diagnostics
	if !errors.As(err, &diags) {
		t.Fatalf("error %v is not Diagnostics", err)
	}
	want := "t.yaml:12:12: unknown state \"Z\"\n" +
		"t.yaml:13:19: unknown event \"Nope\""
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
	// Once names resolve, the shape checks report too.
	_, err = Load("t.yaml", []byte(strings.Replace(strings.Replace(src, "Z", "A", 1), "Nope", "Go", 1)))
	want = "t.yaml:8:3: state C is unreachable from the initial state A\n" +
		"t.yaml:13:5: duplicate row: the row at 12:5 already handles Go in A with the same guards\n" +
		"t.yaml:14:5: duplicate row: the row at 12:5 already handles Go in A with the same guards"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestLoadRejectsNonTables(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n", "- a list\n", "just a string\n", "a: 1\n---\nb: 2\n", "machine: &x M\n", "\x00\x01"} {
		_, err := Load("t.yaml", []byte(src))
		var diags Diagnostics
		if !errors.As(err, &diags) || len(diags) == 0 || !strings.HasPrefix(err.Error(), "t.yaml:") {
			t.Errorf("%q: error %v", src, err)
		}
	}
}

func TestWithoutPositionsCopiesDeeply(t *testing.T) {
	table := mustLoad(t, "testdata/semantics.yaml")
	c := table.WithoutPositions()
	c.Rows[0].If[0] = "Changed"
	c.States[3].Override.Error = "Changed"
	if table.Rows[0].If[0] != "Light" || table.States[3].Override.Error == "Changed" {
		t.Fatal("the copy shares memory with the table")
	}
	if c.Rows[1].Pos != (Pos{}) || c.Events[0].Payload[0].Pos != (Pos{}) {
		t.Fatal("positions kept")
	}
}

func TestRefusal(t *testing.T) {
	sentinel := errors.New("door: too hard")
	var err error = &Refusal{Machine: "Door", State: "Closed", Event: "Push", Guard: "Light", Err: sentinel}
	if !errors.Is(err, sentinel) {
		t.Fatal("a refusal does not unwrap to its sentinel")
	}
	if got := err.Error(); got != "Door: Push refused in Closed (guard Light failed): door: too hard" {
		t.Fatalf("Error() = %q", got)
	}
}

// FuzzLoad checks that no input makes the loader panic, and that a
// rejected table always comes with positioned diagnostics.
func FuzzLoad(f *testing.F) {
	for _, file := range []string{"testdata/semantics.yaml", "../gen/testdata/invalid/row-kinds.yaml",
		"../gen/testdata/invalid/payload-types.yaml", "../gen/testdata/invalid/yaml-tags.yaml"} {
		src, err := readFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte("machine: [\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		table, err := Load("f.yaml", src)
		if err == nil {
			if table == nil {
				t.Fatal("no table and no error")
			}
			return
		}
		var diags Diagnostics
		if !errors.As(err, &diags) || len(diags) == 0 {
			t.Fatalf("error %v is not a non-empty Diagnostics", err)
		}
	})
}

// base is a valid table that the tests below vary.
const base = `machine: M
package: p
initial: A
unhandled: {refuse: ErrNo}
states:
  A: {}
  B: {terminal: true}
events:
  Go: {}
errors:
  ErrNo: {}
rows:
  - {from: A, on: Go, to: B}
`

func TestLoadEdgeCases(t *testing.T) {
	chain := func(n int) string {
		var b strings.Builder
		b.WriteString("machine: M\npackage: p\ninitial: S1\nunhandled: ignore\nstates:\n")
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, "  S%d: {terminal: %v}\n", i, i == n)
		}
		b.WriteString("events:\n  Go: {}\nrows:\n")
		for i := 1; i < n; i++ {
			fmt.Fprintf(&b, "  - {from: S%d, on: Go, to: S%d}\n", i, i+1)
		}
		return b.String()
	}
	for _, c := range []struct {
		name, src, want string // want: the diagnostics, "" when the table loads
	}{
		{"byte order mark", "\ufeff" + base, ""},
		{"package init", strings.Replace(base, "package: p", "package: init", 1),
			"t.yaml:2:10: package \"init\": Go imports a package of that name only under another name"},
		{"a %YAML directive", "%YAML 1.2\n---\n" + base, ""},
		{"an explicit key, read as the key it marks", strings.Replace(base, "  A: {}", "  ? A\n  : {}", 1),
			"t.yaml:6:3: explicit keys (\"? key\") are not supported: write \"key: value\""},
		{"a merge key among the states", strings.Replace(base, "  B: {terminal: true}", "  B: {terminal: true}\n  <<: {C: {}}", 1),
			"t.yaml:8:3: merge keys (<<) are not supported: write the entries out"},
		{"a merge key in a payload", strings.Replace(base, "Go: {}", "Go: {payload: {<<: {x: int}}}", 1),
			"t.yaml:9:18: merge keys (<<) are not supported: write the entries out"},
		{"a merge key in a row", strings.Replace(base, "{from: A, on: Go, to: B}", "{<<: {from: A}, on: Go, to: B}", 1),
			"t.yaml:13:5: a row needs \"from\" and \"on\"\n" +
				"t.yaml:13:6: merge keys (<<) are not supported: write the entries out"},
		{"an unused guard, and the error only it names", strings.Replace(base, "  ErrNo: {}", "  ErrNo: {}\n  ErrSpare: {}", 1) +
			"guards:\n  Spare: {error: ErrSpare}\n",
			"t.yaml:12:3: error ErrSpare is declared but never used\n" +
				"t.yaml:16:3: guard Spare is declared but never used"},
		{"an unused guard naming an unknown error", base + "guards:\n  Spare: {error: ErrNone}\n",
			"t.yaml:15:3: guard Spare is declared but never used\n" +
				"t.yaml:15:18: unknown error \"ErrNone\" (did you mean \"ErrNo\"?)"},
		{"anchored and tagged strings", strings.Replace(base, "initial: A", "initial: &x !!str A", 1), ""},
		{"a tag that is not !!str", strings.Replace(base, "initial: A", "initial: !!int A", 1),
			"t.yaml:3:10: tag !!int is not supported: the only tag a table may use is !!str"},
		{"!!str on a number and on a boolean", strings.Replace(base, "ErrNo: {}", "ErrNo: {message: !!str 404, doc: !!str true}", 1), ""},
		{"!!str where a boolean belongs", strings.Replace(base, "B: {terminal: true}", "B: {terminal: true}\n  C: {terminal: !!str true}", 1),
			"t.yaml:8:3: state C is unreachable from the initial state A\n" +
				"t.yaml:8:17: terminal must be true or false, not a string"},
		{"an empty unhandled error", strings.Replace(base, "unhandled: {refuse: ErrNo}", "unhandled: {refuse: \"\"}\nguards: {G: {error: ErrNo}}", 1) +
			"  - {from: A, on: Go, if: [G], to: B}\n",
			"t.yaml:4:21: unhandled error must not be empty\n" +
				"t.yaml:15:5: row is shadowed in A: the row at 14:5 handles Go whenever this one could"},
		{"anchors on lists, mappings and names", strings.NewReplacer(
			"rows:", "rows: &rows", "  A: {}", "  &a A: &b {doc: x}", "on: Go, to: B", "on: Go, if: &g [G], to: B",
			"errors:", "guards: {G: &h {error: &e ErrNo}}\nerrors:").Replace(base), ""},
		{"a tag on a list", strings.Replace(base, "rows:\n  - {from: A, on: Go, to: B}", "rows: !seq [{from: A, on: Go, if: !list [G], to: B}]\nguards: {G: {error: ErrNo}}", 1),
			"t.yaml:12:7: tag !seq is not supported: the only tag a table may use is !!str\n" +
				"t.yaml:12:34: tag !list is not supported: the only tag a table may use is !!str"},
		{"a tag on a key", strings.Replace(base, "  A: {}", "  !foo A: {}", 1),
			"t.yaml:6:3: tag !foo is not supported: the only tag a table may use is !!str"},
		{"a line break in a name", strings.Replace(base, "  A: {}", "  A: {}\n  \"C\\nt.yaml:1:1: no problem\": {terminal: true}", 1),
			`t.yaml:7:3: state C\nt.yaml:1:1: no problem is unreachable from the initial state A` + "\n" +
				`t.yaml:7:3: state name "C\nt.yaml:1:1: no problem" must be a Go identifier`},
		{"an unquoted *", strings.Replace(base, "from: A", "from: *", 1),
			`t.yaml:13:12: an unquoted * starts a YAML alias: write "*" (quoted) for every live state`},
		{"an unquoted * as a block list item, before the next key", strings.Replace(base, "  - {from: A, on: Go, to: B}", "  - from:\n      - *\n    on: Go\n    to: B", 1),
			`t.yaml:14:9: an unquoted * starts a YAML alias: write "*" (quoted) for every live state`},
		{"an unquoted * in a list, after another mistake", strings.Replace(strings.Replace(base, "from: A", "from: [A, *]", 1), "states:", "states: [", 1),
			"t.yaml:8:1: YAML syntax: ',' or ']' must be specified; is a ',' missing, or the ] closing the [ at 5:9?\n" +
				`t.yaml:13:16: an unquoted * starts a YAML alias: write "*" (quoted) for every live state`},
		{"a state named twice in a row", strings.Replace(base, "from: A", "from: [A, \"*\", A, \"*\"]", 1),
			"t.yaml:13:21: \"from\" names \"A\" twice\n" +
				"t.yaml:13:24: \"from\" names \"*\" twice"},
		{"unknown initial state, where it is named", strings.Replace(base, "initial: A", "initial: Z", 1),
			`t.yaml:3:10: unknown state "Z"`},
		{"a non-ASCII upper-case initial", strings.Replace(base, "machine: M", "machine: Émile", 1), ""},
		{"a non-ASCII lower-case initial: an unexported machine", strings.Replace(base, "machine: M", "machine: éM", 1), ""},
		{"an unexported machine", strings.Replace(base, "machine: M", "machine: job", 1), ""},
		{"a machine of neither case", strings.Replace(base, "machine: M", "machine: _M", 1),
			`t.yaml:1:10: machine name "_M" must start with an upper-case letter, for an exported machine, or a lower-case one, for a machine used only in its package`},
		{"a machine starting with a letter of no case", strings.Replace(base, "machine: M", "machine: ªM", 1),
			`t.yaml:1:10: machine name "ªM" must start with an upper-case letter, for an exported machine, or a lower-case one, for a machine used only in its package`},
		{"an unexported machine starting with a letter of no upper case", strings.Replace(base, "machine: M", "machine: ßM", 1),
			`t.yaml:1:10: machine name "ßM" must start with a letter that has an upper-case form (ß has none): the table, its hash and the generated tests are named with it upper-cased`},
		{"an unexported machine starting with a letter upper-cased to a title-case one", strings.Replace(base, "machine: M", "machine: ᾳM", 1),
			`t.yaml:1:10: machine name "ᾳM" must start with a letter that has an upper-case form (ᾳ has none): the table, its hash and the generated tests are named with it upper-cased`},
		{"an unexported machine named main in package main", strings.Replace(base, "machine: M\npackage: p", "machine: main\npackage: main", 1),
			`t.yaml:1:10: machine name "main": in package main, main must be the program's func main`},
		{"an unexported machine named main in another package", strings.Replace(base, "machine: M", "machine: main", 1), ""},
		{"an exported machine named Main in package main", strings.Replace(base, "machine: M\npackage: p", "machine: Main\npackage: main", 1), ""},
		{"an unexported machine of a predeclared name", strings.Replace(base, "machine: M", "machine: new", 1),
			`t.yaml:1:10: machine name "new" must not be a Go predeclared name or init`},
		{"an unexported machine named init", strings.Replace(base, "machine: M", "machine: init", 1),
			`t.yaml:1:10: machine name "init" must not be a Go predeclared name or init`},
		{"an unexported machine of a generated import's name", strings.Replace(base, "machine: M", "machine: fsmtest", 1),
			`t.yaml:1:10: machine name "fsmtest" must not be a name the generated code gives a package or a variable (atomic, errors, fsm, fsmtest, strconv, testing; e, err, f, from, h, m, o, r, refused, row, s, set, t, to)`},
		{"an unexported machine of a generated variable's name", strings.Replace(base, "machine: M", "machine: h", 1),
			`t.yaml:1:10: machine name "h" must not be a name the generated code gives a package or a variable (atomic, errors, fsm, fsmtest, strconv, testing; e, err, f, from, h, m, o, r, refused, row, s, set, t, to)`},
		{"an unexported machine of an import's name", strings.Replace(strings.Replace(base, "machine: M", "machine: logpos\nimports: {logpos: example.com/logpos}", 1), "Go: {}", "Go: {payload: {x: logpos.T}}", 1),
			`t.yaml:2:11: import logpos: the machine's type has that name`},
		{"a non-ASCII payload field", strings.Replace(base, "Go: {}", "Go: {payload: {ñandú: int}}", 1), ""},
		{"an empty event", base + "  - {from: A, on: \"\", to: B}\n", "t.yaml:14:19: event name must not be empty"},
		{"an empty guard error", strings.Replace(base, "errors:", "guards:\n  G: {error: \"\"}\nerrors:", 1) +
			"  - {from: A, on: Go, if: [G], to: B}\n",
			"t.yaml:11:14: guard error must not be empty\n" +
				"t.yaml:16:5: row is shadowed in A: the row at 15:5 handles Go whenever this one could"},
		{"a row out of the second state it names", strings.Replace(base, "  Go: {}", "  Go: {}\n  Back: {}", 1) +
			"  - {from: [A, B], on: Back, to: A}\n",
			"t.yaml:15:16: row moves out of terminal state B"},
		{"an unused guard and an unreachable state", strings.Replace(base, "  B: {terminal: true}", "  B: {terminal: true}\n  C: {}", 1) +
			"guards:\n  Unused: {error: ErrNo}\n",
			"t.yaml:8:3: state C is unreachable from the initial state A\n" +
				"t.yaml:16:3: guard Unused is declared but never used"},
		{"a bad doc and a duplicate row", "doc: 5\n" + base + "  - {from: A, on: Go, to: B}\n",
			"t.yaml:1:6: doc must be a string, not a number\n" +
				"t.yaml:15:5: duplicate row: the row at 14:5 already handles Go in A with the same guards"},
		{"255 states", chain(255), ""},
		{"256 states", chain(256), "t.yaml:261:3: more than 255 states"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load("t.yaml", []byte(c.src))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// A "*" row is a fallback: where an earlier row already takes the event
// it does not apply, and only a row that is never taken anywhere, or that
// names a state where it is never taken, is reported.
func TestWildcardRows(t *testing.T) {
	const head = `machine: M
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
errors:
  ErrNo: {}
rows:
  - {from: A, on: Step, if: [G], to: C}
`
	for _, c := range []struct {
		name, rows string
		want       string   // the diagnostics, "" when the table loads
		from       []string // then: the states of the last row
	}{
		{"after a specific row", "  - {from: A, on: Go, to: B}\n  - {from: \"*\", on: Go, to: B}\n", "", []string{"C"}},
		{"after a guarded row", "  - {from: A, on: Go, if: [G], to: B}\n  - {from: \"*\", on: Go, to: B}\n", "", []string{"A", "C"}},
		{"a state named beside it", "  - {from: C, on: Go, to: B}\n  - {from: [\"*\", A], on: Go, to: B}\n", "", []string{"A"}},
		{"before a specific row", "  - {from: \"*\", on: Go, to: B}\n  - {from: A, on: Go, to: B}\n",
			"t.yaml:19:5: duplicate row: the row at 18:5 already handles Go in A with the same guards", nil},
		{"taken nowhere", "  - {from: A, on: Go, to: B}\n  - {from: C, on: Go, if: [G], to: B}\n  - {from: \"*\", on: Go, if: [G], to: B}\n",
			"t.yaml:20:5: row from \"*\" is never taken: in every state \"*\" gives it, an earlier row handles Go whenever it could (in A the row at 18:5; in C the row at 19:5)", nil},
		{"taken nowhere, one row before it", "  - {from: [A, C], on: Go, to: B}\n  - {from: \"*\", on: Go, to: B}\n",
			"t.yaml:19:5: row from \"*\" is never taken: in every state \"*\" gives it, an earlier row handles Go whenever it could (in A and C the row at 18:5)", nil},
		{"shadowed in a state it names", "  - {from: A, on: Go, to: B}\n  - {from: [C, \"*\", A], on: Go, to: B}\n",
			"t.yaml:19:5: duplicate row: the row at 18:5 already handles Go in A with the same guards", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, err := Load("t.yaml", []byte(head+c.rows))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != c.want {
				t.Fatalf("got\n%s\nwant\n%s", got, c.want)
			}
			if err == nil {
				if from := tab.Rows[len(tab.Rows)-1].From; !slices.Equal(from, c.from) {
					t.Errorf("the last row applies in %v, want %v", from, c.from)
				}
			}
		})
	}
}

// Keys tagged !!str or anchored name what their value names.
func TestTaggedAndAnchoredKeys(t *testing.T) {
	src := "machine: M\npackage: p\ninitial: A\nunhandled: ignore\n" +
		"states:\n  !!str A: {}\n  &b B: {terminal: true}\n" +
		"events:\n  !!str E: {}\n" +
		"rows:\n  - {from: A, on: E, to: B}\n"
	table, err := Load("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if table.States[0].Name != "A" || table.States[1].Name != "B" || table.Events[0].Name != "E" {
		t.Fatalf("states %+v, events %+v", table.States, table.Events)
	}
}

// Brackets nested past any table's need are refused before parsing
// (the parser's memory grows with the square of the depth).
func TestDeepFlowNestingRefused(t *testing.T) {
	deep := strings.Repeat("[", maxFlowDepth+1) + strings.Repeat("]", maxFlowDepth+1)
	src := "doc: \"[[[[\" # {{{{\nnote: the replica's term, 'quoted [[' [x]\nmachine: " + deep + "\n"
	_, err := Load("t.yaml", []byte(src))
	want := fmt.Sprintf("t.yaml:3:%d: brackets nested deeper than %d", len("machine: ")+maxFlowDepth+1, maxFlowDepth)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load = %v, want %q", err, want)
	}
	// An apostrophe in plain text, even after a comma, opens no quote
	// that could hide the nesting from the check.
	for _, src := range []string{
		"doc: a, 'b\nmachine: " + deep + "\nx: don't\n",
		"doc: |\n  'b\nmachine: " + deep + "\nx: don't\n",
	} {
		if _, err := Load("t.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "brackets nested deeper than") {
			t.Errorf("Load(%q) = %v, want the nesting refused", src, err)
		}
	}
}

// Block sequences opened on one line ("- - - x") nest as brackets do,
// and are refused past the same depth; dashes in text are not nesting.
func TestDeepBlockNestingRefused(t *testing.T) {
	deep := strings.Repeat("- ", maxFlowDepth+1) + "x"
	src := "machine: M\nrows:\n  " + deep + "\n"
	_, err := Load("t.yaml", []byte(src))
	want := fmt.Sprintf("t.yaml:3:%d: sequences opened on one line nested deeper than %d", 3+2*maxFlowDepth, maxFlowDepth)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load = %v, want %q", err, want)
	}
	text := "machine: M\npackage: p\ninitial: A\nunhandled: ignore\n" +
		"states:\n  A: {doc: see " + strings.Repeat("- ", maxFlowDepth+1) + "}\n  B: {terminal: true}\n" +
		"events: {E: {}}\nrows:\n  - {from: A, on: E, to: B}\n"
	if _, err := Load("t.yaml", []byte(text)); err != nil {
		t.Errorf("dashes in a doc: %v", err)
	}
}

// A block mapping of more keys than any table needs is refused before
// parsing (the parser's time grows with the square of their number); keys
// of many mappings at one indentation (rows written as block mappings)
// and colons in text do not add up.
func TestLongMappingRefused(t *testing.T) {
	var src strings.Builder
	src.WriteString("machine: M\nstates:\n")
	for i := range maxMappingKeys + 1 {
		fmt.Fprintf(&src, "  S%d: {doc: \"a: b\"}\n", i)
	}
	_, err := Load("t.yaml", []byte(src.String()))
	want := fmt.Sprintf("t.yaml:%d:3: more than %d keys in one mapping", 3+maxMappingKeys, maxMappingKeys)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load = %v, want %q", err, want)
	}
	// Anchors and tags of different lengths before the keys do not hide
	// that they are siblings.
	src.Reset()
	src.WriteString("machine: M\nstates:\n")
	for i := range maxMappingKeys + 1 {
		if i%2 == 0 {
			fmt.Fprintf(&src, "  &%s S%d: {}\n", strings.Repeat("a", 1+i%7), i)
		} else {
			fmt.Fprintf(&src, "  !!str S%d: {}\n", i)
		}
	}
	_, err = Load("t.yaml", []byte(src.String()))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("keys behind anchors and tags: Load = %v, want %q", err, want)
	}
	// The keys of two documents are not one mapping's: a table followed
	// by a second document is refused as two documents, however many
	// keys the second holds (below the limit).
	src.Reset()
	src.WriteString(base + "---\n")
	for i := range maxMappingKeys - 4 {
		fmt.Fprintf(&src, "k%d: v\n", i)
	}
	_, err = Load("t.yaml", []byte(src.String()))
	if err == nil || err.Error() != "t.yaml:15:1: a table file holds one YAML document" {
		t.Fatalf("a table and a document of %d keys: Load = %v, want one diagnostic: two documents", maxMappingKeys-4, err)
	}

	src.Reset()
	src.WriteString("machine: M\npackage: p\ninitial: A\nunhandled: ignore\n" +
		"states:\n  A:\n    doc: \"x: y\"\n  B: {terminal: true}\nevents: {E: {}}\nrows:\n")
	for range 2 * maxMappingKeys {
		src.WriteString("  - from: A\n    on: E\n    to: B\n")
	}
	_, err = Load("t.yaml", []byte(src.String()))
	if err == nil || strings.Contains(err.Error(), "keys in one mapping") || !strings.Contains(err.Error(), "duplicate row") {
		t.Errorf("rows as block mappings: %v, want the rows loaded (each a duplicate of the first)", err)
	}
}

// A file of many documents is refused before parsing (the parser's time
// grows with the square of their number: 100000 "--- x" lines, 600 KB,
// took 90 s); a table and a second document are still two documents.
func TestManyDocumentsRefused(t *testing.T) {
	for _, doc := range []string{"--- x\n", "a: 1\n...\n"} {
		src := strings.Repeat(doc, 10000)
		_, err := Load("t.yaml", []byte(src))
		line := maxDocumentMarkers + 1
		if doc != "--- x\n" {
			line = 2 * line
		}
		want := fmt.Sprintf("t.yaml:%d:1: more than %d document markers (--- or ...): a table file holds one YAML document", line, maxDocumentMarkers)
		if err == nil || err.Error() != want {
			t.Errorf("%d documents %q: Load = %v, want %q", 10000, doc, err, want)
		}
	}
	_, err := Load("t.yaml", []byte("---\n"+base+"...\n---\nx: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "a table file holds one YAML document") {
		t.Errorf("a table and a second document: Load = %v, want two documents reported", err)
	}
}

// A table is UTF-8: a byte that is not is reported where it stands
// (the parser would read it as U+FFFD, and the generated code would carry
// "caf\uFFFD" for a Latin-1 "café"), and a UTF-16 table as such rather
// than as "a string".
func TestNotUTF8Refused(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"Latin-1", strings.Replace(base, "ErrNo: {}", "ErrNo: {message: caf\xe9}", 1),
			"t.yaml:11:23: byte 0xe9 is not UTF-8: save the table as UTF-8"},
		{"after a character of two bytes, CRLF", strings.ReplaceAll(strings.Replace(base, "initial: A", "doc: é\xff\ninitial: A", 1), "\n", "\r\n"),
			"t.yaml:3:8: byte 0xff is not UTF-8: save the table as UTF-8"},
		{"after a byte order mark", "\ufeffdoc: \x80\n" + base,
			"t.yaml:1:9: byte 0x80 is not UTF-8: save the table as UTF-8"},
		{"UTF-16", "\xff\xfem\x00a\x00",
			"t.yaml:1:1: the table is UTF-16 (it starts with a UTF-16 byte order mark): save it as UTF-8"},
	} {
		_, err := Load("t.yaml", []byte(c.src))
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: Load = %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := Load("t.yaml", []byte("\ufeff"+strings.Replace(base, "ErrNo: {}", "ErrNo: {message: café}", 1))); err != nil {
		t.Errorf("UTF-8 with a byte order mark: %v", err)
	}
}

// Brackets in block scalars and plain text are text, not nesting.
func TestBracketsInTextAreNotNesting(t *testing.T) {
	many := strings.Repeat("[", maxFlowDepth+1)
	for _, doc := range []string{"|\n      " + many, ">\n      see " + many, "see " + many} {
		src := "machine: M\npackage: p\ninitial: A\nunhandled: ignore\n" +
			"states:\n  A:\n    doc: " + doc + "\n  B: {terminal: true}\n" +
			"events: {E: {}}\nrows:\n  - {from: A, on: E, to: B}\n"
		if _, err := Load("t.yaml", []byte(src)); err != nil {
			t.Errorf("a doc of %q: %v", doc, err)
		}
	}
}

// A repeated key is one problem among the others, not the end of reading.
func TestRepeatedKeyReportedWithTheRest(t *testing.T) {
	src := "machine: M\npackage: p\ninitial: A\nunhandled: ignore\n" +
		"states:\n  A: {}\n  B: {terminal: true}\n  A: {doc: again}\n" +
		"events: {E: {}}\n" +
		"rows:\n  - {from: A, on: E, to: C}\n"
	_, err := Load("t.yaml", []byte(src))
	for _, want := range []string{`t.yaml:8:3: key "A" repeated (first at 6:3)`, `t.yaml:11:26: unknown state "C"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load = %v, want %q among the problems", err, want)
		}
	}
}

// An unexported machine's table function and hash stay exported, and its
// generated tests run (go test runs a TestX only when X does not start
// with a lower-case letter), whatever lower-case letter its name starts
// with: a letter with no upper-case form is refused.
func TestUnexportedMachineNamesExportTheTableAndRunTheTests(t *testing.T) {
	accepted := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !unicode.IsLower(r) {
			continue
		}
		name := string(r) + "M"
		if checkIdent(name, machineIdent) != "" {
			continue
		}
		accepted++
		n := (&Table{Machine: name}).Names()
		test, _ := utf8.DecodeRuneInString(n.Tests)
		if n.Type != name || token.IsExported(n.Type) || !token.IsExported(n.Table) || !token.IsExported(n.Hash) || unicode.IsLower(test) {
			t.Errorf("machine: %s (%U) gives %+v", name, r, n)
		}
	}
	if accepted < 1000 {
		t.Fatalf("only %d lower-case initials accepted", accepted)
	}
}

// Columns count bytes, as Go tools count them: a character of several
// bytes before a name moves it by as many columns.
func TestColumnsCountBytes(t *testing.T) {
	src := strings.Replace(base, "  - {from: A, on: Go, to: B}", "  - {from: A, on: Go, to: B, doc: \"é\"}\n  - {from: Ä, on: Gö, to: B}", 1)
	_, err := Load("t.yaml", []byte(src))
	want := "t.yaml:14:12: unknown state \"Ä\"\n" +
		"t.yaml:14:20: unknown event \"Gö\"" // Ä takes two bytes: Gö is the 19th character, at byte 20
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	// Lines may end with \r\n, or \r alone, as the parser reads them.
	for _, eol := range []string{"\r\n", "\r"} {
		_, err = Load("t.yaml", []byte(strings.ReplaceAll(src, "\n", eol)))
		if err == nil || err.Error() != want {
			t.Errorf("lines ending with %q: got\n%v\nwant\n%s", eol, err, want)
		}
	}
	// A byte order mark counts on the first line.
	_, err = Load("t.yaml", []byte("\ufeffmachine: _m\n"+strings.TrimPrefix(base, "machine: M\n")))
	if want := `t.yaml:1:13: machine name "_m" must start with an upper-case letter, for an exported machine, or a lower-case one, for a machine used only in its package`; err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	// … and so does a character of several bytes after it.
	_, err = Load("t.yaml", []byte("\ufeff{machine: \"é\", x: éM}\n"))
	if want := `t.yaml:1:20: unknown field "x"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got\n%v\nwant a line\n%s", err, want)
	}
}

// A diagnostic is one line, whatever the names and the file name hold.
func TestDiagnosticsAreOneLine(t *testing.T) {
	d := Diagnostics{
		{Pos: Pos{File: "a\nb.yaml", Line: 1, Col: 2}, Msg: "x\ny\u2028z\u2029w"},
		{Pos: Pos{File: "t.yaml", Line: 3, Col: 4}, Msg: "plain"},
	}
	want := "\"a\\nb.yaml\":1:2: x\\ny\\u2028z\\u2029w\nt.yaml:3:4: plain"
	if got := d.Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	_, err := Load("t\n.yaml", []byte(strings.Replace(base, "ErrNo: {}", "ErrNo: {}\n  \"ErrX\\rY\": {}", 1)))
	if err == nil || strings.Count(err.Error(), "\n") != 1 || strings.ContainsRune(err.Error(), '\r') {
		t.Errorf("got %q, want two diagnostics of one line each", err)
	}
}

func TestMessageFromName(t *testing.T) {
	for name, want := range map[string]string{
		"ErrInvalidTerm": "invalid term",
		"ErrHTTPTooWeak": "http too weak",
		"ErrTooHTTP":     "too http",
		"ErrV2Failed":    "v2 failed",
		"ErrIO":          "io",
		"ErrNotANumber":  "not a number",
		"ErrÉtéChaud":    "été chaud",
	} {
		if got := messageFromName(name); got != want {
			t.Errorf("messageFromName(%q) = %q, want %q", name, got, want)
		}
	}
}

// bigTable is a valid table of n states and n events with one row per
// (state, event) cell: n² rows.
func bigTable(n int) []byte {
	var b strings.Builder
	b.WriteString("machine: M\npackage: p\ninitial: S0\nunhandled: ignore\nstates:\n")
	for i := range n {
		fmt.Fprintf(&b, "  S%d: {terminal: %v}\n", i, i == n-1)
	}
	b.WriteString("events:\n")
	for i := range n {
		fmt.Fprintf(&b, "  E%d: {}\n", i)
	}
	b.WriteString("rows:\n")
	for s := range n - 1 {
		for e := range n {
			fmt.Fprintf(&b, "  - {from: S%d, on: E%d, to: S%d}\n", s, e, (s+e+1)%n)
		}
	}
	b.WriteString("  - {from: S" + fmt.Sprint(n-1) + ", on: E0, noop: true}\n")
	return []byte(b.String())
}

// Cells finds the rows of a cell through the index, in a table loaded
// from a big file.
func TestLoadLargeTable(t *testing.T) {
	const n = 60
	table, err := Load("big.yaml", bigTable(n))
	if err != nil {
		t.Fatal(err)
	}
	cells := table.Cells()
	if g := cells.Group("S3", "E5"); len(g) != 1 || table.Rows[g[0]].To != "S9" || !slices.Equal(g, table.Group("S3", "E5")) {
		t.Fatalf("cell (S3, E5) has rows %v", g)
	}
	if out := cells.Evaluate("S3", "E5", nil, func(string) bool { return false }); out.To != "S9" {
		t.Fatalf("E5 in S3 goes to %s", out.To)
	}
}

// Validation looks at each (state, event) cell once, through an index of
// the rows: the largest table (255 states, 255 events, a row in every
// cell) takes a fraction of a second. Looking through every row for every
// cell, as it once did, took minutes.
func TestValidateLargestTable(t *testing.T) {
	const n = MaxStates
	table := &Table{File: "big.yaml", Machine: "M", Package: "p", Initial: "S0", Unhandled: Policy{Kind: PolicyIgnore}}
	l := &loader{file: "big.yaml", broken: map[string]bool{}, table: table}
	for i := range n {
		table.States = append(table.States, State{Name: fmt.Sprintf("S%d", i), Terminal: i == n-1})
		table.Events = append(table.Events, Event{Name: fmt.Sprintf("E%d", i)})
	}
	for s := range n - 1 {
		for e := range n {
			r := Row{From: []string{table.States[s].Name}, On: table.Events[e].Name, Kind: Move, To: table.States[(s+e+1)%n].Name}
			table.Rows = append(table.Rows, r)
			l.rows = append(l.rows, rowSrc{from: []ref{{name: r.From[0]}}, on: ref{name: r.On}, to: ref{name: r.To}})
		}
	}
	l.validate(table)
	if err := l.diags.Err(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkLoadLargeTable(b *testing.B) {
	for _, n := range []int{50, 100, 150} {
		src := bigTable(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Load("big.yaml", src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// !!str makes a scalar a string whatever it reads as.
func TestStrTagTakesTheText(t *testing.T) {
	src := strings.Replace(base, "ErrNo: {}", "ErrNo: {message: !!str 404, doc: !!str true}", 1)
	table, err := Load("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if e := table.Errors[0]; e.Message != "404" || e.Doc != "true" {
		t.Errorf("message %q, doc %q", e.Message, e.Doc)
	}
	// Tagging null is the text null; tagging nothing, the empty string
	// (a message that is refused as empty, where it is written).
	errorsLast := "machine: M\npackage: p\ninitial: A\nunhandled: {refuse: ErrNo}\n" +
		"states:\n  A: {}\n  B: {terminal: true}\nevents:\n  Go: {}\n" +
		"rows:\n  - {from: A, on: Go, to: B}\nerrors:\n  ErrNo:\n    message: !!str"
	table, err = Load("t.yaml", []byte(errorsLast+" null\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := table.Errors[0].Message; got != "null" {
		t.Errorf("message %q, want null", got)
	}
	want := "t.yaml:14:14: error ErrNo has an empty message: leave message out to derive it from the name"
	if got := loadErr(t, errorsLast+"\n"); got != want {
		t.Errorf("a message of !!str and nothing: got\n%s\nwant\n%s", got, want)
	}
}

// A refusal keeps its static entry out of its callers' reach: what
// errors.As gives is a copy, and making the error allocates nothing.
func TestRefusedIsACopy(t *testing.T) {
	sentinel := errors.New("door: too hard")
	entry := &Refusal{Machine: "Door", State: "Closed", Event: "Push", Guard: "Light", Err: sentinel}
	err := Refused(entry)
	if !errors.Is(err, sentinel) || err.Error() != entry.Error() {
		t.Fatalf("error %v does not stand for %+v", err, entry)
	}
	if got := errors.Unwrap(err); got != sentinel {
		t.Errorf("errors.Unwrap gives %v, want the sentinel itself", got)
	}
	var r *Refusal
	if !errors.As(err, &r) || *r != *entry {
		t.Fatalf("errors.As gives %+v, want %+v", r, entry)
	}
	r.Guard, r.State = "Changed", "Changed"
	var again *Refusal
	if !errors.As(err, &again) || *again != *entry || entry.Guard != "Light" {
		t.Fatalf("a caller changed the refusal: %+v", entry)
	}
	if n := testing.AllocsPerRun(100, func() { err = Refused(entry) }); n != 0 {
		t.Errorf("Refused allocates %v times", n)
	}
}
