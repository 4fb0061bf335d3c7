package grpcapi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
)

// A panic the server recovers from (a bug) must not leave a lock held:
// the call gets Unknown, the shard stays usable, and the node shuts down.

// nodeWithPanickingObserver starts a node whose lifecycle observer panics
// at the first step taken (not refused) on event once armed is set.
func nodeWithPanickingObserver(t *testing.T, event string) (armed *atomic.Bool, n *node) {
	armed = new(atomic.Bool)
	n = startNode(t, "", func(o *grpcapi.Options) {
		o.Follower.Observer = fsm.ObserverFunc(func(st fsm.Step) {
			if st.Event == event && st.Err == nil && armed.CompareAndSwap(true, false) {
				panic("observer bug")
			}
		})
	})
	return armed, n
}

// TestPanicInAnObserverReleasesTheShard: an observer that panics while a
// stream attaches (under the lifecycle lock, once the stream is attached):
// the stream ends and is detached, and the next one of the same term
// attaches.
func TestPanicInAnObserverReleasesTheShard(t *testing.T) {
	armed, n := nodeWithPanickingObserver(t, "AttachStream")
	s := leader.Shard{Namespace: "panic", Shard: 0}
	fence(t, n.conn, s, 1)
	armed.Store(true)
	st, _ := aOpen(t, n.conn, s)
	aSend(t, st, aEntry(1, 1, 0, -1, false))
	if _, err := aDrain(st); status.Code(err) != codes.Unknown {
		t.Fatalf("a stream whose attach panicked: %v, want Unknown", err)
	}
	replicate(t, n.conn, s, 1, 0, 3, true)
}

// TestPanicInAnObserverOnTheFirstEntry: an observer that panics when the
// first entry of a stream moves a Fenced follower to Follower, which runs
// on the stream's receive loop, not on a handler's goroutine: the stream
// fails (the process does not die), the entry stays in the log, and the
// next stream of the term goes on from it.
func TestPanicInAnObserverOnTheFirstEntry(t *testing.T) {
	armed, n := nodeWithPanickingObserver(t, "FirstEntry")
	s := leader.Shard{Namespace: "panic", Shard: 2}
	if _, err := n.conn.NewTerm(ctxT(t), s, 1, nil); err != nil { // Fenced, not truncated
		t.Fatal(err)
	}
	armed.Store(true)
	st, _ := aOpen(t, n.conn, s)
	aSend(t, st, aEntry(1, 1, 0, -1, false))
	if _, err := aDrain(st); status.Code(err) != codes.Unknown {
		t.Fatalf("a stream whose first entry's move panicked: %v, want Unknown", err)
	}
	got, err := n.conn.Status(ctxT(t), s)
	if err != nil || got.GetHeadOffset() != 0 {
		t.Fatalf("after the panic: %v, %v; want the entry in the log (head 0)", got, err)
	}
	replicate(t, n.conn, s, 1, 1, 3, true)
}

// TestPanicInAnObserverEndsTheInstall: an observer that panics once an
// install is attached: the install is abandoned, nothing of it stays on
// disk, and the next install goes through.
func TestPanicInAnObserverEndsTheInstall(t *testing.T) {
	armed, n := nodeWithPanickingObserver(t, "BeginInstall")
	s := leader.Shard{Namespace: "panic", Shard: 1}
	fence(t, n.conn, s, 1)
	chunks := snapshotOf(t, 1, 5)
	armed.Store(true)
	if _, err := sendChunks(t, n.conn, s, chunks...); status.Code(err) != codes.Unknown {
		t.Fatalf("an install whose attach panicked: %v, want Unknown", err)
	}
	// The live database and nothing staged beside it.
	entries, err := os.ReadDir(filepath.Join(n.dir, "panic", "1", "store"))
	if err != nil {
		t.Fatal(err)
	}
	var dbs []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "db-") {
			dbs = append(dbs, e.Name())
		}
	}
	if len(dbs) != 1 {
		t.Fatalf("databases in the store after the install failed: %v", dbs)
	}
	res, err := sendChunks(t, n.conn, s, chunks...)
	if err != nil || res.GetAckOffset() != 4 {
		t.Fatalf("the next install: %v, %v", res, err)
	}
}

// TestPanicWhileOpeningAShard: the file system panics the first time the
// shard's directory is touched; the call that opened it gets Unknown, a
// call that waited for that open gets Unavailable (the shard did not
// open), and the next one opens the shard.
func TestPanicWhileOpeningAShard(t *testing.T) {
	var armed atomic.Bool
	armed.Store(true)
	entered, proceed := make(chan struct{}), make(chan struct{})
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.Contains(op.Path, "/opening/") && armed.CompareAndSwap(true, false) {
			close(entered)
			<-proceed
			panic("file system bug")
		}
		return nil
	}))
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	release := sync.OnceFunc(func() { close(proceed) })
	t.Cleanup(release)
	s := leader.Shard{Namespace: "opening", Shard: 0}
	opened := make(chan error, 1)
	go func() {
		_, err := n.conn.NewTerm(ctxT(t), s, 1, nil)
		opened <- err
	}()
	<-entered
	waited := make(chan error, 1)
	go func() {
		_, err := n.conn.NewTerm(ctxT(t), s, 1, nil)
		waited <- err
	}()
	stacktest.WaitBlockedIn(t, "chan receive", "grpcapi.(*Server).lookup", nil)
	release()
	if err := <-opened; status.Code(err) != codes.Unknown {
		t.Fatalf("a NewTerm whose shard panicked opening: %v, want Unknown", err)
	}
	wantCode(t, <-waited, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "panicked")
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 3, true)
}

// TestPanicWhileRestoringAShard: an observer panics on the Restore step
// of a shard reopened after a restart, once its store and log are open:
// they are closed again, so the next call opens the shard.
func TestPanicWhileRestoringAShard(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	s := leader.Shard{Namespace: "restore", Shard: 0}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 3, true)
	n.stop()
	var armed atomic.Bool
	armed.Store(true)
	n = startNode(t, dir, func(o *grpcapi.Options) {
		o.Follower.Observer = fsm.ObserverFunc(func(st fsm.Step) {
			if st.Event == "Restore" && armed.CompareAndSwap(true, false) {
				panic("observer bug")
			}
		})
	})
	if _, err := n.conn.Status(ctxT(t), s); status.Code(err) != codes.Unknown {
		t.Fatalf("a GetStatus whose shard panicked opening: %v, want Unknown", err)
	}
	st, err := n.conn.Status(ctxT(t), s)
	if err != nil || st.GetTerm() != 1 || st.GetHeadOffset() != 2 {
		t.Fatalf("the next GetStatus: %v, %v", st, err)
	}
}

// panicsOnce returns a node option: a follower observer that panics on
// the next step of event once armed is set.
func panicsOnce(event string, armed *atomic.Bool) func(*grpcapi.Options) {
	return func(o *grpcapi.Options) {
		o.Follower.Observer = fsm.ObserverFunc(func(st fsm.Step) {
			if st.Event == event && armed.CompareAndSwap(true, false) {
				panic("observer bug")
			}
		})
	}
}

// TestPanicWhileDroppingAShard: an observer panics on the Delete step of
// a shard with nothing stored that the node drops (an empty directory
// found by GetStatus): the call gets Unknown, calls on the shard do not
// wait for that drop for ever, and the node shuts down.
func TestPanicWhileDroppingAShard(t *testing.T) {
	var armed atomic.Bool
	n := startNode(t, "", panicsOnce("Delete", &armed))
	s := leader.Shard{Namespace: "dropping", Shard: 0}
	emptyShardDir(t, n, s)
	armed.Store(true)
	if _, err := n.conn.Status(ctxT(t), s); status.Code(err) != codes.Unknown {
		t.Fatalf("a GetStatus whose drop panicked: %v, want Unknown", err)
	}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 3, true)
}

// TestPanicInARefusedCall: an observer panics on the refusal of a
// Truncate of a shard with nothing stored (an empty directory): the call
// gets Unknown and lets go of the shard all the same, which the node
// drops as after any refused call.
func TestPanicInARefusedCall(t *testing.T) {
	var armed atomic.Bool
	n := startNode(t, "", panicsOnce("Truncate", &armed))
	s := leader.Shard{Namespace: "refused", Shard: 0}
	emptyShardDir(t, n, s)
	armed.Store(true)
	if _, err := n.conn.Truncate(ctxT(t), s, 1, logpos.NoEntry); status.Code(err) != codes.Unknown {
		t.Fatalf("a Truncate whose refusal panicked: %v, want Unknown", err)
	}
	if got := listTree(t, filepath.Join(n.dir, "refused")); len(got) != 0 {
		t.Fatalf("left on disk: %q", got)
	}
}

// TestPanicInDeleteShard: an observer panics on the Delete step of a
// DeleteShard, once the follower is closed: the call gets Unknown, the
// node forgets the closed follower, and a NewTerm starts a new one.
func TestPanicInDeleteShard(t *testing.T) {
	var armed atomic.Bool
	n := startNode(t, "", panicsOnce("Delete", &armed))
	s := leader.Shard{Namespace: "deleting", Shard: 0}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 3, true)
	armed.Store(true)
	if err := n.conn.Delete(ctxT(t), s, 1); status.Code(err) != codes.Unknown {
		t.Fatalf("a DeleteShard that panicked: %v, want Unknown", err)
	}
	if _, err := n.conn.NewTerm(ctxT(t), s, 2, nil); err != nil {
		t.Fatalf("NewTerm after a DeleteShard that panicked: %v", err)
	}
}

// hangingFS is a file system whose operations of the given kinds (all
// when none is given) on a path containing sub block, once armed, until
// the test ends; blocked is closed when the first one does.
func hangingFS(t *testing.T, sub string, kinds ...errorfs.OpKind) (fs vfs.FS, armed *atomic.Bool, blocked <-chan struct{}) {
	armed = new(atomic.Bool)
	var once sync.Once
	block, gate := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(gate) }) // let what is stuck finish after the test
	fs = errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && strings.Contains(op.Path, sub) && (len(kinds) == 0 || slices.Contains(kinds, op.Kind)) {
			once.Do(func() { close(block) })
			<-gate
		}
		return nil
	}))
	return fs, armed, block
}

// shutdownWhen shuts n down with a context cancelled once blocked is
// closed (at once when it is nil), and returns Shutdown's error once
// Serve has returned.
func shutdownWhen(t *testing.T, n *node, blocked <-chan struct{}) error {
	t.Helper()
	n.down = true // this test shuts the node down itself
	ctx, cancel := context.WithCancel(context.Background())
	if blocked == nil {
		cancel()
	} else {
		go func() {
			<-blocked
			cancel()
		}()
	}
	err := n.srv.Shutdown(ctx)
	if err := <-n.served; err != nil {
		t.Errorf("serve: %v", err)
	}
	n.closed = true
	_ = n.conn.Close()
	return err
}

// TestShutdownNotHeldByAFollower: a follower that cannot close (its disk
// hangs) holds the shutdown only until its context ends.
func TestShutdownNotHeldByAFollower(t *testing.T) {
	fs, armed, blocked := hangingFS(t, "/hang/")
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	s := leader.Shard{Namespace: "hang", Shard: 0}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 3, true)
	armed.Store(true)
	// The shutdown's context ends once the follower is stuck on its disk.
	err := shutdownWhen(t, n, blocked)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "followers were closing") {
		t.Fatalf("Shutdown with a follower that cannot close: %v", err)
	}
}

// TestShutdownNotHeldByAStuckCall: neither does a call stuck on such a
// disk, which a graceful stop waits for: here a NewTerm blocked writing
// the term, holding the follower's lifecycle lock.
func TestShutdownNotHeldByAStuckCall(t *testing.T) {
	fs, armed, blocked := hangingFS(t, "/hang/")
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	s := leader.Shard{Namespace: "hang", Shard: 0}
	fence(t, n.conn, s, 1)
	armed.Store(true)
	go func() { _, _ = n.conn.NewTerm(context.Background(), s, 2, nil) }()
	<-blocked
	if err := shutdownWhen(t, n, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with a call stuck on the disk: %v", err)
	}
}

// TestLookupDoesNotHoldTheNode: looking for a shard's data on a disk
// that hangs holds that call only: an open shard of the same node
// answers meanwhile, and the node shuts down.
func TestLookupDoesNotHoldTheNode(t *testing.T) {
	fs, armed, blocked := hangingFS(t, "/stuck/", errorfs.OpStat)
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	open := leader.Shard{Namespace: "open", Shard: 0}
	fence(t, n.conn, open, 1)
	armed.Store(true)
	go func() { _, _ = n.conn.Status(context.Background(), leader.Shard{Namespace: "stuck", Shard: 0}) }()
	<-blocked
	if st, err := n.conn.Status(ctxT(t), open); err != nil || st.GetTerm() != 1 {
		t.Fatalf("GetStatus of an open shard while another's lookup hangs: %v, %v", st, err)
	}
	if err := shutdownWhen(t, n, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with a lookup stuck on the disk: %v", err)
	}
}
