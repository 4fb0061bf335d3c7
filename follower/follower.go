package follower

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/internal/durable"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
	"github.com/tablefsm/tablefsm/wal"
)

// Follower is the follower replica of one shard. Every state change goes
// through its Lifecycle machine, generated from transitions.yaml, whose
// guards and actions are written by hand on the follower's fields; its
// methods are the operations of docs/spec.md §2 (NewTerm, Truncate, the
// log synchronizer Replicate, the snapshot installer InstallSnapshot,
// Status, Delete, Close), and the applier runs beside them.
//
// Concurrency: control operations (NewTerm, Truncate, Delete, Close, and
// the attach and commit steps of streams and installs) are serialized by
// the lifecycle lock. Status is lock-free. The per-entry path of a stream
// takes no lifecycle lock.
type Follower struct {
	cfg Config
	dir string
	// log is replaced only when it is reopened after a failure, under the
	// lifecycle lock and the applier's, with no stream attached, and
	// under logSwap: the sync loop of an ended stream, which cannot take
	// the lifecycle lock, reads it under logSwap.
	log     *wal.Log
	logSwap sync.Mutex
	// st is the store; replaced only when it is reopened after a failure,
	// under the lifecycle lock and the applier's.
	st atomic.Pointer[store.Store]
	m  *lifecycle

	// lock is the lifecycle lock: a channel so that a stream's goroutines
	// can stop waiting for it when their stream is ended.
	lock chan struct{}
	// closing is closed when the follower closes (Close or Delete): an
	// install waiting for its next chunk stops waiting.
	closing chan struct{}
	// Guarded by lock.
	stream  *replication  // the attached replication stream, or nil
	install *installation // the attached snapshot install, or nil
	// reply is what the last NewTerm or Truncate action computed for its
	// caller.
	reply logpos.EntryID
	// closeErr is what closing the log and the store returned.
	closeErr error
	// repairErr is why the current control operation could not repair
	// the log or the store (see control), or nil. The actions that need
	// them fail with it; the guards, which need neither, run first.
	repairErr error
	// logFailed and storeFailed: the log or the store failed and must be
	// reopened before it is used again (their failures are sticky).
	logFailed   atomic.Bool
	storeFailed atomic.Bool
	// commitFloor is the commit the follower had reached when its store
	// failed and came back with an older one (applied batches are not
	// synced one by one), or NoOffset. Until the applier has applied the
	// entries again up to it, it is the commit reported and reads fail
	// with ErrUnavailable: the commit never goes back without a restart.
	commitFloor atomic.Int64
	// streamEnded, when a test sets it (before any stream attaches), is
	// called by Replicate once its stream ended, before it waits for the
	// stream's receive loop.
	streamEnded func(*replication)
	// entryAppended, when a test sets it (before any stream attaches), is
	// called by a stream's receive loop with the offset of each new entry
	// once the log holds it, before it becomes the head.
	entryAppended func(logpos.Offset)

	// Published for lock-free readers.
	term atomic.Int64 // the current term
	// view is the term and state as the last lifecycle operation left
	// them, published together when it releases the lifecycle lock, so
	// that Status never pairs one operation's term with another's state.
	view       atomic.Pointer[termState]
	head       atomic.Int64 // the last appended offset
	advertised atomic.Int64 // the highest commit offset a leader sent
	// base is the highest offset a snapshot covered: offsets at or below it
	// count as durable even though the log does not hold them.
	base atomic.Int64

	applier applier
	stats   stats
	// goroutines counts every goroutine the follower started; Close waits
	// for them.
	goroutines sync.WaitGroup
}

// termState is a term and the state that goes with it.
type termState struct {
	term  logpos.Term
	state State
}

// Status is a snapshot of a follower's position.
type Status struct {
	Term   logpos.Term
	State  State
	Head   logpos.Offset // the last appended offset
	Commit logpos.Offset // the last offset applied to the store
}

// Open opens the follower of one shard in cfg.Dir, creating it when
// missing. Term and commit come from the store; the head is the last
// durable log offset, or the commit when the log holds nothing after it. A
// snapshot install that a crash interrupted is completed or rolled back.
// The follower starts NotMember when no term is stored, Fenced otherwise.
// One follower at a time may have a directory open: another's (in this
// process or another) makes Open fail with ErrUnavailable, as a storage
// failure does; a Config it cannot take, with ErrInvalidArgument.
func Open(cfg Config) (*Follower, error) {
	if cfg.Dir == "" {
		return nil, errNoDir
	}
	if err := cfg.CheckSizes(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	f := &Follower{cfg: cfg, dir: cfg.Dir, lock: make(chan struct{}, 1), closing: make(chan struct{})}
	f.term.Store(int64(logpos.NoTerm)) // until the store is read
	f.cfg.Logger = slog.New(termHandler{cfg.Logger.Handler(), &f.term})
	f.commitFloor.Store(int64(logpos.NoOffset))
	if err := cfg.FS.RemoveAll(durable.DeletedDir(cfg.FS, cfg.Dir)); err != nil {
		return nil, fmt.Errorf("%w: removing what a Delete left: %w", ErrUnavailable, err)
	}
	if err := durable.MkdirAll(cfg.FS, cfg.Dir); err != nil {
		return nil, fmt.Errorf("%w: creating %s: %w", ErrUnavailable, cfg.Dir, err)
	}
	st, err := f.openStore()
	if err != nil {
		return nil, fmt.Errorf("%w: opening the store: %w", ErrUnavailable, err)
	}
	f.st.Store(st)
	// Should anything below panic (an observer's or a logger's bug), what
	// is open is closed before the panic goes on: a caller that recovers
	// from it can open the follower again.
	defer func() {
		if r := recover(); r != nil {
			if f.log != nil {
				_ = f.log.Close()
			}
			_ = f.store().Close()
			panic(r)
		}
	}()
	f.term.Store(int64(st.Term())) // before the log's recovery, which may log
	commit := st.Commit()
	log, err := f.openLog(mustKeep(st))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%w: opening the log: %w", ErrUnavailable, err), st.Close())
	}
	f.log = log
	if _, pending := st.LogResetPending(); pending {
		// A snapshot was swapped in but the log not yet cleared.
		if err := f.resetLog(); err != nil {
			return nil, errors.Join(err, log.Close(), st.Close())
		}
	}
	f.base.Store(int64(commit.Offset))
	f.head.Store(int64(max(log.LastDurable().Offset, commit.Offset)))
	f.advertised.Store(int64(commit.Offset))
	f.m = newLifecycle(hooks{f})
	f.m.SetObserver(transitionLog{f, cfg.Observer})
	if term := st.Term(); term != logpos.NoTerm {
		if err := f.m.Restore(term); err != nil {
			return nil, errors.Join(err, log.Close(), st.Close())
		}
	}
	f.publish()
	f.logger().Info("follower opened", "state", f.m.State().String(), "head", f.head.Load(), "commit", commit.Offset)
	f.applier.start(f)
	return f, nil
}

// control starts a control operation: it takes the lifecycle lock, then
// pauses the applier (so that the commit the guards read stays put), and
// repairs the log and the store if an earlier failure left them needing
// it. A repair that fails is kept in repairErr: the operation's checks
// still run in their order, and it fails with ErrUnavailable only once
// they pass and an action needs what could not be repaired (SPEC §2: the
// first failing check decides the error). The returned function releases
// both locks.
func (f *Follower) control() (release func()) {
	f.acquire()
	f.applier.mu.Lock()
	release = func() {
		f.repairErr = nil
		f.applier.mu.Unlock()
		f.release()
	}
	defer releaseOnPanic(release)
	f.repairErr = f.repairLocked()
	return release
}

// underControl runs fire as a control operation (see control), releasing
// the locks however it ends.
func (f *Follower) underControl(fire func() error) error {
	defer f.control()()
	return fire()
}

// releaseOnPanic, deferred, calls release when the function deferring it
// panics, and lets the panic go on: a recovered panic up the stack (the
// gRPC server turns one into an error) must not leave a lock held.
func releaseOnPanic(release func()) {
	if r := recover(); r != nil {
		release()
		panic(r)
	}
}

// store returns the store.
func (f *Follower) store() *store.Store { return f.st.Load() }

// commit is the follower's commit: the store's, or the commit it had
// reached before its store failed, until the store is back there.
func (f *Follower) commit() logpos.Offset {
	return max(f.store().Commit().Offset, logpos.Offset(f.commitFloor.Load()))
}

// noteLogError remembers that the log or the store failed: their failures
// are sticky until they are reopened, which the next control operation
// (or the applier's next retry) does.
func (f *Follower) noteLogError(err error) {
	if errors.Is(err, wal.ErrFailed) {
		f.logFailed.Store(true)
	}
	if errors.Is(err, store.ErrFailed) {
		f.storeFailed.Store(true)
	}
}

// repairLocked reopens a store or a log that failed, and finishes a log
// reset that a snapshot install could not complete. The caller holds the
// lifecycle lock and the applier's. The log of an attached stream is left
// alone: the stream's end repairs it.
func (f *Follower) repairLocked() error {
	if f.m.State() == StateClosed {
		return nil // the machine refuses
	}
	if f.storeFailed.Load() {
		f.applier.resetLocked()
		reached := f.commit()
		_ = f.store().Close() // returns the failure we already know
		st, err := f.openStore()
		if err != nil {
			return fmt.Errorf("%w: reopening the store: %w", ErrUnavailable, err)
		}
		if point, reset := st.LogResetPending(); reset {
			// The store is the snapshot's: so are commit, head and base,
			// whether or not the log's reset below succeeds.
			f.commitFloor.Store(int64(logpos.NoOffset))
			f.base.Store(int64(point.Offset))
			f.head.Store(int64(point.Offset))
			f.advertised.Store(int64(point.Offset))
		} else if st.Commit().Offset < reached {
			// The store lost applied batches: until it has them again,
			// the commit stays where it was. (A store that a snapshot
			// replaced has the snapshot's commit, below or not.)
			f.commitFloor.Store(int64(reached))
		}
		f.st.Store(st)
		f.storeFailed.Store(false)
		f.applier.notify() // a snapshot the store finished installing may have applied more
		f.applier.kick()   // what the store lost is applied again
		f.logger().Warn("store reopened after a failure", "commit", st.Commit(), "stored_term", st.Term())
	}
	// Checked at every repair, not only when the store comes back: an
	// adoption that failed (say, on the log) is retried by the next.
	if err := f.adoptStoredTerm(f.store()); err != nil {
		return err
	}
	if f.stream != nil {
		return nil
	}
	if err := f.reopenLogIfFailed(); err != nil {
		return err
	}
	if point, pending := f.store().LogResetPending(); pending {
		if err := f.resetLog(); err != nil {
			return err
		}
		// As after an install: the log is empty at the snapshot point,
		// which is the commit.
		f.applier.resetLocked()
		f.commitFloor.Store(int64(logpos.NoOffset))
		f.base.Store(int64(point.Offset))
		f.head.Store(int64(point.Offset))
		f.advertised.Store(int64(point.Offset))
	}
	return nil
}

// adoptStoredTerm follows the store's term when it is above the
// follower's: it was written by a NewTerm or an install that failed when
// the store did, but whose write reached the disk after all:
// it stands (a restart would read it), so the follower completes what that
// NewTerm would have done, through the machine: a NotMember one is
// restored to Fenced, any other fenced again at that term (the stream or
// install attached ends, and the term is persisted again, durably). The
// caller holds the lifecycle lock and the applier's.
func (f *Follower) adoptStoredTerm(st *store.Store) error {
	stored := st.Term()
	if stored <= logpos.Term(f.term.Load()) {
		return nil
	}
	if f.m.State() == StateNotMember {
		f.term.Store(int64(stored))
		return f.m.Restore(stored)
	}
	return f.m.NewTerm(stored, st.TermOptions())
}

// reopenLogIfFailed reopens the log if it failed; what it had not synced
// is gone, even if its bytes reached the file: an fsync that failed may
// have left them in the kernel's cache only (or dropped them), and a
// later fsync need not report that, so the reopened log is cut back to
// what the syncs before the failure covered (the leader sends the rest
// again). The caller holds the lifecycle lock and the applier's, with no
// stream attached.
func (f *Follower) reopenLogIfFailed() error {
	if !f.logFailed.Load() {
		return nil
	}
	f.applier.resetLocked()
	trusted := f.log.LastDurable()
	_ = f.log.Close() // returns the failure we already know
	log, err := f.openLog(mustKeep(f.store()))
	if err != nil {
		return fmt.Errorf("%w: reopening the log: %w", ErrUnavailable, err)
	}
	if found := log.LastDurable(); found.Offset > trusted.Offset {
		if _, err := log.TruncateLog(trusted.Offset); err != nil {
			_ = log.Close()
			return fmt.Errorf("%w: cutting the entries of the failed sync from the log: %w", ErrUnavailable, err)
		}
		f.logger().Warn("log cut back to its last synced entry: the entries after it were written, but their sync failed",
			"last_synced", trusted.Offset, "found", found.Offset)
	}
	f.logSwap.Lock()
	f.log = log
	f.logFailed.Store(false)
	if point, pending := f.store().LogResetPending(); pending {
		f.head.Store(int64(point.Offset)) // the log's entries are the old store's
	} else {
		f.head.Store(int64(f.headOf(log)))
	}
	f.logSwap.Unlock()
	f.logger().Warn("log reopened after a failure", "head", f.head.Load())
	return nil
}

// headOf is the head that log makes: its last durable entry, or the
// commit or the snapshot point when they are above it.
func (f *Follower) headOf(log *wal.Log) logpos.Offset {
	return max(log.LastDurable().Offset, f.commit(), logpos.Offset(f.base.Load()))
}

// lowerHead lowers the published head to to, when it is above.
func (f *Follower) lowerHead(to logpos.Offset) {
	for h := f.head.Load(); h > int64(to) && !f.head.CompareAndSwap(h, int64(to)); h = f.head.Load() {
	}
}

func (f *Follower) openStore() (*store.Store, error) {
	return store.Open(f.cfg.FS.PathJoin(f.dir, "store"), store.Options{
		FS:                f.cfg.FS,
		Logger:            f.cfg.Logger,
		StateMachine:      f.cfg.StateMachine,
		SnapshotChunkSize: f.cfg.SnapshotChunkSize,
		MaxSnapshotSize:   f.cfg.MaxSnapshotSize,
		MemTableSize:      f.cfg.MemTableSize,
	})
}

// mustKeep is the highest offset the log must hold: the store's commit,
// unless an install left the log to be cleared.
func mustKeep(st *store.Store) logpos.Offset {
	if _, pending := st.LogResetPending(); pending {
		return logpos.NoOffset
	}
	return st.Commit().Offset
}

// openLog opens the log. Every entry up to mustKeep (the store's commit)
// was durable before it was applied, so a log that holds entries but ends
// below it lost records it must keep (zeroed by the disk): that is
// corruption, not a clean end. An empty log is the one an install
// cleared, whose point is the commit.
func (f *Follower) openLog(mustKeep logpos.Offset) (*wal.Log, error) {
	keepBelow := mustKeep + 1
	if mustKeep == math.MaxInt64 {
		keepBelow = mustKeep // a snapshot's point: the log never holds that offset
	}
	log, err := wal.Open(f.cfg.FS.PathJoin(f.dir, "wal"), wal.Options{
		FS:            f.cfg.FS,
		SegmentSize:   f.cfg.SegmentSize,
		MustKeepBelow: keepBelow,
		Logger:        f.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if last := log.LastDurable(); !last.IsNone() && last.Offset < mustKeep {
		return nil, errors.Join(fmt.Errorf("%w: the log ends at %d, below the committed offset %d", wal.ErrCorrupt, last.Offset, mustKeep), log.Close())
	}
	return log, nil
}

// resetLog clears the log after a snapshot install and drops the store's
// record that the reset is pending.
func (f *Follower) resetLog() error {
	if err := f.log.Clear(); err != nil {
		f.noteLogError(err)
		return fmt.Errorf("%w: clearing the log: %w", ErrUnavailable, err)
	}
	if err := f.store().ClearLogReset(); err != nil {
		f.noteLogError(err)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

func (f *Follower) acquire() { f.lock <- struct{}{} }

// release publishes the term and state the operation left, then releases
// the lifecycle lock.
func (f *Follower) release() {
	f.publish()
	<-f.lock
}

// publish makes the current term and state what Status reports. The
// caller holds the lifecycle lock (or is Open, before anyone else can).
func (f *Follower) publish() {
	v := termState{f.Term(), f.m.State()}
	if p := f.view.Load(); p == nil || *p != v {
		f.view.Store(&v)
	}
}

// acquireUnless takes the lifecycle lock unless done closes first.
func (f *Follower) acquireUnless(done <-chan struct{}) bool {
	select {
	case f.lock <- struct{}{}:
		return true
	case <-done:
		return false
	}
}

// Status returns the follower's term, state, head and commit without
// waiting for any lock. Term and state are one pair, as the last
// completed lifecycle operation left them (an operation in progress shows
// once it returns); head and commit are read before them, so a head
// appended by the first entry of a stream comes with state Follower. The
// head reported is never below the commit (a snapshot install publishes
// its commit an instant before its head, and the applier may apply an
// entry the sync loop made durable an instant before the receive loop
// makes it the head).
func (f *Follower) Status() Status {
	head := logpos.Offset(f.head.Load())
	commit := f.commit()
	v := f.view.Load()
	return Status{
		Term:   v.term,
		State:  v.state,
		Head:   max(head, commit),
		Commit: commit,
	}
}

// Term returns the follower's current term without waiting for any lock.
// Unlike Status, which reports the term of the last completed lifecycle
// operation, it includes the term an operation in progress has already
// made durable (a NewTerm, or a snapshot install, seen from an observer).
func (f *Follower) Term() logpos.Term { return logpos.Term(f.term.Load()) }

// StoredTerm returns the term stored durably and the options stored with
// it (its NewTerm's, or those of the snapshot installed), read together:
// NoTerm and the zero TermOptions while no term is stored. A NewTerm or an
// install in progress may have stored them a moment before Term, and
// then Status, report the term.
func (f *Follower) StoredTerm() (logpos.Term, TermOptions) { return f.store().TermWithOptions() }

// NewTerm fences the follower at term: it ends the attached stream (waiting
// for its goroutines), abandons an install, persists the term and options,
// and only then moves to Fenced. It returns the id of the last durable log
// entry, of the snapshot point when the log is empty, or NoEntry.
func (f *Follower) NewTerm(term logpos.Term, options TermOptions) (logpos.EntryID, error) {
	defer f.control()()
	if err := f.m.NewTerm(term, options); err != nil {
		return logpos.NoEntry, explained(err, f.termRefused(term))
	}
	return f.reply, nil
}

// Truncate cuts the log of a Fenced follower after head (-1 clears it),
// durably, and moves it to Follower. It returns {term, new head}; the new
// head is never below the commit.
func (f *Follower) Truncate(term logpos.Term, head *logpos.EntryID) (logpos.EntryID, error) {
	defer f.control()()
	if err := f.m.Truncate(term, head); err != nil {
		f.noteLogError(err)
		return logpos.NoEntry, explained(err, func(guard string) string {
			switch guard {
			case "HeadGiven":
				return "no head_entry_id"
			case "TermMatches":
				return fmt.Sprintf("term %d is not the current term %d", term, f.term.Load())
			case "HeadNotBelowCommit":
				return fmt.Sprintf("head_entry_id offset %d is below the commit offset %d", head.Offset, f.commit())
			case "HeadNotBeyondLog":
				return fmt.Sprintf("head_entry_id offset %d is beyond the head offset %d", head.Offset, f.head.Load())
			}
			return ""
		})
	}
	return logpos.EntryID{Term: term, Offset: f.reply.Offset}, nil
}

// Delete closes the follower and removes its log and store from disk. A
// negative term or one below the follower's is refused and changes nothing
// (but the repair, as for a control operation: its checks see the term
// the store holds, that of a NewTerm whose sync failed included). Like a
// control operation's, the repair of a failed store waits for it to
// reopen: Pebble's opening retries the flush of what it replays until the
// disk takes it.
func (f *Follower) Delete(term logpos.Term) error {
	f.acquire()
	defer f.release()
	// A repair that fails stops no delete; the applier's lock is not
	// held while the follower closes (closing stops the applier).
	f.repairForDelete()
	if err := f.m.Delete(term); err != nil {
		return explained(err, f.termRefused(term))
	}
	if err := removeDir(f.cfg.FS, f.dir); err != nil {
		return errors.Join(f.closeErr, fmt.Errorf("%w: removing %s: %w", ErrUnavailable, f.dir, err))
	}
	if f.closeErr != nil {
		// What closing could not write (on a full disk, say) is deleted
		// anyway: the delete succeeded.
		f.logger().Warn("closing the deleted follower failed", "err", f.closeErr)
	}
	f.logger().Debug("follower deleted", "delete_term", term)
	return nil
}

// repairForDelete runs the repair of a control operation for Delete,
// under the applier's lock, released however the repair ends (a panic of
// an observer included). Its error is dropped: a repair that fails stops
// no delete. The caller holds the lifecycle lock.
func (f *Follower) repairForDelete() {
	f.applier.mu.Lock()
	defer f.applier.mu.Unlock()
	_ = f.repairLocked()
}

// Remove deletes the data of the shard in cfg.Dir without opening its
// follower: for a shard whose follower does not open (its log damaged,
// say), which Delete cannot reach. It checks term as Delete does, against
// the term the shard's store holds: a negative term is ErrInvalidArgument
// and one below the stored term ErrInvalidTerm, and nothing is removed.
// When the term cannot be read (the store is missing or does not open, or
// holds no term beside a log that holds entries), Remove fails with
// ErrUnavailable, and only an operator can remove the directory. A
// directory that does not exist is removed already; what a Delete or
// Remove cut short left of it (the directory renamed aside before its
// removal) goes. No follower of the shard may be open.
func Remove(cfg Config, term logpos.Term) error {
	if cfg.Dir == "" {
		return errNoDir
	}
	cfg = cfg.withDefaults()
	if term < 0 {
		return fmt.Errorf("%w: term %d is negative", ErrInvalidArgument, term)
	}
	if _, err := cfg.FS.Stat(cfg.Dir); errors.Is(err, os.ErrNotExist) {
		if err := cfg.FS.RemoveAll(durable.DeletedDir(cfg.FS, cfg.Dir)); err != nil {
			return fmt.Errorf("%w: removing what a Delete left: %w", ErrUnavailable, err)
		}
		// The rename of a Delete whose directory sync failed, and this
		// removal, are durable only once the parent is synced.
		if err := durable.SyncDir(cfg.FS, cfg.FS.PathDir(cfg.Dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: syncing %s: %w", ErrUnavailable, cfg.FS.PathDir(cfg.Dir), err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("%w: looking for %s: %w", ErrUnavailable, cfg.Dir, err)
	}
	f := &Follower{cfg: cfg, dir: cfg.Dir}
	storeDir := cfg.FS.PathJoin(cfg.Dir, "store")
	if _, err := cfg.FS.Stat(storeDir); err != nil {
		// Opening would create an empty store, without a term.
		return fmt.Errorf("%w: the store, which holds the shard's term, is missing: %w", ErrUnavailable, err)
	}
	st, err := f.openStore()
	if err != nil {
		return fmt.Errorf("%w: the store, which holds the shard's term, does not open: %w", ErrUnavailable, err)
	}
	stored := st.Term()
	if err := st.Close(); err != nil {
		return fmt.Errorf("%w: closing the store: %w", ErrUnavailable, err)
	}
	if stored == logpos.NoTerm && !wal.HoldsNothing(cfg.FS, cfg.FS.PathJoin(cfg.Dir, "wal")) {
		// A follower without a term takes no entry: this store is not
		// the one the log was written under.
		return fmt.Errorf("%w: the store holds no term but the log holds entries", ErrUnavailable)
	}
	if term < stored {
		return fmt.Errorf("%w: term %d is below the shard's term %d", ErrInvalidTerm, term, stored)
	}
	if err := removeDir(cfg.FS, cfg.Dir); err != nil {
		return fmt.Errorf("%w: removing %s: %w", ErrUnavailable, cfg.Dir, err)
	}
	return nil
}

// explained prefixes err, when it is a refusal of the lifecycle machine,
// with what why says about the guard that refused: which argument, and
// against what (the refusal itself names only the guard).
func explained(err error, why func(guard string) string) error {
	var r *fsm.Refusal
	if !errors.As(err, &r) {
		return err
	}
	if msg := why(r.Guard); msg != "" {
		return fmt.Errorf("follower: %s: %w", msg, err)
	}
	return err
}

// termRefused explains the refusals of the guards of a new term.
func (f *Follower) termRefused(term logpos.Term) func(guard string) string {
	return func(guard string) string {
		switch guard {
		case "TermValid":
			return fmt.Sprintf("term %d is negative", term)
		case "TermNotBehind":
			return fmt.Sprintf("term %d is below the current term %d", term, f.term.Load())
		}
		return ""
	}
}

// removeDir removes a follower's directory so that a crash leaves all of
// it or none: it is renamed aside (durably) first, then removed. Open
// removes what a crash left of the renamed directory.
func removeDir(fs vfs.FS, dir string) error {
	gone := durable.DeletedDir(fs, dir)
	if err := fs.RemoveAll(gone); err != nil {
		return err
	}
	if err := fs.Rename(dir, gone); err != nil {
		return err
	}
	if err := durable.SyncDir(fs, fs.PathDir(dir)); err != nil {
		return err
	}
	if err := fs.RemoveAll(gone); err != nil {
		return err
	}
	return durable.SyncDir(fs, fs.PathDir(dir))
}

// Close ends the stream or install, stops every goroutine, and closes the
// log and the store. Closing again does nothing.
func (f *Follower) Close() error {
	f.acquire()
	defer f.release()
	wasClosed := f.m.State() == StateClosed
	if err := f.m.Close(); err != nil || wasClosed {
		return err
	}
	return f.closeErr
}

// Get returns the value stored under a user key of the store (the keys
// the state machine wrote), or an error matching store.ErrNotFound. It
// fails with ErrClosed once the follower closes (or while it closes), and
// with ErrUnavailable when the store cannot be read.
func (f *Follower) Get(key []byte) ([]byte, error) {
	var value []byte
	err := f.read(func(st *store.Store) (err error) {
		value, err = st.Get(key)
		return err
	})
	return value, err
}

// Scan calls fn for each user key of the store in [start, end), in
// byte-wise order, with its value, until fn returns false; a nil end
// means no upper bound. It reads a consistent point-in-time view; key
// and value are valid only during the call. fn must not call methods of
// the follower: Close, Delete and a snapshot install wait for Scan to
// return, and while one waits, the applier and every other read of the
// store (Get, a NewTerm's write) wait too: keep fn short. Scan fails as
// Get does.
func (f *Follower) Scan(start, end []byte, fn func(key, value []byte) bool) error {
	return f.read(func(st *store.Store) error { return st.Scan(start, end, fn) })
}

// read runs a read of the store, classifying its errors: ErrClosed while
// the follower closes, ErrUnavailable when the store cannot be read or is
// applying again what it lost in a failure; store.ErrNotFound as is.
func (f *Follower) read(fn func(*store.Store) error) error {
	if f.closingOrClosed() {
		return ErrClosed
	}
	st := f.store()
	if st.Commit().Offset < logpos.Offset(f.commitFloor.Load()) {
		return fmt.Errorf("%w: the store is applying again what it lost in a failure", ErrUnavailable)
	}
	err := fn(st)
	switch {
	case err == nil, errors.Is(err, store.ErrNotFound):
		return err
	case errors.Is(err, store.ErrClosed) && f.closingOrClosed():
		// Not the store being reopened after a failure: closing.
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return fmt.Errorf("%w: reading the store: %w", ErrUnavailable, err)
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Snapshot takes a consistent copy of the follower's store, to read out as
// chunks and send to another replica's InstallSnapshot. Close it. The
// snapshot of a follower that has applied nothing yet carries no commit
// id: it is taken, but every InstallSnapshot of it fails with
// ErrInvalidArgument.
//
// It fails with ErrClosed once the follower closes (or while it closes),
// and with ErrUnavailable when the store cannot take the copy.
func (f *Follower) Snapshot() (*store.Snapshot, error) {
	if f.closingOrClosed() {
		return nil, ErrClosed
	}
	sn, err := f.store().Snapshot()
	switch {
	case err == nil:
		return sn, nil
	case errors.Is(err, store.ErrClosed) && f.closingOrClosed():
		return nil, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return nil, fmt.Errorf("%w: taking a snapshot: %w", ErrUnavailable, err)
}

// closingOrClosed reports whether the follower is closed or closing.
func (f *Follower) closingOrClosed() bool {
	return f.m.State() == StateClosed || isClosed(f.closing)
}

// WaitApplied blocks until the entry at offset is applied to the store, ctx
// is done, or the follower closes.
//
// It waits for the store itself: after a failed store came back with an
// older commit, Status keeps reporting the commit reached before, and
// WaitApplied waits until the entries are applied again (reads succeed).
func (f *Follower) WaitApplied(ctx context.Context, offset logpos.Offset) error {
	return f.applier.wait(ctx, offset)
}

// durableHead is the last offset that is durable: in the log, or covered
// by a snapshot.
func (f *Follower) durableHead() logpos.Offset {
	return max(f.log.LastDurable().Offset, logpos.Offset(f.base.Load()))
}

// advertise records a commit offset a leader sent. It reports whether the
// offset moved; waking the applier is the caller's choice.
func (f *Follower) advertise(commit int64) bool {
	for {
		cur := f.advertised.Load()
		if commit <= cur {
			return false
		}
		if f.advertised.CompareAndSwap(cur, commit) {
			return true
		}
	}
}

// hooks is the hand-written half of the lifecycle machine: the guards
// and actions of transitions.yaml, on the follower's fields. It is a type
// of its own so that they are not methods of Follower: only the machine
// calls them, under the lifecycle lock.
type hooks struct{ *Follower }

var _ lifecycleHandlers = hooks{}

// The guards of the lifecycle table. They run under the lifecycle lock.

func (f hooks) TermValid(term logpos.Term) bool { return term >= 0 }

func (f hooks) TermNotBehind(term logpos.Term) bool { return int64(term) >= f.term.Load() }

func (f hooks) TermMatches(term logpos.Term) bool { return int64(term) == f.term.Load() }

func (f hooks) HeadGiven(head *logpos.EntryID) bool { return head != nil }

func (f hooks) NothingAttached() bool { return f.stream == nil && f.install == nil }

func (f hooks) LeaderTermCurrent(leaderTerm logpos.Term) bool {
	return leaderTerm == logpos.NoTerm || int64(leaderTerm) == f.term.Load()
}

func (f hooks) HeadNotBelowCommit(head *logpos.EntryID) bool {
	return head.Offset >= f.commit()
}

func (f hooks) HeadNotBeyondLog(head *logpos.EntryID) bool {
	return int64(head.Offset) <= f.head.Load()
}

func (f hooks) StreamAttached(stream *replication) bool { return f.stream == stream }

func (f hooks) SnapshotNotEmpty(empty bool) bool { return !empty }

func (f hooks) SnapshotTermAcceptable(chunkTerm logpos.Term) bool {
	if term := f.term.Load(); term != int64(logpos.NoTerm) {
		return int64(chunkTerm) == term
	}
	return chunkTerm >= 0
}

func (f hooks) InstallAttached(install *installation) bool { return f.install == install }

// The actions of the lifecycle table. They run under the lifecycle lock;
// a failing action leaves everything as it was.

// Fence ends the stream and the install, then persists the term.
func (f hooks) Fence(term logpos.Term, options TermOptions) error {
	if invariants {
		// Checked before anything is done: past SetTerm, which refuses a
		// term below the stored one, it would hold whatever the guard let
		// through.
		assertf(int64(term) >= f.term.Load(), "term %d after %d", term, f.term.Load())
	}
	f.endStream(ErrStreamEnded)
	f.abandonInstall()
	if f.repairErr != nil {
		return f.repairErr
	}
	if err := f.settleLog(); err != nil {
		return err
	}
	if err := f.store().SetTerm(term, options); err != nil {
		f.noteLogError(err)
		return fmt.Errorf("%w: persisting term %d: %w", ErrUnavailable, term, err)
	}
	f.term.Store(int64(term))
	f.reply = f.log.LastDurable()
	if f.reply.IsNone() {
		f.reply = f.store().Commit()
	}
	f.logger().Debug("fenced", "head", f.reply)
	return nil
}

// settleLog makes durable what an ended stream appended but did not sync
// (its sync loop was in an fsync when the stream ended), so that no entry
// of it can land after NewTerm returns, and NewTerm's reply is the head.
// A log the stream left failed is reopened first (what it did not sync
// is then gone).
func (f *Follower) settleLog() error {
	if err := f.reopenLogIfFailed(); err != nil {
		return err
	}
	if f.log.LastAppended().Offset <= f.log.LastDurable().Offset {
		return nil
	}
	if _, err := f.log.Sync(context.Background()); err != nil {
		f.noteLogError(err)
		return fmt.Errorf("%w: syncing the log: %w", ErrUnavailable, err)
	}
	f.applier.kick() // entries up to the advertised commit may have become applicable
	return nil
}

// TruncateLog cuts the log after head, durably. The caller holds the
// applier's lock.
func (f hooks) TruncateLog(head *logpos.EntryID) error {
	if f.repairErr != nil {
		return f.repairErr
	}
	kept := f.log.LastAppended().Offset
	var err error
	if head.Offset < kept {
		kept, err = f.log.TruncateLog(head.Offset)
	} else {
		// Nothing to remove (the head may be a snapshot point the log does
		// not hold): make what is kept durable.
		_, err = f.log.Sync(context.Background())
	}
	if err != nil {
		return fmt.Errorf("%w: truncating the log after %d: %w", ErrUnavailable, head.Offset, err)
	}
	newHead := max(kept, f.commit(), logpos.Offset(f.base.Load()))
	f.head.Store(int64(newHead))
	// The advertised commit stays: offsets a leader advertised as committed
	// hold the same entries in every later term, so those that come again
	// after the kept head are applied once durable.
	f.reply = logpos.EntryID{Offset: newHead}
	return nil
}

// StartStream attaches a replication stream and starts its goroutines.
func (f hooks) StartStream(stream *replication) error {
	if invariants {
		assertf(f.stream == nil && f.install == nil, "a stream attached beside another stream or an install")
	}
	if f.repairErr != nil {
		return f.repairErr
	}
	f.stream = stream
	f.stats.streamAttached.Store(true)
	stream.start()
	return nil
}

// StartInstall attaches a snapshot install.
func (f hooks) StartInstall(install *installation) error {
	if invariants {
		assertf(f.stream == nil && f.install == nil, "an install attached beside a stream or another install")
	}
	if f.repairErr != nil {
		return f.repairErr
	}
	loader, err := f.store().NewLoader()
	if err != nil {
		return fmt.Errorf("%w: staging a snapshot: %w", ErrUnavailable, err)
	}
	install.loader = loader
	f.install = install
	return nil
}

// Shutdown ends the stream and the install, stops the applier and closes
// the log (a failed one cut back first) and the store. It cannot fail:
// errors closing files are kept for Close and Delete to return.
func (f hooks) Shutdown() error {
	f.endStream(endedByClose(ErrClosed))
	f.abandonInstall()
	close(f.closing)
	f.applier.stop()
	f.goroutines.Wait()
	// A failed log is cut back to what its syncs covered before it is
	// closed: an Open later in this process would trust the rest (see
	// reopenLogIfFailed).
	f.applier.mu.Lock()
	cutErr := f.reopenLogIfFailed()
	f.applier.mu.Unlock()
	f.closeErr = errors.Join(cutErr, f.log.Close(), f.store().Close())
	f.logger().Debug("follower closed")
	return nil
}

// endStream ends the attached stream, if any, and waits for all of its
// goroutines and its handler: no entry of it is written after endStream
// returns.
func (f *Follower) endStream(cause error) {
	if r := f.stream; r != nil {
		r.end(cause)
		if invariants {
			assertf(isClosed(r.recvDone) && isClosed(r.syncDone) && isClosed(r.returned), "a stream's loops or handler still running after it was ended")
		}
		f.stream = nil
		f.stats.streamAttached.Store(false)
	}
}

// abandonInstall detaches the install in progress, if any, without waiting
// for it: its transfer stops waiting for chunks, and it fails, finding
// itself detached, staged files removed.
func (f *Follower) abandonInstall() {
	if f.install != nil {
		if f.install.abandoned != nil {
			close(f.install.abandoned)
		}
		f.install = nil
	}
}
