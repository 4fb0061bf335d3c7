package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// TruncateLog removes every entry after lastSafe, durably, and returns the
// new last offset. Entries up to lastSafe that were appended but not yet
// synced are made durable too, so afterwards LastDurable and LastAppended
// are both lastSafe. lastSafe = -1, or any offset from 0 up to below the
// first entry, clears the log (and returns -1). lastSafe below -1 or
// beyond the last appended entry is ErrOutOfRange. Readers that returned a removed entry fail with
// ErrLogChanged.
func (l *Log) TruncateLog(lastSafe logpos.Offset) (logpos.Offset, error) {
	defer l.quiesce()()

	l.mu.Lock()
	err := l.checkLiveLocked()
	last, first := l.mu.lastAppended.Offset, l.firstLocked()
	l.mu.Unlock()
	if err != nil {
		return logpos.NoOffset, err
	}
	if lastSafe < logpos.NoOffset || lastSafe > last {
		return logpos.NoOffset, fmt.Errorf("%w: truncate to %d, last appended offset %d", ErrOutOfRange, lastSafe, last)
	}
	if lastSafe < first || last == logpos.NoOffset {
		return logpos.NoOffset, l.clearLocked()
	}
	if _, err := l.syncRoundLocked(); err != nil {
		return logpos.NoOffset, err
	}
	if lastSafe == last {
		return last, nil
	}

	// Gather what the cut needs before changing anything.
	l.mu.Lock()
	k := l.findLocked(lastSafe)
	segs := slices.Clone(l.mu.segs)
	kIdx := slices.Index(segs, k)
	positions := slices.Clone(k.positions)
	kLast, kEnd := k.last(), k.end
	term, crc := k.lastTerm, k.lastCRC
	l.mu.Unlock()
	cutPos := int64(-1)
	if lastSafe < kLast {
		f, err := l.fs.Open(k.path)
		if err != nil {
			return logpos.NoOffset, fmt.Errorf("wal: truncate: open %s: %w", k.path, err)
		}
		if positions == nil {
			positions, err = l.loadPositions(k, f, kEnd)
		}
		i := int(lastSafe - k.first)
		var e logpos.Entry
		if err == nil {
			if len(positions) != k.count {
				err = corruptf("segment %s: %d records where %d were written", k.path, len(positions), k.count)
			} else {
				e, crc, err = readRecordAt(f, kEnd, positions, i, k.prevCRC)
			}
		}
		_ = f.Close()
		if err != nil {
			return logpos.NoOffset, fmt.Errorf("wal: truncate: %w", err)
		}
		if e.Offset != lastSafe {
			return logpos.NoOffset, corruptf("segment %s: offset %d where %d belongs", k.path, e.Offset, lastSafe)
		}
		term, cutPos, positions = e.Term, int64(positions[i+1]), positions[:i+1]
	}

	// From here on a failure leaves the log in an unknown state, and
	// nothing after lastSafe is durable any more.
	l.mu.Lock()
	l.invalidateReadersLocked(lastSafe)
	l.mu.epoch++
	l.mu.durable = logpos.EntryID{Term: term, Offset: lastSafe}
	l.mu.Unlock()
	for j := len(segs) - 1; j > kIdx; j-- {
		s := segs[j]
		l.mu.Lock()
		f := s.file
		s.file = nil
		l.mu.Unlock()
		if f != nil {
			_ = f.Close()
		}
		if err := l.removeSegmentFiles(s.first, true); err != nil {
			return logpos.NoOffset, l.fail("truncate", err)
		}
		l.mu.Lock()
		l.mu.segs = l.mu.segs[:j]
		delete(l.mu.indexFailure, s)
		if l.mu.active == s {
			l.mu.active = nil
		}
		l.mu.Unlock()
	}
	if cutPos >= 0 {
		// k is about to change: nothing may index it meanwhile.
		l.mu.Lock()
		k.sealed, k.synced = false, false
		l.mu.Unlock()
		// Its index goes, also one the log does not count as written
		// (renamed into place, but its directory's sync failed).
		switch err := l.fs.Remove(l.indexPath(k)); {
		case err == nil:
			if err := l.syncDir(); err != nil {
				return logpos.NoOffset, l.fail("truncate: fsync directory", err)
			}
		case !errors.Is(err, errNotExist):
			return logpos.NoOffset, l.fail("truncate: remove index", err)
		}
		l.mu.Lock()
		f := k.file
		k.indexed = false
		l.mu.Unlock()
		if f == nil {
			if f, err = l.fs.OpenReadWrite(k.path, vfs.WriteCategoryUnspecified); err != nil {
				return logpos.NoOffset, l.fail("truncate: open "+k.path, err)
			}
		}
		l.mu.Lock()
		k.file = f
		l.mu.Unlock()
		if err := zeroRange(f, cutPos, kEnd); err != nil {
			return logpos.NoOffset, l.fail("truncate: zero "+k.path, err)
		}
		if err := f.SyncData(); err != nil {
			return logpos.NoOffset, l.fail("truncate: fsync "+k.path, err)
		}
		l.mu.Lock()
		k.count = len(positions)
		k.positions = positions
		k.end, k.flushed, k.durableEnd = cutPos, cutPos, cutPos
		k.lastCRC, k.lastTerm = crc, term
		k.sealed, k.synced = false, false
		delete(l.mu.indexFailure, k)
		l.mu.active = k
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.mu.lastAppended = logpos.EntryID{Term: term, Offset: lastSafe}
	l.mu.lastCRC = crc
	l.mu.durable = l.mu.lastAppended
	// The files have their new shape: a reader that cached bytes of the
	// cut segment while it changed reads them again.
	l.mu.epoch++
	l.mu.Unlock()
	return lastSafe, nil
}

// readRecordAt reads and checks record i of a segment given its record
// positions; the segment's data ends at limit.
func readRecordAt(f vfs.File, limit int64, positions []uint32, i int, seed uint32) (logpos.Entry, uint32, error) {
	if i < 0 || i >= len(positions) {
		return logpos.Entry{}, 0, corruptf("record %d missing from the index", i)
	}
	prev := seed
	if i > 0 {
		var b [4]byte
		if err := readFull(f, b[:], int64(positions[i-1])+4); err != nil {
			return logpos.Entry{}, 0, err
		}
		prev = binary.LittleEndian.Uint32(b[:])
	}
	pos := int64(positions[i])
	var hdr [recordHeaderSize]byte
	if pos < segmentHeaderSize || pos+recordHeaderSize > limit {
		return logpos.Entry{}, 0, corruptf("record at %d: outside the segment's data", pos)
	}
	if err := readFull(f, hdr[:], pos); err != nil {
		return logpos.Entry{}, 0, err
	}
	n, err := recordLen(hdr[:])
	if err != nil {
		return logpos.Entry{}, 0, corruptf("record at %d: %v", pos, err)
	}
	end := pos + recordHeaderSize + int64(n)
	if end > limit || (i+1 < len(positions) && end != int64(positions[i+1])) {
		return logpos.Entry{}, 0, corruptf("record at %d: bad extent", pos)
	}
	b := make([]byte, end-pos)
	if err := readFull(f, b, pos); err != nil {
		return logpos.Entry{}, 0, err
	}
	e, crc, _, err := decodeRecord(b, prev)
	if err != nil {
		return logpos.Entry{}, 0, corruptf("record at %d: %v", pos, err)
	}
	return e, crc, nil
}

// Clear removes every entry, durably. A crash in the middle leaves a
// marker that the next Open acts on, so the log comes back empty. The CRC
// chain of the next entry starts from 0 unless SeedChain says otherwise.
func (l *Log) Clear() error {
	defer l.quiesce()()
	l.mu.Lock()
	err := l.checkLiveLocked()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return l.clearLocked()
}

// clearLocked is Clear with appendMu, syncSem and maintMu held.
func (l *Log) clearLocked() error {
	l.mu.Lock()
	l.invalidateReadersLocked(logpos.NoOffset)
	l.mu.epoch++
	l.mu.durable = logpos.NoEntry
	segs := l.mu.segs
	var files []vfs.File
	for _, s := range segs {
		if s.file != nil {
			files = append(files, s.file)
			s.file = nil
		}
	}
	l.mu.Unlock()
	for _, f := range files {
		_ = f.Close()
	}
	if len(segs) > 0 {
		if err := writeFileDurably(l.fs, l.path(clearMarker), nil); err != nil {
			return l.fail("clear", err)
		}
		if err := l.syncDir(); err != nil {
			return l.fail("clear: fsync directory", err)
		}
		names, err := l.fs.List(l.dir)
		if err != nil {
			return l.fail("clear: list", err)
		}
		l.mu.Lock()
		keep := l.mu.preparedPath
		if l.mu.prepared == nil {
			keep = ""
		}
		l.mu.Unlock()
		if err := l.removeAllSegments(names, keep); err != nil {
			return l.fail("clear", err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.epoch++ // as at the end of TruncateLog
	l.mu.segs = nil
	l.mu.active = nil
	l.mu.pending = l.mu.pending[:0]
	l.mu.lastAppended = logpos.NoEntry
	l.mu.durable = logpos.NoEntry
	l.mu.lastCRC = 0
	clear(l.mu.indexFailure)
	return nil
}

// Trim removes the sealed segments whose entries are all below upTo, the
// oldest first. The segment holding the last entry is always kept. The
// caller vouches that nothing below upTo is needed (the store's durable
// commit); readers asking for a removed offset get ErrTrimmed.
func (l *Log) Trim(upTo logpos.Offset) error {
	l.maintMu.Lock()
	defer l.maintMu.Unlock()
	l.mu.Lock()
	err := l.checkLiveLocked()
	var victims []*segment
	for i, s := range l.mu.segs {
		if i == len(l.mu.segs)-1 || !s.synced || s.file != nil || s.last() >= upTo {
			break
		}
		victims = append(victims, s)
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	for _, s := range victims {
		// Forget the segment first: a reader that cannot open its file
		// then finds the offset below the first one.
		l.mu.Lock()
		l.mu.segs = l.mu.segs[1:]
		delete(l.mu.indexFailure, s)
		l.mu.Unlock()
		if err := l.removeSegmentFiles(s.first, true); err != nil {
			// Unless its file is known to be gone, the log keeps the
			// segment: were the next trim to remove the segments after
			// it, the log would start with a hole the next open refuses.
			if _, serr := l.fs.Stat(l.path(segmentName(s.first))); !errors.Is(serr, errNotExist) {
				l.mu.Lock()
				l.mu.segs = slices.Insert(l.mu.segs, 0, s)
				l.mu.Unlock()
			}
			return fmt.Errorf("wal: trim: %w", err)
		}
	}
	return nil
}
