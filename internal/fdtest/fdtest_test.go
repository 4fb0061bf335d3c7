package fdtest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestOpenUnder(t *testing.T) {
	Watch(t)
	dir, err := filepath.EvalSymlinks(t.TempDir()) // as /proc/self/fd names it
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "f")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	beside, err := os.Create(dir + "-beside") // shares dir's name as a prefix, not under it
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(beside.Name())
	defer beside.Close()
	if got := OpenUnder(t, dir); !slices.Equal(got, []string{name}) {
		t.Fatalf("open under %s: %q, want %q", dir, got, name)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := OpenUnder(t, dir); len(got) != 0 {
		t.Fatalf("open under %s after Close: %q, want none", dir, got)
	}
}
