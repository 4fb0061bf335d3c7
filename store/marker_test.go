package store

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/tablefsm/tablefsm/logpos"
)

// dirSyncFailer fails syncs of one directory once the marker was renamed:
// the first fails of them, or every one while fails is negative.
type dirSyncFailer struct {
	dir string
	mu  struct {
		sync.Mutex
		renamed bool
		fails   int
		failed  int
	}
}

func (d *dirSyncFailer) String() string { return "dirSyncFailer" }

func (d *dirSyncFailer) MaybeError(op errorfs.Op) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case op.Kind == errorfs.OpRename && op.Path == d.dir+"/"+markerTempName:
		d.mu.renamed = true
	case d.mu.renamed && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) && op.Path == d.dir &&
		(d.mu.fails < 0 || d.mu.failed < d.mu.fails):
		d.mu.failed++
		return errorfs.ErrInjected
	}
	return nil
}

// TestInstallMarkerSyncFailsOldMarkerRestored: the directory sync after
// the marker rename fails, so a crash could leave either marker. Install
// puts the old marker back durably and fails with the I/O error: the
// live store, its files and its directory are as they were, and it
// installs the next snapshot.
func TestInstallMarkerSyncFailsOldMarkerRestored(t *testing.T) {
	chunks, info, newData := memSource(t)
	mem := vfs.NewMem()
	s, err := Open("/shard", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s, model{}, 3, 5, "old")
	old := fingerprintOf(t, s)
	inj := &dirSyncFailer{dir: "/shard"}
	inj.mu.fails = 1
	s.fs = errorfs.Wrap(mem, inj)
	_, err = load(s, chunks, 0)
	if !errors.Is(err, errorfs.ErrInjected) || errors.Is(err, ErrFailed) || errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("install: %v, want the injected I/O error alone", err)
	}
	if inj.mu.failed != 1 {
		t.Fatalf("%d directory syncs failed, want 1", inj.mu.failed)
	}
	assertFingerprint(t, "after the failed install", old, fingerprintOf(t, s))
	if _, err := load(s, chunks, 0); err != nil {
		t.Fatalf("the next install: %v", err)
	}
	checkInstalled(t, "after the next install", fingerprintOf(t, s), info, newData)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open("/shard", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkInstalled(t, "reopened", fingerprintOf(t, r), info, newData)
}

// TestInstallMarkerSyncFailsForGood: the old marker cannot be made durable
// either. The store fails with ErrFailed and closes; reopening it gives a
// complete store, the old or the new, as the marker names it.
func TestInstallMarkerSyncFailsForGood(t *testing.T) {
	chunks, info, newData := memSource(t)
	mem := vfs.NewMem()
	s, err := Open("/shard", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s, model{}, 3, 5, "old")
	old := fingerprintOf(t, s)
	inj := &dirSyncFailer{dir: "/shard"}
	inj.mu.fails = -1
	s.fs = errorfs.Wrap(mem, inj)
	_, err = load(s, chunks, 0)
	s.fs = mem
	if !errors.Is(err, ErrFailed) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("install: %v, want ErrFailed wrapping the I/O error", err)
	}
	if err := s.SetTerm(9, TermOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetTerm on the failed store: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("Close of the failed store: %v", err)
	}
	r, err := Open("/shard", Options{FS: mem})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer r.Close()
	got := fingerprintOf(t, r)
	if got.Commit == old.Commit {
		old.DirectoryListed = got.DirectoryListed // the staged copy was removed on open
		assertFingerprint(t, "reopened", old, got)
	} else {
		checkInstalled(t, "reopened", got, info, newData)
	}
}

// TestLeftoverStagingRemovedLater: a failed install whose staging
// directory cannot be removed (the disk refuses removals) leaves it
// behind; the next SetTerm, or the next NewLoader, removes it once the
// disk works again (heal). A removal that fails again when SetTerm
// retries it is kept for the next retry, not forgotten.
func TestLeftoverStagingRemovedLater(t *testing.T) {
	for name, retry := range map[string]func(t *testing.T, s *Store, old fingerprint, heal func()) (want []string){
		"SetTerm": func(t *testing.T, s *Store, old fingerprint, heal func()) []string {
			heal()
			if err := s.SetTerm(4, old.Options); err != nil {
				t.Fatal(err)
			}
			return old.DirectoryListed
		},
		"SetTerm failing first": func(t *testing.T, s *Store, old fingerprint, heal func()) []string {
			// Remembered once, however many retries fail (not once
			// more per retry).
			for term := logpos.Term(4); term < 8; term++ {
				if err := s.SetTerm(term, old.Options); err != nil {
					t.Fatal(err)
				}
				if got := listDir(t, s.fs, "/shard"); len(got) != len(old.DirectoryListed)+1 {
					t.Fatalf("directory %q, want the staging directory still left beside %q", got, old.DirectoryListed)
				}
				s.mu.Lock()
				n := len(s.mu.leftovers)
				s.mu.Unlock()
				if n != 1 {
					t.Fatalf("%d leftovers remembered after SetTerm(%d) failed to remove one", n, term)
				}
			}
			heal()
			if err := s.SetTerm(8, old.Options); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			left := slices.Clone(s.mu.leftovers)
			s.mu.Unlock()
			if len(left) != 0 {
				t.Fatalf("leftovers %q still remembered once removed", left)
			}
			return old.DirectoryListed
		},
		"NewLoader": func(t *testing.T, s *Store, old fingerprint, heal func()) []string {
			heal()
			next, err := s.NewLoader()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = next.Abort() })
			want := append(slices.Clone(old.DirectoryListed), next.name)
			slices.Sort(want)
			return want
		},
	} {
		t.Run(name, func(t *testing.T) {
			chunks, _, _ := memSource(t)
			mem := vfs.NewMem()
			s, err := Open("/shard", Options{FS: mem})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			fillStore(t, s, model{}, 3, 5, "old")
			old := fingerprintOf(t, s)
			var broken atomic.Bool
			broken.Store(true)
			s.fs = errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if broken.Load() && op.Kind == errorfs.OpRemoveAll {
					return errorfs.ErrInjected
				}
				return nil
			}))
			l, err := s.NewLoader()
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Write(chunks[0]); err != nil {
				t.Fatal(err)
			}
			if err := l.Abort(); !errors.Is(err, errorfs.ErrInjected) {
				t.Fatalf("Abort with removals failing: %v", err)
			}
			if got := listDir(t, mem, "/shard"); len(got) != len(old.DirectoryListed)+1 {
				t.Fatalf("directory %q, want the staging directory left beside %q", got, old.DirectoryListed)
			}
			want := retry(t, s, old, func() { broken.Store(false) })
			if got := listDir(t, mem, "/shard"); !slices.Equal(got, want) {
				t.Fatalf("directory %q after %s, want %q", got, name, want)
			}
		})
	}
}

// TestOpenWhoseMarkerCannotBeClosed: closing the new marker file fails
// (its data may not have reached the disk): the creation fails with that
// error, no marker is put in place, and once the disk works the store
// opens fresh.
func TestOpenWhoseMarkerCannotBeClosed(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	mem := vfs.NewMem()
	fs := closeFailFS{FS: mem, broken: &broken}
	if s, err := Open("/shard", Options{FS: fs}); !errors.Is(err, errorfs.ErrInjected) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open whose marker cannot be closed = %v, want the injected error", err)
	}
	for _, name := range listDir(t, mem, "/shard") {
		if name == markerName || name == markerTempName {
			t.Fatalf("the failed creation left %s in place", name)
		}
	}
	broken.Store(false)
	s := mustOpen(t, "/shard", Options{FS: fs})
	if s.Term() != logpos.NoTerm || s.Commit() != logpos.NoEntry {
		t.Fatalf("term %d commit %v, want a fresh store", s.Term(), s.Commit())
	}
}

// closeFailFS fails the Close of the temporary marker file (after closing
// it) while broken is set; errorfs does not inject errors into Close.
type closeFailFS struct {
	vfs.FS
	broken *atomic.Bool
}

func (fs closeFailFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	if err != nil || !fs.broken.Load() || !strings.HasSuffix(name, "/"+markerTempName) {
		return f, err
	}
	return closeFailFile{f}, nil
}

type closeFailFile struct{ vfs.File }

func (f closeFailFile) Close() error { return errors.Join(f.File.Close(), errorfs.ErrInjected) }

// TestMarkerOfTheLargestSequenceNumber: a marker naming a database
// numbered with the largest sequence number (20 digits, the longest name
// the store writes) reads back: the store opens it with its data.
func TestMarkerOfTheLargestSequenceNumber(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	fillStore(t, s, model{}, 3, 4, "k")
	want := fingerprintOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	const name = "db-18446744073709551615"
	if err := mem.Rename("/shard/db-000001", "/shard/"+name); err != nil {
		t.Fatal(err)
	}
	if _, err := writeMarker(mem, "/shard", name); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, "/shard", Options{FS: mem})
	want.DirectoryListed = listDir(t, mem, "/shard")
	assertFingerprint(t, "opened from the longest name", want, fingerprintOf(t, r))
	if r.db.name != name {
		t.Fatalf("live database %s, want %s", r.db.name, name)
	}
}
