package durable

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestMkdirAllSurvivesACrash: on a crashable file system, directories made
// by MkdirAll are there after a crash that keeps nothing unsynced; made by
// a plain MkdirAll, they are not.
func TestMkdirAllSurvivesACrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	if err := fs.MkdirAll("/data", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(fs, "/"); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(fs, "/data/ns/7/wal"); err != nil {
		t.Fatal(err)
	}
	if err := fs.MkdirAll("/data/plain/1", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(fs, "/data/ns/7/wal"); err != nil {
		t.Fatalf("on an existing directory: %v", err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if _, err := crashed.Stat("/data/ns/7/wal"); err != nil {
		t.Fatalf("after a crash: %v", err)
	}
	if _, err := crashed.Stat("/data/plain"); err == nil {
		t.Fatal("an unsynced directory survived the crash: the test proves nothing")
	}
}

// TestMkdirAllOfAnExistingDirectory: a directory a crash may have left
// with its name not yet durable (made, its parent not synced) is durable
// once MkdirAll has found it.
func TestMkdirAllOfAnExistingDirectory(t *testing.T) {
	fs := vfs.NewCrashableMem()
	if err := MkdirAll(fs, "/data"); err != nil {
		t.Fatal(err)
	}
	if err := fs.MkdirAll("/data/wal", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.CrashClone(vfs.CrashCloneCfg{}).Stat("/data/wal"); err == nil {
		t.Fatal("an unsynced directory survived a crash: the test proves nothing")
	}
	if err := MkdirAll(fs, "/data/wal"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.CrashClone(vfs.CrashCloneCfg{}).Stat("/data/wal"); err != nil {
		t.Fatalf("after MkdirAll found it, then a crash: %v", err)
	}
}

// TestDeletedDir: the directory a Delete moves aside is beside the one
// deleted, however that one is spelled.
func TestDeletedDir(t *testing.T) {
	for _, dir := range []string{"/data/ns/7", "/data/ns/7/", "/data/ns//7//", "/data/ns/./7"} {
		if got := DeletedDir(vfs.NewMem(), dir); got != "/data/ns/7.deleted" {
			t.Errorf("DeletedDir(%q) = %q, want /data/ns/7.deleted", dir, got)
		}
	}
}
