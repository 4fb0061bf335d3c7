package node_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChildEndsWithParent: a node started by a process that is killed
// (SIGKILL: nothing of the parent runs) ends too, gracefully: it gets
// SIGHUP, not SIGKILL, and logs that it stopped with status 0. The node
// writes its logs to the write end of a pipe it inherits through its
// parent, so the read end reaching EOF says that both have exited.
func TestChildEndsWithParent(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	parent := exec.Command(os.Args[0], "-test.run", "^$")
	parent.Env = append(os.Environ(), asParent, "NODE_TEST_PARENT_OF="+t.TempDir())
	parent.Stderr = w // the node's stderr too
	stdin, err := parent.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "started ") {
		_ = parent.Process.Kill()
		_ = parent.Wait()
		t.Fatalf("the parent said %q, %v", line, err)
	}
	var child int
	if _, err := fmt.Sscanf(line, "started %d", &child); err != nil {
		t.Fatal(err)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()

	var logs []byte
	ended := make(chan error, 1)
	go func() {
		var err error
		logs, err = io.ReadAll(r)
		ended <- err
	}()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatal(err)
		}
		// SIGHUP, which the node receives once for each thread of its
		// dying parent: a repeated SIGTERM would end the shutdown.
		if !strings.Contains(string(logs), `cause="hangup signal received"`) || !strings.Contains(string(logs), "msg=stopped status=0") {
			t.Fatalf("the node did not shut down gracefully when its parent was killed; its logs:\n%s", logs)
		}
	case <-time.After(time.Minute):
		// Not a measurement: the node outlived its parent, which is the
		// failure; end it rather than leave it behind.
		_ = syscall.Kill(child, syscall.SIGKILL)
		<-ended
		t.Fatalf("the node (pid %d) kept running after its parent was killed", child)
	}
}
