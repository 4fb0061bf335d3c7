package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/google/go-cmp/cmp"
	"github.com/tablefsm/tablefsm/internal/fdtest"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store/kvpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// TestSetTermRefusesNegativeTermsOnAFreshStore: SetTerm refuses every
// negative term with ErrInvalidTerm, also on a store that holds no term
// yet (whose stored term, -1, does not refuse -1 by itself), and a
// refused SetTerm changes nothing, in memory or on disk.
func TestSetTermRefusesNegativeTermsOnAFreshStore(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	want := fingerprintOf(t, s)
	for _, bad := range []logpos.Term{logpos.NoTerm, -2, math.MinInt64} {
		if err := s.SetTerm(bad, TermOptions{EnableNotifications: true, KeySorting: KeySortingNatural}); !errors.Is(err, ErrInvalidTerm) {
			t.Errorf("SetTerm(%d) on a fresh store: %v, want ErrInvalidTerm", bad, err)
		}
	}
	assertFingerprint(t, "after refused SetTerms", want, fingerprintOf(t, s))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, "/shard", Options{FS: mem})
	assertFingerprint(t, "after refused SetTerms and a reopen", want, fingerprintOf(t, r))
}

// TestOpenRefusesMalformedRecords: a live database whose reserved records
// hold what the store never writes (an unknown format version, a term or
// an entry id below -1, unknown term option flags), or a marker without
// its final newline, is ErrCorrupt: Open does not guess what it means.
func TestOpenRefusesMalformedRecords(t *testing.T) {
	set := func(key, value []byte) func(*Store, vfs.FS) error {
		return func(s *Store, _ vfs.FS) error { return s.db.h.Set(key, value, pebble.Sync) }
	}
	for _, tc := range []struct {
		name    string
		corrupt func(s *Store, fs vfs.FS) error // s is open; fs holds it
		closed  func(fs vfs.FS) error           // after s was closed
	}{
		{name: "format version 2", corrupt: set(keyFormat, encodeUint64(formatVersion+1))},
		{name: "term -5", corrupt: set(keyTerm, encodeTerm(-5))},
		{name: "unknown term option flag", corrupt: set(keyTermOptions, []byte{0x02, 0, 0, 0, 1})},
		{name: "commit offset -2", corrupt: set(keyCommit, encodeEntryID(logpos.EntryID{Term: 1, Offset: -2}))},
		{name: "commit term -3", corrupt: set(keyCommit, encodeEntryID(logpos.EntryID{Term: -3, Offset: 4}))},
		{name: "log reset to offset -2", corrupt: set(keyLogReset, encodeEntryID(logpos.EntryID{Term: 1, Offset: -2}))},
		{name: "marker without newline", closed: func(fs vfs.FS) error { return writeFile(fs, "/shard/CURRENT", "db-000001") }},
		// Records one byte too long or too short, cut at their first
		// (or missing) byte.
		{name: "format, 9 bytes", corrupt: set(keyFormat, append(encodeUint64(formatVersion), 0))},
		{name: "format, 7 bytes", corrupt: set(keyFormat, encodeUint64(formatVersion)[1:])},
		{name: "term, 9 bytes", corrupt: set(keyTerm, append(encodeTerm(2), 0))},
		{name: "term, 7 bytes", corrupt: set(keyTerm, encodeTerm(2)[1:])},
		{name: "term options, 6 bytes", corrupt: set(keyTermOptions, append(encodeTermOptions(TermOptions{}), 0))},
		{name: "term options, 4 bytes", corrupt: set(keyTermOptions, encodeTermOptions(TermOptions{})[:4])},
		{name: "commit, 17 bytes", corrupt: set(keyCommit, append(encodeEntryID(logpos.EntryID{Term: 2, Offset: 2}), 0))},
		{name: "commit, 15 bytes", corrupt: set(keyCommit, encodeEntryID(logpos.EntryID{Term: 2, Offset: 2})[1:])},
		{name: "log reset, 17 bytes", corrupt: set(keyLogReset, append(encodeEntryID(logpos.EntryID{Term: 2, Offset: 2}), 0))},
		{name: "log reset, 15 bytes", corrupt: set(keyLogReset, encodeEntryID(logpos.EntryID{Term: 2, Offset: 2})[1:])},
		// -1 (logpos.NoTerm) is the lowest term a record holds.
		{name: "term -2", corrupt: set(keyTerm, encodeTerm(-2))},
		{name: "commit term -2", corrupt: set(keyCommit, encodeEntryID(logpos.EntryID{Term: -2, Offset: 2}))},
		{name: "log reset term -2", corrupt: set(keyLogReset, encodeEntryID(logpos.EntryID{Term: -2, Offset: 2}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			s, err := Open("/shard", Options{FS: mem})
			if err != nil {
				t.Fatal(err)
			}
			fillStore(t, s, model{}, 2, 3, "k")
			if tc.corrupt != nil {
				if err := tc.corrupt(s, mem); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.closed != nil {
				if err := tc.closed(mem); err != nil {
					t.Fatal(err)
				}
			}
			wantCorrupt(t, mem, "/shard")
		})
	}
}

// TestClearLogResetClearsThePendingReset: once ClearLogReset returns, the
// store reports no pending log reset, without a reopen.
func TestClearLogResetClearsThePendingReset(t *testing.T) {
	chunks, info, _ := memSource(t)
	s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
	if _, err := load(s, chunks, 0); err != nil {
		t.Fatal(err)
	}
	if at, pending := s.LogResetPending(); !pending || at != info.Commit {
		t.Fatalf("after Install: LogResetPending = %v, %v; want %v, true", at, pending, info.Commit)
	}
	if err := s.ClearLogReset(); err != nil {
		t.Fatal(err)
	}
	if at, pending := s.LogResetPending(); pending || at != logpos.NoEntry {
		t.Fatalf("after ClearLogReset: LogResetPending = %v, %v; want %v, false", at, pending, logpos.NoEntry)
	}
	if s.Commit() != info.Commit {
		t.Fatalf("ClearLogReset moved the commit: %v, want %v", s.Commit(), info.Commit)
	}
}

// TestClearLogResetWithoutAPendingResetWritesNothing: ClearLogReset on a
// store with no reset pending (never installed, or cleared already) does
// nothing: no record reaches Pebble's log.
func TestClearLogResetWithoutAPendingResetWritesNothing(t *testing.T) {
	chunks, _, _ := memSource(t)
	var armed atomic.Bool
	var logWrites atomic.Int64
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && strings.HasSuffix(op.Path, ".log") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			logWrites.Add(1)
		}
		return nil
	}))
	s := mustOpen(t, "/shard", Options{FS: fs})
	fillStore(t, s, model{}, 1, 3, "k")
	clear := func(what string) {
		t.Helper()
		logWrites.Store(0)
		armed.Store(true)
		err := s.ClearLogReset()
		armed.Store(false)
		if err != nil {
			t.Fatalf("ClearLogReset %s: %v", what, err)
		}
		if n := logWrites.Load(); n != 0 {
			t.Fatalf("ClearLogReset %s: %d writes to Pebble's log, want none", what, n)
		}
	}
	clear("with no snapshot ever installed")
	if _, err := load(s, chunks, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearLogReset(); err != nil {
		t.Fatal(err)
	}
	clear("a second time")
}

// TestOpenRefusesStoreWithOnlyACommitWithoutMarker: a database left without
// a marker that holds an applied entry, even with no term and no user key
// (an entry of no writes, applied before any SetTerm), was a live store:
// Open refuses it with ErrCorrupt and removes nothing; with the marker
// back it opens as it was.
func TestOpenRefusesStoreWithOnlyACommitWithoutMarker(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	if err := s.Apply(kvEntry(t, 1, 0)); err != nil {
		t.Fatal(err)
	}
	want := fingerprintOf(t, s)
	if want.Term != logpos.NoTerm || len(want.Data) != 0 || want.Commit.Offset != 0 {
		t.Fatalf("store holds %+v, want only a commit", want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := listDir(t, mem, "/shard/db-000001")
	if err := mem.Remove("/shard/CURRENT"); err != nil {
		t.Fatal(err)
	}
	wantOpenRefusedWithoutMarker(t, mem, before)
	if err := writeFile(mem, "/shard/CURRENT", "db-000001\n"); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, "/shard", Options{FS: mem})
	assertFingerprint(t, "with the marker back", want, fingerprintOf(t, r))
}

// TestOpenWithoutMarkerKeepsStoreOnReadError: when the database left
// without a marker cannot be read because the disk fails (an operating
// system I/O error), Open fails and removes nothing: a store is not taken
// for the leftover of a creation on a guess. Once the disk works and the
// marker is back, the store opens as it was. The read that fails is the
// manifest's, or that of a table holding only reserved records (a term):
// the scan for user keys never opens that table, only the read of the
// store's records sees the failure.
func TestOpenWithoutMarkerKeepsStoreOnReadError(t *testing.T) {
	for name, tc := range map[string]struct {
		fill  func(t *testing.T, s *Store)
		fails func(op errorfs.Op) bool
	}{
		"manifest": {
			fill: func(t *testing.T, s *Store) { fillStore(t, s, model{}, 4, 3, "k") },
			fails: func(op errorfs.Op) bool {
				return op.Kind == errorfs.OpFileRead && strings.Contains(op.Path, "/shard/db-000001/MANIFEST")
			},
		},
		"table of the term": {
			fill: func(t *testing.T, s *Store) {
				if err := s.SetTerm(4, TermOptions{}); err != nil {
					t.Fatal(err)
				}
				if err := s.db.h.Flush(); err != nil {
					t.Fatal(err)
				}
			},
			fails: func(op errorfs.Op) bool {
				return op.Kind == errorfs.OpFileReadAt && strings.HasPrefix(op.Path, "/shard/db-000001/") && strings.HasSuffix(op.Path, ".sst")
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewMem()
			s := mustOpen(t, "/shard", Options{FS: mem})
			tc.fill(t, s)
			want := fingerprintOf(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := mem.Remove("/shard/CURRENT"); err != nil {
				t.Fatal(err)
			}
			before := listDir(t, mem, "/shard")
			beforeDB := listDir(t, mem, "/shard/db-000001")
			var armed atomic.Bool
			armed.Store(true)
			var failed atomic.Int64
			fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if armed.Load() && tc.fails(op) {
					failed.Add(1)
					return &os.PathError{Op: "read", Path: op.Path, Err: syscall.EIO}
				}
				return nil
			}))
			r, err := Open("/shard", Options{FS: fs})
			if err == nil {
				r.Close()
				t.Fatal("Open without a marker succeeded while the unmarked database could not be read")
			}
			if failed.Load() == 0 {
				t.Fatal("no read failed: the test proves nothing")
			}
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("Open = %v, want the disk's EIO", err)
			}
			armed.Store(false)
			if got := listDir(t, mem, "/shard"); !slices.Equal(got, before) {
				t.Fatalf("the failed Open changed the directory: %q, was %q", got, before)
			}
			if got := listDir(t, mem, "/shard/db-000001"); !slices.Equal(got, beforeDB) {
				t.Fatalf("the failed Open changed the database: %q, was %q", got, beforeDB)
			}
			if err := writeFile(mem, "/shard/CURRENT", "db-000001\n"); err != nil {
				t.Fatal(err)
			}
			r = mustOpen(t, "/shard", Options{FS: mem})
			assertFingerprint(t, "with the marker back", want, fingerprintOf(t, r))
		})
	}
}

// TestDeleteIsDurableWhenItReturns: once Delete returns, a power loss
// leaves nothing of the store in its parent directory, not even the copy
// it moved aside.
func TestDeleteIsDurableWhenItReturns(t *testing.T) {
	mem := vfs.NewCrashableMem()
	s, _ := openOldStore(t, "/data/shard", mem)
	if err := s.Delete(); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, mem, "/data"); len(got) != 0 {
		t.Fatalf("after Delete /data holds %q", got)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	if got := listDir(t, crashed, "/data"); len(got) != 0 {
		t.Fatalf("after Delete and a crash /data holds %q", got)
	}
}

// TestLoaderRefusesAFileInsideAnother: the chunks of one file are
// contiguous. A file that starts before the one being written has all its
// chunks, or a later chunk of another file while one is being written, is
// ErrInvalidSnapshot from the Write that brings it; the loader is aborted
// (its staging directory is gone) and the store is as it was.
func TestLoaderRefusesAFileInsideAnother(t *testing.T) {
	good, _, _ := memSource(t)
	chunk := func(name string, index, count int32) Chunk {
		return Chunk{Name: name, Index: index, Count: count, Content: []byte{byte('a' + index)}}
	}
	for _, tc := range []struct {
		name  string
		extra []Chunk // the last one is refused
	}{
		{"a file starts inside another", []Chunk{chunk("zzz", 0, 2), chunk("yyy", 0, 1)}},
		{"a later chunk of another file", []Chunk{chunk("zzz", 0, 3), chunk("yyy", 1, 3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			s := mustOpen(t, "/shard", Options{FS: mem})
			fillStore(t, s, model{}, 2, 3, "old")
			before := fingerprintOf(t, s)
			l, err := s.NewLoader()
			if err != nil {
				t.Fatal(err)
			}
			if err := writeAll(l, append(slices.Clone(good), tc.extra[:len(tc.extra)-1]...)); err != nil {
				t.Fatal(err)
			}
			bad := tc.extra[len(tc.extra)-1]
			if err := l.Write(bad); !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("Write(chunk %d of %d of %q): %v, want ErrInvalidSnapshot", bad.Index, bad.Count, bad.Name, err)
			}
			assertFingerprint(t, "after the refused chunk", before, fingerprintOf(t, s))
			if _, err := s.Install(l, 0); !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("Install of the refused loader: %v, want its ErrInvalidSnapshot", err)
			}
			assertFingerprint(t, "after Install of the refused loader", before, fingerprintOf(t, s))
		})
	}
}

// TestCloseLeavesNoFileOpen: after Close, the process holds no file of the
// store open, whatever the store did: installed a snapshot, aborted a
// loader in the middle of a file, read a snapshot out partway.
func TestCloseLeavesNoFileOpen(t *testing.T) {
	fdtest.Watch(t)
	chunks, info, data := memSource(t)
	dir := filepath.Join(t.TempDir(), "shard")
	s, err := Open(dir, Options{SnapshotChunkSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s, model{}, 3, 10, "old")
	if _, err := load(s, chunks, 0); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, "after Install", fingerprintOf(t, s), info, data)
	// A loader with complete files and one cut short, aborted.
	l, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAll(l, append(slices.Clone(chunks[:2]), Chunk{Name: "zzz", Count: 2, Content: []byte("half")})); err != nil {
		t.Fatal(err)
	}
	if err := l.Abort(); err != nil {
		t.Fatal(err)
	}
	// A snapshot read out partway.
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Next(); err != nil {
		t.Fatal(err)
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if open := fdtest.OpenUnder(t, dir); len(open) != 0 {
		t.Fatalf("after Close the process still holds open: %q", open)
	}
}

// TestInstallRefusesAnotherStoresLoader: Install takes only a loader of
// its own store. Another store's loader, even complete and finished, is
// refused, and both stores are as they were; the loader can still be
// installed into its own store.
func TestInstallRefusesAnotherStoresLoader(t *testing.T) {
	chunks, info, data := memSource(t)
	mem := vfs.NewMem()
	a := mustOpen(t, "/a", Options{FS: mem})
	b := mustOpen(t, "/b", Options{FS: mem})
	fillStore(t, b, model{}, 2, 5, "b")
	wantB := fingerprintOf(t, b)
	l, err := a.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAll(l, chunks); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	wantA := fingerprintOf(t, a)
	if _, err := b.Install(l, 0); err == nil {
		t.Fatal("Install of another store's loader succeeded")
	}
	assertFingerprint(t, "the store that refused the loader", wantB, fingerprintOf(t, b))
	assertFingerprint(t, "the loader's store", wantA, fingerprintOf(t, a))
	if _, err := a.Install(l, 0); err != nil {
		t.Fatalf("Install into the loader's own store: %v", err)
	}
	checkInstalled(t, "after Install into the loader's own store", fingerprintOf(t, a), info, data)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, "/b", Options{FS: mem})
	assertFingerprint(t, "the store that refused the loader, reopened", wantB, fingerprintOf(t, r))
}

// TestInstalledLoaderIsOver: once installed, a loader is over. Abort
// does nothing (the staging directory it was given is now the live
// database), and Write, Finish and Install fail with ErrClosed; the
// store is the installed one, also after a reopen.
func TestInstalledLoaderIsOver(t *testing.T) {
	chunks, info, data := memSource(t)
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	fillStore(t, s, model{}, 3, 5, "old")
	l, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAll(l, chunks); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Install(l, 0); err != nil {
		t.Fatal(err)
	}
	want := fingerprintOf(t, s)
	checkInstalled(t, "after Install", want, info, data)
	if err := l.Abort(); err != nil {
		t.Fatalf("Abort after Install: %v", err)
	}
	if err := l.Write(chunks[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Install: %v, want ErrClosed", err)
	}
	if _, err := l.Finish(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Finish after Install: %v, want ErrClosed", err)
	}
	if _, err := s.Install(l, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Install again: %v, want ErrClosed", err)
	}
	assertFingerprint(t, "after using the installed loader", want, fingerprintOf(t, s))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, "/shard", Options{FS: mem})
	assertFingerprint(t, "reopened", want, fingerprintOf(t, r))
}

// TestSnapshotHoldsOffApplies: applies wait while a snapshot flushes and
// cuts its checkpoint, so the snapshot's data is exactly that of the
// commit id it reports (Info), and the store it installs carries that
// commit id. Here an apply is attempted, without waiting, in the middle
// of the snapshot's flush: it must not get in.
func TestSnapshotHoldsOffApplies(t *testing.T) {
	mem := vfs.NewMem()
	var (
		s       *Store
		armed   atomic.Bool
		applied = make(chan error, 1)
	)
	late := kvEntry(t, 3, 5, put("late", "v"))
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ".sst") && armed.CompareAndSwap(true, false) {
			// The snapshot's flush is writing its table. An apply that
			// does not have to wait for the snapshot goes in now.
			if s.write.TryLock() {
				s.write.Unlock()
				applied <- s.Apply(late)
			}
		}
		return nil
	}))
	s = mustOpen(t, "/shard", Options{FS: fs})
	m := model{}
	fillStore(t, s, m, 3, 5, "k") // entries 0..4, in the memtable
	armed.Store(true)
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if armed.Load() {
		t.Fatal("the snapshot's flush wrote no table")
	}
	chunks := readChunks(t, sn)
	info := sn.Info()
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-applied:
		t.Errorf("an apply got in while the snapshot was cut (err %v)", err)
	default:
	}
	if want := (logpos.EntryID{Term: 3, Offset: 4}); info.Commit != want {
		t.Fatalf("snapshot info commit %v, want %v", info.Commit, want)
	}
	b := mustOpen(t, "/b", Options{FS: vfs.NewMem()})
	got, err := load(b, chunks, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != info.Commit || got.Term != info.Term || got.Options != info.Options {
		t.Fatalf("installed %+v, the snapshot said %+v", got, info)
	}
	if diff := cmp.Diff(m, userData(t, b)); diff != "" {
		t.Fatalf("installed data is not that of the snapshot's commit (-want +got):\n%s", diff)
	}
}

// TestApplyBatchReadingStateMachineInShortBatches: a state machine that
// reads the store sees the writes of every entry before its own, in a
// batch of any length, from the first batch a store applies (before it
// has ever seen the state machine read): a batch of two entries is
// counted twice, not once.
func TestApplyBatchReadingStateMachineInShortBatches(t *testing.T) {
	for n := logpos.Offset(1); n <= 4; n++ {
		s := mustOpen(t, t.TempDir(), Options{StateMachine: readingCounter{failAt: -1}})
		if got, err := s.ApplyBatch(entries(0, n-1)); got != int(n) || err != nil {
			t.Fatalf("ApplyBatch of %d entries = %d, %v", n, got, err)
		}
		if v, err := s.Get([]byte("n")); err != nil || string(v) != strconv.Itoa(int(n)) {
			t.Fatalf("after a batch of %d entries the counter is %q (%v), want %d", n, v, err, n)
		}
		if c := s.Commit(); c.Offset != n-1 {
			t.Fatalf("after a batch of %d entries: commit %v", n, c)
		}
	}
}

// TestStagingDirectoriesAreNeverShared: every loader stages into a
// directory of its own, never the live database's nor another loader's,
// also after an install made a staged database the live one: two loaders
// open at once after an install, one aborted, the other installed, leave
// the snapshot installed, also after a reopen.
func TestStagingDirectoriesAreNeverShared(t *testing.T) {
	chunks, info, data := memSource(t)
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	fillStore(t, s, model{}, 3, 5, "old")
	if _, err := load(s, chunks, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearLogReset(); err != nil {
		t.Fatal(err)
	}
	first, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if names := []string{s.db.name, first.name, second.name}; names[0] == names[1] || names[0] == names[2] || names[1] == names[2] {
		t.Fatalf("live database and two loaders in %q", names)
	}
	if err := writeAll(first, chunks); err != nil {
		t.Fatal(err)
	}
	if err := writeAll(second, chunks); err != nil {
		t.Fatal(err)
	}
	if err := first.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Install(second, 0); err != nil {
		t.Fatalf("Install of the second loader: %v", err)
	}
	checkInstalled(t, "after the second install", fingerprintOf(t, s), info, data)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, "/shard", Options{FS: mem})
	checkInstalled(t, "after the second install and a reopen", fingerprintOf(t, r), info, data)
}

// TestKVOperationWithTwoOpsTakesTheLast: an Operation carrying two op
// fields of different kinds means what protobuf decodes: the last op,
// with only its own fields. A put followed by a range delete that has no
// end removes nothing (its end is empty), whatever the put carried.
func TestKVOperationWithTwoOpsTakesTheLast(t *testing.T) {
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	putMsg := field(field(nil, fieldFirst, []byte("a")), fieldSecond, []byte("z"))
	rangeMsg := field(nil, fieldFirst, []byte("a")) // no end
	op := append(field(nil, fieldPut, putMsg), field(nil, fieldDeleteRange, rangeMsg)...)
	value := field(nil, fieldOperations, op)

	s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
	m := model{}
	fillStore(t, s, m, 1, 0, "")
	if err := s.Apply(kvEntry(t, 1, 0, put("b", "1"), put("m", "2"))); err != nil {
		t.Fatal(err)
	}
	m.apply(put("b", "1"), put("m", "2"))
	if err := s.Apply(logpos.Entry{Term: 1, Offset: 1, Value: value}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff(m, userData(t, s)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

// panicHandler is a slog handler with a bug: it panics on the records
// that match.
type panicHandler struct{ match func(slog.Record) bool }

func (panicHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h panicHandler) Handle(_ context.Context, r slog.Record) error {
	if h.match(r) {
		panic("logger bug")
	}
	return nil
}
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panicHandler) WithGroup(string) slog.Handler      { return h }

// TestPanicWhileOpeningReleasesTheStore: when opening panics (here the
// logger, on a message of Pebble's while it opens the database, or on the
// store's own once it has), the panic goes on to the caller, and neither
// the store's directory nor its database is left locked: the store opens
// again, with its data.
func TestPanicWhileOpeningReleasesTheStore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match func(slog.Record) bool
	}{
		{"pebble", func(r slog.Record) bool {
			pebble := false
			r.Attrs(func(a slog.Attr) bool {
				pebble = pebble || a.Key == "component" && a.Value.String() == "pebble"
				return true
			})
			return pebble
		}},
		{"store", func(r slog.Record) bool { return r.Message == "store: opened" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s, err := Open("s", Options{FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			m := model{}
			fillStore(t, s, m, 3, 5, "k")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if r := recover(); r != "logger bug" {
						t.Fatalf("recovered %v, want the logger's panic", r)
					}
				}()
				s, err := Open("s", Options{FS: fs, Logger: slog.New(panicHandler{tc.match})})
				t.Fatalf("Open returned (%v, %v) instead of panicking", s, err)
			}()
			s = mustOpen(t, "s", Options{FS: fs})
			if diff := cmp.Diff(m, userData(t, s)); diff != "" {
				t.Fatalf("user data (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOpenOnAFullDisk: Pebble gives up when it cannot write its manifest
// (here syncing it fails as on a full disk): Open returns
// ErrFailed, naming ENOSPC, rather than panicking, leaves nothing locked, and opens the
// store once the disk has room again.
func TestOpenOnAFullDisk(t *testing.T) {
	mem := vfs.NewMem()
	var full atomic.Bool
	full.Store(true)
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if full.Load() && op.Kind == errorfs.OpFileSync && strings.Contains(op.Path, "MANIFEST") {
			return syscall.ENOSPC
		}
		return nil
	}))
	s, err := Open("s", Options{FS: fs})
	if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) || s != nil {
		t.Fatalf("Open on a full disk = (%v, %v), want ErrFailed and ENOSPC", s, err)
	}
	full.Store(false)
	s = mustOpen(t, "s", Options{FS: fs})
	if err := s.SetTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteKeepsTheDirectoryLocked: while Delete moves a store's
// directory aside, the directory is still locked: an Open of it then
// fails, rather than opening the store being deleted.
func TestDeleteKeepsTheDirectoryLocked(t *testing.T) {
	mem := vfs.NewMem()
	var openErr error
	opened := false
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpRename && op.Path == "/data/shard" && !opened {
			opened = true
			var other *Store
			if other, openErr = Open("/data/shard", Options{FS: mem}); openErr == nil {
				_ = other.Close()
			}
		}
		return nil
	}))
	s, err := Open("/data/shard", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s, model{}, 3, 5, "k")
	if err := s.Delete(); err != nil {
		t.Fatal(err)
	}
	if !opened {
		t.Fatal("Delete did not move the directory aside")
	}
	if openErr == nil {
		t.Fatal("an Open while Delete moved the directory aside succeeded")
	}
	if got := listDir(t, mem, "/data"); len(got) != 0 {
		t.Fatalf("left after Delete: %q", got)
	}
}

// TestScanCallbackPanics: a Scan whose callback panics leaves no
// iterator open: the store closes cleanly.
func TestScanCallbackPanics(t *testing.T) {
	s, err := Open("/s", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s, model{}, 1, 3, "k")
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Error("the callback's panic did not reach Scan's caller")
			}
		}()
		_ = s.Scan(nil, nil, func(k, v []byte) bool { panic("callback bug") })
	}()
	if err := s.Close(); err != nil {
		t.Fatalf("Close after a Scan whose callback panicked: %v", err)
	}
}

// TestOpenRefusesAMissingRecord: a live database without one of the
// records its creation writes (format, term, term options, commit) is
// ErrCorrupt: Open does not take a missing term for term 0, nor missing
// term options for the defaults.
func TestOpenRefusesAMissingRecord(t *testing.T) {
	for _, key := range [][]byte{keyFormat, keyTerm, keyTermOptions, keyCommit} {
		t.Run(string(key[1:]), func(t *testing.T) {
			mem := vfs.NewMem()
			s, err := Open("/shard", Options{FS: mem})
			if err != nil {
				t.Fatal(err)
			}
			fillStore(t, s, model{}, 2, 3, "k")
			if err := s.db.h.Delete(key, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			wantCorrupt(t, mem, "/shard")
		})
	}
}

// TestScanReportsAReadError: a Scan whose read of a table fails (the disk
// returns EIO) returns that error, rather than ending early as if the
// keys it could not read did not exist.
func TestScanReportsAReadError(t *testing.T) {
	mem := vfs.NewMem()
	s, err := Open("/shard", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	// Enough data for many blocks, flushed into a table.
	for i := range 20 {
		var ops []*kvpb.Operation
		for j := range 20 {
			ops = append(ops, put(fmt.Sprintf("k/%03d/%03d", i, j), strings.Repeat("v", 200)))
		}
		if err := s.Apply(kvEntry(t, 1, s.Commit().Offset+1, ops...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.h.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var armed atomic.Bool
	var failed atomic.Int64
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && (op.Kind == errorfs.OpFileReadAt || op.Kind == errorfs.OpFileRead) && strings.HasSuffix(op.Path, ".sst") {
			failed.Add(1)
			return &os.PathError{Op: "read", Path: op.Path, Err: syscall.EIO}
		}
		return nil
	}))
	s = mustOpen(t, "/shard", Options{FS: fs})
	armed.Store(true)
	n := 0
	err = s.Scan(nil, nil, func(_, _ []byte) bool { n++; return true })
	armed.Store(false)
	if failed.Load() == 0 {
		t.Fatalf("no table read failed (Scan saw %d keys): the test proves nothing", n)
	}
	if err == nil {
		t.Fatalf("Scan with the table reads failing saw %d of 400 keys and returned nil, want the disk's error", n)
	}
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("Scan = %v, want the disk's EIO", err)
	}
}

// TestDamagedTableIsAnErrorOfTheRead: a block of a live table whose
// checksum does not match is an error of the read that finds it, not a
// crashed process (Pebble's own default): Scan returns an error, and the
// store goes on.
func TestDamagedTableIsAnErrorOfTheRead(t *testing.T) {
	mem := vfs.NewMem()
	s, err := Open("/shard", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		var ops []*kvpb.Operation
		for j := range 20 {
			ops = append(ops, put(fmt.Sprintf("k/%03d/%03d", i, j), strings.Repeat(fmt.Sprintf("%03d%03d", j, i), 30)))
		}
		if err := s.Apply(kvEntry(t, 1, s.Commit().Offset+1, ops...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.h.Flush(); err != nil {
		t.Fatal(err)
	}
	live := s.db.name
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	damaged := 0
	for _, name := range listDir(t, mem, "/shard/"+live) {
		if !strings.HasSuffix(name, ".sst") {
			continue
		}
		path := "/shard/" + live + "/" + name
		f, err := mem.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		content[len(content)/4] ^= 0x10
		if err := writeFile(mem, path, string(content)); err != nil {
			t.Fatal(err)
		}
		damaged++
	}
	if damaged == 0 {
		t.Fatal("the store has no table")
	}
	s = mustOpen(t, "/shard", Options{FS: mem})
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Scan of a damaged table panicked: %v", r)
			}
		}()
		if err := s.Scan(nil, nil, func(_, _ []byte) bool { return true }); err == nil {
			t.Fatal("Scan of a damaged table returned nil")
		}
	}()
	if err := s.Apply(kvEntry(t, 1, s.Commit().Offset+1, put("after", "1"))); err != nil {
		t.Fatalf("Apply after the damaged read: %v", err)
	}
}

// TestOpenRefusesMemTableSizes: a MemTableSize Pebble cannot take (one
// too small makes it panic, one too large it refuses only once the
// directory exists) is refused before anything is created.
func TestOpenRefusesMemTableSizes(t *testing.T) {
	for _, size := range []int{1, MinMemTableSize - 1, int(min(MaxMemTableSize+1, math.MaxInt))} {
		dir := filepath.Join(t.TempDir(), "store")
		s, err := Open(dir, Options{MemTableSize: size})
		if err == nil {
			_ = s.Close()
			t.Fatalf("MemTableSize %d: Open succeeded", size)
		}
		if !strings.Contains(err.Error(), "MemTableSize") {
			t.Errorf("MemTableSize %d: %v, want an error naming MemTableSize", size, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("MemTableSize %d: Open left %s behind (%v)", size, dir, err)
		}
	}
	for _, size := range []int{-1, 0, MinMemTableSize, int(min(MaxMemTableSize, math.MaxInt))} {
		s, err := Open(filepath.Join(t.TempDir(), "store"), Options{MemTableSize: size})
		if err != nil {
			t.Fatalf("MemTableSize %d: %v", size, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSmallMemTablesWork: a store with the smallest memtable takes
// batches of every size (under half the memtable, over it, and many
// flushes' worth) and reads them back.
func TestSmallMemTablesWork(t *testing.T) {
	for _, size := range []int{MinMemTableSize, 64 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			s, err := Open(t.TempDir(), Options{MemTableSize: size})
			if err != nil {
				t.Fatalf("MemTableSize %d: %v", size, err)
			}
			defer s.Close()
			if err := s.SetTerm(1, TermOptions{}); err != nil {
				t.Fatal(err)
			}
			lens := []int{10, 500, size/2 - 100, size / 2, 3 * size}
			for o := range logpos.Offset(200) {
				n := lens[int(o)%len(lens)]
				if err := s.Apply(kvEntry(t, 1, o, put(fmt.Sprintf("k%04d", o), strings.Repeat("v", n)))); err != nil {
					t.Fatalf("apply %d (%d bytes): %v", o, n, err)
				}
			}
			for o := range 200 {
				if v, err := s.Get(fmt.Appendf(nil, "k%04d", o)); err != nil || len(v) != lens[o%len(lens)] {
					t.Fatalf("Get(k%04d): %d bytes, %v", o, len(v), err)
				}
			}
		})
	}
}
