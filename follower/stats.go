package follower

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/logpos"
)

// Stats are a follower's counters and latency distributions since it was
// opened, read without locks: what a metrics exporter publishes. Lifecycle
// transitions and refusals are seen through Config.Observer instead.
type Stats struct {
	EntriesAppended uint64 // entries written to the log by streams
	BytesAppended   uint64 // their values' bytes
	AcksSent        uint64
	Syncs           uint64 // fsyncs of the log by streams (rounds with entries to make durable)
	ApplyErrors     uint64 // failed attempts to apply an entry
	Applied         uint64 // entries applied to the store

	InstallsStarted   uint64
	InstallsCommitted uint64
	InstallsAbandoned uint64 // failed, refused at commit, or abandoned for a new term

	StreamAttached bool
	StreamFailures StreamFailures

	// Advertised is the highest commit offset a leader sent since the
	// follower opened (it starts at the commit) or last installed a
	// snapshot (which sets it to the snapshot's commit, even a lower one).
	Advertised logpos.Offset
	Commit     logpos.Offset // the last offset applied

	// AppendLatency is the time an entry takes to be written to the log
	// (not yet durable), SyncLatency the duration of one of those fsyncs,
	// AckLatency the time from receiving an entry to sending its ack
	// (per-entry mode) or an ack covering it (cumulative mode: the newest
	// entry covered). AppendLatency and AckLatency are sampled: one entry
	// in 16, and for the ack latency also every entry that arrives while
	// none is waiting for an ack (so an idle stream's acks are always
	// measured).
	AppendLatency, SyncLatency, AckLatency Histogram
}

// StreamFailures counts the replication streams that failed, by cause. A
// stream the leader finished, or that NewTerm, Delete or Close ended, did
// not fail; one refused when attaching is a lifecycle refusal (seen
// through Config.Observer).
type StreamFailures struct {
	InvalidTerm     uint64 // an Append of another term: a deposed leader (ErrInvalidTerm)
	Gap             uint64 // an entry beyond the head (ErrGap)
	InvalidArgument uint64 // an entry with a negative offset, a term out of range, or a value larger than the log takes (ErrInvalidArgument)
	Unavailable     uint64 // the log failed (ErrUnavailable)
	Other           uint64 // receiving or sending failed (the leader went away), or anything else
}

// Lag is how far the applier is behind what leaders have committed.
func (s Stats) Lag() int64 { return max(0, int64(s.Advertised-s.Commit)) }

// Histogram is a distribution of durations: Counts[i] observations were at
// most Bounds[i] (and above Bounds[i-1]); the last count is above every
// bound.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64 // len(Bounds)+1
	Count  uint64
	Sum    time.Duration
}

// latencyBounds are the upper bounds of the histogram buckets: 10 µs,
// doubling, up to the last below 5 s (2.6 s).
var latencyBounds = func() []time.Duration {
	var b []time.Duration
	for d := 10 * time.Microsecond; d <= 5*time.Second; d *= 2 {
		b = append(b, d)
	}
	return b
}()

// histogram counts durations into latencyBounds without locks or
// allocation.
type histogram struct {
	counts [32]atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.count.Add(1)
	h.sum.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: latencyBounds, Counts: make([]uint64, len(latencyBounds)+1)}
	for i := range out.Counts {
		out.Counts[i] = h.counts[i].Load()
	}
	out.Count, out.Sum = h.count.Load(), time.Duration(h.sum.Load())
	return out
}

// stats are the live counters behind Stats.
type stats struct {
	entriesAppended, bytesAppended, acksSent, syncs atomic.Uint64
	applyErrors, applied                            atomic.Uint64
	installsStarted, installsCommitted              atomic.Uint64
	installsAbandoned                               atomic.Uint64
	streamAttached                                  atomic.Bool
	streamFailures                                  struct {
		invalidTerm, gap, invalidArgument, unavailable, other atomic.Uint64
	}
	appendLatency, syncLatency, ackLatency histogram
}

// Stats returns the follower's counters.
func (f *Follower) Stats() Stats {
	s := &f.stats
	return Stats{
		EntriesAppended: s.entriesAppended.Load(), BytesAppended: s.bytesAppended.Load(),
		AcksSent: s.acksSent.Load(), Syncs: s.syncs.Load(),
		ApplyErrors: s.applyErrors.Load(), Applied: s.applied.Load(),
		InstallsStarted: s.installsStarted.Load(), InstallsCommitted: s.installsCommitted.Load(),
		InstallsAbandoned: s.installsAbandoned.Load(),
		StreamAttached:    s.streamAttached.Load(),
		StreamFailures: StreamFailures{
			InvalidTerm: s.streamFailures.invalidTerm.Load(), Gap: s.streamFailures.gap.Load(),
			InvalidArgument: s.streamFailures.invalidArgument.Load(),
			Unavailable:     s.streamFailures.unavailable.Load(), Other: s.streamFailures.other.Load(),
		},
		Advertised:    logpos.Offset(f.advertised.Load()),
		Commit:        f.commit(),
		AppendLatency: s.appendLatency.snapshot(),
		SyncLatency:   s.syncLatency.snapshot(),
		AckLatency:    s.ackLatency.snapshot(),
	}
}

// logger returns the follower's logger: namespace and shard attached,
// and the current term added to every line (termHandler).
func (f *Follower) logger() *slog.Logger { return f.cfg.Logger }

// termHandler adds the follower's current term to every record that does
// not name one itself, after the attributes the logger carries (namespace,
// shard) and before the record's own. The log and the store get the same
// logger, so their lines (and Pebble's) name the term as well, though it
// changes under them.
//
// A panic of the user's handler is recovered, and the record dropped:
// lines are written from within lifecycle actions, between a durable
// effect and the state it justifies, and from goroutines nothing else
// recovers (the stream's loops, the applier, the log's and Pebble's), where
// a panic would leave the follower torn or end the process.
type termHandler struct {
	inner slog.Handler
	term  *atomic.Int64
}

func (h termHandler) Enabled(ctx context.Context, l slog.Level) (enabled bool) {
	defer func() {
		if recover() != nil {
			enabled = false
		}
	}()
	return h.inner.Enabled(ctx, l)
}

func (h termHandler) Handle(ctx context.Context, r slog.Record) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("follower: the log handler panicked: %v", p)
		}
	}()
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	own := false // a line of the store's names the term it read itself
	r.Attrs(func(a slog.Attr) bool {
		own = own || a.Key == "term"
		return !own
	})
	if !own {
		out.AddAttrs(slog.Int64("term", h.term.Load()))
	}
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h termHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return termHandler{h.inner.WithAttrs(as), h.term}
}

func (h termHandler) WithGroup(name string) slog.Handler {
	return termHandler{h.inner.WithGroup(name), h.term}
}

// movingRows[i] reports whether row i of the lifecycle table moves, to
// another state or back into the same one (a NewTerm fencing a Fenced
// follower again): the steps logged at info.
var movingRows = func() []bool {
	rows := LifecycleTable().Rows
	moving := make([]bool, len(rows))
	for i, r := range rows {
		moving[i] = r.Kind == fsm.Move
	}
	return moving
}()

// transitionLog logs each transition (a step along a row that moves) as
// one line at info level, with the head and commit it left; refusals and
// steps that stay at debug level, a failed action at warning level. Then
// it passes the step on to the configured observer.
type transitionLog struct {
	f    *Follower
	next fsm.Observer
}

func (o transitionLog) Observe(s fsm.Step) {
	f := o.f
	var refusal *fsm.Refusal
	switch {
	case errors.As(s.Err, &refusal):
		f.logger().Debug("refused", "state", s.From, "event", s.Event, "err", s.Err)
	case s.Err != nil:
		f.logger().Warn("lifecycle action failed", "state", s.From, "event", s.Event, "err", s.Err)
	case s.Row >= 0 && s.Row < len(movingRows) && movingRows[s.Row]:
		commit := f.commit()
		f.logger().Info("transition", "from", s.From, "event", s.Event, "to", s.To,
			"head", max(logpos.Offset(f.head.Load()), commit), "commit", commit)
	default:
		f.logger().Debug("lifecycle step", "state", s.From, "event", s.Event)
	}
	if o.next != nil {
		o.next.Observe(s)
	}
}

// streamFailed counts and logs why a replication stream failed. The
// leader's mistakes and the log's failures are warnings; a leader that
// went away is not news.
func (f *Follower) streamFailed(cause error) {
	c := &f.stats.streamFailures
	switch {
	case errors.Is(cause, ErrInvalidTerm):
		c.invalidTerm.Add(1)
	case errors.Is(cause, ErrGap):
		c.gap.Add(1)
	case errors.Is(cause, ErrInvalidArgument):
		c.invalidArgument.Add(1)
	case errors.Is(cause, ErrUnavailable):
		c.unavailable.Add(1)
	default:
		c.other.Add(1)
		f.logger().Debug("replication stream ended", "err", cause)
		return
	}
	f.logger().Warn("replication stream failed", "err", cause)
}
