package follower

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/store"
	"github.com/tablefsm/tablefsm/wal"
)

// TermOptions are the options a term is fenced with; they are persisted
// with the term.
type TermOptions = store.TermOptions

// Config configures one follower: one shard of one namespace.
type Config struct {
	// Namespace and Shard name the shard, for logs.
	Namespace string
	Shard     int64
	// Dir is the shard's directory: the log lives in Dir/wal, the store in
	// Dir/store. It is created when missing. Required.
	Dir string
	// FS is the file system of Dir. Default: the operating system's.
	FS vfs.FS
	// Logger receives the follower's messages, with namespace and shard
	// attached (and the log's and the store's, Pebble's included). A
	// panic of its handler is recovered and the record dropped: lines are
	// written from goroutines nothing else recovers, and between a
	// durable effect and the state it justifies. Default: discard.
	Logger *slog.Logger
	// Observer sees every step of the lifecycle machine. Optional.
	Observer fsm.Observer
	// StateMachine applies committed entries. Default: store.KV.
	StateMachine store.StateMachine
	// SegmentSize is the size of the log's segment files: 0 (the log's
	// default) or from wal.MinSegmentSize to wal.MaxSegmentSize; Open
	// refuses another with ErrInvalidArgument.
	SegmentSize int64
	// SnapshotChunkSize and MaxSnapshotSize bound snapshots read out and
	// taken in (see store.Options).
	SnapshotChunkSize int
	MaxSnapshotSize   int64
	// MemTableSize is the store's memtable size: from
	// store.MinMemTableSize to store.MaxMemTableSize (Open refuses another
	// with ErrInvalidArgument), or zero or negative for the store's
	// default (see store.Options).
	MemTableSize int
	// ApplyRetryMin and ApplyRetryMax bound the backoff between attempts to
	// apply an entry that failed. Defaults: 10 ms and 5 s.
	ApplyRetryMin, ApplyRetryMax time.Duration
	// TrimEvery is how many applied entries pass between two attempts to
	// drop log segments the store no longer needs. Default: 65536.
	TrimEvery int64
}

// errNoDir is what Open and Remove return for a Config without a Dir.
var errNoDir = fmt.Errorf("%w: Config.Dir is empty", ErrInvalidArgument)

// CheckSizes reports, with ErrInvalidArgument, a SegmentSize the log
// would refuse or a MemTableSize the store would: Open checks them
// before it touches the disk (a mistake of the caller's, not a storage
// failure). It checks nothing else, so a template for many shards'
// configurations, with no Dir yet, can be checked once.
func (c Config) CheckSizes() error {
	if err := (wal.Options{SegmentSize: c.SegmentSize}).CheckSegmentSize(); err != nil {
		return fmt.Errorf("%w: Config.SegmentSize: %w", ErrInvalidArgument, err)
	}
	if err := (store.Options{MemTableSize: c.MemTableSize}).CheckMemTableSize(); err != nil {
		return fmt.Errorf("%w: Config.MemTableSize: %w", ErrInvalidArgument, err)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Dir != "" {
		c.Dir = filepath.Clean(c.Dir) // its parent is where Delete moves it
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Logger = c.Logger.With("namespace", c.Namespace, "shard", c.Shard)
	if c.StateMachine == nil {
		c.StateMachine = store.KV{}
	}
	if c.ApplyRetryMin <= 0 {
		c.ApplyRetryMin = 10 * time.Millisecond
	}
	if c.ApplyRetryMax < c.ApplyRetryMin {
		c.ApplyRetryMax = max(5*time.Second, c.ApplyRetryMin)
	}
	if c.TrimEvery <= 0 {
		c.TrimEvery = 1 << 16
	}
	return c
}
