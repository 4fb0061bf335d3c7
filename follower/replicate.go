package follower

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/wal"
)

// errFinished is the cause a stream ends with when the leader half-closed
// it and every entry it delivered was made durable and acknowledged.
var errFinished = errors.New("follower: stream finished")

type ackMode uint8

const (
	undecided ackMode = iota
	perEntry
	cumulative
)

// replication is one attached replication stream: the log synchronizer.
// Its receive loop validates and appends entries without the lifecycle
// lock; its sync loop makes them durable with coalesced fsyncs and is the
// only sender of acks.
type replication struct {
	f    *Follower
	s    ReplicationStream
	term logpos.Term // the term the stream was attached in
	// leaderTerm is the term the stream's leader said it leads, or
	// NoTerm when it did not say: the stream attaches only in that term.
	leaderTerm logpos.Term
	// lastTerm is the term of the entry at the head (of the log's last
	// entry, or of the snapshot point): a new entry's term is not below
	// it. Only start and the receive loop use it.
	lastTerm logpos.Term
	// log is the follower's log when the stream attached: it is not
	// replaced while a stream is attached, and a sync loop that outlives
	// Replicate must not read the field a repair may be writing.
	log *wal.Log

	ctx    context.Context // done when the stream must end; its cause says why
	cancel context.CancelCauseFunc
	// stopped is closed when a control operation ended the stream: the
	// control operation detaches it and waits for its goroutines.
	stopped  chan struct{}
	stopOnce sync.Once
	recvDone chan struct{}
	syncDone chan struct{}
	// returned is closed when Replicate returns: a control operation
	// that ends the stream returns after its handler (docs/spec.md §2.1).
	returned chan struct{}
	// handling is held by the receive loop from the moment an Append
	// arrives until it is handled; the loop checks under it that the
	// stream has not ended. Replicate takes it once the stream ended, so
	// that nothing of the stream is written after it returns, even while
	// the receive loop, blocked in Recv, has not exited yet.
	handling sync.Mutex
	// wake tells the sync loop there is something to sync or acknowledge.
	wake chan struct{}

	mu struct {
		sync.Mutex
		mode ackMode
		// pending are the entries received and not yet acknowledged, in
		// the order received (per-entry mode acknowledges each; cumulative
		// mode uses them for the ack latency).
		pending []pendingAck
		// dupUpTo is the highest duplicate received in cumulative mode and
		// not yet answered, NoOffset if none.
		dupUpTo logpos.Offset
		// inputDone: the leader half-closed the stream, or sent an
		// Append the stream fails on (failWith).
		inputDone bool
		// failWith is the error of the Append the stream fails on once
		// the entries it accepted before are durable and acknowledged.
		failWith error
	}

	// Owned by the sync loop.
	lastAck logpos.Offset
	sending []pendingAck
	ack     replicationpb.Ack
}

// sampling: one entry in sampling has its append and ack latencies
// measured (and every entry that arrives when none is waiting for an ack),
// so that the hot path rarely reads the clock.
const sampling = 16

// pendingAck is an entry waiting to be acknowledged: its offset and when
// it was received.
type pendingAck struct {
	offset logpos.Offset
	at     time.Time
}

func newReplication(f *Follower, s ReplicationStream, leaderTerm logpos.Term) *replication {
	ctx, cancel := context.WithCancelCause(s.Context())
	r := &replication{
		f: f, s: s, ctx: ctx, cancel: cancel, leaderTerm: leaderTerm,
		stopped:  make(chan struct{}),
		recvDone: make(chan struct{}),
		syncDone: make(chan struct{}),
		returned: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		lastAck:  logpos.NoOffset,
	}
	r.mu.dupUpTo = logpos.NoOffset
	return r
}

// Replicate serves one replication stream until the leader half-closes it
// (every entry received is then durable and acknowledged, and Replicate
// returns nil), the stream fails (its error; an Append it fails on, with
// a wrong term, a gap or a bad entry, ends it once the entries received
// before it are durable and acknowledged), or NewTerm, Delete or Close
// ends it (an error matching ErrStreamEnded; when Close or Delete ended
// it, ErrClosed as well, as for InstallSnapshot). See docs/spec.md §2.3.
func (f *Follower) Replicate(s ReplicationStream) error {
	return f.ReplicateAt(s, logpos.NoTerm)
}

// ReplicateAt is Replicate for a stream whose leader says which term it
// leads (Oxia's leaders send it in the stream's metadata): the stream
// attaches only if that is the follower's term, and fails to attach
// with ErrInvalidTerm otherwise, changing nothing. A leader deposed by
// a NewTerm, opening a stream again before it learns of it, is so
// refused at once; without its term, its stream would attach in the new
// term and keep the shard from the new leader's Truncate (ErrConflict)
// until its first Append failed. leaderTerm NoTerm is Replicate.
func (f *Follower) ReplicateAt(s ReplicationStream, leaderTerm logpos.Term) error {
	r := newReplication(f, s, leaderTerm)
	defer close(r.returned)
	defer r.cancel(nil)
	if err := r.attach(); err != nil {
		return err
	}
	<-r.ctx.Done()
	return r.detach()
}

// errAttachPanicked ends a stream whose attach panicked.
var errAttachPanicked = errors.New("follower: attaching the stream panicked")

// attach attaches the stream. Should that panic (an observer's bug, say)
// once the stream is attached and its loops run, the stream is ended and
// detached before the panic goes on: no handler serves it any more, and
// it must not keep the next stream out.
func (r *replication) attach() error {
	defer func() {
		if p := recover(); p != nil {
			r.cancel(errAttachPanicked)
			_ = r.detach()
			panic(p)
		}
	}()
	return r.f.underControl(func() error {
		return explained(r.f.m.AttachStream(r, r.leaderTerm), func(guard string) string {
			if guard == "LeaderTermCurrent" {
				return fmt.Sprintf("the stream's leader term %d is not the current term %d", r.leaderTerm, r.f.term.Load())
			}
			return ""
		})
	})
}

// detach waits, once the stream has ended, until its receive loop writes
// nothing more, detaches it, and returns why it ended (nil: the leader
// finished it).
func (r *replication) detach() error {
	f := r.f
	if f.streamEnded != nil {
		f.streamEnded(r)
	}
	// The receive loop may still be blocked in Recv (a server stream's
	// returns only once this handler has returned), but once it has left
	// the Append it was handling, it writes nothing more. The sync loop
	// is not waited for: it may be blocked in Send by a leader that stopped
	// reading acks, which only the end of this handler unblocks. It sends
	// nothing once the stream ended, and the control operation that ends
	// a stream waits for both loops.
	r.handling.Lock()
	//lint:ignore SA2001 a barrier: the receive loop left its Append
	r.handling.Unlock()
	// Detach, unless a control operation is doing it (it holds the lock
	// and waits for the receive loop, which waits for this to return).
	cause := context.Cause(r.ctx)
	r.noteFailure(cause)
	select {
	case f.lock <- struct{}{}:
		if f.stream == r {
			f.stream = nil
			f.stats.streamAttached.Store(false)
			if f.logFailed.Load() {
				// What the failed log did not sync is not the head: the
				// repair cuts it.
				f.head.Store(int64(f.headOf(r.log)))
			}
		}
		f.release()
	case <-r.stopped:
	}
	if errors.Is(cause, errFinished) {
		return nil
	}
	if !errors.Is(cause, ErrStreamEnded) {
		f.streamFailed(cause)
	}
	return cause
}

// start runs the receive and sync loops. The caller holds the lifecycle
// lock.
func (r *replication) start() {
	r.term = logpos.Term(r.f.term.Load())
	r.log = r.f.log
	commit := r.f.store().Commit()
	r.lastTerm = commit.Term
	if last := r.log.LastAppended(); !last.IsNone() && last.Offset >= commit.Offset {
		r.lastTerm = last.Term
	}
	r.f.goroutines.Add(2)
	go func() {
		defer r.f.goroutines.Done()
		defer close(r.recvDone)
		r.receive()
	}()
	go func() {
		defer r.f.goroutines.Done()
		defer close(r.syncDone)
		r.sync()
	}()
}

// end stops the stream for a control operation and waits for its
// goroutines and for its handler (Replicate) to return: the receive loop
// may leave without it, having read an Append the transport held once the
// stream ended. The caller holds the lifecycle lock; the handler, once
// stopped is closed, needs it no more.
func (r *replication) end(cause error) {
	r.stopOnce.Do(func() { close(r.stopped) })
	r.cancel(cause)
	<-r.syncDone
	<-r.recvDone
	<-r.returned
}

// fail ends the stream with err, unless it has ended already. A failure
// of the log or the store is noted in any case: it outlives the stream.
func (r *replication) fail(err error) {
	r.noteFailure(err)
	r.cancel(err)
}

// noteFailure notes a failure of the log or the store, except one of a
// log the follower has reopened since (after another of its users noted
// the failure, once this stream had ended): the follower's log then is a
// new one, which has not failed.
func (r *replication) noteFailure(err error) {
	f := r.f
	f.logSwap.Lock()
	defer f.logSwap.Unlock()
	if f.log != r.log && errors.Is(err, wal.ErrFailed) {
		return
	}
	f.noteLogError(err)
}

func (r *replication) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// receive is the receive loop: the per-entry hot path.
func (r *replication) receive() {
	for r.step(r.s.Recv()) {
	}
}

// step handles what one Recv returned, and reports whether to receive
// again. Nothing is written once the stream ended.
func (r *replication) step(a *replicationpb.Append, err error) bool {
	r.handling.Lock()
	defer r.handling.Unlock()
	switch {
	case r.ctx.Err() != nil:
		return false
	case errors.Is(err, io.EOF):
		r.mu.Lock()
		r.mu.inputDone = true
		r.mu.Unlock()
		r.kick()
		return false
	case err != nil:
		r.fail(fmt.Errorf("follower: receiving: %w", err))
		return false
	}
	if err := r.handle(a); err != nil {
		if !refusedAppend(err) {
			r.fail(err)
			return false
		}
		// The leader's mistake, not the log's: what the stream accepted
		// before is made durable and acknowledged first, as when it
		// half-closes, and the stream then fails with err.
		r.mu.Lock()
		r.mu.inputDone, r.mu.failWith = true, err
		r.mu.Unlock()
		r.kick()
		return false
	}
	return true
}

// refusedAppend reports whether err, returned by handle, refuses the
// Append itself (its term, its offset, its content), the log being sound.
func refusedAppend(err error) bool {
	return !errors.Is(err, ErrUnavailable) && (errors.Is(err, ErrInvalidTerm) || errors.Is(err, ErrGap) || errors.Is(err, ErrInvalidArgument))
}

// handle processes one Append. It allocates nothing, and takes no
// lifecycle lock except for the first accepted entry of a Fenced follower.
func (r *replication) handle(a *replicationpb.Append) error {
	f := r.f
	if logpos.Term(a.Term) != r.term {
		return fmt.Errorf("%w: an append of term %d on a stream of term %d", ErrInvalidTerm, a.Term, r.term)
	}
	if r.mu.mode == undecided {
		r.mu.Lock()
		r.mu.mode = perEntry
		if a.CumulativeAcksSupported {
			r.mu.mode = cumulative
		}
		r.mu.Unlock()
	}
	if a.Entry == nil {
		if f.advertise(a.CommitOffset) {
			f.applier.kick()
		}
		return nil
	}
	off := logpos.Offset(a.Entry.Offset)
	head := logpos.Offset(f.head.Load())
	if off > head && off-1 != head { // not head+1, which overflows at the last offset
		if f.logFailed.Load() {
			// The log failed, and what its failed fsync covered was cut
			// from the head: by the sync loop of a stream that ended
			// while it ran, under this one. The log's failure, not the
			// leader's gap. (The head is lowered after the failure is
			// noted: whoever sees the lowered head sees the failure.)
			return fmt.Errorf("%w: the log failed (its head cut back to %d) before entry %d", ErrUnavailable, head, off)
		}
		return fmt.Errorf("%w: entry %d after head %d", ErrGap, off, head)
	}
	if off < 0 || off == math.MaxInt64 && off > head {
		// The last offset cannot be appended (the one after it would
		// overflow: the log refuses it); a snapshot may cover it.
		return fmt.Errorf("%w: entry offset %d", ErrInvalidArgument, off)
	}
	duplicate := off <= head
	if et := logpos.Term(a.Entry.Term); !duplicate && (et < max(r.lastTerm, 0) || et > r.term) {
		// The store would refuse to apply it, for ever.
		return fmt.Errorf("%w: entry %d of term %d: want a term from %d (the entry before it) to %d (the stream's)",
			ErrInvalidArgument, off, et, max(r.lastTerm, 0), r.term)
	}
	// A Fenced follower moves to Follower with the first entry of the
	// stream that passes the checks, under the lifecycle lock, taken
	// before anything is written: an entry that cannot move it (the
	// stream ended while it waited for the lock, the log refused it)
	// leaves the follower as it was. The lock is released (publishing
	// the new state) before the entry's offset becomes the visible head:
	// whoever sees the new head sees the new state.
	var appendErr, moved error
	if f.m.State() == StateFenced {
		if !r.lockFirstEntry() {
			return context.Cause(r.ctx)
		}
		appendErr, moved = r.firstEntry(a, off, duplicate)
	} else {
		appendErr = r.appendNew(a, off, duplicate)
	}
	if appendErr != nil {
		return appendErr
	}
	if !duplicate {
		if f.entryAppended != nil {
			f.entryAppended(off)
		}
		f.head.Store(int64(off)) // the log holds it, whatever became of the move
		r.lastTerm = logpos.Term(a.Entry.Term)
	}
	if moved != nil {
		return moved
	}
	// The applier is woken by the sync loop once this entry's round is
	// acknowledged: applying beside the fsync would only delay the ack.
	f.advertise(a.CommitOffset)
	r.mu.Lock()
	// Reading the clock costs about as much as the rest of this path, so
	// only the first entry of a burst and one in sampling are timed.
	var received time.Time
	if len(r.mu.pending) == 0 || off%sampling == 0 {
		received = time.Now()
	}
	r.mu.pending = append(r.mu.pending, pendingAck{off, received})
	if r.mu.mode == cumulative && duplicate {
		r.mu.dupUpTo = max(r.mu.dupUpTo, off)
	}
	r.mu.Unlock()
	r.kick()
	return nil
}

// errEntryPanicked ends a stream whose first entry's transition panicked.
var errEntryPanicked = errors.New("follower: moving to Follower with the first entry panicked")

// firstEntry appends the first entry of a Fenced follower and moves it to
// Follower, under the lifecycle lock, which it releases. The move runs
// the lifecycle's observer on this loop's goroutine, where nothing else
// would recover a panic (an observer's bug) and the process would die:
// one is the stream's error, the move's if the entry was appended (the
// log holds it), the append's if not.
func (r *replication) firstEntry(a *replicationpb.Append, off logpos.Offset, duplicate bool) (appendErr, moved error) {
	defer r.f.release()
	appended := false
	defer func() {
		if p := recover(); p != nil {
			err := fmt.Errorf("%w: %v", errEntryPanicked, p)
			if appended {
				moved = err
			} else {
				appendErr = err
			}
		}
	}()
	if err := r.appendNew(a, off, duplicate); err != nil {
		return err, nil
	}
	appended = true
	return nil, r.f.m.FirstEntry(r)
}

// appendNew appends the entry of a, at offset off, unless it is a
// duplicate, and counts it.
func (r *replication) appendNew(a *replicationpb.Append, off logpos.Offset, duplicate bool) error {
	if duplicate {
		return nil
	}
	f := r.f
	e := logpos.Entry{Term: logpos.Term(a.Entry.Term), Offset: off, Value: a.Entry.Value, Timestamp: a.Entry.Timestamp}
	// One stream appends at a time: the count is this loop's own.
	sampled := (f.stats.entriesAppended.Load()+1)%sampling == 0
	var start time.Time
	if sampled {
		start = time.Now()
	}
	if err := r.append(e, a.PreviousEntryCrc); err != nil {
		return err
	}
	if sampled {
		f.stats.appendLatency.observe(time.Since(start))
	}
	f.stats.entriesAppended.Add(1)
	f.stats.bytesAppended.Add(uint64(len(e.Value)))
	return nil
}

// append writes an entry to the log without syncing it. The first entry
// after a snapshot seeds the log's CRC chain with the leader's.
func (r *replication) append(e logpos.Entry, previousCRC *uint32) error {
	if len(e.Value) > wal.MaxValueSize {
		// The leader's mistake, not the log's: refused before anything.
		return fmt.Errorf("%w: entry %d holds %d bytes, more than the log takes (%d)", ErrInvalidArgument, e.Offset, len(e.Value), wal.MaxValueSize)
	}
	log := r.log
	seeded, before := false, uint32(0)
	if previousCRC != nil && log.LastAppended().IsNone() {
		before = log.LastCRC()
		if err := log.SeedChain(*previousCRC); err != nil {
			return fmt.Errorf("%w: seeding the CRC chain: %w", ErrUnavailable, err)
		}
		seeded = true
	}
	if err := log.AppendAsync(e); err != nil {
		if seeded {
			// The Append failed: its CRC is not the chain's seed. (If
			// the log failed, the reopening that repairs it reads the
			// seed from the disk.)
			_ = log.SeedChain(before)
		}
		return fmt.Errorf("%w: appending entry %d: %w", ErrUnavailable, e.Offset, err)
	}
	return nil
}

// lockFirstEntry takes the lifecycle lock for the first entry of this
// stream on a Fenced follower. It gives up, reporting false, when the
// stream ends first (NewTerm, Delete or Close hold the lifecycle lock
// until the stream's goroutines exit), or ended as it took it.
func (r *replication) lockFirstEntry() bool {
	if !r.f.acquireUnless(r.ctx.Done()) {
		return false
	}
	if r.ctx.Err() != nil {
		r.f.release()
		return false
	}
	return true
}

// sync is the sync loop: each round makes everything appended so far
// durable with one fsync, then sends the acks that became due.
func (r *replication) sync() {
	f := r.f
	for {
		select {
		case <-r.wake:
		case <-r.ctx.Done():
			return
		}
		if r.ctx.Err() != nil {
			return // both were ready
		}
		before := r.log.LastDurable().Offset
		start := time.Now()
		durable, err := r.log.Sync(r.ctx)
		if durable > before || errors.Is(err, wal.ErrFailed) {
			// A round that found everything durable already (the wake
			// of entries the previous round covered, a half-close), or
			// that ended waiting for another's fsync, did no fsync of
			// its own, and is not counted as one.
			f.stats.syncs.Add(1)
			f.stats.syncLatency.observe(time.Since(start))
		}
		if err != nil {
			// The stream ends before the head is lowered: an Append the
			// receive loop takes meanwhile must not find a gap and end
			// it with ErrGap. Noted even when the stream ended
			// meanwhile: the failure belongs to the log, which the next
			// control operation reopens.
			r.fail(fmt.Errorf("%w: syncing the log: %w", ErrUnavailable, err))
			if errors.Is(err, wal.ErrFailed) {
				// What the failed fsync covered is not the head, also when
				// the stream was detached while it ran (detach lowers the
				// head only for a failure it knows of); unless the log was
				// reopened meanwhile (its failure noted by another of its
				// users), and the head is the reopened log's.
				f.logSwap.Lock()
				if f.log == r.log {
					f.lowerHead(f.headOf(r.log))
				}
				f.logSwap.Unlock()
			}
			return
		}
		if r.ctx.Err() != nil {
			f.applier.kick()
			return // ended: no more acks (Replicate may have returned)
		}
		// An entry the receive loop appended but has not yet made the
		// head may be durable already: it is acknowledged once it is the
		// head (the receive loop wakes this loop then), so that no ack
		// runs ahead of the head Status reports.
		ackable := min(max(durable, logpos.Offset(f.base.Load())), logpos.Offset(f.head.Load()))
		done, err := r.acknowledge(ackable)
		f.applier.kick() // after the acks: they should not wait for it
		if err != nil {
			r.fail(fmt.Errorf("follower: sending an ack: %w", err))
			return
		}
		if done {
			r.mu.Lock()
			cause := r.mu.failWith
			r.mu.Unlock()
			if cause == nil {
				cause = errFinished
			}
			r.cancel(cause)
			return
		}
	}
}

// acknowledge sends the acks that durable makes due. It reports whether
// the stream is finished: half-closed (or failing on an Append) with
// everything acknowledged.
func (r *replication) acknowledge(durable logpos.Offset) (bool, error) {
	r.mu.Lock()
	mode := r.mu.mode
	// The entries now durable leave the queue, in the order received.
	n := 0
	for n < len(r.mu.pending) && r.mu.pending[n].offset <= durable {
		n++
	}
	r.sending = r.sending[:0]
	answered := false
	if mode == perEntry {
		r.sending = append(r.sending, r.mu.pending[:n]...)
	} else {
		// One ack of the durable head when it covers entries this stream
		// delivered, timed by the newest of them. A duplicate is answered
		// even if the head did not move. A stream that delivered nothing
		// (commit advertisements only) gets no ack.
		answered = r.mu.dupUpTo != logpos.NoOffset && r.mu.dupUpTo <= durable
		if answered {
			r.mu.dupUpTo = logpos.NoOffset
		}
		if (n > 0 && durable > r.lastAck) || (answered && durable >= 0) {
			at := time.Time{}
			for i := n - 1; i >= 0 && at.IsZero(); i-- {
				at = r.mu.pending[i].at // the newest timed entry covered
			}
			r.sending = append(r.sending, pendingAck{durable, at})
		}
	}
	rest := copy(r.mu.pending, r.mu.pending[n:])
	r.mu.pending = r.mu.pending[:rest]
	// Entries received but not yet durable need another round.
	waiting := len(r.mu.pending) > 0 || r.mu.dupUpTo != logpos.NoOffset
	done := r.mu.inputDone && !waiting
	r.mu.Unlock()

	for _, p := range r.sending {
		if err := r.ctx.Err(); err != nil {
			return false, err // ended: Replicate may have returned
		}
		if invariants {
			// Cumulative acks never go back, and repeat a value only to
			// answer a duplicate.
			assertf(p.offset <= durable && (mode == perEntry || p.offset > r.lastAck || answered && p.offset == r.lastAck),
				"ack %d with durable head %d after ack %d", p.offset, durable, r.lastAck)
		}
		r.ack.Offset = int64(p.offset)
		if err := r.s.Send(&r.ack); err != nil {
			return false, err
		}
		r.f.stats.acksSent.Add(1)
		if !p.at.IsZero() {
			r.f.stats.ackLatency.observe(time.Since(p.at))
		}
		r.lastAck = max(r.lastAck, p.offset)
	}
	if waiting {
		r.kick() // entries that arrived during the fsync need another round
	}
	return done, nil
}
