package emit

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
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
	// Markers it cannot take are errors naming their line.
	for _, c := range []struct{ doc, want string }{
		{EndMarker + "\n" + BeginMarker + "\n", "line 1: the end marker comes before the begin marker (line 2)"},
		{"a\n" + BeginMarker + "\n", "line 2: a begin marker with no end marker"},
		{"a\n\n" + EndMarker + "\n", "line 3: an end marker with no begin marker"},
		{BeginMarker + "\nx\n" + EndMarker + "\n" + BeginMarker + "\ny\n" + EndMarker + "\n", "line 4: a second begin marker (the first is on line 1)"},
		{BeginMarker + "\nx\n" + EndMarker + "\n" + EndMarker + "\n", "line 4: a second end marker (the first is on line 3)"},
	} {
		_, err := Embed([]byte(c.doc), nil)
		if _, ok := errors.AsType[*MarkerError](err); !ok || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Embed(%q): %v, want a MarkerError %q", c.doc, err, c.want)
		}
	}
	for _, c := range []struct{ name, doc, want string }{
		// Spaces after a marker (an editor's leftovers) leave it a marker.
		{"markers followed by spaces",
			"Before.\n" + BeginMarker + " \t\r\nold\r\n" + EndMarker + "  \r\nAfter.\r\n",
			"Before.\n" + BeginMarker + " \t\r\n```mermaid\r\nstateDiagram-v2\r\n```\r\n" + EndMarker + "  \r\nAfter.\r\n"},
		// Up to three spaces may indent a marker, as any HTML line of
		// Markdown; the indentation stays. Four make an indented code
		// block (below).
		{"indented markers",
			"Before.\n   " + BeginMarker + "\nold\n  " + EndMarker + "\nAfter.\n",
			"Before.\n   " + BeginMarker + "\n```mermaid\nstateDiagram-v2\n```\n  " + EndMarker + "\nAfter.\n"},
	} {
		got, err := Embed([]byte(c.doc), []byte("stateDiagram-v2\n"))
		if err != nil || string(got) != c.want {
			t.Fatalf("%s: got %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if _, err := Embed([]byte("    "+BeginMarker+"\nold\n    "+EndMarker+"\n"), nil); !errors.Is(err, ErrNoMarkers) {
		t.Fatalf("markers indented by four spaces: %v, want ErrNoMarkers", err)
	}
}

// Markers shown in a fenced code block (a page explaining how to embed
// the diagram) are code, not markers: the diagram goes between the
// markers outside it, and the sample stays as written.
func TestEmbedSkipsCodeBlocks(t *testing.T) {
	sample := "```markdown\n" + BeginMarker + "\n" + EndMarker + "\n```\n\n" +
		"~~~~\n" + BeginMarker + "\n```\n" + EndMarker + "\n~~~~\n\n" +
		"````\n" + BeginMarker + "\n```\n" + EndMarker + "\n````\n\n"
	doc := "# Title\n\nPut these lines in your page:\n\n" + sample +
		BeginMarker + "\nold diagram\n" + EndMarker + "\n"
	got, err := Embed([]byte(doc), []byte("stateDiagram-v2\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "# Title\n\nPut these lines in your page:\n\n" + sample +
		BeginMarker + "\n```mermaid\nstateDiagram-v2\n```\n" + EndMarker + "\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// Embedding again finds the markers past the diagram's own block.
	again, err := Embed(got, []byte("stateDiagram-v2\n"))
	if err != nil || string(again) != want {
		t.Fatalf("embedding again: %v\n%s", err, again)
	}
	if _, err := Embed([]byte(sample), nil); !errors.Is(err, ErrNoMarkers) {
		t.Fatalf("markers only in code blocks: %v", err)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// States that Mermaid's lexer may read as something else are drawn under
// ids of their own, labelled with their names: the words of its state
// diagram lexer, those followed by what its \b takes for a word's end
// ("Clické"), and names starting with a direction (TB, BT, RL, LR), which
// after a line ending in "direction" would make both lines a direction
// statement. testdata/keywords.mmd.golden, which `make verify` checks
// with the Mermaid library (it must parse, and read every transition
// drawn), has all of them.
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
		"state \"State\" as _State\n", "state \"Note\" as _Note\n", "state \"End\" as _End\n",
		"[*] --> _State\n", "_State --> _Note: Next\n", "_Note --> End_: Next\n", "End_ --> _End: Next\n",
		"_End --> [*]\n", "note right of _End\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the diagram lacks %q:\n%s", want, got)
		}
	}

	reserved := []string{"State", "Note", "Class", "ClassDef", "Style", "Click", "Href", "Direction", "End",
		"Default", "Scale", "AccTitle", "AccDescr", "StateDiagram",
		"Clické", "Hrefé", "Defaulté", "Lrb", "Tb", "BtX", "RLé"}
	kept := []string{"Clicks", "Ending", "Lead", "Trb"}
	for _, name := range append(slices.Clone(reserved), kept...) {
		if got, want := mermaidReserved(name), slices.Contains(reserved, name); got != want {
			t.Errorf("mermaidReserved(%q) = %v, want %v", name, got, want)
		}
	}
	// Each state is reached by an event ending in "Direction" (as is the
	// initial state, by the line drawing [*]), so that a line ending in
	// "direction" comes before each state's line.
	states := append(slices.Clone(reserved), kept...)
	var yaml strings.Builder
	yaml.WriteString("machine: Keywords\npackage: keywords\ninitial: XDirection\nunhandled: ignore\nstates:\n  XDirection: {}\n")
	for i, k := range states {
		fmt.Fprintf(&yaml, "  %s: {doc: %s, terminal: %v}\n", k, k, i == len(states)-1)
	}
	// Only the initial state has a row for Wait: every other state has
	// a note, which names it by its id.
	yaml.WriteString("events:\n  SetDirection: {}\n  Wait: {}\nrows:\n  - {from: XDirection, on: Wait, noop: true}\n  - {from: XDirection, on: SetDirection, to: " + states[0] + "}\n")
	for i := range states[1:] {
		fmt.Fprintf(&yaml, "  - {from: %s, on: SetDirection, to: %s}\n", states[i], states[i+1])
	}
	table, err = fsm.Load("keywords.yaml", []byte(yaml.String()))
	if err != nil {
		t.Fatal(err)
	}
	diagram := Mermaid(table)
	for _, k := range reserved {
		if !strings.Contains(string(diagram), fmt.Sprintf("state \"%s\" as _%s\n", k, k)) {
			t.Errorf("state %s is drawn under its own name:\n%s", k, diagram)
		}
	}
	for _, k := range kept {
		if strings.Contains(string(diagram), "_"+k) {
			t.Errorf("state %s is drawn under another id:\n%s", k, diagram)
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
