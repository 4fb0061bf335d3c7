package wal

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// ProbeSync measures the file system under a log: it writes n records of
// size bytes, one after the other, into a file in dir prepared as the log
// prepares a segment (blocks allocated, size set), each followed by an
// fdatasync, and returns how long each write and fdatasync took. It is
// the floor of one sync round of a log in dir, for benchmarks to compare
// with. The file is removed before it returns.
func ProbeSync(fs vfs.FS, dir string, n, size int) ([]time.Duration, error) {
	if n <= 0 || size <= 0 {
		return nil, fmt.Errorf("wal: probe of %d records of %d bytes", n, size)
	}
	name := fs.PathJoin(dir, "sync-probe")
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("wal: probe: %w", err)
	}
	defer fs.Remove(name)
	defer f.Close()
	PrepareFile(f, int64(n)*int64(size))
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("wal: probe: %w", err)
	}
	buf := make([]byte, size)
	took := make([]time.Duration, n)
	for i := range took {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i)*int64(size)); err != nil {
			return nil, fmt.Errorf("wal: probe: %w", err)
		}
		if err := f.SyncData(); err != nil {
			return nil, fmt.Errorf("wal: probe: %w", err)
		}
		took[i] = time.Since(start)
	}
	return took, nil
}
