package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/internal/durable"
	"github.com/tablefsm/tablefsm/logpos"
)

// DefaultSegmentSize is the segment size when Options.SegmentSize is 0.
const DefaultSegmentSize = 64 << 20

// MinSegmentSize and MaxSegmentSize bound Options.SegmentSize (0 means
// DefaultSegmentSize); Open refuses a size outside them.
const (
	MinSegmentSize = 64
	MaxSegmentSize = 1 << 30
)

const (
	// flushThreshold: AppendAsync writes the buffer to the segment file
	// itself (still without fsync) before an entry would make this much
	// pending.
	flushThreshold = 1 << 20
	// maxSpareBuffer: larger write buffers are dropped after use rather
	// than kept for reuse.
	maxSpareBuffer = 4 << 20
)

// Options configure Open.
type Options struct {
	// FS is the file system; vfs.Default when nil.
	FS vfs.FS
	// SegmentSize is the size segments are preallocated to; a record that
	// does not fit the rest of a segment starts the next one. A record
	// larger than a segment gets a segment of its own. 0 means
	// DefaultSegmentSize; otherwise between 64 bytes and 1 GiB.
	SegmentSize int64
	// MustKeepBelow bounds what recovery may lose: it never cuts a record
	// whose offset is below it, damage there is an error wrapping
	// ErrCorrupt. Pass the offset after the last one committed (the
	// store's commit + 1). Zero, the default, keeps nothing: damage
	// anywhere is cut with everything after it, as a torn tail is.
	MustKeepBelow logpos.Offset
	// Logger receives recovery reports (cut tails, rebuilt indexes). Nil
	// discards them.
	Logger *slog.Logger
}

// CheckSegmentSize reports a SegmentSize Open refuses: one other than 0
// (the default) and outside [MinSegmentSize, MaxSegmentSize].
func (o Options) CheckSegmentSize() error {
	if o.SegmentSize != 0 && (o.SegmentSize < MinSegmentSize || o.SegmentSize > MaxSegmentSize) {
		return fmt.Errorf("wal: segment size %d outside [%d, %d]", o.SegmentSize, MinSegmentSize, MaxSegmentSize)
	}
	return nil
}

// segment is one segment file. first, path and prevCRC never change; the
// rest is guarded by Log.mu, except file, which belongs to whoever holds
// Log.writeMu (or every lock, in TruncateLog, Clear and Close).
type segment struct {
	first   logpos.Offset
	path    string
	prevCRC uint32 // the chain value the first record is seeded with

	count      int    // records
	end        int64  // end of the last record (appended, maybe not yet written)
	flushed    int64  // bytes handed to the file
	durableEnd int64  // bytes covered by a completed fsync
	lastCRC    uint32 // CRC of the last record
	lastTerm   logpos.Term
	capacity   int64
	// positions of the records in the file; kept in memory while the
	// segment is active or not yet indexed, nil once its index is written.
	positions []uint32
	sealed    bool // takes no more records
	synced    bool // sealed and fsynced
	indexed   bool // its index file is written and durable

	file vfs.File // write handle of the active or a sealed, unsynced segment
}

func (s *segment) last() logpos.Offset { return s.first + logpos.Offset(s.count) - 1 }

// Log is a segmented write-ahead log. See the package documentation for
// which goroutine may call what.
type Log struct {
	dir    string
	fs     vfs.FS
	opts   Options
	logger *slog.Logger
	lock   io.Closer

	dirMu   sync.Mutex // serializes directory fsyncs
	dirFile vfs.File

	// appendMu is held by AppendAsync and SeedChain, and by the operations
	// that rewrite the appender's state (TruncateLog, Clear, Close).
	appendMu sync.Mutex
	scratch  []byte // the appender's encoding buffer, under appendMu

	// syncSem (capacity 1) is held by a sync round and by the operations
	// that must not run during one; a channel so waiting honours a context.
	syncSem chan struct{}
	// maintMu is held while the directory changes shape: by the background
	// worker and by TruncateLog, Clear, Trim and Close.
	maintMu sync.Mutex
	// writeMu is held while buffered bytes are written to a segment file and
	// fsynced, so writes land in order and never overlap a sync.
	writeMu sync.Mutex

	kick chan struct{} // wakes the worker (capacity 1, non-blocking sends)
	quit chan struct{}
	wg   sync.WaitGroup
	// closeDone is closed when the first Close has finished.
	closeDone chan struct{}

	// Lock order: appendMu, syncSem, maintMu, writeMu, dirMu, mu.
	mu struct {
		sync.Mutex
		closed bool
		failed error // sticky write or sync failure

		segs   []*segment
		active *segment // nil: the next append starts a new segment
		// pending holds bytes of the active segment not yet handed to the
		// file; they go at active.flushed.
		pending []byte
		spare   []byte

		lastAppended logpos.EntryID
		lastCRC      uint32 // CRC of the last appended record, or the seed
		durable      logpos.EntryID

		dirGen, dirSyncedGen uint64 // directory changes made / made durable

		epoch   uint64 // bumped by TruncateLog and Clear
		readers map[*readerState]struct{}

		prepared     vfs.File // next segment file, ready at preparedPath
		preparedPath string
		prepSeq      int
		prepFailed   bool
		indexFailure map[*segment]bool
	}
}

// Open opens (creating if needed) the log in dir and recovers it: the last
// segment is scanned and a torn tail cut, sealed segments are trusted
// through their index files (rebuilt if missing or damaged).
func Open(dir string, opts Options) (*Log, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if err := opts.CheckSegmentSize(); err != nil {
		return nil, err
	}
	if opts.SegmentSize == 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.MustKeepBelow < 0 {
		return nil, fmt.Errorf("%w: MustKeepBelow %d", ErrOutOfRange, opts.MustKeepBelow)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		dir:     dir,
		fs:      opts.FS,
		opts:    opts,
		logger:  logger.With("wal", dir),
		syncSem: make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		quit:    make(chan struct{}),

		closeDone: make(chan struct{}),
	}
	l.mu.readers = make(map[*readerState]struct{})
	l.mu.indexFailure = make(map[*segment]bool)
	// A new directory's entry in its parent must be durable too.
	if err := durable.MkdirAll(l.fs, dir); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	lock, err := l.fs.Lock(l.fs.PathJoin(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	l.lock = lock
	// What a Delete that a crash cut short left aside.
	if err := l.fs.RemoveAll(durable.DeletedDir(l.fs, dir)); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("wal: remove what a Delete left of %s: %w", dir, err)
	}
	if l.dirFile, err = l.fs.OpenDir(dir); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("wal: open directory %s: %w", dir, err)
	}
	// Should recovery panic (a logger's or a file system's bug), the
	// directory is not left locked: a caller that recovers from the panic
	// can open the log again.
	defer func() {
		if r := recover(); r != nil {
			l.closeFiles()
			panic(r)
		}
	}()
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, err
	}
	l.wg.Add(1)
	go l.worker()
	l.kickWorker()
	return l, nil
}

// HoldsNothing reports whether the log directory dir holds nothing but
// the log's lock file, or does not exist, without opening the log. A
// directory that cannot be listed (or is not one) may hold anything.
func HoldsNothing(fs vfs.FS, dir string) bool {
	names, err := fs.List(dir)
	if errors.Is(err, errNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	for _, name := range names {
		if name != lockName {
			return false
		}
	}
	return true
}

// File names.
const (
	lockName      = "LOCK"
	clearMarker   = "CLEARING"
	preparedName  = "next-%d.seg.tmp" // a fresh name each time
	segmentSuffix = ".seg"
	indexSuffix   = ".idx"
	tmpSuffix     = ".tmp"
)

func segmentName(first logpos.Offset) string { return fmt.Sprintf("%020d%s", first, segmentSuffix) }
func indexName(first logpos.Offset) string   { return fmt.Sprintf("%020d%s", first, indexSuffix) }

func (l *Log) path(name string) string     { return l.fs.PathJoin(l.dir, name) }
func (l *Log) indexPath(s *segment) string { return l.path(indexName(s.first)) }

// parseName parses "<20 digits><suffix>".
func parseName(name, suffix string) (logpos.Offset, bool) {
	if len(name) != 20+len(suffix) || name[20:] != suffix {
		return 0, false
	}
	var v int64
	for _, c := range name[:20] {
		if c < '0' || c > '9' || v > (math.MaxInt64-int64(c-'0'))/10 {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return logpos.Offset(v), true
}

func (l *Log) checkLiveLocked() error {
	if l.mu.closed {
		return ErrClosed
	}
	return l.mu.failed
}

// failLocked makes a write or sync failure sticky.
func (l *Log) failLocked(op string, err error) error {
	if l.mu.failed == nil {
		l.mu.failed = fmt.Errorf("%w: %s: %w", ErrFailed, op, err)
		l.logger.Error("wal: failed; reopen to recover", "op", op, "err", err)
	}
	return l.mu.failed
}

func (l *Log) fail(op string, err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failLocked(op, err)
}

func (l *Log) kickWorker() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// syncDir fsyncs the directory. A failure fails the log, whoever meets
// it: the fsync covered every name changed since the last one that
// succeeded (a segment's among them), and a later fsync may succeed
// without writing what this one lost (Linux reports a writeback error
// once).
func (l *Log) syncDir() error {
	l.dirMu.Lock()
	defer l.dirMu.Unlock()
	if err := l.dirFile.Sync(); err != nil {
		return l.fail("fsync directory", err)
	}
	return nil
}

// syncDirIfDirty makes the directory's changes durable (the segments
// named so far), unless they are already. A failure fails the log.
func (l *Log) syncDirIfDirty() error {
	l.mu.Lock()
	gen := l.mu.dirGen
	dirty := gen != l.mu.dirSyncedGen
	l.mu.Unlock()
	if !dirty {
		return nil
	}
	if err := l.syncDir(); err != nil {
		return l.fail("fsync directory", err)
	}
	l.mu.Lock()
	l.mu.dirSyncedGen = max(l.mu.dirSyncedGen, gen)
	l.mu.Unlock()
	return nil
}

// AppendAsync appends e without waiting for it to be durable (see Sync).
// The value is copied: the caller may reuse its buffers. The offset must be
// the last appended offset + 1 (ErrGap otherwise); an empty log accepts any
// offset ≥ 0. Only one goroutine may append at a time.
func (l *Log) AppendAsync(e logpos.Entry) error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()

	l.mu.Lock()
	err := l.checkLiveLocked()
	last, prev, active, pending := l.mu.lastAppended.Offset, l.mu.lastCRC, l.mu.active, len(l.mu.pending)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	switch {
	case len(e.Value) > MaxValueSize:
		return fmt.Errorf("%w: value of %d bytes (max %d)", ErrTooLarge, len(e.Value), MaxValueSize)
	case last == logpos.NoOffset && e.Offset < 0:
		return fmt.Errorf("%w: first offset %d", ErrOutOfRange, e.Offset)
	case last != logpos.NoOffset && e.Offset != last+1:
		return fmt.Errorf("%w: appending offset %d after %d", ErrGap, e.Offset, last)
	case e.Offset == math.MaxInt64:
		return fmt.Errorf("%w: offset %d", ErrOutOfRange, e.Offset)
	}

	var crc uint32
	l.scratch, crc = appendRecord(l.scratch[:0], &e, prev)
	size := int64(len(l.scratch))
	if active == nil || (active.count > 0 && active.end+size > active.capacity) {
		if active, err = l.rollSegment(e.Offset, prev, size); err != nil {
			return err
		}
	} else if pending > 0 && pending+int(size) >= flushThreshold {
		// Written before the entry is taken: should the write fail, the
		// entry is refused, and nothing of it was taken.
		l.writeMu.Lock()
		_, err = l.flushLocked()
		l.writeMu.Unlock()
		if err != nil {
			return err
		}
	}

	l.mu.Lock()
	active.positions = append(active.positions, uint32(active.end))
	active.end += size
	active.count++
	active.lastCRC = crc
	active.lastTerm = e.Term
	l.mu.pending = append(l.mu.pending, l.scratch...)
	l.mu.lastAppended = e.ID()
	l.mu.lastCRC = crc
	l.mu.Unlock()
	if cap(l.scratch) > maxSpareBuffer {
		l.scratch = nil
	}
	return nil
}

// SeedChain sets the CRC the first entry of an empty log is chained to
// (after a snapshot, the leader's previous_entry_crc). Without a seed the
// chain starts from 0. The seed is persisted with the first entry; until
// then it stays, whatever becomes of the appends that fail, and seeding
// again replaces it (Clear resets it to 0).
func (l *Log) SeedChain(prevCRC uint32) error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.checkLiveLocked(); err != nil {
		return err
	}
	if l.mu.lastAppended.Offset != logpos.NoOffset {
		return fmt.Errorf("%w: cannot seed the chain after offset %d", ErrNotEmpty, l.mu.lastAppended.Offset)
	}
	l.mu.lastCRC = prevCRC
	return nil
}

// rollSegment seals the active segment and starts a new one whose first
// record is first, chained to prev. Called with appendMu held.
func (l *Log) rollSegment(first logpos.Offset, prev uint32, recSize int64) (*segment, error) {
	l.writeMu.Lock()
	_, err := l.flushLocked()
	l.writeMu.Unlock()
	if err != nil {
		return nil, err
	}
	capacity := max(l.opts.SegmentSize, segmentHeaderSize+recSize)
	if capacity > math.MaxUint32 {
		return nil, fmt.Errorf("%w: record of %d bytes", ErrTooLarge, recSize)
	}
	path := l.path(segmentName(first))
	// No segment's name may reach the disk before the names of the
	// segments before it (a crash would leave the log with a hole at its
	// start): one named since the last sync round is made durable first.
	// Rare: a round runs as soon as a segment is named and written to.
	if err := l.syncDirIfDirty(); err != nil {
		return nil, err
	}

	l.mu.Lock()
	f, prepared := l.mu.prepared, l.mu.preparedPath
	l.mu.prepared = nil
	l.mu.Unlock()
	if f != nil {
		if err := l.fs.Rename(prepared, path); err != nil {
			// Not left behind: each failed rename would leave another
			// preallocated file until the next Open.
			_ = f.Close()
			_ = l.fs.Remove(prepared)
			f = nil
			l.logger.Warn("wal: cannot use the prepared segment", "err", err)
		}
	}
	preallocated := f != nil
	if f == nil {
		if f, err = l.fs.Create(path, vfs.WriteCategoryUnspecified); err != nil {
			// A file system may leave the file (or the rename above
			// may have happened after all): it is no segment of the
			// log, and a truncation back below first would not see it.
			_ = l.fs.Remove(path)
			return nil, fmt.Errorf("wal: create segment %s: %w", path, err)
		}
	}
	if !preallocated || capacity > l.opts.SegmentSize {
		PrepareFile(f, capacity)
	}
	s := &segment{
		first:    first,
		path:     path,
		prevCRC:  prev,
		end:      segmentHeaderSize,
		capacity: capacity,
		file:     f,
	}
	l.mu.Lock()
	var synced vfs.File
	if old := l.mu.active; old != nil {
		old.sealed = true
		// A segment whose bytes a sync round already covered gets no
		// further round: it is synced now (else the round marks it).
		if old.file != nil && old.durableEnd == old.end {
			old.synced = true
			synced, old.file = old.file, nil
		}
	}
	l.mu.segs = append(l.mu.segs, s)
	l.mu.active = s
	l.mu.prepFailed = false // let the worker try again
	l.mu.pending = appendSegmentHeader(l.mu.pending[:0], segmentHeader{first: first, prevCRC: prev})
	l.mu.dirGen++
	l.mu.Unlock()
	if synced != nil {
		_ = synced.Close()
	}
	l.kickWorker()
	return s, nil
}

// flushLocked hands the pending bytes to the active segment's file. It
// returns the last entry whose bytes have all been handed to a file (the
// last appended entry when the pending bytes were taken). Called with
// writeMu held.
func (l *Log) flushLocked() (logpos.EntryID, error) {
	l.mu.Lock()
	s := l.mu.active
	upTo := l.mu.lastAppended
	if s == nil || len(l.mu.pending) == 0 || l.mu.failed != nil {
		err := l.mu.failed
		l.mu.Unlock()
		return upTo, err
	}
	buf := l.mu.pending
	l.mu.pending = l.mu.spare[:0]
	l.mu.spare = nil
	pos := s.flushed
	s.flushed += int64(len(buf))
	l.mu.Unlock()

	_, err := s.file.WriteAt(buf, pos)

	l.mu.Lock()
	defer l.mu.Unlock()
	if cap(buf) <= maxSpareBuffer {
		l.mu.spare = buf[:0]
	}
	if err != nil {
		return upTo, l.failLocked("write "+s.path, err)
	}
	return upTo, nil
}

// Sync makes every entry appended before the call durable and returns the
// last durable offset. Concurrent callers share fsyncs: one fsync covers
// everything appended before it started, and a caller whose entries a
// running fsync covers waits for it rather than starting another. Appends
// continue while the fsync runs. ctx bounds only the wait for another
// caller's fsync; an fsync, once started, completes.
func (l *Log) Sync(ctx context.Context) (logpos.Offset, error) {
	l.mu.Lock()
	err := l.checkLiveLocked()
	target, durable := l.mu.lastAppended.Offset, l.mu.durable.Offset
	l.mu.Unlock()
	if err != nil || target <= durable {
		return durable, err
	}
	// Nobody syncing: no wait, whatever ctx says.
	select {
	case l.syncSem <- struct{}{}:
	default:
		select {
		case l.syncSem <- struct{}{}:
		case <-ctx.Done():
			return durable, fmt.Errorf("wal: sync: %w", ctx.Err())
		}
	}
	defer func() { <-l.syncSem }()
	l.mu.Lock()
	err = l.checkLiveLocked()
	durable = l.mu.durable.Offset
	l.mu.Unlock()
	if err != nil || durable >= target {
		return durable, err
	}
	return l.syncRoundLocked()
}

// syncRoundLocked writes and fsyncs everything appended so far. Called
// with syncSem held.
func (l *Log) syncRoundLocked() (logpos.Offset, error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	// Only what flushLocked handed to the files can be covered: entries
	// appended since are still in memory.
	target, err := l.flushLocked()
	if err != nil {
		return l.LastDurable().Offset, err
	}
	l.mu.Lock()
	if target.Offset <= l.mu.durable.Offset {
		durable := l.mu.durable.Offset
		l.mu.Unlock()
		return durable, nil
	}
	type work struct {
		s   *segment
		end int64
	}
	var todo []work
	for _, s := range l.mu.segs {
		if s.file != nil && s.durableEnd < s.flushed {
			todo = append(todo, work{s, s.flushed})
		}
	}
	l.mu.Unlock()

	for _, w := range todo {
		if err := w.s.file.SyncData(); err != nil {
			return l.LastDurable().Offset, l.fail("fsync "+w.s.path, err)
		}
	}
	if err := l.syncDirIfDirty(); err != nil {
		return l.LastDurable().Offset, err
	}

	var toClose []vfs.File
	l.mu.Lock()
	// A directory fsync of another goroutine (the worker's, after an
	// index) may have failed while this round ran; it may have lost a
	// segment name this round's entries live under, and this round's
	// own directory fsync may have succeeded without writing it (the
	// kernel reports a writeback error once). Directory fsyncs are
	// serialized: one that failed before this round's own ended is
	// recorded by now; one that did not is no matter (the names this
	// round relies on were made durable by its fsync or an earlier one).
	if err := l.mu.failed; err != nil {
		durable := l.mu.durable.Offset
		l.mu.Unlock()
		return durable, err
	}
	for _, w := range todo {
		w.s.durableEnd = w.end
		if w.s.sealed && w.end == w.s.end {
			w.s.synced = true
			toClose = append(toClose, w.s.file)
			w.s.file = nil
		}
	}
	if target.Offset > l.mu.durable.Offset {
		l.mu.durable = target
	}
	durable := l.mu.durable.Offset
	l.mu.Unlock()
	for _, f := range toClose {
		_ = f.Close()
	}
	if len(toClose) > 0 {
		l.kickWorker()
	}
	return durable, nil
}

// LastDurable returns the (term, offset) of the last durable entry, or
// logpos.NoEntry when there is none. After Close it returns the last value.
func (l *Log) LastDurable() logpos.EntryID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.durable
}

// quiesce stops appends, syncs and background maintenance by taking
// their locks in order; the function it returns releases them.
func (l *Log) quiesce() (release func()) {
	l.appendMu.Lock()
	l.syncSem <- struct{}{}
	l.maintMu.Lock()
	return func() {
		l.maintMu.Unlock()
		<-l.syncSem
		l.appendMu.Unlock()
	}
}

// LastAppended returns the (term, offset) of the last appended entry,
// durable or not, or logpos.NoEntry.
func (l *Log) LastAppended() logpos.EntryID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.lastAppended
}

// LastCRC returns the chain CRC of the last appended entry (the value the
// next entry is chained to): the seed when the log is empty.
func (l *Log) LastCRC() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.lastCRC
}

// FirstOffset returns the first offset the log holds, or logpos.NoOffset
// when it is empty.
func (l *Log) FirstOffset() logpos.Offset {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstLocked()
}

func (l *Log) firstLocked() logpos.Offset {
	if len(l.mu.segs) == 0 {
		return logpos.NoOffset
	}
	return l.mu.segs[0].first
}

// findLocked returns the segment that holds (or will hold) offset o.
func (l *Log) findLocked(o logpos.Offset) *segment {
	segs := l.mu.segs
	i := sort.Search(len(segs), func(i int) bool { return segs[i].first > o })
	if i == 0 {
		return nil
	}
	return segs[i-1]
}

// Close makes the appended entries durable, stops the background worker
// and closes the files. A failed log is only closed: its failure was
// reported by the call that met it and by every call since, and nothing
// appended after it was reported durable. Close is idempotent: a later
// Close returns nil once the first has finished, and every other method
// returns ErrClosed. Readers must be closed separately.
func (l *Log) Close() error {
	_, _, err := l.close(false)
	return err
}

// close is Close, and says whether this call closed the log (false: it
// was closed already). With keepLock, the directory stays locked and the
// lock is returned for the caller to release.
func (l *Log) close(keepLock bool) (closed bool, lock io.Closer, err error) {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		<-l.closeDone // a Close in progress has finished when this returns
		return false, nil, nil
	}
	l.mu.closed = true
	l.mu.Unlock()
	defer close(l.closeDone)

	close(l.quit)
	l.wg.Wait()
	defer l.quiesce()()

	l.mu.Lock()
	failed := l.mu.failed
	l.mu.Unlock()
	if failed == nil {
		if _, err = l.syncRoundLocked(); err == nil {
			l.writeIndexes()
		}
	}
	if keepLock {
		lock, l.lock = l.lock, nil
	}
	l.closeFiles()
	return true, lock, err
}

// Delete closes the log and removes its directory, durably. The
// directory is first moved aside (to its name followed by ".deleted")
// while it is still locked, so that a crash leaves all of the log or
// nothing of it (Open removes what a crash left aside), and a log opened
// in the same directory meanwhile is not removed with it. On a log that
// is closed already Delete returns ErrClosed and removes nothing: the
// directory may belong to a log opened since.
func (l *Log) Delete() error {
	closed, lock, err := l.close(true)
	if !closed {
		return ErrClosed
	}
	dir := filepath.Clean(l.dir)
	gone := durable.DeletedDir(l.fs, dir)
	parent := l.fs.PathDir(dir)
	rerr := l.fs.RemoveAll(gone)
	if rerr == nil {
		rerr = l.fs.Rename(dir, gone)
	}
	if rerr == nil {
		rerr = durable.SyncDir(l.fs, parent)
	}
	if lock != nil {
		_ = lock.Close()
	}
	if rerr == nil {
		rerr = l.fs.RemoveAll(gone)
	}
	if rerr == nil {
		rerr = durable.SyncDir(l.fs, parent)
	}
	if rerr != nil {
		return errors.Join(err, fmt.Errorf("wal: remove %s: %w", l.dir, rerr))
	}
	return err
}

// closeFiles closes every file the log holds. Called when nothing else runs.
func (l *Log) closeFiles() {
	l.mu.Lock()
	var files []io.Closer
	for _, s := range l.mu.segs {
		if s.file != nil {
			files = append(files, s.file)
			s.file = nil
		}
	}
	prepared, preparedPath := l.mu.prepared, l.mu.preparedPath
	l.mu.prepared = nil
	l.mu.Unlock()
	for _, f := range files {
		_ = f.Close()
	}
	if prepared != nil {
		_ = prepared.Close()
		_ = l.fs.Remove(preparedPath)
	}
	if l.dirFile != nil {
		_ = l.dirFile.Close()
		l.dirFile = nil
	}
	if l.lock != nil {
		_ = l.lock.Close()
		l.lock = nil
	}
}
