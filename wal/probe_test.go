package wal

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestProbeSync(t *testing.T) {
	fs := vfs.NewMem()
	if err := fs.MkdirAll("d", 0o755); err != nil {
		t.Fatal(err)
	}
	took, err := ProbeSync(fs, "d", 5, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(took) != 5 {
		t.Fatalf("%d durations for 5 records", len(took))
	}
	if names, err := fs.List("d"); err != nil || len(names) != 0 {
		t.Fatalf("left %v (%v) behind", names, err)
	}
	for _, bad := range [][2]int{{0, 100}, {5, 0}, {-1, 1}} {
		if _, err := ProbeSync(fs, "d", bad[0], bad[1]); err == nil {
			t.Errorf("ProbeSync(%d records of %d bytes) succeeded", bad[0], bad[1])
		}
	}
	if _, err := ProbeSync(fs, "missing", 1, 1); err == nil {
		t.Error("ProbeSync in a missing directory succeeded")
	}
}
