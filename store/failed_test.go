package store

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestFatalWriteErrorFailsTheStore: a write or sync error inside Pebble's
// commit pipeline (which Pebble treats as fatal) fails the store with
// ErrFailed instead of crashing the process; reads go on, and reopening
// recovers what was durable.
func TestFatalWriteErrorFailsTheStore(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return errors.New("injected write error")
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
		if err := w.write(); !errors.Is(err, ErrFailed) {
			t.Errorf("%s on a failing disk: %v, want ErrFailed", w.name, err)
		}
	}
	failing.Store(false)
	if err := s.SetTerm(2, TermOptions{}); !errors.Is(err, ErrFailed) {
		t.Fatalf("a failed store took a write: %v", err)
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
