package node_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tablefsm/tablefsm/grpcapi/node"
)

// tryMain runs node.Main in this process. If it serves, it returns the
// address it printed and a func that stops it and returns its status;
// if it exits first, it returns its status and logs.
func tryMain(t *testing.T, args ...string) (addr string, stop func() int, status int, stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	stderr = &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- node.Main(ctx, args, w, stderr)
		_ = w.Close()
	}()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		first := ""
		if sc.Scan() {
			first = sc.Text()
		}
		line <- first
		_, _ = io.Copy(io.Discard, r)
	}()
	first := <-line // "" once Main returned without serving
	if !strings.HasPrefix(first, node.ListeningPrefix) {
		cancel()
		return "", nil, <-done, stderr
	}
	return strings.TrimPrefix(first, node.ListeningPrefix), func() int { cancel(); return <-done }, 0, stderr
}

// TestDataDirUnderAnotherName: a data directory that a node of this
// process holds is refused to a second node that names it through a
// symbolic link, and it stays locked for other processes.
func TestDataDirUnderAnotherName(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	_, stop, stderr := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", dir)

	addr, stop2, status, errs := tryMain(t, "--listen", "127.0.0.1:0", "--data-dir", link)
	if addr != "" {
		t.Errorf("a second node of this process serves the data directory through %s", link)
		if got := stop2(); got != 0 {
			t.Errorf("the second node: status %d", got)
		}
	} else if status != 1 || !strings.Contains(errs.String(), "another node") {
		t.Errorf("the second node: status %d, want 1; stderr:\n%s", status, errs)
	}

	// Whatever the second node did, the first still holds the directory:
	// a followerd process is refused.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logs := &syncBuffer{}
	p, err := node.Start(ctx, []string{os.Args[0], "--listen", "127.0.0.1:0", "--data-dir", dir}, []string{asFollowerd}, logs)
	if err == nil {
		t.Errorf("a followerd process serves the data directory of a running node")
		p.Stop()
	} else if !strings.Contains(logs.String(), "another node") {
		t.Errorf("the followerd process: %v; logs:\n%s", err, logs)
	}

	if got := stop(); got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr)
	}
	// Released: the directory serves again, by either name.
	_, stop3, stderr3 := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", link)
	if got := stop3(); got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr3)
	}
}

// TestDataDirIsAFile: a data directory that is a file is reported as
// such, exit status 1, not as a directory another node holds.
func TestDataDirIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if got := node.Main(ctxT(t), []string{"--listen", "127.0.0.1:0", "--data-dir", file}, &stdout, &stderr); got != 1 {
		t.Fatalf("status %d, want 1; stderr:\n%s", got, stderr.String())
	}
	if !strings.Contains(stderr.String(), "not a directory") || strings.Contains(stderr.String(), "another node") {
		t.Fatalf("stderr %q: want it to say the data directory is not a directory, and nothing of another node", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Fatalf("stdout %q, want nothing", stdout.String())
	}
}

// TestDataDirIsADanglingLink: a data directory that is a symbolic link
// to nothing cannot be created; the error says what it may be.
func TestDataDirIsADanglingLink(t *testing.T) {
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(filepath.Join(t.TempDir(), "nowhere"), link); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if got := node.Main(ctxT(t), []string{"--listen", "127.0.0.1:0", "--data-dir", link}, &stdout, &stderr); got != 1 {
		t.Fatalf("status %d, want 1; stderr:\n%s", got, stderr.String())
	}
	if !strings.Contains(stderr.String(), "a symbolic link to nothing?") {
		t.Fatalf("stderr %q: want it to suggest a dangling link", stderr.String())
	}
}

// TestShortShutdownTimeoutOfAnIdleNode: a node with no call and no shard
// has nothing to cut short, however short --shutdown-timeout is: it
// exits 0 every time.
func TestShortShutdownTimeoutOfAnIdleNode(t *testing.T) {
	for i := range 50 {
		_, stop, stderr := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--shutdown-timeout", "1ns")
		if got := stop(); got != 0 {
			t.Fatalf("run %d: status %d, want 0; stderr:\n%s", i, got, stderr)
		}
	}
}
