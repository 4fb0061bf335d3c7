package store

import "errors"

// Sentinel errors. Match them with errors.Is: most are returned wrapped with
// context. Errors that are none of these (for example a failing disk) are
// I/O failures, returned wrapped with their cause.
var (
	// ErrClosed is returned by every method of a closed Store, Snapshot or
	// Loader (Close itself returns nil).
	ErrClosed = errors.New("store: closed")

	// ErrNotFound is returned by Get for a key that has no value.
	ErrNotFound = errors.New("store: not found")

	// ErrInvalidTerm is returned by SetTerm for a negative term or a term
	// below the stored one: the term never regresses.
	ErrInvalidTerm = errors.New("store: invalid term")

	// ErrOutOfOrder is returned by Apply for an entry that is not the one
	// right after the commit point (offset commit+1, term not below the
	// commit's term, and not negative). Nothing is written.
	ErrOutOfOrder = errors.New("store: entry out of order")

	// ErrInvalidEntry is returned (wrapped) by a state machine for an entry
	// whose value it cannot decode. The default KV state machine returns
	// it for a value that is not a kvpb.WriteBatch. Nothing is written.
	ErrInvalidEntry = errors.New("store: invalid entry")

	// ErrInvalidSnapshot is returned by a Loader (and Install) for a chunk
	// sequence that breaks the rules (order, counts, names, size) or a
	// staged set that does not open as a valid store carrying a term and a
	// commit id. The staged files are removed and the live store is
	// untouched.
	ErrInvalidSnapshot = errors.New("store: invalid snapshot")

	// ErrFailed is returned by every write of a store whose database hit a
	// fatal write or sync error: what reached the disk is unknown, and the
	// database takes no more writes. Reads still work; Close, then Open
	// again, to recover. The error also matches the error Pebble gave up
	// on, where it gave one: errors.Is(err, syscall.ENOSPC) tells a full
	// disk. (Some of Pebble's fatal errors end the process
	// instead: docs/store.md lists them.)
	ErrFailed = errors.New("store: failed")

	// ErrCorrupt is returned by Open when the store directory or the live
	// database holds something the store never writes: an unreadable
	// marker, a missing database, a malformed reserved record.
	ErrCorrupt = errors.New("store: corrupt")
)
