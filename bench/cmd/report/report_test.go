package main

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeRun is a run whose go test output holds every figure the report
// reads, three counts each.
func fakeRun(t *testing.T) *Run {
	t.Helper()
	var fol, wal, store, bench strings.Builder
	line := func(b *strings.Builder, name string, metrics ...any) {
		fmt.Fprintf(b, "%s-2   \t 1000\t", name)
		for i := 0; i < len(metrics); i += 2 {
			fmt.Fprintf(b, "  %v %s\t", metrics[i], metrics[i+1])
		}
		b.WriteString("\n")
	}
	for run := range 3 {
		jitter := float64(run) // the median is the middle run
		line(&fol, "BenchmarkHotPath", 400+jitter, "ns/op", 0.0001, "allocs/entry", 0, "allocs/op")
		line(&fol, "BenchmarkReplicate/wal", 2000, "ns/op")
		line(&fol, "BenchmarkReplicate/follower-cumulative", 4000, "ns/op")
		line(&wal, "BenchmarkAppend", 500, "ns/op", 0, "allocs/op")
		line(&wal, "BenchmarkGroupCommit", 9000, "ns/op", 3000, "raw-ns/entry", 3500, "wal-ns/entry", 0.8+jitter/100, "wal-vs-raw", 0.1, "reader-cost")
		for name, ratio := range map[string]float64{"writes=1": 0.7, "writes=64": 0.9, "writes=1,run=256": 0.9} { // 0.7: missed
			line(&store, "BenchmarkApply/"+name, 100000, "kv-entries/s", 100000/ratio, "raw-entries/s", ratio, "kv/raw")
		}
		line(&bench, "BenchmarkTransition/tablefsm", 40, "ns/op", 20, "ns/transition", 0, "allocs/op")
		line(&bench, "BenchmarkTransition/looplab", 4000, "ns/op", 2000, "ns/transition")
		line(&bench, "BenchmarkTransition/stateless", 600, "ns/op", 300, "ns/transition") // 1/15: missed
		for _, n := range []int{1, 64} {
			line(&bench, fmt.Sprintf("BenchmarkWALDurableBatchInterleaved/batch=%d", n), 1, "tablefsm-ns/batch", 1.2, "raftwal-ns/batch", 1.1, "tidwall-ns/batch", 1.2, "x-vs-raftwal", 1.1, "x-vs-tidwall")
		}
		line(&bench, "BenchmarkStream/followerd/cumulative", 20000, "ns/op")
		line(&bench, "BenchmarkStream/echo/cumulative", 10000, "ns/op")
		line(&bench, "BenchmarkIdleAck", 1e6, "ns/op", 500, "followerd-p50-µs", 480, "echo-fsync-p50-µs", 100, "echo-p50-µs", 400, "fsync-p50-µs")
		line(&bench, "BenchmarkWALReopenAfterCrash/open", 1e7, "ns/op", 8.5e6, "read-B/op", 64<<20, "log-B", 8, "segments")
		line(&bench, "BenchmarkWALReopenAfterCrash/full-scan", 2e7, "ns/op")
		// 512 B per entry in flight: 4 records.
		line(&bench, "BenchmarkMemoryWindow/window=100", 3, "live-peak-MiB", 40, "gc-cycles", 2e5, "entries")
		line(&bench, "BenchmarkMemoryWindow/window=10000", 3+9900*512.0/(1<<20), "live-peak-MiB", 30, "gc-cycles", 2e5, "entries")
		line(&bench, "BenchmarkMemory", 10, "heap-first-MiB", 11, "heap-last-MiB", 12, "heap-peak1-MiB", 13, "heap-peak2-MiB", 13.0/12, "heap-growth", 60, "rss-peak1-MiB", 62, "rss-peak2-MiB", 2e5, "entries")
		for i, w := range windows {
			// At window 1000: 0.5, missed.
			line(&bench, fmt.Sprintf("BenchmarkStreamWindow/window=%d", w), 1000*float64(i+1), "followerd-entries/s", 2000*float64(i+1), "echo-entries/s", 1600*float64(i+1), "durable-entries/s", 0.5, "followerd-vs-echo", 0.8, "durable-vs-echo", 0.625, "followerd-vs-durable")
		}
		for _, w := range []int{64, 1000} {
			for _, mode := range []string{"per-entry", "cumulative"} {
				var m []any
				for _, q := range quantiles {
					m = append(m, 1000*(1+10*q)*float64(w)/64, fmt.Sprintf("q%g-µs", q*1000))
				}
				line(&bench, fmt.Sprintf("BenchmarkAckLatency/window=%d/%s", w, mode), m...)
			}
		}
		for _, n := range batches {
			line(&bench, fmt.Sprintf("BenchmarkWALBatch/batch=%d", n), 1000*float64(n), "wal-entries/s", 1200*float64(n), "raw-entries/s", 0.83, "wal-vs-raw")
		}
	}
	return &Run{
		Machine: Machine{CPU: "Test CPU", Cores: 2, Go: "go1.26"},
		Quick:   true, Started: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Duration: time.Minute,
		Steps: []Step{
			{Module: ".", Package: "./follower", Bench: ".", Benchtime: "1x", Count: 3, Output: fol.String()},
			{Module: ".", Package: "./wal", Bench: ".", Benchtime: "1x", Count: 3, Output: wal.String()},
			{Module: ".", Package: "./store", Bench: ".", Benchtime: "1x", Count: 3, Output: store.String()},
			{Module: "bench", Package: ".", Bench: ".", Benchtime: "1x", Count: 3, Output: bench.String()},
		},
	}
}

func TestReport(t *testing.T) {
	run := fakeRun(t)
	res, err := parseRun(run)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := res.med("follower:BenchmarkHotPath", "ns/op"); v != 401 {
		t.Errorf("median of 400, 401, 402: %g", v)
	}
	dir := t.TempDir()
	plots, err := drawPlots(res, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(plots) != 3 {
		t.Fatalf("%d plots, want 3", len(plots))
	}
	for _, p := range plots {
		f, err := os.Open(filepath.Join(dir, p.file))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p.file, err)
		}
		if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 500 {
			t.Errorf("%s is %v", p.file, b)
		}
	}
	var md bytes.Buffer
	render(&md, run, res, plots)
	out := md.String()
	for _, want := range []string{
		"**Missed in this run (2 of 12):** generated guarded transition vs qmuntal/stateless; end to end, 100 B, window 1000, cumulative acks vs a bare gRPC stream.",
		"## Budgets the packages set themselves\n\n**Missed in this run (1 of ",
		"store: applying entries of 1 put, one at a time, vs raw Pebble batches of one entry",
		"| generated guarded transition vs looplab/fsm | 20 ns/transition | 2 µs/transition | 0.01 | ≤ 1/50 (0.02) | met |",
		"| idle ack latency p50 <sup>6</sup> | 500 µs | 480 µs fsync + round trip (durable echo) + 50 µs = 530 µs | 0.943 | ≤ 1 | met |",
		"they are 400 µs (fsync probe) + 100 µs (echo) = 500 µs",
		"Against the parts measured apart (+ 50 µs = 550 µs) the ratio is 0.909: met",
		"| memory in flight (cumulative acks): live heap per entry of the window, windows 100 and 10000 <sup>9</sup> | 512 B per entry in flight | peak live heap 7.8 MiB at window 10000, 3.0 MiB at window 100, 200 k entries each; a record is 128 B | 4 records | bounded by the window: ≤ 16 records (2048 B) per entry in flight | met |",
		"(memory in flight is the next row)",
		"runs: 0.80, 0.81, 0.82", // the runs of a ratio
		"reached 0.8 of the echo: a ratio no such follower reaches. followerd reached 0.625 of the durable echo",
		"| 1000 | 6 k | 12 k | 9.6 k | 0.5 | 0.8 |",
		"![Replication throughput against the window](bench-replication-window.png)",
		"| 1000 | cumulative |",
		"| Test CPU, 2 cores |",
		"**quick run**",
		"its verdicts are indicative only",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "## Not measured") {
		t.Errorf("figures reported missing:\n%s", out)
	}
}

// TestReportJudgesUnrounded: a figure just past its budget is missed,
// though three significant digits would print it as the budget itself;
// it is printed with the digits that show it.
func TestReportJudgesUnrounded(t *testing.T) {
	for _, c := range []struct {
		name, bench, unit string
		v                 float64
		row, ratio        string
	}{
		// 40.09 / 2000 = 0.020045 > 1/50
		{"transition", "BenchmarkTransition/tablefsm", "ns/transition", 40.09, "generated guarded transition vs looplab/fsm |", "| 0.02005 |"},
		{"reader cost", "BenchmarkGroupCommit", "reader-cost", 0.2004, "WAL: throughput a tailing reader", "| 0.2004 |"},
		{"group commit", "BenchmarkGroupCommit", "wal-vs-raw", 0.5996, "WAL pipelined append", "| 0.5996 |"},
		{"batch of 64", "BenchmarkWALDurableBatchInterleaved/batch=64", "x-vs-raftwal", 0.9996, "WAL durable batch of 64 × 128 B vs hashicorp/raft-wal", "| 0.9996 (speed) |"},
		{"hot path", "BenchmarkHotPath", "ns/op", 1004, "follower per-entry hot path", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := fakeRun(t)
			setMetric(t, run, c.bench, c.unit, c.v)
			res, err := parseRun(run)
			if err != nil {
				t.Fatal(err)
			}
			var md bytes.Buffer
			render(&md, run, res, nil)
			row := ""
			for line := range strings.Lines(md.String()) {
				if strings.HasPrefix(line, "| "+c.row) {
					row = line
				}
			}
			if !strings.Contains(row, "| **missed** |") || !strings.Contains(row, c.ratio) {
				t.Errorf("%s = %g misses its budget; the row is %q, want it missed, showing %q", c.unit, c.v, row, c.ratio)
			}
		})
	}
}

// setMetric sets, in every result line of the benchmark name, the value
// of unit to v.
func setMetric(t *testing.T, run *Run, name, unit string, v float64) {
	t.Helper()
	n := 0
	for i := range run.Steps {
		var out strings.Builder
		for line := range strings.Lines(run.Steps[i].Output) {
			f := strings.Fields(line)
			if len(f) > 0 && f[0] == name+"-2" {
				for j := 2; j+1 < len(f); j += 2 {
					if f[j+1] == unit {
						f[j] = fmt.Sprint(v)
						n++
					}
				}
				line = strings.Join(f, "\t") + "\n"
			}
			out.WriteString(line)
		}
		run.Steps[i].Output = out.String()
	}
	if n == 0 {
		t.Fatalf("no %s %s in the fixture", name, unit)
	}
}

// TestReportFewCycles: a peak of memory in flight sampled over too few GC
// cycles is not judged.
func TestReportFewCycles(t *testing.T) {
	run := fakeRun(t)
	step := &run.Steps[len(run.Steps)-1]
	step.Output = strings.ReplaceAll(step.Output, "30 gc-cycles", "2 gc-cycles")
	res, err := parseRun(run)
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	render(&md, run, res, nil)
	want := "| bounded by the window: ≤ 16 records (2048 B) per entry in flight | not measured |"
	if !strings.Contains(md.String(), want) {
		t.Errorf("the report lacks %q:\n%s", want, md.String())
	}
}

// TestReportMissing: a run without some benchmarks says which figures it
// lacks, and marks their budgets not measured, rather than failing.
func TestReportMissing(t *testing.T) {
	run := fakeRun(t)
	run.Steps = run.Steps[:3] // no bench module
	res, err := parseRun(run)
	if err != nil {
		t.Fatal(err)
	}
	plots, err := drawPlots(res, t.TempDir())
	if err != nil || len(plots) != 0 {
		t.Fatalf("plots %v, %v", plots, err)
	}
	var md bytes.Buffer
	render(&md, run, res, plots)
	for _, want := range []string{"## Not measured", "bench:BenchmarkTransition/tablefsm ns/transition", "| not measured |", "**Not measured in this run (10 of 12):** generated guarded transition vs looplab/fsm; "} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, md.String())
		}
	}
}
