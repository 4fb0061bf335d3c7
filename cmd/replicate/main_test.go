package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/node"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/tlstest"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store/kvpb"
)

// This test binary doubles as the programs the commands start: with
// REPLICATE_TEST_CHILD=1 it runs followerd (node.Main; with
// REPLICATE_TEST_MISBEHAVE, behind a proxy that alters its answers), or,
// for the echo-server command that bench starts from its own binary,
// replicate.
func TestMain(m *testing.M) {
	if os.Getenv("REPLICATE_TEST_AS_REPLICATE") == "1" {
		// This binary as replicate itself, through main; the nodes it
		// starts (this binary again) serve.
		os.Unsetenv("REPLICATE_TEST_AS_REPLICATE")
		os.Setenv("REPLICATE_TEST_CHILD", "1")
		main()
	}
	if broken := os.Getenv("REPLICATE_TEST_BROKEN_NODE"); os.Getenv("REPLICATE_TEST_CHILD") == "1" && broken != "" {
		// A node that logs an error and exits, before it serves or
		// once it said it serves where nothing listens.
		fmt.Fprintln(os.Stderr, `{"level":"ERROR","msg":"the disk is on fire"}`)
		if broken == "crashing" {
			// What the runtime writes when it dies: the report, then
			// far more stack than bench shows.
			fmt.Println(node.ListeningPrefix + "127.0.0.1:1")
			fmt.Fprintln(os.Stderr, "fatal error: out of memory")
			for g := range 100 {
				fmt.Fprintf(os.Stderr, "\ngoroutine %d [running]:\nsome/pkg.f()\n\t/src/f.go:1 +0x1\n", g)
			}
			os.Exit(2)
		}
		if broken == "serving" {
			fmt.Println(node.ListeningPrefix + "127.0.0.1:1")
		}
		os.Exit(3)
	}
	if os.Getenv("REPLICATE_TEST_CHILD") == "1" && os.Getenv("REPLICATE_TEST_STOP_STATUS") == "1" {
		// A node that serves, then exits 1 when stopped.
		if node.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr) == 0 {
			os.Exit(1)
		}
		os.Exit(2)
	}
	if mode := os.Getenv(misbehaveEnv); os.Getenv("REPLICATE_TEST_CHILD") == "1" && mode != "" {
		// A node behind a proxy that alters its answers (the demo's
		// checks must see it).
		os.Exit(misbehavingNode(mode, os.Args[1:]))
	}
	if os.Getenv("REPLICATE_TEST_CHILD") == "1" {
		if len(os.Args) > 1 && os.Args[1] == "echo-server" {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		}
		if os.Getenv("REPLICATE_TEST_NOISY_NODE") == "1" {
			// A node that logged a warning before it serves.
			fmt.Fprintln(os.Stderr, `{"level":"WARN","msg":"the disk is slow"}`)
		}
		os.Exit(node.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("REPLICATE_TEST_CHILD", "1") // inherited by the children only
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestDemo runs the whole demo against real followerd processes (this
// binary as followerd) and checks that every step happened.
func TestDemo(t *testing.T) {
	code, out, errOut := runCLI(t, "demo", "--followerd", os.Args[0], "--entries", "200")
	if code != 0 {
		t.Fatalf("demo: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"NODE_IS_NOT_MEMBER",
		"NotMember --NewTerm--> Fenced",
		"Fenced    --Truncate--> Follower",
		"all 200 keys equal the leader's",
		"killed (SIGKILL)",
		"NotMember --Restore--> Fenced",
		"nothing acknowledged lost",
		"FailedPrecondition INVALID_TERM",
		"NotMember --CommitInstall--> Follower",
		"Follower  --Delete--> Closed",
		// A row that moves back into its state, and one that stays.
		"Fenced    --NewTerm--> Fenced\n",
		"--AttachStream--> Follower (stays)\n",
		// The stale NewTerm's refusal is a step of its own, and so is
		// the stale stream's, refused when it attached.
		"node A lifecycle: Follower  --NewTerm--> refused: ",
		"Replicate(term 1) → FailedPrecondition INVALID_TERM",
		"node A lifecycle: Follower  --AttachStream--> refused: lifecycle: AttachStream refused in Follower (guard LeaderTermCurrent failed)",
		"node B lifecycle: NotMember --BeginInstall--> NotMember (stays)",
		"node A exited with status 0",
		"node B exited with status 0",
		"summary:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
	at := 0
	for n := 1; n <= 12; n++ {
		i := strings.Index(out[at:], fmt.Sprintf("\n== %d. ", n))
		if i < 0 {
			t.Fatalf("no step %d after offset %d:\n%s", n, at, out)
		}
		at += i + 1
	}
	// The summary's counts are those of the steps printed.
	atoi := func(re string) int {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %q in the demo's output:\n%s", re, out)
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	first := atoi(`→ (\d+) entries acknowledged, each only once durable`)
	second := atoi(`killed \(SIGKILL\) with (\d+) entries of the stream acknowledged`)
	third := atoi(`Replicate: (\d+) entries of term 2 acknowledged`)
	// The first read-back counts the keys the first stream's puts and
	// deletes leave present.
	kv := map[string]bool{}
	for off := range logpos.Offset(200) {
		var wb kvpb.WriteBatch
		if err := proto.Unmarshal(entryValue(1, off), &wb); err != nil {
			t.Fatal(err)
		}
		for _, op := range wb.GetOperations() {
			if p := op.GetPut(); p != nil {
				kv[string(p.GetKey())] = true
			}
			if d := op.GetDelete(); d != nil {
				delete(kv, string(d.GetKey()))
			}
		}
	}
	if got := atoi(`applied up to offset 199: all 200 keys equal the leader's \((\d+) present`); got != len(kv) {
		t.Errorf("after the first stream: %d keys present, want %d:\n%s", got, len(kv), out)
	}
	if first != 200 || third != 100 {
		t.Errorf("streams of %d and %d entries acknowledged, want 200 and 100 (--entries and half of it):\n%s", first, third, out)
	}
	if got := atoi(`summary: (\d+) entries acknowledged`); got != first+second+third {
		t.Errorf("summary: %d entries acknowledged, the streams printed %d + %d + %d:\n%s", got, first, second, third, out)
	}
	if got, want := atoi(`(\d+) lifecycle\nsteps shown`), len(regexp.MustCompile(`(?m)^   node \S+ lifecycle: `).FindAllString(out, -1)); got != want {
		t.Errorf("summary: %d lifecycle steps shown, the demo printed %d:\n%s", got, want, out)
	}
}

// cancelAt is a writer that cancels a context once what was written to
// it holds a given text.
type cancelAt struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	text   string
	cancel context.CancelCauseFunc
}

func (w *cancelAt) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.text) {
		w.cancel(errors.New("interrupt signal received"))
	}
	return len(p), nil
}

// TestDemoFailed: a demo that failed keeps its temporary directory when a
// node logged there, for the log, and says so; else it removes it.
func TestDemoFailed(t *testing.T) {
	t.Setenv("REPLICATE_TEST_CHILD", "1")
	for _, c := range []struct {
		name, followerd, broken string
		kept                    bool
	}{
		{"no such followerd", filepath.Join(t.TempDir(), "nothing"), "", false},
		{"a node failing at start", os.Args[0], "starting", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			t.Setenv("REPLICATE_TEST_BROKEN_NODE", c.broken)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"demo", "--followerd", c.followerd}, &stdout, &stderr)
			left, err := filepath.Glob(filepath.Join(tmp, "tablefsm-demo-*"))
			if err != nil {
				t.Fatal(err)
			}
			if code != 1 {
				t.Fatalf("status %d, stderr %q", code, stderr.String())
			}
			if !c.kept {
				// Nor does the error point at a log in it.
				if len(left) != 0 || strings.Contains(stderr.String(), "kept") || strings.Contains(stderr.String(), tmp) {
					t.Fatalf("left %q, stderr %q", left, stderr.String())
				}
				return
			}
			if len(left) != 1 || !strings.Contains(stderr.String(), "kept "+left[0]+" (node data and logs) after the failure") {
				t.Fatalf("left %q, stderr %q", left, stderr.String())
			}
			if logs, err := os.ReadFile(filepath.Join(left[0], "nodeA.log")); err != nil || !strings.Contains(string(logs), "the disk is on fire") {
				t.Fatalf("node A's log: %q, %v", logs, err)
			}
		})
	}
}

// TestDemoStopped: a demo stopped midway (as by Ctrl-C) says so, rather
// than what failed because of it, and removes its temporary directory:
// nothing failed that its data would explain.
func TestDemoStopped(t *testing.T) {
	t.Setenv("REPLICATE_TEST_CHILD", "1")
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for _, at := range []string{"== 1.", "== 4.", "== 6."} {
		ctx, cancel := context.WithCancelCause(context.Background())
		stdout := &cancelAt{text: at, cancel: cancel}
		var stderr bytes.Buffer
		code := run(ctx, []string{"demo", "--followerd", os.Args[0], "--entries", "200"}, stdout, &stderr)
		cancel(nil)
		if code != 1 || stderr.String() != "replicate demo: stopped: interrupt signal received\n" {
			t.Fatalf("stopped at %q: status %d, stderr %q", at, code, stderr.String())
		}
		if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
			t.Fatalf("stopped at %q: the temporary directory holds %v (%v), want nothing", at, left, err)
		}
	}
}

// closedPipe is a standard output that a reader closed (| head -3) once
// it had taken limit bytes: writes then fail with EPIPE.
type closedPipe struct {
	mu    sync.Mutex
	limit int
	buf   bytes.Buffer
}

func (w *closedPipe) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len()+len(p) > w.limit {
		return 0, &os.PathError{Op: "write", Path: "/dev/stdout", Err: syscall.EPIPE}
	}
	return w.buf.Write(p)
}

// TestDemoWithItsOutputClosed: a demo whose standard output nobody reads
// any more stops as if interrupted, with the exit status a shell gives a
// process killed by SIGPIPE, saying nothing; it stops its nodes and
// removes its temporary directory.
func TestDemoWithItsOutputClosed(t *testing.T) {
	t.Setenv("REPLICATE_TEST_CHILD", "1")
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for _, limit := range []int{0, 300, 2000} {
		var stderr bytes.Buffer
		stdout := &closedPipe{limit: limit}
		code := run(context.Background(), []string{"demo", "--followerd", os.Args[0], "--entries", "200"}, stdout, &stderr)
		if code != exitStdoutClosed || stderr.Len() != 0 {
			t.Fatalf("output closed after %d bytes: status %d, stderr %q, output:\n%s", limit, code, stderr.String(), stdout.buf.String())
		}
		if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
			t.Fatalf("output closed after %d bytes: the temporary directory holds %v (%v), want nothing", limit, left, err)
		}
	}
}

// TestDemoPipedIntoHead: replicate demo | head -1 is not killed by
// SIGPIPE at its first write past what head read: it stops its nodes,
// removes its temporary directory and exits with the status a shell
// gives a command killed by SIGPIPE, saying nothing.
func TestDemoPipedIntoHead(t *testing.T) {
	tmp := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "demo", "--followerd", os.Args[0], "--entries", "200")
	cmd.Env = append(os.Environ(), "REPLICATE_TEST_AS_REPLICATE=1", "TMPDIR="+tmp)
	cmd.Stdout = w
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if err != nil || !strings.HasPrefix(line, "tablefsm demo:") {
		t.Fatalf("the demo's first line: %q, %v", line, err)
	}
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != exitStdoutClosed {
		t.Fatalf("the demo ended with %v, want exit status %d; stderr:\n%s", err, exitStdoutClosed, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %q, want nothing", stderr.String())
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Fatalf("the temporary directory holds %v (%v), want nothing", left, err)
	}
}

// TestBench runs a small bench against a local followerd and the echo
// baseline (both this binary).
func TestBench(t *testing.T) {
	code, out, errOut := runCLI(t, "bench", "--followerd", os.Args[0], "--entries", "300", "--window", "50", "--rounds", "1", "--idle", "20", "--progress=false")
	if code != 0 {
		t.Fatalf("bench: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"round 1  baseline", "round 1  durable echo", "round 1  followerd", "% of the bare stream", "the most a follower that acks only durable entries reaches", "followerd ack", "fsync + round trip", "durable echo", "stream round trip", "fsync", "budget", "measured apart"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
	checkBenchNumbers(t, out, 100)
	code, out, errOut = runCLI(t, "bench", "--followerd", os.Args[0], "--entries", "100", "--acks", "per-entry", "--rounds", "1", "--idle", "0", "--baseline=false", "--progress=false")
	if code != 0 || !strings.Contains(out, "per-entry acks, 1 round\n") {
		t.Fatalf("per-entry bench: status %d\n%s\n%s", code, out, errOut)
	}
	// 100 entries, the default window of 1000: all 100 in flight.
	if !strings.Contains(out, "100 entries × 100 B per stream, window 100 (every entry; --window 1000), per-entry acks") {
		t.Errorf("per-entry bench of fewer entries than the window:\n%s", out)
	}
	// Entries above gRPC's own default message size (4 MiB): the nodes
	// the bench starts take them.
	code, out, errOut = runCLI(t, "bench", "--followerd", os.Args[0], "--entries", "3", "--entry-size", strconv.Itoa(5<<20), "--window", "2", "--rounds", "1", "--idle", "1", "--progress=false")
	if code != 0 || !strings.Contains(out, "round 1  followerd") {
		t.Fatalf("bench of 5 MiB entries: status %d\n%s\n%s", code, out, errOut)
	}
	// Each entry is 5 MiB: each MiB/s is five times the entries/s.
	checkBenchNumbers(t, out, 5<<20)
}

// checkBenchNumbers checks that the numbers a one-round bench of entries
// of entrySize bytes printed agree with each other: each MiB/s with its
// entries/s, the ratio with the two rates, the budget with the p50 it is
// made of.
func checkBenchNumbers(t *testing.T, out string, entrySize int) {
	t.Helper()
	num := func(s string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%q in the bench output: %v\n%s", s, err, out)
		}
		return v
	}
	dur := func(s string) float64 { // in µs
		t.Helper()
		if v, ok := strings.CutSuffix(s, "ms"); ok {
			return num(v) * 1000
		}
		return num(strings.TrimSuffix(s, "µs"))
	}
	// A MiB/s printed with one decimal, from entries of entrySize or
	// entrySize-1 bytes, against entries/s printed whole.
	mibOf := func(rate, mib float64) {
		t.Helper()
		want := rate * float64(entrySize) / (1 << 20)
		if mib < want*(1-0.02)-0.06 || mib > want*(1+0.02)+0.06 {
			t.Errorf("%v entries/s of %d B printed as %v MiB/s, want about %.2f\n%s", rate, entrySize, mib, want, out)
		}
	}
	fields := func(prefix string) []string {
		t.Helper()
		for _, line := range strings.Split(out, "\n") {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return strings.Fields(rest)
			}
		}
		t.Fatalf("no line starting %q in the bench output:\n%s", prefix, out)
		return nil
	}
	for _, name := range []string{"baseline", "durable echo", "followerd"} {
		f := fields("round 1  " + name) // rate entries/s mib MiB/s ...
		mibOf(num(f[0]), num(f[2]))
	}
	f := fields("throughput  followerd ") // rate entries/s (mib MiB/s), ...
	fRate := num(f[0])
	mibOf(fRate, num(strings.TrimPrefix(f[2], "(")))
	bRate := num(fields("            baseline ")[0])
	if ratio, want := num(fields("            ratio ")[0]), 100*fRate/bRate; ratio < want*0.98-1 || ratio > want*1.02+1 {
		t.Errorf("followerd %v and baseline %v entries/s printed as a ratio of %v %%, want about %.0f\n%s", fRate, bRate, ratio, want, out)
	}
	// With fewer than 100 idle entries per side, the 99th percentile is the
	// slowest entry: each idle line prints its p99 as its max.
	for _, name := range []string{"followerd ack", "fsync + round trip", "stream round trip", "fsync  "} {
		f := fields("  " + name) // p50 X p99 Y max Z ...
		if f[2] != "p99" || f[4] != "max" || f[3] != f[5] {
			t.Errorf("%s: p99 %s and max %s, want the slowest of fewer than 100 entries for both\n%s", name, f[3], f[5], out)
		}
	}
	p50 := dur(fields("  fsync + round trip ")[1]) // p50 X p99 ...
	b := fields("  budget ")                       // p50 ≤ fsync + round trip + 50µs = X: ...
	// Both printed in whole µs, or in tenths of a ms.
	tol := 1.0
	if strings.HasSuffix(b[9], "ms:") {
		tol = 100
	}
	if budget := dur(strings.TrimSuffix(b[9], ":")); budget < p50+50-tol || budget > p50+50+tol {
		t.Errorf("budget %vµs, want the durable echo's p50 %vµs + 50µs\n%s", budget, p50, out)
	}
}

// ackOnce is a node that acknowledges a stream's first entry, then
// nothing: a node whose disk hangs after a while.
type ackOnce struct{ stalledNode }

func (ackOnce) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	acked := false
	for {
		a, err := s.Recv()
		if err != nil {
			return err
		}
		if a.GetEntry() != nil && !acked {
			acked = true
			if err := s.Send(&replicationpb.Ack{Offset: a.GetEntry().GetOffset()}); err != nil {
				return err
			}
		}
	}
}

// TestBenchShowsTheLocalNodesLog: when the bench fails, the warnings and
// errors its local node logged are shown, whether it failed to start or
// failed once serving.
func TestBenchShowsTheLocalNodesLog(t *testing.T) {
	// A node that crashed: the lines up to its crash and the report's
	// first line, not the end of its stack traces.
	t.Run("crashing", func(t *testing.T) {
		t.Setenv("REPLICATE_TEST_BROKEN_NODE", "crashing")
		code, out, errOut := runCLI(t, "bench", "--followerd", os.Args[0], "--entries", "10", "--rounds", "1", "--idle", "0", "--baseline=false", "--progress=false")
		if code != 1 || !strings.Contains(errOut, "the local followerd's log up to its crash:\n  {\"level\":\"ERROR\",\"msg\":\"the disk is on fire\"}\n  fatal error: out of memory\n  \n  goroutine 0 [running]:") || strings.Contains(errOut, "goroutine 99") {
			t.Fatalf("bench with a crashing node: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})
	for _, when := range []string{"starting", "serving"} {
		t.Run(when, func(t *testing.T) {
			t.Setenv("REPLICATE_TEST_BROKEN_NODE", when) // inherited by the child
			code, out, errOut := runCLI(t, "bench", "--followerd", os.Args[0], "--entries", "10", "--rounds", "1", "--idle", "0", "--baseline=false", "--progress=false")
			if code != 1 || !strings.Contains(errOut, "the local followerd's last warnings and errors:\n  {\"level\":\"ERROR\",\"msg\":\"the disk is on fire\"}") {
				t.Fatalf("bench with a broken node: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			// How the node ended: in the start's error when it never
			// served; after the failed stream otherwise, however soon
			// the stream failed after the node's end.
			want := "exited before serving: exit status 3"
			if when == "serving" {
				want = "the local followerd ended: exit status 3\n"
			}
			if !strings.Contains(errOut, want) {
				t.Fatalf("bench with a broken node: stderr does not say %q:\n%s", want, errOut)
			}
		})
	}
}

// stalledNode is a node that takes a shard and a stream, then never
// acknowledges anything: a node whose disk hangs, say.
type stalledNode struct {
	replicationgrpc.UnimplementedOxiaCoordinationServer
	replicationgrpc.UnimplementedOxiaLogReplicationServer
}

func (stalledNode) GetStatus(context.Context, *replicationpb.GetStatusRequest) (*replicationpb.GetStatusResponse, error) {
	return &replicationpb.GetStatusResponse{Status: replicationpb.ServingStatus_FOLLOWER, HeadOffset: -1, CommitOffset: -1}, nil
}

func (stalledNode) NewTerm(context.Context, *replicationpb.NewTermRequest) (*replicationpb.NewTermResponse, error) {
	return &replicationpb.NewTermResponse{HeadEntryId: &replicationpb.EntryId{Term: -1, Offset: -1}}, nil
}

func (stalledNode) Truncate(_ context.Context, r *replicationpb.TruncateRequest) (*replicationpb.TruncateResponse, error) {
	return &replicationpb.TruncateResponse{HeadEntryId: &replicationpb.EntryId{Term: r.GetTerm(), Offset: -1}}, nil
}

func (stalledNode) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	for {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
}

// slowApplier acknowledges every entry at once but applies none: a Get
// waiting for an offset to be applied waits until its caller gives up.
type slowApplier struct {
	stalledNode
	inspectpb.UnimplementedInspectServer
}

func (slowApplier) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	for {
		a, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if a.GetEntry() != nil {
			if err := s.Send(&replicationpb.Ack{Offset: a.GetEntry().GetOffset()}); err != nil {
				return err
			}
		}
	}
}

func (slowApplier) Get(ctx context.Context, _ *inspectpb.GetRequest) (*inspectpb.GetResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// keptLog is a slowApplier whose log holds entries 0..9 that no leader
// advertised committed: bench advertises them while fencing, and its
// first stream starts by waiting for them to be applied, which never
// happens. No stream runs before that wait, so no ack is waited for
// under --stall-timeout: on a loaded machine a first ack slower than
// the short --stall-timeout would end the bench as "no ack" before the
// wait these cases are about (it did, about once in a hundred runs).
type keptLog struct{ slowApplier }

func (keptLog) Truncate(_ context.Context, r *replicationpb.TruncateRequest) (*replicationpb.TruncateResponse, error) {
	return &replicationpb.TruncateResponse{HeadEntryId: &replicationpb.EntryId{Term: r.GetTerm(), Offset: 9}}, nil
}

// deadlineFirst is a slowApplier whose copy of the caller's deadline ends
// before the caller's own: its Get answers DeadlineExceeded while the
// caller's context is still live.
type deadlineFirst struct{ slowApplier }

func (deadlineFirst) Get(context.Context, *inspectpb.GetRequest) (*inspectpb.GetResponse, error) {
	return nil, status.Error(codes.DeadlineExceeded, "context deadline exceeded")
}

// TestBenchGivesUpOnAStalledNode: bench against a node that stops
// acknowledging, or applying what it acknowledged, ends with an error
// saying so, rather than waiting for ever.
func TestBenchGivesUpOnAStalledNode(t *testing.T) {
	for _, c := range []struct {
		name        string
		replication replicationgrpc.OxiaLogReplicationServer
		inspect     inspectpb.InspectServer
		rounds      string
		want        string
	}{
		{"acking nothing", stalledNode{}, slowApplier{}, "1", "the node stalled: no ack for --stall-timeout 50ms"},
		{"acking once", ackOnce{}, slowApplier{}, "1", "the node stalled: no ack for --stall-timeout 50ms"},
		{"applying nothing", keptLog{}, slowApplier{}, "1", "waiting for offset 9 to be applied: the node stalled: not applied within --stall-timeout 50ms"},
		{"applying nothing, the node's deadline first", keptLog{}, deadlineFirst{}, "1", "waiting for offset 9 to be applied: the node stalled: not applied within --stall-timeout 50ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			replicationgrpc.RegisterOxiaCoordinationServer(srv, slowApplier{})
			replicationgrpc.RegisterOxiaLogReplicationServer(srv, c.replication)
			inspectpb.RegisterInspectServer(srv, c.inspect)
			served := make(chan error, 1)
			go func() { served <- srv.Serve(lis) }()
			defer func() {
				srv.Stop()
				<-served
			}()
			code, out, errOut := runCLI(t, "bench", "--target", lis.Addr().String(), "--entries", "10", "--rounds", c.rounds,
				"--idle", "0", "--baseline=false", "--progress=false", "--stall-timeout", "50ms")
			if code != 1 || !strings.Contains(errOut, c.want) {
				t.Fatalf("bench against a stalled node: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
		})
	}
}

// childFollowerd starts this test binary as a followerd over a temporary
// data directory, with the extra flags, killed when the test ends.
func childFollowerd(t *testing.T, extra ...string) *node.Process {
	t.Helper()
	t.Setenv("REPLICATE_TEST_CHILD", "1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := startFollowerd(ctx, []string{os.Args[0]}, t.TempDir(), nil, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// dialNode connects a leader to the node at addr, closed when the test
// ends, and returns it with a context for its calls that ends with the
// test or after a minute.
func dialNode(t *testing.T, addr string) (*leader.Conn, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	c, err := leader.Dial(addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, ctx
}

// TestCommands drives status, new-term, truncate and delete-shard against
// a followerd.
func TestCommands(t *testing.T) {
	p := childFollowerd(t)
	target := []string{"--target", p.Addr, "--namespace", "cli", "--shard", "3"}
	steps := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"status"}, 1, ""},
		{[]string{"new-term", "--term", "2", "--key-sorting", "natural"}, 0, "cli/3 fenced at term 2: head {-1,-1}"},
		{[]string{"status"}, 0, "cli/3 term=2 status=FENCED head=-1 commit=-1"},
		{[]string{"truncate", "--term", "2"}, 0, "cli/3 truncated: head {2,-1}"},
		{[]string{"status"}, 0, "status=FOLLOWER"},
		{[]string{"new-term", "--term", "1"}, 1, ""},
		{[]string{"delete-shard", "--term", "1"}, 1, ""},
		{[]string{"status"}, 0, "cli/3 term=2 status=FOLLOWER"},
		{[]string{"delete-shard", "--term", "2"}, 0, "cli/3 deleted"},
		{[]string{"status"}, 1, ""},
		{[]string{"delete-shard", "--term", "2"}, 0, "cli/3 deleted"},
	}
	for _, s := range steps {
		code, out, errOut := runCLI(t, append(append([]string{s.args[0]}, target...), s.args[1:]...)...)
		if code != s.code || !strings.Contains(out, s.out) {
			t.Fatalf("%v: status %d, stdout %q, stderr %q", s.args, code, out, errOut)
		}
		if code == 1 && !strings.Contains(errOut, "replicate "+s.args[0]+": rpc error") {
			t.Fatalf("%v: stderr %q", s.args, errOut)
		}
	}
	// An empty namespace is the default one, as GetStatus reads it: so
	// the status names it.
	if code, out, errOut := runCLI(t, "new-term", "--target", p.Addr, "--shard", "4", "--term", "1"); code != 0 {
		t.Fatalf("new-term: status %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, "status", "--target", p.Addr, "--namespace", "", "--shard", "4"); code != 0 || out != "default/4 term=1 status=FENCED head=-1 commit=-1\n" {
		t.Fatalf("status of an empty namespace: status %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code := p.Stop(); code != 0 {
		t.Fatalf("followerd exited with %d", code)
	}
}

// TestCommandsOverTLS: the --tls-* flags take a command to a node that
// serves over mutual TLS; without them, without a client certificate,
// or checking another name than the node's certificate carries, the
// command fails. Any of them turns TLS on, --tls-server-name alone
// included (trusting the system's authorities), and --tls-cert and
// --tls-key go together.
func TestCommandsOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	cert, key := ca.Server(t, "node")
	leaderCert, leaderKey := ca.Client(t, "leader")
	p := childFollowerd(t, "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca.File)
	target := []string{"--target", p.Addr, "--namespace", "tls", "--shard", "1"}
	tls := []string{"--tls-ca", ca.File, "--tls-cert", leaderCert, "--tls-key", leaderKey}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	steps := []struct {
		args   []string
		code   int
		out    string
		stderr string
	}{
		{append([]string{"new-term", "--term", "1"}, tls...), 0, "tls/1 fenced at term 1", ""},
		{append([]string{"status"}, tls...), 0, "tls/1 term=1 status=FENCED", ""},
		{append([]string{"status", "--tls-server-name", "localhost"}, tls...), 0, "tls/1 term=1 status=FENCED", ""},
		{[]string{"status"}, 1, "", "Unavailable"},
		{[]string{"status", "--tls-ca", ca.File}, 1, "", "Unavailable"},
		{append([]string{"status", "--tls-server-name", "node.example"}, tls...), 1, "", "not node.example"},
		{[]string{"status", "--tls-ca", missing}, 1, "", "tls: certificate authorities: open " + missing},
		{[]string{"status", "--tls-ca", ca.File, "--tls-cert", leaderCert}, 2, "", "--tls-cert and --tls-key go together"},
		{[]string{"status", "--tls-ca", ca.File, "--tls-key", leaderKey}, 2, "", "--tls-cert and --tls-key go together"},
		// --tls-server-name alone turns TLS on, trusting the system's
		// authorities, which did not sign the node's certificate.
		{[]string{"status", "--tls-server-name", "localhost"}, 1, "", "certificate signed by unknown authority"},
	}
	for _, s := range steps {
		code, out, errOut := runCLI(t, append(append([]string{s.args[0]}, target...), s.args[1:]...)...)
		if code != s.code || !strings.Contains(out, s.out) || !strings.Contains(errOut, s.stderr) {
			t.Errorf("%v: status %d (want %d), stdout %q, stderr %q", s.args, code, s.code, out, errOut)
		}
	}
	if code := p.Stop(); code != 0 {
		t.Fatalf("followerd exited with %d", code)
	}
}

func TestUsage(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		stderr string
		stdout string
	}{
		{nil, 2, "Usage: replicate <command>", ""},
		{[]string{"--help"}, 0, "", "Commands:"},
		{[]string{"-h"}, 0, "", "Commands:"},
		{[]string{"help"}, 0, "", "Commands:"},
		{[]string{"help", "truncate"}, 0, "", "Usage: replicate truncate"},
		{[]string{"help", "frobnicate"}, 2, `unknown command "frobnicate"`, ""},
		// The help flags take a command too, as help does: what follows
		// is not dropped.
		{[]string{"--help", "truncate"}, 0, "", "Usage: replicate truncate"},
		{[]string{"-h", "frobnicate"}, 2, `unknown command "frobnicate"`, ""},
		{[]string{"-help", "status", "extra"}, 2, `replicate -help: unexpected argument "extra"`, ""},
		{[]string{"help", "help"}, 0, "", "Commands:"},
		{[]string{"help", "--help"}, 0, "", "Commands:"},
		{[]string{"--help", "-h"}, 0, "", "Commands:"},
		{[]string{"--h"}, 0, "", "Commands:"},
		{[]string{"help", "status", "extra"}, 2, `replicate help: unexpected argument "extra"`, ""},
		{[]string{"version"}, 0, "", "replicate "},
		{[]string{"--version"}, 0, "", "replicate "},
		{[]string{"-version", "status"}, 2, `unexpected argument "status"`, ""},
		{[]string{"version", "--help"}, 0, "", "Usage: replicate version"},
		{[]string{"version", "-h"}, 0, "", "Usage: replicate version"},
		{[]string{"version", "-help"}, 0, "", "Usage: replicate version"},
		{[]string{"version", "--h"}, 0, "", "Usage: replicate version"},
		{[]string{"help", "version"}, 0, "", "Usage: replicate version"},
		{[]string{"--version", "--help"}, 2, `unexpected argument "--help"`, ""},
		{[]string{"version", "--help", "x"}, 2, `unexpected argument "--help"`, ""},
		// A target is HOST:PORT: gRPC would take a host alone for host:443.
		{[]string{"status", "--target", "127.0.0.1"}, 2, `invalid --target "127.0.0.1": want HOST:PORT`, ""},
		{[]string{"status", "--target", ""}, 2, `invalid --target "": want HOST:PORT`, ""},
		{[]string{"status", "--target", ":6649"}, 2, "missing host", ""},
		{[]string{"status", "--target", "localhost:http"}, 2, `invalid port "http"`, ""},
		{[]string{"new-term", "--term", "1", "--target", "127.0.0.1:99999"}, 2, `invalid port "99999"`, ""},
		{[]string{"bench", "--target", "127.0.0.1:0"}, 2, "port 0 names no node", ""},
		{[]string{"status", "--shard", "-0"}, 2, "-0 is written 0", ""},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`, ""},
		{[]string{"status", "--help"}, 0, "", "Usage: replicate status"},
		{[]string{"new-term", "-h"}, 0, "", "-key-sorting sorting"},
		{[]string{"bench", "--help"}, 0, "", "use a scratch shard"},
		{[]string{"demo", "-help"}, 0, "", "Usage: replicate demo"},
		{[]string{"echo-server", "--help"}, 0, "", "Usage: replicate echo-server"},
		{[]string{"echo-server", "--listen", "foo"}, 2, `invalid --listen "foo"`, ""},
		{[]string{"status", "--nope"}, 2, "flag provided but not defined", ""},
		{[]string{"status", "--nope", "--help"}, 2, "flag provided but not defined", ""},
		{[]string{"status", "--shard", "x"}, 2, `invalid value "x" for flag -shard`, ""},
		// Numbers are decimal: Go's octal, hex and digit separators would
		// name another shard or term than an operator meant.
		{[]string{"status", "--shard", "010"}, 2, `invalid value "010" for flag -shard: a decimal number has no leading zeros`, ""},
		{[]string{"new-term", "--term", "0x10"}, 2, `invalid value "0x10" for flag -term: not a decimal number`, ""},
		{[]string{"bench", "--entries", "1_000"}, 2, `invalid value "1_000" for flag -entries: not a decimal number`, ""},
		{[]string{"status", "extra"}, 2, `unexpected argument "extra"`, ""},
		{[]string{"new-term"}, 2, "--term is required", ""},
		{[]string{"new-term", "--term", "-1"}, 2, "--term is required and must be ≥ 0", ""},
		{[]string{"new-term", "--term", "1", "--key-sorting", "random"}, 2, "invalid --key-sorting", ""},
		{[]string{"truncate"}, 2, "--term is required", ""},
		{[]string{"truncate", "--term", "-1"}, 2, "--term is required and must be ≥ 0", ""},
		{[]string{"truncate", "--term", "1", "--head-offset", "-7"}, 2, "--head-term and --head-offset must be ≥ -1", ""},
		{[]string{"truncate", "--term", "1", "--head-term", "-2", "--head-offset", "3"}, 2, "--head-term and --head-offset must be ≥ -1", ""},
		{[]string{"delete-shard"}, 2, "--term is required", ""},
		{[]string{"delete-shard", "--term", "-1"}, 2, "--term is required and must be ≥ 0", ""},
		{[]string{"delete-shard", "--help"}, 0, "", "Usage: replicate delete-shard"},
		{[]string{"bench", "--acks", "sometimes"}, 2, "--acks must be", ""},
		{[]string{"bench", "--target", "127.0.0.1:6649", "--followerd", "/bin/true"}, 2, "--followerd is the node bench starts, --target one it does not", ""},
		{[]string{"bench", "--entries", "0"}, 2, "--entries must be positive", ""},
		{[]string{"bench", "--entry-size", "30"}, 2, `--entry-size must be at least 31 (a put of the longest key, "bench/9223372036854775807", with an empty value)`, ""},
		{[]string{"bench", "--window", "100000000000000"}, 2, "--window must be at most", ""},
		{[]string{"bench", "--entry-size", "9223372036854775807"}, 2, "--entry-size must be at most 268435456 (the largest entry a follower's log takes)", ""},
		{[]string{"bench", "--stall-timeout", "0s"}, 2, "--stall-timeout must be positive", ""},
		{[]string{"bench", "--rounds", "0"}, 2, "--rounds must be positive", ""},
		{[]string{"bench", "--window", "0"}, 2, "--window must be positive", ""},
		{[]string{"bench", "--idle", "-1"}, 2, "--idle must be ≥ 0", ""},
		{[]string{"echo-server", "--max-message-size", "0"}, 2, "--max-message-size must be positive", ""},
		{[]string{"status", "--timeout", "0"}, 2, "--timeout must be positive", ""},
		{[]string{"delete-shard", "--term", "1", "--timeout", "-1s"}, 2, "--timeout must be positive", ""},
		{[]string{"demo", "--entries", "3"}, 2, "--entries must be at least 10", ""},
	}
	for _, c := range cases {
		code, out, errOut := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.stderr) || !strings.Contains(out, c.stdout) {
			t.Errorf("%v: status %d (want %d)\nstdout %q\nstderr %q", c.args, code, c.code, out, errOut)
			continue
		}
		// Help asked for goes to stdout only; a usage error to stderr only.
		if c.code == 0 && errOut != "" {
			t.Errorf("%v: help wrote to stderr: %q", c.args, errOut)
		}
		if c.code == 2 && out != "" {
			t.Errorf("%v: a usage error wrote to stdout: %q", c.args, out)
		}
		// A command's usage error, a flag the flag package refused
		// included, is one line and where to find the usage, not the
		// command's help.
		if c.code == 2 && len(c.args) > 0 && slices.ContainsFunc(commands, func(cmd command) bool { return cmd.name == c.args[0] }) &&
			(strings.Count(errOut, "\n") != 2 || !strings.HasPrefix(errOut, "replicate "+c.args[0]+": ") || !strings.HasSuffix(errOut, "\nRun 'replicate "+c.args[0]+" --help' for usage.\n")) {
			t.Errorf("%v: stderr %q, want the error on one line, then where the usage is", c.args, errOut)
		}
	}
}

// TestHelpShowsNoDefaultForRequiredFlags: a required flag's help line says
// so, without a default value.
func TestHelpShowsNoDefaultForRequiredFlags(t *testing.T) {
	for _, cmd := range []string{"new-term", "truncate", "delete-shard"} {
		_, out, _ := runCLI(t, cmd, "--help")
		_, after, ok := strings.Cut(out, "  -term term\n")
		line, _, _ := strings.Cut(after, "\n")
		if !ok || !strings.HasSuffix(line, "(required)") {
			t.Errorf("%s --help: the -term line is %q, want it to end in (required):\n%s", cmd, line, out)
		}
	}
}

func TestMedianRate(t *testing.T) {
	run := func(acked int64) leader.Result { return leader.Result{Acked: acked, Elapsed: time.Second} }
	for _, c := range []struct {
		runs []leader.Result
		want float64
	}{
		{[]leader.Result{run(5)}, 5},
		{[]leader.Result{run(9), run(1), run(5)}, 5},
		{[]leader.Result{run(7), run(1)}, 4},
		{[]leader.Result{run(8), run(2), run(4), run(6)}, 5},
	} {
		if got := medianRate(c.runs); got != c.want {
			t.Errorf("median of %v = %v, want %v", c.runs, got, c.want)
		}
	}
}

// TestDurableEchoRemovesItsFileWhenStopped: the durable echo-server,
// stopped while a stream is open, has removed the stream's file when it
// returns, and the directory when it created it.
func TestDurableEchoRemovesItsFileWhenStopped(t *testing.T) {
	t.Run("existing directory", func(t *testing.T) {
		dir := t.TempDir()
		stopDurableEchoMidStream(t, dir)
		if names, err := os.ReadDir(dir); err != nil || len(names) != 0 {
			t.Fatalf("after the echo-server returned, %s holds %v, %v", dir, names, err)
		}
	})
	t.Run("directory it created", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "echo")
		stopDurableEchoMidStream(t, dir)
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("after the echo-server returned, the directory it created: %v", err)
		}
	})
}

// stopDurableEchoMidStream runs the durable echo-server writing to dir,
// and stops it while a stream is open.
func stopDurableEchoMidStream(t *testing.T, dir string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	ended := make(chan int, 1)
	go func() {
		ended <- run(ctx, []string{"echo-server", "--listen", "127.0.0.1:0", "--sync-dir", dir}, outW, io.Discard)
		_ = outW.Close()
	}()
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	c, err := leader.Dial(strings.TrimSpace(strings.TrimPrefix(line, node.ListeningPrefix)), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acked := make(chan struct{}, 1)
	streamed := make(chan error, 1)
	go func() {
		_, err := c.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "echo"}, Term: 1, Count: 1 << 40, Window: 1,
			Value: func(_ logpos.Offset, b []byte) []byte { return append(b, "v"...) },
			OnAck: func(logpos.Offset) {
				select {
				case acked <- struct{}{}:
				default:
				}
			}})
		streamed <- err
	}()
	<-acked
	if names, err := os.ReadDir(dir); err != nil || len(names) != 1 {
		t.Fatalf("while streaming, %s holds %v, %v; want the stream's file", dir, names, err)
	}
	cancel()
	if code := <-ended; code != 0 {
		t.Fatalf("echo-server exited %d", code)
	}
	<-streamed
}

// TestBenchOnAShardWithUncommittedEntries: bench --target on a shard whose
// log holds entries no leader advertised committed (a bench interrupted
// mid-stream leaves them; so does a node restarted) fences it, takes its
// log as its own and measures, rather than waiting for the node to apply
// entries nobody told it to apply and calling the node stalled.
func TestBenchOnAShardWithUncommittedEntries(t *testing.T) {
	p := childFollowerd(t)
	c, ctx := dialNode(t, p.Addr)
	// Entries 0..n-1 in shard n, acknowledged, never advertised
	// committed; one entry (offset 0) too.
	for _, n := range []int64{10, 1} {
		s := leader.Shard{Namespace: "bench", Shard: n}
		head, err := c.NewTerm(ctx, s, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Truncate(ctx, s, 1, head); err != nil {
			t.Fatal(err)
		}
		stream, err := c.Replication.Replicate(leader.StreamContext(ctx, s))
		if err != nil {
			t.Fatal(err)
		}
		for o := range n {
			if err := stream.Send(&replicationpb.Append{Term: 1, Entry: &replicationpb.LogEntry{Term: 1, Offset: o, Value: leader.AppendPut(nil, []byte("k"), []byte("v"))}, CommitOffset: -1, CumulativeAcksSupported: true}); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := stream.Recv(); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if st, err := c.Status(ctx, s); err != nil || st.GetHeadOffset() != n-1 || st.GetCommitOffset() != -1 {
			t.Fatalf("the shard before the bench: %v, %v; want head %d, commit -1", st, err, n-1)
		}
		code, out, errOut := runCLI(t, "bench", "--target", p.Addr, "--namespace", "bench", "--shard", strconv.FormatInt(n, 10), "--entries", "10", "--rounds", "1",
			"--idle", "0", "--baseline=false", "--progress=false", "--stall-timeout", "5s")
		// Fenced at the shard's term + 1, deposing its leader.
		if code != 0 || !strings.Contains(out, fmt.Sprintf("term 2, from offset %d", n)) {
			t.Fatalf("bench on a shard with %d uncommitted entries: status %d\nstdout:\n%s\nstderr:\n%s", n, code, out, errOut)
		}
	}
	if code := p.Stop(); code != 0 {
		t.Fatalf("followerd exited with %d", code)
	}
}

// TestBenchFollowerdThatNeverServes: a followerd that neither serves nor
// exits makes bench fail, once it has waited startTimeout, rather than
// hang.
func TestBenchFollowerdThatNeverServes(t *testing.T) {
	prog := filepath.Join(t.TempDir(), "silent")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { startTimeout = d }(startTimeout)
	startTimeout = time.Second
	code, out, errOut := runCLI(t, "bench", "--followerd", prog, "--entries", "10", "--rounds", "1", "--idle", "0", "--baseline=false", "--progress=false")
	if code != 1 || !strings.Contains(errOut, "to serve") {
		t.Fatalf("bench with a followerd that never serves: status %d, want 1 and the wait named\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func TestEntryRate(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want string
	}{
		{0, "0"}, {0.4, "0.4"}, {0.04321, "0.0432"}, {12.345, "12.3"}, {99.94, "99.9"}, {100, "100"}, {123456.7, "123457"},
	} {
		if got := entryRate(c.rate); got != c.want {
			t.Errorf("entryRate(%v) = %q, want %q", c.rate, got, c.want)
		}
	}
}

// TestBenchStreamsWhatItSays: bench sends --entries per round and --idle
// entries one at a time, each stream going on where the last one ended:
// the node's log holds them all, one after the other.
func TestBenchStreamsWhatItSays(t *testing.T) {
	p := childFollowerd(t)
	code, out, errOut := runCLI(t, "bench", "--target", p.Addr, "--namespace", "bench", "--shard", "5", "--entries", "10", "--rounds", "2",
		"--idle", "20", "--baseline=false", "--progress=false")
	if code != 0 {
		t.Fatalf("bench: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	c, ctx := dialNode(t, p.Addr)
	// A new shard: fenced at term 0, from offset 0; 2 × 10 + 20 entries.
	if st, err := c.Status(ctx, leader.Shard{Namespace: "bench", Shard: 5}); err != nil || st.GetTerm() != 0 || st.GetHeadOffset() != 39 {
		t.Fatalf("the shard after the bench: %v, %v; want term 0, head 39\n%s", st, err, out)
	}
	if code := p.Stop(); code != 0 {
		t.Fatalf("followerd exited with %d", code)
	}
}

// TestBenchStopped: a bench stopped midway (as by Ctrl-C) says so, and
// nothing else: not what its node logged, which explains failures, not
// a stop. It removes its temporary directory.
func TestBenchStopped(t *testing.T) {
	t.Setenv("REPLICATE_TEST_CHILD", "1")
	t.Setenv("REPLICATE_TEST_NOISY_NODE", "1") // inherited by the child
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithCancelCause(context.Background())
	stdout := &cancelAt{text: "bench: ", cancel: cancel}
	var stderr bytes.Buffer
	code := run(ctx, []string{"bench", "--followerd", os.Args[0], "--entries", "10", "--rounds", "1", "--idle", "0", "--baseline=false", "--progress=false"}, stdout, &stderr)
	cancel(nil)
	if code != 1 || stderr.String() != "replicate bench: stopped: interrupt signal received\n" {
		t.Fatalf("status %d, stderr %q", code, stderr.String())
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Fatalf("the temporary directory holds %v (%v), want nothing", left, err)
	}
}

// TestNodeLogExcerpt: of a node's log, the last 20 lines are shown; of
// one that crashed, the 5 lines before the runtime's report, the report
// and what follows it, 20 lines in all from the report on.
func TestNodeLogExcerpt(t *testing.T) {
	lines := make([]string, 40)
	for i := range lines {
		lines[i] = fmt.Sprintf("line %d", i)
	}
	if title, got := nodeLogExcerpt(lines); title != "the local followerd's last warnings and errors" || got != strings.Join(lines[20:], "\n  ") {
		t.Errorf("the excerpt of 40 lines: %q:\n%s", title, got)
	}
	lines[12] = "panic: boom"
	if title, got := nodeLogExcerpt(lines); title != "the local followerd's log up to its crash" || got != strings.Join(lines[7:32], "\n  ") {
		t.Errorf("the excerpt of 40 lines, a panic at the 13th: %q:\n%s", title, got)
	}
}

// TestThroughputBudget: the throughput verdict holds the ratio to 0.70
// of the bare stream with cumulative acks, and judges nothing with
// per-entry acks.
func TestThroughputBudget(t *testing.T) {
	for _, c := range []struct {
		ratio      float64
		cumulative bool
		verdict    string
	}{
		{0.70, true, "within budget (≥ 70 %)"},
		{1.3, true, "within budget (≥ 70 %)"},
		{0.699, true, "BELOW budget (≥ 70 %)"},
		{0.99, false, "no budget for per-entry acks (≥ 70 % with cumulative acks)"},
	} {
		if got := throughputBudget(c.ratio, c.cumulative); got != c.verdict {
			t.Errorf("ratio %v, cumulative %v: %q, want %q", c.ratio, c.cumulative, got, c.verdict)
		}
	}
}

// TestIdleBudget: the idle verdict judges the node's median ack, not its
// tail, against the durable echo's median plus 50µs.
func TestIdleBudget(t *testing.T) {
	hist := func(lats ...time.Duration) *leader.Histogram {
		h := &leader.Histogram{}
		for _, d := range lats {
			h.Record(d)
		}
		return h
	}
	repeat := func(d time.Duration, n int) []time.Duration { return slices.Repeat([]time.Duration{d}, n) }
	durable := hist(repeat(200*time.Microsecond, 100)...)
	want := durable.Quantile(.5) + 50*time.Microsecond
	for _, c := range []struct {
		name    string
		node    *leader.Histogram
		verdict string
	}{
		{"a fast median and a slow tail", hist(append(repeat(150*time.Microsecond, 60), repeat(2*time.Millisecond, 40)...)...), "within budget"},
		{"a slow median", hist(append(repeat(150*time.Microsecond, 40), repeat(2*time.Millisecond, 60)...)...), "OVER budget"},
		{"a median just over", hist(repeat(300*time.Microsecond, 100)...), "OVER budget"},
	} {
		budget, verdict, share := idleBudget(c.node, durable)
		if budget != want || verdict != c.verdict || share != float64(c.node.Quantile(.5))/float64(want) {
			t.Errorf("%s: budget %v, %q, %.2f of it; want %v, %q, %.2f", c.name, budget, verdict, share, want, c.verdict, float64(c.node.Quantile(.5))/float64(want))
		}
	}
}
