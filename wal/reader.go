package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// readerState is what the log knows of a reader: the highest offset it
// has returned or is returning (claimed, under Log.mu) and whether a
// truncation removed it.
type readerState struct {
	claimed logpos.Offset
	invalid atomic.Bool
}

// invalidateReadersLocked marks the readers that returned (or are
// returning) an entry after lastSafe. Called with mu held, before any file
// changes: a reader checks the mark after reading, so it never returns
// bytes a truncation touched.
func (l *Log) invalidateReadersLocked(lastSafe logpos.Offset) {
	for st := range l.mu.readers {
		if st.claimed > lastSafe {
			st.invalid.Store(true)
		}
	}
}

// location is where a reader finds a record, as seen under Log.mu.
type location struct {
	seg      *segment
	limit    int64 // durable end of seg's data
	pos      int64 // position of the record, -1 when not in memory
	prevPos  int64 // position of the previous record in seg, -1 when none or unknown
	segFirst bool  // the record is seg's first
}

// locateLocked finds offset o, which must be durable.
func (l *Log) locateLocked(o logpos.Offset) location {
	s := l.findLocked(o)
	loc := location{seg: s, limit: s.durableEnd, pos: -1, prevPos: -1, segFirst: o == s.first}
	if i := int(o - s.first); s.positions != nil && i < len(s.positions) {
		loc.pos = int64(s.positions[i])
		if i > 0 {
			loc.prevPos = int64(s.positions[i-1])
		}
	}
	return loc
}

// Reader reads durable entries forward from an offset. At the durable end
// Next returns ErrCaughtUp; a later call returns what was made durable
// since, so one reader can tail the log. A Reader is used by one goroutine
// at a time and must be closed.
type Reader struct {
	l    *Log
	st   *readerState
	next logpos.Offset

	seg     *segment
	f       vfs.File
	pos     int64 // position of record next in seg, -1 when unknown
	prevCRC uint32
	fr      fileReader
	epoch   uint64
	closed  bool
}

// NewReader returns a reader whose first entry is from (≥ 0).
func (l *Log) NewReader(from logpos.Offset) (*Reader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return nil, ErrClosed
	}
	if from < 0 {
		return nil, fmt.Errorf("%w: reader from %d", ErrOutOfRange, from)
	}
	r := &Reader{l: l, st: &readerState{claimed: logpos.NoOffset}, next: from, pos: -1, epoch: l.mu.epoch}
	r.fr.chunk = 64 << 10
	l.mu.readers[r.st] = struct{}{}
	return r, nil
}

// lockReading takes l.mu for a reader's Next, unless the reader (closed)
// or the log is closed, or the log changed under the reader.
func (l *Log) lockReading(closed bool, st *readerState) error {
	if closed {
		return ErrClosed
	}
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if st.invalid.Load() {
		l.mu.Unlock()
		return ErrLogChanged
	}
	return nil
}

// Next returns the next durable entry. Its Value is valid until the next
// call to Next or Close. Errors: ErrCaughtUp (nothing more yet),
// ErrTrimmed, ErrLogChanged, ErrCorrupt, ErrClosed.
func (r *Reader) Next() (logpos.Entry, error) {
	l := r.l
	if err := l.lockReading(r.closed, r.st); err != nil {
		return logpos.Entry{}, err
	}
	if r.epoch != l.mu.epoch {
		// The files changed shape: forget everything cached.
		r.epoch = l.mu.epoch
		r.dropSegment()
	}
	if first := l.firstLocked(); first != logpos.NoOffset && r.next < first {
		l.mu.Unlock()
		return logpos.Entry{}, fmt.Errorf("%w: offset %d, the log starts at %d", ErrTrimmed, r.next, first)
	}
	if len(l.mu.segs) == 0 || r.next > l.mu.durable.Offset {
		l.mu.Unlock()
		return logpos.Entry{}, ErrCaughtUp
	}
	loc := l.locateLocked(r.next)
	r.st.claimed = max(r.st.claimed, r.next)
	l.mu.Unlock()

	e, err := r.read(loc)
	if r.st.invalid.Load() {
		return logpos.Entry{}, ErrLogChanged
	}
	if err != nil {
		return logpos.Entry{}, err
	}
	return e, nil
}

func (r *Reader) dropSegment() {
	if r.f != nil {
		_ = r.f.Close()
		r.f = nil
	}
	r.seg, r.pos = nil, -1
	r.fr.reset(nil, 0)
}

// read reads record r.next, found at loc.
func (r *Reader) read(loc location) (logpos.Entry, error) {
	l := r.l
	if loc.seg != r.seg {
		r.dropSegment()
		f, err := l.fs.Open(loc.seg.path)
		if err != nil {
			return logpos.Entry{}, r.vanished(err)
		}
		r.seg, r.f = loc.seg, f
		r.fr.reset(f, loc.limit)
	}
	r.fr.setLimit(loc.limit)
	if r.pos < 0 {
		if err := r.seek(loc); err != nil {
			return logpos.Entry{}, err
		}
	}
	e, crc, n, err := r.decodeAt(r.pos, r.prevCRC)
	if err != nil {
		return logpos.Entry{}, err
	}
	r.next++
	r.pos += int64(n)
	r.prevCRC = crc
	return e, nil
}

// vanished explains a segment file that could not be opened.
func (r *Reader) vanished(err error) error {
	l := r.l
	l.mu.Lock()
	first := l.firstLocked()
	l.mu.Unlock()
	if errors.Is(err, errNotExist) && (first == logpos.NoOffset || r.next < first) {
		return fmt.Errorf("%w: offset %d", ErrTrimmed, r.next)
	}
	return fmt.Errorf("wal: reader: %w", err)
}

// decodeAt decodes the record at pos, which must be offset r.next.
func (r *Reader) decodeAt(pos int64, prev uint32) (logpos.Entry, uint32, int, error) {
	hdr, err := r.fr.bytes(pos, recordHeaderSize)
	if err != nil {
		return logpos.Entry{}, 0, 0, r.readErr(pos, err)
	}
	n, err := recordLen(hdr)
	if err != nil {
		return logpos.Entry{}, 0, 0, corruptf("%s at %d (offset %d): %v", r.seg.path, pos, r.next, err)
	}
	b, err := r.fr.bytes(pos, recordHeaderSize+n)
	if err != nil {
		return logpos.Entry{}, 0, 0, r.readErr(pos, err)
	}
	e, crc, sz, err := decodeRecord(b, prev)
	if err != nil {
		return logpos.Entry{}, 0, 0, corruptf("%s at %d (offset %d): %v", r.seg.path, pos, r.next, err)
	}
	if e.Offset != r.next {
		return logpos.Entry{}, 0, 0, corruptf("%s at %d: offset %d where %d belongs", r.seg.path, pos, e.Offset, r.next)
	}
	return e, crc, sz, nil
}

func (r *Reader) readErr(pos int64, err error) error {
	if errors.Is(err, errPastEnd) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptf("%s at %d (offset %d): record extends past the durable data", r.seg.path, pos, r.next)
	}
	return fmt.Errorf("wal: read %s: %w", r.seg.path, err)
}

// seek finds the position of record r.next and the CRC it chains to: from
// memory, else from the index file, else by scanning the segment.
func (r *Reader) seek(loc location) error {
	s := loc.seg
	i := int64(r.next - s.first)
	pos, prevPos := loc.pos, loc.prevPos
	if pos < 0 {
		pos, prevPos = r.indexLookup(s, i)
	}
	if pos >= 0 {
		prev, ok := s.prevCRC, true
		if i > 0 {
			hdr, err := r.fr.bytes(prevPos, recordHeaderSize)
			if ok = err == nil; ok {
				prev = binary.LittleEndian.Uint32(hdr[4:])
			}
		}
		if ok {
			if _, _, _, err := r.decodeAt(pos, prev); err == nil {
				r.pos, r.prevCRC = pos, prev
				return nil
			}
		}
	}
	if r.st.invalid.Load() {
		return ErrLogChanged
	}
	// The index is missing or wrong: walk the segment from its start.
	pos, prev := int64(segmentHeaderSize), s.prevCRC
	target := r.next
	for r.next = s.first; r.next < target; r.next++ {
		_, crc, n, err := r.decodeAt(pos, prev)
		if err != nil {
			r.next = target
			return err
		}
		pos += int64(n)
		prev = crc
	}
	r.pos, r.prevCRC = pos, prev
	return nil
}

// indexLookup reads the positions of records i and i-1 of sealed segment s
// from its index file; -1 when it cannot.
func (r *Reader) indexLookup(s *segment, i int64) (pos, prevPos int64) {
	f, err := r.l.fs.Open(r.l.indexPath(s))
	if err != nil {
		return -1, -1
	}
	defer f.Close()
	var b [8]byte
	from := indexHeaderSize + 4*(i-1)
	if i == 0 {
		if err := readFull(f, b[4:], indexHeaderSize); err != nil {
			return -1, -1
		}
		return int64(binary.LittleEndian.Uint32(b[4:])), -1
	}
	if err := readFull(f, b[:], from); err != nil {
		return -1, -1
	}
	prevPos, pos = int64(binary.LittleEndian.Uint32(b[:])), int64(binary.LittleEndian.Uint32(b[4:]))
	if prevPos < segmentHeaderSize || pos <= prevPos {
		return -1, -1
	}
	return pos, prevPos
}

// Close releases the reader. It is idempotent.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.dropSegment()
	r.l.mu.Lock()
	delete(r.l.mu.readers, r.st)
	r.l.mu.Unlock()
	return nil
}

// ReverseReader reads the durable entries backward, from the last durable
// entry at its creation to the first entry of the log. A ReverseReader is
// used by one goroutine at a time and must be closed.
type ReverseReader struct {
	l    *Log
	st   *readerState
	next logpos.Offset // the next entry to return
	low  logpos.Offset // the first entry of the log at creation

	seg       *segment
	f         vfs.File
	positions []uint32
	limit     int64
	epoch     uint64
	closed    bool
}

// NewReverseReader returns a reader that starts at the last durable entry.
func (l *Log) NewReverseReader() (*ReverseReader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return nil, ErrClosed
	}
	r := &ReverseReader{l: l, next: l.mu.durable.Offset, low: l.firstLocked(), epoch: l.mu.epoch}
	r.st = &readerState{claimed: r.next}
	l.mu.readers[r.st] = struct{}{}
	return r, nil
}

// Next returns the previous entry; io.EOF after the first entry of the
// log. Its Value is valid until the next call. Errors: ErrTrimmed (Trim
// removed entries the reader had yet to return), ErrLogChanged,
// ErrCorrupt (damaged data), ErrClosed, or an I/O error of the file
// system, wrapped (Next may be called again).
func (r *ReverseReader) Next() (logpos.Entry, error) {
	l := r.l
	if err := l.lockReading(r.closed, r.st); err != nil {
		return logpos.Entry{}, err
	}
	if r.next < r.low || r.next == logpos.NoOffset {
		l.mu.Unlock()
		return logpos.Entry{}, io.EOF
	}
	if r.epoch != l.mu.epoch {
		r.epoch = l.mu.epoch
		r.drop()
	}
	if first := l.firstLocked(); first == logpos.NoOffset || r.next < first {
		l.mu.Unlock()
		return logpos.Entry{}, fmt.Errorf("%w: offset %d", ErrTrimmed, r.next)
	}
	s := l.findLocked(r.next)
	var positions []uint32
	if s != r.seg && s.positions != nil {
		positions = append([]uint32(nil), s.positions[:r.next-s.first+1]...)
	}
	limit := s.durableEnd
	l.mu.Unlock()

	e, err := r.read(s, positions, limit)
	if r.st.invalid.Load() {
		return logpos.Entry{}, ErrLogChanged
	}
	if err != nil {
		return logpos.Entry{}, err
	}
	r.next--
	return e, nil
}

func (r *ReverseReader) drop() {
	if r.f != nil {
		_ = r.f.Close()
		r.f = nil
	}
	r.seg, r.positions = nil, nil
}

func (r *ReverseReader) read(s *segment, positions []uint32, limit int64) (logpos.Entry, error) {
	l := r.l
	if s != r.seg {
		r.drop()
		f, err := l.fs.Open(s.path)
		if err != nil {
			if errors.Is(err, errNotExist) {
				return logpos.Entry{}, fmt.Errorf("%w: offset %d", ErrTrimmed, r.next)
			}
			return logpos.Entry{}, fmt.Errorf("wal: reader: %w", err)
		}
		if positions == nil {
			if positions, err = l.loadPositions(s, f, limit); err != nil {
				_ = f.Close()
				return logpos.Entry{}, err
			}
		}
		r.seg, r.f, r.positions, r.limit = s, f, positions, limit
	}
	e, _, err := readRecordAt(r.f, r.limit, r.positions, int(r.next-s.first), s.prevCRC)
	if err != nil {
		switch {
		case errors.Is(err, ErrCorrupt):
			return logpos.Entry{}, fmt.Errorf("%w (segment %s, offset %d)", err, s.path, r.next)
		case errors.Is(err, io.ErrUnexpectedEOF):
			// The file ends inside a record its positions hold.
			return logpos.Entry{}, corruptf("segment %s, offset %d: %v", s.path, r.next, err)
		}
		// An I/O error, not damage: the caller may try again.
		return logpos.Entry{}, fmt.Errorf("wal: reader: segment %s, offset %d: %w", s.path, r.next, err)
	}
	if e.Offset != r.next {
		return logpos.Entry{}, corruptf("segment %s: offset %d where %d belongs", s.path, e.Offset, r.next)
	}
	return e, nil
}

// Close releases the reader. It is idempotent.
func (r *ReverseReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.drop()
	r.l.mu.Lock()
	delete(r.l.mu.readers, r.st)
	r.l.mu.Unlock()
	return nil
}
