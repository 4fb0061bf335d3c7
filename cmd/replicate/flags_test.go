package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// recordingNode answers the unary calls of the commands and records what
// they asked, and whether each call carried a deadline.
type recordingNode struct {
	replicationgrpc.UnimplementedOxiaCoordinationServer
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	mu       sync.Mutex
	requests []proto.Message
	deadline []bool
}

func (n *recordingNode) record(ctx context.Context, m proto.Message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := ctx.Deadline()
	n.requests = append(n.requests, m)
	n.deadline = append(n.deadline, ok)
}

func (n *recordingNode) GetStatus(ctx context.Context, r *replicationpb.GetStatusRequest) (*replicationpb.GetStatusResponse, error) {
	n.record(ctx, r)
	return &replicationpb.GetStatusResponse{Status: replicationpb.ServingStatus_FENCED, HeadOffset: -1, CommitOffset: -1}, nil
}

func (n *recordingNode) NewTerm(ctx context.Context, r *replicationpb.NewTermRequest) (*replicationpb.NewTermResponse, error) {
	n.record(ctx, r)
	return &replicationpb.NewTermResponse{HeadEntryId: &replicationpb.EntryId{Term: -1, Offset: -1}}, nil
}

func (n *recordingNode) Truncate(ctx context.Context, r *replicationpb.TruncateRequest) (*replicationpb.TruncateResponse, error) {
	n.record(ctx, r)
	return &replicationpb.TruncateResponse{HeadEntryId: r.GetHeadEntryId()}, nil
}

func (n *recordingNode) DeleteShard(ctx context.Context, r *replicationpb.DeleteShardRequest) (*replicationpb.DeleteShardResponse, error) {
	n.record(ctx, r)
	return &replicationpb.DeleteShardResponse{}, nil
}

// TestCommandsSendWhatTheFlagsSay: each command's flags reach its
// request (the term's options, the head entry to keep), and every call
// carries --timeout as its deadline.
func TestCommandsSendWhatTheFlagsSay(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rec := &recordingNode{}
	replicationgrpc.RegisterOxiaCoordinationServer(srv, rec)
	replicationgrpc.RegisterOxiaLogReplicationServer(srv, rec)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		<-served
	}()
	target := []string{"--target", lis.Addr().String(), "--namespace", "rec", "--shard", "7"}
	for _, c := range []struct {
		args []string
		want proto.Message
	}{
		{[]string{"status"}, &replicationpb.GetStatusRequest{Namespace: "rec", Shard: 7}},
		{[]string{"new-term", "--term", "3", "--notifications", "--key-sorting", "hierarchical"},
			&replicationpb.NewTermRequest{Namespace: "rec", Shard: 7, Term: 3, Options: &replicationpb.NewTermOptions{EnableNotifications: true, KeySorting: replicationpb.KeySortingType_HIERARCHICAL}}},
		{[]string{"new-term", "--term", "4"},
			&replicationpb.NewTermRequest{Namespace: "rec", Shard: 7, Term: 4, Options: &replicationpb.NewTermOptions{}}},
		{[]string{"truncate", "--term", "4", "--head-term", "2", "--head-offset", "5"},
			&replicationpb.TruncateRequest{Namespace: "rec", Shard: 7, Term: 4, HeadEntryId: &replicationpb.EntryId{Term: 2, Offset: 5}}},
		{[]string{"delete-shard", "--term", "4"}, &replicationpb.DeleteShardRequest{Namespace: "rec", Shard: 7, Term: 4}},
	} {
		// No deadline of the test's own: the call's is --timeout's.
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append(append([]string{c.args[0]}, target...), c.args[1:]...), &stdout, &stderr); code != 0 {
			t.Fatalf("%v: status %d, stdout %q, stderr %q", c.args, code, stdout.String(), stderr.String())
		}
		rec.mu.Lock()
		got, deadline := rec.requests[len(rec.requests)-1], rec.deadline[len(rec.deadline)-1]
		rec.mu.Unlock()
		if !proto.Equal(got, c.want) {
			t.Errorf("%v sent %v, want %v", c.args, got, c.want)
		}
		if !deadline {
			t.Errorf("%v: the call had no deadline (--timeout)", c.args)
		}
	}
}

// TestUnreachableTarget: a command whose node does not answer fails
// (exit 1) with the call's error, not as a usage error.
func TestUnreachableTarget(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close() // nothing listens there now
	for _, args := range [][]string{
		{"status", "--target", addr},
		{"new-term", "--term", "1", "--target", addr},
		{"truncate", "--term", "1", "--target", addr},
		{"delete-shard", "--term", "1", "--target", addr},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != 1 || out != "" || !strings.HasPrefix(errOut, "replicate "+args[0]+": rpc error: code = Unavailable") || strings.Contains(errOut, "--help") {
			t.Errorf("%v: status %d, stdout %q, stderr %q; want 1 and Unavailable", args, code, out, errOut)
		}
	}
}

// TestUsageBounds: the bounds of the numeric flags are where docs/node.md
// puts them: the largest value is taken (the command then fails on the
// unreachable target: 1, not 2), one beyond is a usage error.
func TestUsageBounds(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	bench := []string{"bench", "--target", addr, "--entries", "1", "--rounds", "1", "--idle", "0", "--baseline=false", "--progress=false"}
	for _, c := range []struct {
		args []string
		code int
	}{
		{append(bench, "--entry-size", "31"), 1},
		{append(bench, "--entry-size", "268435456"), 1},
		{append(bench, "--entry-size", "268435457"), 2},
		{append(bench, "--window", "1048576"), 1},
		{append(bench, "--window", "1048577"), 2},
		{[]string{"demo", "--entries", "9"}, 2},
		// The largest is taken: the demo then fails to start its node.
		{[]string{"demo", "--followerd", filepath.Join(t.TempDir(), "nothing"), "--entries", "1099511627776"}, 1},
		{[]string{"demo", "--followerd", os.Args[0], "--entries", "1099511627777"}, 2},
	} {
		code, _, errOut := runCLI(t, c.args...)
		if code != c.code {
			t.Errorf("%v: status %d, want %d; stderr %q", c.args[len(c.args)-2:], code, c.code, errOut)
		}
	}
}

// TestBenchReportsANodeThatFailsToStop: a bench whose own node exits
// non-zero when stopped fails, and says how the node ended.
func TestBenchReportsANodeThatFailsToStop(t *testing.T) {
	t.Setenv("REPLICATE_TEST_STOP_STATUS", "1") // inherited by the child
	code, out, errOut := runCLI(t, "bench", "--followerd", os.Args[0], "--entries", "10", "--rounds", "1", "--idle", "0", "--baseline=false", "--progress=false")
	if code != 1 || !strings.Contains(errOut, "a child node ended: exit status 1") {
		t.Fatalf("bench with a node exiting 1: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
