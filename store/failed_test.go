package store

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestFatalWriteErrorFailsTheStore: a write or sync error inside Pebble's
// commit pipeline (which Pebble treats as fatal) fails the store with
// ErrFailed instead of crashing the process; reads go on, and reopening
// recovers what was durable. The error names the disk's error, for
// errors.Is.
func TestFatalWriteErrorFailsTheStore(t *testing.T) {
	var failing atomic.Bool
	injected := errors.New("injected write error")
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return injected
		}
		return nil
	}))
	dir := t.TempDir()
	s, err := Open(dir, Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	// An apply is not synced: Pebble writes it to its log in the
	// background, so its failure may show only at the next write or sync.
	if err := s.Apply(kvEntry(t, 1, 0, put("k", "v"))); err != nil && !errors.Is(err, ErrFailed) {
		t.Errorf("Apply on a failing disk: %v, want nil or ErrFailed", err)
	}
	for _, w := range []struct {
		name  string
		write func() error
	}{
		{"Sync", func() error { _, err := s.Sync(); return err }},
		{"SetTerm", func() error { return s.SetTerm(2, TermOptions{}) }},
		{"Apply", func() error { return s.Apply(kvEntry(t, 1, 1, put("k", "v"))) }},
	} {
		if err := w.write(); !errors.Is(err, ErrFailed) || !errors.Is(err, injected) {
			t.Errorf("%s on a failing disk: %v, want ErrFailed and the disk's error", w.name, err)
		}
	}
	failing.Store(false)
	if err := s.SetTerm(2, TermOptions{}); !errors.Is(err, ErrFailed) {
		t.Fatalf("a failed store took a write: %v", err)
	}
	// A snapshot flushes, an install swaps the database: both are writes,
	// refused (Pebble's own database is not fit for either after its
	// fatal error).
	if sn, err := s.Snapshot(); !errors.Is(err, ErrFailed) {
		if err == nil {
			_ = sn.Close()
		}
		t.Errorf("Snapshot of a failed store: %v, want ErrFailed", err)
	}
	other := mustOpen(t, t.TempDir(), Options{})
	fillStore(t, other, model{}, 3, 2, "o")
	chunks, _ := takeSnapshot(t, other)
	if _, err := load(s, chunks, 0); !errors.Is(err, ErrFailed) {
		t.Errorf("Install into a failed store: %v, want ErrFailed", err)
	}
	if s.Term() != 1 {
		t.Fatalf("term %d after failed writes", s.Term())
	}
	_ = s.Close() // reports the failure
	s, err = Open(dir, Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Term() != 1 {
		t.Fatalf("term %d after reopen", s.Term())
	}
	if err := s.SetTerm(2, TermOptions{}); err != nil {
		t.Fatalf("SetTerm after reopen: %v", err)
	}
}

// A checkpoint whose own directory cannot be synced (Pebble panics on a
// failed fsync) fails the snapshot, not the process: nothing of it is
// left, and the store goes on, snapshots included.
func TestSnapshotCheckpointSyncFailure(t *testing.T) {
	var armed atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && op.Kind == errorfs.OpFileSync && strings.Contains(op.Path, "/checkpoint-") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	s, m, before := storeOn(t, fs)
	armed.Store(true)
	if sn, err := s.Snapshot(); !errors.Is(err, errorfs.ErrInjected) {
		if err == nil {
			_ = sn.Close()
		}
		t.Fatalf("Snapshot whose checkpoint cannot be synced: %v", err)
	}
	armed.Store(false)
	if got := listDir(t, fs, "/s"); !slices.Equal(got, before) {
		t.Fatalf("the store directory holds %v after the failed snapshot, %v before", got, before)
	}
	fillStore(t, s, m, 1, 2, "y")
	snapshotHoldsAll(t, s, m)
}

// storeOn opens a store in /s on fs with a few entries applied, and
// returns it with its data and what its directory holds.
func storeOn(t *testing.T, fs vfs.FS) (*Store, model, []string) {
	t.Helper()
	s := mustOpen(t, "/s", Options{FS: fs})
	m := model{}
	fillStore(t, s, m, 1, 3, "x")
	return s, m, listDir(t, fs, "/s")
}

// snapshotHoldsAll checks that a snapshot of s, loaded into a new store,
// holds m and s's commit.
func snapshotHoldsAll(t *testing.T, s *Store, m model) {
	t.Helper()
	chunks, info := takeSnapshot(t, s)
	b := mustOpen(t, t.TempDir(), Options{})
	if _, err := load(b, chunks, 0); err != nil {
		t.Fatal(err)
	}
	if got := userData(t, b); !maps.Equal(got, m) || b.Commit() != info.Commit || info.Commit != s.Commit() {
		t.Fatalf("snapshot after the failure: %v at %v, want %v at %v", got, b.Commit(), m, s.Commit())
	}
}

// TestSnapshotWhoseFlushFails: a snapshot flushes the memtable first;
// with the disk refusing new tables (full, say), Pebble retries the flush
// in the background without end and without telling who waits for it.
// The snapshot fails instead of waiting for ever (holding the write lock
// every Apply needs), nothing of it is left, the store goes on, and once
// the disk takes tables again a snapshot carries everything.
func TestSnapshotWhoseFlushFails(t *testing.T) {
	// Pebble reports a failed flush before it tries again: once it tries
	// a third time, the snapshot was told of the first two failures.
	// That third try waits until the snapshot has returned (a snapshot
	// that is not told waits for ever, and so does this test).
	var failing atomic.Bool
	var failures atomic.Int64
	returned := make(chan struct{})
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ".sst") {
			if failures.Add(1) == 3 {
				<-returned
			}
			return errorfs.ErrInjected
		}
		return nil
	}))
	s, m, before := storeOn(t, fs)
	failing.Store(true)
	type result struct {
		sn  *Snapshot
		err error
	}
	done := make(chan result, 1)
	go func() {
		sn, err := s.Snapshot()
		done <- result{sn, err}
	}()
	r := <-done
	close(returned)
	if r.sn != nil {
		_ = r.sn.Close()
	}
	if !errors.Is(r.err, errorfs.ErrInjected) {
		t.Fatalf("Snapshot whose flush fails: %v, want the flush's error", r.err)
	}
	fillStore(t, s, m, 1, 2, "y")
	failing.Store(false)
	// A retry of the flush that failed before the disk healed may be
	// reported after it, failing one more snapshot: once one succeeds,
	// every flush before it did.
	for attempt := 1; ; attempt++ {
		sn, err := s.Snapshot()
		if err == nil {
			_ = sn.Close()
			break
		}
		if attempt == 10 {
			t.Fatalf("Snapshot once the disk healed: %v", err)
		}
	}
	snapshotHoldsAll(t, s, m)
	if got := listDir(t, fs, "/s"); !slices.Equal(got, before) {
		t.Errorf("the store directory holds %v after the snapshots, %v before", got, before)
	}
}

// TestOpenAfterCreationGaveUp: a new store whose creation Pebble gave
// up on (its first sync failing) is ErrFailed, and leaves nothing open or
// locked: once the disk works again, the store opens.
func TestOpenAfterCreationGaveUp(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) && strings.HasSuffix(op.Path, ".log") {
			return errors.New("injected sync error")
		}
		return nil
	}))
	if _, err := Open("/s", Options{FS: fs}); !errors.Is(err, ErrFailed) {
		t.Fatalf("Open with its first sync failing: %v, want ErrFailed", err)
	}
	failing.Store(false)
	s := mustOpen(t, "/s", Options{FS: fs})
	if got := s.Term(); got != -1 {
		t.Fatalf("term %d", got)
	}
}

// TestStagedCommitFailureIsTheInstalls: Pebble giving up on the staged
// database while Install writes its records (a failed sync) fails that
// install, not the store: the error does not match ErrFailed, the live
// database is untouched and the store goes on without a reopen.
func TestStagedCommitFailureIsTheInstalls(t *testing.T) {
	src := mustOpen(t, "/src", Options{FS: vfs.NewMem()})
	fillStore(t, src, model{}, 2, 4, "s")
	chunks, _ := takeSnapshot(t, src)

	var staged atomic.Pointer[string]
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if dir := staged.Load(); dir != nil && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) &&
			strings.HasPrefix(op.Path, *dir+"/") && strings.HasSuffix(op.Path, ".log") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	s := mustOpen(t, "/s", Options{FS: fs})
	m := model{}
	fillStore(t, s, m, 1, 3, "x")
	want := fingerprintOf(t, s)
	l, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if err := l.Write(c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	dir := "/s/" + l.name
	staged.Store(&dir)
	if _, err := s.Install(l, 0); err == nil || errors.Is(err, ErrFailed) {
		t.Fatalf("Install whose staged database cannot sync: %v, want an error that is not ErrFailed", err)
	}
	staged.Store(nil)
	assertFingerprint(t, "after the failed install", want, fingerprintOf(t, s))
	fillStore(t, s, m, 1, 2, "y")
}

// TestSnapshotDespiteOtherBackgroundErrors: a background error that is no
// failed flush (here Pebble's look at the free disk space, which it takes
// as a flush ends) does not fail a snapshot whose flush succeeded.
func TestSnapshotDespiteOtherBackgroundErrors(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind == errorfs.OpGetDiskUsage {
			return errorfs.ErrInjected
		}
		return nil
	}))
	s := mustOpen(t, t.TempDir(), Options{FS: fs})
	m := model{}
	fillStore(t, s, m, 1, 3, "x")
	failing.Store(true)
	snapshotHoldsAll(t, s, m)
}

// TestSnapshotAfterAnEmptyFlushDespiteOtherBackgroundErrors: a snapshot
// taken with nothing applied since the last one flushes a memtable that
// makes no table, which Pebble reports as a flush ending with an error
// (and as no background error). That is no failed flush: a background
// error of another kind during a later snapshot's flush does not fail it.
func TestSnapshotAfterAnEmptyFlushDespiteOtherBackgroundErrors(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind == errorfs.OpGetDiskUsage {
			return errorfs.ErrInjected
		}
		return nil
	}))
	s := mustOpen(t, t.TempDir(), Options{FS: fs})
	m := model{}
	fillStore(t, s, m, 1, 3, "x")
	takeSnapshot(t, s)
	takeSnapshot(t, s) // nothing to flush
	fillStore(t, s, m, 1, 2, "y")
	failing.Store(true)
	snapshotHoldsAll(t, s, m)
}

// TestSyncOfAFailedStore: once the store has failed (Pebble gave up
// during an apply; here its Pebble is otherwise healthy, so a sync of its
// log would still succeed), Sync returns the failure and the durable
// commit of before: it does not report the entries applied before the
// failure as durable, nor anything else, until the store is reopened.
func TestSyncOfAFailedStore(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{StateMachine: fatalAt{at: 4}})
	if n, err := s.ApplyBatch(entries(0, 1)); n != 2 || err != nil {
		t.Fatalf("ApplyBatch(0..1) = %d, %v", n, err)
	}
	durable, err := s.Sync()
	if want := (logpos.EntryID{Term: 1, Offset: 1}); err != nil || durable != want {
		t.Fatalf("Sync = %v, %v; want %v", durable, err, want)
	}
	if _, err := s.ApplyBatch(entries(2, 4)); !errors.Is(err, ErrFailed) {
		t.Fatalf("ApplyBatch(2..4): %v, want ErrFailed", err)
	}
	if c := s.Commit(); c.Offset != 3 {
		t.Fatalf("commit %v after the fatal error, want offset 3", c)
	}
	got, err := s.Sync()
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("Sync of the failed store: %v, want ErrFailed", err)
	}
	if got != durable || s.DurableCommit() != durable {
		t.Fatalf("Sync of the failed store returned %v, DurableCommit %v; want %v, the durable commit of before", got, s.DurableCommit(), durable)
	}
}

// TestUnrecoveredPebbleFatalSaysPebblesMessage: a Pebble fatal error that
// no write path recovers (one in Pebble's own goroutines) ends the
// process with a panic; what the panic prints is Pebble's message, named
// as Pebble's once, not a bare type and address.
func TestUnrecoveredPebbleFatalSaysPebblesMessage(t *testing.T) {
	for msg, want := range map[string]string{
		"pebble: fatal commit error: disk full": "pebble: fatal commit error: disk full",
		"empty compaction chosen":               "pebble: empty compaction chosen",
	} {
		if got := fmt.Sprint(any(pebbleFatal{msg: msg})); got != want {
			t.Errorf("a pebbleFatal of %q prints %q, want %q", msg, got, want)
		}
	}
}
