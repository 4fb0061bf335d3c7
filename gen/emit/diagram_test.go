package emit

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"unicode"

	"github.com/tablefsm/tablefsm/fsm"
)

func TestEmbedMarkersOnTheirOwnLines(t *testing.T) {
	doc := "# Title\n\nThe markers are `" + BeginMarker + "` and `" + EndMarker + "`.\n\n" +
		BeginMarker + "\nold diagram\n" + EndMarker + "\n\nAfter.\n"
	got, err := Embed([]byte(doc), []byte("stateDiagram-v2\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "# Title\n\nThe markers are `" + BeginMarker + "` and `" + EndMarker + "`.\n\n" +
		BeginMarker + "\n```mermaid\nstateDiagram-v2\n```\n" + EndMarker + "\n\nAfter.\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := Embed([]byte("inline `"+BeginMarker+"` only "+EndMarker), nil); !errors.Is(err, ErrNoMarkers) {
		t.Fatalf("markers inside a line: %v", err)
	}
	if _, err := Embed([]byte(EndMarker+"\n"+BeginMarker+"\n"), nil); !errors.Is(err, ErrNoMarkers) {
		t.Fatalf("markers in the wrong order: %v", err)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// States named like Mermaid's keywords are drawn under ids of their own,
// labelled with their names. testdata/keywords.mmd.golden, which `make
// verify` parses with the Mermaid library, has every keyword of its state
// diagram lexer as a state.
func TestMermaidKeywordStates(t *testing.T) {
	src := []byte("machine: Doc\npackage: doc\ninitial: State\nunhandled: ignore\n" +
		"states:\n  State: {}\n  Note: {}\n  End_: {}\n  End: {terminal: true}\n" +
		"events:\n  Next: {}\n" +
		"rows:\n  - {from: State, on: Next, to: Note}\n  - {from: Note, on: Next, to: End_}\n  - {from: End_, on: Next, to: End}\n")
	table, err := fsm.Load("doc.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	got := string(Mermaid(table))
	for _, want := range []string{
		"state \"State\" as State_\n", "state \"Note\" as Note_\n", "state \"End\" as End__\n",
		"[*] --> State_\n", "State_ --> Note_: Next\n", "Note_ --> End_: Next\n", "End_ --> End__: Next\n",
		"End__ --> [*]\n", "note right of Note_\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the diagram lacks %q:\n%s", want, got)
		}
	}

	keywords := []string{"State", "Note", "Class", "ClassDef", "Style", "Click", "Href", "Direction", "End",
		"Default", "Scale", "AccTitle", "AccDescr", "StateDiagram"}
	var yaml strings.Builder
	yaml.WriteString("machine: Keywords\npackage: keywords\ninitial: State\nunhandled: ignore\nstates:\n")
	for i, k := range keywords {
		fmt.Fprintf(&yaml, "  %s: {doc: %s, terminal: %v}\n", k, k, i == len(keywords)-1)
	}
	yaml.WriteString("events:\n  Next: {}\nrows:\n")
	for i := range keywords[1:] {
		fmt.Fprintf(&yaml, "  - {from: %s, on: Next, to: %s}\n", keywords[i], keywords[i+1])
	}
	table, err = fsm.Load("keywords.yaml", []byte(yaml.String()))
	if err != nil {
		t.Fatal(err)
	}
	diagram := Mermaid(table)
	for _, k := range keywords {
		if !strings.Contains(string(diagram), fmt.Sprintf("state \"%s\" as %s_\n", k, k)) {
			t.Errorf("state %s is drawn under its own name:\n%s", k, diagram)
		}
	}
	const golden = "testdata/keywords.mmd.golden"
	if *update {
		if err := os.WriteFile(golden, diagram, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./gen/emit -update writes it)", err)
	}
	if !bytes.Equal(diagram, want) {
		t.Errorf("%s differs from what Mermaid emits now; review with go test ./gen/emit -update && git diff\n%s", golden, diagram)
	}
}

// Control characters in docs do not reach the DOT file, which Graphviz
// would refuse or cut short (a NUL ends its strings); a line break is \n.
func TestDOTWithoutControlCharacters(t *testing.T) {
	src := []byte("machine: Odd\npackage: odd\ninitial: Open\nunhandled: ignore\n" +
		"states:\n  Open: {doc: \"a\\0b\\rc\\td\\ne\\r\\nf\\u2028g\\u0085h\\x7fi\\\\N\"}\n  Done: {terminal: true}\n" +
		"events:\n  Finish: {}\n" +
		"rows:\n  - {from: Open, on: Finish, to: Done}\n")
	table, err := fsm.Load("odd.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	dot := string(DOT(table))
	if i := strings.IndexFunc(dot, func(r rune) bool { return r != '\n' && unicode.IsControl(r) }); i >= 0 {
		t.Errorf("the DOT file holds %q:\n%s", dot[i], dot)
	}
	if want := `tooltip="ab\nc d\ne\nf\ng\nh i\\N"`; !strings.Contains(dot, want) {
		t.Errorf("the DOT file lacks %s:\n%s", want, dot)
	}
	if got := mermaidText("a\x00b\nc\rd\te;f#g"); got != "ab c d e,fg" {
		t.Errorf("mermaidText = %q", got)
	}
}
