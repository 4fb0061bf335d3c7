package grpcapi

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/internal/durable"
)

// lockFile is the file in a data directory that its node locks.
const lockFile = ".lock"

// held are the data directories that the servers of this process hold on
// the operating system's file system, each as the FileInfo its server
// took of it (see lockDataDir).
var held struct {
	sync.Mutex
	dirs []os.FileInfo
}

// lockDataDir locks dir, a server's data directory, for that server
// alone. The lock is a file lock (fcntl) on dir/.lock, which keeps the
// other processes out; but the locks of one process do not exclude each
// other, and Pebble's check within a process compares the lock file's
// path as it is spelt: a second server of this process reaching the
// directory by another name (a symbolic link, a bind mount) would take it
// too, and closing its lock file would drop the first server's lock for
// every other process. So on the operating system's file system the
// directories held in this process are compared by identity first.
func lockDataDir(fsys vfs.FS, dir string) (io.Closer, error) {
	var info os.FileInfo
	if fsys == vfs.Default {
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("grpcapi: the data directory: %w", err)
		}
		held.Lock()
		for _, h := range held.dirs {
			if os.SameFile(h, fi) {
				held.Unlock()
				return nil, fmt.Errorf("grpcapi: locking the data directory %s: another node of this process uses it", dir)
			}
		}
		held.dirs = append(held.dirs, fi)
		held.Unlock()
		info = fi
	}
	_, statErr := fsys.Stat(fsys.PathJoin(dir, lockFile))
	lock, err := fsys.Lock(fsys.PathJoin(dir, lockFile))
	if err == nil && statErr != nil {
		// A new lock file is what marks the directory as a node's
		// (checkNodeDir): made durable before any shard's directory,
		// so that no crash keeps those without it.
		if serr := durable.SyncDir(fsys, dir); serr != nil {
			err = errors.Join(fmt.Errorf("syncing it: %w", serr), lock.Close())
			unhold(info)
			return nil, fmt.Errorf("grpcapi: cannot use the data directory %s: %w", dir, err)
		}
	}
	if err != nil {
		unhold(info)
		if _, ok := errors.AsType[*fs.PathError](err); ok {
			// The lock file could not be opened (permissions, a
			// read-only file system): no other node is involved.
			return nil, fmt.Errorf("grpcapi: cannot use the data directory %s: %w", dir, err)
		}
		return nil, fmt.Errorf("grpcapi: locking the data directory %s (is another node using it?): %w", dir, err)
	}
	return &dirLock{lock: lock, info: info}, nil
}

// writeCheckFile is the file that checkWritable creates and removes.
const writeCheckFile = ".write-check"

// checkWritable checks that files can be created in dir, and removed: a
// node whose data directory takes its lock file but no new file (its
// permissions changed since, or its file system was remounted read-only)
// would start, serve, and fail every call that opens a shard.
func checkWritable(fsys vfs.FS, dir string) error {
	name := fsys.PathJoin(dir, writeCheckFile)
	f, err := fsys.Create(name, vfs.WriteCategoryUnspecified)
	if err == nil {
		err = errors.Join(f.Close(), fsys.Remove(name))
	}
	if err != nil {
		return fmt.Errorf("grpcapi: the data directory %s is not writable: %w", dir, err)
	}
	return nil
}

// checkNodeDir refuses an existing data directory that holds files but
// was never a node's: a node that started in it would have left its
// .lock. A node tidies what it finds of its own at start (what deleted
// shards left), so a mistyped --data-dir must not be taken. A file
// system's lost+found alone does not count: a volume mounted as the data
// directory holds one.
func checkNodeDir(fsys vfs.FS, dir string) error {
	names, err := fsys.List(dir)
	if err != nil {
		// Not readable: nothing in it can be tidied either.
		return nil
	}
	var other []string
	for _, name := range names {
		switch name {
		case lockFile:
			return nil
		case "lost+found":
		default:
			other = append(other, name)
		}
	}
	if len(other) == 0 {
		return nil
	}
	slices.Sort(other)
	more := ""
	if len(other) > 1 {
		more = fmt.Sprintf(" and %d more", len(other)-1)
	}
	return fmt.Errorf("grpcapi: the data directory %s is not a node's: it holds %q%s but no %s (give a new or empty directory; if a node did use it and its %s was lost, create an empty %s there)", dir, other[0], more, lockFile, lockFile, lockFile)
}

// unhold forgets a directory that lockDataDir recorded (nil: none).
func unhold(info os.FileInfo) {
	if info == nil {
		return
	}
	held.Lock()
	defer held.Unlock()
	held.dirs = slices.DeleteFunc(held.dirs, func(h os.FileInfo) bool { return h == info })
}

// dirLock is a data directory held by lockDataDir.
type dirLock struct {
	lock io.Closer
	info os.FileInfo
}

// Close releases the lock file, then the directory.
func (l *dirLock) Close() error {
	err := l.lock.Close()
	unhold(l.info)
	return err
}
