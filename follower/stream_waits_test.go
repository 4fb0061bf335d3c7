package follower

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/stacktest"
)

// A cumulative stream's duplicate of exactly the durable head (nothing
// new received since) is answered with a repeat of that value (SPEC
// §2.3: "a value is repeated only to answer a duplicate"), and the
// stream then half-closes cleanly.
func TestCumulativeDuplicateOfTheDurableHeadAnswered(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	a := confAttach(t, h.f)
	for o := int64(0); o <= 2; o++ {
		a.send(t, cumul(entryAppend(1, o, -1, "k", "v")))
		if got := a.ack(t); got != o {
			t.Fatalf("ack %d, want %d", got, o)
		}
	}
	a.send(t, cumul(entryAppend(1, 2, -1, "k", "v"))) // the durable head, again
	if got := a.ack(t); got != 2 {
		t.Fatalf("answer to the duplicate of the durable head: ack %d, want 2", got)
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
}

// An entry of a negative term is refused also on a follower whose log and
// store are empty (nothing before it to compare its term with).
func TestStreamNegativeEntryTermOnAnEmptyFollower(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	a := confAttach(t, h.f)
	ap := entryAppend(1, 0, -1, "k", "v")
	ap.Entry.Term = -1
	a.send(t, ap)
	close(a.s.in) // taken once the entry was handled
	if err := a.end(t); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("an entry of term -1: %v, want ErrInvalidArgument", err)
	}
	if last := h.f.log.LastAppended(); !last.IsNone() {
		t.Fatalf("the log holds %v", last)
	}
}

// NewTerm returns only once the ended stream's sync loop has exited, even
// when that loop is in a Send the transport holds after the handler
// returned (SPEC §2.1: all of its goroutines have exited before NewTerm
// returns).
func TestNewTermWaitsForTheSyncLoopInSend(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	_, release, res := firstAckHeld(t, h) // the sync loop is sending the ack of entry 0
	r, fenced, fenceErr := fenceAttached(t, h, res)
	<-r.recvDone // the receive loop left once the call ended
	// The handler and the receive loop are gone: NewTerm can only be
	// waiting for the sync loop, still in its Send.
	stacktest.WaitBlockedIn(t, "chan receive", "follower.(*replication).end", fenced)
	release()
	<-fenced
	if *fenceErr != nil {
		t.Fatal(*fenceErr)
	}
	if !isClosed(r.syncDone) {
		t.Fatal("NewTerm returned with the sync loop running")
	}
}

// heldRecvStream is a fakeStream whose Recv, once the call has ended,
// waits for gate before it returns: a transport slow to notice.
type heldRecvStream struct {
	*fakeStream
	held     chan struct{}
	heldOnce sync.Once
	gate     chan struct{}
}

func (s *heldRecvStream) Recv() (*replicationpb.Append, error) {
	a, err := s.fakeStream.Recv()
	if err != nil && s.ctx.Err() != nil {
		s.heldOnce.Do(func() { close(s.held) })
		<-s.gate
	}
	return a, err
}

// NewTerm returns only once the ended stream's receive loop has exited,
// even when its Recv returns a moment after the handler did.
func TestNewTermWaitsForTheReceiveLoopInRecv(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s := &heldRecvStream{fakeStream: newFakeStream(), held: make(chan struct{}), gate: make(chan struct{})}
	release := sync.OnceFunc(func() { close(s.gate) })
	t.Cleanup(release) // before the harness closes the follower
	res := make(chan error, 1)
	go func() { err := h.f.Replicate(s); s.cancel(); res <- err }()
	s.in <- entryAppend(1, 0, -1, "k", "v")
	if o := within(t, s.acks); o != 0 {
		t.Fatalf("ack %d", o)
	}
	r, fenced, fenceErr := fenceAttached(t, h, res)
	<-s.held
	<-r.syncDone
	// The handler and the sync loop are gone: NewTerm can only be
	// waiting for the receive loop, still in its Recv.
	stacktest.WaitBlockedIn(t, "chan receive", "follower.(*replication).end", fenced)
	release()
	<-fenced
	if *fenceErr != nil {
		t.Fatal(*fenceErr)
	}
	if !isClosed(r.recvDone) {
		t.Fatal("NewTerm returned with the receive loop running")
	}
}

// A stream that ends because an append failed the log (its buffered
// entries could not be written), while its sync loop is busy elsewhere
// (in a Send), returns with the head cut back to what the log made
// durable: entries whose write failed are not the head Status reports.
func TestStreamEndedByAFailedAppendLowersTheHead(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s, release, res := firstAckHeld(t, h) // entry 0 is durable; its ack is held
	s.in <- entryAppend(1, 1, -1, "k", "v")
	s.in <- entryAppend(1, 2, -1, "k", "v")
	h.fs.fail("/wal/")
	// A value large enough that the log writes out what it buffered
	// (entries 1 and 2) before taking it: the write fails.
	s.in <- entryAppend(1, 3, -1, "k", strings.Repeat("x", 1<<20))
	if err := within(t, res); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the handler: %v, want ErrUnavailable", err)
	}
	if st := h.f.Status(); st.Head != 0 {
		t.Errorf("head %d once the stream on the failed log returned, want 0 (the last durable entry)", st.Head)
	}
	h.fs.heal()
	release()
	b := confAttach(t, h.f)
	b.send(t, entryAppend(1, 1, -1, "k", "v"))
	if got := b.ack(t); got != 1 {
		t.Fatalf("the next stream: ack %d, want 1", got)
	}
	if err := b.finish(t); err != nil {
		t.Fatal(err)
	}
}

// firstAckHeld starts a stream on h's follower, sends it entry 0 and
// returns once the sync loop is sending that entry's ack, a Send held
// until release is called (at the latest when the test ends, before the
// harness closes the follower). res gets what Replicate returns.
func firstAckHeld(t *testing.T, h *harness) (s *gatedAckStream, release func(), res <-chan error) {
	t.Helper()
	s = &gatedAckStream{fakeStream: newFakeStream(),
		entered: map[int32]chan struct{}{1: make(chan struct{})},
		gates:   map[int32]chan struct{}{1: make(chan struct{})}}
	release = sync.OnceFunc(func() { close(s.gates[1]) })
	t.Cleanup(release)
	done := make(chan error, 1)
	go func() { err := h.f.Replicate(s); s.cancel(); done <- err }()
	s.in <- entryAppend(1, 0, -1, "k", "v")
	<-s.entered[1]
	return s, release, done
}

// fenceAttached starts NewTerm(2) on h's follower, whose stream's
// handler sends its result to res, and returns once that handler
// returned (ended by NewTerm): the stream that was attached, and fenced,
// closed once NewTerm returned, with its error then in *fenceErr.
func fenceAttached(t *testing.T, h *harness, res <-chan error) (r *replication, fenced <-chan struct{}, fenceErr *error) {
	t.Helper()
	h.f.acquire()
	r = h.f.stream
	h.f.release()
	done := make(chan struct{})
	fenceErr = new(error)
	go func() { _, *fenceErr = h.f.NewTerm(2, TermOptions{}); close(done) }()
	if err := within(t, res); !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("the handler: %v", err)
	}
	return r, done, fenceErr
}
