package follower

import "errors"

// The errors of the follower besides those its lifecycle table declares
// (ErrInvalidArgument, ErrInvalidTerm, ErrInvalidStatus, ErrConflict,
// ErrNotMember, ErrStreamEnded, ErrClosed, in lifecycle_fsm.go). Match
// every one with errors.Is; they arrive wrapped with detail.
var (
	// ErrGap: an Append's offset is neither a duplicate nor the one right
	// after the head. The stream fails; nothing is written.
	ErrGap = errors.New("follower: gap in the log")
	// ErrUnavailable: the WAL or the store failed. It wraps the cause; the
	// operation changed nothing and the follower stays usable.
	ErrUnavailable = errors.New("follower: storage unavailable")
)
