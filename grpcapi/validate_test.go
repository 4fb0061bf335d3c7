package grpcapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// TestStreamMetadataValidation sends every malformed routing metadata to
// both streams: each is InvalidArgument naming the field, and no
// directory is created.
func TestStreamMetadataValidation(t *testing.T) {
	n := startNode(t, "")
	cases := []struct {
		name  string
		md    []string // key, value pairs
		field string
	}{
		{"no metadata", nil, "namespace metadata"},
		{"missing namespace", []string{"shard-id", "1"}, "namespace metadata"},
		{"missing shard-id", []string{"namespace", "ns"}, "shard-id metadata"},
		{"namespace twice", []string{"namespace", "ns", "namespace", "ns", "shard-id", "1"}, "namespace metadata"},
		{"namespace twice, different", []string{"namespace", "a", "namespace", "b", "shard-id", "1"}, "namespace metadata"},
		{"shard-id twice", []string{"namespace", "ns", "shard-id", "1", "shard-id", "1"}, "shard-id metadata"},
		{"empty namespace", []string{"namespace", "", "shard-id", "1"}, "namespace metadata"},
		{"namespace ..", []string{"namespace", "..", "shard-id", "1"}, "namespace metadata"},
		{"namespace .", []string{"namespace", ".", "shard-id", "1"}, "namespace metadata"},
		{"namespace escaping", []string{"namespace", "../../etc", "shard-id", "1"}, "namespace metadata"},
		{"namespace with a slash", []string{"namespace", "a/b", "shard-id", "1"}, "namespace metadata"},
		{"absolute namespace", []string{"namespace", "/tmp", "shard-id", "1"}, "namespace metadata"},
		{"hidden namespace", []string{"namespace", ".lock", "shard-id", "1"}, "namespace metadata"},
		{"namespace too long", []string{"namespace", strings.Repeat("n", 129), "shard-id", "1"}, "namespace metadata"},
		{"namespace with a space", []string{"namespace", "a b", "shard-id", "1"}, "namespace metadata"},
		{"empty shard-id", []string{"namespace", "ns", "shard-id", ""}, "shard-id metadata"},
		{"negative shard-id", []string{"namespace", "ns", "shard-id", "-1"}, "shard-id metadata"},
		{"signed shard-id", []string{"namespace", "ns", "shard-id", "+1"}, "shard-id metadata"},
		{"padded shard-id", []string{"namespace", "ns", "shard-id", "01"}, "shard-id metadata"},
		{"spaced shard-id", []string{"namespace", "ns", "shard-id", " 1"}, "shard-id metadata"},
		{"trailing space", []string{"namespace", "ns", "shard-id", "1 "}, "shard-id metadata"},
		{"hex shard-id", []string{"namespace", "ns", "shard-id", "0x1"}, "shard-id metadata"},
		{"exponent shard-id", []string{"namespace", "ns", "shard-id", "1e3"}, "shard-id metadata"},
		{"overflowing shard-id", []string{"namespace", "ns", "shard-id", "9223372036854775808"}, "shard-id metadata"},
		{"word shard-id", []string{"namespace", "ns", "shard-id", "one"}, "shard-id metadata"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(ctxT(t), metadata.Pairs(c.md...))
			repl, err := n.conn.Replication.Replicate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = repl.Send(&replicationpb.Append{Term: 1})
			wantCode(t, recvEnd(repl), codes.InvalidArgument, grpcapi.ReasonInvalidArgument, c.field)

			snap, err := n.conn.Replication.SendSnapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = snap.Send(&replicationpb.SnapshotChunk{Term: 1, Name: "x", ChunkCount: 1})
			_, err = snap.CloseAndRecv()
			wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, c.field)
		})
	}
	if got := listTree(t, n.dir); !cmp.Equal(got, []string{".lock"}) {
		t.Fatalf("the data directory holds %v after invalid calls", got)
	}

	// The extremes of the valid ranges are accepted (and, the shards
	// being unknown, not members).
	for _, md := range [][]string{
		{"namespace", strings.Repeat("n", 128), "shard-id", "9223372036854775807"},
		{"namespace", "A.b-c_0", "shard-id", "0"},
	} {
		ctx := metadata.NewOutgoingContext(ctxT(t), metadata.Pairs(md...))
		repl, err := n.conn.Replication.Replicate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, recvEnd(repl), codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	}
}

// TestRequestValidation sends every malformed unary request: each is
// InvalidArgument naming the field, and nothing is created.
func TestRequestValidation(t *testing.T) {
	n := startNode(t, "")
	coord, repl, insp := n.conn.Coordination, n.conn.Replication, n.conn.Inspect
	head := &replicationpb.EntryId{Term: 1, Offset: -1}
	cases := []struct {
		name  string
		call  func(ctx context.Context) error
		field string
	}{
		{"NewTerm: empty namespace", func(ctx context.Context) error {
			_, err := coord.NewTerm(ctx, &replicationpb.NewTermRequest{Shard: 1, Term: 1})
			return err
		}, "namespace"},
		{"NewTerm: escaping namespace", func(ctx context.Context) error {
			_, err := coord.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "../x", Shard: 1, Term: 1})
			return err
		}, "namespace"},
		{"NewTerm: negative shard", func(ctx context.Context) error {
			_, err := coord.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "ns", Shard: -1, Term: 1})
			return err
		}, "shard"},
		{"NewTerm: negative term", func(ctx context.Context) error {
			_, err := coord.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "ns", Shard: 1, Term: -1})
			return err
		}, "term"},
		{"Truncate: bad namespace", func(ctx context.Context) error {
			_, err := repl.Truncate(ctx, &replicationpb.TruncateRequest{Namespace: "a/b", Shard: 1, Term: 1, HeadEntryId: head})
			return err
		}, "namespace"},
		{"Truncate: negative shard", func(ctx context.Context) error {
			_, err := repl.Truncate(ctx, &replicationpb.TruncateRequest{Namespace: "ns", Shard: -5, Term: 1, HeadEntryId: head})
			return err
		}, "shard"},
		{"Truncate: no head entry", func(ctx context.Context) error {
			_, err := repl.Truncate(ctx, &replicationpb.TruncateRequest{Namespace: "ns", Shard: 1, Term: 1})
			return err
		}, "head_entry_id"},
		{"DeleteShard: bad namespace", func(ctx context.Context) error {
			_, err := coord.DeleteShard(ctx, &replicationpb.DeleteShardRequest{Namespace: "..", Shard: 1, Term: 1})
			return err
		}, "namespace"},
		{"DeleteShard: negative shard", func(ctx context.Context) error {
			_, err := coord.DeleteShard(ctx, &replicationpb.DeleteShardRequest{Namespace: "ns", Shard: -1, Term: 1})
			return err
		}, "shard"},
		{"DeleteShard: negative term", func(ctx context.Context) error {
			_, err := coord.DeleteShard(ctx, &replicationpb.DeleteShardRequest{Namespace: "ns", Shard: 1, Term: -1})
			return err
		}, "term"},
		{"GetStatus: bad namespace", func(ctx context.Context) error {
			_, err := coord.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: "-x", Shard: 1})
			return err
		}, "namespace"},
		{"GetStatus: negative shard", func(ctx context.Context) error {
			_, err := coord.GetStatus(ctx, &replicationpb.GetStatusRequest{Shard: -1})
			return err
		}, "shard"},
		{"Inspect.Get: bad namespace", func(ctx context.Context) error {
			_, err := insp.Get(ctx, &inspectpb.GetRequest{Namespace: "", Shard: 1})
			return err
		}, "namespace"},
		{"Inspect.Steps: negative shard", func(ctx context.Context) error {
			_, err := insp.Steps(ctx, &inspectpb.StepsRequest{Namespace: "ns", Shard: -1})
			return err
		}, "shard"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantCode(t, c.call(ctxT(t)), codes.InvalidArgument, grpcapi.ReasonInvalidArgument, c.field)
		})
	}
	// Calls that need no follower create nothing either: GetStatus (empty
	// namespace = "default") and DeleteShard of an unknown shard.
	_, err := coord.GetStatus(ctxT(t), &replicationpb.GetStatusRequest{Shard: 1})
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	if _, err := coord.DeleteShard(ctxT(t), &replicationpb.DeleteShardRequest{Namespace: "ns", Shard: 1, Term: 3}); err != nil {
		t.Fatalf("DeleteShard of an unknown shard: %v", err)
	}
	if got := listTree(t, n.dir); !cmp.Equal(got, []string{".lock"}) {
		t.Fatalf("the data directory holds %v after invalid calls", got)
	}
}
