// Command replicate is a shard leader on the command line: it speaks the
// Oxia replication protocol to any follower node (followerd) to read its
// status, fence it, truncate it, benchmark it, and, with demo, run the
// whole follower lifecycle against a real node. See docs/node.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/tablefsm/tablefsm/internal/buildinfo"
)

const usage = `Usage: replicate <command> [flags]

replicate is a shard leader on the command line: it speaks the Oxia
replication protocol to a follower node (followerd).

Commands:
  demo          run the whole follower lifecycle against a real followerd
  status        print a shard's term, status, head and commit (GetStatus)
  new-term      fence a shard at a term (NewTerm)
  truncate      cut a fenced shard's log back to a head entry (Truncate)
  delete-shard  delete a shard's follower and its data (DeleteShard)
  bench         stream entries; print entries/s, MiB/s and ack latency
  echo-server   serve the bare-stream baseline that bench compares with
  version       print the version of replicate

Run 'replicate <command> --help' (or 'replicate help <command>') for a
command's flags.
`

// command is one subcommand: it defines its flags on fs and returns the
// function that runs it once they are parsed.
type command struct {
	name  string
	short string
	setup func(fs *flag.FlagSet, env *env) func(ctx context.Context) error
}

var commands = []command{demoCommand, statusCommand, newTermCommand, truncateCommand, deleteCommand, benchCommand, echoCommand}

// env is what a command talks to: its output streams.
type env struct {
	stdout, stderr io.Writer
}

// usageError is an error in how a command was called (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	// SIGHUP stops it too, unless it was started with SIGHUP ignored
	// (nohup).
	stopSignals := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		stopSignals = append(stopSignals, syscall.SIGHUP)
	}
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	// With SIGPIPE notified (to a channel nobody reads), a write to a
	// standard output nobody reads any more fails with EPIPE instead of
	// killing the process, so that the command stops as if interrupted
	// and cleans up (the demo's nodes and temporary directory). Unlike
	// an ignored SIGPIPE, this one is not inherited by the nodes it runs.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errStdoutClosed stops a command whose standard output nobody reads any
// more (replicate demo | head -3).
var errStdoutClosed = errors.New("standard output closed")

// exitStdoutClosed is the exit status of such a command: what a shell
// reports for a process killed by SIGPIPE (set -o pipefail).
const exitStdoutClosed = 128 + 13

// stdoutWriter is a command's standard output: the first write that
// fails because nobody reads it any more (EPIPE) stops the command.
type stdoutWriter struct {
	w      io.Writer
	stop   context.CancelCauseFunc
	closed atomic.Bool
}

func (s *stdoutWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if errors.Is(err, syscall.EPIPE) {
		s.closed.Store(true)
		s.stop(errStdoutClosed)
	}
	return n, err
}

// isHelpFlag reports whether arg asks for help, as the flag package reads it.
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}

// run runs one command and returns the exit status: 0 on success, 1 on
// failure, 2 for a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--h", "--help", "help":
		if len(args) > 2 {
			fmt.Fprintf(stderr, "replicate %s: unexpected argument %q\nRun 'replicate help <command>' for a command's flags.\n", args[0], args[2])
			return 2
		}
		if len(args) > 1 && args[1] != "help" && !isHelpFlag(args[1]) {
			// replicate help <command> (or --help <command>): that
			// command's help.
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	case "-version", "--version", "version":
		if args[0] == "version" && len(args) == 2 && isHelpFlag(args[1]) {
			fmt.Fprint(stdout, "Usage: replicate version\n\nPrint the version of replicate (also: replicate --version). It takes no flags.\n")
			return 0
		}
		if len(args) > 1 {
			fmt.Fprintf(stderr, "replicate %s: unexpected argument %q\n", args[0], args[1])
			return 2
		}
		fmt.Fprintln(stdout, buildinfo.Version("replicate"))
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		fs := flag.NewFlagSet("replicate "+c.name, flag.ContinueOnError)
		ctx, stopCmd := context.WithCancelCause(ctx)
		defer stopCmd(nil)
		out := &stdoutWriter{w: stdout, stop: stopCmd}
		e := &env{stdout: out, stderr: stderr}
		runCmd := c.setup(fs, e)
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), "Usage: replicate %s [flags]\n\n%s\n\nFlags:\n", c.name, c.short)
			fs.PrintDefaults()
		}
		// Parse writes only the usage (help asked for: stdout) or an
		// error and the usage; which one is known once it returns. Of a
		// usage error, only the error goes to stderr, as the others.
		var parseOut bytes.Buffer
		fs.SetOutput(&parseOut)
		err := fs.Parse(args[1:])
		fs.SetOutput(stderr)
		if errors.Is(err, flag.ErrHelp) {
			_, _ = stdout.Write(parseOut.Bytes())
			return 0
		}
		if err == nil && fs.NArg() > 0 {
			err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		if err != nil {
			fmt.Fprintf(stderr, "replicate %s: %v\nRun 'replicate %s --help' for usage.\n", c.name, err, c.name)
			return 2
		}
		err = runCmd(ctx)
		if out.closed.Load() {
			return exitStdoutClosed
		}
		if err != nil {
			if ctx.Err() != nil {
				// Stopped (SIGINT, SIGTERM): whatever failed then
				// failed because of it (the nodes it started were
				// stopped too, a terminal's Ctrl-C stops them first).
				fmt.Fprintf(stderr, "replicate %s: stopped: %v\n", c.name, context.Cause(ctx))
				return 1
			}
			fmt.Fprintf(stderr, "replicate %s: %v\n", c.name, err)
			if errors.As(err, new(usageError)) {
				fmt.Fprintf(stderr, "Run 'replicate %s --help' for usage.\n", c.name)
				return 2
			}
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "replicate: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func usagef(format string, a ...any) error {
	return usageError{fmt.Sprintf(format, a...)}
}
