package logpos

import "testing"

func TestEntryIDString(t *testing.T) {
	if got := NoEntry.String(); got != "{-1,-1}" {
		t.Fatalf("NoEntry.String() = %q", got)
	}
	if got := (EntryID{Term: 3, Offset: 42}).String(); got != "{3,42}" {
		t.Fatalf("String() = %q", got)
	}
	if !NoEntry.IsNone() || (EntryID{Term: 1, Offset: 0}).IsNone() {
		t.Fatal("IsNone wrong")
	}
	// The offset alone decides: a log emptied by a leader of term 2 has
	// no entry, and an entry is one whatever its term.
	if !(EntryID{Term: 2, Offset: NoOffset}).IsNone() || (EntryID{Term: NoTerm, Offset: 5}).IsNone() {
		t.Fatal("IsNone looks at the term")
	}
}
