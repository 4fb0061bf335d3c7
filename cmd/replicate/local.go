package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tablefsm/tablefsm/grpcapi/node"
)

// followerdArgv returns the command that starts followerd: the given
// path, else the followerd binary beside this one (make demo builds both
// into bin/), else one built now with the go command into tmp.
func followerdArgv(ctx context.Context, given, tmp string, out io.Writer) ([]string, error) {
	if given != "" {
		return []string{given}, nil
	}
	if exe, err := os.Executable(); err == nil {
		sibling := filepath.Join(filepath.Dir(exe), "followerd")
		if fi, err := os.Stat(sibling); err == nil && !fi.IsDir() {
			return []string{sibling}, nil
		}
	}
	bin := filepath.Join(tmp, "followerd")
	fmt.Fprintln(out, "building followerd (go build github.com/tablefsm/tablefsm/cmd/followerd)…")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/tablefsm/tablefsm/cmd/followerd")
	cmd.Stdout, cmd.Stderr = out, out
	// Stopped, the go command is interrupted rather than killed: it then
	// removes its own temporary directories.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("no followerd beside this binary and building one failed (%v): run 'make demo' from the repository, or pass --followerd", err)
	}
	return []string{bin}, nil
}

// startFollowerd starts a followerd over dataDir on a free loopback port,
// its logs (JSON) going to logs, with the followerd flags extra.
func startFollowerd(ctx context.Context, argv []string, dataDir string, logs io.Writer, extra ...string) (*node.Process, error) {
	args := append(append([]string(nil), argv...), "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-format", "json")
	args = append(args, extra...)
	return startBounded(ctx, args, logs)
}

// startTimeout bounds the wait for a process this command starts to
// serve: one that neither serves nor exits is an error, not a hang.
var startTimeout = 2 * time.Minute

// startBounded is node.Start, waiting at most startTimeout for the
// process to serve.
func startBounded(ctx context.Context, argv []string, logs io.Writer) (*node.Process, error) {
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	return node.Start(sctx, argv, nil, logs)
}

// startEcho starts this binary's echo-server on a free loopback port,
// receiving messages of up to maxMsg bytes; with a syncDir, the durable
// echo writing there.
func startEcho(ctx context.Context, syncDir string, maxMsg int) (*node.Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this binary to run the echo baseline: %w", err)
	}
	argv := []string{exe, "echo-server", "--listen", "127.0.0.1:0", "--max-message-size", strconv.Itoa(maxMsg)}
	if syncDir != "" {
		argv = append(argv, "--sync-dir", syncDir)
	}
	return startBounded(ctx, argv, nil)
}

// stopProcess stops p gracefully and reports a non-zero exit.
func stopProcess(p *node.Process, name string) error {
	if code := p.Stop(); code != 0 {
		return fmt.Errorf("%s ended: %s", name, p.Ended())
	}
	return nil
}
