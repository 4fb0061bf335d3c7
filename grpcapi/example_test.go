package grpcapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

// Example runs a node on a free loopback port and fences shard 7 of the
// namespace "default" through a plain gRPC client.
func Example() {
	dir, err := os.MkdirTemp("", "grpcapi-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	srv, err := grpcapi.New(grpcapi.Options{DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	coord := replicationgrpc.NewOxiaCoordinationClient(conn)
	ctx := context.Background()

	resp, err := coord.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "default", Shard: 7, Term: 1})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("head offset", resp.GetHeadEntryId().GetOffset())
	st, err := coord.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: "default", Shard: 7})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.GetStatus(), "term", st.GetTerm())

	// Errors arrive as gRPC statuses carrying Oxia's reason.
	_, err = coord.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "default", Shard: 7, Term: 0})
	fmt.Println(status.Code(err), grpcapi.Reason(err))

	// One directory per shard: <data>/<namespace>/<shard>/{wal,store}.
	entries, err := os.ReadDir(filepath.Join(dir, "default", "7"))
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Println("default/7/" + e.Name())
	}

	if err := srv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	if err := <-served; err != nil {
		log.Fatal(err)
	}
	// Output:
	// head offset -1
	// FENCED term 1
	// FailedPrecondition INVALID_TERM
	// default/7/store
	// default/7/wal
}

// Example_replicate streams two entries to a node as a leader would: the
// stream is routed by its metadata, and the Inspect service reads the
// applied values back.
func Example_replicate() {
	dir, err := os.MkdirTemp("", "grpcapi-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := grpcapi.New(grpcapi.Options{DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()

	coord := replicationgrpc.NewOxiaCoordinationClient(conn)
	repl := replicationgrpc.NewOxiaLogReplicationClient(conn)
	if _, err := coord.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "shop", Shard: 0, Term: 5}); err != nil {
		log.Fatal(err)
	}

	streamCtx := metadata.AppendToOutgoingContext(ctx, grpcapi.MetadataNamespace, "shop", grpcapi.MetadataShardID, "0")
	stream, err := repl.Replicate(streamCtx)
	if err != nil {
		log.Fatal(err)
	}
	for i, kv := range [][2]string{{"mug", "3"}, {"plate", "12"}} {
		value := leader.AppendPut(nil, []byte(kv[0]), []byte(kv[1])) // a kvpb.WriteBatch
		entry := &replicationpb.LogEntry{Term: 5, Offset: int64(i), Value: value}
		if err := stream.Send(&replicationpb.Append{Term: 5, Entry: entry, CommitOffset: int64(i) - 1}); err != nil {
			log.Fatal(err)
		}
		ack, err := stream.Recv() // sent once the entry is durable
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("ack", ack.GetOffset())
	}
	// Advertise the last entry as committed, half-close, and wait for the
	// node to end the stream.
	if err := stream.Send(&replicationpb.Append{Term: 5, CommitOffset: 1}); err != nil {
		log.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		log.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		log.Fatal(err)
	}

	inspect := inspectpb.NewInspectClient(conn)
	commit := int64(1)
	got, err := inspect.Get(ctx, &inspectpb.GetRequest{
		Namespace: "shop", Shard: 0, Keys: [][]byte{[]byte("mug"), []byte("plate")},
		MinCommitOffset: &commit, // wait until offset 1 is applied
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, v := range got.GetValues() {
		fmt.Printf("%s ", v.GetValue())
	}
	fmt.Println("commit", got.GetCommitOffset())

	if err := srv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	if err := <-served; err != nil {
		log.Fatal(err)
	}
	// Output:
	// ack 0
	// ack 1
	// 3 12 commit 1
}

// oneShard is a gRPC server of its own around one follower: every call
// goes to the same follower, and grpcapi.Status maps its errors.
type oneShard struct {
	replicationgrpc.UnimplementedOxiaCoordinationServer
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	f *follower.Follower
}

func (s *oneShard) NewTerm(_ context.Context, req *replicationpb.NewTermRequest) (*replicationpb.NewTermResponse, error) {
	head, err := s.f.NewTerm(logpos.Term(req.GetTerm()), follower.TermOptions{})
	if err != nil {
		return nil, grpcapi.Status(err, false)
	}
	return &replicationpb.NewTermResponse{
		HeadEntryId: &replicationpb.EntryId{Term: int64(head.Term), Offset: int64(head.Offset)},
	}, nil
}

// Replicate hands the gRPC stream to the follower as it is: it satisfies
// follower.ReplicationStream.
func (s *oneShard) Replicate(stream grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	return grpcapi.Status(s.f.Replicate(stream), false)
}

// Example_ownServer serves one follower with oneShard instead of
// grpcapi.Server.
func Example_ownServer() {
	dir, err := os.MkdirTemp("", "grpcapi-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	f, err := follower.Open(follower.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	gs := grpc.NewServer()
	replicationgrpc.RegisterOxiaCoordinationServer(gs, &oneShard{f: f})
	replicationgrpc.RegisterOxiaLogReplicationServer(gs, &oneShard{f: f})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	if _, err := replicationgrpc.NewOxiaCoordinationClient(conn).NewTerm(ctx, &replicationpb.NewTermRequest{Term: 1}); err != nil {
		log.Fatal(err)
	}
	stream, err := replicationgrpc.NewOxiaLogReplicationClient(conn).Replicate(ctx)
	if err != nil {
		log.Fatal(err)
	}
	entry := &replicationpb.LogEntry{Term: 1, Offset: 0, Value: leader.AppendPut(nil, []byte("k"), []byte("v"))}
	if err := stream.Send(&replicationpb.Append{Term: 1, Entry: entry, CommitOffset: -1}); err != nil {
		log.Fatal(err)
	}
	ack, err := stream.Recv()
	if err != nil {
		log.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		log.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		log.Fatal(err)
	}
	fmt.Printf("ack %d, %+v\n", ack.GetOffset(), f.Status())

	gs.GracefulStop()
	if err := <-served; err != nil {
		log.Fatal(err)
	}
	// Output:
	// ack 0, {Term:1 State:Follower Head:0 Commit:-1}
}

// ExampleServer_Collector registers the node's metrics in a Prometheus
// registry. A program serves the registry over HTTP with
// promhttp.HandlerFor(reg, promhttp.HandlerOpts{}); here it is read
// directly.
func ExampleServer_Collector() {
	dir, err := os.MkdirTemp("", "grpcapi-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := grpcapi.New(grpcapi.Options{DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Collector())

	// A call through the wire would do the same: fence shard 7.
	if _, err := srv.NewTerm(context.Background(), &replicationpb.NewTermRequest{Namespace: "default", Shard: 7, Term: 4}); err != nil {
		log.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range families {
		switch mf.GetName() {
		case "tablefsm_follower_term", "tablefsm_follower_transitions_total":
			for _, m := range mf.GetMetric() {
				fmt.Print(mf.GetName(), " ")
				for _, l := range m.GetLabel() {
					fmt.Printf("%s=%s ", l.GetName(), l.GetValue())
				}
				fmt.Println(m.GetGauge().GetValue() + m.GetCounter().GetValue())
			}
		}
	}
	// Output:
	// tablefsm_follower_term namespace=default shard=7 4
	// tablefsm_follower_transitions_total event=NewTerm from=NotMember namespace=default shard=7 to=Fenced 1
}
