package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/node"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// misbehaveEnv names, in the environment of a node this test binary runs
// (with REPLICATE_TEST_CHILD=1), how the node misbehaves (TestMain).
const misbehaveEnv = "REPLICATE_TEST_MISBEHAVE"

// rawCodec passes messages through as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// proxyNode is what a misbehaving node keeps between calls.
type proxyNode struct {
	mode, dataDir string
	mu            sync.Mutex
	maxTerm       int64
	deleted       bool
	streams       int
}

// misbehavingNode runs node.Main with args behind a proxy that misbehaves
// as mode says, and returns node.Main's status.
func misbehavingNode(mode string, args []string) int {
	p := &proxyNode{mode: mode}
	for i, a := range args {
		if a == "--data-dir" && i+1 < len(args) {
			p.dataDir = args[i+1]
		}
	}
	r, w := io.Pipe()
	ended := make(chan int, 1)
	go func() {
		ended <- node.Main(context.Background(), args, w, os.Stderr)
		_ = w.Close()
	}()
	sc := bufio.NewScanner(r)
	inner := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), node.ListeningPrefix); ok {
			inner = strings.TrimSpace(a)
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, r) }()
	if inner == "" {
		return <-ended
	}
	conn, err := grpc.NewClient(inner, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 4
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 4
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.MaxRecvMsgSize(1<<30), grpc.MaxSendMsgSize(1<<30),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error { return p.forward(conn, ss) }))
	go func() { _ = srv.Serve(lis) }()
	fmt.Printf("%s%s\n", node.ListeningPrefix, lis.Addr())
	code := <-ended
	srv.Stop()
	_ = conn.Close()
	return code
}

// forward passes one call through to the node, misbehaving on the way.
func (p *proxyNode) forward(conn *grpc.ClientConn, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	md, _ := metadata.FromIncomingContext(ss.Context())
	md = md.Copy()
	for _, k := range []string{"content-type", "user-agent", ":authority"} {
		delete(md, k)
	}
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ss.Context(), md))
	defer cancel()
	var first []byte
	if err := ss.RecvMsg(&first); err != nil {
		return err
	}
	if resp, err, handled := p.answer(method, first); handled {
		if err != nil {
			return err
		}
		return ss.SendMsg(&resp)
	}
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	go func() {
		msg := first
		for cs.SendMsg(&msg) == nil {
			msg = nil
			if err := ss.RecvMsg(&msg); err != nil {
				if errors.Is(err, io.EOF) {
					_ = cs.CloseSend()
				}
				return
			}
		}
	}()
	for {
		var msg []byte
		if err := cs.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				p.after(method)
				return nil
			}
			return p.rewriteErr(method, err)
		}
		msg = p.rewrite(method, msg)
		if err := ss.SendMsg(&msg); err != nil {
			return err
		}
		if p.cutsStream(method) {
			return status.Error(codes.Unavailable, "the stream is cut")
		}
	}
}

func short(method string) string { return method[strings.LastIndex(method, "/")+1:] }

// answer answers a call without the node.
func (p *proxyNode) answer(method string, req []byte) ([]byte, error, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch short(method) {
	case "NewTerm":
		var r replicationpb.NewTermRequest
		if proto.Unmarshal(req, &r) != nil {
			return nil, nil, false
		}
		stale := r.GetTerm() < p.maxTerm
		p.maxTerm = max(p.maxTerm, r.GetTerm())
		switch {
		case stale && p.mode == "stale-newterm-accepted":
			b, _ := proto.Marshal(&replicationpb.NewTermResponse{HeadEntryId: &replicationpb.EntryId{Term: r.GetTerm(), Offset: -1}})
			return b, nil, true
		case stale && p.mode == "stale-newterm-other-error":
			return nil, status.Error(codes.Unavailable, "the disk is busy"), true
		}
	case "GetStatus":
		if p.deleted && p.mode == "deleted-still-member" {
			b, _ := proto.Marshal(&replicationpb.GetStatusResponse{Term: 2, Status: replicationpb.ServingStatus_FOLLOWER, HeadOffset: 20, CommitOffset: 20})
			return b, nil, true
		}
	case "Replicate":
		p.streams++
	}
	return nil, nil, false
}

// after runs once a call the node answered ended well.
func (p *proxyNode) after(method string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if short(method) == "DeleteShard" {
		p.deleted = true
	}
}

// cutsStream tells whether the proxy ends a stream after its first ack:
// the second stream the node serves, in mode second-stream-cut.
func (p *proxyNode) cutsStream(method string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return short(method) == "Replicate" && p.mode == "second-stream-cut" && p.streams == 2
}

func (p *proxyNode) rewriteErr(method string, err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if short(method) == "GetStatus" && p.deleted && p.mode == "directory-left" {
		// After the node's own clean-up, which a GetStatus runs.
		_ = os.MkdirAll(filepath.Join(p.dataDir, "demo", "0"), 0o755)
	}
	if short(method) == "GetStatus" && grpcapi.Reason(err) == grpcapi.ReasonNodeIsNotMember && p.mode == "unknown-shard-other-error" {
		return status.Error(codes.Unavailable, "the disk is busy")
	}
	return err
}

// rewrite alters a response of the node.
func (p *proxyNode) rewrite(method string, msg []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	nodeB := filepath.Base(p.dataDir) == "nodeB"
	var m proto.Message
	switch short(method) {
	case "GetStatus":
		st := &replicationpb.GetStatusResponse{}
		if proto.Unmarshal(msg, st) != nil {
			return msg
		}
		fenced := st.GetStatus() == replicationpb.ServingStatus_FENCED
		switch {
		case fenced && p.mode == "restart-term":
			st.Term++
		case fenced && p.mode == "restart-status":
			st.Status = replicationpb.ServingStatus_FOLLOWER
		case fenced && p.mode == "restart-lost":
			// An empty log: whatever the node wrote beyond the last
			// ack, the entries acknowledged are gone.
			st.HeadOffset = -1
		case nodeB && p.mode == "b-term":
			st.Term++
		case nodeB && p.mode == "b-status":
			st.Status = replicationpb.ServingStatus_FENCED
		case nodeB && p.mode == "b-head":
			st.HeadOffset--
		case nodeB && p.mode == "b-commit":
			st.CommitOffset--
		}
		m = st
	case "SendSnapshot":
		r := &replicationpb.SnapshotResponse{}
		if proto.Unmarshal(msg, r) != nil {
			return msg
		}
		if p.mode == "snapshot-ack" {
			r.AckOffset--
		}
		m = r
	case "Get":
		r := &inspectpb.GetResponse{}
		if proto.Unmarshal(msg, r) != nil {
			return msg
		}
		for _, v := range r.GetValues() {
			if (p.mode == "wrong-value" || p.mode == "b-wrong-value" && nodeB) && v.GetFound() {
				v.Value = append(v.Value, '!')
				break
			}
			if p.mode == "found-not-present" && !v.GetFound() {
				v.Found = true
				break
			}
		}
		m = r
	default:
		return msg
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return msg
	}
	return b
}

// TestDemoFailsWhenTheNodeMisbehaves: each check of the demo fails the
// demo, naming what went wrong, when the node answers what it should not.
func TestDemoFailsWhenTheNodeMisbehaves(t *testing.T) {
	for _, c := range []struct{ mode, want string }{
		{"unknown-shard-other-error", "GetStatus of an unknown shard"},
		{"restart-term", "after the restart"},
		{"restart-status", "after the restart"},
		{"restart-lost", "after the restart"},
		{"stale-newterm-accepted", "a stale NewTerm"},
		{"stale-newterm-other-error", "a stale NewTerm"},
		{"snapshot-ack", "SendSnapshot acknowledged offset"},
		{"b-term", "node B after the install"},
		{"b-status", "node B after the install"},
		{"b-head", "node B after the install"},
		{"b-commit", "node B after the install"},
		{"wrong-value", "node A: user/"},
		{"found-not-present", "node A: user/"},
		{"b-wrong-value", "node B: user/"},
		{"second-stream-cut", "the stream failed before node A was killed"},
		{"deleted-still-member", "GetStatus after DeleteShard"},
		{"directory-left", "the shard's directory is still on node A"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			t.Setenv(misbehaveEnv, c.mode) // inherited by the children
			t.Setenv("TMPDIR", t.TempDir())
			code, out, errOut := runCLI(t, "demo", "--followerd", os.Args[0], "--entries", "10")
			if code != 1 || !strings.Contains(errOut, c.want) {
				t.Fatalf("demo against a node misbehaving (%s): status %d, want 1 and %q\nstdout:\n%s\nstderr:\n%s", c.mode, code, c.want, out, errOut)
			}
		})
	}
}

// TestDemoFailsWhenANodeExitsBadly: a node that exits non-zero when
// stopped fails the demo.
func TestDemoFailsWhenANodeExitsBadly(t *testing.T) {
	t.Setenv("REPLICATE_TEST_STOP_STATUS", "1") // inherited by the children
	t.Setenv("TMPDIR", t.TempDir())
	code, out, errOut := runCLI(t, "demo", "--followerd", os.Args[0], "--entries", "10")
	if code != 1 || !strings.Contains(errOut, "node A exited with status 1") {
		t.Fatalf("demo with nodes exiting 1: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// TestDescribe: a round's line is its rate, its MiB/s and its ack
// latency's p50, p99 and max, each the right one.
func TestDescribe(t *testing.T) {
	lat := &leader.Histogram{}
	for range 98 {
		lat.Record(time.Millisecond)
	}
	lat.Record(20 * time.Millisecond)
	lat.Record(300 * time.Millisecond)
	got := describe(leader.Result{Acked: 3000, Bytes: 3 << 20, Elapsed: 2 * time.Second}, lat)
	fields := strings.Fields(got)
	want := []string{"1500", "entries/s", "1.5", "MiB/s", "ack", "p50", us(lat.Quantile(.5)), "p99", us(lat.Quantile(.99)), "max", "300.0ms"}
	if !slices.Equal(fields, want) {
		t.Fatalf("describe = %q, want the fields %q", got, want)
	}
	if p50, p99 := lat.Quantile(.5), lat.Quantile(.99); p50 < 900*time.Microsecond || p50 > 1100*time.Microsecond || p99 < 18*time.Millisecond || p99 > 22*time.Millisecond {
		t.Fatalf("the histogram's p50 %v and p99 %v are not 1ms and 20ms", p50, p99)
	}
}

// TestBenchSummaryNumbers: with three rounds, each side's throughput is
// the median of its rounds, each MiB/s and ratio agrees with the rates it
// is made of, and the idle verdict agrees with the p50 and the budget.
func TestBenchSummaryNumbers(t *testing.T) {
	const entrySize = 100
	code, out, errOut := runCLI(t, "bench", "--followerd", os.Args[0], "--entries", "60", "--window", "10", "--rounds", "3", "--idle", "20", "--progress=false")
	if code != 0 {
		t.Fatalf("bench: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	lines := strings.Split(out, "\n")
	fields := func(prefix string) []string {
		t.Helper()
		for _, line := range lines {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return strings.Fields(rest)
			}
		}
		t.Fatalf("no line starting %q in the bench output:\n%s", prefix, out)
		return nil
	}
	num := func(s string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(strings.Trim(s, "(),:"), 64)
		if err != nil {
			t.Fatalf("%q in the bench output: %v\n%s", s, err, out)
		}
		return v
	}
	dur := func(s string) (µs, tol float64) { // in µs, and half its last printed digit
		t.Helper()
		s = strings.Trim(s, "(),:")
		if v, ok := strings.CutSuffix(s, "ms"); ok {
			return num(v) * 1000, 50
		}
		return num(strings.TrimSuffix(s, "µs")), 0.5
	}
	near := func(what string, got, want, tol float64) {
		t.Helper()
		if got < want-tol || got > want+tol {
			t.Errorf("%s: printed %v, want %v (±%v)\n%s", what, got, want, tol, out)
		}
	}
	median := func(name string) string {
		t.Helper()
		var rates []string
		for r := 1; r <= 3; r++ {
			rates = append(rates, fields(fmt.Sprintf("round %d  %s ", r, name))[0])
		}
		slices.SortFunc(rates, func(a, b string) int { return cmp.Compare(num(a), num(b)) })
		return rates[1]
	}
	f := fields("throughput  followerd ")
	b := fields("            baseline ")
	d := fields("            durable ")
	for _, c := range []struct {
		name string
		got  string
	}{{"followerd", f[0]}, {"baseline", b[0]}, {"durable echo", d[0]}} {
		if want := median(c.name); c.got != want {
			t.Errorf("%s: throughput %s entries/s, want the median of its rounds, %s\n%s", c.name, c.got, want, out)
		}
	}
	fRate, bRate, dRate := num(f[0]), num(b[0]), num(d[0])
	near("followerd MiB/s", num(f[2]), fRate*entrySize/(1<<20), 0.02*fRate*entrySize/(1<<20)+0.06)
	near("baseline MiB/s", num(b[2]), bRate*entrySize/(1<<20), 0.02*bRate*entrySize/(1<<20)+0.06)
	rf := fields("            ratio ")
	near("ratio", num(rf[0]), 100*fRate/bRate, 0.02*100*fRate/bRate+1)
	// ratio  R % of the bare stream: VERDICT budget (≥ 70 %)
	if below := strings.Contains(strings.Join(rf, " "), "BELOW budget"); below && fRate/bRate > 0.705 || !below && fRate/bRate < 0.695 {
		t.Errorf("throughput verdict below=%v with followerd at %v of the bare stream\n%s", below, fRate/bRate, out)
	}
	// durable   X entries/s, P % of the bare stream: ...; followerd Q % of it
	near("durable % of the bare stream", num(d[2]), 100*dRate/bRate, 0.02*100*dRate/bRate+1)
	q := num(d[len(d)-4])
	near("followerd % of the durable echo", q, 100*fRate/dRate, 0.02*100*fRate/dRate+1)

	p50 := func(prefix string) (float64, float64) {
		t.Helper()
		return dur(fields(prefix)[1])
	}
	fP50, fTol := p50("  followerd ack ")
	rtP50, rtTol := p50("  stream round trip ")
	syncP50, syncTol := p50("  fsync     ")
	// budget  p50 ≤ fsync + round trip + 50µs = X: VERDICT budget (R of it)
	bf := fields("  budget ")
	budget, bTol := dur(bf[9])
	ratio := num(bf[len(bf)-3])
	near("followerd p50 / budget", ratio, fP50/budget, 0.006+(fTol+bTol)/budget)
	over := strings.Contains(strings.Join(bf, " "), "OVER budget")
	if (over && ratio < 0.995) || (!over && ratio > 1.005) {
		t.Errorf("verdict over=%v with a p50 at %v of the budget\n%s", over, ratio, out)
	}
	apart, aTol := dur(fields("                       (with the parts measured apart: ")[0])
	near("the parts measured apart", apart, syncP50+rtP50+50, aTol+syncTol+rtTol)
}
