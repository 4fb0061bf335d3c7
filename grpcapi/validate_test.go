package grpcapi_test

import (
	"context"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/metadata"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
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
		{"negative zero shard-id", []string{"namespace", "ns", "shard-id", "-0"}, "shard-id metadata"},
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

// TestRefusedCallsOnUnknownShards: a shard the node does not host is a
// follower with nothing stored. Truncate and a replication stream are
// refused on it as on a NotMember follower, and leave nothing on disk, so
// the node still does not host it, also after a restart.
func TestRefusedCallsOnUnknownShards(t *testing.T) {
	n := startNode(t, "")
	ctx := ctxT(t)
	for i := int64(0); i < 3; i++ {
		s := leader.Shard{Namespace: "probe", Shard: i}
		_, err := n.conn.Truncate(ctx, s, 1, logpos.EntryID{Term: 1, Offset: -1})
		wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidStatus, "")
		st, _ := aOpen(t, n.conn, s)
		aSend(t, st, aEntry(1, 1, 0, -1, false))
		_, err = aDrain(st)
		wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	}
	if got := listTree(t, n.dir); !cmp.Equal(got, []string{".lock"}) {
		t.Fatalf("the data directory holds %v after refused calls", got)
	}
	dir := n.dir
	n.stop()
	n = startNode(t, dir)
	_, err := n.conn.Status(ctx, leader.Shard{Namespace: "probe", Shard: 0})
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	// A NewTerm makes it a member; then the same calls work.
	s := leader.Shard{Namespace: "probe", Shard: 0}
	fence(t, n.conn, s, 1)
	aFill(t, n.conn, s, 1, 0, 2, -1)
}

// rawCodec sends and receives messages as the bytes they are, so that a
// test can send what no protobuf library would encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// rawClient returns a connection to n whose calls send and receive raw
// bytes (rawCodec), closed when the test ends.
func rawClient(t *testing.T, n *node) *grpc.ClientConn {
	t.Helper()
	raw, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	return raw
}

// TestMalformedMessages: a request or stream message that does not decode
// is InvalidArgument with the INVALID_ARGUMENT reason (the client's
// mistake), on every call, and changes nothing.
func TestMalformedMessages(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "bad", Shard: 1}
	fence(t, n.conn, s, 2)
	raw := rawClient(t, n)
	malformed := []byte{0x0a, 0xff} // field 1, then a length cut short
	wantMalformed := func(err error, message string) {
		t.Helper()
		aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
		if want := "malformed replication." + message; !strings.Contains(err.Error(), want) {
			t.Fatalf("%v does not say %q", err, want)
		}
	}
	for method, message := range map[string]string{
		"/replication.OxiaCoordination/NewTerm":     "NewTermRequest",
		"/replication.OxiaCoordination/GetStatus":   "GetStatusRequest",
		"/replication.OxiaCoordination/DeleteShard": "DeleteShardRequest",
		"/replication.OxiaLogReplication/Truncate":  "TruncateRequest",
	} {
		var reply []byte
		wantMalformed(raw.Invoke(ctxT(t), method, &malformed, &reply), message)
	}
	for method, message := range map[string]string{
		"/replication.OxiaLogReplication/Replicate":    "Append",
		"/replication.OxiaLogReplication/SendSnapshot": "SnapshotChunk",
	} {
		desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
		stream, err := raw.NewStream(leader.StreamContext(ctxT(t), s), desc, method)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.SendMsg(&malformed); err != nil {
			t.Fatal(err)
		}
		var reply []byte
		wantMalformed(stream.RecvMsg(&reply), message)
	}
	aWantStatus(t, n.conn, s, 2, replicationpb.ServingStatus_FOLLOWER, -1, -1)
	entries, err := os.ReadDir(n.dir)
	if err != nil || len(entries) != 2 || entries[1].Name() != "bad" {
		t.Fatalf("data directory holds %v (%v), want only the lock and the fenced shard", entries, err)
	}
}

// TestNewLeavesTheGeneratedServicesAlone: a node checks the messages of
// its services with handlers of its own, and leaves the generated service
// descriptions, which every server of the process registers from, with
// their generated handlers.
func TestNewLeavesTheGeneratedServicesAlone(t *testing.T) {
	startNode(t, "")
	for _, d := range []*grpc.ServiceDesc{&replicationgrpc.OxiaLogReplication_ServiceDesc, &replicationgrpc.OxiaCoordination_ServiceDesc, &inspectpb.Inspect_ServiceDesc} {
		generated := func(method string, handler any) {
			name := runtime.FuncForPC(reflect.ValueOf(handler).Pointer()).Name()
			service := d.ServiceName[strings.LastIndex(d.ServiceName, ".")+1:]
			if want := reflect.TypeOf(d.HandlerType).Elem().PkgPath() + "._" + service + "_" + method + "_Handler"; name != want {
				t.Errorf("%s/%s is handled by %s, not by its generated handler", d.ServiceName, method, name)
			}
		}
		for _, m := range d.Methods {
			generated(m.MethodName, m.Handler)
		}
		for _, s := range d.Streams {
			generated(s.StreamName, s.Handler)
		}
	}
}

// A codec forced through Options.GRPCOptions replaces the node's own and
// serves every call: gRPC's protobuf codec here.
func TestForcedCodecServes(t *testing.T) {
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.GRPCOptions = []grpc.ServerOption{grpc.ForceServerCodecV2(encoding.GetCodecV2(protocodec.Name))}
	})
	s := leader.Shard{Namespace: "codec", Shard: 1}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 20, true)
	checkApplied(t, n.conn, s, 18)
}

// TestLongValuesAreNotEchoed: a refusal quotes only the start of a long
// value it refuses, so that its message fits the header limits of any
// client (here 8 KiB): the client gets InvalidArgument, not a broken
// stream.
func TestLongValuesAreNotEchoed(t *testing.T) {
	n := startNode(t, "")
	fence(t, n.conn, leader.Shard{Namespace: "ok", Shard: 1}, 1)
	cc, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithMaxHeaderListSize(8<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	long := strings.Repeat("1", 10<<10)
	t.Run("NewTerm namespace", func(t *testing.T) {
		_, err := replicationgrpc.NewOxiaCoordinationClient(cc).NewTerm(ctxT(t), &replicationpb.NewTermRequest{Namespace: "n%" + long, Shard: 1, Term: 1})
		wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, "namespace")
	})
	t.Run("Replicate shard-id", func(t *testing.T) {
		ctx := metadata.NewOutgoingContext(ctxT(t), metadata.Pairs("namespace", "ok", "shard-id", long))
		repl, err := replicationgrpc.NewOxiaLogReplicationClient(cc).Replicate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, recvEnd(repl), codes.InvalidArgument, grpcapi.ReasonInvalidArgument, "shard-id metadata")
	})
	t.Run("SendSnapshot file name", func(t *testing.T) {
		snap, err := replicationgrpc.NewOxiaLogReplicationClient(cc).SendSnapshot(leader.StreamContext(ctxT(t), leader.Shard{Namespace: "ok", Shard: 1}))
		if err != nil {
			t.Fatal(err)
		}
		_ = snap.Send(&replicationpb.SnapshotChunk{Term: 1, Name: "n" + long, ChunkCount: 1})
		_, err = snap.CloseAndRecv()
		wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, "file name")
	})
}

// TestMissingMetadataSaysMissing: a routing key that is absent is refused
// as missing, not as an empty value.
func TestMissingMetadataSaysMissing(t *testing.T) {
	n := startNode(t, "")
	for _, c := range []struct {
		md   []string
		want string
	}{
		{[]string{"shard-id", "1"}, "namespace metadata: missing"},
		{[]string{"namespace", "ns"}, "shard-id metadata: missing"},
	} {
		ctx := metadata.NewOutgoingContext(ctxT(t), metadata.Pairs(c.md...))
		repl, err := n.conn.Replication.Replicate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, recvEnd(repl), codes.InvalidArgument, grpcapi.ReasonInvalidArgument, c.want)
	}
}

// TestReplicateTermMetadata: a Replicate stream whose metadata names the
// term its leader leads, as Oxia's leaders send it, attaches only in
// that term. A deposed leader's stream is refused with INVALID_TERM
// before it sends anything, and leaves the shard to the new leader; a
// malformed term is InvalidArgument naming the metadata; a stream that
// names none attaches as before.
func TestReplicateTermMetadata(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "termed", Shard: 0}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 5, true)
	head, err := n.conn.NewTerm(ctxT(t), s, 2, nil) // Fenced: the new leader is to truncate
	if err != nil {
		t.Fatal(err)
	}
	open := func(md ...string) grpc.BidiStreamingClient[replicationpb.Append, replicationpb.Ack] {
		t.Helper()
		ctx := metadata.AppendToOutgoingContext(leader.StreamContext(ctxT(t), s), md...)
		st, err := n.conn.Replication.Replicate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, stale := range []string{"1", "3"} {
		wantCode(t, recvEnd(open(grpcapi.MetadataTerm, stale)), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm,
			"leader term "+stale+" is not the current term 2")
	}
	for _, bad := range [][]string{{"term", ""}, {"term", "-1"}, {"term", "02"}, {"term", "two"}, {"term", "2", "term", "2"}} {
		wantCode(t, recvEnd(open(bad...)), codes.InvalidArgument, grpcapi.ReasonInvalidArgument, "term metadata")
	}
	// None of them attached: the new leader truncates and streams,
	// naming its term (leader.Conn.Replicate does).
	if _, err := n.conn.Truncate(ctxT(t), s, 2, head); err != nil {
		t.Fatalf("the new leader's Truncate: %v", err)
	}
	if _, err := n.conn.Replicate(ctxT(t), leader.Run{
		Shard: s, Term: 2, First: head.Offset + 1, Count: 5, Window: 4, Cumulative: true, Commit: -1, Value: kvValue,
	}); err != nil {
		t.Fatalf("the new leader's stream, naming its term: %v", err)
	}
	checkApplied(t, n.conn, s, head.Offset+5)

	// SendSnapshot does not read "term" (Oxia's leaders send it there
	// too): the chunks' term decides (spec.md §2.4).
	other := leader.Shard{Namespace: "termed", Shard: 1}
	sctx := metadata.AppendToOutgoingContext(leader.StreamContext(ctxT(t), other), grpcapi.MetadataTerm, "x", grpcapi.MetadataTerm, "9")
	snap, err := n.conn.Replication.SendSnapshot(sctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range snapshotOf(t, 1, 3) {
		if err := snap.Send(ch); err != nil {
			break // CloseAndRecv tells why
		}
	}
	if resp, err := snap.CloseAndRecv(); err != nil || resp.GetAckOffset() != 2 {
		t.Fatalf("a snapshot whose metadata carries a term: %v, %v; want ack 2", resp, err)
	}
}
