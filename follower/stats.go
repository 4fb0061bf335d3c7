package follower

import (
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
	Syncs           uint64 // log fsync rounds of the streams
	ApplyErrors     uint64 // failed attempts to apply an entry
	Applied         uint64 // entries applied to the store

	InstallsStarted   uint64
	InstallsCommitted uint64
	InstallsAbandoned uint64 // failed, refused at commit, or abandoned for a new term

	StreamAttached bool
	Advertised     logpos.Offset // the highest commit offset a leader sent
	Commit         logpos.Offset // the last offset applied

	// AppendLatency is the time an entry takes to be written to the log
	// (not yet durable), SyncLatency the duration of an fsync round,
	// AckLatency the time from receiving an entry to sending its ack
	// (per-entry mode) or an ack covering it (cumulative mode: the newest
	// entry covered). Entries are sampled: one in 16, plus every entry
	// that arrives while none is waiting for an ack (so an idle stream's
	// latency is always measured).
	AppendLatency, SyncLatency, AckLatency Histogram
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

// latencyBounds are the upper bounds of the histogram buckets: 10 µs to
// about 5 s, doubling.
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
	appendLatency, syncLatency, ackLatency          histogram
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
		Advertised:        logpos.Offset(f.advertised.Load()),
		Commit:            f.commit(),
		AppendLatency:     s.appendLatency.snapshot(),
		SyncLatency:       s.syncLatency.snapshot(),
		AckLatency:        s.ackLatency.snapshot(),
	}
}

// logger returns the follower's logger with the current term attached.
func (f *Follower) logger() *slog.Logger {
	return f.cfg.Logger.With("term", f.term.Load())
}

// transitionLog logs every state change at info level and refusals at
// debug level, then passes the step on to the configured observer.
type transitionLog struct {
	f    *Follower
	next fsm.Observer
}

func (o transitionLog) Observe(s fsm.Step) {
	switch {
	case s.Err != nil:
		o.f.logger().Debug("refused", "state", s.From, "event", s.Event, "err", s.Err)
	case s.From != s.To:
		o.f.logger().Info("state changed", "from", s.From, "to", s.To, "event", s.Event)
	}
	if o.next != nil {
		o.next.Observe(s)
	}
}
