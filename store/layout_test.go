package store

import (
	"errors"
	"math"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestGetReturnsACopy: the value Get returns is the caller's: changing it
// changes neither the store nor what the next Get returns, and an empty
// value is an empty slice, not nil (nil would read as "no value"); the
// same whether the value is read from the memtable or from a table.
func TestGetReturnsACopy(t *testing.T) {
	s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
	if err := s.Apply(kvEntry(t, 1, 0, put("k", "value"), put("empty", ""))); err != nil {
		t.Fatal(err)
	}
	for _, where := range []string{"memtable", "table"} {
		if where == "table" {
			if err := s.db.h.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		v, err := s.Get([]byte("k"))
		if err != nil {
			t.Fatal(err)
		}
		copy(v, "XXXXX")
		if v, err := s.Get([]byte("k")); err != nil || string(v) != "value" {
			t.Fatalf("%s: Get after changing what an earlier Get returned = %q, %v; want \"value\"", where, v, err)
		}
		if v, err := s.Get([]byte("empty")); err != nil || v == nil || len(v) != 0 {
			t.Fatalf("%s: Get of an empty value = %#v, %v; want an empty, non-nil slice", where, v, err)
		}
	}
}

// TestSyncOnAClosedStore: Sync on a closed store is ErrClosed and reports
// logpos.NoEntry as durable, not the durable commit the store had.
func TestSyncOnAClosedStore(t *testing.T) {
	s, err := Open("/shard", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s, model{}, 1, 3, "k")
	if d, err := s.Sync(); err != nil || d.Offset != 2 {
		t.Fatalf("Sync = %v, %v", d, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Sync(); !errors.Is(err, ErrClosed) || d != logpos.NoEntry {
		t.Fatalf("Sync on a closed store = %v, %v; want %v, ErrClosed", d, err, logpos.NoEntry)
	}
}

// TestOpenRefusesStoreWithOnlyUserKeysWithoutMarker: a database left
// without a marker that holds a user key, even with no term and nothing
// applied, is no leftover of a creation: Open refuses it and removes
// nothing.
func TestOpenRefusesStoreWithOnlyUserKeysWithoutMarker(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	if err := s.db.h.Set(userKey(nil, []byte("k")), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if s.Term() != logpos.NoTerm || s.Commit() != logpos.NoEntry {
		t.Fatalf("store holds term %d commit %v, want neither", s.Term(), s.Commit())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := listDir(t, mem, "/shard/db-000001")
	if err := mem.Remove("/shard/CURRENT"); err != nil {
		t.Fatal(err)
	}
	wantOpenRefusedWithoutMarker(t, mem, before)
}

// TestMarkerNamingAnEmptyDirectoryCreatesNothing: a marker naming a
// directory that is there but holds no database is ErrCorrupt, and Open
// creates no database in it (Pebble's lock file aside) nor changes
// anything else.
func TestMarkerNamingAnEmptyDirectoryCreatesNothing(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	fillStore(t, s, model{}, 3, 5, "k")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mem.MkdirAll("/shard/db-000009", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(mem, "/shard/CURRENT", "db-000009\n"); err != nil {
		t.Fatal(err)
	}
	before := listDir(t, mem, "/shard")
	wantCorrupt(t, mem, "/shard")
	if got := listDir(t, mem, "/shard"); !slices.Equal(got, before) {
		t.Fatalf("a refused Open changed the directory: %q, was %q", got, before)
	}
	if got := listDir(t, mem, "/shard/db-000009"); slices.ContainsFunc(got, func(name string) bool { return name != "LOCK" }) {
		t.Fatalf("a refused Open created %q in the directory the marker names", got)
	}
}

// TestOpenWhoseCleanupFails: when Open cannot remove what a crash left
// (a staging database), it fails with that error and leaves the live
// database closed and unlocked: once the disk works, the store opens
// with its data.
func TestOpenWhoseCleanupFails(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	m := model{}
	fillStore(t, s, m, 3, 5, "k")
	want := fingerprintOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mem.MkdirAll("/shard/db-000007", 0o755); err != nil {
		t.Fatal(err)
	}
	var broken atomic.Bool
	broken.Store(true)
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if broken.Load() && op.Kind == errorfs.OpRemoveAll && strings.HasSuffix(op.Path, "/db-000007") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	if r, err := Open("/shard", Options{FS: fs}); !errors.Is(err, errorfs.ErrInjected) {
		if err == nil {
			r.Close()
		}
		t.Fatalf("Open whose leftover cannot be removed = %v, want the injected error", err)
	}
	broken.Store(false)
	r := mustOpen(t, "/shard", Options{FS: fs})
	assertFingerprint(t, "once the leftover could be removed", want, fingerprintOf(t, r))
}

// TestOpenWhoseMarkerCannotBeWritten: a new store whose marker cannot be
// written fails to open with that error, and leaves nothing open or
// locked (goleak, in TestMain, sees a database left open): once the disk
// works, a fresh store opens.
func TestOpenWhoseMarkerCannotBeWritten(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if broken.Load() && op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, "/"+markerTempName) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	if s, err := Open("/shard", Options{FS: fs}); !errors.Is(err, errorfs.ErrInjected) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open whose marker cannot be written = %v, want the injected error", err)
	}
	broken.Store(false)
	s := mustOpen(t, "/shard", Options{FS: fs})
	if s.Term() != logpos.NoTerm || s.Commit() != logpos.NoEntry {
		t.Fatalf("term %d commit %v, want a fresh store", s.Term(), s.Commit())
	}
}

// eagerRemoval is stepwiseRemoval on a file system that makes each
// removal durable at once (it syncs the directory the name was removed
// from), as a journaling file system may: a removal inside a directory
// then reaches the disk whether or not an earlier rename of that
// directory did.
type eagerRemoval struct{ vfs.FS }

func (fs eagerRemoval) RemoveAll(name string) error {
	return stepwiseRemoval{fs}.RemoveAll(name)
}

func (fs eagerRemoval) Remove(name string) error {
	if err := fs.FS.Remove(name); err != nil {
		return err
	}
	d, err := fs.OpenDir(fs.PathDir(name))
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// TestReopenedStoreStagesBesideItsDatabase: a reopened store numbers its
// new directories above its live database's: a loader never stages into
// the live database's directory, and aborting it leaves the store whole.
func TestReopenedStoreStagesBesideItsDatabase(t *testing.T) {
	chunks, _, _ := memSource(t)
	mem := vfs.NewMem()
	s, err := Open("/shard", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s, model{}, 3, 5, "k")
	want := fingerprintOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, "/shard", Options{FS: mem})
	l, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if l.name == s.db.name {
		t.Errorf("the loader stages into the live database's directory %s", l.name)
	}
	if err := l.Write(chunks[0]); err != nil {
		t.Fatal(err)
	}
	if err := l.Abort(); err != nil {
		t.Fatal(err)
	}
	assertFingerprint(t, "after an aborted loader", want, fingerprintOf(t, s))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, "/shard", Options{FS: mem})
	assertFingerprint(t, "reopened after an aborted loader", want, fingerprintOf(t, r))
}

// TestTermOptionsKeepEveryKeySorting: the key sorting is stored as the
// whole int32 it is, unknown, large and negative values included.
func TestTermOptionsKeepEveryKeySorting(t *testing.T) {
	mem := vfs.NewMem()
	for i, sorting := range []KeySorting{1 << 20, -3, math.MaxInt32, math.MinInt32} {
		s, err := Open("/shard", Options{FS: mem})
		if err != nil {
			t.Fatal(err)
		}
		opts := TermOptions{EnableNotifications: i%2 == 0, KeySorting: sorting}
		if err := s.SetTerm(logpos.Term(i), opts); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := Open("/shard", Options{FS: mem})
		if err != nil {
			t.Fatal(err)
		}
		got := r.TermOptions()
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if got != opts {
			t.Fatalf("after reopen: options %+v, want %+v", got, opts)
		}
	}
}

// TestOpenWhoseMarkerCannotBeOpened: a marker the disk fails to open is
// that I/O error, not a missing marker: Open neither reports the store
// corrupt nor replaces a store that holds nothing yet, and once the disk
// works the store opens as it was.
func TestOpenWhoseMarkerCannotBeOpened(t *testing.T) {
	for name, fill := range map[string]func(t *testing.T, s *Store){
		"fresh store":     func(*testing.T, *Store) {},
		"store with data": func(t *testing.T, s *Store) { fillStore(t, s, model{}, 2, 3, "k") },
	} {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewMem()
			s := mustOpen(t, "/shard", Options{FS: mem})
			fill(t, s)
			want := fingerprintOf(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			var broken atomic.Bool
			broken.Store(true)
			fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if broken.Load() && op.Kind == errorfs.OpOpen && op.Path == "/shard/"+markerName {
					return &os.PathError{Op: "open", Path: op.Path, Err: syscall.EIO}
				}
				return nil
			}))
			if r, err := Open("/shard", Options{FS: fs}); !errors.Is(err, syscall.EIO) || errors.Is(err, ErrCorrupt) {
				if err == nil {
					r.Close()
				}
				t.Fatalf("Open whose marker cannot be opened = %v, want the disk's EIO", err)
			}
			if got := listDir(t, mem, "/shard"); !slices.Equal(got, want.DirectoryListed) {
				t.Fatalf("the failed Open changed the directory: %q, was %q", got, want.DirectoryListed)
			}
			broken.Store(false)
			r := mustOpen(t, "/shard", Options{FS: fs})
			assertFingerprint(t, "once the disk works", want, fingerprintOf(t, r))
		})
	}
}

// TestOpenRefusesAMarkerWithBytesAfterItsLine: the marker is one line,
// "db-NNNNNN\n", and nothing after it. A marker whose first line is a
// valid name (here the longest that fits the marker's size limit, zero
// padded, of a directory that holds the store) followed by more bytes
// was not written by the store: Open refuses it with ErrCorrupt and
// changes nothing.
func TestOpenRefusesAMarkerWithBytesAfterItsLine(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	fillStore(t, s, model{}, 3, 5, "k")
	live := s.db.name
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	long := dbPrefix + strings.Repeat("0", maxMarkerSize-1-len(dbPrefix)-1) + "1" // name+"\n" fills the limit
	if len(long)+1 != maxMarkerSize {
		t.Fatalf("name of %d bytes", len(long))
	}
	if err := mem.Rename("/shard/"+live, "/shard/"+long); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(mem, "/shard/CURRENT", long+"\n"); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, "/shard", Options{FS: mem}).Close() // the name alone opens
	if err := writeFile(mem, "/shard/CURRENT", long+"\nx"); err != nil {
		t.Fatal(err)
	}
	before := listDir(t, mem, "/shard")
	wantCorrupt(t, mem, "/shard")
	if got := listDir(t, mem, "/shard"); !slices.Equal(got, before) {
		t.Fatalf("a refused Open changed the directory: %q, was %q", got, before)
	}
}

// TestOpenRefusesAMarkerOverItsSizeLimit: a marker longer than its size
// limit was not written by the store (its longest name is far shorter),
// whatever its first line: Open refuses it with ErrCorrupt and changes
// nothing, also when the line ends right after the limit and the bytes
// after it would go unread.
func TestOpenRefusesAMarkerOverItsSizeLimit(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	fillStore(t, s, model{}, 3, 5, "k")
	live := s.db.name
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	long := dbPrefix + strings.Repeat("0", maxMarkerSize-len(dbPrefix)-1) + "1" // name+"\n" is one byte over the limit
	if len(long) != maxMarkerSize {
		t.Fatalf("name of %d bytes", len(long))
	}
	if err := mem.Rename("/shard/"+live, "/shard/"+long); err != nil {
		t.Fatal(err)
	}
	for _, marker := range []string{long + "\nx", long + "\n"} {
		if err := writeFile(mem, "/shard/CURRENT", marker); err != nil {
			t.Fatal(err)
		}
		before := listDir(t, mem, "/shard")
		wantCorrupt(t, mem, "/shard")
		if got := listDir(t, mem, "/shard"); !slices.Equal(got, before) {
			t.Fatalf("a refused Open changed the directory: %q, was %q", got, before)
		}
	}
}
