package grpcapi

import (
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/fsm"
)

// MetricsNamespace prefixes the name of every metric of Server.Collector.
const MetricsNamespace = "tablefsm"

// stepCounts counts a shard's lifecycle steps, fed by its follower's
// observer: accepted steps by (from, event, to), refusals by (state,
// event, error), failed actions by (state, event). Steps are control
// operations, never per entry, so a mutex and maps are cheap enough.
type stepCounts struct {
	mu          sync.Mutex
	transitions map[[3]string]uint64
	refusals    map[[3]string]uint64
	failures    map[[2]string]uint64
}

func newStepCounts() *stepCounts {
	return &stepCounts{
		transitions: make(map[[3]string]uint64),
		refusals:    make(map[[3]string]uint64),
		failures:    make(map[[2]string]uint64),
	}
}

func (c *stepCounts) add(st fsm.Step, refusal *fsm.Refusal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case refusal != nil:
		c.refusals[[3]string{refusal.State, refusal.Event, errorName(refusal.Err)}]++
	case st.Err != nil:
		c.failures[[2]string{st.From, st.Event}]++
	default:
		c.transitions[[3]string{st.From, st.Event, st.To}]++
	}
}

// lifecycleErrors maps the text of each error the follower's lifecycle
// table declares to its Go name ("follower: invalid term" →
// "ErrInvalidTerm"), for the error label of refusals.
var lifecycleErrors = func() map[string]string {
	m := make(map[string]string)
	for _, e := range follower.LifecycleTable().Errors {
		m[e.Message] = e.Name
	}
	return m
}()

// errorName names a refusal's sentinel by its declared name; an error the
// table does not declare keeps its text.
func errorName(err error) string {
	msg := err.Error()
	text := msg
	if i := strings.LastIndex(text, ": "); i >= 0 {
		text = text[i+2:] // the sentinel's package prefix
	}
	if name, ok := lifecycleErrors[text]; ok {
		return name
	}
	return msg
}

// Collector returns a Prometheus collector of the node's metrics: for each
// hosted shard (labels namespace and shard), its lifecycle steps counted
// from the follower's observer, and its follower's Stats — counters,
// latency histograms, positions and applier lag — read lock-free at each
// scrape. A shard's series appear when the node opens it and disappear
// when it is deleted; its counters start again from zero when it is
// reopened (a restart), which Prometheus treats as a counter reset.
//
// Register it in a prometheus.Registry and serve that registry
// (followerd's --metrics-listen does).
func (s *Server) Collector() prometheus.Collector { return &collector{s: s, d: newMetricDescs()} }

type collector struct {
	s *Server
	d metricDescs
}

// metricDescs describe every metric of the collector.
type metricDescs struct {
	shards *prometheus.Desc

	transitions, refusals, failures *prometheus.Desc
	state, term                     *prometheus.Desc
	head, commit, advertised, lag   *prometheus.Desc

	entries, bytes, acks, syncs *prometheus.Desc
	applied, applyErrors        *prometheus.Desc
	installsStarted             *prometheus.Desc
	installsCommitted           *prometheus.Desc
	installsAbandoned           *prometheus.Desc
	streams, streamFailures     *prometheus.Desc

	appendLatency, syncLatency, ackLatency *prometheus.Desc
}

func newMetricDescs() metricDescs {
	shard := []string{"namespace", "shard"}
	with := func(extra ...string) []string { return append(append([]string(nil), shard...), extra...) }
	desc := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(MetricsNamespace, "follower", name), help, labels, nil)
	}
	return metricDescs{
		shards: prometheus.NewDesc(prometheus.BuildFQName(MetricsNamespace, "node", "shards"),
			"Shards whose follower the node has open.", nil, nil),

		transitions: desc("transitions_total", "Lifecycle steps taken, by the state before (from), the event, and the state after (to; equal to from for a step that stays).", with("from", "event", "to")),
		refusals:    desc("refusals_total", "Lifecycle events refused, by state, event, and the declared error (e.g. ErrInvalidTerm).", with("state", "event", "error")),
		failures:    desc("action_failures_total", "Lifecycle events whose action failed (the state did not change), by state and event.", with("state", "event")),
		state:       desc("state", "1 for the follower's current lifecycle state, 0 for the others.", with("state")),
		term:        desc("term", "The follower's current term (-1: none).", shard),
		head:        desc("head_offset", "The last offset appended to the log.", shard),
		commit:      desc("commit_offset", "The last offset applied to the store.", shard),
		advertised:  desc("advertised_commit_offset", "The highest commit offset a leader sent.", shard),
		lag:         desc("apply_lag_entries", "How far the applier is behind what leaders committed: advertised commit offset minus commit offset.", shard),

		entries:           desc("entries_appended_total", "Entries written to the log by replication streams.", shard),
		bytes:             desc("appended_bytes_total", "Value bytes of the entries written to the log.", shard),
		acks:              desc("acks_sent_total", "Acks sent on replication streams.", shard),
		syncs:             desc("fsyncs_total", "Log fsyncs of replication streams (sync rounds that had entries to make durable).", shard),
		applied:           desc("entries_applied_total", "Entries applied to the store.", shard),
		applyErrors:       desc("apply_errors_total", "Failed attempts to apply an entry (each is retried).", shard),
		installsStarted:   desc("snapshot_installs_started_total", "Snapshot installs accepted and started.", shard),
		installsCommitted: desc("snapshot_installs_committed_total", "Snapshot installs that replaced the store.", shard),
		installsAbandoned: desc("snapshot_installs_abandoned_total", "Snapshot installs that failed, were refused at commit, or were abandoned for a new term.", shard),
		streams:           desc("streams_attached", "Replication streams attached (0 or 1).", shard),
		streamFailures:    desc("stream_failures_total", "Replication streams that failed, by cause: ErrInvalidTerm (an append of another term: a deposed leader), ErrGap, ErrInvalidArgument, ErrUnavailable (the log failed), other (the leader went away, or anything else).", with("error")),

		appendLatency: desc("append_latency_seconds", "Time to write an entry to the log, not yet durable (sampled: one entry in 16).", shard),
		syncLatency:   desc("fsync_latency_seconds", "Duration of a log fsync of a replication stream.", shard),
		ackLatency:    desc("ack_latency_seconds", "Time from receiving an entry to sending the ack that covers it (sampled: one entry in 16, and every entry of an idle stream).", shard),
	}
}

func (d *metricDescs) all() []*prometheus.Desc {
	return []*prometheus.Desc{
		d.shards, d.transitions, d.refusals, d.failures, d.state, d.term,
		d.head, d.commit, d.advertised, d.lag, d.entries, d.bytes, d.acks,
		d.syncs, d.applied, d.applyErrors, d.installsStarted,
		d.installsCommitted, d.installsAbandoned, d.streams, d.streamFailures,
		d.appendLatency, d.syncLatency, d.ackLatency,
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.d.all() {
		ch <- d
	}
}

// lifecycleStates are the follower's states, for the state gauge.
var lifecycleStates = []follower.State{follower.StateNotMember, follower.StateFenced, follower.StateFollower, follower.StateClosed}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	shards := c.s.openShards()
	ch <- prometheus.MustNewConstMetric(c.d.shards, prometheus.GaugeValue, float64(len(shards)))
	for _, sh := range shards {
		c.collectShard(ch, sh)
	}
}

func (c *collector) collectShard(ch chan<- prometheus.Metric, sh *shard) {
	d := &c.d
	ns, id := sh.key.namespace, strconv.FormatInt(sh.key.shard, 10)
	counter := func(desc *prometheus.Desc, v uint64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), append([]string{ns, id}, extra...)...)
	}
	gauge := func(desc *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, append([]string{ns, id}, extra...)...)
	}
	histogram := func(desc *prometheus.Desc, h follower.Histogram) {
		buckets := make(map[float64]uint64, len(h.Bounds))
		var cum uint64
		for i, b := range h.Bounds {
			cum += h.Counts[i]
			buckets[b.Seconds()] = cum
		}
		// The counts are read one by one while observations go on: keep
		// the total at least the sum of the buckets.
		count := max(h.Count, cum+h.Counts[len(h.Bounds)])
		ch <- prometheus.MustNewConstHistogram(desc, count, h.Sum.Seconds(), buckets, ns, id)
	}

	sh.counts.mu.Lock()
	for k, v := range sh.counts.transitions {
		counter(d.transitions, v, k[0], k[1], k[2])
	}
	for k, v := range sh.counts.refusals {
		counter(d.refusals, v, k[0], k[1], k[2])
	}
	for k, v := range sh.counts.failures {
		counter(d.failures, v, k[0], k[1])
	}
	sh.counts.mu.Unlock()

	status, st := sh.f.Status(), sh.f.Stats()
	for _, s := range lifecycleStates {
		v := 0.0
		if status.State == s {
			v = 1
		}
		gauge(d.state, v, s.String())
	}
	gauge(d.term, float64(status.Term))
	gauge(d.head, float64(status.Head))
	gauge(d.commit, float64(st.Commit))
	gauge(d.advertised, float64(st.Advertised))
	gauge(d.lag, float64(st.Lag()))
	counter(d.entries, st.EntriesAppended)
	counter(d.bytes, st.BytesAppended)
	counter(d.acks, st.AcksSent)
	counter(d.syncs, st.Syncs)
	counter(d.applied, st.Applied)
	counter(d.applyErrors, st.ApplyErrors)
	counter(d.installsStarted, st.InstallsStarted)
	counter(d.installsCommitted, st.InstallsCommitted)
	counter(d.installsAbandoned, st.InstallsAbandoned)
	attached := 0.0
	if st.StreamAttached {
		attached = 1
	}
	gauge(d.streams, attached)
	failed := st.StreamFailures
	counter(d.streamFailures, failed.InvalidTerm, "ErrInvalidTerm")
	counter(d.streamFailures, failed.Gap, "ErrGap")
	counter(d.streamFailures, failed.InvalidArgument, "ErrInvalidArgument")
	counter(d.streamFailures, failed.Unavailable, "ErrUnavailable")
	counter(d.streamFailures, failed.Other, "other")
	histogram(d.appendLatency, st.AppendLatency)
	histogram(d.syncLatency, st.SyncLatency)
	histogram(d.ackLatency, st.AckLatency)
}

// openShards returns the hosted shards whose follower is open, without
// waiting for those being opened.
func (s *Server) openShards() []*shard {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*shard, 0, len(s.mu.shards))
	for _, sh := range s.mu.shards {
		select {
		case <-sh.ready:
			if sh.f != nil {
				out = append(out, sh)
			}
		default:
		}
	}
	return out
}
