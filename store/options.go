package store

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// FS is the file system the store lives on. Default: vfs.Default.
	FS vfs.FS
	// Logger receives the store's messages and Pebble's (its informational
	// ones at debug level, its errors at warning level). Default: discard.
	Logger *slog.Logger
	// StateMachine applies entries. Default: KV.
	StateMachine StateMachine
	// SnapshotChunkSize is the size of the chunks a Snapshot reads out
	// (the last chunk of a file may be shorter). Default: 1 MiB.
	SnapshotChunkSize int
	// MaxSnapshotSize bounds the total content a Loader accepts, in bytes,
	// each file counting at least 4096 bytes (so that many empty files are
	// bounded too). Zero or negative: no limit.
	MaxSnapshotSize int64
	// MemTableSize is the size of Pebble's memtables: memory each store
	// holds (up to twice this while one is flushed) in exchange for fewer
	// flushes and compactions, from MinMemTableSize to MaxMemTableSize
	// (Open refuses another). Zero or negative: DefaultMemTableSize.
	MemTableSize int
}

const (
	// DefaultSnapshotChunkSize is the default Options.SnapshotChunkSize.
	DefaultSnapshotChunkSize = 1 << 20
	// DefaultMemTableSize is the default Options.MemTableSize.
	DefaultMemTableSize = 16 << 20
	// MinMemTableSize is the smallest Options.MemTableSize: a memtable
	// holds Pebble's empty skiplists (over 1 KiB: a smaller size makes
	// Pebble panic) and any batch under half its size, which this bound
	// leaves room for.
	MinMemTableSize = 4 << 10
	// MaxMemTableSize is the largest Options.MemTableSize: Pebble's
	// memtables stay below 4 GiB.
	MaxMemTableSize uint64 = 1<<32 - 2
)

// CheckMemTableSize reports a MemTableSize Open refuses (before it
// touches the disk): a positive one outside [MinMemTableSize,
// MaxMemTableSize].
func (o Options) CheckMemTableSize() error {
	if o.MemTableSize > 0 && (o.MemTableSize < MinMemTableSize || uint64(o.MemTableSize) > MaxMemTableSize) {
		return fmt.Errorf("store: MemTableSize %d outside [%d, %d]", o.MemTableSize, MinMemTableSize, MaxMemTableSize)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StateMachine == nil {
		o.StateMachine = KV{}
	}
	if o.SnapshotChunkSize <= 0 {
		o.SnapshotChunkSize = DefaultSnapshotChunkSize
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	return o
}

// pebbleOptions returns the options every database of the store is opened
// with (the live one and staged ones alike). events, when not nil, are
// told of flushes ending and of each error of Pebble's background work (a
// flush or a compaction that failed, which Pebble retries); they must not
// block.
func (o Options) pebbleOptions(mustExist bool, events *storeEvents) *pebble.Options {
	logger := o.Logger
	var backgroundError func(error)
	var flushEnd func(pebble.FlushInfo)
	if events != nil {
		backgroundError, flushEnd = events.backgroundError, events.flushEnd
	}
	return &pebble.Options{
		FS:               o.FS,
		Logger:           pebbleLogger{logger},
		ErrorIfNotExists: mustExist,
		MemTableSize:     uint64(o.MemTableSize),
		EventListener: &pebble.EventListener{
			// Pebble's default is fatal. A damaged table is an error of
			// the read that found it (and of a compaction reading it,
			// which Pebble retries), not a crashed process.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				logger.Error("store: on-disk corruption", "err", info.Details, "path", info.Path, "component", "pebble")
			},
			BackgroundError: backgroundError,
			FlushEnd:        flushEnd,
		},
	}
}

// KeySorting is how a shard's keys are ordered, as the leader announced it
// with the term. The store records it; its own key order is always
// byte-wise. Values outside the named ones are kept as they are.
type KeySorting int32

const (
	// KeySortingUnknown is the zero value: not announced.
	KeySortingUnknown KeySorting = 0
	// KeySortingNatural is byte-wise order.
	KeySortingNatural KeySorting = 1
	// KeySortingHierarchical is Oxia's hierarchical order ('/'-separated
	// segments, shallower keys first).
	KeySortingHierarchical KeySorting = 2
)

func (k KeySorting) String() string {
	switch k {
	case KeySortingUnknown:
		return "UNKNOWN"
	case KeySortingNatural:
		return "NATURAL"
	case KeySortingHierarchical:
		return "HIERARCHICAL"
	}
	return "KeySorting(" + strconv.Itoa(int(k)) + ")"
}

// TermOptions are the options a leader sends with a new term. The zero
// value is what "no options" is stored as.
type TermOptions struct {
	EnableNotifications bool
	KeySorting          KeySorting
}

// pebbleLogger sends Pebble's messages to a slog.Logger: informational
// ones at debug level (Pebble is chatty: "Found 0 WALs"), errors at
// warning level.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Warn(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called by Pebble when it cannot go on: a broken invariant, or
// a write or sync of its log that failed while committing. It does not
// return: it panics with a pebbleFatal, which the store's write paths turn
// into ErrFailed (see catchFatal); anywhere else the panic stands.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	f := pebbleFatal{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			f.causes = append(f.causes, err)
		}
	}
	p.l.Error(f.msg, "component", "pebble")
	panic(f)
}

// pebbleFatal is the panic value of pebbleLogger.Fatalf: Pebble's message,
// and the errors it was given (a failed write's, say).
type pebbleFatal struct {
	msg    string
	causes []error
}

// String is Pebble's message, said to be Pebble's once: also what the
// process prints of a pebbleFatal nothing recovers.
func (f pebbleFatal) String() string { return "pebble: " + strings.TrimPrefix(f.msg, "pebble: ") }

// err returns the fatal error as an error of the store: it matches
// ErrFailed and each of the errors Pebble gave (errors.Is(err,
// syscall.ENOSPC) tells a full disk), and what names it (the store's
// directory, while opening) comes before Pebble's message.
func (f pebbleFatal) err(what string) error {
	return &failure{what: what, fatal: f}
}

// failure is ErrFailed as Pebble gave up.
type failure struct {
	what  string
	fatal pebbleFatal
}

func (e *failure) Error() string {
	return ErrFailed.Error() + e.what + ": " + e.fatal.String()
}

func (e *failure) Unwrap() []error {
	return append([]error{ErrFailed}, e.fatal.causes...)
}

// catchFatal turns a pebbleFatal panic of the calling goroutine into an
// error for *errp, calling onFatal first. Other panics go on. Use it as
// defer catchFatal(&err, ...).
func catchFatal(errp *error, onFatal func(error)) {
	r := recover()
	if r == nil {
		return
	}
	f, ok := r.(pebbleFatal)
	if !ok {
		panic(r)
	}
	err := f.err("")
	if onFatal != nil {
		onFatal(err)
	}
	*errp = err
}
