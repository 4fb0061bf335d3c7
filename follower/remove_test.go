package follower

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// TestRemoveAShardThatDoesNotOpen: Remove deletes the data of a shard
// whose follower does not open (here its log is not a directory),
// checking the term against the one its store holds as Delete does; a
// refused Remove removes nothing. Without a store to read the term from,
// it refuses with ErrUnavailable.
func TestRemoveAShardThatDoesNotOpen(t *testing.T) {
	cfg := Config{Dir: filepath.Join(t.TempDir(), "shard")}
	f := openToDelete(t, cfg, 9) // term 4
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	damage := func(name string) {
		t.Helper()
		p := filepath.Join(cfg.Dir, name)
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("not a directory"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	damage("wal")
	if g, err := Open(cfg); err == nil {
		_ = g.Close()
		t.Fatal("a follower without its log opened")
	}
	exists := func() bool {
		t.Helper()
		_, err := os.Stat(cfg.Dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	for _, c := range []struct {
		term logpos.Term
		want error
	}{{-1, ErrInvalidArgument}, {3, ErrInvalidTerm}} {
		if err := Remove(cfg, c.term); !errors.Is(err, c.want) {
			t.Fatalf("Remove(%d) = %v, want %v", c.term, err, c.want)
		}
		if !exists() {
			t.Fatalf("a refused Remove(%d) removed the shard", c.term)
		}
	}
	if err := Remove(cfg, 4); err != nil {
		t.Fatalf("Remove(4): %v", err)
	}
	if exists() {
		t.Fatal("the shard's directory is there after Remove")
	}
	if err := Remove(cfg, 4); err != nil {
		t.Fatalf("Remove of a removed shard: %v", err)
	}
	// Opened again, it is a new follower.
	g, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st := g.Status(); st.State != StateNotMember || st.Head != logpos.NoOffset {
		t.Fatalf("after Remove: %+v, want a new NotMember follower", st)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	// A store that does not open cannot tell the shard's term.
	damage("store")
	if err := Remove(cfg, 100); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Remove of a shard without a store: %v, want ErrUnavailable", err)
	}
	if !exists() {
		t.Fatal("Remove removed a shard whose term it could not read")
	}
}

// TestRemoveNeedsTheShardsTerm: without a store, or with a store that
// holds no term beside a log that holds entries (a store created afresh
// where one was lost), Remove cannot tell the shard's term and removes
// nothing.
func TestRemoveNeedsTheShardsTerm(t *testing.T) {
	cfg := Config{Dir: filepath.Join(t.TempDir(), "shard")}
	f := openToDelete(t, cfg, 9) // term 4
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(cfg.Dir, "store")); err != nil {
		t.Fatal(err)
	}
	if err := Remove(cfg, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Remove(0) of a shard without a store: %v, want ErrUnavailable", err)
	}
	// Opened, the shard gets a store without a term, beside its log.
	g, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st := g.Status(); st.Term != logpos.NoTerm || st.Head != 9 {
		t.Fatalf("reopened without its store: %+v", st)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Remove(cfg, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Remove(0) of a log beside a store without a term: %v, want ErrUnavailable", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "wal")); err != nil {
		t.Fatalf("a refused Remove removed the log: %v", err)
	}
}

// TestRemoveFinishesACutShortDelete: what a Delete left when it failed
// after moving the directory aside goes with the next Remove.
func TestRemoveFinishesACutShortDelete(t *testing.T) {
	cfg := Config{Dir: filepath.Join(t.TempDir(), "shard")}
	aside := cfg.Dir + ".deleted"
	if err := os.MkdirAll(filepath.Join(aside, "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Remove(cfg, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(aside); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("what the Delete left: %v, want it gone", err)
	}
}

// A Config without a Dir is an argument error of Open and Remove, which
// touch nothing (the current directory included).
func TestNoDirIsAnInvalidArgument(t *testing.T) {
	fs := vfs.NewMem()
	if _, err := Open(Config{FS: fs}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "Config.Dir") {
		t.Errorf("Open without a Dir: %v, want ErrInvalidArgument naming Config.Dir", err)
	}
	if err := Remove(Config{FS: fs}, 1); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "Config.Dir") {
		t.Errorf("Remove without a Dir: %v, want ErrInvalidArgument naming Config.Dir", err)
	}
	if names, err := fs.List(""); err != nil || len(names) != 0 {
		t.Errorf("the file system holds %v, %v", names, err)
	}
}
