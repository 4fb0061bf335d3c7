package fsm

import "testing"

func TestDidYouMean(t *testing.T) {
	names := map[string]int{"Open": 0, "Closed": 1, "Ready": 2, "Reads": 3, "Go": 4, "SizeAllowed": 5}
	for _, c := range []struct{ name, want string }{
		{"Opened", `"Open"`},   // two edits, a longer name
		{"Opn", `"Open"`},      // one edit
		{"closed", `"Closed"`}, // case only
		{"CLOSED", `"Closed"`}, // case only, however far in edits
		{"SizeAlowed", `"SizeAllowed"`},
		{"Readx", `"Reads"`}, // a tie between Ready and Reads: the first sorted
		{"Gp", ""},           // too short to guess at
		{"Shut", ""},         // too far from everything
		{"Opxxed", ""},       // three edits
	} {
		want := ""
		if c.want != "" {
			want = " (did you mean " + c.want + "?)"
		}
		if got := didYouMean(c.name, names); got != want {
			t.Errorf("didYouMean(%q) = %q, want %q", c.name, got, want)
		}
	}
	if got := didYouMean("Open", nil); got != "" {
		t.Errorf("no names: %q", got)
	}
}
