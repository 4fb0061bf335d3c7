package durable

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
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

// TestMkdirAllBelowADirectoryNotYetDurable: a directory found existing
// may have been made by another MkdirAll still under way, its parent not
// synced yet; the directories made below it survive a crash only if its
// own name does, so its parent is synced too.
func TestMkdirAllBelowADirectoryNotYetDurable(t *testing.T) {
	fs := vfs.NewCrashableMem()
	if err := fs.MkdirAll("/data", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.CrashClone(vfs.CrashCloneCfg{}).Stat("/data"); err == nil {
		t.Fatal("an unsynced directory survived a crash: the test proves nothing")
	}
	if err := MkdirAll(fs, "/data/ns/7"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.CrashClone(vfs.CrashCloneCfg{}).Stat("/data/ns/7"); err != nil {
		t.Fatalf("after a crash: %v", err)
	}
}

// TestDurableStepsReportFailures: a directory that cannot be looked at,
// synced or closed is an error, not a directory taken as made durable.
func TestDurableStepsReportFailures(t *testing.T) {
	for _, c := range []struct {
		name string
		op   errorfs.OpKind
		run  func(vfs.FS) error
	}{
		{"MkdirAll, its Stat failing", errorfs.OpStat, func(fs vfs.FS) error { return MkdirAll(fs, "/data/wal") }},
		{"SyncDir, its sync failing", errorfs.OpFileSync, func(fs vfs.FS) error { return SyncDir(fs, "/data") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			mem := vfs.NewMem()
			if err := mem.MkdirAll("/data", 0o755); err != nil {
				t.Fatal(err)
			}
			fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if op.Kind == c.op {
					return errorfs.ErrInjected
				}
				return nil
			}))
			if err := c.run(fs); !errors.Is(err, errorfs.ErrInjected) {
				t.Fatalf("= %v, want the injected error", err)
			}
		})
	}
}

// closeFailingDirs is a file system whose directories fail to close.
type closeFailingDirs struct{ vfs.FS }

func (fs closeFailingDirs) OpenDir(name string) (vfs.File, error) {
	d, err := fs.FS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return closeFailingDir{d}, nil
}

type closeFailingDir struct{ vfs.File }

var errClose = errors.New("injected: close")

func (d closeFailingDir) Close() error {
	_ = d.File.Close()
	return errClose
}

// TestSyncDirReportsAFailedClose: a directory whose close fails after a
// sync that succeeded is an error too.
func TestSyncDirReportsAFailedClose(t *testing.T) {
	mem := vfs.NewMem()
	if err := mem.MkdirAll("/data", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(closeFailingDirs{mem}, "/data"); !errors.Is(err, errClose) {
		t.Fatalf("SyncDir = %v, want the close's error", err)
	}
}
