// Package logpos names the positions and entries of a replicated log:
// terms, offsets, the (term, offset) identity of an entry, and the entry
// itself. Every other package speaks in these types so that a term can
// never be passed where an offset is meant.
package logpos

import "strconv"

// Term is a leader's epoch. Terms never decrease on a replica.
type Term int64

// Offset is the position of an entry in the log. Offsets are contiguous.
type Offset int64

const (
	// NoTerm means "no term yet": a replica that was never fenced.
	NoTerm Term = -1
	// NoOffset means "no entry": an empty log or nothing committed.
	NoOffset Offset = -1
)

// EntryID identifies one log entry by the term that wrote it and its offset.
type EntryID struct {
	Term   Term
	Offset Offset
}

// NoEntry is the EntryID of "nothing": {-1, -1}.
var NoEntry = EntryID{Term: NoTerm, Offset: NoOffset}

// IsNone reports whether id is NoEntry's offset (no entry at all).
func (id EntryID) IsNone() bool { return id.Offset == NoOffset }

func (id EntryID) String() string {
	return "{" + strconv.FormatInt(int64(id.Term), 10) + "," + strconv.FormatInt(int64(id.Offset), 10) + "}"
}

// Entry is one record of the log: the value a leader of Term wrote at
// Offset. Timestamp is the leader's, in milliseconds since the Unix epoch.
type Entry struct {
	Term      Term
	Offset    Offset
	Value     []byte
	Timestamp uint64
}

// ID returns the entry's (term, offset).
func (e Entry) ID() EntryID { return EntryID{Term: e.Term, Offset: e.Offset} }
