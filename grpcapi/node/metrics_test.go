package node_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/node"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestMetricsListen runs followerd with --metrics-listen, replicates to
// it, and scrapes /metrics over HTTP: the shard's series, the Go
// runtime's and the process's are there and moved. Without the flag
// nothing else listens (see TestMainServesUntilCancelled: one line on
// stdout).
func TestMetricsListen(t *testing.T) {
	n := startWithMetrics(t)
	url := n.metricsURL
	c := dial(t, n.addr)
	s := leader.Shard{Namespace: "scraped", Shard: 3}
	head, err := c.NewTerm(ctxT(t), s, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Truncate(ctxT(t), s, 1, head); err != nil {
		t.Fatal(err)
	}
	const entries = 40
	if _, err := c.Replicate(ctxT(t), leader.Run{
		Shard: s, Term: 1, First: 0, Count: entries, Window: 8, Cumulative: true, Commit: -1,
		Value: func(o logpos.Offset, buf []byte) []byte { return leader.AppendPut(buf, []byte("k"), []byte("v")) },
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctxT(t), s, entries-1); err != nil {
		t.Fatal(err)
	}

	fams := scrape(t, url)
	series := func(name string) *dto.Metric {
		for _, m := range fams[name].GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == "scraped" && labels["shard"] == "3" {
				return m
			}
		}
		t.Fatalf("no series %s for the shard", name)
		return nil
	}
	if got := series("tablefsm_follower_entries_appended_total").GetCounter().GetValue(); got != entries {
		t.Errorf("entries appended: %g, want %d", got, entries)
	}
	if got := series("tablefsm_follower_entries_applied_total").GetCounter().GetValue(); got != entries {
		t.Errorf("entries applied: %g, want %d", got, entries)
	}
	if got := series("tablefsm_follower_acks_sent_total").GetCounter().GetValue(); got < 1 {
		t.Errorf("acks sent: %g", got)
	}
	if got := series("tablefsm_follower_fsync_latency_seconds").GetHistogram().GetSampleCount(); got < 1 {
		t.Errorf("fsync latency: %d samples", got)
	}
	if got := series("tablefsm_follower_transitions_total").GetCounter().GetValue(); got < 1 {
		t.Errorf("transitions: %g", got)
	}
	for _, name := range []string{"tablefsm_node_shards", "go_goroutines", "process_start_time_seconds", "promhttp_metric_handler_requests_total"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}

	if got := get(t, strings.TrimSuffix(url, "/metrics")+"/debug/pprof/"); got.status != http.StatusNotFound {
		t.Errorf("without --pprof, /debug/pprof/: %d", got.status)
	}

	n.stop(t)
	if _, err := http.Get(url); err == nil {
		t.Errorf("metrics still served after the node stopped")
	}
}

// metricsNode is followerd run by Main with --metrics-listen.
type metricsNode struct {
	addr, metricsURL string
	cancel           context.CancelFunc
	status           chan int
	stderr           *syncBuffer
}

// startWithMetrics runs followerd with --metrics-listen and the extra
// arguments, and waits until it serves.
func startWithMetrics(t *testing.T, extra ...string) *metricsNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &metricsNode{cancel: cancel, status: make(chan int, 1), stderr: &syncBuffer{}}
	t.Cleanup(cancel)
	r, w := io.Pipe()
	args := append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, extra...)
	go func() {
		n.status <- node.Main(ctx, args, w, n.stderr)
		_ = w.Close()
	}()
	sc := bufio.NewScanner(r)
	var lines []string
	for len(lines) < 2 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, r) }()
	if len(lines) < 2 || !strings.HasPrefix(lines[0], node.ListeningPrefix) || !strings.HasPrefix(lines[1], node.MetricsPrefix) {
		cancel()
		t.Fatalf("stdout %q; status %d; stderr:\n%s", lines, <-n.status, n.stderr)
	}
	n.addr = strings.TrimPrefix(lines[0], node.ListeningPrefix)
	n.metricsURL = strings.TrimPrefix(lines[1], node.MetricsPrefix)
	return n
}

// stop shuts the node down and checks that it exited 0.
func (n *metricsNode) stop(t *testing.T) {
	t.Helper()
	n.cancel()
	if got := <-n.status; got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, n.stderr)
	}
}

type response struct {
	status      int
	contentType string
	body        string
}

func get(t *testing.T, url string) response {
	t.Helper()
	r, err := fetch(url)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func fetch(url string) (response, error) {
	resp, err := http.Get(url)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), string(body)}, err
}

// TestPprof runs followerd with --pprof: the Go runtime's profiles are
// served beside the metrics, in the form go tool pprof reads. A CPU
// profile asked for an hour does not hold a graceful shutdown: it stops
// when the shutdown begins, and is sent as it is.
func TestPprof(t *testing.T) {
	n := startWithMetrics(t, "--pprof", "--shutdown-timeout", "1m")
	base := strings.TrimSuffix(n.metricsURL, "/metrics") + "/debug/pprof/"
	if got := get(t, base); got.status != http.StatusOK || !strings.Contains(got.body, "goroutine") {
		t.Errorf("index: %d %q", got.status, got.body)
	}
	// The gRPC server's goroutines are in the node's own goroutine dump.
	if got := get(t, base+"goroutine?debug=2"); got.status != http.StatusOK || !strings.Contains(got.body, "grpc.(*Server).Serve") {
		t.Errorf("goroutine dump: %d %q", got.status, got.body)
	}
	for _, path := range []string{"heap", "trace?seconds=0.01", "cmdline", "symbol"} {
		got := get(t, base+path)
		if got.status != http.StatusOK || got.body == "" {
			t.Errorf("%s: %d %s %q", path, got.status, got.contentType, got.body)
		}
	}
	if got := get(t, n.metricsURL); got.status != http.StatusOK {
		t.Errorf("metrics beside the profiles: %d", got.status)
	}

	var (
		profile response
		err     error
	)
	profiled := make(chan struct{})
	go func() {
		defer close(profiled)
		profile, err = fetch(base + "profile?seconds=3600")
	}()
	stacktest.WaitBlockedIn(t, "select", "net/http/pprof.sleep", profiled)
	n.stop(t)
	<-profiled
	// A profile is gzipped protobuf.
	if err != nil || profile.status != http.StatusOK || !strings.HasPrefix(profile.body, "\x1f\x8b") {
		t.Errorf("CPU profile ended by the shutdown: %v; %d %s %q", err, profile.status, profile.contentType, profile.body)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}
