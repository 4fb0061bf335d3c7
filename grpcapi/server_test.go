package grpcapi_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestShardsAndNamespacesAtOnce: four shards in two namespaces, each
// with its own term, replicated concurrently, stay apart.
func TestShardsAndNamespacesAtOnce(t *testing.T) {
	n := startNode(t, "")
	var shards []leader.Shard
	for _, ns := range []string{"alpha", "beta"} {
		for i := range int64(2) {
			shards = append(shards, leader.Shard{Namespace: ns, Shard: i})
		}
	}
	var wg sync.WaitGroup
	for i, s := range shards {
		term := logpos.Term(i + 1)
		count := int64(50 * (i + 1))
		wg.Go(func() {
			fence(t, n.conn, s, term)
			replicate(t, n.conn, s, term, 0, count, i%2 == 0)
		})
	}
	wg.Wait()
	for i, s := range shards {
		st, err := n.conn.Status(ctxT(t), s)
		if err != nil {
			t.Fatal(err)
		}
		wantHead := int64(50*(i+1) - 1)
		if st.GetTerm() != int64(i+1) || st.GetHeadOffset() != wantHead || st.GetStatus() != replicationpb.ServingStatus_FOLLOWER {
			t.Fatalf("%v: %v, want term %d, head %d", s, st, i+1, wantHead)
		}
		checkApplied(t, n.conn, s, logpos.Offset(wantHead))
		// A key only the bigger shards wrote is absent from the smaller.
		values, _, err := n.conn.Get(ctxT(t), s, logpos.NoOffset, key(logpos.Offset(wantHead+1)))
		if err != nil || values[0].GetFound() {
			t.Fatalf("%v: key beyond the head: %v, %v", s, values, err)
		}
		if _, err := os.Stat(filepath.Join(n.dir, s.Namespace, fmt.Sprint(s.Shard))); err != nil {
			t.Fatal(err)
		}
	}
}

// endSignal is a stats handler that reports the end of every Replicate
// call on the server.
type endSignal struct{ ended chan struct{} }

type methodKey struct{}

func (e *endSignal) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, info.FullMethodName)
}

func (e *endSignal) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); ok && ctx.Value(methodKey{}) == "/replication.OxiaLogReplication/Replicate" {
		select {
		case e.ended <- struct{}{}: // the first end is the one the test waits for
		default:
		}
	}
}
func (e *endSignal) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (e *endSignal) HandleConn(context.Context, stats.ConnStats)                       {}

// TestClientDisconnectsMidStream: a leader that vanishes mid-stream frees
// the shard for the next stream, and what was acked stays.
func TestClientDisconnectsMidStream(t *testing.T) {
	sig := &endSignal{ended: make(chan struct{}, 1)}
	n := startNode(t, "", func(o *grpcapi.Options) { o.GRPCOptions = []grpc.ServerOption{grpc.StatsHandler(sig)} })
	s := leader.Shard{Namespace: "gone", Shard: 0}
	fence(t, n.conn, s, 1)
	stream, cancel := openStream(t, n.conn, s, 1, 0)
	for o := logpos.Offset(1); o < 50; o++ {
		send(t, stream, 1, o)
	}
	ack, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	cancel() // mid-stream: entries in flight, acks unread
	select {
	case <-sig.ended:
	case <-ctxT(t).Done():
		t.Fatal("the server never ended the abandoned stream")
	}
	st, err := n.conn.Status(ctxT(t), s)
	if err != nil || st.GetHeadOffset() < ack.GetOffset() {
		t.Fatalf("status %v, %v; want head ≥ %d", st, err, ack.GetOffset())
	}
	// The next stream attaches, continues from the head and commits.
	replicate(t, n.conn, s, 1, logpos.Offset(st.GetHeadOffset()+1), 20, true)
	checkApplied(t, n.conn, s, logpos.Offset(st.GetHeadOffset()+20))
}

// TestUnimplemented: leader-side and unknown methods are Unimplemented.
func TestUnimplemented(t *testing.T) {
	n := startNode(t, "")
	for _, method := range []string{
		"/replication.OxiaCoordination/BecomeLeader",
		"/replication.OxiaCoordination/AddFollower",
		"/replication.OxiaCoordination/ShardAssignment",
		"/replication.OxiaCoordination/GetInfo",
		"/replication.OxiaLogReplication/Nope",
		"/io.streamnative.oxia.proto.OxiaClient/Read",
	} {
		err := n.conn.ClientConn().Invoke(ctxT(t), method, &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("%s: %v, want Unimplemented", method, err)
		}
	}
}

// TestHealthAndReflection: grpc health probes and grpcurl work.
func TestHealthAndReflection(t *testing.T) {
	n := startNode(t, "")
	health := healthpb.NewHealthClient(n.conn.ClientConn())
	for _, svc := range []string{"", "replication.OxiaLogReplication", "replication.OxiaCoordination", "tablefsm.inspect.v1.Inspect", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} {
		resp, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v, %v", svc, resp, err)
		}
	}
	_, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown service: %v", err)
	}

	refl, err := reflectionpb.NewServerReflectionClient(n.conn.ClientConn()).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := refl.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		got[s.GetName()] = true
	}
	for _, want := range []string{"replication.OxiaLogReplication", "replication.OxiaCoordination", "tablefsm.inspect.v1.Inspect", "grpc.health.v1.Health"} {
		if !got[want] {
			t.Errorf("reflection lists %v, missing %s", got, want)
		}
	}
	// A file descriptor resolves, as grpcurl needs.
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "replication.OxiaLogReplication"}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := refl.Recv(); err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("file containing replication.OxiaLogReplication: %v, %v", resp, err)
	}
	if err := refl.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

// TestShutdownEndsHealthWatch: a client watching the node's health (as
// gRPC's client-side health checking does) sees NOT_SERVING at shutdown,
// then its stream ends with Unavailable, as every stream a shutdown ends;
// the graceful shutdown does not wait for it to go away (node.stop fails
// the test if the shutdown is cut short).
func TestShutdownEndsHealthWatch(t *testing.T) {
	n := startNode(t, "")
	// A connection of its own: node.stop closes the node's as soon as the
	// shutdown returns, which may come before this watch read its end
	// (it then ended Canceled, on the client's side).
	conn, err := leader.Dial(n.addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	watch, err := healthpb.NewHealthClient(conn.ClientConn()).Watch(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v, %v", resp, err)
	}
	stopped := make(chan struct{})
	go func() { defer close(stopped); n.stop() }()
	notServing := 0
	for {
		resp, err := watch.Recv()
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("the watch ended with %v, want Unavailable", err)
			}
			break
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("watch during shutdown: %v", resp)
		}
		notServing++
	}
	<-stopped
	if notServing != 1 {
		t.Errorf("the watch saw NOT_SERVING %d times before it ended, want once", notServing)
	}
}

// TestShutdownEndsReflectionStream: a reflection stream its client keeps
// open (waiting for a next request) ends with Unavailable once the
// followers are closed; the graceful shutdown does not wait for the
// client (node.stop fails the test if the shutdown is cut short).
func TestShutdownEndsReflectionStream(t *testing.T) {
	n := startNode(t, "")
	// A connection of its own, which node.stop does not close.
	conn, err := leader.Dial(n.addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	refl, err := reflectionpb.NewServerReflectionClient(conn.ClientConn()).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := refl.Recv(); err != nil {
		t.Fatal(err)
	}
	n.stop()
	if resp, err := refl.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("the reflection stream after the shutdown: %v, %v; want Unavailable", resp, err)
	}
}

// TestRestartAndDelete: shards with data are hosted after a restart
// (GetStatus and DeleteShard open them); after DeleteShard the node
// forgets the shard and a later NewTerm starts a fresh follower.
func TestRestartAndDelete(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	a := leader.Shard{Namespace: "r", Shard: 1}
	b := leader.Shard{Namespace: "r", Shard: 2}
	for _, s := range []leader.Shard{a, b} {
		fence(t, n.conn, s, 3)
		replicate(t, n.conn, s, 3, 0, 30, true)
	}
	n.stop()

	n = startNode(t, dir)
	ctx := ctxT(t)
	st, err := n.conn.Status(ctx, a)
	if err != nil || st.GetTerm() != 3 || st.GetStatus() != replicationpb.ServingStatus_FENCED || st.GetHeadOffset() != 29 {
		t.Fatalf("after a restart: %v, %v", st, err)
	}
	// DeleteShard opens b, which was not touched since the restart.
	wantCode(t, n.conn.Delete(ctx, b, 2), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm, "")
	if err := n.conn.Delete(ctx, b, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "r", "2")); !os.IsNotExist(err) {
		t.Fatalf("the deleted shard's directory: %v", err)
	}
	_, err = n.conn.Status(ctx, b)
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	// Its last steps stay readable.
	steps, err := n.conn.Steps(ctx, b, 0)
	if err != nil || len(steps) == 0 || steps[len(steps)-1].GetTo() != "Closed" || steps[len(steps)-1].GetEvent() != "Delete" {
		t.Fatalf("steps of the deleted shard: %v, %v", steps, err)
	}
	// Deleting again is a no-op; a new NewTerm starts afresh.
	if err := n.conn.Delete(ctx, b, 0); err != nil {
		t.Fatal(err)
	}
	head, err := n.conn.NewTerm(ctx, b, 1, nil)
	if err != nil || head != logpos.NoEntry {
		t.Fatalf("NewTerm after delete: %v, %v", head, err)
	}
	// a was not affected.
	checkAppliedAfterTerm(t, n.conn, a, 4, 29)
}

// checkAppliedAfterTerm makes the fenced shard s a follower of term, has
// it apply up to upTo and checks the values.
func checkAppliedAfterTerm(t *testing.T, c *leader.Conn, s leader.Shard, term logpos.Term, upTo logpos.Offset) {
	t.Helper()
	head := fence(t, c, s, term)
	if head.Offset != upTo {
		t.Fatalf("%v: head %v, want %d", s, head, upTo)
	}
	replicate(t, c, s, term, upTo+1, 0, true) // only advertises the commit
	checkApplied(t, c, s, upTo)
}

// TestSteps: the Inspect service reports lifecycle steps in order and
// says when old ones were dropped.
func TestSteps(t *testing.T) {
	n := startNode(t, "", func(o *grpcapi.Options) { o.StepHistory = 4 })
	s := leader.Shard{Namespace: "steps", Shard: 0}
	fence(t, n.conn, s, 1)
	steps, err := n.conn.Steps(ctxT(t), s, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range steps {
		got = append(got, fmt.Sprintf("%d %s %s %s", st.GetSeq(), st.GetFrom(), st.GetEvent(), st.GetTo()))
	}
	want := []string{"1 NotMember NewTerm Fenced", "2 Fenced Truncate Follower"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	for term := logpos.Term(2); term < 6; term++ {
		if _, err := n.conn.NewTerm(ctxT(t), s, term, nil); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := n.conn.Inspect.Steps(ctxT(t), &inspectpb.StepsRequest{Namespace: s.Namespace, Shard: s.Shard, After: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetTruncated() || len(resp.GetSteps()) != 4 || resp.GetSteps()[0].GetSeq() != 3 {
		t.Fatalf("after overflowing the history: %v", resp)
	}
	// A refused operation is a step too, with the error it returned.
	_, err = n.conn.NewTerm(ctxT(t), s, 1, nil)
	wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm, "")
	steps, err = n.conn.Steps(ctxT(t), s, 6)
	if err != nil || len(steps) != 1 || steps[0].GetEvent() != "NewTerm" || !strings.Contains(steps[0].GetError(), "invalid term") {
		t.Fatalf("steps after a refused NewTerm: %v, %v; want one NewTerm step with its error", steps, err)
	}
}

// TestDeletedShardsStepsKept: the last steps of the 64 most recently
// deleted shards stay readable; a deleted shard that is hosted again
// does not take the place of one of them.
func TestDeletedShardsStepsKept(t *testing.T) {
	n := startNode(t, "")
	ctx := ctxT(t)
	shard := func(i int64) leader.Shard { return leader.Shard{Namespace: "gone", Shard: i} }
	hostAndDelete := func(s leader.Shard) {
		t.Helper()
		if _, err := n.conn.NewTerm(ctx, s, 1, nil); err != nil {
			t.Fatal(err)
		}
		if err := n.conn.Delete(ctx, s, 1); err != nil {
			t.Fatal(err)
		}
	}
	oldest, again := shard(0), shard(1)
	hostAndDelete(oldest)
	hostAndDelete(again)
	if _, err := n.conn.NewTerm(ctx, again, 1, nil); err != nil {
		t.Fatal(err)
	}
	for i := int64(2); i <= 64; i++ {
		hostAndDelete(shard(i))
	}
	// 64 shards deleted and not hosted again, the oldest first: all its
	// steps are kept.
	steps, err := n.conn.Steps(ctx, oldest, 0)
	var got []string
	for _, st := range steps {
		got = append(got, fmt.Sprintf("%s %s %s", st.GetFrom(), st.GetEvent(), st.GetTo()))
	}
	if want := []string{"NotMember NewTerm Fenced", "Fenced Delete Closed"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("steps of the oldest of 64 deleted shards: %v, %v; want %v", got, err, want)
	}
	hostAndDelete(shard(65))
	_, err = n.conn.Steps(ctx, oldest, 0)
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
}

// TestMessageSizeLimit: a message over the configured limit is refused,
// and the node keeps serving.
func TestMessageSizeLimit(t *testing.T) {
	sig := &endSignal{ended: make(chan struct{}, 1)}
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.MaxMessageSize = 1024
		o.GRPCOptions = []grpc.ServerOption{grpc.StatsHandler(sig)}
	})
	s := leader.Shard{Namespace: "big", Shard: 0}
	fence(t, n.conn, s, 1)
	stream, err := n.conn.Replication.Replicate(leader.StreamContext(ctxT(t), s))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&replicationpb.Append{Term: 1, Entry: &replicationpb.LogEntry{Term: 1, Offset: 0, Value: make([]byte, 2048)}}); err != nil {
		t.Fatal(err)
	}
	if err := recvEnd(stream); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("an oversized append: %v, want ResourceExhausted", err)
	}
	// The client may hear of the failure before the server's handler
	// has returned (and the follower detached the stream).
	select {
	case <-sig.ended:
	case <-ctxT(t).Done():
		t.Fatal("the server never ended the stream")
	}
	replicate(t, n.conn, s, 1, 0, 10, true)
}

// TestLargeEntriesByDefault: by default the node takes an entry above
// gRPC's own 4 MiB message limit, as an Oxia leader sends for a large
// client write, and applies it.
func TestLargeEntriesByDefault(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "large", Shard: 0}
	fence(t, n.conn, s, 1)
	big := bytes.Repeat([]byte("v"), 5<<20)
	res, err := n.conn.Replicate(ctxT(t), leader.Run{
		Shard: s, Term: 1, First: 0, Count: 2, Window: 2, Cumulative: true, Commit: -1,
		Value: func(o logpos.Offset, buf []byte) []byte { return leader.AppendPut(buf, key(o), big) },
	})
	if err != nil {
		t.Fatalf("replicating two 5 MiB entries: %v (result %+v)", err, res)
	}
	// Read back by a client that takes a reply that large too.
	c, err := leader.Dial(n.addr, grpcapi.DefaultMaxMessageSize)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	values, _, err := c.Get(ctxT(t), s, 1, key(1))
	if err != nil {
		t.Fatal(err)
	}
	if !values[0].GetFound() || !bytes.Equal(values[0].GetValue(), big) {
		t.Fatalf("the 5 MiB value read back: found %v, %d bytes", values[0].GetFound(), len(values[0].GetValue()))
	}
}

// TestConcurrentStreamLimit: with one stream per connection allowed, a
// second call waits until the first ends.
func TestConcurrentStreamLimit(t *testing.T) {
	n := startNode(t, "", func(o *grpcapi.Options) { o.MaxConcurrentStreams = 1 })
	s := leader.Shard{Namespace: "limit", Shard: 0}
	fence(t, n.conn, s, 1)
	_, cancel := openStream(t, n.conn, s, 1, 0)
	ctx, stop := context.WithTimeout(ctxT(t), 200*time.Millisecond)
	_, err := n.conn.Status(ctx, s)
	stop()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a second call while the only stream slot is taken: %v, want it to wait", err)
	}
	cancel()
	if _, err := n.conn.Status(ctxT(t), s); err != nil {
		t.Fatal(err)
	}
}
