package wal

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the package returns starts with "wal: " and
// the ones a caller can act on match one of these with errors.Is.
var (
	// ErrClosed: the log (or the reader) is closed.
	ErrClosed = errors.New("wal: closed")
	// ErrGap: an appended entry's offset is not the last offset + 1.
	ErrGap = errors.New("wal: offset gap")
	// ErrOutOfRange: an offset outside what the operation accepts (a
	// negative first offset, a truncation beyond the last appended entry).
	ErrOutOfRange = errors.New("wal: offset out of range")
	// ErrTooLarge: an entry value larger than MaxValueSize.
	ErrTooLarge = errors.New("wal: entry too large")
	// ErrNotEmpty: SeedChain on a log that holds entries.
	ErrNotEmpty = errors.New("wal: log not empty")
	// ErrCorrupt marks damaged data: a record or file that fails its
	// checks where a valid one must be.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrTrimmed: a reader asked for an offset below the first entry of
	// the log: removed from its start by Trim (or a Clear followed by new
	// entries), or never in it (the log's first entry came after it).
	ErrTrimmed = errors.New("wal: offset trimmed")
	// ErrCaughtUp: a forward reader has returned every durable entry. A
	// later call returns the entries made durable since.
	ErrCaughtUp = errors.New("wal: no more durable entries yet")
	// ErrLogChanged: TruncateLog or Clear removed entries this reader had
	// returned or was returning. The reader is unusable; open a new one.
	ErrLogChanged = errors.New("wal: log truncated under the reader")
	// ErrFailed: a write or sync failed, so what is on disk is unknown. The
	// log refuses further writes; Close it and Open it again to recover.
	ErrFailed = errors.New("wal: failed")
)

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}
