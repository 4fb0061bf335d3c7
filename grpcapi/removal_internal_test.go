package grpcapi

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/durable"
)

// TestRemoveUnopenedDefersToOthers: removeUnopened does nothing, and says
// so, when another removal of the shard is under way or a follower of it
// is open: the caller looks again rather than removing beside them.
func TestRemoveUnopenedDefersToOthers(t *testing.T) {
	s := newTestServerWith(t, Options{DataDir: t.TempDir()})
	k := shardKey{"ns", 1}

	s.mu.Lock()
	done := s.removing(k) // another removal of k, under way
	removed, err := s.removeUnopened(k, 0)
	done()
	if removed || err != nil {
		t.Fatalf("removeUnopened beside another removal: %v, %v; want false, nil", removed, err)
	}

	sh, err := s.lookup(k, true) // a follower of k, open and held
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sh.f.NewTerm(2, follower.TermOptions{}); err != nil {
		t.Fatal(err)
	}
	removed, err = s.removeUnopened(k, 5)
	if removed || err != nil {
		t.Fatalf("removeUnopened beside an open follower: %v, %v; want false, nil", removed, err)
	}
	if _, err := os.Stat(s.dir(k)); err != nil {
		t.Fatalf("the open follower's directory: %v", err)
	}
	s.release(sh)
	if st, err := s.GetStatus(context.Background(), &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 1}); err != nil || st.GetTerm() != 2 {
		t.Fatalf("GetStatus: %v, %v; want term 2", st, err)
	}
}

// TestReleaseDropsNothingOnceClosing: once the shutdown has begun
// (closing is set), releasing the last hold on a follower with nothing
// stored does not drop it: no removal starts that the shutdown would not
// wait for; the shutdown removes what it left.
func TestReleaseDropsNothingOnceClosing(t *testing.T) {
	s := newTestServerWith(t, Options{DataDir: t.TempDir()})
	k := shardKey{"ns", 1}
	sh, err := s.lookup(k, true) // NotMember, nothing stored
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.mu.closing = true // as Shutdown sets it first
	s.mu.Unlock()
	s.release(sh)
	s.mu.Lock()
	hosted, removing := s.mu.shards[k] == sh, s.mu.removals[k] != nil
	s.mu.Unlock()
	if !hosted || removing {
		t.Fatalf("after the last release once closing: hosted %v, being removed %v; want it left to the shutdown", hosted, removing)
	}
	if _, err := os.Stat(s.dir(k)); err != nil {
		t.Fatalf("the follower's directory: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.dir(k)); !os.IsNotExist(err) {
		t.Fatalf("the directory of a follower with nothing stored after the shutdown: %v", err)
	}
}

// removeAllHook is a pathGate on which, once the RemoveAll of path has
// run, after is called.
type removeAllHook struct {
	*pathGate
	path  string
	after func()
}

func (h *removeAllHook) RemoveAll(name string) error {
	err := h.pathGate.RemoveAll(name)
	if name == h.path {
		h.after()
	}
	return err
}

// TestRemoveUnopenedDefersToANamespaceRemoval: removeUnopened does
// nothing, and says so, while the directory of the shard's namespace is
// being removed (tidyNamespace, once the namespace's last hosted shard
// went, here with the shard still on disk, not open): the caller looks
// again once that removal is over, as lookup does. Removing the shard
// beside it, the namespace's directory could go between the removal of
// the shard's directory and the sync of its parent, and the DeleteShard
// failed, Unavailable, with the shard's data gone.
func TestRemoveUnopenedDefersToANamespaceRemoval(t *testing.T) {
	gate := newPathGate(true)
	fs := &removeAllHook{pathGate: gate}
	s := newTestServerWith(t, Options{DataDir: t.TempDir(), FS: fs})
	release := sync.OnceFunc(func() { close(gate.proceed) })
	t.Cleanup(release) // before the server's shutdown, which waits for the removal
	k := onDiskNotOpen(t, s)
	dir := s.dir(k)

	tidied := make(chan struct{})
	// Should the shard's removal run beside the namespace's, the latter
	// removes the directory once the shard's directory is gone, before
	// the shard's removal syncs it.
	fs.path = durable.DeletedDir(s.fs, dir)
	fs.after = func() {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			release()
			<-tidied
		}
	}
	gate.path = s.fs.PathDir(dir)
	go func() {
		defer close(tidied)
		s.tidyNamespace(k.namespace)
	}()
	<-gate.entered // the namespace's directory is being removed
	removed, err := s.removeUnopened(k, 1)
	if removed || err != nil {
		_, serr := os.Stat(dir)
		t.Fatalf("removeUnopened beside the removal of the namespace's directory: %v, %v (the shard's directory: %v); want false, nil", removed, err, serr)
	}
	release()
	<-tidied
	if removed, err := s.removeUnopened(k, 1); !removed || err != nil {
		t.Fatalf("removeUnopened once the namespace's removal is over: %v, %v; want true, nil", removed, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the removed shard's directory: %v", err)
	}
}
