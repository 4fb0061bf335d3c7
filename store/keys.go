package store

import (
	"encoding/binary"
	"fmt"

	"github.com/tablefsm/tablefsm/logpos"
)

// Key space of the Pebble database. Every stored key starts with one byte
// that says whose it is:
//
//	0x00 <name>     reserved records of the store (see below)
//	0x01 <user key> the state machine's data
//
// A user key k is stored as 0x01+k, so no user key, write, delete or range
// delete can reach a reserved record, whatever its bytes.
const (
	sysPrefix  byte = 0x00
	userPrefix byte = 0x01
)

// Reserved records. Values are fixed-width big-endian.
var (
	// keyFormat holds formatVersion (uint64). Written when a database is
	// created; a database without it is not a store.
	keyFormat = []byte("\x00format")
	// keyTerm holds the term (int64), logpos.NoTerm until SetTerm.
	keyTerm = []byte("\x00term")
	// keyTermOptions holds the term options (see encodeTermOptions).
	keyTermOptions = []byte("\x00term-options")
	// keyCommit holds the id of the last applied entry (term, offset),
	// logpos.NoEntry until the first Apply.
	keyCommit = []byte("\x00commit")
	// keyLogReset, when present, says that this database was installed from
	// a snapshot whose commit id it holds, and that the owner of the log has
	// not yet confirmed (ClearLogReset) that it cleared its log.
	keyLogReset = []byte("\x00log-reset")
)

// formatVersion is the layout of the reserved records described above.
const formatVersion uint64 = 1

var (
	// userLowerBound and userUpperBound bound the user key space.
	userLowerBound = []byte{userPrefix}
	userUpperBound = []byte{userPrefix + 1}
)

// userKey appends the stored form of the user key k to dst.
func userKey(dst, k []byte) []byte {
	dst = append(dst, userPrefix)
	return append(dst, k...)
}

func encodeUint64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

func encodeTerm(t logpos.Term) []byte { return encodeUint64(uint64(t)) }

func encodeEntryID(id logpos.EntryID) []byte {
	b := make([]byte, 0, 16)
	b = binary.BigEndian.AppendUint64(b, uint64(id.Term))
	return binary.BigEndian.AppendUint64(b, uint64(id.Offset))
}

// appendEntryID is encodeEntryID into a caller's buffer (no allocation on
// the apply path).
func appendEntryID(dst []byte, id logpos.EntryID) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(id.Term))
	return binary.BigEndian.AppendUint64(dst, uint64(id.Offset))
}

func decodeUint64(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("length %d, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func decodeTerm(v []byte) (logpos.Term, error) {
	u, err := decodeUint64(v)
	if err != nil {
		return 0, err
	}
	t := logpos.Term(int64(u))
	if t < logpos.NoTerm {
		return 0, fmt.Errorf("term %d", t)
	}
	return t, nil
}

func decodeEntryID(v []byte) (logpos.EntryID, error) {
	if len(v) != 16 {
		return logpos.EntryID{}, fmt.Errorf("length %d, want 16", len(v))
	}
	id := logpos.EntryID{
		Term:   logpos.Term(int64(binary.BigEndian.Uint64(v))),
		Offset: logpos.Offset(int64(binary.BigEndian.Uint64(v[8:]))),
	}
	if id.Term < logpos.NoTerm || id.Offset < logpos.NoOffset {
		return logpos.EntryID{}, fmt.Errorf("entry id %v", id)
	}
	return id, nil
}

// Term options are stored as one flags byte (bit 0: notifications) and
// the key sorting as a big-endian int32.
const termOptionsLen = 5

func encodeTermOptions(o TermOptions) []byte {
	b := make([]byte, 1, termOptionsLen)
	if o.EnableNotifications {
		b[0] |= 1
	}
	return binary.BigEndian.AppendUint32(b, uint32(o.KeySorting))
}

func decodeTermOptions(v []byte) (TermOptions, error) {
	if len(v) != termOptionsLen {
		return TermOptions{}, fmt.Errorf("length %d, want %d", len(v), termOptionsLen)
	}
	if v[0]&^1 != 0 {
		return TermOptions{}, fmt.Errorf("unknown flags %#x", v[0])
	}
	return TermOptions{
		EnableNotifications: v[0]&1 != 0,
		KeySorting:          KeySorting(int32(binary.BigEndian.Uint32(v[1:]))),
	}, nil
}
