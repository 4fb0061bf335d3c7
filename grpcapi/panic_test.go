package grpcapi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
)

// A panic the server recovers from (a bug) must not leave a lock held:
// the call gets Unknown, the shard stays usable, and the node shuts down.

// TestPanicInAnObserverReleasesTheShard: an observer that panics while a
// stream attaches (under the lifecycle lock, once the stream is attached):
// the stream ends and is detached, and the next one of the same term
// attaches.
func TestPanicInAnObserverReleasesTheShard(t *testing.T) {
	var armed atomic.Bool
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.Follower.Observer = fsm.ObserverFunc(func(st fsm.Step) {
			if st.Event == "AttachStream" && armed.CompareAndSwap(true, false) {
				panic("observer bug")
			}
		})
	})
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

// TestPanicInAnObserverEndsTheInstall: an observer that panics once an
// install is attached: the install is abandoned, nothing of it stays on
// disk, and the next install goes through.
func TestPanicInAnObserverEndsTheInstall(t *testing.T) {
	var armed atomic.Bool
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.Follower.Observer = fsm.ObserverFunc(func(st fsm.Step) {
			if st.Event == "BeginInstall" && st.Err == nil && armed.CompareAndSwap(true, false) {
				panic("observer bug")
			}
		})
	})
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
// shard's directory is touched; the call that opened it gets Unknown and
// the next one opens the shard.
func TestPanicWhileOpeningAShard(t *testing.T) {
	var armed atomic.Bool
	armed.Store(true)
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.Contains(op.Path, "/opening/") && armed.CompareAndSwap(true, false) {
			panic("file system bug")
		}
		return nil
	}))
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	s := leader.Shard{Namespace: "opening", Shard: 0}
	if _, err := n.conn.NewTerm(ctxT(t), s, 1, nil); status.Code(err) != codes.Unknown {
		t.Fatalf("a NewTerm whose shard panicked opening: %v, want Unknown", err)
	}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 3, true)
}

// TestShutdownNotHeldByAFollower: a follower that cannot close (its disk
// hangs) holds the shutdown only until its context ends.
func TestShutdownNotHeldByAFollower(t *testing.T) {
	var armed atomic.Bool
	blocked, gate := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && strings.Contains(op.Path, "/hang/") {
			if once.CompareAndSwap(false, true) {
				close(blocked)
			}
			<-gate
		}
		return nil
	}))
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	defer close(gate) // let the follower finish closing after the test
	s := leader.Shard{Namespace: "hang", Shard: 0}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 3, true)
	armed.Store(true)

	n.down = true // this test shuts the node down itself
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-blocked // the follower is stuck on its disk
		cancel()
	}()
	err := n.srv.Shutdown(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "followers were closing") {
		t.Fatalf("Shutdown with a follower that cannot close: %v", err)
	}
	if err := <-n.served; err != nil {
		t.Errorf("serve: %v", err)
	}
	_ = n.conn.Close()
}
