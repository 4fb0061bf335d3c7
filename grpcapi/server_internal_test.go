package grpcapi

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestCallWaitingForADelete: a call that a DeleteShard closed the
// follower under runs again on the shard the delete left, forgotten: a
// NewTerm below the deleted follower's term starts a fresh one.
func TestCallWaitingForADelete(t *testing.T) {
	s, err := New(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	ctx := context.Background()
	if _, err := s.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "ns", Shard: 1, Term: 3}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	var head logpos.EntryID
	err = s.onShard(shardKey{"ns", 1}, true, func(sh *shard) (err error) {
		if calls++; calls == 1 {
			// The delete the call waited for.
			if _, err := s.DeleteShard(ctx, &replicationpb.DeleteShardRequest{Namespace: "ns", Shard: 1, Term: 3}); err != nil {
				t.Fatal(err)
			}
		}
		head, err = sh.f.NewTerm(2, follower.TermOptions{})
		return err
	})
	if err != nil || calls != 2 || head != logpos.NoEntry {
		t.Fatalf("NewTerm(2) waiting for the delete of a shard of term 3: head %v, %v after %d calls; want a fresh follower's", head, err, calls)
	}
	// The shard is hosted again, at term 2.
	st, err := s.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 1})
	if err != nil || st.GetTerm() != 2 {
		t.Fatalf("GetStatus: %v, %v", st, err)
	}
	// A call refused by a closed follower that was not deleted (the
	// node shuts down) is not run again.
	calls = 0
	err = s.onShard(shardKey{"ns", 1}, false, func(sh *shard) error {
		calls++
		if err := sh.f.Close(); err != nil {
			t.Fatal(err)
		}
		_, err := sh.f.NewTerm(4, follower.TermOptions{})
		return err
	})
	if !errors.Is(err, follower.ErrClosed) || calls != 1 {
		t.Fatalf("a call on a closed, hosted follower: %v after %d calls, want ErrClosed after 1", err, calls)
	}
}

// TestRetiredStepLogs: the step logs of the last maxRetired deleted
// shards are kept, a shard deleted twice counting once, with its last log.
func TestRetiredStepLogs(t *testing.T) {
	s := &Server{}
	s.mu.shards = map[shardKey]*shard{}
	s.mu.retired = map[shardKey]*stepLog{}
	// retire hosts a new shard k, as lookup does, and deletes it.
	retire := func(k shardKey) *shard {
		sh := &shard{key: k, steps: newStepLog(4)}
		s.mu.shards[k] = sh
		s.unretireLocked(k)
		s.retire(sh)
		return sh
	}
	k := shardKey{"ns", 1}
	retire(k)
	last := retire(k) // deleted, hosted again, deleted again
	for i := range maxRetired - 1 {
		retire(shardKey{"other", int64(i)})
	}
	if got := s.retiredSteps(k); got != last.steps {
		t.Fatalf("the steps of a shard deleted twice, then %d others: %p, want its last log %p", maxRetired-1, got, last.steps)
	}
	if len(s.mu.retiredOrder) != maxRetired || len(s.mu.retired) != maxRetired {
		t.Fatalf("%d shards in the order, %d logs kept; want %d", len(s.mu.retiredOrder), len(s.mu.retired), maxRetired)
	}
	retire(shardKey{"other", maxRetired})
	if s.retiredSteps(k) != nil {
		t.Fatalf("the oldest deleted shard's steps are still kept after %d more", maxRetired)
	}
}

// TestStepsAfter: steps after a sequence number, whichever it is.
func TestStepsAfter(t *testing.T) {
	l := newStepLog(4)
	for range 6 {
		l.add(fsm.Step{From: "A", Event: "E", To: "B"})
	}
	for _, c := range []struct {
		after     uint64
		first, n  uint64
		truncated bool
	}{
		{0, 3, 4, true},
		{1, 3, 4, true},
		{2, 3, 4, false},
		{4, 5, 2, false},
		{6, 0, 0, false},
		{7, 0, 0, false},
		{math.MaxUint64, 0, 0, false},
	} {
		steps, truncated := l.after(c.after)
		if uint64(len(steps)) != c.n || truncated != c.truncated || c.n > 0 && steps[0].GetSeq() != c.first {
			t.Errorf("after(%d): %d steps from %v, truncated %v; want %d from %d, %v", c.after, len(steps), steps, truncated, c.n, c.first, c.truncated)
		}
	}
}

// pathGate is a file system on which the first rename of one path (or,
// with remove set, its first removal) waits: it closes entered, then
// waits for proceed.
type pathGate struct {
	vfs.FS
	path    string
	remove  bool
	once    sync.Once
	entered chan struct{}
	proceed chan struct{}
}

func newPathGate(remove bool) *pathGate {
	return &pathGate{FS: vfs.Default, remove: remove, entered: make(chan struct{}), proceed: make(chan struct{})}
}

func (g *pathGate) wait(path string, remove bool) {
	if path == g.path && remove == g.remove {
		g.once.Do(func() {
			close(g.entered)
			<-g.proceed
		})
	}
}

func (g *pathGate) Rename(oldname, newname string) error {
	g.wait(oldname, false)
	return g.FS.Rename(oldname, newname)
}

func (g *pathGate) Remove(name string) error {
	g.wait(name, true)
	return g.FS.Remove(name)
}

// dropUnderWay starts a server whose shard ns/1 is an empty directory,
// and a GetStatus that opens it, finds it NotMember with nothing stored
// and drops it; the drop waits in the rename of the shard's directory
// (or, with namespace set, in the removal of the namespace's directory
// that follows) until proceed is closed. status receives the
// GetStatus's error.
func dropUnderWay(t *testing.T, namespace bool) (s *Server, proceed chan struct{}, status <-chan error) {
	t.Helper()
	gate := newPathGate(namespace)
	s = newTestServerWith(t, Options{DataDir: t.TempDir(), FS: gate})
	dir := s.dir(shardKey{"ns", 1})
	gate.path = dir
	if namespace {
		gate.path = s.fs.PathDir(dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() {
		_, err := s.GetStatus(context.Background(), &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 1})
		errs <- err
	}()
	<-gate.entered
	return s, gate.proceed, errs
}

// TestCallWaitingForADrop: a call on a shard whose follower (NotMember,
// nothing stored) is being dropped waits until its directory is gone,
// then opens a fresh follower, rather than one on the directory being
// removed.
func TestCallWaitingForADrop(t *testing.T) {
	s, proceed, status := dropUnderWay(t, false)
	done := make(chan struct{})
	var resp *replicationpb.NewTermResponse
	var err error
	go func() {
		defer close(done)
		resp, err = s.NewTerm(context.Background(), &replicationpb.NewTermRequest{Namespace: "ns", Shard: 1, Term: 1})
	}()
	stacktest.WaitBlockedIn(t, "chan receive", "grpcapi.(*Server).lookup", done)
	close(proceed)
	if err := <-status; Reason(err) != ReasonNodeIsNotMember {
		t.Fatalf("GetStatus of an empty shard: %v, want NODE_IS_NOT_MEMBER", err)
	}
	<-done
	if err != nil || resp.GetHeadEntryId().GetOffset() != -1 {
		t.Fatalf("NewTerm after the drop: %v, %v", resp, err)
	}
	st, err := s.GetStatus(context.Background(), &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 1})
	if err != nil || st.GetTerm() != 1 || st.GetStatus() != replicationpb.ServingStatus_FENCED {
		t.Fatalf("GetStatus after NewTerm: %v, %v", st, err)
	}
}

// TestStatusWaitingForADrop: a GetStatus on a shard whose follower is
// being dropped waits until its directory is gone, then looks on disk
// again: the shard is not hosted, and no follower of it is opened (the
// dropped one's steps are still those kept).
func TestStatusWaitingForADrop(t *testing.T) {
	s, proceed, status := dropUnderWay(t, false)
	k := shardKey{"ns", 1}
	dropped := s.retiredSteps(k)
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, err = s.GetStatus(context.Background(), &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 1})
	}()
	stacktest.WaitBlockedIn(t, "chan receive", "grpcapi.(*Server).lookup", done)
	close(proceed)
	if err := <-status; Reason(err) != ReasonNodeIsNotMember {
		t.Fatalf("GetStatus of an empty shard: %v, want NODE_IS_NOT_MEMBER", err)
	}
	<-done
	if Reason(err) != ReasonNodeIsNotMember {
		t.Fatalf("GetStatus after the drop: %v, want NODE_IS_NOT_MEMBER", err)
	}
	if dropped == nil || s.retiredSteps(k) != dropped {
		t.Fatal("a follower of the dropped shard was opened again")
	}
	if _, err := os.Stat(s.dir(k)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the dropped shard's directory: %v", err)
	}
}

// TestShutdownWaitsForADrop: Shutdown returns once a shard being
// dropped is closed and removed, as it does for the hosted shards.
func TestShutdownWaitsForADrop(t *testing.T) {
	s, proceed, status := dropUnderWay(t, false)
	shutdown := shutdownWaitingIn(t, s, "grpcapi.waitRemoved")
	close(proceed)
	if err := shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-status; Reason(err) != ReasonNodeIsNotMember {
		t.Fatalf("GetStatus of an empty shard: %v, want NODE_IS_NOT_MEMBER", err)
	}
	if _, err := os.Stat(s.dir(shardKey{"ns", 1})); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the dropped shard's directory: %v", err)
	}
}

// TestDeleteShardWaitingForAnOpenThatPanics: a DeleteShard that waited
// for the open of a shard, which panicked (an observer's bug), removes
// the shard without a follower, as it does when the open fails.
func TestDeleteShardWaitingForAnOpenThatPanics(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "ns", Shard: 1, Term: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	entered, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s, err = New(Options{DataDir: dir, Follower: follower.Config{Observer: fsm.ObserverFunc(func(st fsm.Step) {
		if st.Event == "Restore" {
			once.Do(func() {
				close(entered)
				<-proceed
				panic("observer bug")
			})
		}
	})}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	req := &replicationpb.DeleteShardRequest{Namespace: "ns", Shard: 1, Term: 2}
	opening := make(chan any, 1)
	go func() {
		defer func() { opening <- recover() }()
		_, _ = s.DeleteShard(ctx, req)
	}()
	<-entered
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err = s.DeleteShard(ctx, req)
	}()
	stacktest.WaitBlockedIn(t, "chan receive", "grpcapi.(*Server).lookup", done)
	close(proceed)
	if r := <-opening; r == nil {
		t.Fatal("the DeleteShard that opened the shard did not panic")
	}
	<-done
	if err != nil {
		t.Fatalf("the DeleteShard that waited: %v", err)
	}
	if _, err := os.Stat(s.dir(shardKey{"ns", 1})); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the shard's directory: %v, want it gone", err)
	}
}

// TestOpenWaitingForANamespaceRemoval: a call that would open a shard
// of a namespace whose directory is being removed (its last shard was
// dropped) waits until it is gone, then opens its shard in a new one.
func TestOpenWaitingForANamespaceRemoval(t *testing.T) {
	s, proceed, status := dropUnderWay(t, true)
	release := sync.OnceFunc(func() { close(proceed) })
	t.Cleanup(release) // before the server's shutdown, which waits for the removal
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, err = s.NewTerm(context.Background(), &replicationpb.NewTermRequest{Namespace: "ns", Shard: 2, Term: 1})
	}()
	stacktest.WaitBlockedIn(t, "chan receive", "grpcapi.(*Server).lookup", done)
	release()
	if err := <-status; Reason(err) != ReasonNodeIsNotMember {
		t.Fatalf("GetStatus of an empty shard: %v, want NODE_IS_NOT_MEMBER", err)
	}
	<-done
	if err != nil {
		t.Fatalf("NewTerm after the namespace's directory was removed: %v", err)
	}
	st, err := s.GetStatus(context.Background(), &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 2})
	if err != nil || st.GetTerm() != 1 || st.GetStatus() != replicationpb.ServingStatus_FENCED {
		t.Fatalf("GetStatus after NewTerm: %v, %v", st, err)
	}
}

// churnFS is the operating system's file system, on which each Stat of
// one path first runs churn, as long as budget lasts.
type churnFS struct {
	vfs.FS
	path   string
	budget int
	stats  int
	churn  func(i int)
}

func (f *churnFS) Stat(name string) (vfs.FileInfo, error) {
	if name == f.path {
		f.stats++
		if f.budget > 0 {
			f.budget--
			f.churn(f.budget)
		}
	}
	return f.FS.Stat(name)
}

// onDiskNotOpen leaves shard ns/1 fenced at term 1 on disk, its follower
// not open, as after a restart, and returns its key.
func onDiskNotOpen(t *testing.T, s *Server) shardKey {
	t.Helper()
	if _, err := s.NewTerm(context.Background(), &replicationpb.NewTermRequest{Namespace: "ns", Shard: 1, Term: 1}); err != nil {
		t.Fatal(err)
	}
	k := shardKey{"ns", 1}
	sh, err := s.lookup(k, false)
	if err != nil {
		t.Fatal(err)
	}
	s.release(sh)
	if err := sh.f.Close(); err != nil {
		t.Fatal(err)
	}
	s.forget(sh)
	return k
}

// TestLookupNotHeldByOtherShards: a call on a shard on disk but not
// open does not look for its directory again for each other shard
// forgotten meanwhile (here, one opened and dropped at each look).
func TestLookupNotHeldByOtherShards(t *testing.T) {
	const drops = 20
	fs := &churnFS{FS: vfs.Default, budget: drops}
	s := newTestServerWith(t, Options{DataDir: t.TempDir(), FS: fs})
	ctx := context.Background()
	k := onDiskNotOpen(t, s)
	fs.path = s.dir(k)
	fs.churn = func(i int) {
		other := shardKey{"other", int64(i)}
		if err := os.MkdirAll(s.dir(other), 0o755); err != nil {
			t.Error(err)
		}
		if _, err := s.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: other.namespace, Shard: other.shard}); Reason(err) != ReasonNodeIsNotMember {
			t.Errorf("GetStatus of the empty shard %v: %v", other, err)
		}
	}
	st, err := s.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: "ns", Shard: 1})
	if err != nil || st.GetTerm() != 1 {
		t.Fatalf("GetStatus: %v, %v", st, err)
	}
	// Opening the follower looks at its directory too, but not once for
	// each shard dropped.
	if fs.stats >= drops {
		t.Fatalf("one GetStatus looked at the shard's directory %d times while %d other shards were dropped", fs.stats, drops-fs.budget)
	}
}

// TestShutdownWithAnEndedContext: a node with no follower to close
// releases its data directory in a shutdown whose context has already
// ended, and reports no error: nothing was cut short.
func TestShutdownWithAnEndedContext(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 2 {
		s, err := New(Options{DataDir: dir})
		if err != nil {
			t.Fatalf("a node on the data directory of one shut down: %v", err)
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown of a node with no follower to close: %v", err)
		}
	}
}

// TestShutdownCutShortReleasesTheDirectoryLater: a shutdown cut short
// while a follower was still closing keeps the data directory locked
// until that follower has closed, and releases it then.
func TestShutdownCutShortReleasesTheDirectoryLater(t *testing.T) {
	dir := t.TempDir()
	var armed atomic.Bool
	var once sync.Once
	blocked, gate := make(chan struct{}), make(chan struct{})
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && strings.Contains(op.Path, string(filepath.Separator)+"hang"+string(filepath.Separator)) {
			once.Do(func() { close(blocked) })
			<-gate
		}
		return nil
	}))
	s, err := New(Options{DataDir: dir, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.NewTerm(context.Background(), &replicationpb.NewTermRequest{Namespace: "hang", Shard: 0, Term: 1}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-blocked
		cancel()
	}()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with a follower that cannot close: %v", err)
	}
	if other, err := New(Options{DataDir: dir}); err == nil {
		_ = other.Shutdown(context.Background())
		t.Fatal("a second node started on the data directory of a follower still closing")
	}
	close(gate)
	<-s.released
	other, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatalf("a node on the data directory once the follower has closed: %v", err)
	}
	if err := other.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestShutdownDuringADropTidiesTheNamespace: a shard being dropped when
// the shutdown starts (which the shutdown waits for) leaves no empty
// namespace directory: the drop does not tidy it once the server is
// closing, the shutdown does.
func TestShutdownDuringADropTidiesTheNamespace(t *testing.T) {
	s, proceed, _ := dropUnderWay(t, false)
	shutdown := shutdownWaitingIn(t, s, "grpcapi.waitRemoved")
	close(proceed)
	if err := shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	nsDir := s.fs.PathDir(s.dir(shardKey{"ns", 1}))
	if _, err := os.Stat(nsDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the namespace directory %s is left: %v", nsDir, err)
	}
}

// TestCallsOnUnhostedShardsLeaveNoBookkeeping: calls naming shards the
// node does not host leave nothing in the node's maps, however many a
// client names: no open shard, no lookup, no removal.
func TestCallsOnUnhostedShardsLeaveNoBookkeeping(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	for i := range int64(50) {
		if _, err := s.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: "ns", Shard: i}); Reason(err) != ReasonNodeIsNotMember {
			t.Fatalf("GetStatus of shard %d: %v", i, err)
		}
		if _, err := s.Truncate(ctx, &replicationpb.TruncateRequest{Namespace: "ns", Shard: i, Term: 1, HeadEntryId: &replicationpb.EntryId{Term: 1, Offset: -1}}); Reason(err) != ReasonInvalidStatus {
			t.Fatalf("Truncate of shard %d: %v", i, err)
		}
		if _, err := s.DeleteShard(ctx, &replicationpb.DeleteShardRequest{Namespace: "ns", Shard: i, Term: 1}); err != nil {
			t.Fatalf("DeleteShard of shard %d: %v", i, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.shards) != 0 || len(s.mu.looking) != 0 || len(s.mu.removals) != 0 {
		t.Fatalf("after calls on 50 unhosted shards: %d shards, %d lookups, %d removals held", len(s.mu.shards), len(s.mu.looking), len(s.mu.removals))
	}
}
