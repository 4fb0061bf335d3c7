// Package fdtest lists the files the process holds open, for tests that
// check that nothing is left open. Only test files import it.
package fdtest

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

const fdDir = "/proc/self/fd"

// Watch prepares t to look at open files: it skips t where the process's
// open files cannot be listed (they are read from /proc/self/fd, on
// Linux), and turns garbage collection off until t ends. An *os.File
// nobody closes is closed by its finalizer once a collection finds it
// unreachable: without collections, every file left open stays open to
// be seen.
func Watch(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("lists open files through " + fdDir)
	}
	if _, err := os.ReadDir(fdDir); err != nil {
		t.Skipf("no %s: %v", fdDir, err)
	}
	old := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(old) })
}

// OpenUnder returns the files under dir (dir included) that the process
// holds open.
func OpenUnder(t testing.TB, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue // closed since it was listed (the listing's own descriptor)
		}
		if target == dir || strings.HasPrefix(target, dir+string(filepath.Separator)) {
			open = append(open, target)
		}
	}
	return open
}
