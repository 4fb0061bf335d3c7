package follower

// Edges of the follower's contract that no scenario of the other tests
// reaches: each pins down one promise of docs/spec.md or of the code's
// own doc comments.

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
	"github.com/tablefsm/tablefsm/wal"
)

// TestDeleteSurvivesPowerLoss: Delete moves the shard's directory aside
// durably before it removes it (removeDir), so once Delete returned, a
// power loss cannot bring the shard back: reopened, it is a fresh
// NotMember follower (SPEC §2.6, §5: after DeleteShard the node forgets
// the shard).
func TestDeleteSurvivesPowerLoss(t *testing.T) {
	mem := mdlNewMem(t) // the parent, /data, exists durably
	cfg := Config{Dir: mdlDir, FS: mem, SegmentSize: 4096}
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewTerm(3, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	confFill(t, f, 3, 0, 4, 4)
	waitApplied(t, f, 4)
	if err := f.Delete(3); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // power loss: only synced data survives
	// Nothing of the shard is left on disk for an Open to clean: removeDir
	// syncs the parent after removing the renamed directory too.
	for _, d := range []string{cfg.Dir, cfg.Dir + ".deleted"} {
		if _, err := crashed.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after a Delete and a power loss: %v, want it gone", d, err)
		}
	}
	cfg.FS = crashed
	g, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if st := g.Status(); st.State != StateNotMember || st.Term != logpos.NoTerm || st.Head != logpos.NoOffset || st.Commit != logpos.NoOffset {
		t.Fatalf("reopened after a Delete and a power loss: %+v, want a fresh NotMember follower", st)
	}
}

// TestDeleteOfADirectoryWithATrailingSeparator: a follower whose Dir
// ends with a separator is deleted as any other: its directory goes, and
// nothing is left beside it.
func TestDeleteOfADirectoryWithATrailingSeparator(t *testing.T) {
	parent := t.TempDir()
	f, err := Open(Config{Dir: filepath.Join(parent, "7") + string(filepath.Separator)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	confFill(t, f, 1, 0, 2, 2)
	if err := f.Delete(1); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got, err := os.ReadDir(parent); err != nil || len(got) != 0 {
		t.Fatalf("after Delete the parent holds %v (%v)", got, err)
	}
}

// TestFirstEntryThatCannotMoveWritesNothing: the first entry of a
// stream on a Fenced follower waits for the lifecycle lock before it
// writes anything; when the stream ends meanwhile (its leader went away),
// the Append failed and changed nothing (SPEC §2.3): no entry in the log,
// no head, no commit taken, the follower Fenced. The leader's next stream
// starts from there.
func TestFirstEntryThatCannotMoveWritesNothing(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s := newFakeStream()
	res := make(chan error, 1)
	go func() { res <- h.f.Replicate(s); s.cancel() }()
	// Attached once a commit advertisement is taken (it moves nothing).
	s.in <- &replicationpb.Append{Term: 1, CommitOffset: -1}
	h.f.acquire() // the first entry waits for the lifecycle lock
	r := h.f.stream
	s.in <- entryAppend(1, 0, 0, "k", "v")
	stacktest.WaitBlockedIn(t, "select", "follower.(*Follower).acquireUnless", r.recvDone)
	s.cancel()   // the leader goes away
	<-r.recvDone // the first entry gave up waiting for the lock
	h.f.release()
	if err := within(t, res); err == nil {
		t.Fatal("the stream whose leader went away returned nil")
	}
	want := Status{Term: 1, State: StateFenced, Head: -1, Commit: -1}
	if st := h.f.Status(); st != want {
		t.Fatalf("after a first entry that could not move the follower: %+v, want %+v", st, want)
	}
	if last := h.f.log.LastAppended(); !last.IsNone() {
		t.Fatalf("the log holds entry %v", last)
	}
	if adv := h.f.Stats().Advertised; adv != -1 {
		t.Fatalf("the failed Append advertised commit %d", adv)
	}
	next, ended := h.replicate(1, 0, 0, 0)
	if st := h.f.Status(); st.State != StateFollower || st.Head != 0 {
		t.Fatalf("after the next stream's first entry: %+v", st)
	}
	close(next.in)
	if err := <-ended; err != nil {
		t.Fatalf("the next stream, half-closed: %v", err)
	}
}

// headAtFirstEntry is an observer that records, when a stream's first
// entry moves the follower to Follower, the head Status reported then.
type headAtFirstEntry struct {
	f    atomic.Pointer[Follower]
	head atomic.Int64
	seen atomic.Bool
}

func (o *headAtFirstEntry) Observe(s fsm.Step) {
	if f := o.f.Load(); f != nil && s.Event == EventFirstEntry.String() && s.From == StateFenced.String() && s.Err == nil {
		o.head.Store(int64(f.Status().Head))
		o.seen.Store(true)
	}
}

// TestFirstEntryHeadComesWithFollower: the head appended by the first
// entry of a stream becomes visible only once the follower has moved to
// Follower (Status: "a head appended by the first entry of a stream comes
// with state Follower"). While the move is under way (seen from an
// observer, before it is published), Status still reports the old head
// with the old state.
func TestFirstEntryHeadComesWithFollower(t *testing.T) {
	obs := &headAtFirstEntry{}
	h := newHarness(t, Config{Observer: obs})
	h.newTerm(1)
	obs.f.Store(h.f)
	a := confAttach(t, h.f)
	a.send(t, entryAppend(1, 0, -1, "k", "v"))
	if got := a.ack(t); got != 0 {
		t.Fatalf("ack %d, want 0", got)
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	if !obs.seen.Load() {
		t.Fatal("no FirstEntry step observed")
	}
	if head := obs.head.Load(); head != -1 {
		t.Fatalf("during the move to Follower (state still Fenced), Status reported head %d, want -1", head)
	}
}

// heldSyncRound is a follower (term 1) whose WAL holds the fdatasync of
// one sync round: the first after armed is set. blocked is closed once
// that round is in its fsync, and the fsync completes once gate is
// closed (failing if fail is set). The WAL preparing its next segment
// syncs with fsync and is never held.
type heldSyncRound struct {
	f       *Follower
	armed   atomic.Bool
	fail    atomic.Bool
	blocked chan struct{}
	gate    chan struct{}
}

func newHeldSyncRound(t *testing.T) *heldSyncRound {
	t.Helper()
	h := &heldSyncRound{blocked: make(chan struct{}), gate: make(chan struct{})}
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.Contains(op.Path, "/wal/") && op.Kind == errorfs.OpFileSyncData &&
			h.armed.CompareAndSwap(true, false) {
			close(h.blocked)
			<-h.gate
			if h.fail.Load() {
				return errInjected
			}
		}
		return nil
	}))
	f, err := Open(Config{Dir: t.TempDir(), FS: efs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	h.f = f
	return h
}

// TestEndedStreamLastSyncWakesTheApplier: a stream that ends while its
// sync round is in its fsync (here, the leader goes away) sends no more
// acks, but the entries that fsync made durable are applied up to the
// commit the leader advertised, without waiting for new traffic
// (SPEC §3: the applier applies up to min(advertised, durable head)).
func TestEndedStreamLastSyncWakesTheApplier(t *testing.T) {
	held := newHeldSyncRound(t)
	f := held.f
	a := confAttach(t, f)
	held.armed.Store(true)
	a.send(t, entryAppend(1, 0, 0, "k", "v")) // commit 0 advertised with it
	<-held.blocked                            // the round of entry 0 is in its fsync
	a.s.cancel()                              // the leader goes away
	if err := a.end(t); err == nil {
		t.Fatal("the stream whose leader went away returned nil")
	}
	close(held.gate)
	waitApplied(t, f, 0)
	if v, err := f.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("Get(k) = %q, %v; want v", v, err)
	}
}

// TestCloseWaitsForADetachedStreamsSyncLoop: a stream whose leader went
// away while its sync round was in its fsync has returned, detached, but
// its sync loop is still running: the fsync fails, and the loop notes the
// log's failure (here it waits for the lock that takes). Close waits for
// it: nothing of the stream touches the follower once Close returns, and
// the failure is noted before Close cuts the failed log back.
func TestCloseWaitsForADetachedStreamsSyncLoop(t *testing.T) {
	held := newHeldSyncRound(t)
	held.fail.Store(true)
	f := held.f
	a := confAttach(t, f)
	held.armed.Store(true)
	a.send(t, entryAppend(1, 0, -1, "k", "v"))
	<-held.blocked // the round of entry 0 is in its fsync
	a.s.cancel()   // the leader goes away
	if err := a.end(t); err == nil {
		t.Fatal("the stream whose leader went away returned nil")
	}
	f.logSwap.Lock()
	locked := true
	defer func() {
		if locked {
			f.logSwap.Unlock()
		}
	}()
	close(held.gate) // the fsync fails
	closed := make(chan struct{})
	var closeErr error
	go func() {
		defer close(closed)
		closeErr = f.Close()
	}()
	stacktest.WaitBlockedIn(t, "sync.WaitGroup.Wait", "follower.hooks.Shutdown", closed)
	locked = false
	f.logSwap.Unlock()
	<-closed
	if closeErr != nil {
		t.Fatalf("Close: %v", closeErr)
	}
}

// TestInvalidSnapshotWrapsItsCause: an install refused because the
// snapshot is malformed fails with ErrInvalidArgument wrapping the
// store's reason (errors.go: the follower's errors arrive wrapped with
// detail, matched with errors.Is), and leaves the follower as it was.
func TestInvalidSnapshotWrapsItsCause(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(2)
	chunks := confSnap{chunkTerm: 2, storeTerm: 2, commit: 6}.build(t)
	before := confObserve(t, h.f, h.dir, h.fs)
	_, err := h.f.InstallSnapshot(&fakeSnapshotStream{chunks: chunks[:len(chunks)-1]}) // the last chunk is missing
	if !errors.Is(err, ErrInvalidArgument) || !errors.Is(err, store.ErrInvalidSnapshot) {
		t.Fatalf("installing a truncated snapshot: %v, want ErrInvalidArgument wrapping store.ErrInvalidSnapshot", err)
	}
	if d := before.diff(confObserve(t, h.f, h.dir, h.fs)); d != "" {
		t.Fatalf("a refused install changed: %s", d)
	}
}

// TestSnapshotCommitAboveItsTermRefused: a snapshot whose commit entry is
// of a term above every term it could be installed at (a leader of term 2
// cannot have committed an entry of term 3, or 9) is refused as invalid,
// and the follower is left as it was.
func TestSnapshotCommitAboveItsTermRefused(t *testing.T) {
	for _, entryTerm := range []logpos.Term{3, 9} {
		h := newHarness(t, Config{})
		h.newTerm(2)
		chunks := confSnap{chunkTerm: 2, storeTerm: 2, entryTerm: entryTerm, commit: 6}.build(t)
		before := confObserve(t, h.f, h.dir, h.fs)
		_, err := h.f.InstallSnapshot(&fakeSnapshotStream{chunks: chunks})
		if !errors.Is(err, ErrInvalidArgument) || !errors.Is(err, store.ErrInvalidSnapshot) {
			t.Fatalf("installing a snapshot whose commit is of term %d at term 2: %v, want ErrInvalidArgument wrapping store.ErrInvalidSnapshot", entryTerm, err)
		}
		if d := before.diff(confObserve(t, h.f, h.dir, h.fs)); d != "" {
			t.Fatalf("a refused install changed: %s", d)
		}
	}
}

// TestAckModeDecidedByFirstAppend: the ack mode of a stream is decided by
// its first Append (SPEC §2.3), even when that Append carries no entry: a
// stream that started without cumulative_acks_supported acks every entry
// on its own, though later Appends set the flag and several entries share
// a sync round.
func TestAckModeDecidedByFirstAppend(t *testing.T) {
	held := newHeldSyncRound(t)
	f := held.f
	flagged := func(ap *replicationpb.Append) *replicationpb.Append {
		ap.CumulativeAcksSupported = true
		return ap
	}
	a := confAttach(t, f)
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: -1}) // per-entry acks
	held.armed.Store(true)
	a.send(t, flagged(entryAppend(1, 0, -1, "k0", "v")))
	<-held.blocked // the round of entry 0 is in its fsync
	for o := int64(1); o <= 4; o++ {
		a.send(t, flagged(entryAppend(1, o, -1, fmt.Sprintf("k%d", o), "v")))
	}
	// Once a second advertisement is taken, the first and every entry
	// before it were handled: all of 1..4 wait for the next round.
	a.send(t, flagged(&replicationpb.Append{Term: 1, CommitOffset: -1}))
	a.send(t, flagged(&replicationpb.Append{Term: 1, CommitOffset: -1}))
	close(held.gate)
	var acks []int64
	for len(acks) == 0 || acks[len(acks)-1] != 4 {
		acks = append(acks, a.ack(t))
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	if want := []int64{0, 1, 2, 3, 4}; !slices.Equal(acks, want) || len(a.s.acks) != 0 {
		t.Errorf("acks %v (and %d more), want %v: one per entry, as the first Append decided", acks, len(a.s.acks), want)
	}
}

// TestNoAppendWrittenAfterTheStreamEnded: once a stream has ended (here
// its Send failed), an Append its leader still delivers is not written:
// nothing of a stream lands once it ended (SPEC §2.3, §6.4).
func TestNoAppendWrittenAfterTheStreamEnded(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	if _, err := h.f.Truncate(1, &logpos.EntryID{Term: 1, Offset: -1}); err != nil {
		t.Fatal(err)
	}
	s := newFakeStream()
	s.sendErr = errInjected
	res := make(chan error, 1)
	go func() { res <- h.f.Replicate(s); s.cancel() }()
	s.in <- &replicationpb.Append{Term: 1, CommitOffset: -1} // attached once taken
	// Holding the lifecycle lock, Replicate cannot detach the stream: its
	// receive loop keeps receiving.
	h.f.acquire()
	r := h.f.stream
	s.in <- entryAppend(1, 0, -1, "k", "v0")
	<-r.ctx.Done() // the ack of entry 0 failed: the stream ended
	s.in <- entryAppend(1, 1, -1, "k", "v1")
	h.f.release()
	if err := within(t, res); !errors.Is(err, errInjected) {
		t.Fatalf("the stream whose Send failed: %v", err)
	}
	<-r.recvDone
	if last, head := h.f.log.LastAppended().Offset, h.f.Status().Head; last != 0 || head != 0 {
		t.Fatalf("after the stream ended: log appended up to %d, head %d; want 0 (entry 1 came after the end)", last, head)
	}
}

// gatedAckStream is a fakeStream whose Sends numbered in gates (counting
// from 1) close their entered channel and wait for their gate before they
// succeed.
type gatedAckStream struct {
	*fakeStream
	sends   atomic.Int32
	entered map[int32]chan struct{}
	gates   map[int32]chan struct{}
}

func (s *gatedAckStream) Send(a *replicationpb.Ack) error {
	n := s.sends.Add(1)
	if gate, ok := s.gates[n]; ok {
		close(s.entered[n])
		<-gate
	}
	return s.fakeStream.Send(a)
}

// TestNoAckStartedAfterTheStreamEnded: a stream that NewTerm ends while
// its sync loop is sending a round's acks starts no other Send: at most
// the one under way completes (stream.go: "Once the stream has ended, at
// most a Send begun at that moment is still under way when Replicate
// returns; no other is started").
func TestNoAckStartedAfterTheStreamEnded(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s := &gatedAckStream{fakeStream: newFakeStream(),
		entered: map[int32]chan struct{}{1: make(chan struct{}), 2: make(chan struct{})},
		gates:   map[int32]chan struct{}{1: make(chan struct{}), 2: make(chan struct{})}}
	res := make(chan error, 1)
	go func() { res <- h.f.Replicate(s); s.cancel() }()
	s.in <- entryAppend(1, 0, -1, "k", "v0")
	<-s.entered[1] // the ack of entry 0 is being sent
	h.f.acquire()
	r := h.f.stream
	h.f.release()
	s.in <- entryAppend(1, 1, -1, "k", "v1")
	s.in <- entryAppend(1, 2, -1, "k", "v2")
	// Once a second advertisement is taken, entries 1 and 2 were handled:
	// the next round acknowledges both.
	s.in <- &replicationpb.Append{Term: 1, CommitOffset: -1}
	s.in <- &replicationpb.Append{Term: 1, CommitOffset: -1}
	close(s.gates[1])
	<-s.entered[2] // the ack of entry 1 is being sent, that of 2 comes next
	fenced := make(chan error, 1)
	go func() { _, err := h.f.NewTerm(2, TermOptions{}); fenced <- err }()
	<-r.ctx.Done() // NewTerm ended the stream
	close(s.gates[2])
	if err := <-fenced; err != nil {
		t.Fatal(err)
	}
	if err := within(t, res); !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("the stream NewTerm ended: %v", err)
	}
	if n := s.sends.Load(); n != 2 {
		t.Fatalf("%d Sends, want 2: an ack was sent after the stream ended", n)
	}
}

// TestLogReopenedAfterAnInstallKeepsTheSnapshotPoint: a log that failed
// right after an install, before any record of it reached its file, is
// reopened by the next control operation; the log holds nothing then,
// and the head stays the snapshot point (SPEC §2.8: head = max(last
// durable offset, commit)).
func TestLogReopenedAfterAnInstallKeepsTheSnapshotPoint(t *testing.T) {
	var failing atomic.Bool
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		// Segments are created and prepared; their records are not written.
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData:
			if failing.Load() && strings.HasSuffix(op.Path, ".seg") {
				return errInjected
			}
		}
		return nil
	}))
	f, err := Open(Config{Dir: t.TempDir(), FS: efs})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.NewTerm(3, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	env := &scriptEnv{t: t}
	if _, err := f.InstallSnapshot(env.snapshotStream(args{"term": "3", "commit": "20"})); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	a := confAttach(t, f)
	a.send(t, entryAppend(3, 21, -1, "k", "v"))
	if err := a.end(t); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a stream whose log cannot write: %v", err)
	}
	failing.Store(false)
	id, err := f.NewTerm(3, TermOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); id.Offset != 20 || st.Head != 20 || st.Commit != 20 {
		t.Fatalf("after the log was reopened: NewTerm replied %v, status %+v; want the snapshot point 20", id, st)
	}
	// A stream resumes right after the snapshot point.
	b := confAttach(t, f)
	b.send(t, entryAppend(3, 21, 21, "k", "v"))
	if got := b.ack(t); got != 21 {
		t.Fatalf("ack %d, want 21", got)
	}
	if err := b.finish(t); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, f, 21)
}

// TestEntryTermsAreChecked: a new entry's term is neither negative, nor
// above the stream's, nor below the term of the entry before it (the
// log's last, or the snapshot point's): the store would refuse to apply
// such an entry for ever. The stream fails with ErrInvalidArgument, and
// the entry is neither written nor acknowledged; a duplicate is not
// looked at.
func TestEntryTermsAreChecked(t *testing.T) {
	withTerm := func(a *replicationpb.Append, term int64) *replicationpb.Append {
		a.Entry.Term = term
		return a
	}
	for _, c := range []struct {
		name string
		bad  *replicationpb.Append
	}{
		{"negative", withTerm(entryAppend(3, 2, -1, "k", "v"), -5)},
		{"above the stream's", withTerm(entryAppend(3, 2, -1, "k", "v"), 4)},
		{"below the entry before it", withTerm(entryAppend(3, 2, -1, "k", "v"), 1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.newTerm(3)
			a := confAttach(t, h.f)
			// Entries of earlier terms, sent again by the leader of term 3.
			a.send(t, withTerm(entryAppend(3, 0, -1, "k", "v"), 1))
			a.send(t, withTerm(entryAppend(3, 1, -1, "k", "v"), 2))
			a.send(t, withTerm(entryAppend(3, 0, -1, "k", "v"), 3)) // a duplicate, not looked at
			for range 3 {
				a.ack(t)
			}
			a.send(t, c.bad)
			select {
			case err := <-a.res:
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("the stream ended with %v, want ErrInvalidArgument", err)
				}
			case o := <-a.s.acks:
				t.Fatalf("entry %d acknowledged", o)
			}
			if st := h.f.Status(); st.Head != 1 {
				t.Fatalf("head %d after a refused entry, want 1", st.Head)
			}
			if last := h.f.log.LastAppended(); last != (logpos.EntryID{Term: 2, Offset: 1}) {
				t.Fatalf("the log ends at %v", last)
			}
			select {
			case o := <-a.s.acks:
				t.Fatalf("ack %d for a refused entry", o)
			default:
			}
		})
	}
}

// TestOversizedEntryIsTheLeadersMistake: an entry larger than the log
// takes fails the stream with ErrInvalidArgument (the leader's mistake),
// not ErrUnavailable: nothing is written, nothing acknowledged, and the
// log has not failed.
func TestOversizedEntryIsTheLeadersMistake(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(3)
	a := confAttach(t, h.f)
	a.send(t, entryAppend(3, 0, -1, "k", "v"))
	a.ack(t)
	big := entryAppend(3, 1, -1, "k", "v")
	big.Entry.Value = make([]byte, wal.MaxValueSize+1)
	a.send(t, big)
	select {
	case err := <-a.res:
		if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("the stream ended with %v, want ErrInvalidArgument", err)
		}
	case o := <-a.s.acks:
		t.Fatalf("entry %d acknowledged", o)
	}
	if last := h.f.log.LastAppended(); last.Offset != 0 || h.f.logFailed.Load() {
		t.Fatalf("the log ends at %v (failed: %v)", last, h.f.logFailed.Load())
	}
}

// TestEntryAsLargeAsTheLogTakesIsNotRefused: the size check refuses only
// values larger than the log takes; one of exactly wal.MaxValueSize bytes
// is handed to the log (which here refuses it for its offset, before
// reading the value).
func TestEntryAsLargeAsTheLogTakesIsNotRefused(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	confFill(t, h.f, 1, 0, 0, -1)
	s := newFakeStream()
	defer s.cancel()
	r := newReplication(h.f, s, logpos.NoTerm) // not attached: its append is called here
	r.log = h.f.log
	err := r.append(logpos.Entry{Term: 1, Offset: 2, Value: make([]byte, wal.MaxValueSize)}, nil)
	if errors.Is(err, ErrInvalidArgument) || !errors.Is(err, wal.ErrGap) {
		t.Fatalf("a value of %d bytes after a gap: %v, want the log's gap", wal.MaxValueSize, err)
	}
}

// TestTermVisibleOnceDurable: NewTerm persists the term before anything
// shows it (SPEC §2.1): while the store syncs it, Term and Status still
// report the old term; a term whose persisting fails is never shown.
// (Only the syncs of Pebble's log are watched: nothing but the term's
// write asks for one here.)
func TestTermVisibleOnceDurable(t *testing.T) {
	var (
		fp            atomic.Pointer[Follower]
		armed, failIt atomic.Bool
		mu            sync.Mutex
		seen          []logpos.Term
	)
	storeDir := string(filepath.Separator) + "store" + string(filepath.Separator)
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		default:
			return nil
		}
		if !armed.Load() || !strings.Contains(op.Path, storeDir) || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		f := fp.Load()
		mu.Lock()
		seen = append(seen, f.Term(), f.Status().Term)
		mu.Unlock()
		if failIt.Load() {
			return errInjected
		}
		return nil
	}))
	f, err := Open(Config{Dir: t.TempDir(), FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fp.Store(f)
	if _, err := f.NewTerm(3, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		term, old logpos.Term
		fail      bool
	}{{5, 3, false}, {7, 5, true}} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		armed.Store(true)
		failIt.Store(c.fail)
		_, err := f.NewTerm(c.term, TermOptions{})
		armed.Store(false)
		if c.fail {
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("NewTerm(%d) with the store's syncs failing: %v, want ErrUnavailable", c.term, err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		seen := slices.Clone(seen)
		mu.Unlock()
		if len(seen) == 0 {
			t.Fatalf("NewTerm(%d) synced nothing of the store", c.term)
		}
		for _, term := range seen {
			if term != c.old {
				t.Fatalf("NewTerm(%d): term %d shown while the store synced (all seen: %v), want %d", c.term, term, seen, c.old)
			}
		}
		if got := f.Term(); got != 5 {
			t.Fatalf("after NewTerm(%d): term %d, want 5", c.term, got)
		}
	}
}

// TestOpenRefusesBadSizes: a SegmentSize the log would refuse, or a
// MemTableSize the store would (Pebble panics on one too small), is the
// caller's mistake: Open fails with ErrInvalidArgument (not
// ErrUnavailable, a storage failure) before it creates anything on disk.
func TestOpenRefusesBadSizes(t *testing.T) {
	for _, c := range []Config{
		{SegmentSize: -1},
		{SegmentSize: wal.MinSegmentSize - 1},
		{SegmentSize: wal.MaxSegmentSize + 1},
		{MemTableSize: 1},
		{MemTableSize: store.MinMemTableSize - 1},
		{MemTableSize: int(min(store.MaxMemTableSize+1, math.MaxInt))},
	} {
		c.Dir = filepath.Join(t.TempDir(), "shard")
		f, err := Open(c)
		if err == nil {
			_ = f.Close()
			t.Fatalf("SegmentSize %d, MemTableSize %d: Open succeeded", c.SegmentSize, c.MemTableSize)
		}
		if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrUnavailable) {
			t.Errorf("SegmentSize %d, MemTableSize %d: %v, want ErrInvalidArgument", c.SegmentSize, c.MemTableSize, err)
		}
		if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
			t.Errorf("SegmentSize %d, MemTableSize %d: Open left %s behind (%v)", c.SegmentSize, c.MemTableSize, c.Dir, err)
		}
	}
	for _, c := range []Config{{}, {SegmentSize: wal.MinSegmentSize}, {SegmentSize: 4096}, {MemTableSize: -1}, {MemTableSize: store.MinMemTableSize}} {
		f, err := Open(Config{Dir: filepath.Join(t.TempDir(), "shard"), SegmentSize: c.SegmentSize, MemTableSize: c.MemTableSize})
		if err != nil {
			t.Fatalf("SegmentSize %d, MemTableSize %d: %v", c.SegmentSize, c.MemTableSize, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenOfADirectoryInUse: a second follower of a directory another
// has open fails with ErrUnavailable and disturbs nothing of the first;
// once the first closes, the directory opens.
func TestOpenOfADirectoryInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shard")
	first, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if second, err := Open(Config{Dir: dir}); !errors.Is(err, ErrUnavailable) {
		if err == nil {
			_ = second.Close()
		}
		t.Fatalf("a second Open of a directory in use: %v, want ErrUnavailable", err)
	}
	if st := first.Status(); st.Term != 1 || st.State != StateFenced {
		t.Fatalf("the first follower after a second Open: %+v", st)
	}
	if _, err := first.NewTerm(2, TermOptions{}); err != nil {
		t.Fatalf("the first follower after a second Open: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatalf("Open once the first closed: %v", err)
	}
	defer again.Close()
	if st := again.Status(); st.Term != 2 || st.State != StateFenced {
		t.Fatalf("reopened: %+v, want Fenced at term 2", st)
	}
}

// TestScan: Scan reads the applied keys of a range in order, stops when
// fn says so, and takes a nil end as no bound; after Close it fails with
// ErrClosed.
func TestScan(t *testing.T) {
	f, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	s := newFakeStream()
	res := make(chan error, 1)
	go func() { res <- f.Replicate(s) }()
	for o := int64(0); o < 6; o++ {
		s.in <- &replicationpb.Append{Term: 1, CommitOffset: o - 1, CumulativeAcksSupported: true,
			Entry: &replicationpb.LogEntry{Term: 1, Offset: o, Value: kvPut(fmt.Sprintf("k%d", o), fmt.Sprintf("v%d", o))}}
	}
	s.in <- &replicationpb.Append{Term: 1, CommitOffset: 5} // all of it committed
	close(s.in)
	if err := within(t, res); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, f, 5)
	scan := func(start, end []byte, limit int) []string {
		t.Helper()
		var got []string
		if err := f.Scan(start, end, func(k, v []byte) bool {
			got = append(got, string(k)+"="+string(v))
			return len(got) < limit
		}); err != nil {
			t.Fatalf("Scan(%q, %q): %v", start, end, err)
		}
		return got
	}
	for _, c := range []struct {
		start, end []byte
		limit      int
		want       []string
	}{
		{[]byte("k2"), []byte("k5"), 10, []string{"k2=v2", "k3=v3", "k4=v4"}},
		{[]byte("k4"), nil, 10, []string{"k4=v4", "k5=v5"}},
		{nil, nil, 2, []string{"k0=v0", "k1=v1"}},
		{[]byte("x"), nil, 10, nil},
	} {
		if got := scan(c.start, c.end, c.limit); !slices.Equal(got, c.want) {
			t.Errorf("Scan(%q, %q) stopping after %d: %q, want %q", c.start, c.end, c.limit, got, c.want)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Scan(nil, nil, func(_, _ []byte) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Scan after Close: %v, want ErrClosed", err)
	}
}

// TestStreamEndedByCloseIsClosed: a stream that Close or Delete ended
// fails with an error matching both ErrStreamEnded and ErrClosed, as an
// install does; one that NewTerm ended matches ErrStreamEnded only (the
// follower is open).
func TestStreamEndedByCloseIsClosed(t *testing.T) {
	for _, c := range []struct {
		name   string
		end    func(*Follower) error
		closed bool
	}{
		{"NewTerm", func(f *Follower) error { _, err := f.NewTerm(2, TermOptions{}); return err }, false},
		{"Close", (*Follower).Close, true},
		{"Delete", func(f *Follower) error { return f.Delete(1) }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.newTerm(1)
			s, res := h.replicate(1, 0, 0, -1)
			if err := c.end(h.f); err != nil {
				t.Fatal(err)
			}
			err := within(t, res)
			s.cancel()
			if !errors.Is(err, ErrStreamEnded) || errors.Is(err, ErrClosed) != c.closed {
				t.Fatalf("the stream %s ended: %v; want ErrStreamEnded, and ErrClosed %v", c.name, err, c.closed)
			}
			if n := h.f.Stats().StreamFailures; n != (StreamFailures{}) {
				t.Fatalf("a stream %s ended counted as failed: %+v", c.name, n)
			}
		})
	}
}

// TestStoredTerm: the term stored and the options it was fenced with
// are read back together, also after a reopen; a later NewTerm replaces
// both. Read while NewTerms run, the options are always those of the term
// they come with.
func TestStoredTerm(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if term, o := f.StoredTerm(); term != logpos.NoTerm || o != (TermOptions{}) {
		t.Fatalf("with no term stored: %d, %+v", term, o)
	}
	opts := func(term logpos.Term) TermOptions {
		return TermOptions{EnableNotifications: term%2 == 1, KeySorting: store.KeySorting(term % 3)}
	}
	if _, err := f.NewTerm(1, opts(1)); err != nil {
		t.Fatal(err)
	}
	if term, o := f.StoredTerm(); term != 1 || o != opts(1) {
		t.Fatalf("after NewTerm(1): %d, %+v; want 1, %+v", term, o, opts(1))
	}
	// Options left out are stored as empty, not kept from before.
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if term, o := f.StoredTerm(); term != 1 || o != (TermOptions{}) {
		t.Fatalf("after NewTerm(1) with no options: %d, %+v; want 1, no options", term, o)
	}
	if _, err := f.NewTerm(1, opts(1)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f, err = Open(Config{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if term, o := f.StoredTerm(); term != 1 || o != opts(1) {
		t.Fatalf("after a reopen: %d, %+v; want 1, %+v", term, o, opts(1))
	}
	stop := make(chan struct{})
	mismatch := make(chan string, 1)
	go func() {
		defer close(mismatch)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if term, o := f.StoredTerm(); o != opts(term) {
				mismatch <- fmt.Sprintf("term %d with options %+v, want %+v", term, o, opts(term))
				return
			}
		}
	}()
	for term := logpos.Term(2); term <= 200; term++ {
		if _, err := f.NewTerm(term, opts(term)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if m, ok := <-mismatch; ok {
		t.Fatal(m)
	}
	if term, o := f.StoredTerm(); term != 200 || o != opts(200) {
		t.Fatalf("after NewTerm(200): %d, %+v", term, o)
	}
}

// TestScanRacingClose: a Scan racing Close returns nil or
// ErrClosed, never ErrUnavailable (a storage failure).
func TestScanRacingClose(t *testing.T) {
	for i := range 30 {
		f, err := Open(Config{Dir: filepath.Join(t.TempDir(), "s")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.NewTerm(1, TermOptions{}); err != nil {
			t.Fatal(err)
		}
		confFill(t, f, 1, 0, 3, 3)
		waitApplied(t, f, 3)
		done := make(chan error, 1)
		go func() {
			for {
				err := f.Scan(nil, nil, func(_, _ []byte) bool { return true })
				if err != nil {
					done <- err
					return
				}
			}
		}()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := within(t, done); !errors.Is(err, ErrClosed) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("round %d: Scan racing Close: %v, want ErrClosed", i, err)
		}
	}
}

// TestSnapshotOfNothingInstallsNowhere: a follower that has applied
// nothing gives a snapshot (Snapshot does not fail), but every install of
// it fails with ErrInvalidArgument.
func TestSnapshotOfNothingInstallsNowhere(t *testing.T) {
	src, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	sn, err := src.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot of nothing applied: %v (the doc says it is taken)", err)
	}
	defer sn.Close()
	chunks := snapshotChunks(t, sn, 1)
	dst, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := dst.InstallSnapshot(&gatedStream{chunks: chunks}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("install of a snapshot of nothing: %v, want ErrInvalidArgument", err)
	}
}

// TestLogTrimmedOnceTrimEveryEntriesApplied: the applier trims the log as
// soon as TrimEvery entries have been applied since the last trim, not
// one entry later: with TrimEvery 4, applying entries 0..3 drops the
// sealed segments below the durable commit.
func TestLogTrimmedOnceTrimEveryEntriesApplied(t *testing.T) {
	h := newHarness(t, Config{SegmentSize: wal.MinSegmentSize, TrimEvery: 4})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 3, 3)
	waitApplied(t, h.f, 3)
	if err := finish(t, s, res); err != nil {
		t.Fatal(err)
	}
	if first := h.f.log.FirstOffset(); first <= 0 {
		t.Fatalf("the log starts at %d after 4 entries applied with TrimEvery 4; want its first segments trimmed", first)
	}
}
