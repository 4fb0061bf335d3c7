package follower

// Rules of docs/spec.md checked one by one, each where the broader tests
// could not fail for it.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/fdtest"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestTruncateBelowNoEntryWithNothingCommitted: SPEC §2.2 "headEntryId.offset <
// commit → ErrInvalidArgument (committed entries are never truncated)",
// also when nothing is committed (commit -1) and the offset is below -1:
// refused with ErrInvalidArgument (not the log's out-of-range error as
// ErrUnavailable), changing nothing; the state stays Fenced.
func TestTruncateBelowNoEntryWithNothingCommitted(t *testing.T) {
	for _, withLog := range []bool{false, true} {
		h := newHarness(t, Config{})
		h.newTerm(1)
		if withLog {
			confFill(t, h.f, 1, 0, 2, -1)
			h.newTerm(1)
		}
		for _, off := range []logpos.Offset{-2, -7, math.MinInt64} {
			changesNothing(t, h, "Truncate below -1", func() {
				_, err := h.f.Truncate(1, &logpos.EntryID{Term: 1, Offset: off})
				if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrUnavailable) {
					t.Errorf("log=%v: Truncate(1, offset %d) with commit -1: %v, want ErrInvalidArgument", withLog, off, err)
				}
			})
		}
		if st := h.f.Status(); st.State != StateFenced {
			t.Errorf("after the refused Truncates: %+v, want Fenced", st)
		}
	}
}

// TestTruncateToTheSnapshotPointCutsTheEntriesAfterIt: SPEC §2.2 "reply
// {t, newHead} where newHead is the last offset kept, and never below
// commit (after a snapshot the log is empty but the snapshot point is
// kept)": entries appended after an install are cut by a Truncate to the
// snapshot point; the point is the head (after a restart too), NewTerm
// replies the snapshot point, and the next entry after it is taken.
func TestTruncateToTheSnapshotPointCutsTheEntriesAfterIt(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(3)
	chunks := confSnap{chunkTerm: 3, storeTerm: 3, commit: 30, options: confSnapOpts}.build(t)
	if off, err := h.f.InstallSnapshot(&gatedStream{chunks: chunks}); err != nil || off != 30 {
		t.Fatalf("install: %d %v", off, err)
	}
	crc := uint32(0x1234)
	a := confAttach(t, h.f)
	first := entryAppend(3, 31, 30, "a31", "v")
	first.PreviousEntryCrc = &crc
	a.send(t, first)
	a.send(t, entryAppend(3, 32, 30, "a32", "v"))
	for _, want := range []int64{31, 32} {
		if got := a.ack(t); got != want {
			t.Fatalf("ack %d, want %d", got, want)
		}
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	head, err := h.f.NewTerm(4, TermOptions{})
	if err != nil || head != (logpos.EntryID{Term: 3, Offset: 32}) {
		t.Fatalf("NewTerm: %v %v, want {3,32}", head, err)
	}
	got, err := h.f.Truncate(4, &logpos.EntryID{Term: 3, Offset: 30})
	if err != nil || got != (logpos.EntryID{Term: 4, Offset: 30}) {
		t.Fatalf("Truncate to the snapshot point: %v %v, want {4,30}", got, err)
	}
	if st := h.f.Status(); st.State != StateFollower || st.Head != 30 || st.Commit != 30 {
		t.Fatalf("after Truncate: %+v", st)
	}
	if log, err := mdlReadLog(h.f); err != nil || len(log) != 0 {
		t.Fatalf("log after Truncate to the snapshot point: %v %v, want empty", log, err)
	}
	// NewTerm replies the snapshot point (the log is empty).
	head, err = h.f.NewTerm(4, TermOptions{})
	if err != nil || head.Offset != 30 {
		t.Fatalf("NewTerm after Truncate: %v %v, want offset 30", head, err)
	}
	_ = h.f.Close()
	h.open()
	if st := h.f.Status(); st.State != StateFenced || st.Head != 30 || st.Commit != 30 || st.Term != 4 {
		t.Fatalf("after reopen: %+v", st)
	}
	b := confAttach(t, h.f)
	next := entryAppend(4, 31, 31, "b31", "v")
	next.PreviousEntryCrc = &crc
	b.send(t, next)
	if got := b.ack(t); got != 31 {
		t.Fatalf("ack %d, want 31", got)
	}
	if err := b.finish(t); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, h.f, 31)
	if v, err := h.f.Get([]byte("b31")); err != nil || string(v) != "v" {
		t.Fatalf("b31: %q %v", v, err)
	}
	if _, err := h.f.Get([]byte("a31")); err == nil {
		t.Fatalf("a31, truncated, was applied")
	}
}

// TestDuplicateAdvertisesCommit: SPEC §2.3 "entry.offset <= head →
// duplicate: nothing written; advertised = max(advertised,
// commit_offset)": a duplicate alone carries the commit the applier then
// reaches, and a lower commit_offset on a later duplicate does not lower
// it.
func TestDuplicateAdvertisesCommit(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	confFill(t, h.f, 1, 0, 5, -1)
	if adv := h.f.advertised.Load(); adv != -1 {
		t.Fatalf("setup: advertised %d", adv)
	}
	a := confAttach(t, h.f)
	a.send(t, entryAppend(1, 2, 4, "dup", "x"))
	if got := a.ack(t); got != 2 {
		t.Fatalf("ack %d, want 2", got)
	}
	if adv := h.f.advertised.Load(); adv != 4 {
		t.Fatalf("advertised %d after a duplicate carrying commit 4, want 4", adv)
	}
	a.send(t, entryAppend(1, 1, 0, "dup", "y"))
	if got := a.ack(t); got != 1 {
		t.Fatalf("ack %d, want 1", got)
	}
	if adv := h.f.advertised.Load(); adv != 4 {
		t.Fatalf("advertised %d after a duplicate carrying commit 0, want 4 (max)", adv)
	}
	waitApplied(t, h.f, 4)
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	if st := h.f.Status(); st.Commit != 4 || st.Head != 5 {
		t.Fatalf("%+v, want commit 4 head 5", st)
	}
	if _, err := h.f.Get([]byte("dup")); err == nil {
		t.Fatalf("a duplicate's value was written")
	}
}

// TestCommitAdvertisementNeverLowersAdvertised: SPEC §2.3 "no entry → a
// commit advertisement: advertised = max(advertised, commit_offset);
// wake the applier; no ack, no write, no state change": a lower
// commit_offset does not lower the advertised commit.
func TestCommitAdvertisementNeverLowersAdvertised(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	confFill(t, h.f, 1, 0, 5, -1)
	h.newTerm(1) // Fenced again
	a := confAttach(t, h.f)
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: 3})
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: 1})
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: -5}) // the previous two were handled
	if adv := h.f.advertised.Load(); adv != 3 {
		t.Fatalf("advertised %d, want 3", adv)
	}
	waitApplied(t, h.f, 3)
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	if len(a.s.acks) != 0 {
		t.Fatalf("ack %d for commit advertisements", <-a.s.acks)
	}
	if st := h.f.Status(); st.State != StateFenced || st.Commit != 3 || st.Head != 5 {
		t.Fatalf("%+v, want Fenced commit 3 head 5", st)
	}
}

// senderStream is a fakeStream that records which goroutines call Send,
// and whether two Sends ever ran at once.
type senderStream struct {
	*fakeStream
	mu         sync.Mutex
	goroutines map[string]int
	inFlight   atomic.Int32
	overlapped atomic.Bool
}

func goroutineID() string {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	// "goroutine 123 [running]:..."
	return strings.Fields(string(buf[:n]))[1]
}

func (s *senderStream) Send(a *replicationpb.Ack) error {
	if s.inFlight.Add(1) > 1 {
		s.overlapped.Store(true)
	}
	defer s.inFlight.Add(-1)
	s.mu.Lock()
	s.goroutines[goroutineID()]++
	s.mu.Unlock()
	runtime.Gosched() // widen the window for a second sender
	return s.fakeStream.Send(a)
}

// TestOneSenderPerStream: SPEC §2.3 "Only one goroutine sends on a
// stream": in both ack modes, with new entries, duplicates and commit
// advertisements arriving while sync rounds run, every Send of a stream
// is made by one goroutine, never two at once.
func TestOneSenderPerStream(t *testing.T) {
	for _, cumulative := range []bool{false, true} {
		h := newHarness(t, Config{})
		h.newTerm(1)
		s := &senderStream{fakeStream: newFakeStream(), goroutines: map[string]int{}}
		res := make(chan error, 1)
		go func() { res <- h.f.Replicate(s); s.cancel() }()
		const n = 400
		for o := int64(0); o < n; o++ {
			a := entryAppend(1, o, o-1, fmt.Sprintf("k%d", o), "v")
			a.CumulativeAcksSupported = cumulative
			s.in <- a
			if o%7 == 3 {
				d := entryAppend(1, o/2, o-1, "dup", "v")
				d.CumulativeAcksSupported = cumulative
				s.in <- d
			}
			if o%11 == 0 {
				s.in <- &replicationpb.Append{Term: 1, CommitOffset: o, CumulativeAcksSupported: cumulative}
			}
		}
		close(s.in)
		if err := within(t, res); err != nil {
			t.Fatalf("cumulative=%v: %v", cumulative, err)
		}
		if s.overlapped.Load() {
			t.Errorf("cumulative=%v: two Sends ran at once", cumulative)
		}
		if len(s.goroutines) != 1 {
			t.Errorf("cumulative=%v: Sends from %d goroutines: %v", cumulative, len(s.goroutines), s.goroutines)
		}
	}
}

// TestPerEntryDuplicateAckedInItsTurn: SPEC §2.3 per-entry mode:
// "exactly one Ack{o} for each entry received on the stream (new or
// duplicate), sent once o is durable, in the order the entries were
// received": a duplicate (durable already) received after a new entry
// whose sync is under way is acknowledged after it, not before.
func TestPerEntryDuplicateAckedInItsTurn(t *testing.T) {
	held := newHeldSyncRound(t)
	f := held.f
	confFill(t, f, 1, 0, 3, -1)
	a := confAttach(t, f)
	held.armed.Store(true)
	a.send(t, entryAppend(1, 4, -1, "k4", "v"))
	<-held.blocked // entry 4's round is in its fsync
	a.send(t, entryAppend(1, 1, -1, "dup", "v"))
	a.send(t, entryAppend(1, 5, -1, "k5", "v"))
	a.send(t, entryAppend(1, 0, -1, "dup", "v"))
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: -1}) // the ones before were handled
	close(held.gate)
	var acks []int64
	for range 4 {
		acks = append(acks, a.ack(t))
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	if want := []int64{4, 1, 5, 0}; !slices.Equal(acks, want) || len(a.s.acks) != 0 {
		t.Fatalf("acks %v (and %d more), want %v", acks, len(a.s.acks), want)
	}
}

// TestApplierStopsAtTheDurableHead: SPEC §3 "Applies entries in
// offset order from commit+1 up to min(advertised, durable head)": while
// appended entries wait for their fsync, a commit advertised beyond them
// wakes the applier, which stops at the durable head on its own: it does
// not try (and fail) to read the entries that are not durable yet. (The
// log refuses to hand them out, so the commit alone cannot tell; the
// failed attempts show in ApplyErrors.)
func TestApplierStopsAtTheDurableHead(t *testing.T) {
	held := newHeldSyncRound(t)
	f := held.f
	confFill(t, f, 1, 0, 2, 2)
	waitApplied(t, f, 2)
	a := confAttach(t, f)
	held.armed.Store(true)
	a.send(t, entryAppend(1, 3, 2, "k3", "v"))
	<-held.blocked // entry 3's round is in its fsync
	for o := int64(4); o <= 6; o++ {
		a.send(t, entryAppend(1, o, 2, fmt.Sprintf("k%d", o), "v"))
	}
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: 6}) // wakes the applier
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: 6}) // the previous one was handled
	// The applier took the wake-up and ran its round once it waits
	// again: for the next one, or, after a failed attempt, for its
	// retry (a wake-up pending in its channel would keep it runnable).
	stacktest.WaitBlockedIn(t, "select", "follower.(*applier).run", nil)
	if n := f.Stats().ApplyErrors; n != 0 {
		t.Errorf("%d apply errors while entries 3..6 waited for their fsync: the applier went past the durable head", n)
	}
	if c := f.Status().Commit; c != 2 {
		t.Errorf("commit %d while nothing after 2 is durable", c)
	}
	close(held.gate)
	for range 4 {
		a.ack(t)
	}
	waitApplied(t, f, 6)
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	if n := f.Stats().ApplyErrors; n != 0 {
		t.Errorf("%d apply errors", n)
	}
}

// TestCloseAfterAFailedCloseIsANoOp: SPEC §1 "Closed: ... Close again is a
// no-op", §2 "Every operation on a Closed follower returns ErrClosed
// (Close returns nil)", §2.7 "Idempotent": a Close whose closing of the
// store failed reports it once; a second Close returns nil, and Delete
// returns ErrClosed.
func TestCloseAfterAFailedCloseIsANoOp(t *testing.T) {
	f, _ := openWithStoreToFail(t)
	if err := f.Close(); !errors.Is(err, errInjected) {
		t.Fatalf("first Close: %v, want the store's closing failure (else the test tests nothing)", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v, want nil (a no-op)", err)
	}
	if err := f.Delete(4); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close: %v, want ErrClosed", err)
	}
}

// TestCloseEndsAWaitingWaitApplied: a WaitApplied waiting for an entry
// not yet applied returns ErrClosed when the follower closes, as the
// follower's closing is one of the ends it waits for.
func TestCloseEndsAWaitingWaitApplied(t *testing.T) {
	f, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	// The deadline only keeps a regression from hanging the suite.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		res <- f.WaitApplied(ctx, 0)
	}()
	stacktest.WaitBlockedIn(t, "select", "follower.(*applier).wait", done)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := within(t, res); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitApplied(0) when the follower closed: %v, want ErrClosed", err)
	}
}

// TestCloseLeavesNoFileOpen: once Close returns, the process holds no file
// of the follower open, also not the log segment the applier was reading
// committed entries from.
func TestCloseLeavesNoFileOpen(t *testing.T) {
	fdtest.Watch(t)
	dir := t.TempDir()
	f, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	confFill(t, f, 1, 0, 5, 5)
	waitApplied(t, f, 5)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if open := fdtest.OpenUnder(t, dir); len(open) > 0 {
		t.Errorf("after Close the process still holds open: %q", open)
	}
}
