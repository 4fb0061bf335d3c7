package wal

import (
	"errors"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestPreparedSegmentSyncFailureLeavesNoFile: a prepared segment whose
// size cannot be made durable is not used, and not left behind either.
func TestPreparedSegmentSyncFailureLeavesNoFile(t *testing.T) {
	f := &faults{match: func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpFileSync && strings.HasSuffix(op.Path, segmentSuffix+tmpSuffix)
	}}
	fs := f.wrap(vfs.NewMem())
	f.armed.Store(true)
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	mustAppend(t, l, entry(0, 0))
	mustSync(t, l)
	workerRound(l) // the worker prepared a segment and could not sync it
	l.mu.Lock()
	prepared, failed := l.mu.prepared, l.mu.prepFailed
	l.mu.Unlock()
	if prepared != nil || !failed {
		t.Fatalf("prepared %v, preparation failed %v; want none and true", prepared, failed)
	}
	names, err := fs.List("wal")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, tmpSuffix) {
			t.Errorf("left behind: %s", n)
		}
	}
}

// TestFailedLogWritesNoIndex: once the log has failed, the worker writes
// no index, not even of a segment that was sealed and synced before the
// failure: what is on disk is unknown.
func TestFailedLogWritesNoIndex(t *testing.T) {
	var active string
	f := &faults{match: func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileWriteAt && op.Path == active }}
	fs := f.wrap(vfs.NewMem())
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	l.maintMu.Lock() // keeps the worker from indexing anything meanwhile
	locked := true
	defer func() {
		if locked {
			l.maintMu.Unlock()
		}
	}()
	mustAppend(t, l, entries(0, 19, 0)...)
	mustSync(t, l)
	firsts := segFirsts(l)
	if len(firsts) < 2 {
		t.Fatalf("segments %v: the test needs 2", firsts)
	}
	l.mu.Lock()
	s0 := l.mu.segs[0]
	synced, indexed := s0.synced, s0.indexed
	l.mu.Unlock()
	if !synced || indexed {
		t.Fatalf("first segment synced %v, indexed %v; want true, false", synced, indexed)
	}
	active = "wal/" + segmentName(firsts[len(firsts)-1])
	f.armed.Store(true)
	mustAppend(t, l, entry(20, 0))
	if _, err := l.Sync(t.Context()); !errors.Is(err, ErrFailed) {
		t.Fatalf("Sync with the active segment's write failing: %v; want ErrFailed", err)
	}
	f.armed.Store(false)
	l.maintMu.Unlock()
	locked = false
	workerRound(l)
	if _, err := fs.Stat("wal/" + indexName(firsts[0])); err == nil {
		t.Fatalf("index of segment %d written after the log failed", firsts[0])
	}
}

// TestFailedIndexNotRetried: the worker gives up on an index it could
// not write (the next open rebuilds it) instead of trying again, and
// failing again, at every round.
func TestFailedIndexNotRetried(t *testing.T) {
	f := &faults{match: func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpCreate && op.Path == "wal/"+indexName(0)+tmpSuffix
	}}
	f.armed.Store(true)
	fs := f.wrap(vfs.NewMem())
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	mustAppend(t, l, entries(0, 19, 0)...)
	mustSync(t, l)
	workerRound(l)
	if n := f.injected.Load(); n != 1 {
		t.Fatalf("%d attempts to write the index of segment 0, want 1", n)
	}
	mustAppend(t, l, entries(20, 39, 0)...)
	mustSync(t, l)
	workerRound(l)
	workerRound(l)
	if n := f.injected.Load(); n != 1 {
		t.Fatalf("%d attempts to write the index of segment 0 after it failed once, want 1", n)
	}
}

// TestFailedPreparationNotRetriedUntilTheNextSegment: after the worker
// failed to prepare a segment, the appender creates the next one itself;
// the worker tries again only once that happened.
func TestFailedPreparationNotRetriedUntilTheNextSegment(t *testing.T) {
	f := &faults{match: func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, segmentSuffix+tmpSuffix)
	}}
	f.armed.Store(true)
	fs := f.wrap(vfs.NewMem())
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	mustAppend(t, l, entry(0, 0))
	mustSync(t, l)
	workerRound(l)
	workerRound(l)
	if n := f.injected.Load(); n != 1 {
		t.Fatalf("%d attempts to prepare a segment, want 1", n)
	}
	mustAppend(t, l, sized(1, 600)) // a segment of its own, created by the appender
	mustSync(t, l)
	workerRound(l)
	if n := f.injected.Load(); n != 2 {
		t.Fatalf("%d attempts to prepare a segment after the appender created one, want 2", n)
	}
}
