package emit

import (
	"errors"
	"testing"
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
