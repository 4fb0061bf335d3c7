package wal

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// worker does the work kept off the append path: it prepares the next
// segment file and writes the index files of sealed, synced segments.
func (l *Log) worker() {
	defer l.wg.Done()
	for {
		select {
		case <-l.quit:
			return
		case <-l.kick:
		}
		l.maintMu.Lock()
		l.writeIndexes()
		l.prepareSegment()
		l.maintMu.Unlock()
	}
}

// prepareSegment creates and preallocates the next segment file under a
// temporary name. An empty log prepares none: a log opened and never
// written to (a replica that never became a member) allocates nothing, and
// its first append creates its segment. Called with maintMu held.
func (l *Log) prepareSegment() {
	l.mu.Lock()
	need := !l.mu.closed && l.mu.prepared == nil && !l.mu.prepFailed && l.mu.active != nil
	l.mu.prepSeq++
	path := l.path(fmt.Sprintf(preparedName, l.mu.prepSeq))
	l.mu.Unlock()
	if !need {
		return
	}
	f, err := l.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err == nil {
		PrepareFile(f, l.opts.SegmentSize)
		// Make the size durable now, so that the fsyncs of the append path
		// need not.
		if err = f.Sync(); err != nil {
			_ = f.Close()
			_ = l.fs.Remove(path)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		// The appender creates segments itself from now on.
		l.mu.prepFailed = true
		l.logger.Warn("wal: cannot prepare a segment", "err", err)
		return
	}
	l.mu.prepared, l.mu.preparedPath = f, path
}

// writeIndexes writes the index of every sealed, synced segment that has
// none. Called with maintMu held.
func (l *Log) writeIndexes() {
	l.mu.Lock()
	var todo []*segment
	if l.mu.failed != nil {
		// What is on disk is unknown: describe none of it.
		l.mu.Unlock()
		return
	}
	for _, s := range l.mu.segs {
		if s.synced && !s.indexed && !l.mu.indexFailure[s] {
			todo = append(todo, s)
		}
	}
	l.mu.Unlock()
	for _, s := range todo {
		if err := l.writeIndex(s); err != nil {
			l.mu.Lock()
			l.mu.indexFailure[s] = true
			l.mu.Unlock()
			l.logger.Warn("wal: cannot write an index; the next open rebuilds it", "segment", s.path, "err", err)
		}
	}
}

// writeIndex writes s's index file durably, then drops its positions from
// memory. s must be sealed and synced. Called with maintMu held.
func (l *Log) writeIndex(s *segment) error {
	l.mu.Lock()
	h := indexHeader{
		first:    s.first,
		count:    s.count,
		prevCRC:  s.prevCRC,
		lastCRC:  s.lastCRC,
		end:      s.end,
		lastTerm: s.lastTerm,
	}
	positions := s.positions
	l.mu.Unlock()
	if len(positions) != h.count {
		return fmt.Errorf("wal: index of %s: %d positions for %d records", s.path, len(positions), h.count)
	}
	b := encodeIndex(h, positions)
	final := l.indexPath(s)
	if err := writeFileDurably(l.fs, final+tmpSuffix, b); err != nil {
		return err
	}
	if err := l.fs.Rename(final+tmpSuffix, final); err != nil {
		return fmt.Errorf("wal: rename %s: %w", final, err)
	}
	if err := l.syncDir(); err != nil {
		return fmt.Errorf("wal: fsync directory: %w", err)
	}
	l.mu.Lock()
	s.indexed = true
	s.positions = nil
	l.mu.Unlock()
	return nil
}

func writeFileDurably(fs vfs.FS, path string, b []byte) error {
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("wal: create %s: %w", path, err)
	}
	if _, err = f.WriteAt(b, 0); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: write %s: %w", path, err)
	}
	return nil
}

// PrepareFile allocates f's blocks and sets its size to size, as the log
// prepares a segment before it writes records into it: appends then write
// inside the file, and an fdatasync need not update its size. Best
// effort: failing only costs speed, since the space past the records
// reads as zeroes either way.
func PrepareFile(f vfs.File, size int64) {
	if st, err := f.Stat(); err == nil && st.Size() >= size {
		return
	}
	_ = f.Preallocate(0, size)
	_, _ = f.WriteAt([]byte{0}, size-1)
}
