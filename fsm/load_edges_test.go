package fsm

import (
	"strings"
	"testing"
)

// Past the end of a line holding a character of several bytes, the
// column still counts bytes: the line's bytes, then the parser's count
// beyond its end (where the parser places a value left empty).
func TestColumnPastTheEndOfALineOfSeveralByteCharacters(t *testing.T) {
	l := &loader{file: "t.yaml", src: []byte("a: b\n      t\u00e9:\n")} // 9 characters, 10 bytes
	for _, c := range []struct{ col, want int }{
		{8, 8},   // é
		{9, 10},  // the colon
		{10, 11}, // right after it
		{11, 12}, // a character further
	} {
		if got := l.at(2, c.col); got != (Pos{File: "t.yaml", Line: 2, Col: c.want}) {
			t.Errorf("character %d of \"      t\u00e9:\": %v, want column %d", c.col, got, c.want)
		}
	}
	// As a diagnostic: an empty payload type, reported at its field.
	src := strings.Replace(base, "  Go: {}\n", "  Go:\n    payload:\n      t\u00e9:\n", 1)
	if got, want := loadErr(t, src), "t.yaml:11:7: payload field \"t\u00e9\" needs a Go type"; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A byte that is not UTF-8 is placed on its line when lines end with a
// lone \r, as the parser reads them.
func TestNotUTF8AfterCRLineEndings(t *testing.T) {
	src := strings.ReplaceAll(strings.Replace(base, "ErrNo: {}", "ErrNo: {message: caf\xe9}", 1), "\n", "\r")
	want := "t.yaml:11:23: byte 0xe9 is not UTF-8: save the table as UTF-8"
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A table saved as UTF-16 big-endian is refused as such, as little-endian is.
func TestUTF16BigEndianRefused(t *testing.T) {
	want := "t.yaml:1:1: the table is UTF-16 (it starts with a UTF-16 byte order mark): save it as UTF-8"
	if got := loadErr(t, "\xfe\xff\x00m\x00a"); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A lone \r is a line break to the YAML parser: it is part of the table,
// and only CRLF reads as LF in the hash.
func TestSourceHashCountsALoneCR(t *testing.T) {
	if SourceHash([]byte("doc: \"a\rb\"\n")) == SourceHash([]byte("doc: \"ab\"\n")) {
		t.Error("a lone \\r does not count in the hash")
	}
}

// The copy without positions shares no row's From with the table, and
// holds no position of a state's own unhandled policy.
func TestWithoutPositionsCopiesFromAndClearsOverrides(t *testing.T) {
	table := mustLoad(t, "testdata/semantics.yaml")
	c := table.WithoutPositions()
	c.Rows[6].From[0] = "Changed"
	if table.Rows[6].From[0] == "Changed" {
		t.Error("the copy shares its rows' From with the table")
	}
	for _, s := range c.States {
		if s.Override != nil && s.Override.Pos != (Pos{}) {
			t.Errorf("state %s: override keeps its position %v", s.Name, s.Override.Pos)
		}
	}
}

// Every name generated for the machine is kept free, its table hash's too.
func TestMachineTableHashNameKeptFree(t *testing.T) {
	src := strings.ReplaceAll(strings.Replace(base, "machine: M", "machine: ErrDoor", 1), "ErrNo", "ErrDoorTableHash")
	want := "t.yaml:11:3: error ErrDoorTableHash would be generated as ErrDoorTableHash, which is already machine ErrDoor (1:10)"
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A position without a line is its file's name alone.
func TestPosWithoutLine(t *testing.T) {
	if got := (Pos{File: "t.yaml"}).String(); got != "t.yaml" {
		t.Errorf("got %q, want %q", got, "t.yaml")
	}
}

// A row whose "from" is an empty list is refused: it would handle
// nothing.
func TestFromEmptyListRefused(t *testing.T) {
	src := strings.Replace(base, "{from: A, on: Go, to: B}", "{from: [], on: Go, to: B}", 1)
	want := "t.yaml:13:12: \"from\" names no state"
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A byte order mark counts in the columns of the first line only.
func TestByteOrderMarkCountsOnTheFirstLineOnly(t *testing.T) {
	src := "\ufeff" + strings.Replace(base, "{from: A, on: Go, to: B}", "{from: Z, on: Go, to: B}", 1)
	want := "t.yaml:13:12: unknown state \"Z\""
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// The first row past MaxCellRows is reported in every crowded cell.
func TestEveryCrowdedCellReported(t *testing.T) {
	src := crowdedCell(65)
	i := strings.Index(src, "guards:\n")
	var more strings.Builder
	for _, line := range strings.SplitAfter(src[:i], "\n") {
		if strings.Contains(line, "from: B, on: Go, if:") {
			more.WriteString(strings.Replace(line, "on: Go,", "on: Stop,", 1))
		}
	}
	src = strings.Replace(src[:i]+more.String()+src[i:], "  Go: {}\n", "  Go: {}\n  Stop: {}\n", 1)
	got := loadErr(t, src)
	if n := strings.Count(got, "more than 64 rows handle"); n != 2 ||
		!strings.Contains(got, "rows handle Go in B") || !strings.Contains(got, "rows handle Stop in B") {
		t.Errorf("got\n%s\nwant one crowding for Go in B and one for Stop in B", got)
	}
}

// A row past MaxCellRows in two crowded cells is reported once, in the
// first of them.
func TestCrowdedRowOfTwoCellsReportedOnce(t *testing.T) {
	src := strings.ReplaceAll(crowdedCell(65), "from: B, on: Go, if:", "from: [B, C], on: Go, if:")
	src = strings.Replace(src, "  B: {terminal: true}\n", "  B: {terminal: true}\n  C: {terminal: true}\n", 1)
	src = strings.Replace(src, "  Go: {}\n", "  Go: {}\n  Halt: {}\n", 1)
	src = strings.Replace(src, "guards:\n", "  - {from: A, on: Halt, to: C}\nguards:\n", 1)
	want := "t.yaml:80:5: more than 64 rows handle Go in B (this one and those after)"
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// The rows of a crowded cell past MaxCellRows are not compared with the
// others: a duplicate among them is not reported beside the crowding,
// which removing rows fixes first.
func TestRowsPastACrowdedCellAreNotCompared(t *testing.T) {
	src := crowdedCell(65)
	src = strings.Replace(src, "guards:\n", "  - {from: B, on: Go, if: [G0, G1], noop: true}\nguards:\n", 1)
	want := "t.yaml:78:5: more than 64 rows handle Go in B (this one and those after)"
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A guard declares the error it refuses with.
func TestGuardWithoutErrorRefused(t *testing.T) {
	src := strings.Replace(base, "{from: A, on: Go, to: B}", "{from: A, on: Go, if: [G], to: B}", 1) + "guards:\n  G: {doc: no error}\n"
	want := "t.yaml:15:3: guard G needs the error it refuses with (error: ErrSomething)"
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// An unquoted * followed by a name after a space is a bare *, not an alias.
func TestBareStarBeforeAName(t *testing.T) {
	src := strings.Replace(base, "  - {from: A, on: Go, to: B}\n", "  - from: * A\n    on: Go\n    to: B\n", 1)
	want := "t.yaml:13:11: an unquoted * starts a YAML alias: write \"*\" (quoted) for every live state"
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A row that cannot be read as written is reported alone: the event it
// names is not reported as never used besides (fixing the row fixes both).
// Names of other kinds than those it could not read still are: a guard
// never used beside a row whose actions cannot be read.
func TestUnreadableRowDoesNotMakeItsNamesUnused(t *testing.T) {
	src := strings.Replace(base, "{from: A, on: Go, to: B}", "{from: A, on: Go, to: B, do: [[X]]}", 1) +
		"guards:\n  G: {error: ErrNo}\nactions:\n  X: {}\n"
	want := "t.yaml:13:35: action name must be a string, not a list\nt.yaml:15:3: guard G is declared but never used"
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	for _, c := range []struct{ row, want string }{
		{"{from: A, on: [Go], to: B}", "t.yaml:13:19: event name must be a string, not a list"},
		{"[A, Go, B]", "t.yaml:13:5: a row must be a mapping, not a list"},
	} {
		src := strings.Replace(base, "{from: A, on: Go, to: B}", c.row, 1)
		if got := loadErr(t, src); got != c.want {
			t.Errorf("row %s: got\n%s\nwant\n%s", c.row, got, c.want)
		}
	}

	// A guard's error is as unread as the guard it belongs to.
	src = strings.NewReplacer("{from: A, on: Go, to: B}", "{from: A, on: Go, if: [[G]], to: B}", "  ErrNo: {}", "  ErrNo: {}\n  ErrG: {}").Replace(base) +
		"guards:\n  G: {error: ErrG}\n"
	want = "t.yaml:14:28: guard name must be a string, not a list"
	if got := loadErr(t, src); got != want {
		t.Errorf("a guard unread: got\n%s\nwant\n%s", got, want)
	}
}

// A state whose declaration cannot be read may be the terminal one: "no
// state is terminal" is not reported besides.
func TestUnreadableStateIsNotCalledNonTerminal(t *testing.T) {
	src := strings.Replace(base, "  B: {terminal: true}", "  B: [terminal]", 1)
	want := "t.yaml:7:6: state B must be a mapping, not a list"
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// One mistake, one diagnostic: a payload type that is not a string is not
// also said to be missing, nor an empty state name in "from" to leave
// "from" naming no state, nor a table split by a stray --- to lack what
// its first part lacks.
func TestOneDiagnosticPerMistake(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{"  Go: {}\n", "  Go: {payload: {n: [int]}}\n", "t.yaml:9:21: payload field type must be a string, not a list"},
		{"{from: A, on: Go, to: B}", "{from: !!str , on: Go, to: B}", "t.yaml:13:12: state name must not be empty"},
		{"events:\n", "---\nevents:\n", "t.yaml:9:1: a table file holds one YAML document"},
	} {
		src := strings.Replace(base, c.from, c.to, 1)
		if got := loadErr(t, src); got != c.want {
			t.Errorf("%s: got\n%s\nwant\n%s", strings.TrimSpace(c.to), got, c.want)
		}
	}
}

// A payload type that is not a Go type is reported where it is declared,
// and only there: a guard or action that reads the field from it and from
// another event is not also said to read two types.
func TestRefusedPayloadTypeIsNotComparedWithOthers(t *testing.T) {
	for _, c := range []struct{ typ, want string }{
		{"in t", `t.yaml:10:20: payload field "n": "in t" is not a Go type`},
		{"[int]", "t.yaml:10:23: payload field type must be a string, not a list"},
	} {
		src := strings.Replace(base, "  Go: {}\n", "  Go: {payload: {n: int}}\n  Stop: {payload: {n: "+c.typ+"}}\n", 1)
		src = strings.Replace(src, "  - {from: A, on: Go, to: B}\n",
			"  - {from: A, on: Go, to: B, do: [X]}\n  - {from: A, on: Stop, to: B, do: [X]}\nactions:\n  X: {uses: [n]}\n", 1)
		if got := loadErr(t, src); got != c.want {
			t.Errorf("%s: got\n%s\nwant\n%s", c.typ, got, c.want)
		}
	}
}

// YAML syntax errors a table's author is likely to make get a hint
// saying how to write it: a block value holding ": ", or continued by a
// line indented deeper than its key, is a mapping where none may be; a
// line indented with a tab is not YAML; a { or [ left open is found out
// only at a later line, which the error names: the hint names the
// bracket.
func TestYAMLSyntaxExplained(t *testing.T) {
	mapping := `YAML syntax: mapping value is not allowed in this context; quote this value if it holds ": ", and check that no line after it is indented deeper than its key`
	tab := `YAML syntax: found character '\t' that cannot start any token; indent with spaces: YAML takes no tab there`
	for _, c := range []struct{ to, want string }{
		{"  Go:\n    doc: Note: it goes.\n", "t.yaml:10:10: " + mapping},
		{"  Go:\n    doc: It goes.\n      payload: {n: int}\n", "t.yaml:10:10: " + mapping},
		{"\tGo: {}\n", "t.yaml:9:1: " + tab},
		{"  Go:\n  \tdoc: It goes.\n", "t.yaml:10:3: " + tab},
		{"  Go: {doc: It goes.\n", "t.yaml:10:1: YAML syntax: ',' or '}' must be specified; is a ',' missing, or the } closing the { at 9:7?"},
		{"  Go: {doc: [a, {b: c}], payload: {n: int}\n", "t.yaml:10:1: YAML syntax: ',' or '}' must be specified; is a ',' missing, or the } closing the { at 9:7?"},
		{"  Go:\n    doc: [It goes.\n", "t.yaml:11:1: YAML syntax: ',' or ']' must be specified; is a ',' missing, or the ] closing the [ at 10:10?"},
		{"  Go: {doc: \"é\", payload: {n: int\n", "t.yaml:10:1: YAML syntax: ',' or '}' must be specified; is a ',' missing, or the } closing the { at 9:28?"},
	} {
		src := strings.Replace(base, "  Go: {}\n", c.to, 1)
		if got := loadErr(t, src); got != c.want {
			t.Errorf("%q: got\n%s\nwant\n%s", c.to, got, c.want)
		}
	}
}

// An error that only an unhandled policy names is not reported as never
// used when the policy is missing or cannot be read: writing the policy
// fixes both.
func TestPolicyErrorNotUnusedBesideABrokenPolicy(t *testing.T) {
	const policy = "unhandled: {refuse: ErrNo}\n"
	for _, c := range []struct{ name, policy, stateA, want string }{
		{"no policy", "", "{}", `t.yaml:1:1: the table lacks "unhandled"`},
		{"a policy that does not read", "unhandled: refuse ErrNo\n", "{}",
			`t.yaml:4:12: unhandled must be "ignore" or {refuse: ErrSomething}, not "refuse ErrNo"`},
		{"a state's policy that does not read", "unhandled: ignore\n", "{unhandled: [ErrNo]}",
			`t.yaml:6:18: unhandled must be "ignore" or {refuse: ErrSomething}, not a list`},
		{"a policy naming no error", "unhandled: ignore\n", "{}", "t.yaml:11:3: error ErrNo is declared but never used"},
	} {
		src := strings.Replace(base, policy, c.policy, 1)
		src = strings.Replace(src, "  A: {}\n", "  A: "+c.stateA+"\n", 1)
		if got := loadErr(t, src); got != c.want {
			t.Errorf("%s: got\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
}

// A field that a guard's or action's uses names and no event has is
// reported once, where uses names it, with the field meant; one that
// some event has is reported at each row whose event lacks it.
func TestFieldNoEventHas(t *testing.T) {
	src := `machine: M
package: p
initial: A
unhandled: ignore
states:
  A: {}
  B: {terminal: true}
events:
  Go: {payload: {offset: int64}}
  Stop: {}
guards:
  InOrder: {error: ErrNo, uses: [ofset]}
actions:
  Keep: {uses: [offset]}
errors:
  ErrNo: {}
rows:
  - {from: A, on: Go, if: [InOrder], to: B, do: [Keep]}
  - {from: A, on: Stop, if: [InOrder], to: B, do: [Keep]}
`
	want := "t.yaml:12:34: guard InOrder reads payload field \"ofset\", which no event has (did you mean \"offset\"?)\n" +
		"t.yaml:19:52: action Keep reads payload field \"offset\", which event Stop lacks"
	if got := loadErr(t, src); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// When an event's declaration could not be read whole, a field may
	// be declared there: the uses are reported at each row, as a field
	// the row's event lacks, and no refused name is suggested.
	for _, payload := range []string{"[offset]", "{Offset: int64}"} {
		got := loadErr(t, strings.Replace(src, "{payload: {offset: int64}}", "{payload: "+payload+"}", 1))
		if strings.Contains(got, "no event has") || strings.Contains(got, "did you mean") {
			t.Errorf("payload %s: a field reported as nowhere, or a refused name suggested:\n%s", payload, got)
		}
		if !strings.Contains(got, `t.yaml:18:28: guard InOrder reads payload field "ofset", which event Go lacks`) {
			t.Errorf("payload %s: no per-row report of the guard's field:\n%s", payload, got)
		}
	}
}

// An error's message is its text in logs and metrics: an empty one, or
// one that another error has (written or derived from its name), is
// refused where it is written; distinct messages are fine.
func TestErrorMessagesTellErrorsApart(t *testing.T) {
	// base's ErrNo is the refusal of every unhandled event; ErrYes is
	// refused by a row of its own.
	withErrors := func(errs string) string {
		src := strings.Replace(base, "errors:\n  ErrNo: {}\n", "errors:\n"+errs, 1)
		return strings.Replace(src, "  - {from: A, on: Go, to: B}\n", "  - {from: A, on: Go, to: B}\n  - {from: B, on: Go, refuse: ErrYes}\n", 1)
	}
	for _, c := range []struct{ name, errors, want string }{
		{"distinct", "  ErrNo: {}\n  ErrYes: {message: yes}\n", ""},
		{"empty", "  ErrNo: {message: \"\"}\n  ErrYes: {}\n", `t.yaml:11:20: error ErrNo has an empty message: leave message out to derive it from the name`},
		{"blank", "  ErrNo: {}\n  ErrYes: {message: \"  \"}\n", `t.yaml:12:21: error ErrYes has an empty message: leave message out to derive it from the name`},
		{"the same written", "  ErrNo: {message: shut}\n  ErrYes: {message: shut}\n", `t.yaml:12:3: error ErrYes has the message of error ErrNo (11:3), "shut": give each error its own`},
		{"written as another's derived", "  ErrNo: {}\n  ErrYes: {message: \"no\"}\n", `t.yaml:12:3: error ErrYes has the message of error ErrNo (11:3), "no": give each error its own`},
	} {
		if got := loadErr(t, withErrors(c.errors)); got != c.want {
			t.Errorf("%s: got\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
}
