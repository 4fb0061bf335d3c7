// Package durable holds the file-system steps that make directory changes
// survive a crash: a directory entry is durable only once the directory
// holding it is synced.
package durable

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// SyncDir makes the entries of dir durable.
func SyncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// MkdirAll creates dir and its missing parents and syncs the parent of
// every directory it created, so that the new directories survive a
// crash. The parent of the first directory it found existing (dir
// itself, when nothing was missing) is synced all the same: a crash, or
// another MkdirAll still under way, may have come between that
// directory's creation and the sync of its parent.
func MkdirAll(fs vfs.FS, dir string) error {
	var missing []string
	top := "" // the existing directory the walk stopped at
	for d := dir; ; {
		_, err := fs.Stat(d)
		if err == nil {
			top = d
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		parent := fs.PathDir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if len(missing) == 0 {
		if parent := fs.PathDir(dir); parent != dir {
			return SyncDir(fs, parent)
		}
		return nil
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range missing {
		if parent := fs.PathDir(d); parent != d {
			if err := SyncDir(fs, parent); err != nil {
				return err
			}
		}
	}
	// The existing directory may have been created by a concurrent
	// MkdirAll that has not synced its parent yet.
	if top != "" {
		if parent := fs.PathDir(top); parent != top {
			return SyncDir(fs, parent)
		}
	}
	return nil
}

// DeletedDir is where a Delete moves the directory dir before removing
// it: beside it, named after it, so that a crash leaves dir or nothing
// (what is left aside is removed by the next open). dir is cleaned first:
// with a trailing separator, its parent would be dir itself.
func DeletedDir(fs vfs.FS, dir string) string {
	dir = filepath.Clean(dir)
	return fs.PathJoin(fs.PathDir(dir), fs.PathBase(dir)+".deleted")
}
