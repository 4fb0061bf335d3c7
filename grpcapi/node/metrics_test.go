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
	"github.com/tablefsm/tablefsm/logpos"
)

// TestMetricsListen runs followerd with --metrics-listen, replicates to
// it, and scrapes /metrics over HTTP: the shard's series, the Go
// runtime's and the process's are there and moved. Without the flag
// nothing else listens (see TestMainServesUntilCancelled: one line on
// stdout).
func TestMetricsListen(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, w := io.Pipe()
	stderr := &syncBuffer{}
	status := make(chan int, 1)
	go func() {
		status <- node.Main(ctx, []string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, w, stderr)
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
		t.Fatalf("stdout %q; status %d; stderr:\n%s", lines, <-status, stderr)
	}
	addr := strings.TrimPrefix(lines[0], node.ListeningPrefix)
	url := strings.TrimPrefix(lines[1], node.MetricsPrefix)

	c := dial(t, addr)
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

	cancel()
	if got := <-status; got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr)
	}
	if _, err := http.Get(url); err == nil {
		t.Errorf("metrics still served after the node stopped")
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
