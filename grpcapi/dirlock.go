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
)

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
	lock, err := fsys.Lock(fsys.PathJoin(dir, ".lock"))
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
