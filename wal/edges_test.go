package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/durable"
	"github.com/tablefsm/tablefsm/logpos"
)

// sized returns an entry of term 1 at offset o whose value is n bytes.
func sized(o logpos.Offset, n int) logpos.Entry {
	return logpos.Entry{Term: 1, Offset: o, Value: bytes.Repeat([]byte{byte(o)}, n), Timestamp: uint64(o)}
}

// segFirsts returns the first offset of every segment the log holds.
func segFirsts(l *Log) []logpos.Offset {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logpos.Offset
	for _, s := range l.mu.segs {
		out = append(out, s.first)
	}
	return out
}

// TestChainIsCRC32COfTheProtobufEncoding: the CRC chain is the leader's
// (SPEC §5): crc_i = CRC32-Castagnoli over proto.Marshal(LogEntry_i),
// seeded with crc_{i-1}, the first entry with 0 or with SeedChain's value.
// The expected chain is computed here with hash/crc32 and protobuf-go
// only, across segments and after a reopen.
func TestChainIsCRC32COfTheProtobufEncoding(t *testing.T) {
	table := crc32.MakeTable(crc32.Castagnoli)
	for _, tc := range []struct {
		name string
		seed *uint32
	}{
		{"unseeded", nil},
		{"seeded", func() *uint32 { v := uint32(0xdeadbeef); return &v }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			l := mustOpen(t, "wal", memOpts(fs))
			want := uint32(0)
			if tc.seed != nil {
				if err := l.SeedChain(*tc.seed); err != nil {
					t.Fatal(err)
				}
				want = *tc.seed
			}
			all := entries(10, 60, 0)
			for _, e := range all {
				b, err := proto.Marshal(&replicationpb.LogEntry{Term: int64(e.Term), Offset: int64(e.Offset), Value: e.Value, Timestamp: e.Timestamp})
				if err != nil {
					t.Fatal(err)
				}
				want = crc32.Update(want, table, b)
			}
			mustAppend(t, l, all...)
			mustSync(t, l)
			if n := len(segFirsts(l)); n < 3 {
				t.Fatalf("only %d segments", n)
			}
			if got := l.LastCRC(); got != want {
				t.Fatalf("LastCRC = %#x, want CRC32-C chain %#x", got, want)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, "wal", optsKeep(fs, 60))
			defer l.Close()
			if got := l.LastCRC(); got != want {
				t.Fatalf("after reopen LastCRC = %#x, want %#x", got, want)
			}
		})
	}
}

// TestOpenRejectsInvalidOptions: Open refuses a segment size outside
// [64 B, 1 GiB] and a negative MustKeepBelow, and creates nothing
// for them.
func TestOpenRejectsInvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		is   error // nil: any error
	}{
		{"segment size below 64", Options{SegmentSize: MinSegmentSize - 1}, nil},
		{"negative segment size", Options{SegmentSize: -1}, nil},
		{"segment size above 1 GiB", Options{SegmentSize: MaxSegmentSize + 1}, nil},
		{"negative MustKeepBelow", Options{SegmentSize: 512, MustKeepBelow: -1}, ErrOutOfRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			tc.opts.FS = fs
			l, err := Open("wal", tc.opts)
			if err == nil {
				_ = l.Close()
				t.Fatal("Open accepted the options")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("Open: %v, want %v", err, tc.is)
			}
			if _, err := fs.Stat("wal"); err == nil {
				t.Fatal("a refused Open created the directory")
			}
		})
	}
	// The bounds themselves are valid.
	for _, size := range []int64{MinSegmentSize, MaxSegmentSize} {
		l := mustOpen(t, "ok", Options{FS: vfs.NewMem(), SegmentSize: size})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAppendRefusesMaxOffset: offset math.MaxInt64 is never appended
// (there would be no next offset), whether as the first entry or after
// MaxInt64-1; the log stays usable.
func TestAppendRefusesMaxOffset(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	if err := l.AppendAsync(entry(math.MaxInt64, 0)); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("first offset MaxInt64: %v, want ErrOutOfRange", err)
	}
	mustAppend(t, l, entry(math.MaxInt64-1, 0))
	if err := l.AppendAsync(entry(math.MaxInt64, 0)); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("MaxInt64 after MaxInt64-1: %v, want ErrOutOfRange", err)
	}
	if got := mustSync(t, l); got != math.MaxInt64-1 {
		t.Fatalf("Sync = %d", got)
	}
	checkEntries(t, readAll(t, l, math.MaxInt64-1), []logpos.Entry{entry(math.MaxInt64-1, 0)})
}

// TestPreparedSegmentRenameFails: when the prepared segment cannot be
// renamed into place at a roll-over, the log creates the segment itself:
// the entries land under the segment's own name, are readable, and survive
// a reopen.
func TestPreparedSegmentRenameFails(t *testing.T) {
	mem := vfs.NewMem()
	var fail atomic.Bool
	var failed atomic.Int32
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if fail.Load() && op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, ".seg"+tmpSuffix) {
			failed.Add(1)
			return errorfs.ErrInjected
		}
		return nil
	}))
	l := mustOpen(t, "wal", memOpts(fs))
	all := entries(0, 99, 0)
	mustAppend(t, l, all[0])
	mustSync(t, l)
	workerRound(l) // the next segment is prepared
	fail.Store(true)
	mustAppend(t, l, all[1:]...)
	mustSync(t, l)
	if failed.Load() == 0 {
		t.Fatal("no rename of a prepared segment was failed")
	}
	checkEntries(t, readAll(t, l, 0), all)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A prepared file that could not be renamed is not left behind (Close
	// removes the one prepared last).
	names, err := mem.List("wal")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if strings.HasSuffix(name, tmpSuffix) {
			t.Errorf("%s left behind (%d renames failed)", name, failed.Load())
		}
	}
	l = mustOpen(t, "wal", optsKeep(mem, 99))
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), all)
}

// TestSecondCloseWaitsForTheFirst: a Close called while another Close is
// still making the log durable returns only once that Close has finished,
// so when it returns the entries are durable and the files closed.
func TestSecondCloseWaitsForTheFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reached, proceed := make(chan struct{}), make(chan struct{})
		var block atomic.Bool
		fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
			if op.Kind == errorfs.OpFileSyncData && block.CompareAndSwap(true, false) {
				close(reached)
				<-proceed
			}
			return nil
		}))
		l := mustOpen(t, "wal", memOpts(fs))
		mustAppend(t, l, entries(0, 9, 0)...)
		block.Store(true)
		first, second := make(chan error, 1), make(chan error, 1)
		go func() { first <- l.Close() }()
		<-reached // the first Close is in its fsync
		go func() { second <- l.Close() }()
		synctest.Wait()
		select {
		case err := <-second:
			close(proceed)
			<-first
			t.Fatalf("the second Close returned (%v) while the first was still syncing", err)
		default:
		}
		close(proceed)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if err := <-second; err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if d := l.LastDurable().Offset; d != 9 {
			t.Fatalf("LastDurable = %d after Close, want 9", d)
		}
	})
}

// goroutineIn reports whether some goroutine's stack holds every one of
// the given function names.
func goroutineIn(funcs ...string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		all := true
		for _, f := range funcs {
			all = all && strings.Contains(g, f)
		}
		if all {
			return true
		}
	}
	return false
}

// TestCloseWaitsForTheAppendInProgress: Close waits for an AppendAsync
// under way (here held at the roll-over to a new segment) and makes its
// entry durable: an append that succeeded is never lost by a Close that
// ran alongside it.
func TestCloseWaitsForTheAppendInProgress(t *testing.T) {
	mem := vfs.NewMem()
	reached, proceed := make(chan struct{}), make(chan struct{})
	var block atomic.Bool
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, ".seg"+tmpSuffix) && block.CompareAndSwap(true, false) {
			close(reached)
			<-proceed
		}
		return nil
	}))
	l := mustOpen(t, "wal", memOpts(fs))
	mustAppend(t, l, sized(0, 10))
	mustSync(t, l)
	workerRound(l) // the next segment is prepared
	// big does not fit the rest of the first segment.
	big := sized(1, 470)
	block.Store(true)
	appended := make(chan error, 1)
	go func() { appended <- l.AppendAsync(big) }()
	<-reached // the append is under way, at its roll-over
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	// Let Close go as far as it goes while the append is held: until it
	// returns, or until it waits for the append.
	var closeErr error
	returned := false
	for !returned && !goroutineIn(".(*Log).quiesce(", ".(*Log).close(") {
		select {
		case closeErr = <-closed:
			returned = true
		default:
			runtime.Gosched()
		}
	}
	close(proceed)
	if err := <-appended; err != nil {
		t.Fatalf("AppendAsync: %v", err)
	}
	if !returned {
		closeErr = <-closed
	}
	if closeErr != nil {
		t.Fatal(closeErr)
	}
	r := mustOpen(t, "wal", optsKeep(mem, 1))
	defer r.Close()
	checkEntries(t, readAll(t, r, 0), []logpos.Entry{sized(0, 10), big})
}

// TestTruncateInvalidatesReaders: a reader that returned an entry a
// TruncateLog removed fails with ErrLogChanged, even once entries are
// appended again at those offsets; a forward reader that has not reached
// the cut carries on into the new entries.
func TestTruncateInvalidatesReaders(t *testing.T) {
	setup := func(t *testing.T) *Log {
		l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
		mustAppend(t, l, entries(0, 20, 0)...)
		mustSync(t, l)
		return l
	}
	rewrite := func(t *testing.T, l *Log) {
		if _, err := l.TruncateLog(5); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, l, entries(6, 20, 1)...)
		mustSync(t, l)
	}
	t.Run("forward, past the cut", func(t *testing.T) {
		l := setup(t)
		defer l.Close()
		r, _ := l.NewReader(0)
		defer r.Close()
		for range 11 {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}
		rewrite(t, l)
		if e, err := r.Next(); !errors.Is(err, ErrLogChanged) {
			t.Fatalf("Next after the entries it returned were removed: %v, %v; want ErrLogChanged", e.ID(), err)
		}
	})
	// A reader that returned entries up to the cut, or up to its last
	// kept entry, reads on into the new ones.
	for read, want := range map[int][]logpos.Entry{
		4: append(entries(4, 5, 0), entries(6, 7, 1)...),
		6: entries(6, 9, 1),
	} {
		t.Run(fmt.Sprintf("forward, %d entries read, the cut after 5", read), func(t *testing.T) {
			l := setup(t)
			defer l.Close()
			r, _ := l.NewReader(0)
			defer r.Close()
			for range read {
				if _, err := r.Next(); err != nil {
					t.Fatal(err)
				}
			}
			rewrite(t, l)
			var got []logpos.Entry
			for range 4 {
				e, err := r.Next()
				if err != nil {
					t.Fatal(err)
				}
				e.Value = slices.Clone(e.Value)
				got = append(got, e)
			}
			checkEntries(t, got, want)
		})
	}
	t.Run("reverse", func(t *testing.T) {
		l := setup(t)
		defer l.Close()
		r, _ := l.NewReverseReader()
		defer r.Close()
		for range 5 {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}
		rewrite(t, l)
		if e, err := r.Next(); !errors.Is(err, ErrLogChanged) {
			t.Fatalf("reverse Next after the entries it returned were removed: %v, %v; want ErrLogChanged", e.ID(), err)
		}
	})
}

// TestReaderRacingTruncate: a reader that located its next entry before a
// TruncateLog removed it, and reads the bytes before the truncation
// changes them, still reports ErrLogChanged rather than the removed entry,
// forward (offset 4) and backward (offset 5).
func TestReaderRacingTruncate(t *testing.T) {
	for _, reverse := range []bool{false, true} {
		name := "forward"
		if reverse {
			name = "reverse"
		}
		t.Run(name, func(t *testing.T) {
			seg := "wal/" + segmentName(0)
			reading := newGate(func(op errorfs.Op) bool { return op.Kind == errorfs.OpOpen && op.Path == seg })
			truncating := newGate(func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileWriteAt && op.Path == seg })
			l := mustOpen(t, "wal", memOpts(gatedMem(reading, truncating)))
			defer l.Close()
			mustAppend(t, l, entries(0, 5, 0)...)
			mustSync(t, l)
			if n := len(segFirsts(l)); n != 1 {
				t.Fatalf("%d segments, want 1", n)
			}
			var next func() (logpos.Entry, error)
			if reverse {
				r, err := l.NewReverseReader()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				next = r.Next
			} else {
				r, err := l.NewReader(4)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				next = r.Next
			}
			type result struct {
				e   logpos.Entry
				err error
			}
			reading.armed.Store(true)
			read := make(chan result, 1)
			go func() { e, err := next(); read <- result{e, err} }()
			<-reading.at // the reader located its entry and is opening its segment
			truncating.armed.Store(true)
			truncated := make(chan error, 1)
			go func() { _, err := l.TruncateLog(3); truncated <- err }()
			<-truncating.at // offsets 4 and 5 are removed, their bytes not yet overwritten
			close(reading.proceed)
			got := <-read
			close(truncating.proceed)
			if err := <-truncated; err != nil {
				t.Fatal(err)
			}
			if !errors.Is(got.err, ErrLogChanged) {
				t.Fatalf("Next racing the truncation returned %v, %v; want ErrLogChanged", got.e.ID(), got.err)
			}
		})
	}
}

// TestReaderSegmentTrimmedUnderIt: a reader that located an entry in a
// segment that Trim removes before the reader opens the file reports
// ErrTrimmed, forward and backward.
func TestReaderSegmentTrimmedUnderIt(t *testing.T) {
	for _, reverse := range []bool{false, true} {
		name := "forward"
		if reverse {
			name = "reverse"
		}
		t.Run(name, func(t *testing.T) {
			seg0 := "wal/" + segmentName(0)
			g := newGate(func(op errorfs.Op) bool { return op.Kind == errorfs.OpOpen && op.Path == seg0 })
			l := mustOpen(t, "wal", memOpts(gatedMem(g)))
			defer l.Close()
			mustAppend(t, l, entries(0, 99, 0)...)
			mustSync(t, l)
			firsts := segFirsts(l)
			if len(firsts) < 3 {
				t.Fatalf("%d segments", len(firsts))
			}
			var next func() (logpos.Entry, error)
			if reverse {
				r, _ := l.NewReverseReader()
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
				next = r.Next
			} else {
				r, _ := l.NewReader(0)
				defer r.Close()
				next = r.Next
			}
			g.armed.Store(true)
			type result struct {
				e   logpos.Entry
				err error
			}
			read := make(chan result, 1)
			go func() { e, err := next(); read <- result{e, err} }()
			<-g.at // the reader is about to open the first segment
			if err := l.Trim(firsts[1]); err != nil {
				t.Fatal(err)
			}
			if got := l.FirstOffset(); got != firsts[1] {
				t.Fatalf("first offset %d after Trim, want %d", got, firsts[1])
			}
			close(g.proceed)
			if got := <-read; !errors.Is(got.err, ErrTrimmed) {
				t.Fatalf("Next in a segment trimmed under it: %v, %v; want ErrTrimmed", got.e.ID(), got.err)
			}
		})
	}
}

// TestRebuiltIndexSurvivesPowerLoss: when Open rebuilds the index of a
// sealed segment whose records were in the page cache only (a process
// crash), it makes the segment's records durable before the index that
// describes them: after a power loss every entry Open reported is there.
func TestRebuiltIndexSurvivesPowerLoss(t *testing.T) {
	mem := vfs.NewCrashableMem()
	if err := durable.MkdirAll(mem, "wal"); err != nil {
		t.Fatal(err)
	}
	all := entries(0, 9, 0)
	crc := uint32(0)
	for _, part := range [][]logpos.Entry{all[:5], all[5:]} {
		b := appendSegmentHeader(nil, segmentHeader{first: part[0].Offset, prevCRC: crc})
		for i := range part {
			b, crc = appendRecord(b, &part[i], crc)
		}
		writeBytes(t, mem, "wal/"+segmentName(part[0].Offset), b)
	}
	// The names are durable, the contents are not.
	if err := durable.SyncDir(mem, "wal"); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, "wal", memOpts(mem))
	defer l.Close()
	if d := l.LastDurable().Offset; d != 9 {
		t.Fatalf("LastDurable = %d after Open, want 9", d)
	}
	if _, err := mem.Stat("wal/" + indexName(0)); err != nil {
		t.Fatalf("the first segment's index was not rebuilt: %v", err)
	}
	r := mustOpen(t, "wal", optsKeep(mem.CrashClone(vfs.CrashCloneCfg{}), 9))
	defer r.Close()
	checkEntries(t, readAll(t, r, 0), all)
}

// TestReopenedTailDropsItsIndex: a segment that is last at Open, and so
// takes the next appends, loses its index file at Open: the index would
// describe fewer records than the segment holds once it is sealed again.
// Here the segment is left last, with its index, by a truncation at its
// last entry, and its new index is never written (the writes fail): the
// next Open still finds every entry.
func TestReopenedTailDropsItsIndex(t *testing.T) {
	mem := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(mem))
	small := func(o logpos.Offset) logpos.Entry { return sized(o, 30) }
	mustAppend(t, l, small(0), small(1), small(2), sized(3, 440), small(4))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "wal", optsKeep(mem, 4))
	if got := segFirsts(l); !slices.Equal(got, []logpos.Offset{0, 3, 4}) {
		t.Fatalf("segments %v, want [0 3 4]", got)
	}
	if _, err := l.TruncateLog(2); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Stat("wal/" + indexName(0)); err != nil {
		t.Fatalf("the first segment's index is gone: %v", err)
	}
	noIndexes := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, indexSuffix+tmpSuffix) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	l = mustOpen(t, "wal", optsKeep(noIndexes, 2))
	more := make([]logpos.Entry, 0, 20)
	for o := logpos.Offset(3); o < 23; o++ {
		more = append(more, small(o))
	}
	mustAppend(t, l, more...)
	mustSync(t, l)
	if got := segFirsts(l); len(got) < 2 || got[1] <= 3 {
		t.Fatalf("segments %v: the first segment took no new entries", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "wal", optsKeep(mem, 22))
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), append([]logpos.Entry{small(0), small(1), small(2)}, more...))
}

// TestSealedSegmentInconsistencyDetected: a sealed segment is trusted
// through its index only when its header and its file agree with its
// name and its index. A header naming another offset or another format
// version is damage (the log is cut there, refused below MustKeepBelow);
// a file shorter than its index says is damage too; an index counting more
// records than its segment can hold is not trusted but rebuilt.
func TestSealedSegmentInconsistencyDetected(t *testing.T) {
	rewriteHeader := func(b []byte, edit func(h []byte)) []byte {
		edit(b[:segmentHeaderSize])
		binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
		return b
	}
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, fs vfs.FS, seg, idx string)
		corrupt bool // else the log is whole
	}{
		{"header names another offset", func(t *testing.T, fs vfs.FS, seg, _ string) {
			b := readBytes(t, fs, seg)
			writeBytes(t, fs, seg, rewriteHeader(b, func(h []byte) {
				binary.LittleEndian.PutUint64(h[8:], binary.LittleEndian.Uint64(h[8:])+1000)
			}))
		}, true},
		{"header of another format version", func(t *testing.T, fs vfs.FS, seg, _ string) {
			b := readBytes(t, fs, seg)
			writeBytes(t, fs, seg, rewriteHeader(b, func(h []byte) { binary.LittleEndian.PutUint16(h[4:], formatVersion+1) }))
		}, true},
		{"segment file shorter than its index says", func(t *testing.T, fs vfs.FS, seg, idx string) {
			h, err := decodeIndexHeader(readBytes(t, fs, idx))
			if err != nil {
				t.Fatal(err)
			}
			writeBytes(t, fs, seg, readBytes(t, fs, seg)[:h.end-3])
		}, true},
		{"index counts more records than fit", func(t *testing.T, fs vfs.FS, _, idx string) {
			h, p := readIndexFile(t, fs, idx)
			for len(p) <= int((h.end-segmentHeaderSize)/recordHeaderSize) {
				p = append(p, p[len(p)-1]+1)
			}
			h.count = len(p)
			writeBytes(t, fs, idx, encodeIndex(h, p))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, all := closedLog(t, 100)
			segs, idx := listSuffix(t, fs, "wal", segmentSuffix), listSuffix(t, fs, "wal", indexSuffix)
			if len(segs) < 4 || len(idx) < 3 {
				t.Fatalf("%d segments, %d indexes", len(segs), len(idx))
			}
			tc.damage(t, fs, segs[1], idx[1])
			l, err := Open("wal", optsKeep(fs, 99))
			if tc.corrupt {
				if err == nil {
					_ = l.Close()
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open keeping every entry: %v, want ErrCorrupt", err)
				}
				// Without MustKeepBelow the log is cut: a contiguous prefix.
				l = mustOpen(t, "wal", optsKeep(fs, logpos.NoOffset))
				defer l.Close()
				got := readAll(t, l, 0)
				if len(got) >= len(all) {
					t.Fatalf("nothing cut: %d entries", len(got))
				}
				checkEntries(t, got, all[:len(got)])
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			checkEntries(t, readAll(t, l, 0), all)
		})
	}
}

// TestClearDirectoryStepsOrdered: Clear makes its marker's name durable
// before it removes any segment, and the removals durable before it
// removes the marker (then makes that durable too), so that a crash at
// any point leaves either the whole log or a marker the next Open acts on,
// on a file system that persists directory entries one by one.
func TestClearDirectoryStepsOrdered(t *testing.T) {
	type op struct {
		kind errorfs.OpKind
		path string
	}
	var (
		recording atomic.Bool
		ops       = make(chan op, 1<<16)
	)
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(o errorfs.Op) error {
		if recording.Load() {
			ops <- op{o.Kind, o.Path}
		}
		return nil
	}))
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	workerRound(l) // the indexes are written: the worker has nothing left to do
	recording.Store(true)
	if err := l.Clear(); err != nil {
		t.Fatal(err)
	}
	recording.Store(false)
	close(ops)
	marker := "wal/" + clearMarker
	var (
		seq          []string // "marker+", "sync", "rm", "marker-"
		segmentsGone int
	)
	for o := range ops {
		switch {
		case o.kind == errorfs.OpCreate && o.path == marker:
			seq = append(seq, "marker+")
		case o.kind == errorfs.OpRemove && o.path == marker:
			seq = append(seq, "marker-")
		case o.kind == errorfs.OpRemove && strings.HasSuffix(o.path, segmentSuffix):
			segmentsGone++
			seq = append(seq, "rm")
		case o.kind == errorfs.OpFileSync && o.path == "wal":
			seq = append(seq, "sync")
		}
	}
	if segmentsGone < 3 {
		t.Fatalf("Clear removed %d segments: %q", segmentsGone, seq)
	}
	// Collapse repeats: the shape must be marker+ sync rm sync marker- sync.
	var shape []string
	for _, s := range seq {
		if len(shape) == 0 || shape[len(shape)-1] != s {
			shape = append(shape, s)
		}
	}
	want := []string{"marker+", "sync", "rm", "sync", "marker-", "sync"}
	if !slices.Equal(shape, want) {
		t.Fatalf("Clear's directory steps: %q, want %q", shape, want)
	}
}

// TestLengthWordWithoutMarkerIsNotARecord: a record's length word always
// has its high bit set; a header whose length word lacks it is not a
// record, even when the rest would verify (an empty payload whose CRC is
// the seed, as a half-written header of a seeded segment could leave).
func TestLengthWordWithoutMarkerIsNotARecord(t *testing.T) {
	const seed = 0x1234567
	var hdr [recordHeaderSize]byte
	binary.LittleEndian.PutUint32(hdr[4:], chainCRC(seed, nil))
	if _, _, _, err := decodeRecord(hdr[:], seed); err == nil {
		t.Fatal("a header without the marker bit decoded as a record")
	}
	// Recovery does not take it for entry 0 of a seeded segment.
	fs := vfs.NewMem()
	if err := fs.MkdirAll("wal", 0o755); err != nil {
		t.Fatal(err)
	}
	b := appendSegmentHeader(nil, segmentHeader{first: 0, prevCRC: seed})
	writeBytes(t, fs, "wal/"+segmentName(0), append(b, hdr[:]...))
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	if d := l.LastDurable(); d != logpos.NoEntry {
		t.Fatalf("LastDurable = %v, want none", d)
	}
}

// TestCloseLeavesNoTemporaryFiles: a closed log keeps no prepared segment
// (a preallocated file of SegmentSize bytes) nor any other temporary file
// in its directory.
func TestCloseLeavesNoTemporaryFiles(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	mustAppend(t, l, entries(0, 30, 0)...)
	mustSync(t, l)
	workerRound(l) // the next segment is prepared
	if len(listSuffix(t, fs, "wal", tmpSuffix)) == 0 {
		t.Fatal("no segment prepared")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := listSuffix(t, fs, "wal", tmpSuffix); len(got) != 0 {
		t.Fatalf("left after Close: %q", got)
	}
}

// TestTrimKeepsTheLastSegment: Trim never removes the segment holding the
// last entry, also when a truncation at a segment's last entry left that
// segment sealed and synced at the end of the log; the log keeps its
// entries and takes the next ones.
func TestTrimKeepsTheLastSegment(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	all := entries(0, 99, 0)
	mustAppend(t, l, all...)
	mustSync(t, l)
	firsts := segFirsts(l)
	lastSafe := firsts[2] - 1 // the last entry of the second segment
	if _, err := l.TruncateLog(lastSafe); err != nil {
		t.Fatal(err)
	}
	if err := l.Trim(1 << 40); err != nil {
		t.Fatal(err)
	}
	if got := l.FirstOffset(); got != firsts[1] {
		t.Fatalf("first offset %d after Trim, want %d (the last segment kept)", got, firsts[1])
	}
	checkEntries(t, readAll(t, l, firsts[1]), all[firsts[1]:lastSafe+1])
	rr, _ := l.NewReverseReader()
	if e, err := rr.Next(); err != nil || e.Offset != lastSafe {
		t.Fatalf("reverse reader: %v, %v; want offset %d", e.ID(), err, lastSafe)
	}
	_ = rr.Close()
	mustAppend(t, l, entry(lastSafe+1, 1))
	mustSync(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "wal", optsKeep(fs, lastSafe+1))
	defer l.Close()
	checkEntries(t, readAll(t, l, firsts[1]), append(slices.Clone(all[firsts[1]:lastSafe+1]), entry(lastSafe+1, 1)))
}

// TestFailedAppendTakesNothing: an append whose write of the buffered
// entries fails (the log's buffer is full) returns the failure and takes
// nothing of the entry: the last appended entry and the CRC chain are
// those before it.
func TestFailedAppendTakesNothing(t *testing.T) {
	var fail atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if fail.Load() && op.Kind == errorfs.OpFileWriteAt && strings.HasSuffix(op.Path, segmentSuffix) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	l := mustOpen(t, "wal", Options{FS: fs, SegmentSize: 8 << 20})
	defer l.Close()
	mustAppend(t, l, entry(0, 0))
	mustSync(t, l)
	mustAppend(t, l, entry(1, 0))
	last, crc := l.LastAppended(), l.LastCRC()
	fail.Store(true)
	big := logpos.Entry{Term: 1, Offset: 2, Value: make([]byte, flushThreshold)}
	if err := l.AppendAsync(big); !errors.Is(err, ErrFailed) {
		t.Fatalf("an append whose write fails: %v, want ErrFailed", err)
	}
	if got := l.LastAppended(); got != last || l.LastCRC() != crc {
		t.Fatalf("after the failed append of 2: last appended %v (was %v), CRC %x (was %x)", got, last, l.LastCRC(), crc)
	}
}

// TestRecordFillingTheSegmentStaysInIt: a record that ends exactly at the
// end of the active segment is written there; only the next one rolls to
// a new segment. The log reads back whole after a reopen.
func TestRecordFillingTheSegmentStaysInIt(t *testing.T) {
	mem := vfs.NewMem()
	opts := memOpts(mem)
	l := mustOpen(t, "wal", opts)
	first := entry(0, 0)
	mustAppend(t, l, first)
	left := opts.SegmentSize - segmentHeaderSize - int64(recordHeaderSize+payloadSize(&first))
	fill := logpos.Entry{Term: 1, Offset: 1}
	for n := 0; int64(recordHeaderSize+payloadSize(&fill)) < left; n++ {
		fill.Value = bytes.Repeat([]byte{'f'}, n)
	}
	if got := int64(recordHeaderSize + payloadSize(&fill)); got != left {
		t.Fatalf("no value makes a record of the %d bytes left (closest: %d)", left, got)
	}
	mustAppend(t, l, fill)
	if got := segFirsts(l); !slices.Equal(got, []logpos.Offset{0}) {
		t.Fatalf("after a record filling the segment: segments %v, want [0]", got)
	}
	next := entry(2, 0)
	mustAppend(t, l, next)
	if got := segFirsts(l); !slices.Equal(got, []logpos.Offset{0, 2}) {
		t.Fatalf("after the next record: segments %v, want [0 2]", got)
	}
	mustSync(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "wal", opts)
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), []logpos.Entry{first, fill, next})
}

// TestPreparedSegmentSyncedBeforeUse: a segment prepared off the hot path
// has its preallocated size made durable before it is renamed into use,
// so that the fsyncs of the append path need not.
func TestPreparedSegmentSyncedBeforeUse(t *testing.T) {
	var mu sync.Mutex
	synced := map[string]bool{}
	var renamed, unsynced []string
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.Contains(op.Path, "next-") {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		switch op.Kind {
		case errorfs.OpFileSync:
			synced[op.Path] = true
		case errorfs.OpRename:
			renamed = append(renamed, op.Path)
			if !synced[op.Path] {
				unsynced = append(unsynced, op.Path)
			}
		}
		return nil
	}))
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	for o := logpos.Offset(0); o < 200; o += 10 {
		mustAppend(t, l, entries(o, o+9, 1)...)
		mustSync(t, l)
		workerRound(l) // the next segment is prepared before the roll-over
	}
	mu.Lock()
	defer mu.Unlock()
	if len(renamed) == 0 {
		t.Fatal("no prepared segment was used: the test proves nothing")
	}
	if len(unsynced) > 0 {
		t.Fatalf("prepared segments renamed into use without a sync of their size: %q", unsynced)
	}
}
