package wal

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/logpos"
)

func TestAppendSyncRead(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 1024})
	if got := l.LastDurable(); got != logpos.NoEntry {
		t.Fatalf("empty log: LastDurable = %v", got)
	}
	want := entries(0, 99, 0)
	mustAppend(t, l, want...)
	if got := l.LastAppended(); got != want[99].ID() {
		t.Fatalf("LastAppended = %v", got)
	}
	if got := readAll(t, l, 0); len(got) != 0 {
		t.Fatalf("read %d unsynced entries", len(got))
	}
	if got := mustSync(t, l); got != 99 {
		t.Fatalf("Sync = %d", got)
	}
	if got := l.LastDurable(); got != want[99].ID() {
		t.Fatalf("LastDurable = %v", got)
	}
	checkEntries(t, readAll(t, l, 0), want)
	checkEntries(t, readAll(t, l, 37), want[37:])
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: everything is there, and the chain continues.
	l = mustOpen(t, dir, Options{SegmentSize: 1024, MustKeepBelow: 100})
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), want)
	if got, wantCRC := l.LastCRC(), chainOf(0, want); got != wantCRC {
		t.Fatalf("LastCRC = %x, want %x", got, wantCRC)
	}
	mustAppend(t, l, entry(100, 0))
	mustSync(t, l)
	checkEntries(t, readAll(t, l, 99), append(want[99:], entry(100, 0)))
}

func TestContiguity(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	if err := l.AppendAsync(entry(-1, 0)); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("negative first offset: %v", err)
	}
	mustAppend(t, l, entry(42, 0)) // first offset ≠ 0
	for _, o := range []logpos.Offset{42, 41, 44, 0, -1} {
		if err := l.AppendAsync(entry(o, 0)); !errors.Is(err, ErrGap) {
			t.Fatalf("append %d after 42: %v, want ErrGap", o, err)
		}
	}
	mustAppend(t, l, entry(43, 0))
	mustSync(t, l)
	if got := l.FirstOffset(); got != 42 {
		t.Fatalf("FirstOffset = %d", got)
	}
	checkEntries(t, readAll(t, l, 42), entries(42, 43, 0))
	if _, err := l.NewReader(-1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("NewReader(-1): %v", err)
	}
	if _, err := tryReadAll(l, 10); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("reading below the first offset: %v", err)
	}
	if err := l.AppendAsync(logpos.Entry{Offset: 44, Value: make([]byte, MaxValueSize+1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized value: %v", err)
	}
}

func TestValueCopied(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	buf := []byte("original")
	mustAppend(t, l, logpos.Entry{Term: 1, Offset: 0, Value: buf})
	copy(buf, "CHANGED!")
	mustSync(t, l)
	if got := readAll(t, l, 0); string(got[0].Value) != "original" {
		t.Fatalf("value = %q", got[0].Value)
	}
}

func TestEmptyEntries(t *testing.T) {
	// The entry {0, 0, nil, 0} encodes to an empty payload: its record must
	// still be told from unused space.
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	want := []logpos.Entry{{}, {Offset: 1}, {Offset: 2, Value: []byte{}}}
	mustAppend(t, l, want...)
	mustSync(t, l)
	l.Close()
	l = mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	want[2].Value = nil
	checkEntries(t, readAll(t, l, 0), want)
}

func TestChainAcrossSegmentsAndSeed(t *testing.T) {
	fs := vfs.NewMem()
	all := entries(0, 199, 0)
	full := mustOpen(t, "full", memOpts(fs))
	defer full.Close()
	mustAppend(t, full, all...)
	mustSync(t, full)
	if n := len(full.mu.segs); n < 5 {
		t.Fatalf("only %d segments; the test wants several", n)
	}
	if got, want := full.LastCRC(), chainOf(0, all); got != want {
		t.Fatalf("chain %x, want %x", got, want)
	}

	// A log that holds 0..99, is cleared (as after a snapshot), seeded with
	// the CRC of entry 99 and continues from 100 ends with the same chain.
	l := mustOpen(t, "seeded", memOpts(fs))
	mustAppend(t, l, all[:100]...)
	mustSync(t, l)
	seed := l.LastCRC()
	if err := l.SeedChain(1); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("SeedChain on a non-empty log: %v", err)
	}
	if err := l.Clear(); err != nil {
		t.Fatal(err)
	}
	if err := l.SeedChain(seed); err != nil {
		t.Fatal(err)
	}
	if got := l.LastCRC(); got != seed {
		t.Fatalf("LastCRC after seeding = %x", got)
	}
	mustAppend(t, l, all[100:]...)
	mustSync(t, l)
	if got, want := l.LastCRC(), full.LastCRC(); got != want {
		t.Fatalf("seeded chain %x, full chain %x", got, want)
	}
	// The seed is persisted: reopening verifies the chain from it.
	l.Close()
	l = mustOpen(t, "seeded", memOpts(fs))
	defer l.Close()
	if got, want := l.LastCRC(), full.LastCRC(); got != want {
		t.Fatalf("after reopen: chain %x, want %x", got, want)
	}
	checkEntries(t, readAll(t, l, 100), all[100:])
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		name             string
		n                logpos.Offset // entries 0..n-1 appended
		synced           logpos.Offset // entries 0..synced synced first
		lastSafe         logpos.Offset
		wantLast         logpos.Offset
		trimmedFirstSegs bool
	}{
		{name: "inside the last segment", n: 20, synced: 19, lastSafe: 18, wantLast: 18},
		{name: "inside an earlier segment", n: 100, synced: 99, lastSafe: 30, wantLast: 30},
		{name: "across segments, unsynced", n: 100, synced: 10, lastSafe: 50, wantLast: 50},
		{name: "nothing synced", n: 100, synced: -1, lastSafe: 70, wantLast: 70},
		{name: "at a segment's last entry", n: 100, synced: 99, lastSafe: -2, wantLast: -2},
		{name: "keep all", n: 100, synced: 20, lastSafe: 99, wantLast: 99},
		{name: "clear", n: 100, synced: 99, lastSafe: -1, wantLast: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			l := mustOpen(t, "wal", memOpts(fs))
			defer func() { l.Close() }()
			all := entries(0, tc.n-1, 0)
			mustAppend(t, l, all[:tc.synced+1]...)
			mustSync(t, l)
			mustAppend(t, l, all[tc.synced+1:]...)
			lastSafe, wantLast := tc.lastSafe, tc.wantLast
			if lastSafe == -2 {
				// The last entry of the first segment.
				l.mu.Lock()
				lastSafe = l.mu.segs[0].last()
				l.mu.Unlock()
				wantLast = lastSafe
			}
			got, err := l.TruncateLog(lastSafe)
			if err != nil || got != wantLast {
				t.Fatalf("TruncateLog(%d) = %d, %v", lastSafe, got, err)
			}
			if d, a := l.LastDurable().Offset, l.LastAppended().Offset; d != wantLast || a != wantLast {
				t.Fatalf("durable %d, appended %d, want %d", d, a, wantLast)
			}
			kept := all[:wantLast+1]
			checkEntries(t, readAll(t, l, 0), kept)
			if wantLast >= 0 {
				if err := l.AppendAsync(entry(wantLast+2, 1)); !errors.Is(err, ErrGap) {
					t.Fatalf("append after the gap: %v", err)
				}
			}
			if wantLast == -1 {
				// An empty log takes any first offset.
				mustAppend(t, l, entry(1000, 1))
				mustSync(t, l)
				checkEntries(t, readAll(t, l, 1000), []logpos.Entry{entry(1000, 1)})
				return
			}
			more := entries(wantLast+1, wantLast+30, 1)
			mustAppend(t, l, more...)
			mustSync(t, l)
			want := append(append([]logpos.Entry(nil), kept...), more...)
			checkEntries(t, readAll(t, l, 0), want)
			if got, w := l.LastCRC(), chainOf(0, want); got != w {
				t.Fatalf("chain %x, want %x", got, w)
			}
			// The truncation is durable and the old entries do not come back.
			l.Close()
			l = mustOpen(t, "wal", memOpts(fs))
			checkEntries(t, readAll(t, l, 0), want)
		})
	}
}

func TestTruncateErrorsAndBelowFirst(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	mustAppend(t, l, entries(100, 199, 0)...)
	if _, err := l.TruncateLog(200); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("beyond the end: %v", err)
	}
	if _, err := l.TruncateLog(-2); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("-2: %v", err)
	}
	got, err := l.TruncateLog(50) // below every segment
	if err != nil || got != logpos.NoOffset {
		t.Fatalf("TruncateLog(50) = %d, %v", got, err)
	}
	if l.LastDurable() != logpos.NoEntry || l.FirstOffset() != logpos.NoOffset {
		t.Fatalf("not empty: %v %d", l.LastDurable(), l.FirstOffset())
	}
	// Appends continue.
	mustAppend(t, l, entries(51, 60, 1)...)
	mustSync(t, l)
	checkEntries(t, readAll(t, l, 51), entries(51, 60, 1))
}

func TestTrim(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	all := entries(0, 199, 0)
	mustAppend(t, l, all...)
	mustSync(t, l)
	r, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	// Trim(upTo) removes the segments whose entries are all below upTo:
	// the log then starts with the segment holding upTo.
	l.mu.Lock()
	want := l.findLocked(120).first
	l.mu.Unlock()
	if want == 0 {
		t.Fatal("120 is in the first segment")
	}
	if err := l.Trim(120); err != nil {
		t.Fatal(err)
	}
	first := l.FirstOffset()
	if first != want {
		t.Fatalf("first offset after Trim(120) = %d, want %d", first, want)
	}
	if _, err := r.Next(); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("reading a trimmed offset: %v", err)
	}
	checkEntries(t, readAll(t, l, first), all[first:])
	// A segment whose last entry is upTo is kept; upTo one past it
	// removes it.
	l.mu.Lock()
	last := l.mu.segs[0].last()
	l.mu.Unlock()
	if err := l.Trim(last); err != nil {
		t.Fatal(err)
	}
	if got := l.FirstOffset(); got != first {
		t.Fatalf("first offset after Trim(%d), the last offset of the first segment, = %d, want %d", last, got, first)
	}
	if err := l.Trim(last + 1); err != nil {
		t.Fatal(err)
	}
	if first = l.FirstOffset(); first != last+1 {
		t.Fatalf("first offset after Trim(%d) = %d, want %d", last+1, first, last+1)
	}
	checkEntries(t, readAll(t, l, first), all[first:])
	if err := l.Trim(1 << 40); err != nil {
		t.Fatal(err)
	}
	if l.FirstOffset() == logpos.NoOffset || l.LastDurable().Offset != 199 {
		t.Fatal("Trim removed the last segment")
	}
	first = l.FirstOffset()
	l.Close()
	l = mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	if got := l.FirstOffset(); got != first {
		t.Fatalf("first after reopen = %d, want %d", got, first)
	}
	checkEntries(t, readAll(t, l, first), all[first:])
	mustAppend(t, l, entry(200, 0))
	mustSync(t, l)
}

// A segment whose file Trim cannot remove stays in the log: the next
// Trim does not remove the segments after it (which would leave the log
// on disk starting with a hole), and retries it.
func TestTrimRemoveFailureKeepsSegment(t *testing.T) {
	mem := vfs.NewMem()
	var fail atomic.Bool
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpRemove && strings.HasSuffix(op.Path, "/"+segmentName(0)) && fail.Load() {
			return errorfs.ErrInjected
		}
		return nil
	}))
	l := mustOpen(t, "wal", memOpts(fs))
	all := entries(0, 199, 0)
	mustAppend(t, l, all...)
	mustSync(t, l)
	fail.Store(true)
	if err := l.Trim(120); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Trim whose remove fails: %v", err)
	}
	if got := l.FirstOffset(); got != 0 {
		t.Fatalf("first offset after a failed Trim = %d, want 0", got)
	}
	checkEntries(t, readAll(t, l, 0), all)
	if err := l.Trim(120); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Trim again: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	opts := memOpts(mem)
	opts.MustKeepBelow = 151
	l = mustOpen(t, "wal", opts)
	if got := l.FirstOffset(); got != 0 {
		t.Fatalf("first offset after reopen = %d, want 0", got)
	}
	checkEntries(t, readAll(t, l, 0), all)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Once the file can go, Trim removes it and the segments after it.
	fail.Store(false)
	l = mustOpen(t, "wal", Options{FS: fs, SegmentSize: 512, MustKeepBelow: 151})
	defer l.Close()
	if err := l.Trim(120); err != nil {
		t.Fatal(err)
	}
	first := l.FirstOffset()
	if first <= 0 || first > 120 {
		t.Fatalf("first offset after Trim(120) = %d", first)
	}
	checkEntries(t, readAll(t, l, first), all[first:])
}

func TestClear(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	r, _ := l.NewReader(0)
	defer r.Close()
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, entries(100, 120, 0)...) // unsynced, gone too
	for range 2 {                             // idempotent
		if err := l.Clear(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Next(); !errors.Is(err, ErrLogChanged) {
		t.Fatalf("reader after Clear: %v", err)
	}
	if l.LastAppended() != logpos.NoEntry || l.LastCRC() != 0 {
		t.Fatal("not empty")
	}
	names, _ := fs.List("wal")
	for _, n := range names {
		if n != lockName && !strings.HasSuffix(n, tmpSuffix) {
			t.Errorf("left after Clear: %s", n)
		}
	}
	l.Close()
	l = mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	if l.LastDurable() != logpos.NoEntry {
		t.Fatal("entries came back")
	}
}

// Trim removes only segments whose records are durable: segments appended
// to but not yet synced stay, whatever upTo says.
func TestTrimKeepsUnsyncedSegments(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	mustAppend(t, l, entries(0, 99, 0)...)
	if err := l.Trim(99); err != nil {
		t.Fatal(err)
	}
	if got := l.FirstOffset(); got != 0 {
		t.Fatalf("Trim(99) before any Sync: first offset %d, want 0", got)
	}
	mustSync(t, l)
	if err := l.Trim(99); err != nil {
		t.Fatal(err)
	}
	if got := l.FirstOffset(); got == 0 {
		t.Fatal("Trim(99) after Sync removed nothing")
	}
}

// The segment TruncateLog cuts takes the appends that follow it and, once
// sealed and synced, is trimmed like any other segment.
func TestTruncatedSegmentTrimmedLater(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	mustAppend(t, l, entries(0, 99, 0)...)
	mustSync(t, l)
	if _, err := l.TruncateLog(5); err != nil {
		t.Fatal(err)
	}
	more := entries(6, 99, 1)
	mustAppend(t, l, more...)
	mustSync(t, l)
	l.mu.Lock()
	want := l.findLocked(99).first
	l.mu.Unlock()
	if err := l.Trim(99); err != nil {
		t.Fatal(err)
	}
	first := l.FirstOffset()
	if first <= 5 || first != want {
		t.Fatalf("first offset after Trim(99) = %d, want %d (the segment cut at 5 must go too)", first, want)
	}
	checkEntries(t, readAll(t, l, first), more[first-6:])
}

// TruncateLog removes the index files of the segments it removes: none is
// left without its segment.
func TestTruncateRemovesIndexes(t *testing.T) {
	fs, all := closedLog(t, 100)
	if n := len(listSuffix(t, fs, "wal", indexSuffix)); n < 3 {
		t.Fatalf("%d index files", n)
	}
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	if _, err := l.TruncateLog(10); err != nil {
		t.Fatal(err)
	}
	for _, p := range listSuffix(t, fs, "wal", indexSuffix) {
		if _, err := fs.Stat(strings.TrimSuffix(p, indexSuffix) + segmentSuffix); err != nil {
			t.Errorf("%s left without its segment", p)
		}
	}
	checkEntries(t, readAll(t, l, 0), all[:11])
}

// A Clear stopped by an error at any of its removals leaves, on reopen,
// the whole log or an empty one.
func TestClearStoppedAtEveryStep(t *testing.T) {
	all := entries(0, 99, 0)
	stops := 0
	for k := int32(1); ; k++ {
		mem := vfs.NewMem()
		var armed atomic.Bool
		var removals atomic.Int32
		fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
			if armed.Load() && op.Kind == errorfs.OpRemove && removals.Add(1) == k {
				return errorfs.ErrInjected
			}
			return nil
		}))
		l := mustOpen(t, "wal", memOpts(fs))
		mustAppend(t, l, all...)
		mustSync(t, l)
		armed.Store(true)
		err := l.Clear()
		armed.Store(false)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err == nil {
			break // k is past the last removal
		}
		if !errors.Is(err, errorfs.ErrInjected) {
			t.Fatalf("Clear stopped at removal %d: %v", k, err)
		}
		stops++
		r := mustOpen(t, "wal", memOpts(mem))
		got := readAll(t, r, max(r.FirstOffset(), 0))
		r.Close()
		if len(got) > 0 {
			if err := equalEntries(got, all); err != nil {
				t.Fatalf("Clear stopped at removal %d: the reopened log is neither whole nor empty: %v", k, err)
			}
		}
	}
	if stops < 10 {
		t.Fatalf("Clear made only %d removals: the log has too few segments to test", stops)
	}
}

// Delete is durable when it returns: after a power loss the log's
// directory is gone.
func TestDeleteIsDurable(t *testing.T) {
	mem := vfs.NewCrashableMem()
	l := mustOpen(t, "wal", memOpts(mem))
	mustAppend(t, l, entries(0, 20, 0)...)
	mustSync(t, l)
	if _, err := mem.CrashClone(vfs.CrashCloneCfg{}).Stat("wal"); err != nil {
		t.Fatalf("the log's directory is not durable: %v", err)
	}
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.CrashClone(vfs.CrashCloneCfg{}).Stat("wal"); !errors.Is(err, errNotExist) {
		t.Fatalf("after Delete and a crash, the log's directory: %v", err)
	}
}

// TestDeleteLeavesAllOrNothing: a crash at any step of Delete leaves,
// once the log is opened again, all of it or nothing, and nothing of
// what Delete moved aside.
func TestDeleteLeavesAllOrNothing(t *testing.T) {
	mem := vfs.NewCrashableMem()
	var images []*vfs.MemFS
	var deleting atomic.Bool
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if deleting.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			images = append(images, mem.CrashClone(vfs.CrashCloneCfg{}))
		}
		return nil
	}))
	l := mustOpen(t, "wal", Options{FS: fs, SegmentSize: 512})
	mustAppend(t, l, entries(0, 20, 0)...)
	mustSync(t, l)
	deleting.Store(true)
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	deleting.Store(false)
	images = append(images, mem.CrashClone(vfs.CrashCloneCfg{}))
	if len(images) < 4 {
		t.Fatalf("Delete wrote %d times: the test proves nothing", len(images)-1)
	}
	var whole, none int
	for i, img := range images {
		again := mustOpen(t, "wal", Options{FS: img, SegmentSize: 512})
		switch last := again.LastDurable().Offset; last {
		case 20:
			whole++
		case logpos.NoOffset:
			none++
		default:
			t.Errorf("crash %d: the log ends at %d, want 20 or nothing", i, last)
		}
		if _, err := img.Stat("wal.deleted"); !errors.Is(err, errNotExist) {
			t.Errorf("crash %d: after Open, what Delete moved aside: %v", i, err)
		}
		if err := again.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if whole == 0 || none == 0 {
		t.Errorf("%d crashes kept the log, %d removed it: want both", whole, none)
	}
}

// TestDeleteKeepsALogOpenedMeanwhile: once Delete has released the
// directory, a log opened in it is a new one, which Delete does not
// remove.
func TestDeleteKeepsALogOpenedMeanwhile(t *testing.T) {
	mem := vfs.NewMem()
	var armed atomic.Bool
	var removals atomic.Int32
	reached, proceed := make(chan struct{}), make(chan struct{})
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		// Delete removes what it moved aside twice: before it moves the
		// log there, and, the lock released, after.
		if armed.Load() && op.Kind == errorfs.OpRemoveAll && op.Path == "wal.deleted" && removals.Add(1) == 2 {
			close(reached)
			<-proceed
		}
		return nil
	}))
	opts := Options{FS: fs, SegmentSize: 512}
	l := mustOpen(t, "wal", opts)
	mustAppend(t, l, entries(0, 4, 0)...)
	mustSync(t, l)
	deleted := make(chan error)
	armed.Store(true)
	go func() { deleted <- l.Delete() }()
	select {
	case <-reached:
	case err := <-deleted:
		t.Fatalf("Delete returned %v without removing what it moved aside once the lock was released", err)
	}
	other, err := Open("wal", Options{FS: mem, SegmentSize: 512})
	if err != nil {
		close(proceed)
		<-deleted
		t.Fatalf("opening the log again while Delete removes the old one: %v", err)
	}
	if got := other.LastDurable().Offset; got != logpos.NoOffset {
		t.Errorf("the log opened during Delete ends at %d, want empty", got)
	}
	mustAppend(t, other, entries(5, 9, 0)...)
	mustSync(t, other)
	close(proceed)
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	again := mustOpen(t, "wal", Options{FS: mem, SegmentSize: 512, MustKeepBelow: 10})
	defer again.Close()
	if got := again.LastDurable().Offset; got != 9 {
		t.Fatalf("the log opened during Delete, synced up to 9, ends at %d after the Delete", got)
	}
}

func TestReaderTails(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	r, err := l.NewReader(5)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); !errors.Is(err, ErrCaughtUp) {
		t.Fatalf("empty log: %v", err)
	}
	all := entries(5, 300, 0)
	next := 0
	for i := 0; i < len(all); i += 37 {
		batch := all[i:min(i+37, len(all))]
		mustAppend(t, l, batch...)
		if _, err := r.Next(); !errors.Is(err, ErrCaughtUp) {
			t.Fatalf("unsynced entry visible: %v", err)
		}
		mustSync(t, l)
		for {
			e, err := r.Next()
			if errors.Is(err, ErrCaughtUp) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			checkEntries(t, []logpos.Entry{e}, all[next:next+1])
			next++
		}
		if next != i+len(batch) {
			t.Fatalf("read %d entries, want %d", next, i+len(batch))
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed reader: %v", err)
	}
}

func TestReverseReader(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	all := entries(10, 150, 0)
	mustAppend(t, l, all...)
	mustSync(t, l)
	mustAppend(t, l, entry(151, 0)) // not durable: not read
	check := func() {
		t.Helper()
		r, err := l.NewReverseReader()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for i := len(all) - 1; i >= 0; i-- {
			e, err := r.Next()
			if err != nil {
				t.Fatalf("at %d: %v", all[i].Offset, err)
			}
			checkEntries(t, []logpos.Entry{e}, all[i:i+1])
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("past the start: %v", err)
		}
	}
	check()
	// Once the indexes are written and the positions dropped from memory.
	l.Close()
	l = mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	all = append(all, entry(151, 0))
	check()
}

func TestClosed(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	mustAppend(t, l, entries(0, 9, 0)...)
	r, _ := l.NewReader(0)
	defer r.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := l.LastDurable().Offset; got != 9 {
		t.Fatalf("Close did not sync: durable %d", got)
	}
	ctx := context.Background()
	for name, err := range map[string]error{
		"AppendAsync":                l.AppendAsync(entry(10, 0)),
		"AppendAsync, too large":     l.AppendAsync(logpos.Entry{Offset: 10, Value: make([]byte, MaxValueSize+1)}),
		"AppendAsync, gap":           l.AppendAsync(entry(12, 0)),
		"Sync":                       func() error { _, err := l.Sync(ctx); return err }(),
		"TruncateLog":                func() error { _, err := l.TruncateLog(3); return err }(),
		"Clear":                      l.Clear(),
		"Trim":                       l.Trim(5),
		"SeedChain":                  l.SeedChain(1),
		"NewReader":                  func() error { _, err := l.NewReader(0); return err }(),
		"NewReader(-1)":              func() error { _, err := l.NewReader(-1); return err }(),
		"TruncateLog beyond the end": func() error { _, err := l.TruncateLog(100); return err }(),
		"NewReverse":                 func() error { _, err := l.NewReverseReader(); return err }(),
		"Reader.Next":                func() error { _, err := r.Next(); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	// Delete removes the directory.
	l2 := mustOpen(t, "wal", memOpts(fs))
	checkEntries(t, readAll(t, l2, 0), entries(0, 9, 0))
	if err := l2.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat("wal"); err == nil {
		t.Fatal("directory still there")
	}
	if err := l2.AppendAsync(entry(10, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Delete: %v", err)
	}
	// Delete of a closed log removes nothing, not even the directory of a
	// log opened there since.
	l3 := mustOpen(t, "wal", memOpts(fs))
	defer l3.Close()
	mustAppend(t, l3, entry(0, 0))
	mustSync(t, l3)
	for _, closed := range []*Log{l, l2} {
		if err := closed.Delete(); !errors.Is(err, ErrClosed) {
			t.Fatalf("Delete of a closed log: %v", err)
		}
	}
	checkEntries(t, readAll(t, l3, 0), entries(0, 0, 0))
}

func TestSyncContext(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	mustAppend(t, l, entry(0, 0))
	// Hold the sync slot as a running sync would.
	l.syncSem <- struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Sync(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync with a cancelled context: %v", err)
	}
	<-l.syncSem
	if got := mustSync(t, l); got != 0 {
		t.Fatalf("Sync = %d", got)
	}
	// Nothing new: no fsync needed, same answer.
	if got := mustSync(t, l); got != 0 {
		t.Fatalf("Sync = %d", got)
	}
	// With nobody syncing there is no wait: a cancelled context does not
	// keep Sync from syncing.
	for i := range logpos.Offset(64) {
		mustAppend(t, l, entry(1+i, 0))
		if got, err := l.Sync(ctx); err != nil || got != 1+i {
			t.Fatalf("Sync with a cancelled context and nobody syncing = %d, %v; want %d", got, err, 1+i)
		}
	}
}

func TestOversizedRecordGetsItsOwnSegment(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	big := logpos.Entry{Term: 1, Offset: 1, Value: make([]byte, 5000)}
	for i := range big.Value {
		big.Value[i] = byte(i)
	}
	want := []logpos.Entry{entry(0, 0), big, entry(2, 0)}
	mustAppend(t, l, want...)
	mustSync(t, l)
	checkEntries(t, readAll(t, l, 0), want)
	l.Close()
	l = mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), want)
}

// workerRound returns once the worker has finished a full round started
// after the call: each send blocks until the worker took the one before,
// and it takes a kick only between rounds.
func workerRound(l *Log) {
	for range 3 {
		l.kick <- struct{}{}
	}
}

// A log opened empty allocates no segment until it has one: a replica
// that is opened and never written to costs no disk space.
func TestEmptyLogPreparesNoSegment(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	segFiles := func() []string {
		names, err := fs.List("wal")
		if err != nil {
			t.Fatal(err)
		}
		var segs []string
		for _, n := range names {
			if strings.Contains(n, ".seg") {
				segs = append(segs, n)
			}
		}
		slices.Sort(segs) // the order of List is the file system's
		return segs
	}
	workerRound(l)
	if got := segFiles(); len(got) != 0 {
		t.Fatalf("an empty log holds %v", got)
	}
	// The first append creates its segment; then the next is prepared.
	mustAppend(t, l, entry(7, 0))
	mustSync(t, l)
	workerRound(l)
	if got := segFiles(); len(got) != 2 || got[0] != segmentName(7) || !strings.HasSuffix(got[1], ".seg.tmp") {
		t.Fatalf("after the first append: %v", got)
	}
	// Emptied again, it keeps what it prepared and prepares nothing more.
	if err := l.Clear(); err != nil {
		t.Fatal(err)
	}
	workerRound(l)
	if got := segFiles(); len(got) != 1 || !strings.HasSuffix(got[0], ".seg.tmp") {
		t.Fatalf("after Clear: %v", got)
	}
}

// TestHoldsNothing: a log directory holds nothing until an entry is
// written to it; one that is not a directory may hold anything.
func TestHoldsNothing(t *testing.T) {
	fs := vfs.NewMem()
	if !HoldsNothing(fs, "/missing") {
		t.Fatal("a missing directory holds something")
	}
	l, err := Open("/log", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if !HoldsNothing(fs, "/log") {
		t.Fatal("a new log holds something")
	}
	if err := l.AppendAsync(logpos.Entry{Term: 1, Offset: 0, Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if HoldsNothing(fs, "/log") {
		t.Fatal("a log with an entry holds nothing")
	}
	f, err := fs.Create("/file", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if HoldsNothing(fs, "/file") {
		t.Fatal("a file in the place of a log holds nothing")
	}
}

// TestDeleteOfADirectoryNamedWithATrailingSeparator: Delete moves the
// directory beside itself, not into itself.
func TestDeleteOfADirectoryNamedWithATrailingSeparator(t *testing.T) {
	mem := vfs.NewMem()
	l := mustOpen(t, "data/wal/", memOpts(mem))
	mustAppend(t, l, entries(0, 3, 0)...)
	mustSync(t, l)
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	if names, err := mem.List("data"); err != nil || len(names) != 0 {
		t.Fatalf("after Delete the parent directory holds %q (%v), want nothing", names, err)
	}
}

// TestReopenedLogPreparesItsNextSegment: Open wakes the worker, so that a
// reopened log that holds entries prepares its next segment at once,
// not only once the append path has rolled to a segment it created
// itself.
func TestReopenedLogPreparesItsNextSegment(t *testing.T) {
	held := preparingGate()
	fs := gatedMem(held)
	l := mustOpen(t, "wal", memOpts(fs))
	mustAppend(t, l, entries(0, 2, 0)...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	held.armed.Store(true)
	l = mustOpen(t, "wal", memOpts(fs))
	// This kick waits until the worker has taken any kick before it; the
	// worker then reaches the gate, and holds there, in the round that
	// kick (Open's, or else this one) started.
	l.kick <- struct{}{}
	<-held.at
	if n := len(l.kick); n != 1 {
		t.Errorf("the worker took the test's kick: Open did not wake it, and the reopened log prepares no segment until its first roll")
	}
	close(held.proceed)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
