package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Process is a node running as a child process: a followerd binary, or
// any program that prints ListeningPrefix + address on stdout once it
// serves.
type Process struct {
	// Addr is the address the child serves on.
	Addr string

	cmd  *exec.Cmd
	done chan struct{} // closed once the child exited and was reaped
	err  error         // what Wait returned
}

// Start runs argv (program and arguments) with env added to this
// process's environment, sends its stderr to logs (nil: discard), and
// waits until it prints the address it serves on. A child that exits, or
// ctx that ends, first is an error; the child is then killed. On Linux,
// the child receives SIGHUP if this process dies first.
func Start(ctx context.Context, argv, env []string, logs io.Writer) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("node: no program to start")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logs
	endWithParent(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("node: starting %s: %w", argv[0], err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if line := sc.Text(); !found && strings.HasPrefix(line, ListeningPrefix) {
				found = true
				addr <- strings.TrimSpace(strings.TrimPrefix(line, ListeningPrefix))
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case p.Addr = <-addr:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("node: %s exited before serving: %s", argv[0], p.Ended())
	case <-ctx.Done():
		p.Kill()
		return nil, fmt.Errorf("node: waiting for %s to serve: %w", argv[0], context.Cause(ctx))
	}
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop asks the child to shut down gracefully (SIGTERM) and waits for it.
// It returns the child's exit status, -1 if a signal ended it.
func (p *Process) Stop() int {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.Wait()
}

// Signal sends sig to the child without waiting.
func (p *Process) Signal(sig os.Signal) { _ = p.cmd.Process.Signal(sig) }

// Kill kills the child at once (SIGKILL) and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Wait waits for the child to exit and returns its exit status, -1 if a
// signal ended it.
func (p *Process) Wait() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// Done is closed once the child exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Ended waits for the child to exit and says how it ended: "exit status
// 3", "signal: killed".
func (p *Process) Ended() string {
	<-p.done
	if p.err == nil {
		return "exit status 0"
	}
	return p.err.Error()
}
