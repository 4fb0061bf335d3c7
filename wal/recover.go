package wal

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// scanResult is what a scan of a segment file found.
type scanResult struct {
	count     int
	end       int64 // end of the last valid record
	lastCRC   uint32
	lastTerm  logpos.Term
	positions []uint32
	size      int64 // file size
	damaged   bool  // non-zero bytes after end
	dirtyEnd  int64 // end of the last non-zero chunk after end
}

// scanSegment reads the records of a segment file whose header says first
// and prevCRC, stopping at the first that is invalid or out of sequence.
func scanSegment(f vfs.File, size int64, first logpos.Offset, prevCRC uint32) (scanResult, error) {
	r := scanResult{size: size, lastCRC: prevCRC}
	fr := fileReader{f: f, limit: size, chunk: 1 << 20}
	pos := int64(segmentHeaderSize)
	for {
		hdr, err := fr.bytes(pos, recordHeaderSize)
		if errors.Is(err, errPastEnd) {
			break
		} else if err != nil {
			return r, err
		}
		n, err := recordLen(hdr)
		if err != nil || int64(n) > size-pos-recordHeaderSize {
			break
		}
		rec, err := fr.bytes(pos, recordHeaderSize+n)
		if err != nil {
			return r, err
		}
		e, crc, sz, err := decodeRecord(rec, r.lastCRC)
		// The log never writes the last offset (AppendAsync refuses it:
		// the next would overflow): a record there is not one of its.
		if err != nil || e.Offset != first+logpos.Offset(r.count) || e.Offset == math.MaxInt64 {
			break
		}
		r.positions = append(r.positions, uint32(pos))
		r.count++
		r.lastCRC = crc
		r.lastTerm = e.Term
		pos += int64(sz)
	}
	r.end = pos
	// Segments are preallocated: check the rest is zeroes, and where the
	// last non-zero bytes end.
	for p := pos; p < size; {
		b, err := fr.bytes(p, int(min(size-p, 64<<10)))
		if err != nil {
			return r, err
		}
		p += int64(len(b))
		if !isZero(b) {
			r.damaged, r.dirtyEnd = true, p
		}
	}
	return r, nil
}

func readFull(f vfs.File, b []byte, pos int64) error {
	n, err := f.ReadAt(b, pos)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readIndexHeader reads and checks the header of s's index file against
// the segment (whose file is size bytes long).
func (l *Log) readIndexHeader(s *segment, size int64) (indexHeader, error) {
	f, err := l.fs.Open(l.indexPath(s))
	if err != nil {
		return indexHeader{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return indexHeader{}, err
	}
	var b [indexHeaderSize]byte
	if err := readFull(f, b[:], 0); err != nil {
		return indexHeader{}, err
	}
	h, err := decodeIndexHeader(b[:])
	if err != nil {
		return indexHeader{}, err
	}
	if h.first != s.first || h.prevCRC != s.prevCRC || st.Size() != indexHeaderSize+4*int64(h.count) ||
		h.end > size || int64(h.count) > (h.end-segmentHeaderSize)/recordHeaderSize {
		return indexHeader{}, errBadIndex
	}
	return h, nil
}

// loadPositions returns the record positions of sealed segment s: from its
// index file, or, when that is damaged, by scanning the segment.
func (l *Log) loadPositions(s *segment, f vfs.File, end int64) ([]uint32, error) {
	if b, err := l.readFile(l.indexPath(s)); err == nil {
		if h, err := decodeIndexHeader(b); err == nil && h.first == s.first && h.end == end {
			if p, err := decodePositions(&h, b[indexHeaderSize:]); err == nil {
				return p, nil
			}
		}
	}
	l.logger.Warn("wal: index damaged or missing; scanning the segment", "segment", s.path)
	r, err := scanSegment(f, end, s.first, s.prevCRC)
	if err != nil {
		return nil, fmt.Errorf("wal: scan %s: %w", s.path, err)
	}
	// The background worker writes the index again from what the scan
	// found, if the segment holds exactly what the log knows of it.
	l.mu.Lock()
	rewrite := s.indexed && s.positions == nil && end == s.end && len(r.positions) == s.count && !r.damaged
	if rewrite {
		s.indexed, s.positions = false, slices.Clone(r.positions)
	}
	l.mu.Unlock()
	if rewrite {
		l.kickWorker()
	}
	return r.positions, nil
}

func (l *Log) readFile(path string) ([]byte, error) {
	f, err := l.fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > 4*(MaxSegmentSize/recordHeaderSize)+indexHeaderSize {
		return nil, errBadIndex
	}
	b := make([]byte, st.Size())
	if err := readFull(f, b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// recover rebuilds the in-memory state from the directory. Sealed segments
// are trusted through their index headers (rebuilt by a scan when missing
// or damaged); of the others, only the last segment is scanned. The first
// problem found (a damaged header, a segment that does not continue the
// previous one, a segment without a valid record, damage after the last
// valid record) cuts the log there, unless that loses an offset below
// MustKeepBelow.
func (l *Log) recover() error {
	names, err := l.fs.List(l.dir)
	if err != nil {
		return fmt.Errorf("wal: list %s: %w", l.dir, err)
	}
	if slices.Contains(names, clearMarker) {
		l.logger.Info("wal: finishing an interrupted clear")
		if err := l.removeAllSegments(names, ""); err != nil {
			return err
		}
		if names, err = l.fs.List(l.dir); err != nil {
			return fmt.Errorf("wal: list %s: %w", l.dir, err)
		}
	}
	var firsts []logpos.Offset
	indexes := map[logpos.Offset]bool{}
	for _, name := range names {
		if o, ok := parseName(name, segmentSuffix); ok {
			firsts = append(firsts, o)
		} else if o, ok := parseName(name, indexSuffix); ok {
			indexes[o] = true
		} else if strings.HasSuffix(name, tmpSuffix) {
			if err := l.fs.Remove(l.path(name)); err != nil {
				return fmt.Errorf("wal: remove %s: %w", name, err)
			}
		}
	}
	slices.Sort(firsts)
	for o := range indexes {
		if _, found := slices.BinarySearch(firsts, o); !found {
			if err := l.fs.Remove(l.path(indexName(o))); err != nil {
				return fmt.Errorf("wal: remove orphan index: %w", err)
			}
		}
	}

	var (
		segs      []*segment
		cut       = logpos.NoOffset // first offset lost, when cutting
		cutFrom   = len(firsts)     // first segment removed, when cutting
		cutReason string
		tail      *scanResult // scan of the last kept segment, when scanned
	)
	for i, first := range firsts {
		if len(segs) > 0 && first <= segs[len(segs)-1].last() {
			// The segment before holds this offset: the file is no part
			// of the log, but what a failed roll to a new segment left
			// (its removal failed too) before the log was truncated
			// back below it. The segments after it are the log's.
			l.logger.Warn("wal: removing a segment file inside the previous segment", "segment", segmentName(first), "previous_last", segs[len(segs)-1].last())
			if err := l.removeSegmentFiles(first, indexes[first]); err != nil {
				return err
			}
			continue
		}
		s := &segment{first: first, path: l.path(segmentName(first))}
		size, h, err := l.readSegmentHeader(s)
		if err != nil && !errors.Is(err, errBadSegmentHeader) {
			return err
		}
		if len(segs) == 0 && errors.Is(err, errBlankSegment) && first < l.opts.MustKeepBelow {
			// Its first blankCheckSize bytes are zeros; so must the
			// rest be: a segment whose first block alone was zeroed,
			// its later records there, is damaged, not a leftover.
			if err = l.checkAllZero(s.path, size); !errors.Is(err, errBadSegmentHeader) {
				return err
			}
			if errors.Is(err, errBlankSegment) {
				// A file never written to, before any segment of the
				// log and named below an offset that was durable (a
				// segment's header reaches the disk with its first
				// record): no part of the log, but what a failed
				// creation left when its removal failed too, before
				// the log came to start above it (after a Clear, or a
				// Trim past its name). The segments after it are the
				// log's.
				l.logger.Warn("wal: removing a segment file never written to, named below the offset the log must keep", "segment", segmentName(first), "must_keep_below", l.opts.MustKeepBelow)
				if err := l.removeSegmentFiles(first, indexes[first]); err != nil {
					return err
				}
				continue
			}
		}
		// What cutting here loses starts where the kept log ends, which
		// is below first when the segment before ended early.
		lost := first
		if len(segs) > 0 {
			lost = min(first, segs[len(segs)-1].last()+1)
		}
		if err != nil || h.first != first {
			cut, cutFrom, cutReason = lost, i, "segment header damaged"
			break
		}
		s.prevCRC = h.prevCRC
		if len(segs) > 0 {
			prev := segs[len(segs)-1]
			if prev.last()+1 != first || prev.lastCRC != s.prevCRC {
				cut, cutFrom, cutReason = prev.last()+1, i, fmt.Sprintf("segment %d does not continue the log", first)
				break
			}
		}
		isLast := i == len(firsts)-1
		// The last segment is always scanned: its index, if it has one,
		// may describe records a truncation removed since.
		if indexes[first] && !isLast {
			ih, err := l.readIndexHeader(s, size)
			if err == nil {
				s.count, s.lastCRC, s.lastTerm, s.end = ih.count, ih.lastCRC, ih.lastTerm, ih.end
				s.flushed, s.durableEnd = s.end, s.end
				s.capacity = max(l.opts.SegmentSize, s.end)
				s.sealed, s.synced, s.indexed = true, true, true
				segs = append(segs, s)
				continue
			}
			l.logger.Warn("wal: index damaged; rebuilding it", "segment", s.path, "err", err)
		} else if !isLast {
			l.logger.Warn("wal: index missing; rebuilding it", "segment", s.path)
		}
		r, err := l.scanFile(s, size)
		if err != nil {
			return err
		}
		if r.count == 0 {
			cut, cutFrom, cutReason = lost, i, "segment holds no valid record"
			break
		}
		s.count, s.lastCRC, s.lastTerm, s.end, s.positions = r.count, r.lastCRC, r.lastTerm, r.end, r.positions
		s.flushed, s.durableEnd = s.end, s.end
		s.capacity = max(l.opts.SegmentSize, s.end)
		segs = append(segs, s)
		if r.damaged {
			tail = &r
			cut, cutFrom, cutReason = s.last()+1, i+1, "damaged record"
			break
		}
		if isLast {
			tail = &r
		} else {
			s.sealed = true
			if err := l.rebuildIndex(s, indexes[first]); err != nil {
				return err
			}
		}
	}

	if cut != logpos.NoOffset {
		if cut < l.opts.MustKeepBelow {
			return corruptf("%s at offset %d, below %d, the offset from which the log may be cut (directory %s)",
				cutReason, cut, l.opts.MustKeepBelow, l.dir)
		}
		l.logger.Warn("wal: cutting the log", "at", cut, "reason", cutReason)
		// Remove every later segment, newest first, so that a crash
		// leaves a prefix.
		for j := len(firsts) - 1; j >= cutFrom; j-- {
			if err := l.removeSegmentFiles(firsts[j], indexes[firsts[j]]); err != nil {
				return err
			}
		}
	}
	// The directory is synced whatever recovery changed in it: the names
	// found may not be durable yet (a crash may have come before the
	// directory's fsync), and the entries they hold are reported durable
	// below.
	if err := l.syncDir(); err != nil {
		return fmt.Errorf("wal: fsync directory: %w", err)
	}
	// So did a directory fsync that failed on the way (an index
	// rebuilt), whatever the last one says.
	if err := l.mu.failed; err != nil {
		return err
	}

	l.mu.segs = segs
	l.mu.lastAppended = logpos.NoEntry
	if len(segs) > 0 {
		s := segs[len(segs)-1]
		l.mu.lastAppended = logpos.EntryID{Term: s.lastTerm, Offset: s.last()}
		l.mu.lastCRC = s.lastCRC
		if tail != nil {
			if err := l.reopenTail(s, tail, indexes[s.first]); err != nil {
				return err
			}
		}
	}
	l.mu.durable = l.mu.lastAppended
	return nil
}

// errBlankSegment: a segment file holds only zeros (or nothing) where
// its header and its first records go (its first blankCheckSize bytes):
// it looks never written to, which holds when the rest is zeros too
// (checkAllZero).
var errBlankSegment = fmt.Errorf("%w: the file was never written to", errBadSegmentHeader)

// blankCheckSize is how much of a segment file without a header is read
// to tell one never written to (zeros) from one whose header alone was
// damaged (its first records are there).
const blankCheckSize = 4 << 10

// readSegmentHeader returns the size of s's file and its header.
func (l *Log) readSegmentHeader(s *segment) (int64, segmentHeader, error) {
	f, err := l.fs.Open(s.path)
	if err != nil {
		return 0, segmentHeader{}, fmt.Errorf("wal: open %s: %w", s.path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, segmentHeader{}, fmt.Errorf("wal: stat %s: %w", s.path, err)
	}
	var b [segmentHeaderSize]byte
	if err := readFull(f, b[:], 0); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, segmentHeader{}, fmt.Errorf("wal: read %s: %w", s.path, err)
	} else if err != nil || isZero(b[:]) {
		// Too short for a header, or no header. What a short file did
		// not fill stays zero.
		if !isZero(b[:]) {
			return st.Size(), segmentHeader{}, errBadSegmentHeader
		}
		more := make([]byte, min(st.Size(), blankCheckSize))
		if err := readFull(f, more, 0); err != nil {
			return 0, segmentHeader{}, fmt.Errorf("wal: read %s: %w", s.path, err)
		}
		if isZero(more) {
			return st.Size(), segmentHeader{}, errBlankSegment
		}
		return st.Size(), segmentHeader{}, errBadSegmentHeader
	}
	h, err := decodeSegmentHeader(b[:])
	return st.Size(), h, err
}

// checkAllZero returns errBlankSegment when the size bytes of the file
// at path are all zeros (nothing was ever written to it), and
// errBadSegmentHeader when some are not.
func (l *Log) checkAllZero(path string, size int64) error {
	f, err := l.fs.Open(path)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", path, err)
	}
	defer f.Close()
	fr := fileReader{f: f, limit: size, chunk: 1 << 20}
	for p := int64(0); p < size; {
		b, err := fr.bytes(p, int(min(size-p, 1<<20)))
		if err != nil {
			return fmt.Errorf("wal: read %s: %w", path, err)
		}
		if !isZero(b) {
			return errBadSegmentHeader
		}
		p += int64(len(b))
	}
	return errBlankSegment
}

func (l *Log) scanFile(s *segment, size int64) (scanResult, error) {
	f, err := l.fs.Open(s.path)
	if err != nil {
		return scanResult{}, fmt.Errorf("wal: open %s: %w", s.path, err)
	}
	defer f.Close()
	r, err := scanSegment(f, size, s.first, s.prevCRC)
	if err != nil {
		return r, fmt.Errorf("wal: scan %s: %w", s.path, err)
	}
	return r, nil
}

// rebuildIndex makes a scanned sealed segment durable and writes its index.
func (l *Log) rebuildIndex(s *segment, hadIndex bool) error {
	f, err := l.fs.OpenReadWrite(s.path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", s.path, err)
	}
	err = f.Sync()
	_ = f.Close()
	if err != nil {
		return fmt.Errorf("wal: fsync %s: %w", s.path, err)
	}
	s.synced = true
	if err := l.writeIndex(s); err != nil {
		// Not fatal: the positions stay in memory and the next open
		// rebuilds the index again.
		l.logger.Warn("wal: cannot write a rebuilt index", "segment", s.path, "err", err, "replaced", hadIndex)
	}
	return nil
}

// reopenTail makes the scanned last segment s the active one: its index
// (stale) goes, bytes after its last record are zeroed, and it is fsynced.
func (l *Log) reopenTail(s *segment, r *scanResult, hasIndex bool) error {
	if hasIndex {
		if err := l.fs.Remove(l.indexPath(s)); err != nil && !errors.Is(err, errNotExist) {
			return fmt.Errorf("wal: remove stale index: %w", err)
		}
		if err := l.syncDir(); err != nil {
			return fmt.Errorf("wal: fsync directory: %w", err)
		}
	}
	f, err := l.fs.OpenReadWrite(s.path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", s.path, err)
	}
	if r.damaged {
		if err := zeroRange(f, r.end, r.dirtyEnd); err != nil {
			_ = f.Close()
			return fmt.Errorf("wal: zero the tail of %s: %w", s.path, err)
		}
	}
	// The records may have survived a process crash only in the page cache.
	if err := f.SyncData(); err != nil {
		_ = f.Close()
		return fmt.Errorf("wal: fsync %s: %w", s.path, err)
	}
	s.file = f
	l.mu.active = s
	return nil
}

// removeSegmentFiles removes a segment file, then its index, then makes
// the removal durable.
func (l *Log) removeSegmentFiles(first logpos.Offset, withIndex bool) error {
	if err := l.fs.Remove(l.path(segmentName(first))); err != nil && !errors.Is(err, errNotExist) {
		return fmt.Errorf("wal: remove segment %d: %w", first, err)
	}
	if withIndex {
		if err := l.fs.Remove(l.path(indexName(first))); err != nil && !errors.Is(err, errNotExist) {
			return fmt.Errorf("wal: remove index %d: %w", first, err)
		}
	}
	if err := l.syncDir(); err != nil {
		return fmt.Errorf("wal: fsync directory: %w", err)
	}
	return nil
}

// removeAllSegments finishes a clear: everything but the lock goes, then
// the marker, each step durable.
func (l *Log) removeAllSegments(names []string, keep string) error {
	for _, name := range names {
		if l.path(name) == keep {
			continue
		}
		_, seg := parseName(name, segmentSuffix)
		_, idx := parseName(name, indexSuffix)
		if seg || idx || strings.HasSuffix(name, tmpSuffix) {
			if err := l.fs.Remove(l.path(name)); err != nil && !errors.Is(err, errNotExist) {
				return fmt.Errorf("wal: clear: remove %s: %w", name, err)
			}
		}
	}
	if err := l.syncDir(); err != nil {
		return fmt.Errorf("wal: clear: fsync directory: %w", err)
	}
	if err := l.fs.Remove(l.path(clearMarker)); err != nil && !errors.Is(err, errNotExist) {
		return fmt.Errorf("wal: clear: remove marker: %w", err)
	}
	if err := l.syncDir(); err != nil {
		return fmt.Errorf("wal: clear: fsync directory: %w", err)
	}
	return nil
}
