package grpcapi

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
)

// shutdownWaitingIn starts s's Shutdown and waits until it is blocked
// receiving in fn (see stacktest.WaitBlockedIn); the returned function waits for
// Shutdown's result.
func shutdownWaitingIn(t *testing.T, s *Server, fn string) (result func() error) {
	t.Helper()
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = s.Shutdown(context.Background())
	}()
	stacktest.WaitBlockedIn(t, "chan receive", fn, done)
	return func() error {
		<-done
		return err
	}
}

// deleteUnderWay leaves shard ns/1, hosted at term 3, as a DeleteShard
// leaves it midway: its follower deleted (closed, its data removed; or,
// when the delete fails with wantErr, closed and its data kept) and the
// DeleteShard holding the shard, which is not forgotten yet. finish ends
// that DeleteShard as deleteShard does.
func deleteUnderWay(t *testing.T, s *Server, wantErr error) (sh *shard, finish func()) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "ns", Shard: 1, Term: 3}); err != nil {
		t.Fatal(err)
	}
	sh, err := s.lookup(shardKey{"ns", 1}, false)
	if err != nil {
		t.Fatal(err)
	}
	sh.deleting.Lock()
	if err := sh.f.Delete(3); !errors.Is(err, wantErr) {
		sh.deleting.Unlock()
		t.Fatalf("the delete: %v, want %v", err, wantErr)
	}
	return sh, func() {
		s.retire(sh)
		sh.deleting.Unlock()
	}
}

func newTestServer(t *testing.T) *Server {
	t.Helper()
	return newTestServerWith(t, Options{DataDir: t.TempDir()})
}

// newTestServerWith is newTestServer with opts.
func newTestServerWith(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestDeleteShardWaitsForAnother: a DeleteShard of a shard another
// DeleteShard is deleting waits for it, then finds the shard gone and
// succeeds (it does not fail on the follower the other one closed).
func TestDeleteShardWaitsForAnother(t *testing.T) {
	s := newTestServer(t)
	_, finish := deleteUnderWay(t, s, nil)
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, err = s.DeleteShard(context.Background(), &replicationpb.DeleteShardRequest{Namespace: "ns", Shard: 1, Term: 3})
	}()
	stacktest.WaitBlockedIn(t, "sync.Mutex.Lock", "grpcapi.(*Server).deleteShard", done)
	finish()
	<-done
	if err != nil {
		t.Fatalf("a DeleteShard that waited for another: %v, want success", err)
	}
	_, err = s.GetStatus(context.Background(), &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 1})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("GetStatus after both deletes: %v, want Aborted", err)
	}
}

// TestCallRefusedByADeleteUnderWay: a call that the follower refuses
// because a DeleteShard under way closed it waits for that delete to
// end, then runs on a fresh follower, as a call after the delete would.
func TestCallRefusedByADeleteUnderWay(t *testing.T) {
	s := newTestServer(t)
	_, finish := deleteUnderWay(t, s, nil)
	done := make(chan struct{})
	var (
		head  logpos.EntryID
		err   error
		calls int
	)
	go func() {
		defer close(done)
		err = s.onShard(shardKey{"ns", 1}, true, func(sh *shard) (err error) {
			calls++
			head, err = sh.f.NewTerm(2, follower.TermOptions{})
			return err
		})
	}()
	stacktest.WaitBlockedIn(t, "sync.Mutex.Lock", "grpcapi.(*Server).deleted", done)
	finish()
	<-done
	if err != nil || calls != 2 || head != logpos.NoEntry {
		t.Fatalf("NewTerm(2) refused by the delete under way of a shard of term 3: head %v, %v after %d calls; want a fresh follower's", head, err, calls)
	}
}

// TestGetStatusWaitingForAFailedDelete: a GetStatus that finds the
// follower closed by a DeleteShard still under way waits for that delete
// to end, then looks again, as the other calls do. Here the delete
// failed before it moved the shard's data (its rename failed): the data
// stays, the next call finds the shard FENCED at term 3, and so does the
// GetStatus that waited, rather than NODE_IS_NOT_MEMBER.
func TestGetStatusWaitingForAFailedDelete(t *testing.T) {
	// The delete's move of the shard's directory aside fails.
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, "/ns/1") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	s := newTestServerWith(t, Options{DataDir: t.TempDir(), FS: fs})
	ctx := context.Background()
	sh, finish := deleteUnderWay(t, s, follower.ErrUnavailable)
	done := make(chan struct{})
	var (
		st  *replicationpb.GetStatusResponse
		err error
	)
	go func() {
		defer close(done)
		st, err = s.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 1})
	}()
	t.Cleanup(func() {
		select {
		case <-done:
			if t.Failed() {
				t.Logf("GetStatus answered %v, %v", st, err)
			}
		default:
		}
	})
	stacktest.WaitBlockedIn(t, "sync.Mutex.Lock", "grpcapi.(*Server).deleted", done)
	finish() // the closed follower is forgotten
	s.release(sh)
	<-done
	if err != nil || st.GetTerm() != 3 || st.GetStatus() != replicationpb.ServingStatus_FENCED {
		t.Fatalf("GetStatus that waited for a delete that failed, the data kept: %v, %v; want FENCED at term 3", st, err)
	}
}

// TestGetStatusOfAFollowerClosedByTheShutdown: a GetStatus that found a
// follower which the shutdown then closed is Unavailable (no ErrorInfo),
// as every call the shutdown ends, not Aborted/NODE_IS_NOT_MEMBER, which
// would tell the leader the shard is gone from the node. One closed
// otherwise (deleted) is NODE_IS_NOT_MEMBER.
func TestGetStatusOfAFollowerClosedByTheShutdown(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	if _, err := s.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "ns", Shard: 1, Term: 1}); err != nil {
		t.Fatal(err)
	}
	sh, err := s.lookup(shardKey{"ns", 1}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.f.Close(); err != nil {
		t.Fatal(err)
	}
	// Closed, still hosted, no shutdown: deleted while GetStatus looked.
	_, err = s.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 1})
	if st, _ := status.FromError(err); st.Code() != codes.Aborted || Reason(err) != ReasonNodeIsNotMember {
		t.Fatalf("GetStatus of a closed follower: %v, want Aborted/NODE_IS_NOT_MEMBER", err)
	}
	// The same once the shutdown started: the GetStatus that found the
	// shard before the shutdown reads its state after it closed it.
	s.shuttingDown.Store(true)
	_, err = s.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 1})
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || len(st.Details()) != 0 {
		t.Fatalf("GetStatus of a follower the shutdown closed: %v, want Unavailable without details", err)
	}
}

// TestCallsAfterShutdown: a call that reaches the server once Shutdown
// has started (gRPC had taken it before) is Unavailable and opens no
// follower: nothing would close it, and the data directory is released.
func TestCallsAfterShutdown(t *testing.T) {
	s := newTestServer(t)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := s.NewTerm(context.Background(), &replicationpb.NewTermRequest{Namespace: "late", Shard: 0, Term: 1})
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable {
		t.Fatalf("NewTerm after Shutdown: %v, want Unavailable", err)
	}
	if entries, _ := os.ReadDir(s.opts.DataDir); len(entries) != 1 || entries[0].Name() != ".lock" {
		t.Fatalf("NewTerm after Shutdown left %v in the data directory", entries)
	}
}

// TestShutdownClosesAShardStillOpening: Shutdown waits for a shard whose
// follower is still opening (its disk is slow), then closes it: a
// follower opened during the shutdown is not left open. One whose open
// fails meanwhile leaves nothing to close, and nothing on disk.
func TestShutdownClosesAShardStillOpening(t *testing.T) {
	for _, c := range []struct {
		name string
		fail error // what the disk returns once it answers (nil: it works)
	}{
		{"opens", nil},
		{"fails to open", errors.New("injected disk failure")},
	} {
		t.Run(c.name, func(t *testing.T) {
			var armed atomic.Bool
			var once sync.Once
			blocked, release := make(chan struct{}), make(chan struct{})
			var released sync.Once
			t.Cleanup(func() { released.Do(func() { close(release) }) })
			fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if armed.Load() && strings.Contains(op.Path, "/opening/") {
					once.Do(func() { close(blocked) })
					<-release
					return c.fail
				}
				return nil
			}))
			s, err := New(Options{DataDir: t.TempDir(), FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			opened := make(chan error, 1)
			go func() {
				_, err := s.NewTerm(context.Background(), &replicationpb.NewTermRequest{Namespace: "opening", Shard: 0, Term: 1})
				opened <- err
			}()
			<-blocked
			sh := func() *shard {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.mu.shards[shardKey{"opening", 0}]
			}()
			shutdown := shutdownWaitingIn(t, s, "grpcapi.closeShards.func1")
			released.Do(func() { close(release) })
			if serr := shutdown(); serr != nil {
				t.Fatalf("Shutdown: %v", serr)
			}
			err = <-opened
			if c.fail != nil {
				if status.Code(err) != codes.Unavailable || sh == nil || sh.f != nil {
					t.Fatalf("the NewTerm whose open failed during the shutdown: %v, want Unavailable and no follower", err)
				}
				if entries, _ := os.ReadDir(s.opts.DataDir); len(entries) != 1 || entries[0].Name() != ".lock" {
					t.Fatalf("a shard whose open failed during the shutdown left %v in the data directory", entries)
				}
				return
			}
			if err != nil && status.Code(err) != codes.Unavailable {
				t.Fatalf("the NewTerm that opened the shard during the shutdown: %v, want success or Unavailable", err)
			}
			if sh == nil || sh.f == nil || sh.f.Status().State != follower.StateClosed {
				t.Fatalf("the shard opened during the shutdown is not closed")
			}
		})
	}
}

// TestWatchEndedByItsNotServingIsUnavailable: a health watch that the
// shutdown ends once it has sent NOT_SERVING ends Unavailable, also when
// it ends before the shutdown has gone any further (here the shutdown's
// first steps, up to turning the statuses NOT_SERVING, are taken by
// hand, and the rest waits until the watch has ended).
func TestWatchEndedByItsNotServingIsUnavailable(t *testing.T) {
	s, err := New(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v, %v", r, err)
	}
	s.mu.Lock()
	s.mu.closing = true
	s.shuttingDown.Store(true)
	s.mu.Unlock()
	s.health.Shutdown()
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch: %v, %v", r, err)
	}
	if r, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("the watch ended with %v, %v; want Unavailable", r, err)
	}
}
