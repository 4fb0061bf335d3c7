package store

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tablefsm/tablefsm/logpos"
)

// Chunk is one piece of one file of a snapshot: chunk Index of Count of
// the file Name. A snapshot is the chunks of its files, file after file,
// each file's chunks in order 0..Count-1; an empty file is one empty
// chunk.
type Chunk struct {
	Name    string
	Index   int32
	Count   int32
	Content []byte
}

// SnapshotInfo is what a snapshot carries besides the data: the id of the
// last entry applied to it, its term and the term's options.
type SnapshotInfo struct {
	Commit  logpos.EntryID
	Term    logpos.Term
	Options TermOptions
}

// Snapshot is a consistent point-in-time copy of the store (a Pebble
// checkpoint in a directory of its own), read out as chunks. Close it:
// that removes the copy (Store.Close closes the snapshots still open).
type Snapshot struct {
	s         *Store
	fs        vfs.FS
	dir       string
	info      SnapshotInfo
	chunkSize int64
	size      int64

	mu struct {
		sync.Mutex
		closed bool
		files  []snapshotFile
		index  int32    // next chunk of files[0]
		f      vfs.File // files[0], open
		buf    []byte
	}
}

type snapshotFile struct {
	name  string
	size  int64
	count int32
}

// Snapshot takes a snapshot of everything applied so far. Applies wait
// while the memtable is flushed and the checkpoint is cut (hard links).
func (s *Store) Snapshot() (_ *Snapshot, err error) {
	s.write.Lock()
	defer s.write.Unlock()
	s.db.RLock()
	defer s.db.RUnlock()
	h := s.db.h
	if h == nil {
		return nil, ErrClosed
	}
	// The flush is a write: a failed store refuses it, and one that fails
	// now is failed.
	if err := s.failure(); err != nil {
		return nil, err
	}
	defer catchFatal(&err, s.markFailed)
	s.mu.Lock()
	dir := s.fs.PathJoin(s.dir, checkpointDirName(s.nextSeqLocked()))
	st := s.mu.state
	s.mu.Unlock()
	// Flushed first, everything applied is in tables, whose blocks carry
	// checksums, rather than in Pebble's log, whose replay would stop
	// quietly at a damaged record of a transferred copy.
	if err := s.flush(h); err != nil {
		return nil, fmt.Errorf("store: snapshot: flush: %w", err)
	}
	if err := checkpoint(h, dir); err != nil {
		return nil, errors.Join(fmt.Errorf("store: snapshot: %w", err), s.removeDir(dir))
	}
	sn := &Snapshot{
		s:         s,
		fs:        s.fs,
		dir:       dir,
		info:      SnapshotInfo{Commit: st.commit, Term: st.term, Options: st.options},
		chunkSize: int64(s.opts.SnapshotChunkSize),
	}
	files, err := sn.list()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: snapshot: %w", err), s.removeDir(dir))
	}
	sn.mu.files = files
	s.mu.Lock()
	if s.mu.snapshots == nil {
		s.mu.snapshots = make(map[*Snapshot]struct{})
	}
	s.mu.snapshots[sn] = struct{}{}
	s.mu.Unlock()
	return sn, nil
}

// checkpoint cuts a checkpoint of h into dir. Pebble panics with an error
// when it cannot sync a marker of the checkpoint's own directory (it takes
// any failed fsync for fatal); the live database is untouched then, so it
// is an error of this snapshot. A fatal error of the live database panics
// on (a pebbleFatal).
func checkpoint(h *pebble.DB, dir string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("checkpoint: %w", e)
		}
	}()
	return h.Checkpoint(dir)
}

// list returns the checkpoint's files in name order with their chunk
// counts.
func (sn *Snapshot) list() ([]snapshotFile, error) {
	names, err := sn.fs.List(sn.dir)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	files := make([]snapshotFile, 0, len(names))
	for _, name := range names {
		fi, err := sn.fs.Stat(sn.fs.PathJoin(sn.dir, name))
		if err != nil {
			return nil, err
		}
		if fi.IsDir() || !validName(name) {
			return nil, fmt.Errorf("checkpoint holds %q, which a snapshot cannot carry", name)
		}
		if isPebbleLog(name) {
			// Flushed first, the database's data is in its tables: its
			// logs are empty, or older ones that opening skips.
			continue
		}
		count := max(1, (fi.Size()+sn.chunkSize-1)/sn.chunkSize)
		if count > math.MaxInt32 {
			return nil, fmt.Errorf("file %q needs %d chunks", name, count)
		}
		files = append(files, snapshotFile{name: name, size: fi.Size(), count: int32(count)})
		sn.size += fi.Size()
	}
	return files, nil
}

// Info returns the commit id, term and term options the snapshot carries.
func (sn *Snapshot) Info() SnapshotInfo { return sn.info }

// Size returns the total size of the snapshot's files in bytes.
func (sn *Snapshot) Size() int64 { return sn.size }

// Next returns the next chunk, or io.EOF after the last one. The chunk's
// Content is valid until the next call to Next or Close (it is reused).
func (sn *Snapshot) Next() (Chunk, error) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.mu.closed {
		return Chunk{}, ErrClosed
	}
	if len(sn.mu.files) == 0 {
		return Chunk{}, io.EOF
	}
	file := sn.mu.files[0]
	if sn.mu.f == nil {
		f, err := sn.fs.Open(sn.fs.PathJoin(sn.dir, file.name))
		if err != nil {
			return Chunk{}, fmt.Errorf("store: snapshot: %w", err)
		}
		sn.mu.f = f
	}
	n := min(sn.chunkSize, file.size-int64(sn.mu.index)*sn.chunkSize)
	if int64(cap(sn.mu.buf)) < n {
		sn.mu.buf = make([]byte, n)
	}
	buf := sn.mu.buf[:n]
	// Read at the chunk's place, not on from the last read: after a
	// failed read, the next call reads the same chunk again.
	if got, err := sn.mu.f.ReadAt(buf, int64(sn.mu.index)*sn.chunkSize); err != nil && !(errors.Is(err, io.EOF) && got == len(buf)) {
		if errors.Is(err, io.EOF) {
			// The file is shorter than listed. Not io.EOF, which
			// callers take for the end of the snapshot.
			return Chunk{}, fmt.Errorf("store: snapshot: read %s: %d of %d bytes at %d: %w", file.name, got, len(buf), int64(sn.mu.index)*sn.chunkSize, io.ErrUnexpectedEOF)
		}
		return Chunk{}, fmt.Errorf("store: snapshot: read %s: %w", file.name, err)
	}
	c := Chunk{Name: file.name, Index: sn.mu.index, Count: file.count, Content: buf}
	sn.mu.index++
	if sn.mu.index == file.count {
		// The chunk was read: a file only read loses nothing if its
		// close fails.
		_ = sn.mu.f.Close()
		sn.mu.f, sn.mu.index, sn.mu.files = nil, 0, sn.mu.files[1:]
	}
	return c, nil
}

// Close removes the snapshot's copy. Closing again returns nil.
func (sn *Snapshot) Close() error {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.mu.closed {
		return nil
	}
	sn.mu.closed = true
	var err error
	if sn.mu.f != nil {
		err = sn.mu.f.Close()
		sn.mu.f = nil
	}
	err = errors.Join(err, sn.s.removeDir(sn.dir))
	sn.s.mu.Lock()
	delete(sn.s.mu.snapshots, sn)
	sn.s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("store: close snapshot: %w", err)
	}
	return nil
}

// maxNameLen is the longest file name a snapshot may carry.
const maxNameLen = 255

// validName reports whether a snapshot file name is safe to create in a
// staging directory: it matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$, so
// it has no separator, is not "." or "..", and is not empty.
func validName(name string) bool {
	if len(name) == 0 || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}
