package store

import (
	"errors"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestClosedSnapshotsAndEndedLoadersAreForgotten: a closed snapshot, and
// a loader that was aborted, failed or installed, is no longer held by the
// store (each holds a chunk buffer or staged state that would otherwise
// stay for the store's life).
func TestClosedSnapshotsAndEndedLoadersAreForgotten(t *testing.T) {
	src := newSource(t, t.TempDir(), Options{})
	chunks, _ := takeSnapshot(t, src.s)
	held := func(s *Store) (int, int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.mu.snapshots), len(s.mu.loaders)
	}
	if sn, _ := held(src.s); sn != 0 {
		t.Fatalf("%d snapshots held after Close", sn)
	}
	dst := mustOpen(t, t.TempDir(), Options{})
	l, err := dst.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, n := held(dst); n != 0 {
		t.Fatalf("%d loaders held after Abort", n)
	}
	l, err = dst.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(Chunk{Name: "..", Count: 1}); !errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("Write(..) = %v", err)
	}
	if _, n := held(dst); n != 0 {
		t.Fatalf("%d loaders held after a failed Write", n)
	}
	if _, err := load(dst, chunks, 0); err != nil {
		t.Fatal(err)
	}
	if _, n := held(dst); n != 0 {
		t.Fatalf("%d loaders held after Install", n)
	}
}

// failMarkerCreate fails every creation of the temporary marker: a disk
// refusing new files.
type failMarkerCreate struct{}

func (failMarkerCreate) String() string { return "failMarkerCreate" }
func (failMarkerCreate) MaybeError(op errorfs.Op) error {
	if op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, markerTempName) {
		return errorfs.ErrInjected
	}
	return nil
}

// TestInstallWhoseMarkerCannotBeCreated: an Install that fails before the
// marker's rename (its temporary file cannot be created, for good) fails
// like any error before the swap: the store stays open, healthy and as it
// was; it is not closed or failed as when the marker was renamed.
func TestInstallWhoseMarkerCannotBeCreated(t *testing.T) {
	chunks, _, _ := memSource(t)
	mem := vfs.NewMem()
	s, err := Open("/shard", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fillStore(t, s, model{}, 3, 5, "old")
	old := fingerprintOf(t, s)
	s.fs = errorfs.Wrap(mem, failMarkerCreate{})
	_, err = load(s, chunks, 0)
	s.fs = mem
	if !errors.Is(err, errorfs.ErrInjected) || errors.Is(err, ErrFailed) {
		t.Fatalf("Install = %v, want the injected error, not ErrFailed", err)
	}
	if s.isClosed() || s.failure() != nil {
		t.Fatalf("store closed (%v) or failed (%v)", s.isClosed(), s.failure())
	}
	assertFingerprint(t, "after the failed install", old, fingerprintOf(t, s))
}
