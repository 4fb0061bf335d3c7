package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/node"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

// asFollowerd makes this test binary run node.Main instead of the tests:
// the subprocess tests start it as their followerd.
const asFollowerd = "NODE_TEST_AS_FOLLOWERD=1"

// asParent makes this test binary start itself as a followerd over the
// data directory NODE_TEST_PARENT_OF names, print "started" on stdout and
// wait until its stdin ends: TestChildEndsWithParent kills it meanwhile.
const asParent = "NODE_TEST_AS_PARENT=1"

func TestMain(m *testing.M) {
	if os.Getenv("NODE_TEST_AS_FOLLOWERD") == "1" {
		if os.Getenv("NODE_TEST_STALL_START") == "1" {
			node.StallStart(func() {
				fmt.Println("stalled")
				select {}
			})
		}
		os.Exit(node.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	if os.Getenv("NODE_TEST_AS_PARENT") == "1" {
		argv := []string{os.Args[0], "--listen", "127.0.0.1:0", "--data-dir", os.Getenv("NODE_TEST_PARENT_OF")}
		p, err := node.Start(context.Background(), argv, []string{asFollowerd}, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("started %d\n", p.Pid())
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(p.Stop())
	}
	goleak.VerifyTestMain(m)
}

// startChild starts this binary as a followerd over dir.
func startChild(t *testing.T, dir string, logs io.Writer) *node.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := node.Start(ctx, []string{os.Args[0], "--listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn"}, []string{asFollowerd}, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

func dial(t *testing.T, addr string) *leader.Conn {
	t.Helper()
	c, err := leader.Dial(addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFlags(t *testing.T) {
	// So does the version asked for, on one line.
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		var stdout, stderr bytes.Buffer
		if got := node.Main(ctxT(t), args, &stdout, &stderr); got != 0 || !strings.HasPrefix(stdout.String(), "followerd ") || strings.Count(stdout.String(), "\n") != 1 || stderr.Len() != 0 {
			t.Fatalf("%v: status %d, stdout %q, stderr %q", args, got, stdout.String(), stderr.String())
		}
	}
	// Help that was asked for goes to stdout with status 0.
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}, {"--log-level", "loud", "--help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := node.Main(ctxT(t), args, &stdout, &stderr); got != 0 {
				t.Fatalf("status %d, want 0; stderr:\n%s", got, stderr.String())
			}
			for _, want := range []string{"Usage: followerd", "-data-dir directory"} {
				if !strings.Contains(stdout.String(), want) {
					t.Fatalf("stdout %q does not contain %q", stdout.String(), want)
				}
			}
			if stderr.Len() != 0 {
				t.Fatalf("stderr %q, want nothing", stderr.String())
			}
		})
	}
	// Anything else is not help: its errors go to stderr, nothing to stdout.
	unused := filepath.Join(t.TempDir(), "data")
	cases := []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"help", "me"}, 2, `unexpected argument "help"`},
		{[]string{"--bogus", "--help"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"serve"}, 2, `unexpected argument "serve"`},
		{[]string{"--log-level", "loud"}, 2, "invalid --log-level"},
		{[]string{"--log-level", "debug+2"}, 2, `invalid --log-level "debug+2": want debug, info, warn or error`},
		{[]string{"--log-level", ""}, 2, "invalid --log-level"},
		{[]string{"--log-format", "xml"}, 2, "invalid --log-format"},
		{[]string{"--max-message-size", "0"}, 2, "invalid --max-message-size"},
		{[]string{"--shutdown-timeout", "0"}, 2, "invalid --shutdown-timeout"},
		{[]string{"--shutdown-timeout", "-1s"}, 2, "invalid --shutdown-timeout"},
		{[]string{"--data-dir", ""}, 2, "--data-dir is empty"},
		{[]string{"--listen", "", "--data-dir", unused}, 2, `invalid --listen "": want HOST:PORT`},
		{[]string{"--listen", "not an address", "--data-dir", unused}, 2, "invalid --listen"},
		{[]string{"--listen", "127.0.0.1:99999", "--data-dir", unused}, 2, "invalid port"},
		{[]string{"--listen", "127.0.0.1:65536", "--data-dir", unused}, 2, `invalid port "65536"`},
		{[]string{"--listen", ":http", "--data-dir", unused}, 2, `invalid port "http": want a number from 0 to 65535`},
		{[]string{"--listen", "127.0.0.1:+80", "--data-dir", unused}, 2, `invalid port "+80"`},
		{[]string{"--listen", "127.0.0.1:0080", "--data-dir", unused}, 2, `invalid port "0080"`},
		{[]string{"version", "extra"}, 2, `unexpected argument "version"`},
		{[]string{"--version", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--listen", "127.0.0.1:0", "--metrics-listen", "9464", "--data-dir", unused}, 2, "invalid --metrics-listen"},
		{[]string{"--listen", "127.0.0.1:0", "--pprof", "--data-dir", unused}, 2, "--pprof needs --metrics-listen"},
		{[]string{"--tls-cert", "node.pem", "--data-dir", unused}, 2, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-key", "node-key.pem", "--data-dir", unused}, 2, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-client-ca", "ca.pem", "--data-dir", unused}, 2, "--tls-client-ca needs --tls-cert"},
		// TLS files that cannot be loaded stop the node before it
		// listens or touches its data directory.
		{[]string{"--listen", "127.0.0.1:0", "--tls-cert", unused + ".pem", "--tls-key", unused + "-key.pem", "--data-dir", unused}, 1, "cannot load the TLS files"},
		{[]string{"--listen", "127.0.0.1:0", "--tls-cert", unused + ".pem", "--tls-key", unused + "-key.pem", "--data-dir", unused}, 1, "open " + unused + ".pem: no such file"},
		{[]string{"--max-concurrent-streams", "5000000000"}, 2, "want at most 4294967295"},
		// One above the largest: not cut to its low 32 bits (0, no limit).
		{[]string{"--max-concurrent-streams", "4294967296", "--listen", "192.0.2.1:0", "--data-dir", unused}, 2, "want at most 4294967295"},
		// The largest port and the largest stream limit are taken: the node
		// then fails only to listen, on an address of no local interface.
		{[]string{"--listen", "192.0.2.1:65535", "--data-dir", unused}, 1, "cannot listen"},
		{[]string{"--max-concurrent-streams", "4294967295", "--listen", "192.0.2.1:0", "--data-dir", unused}, 1, "cannot listen"},
		{[]string{"--max-concurrent-streams", "-1"}, 2, `invalid value "-1" for flag -max-concurrent-streams: must not be negative`},
		{[]string{"--max-message-size", "0x400000"}, 2, `invalid value "0x400000" for flag -max-message-size: not a decimal number`},
		{[]string{"--max-snapshot-size", "0100"}, 2, `invalid value "0100" for flag -max-snapshot-size: a decimal number has no leading zeros`},
		{[]string{"--max-snapshot-size", "-1"}, 2, "invalid --max-snapshot-size"},
		{[]string{"--listen"}, 2, "flag needs an argument"},
		// A node that cannot listen (here on an address of no local
		// interface, TEST-NET-1) exits 1 and creates no data directory.
		{[]string{"--listen", "192.0.2.1:0", "--data-dir", unused}, 1, "cannot listen"},
		{[]string{"--listen", "127.0.0.1:0", "--metrics-listen", "192.0.2.1:0", "--data-dir", unused}, 1, "cannot serve metrics"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := node.Main(ctxT(t), c.args, &stdout, &stderr); got != c.status {
				t.Fatalf("status %d, want %d; stderr:\n%s", got, c.status, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Fatalf("stderr %q does not contain %q", stderr.String(), c.stderr)
			}
			if stdout.Len() != 0 {
				t.Fatalf("stdout %q, want nothing", stdout.String())
			}
			// A usage error, a flag the flag package refused included,
			// is one line and where to find the usage, not the usage:
			// in a service's log, the error would sit above forty
			// lines of help.
			if c.status == 2 && (strings.Count(stderr.String(), "\n") != 2 || !strings.HasPrefix(stderr.String(), "followerd: ") || !strings.HasSuffix(stderr.String(), "\nRun 'followerd --help' for usage.\n")) {
				t.Fatalf("stderr %q, want the error on one line, then where the usage is", stderr.String())
			}
			if _, err := os.Stat(unused); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the data directory exists after a failed start: %v", err)
			}
		})
	}
}

// runMain runs node.Main in this process and returns the address it
// prints and a func that stops it and returns its status.
func runMain(t *testing.T, args ...string) (string, func() int, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	stderr := &syncBuffer{}
	status := make(chan int, 1)
	go func() {
		status <- node.Main(ctx, args, w, stderr)
		_ = w.Close()
	}()
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		cancel()
		t.Fatalf("no address printed; status %d; stderr:\n%s", <-status, stderr)
	}
	line := sc.Text()
	go func() { _, _ = io.Copy(io.Discard, r) }()
	if !strings.HasPrefix(line, node.ListeningPrefix) {
		t.Fatalf("first line %q", line)
	}
	return strings.TrimPrefix(line, node.ListeningPrefix), func() int { cancel(); return <-status }, stderr
}

// TestMainServesUntilCancelled: Main prints its address, serves, and
// returns 0 once asked to stop; a second node on the same data directory
// refuses to start.
func TestMainServesUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	addr, stop, stderr := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", dir, "--log-format", "json")
	c := dial(t, addr)
	s := leader.Shard{Namespace: "main", Shard: 0}
	if _, err := c.NewTerm(ctxT(t), s, 1, nil); err != nil {
		t.Fatal(err)
	}
	var other bytes.Buffer
	if got := node.Main(ctxT(t), []string{"--listen", "127.0.0.1:0", "--data-dir", dir}, io.Discard, &other); got != 1 {
		t.Fatalf("a second node on the same data: status %d, stderr %s", got, other.String())
	}
	if !strings.Contains(other.String(), "another node") {
		t.Fatalf("second node's error: %s", other.String())
	}
	if got := stop(); got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr)
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Fatalf("JSON logs without the stop message:\n%s", stderr)
	}
}

// TestMaxMessageSizeFlag: --max-message-size reaches the server: a
// request above it is refused as too large before anything reads it
// (with the default limit, its 2000-byte namespace would be refused as
// invalid instead), and one below it is served.
func TestMaxMessageSizeFlag(t *testing.T) {
	addr, stop, stderr := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--max-message-size", "1024")
	c := dial(t, addr)
	_, err := c.NewTerm(ctxT(t), leader.Shard{Namespace: strings.Repeat("n", 2000), Shard: 0}, 1, nil)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 2 KB request to a node limited to 1 KiB: %v, want ResourceExhausted", err)
	}
	if _, err := c.NewTerm(ctxT(t), leader.Shard{Namespace: "small", Shard: 0}, 1, nil); err != nil {
		t.Fatal(err)
	}
	if got := stop(); got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr)
	}
}

// snapshotChunks is a real snapshot, in memory: a store of term with n
// entries applied, read out in chunks. It returns the chunks and the
// size of their content.
type snapshotChunks struct {
	chunks []store.Chunk
	next   int
}

func (c *snapshotChunks) Next() (store.Chunk, error) {
	if c.next == len(c.chunks) {
		return store.Chunk{}, io.EOF
	}
	c.next++
	return c.chunks[c.next-1], nil
}

func takeSnapshot(t *testing.T, term logpos.Term, n int) ([]store.Chunk, int64) {
	t.Helper()
	chunks := buildSnapshot(t, term, 4096, n, func(o logpos.Offset) []byte {
		return leader.AppendPut(nil, fmt.Appendf(nil, "k%d", o), []byte("v"))
	})
	// What counts against --max-snapshot-size: each file's content, at
	// least store.MinCountedFileSize per file.
	files := map[string]int64{}
	for _, ch := range chunks {
		files[ch.Name] += int64(len(ch.Content))
	}
	var size int64
	for _, n := range files {
		size += max(n, store.MinCountedFileSize)
	}
	return chunks, size
}

// buildSnapshot returns the chunks, of chunkSize bytes, of a snapshot of a
// store at term that applied entries 0..n-1 with the given values.
func buildSnapshot(t *testing.T, term logpos.Term, chunkSize, n int, value func(logpos.Offset) []byte) []store.Chunk {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{SnapshotChunkSize: chunkSize})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SetTerm(term, store.TermOptions{}); err != nil {
		t.Fatal(err)
	}
	for o := range logpos.Offset(n) {
		if err := st.Apply(logpos.Entry{Term: term, Offset: o, Value: value(o)}); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	var chunks []store.Chunk
	for {
		ch, err := sn.Next()
		if err == io.EOF {
			return chunks
		}
		if err != nil {
			t.Fatal(err)
		}
		ch.Content = bytes.Clone(ch.Content) // reused by the next call
		chunks = append(chunks, ch)
	}
}

// TestMaxSnapshotSizeFlag: --max-snapshot-size reaches the shards: a
// snapshot one byte over the limit is refused with InvalidArgument and
// leaves the shard as it was; one of exactly the limit is installed.
func TestMaxSnapshotSizeFlag(t *testing.T) {
	chunks, size := takeSnapshot(t, 2, 10)
	for _, c := range []struct {
		limit int64
		ok    bool
	}{{size - 1, false}, {size, true}} {
		addr, stop, stderr := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--max-snapshot-size", strconv.FormatInt(c.limit, 10))
		conn := dial(t, addr)
		s := leader.Shard{Namespace: "snap", Shard: 0}
		if _, err := conn.NewTerm(ctxT(t), s, 2, nil); err != nil {
			t.Fatal(err)
		}
		ack, err := conn.SendSnapshot(ctxT(t), s, 2, &snapshotChunks{chunks: chunks})
		st, serr := conn.Status(ctxT(t), s)
		if serr != nil {
			t.Fatal(serr)
		}
		got := fmt.Sprintf("%d %v %d %d", st.GetTerm(), st.GetStatus(), st.GetHeadOffset(), st.GetCommitOffset())
		if c.ok {
			if err != nil || ack != 9 || got != "2 FOLLOWER 9 9" {
				t.Errorf("a %d-byte snapshot with a limit of %d: ack %d, %v; shard %s", size, c.limit, ack, err, got)
			}
		} else if status.Code(err) != codes.InvalidArgument || got != "2 FENCED -1 -1" {
			t.Errorf("a %d-byte snapshot with a limit of %d: %v, want InvalidArgument; shard %s, want it unchanged", size, c.limit, err, got)
		}
		if code := stop(); code != 0 {
			t.Fatalf("status %d; stderr:\n%s", code, stderr)
		}
	}
}

// TestMaxConcurrentStreamsFlag: --max-concurrent-streams reaches the
// server: the HTTP/2 settings the node sends a new connection announce
// it, and without the flag they announce no limit.
func TestMaxConcurrentStreamsFlag(t *testing.T) {
	for _, c := range []struct {
		args  []string
		limit uint32
		set   bool
	}{
		{args: []string{"--max-concurrent-streams", "3"}, limit: 3, set: true},
		{args: nil, set: false},
	} {
		addr, stop, stderr := runMain(t, append([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, c.args...)...)
		limit, set := maxConcurrentStreams(t, addr)
		if limit != c.limit || set != c.set {
			t.Errorf("with %q the node announces a limit of %d (set: %v), want %d (set: %v)", c.args, limit, set, c.limit, c.set)
		}
		if got := stop(); got != 0 {
			t.Fatalf("status %d; stderr:\n%s", got, stderr)
		}
	}
}

// maxConcurrentStreams opens an HTTP/2 connection to addr and returns
// SETTINGS_MAX_CONCURRENT_STREAMS from the server's first SETTINGS frame,
// and whether the frame carried it.
func maxConcurrentStreams(t *testing.T, addr string) (limit uint32, set bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// The client preface, then an empty SETTINGS frame (RFC 9113 §3.4).
	preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	if _, err := io.WriteString(conn, preface); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	for {
		var header [9]byte // length (24 bits), type, flags, stream id
		if _, err := io.ReadFull(r, header[:]); err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, int(header[0])<<16|int(header[1])<<8|int(header[2]))
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatal(err)
		}
		const settingsFrame, ackFlag, maxConcurrentStreamsID = 0x4, 0x1, 0x3
		if header[3] != settingsFrame || header[4]&ackFlag != 0 {
			continue
		}
		for p := payload; len(p) >= 6; p = p[6:] {
			if binary.BigEndian.Uint16(p) == maxConcurrentStreamsID {
				limit, set = binary.BigEndian.Uint32(p[2:]), true
			}
		}
		return limit, set
	}
}

// TestSignals: SIGTERM and SIGINT shut a real followerd process down
// gracefully: streams end Unavailable, exit status 0, data kept.
func TestSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			logs := &syncBuffer{}
			p := startChild(t, dir, logs)
			c := dial(t, p.Addr)
			s := leader.Shard{Namespace: "sig", Shard: 1}
			head, err := c.NewTerm(ctxT(t), s, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Truncate(ctxT(t), s, 1, head); err != nil {
				t.Fatal(err)
			}
			stream, err := c.Replication.Replicate(leader.StreamContext(ctxT(t), s))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&replicationpb.Append{Term: 1, Entry: &replicationpb.LogEntry{Term: 1, Offset: 0, Value: leader.AppendPut(nil, []byte("k"), []byte("v"))}, CommitOffset: -1}); err != nil {
				t.Fatal(err)
			}
			if ack, err := stream.Recv(); err != nil || ack.GetOffset() != 0 {
				t.Fatalf("ack %v, %v", ack, err)
			}
			p.Signal(sig)
			var end error
			for end == nil {
				_, end = stream.Recv()
			}
			if status.Code(end) != codes.Unavailable || grpcapi.Reason(end) != "" {
				t.Fatalf("the stream ended with %v, want Unavailable without reason", end)
			}
			if got := p.Wait(); got != 0 {
				t.Fatalf("exit status %d; logs:\n%s", got, logs)
			}
			p2 := startChild(t, dir, logs)
			st, err := dial(t, p2.Addr).Status(ctxT(t), s)
			if err != nil || st.GetHeadOffset() != 0 || st.GetTerm() != 1 {
				t.Fatalf("after restart: %v, %v", st, err)
			}
			if got := p2.Stop(); got != 0 {
				t.Fatalf("exit status %d", got)
			}
		})
	}
}
