package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tablefsm/tablefsm/logpos"

	"github.com/tablefsm/tablefsm/internal/durable"
)

// Loader receives a snapshot into a staging directory of the store, out
// of the way of the live database. Write the chunks in order, then
// Install it (or Finish first, to validate it ahead of Install), or Abort.
//
// Any failure — an invalid sequence (ErrInvalidSnapshot) or an I/O error —
// aborts the loader: its staged files are removed, and the live database
// was never touched. A loader whose owner crashed leaves a staging
// directory that the next Open removes.
type Loader struct {
	s       *Store
	name    string // the staging database directory, db-NNNNNN
	dir     string
	maxSize int64

	mu struct {
		sync.Mutex
		// err is set once the loader is over: the failure that aborted
		// it, or errLoaderDone after Abort or Install.
		err   error
		f     vfs.File // the file being written
		file  string   // its name
		next  int32    // its next chunk index
		count int32    // its chunk count
		names map[string]struct{}
		// size is what counts against maxSize: each file's content, at
		// least MinCountedFileSize per file; fileBytes is the content of the
		// file being written.
		size, fileBytes int64
		db              *pebble.DB // the staged database, once Finish opened it
		info            SnapshotInfo
	}
}

// MinCountedFileSize is the least a file of a snapshot counts against
// Options.MaxSnapshotSize, whatever its content: about what an empty file
// takes on disk.
const MinCountedFileSize = 4096

var errLoaderDone = fmt.Errorf("store: loader aborted or installed: %w", ErrClosed)

// NewLoader starts loading a snapshot into a new staging directory.
func (s *Store) NewLoader() (*Loader, error) {
	s.db.RLock()
	defer s.db.RUnlock()
	if s.db.h == nil {
		return nil, ErrClosed
	}
	s.removeLeftovers()
	s.mu.Lock()
	name := dbDirName(s.nextSeqLocked())
	s.mu.Unlock()
	l := &Loader{s: s, name: name, dir: s.fs.PathJoin(s.dir, name), maxSize: s.opts.MaxSnapshotSize}
	l.mu.names = make(map[string]struct{})
	if err := s.fs.MkdirAll(l.dir, 0o755); err != nil {
		return nil, errors.Join(fmt.Errorf("store: new loader: %w", err), s.removeDir(l.dir))
	}
	if err := durable.SyncDir(s.fs, s.dir); err != nil {
		return nil, errors.Join(fmt.Errorf("store: new loader: %w", err), s.removeDir(l.dir))
	}
	s.mu.Lock()
	if s.mu.loaders == nil {
		s.mu.loaders = make(map[*Loader]struct{})
	}
	s.mu.loaders[l] = struct{}{}
	s.mu.Unlock()
	return l, nil
}

// Write stages one chunk. Chunks come file after file, each file's chunks
// in order 0..Count-1 with the same Count, no file twice; names must match
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$; the total content, each file
// counting at least 4096 bytes, must stay within Options.MaxSnapshotSize. A chunk breaking a rule is ErrInvalidSnapshot.
// On any error the loader is aborted. Write may modify c.Content (a
// vfs.File may).
func (l *Loader) Write(c Chunk) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.err != nil {
		return l.mu.err
	}
	if l.mu.db != nil {
		return l.failLocked(fmt.Errorf("%w: chunk %d of %q after the end of the snapshot", ErrInvalidSnapshot, c.Index, c.Name))
	}
	if err := l.writeLocked(c); err != nil {
		return l.failLocked(err)
	}
	return nil
}

func (l *Loader) writeLocked(c Chunk) error {
	fs := l.s.fs
	if !validName(c.Name) {
		if len(c.Name) > maxNameLen {
			// Not quoted: the error may go back to a client.
			return fmt.Errorf("%w: a file name of %d bytes (at most %d)", ErrInvalidSnapshot, len(c.Name), maxNameLen)
		}
		return fmt.Errorf("%w: file name %q", ErrInvalidSnapshot, c.Name)
	}
	if c.Count < 1 || c.Index < 0 || c.Index >= c.Count {
		return fmt.Errorf("%w: chunk %d of %d of %q", ErrInvalidSnapshot, c.Index, c.Count, c.Name)
	}
	if c.Index == 0 {
		if l.mu.f != nil {
			return fmt.Errorf("%w: file %q starts after %d of %d chunks of %q", ErrInvalidSnapshot, c.Name, l.mu.next, l.mu.count, l.mu.file)
		}
		if _, dup := l.mu.names[c.Name]; dup {
			return fmt.Errorf("%w: file %q sent twice", ErrInvalidSnapshot, c.Name)
		}
		f, err := fs.Create(fs.PathJoin(l.dir, c.Name), vfs.WriteCategoryUnspecified)
		if err != nil {
			return fmt.Errorf("store: stage %q: %w", c.Name, err)
		}
		l.mu.names[c.Name] = struct{}{}
		l.mu.f, l.mu.file, l.mu.next, l.mu.count, l.mu.fileBytes = f, c.Name, 0, c.Count, 0
	} else {
		if l.mu.f == nil || c.Name != l.mu.file {
			return fmt.Errorf("%w: chunk %d of %q out of order", ErrInvalidSnapshot, c.Index, c.Name)
		}
		if c.Index != l.mu.next {
			return fmt.Errorf("%w: chunk %d of %q, want chunk %d", ErrInvalidSnapshot, c.Index, c.Name, l.mu.next)
		}
		if c.Count != l.mu.count {
			return fmt.Errorf("%w: chunk %d of %q says %d chunks, chunk 0 said %d", ErrInvalidSnapshot, c.Index, c.Name, c.Count, l.mu.count)
		}
	}
	if len(c.Content) > 0 && isPebbleLog(c.Name) {
		// A snapshot carries its data in tables (Snapshot flushes first,
		// and leaves Pebble's logs out): records to replay would be
		// decoded by Pebble in the background, where a malformed one
		// takes the process down.
		return fmt.Errorf("%w: %q is a Pebble log holding records (a snapshot's data is in its tables)", ErrInvalidSnapshot, c.Name)
	}
	// A file counts max(its content, MinCountedFileSize): a snapshot of many
	// empty files is bounded too. added is what this chunk adds.
	counted := max(l.mu.fileBytes, MinCountedFileSize)
	if c.Index == 0 {
		counted = 0
	}
	added := max(l.mu.fileBytes+int64(len(c.Content)), MinCountedFileSize) - counted
	if l.maxSize > 0 && l.mu.size+added > l.maxSize {
		return fmt.Errorf("%w: larger than the limit of %d bytes (file content, each file counting at least %d)", ErrInvalidSnapshot, l.maxSize, MinCountedFileSize)
	}
	l.mu.size += added
	l.mu.fileBytes += int64(len(c.Content))
	if _, err := l.mu.f.Write(c.Content); err != nil {
		return fmt.Errorf("store: stage %q: %w", c.Name, err)
	}
	l.mu.next++
	if l.mu.next == l.mu.count {
		f := l.mu.f
		l.mu.f, l.mu.file = nil, ""
		err := f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("store: stage %q: %w", c.Name, err)
		}
	}
	return nil
}

// Finish checks that the snapshot is complete (the last file has all its
// chunks, at least one file), makes the staged files durable, and opens
// them as a store: it must be a Pebble database carrying the store's
// reserved records with a term and a commit id (a store that nothing was
// applied to is no snapshot). It returns what the snapshot carries.
// Finish changes nothing outside the staging directory; it may be called
// more than once (Install calls it if needed). On error the loader is
// aborted.
func (l *Loader) Finish() (SnapshotInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.finishLocked()
}

func (l *Loader) finishLocked() (SnapshotInfo, error) {
	if l.mu.err != nil {
		return SnapshotInfo{}, l.mu.err
	}
	if l.mu.db != nil {
		return l.mu.info, nil
	}
	info, db, err := l.openStagedLocked()
	if err != nil {
		return SnapshotInfo{}, l.failLocked(err)
	}
	l.mu.db, l.mu.info = db, info
	return info, nil
}

func (l *Loader) openStagedLocked() (SnapshotInfo, *pebble.DB, error) {
	if l.mu.f != nil {
		return SnapshotInfo{}, nil, fmt.Errorf("%w: truncated: %d of %d chunks of %q", ErrInvalidSnapshot, l.mu.next, l.mu.count, l.mu.file)
	}
	if len(l.mu.names) == 0 {
		return SnapshotInfo{}, nil, fmt.Errorf("%w: no files", ErrInvalidSnapshot)
	}
	if err := durable.SyncDir(l.s.fs, l.dir); err != nil {
		return SnapshotInfo{}, nil, fmt.Errorf("store: stage: %w", err)
	}
	for name := range l.mu.names {
		if strings.HasPrefix(name, "MANIFEST-") {
			if err := checkManifest(l.s.fs, l.s.fs.PathJoin(l.dir, name)); err != nil {
				return SnapshotInfo{}, nil, err
			}
		}
	}
	// Checked first with Pebble's background work off: the files came
	// from the network, and a panic on a goroutine of Pebble's own ends
	// the process. Every block is read by then, in the foreground.
	check := l.s.pebbleOptions(true)
	check.DisableAutomaticCompactions, check.DisableTableStats = true, true
	if _, db, err := openStaged(l.dir, check); err != nil {
		return SnapshotInfo{}, nil, err
	} else if err := db.Close(); err != nil {
		return SnapshotInfo{}, nil, fmt.Errorf("store: close checked snapshot: %w", err)
	}
	return openStaged(l.dir, l.s.pebbleOptions(true))
}

// checkManifest refuses a staged manifest that does not read to its end,
// record by record, each whole and with a matching checksum. Pebble stops
// reading a manifest at its first damaged or torn record and opens the
// database the records before it describe: an older state, consistent,
// when the damage is in the last edits (the snapshot's own flush).
func checkManifest(fs vfs.FS, path string) error {
	f, err := fs.Open(path)
	if err != nil {
		return fmt.Errorf("store: read staged %s: %w", path, err)
	}
	defer f.Close()
	rr := record.NewReader(f, 0)
	for {
		r, err := rr.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		switch {
		case err == io.EOF:
			return nil
		case record.IsInvalidRecord(err):
			return fmt.Errorf("%w: %s does not read to its end (a record damaged or cut short): %v", ErrInvalidSnapshot, fs.PathBase(path), err)
		case err != nil:
			return fmt.Errorf("store: read staged %s: %w", path, err)
		}
	}
}

// isPebbleLog reports whether name is that of a Pebble log (its WAL).
func isPebbleLog(name string) bool { return strings.HasSuffix(name, ".log") }

// openStaged opens the staged database in dir and checks it. The files
// came from the network: Pebble may panic on some malformed ones (a
// manifest or a block with a valid checksum and malformed contents) while
// opening or reading them. The staged database is the loader's alone, so
// such a panic is the snapshot's fault, recovered as ErrInvalidSnapshot.
func openStaged(dir string, opts *pebble.Options) (info SnapshotInfo, db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				closeAfterAnyPanic(db)
			}
			info, db, err = SnapshotInfo{}, nil, fmt.Errorf("%w: reading the staged store panicked: %v", ErrInvalidSnapshot, r)
		}
	}()
	db, err = pebble.Open(dir, opts)
	if err != nil {
		return SnapshotInfo{}, nil, classifyStaged(err)
	}
	st, err := readState(db, ErrInvalidSnapshot)
	switch {
	case err != nil:
	case st.term < 0:
		err = fmt.Errorf("%w: the staged store has no term", ErrInvalidSnapshot)
	case st.commit.Offset < 0:
		err = fmt.Errorf("%w: the staged store has no commit id (nothing was applied to it)", ErrInvalidSnapshot)
	case st.commit.Term < 0:
		// Apply never writes it: every entry has a term.
		err = fmt.Errorf("%w: the staged store's commit id %v has no term", ErrInvalidSnapshot, st.commit)
	}
	if err == nil {
		err = checkTables(db)
	}
	if err == nil {
		err = readAll(db)
	}
	if err != nil {
		return SnapshotInfo{}, nil, errors.Join(classifyStaged(err), db.Close())
	}
	return SnapshotInfo{Commit: st.commit, Term: st.term, Options: st.options}, db, nil
}

// checkTables refuses a staged database whose manifest lists its tables
// in ways Pebble does not check when it opens one, and trips over later,
// on goroutines of its own (a compaction panicking) or by losing data: a
// table number listed twice, a table whose smallest key is above its
// largest, two tables with the same bounds and sequence numbers (a copy
// of one), a table that is virtual or not on the local disk (the store
// makes none), a table holding records at or above the sequence number
// the database gives its next write (the manifest's last sequence number
// set below them: those records are hidden at first, surface as later
// writes pass them, and shadow the writes made meanwhile).
func checkTables(db *pebble.DB) error {
	levels, err := db.SSTables()
	if err != nil {
		return err
	}
	next, err := nextSeqNum(db)
	if err != nil {
		return err
	}
	type bounds struct {
		smallest, largest string
		seqs              [2]uint64
	}
	numbers, seen := map[uint64]bool{}, map[bounds]bool{}
	for level, tables := range levels {
		for _, t := range tables {
			b := bounds{string(t.Smallest.UserKey) + "#" + t.Smallest.Trailer.String(), string(t.Largest.UserKey) + "#" + t.Largest.Trailer.String(),
				[2]uint64{uint64(t.SmallestSeqNum), uint64(t.LargestSeqNum)}}
			switch c := bytes.Compare(t.Smallest.UserKey, t.Largest.UserKey); {
			case t.Virtual || t.BackingType != pebble.BackingTypeLocal:
				return fmt.Errorf("%w: table %s (L%d) is virtual or not local", ErrInvalidSnapshot, t.FileNum, level)
			case numbers[uint64(t.FileNum)]:
				return fmt.Errorf("%w: table %s is listed twice", ErrInvalidSnapshot, t.FileNum)
			case c > 0 || c == 0 && t.Smallest.Trailer < t.Largest.Trailer:
				return fmt.Errorf("%w: table %s (L%d) has its smallest key above its largest", ErrInvalidSnapshot, t.FileNum, level)
			case seen[b]:
				return fmt.Errorf("%w: table %s (L%d) has the bounds of another table", ErrInvalidSnapshot, t.FileNum, level)
			case uint64(t.LargestSeqNum) >= next:
				return fmt.Errorf("%w: table %s (L%d) holds sequence number %d, at or above the database's next (%d)", ErrInvalidSnapshot, t.FileNum, level, t.LargestSeqNum, next)
			}
			numbers[uint64(t.FileNum)], seen[b] = true, true
		}
	}
	return nil
}

// nextSeqNum returns the sequence number db gives its next write: a
// batch holding only a LogData record takes none, and is given it.
func nextSeqNum(db *pebble.DB) (uint64, error) {
	b := db.NewBatch()
	defer b.Close()
	if err := b.LogData(nil, nil); err != nil {
		return 0, err
	}
	if err := db.Apply(b, pebble.NoSync); err != nil {
		return 0, err
	}
	return uint64(b.SeqNum()), nil
}

// closeAfterAnyPanic closes a staged database that panicked, as well as
// it can: whatever its Close panics with is dropped too.
func closeAfterAnyPanic(db *pebble.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// readAll reads every live key and value of db, so that the blocks that
// hold them are checked against their checksums: a damaged snapshot is
// refused before it replaces anything. A range key (the store writes
// none) is refused too. Its errors are classified by the caller (an
// operating system error is not the snapshot's fault).
func readAll(db *pebble.DB) (err error) {
	defer catchFatal(&err, nil)
	it, err := db.NewIter(&pebble.IterOptions{KeyTypes: pebble.IterKeyTypePointsAndRanges})
	if err != nil {
		return err
	}
	// Closed however reading ends, a panic too: a database with an open
	// iterator does not close (and keeps its files and goroutines).
	defer func() {
		if r := recover(); r != nil {
			_ = it.Close()
			panic(r)
		}
	}()
	for it.First(); it.Valid(); it.Next() {
		if _, hasRange := it.HasPointAndRange(); hasRange {
			return errors.Join(fmt.Errorf("%w: the staged store holds a range key", ErrInvalidSnapshot), it.Close())
		}
		if _, err := it.ValueAndErr(); err != nil {
			return errors.Join(err, it.Close())
		}
	}
	return it.Close()
}

// classifyStaged sorts the failure to open or read a staged database: an
// operating system I/O error is returned as such (the transfer may be
// retried), anything else means the files are not a valid store.
func classifyStaged(err error) error {
	if errors.Is(err, ErrInvalidSnapshot) {
		return err
	}
	if osIOError(err) {
		return fmt.Errorf("store: open staged snapshot: %w", err)
	}
	return fmt.Errorf("%w: %v", ErrInvalidSnapshot, err)
}

// osIOError reports whether err is the operating system's failure to
// read or write, rather than a file that is missing or not what it should
// be.
func osIOError(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && errno != syscall.ENOENT && errno != syscall.ENOTDIR && errno != syscall.EISDIR
}

// Abort removes the staged files. It does nothing on a loader that is
// already over (failed, aborted or installed).
func (l *Loader) Abort() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.err != nil {
		return nil
	}
	l.mu.err = errLoaderDone
	if err := l.removeLocked(); err != nil {
		return fmt.Errorf("store: abort loader: %w", err)
	}
	return nil
}

// failLocked aborts the loader because of err, and returns err.
func (l *Loader) failLocked(err error) error {
	l.mu.err = err
	if rerr := l.removeLocked(); rerr != nil {
		l.s.log.Warn("store: remove staged snapshot", "dir", l.dir, "err", rerr)
	}
	return err
}

// removeLocked closes what the loader holds open, removes its staging
// directory and forgets it.
func (l *Loader) removeLocked() error {
	var errs []error
	if l.mu.f != nil {
		errs = append(errs, l.mu.f.Close())
		l.mu.f = nil
	}
	if l.mu.db != nil {
		errs = append(errs, l.mu.db.Close())
		l.mu.db = nil
	}
	errs = append(errs, l.s.removeDir(l.dir))
	l.s.mu.Lock()
	delete(l.s.mu.loaders, l)
	l.s.mu.Unlock()
	return errors.Join(errs...)
}

// Install replaces the live database with the loader's (after Finish, if
// it was not called). It must not run concurrently with Apply.
//
// Before the swap it writes into the staged database, synced: the term
// max(minTerm, the staged term, the live term) — the staged term options
// are kept — and the log-reset record carrying the snapshot's commit id.
// The swap is the rename of the marker naming the live database: a crash
// before it leaves the old store, after it the new one (Open rolls it
// forward). The Store then works on the new database; Commit,
// DurableCommit and LogResetPending report the snapshot's commit id, and
// the caller must reset its log and then call ClearLogReset.
//
// A snapshot whose commit id has a term above that term is refused with
// ErrInvalidSnapshot. On an error before the swap the loader is aborted
// and the live store is untouched. If the marker was renamed but the
// directory sync failed, Install puts the old marker back: once that is
// durable, the install failed and the live store is untouched. If that fails too, which
// database a crash would leave is unknown: the store is closed, the error
// wraps ErrFailed, and reopening it opens the database the marker names.
func (s *Store) Install(l *Loader, minTerm logpos.Term) (SnapshotInfo, error) {
	if l == nil || l.s != s {
		if s.isClosed() {
			return SnapshotInfo{}, ErrClosed
		}
		return SnapshotInfo{}, errors.New("store: install: the loader belongs to another store")
	}
	s.write.Lock()
	defer s.write.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.isClosed() {
		return SnapshotInfo{}, ErrClosed
	}
	if err := s.failure(); err != nil {
		// Like every write of a failed store: reopening it recovers. The
		// snapshot is abandoned as on any other error before the swap.
		return SnapshotInfo{}, l.failLocked(err)
	}
	info, err := l.finishLocked()
	if err != nil {
		return SnapshotInfo{}, err
	}
	info.Term = max(minTerm, info.Term, s.Term())
	if info.Commit.Term > info.Term {
		// No leader of a term commits an entry of a later term: applying
		// an entry after this commit would need a term below it, which
		// the store refuses, and the store would be stuck.
		return SnapshotInfo{}, l.failLocked(fmt.Errorf("%w: its commit %v is of a term above the term %d", ErrInvalidSnapshot, info.Commit, info.Term))
	}
	staged := l.mu.db
	err = commitStaged(staged, info)
	if err != nil {
		return SnapshotInfo{}, l.failLocked(fmt.Errorf("store: install: %w", err))
	}

	renamed, err := writeMarker(s.fs, s.dir, l.name)
	if !renamed {
		return SnapshotInfo{}, l.failLocked(fmt.Errorf("store: install: %w", err))
	}
	if err != nil {
		return SnapshotInfo{}, s.undoMarkerLocked(l, err)
	}

	// The marker names the staged database: it is live.
	s.db.Lock()
	old, oldName := s.db.h, s.db.name
	s.db.h, s.db.name = staged, l.name
	s.write.batch, s.write.batchDB = nil, nil
	s.mu.Lock()
	s.mu.state = state{term: info.Term, options: info.Options, commit: info.Commit, reset: info.Commit, resetPending: true}
	s.mu.durable = info.Commit
	delete(s.mu.loaders, l)
	s.mu.Unlock()
	s.db.Unlock()
	l.mu.db, l.mu.err = nil, errLoaderDone

	if cerr := old.Close(); cerr != nil {
		s.log.Warn("store: close replaced database", "db", oldName, "err", cerr)
	}
	if rerr := errors.Join(s.removeDir(s.fs.PathJoin(s.dir, oldName)), durable.SyncDir(s.fs, s.dir)); rerr != nil {
		s.log.Warn("store: remove replaced database", "db", oldName, "err", rerr)
	}
	s.log.Debug("store: installed snapshot", "dir", s.dir, "db", l.name, "term", info.Term, "commit", info.Commit)
	return info, nil
}

// undoMarkerLocked handles a marker that was renamed to name the staged
// database but whose directory could not be synced (syncErr): a crash
// could leave either marker. It puts the old marker back; once that is
// durable, the install has failed and the old database is live as
// before. If it cannot, which database a restart would open is unknown:
// the store closes and fails with ErrFailed, and Open (which reads the
// marker the directory holds) recovers it. Called with the write lock and
// the loader's lock held.
func (s *Store) undoMarkerLocked(l *Loader, syncErr error) error {
	s.db.RLock()
	oldName := s.db.name
	s.db.RUnlock()
	_, err := writeMarker(s.fs, s.dir, oldName)
	if err == nil {
		return l.failLocked(fmt.Errorf("store: install: %w", syncErr))
	}
	s.db.Lock()
	old := s.db.h
	s.db.h = nil
	s.db.Unlock()
	s.write.batch, s.write.batchDB = nil, nil
	s.mu.Lock()
	delete(s.mu.loaders, l)
	s.mu.Unlock()
	l.mu.err = errLoaderDone
	staged := l.mu.db
	l.mu.db = nil
	failed := fmt.Errorf("%w: install: neither the old nor the new marker is durable (reopen the store): %w", ErrFailed, errors.Join(syncErr, err))
	s.markFailed(failed)
	return errors.Join(failed, s.releaseWriteLocked(old, staged))
}

// commitStaged writes the install's term and log-reset record into the
// staged database, synced. A fatal Pebble error of the staged database is
// an error of this install, not of the live store: it does not match
// ErrFailed.
func commitStaged(staged *pebble.DB, info SnapshotInfo) (err error) {
	defer func() {
		if errors.Is(err, ErrFailed) {
			err = fmt.Errorf("store: staged database: %v", err)
		}
	}()
	defer catchFatal(&err, nil)
	b := staged.NewBatch()
	defer b.Close()
	err = errors.Join(
		b.Set(keyTerm, encodeTerm(info.Term), nil),
		b.Set(keyLogReset, encodeEntryID(info.Commit), nil),
	)
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	return err
}
