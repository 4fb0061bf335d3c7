package grpcapi

import (
	"context"
	"errors"
	"math"
	"os"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
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

// renameGate is a file system on which renaming one path waits: it
// closes entered, then waits for proceed.
type renameGate struct {
	vfs.FS
	from    string
	once    sync.Once
	entered chan struct{}
	proceed chan struct{}
}

func (g *renameGate) Rename(oldname, newname string) error {
	if oldname == g.from {
		g.once.Do(func() {
			close(g.entered)
			<-g.proceed
		})
	}
	return g.FS.Rename(oldname, newname)
}

// dropUnderWay starts a server whose shard ns/1 is an empty directory,
// and a GetStatus that opens it, finds it NotMember with nothing stored
// and drops it; the drop waits in the rename of the shard's directory
// until proceed is closed. status receives the GetStatus's error.
func dropUnderWay(t *testing.T) (s *Server, proceed chan struct{}, status <-chan error) {
	t.Helper()
	gate := &renameGate{FS: vfs.Default, entered: make(chan struct{}), proceed: make(chan struct{})}
	s = newTestServerWith(t, Options{DataDir: t.TempDir(), FS: gate})
	gate.from = s.dir(shardKey{"ns", 1})
	if err := os.MkdirAll(gate.from, 0o755); err != nil {
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
	s, proceed, status := dropUnderWay(t)
	done := make(chan struct{})
	var resp *replicationpb.NewTermResponse
	var err error
	go func() {
		defer close(done)
		resp, err = s.NewTerm(context.Background(), &replicationpb.NewTermRequest{Namespace: "ns", Shard: 1, Term: 1})
	}()
	waitBlockedIn(t, "chan receive", "grpcapi.(*Server).lookup", done)
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

// TestShutdownWaitsForADrop: Shutdown returns once a shard being
// dropped is closed and removed, as it does for the hosted shards.
func TestShutdownWaitsForADrop(t *testing.T) {
	s, proceed, status := dropUnderWay(t)
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
	waitBlockedIn(t, "chan receive", "grpcapi.(*Server).lookup", done)
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
