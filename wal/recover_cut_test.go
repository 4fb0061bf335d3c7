package wal

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// fileFirsts returns the first offsets of the segment files in dir.
func fileFirsts(t testing.TB, fs vfs.FS, dir string) []logpos.Offset {
	t.Helper()
	var out []logpos.Offset
	for _, p := range listSuffix(t, fs, dir, segmentSuffix) {
		o, ok := parseName(fs.PathBase(p), segmentSuffix)
		if !ok {
			t.Fatalf("bad segment name %s", p)
		}
		out = append(out, o)
	}
	return out
}

// TestSegmentSkippingOffsetsIsCut: a segment whose chain seed is the
// previous segment's last CRC but whose first offset is not the one after
// that segment's last does not continue the log: Open cuts the log where
// the previous segment ends, or refuses when that offset must be kept.
func TestSegmentSkippingOffsetsIsCut(t *testing.T) {
	mem := vfs.NewMem()
	if err := mem.MkdirAll("wal", 0o755); err != nil {
		t.Fatal(err)
	}
	seg := func(first, last logpos.Offset, seed uint32) uint32 {
		b := appendSegmentHeader(nil, segmentHeader{first: first, prevCRC: seed})
		for o := first; o <= last; o++ {
			e := entry(o, 0)
			b, seed = appendRecord(b, &e, seed)
		}
		writeBytes(t, mem, "wal/"+segmentName(first), b)
		return seed
	}
	crc := seg(0, 4, 0)
	seg(6, 9, crc) // offset 5 is missing, the chain goes on from 4

	if _, err := Open("wal", optsKeep(mem, 5)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open keeping offset 5: %v, want ErrCorrupt", err)
	}
	l := mustOpen(t, "wal", optsKeep(mem, 4))
	defer l.Close()
	if got := l.LastDurable().Offset; got != 4 {
		t.Fatalf("LastDurable = %d, want 4 (the log stops before the missing offset)", got)
	}
	checkEntries(t, readAll(t, l, 0), entries(0, 4, 0))
	if got := fileFirsts(t, mem, "wal"); len(got) != 1 || got[0] != 0 {
		t.Fatalf("segment files %v, want [0]", got)
	}
}

// TestDamagedSealedSegmentRemovesEveryLaterSegment: a damaged record in a
// sealed segment that Open scans (its index gone) cuts the log there and
// removes every later segment file, the next one included. A later
// segment left behind comes back at the next Open once the log has grown
// back up to it with the same entries: the offsets the first Open cut,
// and reported not durable, reappear.
func TestDamagedSealedSegmentRemovesEveryLaterSegment(t *testing.T) {
	fs, all := closedLog(t, 100)
	firsts := fileFirsts(t, fs, "wal")
	if len(firsts) < 3 || firsts[1] < 4 {
		t.Fatalf("segments %v: the test needs 3, the first with 4 entries", firsts)
	}
	seg := "wal/" + segmentName(0)
	b := readBytes(t, fs, seg)
	at := bytes.Index(b, all[2].Value)
	if at < 0 {
		t.Fatal("entry 2's value is not in the first segment")
	}
	b[at] ^= 0xff
	writeBytes(t, fs, seg, b)
	if err := fs.Remove("wal/" + indexName(0)); err != nil {
		t.Fatal(err)
	}

	l := mustOpen(t, "wal", memOpts(fs))
	if got := l.LastDurable().Offset; got != 1 {
		t.Fatalf("LastDurable = %d, want 1 (cut at the damaged record)", got)
	}
	if got := fileFirsts(t, fs, "wal"); len(got) != 1 || got[0] != 0 {
		t.Fatalf("segment files %v after the cut, want [0]", got)
	}
	// The same entries again, up to the end of the first segment.
	next := firsts[1]
	mustAppend(t, l, all[2:next]...)
	mustSync(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	if got := l.LastDurable().Offset; got != next-1 {
		t.Fatalf("reopened log ends at %d, want %d: entries the cut removed came back", got, next-1)
	}
}

// TestCutRemovesNewestFirst: the segments a cut at Open removes go newest
// first, each removal durable, so that a crash in the middle leaves a
// prefix of the log: here (the first segment's header damaged, nothing to
// keep) every crash image opens empty, never as a log that starts at a
// later segment.
func TestCutRemovesNewestFirst(t *testing.T) {
	mem := vfs.NewCrashableMem()
	l := mustOpen(t, "wal", memOpts(mem))
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fileFirsts(t, mem, "wal"); len(got) < 3 {
		t.Fatalf("segments %v: the test needs 3", got)
	}
	// Damage the first segment's header, durably.
	f, err := mem.OpenReadWrite("wal/"+segmentName(0), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{'X'}, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var (
		mu      sync.Mutex
		images  []*vfs.MemFS
		removed []string
	)
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpRemove {
			mu.Lock()
			images = append(images, mem.CrashClone(vfs.CrashCloneCfg{}))
			removed = append(removed, op.Path)
			mu.Unlock()
		}
		return nil
	}))
	l = mustOpen(t, "wal", memOpts(fs))
	if last := l.LastDurable(); !last.IsNone() {
		t.Fatalf("LastDurable = %v, want none", last)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if len(images) < 3 {
		t.Fatalf("%d crash images: the cut removed too little", len(images))
	}
	images = append(images, mem.CrashClone(vfs.CrashCloneCfg{}))
	for i, img := range images {
		l, err := Open("wal", memOpts(img))
		if err != nil {
			t.Fatalf("crash %d: Open: %v", i, err)
		}
		first, last := l.FirstOffset(), l.LastDurable()
		l.Close()
		if first != logpos.NoOffset || !last.IsNone() {
			what := "the end"
			if i < len(removed) {
				what = fmt.Sprintf("removing %s", removed[i])
			}
			t.Fatalf("crash before %s: the log opens from %d to %v, want empty", what, first, last)
		}
	}
}

// TestTornRecordRightAfterTheLastIsZeroed: a torn record written right
// after the last valid one (where a crash leaves it) is zeroed by Open,
// all of it, its length word and CRC included.
func TestTornRecordRightAfterTheLastIsZeroed(t *testing.T) {
	next := entry(100, 0)
	rec, _ := appendRecord(nil, &next, 0)
	for _, torn := range [][]byte{rec[:recordHeaderSize], rec[:len(rec)/2], rec} {
		fs, all := closedLog(t, 100)
		segs := listSuffix(t, fs, "wal", segmentSuffix)
		last := segs[len(segs)-1]
		b := readBytes(t, fs, last)
		h, err := decodeSegmentHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		f, err := fs.Open(last)
		if err != nil {
			t.Fatal(err)
		}
		r, err := scanSegment(f, int64(len(b)), h.first, h.prevCRC)
		f.Close()
		if err != nil || r.damaged {
			t.Fatalf("scan of the clean tail: %+v, %v", r, err)
		}
		// What fits of it before the end of the preallocated file.
		torn = torn[:min(int64(len(torn)), int64(len(b))-r.end)]
		if len(torn) < recordHeaderSize {
			t.Fatalf("no room after %d in %d", r.end, len(b))
		}
		copy(b[r.end:], torn)
		writeBytes(t, fs, last, b)

		l := mustOpen(t, "wal", optsKeep(fs, 99))
		checkEntries(t, readAll(t, l, 0), all)
		if got := readBytes(t, fs, last); !isZero(got[r.end:]) {
			t.Fatalf("%d torn bytes at %d: not all zeroed", len(torn), r.end)
		}
		l.Close()
	}
}

// TestCutBelowADamagedSecondSegmentHeaderIsChecked is
// TestCutBelowADamagedSegmentHeaderIsChecked with the log's first segment
// ending early and its second segment's header damaged: what the cut loses
// starts where the first segment ends.
func TestCutBelowADamagedSecondSegmentHeaderIsChecked(t *testing.T) {
	fs, all := closedLog(t, 100)
	firsts := fileFirsts(t, fs, "wal")
	if len(firsts) < 3 || firsts[1] < 4 {
		t.Fatalf("segments %v: the test needs 3, the first with 4 entries", firsts)
	}
	// Segment 0 keeps its first two records; segment 1's header is damaged.
	kept := int64(segmentHeaderSize)
	for _, e := range all[:2] {
		rec, _ := appendRecord(nil, &e, 0)
		kept += int64(len(rec))
	}
	seg := "wal/" + segmentName(0)
	b := readBytes(t, fs, seg)
	clear(b[kept:])
	writeBytes(t, fs, seg, b)
	if err := fs.Remove("wal/" + indexName(0)); err != nil {
		t.Fatal(err)
	}
	damaged := readBytes(t, fs, "wal/"+segmentName(firsts[1]))
	damaged[0] ^= 1
	writeBytes(t, fs, "wal/"+segmentName(firsts[1]), damaged)

	// Offset 2 is lost: keeping it (and below firsts[1]) is refused.
	if _, err := Open("wal", optsKeep(fs, 2)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("MustKeepBelow 3: %v, want ErrCorrupt", err)
	}
	if _, err := Open("wal", optsKeep(fs, firsts[1]-1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("MustKeepBelow %d: %v, want ErrCorrupt", firsts[1], err)
	}
	l := mustOpen(t, "wal", optsKeep(fs, 1))
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), all[:2])
}

// TestBlankFileNamedAtTheOffsetToKeep: a file never written to, first in
// the directory and named at MustKeepBelow (not below it), may be the
// log's first segment whose header a crash lost: it is not removed as a
// leftover with the segments after it kept as the log's; the log is cut
// there (nothing below MustKeepBelow is lost), and opens empty.
func TestBlankFileNamedAtTheOffsetToKeep(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	mustAppend(t, l, entries(50, 59, 0)...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	writeBytes(t, fs, "wal/"+segmentName(5), make([]byte, 4096))
	opts := memOpts(fs)
	opts.MustKeepBelow = 5
	l = mustOpen(t, "wal", opts)
	defer l.Close()
	if last := l.LastDurable(); !last.IsNone() {
		t.Fatalf("LastDurable = %v, want none: the log is cut at the blank segment 5", last)
	}
	if got := fileFirsts(t, fs, "wal"); len(got) != 0 {
		t.Fatalf("segment files %v, want none", got)
	}
}

// TestTruncateZeroesEverythingAfterTheCut: TruncateLog zeroes the whole
// rest of the segment it cuts, not only the next record's header. Records
// of the old tail left after the cut make the segment look damaged once
// it is sealed: when a crash comes before its index is written (the
// background worker writes it after the sync), Open scans it, finds
// non-zero bytes after its last record and cuts the log there, losing the
// durable entries of the later segments (refused when they must be
// kept).
func TestTruncateZeroesEverythingAfterTheCut(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	firsts := segFirsts(l)
	if len(firsts) < 3 || firsts[2]-firsts[1] < 4 {
		t.Fatalf("segments %v: the test needs 3, the second with 4 entries", firsts)
	}
	k, lastSafe := firsts[1], firsts[1]+1
	if _, err := l.TruncateLog(lastSafe); err != nil {
		t.Fatal(err)
	}
	// Everything after the cut in k is zero.
	b := readBytes(t, fs, "wal/"+segmentName(k))
	h, err := decodeSegmentHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.Open("wal/" + segmentName(k))
	if err != nil {
		t.Fatal(err)
	}
	r, err := scanSegment(f, int64(len(b)), h.first, h.prevCRC)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r.count != 2 || r.damaged {
		t.Fatalf("segment %d after TruncateLog(%d): %d records, non-zero bytes after them up to %d", k, lastSafe, r.count, r.dirtyEnd)
	}
	// One large entry: k is sealed, the entry durable in a new segment.
	big := sized(lastSafe+1, 600)
	mustAppend(t, l, big)
	mustSync(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash before k's index was written.
	if err := fs.Remove("wal/" + indexName(k)); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "wal", optsKeep(fs, big.Offset))
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), append(entries(0, lastSafe, 0), big))
}

// TestTruncateChecksTheNextPositionOfItsIndex: an index whose CRCs are
// sound but whose position of the record after the cut is wrong (a bug
// that wrote it) makes TruncateLog report ErrCorrupt and change nothing,
// rather than zero the segment from the wrong place, which leaves bytes of
// that record after the cut.
func TestTruncateChecksTheNextPositionOfItsIndex(t *testing.T) {
	fs, all := closedLog(t, 100)
	firsts := fileFirsts(t, fs, "wal")
	if len(firsts) < 3 || firsts[1] < 5 {
		t.Fatalf("segments %v: the test needs 3, the first with 5 entries", firsts)
	}
	h, positions := readIndexFile(t, fs, "wal/"+indexName(0))
	positions[3] += recordHeaderSize // inside record 3, before record 4
	if positions[3] >= positions[4] {
		t.Fatal("records too short for the test")
	}
	writeBytes(t, fs, "wal/"+indexName(0), encodeIndex(h, positions))

	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	if _, err := l.TruncateLog(2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("TruncateLog(2) with a wrong position for offset 3: %v, want ErrCorrupt", err)
	}
	if got := l.LastDurable().Offset; got != 99 {
		t.Fatalf("after the refused truncation the log ends at %d, want 99", got)
	}
	checkEntries(t, readAll(t, l, 0), all)
}

// TestTornTailZeroedInEveryChunk: garbage after the last record in more
// than one of the chunks the scan reads (64 KiB) is zeroed up to the end
// of the last: left there, it makes the segment look damaged once it is
// sealed, and a later Open that scans it cuts every segment after it.
func TestTornTailZeroedInEveryChunk(t *testing.T) {
	fs := vfs.NewMem()
	opts := Options{FS: fs, SegmentSize: 256 << 10}
	l := mustOpen(t, "wal", opts)
	all := entries(0, 9, 0)
	mustAppend(t, l, all...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seg := "wal/" + segmentName(0)
	clean := readBytes(t, fs, seg)
	end := int64(segmentHeaderSize)
	for i := range all {
		rec, _ := appendRecord(nil, &all[i], 0)
		end += int64(len(rec))
	}
	b := bytes.Clone(clean)
	b[end+10] = 0xa5
	b[end+(100<<10)] = 0xa5 // in a later chunk
	writeBytes(t, fs, seg, b)
	opts.MustKeepBelow = 10
	l = mustOpen(t, "wal", opts)
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), all)
	if got := readBytes(t, fs, seg); !isZero(got[end:]) {
		t.Fatal("garbage after the last record left in place")
	}
}

// TestDamageFollowedByValidRecords: a record damaged in the middle of the
// log, valid records after it, is cut like a torn tail when the cut keeps
// everything below MustKeepBelow (a crash can leave a later page of
// unsynced records without an earlier one), with a warning naming the
// offset; below MustKeepBelow it is ErrCorrupt, and the log is untouched.
func TestDamageFollowedByValidRecords(t *testing.T) {
	all := entries(0, 99, 0)
	damaged := func(t *testing.T) (vfs.FS, string, []byte) {
		fs := vfs.NewMem()
		l := mustOpen(t, "wal", Options{FS: fs, SegmentSize: 256 << 10})
		mustAppend(t, l, all...)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		seg := "wal/" + segmentName(0)
		b := readBytes(t, fs, seg)
		at := int64(segmentHeaderSize)
		for i := range all[:50] {
			rec, _ := appendRecord(nil, &all[i], 0)
			at += int64(len(rec))
		}
		b[at+recordHeaderSize] ^= 0x01 // in record 50's entry
		// A copy: with Pebble's invariants on (under -race), the memory
		// file system flips the bytes it was given to write once copied.
		writeBytes(t, fs, seg, bytes.Clone(b))
		return fs, seg, b
	}

	t.Run("above MustKeepBelow", func(t *testing.T) {
		fs, _, _ := damaged(t)
		var warnings bytes.Buffer
		opts := Options{FS: fs, SegmentSize: 256 << 10, MustKeepBelow: 50,
			Logger: slog.New(slog.NewTextHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))}
		l := mustOpen(t, "wal", opts)
		defer l.Close()
		checkEntries(t, readAll(t, l, 0), all[:50])
		if w := warnings.String(); !strings.Contains(w, "cutting the log") || !strings.Contains(w, "at=50") || !strings.Contains(w, "damaged record") {
			t.Errorf("the cut was not reported: %q", w)
		}
	})
	t.Run("below MustKeepBelow", func(t *testing.T) {
		fs, seg, before := damaged(t)
		_, err := Open("wal", Options{FS: fs, SegmentSize: 256 << 10, MustKeepBelow: 51})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "offset 50") {
			t.Fatalf("Open = %v, want ErrCorrupt naming offset 50", err)
		}
		if !bytes.Equal(readBytes(t, fs, seg), before) {
			t.Error("the refused Open changed the segment")
		}
	})
}
