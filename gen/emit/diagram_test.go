package emit

import (
	"errors"
	"strings"
	"testing"

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

// States named like Mermaid's keywords are drawn under ids of their own,
// labelled with their names.
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
}
