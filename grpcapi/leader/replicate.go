package leader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"

	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

// MaxWindow bounds Run.Window: each entry in flight costs the leader
// memory.
const MaxWindow = 1 << 20

// ErrProtocol is returned when a follower's acks break the protocol.
var ErrProtocol = errors.New("leader: protocol violation")

// Run describes one replication stream: Count entries from offset First,
// with at most Window of them sent and not yet acknowledged.
type Run struct {
	Shard Shard
	// Term is the term of every Append. The stream names it in its "term"
	// metadata, as Oxia's leaders do, so that a follower in another term
	// refuses the stream when it attaches (a negative term is not named:
	// the follower refuses the first Append instead).
	Term logpos.Term
	// First is the offset of the first entry sent; Count how many, all
	// below the largest offset (math.MaxInt64). Count zero sends only a
	// commit advertisement.
	First logpos.Offset
	Count int64
	// Window bounds the entries in flight (at most MaxWindow). Default: 1.
	Window int
	// Cumulative asks for cumulative acks (one ack per follower sync
	// round) instead of one ack per entry.
	Cumulative bool
	// Resent is how many of the run's first entries the follower holds
	// already (a run resuming a broken stream from an older ack): in
	// cumulative mode the follower may answer each of these duplicates
	// with a repeat of its last ack, which covers nothing new, or with its
	// durable head, which may be beyond the entries sent so far. Repeats
	// are a protocol violation beyond that, and so is an ack beyond both
	// the entries sent and those the follower holds (First+Resent-1;
	// when the whole run is re-sent, Resent == Count, the follower may
	// hold more).
	Resent int64
	// Commit is the commit offset known before the run. Every Append
	// advertises max(Commit, last acked offset): with one follower, what
	// it acked is committed.
	Commit logpos.Offset
	// Value returns the value of the entry at offset, appended to buf[:0];
	// it is used until the next call. Required when Count > 0.
	Value func(offset logpos.Offset, buf []byte) []byte
	// OnAck, when set, is called with each ack's offset, from the
	// goroutine that receives them, after the ack was checked.
	OnAck func(logpos.Offset)
	// Latency, when set, records each entry's ack latency: from just
	// before its Append was sent to the ack that covered it.
	Latency *Histogram
	// Acked, when set, counts the entries acknowledged so far (for a
	// progress display).
	Acked *atomic.Int64
}

// Result is what a run did.
type Result struct {
	Sent    int64         // entries sent
	Acked   int64         // entries acknowledged
	LastAck logpos.Offset // the highest offset acknowledged, NoOffset if none
	Bytes   int64         // value bytes sent
	Elapsed time.Duration // from the first send to the last ack
	// PriorAcks counts cumulative acks below First received before any
	// entry of the run was acknowledged: a follower may announce the
	// durable head it had when the stream attached (this project's does
	// not). They cover nothing of the run; like any cumulative ack they
	// must not decrease, and are otherwise ignored.
	PriorAcks int64
}

// Replicate runs one replication stream to the end: it sends the
// entries, checks every ack, then advertises the last acked offset as
// committed, half-closes the stream and waits for the follower to end it.
// A follower that ends the stream normally once it has acknowledged every
// entry, before the leader advertised or half-closed, ends the run with
// success too. On error the result says how far the run got; the error
// is the follower's gRPC status when it ended the stream (match it with
// status.Code or grpcapi.Reason), or ErrProtocol. When ctx ended the run,
// the error also wraps ctx's error and its cause, if one was given, so
// errors.Is(err, context.Canceled) tells the caller's own cancellation
// from a follower ending the stream Canceled (a NewTerm), which keeps the
// same status code.
//
// A run may send entries the follower already has (say, resuming after
// a broken stream from the last offset acknowledged; Run.Resent says how
// many): it acks them as duplicates, and in cumulative mode with its
// durable head, which may be beyond the last entry sent. Such an ack
// covers every entry sent so far.
func (c *Conn) Replicate(ctx context.Context, run Run) (Result, error) {
	switch {
	case run.First < 0:
		return Result{LastAck: logpos.NoOffset}, fmt.Errorf("leader: Run.First is %d, want an offset ≥ 0", run.First)
	case run.Count < 0:
		return Result{LastAck: logpos.NoOffset}, fmt.Errorf("leader: Run.Count is %d, want ≥ 0", run.Count)
	case int64(run.First) > math.MaxInt64-run.Count:
		// A follower takes no entry at the largest offset either.
		return Result{LastAck: logpos.NoOffset}, fmt.Errorf("leader: Run.First %d and Count %d reach the largest offset", run.First, run.Count)
	case run.Window > MaxWindow:
		return Result{LastAck: logpos.NoOffset}, fmt.Errorf("leader: Run.Window is %d, want at most %d", run.Window, MaxWindow)
	case run.Resent < 0 || run.Resent > run.Count:
		return Result{LastAck: logpos.NoOffset}, fmt.Errorf("leader: Run.Resent is %d, want 0 to Count (%d)", run.Resent, run.Count)
	case run.Count > 0 && run.Value == nil:
		return Result{LastAck: logpos.NoOffset}, errors.New("leader: Run.Value is required")
	}
	window := int64(max(run.Window, 1))
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Replication.Replicate(replicateContext(ctx, run.Shard, run.Term))
	if err != nil {
		return Result{LastAck: logpos.NoOffset}, callerEnded(parent, err)
	}

	r := &runState{
		run:     run,
		window:  window,
		sentAt:  make([]atomic.Int64, window),
		credits: make(chan struct{}, window),
		allDone: make(chan struct{}),
		base:    time.Now(),
	}
	r.lastAck.Store(int64(logpos.NoOffset))
	r.sentUpTo.Store(int64(run.First) - 1)
	recvErr := make(chan error, 1)
	go func() {
		err := r.receive(stream)
		if err != nil {
			// An ack that breaks the protocol ends the stream here: a
			// send blocked by flow control must not wait for the follower.
			cancel()
		}
		recvErr <- err
	}()

	res := Result{LastAck: logpos.NoOffset}
	firstSent := int64(0) // when the first entry was sent, ns since r.base
	finish := func(err error) (Result, error) {
		res.Acked = r.acked.Load()
		res.PriorAcks = r.priorAcks.Load()
		res.LastAck = logpos.Offset(r.lastAck.Load())
		if res.Acked > 0 {
			res.Elapsed = time.Duration(r.lastAckAt.Load() - firstSent)
		}
		return res, callerEnded(parent, err)
	}

	app := &replicationpb.Append{
		Term:                    int64(run.Term),
		Entry:                   &replicationpb.LogEntry{Term: int64(run.Term)},
		CumulativeAcksSupported: run.Cumulative,
	}
	var buf []byte
	sendErr := error(nil)
	for i := int64(0); i < run.Count; i++ {
		select {
		case r.credits <- struct{}{}:
		case err := <-recvErr:
			return finish(r.ended(err))
		}
		off := run.First + logpos.Offset(i)
		buf = run.Value(off, buf[:0])
		app.Entry.Offset = int64(off)
		app.Entry.Value = buf
		app.Entry.Timestamp = uint64(time.Now().UnixMilli())
		app.CommitOffset = int64(max(run.Commit, logpos.Offset(r.lastAck.Load())))
		sentAt := int64(time.Since(r.base))
		if i == 0 {
			firstSent = sentAt
		}
		r.sentAt[int64(off)%window].Store(sentAt)
		r.sentUpTo.Store(int64(off))
		if sendErr = stream.Send(app); sendErr != nil {
			break // the stream failed: Recv tells why
		}
		res.Sent++
		res.Bytes += int64(len(buf))
	}
	if sendErr == nil && run.Count > 0 {
		select {
		case <-r.allDone:
		case err := <-recvErr:
			return finish(r.ended(err))
		}
	}
	if sendErr == nil {
		// Advertise what is committed now, then half-close: the follower
		// ends the stream once everything it received is acknowledged.
		sendErr = stream.Send(&replicationpb.Append{
			Term:                    int64(run.Term),
			CommitOffset:            int64(max(run.Commit, logpos.Offset(r.lastAck.Load()))),
			CumulativeAcksSupported: run.Cumulative,
		})
	}
	if sendErr == nil {
		sendErr = stream.CloseSend()
	}
	err = <-recvErr
	if err == nil && sendErr != nil && !errors.Is(sendErr, io.EOF) {
		err = sendErr
	}
	if err == nil && r.acked.Load() != run.Count {
		err = fmt.Errorf("%w: the follower ended the stream with %d of %d entries acknowledged", ErrProtocol, r.acked.Load(), run.Count)
	}
	return finish(err)
}

// callerEnded returns err, which ended a run, wrapping the error of the
// caller's ctx, and the cause it gave if any, when ctx has ended: the
// caller's own end of the run is told apart from a follower's (a NewTerm
// ends the stream Canceled too) with errors.Is(err, context.Canceled),
// status.Code unchanged.
func callerEnded(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil || errors.Is(err, ctx.Err()) {
		return err
	}
	if cause := context.Cause(ctx); cause != ctx.Err() {
		return fmt.Errorf("%w (%w): %w", ctx.Err(), cause, err)
	}
	return fmt.Errorf("%w: %w", ctx.Err(), err)
}

type runState struct {
	run     Run
	window  int64
	sentAt  []atomic.Int64 // ns since base, by offset mod window
	credits chan struct{}  // one per entry in flight
	allDone chan struct{}  // closed when every entry is acknowledged
	base    time.Time

	sentUpTo  atomic.Int64 // the highest offset sent (set before sending)
	lastAck   atomic.Int64 // the highest ack covering an entry of the run
	acked     atomic.Int64
	lastAckAt atomic.Int64 // ns since base
	priorAcks atomic.Int64
	repeats   int64 // repeated cumulative acks, answering duplicates (receiver only)
}

// ended explains why the stream ended before the run did: err from the
// receiver, nil when the follower ended the stream normally. A follower
// that acknowledged every entry first did what the run asked, whether
// its end or the last ack was seen first.
func (r *runState) ended(err error) error {
	if err == nil && r.acked.Load() == r.run.Count {
		return nil
	}
	if err == nil {
		return fmt.Errorf("%w: the follower ended the stream with %d of %d entries acknowledged", ErrProtocol, r.acked.Load(), r.run.Count)
	}
	return err
}

// receive reads and checks acks until the stream ends: nil when the
// follower ended it normally.
func (r *runState) receive(stream replicationgrpc.OxiaLogReplication_ReplicateClient) error {
	run := r.run
	next := run.First // the next offset to be acknowledged
	end := run.First + logpos.Offset(run.Count)
	prior := logpos.NoOffset // the last ack below First, before any entry's
	for {
		ack, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		o := logpos.Offset(ack.GetOffset())
		// upTo is the last entry the ack covers; every entry up to it
		// was sent, its time stored, before covers read how far the
		// sender got, so before now: no latency is negative.
		upTo, err := r.covers(o, next, prior)
		now := time.Since(r.base)
		if err != nil {
			return err
		}
		if upTo < next {
			if next == run.First {
				r.priorAcks.Add(1)
				prior = o
			}
			continue
		}
		// The last ack is stored before the window frees room: the
		// entries sent in that room advertise it as committed.
		r.lastAck.Store(int64(o))
		r.lastAckAt.Store(int64(now))
		n := int64(upTo - next + 1)
		for off := next; off <= upTo; off++ {
			if run.Latency != nil {
				run.Latency.Record(now - time.Duration(r.sentAt[int64(off)%r.window].Load()))
			}
			<-r.credits
		}
		next = upTo + 1
		acked := r.acked.Add(n)
		if run.Acked != nil {
			run.Acked.Store(acked)
		}
		if run.OnAck != nil {
			run.OnAck(o)
		}
		if next == end {
			close(r.allDone)
		}
	}
}

// covers checks ack o, received when next is the next offset to be
// acknowledged and prior the last ack below First (NoOffset if none), and
// returns the last entry it covers: below next for an ack before the run
// or one that covers nothing new.
//
// Per entry, o must be next, and sent. Cumulative acks do not decrease,
// and each covers an entry sent since the previous one: a follower acks
// its durable head once per sync round, repeating it only to answer a
// duplicate. The durable head may be beyond the entries sent when the run
// re-sends entries the follower has; the ack then covers all of them. A
// repeat of the last ack covers nothing new: it answers one of the
// Run.Resent duplicates sent so far, or breaks the protocol.
func (r *runState) covers(o, next, prior logpos.Offset) (logpos.Offset, error) {
	sent := logpos.Offset(r.sentUpTo.Load())
	if !r.run.Cumulative {
		switch {
		case o > sent:
			return 0, fmt.Errorf("%w: ack %d for an entry not sent (sent up to %d)", ErrProtocol, o, sent)
		case o != next:
			return 0, fmt.Errorf("%w: per-entry ack %d, expected %d", ErrProtocol, o, next)
		}
		return o, nil
	}
	last := prior // the previous ack
	if next > r.run.First {
		last = logpos.Offset(r.lastAck.Load())
	}
	upTo := min(o, sent)
	held := logpos.Offset(math.MaxInt64) // the whole run re-sent: the follower may hold more
	if r.run.Resent < r.run.Count {
		held = max(sent, r.run.First+logpos.Offset(r.run.Resent)-1)
	}
	switch {
	case o > held:
		return 0, fmt.Errorf("%w: cumulative ack %d for an entry neither sent (sent up to %d) nor held already", ErrProtocol, o, sent)
	case o < last:
		return 0, fmt.Errorf("%w: cumulative ack %d after ack %d", ErrProtocol, o, last)
	case upTo >= next:
		return upTo, nil
	case o < r.run.First && next == r.run.First && o > last:
		return upTo, nil // an ack before the run
	case next > r.run.First && o == last && r.repeats < min(r.run.Resent, int64(sent-r.run.First)+1):
		r.repeats++
		return next - 1, nil // a repeat answering a duplicate
	}
	return 0, fmt.Errorf("%w: cumulative ack %d covers no entry sent since the previous ack (sent up to %d)", ErrProtocol, o, sent)
}
