package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// recordPositions walks segment file path of fs and returns the positions
// of its records (independently of the log and of its index).
func recordPositions(t *testing.T, fs vfs.FS, path string) []int64 {
	t.Helper()
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []int64
	pos := int64(segmentHeaderSize)
	for {
		var hdr [recordHeaderSize]byte
		if _, err := f.ReadAt(hdr[:], pos); err != nil {
			return out
		}
		n, err := recordLen(hdr[:])
		if err != nil {
			return out
		}
		out = append(out, pos)
		pos += recordHeaderSize + int64(n)
	}
}

// sealedLog writes entries 0..99 in 512-byte segments and closes the log,
// so that every segment but the last is sealed with a valid index (Open
// trusts it and does not read its records).
func sealedLog(t *testing.T) (vfs.FS, []logpos.Offset) {
	t.Helper()
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	firsts := segFirsts(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if len(firsts) < 3 || firsts[1] < 5 {
		t.Fatalf("segments %v: want at least 3, the first holding 5 entries", firsts)
	}
	return fs, firsts
}

func patchFile(t *testing.T, fs vfs.FS, path string, at int64, b []byte) {
	t.Helper()
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestForwardReaderVerifiesTrustedSegments: Open trusts a sealed segment
// through its index without reading its records, so the forward reader is
// what meets damage there. A record whose value changed (its CRC no longer
// holds) or whose length word reaches past the segment's data is
// ErrCorrupt, never an entry.
func TestForwardReaderVerifiesTrustedSegments(t *testing.T) {
	for _, damage := range []string{"value", "length"} {
		t.Run(damage, func(t *testing.T) {
			fs, _ := sealedLog(t)
			seg := "wal/" + segmentName(0)
			pos := recordPositions(t, fs, seg)
			switch damage {
			case "value":
				// The value of record 2 differs in one byte; it still decodes.
				f, _ := fs.Open(seg)
				b := make([]byte, pos[3]-pos[2])
				_, _ = f.ReadAt(b, pos[2])
				_ = f.Close()
				i := bytes.Index(b, []byte("value-2-gen-0"))
				if i < 0 {
					t.Fatal("value of record 2 not found")
				}
				patchFile(t, fs, seg, pos[2]+int64(i), []byte("V"))
			case "length":
				var w [4]byte
				binary.LittleEndian.PutUint32(w[:], recordMarker|uint32(maxPayloadSize))
				patchFile(t, fs, seg, pos[2], w[:])
			}
			l := mustOpen(t, "wal", memOpts(fs))
			defer l.Close()
			for _, from := range []logpos.Offset{0, 2} {
				es, err := tryReadAll(l, from)
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("reading from %d over a damaged record 2: %v (entries up to %v), want ErrCorrupt", from, err, es)
				}
				if len(es) != int(2-from) {
					t.Fatalf("reading from %d: %d entries before the damaged record 2", from, len(es))
				}
			}
		})
	}
}

// TestForwardReaderChecksOffsetsFromTheIndex: an index whose checksums hold
// but whose positions name the next record (shifted by one) leads a
// reader to a record whose CRC chains correctly: only its offset tells it
// apart. The reader walks the segment instead and returns the right
// entries.
func TestForwardReaderChecksOffsetsFromTheIndex(t *testing.T) {
	fs, firsts := sealedLog(t)
	idx := "wal/" + indexName(0)
	h, p := readIndexFile(t, fs, idx)
	shifted := append(append([]uint32(nil), p[1:]...), p[len(p)-1]+1)
	patchFile(t, fs, idx, 0, encodeIndex(h, shifted))
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	for from := logpos.Offset(1); from < firsts[1]-1; from++ {
		checkEntries(t, readAll(t, l, from), entries(from, 99, 0))
	}
}

// TestReverseReaderBelowATrim: a reverse reader whose next entry Trim
// removed reports ErrTrimmed.
func TestReverseReaderBelowATrim(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	firsts := segFirsts(l)
	r, err := l.NewReverseReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.Offset == firsts[1] {
			break
		}
	}
	if err := l.Trim(firsts[1]); err != nil {
		t.Fatal(err)
	}
	if e, err := r.Next(); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("reverse Next below the trimmed segment: %v, %v; want ErrTrimmed", e.ID(), err)
	}
}

// countingFS counts the files opened through Open that are not closed.
type countingFS struct {
	vfs.FS
	open atomic.Int64
}

type countedFile struct {
	vfs.File
	fs     *countingFS
	closed atomic.Bool
}

func (fs *countingFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil {
		return nil, err
	}
	fs.open.Add(1)
	return &countedFile{File: f, fs: fs}, nil
}

func (f *countedFile) Close() error {
	if f.closed.CompareAndSwap(false, true) {
		f.fs.open.Add(-1)
	}
	return f.File.Close()
}

// TestReadersReleaseEverything: readers that crossed segments and were
// closed leave no file open and are forgotten by the log.
func TestReadersReleaseEverything(t *testing.T) {
	fs := &countingFS{FS: vfs.NewMem()}
	l := mustOpen(t, "wal", memOpts(fs))
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	checkEntries(t, readAll(t, l, 0), entries(0, 99, 0))
	for range 3 {
		r, err := l.NewReverseReader()
		if err != nil {
			t.Fatal(err)
		}
		for range 60 {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}
		_ = r.Close()
		checkEntries(t, readAll(t, l, 30)[:10], entries(30, 39, 0))
	}
	l.mu.Lock()
	n := len(l.mu.readers)
	l.mu.Unlock()
	if n != 0 {
		t.Errorf("%d closed readers still known to the log", n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fs.open.Load(); n != 0 {
		t.Errorf("%d files opened through Open are still open", n)
	}
}

// TestTrimForgetsASegmentBeforeRemovingIt: while Trim removes a segment's
// files, a reader asking for its entries gets ErrTrimmed, not an I/O error
// about a missing file.
func TestTrimForgetsASegmentBeforeRemovingIt(t *testing.T) {
	idx := "wal/" + indexName(0)
	g := newGate(func(op errorfs.Op) bool { return op.Kind == errorfs.OpRemove && op.Path == idx })
	fs := gatedMem(g)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	firsts := segFirsts(l)
	workerRound(l) // segment 0's index is written: Trim removes it after the segment
	if _, err := fs.Stat(idx); err != nil {
		t.Fatal(err)
	}
	g.armed.Store(true)
	trimmed := make(chan error, 1)
	go func() { trimmed <- l.Trim(firsts[1]) }()
	<-g.at // segment 0's file is removed, its index not yet
	_, err := tryReadAll(l, 0)
	close(g.proceed)
	if terr := <-trimmed; terr != nil {
		t.Fatal(terr)
	}
	if !errors.Is(err, ErrTrimmed) {
		t.Fatalf("reading a segment Trim is removing: %v; want ErrTrimmed", err)
	}
}

// TestForwardReaderReadsNoBytesPastTheDurableEnd: bytes handed to the file
// by a sync still under way may not be written yet; a reader that cached
// them would later return them as the entries written there.
func TestForwardReaderReadsNoBytesPastTheDurableEnd(t *testing.T) {
	seg := "wal/" + segmentName(0)
	g := newGate(func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileWriteAt && op.Path == seg })
	l := mustOpen(t, "wal", memOpts(gatedMem(g)))
	defer l.Close()
	mustAppend(t, l, entries(0, 2, 0)...)
	mustSync(t, l)
	mustAppend(t, l, entry(3, 0))
	g.armed.Store(true)
	synced := make(chan error, 1)
	go func() { _, err := l.Sync(context.Background()); synced <- err }()
	<-g.at // entry 3 is handed to the file, not yet written
	r, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []logpos.Entry
	e, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, logpos.Entry{Term: e.Term, Offset: e.Offset, Timestamp: e.Timestamp, Value: append([]byte(nil), e.Value...)})
	close(g.proceed)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e, err := r.Next()
		if err != nil {
			t.Fatalf("after the sync: %v", err)
		}
		e.Value = append([]byte(nil), e.Value...)
		got = append(got, e)
	}
	checkEntries(t, got, entries(0, 3, 0))
}

// damageValue changes one byte of the value of entry o (generation 0),
// whose record starts at pos of segment file seg: the record still
// decodes, its CRC no longer holds.
func damageValue(t *testing.T, fs vfs.FS, seg string, pos int64, o logpos.Offset) {
	t.Helper()
	f, err := fs.Open(seg)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 128)
	n, _ := f.ReadAt(b, pos)
	_ = f.Close()
	i := bytes.Index(b[:n], fmt.Appendf(nil, "value-%d-gen-0", o))
	if i < 0 {
		t.Fatalf("value of entry %d not found at %d of %s", o, pos, seg)
	}
	patchFile(t, fs, seg, pos+int64(i), []byte("V"))
}

// reverseAll reads l backward with a fresh reverse reader, copying values,
// and returns the entries read and the error that stopped it (nil at
// io.EOF).
func reverseAll(t *testing.T, l *Log) ([]logpos.Entry, error) {
	t.Helper()
	r, err := l.NewReverseReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var es []logpos.Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return es, nil
		}
		if err != nil {
			return es, err
		}
		e.Value = append([]byte(nil), e.Value...)
		es = append(es, e)
	}
}

// backward returns entries to..from (generation 0), the last first.
func backward(from, to logpos.Offset) []logpos.Entry {
	es := entries(from, to, 0)
	slices.Reverse(es)
	return es
}

// TestReaderJustBelowTheFirstOffset: a forward reader asking for the
// offset right before the log's first one, whether the log started above
// it or Trim removed it, gets ErrTrimmed.
func TestReaderJustBelowTheFirstOffset(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	mustAppend(t, l, entries(5, 99, 0)...)
	mustSync(t, l)
	if _, err := tryReadAll(l, 4); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("reading from 4 of a log starting at 5: %v; want ErrTrimmed", err)
	}
	firsts := segFirsts(l)
	if err := l.Trim(firsts[1]); err != nil {
		t.Fatal(err)
	}
	if got := l.FirstOffset(); got != firsts[1] {
		t.Fatalf("first offset %d after the trim, want %d", got, firsts[1])
	}
	if _, err := tryReadAll(l, firsts[1]-1); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("reading from %d of a log trimmed to %d: %v; want ErrTrimmed", firsts[1]-1, firsts[1], err)
	}
}

// TestForwardReaderStartsAtItsRecord: a forward reader finds its first
// record through the record positions (in memory for the active segment,
// in the index file for a sealed one) and checks it against the chain
// value stored in the record before it, without walking the segment from
// its start. Damage to entry 0 shows it: a reader from 0 meets it
// (ErrCorrupt), readers from 1 and 3 return their entries.
func TestForwardReaderStartsAtItsRecord(t *testing.T) {
	for _, where := range []string{"memory", "index"} {
		t.Run(where, func(t *testing.T) {
			seg := "wal/" + segmentName(0)
			var l *Log
			last := logpos.Offset(99)
			switch where {
			case "memory":
				fs := vfs.NewMem()
				l = mustOpen(t, "wal", memOpts(fs))
				last = 4
				mustAppend(t, l, entries(0, last, 0)...)
				mustSync(t, l)
				if n := len(segFirsts(l)); n != 1 {
					t.Fatalf("%d segments, want 1", n)
				}
				damageValue(t, fs, seg, segmentHeaderSize, 0)
			case "index":
				fs, _ := sealedLog(t)
				damageValue(t, fs, seg, segmentHeaderSize, 0)
				l = mustOpen(t, "wal", memOpts(fs))
			}
			defer l.Close()
			if es, err := tryReadAll(l, 0); !errors.Is(err, ErrCorrupt) || len(es) != 0 {
				t.Fatalf("reading from 0 over a damaged entry 0: %d entries, %v; want ErrCorrupt", len(es), err)
			}
			for _, from := range []logpos.Offset{1, 3} {
				checkEntries(t, readAll(t, l, from), entries(from, last, 0))
			}
		})
	}
}

// TestReverseReaderOverAShortenedSegment: a sealed segment file that ends
// inside the records its index holds is damage (ErrCorrupt), not an I/O
// error to retry.
func TestReverseReaderOverAShortenedSegment(t *testing.T) {
	fs, firsts := sealedLog(t)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	seg := "wal/" + segmentName(0)
	pos := recordPositions(t, fs, seg)
	f, err := fs.Open(seg)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, pos[3])
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	writeBytes(t, fs, seg, b) // the file now ends after entry 2
	es, err := reverseAll(t, l)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading backward into a shortened segment: %v; want ErrCorrupt", err)
	}
	checkEntries(t, es, backward(firsts[1], 99))
}

// TestReverseReaderChecksOffsets: a record whose CRC chains correctly but
// that holds another offset than its position in the segment says is
// ErrCorrupt for a reverse reader, as for a forward one. Segment 0 is
// rewritten with entry 2 claiming offset 3 (same size) and the chain
// computed again from it, so that every CRC holds.
func TestReverseReaderChecksOffsets(t *testing.T) {
	fs, firsts := sealedLog(t)
	seg := "wal/" + segmentName(0)
	records := func(es []logpos.Entry) []byte {
		var b []byte
		var crc uint32
		for i := range es {
			b, crc = appendRecord(b, &es[i], crc)
		}
		return b
	}
	orig := records(entries(0, firsts[1]-1, 0))
	es := entries(0, firsts[1]-1, 0)
	es[2].Offset = 3
	b := records(es)
	if len(b) != len(orig) {
		t.Fatalf("rewritten records take %d bytes, the originals %d", len(b), len(orig))
	}
	patchFile(t, fs, seg, segmentHeaderSize, b)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	got, err := reverseAll(t, l)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading backward over entry 2 holding offset 3: %v; want ErrCorrupt", err)
	}
	checkEntries(t, got, backward(3, 99))
}

// TestReverseReaderScansPastAnIndexOfAnotherExtent: an index whose
// checksums hold but which describes less of the segment than the log
// holds (here its first three records) does not agree with the segment:
// the reverse reader scans the segment instead and returns every entry.
func TestReverseReaderScansPastAnIndexOfAnotherExtent(t *testing.T) {
	fs, _ := sealedLog(t)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	idx := "wal/" + indexName(0)
	h, p := readIndexFile(t, fs, idx)
	h.count, h.end = 3, int64(p[3])
	writeBytes(t, fs, idx, encodeIndex(h, p[:3]))
	es, err := reverseAll(t, l)
	if err != nil {
		t.Fatalf("reading backward: %v", err)
	}
	checkEntries(t, es, backward(0, 99))
}

// TestReverseReaderOverAZeroedSealedSegment: a sealed segment whose
// records from the third on were zeroed, its index gone, scans to fewer
// records than the log wrote. The scan must not become what the log
// knows of the segment: every reverse reader meets the damage as
// ErrCorrupt, the later ones too.
func TestReverseReaderOverAZeroedSealedSegment(t *testing.T) {
	fs, firsts := sealedLog(t)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	seg := "wal/" + segmentName(0)
	pos := recordPositions(t, fs, seg)
	h, _ := readIndexFile(t, fs, "wal/"+indexName(0))
	patchFile(t, fs, seg, pos[2], make([]byte, h.end-pos[2]))
	if err := fs.Remove("wal/" + indexName(0)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		es, err := reverseAll(t, l)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("reverse reader %d: %v; want ErrCorrupt", i, err)
		}
		checkEntries(t, es, backward(firsts[1], 99))
		l.mu.Lock()
		s := l.mu.segs[0]
		positions, count := len(s.positions), s.count
		l.mu.Unlock()
		if positions != 0 && positions != count {
			t.Fatalf("after reverse reader %d the log holds %d positions for the %d records of segment 0", i, positions, count)
		}
	}
}

// TestForwardReaderOverAShortenedSegment: a sealed segment file that ends
// before the records its index counts is damaged data for a forward
// reader too (ErrCorrupt), not an I/O error to retry.
func TestForwardReaderOverAShortenedSegment(t *testing.T) {
	fs, _ := sealedLog(t)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	seg := "wal/" + segmentName(0)
	pos := recordPositions(t, fs, seg)
	writeBytes(t, fs, seg, readBytes(t, fs, seg)[:pos[3]]) // the file now ends after entry 2
	got, err := tryReadAll(l, 0)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading forward into a shortened segment: %v; want ErrCorrupt", err)
	}
	checkEntries(t, got, entries(0, logpos.Offset(len(got))-1, 0))
}

// TestRecordHeaderPastTheDataIsCorrupt: a record position whose header
// would end past the segment's data is damage (ErrCorrupt) for the
// readers that go by positions (reverse reader, truncation), also when
// the file itself ends there, not a short read to retry.
func TestRecordHeaderPastTheDataIsCorrupt(t *testing.T) {
	fs := vfs.NewMem()
	e := entry(0, 0)
	b, _ := appendRecord(appendSegmentHeader(nil, segmentHeader{}), &e, 0)
	limit := int64(segmentHeaderSize + recordHeaderSize/2)
	writeBytes(t, fs, "seg", b[:limit])
	f, err := fs.Open("seg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := readRecordAt(f, limit, []uint32{segmentHeaderSize}, 0, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("record header past the data: %v; want ErrCorrupt", err)
	}
}
