package grpcapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestReasonOnlyFromOxiaDomain: Reason reads the reason of the ErrorInfo
// of the oxia.io domain only; an ErrorInfo of another domain is not one.
func TestReasonOnlyFromOxiaDomain(t *testing.T) {
	other := &errdetails.ErrorInfo{Reason: grpcapi.ReasonInvalidTerm, Domain: "example.com"}
	oxia := &errdetails.ErrorInfo{Reason: grpcapi.ReasonInvalidStatus, Domain: grpcapi.ErrorDomain}
	st, err := status.New(codes.FailedPrecondition, "x").WithDetails(other)
	if err != nil {
		t.Fatal(err)
	}
	if got := grpcapi.Reason(st.Err()); got != "" {
		t.Fatalf("Reason of an ErrorInfo of another domain = %q, want none", got)
	}
	st, err = status.New(codes.FailedPrecondition, "x").WithDetails(other, oxia)
	if err != nil {
		t.Fatal(err)
	}
	if got := grpcapi.Reason(st.Err()); got != grpcapi.ReasonInvalidStatus {
		t.Fatalf("Reason with ErrorInfos of another domain and of oxia.io = %q, want %q", got, grpcapi.ReasonInvalidStatus)
	}
}

// TestMessageSizeLimitOnReplies: Options.MaxMessageSize bounds the
// messages the node sends too: a reply over it fails with
// ResourceExhausted, and the node keeps serving.
func TestMessageSizeLimitOnReplies(t *testing.T) {
	n := startNode(t, "", func(o *grpcapi.Options) { o.MaxMessageSize = 1024 })
	s := leader.Shard{Namespace: "bigreply", Shard: 0}
	fence(t, n.conn, s, 1)
	// Two entries, each well under the limit, whose values together are
	// over it.
	big := bytes.Repeat([]byte("v"), 600)
	st, _ := aOpen(t, n.conn, s)
	for o := int64(0); o < 2; o++ {
		aSend(t, st, &replicationpb.Append{Term: 1, CommitOffset: o, Entry: &replicationpb.LogEntry{
			Term: 1, Offset: o, Value: leader.AppendPut(nil, key(logpos.Offset(o)), big),
		}})
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if acks, err := aDrain(st); err != nil || len(acks) != 2 {
		t.Fatalf("acks %v, %v", acks, err)
	}
	_, _, err := n.conn.Get(ctxT(t), s, 1, key(0), key(1))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a reply of two 600-byte values with a 1024-byte limit: %v, want ResourceExhausted", err)
	}
	values, _, err := n.conn.Get(ctxT(t), s, 1, key(1))
	if err != nil || len(values) != 1 || !bytes.Equal(values[0].GetValue(), big) {
		t.Fatalf("a reply under the limit: %v, %v", values, err)
	}
}

// TestFailedOpenIsNotKept: a shard whose follower failed to open is not
// hosted: once the cause is gone, the next call opens it.
func TestFailedOpenIsNotKept(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "reopen", Shard: 2}
	path := filepath.Join(n.dir, "reopen", "2")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("a file, not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := n.conn.NewTerm(ctxT(t), s, 1, nil)
	wantCode(t, err, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	fence(t, n.conn, s, 1)
	aWantStatus(t, n.conn, s, 1, replicationpb.ServingStatus_FOLLOWER, -1, -1)
}

// TestShutdownCutShortKeepsTheLock: a shutdown cut short while a
// follower was still closing keeps the data directory locked (that
// follower may still write): another node cannot start on it.
func TestShutdownCutShortKeepsTheLock(t *testing.T) {
	fs, armed, blocked := hangingFS(t, "/hang/")
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	s := leader.Shard{Namespace: "hang", Shard: 0}
	fence(t, n.conn, s, 1)
	armed.Store(true)
	if err := shutdownWhen(t, n, blocked); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with a follower that cannot close: %v", err)
	}
	other, err := grpcapi.New(grpcapi.Options{DataDir: n.dir})
	if err == nil {
		_ = other.Shutdown(context.Background())
		t.Fatal("a second node started on the data directory of a follower still closing")
	}
}

// TestHealthWatchEndsWhileFollowersClose: a health watch ends
// (Unavailable, after NOT_SERVING) as soon as the shutdown begins, not
// once every follower has closed: here a follower cannot close (its disk
// hangs), and the shutdown's context ends only after the watch did.
func TestHealthWatchEndsWhileFollowersClose(t *testing.T) {
	fs, armed, _ := hangingFS(t, "/hang/")
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	fence(t, n.conn, leader.Shard{Namespace: "hang", Shard: 0}, 1)
	watch, err := healthpb.NewHealthClient(n.conn.ClientConn()).Watch(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v, %v", resp, err)
	}
	armed.Store(true)
	ended := make(chan struct{})
	var watchErr error
	go func() {
		defer close(ended)
		for watchErr == nil {
			_, watchErr = watch.Recv()
		}
	}()
	err = shutdownWhen(t, n, ended)
	if status.Code(watchErr) != codes.Unavailable {
		t.Fatalf("the health watch ended with %v, want Unavailable", watchErr)
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "followers were closing") {
		t.Fatalf("Shutdown, cut short once the watch ended, while a follower could not close: %v", err)
	}
}

// TestReflectionStreamServesWhileFollowersClose: a reflection stream
// that has sent nothing since the shutdown began is not ended before the
// followers are closed: here a follower cannot close (its disk hangs),
// and the stream answers one more request, after which it ends
// (Unavailable) while the follower still cannot close.
func TestReflectionStreamServesWhileFollowersClose(t *testing.T) {
	fs, armed, blocked := hangingFS(t, "/hang/")
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	fence(t, n.conn, leader.Shard{Namespace: "hang", Shard: 0}, 1)
	refl, err := reflectionpb.NewServerReflectionClient(n.conn.ClientConn()).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	list := &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}
	if err := refl.Send(list); err != nil {
		t.Fatal(err)
	}
	if _, err := refl.Recv(); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	answered := make(chan struct{})
	shutdown := make(chan error, 1)
	go func() { shutdown <- shutdownWhen(t, n, answered) }()
	<-blocked // the shutdown closes the followers
	if err := refl.Send(list); err != nil {
		t.Fatal(err)
	}
	// Both receives come before the shutdown's context ends, which closes
	// the client too: the stream ends while the follower is still stuck.
	resp, err := refl.Recv()
	after, afterErr := refl.Recv()
	close(answered)
	if err != nil || len(resp.GetListServicesResponse().GetService()) == 0 {
		t.Fatalf("a reflection request while the followers close: %v, %v; want the services", resp, err)
	}
	if status.Code(afterErr) != codes.Unavailable {
		t.Fatalf("the reflection stream after its answer: %v, %v; want Unavailable", after, afterErr)
	}
	if err := <-shutdown; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown, cut short while a follower could not close: %v", err)
	}
}

// statGateFS is the operating system's file system, except that the
// first Stat of a path ending in suffix once armed waits, after it has
// looked, until release closes; stated closes when it waits.
type statGateFS struct {
	vfs.FS
	suffix          string
	armed           atomic.Bool
	stated, release chan struct{}
}

// newStatGate returns a statGateFS, unarmed, holding the first Stat of
// the directory of shard s once armed; it releases it when the test ends
// if the test has not.
func newStatGate(t *testing.T, s leader.Shard) (fs *statGateFS, release func()) {
	fs = &statGateFS{FS: vfs.Default, suffix: string(filepath.Separator) + filepath.Join(s.Namespace, strconv.FormatInt(s.Shard, 10)), stated: make(chan struct{}), release: make(chan struct{})}
	var once sync.Once
	release = func() { once.Do(func() { close(fs.release) }) }
	t.Cleanup(release)
	return fs, release
}

func (f *statGateFS) Stat(name string) (vfs.FileInfo, error) {
	fi, err := f.FS.Stat(name)
	if strings.HasSuffix(name, f.suffix) && f.armed.CompareAndSwap(true, false) {
		close(f.stated)
		<-f.release
	}
	return fi, err
}

// TestLookupRacingADelete: a call that found a shard's data on disk
// while a DeleteShard deleted it looks again and does not open the shard
// a second time (the delete opened it once): the node has forgotten it,
// and nothing of it is created anew.
func TestLookupRacingADelete(t *testing.T) {
	dir := t.TempDir()
	s := leader.Shard{Namespace: "gone", Shard: 1}
	n := startNode(t, dir)
	fence(t, n.conn, s, 1)
	n.stop()

	fs, release := newStatGate(t, s)
	var opens atomic.Int32
	n = startNode(t, dir, func(o *grpcapi.Options) {
		o.FS = fs
		o.ShardObserver = func(string, int64) fsm.Observer { opens.Add(1); return nil }
	})
	fs.armed.Store(true)
	got := make(chan error, 1)
	go func() {
		_, err := n.conn.Status(ctxT(t), s)
		got <- err
	}()
	<-fs.stated // GetStatus saw the shard's directory
	if err := n.conn.Delete(ctxT(t), s, 1); err != nil {
		t.Fatal(err)
	}
	release()
	wantCode(t, <-got, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	if _, err := os.Stat(filepath.Join(dir, "gone", "1")); !os.IsNotExist(err) {
		t.Fatalf("the deleted shard's directory after a GetStatus that raced the delete: %v", err)
	}
	if got := opens.Load(); got != 1 {
		t.Fatalf("the shard was opened %d times, want once (by the delete)", got)
	}
}

// TestReplicatedValuesIntact: values of entries streamed back to back,
// each large enough for gRPC to receive it in pooled memory, are written
// and applied exactly as sent, not as the memory held by the time the
// next message arrived.
func TestReplicatedValuesIntact(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "values", Shard: 0}
	fence(t, n.conn, s, 1)
	const count = 64
	value := func(o int64) []byte { return bytes.Repeat([]byte{byte('a' + o%26)}, 4096+int(o)) }
	st, _ := aOpen(t, n.conn, s)
	for o := int64(0); o < count; o++ {
		aSend(t, st, &replicationpb.Append{Term: 1, CommitOffset: o - 1, Entry: &replicationpb.LogEntry{
			Term: 1, Offset: o, Value: leader.AppendPut(nil, key(logpos.Offset(o)), value(o)),
		}})
	}
	aSend(t, st, aCommit(1, count-1, false))
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if acks, err := aDrain(st); err != nil || len(acks) != count {
		t.Fatalf("acks %v, %v", acks, err)
	}
	var keys [][]byte
	for o := int64(0); o < count; o++ {
		keys = append(keys, key(logpos.Offset(o)))
	}
	values, _, err := n.conn.Get(ctxT(t), s, count-1, keys...)
	if err != nil {
		t.Fatal(err)
	}
	for o, v := range values {
		if !v.GetFound() || !bytes.Equal(v.GetValue(), value(int64(o))) {
			t.Fatalf("entry %d: %d bytes %.8q… (found %v), want %d bytes of %q", o, len(v.GetValue()), v.GetValue(), v.GetFound(), len(value(int64(o))), value(int64(o))[0])
		}
	}
}

// TestShutdownWithAnIdleConnection: a connection that never became a
// gRPC connection (a client that opened it and said nothing) holds a
// graceful shutdown only until its handshake times out.
func TestShutdownWithAnIdleConnection(t *testing.T) {
	srv, err := grpcapi.New(grpcapi.Options{DataDir: t.TempDir(), HandshakeTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lis, accepting, served := serveAccepting(t, srv)
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	<-accepting.accepted // the server has the connection
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown with an idle connection open: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// TestShutdownWithAnEndedContextOnceNoHandlerRuns: a shutdown whose
// context has already ended is not cut short when no handler runs, though
// gRPC still waits for a connection in its handshake (whose timeout is an
// hour away): Shutdown succeeds without waiting for it. The calls served
// before, unary and streaming, no longer count as running.
func TestShutdownWithAnEndedContextOnceNoHandlerRuns(t *testing.T) {
	srv, err := grpcapi.New(grpcapi.Options{DataDir: t.TempDir(), HandshakeTimeout: time.Hour, DrainTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	lis, accepting, served := serveAccepting(t, srv)
	c, err := leader.Dial(lis.Addr().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Refused calls on a shard the node does not host: no follower is
	// left to close.
	s := leader.Shard{Namespace: "none", Shard: 1}
	_, err = c.Status(ctxT(t), s)
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	stream, _ := aOpen(t, c, s)
	wantCode(t, recvEnd(stream), codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	<-accepting.accepted
	raw, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	<-accepting.accepted
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an ended context, no handler running and a connection in its handshake: %v", err)
	}
	// gRPC closes no connection still in its handshake, even when it
	// stops at once: Serve returns once its client closes it.
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}

// TestServeAfterShutdown: Serve called once the node has shut down
// returns nil at once, as it does when the shutdown comes while it
// serves, and closes its listener.
func TestServeAfterShutdown(t *testing.T) {
	srv, err := grpcapi.New(grpcapi.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(lis); err != nil {
		t.Fatalf("Serve after Shutdown: %v, want nil", err)
	}
	if err := lis.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("closing the listener Serve was given after Shutdown: %v, want it closed already", err)
	}
}

// serveAccepting serves srv on a loopback listener that tells on
// accepting.accepted of each connection it accepts; served gets what
// Serve returned.
func serveAccepting(t *testing.T, srv *grpcapi.Server) (lis net.Listener, accepting *acceptSignal, served <-chan error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepting = &acceptSignal{Listener: lis, accepted: make(chan struct{}, 1)}
	result := make(chan error, 1)
	go func() { result <- srv.Serve(accepting) }()
	return lis, accepting, result
}

// acceptSignal is a listener that tells when it accepted a connection.
type acceptSignal struct {
	net.Listener
	accepted chan struct{}
}

func (l *acceptSignal) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.accepted <- struct{}{}:
		default:
		}
	}
	return c, err
}

// TestIdleConnectionClosedAfterTheHandshakeTimeout: a connection that
// says nothing is closed by the node once Options.HandshakeTimeout has
// passed, while the node goes on serving. (The read deadline only bounds
// the wait, at two hundred times the timeout: the node closes the
// connection long before it.)
func TestIdleConnectionClosedAfterTheHandshakeTimeout(t *testing.T) {
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.HandshakeTimeout, o.DrainTimeout = 50*time.Millisecond, time.Hour
	})
	conn, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// Whatever the node sends first, then the end of the connection.
	if _, err := io.Copy(io.Discard, conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading an idle connection: %v; want it closed by the node", err)
	}
}

// deleteHeldAtItsLookup starts a node with no data and a DeleteShard of
// shard s at term 1, and returns once the delete has looked for the
// shard's directory (finding none), held there until release; got
// receives the delete's result.
func deleteHeldAtItsLookup(t *testing.T, s leader.Shard) (n *node, got <-chan error, release func()) {
	fs, release := newStatGate(t, s)
	n = startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	fs.armed.Store(true)
	result := make(chan error, 1)
	go func() { result <- n.conn.Delete(ctxT(t), s, 1) }()
	<-fs.stated
	return n, result, release
}

// TestDeleteOfAnUnhostedShardRacingTheShutdown: a DeleteShard that found
// no data for its shard just before the shutdown started is Unavailable
// (the node is shutting down), not a success: the removal it would run
// is refused.
func TestDeleteOfAnUnhostedShardRacingTheShutdown(t *testing.T) {
	s := leader.Shard{Namespace: "absent", Shard: 1}
	n, got, release := deleteHeldAtItsLookup(t, s)
	down := make(chan struct{})
	go func() { n.shutdown(); close(down) }()
	// Once a call is refused as the node shuts down, the shutdown has
	// begun.
	for {
		_, err := n.conn.Status(ctxT(t), leader.Shard{Namespace: "other", Shard: 1})
		if status.Code(err) == codes.Unavailable {
			break
		}
	}
	release()
	wantCode(t, <-got, codes.Unavailable, "", "")
	<-down
}

// TestDeleteRacingAnOpen: a DeleteShard that found no data for its
// shard, while a NewTerm opened and fenced it, deletes the shard the
// NewTerm left: it does not report success with the shard still hosted.
func TestDeleteRacingAnOpen(t *testing.T) {
	s := leader.Shard{Namespace: "racing", Shard: 1}
	n, got, release := deleteHeldAtItsLookup(t, s)
	if _, err := n.conn.NewTerm(ctxT(t), s, 1, nil); err != nil {
		t.Fatal(err)
	}
	release()
	if err := <-got; err != nil {
		t.Fatalf("DeleteShard: %v", err)
	}
	_, err := n.conn.Status(ctxT(t), s)
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	if _, err := os.Stat(filepath.Join(n.dir, "racing", "1")); !os.IsNotExist(err) {
		t.Fatalf("the deleted shard's directory: %v", err)
	}
}

// TestNewRefusesAFollowerTemplateNoShardOpens: a follower template with a
// size Open refuses would fail every shard's first call, as if the
// leader's request were bad; New refuses it, naming the field, before it
// creates the data directory.
func TestNewRefusesAFollowerTemplateNoShardOpens(t *testing.T) {
	for _, cfg := range []follower.Config{{SegmentSize: 10}, {MemTableSize: 1}} {
		dir := filepath.Join(t.TempDir(), "data")
		srv, err := grpcapi.New(grpcapi.Options{DataDir: dir, Follower: cfg})
		if err == nil {
			_ = srv.Shutdown(context.Background())
			t.Fatalf("%+v: New succeeded", cfg)
		}
		if !errors.Is(err, follower.ErrInvalidArgument) || !strings.Contains(err.Error(), "Options.Follower") {
			t.Errorf("%+v: %v, want ErrInvalidArgument naming Options.Follower", cfg, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%+v: New created %s (%v)", cfg, dir, err)
		}
	}
}
