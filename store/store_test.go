package store

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/google/go-cmp/cmp"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store/kvpb"
)

func TestOpenFresh(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "shard")
	s := mustOpen(t, dir, Options{})
	if got := s.Term(); got != logpos.NoTerm {
		t.Errorf("Term() = %d, want NoTerm", got)
	}
	if got := s.TermOptions(); got != (TermOptions{}) {
		t.Errorf("TermOptions() = %+v, want zero", got)
	}
	if got := s.Commit(); got != logpos.NoEntry {
		t.Errorf("Commit() = %v, want NoEntry", got)
	}
	if got := s.DurableCommit(); got != logpos.NoEntry {
		t.Errorf("DurableCommit() = %v, want NoEntry", got)
	}
	if id, ok := s.LogResetPending(); ok {
		t.Errorf("LogResetPending() = %v, true on a fresh store", id)
	}
	if _, err := s.Get([]byte("k")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get on a fresh store: %v, want ErrNotFound", err)
	}
	if got := listDir(t, vfs.Default, dir); !cmp.Equal(got, []string{"CURRENT", "LOCK", "db-000001"}) {
		t.Errorf("store directory holds %q", got)
	}
}

func TestOpenTwiceIsRefused(t *testing.T) {
	dir := t.TempDir()
	mustOpen(t, dir, Options{})
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
}

func TestTermPersistsAndNeverRegresses(t *testing.T) {
	dir := t.TempDir()
	opts := TermOptions{EnableNotifications: true, KeySorting: KeySortingHierarchical}

	s := mustOpen(t, dir, Options{})
	if err := s.SetTerm(3, opts); err != nil {
		t.Fatal(err)
	}
	if s.Term() != 3 || s.TermOptions() != opts {
		t.Fatalf("after SetTerm: %d %+v", s.Term(), s.TermOptions())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, dir, Options{})
	if s.Term() != 3 || s.TermOptions() != opts {
		t.Fatalf("after reopen: term %d options %+v, want 3 %+v", s.Term(), s.TermOptions(), opts)
	}
	for _, bad := range []logpos.Term{2, 0, logpos.NoTerm, -7} {
		if err := s.SetTerm(bad, TermOptions{}); !errors.Is(err, ErrInvalidTerm) {
			t.Errorf("SetTerm(%d) with stored term 3: %v, want ErrInvalidTerm", bad, err)
		}
	}
	if s.Term() != 3 || s.TermOptions() != opts {
		t.Fatalf("a refused SetTerm changed the term: %d %+v", s.Term(), s.TermOptions())
	}
	// The same term again is accepted and replaces the options.
	other := TermOptions{KeySorting: KeySortingNatural}
	if err := s.SetTerm(3, other); err != nil {
		t.Fatalf("SetTerm(3) again: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, dir, Options{})
	if s.Term() != 3 || s.TermOptions() != other {
		t.Fatalf("after reopen: %d %+v, want 3 %+v", s.Term(), s.TermOptions(), other)
	}
	// Missing options are stored as empty; unknown sorting values are kept.
	if err := s.SetTerm(9, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	if s.Term() != 9 || s.TermOptions() != (TermOptions{}) {
		t.Fatalf("after reopen: %d %+v, want 9 and empty options", s.Term(), s.TermOptions())
	}
	odd := TermOptions{KeySorting: 77}
	if err := s.SetTerm(10, odd); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	if s.TermOptions() != odd {
		t.Fatalf("options %+v, want %+v", s.TermOptions(), odd)
	}
}

func TestApplyKV(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	if err := s.SetTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	m := model{}
	steps := [][]*kvpb.Operation{
		{put("a", "1"), put("b", "2"), put("c", "3"), put("d", "4")},
		{put("a", "10"), del("b")},
		{delRange("b", "d")}, // removes c
		{put("", "empty key"), put("e", "")},
		{},                   // an empty batch only moves the commit
		{delRange("x", "a")}, // an empty range removes nothing
		{put("z", "26"), del("nothing")},
	}
	for i, ops := range steps {
		e := kvEntry(t, 1, logpos.Offset(i), ops...)
		if err := s.Apply(e); err != nil {
			t.Fatalf("Apply(%d): %v", i, err)
		}
		m.apply(ops...)
		if got := s.Commit(); got != e.ID() {
			t.Fatalf("Commit() = %v after applying %v", got, e.ID())
		}
		if diff := cmp.Diff(m, userData(t, s)); diff != "" {
			t.Fatalf("after entry %d (-want +got):\n%s", i, diff)
		}
	}
	v, err := s.Get([]byte("a"))
	if err != nil || string(v) != "10" {
		t.Fatalf(`Get("a") = %q, %v`, v, err)
	}
	v, err = s.Get([]byte("e"))
	if err != nil || v == nil || len(v) != 0 {
		t.Fatalf(`Get("e") = %#v, %v; want an empty, non-nil value`, v, err)
	}
	if _, err := s.Get([]byte("b")); !errors.Is(err, ErrNotFound) {
		t.Fatalf(`Get("b") = %v, want ErrNotFound`, err)
	}

	// Range scans are bounded and ordered, and stop when told.
	var keys []string
	if err := s.Scan([]byte("a"), []byte("z"), func(k, _ []byte) bool { keys = append(keys, string(k)); return true }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "d", "e"}; !cmp.Equal(keys, want) {
		t.Errorf("Scan[a,z) = %q, want %q", keys, want)
	}
	keys = nil
	if err := s.Scan(nil, nil, func(k, _ []byte) bool { keys = append(keys, string(k)); return len(keys) < 2 }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"", "a"}; !cmp.Equal(keys, want) {
		t.Errorf("Scan stopped after 2 = %q, want %q", keys, want)
	}
	if err := s.Scan([]byte("z"), []byte("a"), func(k, _ []byte) bool { t.Errorf("inverted range yields %q", k); return true }); err != nil {
		t.Fatal(err)
	}

	// The data and commit survive a clean close.
	commit := s.Commit()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	if s.Commit() != commit || s.DurableCommit() != commit {
		t.Fatalf("after reopen Commit %v DurableCommit %v, want %v", s.Commit(), s.DurableCommit(), commit)
	}
	if diff := cmp.Diff(m, userData(t, s)); diff != "" {
		t.Fatalf("after reopen (-want +got):\n%s", diff)
	}
}

func TestApplyRefusesOutOfOrderEntries(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	if err := s.Apply(kvEntry(t, 2, 0, put("k0", "v"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(kvEntry(t, 2, 1, put("k1", "v"))); err != nil {
		t.Fatal(err)
	}
	want := fingerprintOf(t, s)
	for _, e := range []logpos.Entry{
		kvEntry(t, 2, 1, put("x", "double")),     // applied twice
		kvEntry(t, 2, 0, put("x", "old")),        // behind
		kvEntry(t, 2, 3, put("x", "gap")),        // skips 2
		kvEntry(t, 1, 2, put("x", "older term")), // term below the commit's
		kvEntry(t, 2, -1, put("x", "none")),
	} {
		if err := s.Apply(e); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("Apply(%v) after commit {2,1}: %v, want ErrOutOfOrder", e.ID(), err)
		}
	}
	assertFingerprint(t, "after refused entries", want, fingerprintOf(t, s))
	// A later term is fine.
	if err := s.Apply(kvEntry(t, 5, 2, put("k2", "v"))); err != nil {
		t.Fatal(err)
	}
	// On a fresh store (commit {-1,-1}), a first entry needs a term.
	fresh := mustOpen(t, t.TempDir(), Options{})
	if err := fresh.Apply(kvEntry(t, -1, 0, put("x", "no term"))); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("Apply of an entry of term -1 on a fresh store: %v, want ErrOutOfOrder", err)
	}
	if got := fresh.Commit(); got != logpos.NoEntry {
		t.Errorf("commit %v after the refused entry, want none", got)
	}
}

func TestApplyInvalidEntryWritesNothing(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	if err := s.Apply(kvEntry(t, 1, 0, put("keep", "v"))); err != nil {
		t.Fatal(err)
	}
	want := fingerprintOf(t, s)
	opNoOp := &kvpb.Operation{}
	for name, e := range map[string]logpos.Entry{
		"not protobuf":         {Term: 1, Offset: 1, Value: []byte{0xff, 0xff, 0xff}},
		"truncated":            kvEntry(t, 1, 1, put("key", "value")),
		"operation without op": kvEntry(t, 1, 1, put("before", "the bad op"), opNoOp),
	} {
		if name == "truncated" {
			e.Value = e.Value[:len(e.Value)-3]
		}
		err := s.Apply(e)
		if !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: Apply = %v, want ErrInvalidEntry", name, err)
		}
		assertFingerprint(t, name, want, fingerprintOf(t, s))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	assertFingerprint(t, "after reopen", want, fingerprintOf(t, s))
}

func TestUserKeysCannotReachReservedRecords(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	opts := TermOptions{EnableNotifications: true, KeySorting: KeySortingNatural}
	if err := s.SetTerm(4, opts); err != nil {
		t.Fatal(err)
	}
	// Keys that spell the reserved records, with and without their
	// prefix byte, and range deletes over every byte string.
	var ops []*kvpb.Operation
	for _, k := range [][]byte{keyFormat, keyTerm, keyTermOptions, keyCommit, keyLogReset} {
		ops = append(ops, put(string(k), "user"), put(string(k[1:]), "user"))
	}
	ops = append(ops, put("\x00", "user"), put("", "user"))
	if err := s.Apply(kvEntry(t, 4, 0, ops...)); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(kvEntry(t, 4, 1, del(string(keyTerm)), del(string(keyCommit)),
		delRange("", "\xff\xff\xff\xff\xff\xff\xff\xff"), delRange("\x00", "\x02"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(kvEntry(t, 4, 2, put(string(keyCommit), "survivor"))); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if s.Term() != 4 || s.TermOptions() != opts || s.Commit() != (logpos.EntryID{Term: 4, Offset: 2}) {
			t.Fatalf("reserved records reached: term %d options %+v commit %v", s.Term(), s.TermOptions(), s.Commit())
		}
		if diff := cmp.Diff(model{string(keyCommit): "survivor"}, userData(t, s)); diff != "" {
			t.Fatalf("user data (-want +got):\n%s", diff)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = mustOpen(t, dir, Options{}) // the records were really untouched
	}
}

// counter is a state machine of our own: each entry's value names a key
// whose decimal counter it increments; "fail" fails after writing.
type counter struct{}

func (counter) Apply(e logpos.Entry, w *Writer) error {
	key := e.Value
	n := 0
	v, err := w.Get(key)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	default:
		if n, err = strconv.Atoi(string(v)); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidEntry, err)
		}
	}
	if err := w.Set(key, []byte(strconv.Itoa(n+1))); err != nil {
		return err
	}
	if err := w.Set([]byte("last"), key); err != nil {
		return err
	}
	if string(key) == "fail" {
		return errors.New("counter: told to fail")
	}
	return nil
}

func TestPluggableStateMachine(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{StateMachine: counter{}})
	for i, k := range []string{"x", "y", "x", "x"} {
		if err := s.Apply(logpos.Entry{Term: 1, Offset: logpos.Offset(i), Value: []byte(k)}); err != nil {
			t.Fatal(err)
		}
	}
	want := model{"x": "3", "y": "1", "last": "x"}
	if diff := cmp.Diff(want, userData(t, s)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	// A failing entry leaves nothing, not even the writes before its error.
	err := s.Apply(logpos.Entry{Term: 1, Offset: 4, Value: []byte("fail")})
	if err == nil || s.Commit().Offset != 3 {
		t.Fatalf("failing entry: err %v, commit %v", err, s.Commit())
	}
	if diff := cmp.Diff(want, userData(t, s)); diff != "" {
		t.Fatalf("after a failed entry (-want +got):\n%s", diff)
	}
}

// keeper keeps the writer it is given, which it must not.
type keeper struct{ w *Writer }

func (k *keeper) Apply(_ logpos.Entry, w *Writer) error { k.w = w; return nil }

func TestWriterIsDeadAfterApply(t *testing.T) {
	k := &keeper{}
	s := mustOpen(t, t.TempDir(), Options{StateMachine: k})
	if err := s.Apply(logpos.Entry{Term: 1, Offset: 0}); err != nil {
		t.Fatal(err)
	}
	if err := k.w.Set([]byte("late"), []byte("write")); err == nil {
		t.Error("Set on a kept writer succeeded")
	}
	if err := k.w.Delete([]byte("late")); err == nil {
		t.Error("Delete on a kept writer succeeded")
	}
	if err := k.w.DeleteRange([]byte("a"), []byte("b")); err == nil {
		t.Error("DeleteRange on a kept writer succeeded")
	}
	if _, err := k.w.Get([]byte("late")); err == nil || errors.Is(err, ErrNotFound) {
		t.Error("Get on a kept writer succeeded")
	}
}

func TestClosedStore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTerm(2, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checks := map[string]error{
		"SetTerm":       s.SetTerm(3, TermOptions{}),
		"SetTerm(-1)":   s.SetTerm(-1, TermOptions{}),
		"Apply":         s.Apply(kvEntry(t, 2, 0)),
		"ClearLogReset": s.ClearLogReset(),
		"Scan":          s.Scan(nil, nil, func(_, _ []byte) bool { return true }),
		"Delete":        s.Delete(),
	}
	_, checks["Get"] = s.Get([]byte("k"))
	_, checks["Sync"] = s.Sync()
	_, checks["Snapshot"] = s.Snapshot()
	_, checks["NewLoader"] = s.NewLoader()
	_, checks["Install(nil)"] = s.Install(nil, 0)
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s on a closed store: %v, want ErrClosed", name, err)
		}
	}
	if s.Term() != 2 {
		t.Errorf("Term() on a closed store = %d, want the last known 2", s.Term())
	}
	// Delete on a closed store removed nothing; the store reopens.
	s = mustOpen(t, dir, Options{})
	if s.Term() != 2 {
		t.Fatalf("reopened term %d", s.Term())
	}
}

// TestDeleteOfADirectoryWithATrailingSeparator: a store opened as
// "dir/" is deleted as one opened as "dir" (not moved into itself).
func TestDeleteOfADirectoryWithATrailingSeparator(t *testing.T) {
	parent := t.TempDir()
	s := mustOpen(t, filepath.Join(parent, "shard")+string(filepath.Separator), Options{})
	fillStore(t, s, model{}, 1, 2, "k")
	if err := s.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := listDir(t, vfs.Default, parent); len(got) != 0 {
		t.Fatalf("after Delete the parent holds %q", got)
	}
}

func TestDelete(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "shard-1")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s, model{}, 3, 10, "k")
	l, err := s.NewLoader() // an open loader and snapshot go too
	if err != nil {
		t.Fatal(err)
	}
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := listDir(t, vfs.Default, parent); len(got) != 0 {
		t.Fatalf("after Delete the parent holds %q", got)
	}
	if err := l.Write(Chunk{Name: "x", Count: 1}); !errors.Is(err, ErrClosed) {
		t.Errorf("loader of a deleted store: %v, want ErrClosed", err)
	}
	if _, err := sn.Next(); !errors.Is(err, ErrClosed) {
		t.Errorf("snapshot of a deleted store: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Delete: %v", err)
	}
	if err := s.Delete(); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Delete: %v, want ErrClosed", err)
	}
	// A new store starts empty in the same place.
	s = mustOpen(t, dir, Options{})
	if s.Term() != logpos.NoTerm || s.Commit() != logpos.NoEntry || len(userData(t, s)) != 0 {
		t.Fatalf("store after Delete is not empty: %d %v", s.Term(), s.Commit())
	}
}

func TestDurableCommit(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	fillStore(t, s, model{}, 1, 5, "k")
	if got := s.DurableCommit(); got != logpos.NoEntry {
		t.Fatalf("DurableCommit before any sync = %v", got)
	}
	d, err := s.Sync()
	if err != nil {
		t.Fatal(err)
	}
	if want := (logpos.EntryID{Term: 1, Offset: 4}); d != want || s.DurableCommit() != want {
		t.Fatalf("Sync = %v, DurableCommit = %v, want %v", d, s.DurableCommit(), want)
	}
	fillStore(t, s, model{}, 1, 2, "j")
	if got := s.DurableCommit(); got.Offset != 4 {
		t.Fatalf("DurableCommit moved without a sync: %v", got)
	}
	// SetTerm syncs, so it makes the applied entries durable too.
	if err := s.SetTerm(2, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := s.DurableCommit(); got.Offset != 6 {
		t.Fatalf("DurableCommit after SetTerm = %v, want offset 6", got)
	}
}

// TestDurableCommitNeverGoesBack: a Sync or SetTerm that read an older
// commit and finishes after one that read a newer commit leaves the
// durable commit at the newer one. (Which of two concurrent calls
// finishes last is up to the scheduler; here the late one is played by
// hand, at the point where each records what it made durable.)
func TestDurableCommitNeverGoesBack(t *testing.T) {
	s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
	fillStore(t, s, model{}, 1, 5, "k")
	d, err := s.Sync()
	if err != nil || d.Offset != 4 {
		t.Fatalf("Sync = %v, %v", d, err)
	}
	for _, late := range []logpos.EntryID{{Term: 1, Offset: 3}, {Term: 1, Offset: 0}, logpos.NoEntry} {
		s.mu.Lock()
		s.advanceDurableLocked(late)
		s.mu.Unlock()
		if got := s.DurableCommit(); got != d {
			t.Fatalf("after a call that read commit %v finished: DurableCommit = %v, want %v", late, got, d)
		}
	}
}

// TestFailedSyncReturnsTheDurableCommit: a Sync whose fsync of Pebble's
// log fails (Pebble gives up: ErrFailed) returns, as its other failures
// do, the durable commit of before, not the commit it was to make
// durable. It returned the zero entry id, {0, 0}: entry 0 of term 0,
// which a caller trimming its log to it would have taken as durable.
func TestFailedSyncReturnsTheDurableCommit(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) && strings.HasSuffix(op.Path, ".log") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	s, err := Open("/shard", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()                     // reports the failure
	fillStore(t, s, model{}, 1, 3, "k") // entries 0..2
	durable, err := s.Sync()
	if want := (logpos.EntryID{Term: 1, Offset: 2}); err != nil || durable != want {
		t.Fatalf("Sync = %v, %v; want %v", durable, err, want)
	}
	if err := s.Apply(kvEntry(t, 1, 3, put("late", "v"))); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	got, err := s.Sync()
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("Sync with the fsync of Pebble's log failing: %v, want ErrFailed", err)
	}
	if got != durable || s.DurableCommit() != durable {
		t.Fatalf("the failed Sync returned %v, DurableCommit %v; want %v, the durable commit of before", got, s.DurableCommit(), durable)
	}
	// A store that failed answers the same.
	if got, err := s.Sync(); got != durable || err == nil {
		t.Fatalf("Sync on the failed store = %v, %v; want %v and its failure", got, err, durable)
	}
}

// TestSyncReportsOnlyEntriesAppliedBeforeIt: Sync reports durable only
// what the WAL fsync it waits for covers. An entry applied while that
// fsync runs is not covered, and Sync does not report it.
func TestSyncReportsOnlyEntriesAppliedBeforeIt(t *testing.T) {
	mem := vfs.NewCrashableMem()
	var (
		s       *Store
		armed   atomic.Bool
		applied = make(chan error, 1)
	)
	late := kvEntry(t, 1, 5, put("late", "v"))
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) &&
			strings.HasSuffix(op.Path, ".log") && armed.CompareAndSwap(true, false) {
			// The fsync Sync waits for has begun but not happened: apply
			// the next entry now (Apply does not wait for the WAL).
			applied <- s.Apply(late)
		}
		return nil
	}))
	s = mustOpen(t, "/shard", Options{FS: fs})
	fillStore(t, s, model{}, 1, 5, "k") // entries 0..4
	armed.Store(true)
	d, err := s.Sync()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-applied:
		if err != nil {
			t.Fatalf("Apply during the fsync: %v", err)
		}
	default:
		t.Fatal("Sync did not fsync the WAL")
	}
	if c := s.Commit(); c.Offset != 5 {
		t.Fatalf("commit %v after the entry applied during the fsync", c)
	}
	if want := (logpos.EntryID{Term: 1, Offset: 4}); d != want || s.DurableCommit() != want {
		t.Fatalf("Sync = %v, DurableCommit = %v, want %v: the entry applied during the fsync is not durable", d, s.DurableCommit(), want)
	}
	// Indeed a crash now loses it.
	r := mustOpen(t, "/shard", Options{FS: mem.CrashClone(vfs.CrashCloneCfg{})})
	if c := r.Commit(); c.Offset != 4 {
		t.Fatalf("after a crash: commit %v, want offset 4", c)
	}
}

// TestConcurrentUse runs an applier against readers, syncs, snapshots and
// term changes; the race detector and the final state judge it.
func TestConcurrentUse(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{SnapshotChunkSize: 512})
	if err := s.SetTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	const entries = 200
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	wg.Go(func() {
		defer close(done)
		for i := 0; i < entries; i++ {
			e := kvEntry(t, 1, logpos.Offset(i), put(fmt.Sprintf("k%03d", i), "v"), del(fmt.Sprintf("k%03d", i-1)))
			if err := s.Apply(e); err != nil {
				errs <- err
				return
			}
		}
	})
	reader := func(f func() error) {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := f(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	lastDurable := logpos.NoEntry
	reader(func() error {
		// Durable first: the commit read after it is at least as far.
		d := s.DurableCommit()
		c := s.Commit()
		if d.Offset > c.Offset {
			return fmt.Errorf("durable %v ahead of commit %v", d, c)
		}
		// Syncs and SetTerms finish in any order; the durable commit
		// never goes back.
		if d.Offset < lastDurable.Offset {
			return fmt.Errorf("DurableCommit went back from %v to %v", lastDurable, d)
		}
		lastDurable = d
		_, err := s.Get([]byte("k000"))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		n := 0
		err = s.Scan(nil, nil, func(_, _ []byte) bool { n++; return true })
		if err == nil && n > 1 {
			err = fmt.Errorf("scan saw %d keys; every entry leaves one", n)
		}
		return err
	})
	reader(func() error { _, err := s.Sync(); return err })
	reader(func() error {
		sn, err := s.Snapshot()
		if err != nil {
			return err
		}
		defer sn.Close()
		for {
			if _, err := sn.Next(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	})
	wg.Go(func() {
		for term := logpos.Term(1); term < 20; term++ {
			if err := s.SetTerm(term, TermOptions{}); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.Commit(); got.Offset != entries-1 {
		t.Fatalf("Commit() = %v", got)
	}
	if diff := cmp.Diff(model{fmt.Sprintf("k%03d", entries-1): "v"}, userData(t, s)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}
