package node_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
)

// TestShutdownCutShortByAStuckCallExitsOne: a call stuck on the disk
// (here opening a shard whose store marker is a FIFO nobody writes to)
// holds the graceful shutdown until --shutdown-timeout, and a shutdown
// cut short by it exits 1. Once the disk answers, the call ends.
func TestShutdownCutShortByAStuckCallExitsOne(t *testing.T) {
	dir := t.TempDir()
	s := leader.Shard{Namespace: "stuck", Shard: 1}
	addr, stop, stderr := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", dir)
	if _, err := dial(t, addr).NewTerm(ctxT(t), s, 1, nil); err != nil {
		t.Fatal(err)
	}
	if got := stop(); got != 0 {
		t.Fatalf("first run: status %d; stderr:\n%s", got, stderr)
	}
	marker := filepath.Join(dir, "stuck", "1", "store", "CURRENT")
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(marker, 0o600); err != nil {
		t.Fatal(err)
	}

	addr, stop, stderr = runMain(t, "--listen", "127.0.0.1:0", "--data-dir", dir, "--shutdown-timeout", "100ms")
	c, ctx := dial(t, addr), ctxT(t)
	called := make(chan error, 1)
	go func() {
		_, err := c.Status(ctx, s)
		called <- err
	}()
	// The node's open of the marker has begun once a writer can open the
	// FIFO without blocking; the writer, held open and silent, keeps the
	// node's read of it waiting.
	var w *os.File
	for w == nil {
		f, err := os.OpenFile(marker, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		switch {
		case err == nil:
			w = f
		case errors.Is(err, syscall.ENXIO): // no reader yet
			runtime.Gosched()
		default:
			t.Fatal(err)
		}
	}
	status := stop()
	_ = w.Close() // the read ends: the open fails, and the call with it
	if err := <-called; err == nil {
		t.Error("the stuck call succeeded")
	}
	if status != 1 {
		t.Fatalf("a shutdown cut short by a stuck call: status %d, want 1; stderr:\n%s", status, stderr)
	}
}
