package grpcapi_test

// Pairs of checks that fail together over gRPC: the routing validation of
// SPEC §5 comes before anything else (the message names the first bad
// field), then the follower's checks in the order of SPEC §2; a rejected
// call leaves nothing on disk.

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// TestCheckOrderUnaryValidationPairs: several bad fields at once; the first
// in SPEC order is named (namespace, shard, then the call's own first
// check: term < 0, missing head_entry_id). Nothing is created.
func TestCheckOrderUnaryValidationPairs(t *testing.T) {
	n := startNode(t, "")
	coord, repl := n.conn.Coordination, n.conn.Replication
	cases := []struct {
		name  string
		call  func(ctx context.Context) error
		field string
	}{
		{"NewTerm: namespace + shard + term", func(ctx context.Context) error {
			_, err := coord.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "../x", Shard: -1, Term: -1})
			return err
		}, "namespace"},
		{"NewTerm: shard + term", func(ctx context.Context) error {
			_, err := coord.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "ns", Shard: -1, Term: -1})
			return err
		}, "shard"},
		{"Truncate: namespace + shard + head", func(ctx context.Context) error {
			_, err := repl.Truncate(ctx, &replicationpb.TruncateRequest{Namespace: "", Shard: -1, Term: -1})
			return err
		}, "namespace"},
		{"Truncate: shard + head", func(ctx context.Context) error {
			_, err := repl.Truncate(ctx, &replicationpb.TruncateRequest{Namespace: "ns", Shard: -1, Term: -1})
			return err
		}, "shard"},
		{"Truncate: head on a shard not hosted (NotMember)", func(ctx context.Context) error {
			_, err := repl.Truncate(ctx, &replicationpb.TruncateRequest{Namespace: "ns", Shard: 3, Term: -1})
			return err
		}, "head_entry_id"},
		{"DeleteShard: namespace + shard + term", func(ctx context.Context) error {
			_, err := coord.DeleteShard(ctx, &replicationpb.DeleteShardRequest{Namespace: "a/b", Shard: -1, Term: -1})
			return err
		}, "namespace"},
		{"DeleteShard: shard + term", func(ctx context.Context) error {
			_, err := coord.DeleteShard(ctx, &replicationpb.DeleteShardRequest{Namespace: "ns", Shard: -1, Term: -1})
			return err
		}, "shard"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call(ctxT(t))
			wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, c.field)
			// The fields after it are not named.
			if c.field == "namespace" && strings.Contains(err.Error(), "shard:") {
				t.Fatalf("%v names the shard too", err)
			}
		})
	}
	if got := listTree(t, n.dir); !slices.Equal(got, []string{".lock"}) {
		t.Fatalf("the data directory holds %v after invalid calls", got)
	}
}

// TestCheckOrderStreamValidationPairs: bad routing metadata beats
// everything the stream carries (a malformed message, no chunk, a bad
// chunk), and the namespace is named before the shard-id.
func TestCheckOrderStreamValidationPairs(t *testing.T) {
	n := startNode(t, "")
	raw := rawClient(t, n)
	malformed := []byte{0x0a, 0xff}
	for _, c := range []struct {
		name  string
		md    []string
		field string
	}{
		{"bad namespace + bad shard-id", []string{"namespace", "..", "shard-id", "-1"}, "namespace metadata"},
		{"bad namespace + missing shard-id", []string{"namespace", "a/b"}, "namespace metadata"},
		{"namespace twice + shard-id twice", []string{"namespace", "a", "namespace", "b", "shard-id", "1", "shard-id", "2"}, "namespace metadata"},
		{"missing namespace + bad shard-id", []string{"shard-id", "01"}, "namespace metadata"},
		{"bad shard-id", []string{"namespace", "ns", "shard-id", "+1"}, "shard-id metadata"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(ctxT(t), metadata.Pairs(c.md...))
			for _, method := range []string{"/replication.OxiaLogReplication/Replicate", "/replication.OxiaLogReplication/SendSnapshot"} {
				stream, err := raw.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
				if err != nil {
					t.Fatal(err)
				}
				_ = stream.SendMsg(&malformed)
				var reply []byte
				wantCode(t, stream.RecvMsg(&reply), codes.InvalidArgument, grpcapi.ReasonInvalidArgument, c.field)
			}
			// No chunk at all, and a chunk that is wrong in every way.
			snap, err := n.conn.Replication.SendSnapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = snap.Send(&replicationpb.SnapshotChunk{Term: -5, Name: "../x", ChunkIndex: 3, ChunkCount: 1})
			_, err = snap.CloseAndRecv()
			wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, c.field)
		})
	}
	if got := listTree(t, n.dir); !slices.Equal(got, []string{".lock"}) {
		t.Fatalf("the data directory holds %v after invalid calls", got)
	}
}

// TestCheckOrderStreamsOnShards: past routing, the follower's order. A
// stream on a shard not hosted, or on a NotMember follower with an install
// attached, is not a member whatever it sends; a snapshot beside an
// attached stream or install is a conflict whatever it sends (a malformed
// first chunk included); a snapshot refused on a shard not hosted leaves
// nothing.
func TestCheckOrderStreamsOnShards(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	raw := rawClient(t, n)
	malformed := []byte{0x0a, 0xff}
	rawCall := func(s leader.Shard, method string) error {
		t.Helper()
		stream, err := raw.NewStream(leader.StreamContext(ctxT(t), s), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.SendMsg(&malformed)
		var reply []byte
		return stream.RecvMsg(&reply)
	}
	const replicate, sendSnapshot = "/replication.OxiaLogReplication/Replicate", "/replication.OxiaLogReplication/SendSnapshot"

	// Not hosted: a malformed Append is not looked at.
	free := leader.Shard{Namespace: "order", Shard: 1}
	aWantErr(t, rawCall(free, replicate), codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	// Not hosted: a malformed first chunk, and a chunk of a negative term
	// with a bad name (the term is checked first), leave nothing.
	aWantErr(t, rawCall(free, sendSnapshot), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	_, err := sendChunks(t, c, free, &replicationpb.SnapshotChunk{Term: -1, Name: "../x", ChunkCount: 1})
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	if got := listTree(t, n.dir); !slices.Equal(got, []string{".lock"}) {
		t.Fatalf("the data directory holds %v after refused calls", got)
	}

	// NotMember with an install attached (on a shard whose step log is
	// new: aHoldInstall waits for a step after the last one).
	nm := leader.Shard{Namespace: "order", Shard: 3}
	_, snap, cancelSnap := aHoldInstall(t, c, nm, 4)
	aWantErr(t, rawCall(nm, replicate), codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	aWantErr(t, rawCall(nm, sendSnapshot), codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	_, err = sendChunks(t, c, nm) // no chunk
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	_, err = sendChunks(t, c, nm, &replicationpb.SnapshotChunk{Term: -1, Name: "../x", ChunkCount: 1})
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	cancelSnap()
	_, _ = snap.CloseAndRecv()

	// A stream attached to a fenced follower (advertisements only: still
	// Fenced).
	s := leader.Shard{Namespace: "order", Shard: 2}
	if _, err := c.NewTerm(ctxT(t), s, 3, nil); err != nil {
		t.Fatal(err)
	}
	seq := aLastSeq(t, c, s)
	st, _ := aOpen(t, c, s)
	aSend(t, st, aCommit(3, -1, false))
	aWaitStep(t, c, s, seq, "AttachStream")
	aWantErr(t, rawCall(s, sendSnapshot), codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	_, err = sendChunks(t, c, s) // no chunk
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	_, err = sendChunks(t, c, s, &replicationpb.SnapshotChunk{Term: 9, Name: "../x", ChunkCount: 1})
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	// A second stream: conflict, whatever it sends.
	aWantErr(t, rawCall(s, replicate), codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	st2, _ := aOpen(t, c, s)
	aSend(t, st2, aEntry(9, 9, 99, 5, false))
	_, err = aDrain(st2)
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	// The attached stream is untouched.
	aWantStatus(t, c, s, 3, replicationpb.ServingStatus_FENCED, -1, -1)
	aSend(t, st, aEntry(3, 3, 0, -1, false))
	if a := aRecv(t, st); a != 0 {
		t.Fatalf("ack %d", a)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := aDrain(st); err != nil {
		t.Fatal(err)
	}
	aWantStatus(t, c, s, 3, replicationpb.ServingStatus_FOLLOWER, 0, -1)
}

// TestInvalidRequestsOpenNoFollower: a request whose routing is valid but
// whose body is not (a negative term, no head entry) is refused before
// any follower is opened, for a shard not hosted as for one hosted on
// disk and not open since a restart: no follower is opened (the shard
// observer, asked at each opening, is never asked).
func TestInvalidRequestsOpenNoFollower(t *testing.T) {
	var opened atomic.Int32
	observe := func(o *grpcapi.Options) {
		o.ShardObserver = func(string, int64) fsm.Observer {
			opened.Add(1)
			return nil
		}
	}
	dir := t.TempDir()
	n := startNode(t, dir)
	fence(t, n.conn, leader.Shard{Namespace: "ns", Shard: 1}, 2)
	n.stop()
	n = startNode(t, dir, observe)
	coord, repl := n.conn.Coordination, n.conn.Replication
	for _, shard := range []int64{1, 7} { // hosted on disk; not hosted
		for _, c := range []struct {
			name  string
			call  func(ctx context.Context) error
			field string
		}{
			{"NewTerm", func(ctx context.Context) error {
				_, err := coord.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "ns", Shard: shard, Term: -1})
				return err
			}, "term"},
			{"DeleteShard", func(ctx context.Context) error {
				_, err := coord.DeleteShard(ctx, &replicationpb.DeleteShardRequest{Namespace: "ns", Shard: shard, Term: -1})
				return err
			}, "term"},
			{"Truncate", func(ctx context.Context) error {
				_, err := repl.Truncate(ctx, &replicationpb.TruncateRequest{Namespace: "ns", Shard: shard, Term: 2})
				return err
			}, "head_entry_id"},
		} {
			wantCode(t, c.call(ctxT(t)), codes.InvalidArgument, grpcapi.ReasonInvalidArgument, c.field)
			if got := opened.Load(); got != 0 {
				t.Fatalf("%s of shard %d refused after opening %d followers", c.name, shard, got)
			}
		}
	}
	// The observer is asked, once the shard opens.
	if _, err := n.conn.Status(ctxT(t), leader.Shard{Namespace: "ns", Shard: 1}); err != nil {
		t.Fatal(err)
	}
	if got := opened.Load(); got != 1 {
		t.Fatalf("GetStatus of a hosted shard opened %d followers, want 1", got)
	}
}

// TestCheckOrderTermMetadataAfterRouting: a Replicate stream's "term"
// metadata is checked after its routing, which every call validates
// first, and the message names the first bad field. With both bad, the
// routing key is named, not the term; nothing is created.
func TestCheckOrderTermMetadataAfterRouting(t *testing.T) {
	n := startNode(t, "")
	for _, c := range []struct {
		name  string
		md    []string
		field string
	}{
		{"bad namespace + bad term", []string{"namespace", "..", "shard-id", "1", "term", "x"}, "namespace metadata"},
		{"missing namespace + negative term", []string{"shard-id", "1", "term", "-1"}, "namespace metadata"},
		{"bad shard-id + term twice", []string{"namespace", "ns", "shard-id", "01", "term", "1", "term", "1"}, "shard-id metadata"},
		{"missing shard-id + bad term", []string{"namespace", "ns", "term", "02"}, "shard-id metadata"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(ctxT(t), metadata.Pairs(c.md...))
			repl, err := n.conn.Replication.Replicate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = recvEnd(repl)
			wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, c.field)
			if strings.Contains(err.Error(), "term metadata") {
				t.Fatalf("%v names the term metadata, checked after the routing", err)
			}
		})
	}
	if got := listTree(t, n.dir); !slices.Equal(got, []string{".lock"}) {
		t.Fatalf("the data directory holds %v after invalid calls", got)
	}
}
