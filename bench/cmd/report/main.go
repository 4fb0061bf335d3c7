// Command report runs the benchmarks of every package of tablefsm with
// their same-run baselines and writes docs/BENCHMARKS.md: the machine,
// every figure as a value and a ratio to its baseline, the performance
// budget of the design it is held to, met or not, and PNG plots beside it.
//
// Run it through `make bench` (BENCH_QUICK=1 for a short run). It builds
// each package's test binary once (go test -c) and runs its benchmarks
// with -bench ... -benchmem -benchtime T -count N, one step at a time (so
// that no two benchmarks share the machine), takes the median of the runs
// of every figure, and renders the report. -save keeps the raw
// output; -load renders a report from a saved run without running
// anything.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	root := flag.String("root", "..", "the repository's root `directory`")
	out := flag.String("out", "", "the report to write (default: ROOT/docs/BENCHMARKS.md); plots go beside it")
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "a short run: one count, short bench times, fewer cases (default: BENCH_QUICK=1)")
	save := flag.String("save", "", "also save the raw run (machine and go test output) as JSON in `file`")
	load := flag.String("load", "", "render from a run saved with -save in `file` instead of running the benchmarks")
	flag.Parse()
	if *out == "" {
		*out = filepath.Join(*root, "docs", "BENCHMARKS.md")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *root, *out, *quick, *save, *load); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// Run is a whole benchmark run: what was run where, and what it printed.
type Run struct {
	Machine  Machine
	Quick    bool
	Started  time.Time
	Duration time.Duration
	Steps    []Step
}

// Step is one `go test` invocation.
type Step struct {
	Module    string // "." (the library) or "bench"
	Package   string
	Bench     string
	Benchtime string
	Count     int
	Env       []string `json:",omitempty"`
	Output    string
}

func run(ctx context.Context, root, out string, quick bool, save, load string) error {
	var r *Run
	if load != "" {
		data, err := os.ReadFile(load)
		if err != nil {
			return err
		}
		r = &Run{}
		if err := json.Unmarshal(data, r); err != nil {
			return fmt.Errorf("%s: %w", load, err)
		}
	} else {
		var err error
		if r, err = runAll(ctx, root, quick); err != nil {
			return err
		}
		if save != "" {
			data, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				return err
			}
			if err := os.WriteFile(save, data, 0o644); err != nil {
				return err
			}
		}
	}
	res, err := parseRun(r)
	if err != nil {
		return err
	}
	dir := filepath.Dir(out)
	plots, err := drawPlots(res, dir)
	if err != nil {
		return err
	}
	var md bytes.Buffer
	render(&md, r, res, plots)
	if err := os.WriteFile(out, md.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "report: wrote %s and %d plots\n", out, len(plots))
	return nil
}

// plan returns the go test invocations of a run.
func plan(quick bool) []Step {
	// full and short bench times and counts.
	type tc struct {
		time  string
		count int
	}
	pick := func(full, short tc) tc {
		if quick {
			return short
		}
		return full
	}
	std := pick(tc{"1s", 3}, tc{"150ms", 1})
	fine := pick(tc{"1s", 5}, tc{"100ms", 1}) // cheap CPU-bound ones
	var steps []Step
	add := func(module, pkg, bench string, t tc, env ...string) {
		steps = append(steps, Step{Module: module, Package: pkg, Bench: bench, Benchtime: t.time, Count: t.count, Env: env})
	}
	// The library's own benchmarks, each against its baseline.
	add(".", "./follower", "^BenchmarkHotPath$", fine)
	add(".", "./follower", "^BenchmarkReplicate$", std)
	add(".", "./wal", "^(BenchmarkAppend|BenchmarkGroupCommit)$", std)
	add(".", "./store", "^BenchmarkApply$", std)
	if !quick {
		add(".", "./store", "^BenchmarkSnapshot$", tc{"1s", 3})
	}
	// The comparisons with other libraries and the end-to-end runs.
	add("bench", ".", "^BenchmarkTransition$", fine)
	add("bench", ".", "^BenchmarkWALDurableBatchInterleaved$", std)
	add("bench", ".", "^BenchmarkWALBatch$", std)
	add("bench", ".", "^BenchmarkStream$", std)
	add("bench", ".", "^BenchmarkIdleAck$", std)
	add("bench", ".", "^BenchmarkStreamDirect$", std)
	add("bench", ".", "^BenchmarkStreamWindow$", std)
	add("bench", ".", "^BenchmarkAckLatency$", pick(tc{"2s", 3}, tc{"200ms", 1}))
	if quick {
		add("bench", ".", "^BenchmarkWALReopenAfterCrash$", tc{"3x", 1})
		add("bench", ".", "^BenchmarkMemory$", tc{fmt.Sprintf("%dx", memoryEntriesQuick), 1})
	} else {
		add("bench", ".", "^BenchmarkWALReopenAfterCrash$", tc{"5x", 1},
			fmt.Sprintf("WAL_REOPEN_BYTES=%d", reopenBytesFull), fmt.Sprintf("WAL_REOPEN_SEGMENT=%d", reopenSegmentFull))
		add("bench", ".", "^BenchmarkMemory$", tc{fmt.Sprintf("%dx", memoryEntriesFull), 1})
	}
	add("bench", ".", "^BenchmarkMemoryWindow$", pick(tc{fmt.Sprintf("%dx", windowEntries), 3}, tc{fmt.Sprintf("%dx", windowEntries), 1}))
	return steps
}

const (
	reopenBytesFull    = 1 << 30
	reopenSegmentFull  = 64 << 20
	reopenSegmentQuick = 8 << 20 // the benchmark's default
	memoryEntriesFull  = 10_000_000
	memoryEntriesQuick = 200_000
	// windowEntries is what BenchmarkMemoryWindow streams at each window:
	// enough for a few dozen GC cycles.
	windowEntries = 200_000
)

func runAll(ctx context.Context, root string, quick bool) (*Run, error) {
	r := &Run{Machine: probeMachine(ctx, root), Quick: quick, Started: time.Now().UTC()}
	tmp, err := os.MkdirTemp("", "tablefsm-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	steps := plan(quick)
	// Each package's test binary is built once, then run for each of its
	// steps (what go test -bench would do, without linking it again).
	binaries := map[string]string{}
	for i := range steps {
		s := &steps[i]
		dir := filepath.Join(root, s.Module)
		bin := binaries[s.Module+" "+s.Package]
		if bin == "" {
			bin = filepath.Join(tmp, fmt.Sprintf("pkg%d.test", len(binaries)))
			fmt.Fprintf(os.Stderr, "[%s] go test -c %s (in %s)\n", time.Since(r.Started).Round(time.Second), s.Package, s.Module)
			cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, s.Package)
			cmd.Dir, cmd.Stdout, cmd.Stderr = dir, os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("building the benchmarks of %s: %w", s.Package, err)
			}
			binaries[s.Module+" "+s.Package] = bin
		}
		args := []string{"-test.run", "^$", "-test.bench", s.Bench, "-test.benchmem", "-test.benchtime", s.Benchtime, "-test.count", fmt.Sprint(s.Count)}
		fmt.Fprintf(os.Stderr, "[%d/%d %s] %s: -bench %s -benchtime %s -count %d %s\n", i+1, len(steps),
			time.Since(r.Started).Round(time.Second), path.Join(s.Module, s.Package), s.Bench, s.Benchtime, s.Count, strings.Join(s.Env, " "))
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = filepath.Join(dir, s.Package) // where go test runs it
		cmd.Env = append(os.Environ(), s.Env...)
		var buf bytes.Buffer
		cmd.Stdout = io.MultiWriter(&buf, &progress{})
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s -bench %s: %w\n%s", path.Join(s.Module, s.Package), s.Bench, err, buf.String())
		}
		s.Output = buf.String()
	}
	r.Steps = steps
	r.Duration = time.Since(r.Started)
	r.Machine.LoadAfter = loadAverage()
	return r, nil
}

// progress echoes the benchmark result lines to stderr.
type progress struct{ partial []byte }

func (pr *progress) Write(p []byte) (int, error) {
	pr.partial = append(pr.partial, p...)
	for {
		i := bytes.IndexByte(pr.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		if line := pr.partial[:i+1]; bytes.HasPrefix(line, []byte("Benchmark")) && bytes.Contains(line, []byte("/op")) {
			fmt.Fprintf(os.Stderr, "    %s", line)
		}
		pr.partial = pr.partial[i+1:]
	}
}
