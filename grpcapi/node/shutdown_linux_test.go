package node_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

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

// TestSecondSignalEndsAStartThatHangs: a node stuck while starting (here
// stalled on purpose) takes a first SIGINT as a request to stop once it
// has started, and is ended at once by a second, as a Go program is.
func TestSecondSignalEndsAStartThatHangs(t *testing.T) {
	cmd := exec.Command(os.Args[0], "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), asFollowerd, "NODE_TEST_STALL_START=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "stalled\n" {
		t.Fatalf("the node's first line: %q, %v; stderr:\n%s", line, err, &stderr)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for _, sig := range []os.Signal{os.Interrupt, os.Interrupt} {
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	// Signals of one kind pending at once merge into one, and the node
	// takes a moment to act on the first: send more until it is gone.
	gaveUp := time.After(time.Minute)
	for {
		select {
		case <-gaveUp:
			t.Fatalf("the node still runs after a minute of SIGINTs; stderr:\n%s", &stderr)
		case err := <-exited:
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the node ended with %v, want killed by SIGINT; stderr:\n%s", err, &stderr)
			}
			if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
				t.Fatalf("the node ended with %v, want killed by SIGINT; stderr:\n%s", err, &stderr)
			}
			return
		case <-time.After(10 * time.Millisecond):
			_ = cmd.Process.Signal(os.Interrupt)
		}
	}
}
