package emit

import (
	"errors"
	"testing"
)

// What CommonMark does not read as a fence opens no code block, so the
// markers after it are found: four spaces before the backticks (an
// indented code line), two backticks only, and backticks with a backtick
// in their info string (an inline code span). A line of backticks with
// text after it closes no block, so markers after it inside the block
// stay code.
func TestEmbedFencesAsCommonMarkReadsThem(t *testing.T) {
	diagram := []byte("stateDiagram-v2\n")
	for name, before := range map[string]string{
		"indented four spaces":        "Text.\n\n    ```\n\n",
		"two backticks":               "``x\n\n",
		"backtick in info":            "```a`b```\n\n",
		"closed by a longer fence":    "```\n" + BeginMarker + "\n````\n\n",
		"closed by an indented fence": "~~~\n" + EndMarker + "\n   ~~~ \n\n",
	} {
		doc := before + BeginMarker + "\nold\n" + EndMarker + "\n"
		got, err := Embed([]byte(doc), diagram)
		want := before + BeginMarker + "\n```mermaid\nstateDiagram-v2\n```\n" + EndMarker + "\n"
		if err != nil || string(got) != want {
			t.Errorf("%s: Embed = %q, %v; want %q", name, got, err, want)
		}
	}
	sample := "```\n```go\n" + BeginMarker + "\n" + EndMarker + "\n```\n"
	if _, err := Embed([]byte(sample), diagram); !errors.Is(err, ErrNoMarkers) {
		t.Errorf("markers after a fence with an info string inside a code block: %v, want ErrNoMarkers", err)
	}
}
