package grpcapi_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/stacktest"
)

// TestShutdownEndsAWatchOfAnUnknownService: a health watch of a service
// the node does not serve got SERVICE_UNKNOWN and gets no NOT_SERVING
// from the shutdown; it is ended once the followers are closed
// (Unavailable), and the shutdown completes (it waited for the watch
// until its context ended, not for the drain timeout).
func TestShutdownEndsAWatchOfAnUnknownService(t *testing.T) {
	n := startNode(t, "", func(o *grpcapi.Options) { o.DrainTimeout = time.Hour })
	watch, err := healthpb.NewHealthClient(n.conn.ClientConn()).Watch(ctxT(t), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("watch: %v, %v", r, err)
	}
	shutdownEndsWatch(t, n, watch)
}

// TestShutdownEndsAWatchThatSaidNotServingBefore: a health watch that
// sent NOT_SERVING just before the shutdown began gets no other status
// (the health server sends none twice); it is ended once the followers
// are closed, and the shutdown completes (it waited for the watch until
// its context ended, not for the drain timeout).
func TestShutdownEndsAWatchThatSaidNotServingBefore(t *testing.T) {
	n := startNode(t, "", func(o *grpcapi.Options) { o.DrainTimeout = time.Hour })
	watch, err := healthpb.NewHealthClient(n.conn.ClientConn()).Watch(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v, %v", r, err)
	}
	grpcapi.TurnHealthNotServing(n.srv) // as Shutdown does, but before it began
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch: %v, %v", r, err)
	}
	shutdownEndsWatch(t, n, watch)
}

// shutdownEndsWatch shuts n down, and fails the test unless the shutdown
// succeeds and ends watch with Unavailable.
func shutdownEndsWatch(t *testing.T, n *node, watch healthpb.Health_WatchClient) {
	t.Helper()
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := watch.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	n.stop() // fails the test if Shutdown returns an error
	if err := <-ended; status.Code(err) != codes.Unavailable {
		t.Errorf("the watch ended with %v, want Unavailable", err)
	}
}

// TestShutdownWithAReflectionClientNotReading: a reflection client that
// sends requests and does not read the replies leaves the handler
// blocked in a send; DrainTimeout after the followers closed, its
// connection is closed and the shutdown completes (it waited until its
// context ended, for a drain timer that started only once no handler
// ran).
func TestShutdownWithAReflectionClientNotReading(t *testing.T) {
	n := startNode(t, "", func(o *grpcapi.Options) { o.DrainTimeout = time.Millisecond })
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for range 20000 { // more replies than the windows hold
			if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
				return
			}
		}
	}()
	stacktest.WaitBlockedIn(t, "select", "transport.(*writeQuota).get", nil)
	n.stop() // fails the test if Shutdown returns an error
	cancel()
	<-sent
}

// gatedWatch holds the health watch handler's first Context call (its
// first wait for an update, once it has registered for them) until gate
// closes.
type gatedWatch struct {
	grpc.ServerStream
	once       sync.Once
	registered chan struct{}
	gate       chan struct{}
}

func (g *gatedWatch) Context() context.Context {
	g.once.Do(func() { close(g.registered); <-g.gate })
	return g.ServerStream.Context()
}

// gatedSend holds the health watch handler's first send (its first
// status) until gate closes.
type gatedSend struct {
	grpc.ServerStream
	once    sync.Once
	sending chan struct{}
	gate    chan struct{}
}

func (g *gatedSend) SendMsg(m any) error {
	g.once.Do(func() { close(g.sending); <-g.gate })
	return g.ServerStream.SendMsg(m)
}

// TestShutdownLetsAWatchSayNotServing: a health watch that had sent
// nothing yet when the followers closed (it started as the shutdown
// began) sends NOT_SERVING before it ends; ended then, its handler chose
// at random between that status and its context's end, and the client
// often saw no status at all. So does a watch whose first status,
// SERVING, was on its way when the shutdown began: SERVING does not end
// it.
func TestShutdownLetsAWatchSayNotServing(t *testing.T) {
	type gate func(ss grpc.ServerStream, entered, gate chan struct{}) grpc.ServerStream
	for _, c := range []struct {
		name string
		gate gate
		want []healthpb.HealthCheckResponse_ServingStatus
	}{
		{"nothing sent", func(ss grpc.ServerStream, entered, gate chan struct{}) grpc.ServerStream {
			return &gatedWatch{ServerStream: ss, registered: entered, gate: gate}
		}, []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_NOT_SERVING}},
		{"SERVING on its way", func(ss grpc.ServerStream, entered, gate chan struct{}) grpc.ServerStream {
			return &gatedSend{ServerStream: ss, sending: entered, gate: gate}
		}, []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i := range 20 {
				entered, gate := make(chan struct{}), make(chan struct{})
				gated := grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
					if info.FullMethod == healthpb.Health_Watch_FullMethodName {
						ss = c.gate(ss, entered, gate)
					}
					return h(srv, ss)
				})
				n := startNode(t, "", func(o *grpcapi.Options) { o.GRPCOptions = []grpc.ServerOption{gated} })
				watch, err := healthpb.NewHealthClient(n.conn.ClientConn()).Watch(ctxT(t), &healthpb.HealthCheckRequest{})
				if err != nil {
					t.Fatal(err)
				}
				<-entered
				stopped := make(chan struct{})
				go func() {
					defer close(stopped)
					n.shutdown() // fails the test if Shutdown returns an error
				}()
				<-grpcapi.Drained(n.srv)
				close(gate)
				var got []healthpb.HealthCheckResponse_ServingStatus
				for {
					r, err := watch.Recv()
					if err != nil {
						if status.Code(err) != codes.Unavailable {
							t.Errorf("run %d: the watch ended with %v, want Unavailable", i, err)
						}
						break
					}
					got = append(got, r.GetStatus())
				}
				if !slices.Equal(got, c.want) {
					t.Errorf("run %d: the watch received %v, want %v", i, got, c.want)
				}
				<-stopped
			}
		})
	}
}

// gateHandler is a slog handler that holds the goroutine logging the
// message hold until held is closed, and closes signalled when the
// message signal is logged.
type gateHandler struct {
	hold, signal string
	held         chan struct{}
	signalled    chan struct{}
}

func (h *gateHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *gateHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *gateHandler) WithGroup(string) slog.Handler            { return h }
func (h *gateHandler) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case h.hold:
		waitAtGate(h.held)
	case h.signal:
		close(h.signalled)
	}
	return nil
}

//go:noinline
func waitAtGate(ch <-chan struct{}) { <-ch }

// TestShutdownTidiesTheNamespaceOfAnOverlappingDelete: a DeleteShard of
// the last shard of a namespace that removed the shard's data before the
// shutdown started, and tidies the namespace after, leaves no namespace
// directory: the shutdown tidies it (a removal does not once the node is
// closing). It stayed, empty, until the next start.
func TestShutdownTidiesTheNamespaceOfAnOverlappingDelete(t *testing.T) {
	dir := t.TempDir()
	gate := &gateHandler{hold: "shard deleted", signal: "shutting down", held: make(chan struct{}), signalled: make(chan struct{})}
	n := startNode(t, dir, func(o *grpcapi.Options) { o.Logger = slog.New(gate) })
	s := leader.Shard{Namespace: "ns", Shard: 0}
	fence(t, n.conn, s, 1)

	deleted := make(chan error, 1)
	go func() { deleted <- n.conn.Delete(context.Background(), s, 1) }()
	stacktest.WaitBlockedIn(t, "chan receive", "grpcapi_test.waitAtGate", nil) // the shard's data is gone
	shut := make(chan error, 1)
	go func() { shut <- n.srv.Shutdown(context.Background()) }()
	<-gate.signalled // the shutdown started
	close(gate.held)
	if err := <-deleted; err != nil {
		t.Fatalf("DeleteShard: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	n.down = true // shut down here
	if err := <-n.served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if got := listTree(t, dir); !slices.Equal(got, []string{".lock"}) {
		t.Fatalf("after the DeleteShard of the namespace's only shard and the shutdown, the data directory holds %q, want only .lock", got)
	}
}

// TestShutdownCutShortWhileAnyHandlerRuns: a shutdown whose context ends
// while a handler still runs reports that it was cut short, also when
// another handler, running when the shutdown began to wait for them,
// returned before: the node counts each handler, not just whether one
// returned.
func TestShutdownCutShortWhileAnyHandlerRuns(t *testing.T) {
	entered := make(chan struct{}, 2)
	gates := map[int64]chan struct{}{1: make(chan struct{}), 2: make(chan struct{})}
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.DrainTimeout = time.Hour // only ctx ends the wait
		o.GRPCOptions = []grpc.ServerOption{grpc.ChainUnaryInterceptor(
			func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
				if r, ok := req.(*replicationpb.GetStatusRequest); ok && r.GetNamespace() == "gated" {
					entered <- struct{}{}
					<-gates[r.GetShard()]
				}
				return handler(ctx, req)
			})}
	})
	calls := map[int64]chan error{1: make(chan error, 1), 2: make(chan error, 1)}
	for shard := range gates {
		go func() {
			_, err := n.conn.Status(context.Background(), leader.Shard{Namespace: "gated", Shard: shard})
			calls[shard] <- err
		}()
	}
	<-entered
	<-entered // both handlers run

	n.down = true // this test shuts the node down itself
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- n.srv.Shutdown(ctx) }()
	// No follower to close: the shutdown waits for the two handlers.
	stacktest.WaitBlockedIn(t, "select", "grpcapi.(*Server).waitStopped", nil)
	close(gates[1])
	// Its reply arrived (the node is shutting down: Unavailable), so its
	// handler has returned: the server counts it out before it replies.
	wantCode(t, <-calls[1], codes.Unavailable, "", "shutting down")
	cancel()
	err := <-shut
	close(gates[2])
	<-calls[2]
	if err := <-n.served; err != nil {
		t.Errorf("serve: %v", err)
	}
	n.closed = true
	_ = n.conn.Close()
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("Shutdown whose context ended while a handler ran: %v, want it cut short", err)
	}
}

// TestShardFencedAtTermZeroSurvivesShutdown: a shard fenced at term 0
// and given nothing else (no entry, no commit) is a member, not a shard
// with nothing stored: the shutdown keeps it, and after a restart it is
// still fenced at term 0.
func TestShardFencedAtTermZeroSurvivesShutdown(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	s := leader.Shard{Namespace: "zero", Shard: 0}
	if _, err := n.conn.NewTerm(ctxT(t), s, 0, nil); err != nil {
		t.Fatal(err)
	}
	aWantStatus(t, n.conn, s, 0, replicationpb.ServingStatus_FENCED, -1, -1)
	n.stop()
	n = startNode(t, dir)
	aWantStatus(t, n.conn, s, 0, replicationpb.ServingStatus_FENCED, -1, -1)
}
