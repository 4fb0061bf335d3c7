package grpcapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

// serveMetrics serves srv's collector over HTTP on a loopback port, as
// followerd's --metrics-listen does, and returns the URL to scrape. The
// registry is pedantic: it checks every metric the collector produces
// against what it described.
func serveMetrics(t *testing.T, srv *grpcapi.Server) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(srv.Collector())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(lis) }()
	t.Cleanup(func() {
		if err := hs.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	})
	return "http://" + lis.Addr().String() + "/metrics"
}

// scrape is one scrape of a metrics endpoint, parsed.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics fetches url and parses the text exposition.
func scrapeMetrics(t *testing.T, url string) scrape {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Ask for the text format, the one Prometheus falls back to.
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the scrape: %v\n%s", err, body)
	}
	return fams
}

// find returns the series of family name whose labels include want
// ("k=v" pairs), or nil.
func (s scrape) find(name string, want ...string) *dto.Metric {
	fam := s[name]
	if fam == nil {
		return nil
	}
	for _, m := range fam.GetMetric() {
		if hasLabels(m, want) {
			return m
		}
	}
	return nil
}

// hasLabels reports whether m has every label of want ("k=v" pairs).
func hasLabels(m *dto.Metric, want []string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, "=")
		if have[k] != v {
			return false
		}
	}
	return true
}

// value returns the value of a counter or gauge series; a missing series
// fails the test.
func (s scrape) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := s.find(name, labels...)
	switch {
	case m == nil:
		t.Fatalf("no series %s%v", name, labels)
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

// histogram returns a histogram series; a missing one fails the test.
func (s scrape) histogram(t *testing.T, name string, labels ...string) *dto.Histogram {
	t.Helper()
	m := s.find(name, labels...)
	if m == nil || m.Histogram == nil {
		t.Fatalf("no histogram %s%v", name, labels)
	}
	h := m.Histogram
	// Buckets are cumulative and never above the count.
	prev := uint64(0)
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() < prev || b.GetCumulativeCount() > h.GetSampleCount() {
			t.Fatalf("%s%v: bucket le=%g holds %d after %d, count %d", name, labels, b.GetUpperBound(), b.GetCumulativeCount(), prev, h.GetSampleCount())
		}
		prev = b.GetCumulativeCount()
	}
	return h
}

// sum adds up the counters of family name whose labels include want.
func (s scrape) sum(name string, want ...string) float64 {
	total := 0.0
	for _, m := range s[name].GetMetric() {
		if hasLabels(m, want) {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func (s scrape) want(t *testing.T, value float64, name string, labels ...string) {
	t.Helper()
	if got := s.value(t, name, labels...); got != value {
		t.Errorf("%s%v = %g, want %g", name, labels, got, value)
	}
}

func (s scrape) wantBetween(t *testing.T, lo, hi float64, name string, labels ...string) {
	t.Helper()
	if got := s.value(t, name, labels...); got < lo || got > hi {
		t.Errorf("%s%v = %g, want it in [%g, %g]", name, labels, got, lo, hi)
	}
}

// poisonSM applies entries as store.KV does, except those whose value is
// poison: it fails them, and reports each failure on failed (without
// blocking).
type poisonSM struct{ failed chan struct{} }

var poison = []byte("poison")

func (p poisonSM) Apply(e logpos.Entry, w *store.Writer) error {
	if bytes.Equal(e.Value, poison) {
		select {
		case p.failed <- struct{}{}:
		default:
		}
		return errors.New("poisoned entry")
	}
	return store.KV{}.Apply(e, w)
}

// TestMetrics replicates to a node over loopback, installs snapshots,
// provokes refusals and apply errors, and checks through a real HTTP
// scrape that each series moved as it should.
func TestMetrics(t *testing.T) {
	sm := poisonSM{failed: make(chan struct{}, 1)}
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.Follower.StateMachine = sm
		o.Follower.ApplyRetryMin, o.Follower.ApplyRetryMax = 1, 1 // retry at once
	})
	url := serveMetrics(t, n.srv)
	c := n.conn

	m := scrapeMetrics(t, url)
	m.want(t, 0, "tablefsm_node_shards")
	if len(m["tablefsm_follower_entries_appended_total"].GetMetric()) != 0 {
		t.Fatalf("follower series before any shard is open: %v", m["tablefsm_follower_entries_appended_total"])
	}

	// Shard a: a cumulative stream of 100 entries, a per-entry stream of
	// 50, both committed and applied; a stream of one more entry that is
	// never committed, seen attached; two refused calls.
	a := leader.Shard{Namespace: "metrics", Shard: 1}
	fence(t, c, a, 1)
	replicate(t, c, a, 1, 0, 100, true)
	replicate(t, c, a, 1, 100, 50, false)
	checkApplied(t, c, a, 149)
	stream, cancel := openStream(t, c, a, 1, 150)
	defer cancel()
	sa := []string{"namespace=metrics", "shard=1"}
	on := func(labels ...string) []string { return append(append([]string(nil), sa...), labels...) }
	scrapeMetrics(t, url).want(t, 1, "tablefsm_follower_streams_attached", sa...)
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := recvEnd(stream); !errors.Is(err, io.EOF) {
		t.Fatalf("half-closed stream ended with %v", err)
	}
	_, err := c.NewTerm(ctxT(t), a, 0, nil)
	wantCode(t, err, codes.FailedPrecondition, "INVALID_TERM", "")
	_, err = c.Truncate(ctxT(t), a, 1, logpos.EntryID{Term: 1, Offset: 150})
	wantCode(t, err, codes.FailedPrecondition, "INVALID_STATUS", "")

	m = scrapeMetrics(t, url)
	m.want(t, 1, "tablefsm_node_shards")
	m.want(t, 0, "tablefsm_follower_streams_attached", sa...)
	var bytesSent int
	for o := range logpos.Offset(151) {
		bytesSent += len(kvValue(o, nil))
	}
	m.want(t, 151, "tablefsm_follower_entries_appended_total", sa...)
	m.want(t, float64(bytesSent), "tablefsm_follower_appended_bytes_total", sa...)
	// Per-entry acks: one per entry (50 + 1); cumulative: one per fsync
	// round, at least one, at most one per entry.
	m.wantBetween(t, 52, 151, "tablefsm_follower_acks_sent_total", sa...)
	m.want(t, 150, "tablefsm_follower_entries_applied_total", sa...)
	m.want(t, 0, "tablefsm_follower_apply_errors_total", sa...)
	m.want(t, 149, "tablefsm_follower_commit_offset", sa...)
	m.want(t, 149, "tablefsm_follower_advertised_commit_offset", sa...)
	m.want(t, 0, "tablefsm_follower_apply_lag_entries", sa...)
	m.want(t, 150, "tablefsm_follower_head_offset", sa...)
	m.want(t, 1, "tablefsm_follower_term", sa...)
	m.want(t, 1, "tablefsm_follower_state", on("state=Follower")...)
	m.want(t, 0, "tablefsm_follower_state", on("state=Fenced")...)
	syncs := m.value(t, "tablefsm_follower_fsyncs_total", sa...)
	if h := m.histogram(t, "tablefsm_follower_fsync_latency_seconds", sa...); syncs < 1 || float64(h.GetSampleCount()) != syncs || h.GetSampleSum() <= 0 {
		t.Errorf("fsync latency: %d samples (sum %gs) for %g fsyncs", h.GetSampleCount(), h.GetSampleSum(), syncs)
	}
	// Append and ack latencies are sampled: at least the idle stream's
	// one entry, at most every entry (or ack).
	if h := m.histogram(t, "tablefsm_follower_append_latency_seconds", sa...); h.GetSampleCount() < 1 || h.GetSampleCount() > 151 {
		t.Errorf("append latency: %d samples for 151 entries", h.GetSampleCount())
	}
	acks := m.value(t, "tablefsm_follower_acks_sent_total", sa...)
	if h := m.histogram(t, "tablefsm_follower_ack_latency_seconds", sa...); h.GetSampleCount() < 1 || float64(h.GetSampleCount()) > acks {
		t.Errorf("ack latency: %d samples for %g acks", h.GetSampleCount(), acks)
	}
	for _, step := range []struct {
		from, event, to string
		count           float64
	}{
		{"NotMember", "NewTerm", "Fenced", 1},
		{"Fenced", "Truncate", "Follower", 1},
		{"Follower", "AttachStream", "Follower", 3},
	} {
		m.want(t, step.count, "tablefsm_follower_transitions_total", on("from="+step.from, "event="+step.event, "to="+step.to)...)
	}
	m.want(t, 1, "tablefsm_follower_refusals_total", on("state=Follower", "event=NewTerm", "error=ErrInvalidTerm")...)
	m.want(t, 1, "tablefsm_follower_refusals_total", on("state=Follower", "event=Truncate", "error=ErrInvalidStatus")...)
	if got := m.sum("tablefsm_follower_refusals_total", sa...); got != 2 {
		t.Errorf("%g refusals in all, want 2", got)
	}
	// Streams the leader finished did not fail.
	for _, cause := range []string{"ErrInvalidTerm", "ErrGap", "ErrInvalidArgument", "ErrUnavailable", "other"} {
		m.want(t, 0, "tablefsm_follower_stream_failures_total", on("error="+cause)...)
	}

	// Shard b: an entry the state machine cannot apply. Two failures
	// reported mean the first was counted (the second attempt comes after).
	b := leader.Shard{Namespace: "metrics", Shard: 2}
	fence(t, c, b, 1)
	if _, err := c.Replicate(ctxT(t), leader.Run{
		Shard: b, Term: 1, First: 0, Count: 1, Window: 1, Commit: -1,
		Value: func(logpos.Offset, []byte) []byte { return poison },
	}); err != nil {
		t.Fatal(err)
	}
	<-sm.failed
	<-sm.failed
	sb := []string{"namespace=metrics", "shard=2"}
	m = scrapeMetrics(t, url)
	if got := m.value(t, "tablefsm_follower_apply_errors_total", sb...); got < 1 {
		t.Errorf("apply errors %g, want ≥ 1", got)
	}
	m.want(t, 0, "tablefsm_follower_advertised_commit_offset", sb...)
	m.want(t, -1, "tablefsm_follower_commit_offset", sb...)
	m.want(t, 1, "tablefsm_follower_apply_lag_entries", sb...)
	m.want(t, 0, "tablefsm_follower_entries_applied_total", sb...)

	// Shard c: a snapshot installed into a new replica, then one missing
	// its last chunk, abandoned.
	cs := leader.Shard{Namespace: "metrics", Shard: 3}
	chunks := snapshotOf(t, 1, 10)
	if len(chunks) < 2 {
		t.Fatalf("a snapshot of %d chunks", len(chunks))
	}
	if resp, err := sendChunks(t, c, cs, chunks...); err != nil || resp.GetAckOffset() != 9 {
		t.Fatalf("installing a snapshot: %v, %v", resp, err)
	}
	_, err = sendChunks(t, c, cs, chunks[:len(chunks)-1]...)
	wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "")
	sc := []string{"namespace=metrics", "shard=3"}
	m = scrapeMetrics(t, url)
	m.want(t, 2, "tablefsm_follower_snapshot_installs_started_total", sc...)
	m.want(t, 1, "tablefsm_follower_snapshot_installs_committed_total", sc...)
	m.want(t, 1, "tablefsm_follower_snapshot_installs_abandoned_total", sc...)
	m.want(t, 1, "tablefsm_follower_transitions_total", append(sc, "from=NotMember", "event=CommitInstall", "to=Follower")...)
	m.want(t, 9, "tablefsm_follower_commit_offset", sc...)
	m.want(t, 3, "tablefsm_node_shards")

	// Shard d: a deposed leader's stream (appends of term 1 to a follower
	// fenced at 2) and a stream with a gap both fail, each counted under
	// its cause.
	ds := leader.Shard{Namespace: "metrics", Shard: 4}
	fence(t, c, ds, 2)
	for _, bad := range []*replicationpb.Append{aEntry(1, 1, 0, -1, false), aEntry(2, 2, 5, -1, false)} {
		stream, cancel := aOpen(t, c, ds)
		aSend(t, stream, bad)
		if err := recvEnd(stream); err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("a failing stream ended with %v", err)
		}
		cancel()
	}
	sd := []string{"namespace=metrics", "shard=4"}
	m = scrapeMetrics(t, url)
	for cause, want := range map[string]float64{"ErrInvalidTerm": 1, "ErrGap": 1, "ErrInvalidArgument": 0, "ErrUnavailable": 0, "other": 0} {
		m.want(t, want, "tablefsm_follower_stream_failures_total", append(sd, "error="+cause)...)
	}
	m.want(t, 4, "tablefsm_node_shards")

	// A deleted shard's series go away.
	if err := c.Delete(ctxT(t), a, 1); err != nil {
		t.Fatal(err)
	}
	m = scrapeMetrics(t, url)
	m.want(t, 3, "tablefsm_node_shards")
	if s := m.find("tablefsm_follower_entries_appended_total", sa...); s != nil {
		t.Errorf("a deleted shard still has series: %v", s)
	}
}

// TestFsyncMetricsCountFsyncs: a stream of one entry, half-closed once it
// is acknowledged, makes one fsync: the sync loop's round for the
// half-close finds everything durable already, and is not an fsync.
func TestFsyncMetricsCountFsyncs(t *testing.T) {
	n := startNode(t, "")
	url := serveMetrics(t, n.srv)
	s := leader.Shard{Namespace: "fsyncs", Shard: 1}
	fence(t, n.conn, s, 1)
	if res := replicate(t, n.conn, s, 1, 0, 1, true); res.Acked != 1 {
		t.Fatalf("acked %d, want 1", res.Acked)
	}
	labels := []string{"namespace=fsyncs", "shard=1"}
	m := scrapeMetrics(t, url)
	m.want(t, 1, "tablefsm_follower_acks_sent_total", labels...)
	m.want(t, 1, "tablefsm_follower_fsyncs_total", labels...)
	if h := m.histogram(t, "tablefsm_follower_fsync_latency_seconds", labels...); h.GetSampleCount() != 1 {
		t.Errorf("fsync latency: %d samples for one fsync", h.GetSampleCount())
	}
}
