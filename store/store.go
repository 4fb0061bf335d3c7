package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tablefsm/tablefsm/logpos"

	"github.com/tablefsm/tablefsm/internal/durable"
)

// Store is the applied state of one shard: one Pebble database in a
// directory of its own, with the term, the term options, the commit entry
// id and the state machine's data.
//
// Concurrency: one goroutine applies (Apply); any goroutine may at the
// same time read (Term, TermOptions, Commit, DurableCommit,
// LogResetPending, Get, Scan), call Sync, SetTerm or ClearLogReset, take
// snapshots and load one. Install must not run concurrently with Apply
// (the caller serializes them; the store would not corrupt anything, but
// the applier's idea of the commit point would be stale). Close and Delete
// wait for running operations.
type Store struct {
	dir  string
	fs   vfs.FS
	opts Options
	log  *slog.Logger
	lock io.Closer // the directory lock, held until Close

	// write serializes the writers of the live database: Apply, SetTerm,
	// ClearLogReset, the checkpoint of Snapshot, Install, Close, Delete.
	// Lock order: write, then a Loader's or Snapshot's mu, then db, then mu.
	write struct {
		sync.Mutex
		w   Writer // reused by Apply
		buf []byte // scratch for the commit record
		// batch is reused by Apply while batchDB is the live database.
		batch   *pebble.Batch
		batchDB *pebble.DB
		// perEntry: the state machine reads (Writer.Get), so entries are
		// applied one batch each.
		perEntry bool
	}

	// db is the live database. Users of the handle hold the read lock for
	// as long as they use it; Install and Close replace or drop it under
	// the write lock, and with write held: a holder of write may use the
	// handle without db's lock.
	db struct {
		sync.RWMutex
		h    *pebble.DB // nil once closed
		name string     // its directory, as CURRENT names it
	}

	// mu guards the store's state for readers. state is written with
	// write held too: a holder of write may read it without mu.
	mu struct {
		sync.Mutex
		state
		durable   logpos.EntryID // last commit known durable
		seq       uint64         // highest directory sequence number used
		loaders   map[*Loader]struct{}
		snapshots map[*Snapshot]struct{}
		// failed is set when the database hit a fatal write error: every
		// later write returns it.
		failed error
		// hasFailed is set with failed, and read without mu: the write
		// paths check it on every Apply.
		hasFailed atomic.Bool
		// leftovers are directories the store no longer needs whose
		// removal failed: removeLeftovers tries again (and Open removes
		// them in any case).
		leftovers []string
	}

	events storeEvents
}

// storeEvents are what the store hears of Pebble's background work in
// its databases: errors, which it logs, and failed flushes, which end the
// wait of a Snapshot for its flush. Pebble retries a failed flush without
// end, and without telling the writers waiting for it: with the disk
// refusing new tables (full, say), that flush would not finish.
type storeEvents struct {
	log *slog.Logger
	mu  sync.Mutex
	// flushErr is the error of the last flush that ended with one (or
	// with none: Pebble reports a flush that made no table so).
	flushErr error
	// failed, while a Snapshot waits for its flush, is where a failed
	// flush is told.
	failed chan error
}

// pebbleOptions returns the options the store's databases are opened
// with.
func (s *Store) pebbleOptions(mustExist bool) *pebble.Options {
	return s.opts.pebbleOptions(mustExist, &s.events)
}

// flushEnd notes the error a flush ended with, if any: whether it failed
// is known when Pebble reports that error as a background error too (it
// does not for a flush that made no table).
func (e *storeEvents) flushEnd(info pebble.FlushInfo) {
	if info.Err == nil {
		return
	}
	e.mu.Lock()
	e.flushErr = info.Err
	e.mu.Unlock()
}

// backgroundError logs err, and tells a Snapshot waiting for its flush
// when err is a failed flush's.
func (e *storeEvents) backgroundError(err error) {
	e.log.Error("store: background write failed (retried)", "err", err, "component", "pebble")
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.flushErr == nil || !errors.Is(err, e.flushErr) {
		return // a compaction's, or another of Pebble's
	}
	e.flushErr = nil
	if e.failed != nil {
		select {
		case e.failed <- err:
		default: // it was told already
		}
	}
}

// flush flushes the memtable of h, the live database, waiting until it
// is flushed or until a flush fails (see storeEvents). The caller holds
// s.write.
func (s *Store) flush(h *pebble.DB) error {
	failed := make(chan error, 1)
	e := &s.events
	e.mu.Lock()
	e.failed = failed
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.failed = nil
		e.mu.Unlock()
	}()
	flushed, err := h.AsyncFlush()
	if err != nil {
		return err
	}
	select {
	case <-flushed:
		return nil
	case err := <-failed:
		return fmt.Errorf("%w (Pebble retries it in the background)", err)
	}
}

// removeDir removes a directory the store no longer needs (a staging
// database, a checkpoint, a replaced database). When that fails it is
// remembered, and removed by a later SetTerm or NewLoader.
func (s *Store) removeDir(path string) error {
	err := s.fs.RemoveAll(path)
	if err != nil {
		s.mu.Lock()
		s.mu.leftovers = append(s.mu.leftovers, path)
		s.mu.Unlock()
	}
	return err
}

// removeLeftovers tries again to remove the directories whose removal
// failed, keeping those it still cannot remove.
func (s *Store) removeLeftovers() {
	s.mu.Lock()
	paths := s.mu.leftovers
	s.mu.leftovers = nil
	s.mu.Unlock()
	for _, path := range paths {
		if err := s.removeDir(path); err != nil {
			s.log.Warn("store: remove leftover directory", "dir", path, "err", err)
		}
	}
}

// failure returns the error of a failed store, nil if it is healthy.
func (s *Store) failure() error {
	if !s.mu.hasFailed.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.failed
}

// markFailed records that the database took a fatal write error.
func (s *Store) markFailed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.failed == nil {
		s.mu.failed = err
		s.mu.hasFailed.Store(true)
		s.log.Error("store failed; reopen it to recover", "err", err)
	}
}

// state is what the reserved records of a database hold.
type state struct {
	term         logpos.Term
	options      TermOptions
	commit       logpos.EntryID
	reset        logpos.EntryID // valid when resetPending
	resetPending bool
}

// Open opens the store in dir, creating it (and dir) when it does not
// exist. It finishes what a crash interrupted: a swap whose marker was
// written is rolled forward (the old database is removed), anything else
// staged (loader databases, checkpoints, a temporary marker) is removed.
// Only one Store may have dir open at a time.
func Open(dir string, opts Options) (_ *Store, err error) {
	if err := opts.CheckMemTableSize(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	dir = filepath.Clean(dir) // its parent is where Delete moves it
	fs := opts.FS
	if err := durable.MkdirAll(fs, dir); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	lock, err := fs.Lock(fs.PathJoin(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("store: lock %s: %w", dir, err)
	}
	// What a Delete that a crash interrupted moved aside.
	if err := fs.RemoveAll(durable.DeletedDir(fs, dir)); err != nil {
		return nil, errors.Join(fmt.Errorf("store: remove what a delete left: %w", err), lock.Close())
	}
	s := &Store{dir: dir, fs: fs, opts: opts, log: opts.Logger, lock: lock}
	s.events.log = opts.Logger
	// Should opening panic, neither the database nor the directory is
	// left locked: a caller can open the store again. Pebble giving up (a
	// write of its manifest failing, on a full disk say) is an error, as
	// on the write paths; any other panic (a logger's or a file system's
	// bug) goes on, for a caller that recovers from it.
	defer func() {
		if r := recover(); r != nil {
			// openLive closed the database it opened (closeOnPanic).
			_ = lock.Close()
			if f, fatal := r.(pebbleFatal); fatal {
				err = f.err(": opening " + dir)
				return
			}
			panic(r)
		}
	}()
	if err := s.openLive(); err != nil {
		return nil, errors.Join(err, lock.Close())
	}
	return s, nil
}

// openLive opens (or creates) the live database and loads its state.
func (s *Store) openLive() error {
	live, found, err := readMarker(s.fs, s.dir)
	if err != nil {
		return err
	}
	var h *pebble.DB
	defer closeOnPanic(&h)
	if found {
		// The database the marker names opens before cleanDir removes
		// the others: a marker naming another one (damaged) removes
		// nothing.
		if h, err = s.openMarked(live); err != nil {
			return err
		}
	} else if err := s.checkUnmarked(); err != nil {
		return err
	}
	seq, err := cleanDir(s.fs, s.dir, live)
	if err != nil {
		if h != nil {
			err = errors.Join(err, h.Close())
		}
		return err
	}
	if !found {
		// A new store, or one whose creation a crash interrupted before
		// the marker was written (cleanDir removed what it left).
		seq++
		live = dbDirName(seq)
		if h, err = s.create(live); err != nil {
			return err
		}
	}
	st, err := readState(h, ErrCorrupt)
	if err != nil {
		return errors.Join(fmt.Errorf("store: open %s: %w", live, err), h.Close())
	}
	s.db.h, s.db.name = h, live
	s.mu.state = st
	// Pebble's Open flushes what it replayed from its WAL into synced
	// sstables before returning: the commit read here is durable.
	s.mu.durable = st.commit
	s.mu.seq = seq
	s.log.Debug("store: opened", "dir", s.dir, "db", live, "term", st.term, "commit", st.commit, "logResetPending", st.resetPending)
	return nil
}

// openMarked opens the live database, in the directory live that the
// marker names. A missing directory is ErrCorrupt, and nothing is
// created in its place.
func (s *Store) openMarked(live string) (*pebble.DB, error) {
	notThere := fmt.Errorf("%w: %s names %s, which holds no database", ErrCorrupt, markerName, live)
	if _, err := s.fs.Stat(s.fs.PathJoin(s.dir, live)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, notThere
		}
		return nil, fmt.Errorf("store: open %s: %w", live, err)
	}
	h, err := pebble.Open(s.fs.PathJoin(s.dir, live), s.pebbleOptions(true))
	if errors.Is(err, pebble.ErrDBDoesNotExist) {
		return nil, notThere
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", live, err)
	}
	return h, nil
}

// closeOnPanic, deferred, closes *h (if set) when the function panics,
// and lets the panic go on: Pebble giving up while a database is being
// opened or created leaves it neither open nor locked.
func closeOnPanic(h **pebble.DB) {
	if r := recover(); r != nil {
		if *h != nil {
			closeAfterPanic(*h)
		}
		panic(r)
	}
}

// closeAfterPanic closes h, whose Pebble may have given up: a second
// fatal error while closing it is ignored.
func closeAfterPanic(h *pebble.DB) {
	defer func() {
		if r := recover(); r != nil {
			if _, fatal := r.(pebbleFatal); !fatal {
				panic(r)
			}
		}
	}()
	_ = h.Close()
}

// checkUnmarked guards a directory without a marker before cleanDir
// removes its databases. A creation cut short by a crash leaves at most a
// database Pebble cannot open, or one holding nothing: no term, nothing
// applied, no user key. A database holding more was a live store whose
// marker went missing (the store never removes it): that is ErrCorrupt,
// and nothing is removed.
func (s *Store) checkUnmarked() error {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return fmt.Errorf("store: list %s: %w", s.dir, err)
	}
	for _, name := range names {
		if _, ok := parseSeq(name, dbPrefix); !ok {
			continue
		}
		what, err := s.unmarkedHolds(name)
		if err != nil {
			return err
		}
		if what != "" {
			return fmt.Errorf("%w: no %s marker, but %s holds a store (%s): write %q into %s to open it, or remove the directory",
				ErrCorrupt, markerName, name, what, name+"\n", markerName)
		}
	}
	return nil
}

// unmarkedHolds opens the database in the directory name read-only and
// says what it holds beyond what its creation writes ("" if nothing, or
// if it is not a database). A failure to read it is an error: nothing is
// removed on a guess.
func (s *Store) unmarkedHolds(name string) (what string, err error) {
	defer catchFatal(&err, nil)
	opts := s.pebbleOptions(true)
	opts.ReadOnly = true
	h, err := pebble.Open(s.fs.PathJoin(s.dir, name), opts)
	if osIOError(err) {
		return "", fmt.Errorf("store: open %s: %w", name, err)
	}
	if err != nil {
		return "", nil // its creation did not get as far as a database
	}
	defer h.Close()
	var held []string
	// Without its format record, the creation's batch never reached the
	// database; with it, every record must read.
	_, closer, err := h.Get(keyFormat)
	switch {
	case err == nil:
		_ = closer.Close()
		st, err := readState(h, ErrCorrupt)
		if err != nil {
			return "", fmt.Errorf("store: no %s marker, and %s does not read as a store: %w", markerName, name, err)
		}
		if st.term != logpos.NoTerm {
			held = append(held, fmt.Sprintf("term %d", st.term))
		}
		if st.commit != logpos.NoEntry {
			held = append(held, fmt.Sprintf("commit %v", st.commit))
		}
	case !errors.Is(err, pebble.ErrNotFound):
		return "", fmt.Errorf("store: read %s: %w", name, err)
	}
	it, err := h.NewIter(&pebble.IterOptions{LowerBound: userLowerBound, UpperBound: userUpperBound})
	if err != nil {
		return "", fmt.Errorf("store: read %s: %w", name, err)
	}
	if it.First() {
		held = append(held, "user keys")
	}
	if err := it.Close(); err != nil {
		return "", fmt.Errorf("store: read %s: %w", name, err)
	}
	return strings.Join(held, ", "), nil
}

// create makes a new database in the directory name with its initial
// records, durably, then names it in the marker.
func (s *Store) create(name string) (_ *pebble.DB, err error) {
	var h *pebble.DB
	defer closeOnPanic(&h)
	h, err = pebble.Open(s.fs.PathJoin(s.dir, name), s.pebbleOptions(false))
	if err != nil {
		return nil, fmt.Errorf("store: create %s: %w", name, err)
	}
	b := h.NewBatch()
	err = errors.Join(
		b.Set(keyFormat, encodeUint64(formatVersion), nil),
		b.Set(keyTerm, encodeTerm(logpos.NoTerm), nil),
		b.Set(keyTermOptions, encodeTermOptions(TermOptions{}), nil),
		b.Set(keyCommit, encodeEntryID(logpos.NoEntry), nil),
	)
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	_ = b.Close()
	if err == nil {
		_, err = writeMarker(s.fs, s.dir, name)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: create %s: %w", name, err), h.Close())
	}
	return h, nil
}

// readState reads the reserved records of a database. A missing or
// malformed record is reported wrapped in class; a read failure as is.
func readState(r pebble.Reader, class error) (state, error) {
	var st state
	// get decodes the record at key; found is false when there is none.
	get := func(key []byte, decode func([]byte) error) (found bool, err error) {
		v, closer, err := r.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read %q record: %w", key[1:], err)
		}
		err = decode(v)
		_ = closer.Close()
		if err != nil {
			return true, fmt.Errorf("%w: %q record: %v", class, key[1:], err)
		}
		return true, nil
	}
	required := func(key []byte, decode func([]byte) error) error {
		found, err := get(key, decode)
		if err == nil && !found {
			err = fmt.Errorf("%w: no %q record", class, key[1:])
		}
		return err
	}
	err := required(keyFormat, func(v []byte) error {
		f, err := decodeUint64(v)
		if err == nil && f != formatVersion {
			err = fmt.Errorf("format %d, this store reads %d", f, formatVersion)
		}
		return err
	})
	if err != nil {
		return st, err
	}
	err = errors.Join(
		required(keyTerm, func(v []byte) (err error) { st.term, err = decodeTerm(v); return err }),
		required(keyTermOptions, func(v []byte) (err error) { st.options, err = decodeTermOptions(v); return err }),
		required(keyCommit, func(v []byte) (err error) { st.commit, err = decodeEntryID(v); return err }),
	)
	if err != nil {
		return st, err
	}
	st.resetPending, err = get(keyLogReset, func(v []byte) (err error) { st.reset, err = decodeEntryID(v); return err })
	return st, err
}

// Term returns the stored term, logpos.NoTerm when none was ever set.
func (s *Store) Term() logpos.Term {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.term
}

// TermOptions returns the options stored with the term.
func (s *Store) TermOptions() TermOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.options
}

// TermWithOptions returns the stored term and the options stored with
// it, read together.
func (s *Store) TermWithOptions() (logpos.Term, TermOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.term, s.mu.options
}

// Commit returns the id of the last applied entry, logpos.NoEntry when
// nothing was applied.
func (s *Store) Commit() logpos.EntryID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.commit
}

// DurableCommit returns the last commit known to be durable: the one Sync
// (or SetTerm, or Open, or Install) last made or found durable. A log may
// be trimmed up to it, never past it.
func (s *Store) DurableCommit() logpos.EntryID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.durable
}

// LogResetPending reports whether the database was installed from a
// snapshot and the log has not been reset since (see ClearLogReset), and
// the snapshot's commit id. It survives crashes: check it after Open.
func (s *Store) LogResetPending() (logpos.EntryID, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.mu.resetPending {
		return logpos.NoEntry, false
	}
	return s.mu.reset, true
}

// SetTerm durably stores term t and its options (synced before it
// returns); it also makes everything applied so far durable. t equal to
// the stored term is accepted (the options are replaced); a negative t or
// one below the stored term is ErrInvalidTerm and changes nothing.
func (s *Store) SetTerm(t logpos.Term, o TermOptions) error {
	return s.writing(func(h *pebble.DB) error {
		if t < 0 {
			return fmt.Errorf("%w: %d", ErrInvalidTerm, t)
		}
		if err := s.setTermLocked(h, t, o); err != nil {
			return err
		}
		s.removeLeftovers()
		return nil
	})
}

// setTermLocked is SetTerm with s.write and s.db held.
func (s *Store) setTermLocked(h *pebble.DB, t logpos.Term, o TermOptions) error {
	s.mu.Lock()
	cur, commit := s.mu.term, s.mu.commit
	s.mu.Unlock()
	if t < cur {
		return fmt.Errorf("%w: %d is below the stored term %d", ErrInvalidTerm, t, cur)
	}
	b := h.NewBatch()
	err := errors.Join(
		b.Set(keyTerm, encodeTerm(t), nil),
		b.Set(keyTermOptions, encodeTermOptions(o), nil),
	)
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	_ = b.Close()
	if err != nil {
		return fmt.Errorf("store: set term %d: %w", t, err)
	}
	s.mu.Lock()
	s.mu.term, s.mu.options = t, o
	s.advanceDurableLocked(commit)
	s.mu.Unlock()
	return nil
}

// advanceDurableLocked records that commit c is durable. s.mu is held.
func (s *Store) advanceDurableLocked(c logpos.EntryID) {
	if c.Offset > s.mu.durable.Offset {
		s.mu.durable = c
	}
}

// Sync makes everything applied so far durable and returns the durable
// commit: at least the commit point at the time of the call. On failure
// it returns the durable commit of before (logpos.NoEntry on a closed
// store).
func (s *Store) Sync() (durableCommit logpos.EntryID, err error) {
	s.db.RLock()
	defer s.db.RUnlock()
	h := s.db.h
	if h == nil {
		return logpos.NoEntry, ErrClosed
	}
	if err := s.failure(); err != nil {
		return s.DurableCommit(), err
	}
	defer func() {
		if err != nil {
			// Also when Pebble gave up (catchFatal set err): what was
			// durable before is all that is.
			durableCommit = s.DurableCommit()
		}
	}()
	defer catchFatal(&err, s.markFailed)
	c := s.Commit()
	// A synced empty record syncs the database's WAL up to it, and every
	// batch committed before it is ahead of it in the WAL.
	if err := h.LogData(nil, pebble.Sync); err != nil {
		return s.DurableCommit(), fmt.Errorf("store: sync: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceDurableLocked(c)
	return s.mu.durable, nil
}

// ClearLogReset removes the log-reset record (synced). Call it once the
// log has been cleared after an Install (or after Open reported a pending
// reset). Without a pending reset it does nothing.
func (s *Store) ClearLogReset() error {
	return s.writing(func(h *pebble.DB) error {
		if _, pending := s.LogResetPending(); !pending {
			return nil
		}
		if err := h.Delete(keyLogReset, pebble.Sync); err != nil {
			return fmt.Errorf("store: clear log reset: %w", err)
		}
		s.mu.Lock()
		s.mu.resetPending, s.mu.reset = false, logpos.EntryID{}
		s.mu.Unlock()
		return nil
	})
}

// writing runs fn with the write lock held and the open database, unless
// the store is closed (ErrClosed) or failed (its failure). A fatal Pebble
// error in fn marks the store failed and is returned.
func (s *Store) writing(fn func(h *pebble.DB) error) (err error) {
	s.write.Lock()
	defer s.write.Unlock()
	h := s.db.h // changes only with s.write held, as it is here
	if h == nil {
		return ErrClosed
	}
	if err := s.failure(); err != nil {
		return err
	}
	defer catchFatal(&err, s.markFailed)
	return fn(h)
}

// isClosed reports whether the store is closed.
func (s *Store) isClosed() bool {
	s.db.RLock()
	defer s.db.RUnlock()
	return s.db.h == nil
}

// Get returns a copy of the value of the user key, or ErrNotFound.
func (s *Store) Get(key []byte) ([]byte, error) {
	s.db.RLock()
	defer s.db.RUnlock()
	if s.db.h == nil {
		return nil, ErrClosed
	}
	return getUser(s.db.h, key)
}

func getUser(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(userKey(nil, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	v = bytes.Clone(v)
	if v == nil {
		v = []byte{}
	}
	return v, closer.Close()
}

// Scan calls fn for each user key in [start, end) in byte-wise order, with
// its value, until fn returns false. A nil end means no upper bound. key
// and value are valid only during the call. Scan reads a consistent
// point-in-time view. fn must not call methods of s: Close and Install
// wait for Scan to return, and a call from fn could wait for them.
func (s *Store) Scan(start, end []byte, fn func(key, value []byte) bool) (err error) {
	s.db.RLock()
	defer s.db.RUnlock()
	if s.db.h == nil {
		return ErrClosed
	}
	upper := userUpperBound
	if end != nil {
		if bytes.Compare(start, end) >= 0 {
			return nil
		}
		upper = userKey(nil, end)
	}
	it, err := s.db.h.NewIter(&pebble.IterOptions{LowerBound: userKey(nil, start), UpperBound: upper})
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	// Closed however fn returns, a panic included: a leaked iterator
	// would fail the store's Close.
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store: scan: %w", cerr)
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("store: scan: %w", err)
		}
		if !fn(it.Key()[1:], v) {
			break
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	return nil
}

// Close closes the store: it aborts the loaders and closes the snapshots
// still open, closes the database and releases the directory. It waits
// for running operations. Closing again returns nil; every other method
// of a closed store returns ErrClosed.
func (s *Store) Close() error {
	s.write.Lock()
	defer s.write.Unlock()
	return s.closeWriteLocked()
}

// closeWriteLocked is Close with s.write held.
func (s *Store) closeWriteLocked() error {
	return s.closeWriteLockedKeeping(false)
}

// closeWriteLockedKeeping is closeWriteLocked, except that with keepLock
// the directory stays locked: the caller releases it.
func (s *Store) closeWriteLockedKeeping(keepLock bool) error {
	s.db.Lock()
	h := s.db.h
	s.db.h = nil
	s.db.Unlock()
	s.write.batch, s.write.batchDB = nil, nil
	if h == nil {
		return nil
	}
	err := s.closeDatabasesLocked(h)
	if !keepLock {
		err = errors.Join(err, s.lock.Close())
	}
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// releaseWriteLocked is closeDatabasesLocked, then releases the
// directory lock: the end of a store whose s.db.h was just set to nil.
// s.write is held.
func (s *Store) releaseWriteLocked(dbs ...*pebble.DB) error {
	return errors.Join(s.closeDatabasesLocked(dbs...), s.lock.Close())
}

// closeDatabasesLocked aborts the loaders and closes the snapshots still
// open, and closes the given databases. s.write is held.
func (s *Store) closeDatabasesLocked(dbs ...*pebble.DB) error {
	s.mu.Lock()
	loaders, snapshots := s.mu.loaders, s.mu.snapshots
	s.mu.loaders, s.mu.snapshots = nil, nil
	s.mu.Unlock()
	var errs []error
	for l := range loaders {
		errs = append(errs, l.Abort())
	}
	for sn := range snapshots {
		errs = append(errs, sn.Close())
	}
	for _, h := range dbs {
		errs = append(errs, h.Close())
	}
	return errors.Join(errs...)
}

// Delete closes the store and removes its directory with everything in
// it. The directory is first moved aside (to a sibling named after it
// with ".deleted"), durably, then removed: a crash leaves the whole store
// or none of it, and Open removes what is left aside. On a closed store
// Delete returns ErrClosed and removes nothing.
func (s *Store) Delete() error {
	s.write.Lock()
	defer s.write.Unlock()
	if s.isClosed() {
		return ErrClosed
	}
	// The directory stays locked until it is moved aside: no Open of it
	// meanwhile finds the store being deleted.
	err := s.closeWriteLockedKeeping(true)
	locked := true
	unlock := func() error {
		if !locked {
			return nil
		}
		locked = false
		if err := s.lock.Close(); err != nil {
			return fmt.Errorf("store: release %s: %w", s.dir, err)
		}
		return nil
	}
	gone := durable.DeletedDir(s.fs, s.dir)
	parent := s.fs.PathDir(s.dir)
	for _, step := range []func() error{
		func() error { return s.fs.RemoveAll(gone) },
		func() error { return s.fs.Rename(s.dir, gone) },
		func() error { return durable.SyncDir(s.fs, parent) },
		unlock,
		func() error { return s.fs.RemoveAll(gone) },
		func() error { return durable.SyncDir(s.fs, parent) },
	} {
		if serr := step(); serr != nil {
			return errors.Join(err, fmt.Errorf("store: delete %s: %w", s.dir, serr), unlock())
		}
	}
	return err
}

// nextSeqLocked returns a directory sequence number above those of the
// directories present when the store opened and of every directory it
// made since. s.mu is held.
func (s *Store) nextSeqLocked() uint64 {
	s.mu.seq++
	return s.mu.seq
}
