package wal

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// TestTruncateReportsAFailedSegmentRemoval: when TruncateLog cannot
// remove a segment after the cut, it fails (the log with it) rather than
// report the truncation done while the file holding removed entries is
// still there.
func TestTruncateReportsAFailedSegmentRemoval(t *testing.T) {
	var last string // set before f is armed
	f := &faults{match: func(op errorfs.Op) bool { return op.Kind == errorfs.OpRemove && op.Path == last }}
	fs := f.wrap(vfs.NewMem())
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	firsts := segFirsts(l)
	if len(firsts) < 3 {
		t.Fatalf("segments %v: the test needs 3", firsts)
	}
	last = "wal/" + segmentName(firsts[len(firsts)-1])
	f.armed.Store(true)
	_, err := l.TruncateLog(5)
	f.armed.Store(false)
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("TruncateLog(5) with %s not removable: %v; want ErrFailed", last, err)
	}
	if err := l.AppendAsync(entry(6, 1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after the failed truncation: %v; want ErrFailed", err)
	}
}

// TestTruncateToMinusOneResetsTheSeed: TruncateLog(-1) clears the log,
// also an empty one: as Clear, it resets the seed of the chain to 0.
func TestTruncateToMinusOneResetsTheSeed(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	if err := l.SeedChain(0xabcdef); err != nil {
		t.Fatal(err)
	}
	if got, err := l.TruncateLog(logpos.NoOffset); err != nil || got != logpos.NoOffset {
		t.Fatalf("TruncateLog(-1) = %d, %v", got, err)
	}
	if got := l.LastCRC(); got != 0 {
		t.Fatalf("chain seed %x after TruncateLog(-1), want 0 (as after Clear)", got)
	}
	mustAppend(t, l, entry(7, 0))
	mustSync(t, l)
	if got, want := l.LastCRC(), chainOf(0, entries(7, 7, 0)); got != want {
		t.Fatalf("chain %x after the first entry, want %x", got, want)
	}
}

// TestTruncateChecksTheOffsetAtTheCut: an index whose positions are sound
// and chain-consistent but one record off (position 1 missing, a bogus one
// at the end) makes TruncateLog read offset lastSafe+1 where lastSafe
// belongs; it reports ErrCorrupt and changes nothing rather than cut after
// the wrong record.
func TestTruncateChecksTheOffsetAtTheCut(t *testing.T) {
	fs, all := closedLog(t, 100)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	l.mu.Lock()
	s0 := l.mu.segs[0]
	inMemory := s0.positions != nil
	count := s0.count
	l.mu.Unlock()
	if inMemory || count < 5 {
		t.Fatalf("the first segment: positions in memory %v, %d records; the test needs them read from the index and 5", inMemory, count)
	}
	h, p := readIndexFile(t, fs, "wal/"+indexName(0))
	shifted := append(append([]uint32{p[0]}, p[2:]...), p[len(p)-1]+1)
	writeBytes(t, fs, "wal/"+indexName(0), encodeIndex(h, shifted))
	if _, err := l.TruncateLog(2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("TruncateLog(2) reading offset 3 at the cut: %v, want ErrCorrupt", err)
	}
	if got := l.LastDurable().Offset; got != 99 {
		t.Fatalf("after the refused truncation the log ends at %d, want 99", got)
	}
	checkEntries(t, readAll(t, l, 0), all)
}

// TestTruncateReportsAFailedIndexRemoval: when TruncateLog cannot remove
// the index of the segment it cuts (an index that describes records it is
// about to zero), it fails, the log with it, rather than carry on.
func TestTruncateReportsAFailedIndexRemoval(t *testing.T) {
	fs0, _ := closedLog(t, 100)
	firsts := fileFirsts(t, fs0, "wal")
	if len(firsts) < 2 || firsts[1]-firsts[0] < 3 {
		t.Fatalf("segments %v: the test needs 2, the first with 3 entries", firsts)
	}
	idx := "wal/" + indexName(0)
	f := &faults{match: func(op errorfs.Op) bool { return op.Kind == errorfs.OpRemove && op.Path == idx }}
	fs := f.wrap(fs0)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	f.armed.Store(true)
	_, err := l.TruncateLog(1)
	f.armed.Store(false)
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("TruncateLog(1) with %s not removable: %v; want ErrFailed", idx, err)
	}
}

// indexCount returns the record count of the index file of the segment
// starting at first, or -1 when there is no readable index.
func indexCount(t *testing.T, fs vfs.FS, first logpos.Offset) int {
	t.Helper()
	f, err := fs.Open("wal/" + indexName(first))
	if err != nil {
		return -1
	}
	f.Close()
	h, err := decodeIndexHeader(readBytes(t, fs, "wal/"+indexName(first)))
	if err != nil {
		return -1
	}
	return h.count
}

// TestTruncatedSegmentIndexedAgain: TruncateLog removes the index of the
// segment it cuts; once that segment is sealed and synced again, the
// worker writes its new index.
func TestTruncatedSegmentIndexedAgain(t *testing.T) {
	fs, _ := closedLog(t, 100)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	firsts := segFirsts(l)
	if len(firsts) < 3 || firsts[2]-firsts[1] < 3 || indexCount(t, fs, firsts[1]) < 0 {
		t.Fatalf("segments %v: the test needs 3, the second indexed, with 3 entries", firsts)
	}
	k := firsts[1]
	if _, err := l.TruncateLog(k + 1); err != nil {
		t.Fatal(err)
	}
	if n := indexCount(t, fs, k); n != -1 {
		t.Fatalf("segment %d cut at %d keeps an index of %d records", k, k+1, n)
	}
	// A large entry seals k and starts a segment of its own.
	mustAppend(t, l, sized(k+2, 600))
	mustSync(t, l)
	workerRound(l)
	if n := indexCount(t, fs, k); n != 2 {
		t.Fatalf("index of segment %d after it was sealed again: %d records, want 2", k, n)
	}
}

// TestTruncatedSegmentIndexedAfterAnEarlierFailure: a segment whose index
// could not be written (the worker gives up on it until the next open) is
// indexed again once TruncateLog cut it and it is sealed and synced anew.
func TestTruncatedSegmentIndexedAfterAnEarlierFailure(t *testing.T) {
	f := &faults{match: func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpCreate && op.Path == "wal/"+indexName(0)+tmpSuffix
	}}
	fs := f.wrap(vfs.NewMem())
	f.armed.Store(true)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	mustAppend(t, l, entries(0, 19, 0)...)
	mustSync(t, l)
	workerRound(l)
	l.mu.Lock()
	s0 := l.mu.segs[0]
	gaveUp := l.mu.indexFailure[s0]
	count := s0.count
	l.mu.Unlock()
	if !gaveUp || count < 3 {
		t.Fatalf("first segment: index failed %v, %d records; the test needs true and 3", gaveUp, count)
	}
	f.armed.Store(false)
	if _, err := l.TruncateLog(1); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, sized(2, 600))
	mustSync(t, l)
	workerRound(l)
	if n := indexCount(t, fs, 0); n != 2 {
		t.Fatalf("index of segment 0 after it was cut and sealed again: %d records, want 2", n)
	}
}

// TestClearStopsWhenItsMarkerCannotBeWritten: Clear removes nothing
// before its marker is durable (a crash in the middle would otherwise
// leave part of the log): when the marker cannot be written, Clear fails,
// the log with it, and the log reopens whole.
func TestClearStopsWhenItsMarkerCannotBeWritten(t *testing.T) {
	f := &faults{match: func(op errorfs.Op) bool { return op.Kind == errorfs.OpCreate && op.Path == "wal/"+clearMarker }}
	mem := vfs.NewMem()
	fs := f.wrap(mem)
	l := mustOpen(t, "wal", memOpts(fs))
	all := entries(0, 99, 0)
	mustAppend(t, l, all...)
	mustSync(t, l)
	f.armed.Store(true)
	err := l.Clear()
	f.armed.Store(false)
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("Clear without its marker: %v; want ErrFailed", err)
	}
	l.Close()
	l = mustOpen(t, "wal", memOpts(mem))
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), all)
}

// TestReaderDuringClearReturnsNothing: a reader that has returned nothing
// yet (so Clear has no reason to mark it) and calls Next while Clear is
// removing the files finds nothing durable: it never returns an entry of
// the log being cleared, which it could not be told was removed.
func TestReaderDuringClearReturnsNothing(t *testing.T) {
	marker := "wal/" + clearMarker
	clearing := newGate(func(op errorfs.Op) bool { return op.Kind == errorfs.OpCreate && op.Path == marker })
	l := mustOpen(t, "wal", memOpts(gatedMem(clearing)))
	defer l.Close()
	mustAppend(t, l, entries(0, 5, 0)...)
	mustSync(t, l)
	r, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	clearing.armed.Store(true)
	cleared := make(chan error, 1)
	go func() { cleared <- l.Clear() }()
	<-clearing.at // the entries are out of the log, their files still there
	e, err := r.Next()
	close(clearing.proceed)
	if cerr := <-cleared; cerr != nil {
		t.Fatal(cerr)
	}
	if !errors.Is(err, ErrCaughtUp) {
		t.Fatalf("Next during Clear: %v, %v; want ErrCaughtUp", e.ID(), err)
	}
}

// TestTrimIndexRemovalFailureForgetsTheSegment: when Trim removed a
// segment's file but not its index, the segment is gone all the same: the
// log starts after it, and a reader asking for its entries gets
// ErrTrimmed (not an error about a file that does not exist).
func TestTrimIndexRemovalFailureForgetsTheSegment(t *testing.T) {
	idx := "wal/" + indexName(0)
	f := &faults{match: func(op errorfs.Op) bool { return op.Kind == errorfs.OpRemove && op.Path == idx }}
	fs := f.wrap(vfs.NewMem())
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	workerRound(l) // the sealed segments are indexed
	firsts := segFirsts(l)
	if len(firsts) < 3 {
		t.Fatalf("segments %v: the test needs 3", firsts)
	}
	if _, err := fs.Stat(idx); err != nil {
		t.Fatalf("segment 0 has no index: %v", err)
	}
	f.armed.Store(true)
	err := l.Trim(firsts[1])
	f.armed.Store(false)
	if !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Trim whose index removal fails: %v", err)
	}
	if _, err := fs.Stat("wal/" + segmentName(0)); err == nil {
		t.Fatal("the segment file is still there: the test needs it removed")
	}
	if got := l.FirstOffset(); got != firsts[1] {
		t.Fatalf("first offset %d after segment 0's file went, want %d", got, firsts[1])
	}
	if _, err := tryReadAll(l, 0); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("reading from 0: %v; want ErrTrimmed", err)
	}
}
