package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// verdict is how a figure stands against its budget.
type verdict int

const (
	noBudget verdict = iota
	met
	missed
	notMeasured
)

func (v verdict) String() string {
	switch v {
	case met:
		return "met"
	case missed:
		return "**missed**"
	case notMeasured:
		return "not measured"
	}
	return "—"
}

// row is one line of a table of figures.
type row struct {
	what, bench   string
	value, base   string
	ratio, budget string
	verdict       verdict
	note          string
}

// figures computes the report's rows from the results.
type figures struct {
	r       *Results
	missing []string
}

// get returns a median, noting what is missing.
func (f *figures) get(key, unit string) (float64, bool) {
	v, ok := f.r.med(key, unit)
	if !ok {
		f.missing = append(f.missing, key+" "+unit)
	}
	return v, ok
}

// check is a budget check: ratio against limit, at most (le) or at least.
func check(ratio, limit float64, le bool) verdict {
	if math.IsNaN(ratio) {
		return notMeasured
	}
	if (le && ratio <= limit) || (!le && ratio >= limit) {
		return met
	}
	return missed
}

func both(a, b verdict) verdict {
	switch {
	case a == notMeasured || b == notMeasured:
		return notMeasured
	case a == missed || b == missed:
		return missed
	}
	return met
}

func (f *figures) design() []row {
	r := f.r
	var rows []row
	nan := math.NaN()
	ratio := func(a, b float64, ok ...bool) float64 {
		for _, o := range ok {
			if !o {
				return nan
			}
		}
		return a / b
	}

	// Generated transitions. An op of the benchmark is two transitions;
	// it reports the time of one as ns/transition.
	tf, ok1 := f.get("bench:BenchmarkTransition/tablefsm", "ns/transition")
	ll, ok2 := f.get("bench:BenchmarkTransition/looplab", "ns/transition")
	st, ok3 := f.get("bench:BenchmarkTransition/stateless", "ns/transition")
	allocs, ok4 := f.get("bench:BenchmarkTransition/tablefsm", "allocs/op")
	q := ratio(tf, ll, ok1, ok2)
	rows = append(rows, row{
		what: "generated guarded transition vs looplab/fsm", bench: "bench: `BenchmarkTransition`",
		value: ns(tf) + "/transition", base: ns(ll) + "/transition", ratio: fxFor(q, 1.0/50), budget: "≤ 1/50 (0.02)",
		verdict: check(q, 1.0/50, true),
	})
	q = ratio(tf, st, ok1, ok3)
	rows = append(rows, row{
		what: "generated guarded transition vs qmuntal/stateless", bench: "bench: `BenchmarkTransition`",
		value: ns(tf) + "/transition", base: ns(st) + "/transition", ratio: fxFor(q, 1.0/20), budget: "≤ 1/20 (0.05)",
		verdict: check(q, 1.0/20, true),
	})
	rows = append(rows, row{
		what: "generated guarded transition: allocations", bench: "bench: `BenchmarkTransition/tablefsm`",
		value: allocsOf(allocs, ok4), base: "—", ratio: "—", budget: "0 allocs",
		verdict: check(ratio(allocs, 1, ok4), 0, true),
	})

	// Follower hot path.
	hp, ok1 := f.get("follower:BenchmarkHotPath", "ns/op")
	// allocs/op is an integer division (0 for anything under one
	// allocation per entry): judge the exact count after the warm-up.
	ha, ok2 := f.get("follower:BenchmarkHotPath", "allocs/entry")
	rows = append(rows, row{
		what: "follower per-entry hot path (no gRPC, no syscalls)", bench: "follower: `BenchmarkHotPath` (`allocs/entry`)",
		value: ns(hp) + "/entry, " + allocsPerEntry(ha, ok2), base: "—", ratio: "—", budget: "≤ 1 µs, 0 allocs (fewer than 1 per 1000 entries: amortized buffer growth)",
		verdict: both(check(ratio(hp, 1, ok1), 1000, true), check(ratio(ha, 1, ok2), maxAllocsPerEntry, true)),
		note:    "allocations of the whole process per entry after a warm-up of a tenth of the run, as a fraction; the allocs/op of -benchmem rounds anything below 1 down to 0",
	})

	// WAL group commit.
	wv, okr := f.get("wal:BenchmarkGroupCommit", "wal-vs-raw")
	wn, _ := r.med("wal:BenchmarkGroupCommit", "wal-ns/entry")
	rn, _ := r.med("wal:BenchmarkGroupCommit", "raw-ns/entry")
	rows = append(rows, row{
		what: "WAL pipelined append + coalesced sync, 100 B, window 1024", bench: "wal: `BenchmarkGroupCommit` (`wal-vs-raw`)",
		value: rate(1e9/wn) + " entries/s", base: rate(1e9/rn) + " entries/s (raw pwrite+fdatasync loop, prepared files)",
		ratio: fxFor(ratio(wv, 1, okr), 0.6), budget: "≥ 0.60 of raw", verdict: check(ratio(wv, 1, okr), 0.6, false),
		note: runsOf(r.all("wal:BenchmarkGroupCommit", "wal-vs-raw")),
	})

	// WAL durable batch of 64.
	key := "bench:BenchmarkWALDurableBatchInterleaved/batch=64"
	xr, ok1 := f.get(key, "x-vs-raftwal")
	xt, ok2 := f.get(key, "x-vs-tidwall")
	tn, _ := r.med(key, "tablefsm-ns/batch")
	rwn, _ := r.med(key, "raftwal-ns/batch")
	twn, _ := r.med(key, "tidwall-ns/batch")
	rows = append(rows, row{
		what: "WAL durable batch of 64 × 128 B vs hashicorp/raft-wal", bench: "bench: `BenchmarkWALDurableBatchInterleaved/batch=64`",
		value: ns(tn) + "/batch", base: ns(rwn) + "/batch", ratio: fxFor(ratio(xr, 1, ok1), 1) + " (speed)",
		budget: "≥ 1", verdict: check(ratio(xr, 1, ok1), 1, false), note: runsOf(r.all(key, "x-vs-raftwal")),
	})
	rows = append(rows, row{
		what: "WAL durable batch of 64 × 128 B vs tidwall/wal", bench: "bench: `BenchmarkWALDurableBatchInterleaved/batch=64`",
		value: ns(tn) + "/batch", base: ns(twn) + "/batch", ratio: fxFor(ratio(xt, 1, ok2), 1) + " (speed)",
		budget: "≥ 1", verdict: check(ratio(xt, 1, ok2), 1, false), note: runsOf(r.all(key, "x-vs-tidwall")),
	})

	// End to end: the window-1000 point of the interleaved window curve,
	// where followerd and the bare stream share the machine's drift.
	key = "bench:BenchmarkStreamWindow/window=1000"
	fr, ok1 := f.get(key, "followerd-entries/s")
	er, _ := r.med(key, "echo-entries/s")
	q, _ = r.med(key, "followerd-vs-echo")
	note := runsOf(r.all(key, "followerd-vs-echo"))
	if dq, ok := r.med(key, "durable-vs-echo"); ok {
		fq, _ := r.med(key, "followerd-vs-durable")
		note = strings.TrimPrefix(note+"; ", "; ") + fmt.Sprintf("the durable echo, interleaved with them (the bare stream plus one write and fdatasync per round of acks, nothing else: the least a follower that acks only what is durable pays), reached %s of the echo: a ratio no such follower reaches. followerd reached %s of the durable echo", fx(dq), fx(fq))
	}
	rows = append(rows, row{
		what: "end to end, 100 B, window 1000, cumulative acks vs a bare gRPC stream", bench: "bench: `BenchmarkStreamWindow/window=1000` (`followerd-vs-echo`)",
		value: rate(fr) + " entries/s", base: rate(er) + " entries/s (echo)", ratio: fxFor(ratio(q, 1, ok1), 0.7),
		budget: "≥ 0.70", verdict: check(ratio(q, 1, ok1), 0.7, false), note: note,
	})

	// Idle ack: against one fsync and one stream round trip measured
	// together (the durable echo); the parts measured apart are shown.
	key = "bench:BenchmarkIdleAck"
	ia, ok1 := f.get(key, "followerd-p50-µs")
	de, ok2 := f.get(key, "echo-fsync-p50-µs")
	fs, _ := r.med(key, "fsync-p50-µs")
	rt, _ := r.med(key, "echo-p50-µs")
	bound := de + 50
	q = ratio(ia, bound, ok1, ok2)
	rows = append(rows, row{
		what: "idle ack latency p50", bench: "bench: `BenchmarkIdleAck`",
		value: us(ia), base: fmt.Sprintf("%s fsync + round trip (durable echo) + 50 µs = %s", us(de), us(bound)),
		ratio: fxFor(q, 1), budget: "≤ 1", verdict: check(q, 1, true),
		note: fmt.Sprintf("one fsync and one stream round trip, measured together by the durable echo: the bare stream plus one write and fdatasync before each ack. Measured apart, back to back, they are %s (fsync probe) + %s (echo) = %s: less, because on this machine an fdatasync issued after the thread slept costs more than one issued in a tight loop (docs/node.md). Against the parts measured apart (+ 50 µs = %s) the ratio is %s: %s. The verdict depends on reading the budget's \"one fsync\" as the durable echo's", us(fs), us(rt), us(fs+rt), us(fs+rt+50), fx(ratio(ia, fs+rt+50, ok1, fs > 0, rt > 0)), check(ratio(ia, fs+rt+50, ok1, fs > 0, rt > 0), 1, true)),
	})

	// Reopen.
	seg := float64(reopenSegmentFull)
	if r.Quick {
		seg = reopenSegmentQuick
	}
	rd, ok1 := f.get("bench:BenchmarkWALReopenAfterCrash/open", "read-B/op")
	lb, _ := r.med("bench:BenchmarkWALReopenAfterCrash/open", "log-B")
	segs, _ := r.med("bench:BenchmarkWALReopenAfterCrash/open", "segments")
	on, _ := r.med("bench:BenchmarkWALReopenAfterCrash/open", "ns/op")
	sn, _ := r.med("bench:BenchmarkWALReopenAfterCrash/full-scan", "ns/op")
	q = ratio(rd, seg, ok1)
	rows = append(rows, row{
		what: fmt.Sprintf("reopen after a crash, %s WAL in %.0f segments of %s", mib(lb), segs, mib(seg)), bench: "bench: `BenchmarkWALReopenAfterCrash`",
		value: fmt.Sprintf("Open reads %s in %s", mib(rd), ns(on)), base: fmt.Sprintf("one segment (%s); reading the whole log takes %s", mib(seg), ns(sn)),
		ratio: fxFor(q, 1.1) + " segments", budget: "scans only the last segment (≤ 1.1 segments read)", verdict: check(q, 1.1, true),
	})
	if r.Quick {
		rows[len(rows)-1].note = "quick run: a 64 MiB log, not 1 GiB"
	}

	// Memory.
	hf, ok1 := f.get("bench:BenchmarkMemory", "heap-first-MiB")
	hl, _ := r.med("bench:BenchmarkMemory", "heap-last-MiB")
	p1, _ := r.med("bench:BenchmarkMemory", "heap-peak1-MiB")
	p2, _ := r.med("bench:BenchmarkMemory", "heap-peak2-MiB")
	s1, okr := f.get("bench:BenchmarkMemory", "rss-peak1-MiB")
	s2, _ := r.med("bench:BenchmarkMemory", "rss-peak2-MiB")
	entries, _ := r.med("bench:BenchmarkMemory", "entries")
	shortRun := ""
	if entries < 10e6 {
		shortRun = fmt.Sprintf("measured over %s entries, not 10 M, to keep the run short. ", count(entries))
	}
	rows = append(rows, row{
		what:  "memory over a long stream (window 1000)",
		bench: "bench: `BenchmarkMemory`",
		value: fmt.Sprintf("live heap peak %.1f MiB in the second half of %s entries (%.1f after the first tenth, %.1f at the end); resident set peak %.1f MiB", p2, count(entries), hf, hl, s2),
		base:  fmt.Sprintf("peaks in the first half: heap %.1f MiB, resident set %.1f MiB", p1, s1), ratio: fx(ratio(p2, p1, ok1)) + " (heap), " + fx(ratio(s2, s1, okr)) + " (RSS)",
		budget:  "flat over 10 M entries: second-half peak ≤ 1.25 × first (heap: or within 2 MiB), heap and resident set",
		verdict: both(memoryVerdict(p1, p2, ok1), check(ratio(s2, s1, okr), 1.25, true)),
		note: shortRun + "Every sample is taken between streams, after a GC: nothing accumulates from one stream to the next (memory in flight is the next row). " +
			"The resident set counts what the Go heap does not (Pebble's memtables and block cache, outside it in cgo builds). " +
			"The heap is not monotonic: the WAL keeps a 4-byte position for each entry of its active segment until the segment rolls over, " +
			"so it is bounded by the segment size (64 MiB by default) rather than by the window",
	})
	rows = append(rows, f.memoryInFlight())
	return rows
}

// inFlightRecord is the size of an entry of the memory benchmarks as the
// log writes it (the 100-byte value with its frame, term, offset and
// timestamp): the unit of the budget of memory in flight.
const inFlightRecord = 128

// maxInFlightRecords is that budget: the live heap an entry in flight
// may hold, in records. Each entry is held a few times over while it is in
// flight (the leader's copy until its ack, gRPC's buffers on both sides,
// the decoded Append, the log's buffer until the sync), each in a buffer
// of a size class of its own; 16 records leave room for that and catch
// anything that keeps more per entry.
const maxInFlightRecords = 16

// memoryInFlight is the row of the memory the entries in flight hold:
// the peaks of the live heap at two windows over the same number of
// entries, their difference spread over the difference of the windows.
func (f *figures) memoryInFlight() row {
	lo, hi := memoryWindows[0], memoryWindows[len(memoryWindows)-1]
	key := func(w int) string { return fmt.Sprintf("bench:BenchmarkMemoryWindow/window=%d", w) }
	pl, ok1 := f.get(key(lo), "live-peak-MiB")
	ph, ok2 := f.get(key(hi), "live-peak-MiB")
	cl, _ := f.r.med(key(lo), "gc-cycles")
	ch, _ := f.r.med(key(hi), "gc-cycles")
	n, _ := f.r.med(key(hi), "entries")
	perEntry := (ph - pl) * (1 << 20) / float64(hi-lo)
	q := math.NaN()
	if ok1 && ok2 && min(cl, ch) >= minCycles {
		q = perEntry / inFlightRecord
	}
	value := "—"
	if ok1 && ok2 {
		value = fmt.Sprintf("%.0f B per entry in flight", perEntry)
	}
	return row{
		what:  fmt.Sprintf("memory in flight (cumulative acks): live heap per entry of the window, windows %d and %d", lo, hi),
		bench: "bench: `BenchmarkMemoryWindow`",
		value: value,
		base: fmt.Sprintf("peak live heap %.1f MiB at window %d, %.1f MiB at window %d, %s entries each; a record is %d B",
			ph, hi, pl, lo, count(n), inFlightRecord),
		ratio:   fxFor(q, maxInFlightRecords) + " records",
		budget:  fmt.Sprintf("bounded by the window: ≤ %d records (%d B) per entry in flight", maxInFlightRecords, maxInFlightRecords*inFlightRecord),
		verdict: check(q, maxInFlightRecords, true),
		note: fmt.Sprintf("the live heap is sampled at the end of each GC cycle while the stream runs (medians %.0f and %.0f cycles; fewer than %d: not measured). ", cl, ch, minCycles) +
			"Everything but the entries in flight is the same at both windows (the WAL's index of its active segment, Pebble's and gRPC's buffers), so the difference of the peaks is theirs",
	}
}

// minCycles is the fewest GC cycles a peak of BenchmarkMemoryWindow is
// judged on.
const minCycles = 3

// memoryWindows are the windows of BenchmarkMemoryWindow.
var memoryWindows = []int{100, 10000}

// maxAllocsPerEntry is what "0 allocs" allows of an exact count: the
// amortized growth of buffers, well under one allocation per 1000 entries.
const maxAllocsPerEntry = 0.001

func allocsPerEntry(v float64, ok bool) string {
	if !ok {
		return "? allocs"
	}
	return fmt.Sprintf("%.2g allocs", v)
}

func memoryVerdict(first, last float64, ok bool) verdict {
	switch {
	case !ok:
		return notMeasured
	case last <= 1.25*first || last-first <= 2:
		return met
	}
	return missed
}

func (f *figures) packages() []row {
	r := f.r
	var rows []row
	rc, ok := f.get("wal:BenchmarkGroupCommit", "reader-cost")
	v := notMeasured
	if ok {
		v = check(rc, 0.2, true)
	}
	rows = append(rows, row{
		what: "WAL: throughput a tailing reader takes from the writer", bench: "wal: `BenchmarkGroupCommit` (`reader-cost`)",
		value: "—", base: "the writer alone", ratio: fxIfFor(rc, ok, 0.2), budget: "≤ 0.20 (docs/wal.md)", verdict: v,
		note: joinNotes(runsOf(r.all("wal:BenchmarkGroupCommit", "reader-cost")), negativeNote(r.all("wal:BenchmarkGroupCommit", "reader-cost"))),
	})
	aa, ok := f.get("wal:BenchmarkAppend", "allocs/op")
	an, _ := r.med("wal:BenchmarkAppend", "ns/op")
	v = notMeasured
	if ok {
		v = check(aa, 0, true)
	}
	rows = append(rows, row{
		what: "WAL: AppendAsync in steady state", bench: "wal: `BenchmarkAppend`",
		value: ns(an) + "/op, " + allocsOf(aa, ok), base: "—", ratio: "—", budget: "0 allocs (docs/wal.md)", verdict: v,
	})
	key := "bench:BenchmarkWALDurableBatchInterleaved/batch=1"
	for _, other := range []struct{ unit, name string }{{"x-vs-raftwal", "hashicorp/raft-wal"}, {"x-vs-tidwall", "tidwall/wal"}} {
		x, ok := f.get(key, other.unit)
		v = notMeasured
		if ok {
			v = check(x, 1, false)
		}
		tn, _ := r.med(key, "tablefsm-ns/batch")
		bn, _ := r.med(key, strings.TrimPrefix(other.unit, "x-vs-")+"-ns/batch")
		rows = append(rows, row{
			what: "WAL: durable batch of 1 × 128 B vs " + other.name, bench: "bench: `BenchmarkWALDurableBatchInterleaved/batch=1`",
			value: ns(tn) + "/batch", base: ns(bn) + "/batch", ratio: fxIfFor(x, ok, 1) + " (speed)", budget: "≥ 1 (docs/wal.md)", verdict: v,
			note: runsOf(r.all(key, other.unit)),
		})
	}
	rows = append(rows,
		f.storeApply("writes=1", "store: applying entries of 1 put, one at a time, vs raw Pebble batches of one entry"),
		f.storeApply("writes=64", "store: applying entries of 64 puts, one at a time, vs raw Pebble batches of one entry"),
		f.storeApply("writes=1,run=256", "store: applying entries of 1 put in runs of 256 (as the applier does), vs raw Pebble batches of 256 entries"))
	return rows
}

// storeApply is a row of the store's apply budget: at least 80 % of raw
// Pebble batches with the same sync setting (docs/store.md).
func (f *figures) storeApply(name, what string) row {
	r := f.r
	key := "store:BenchmarkApply/" + name
	x, ok := f.get(key, "kv/raw")
	v := notMeasured
	if ok {
		v = check(x, 0.8, false)
	}
	kv, _ := r.med(key, "kv-entries/s")
	raw, _ := r.med(key, "raw-entries/s")
	return row{
		what: what, bench: "store: `BenchmarkApply/" + name + "` (`kv/raw`)",
		value: rate(kv) + " entries/s", base: rate(raw) + " entries/s", ratio: fxIfFor(x, ok, 0.8), budget: "≥ 0.80 (docs/store.md)", verdict: v,
		note: runsOf(r.all(key, "kv/raw")),
	}
}

// others are figures without a budget.
func (f *figures) others() []row {
	r := f.r
	var rows []row
	wal, okw := r.med("follower:BenchmarkReplicate/wal", "ns/op")
	for _, c := range []struct{ sub, what string }{
		{"follower-cumulative-no-apply", "follower, cumulative acks, nothing committed"},
		{"follower-cumulative", "follower, cumulative acks, applying what is committed"},
		{"follower-per-entry", "follower, per-entry acks, applying what is committed"},
	} {
		v, ok := r.med("follower:BenchmarkReplicate/"+c.sub, "ns/op")
		if !ok || !okw {
			continue
		}
		rows = append(rows, row{
			what: "in-process replication (fake leader stream, real disk): " + c.what, bench: "follower: `BenchmarkReplicate/" + c.sub + "`",
			value: rate(1e9/v) + " entries/s", base: rate(1e9/wal) + " entries/s (bare WAL pipeline)", ratio: fx(wal / v),
		})
	}
	for _, mode := range []string{"cumulative", "per-entry"} {
		fn, ok1 := r.med("bench:BenchmarkStream/followerd/"+mode, "ns/op")
		en, ok2 := r.med("bench:BenchmarkStream/echo/"+mode, "ns/op")
		if ok1 && ok2 {
			rows = append(rows, row{
				what: "end to end, window 1000, " + mode + " acks vs a bare gRPC stream, measured one after the other", bench: "bench: `BenchmarkStream/*/" + mode + "`",
				value: rate(1e9/fn) + " entries/s", base: rate(1e9/en) + " entries/s (echo)", ratio: fx(en / fn),
			})
		}
	}
	la, ok1 := r.med("bench:BenchmarkStreamDirect/log+apply", "ns/op")
	lo, ok2 := r.med("bench:BenchmarkStreamDirect/log", "ns/op")
	if ok1 && ok2 {
		rows = append(rows, row{
			what: "follower without gRPC (channels), window 1000: log + apply vs log only", bench: "bench: `BenchmarkStreamDirect`",
			value: rate(1e9/la) + " entries/s", base: rate(1e9/lo) + " entries/s", ratio: fx(lo / la),
		})
		if en, ok := r.med("bench:BenchmarkStream/echo/cumulative", "ns/op"); ok {
			rows = append(rows, row{
				what: "follower without gRPC, log + apply vs a bare gRPC stream", bench: "bench: `BenchmarkStreamDirect`, `BenchmarkStream/echo/cumulative`",
				value: rate(1e9/la) + " entries/s", base: rate(1e9/en) + " entries/s (echo)", ratio: fx(en / la),
			})
		}
	}
	for _, c := range []struct{ sub, base, what string }{
		{"out/store", "out/read", "snapshot out (checkpoint + chunks) vs reading the same files"},
		{"out/store", "copy", "snapshot out vs copying the files (read, write, fsync)"},
		{"in/store", "in/write", "snapshot in (stage, verify, install) vs writing the same bytes with fsync"},
		{"in/store", "copy", "snapshot in vs copying the files"},
	} {
		v, ok1 := r.med("store:BenchmarkSnapshot/"+c.sub, "MB/s")
		b, ok2 := r.med("store:BenchmarkSnapshot/"+c.base, "MB/s")
		if ok1 && ok2 {
			rows = append(rows, row{
				what: "store: " + c.what, bench: "store: `BenchmarkSnapshot/" + c.sub + "`",
				value: fmt.Sprintf("%.0f MB/s", v), base: fmt.Sprintf("%.0f MB/s", b), ratio: fx(v / b),
			})
		}
	}
	return rows
}

// summary writes the lines that say which budgets of rows were missed,
// and which were not measured.
func summary(w io.Writer, rows []row) {
	var missedNames, unmeasured []string
	for _, r := range rows {
		switch r.verdict {
		case missed:
			missedNames = append(missedNames, r.what)
		case notMeasured:
			unmeasured = append(unmeasured, r.what)
		}
	}
	if len(missedNames) == 0 && len(unmeasured) == 0 {
		fmt.Fprintf(w, "**Every budget was met in this run.**\n\n")
		return
	}
	if len(missedNames) > 0 {
		fmt.Fprintf(w, "**Missed in this run (%d of %d):** %s.\n\n", len(missedNames), len(rows), strings.Join(missedNames, "; "))
	}
	if len(unmeasured) > 0 {
		fmt.Fprintf(w, "**Not measured in this run (%d of %d):** %s.\n\n", len(unmeasured), len(rows), strings.Join(unmeasured, "; "))
	}
}

func render(w io.Writer, run *Run, r *Results, plots []plotFile) {
	f := &figures{r: r}
	design, pkgs, others := f.design(), f.packages(), f.others()
	m := run.Machine
	mode := "full run: most benchmarks `-count 3` (the cheap CPU-bound ones 5) at `-benchtime 1s`, medians; the reopen of a 1 GiB WAL and the memory over 10 M entries once (the commands are listed at the end)"
	if run.Quick {
		mode = "**quick run** (`BENCH_QUICK=1`): one count, short bench times, a 64 MiB WAL for the reopen and 200 k entries for the memory benchmark — figures are rough"
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# Benchmarks\n\n")
	p("Generated by `make bench` (`bench/cmd/report`) on %s in %s; do not edit by hand. Mode: %s.\n\n",
		run.Started.Format("2006-01-02 15:04 UTC"), run.Duration.Round(time.Second), mode)
	p("Every figure is compared with a baseline measured in the same run on the same machine, as\n")
	p("the performance budgets of the design ask: the machines are shared and noisy,\n")
	p("and absolute numbers mean little. Each value is the median of the runs.\n\n")

	p("## Machine\n\n| | |\n|---|---|\n")
	p("| CPU | %s, %d cores |\n| Memory | %.1f GiB |\n| OS, kernel | %s, Linux %s |\n| Go | %s |\n| Temporary directory | `%s`: %s |\n| Load average (1, 5, 15 min) | %s before, %s after |\n\n",
		m.CPU, m.Cores, m.MemoryGiB, m.OS, m.Kernel, m.Go, m.TempDir, m.FileSystem, m.LoadBefore, m.LoadAfter)

	p("## The budgets of the design\n\n")
	if run.Quick {
		p("A quick run measures at a smaller scale than some budgets are set at (memory over 10 M entries, the reopen of a 1 GiB log): its verdicts are indicative only; `make bench` gives the full run's.\n\n")
	}
	summary(w, design)
	table(w, design, true)

	p("## Budgets the packages set themselves\n\n")
	summary(w, pkgs)
	table(w, pkgs, true)

	if len(others) > 0 {
		p("## Other figures\n\nNo budget; they show where the time goes.\n\n")
		table(w, others, false)
	}

	p("## Curves\n\n")
	for _, pl := range plots {
		p("### %s\n\n%s\n\n![%s](%s)\n\n", pl.title, pl.caption, pl.title, pl.file)
		if len(pl.table) > 0 {
			p("%s\n", strings.Join(pl.table, "\n"))
			p("\n")
		}
	}
	if len(f.missing) > 0 {
		p("## Not measured\n\nThe run produced no figure for: %s.\n\n", strings.Join(f.missing, ", "))
	}

	p("## How to run\n\n")
	took := "about 5 minutes on 2 cores"
	if !run.Quick {
		took = "this one took " + run.Duration.Round(time.Second).String()
	}
	p("```sh\nmake bench                 # the full run (%s), rewrites this file and its plots\n", took)
	p("BENCH_QUICK=1 make bench   # a short run, under 2 minutes\n")
	p("cd bench && go run ./cmd/report -save run.json   # also keep the raw go test output\n")
	p("cd bench && go run ./cmd/report -load run.json   # render again without running\n```\n\n")
	p("The report builds each package's test binary once and runs these, one at a time so that no two share the machine (the same as):\n\n")
	for _, s := range run.Steps {
		env := ""
		if len(s.Env) > 0 {
			env = strings.Join(s.Env, " ") + " "
		}
		dir := ""
		if s.Module == "bench" {
			dir = "cd bench && "
		}
		p("- `%s%sgo test -run '^$' -bench '%s' -benchmem -benchtime %s -count %d %s`\n", dir, env, s.Bench, s.Benchtime, s.Count, s.Package)
	}
	p("\nWhat each benchmark measures is documented on it; [docs/wal.md](wal.md), [docs/store.md](store.md),\n")
	p("[docs/follower.md](follower.md) and [docs/node.md](node.md) discuss the figures.\n")
}

func table(w io.Writer, rows []row, budgets bool) {
	if budgets {
		fmt.Fprintf(w, "| What | Value | Baseline (same run) | Ratio | Budget | Verdict | Benchmark |\n|---|---|---|---|---|---|---|\n")
	} else {
		fmt.Fprintf(w, "| What | Value | Baseline (same run) | Ratio | Benchmark |\n|---|---|---|---|---|\n")
	}
	var notes []string
	for _, r := range rows {
		what := r.what
		if r.note != "" {
			notes = append(notes, r.note)
			what += fmt.Sprintf(" <sup>%d</sup>", len(notes))
		}
		if budgets {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", what, r.value, r.base, r.ratio, r.budget, r.verdict, r.bench)
		} else {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", what, r.value, r.base, r.ratio, r.bench)
		}
	}
	fmt.Fprintln(w)
	for i, n := range notes {
		fmt.Fprintf(w, "<sup>%d</sup> %s  \n", i+1, n)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
	}
}

// Formatting.

func ns(v float64) string {
	switch {
	case math.IsNaN(v) || v == 0:
		return "?"
	case v < 1e3:
		return fmt.Sprintf("%.3g ns", v)
	case v < 1e6:
		return fmt.Sprintf("%.3g µs", v/1e3)
	case v < 1e9:
		return fmt.Sprintf("%.3g ms", v/1e6)
	}
	return fmt.Sprintf("%.3g s", v/1e9)
}

func us(v float64) string { return ns(v * 1e3) }

func rate(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0) || v == 0:
		return "?"
	case v < 1e3:
		return fmt.Sprintf("%.3g", v)
	case v < 1e6:
		return fmt.Sprintf("%.3g k", v/1e3)
	}
	return fmt.Sprintf("%.3g M", v/1e6)
}

func count(v float64) string {
	if v >= 1e6 {
		return fmt.Sprintf("%g M", v/1e6)
	}
	if v >= 1e3 {
		return fmt.Sprintf("%g k", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

func mib(v float64) string {
	if v >= 1<<30 {
		return fmt.Sprintf("%.3g GiB", v/(1<<30))
	}
	return fmt.Sprintf("%.3g MiB", v/(1<<20))
}

// fx prints a ratio with three significant digits, the precision budgets
// are judged at.
func fx(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "?"
	}
	return fmt.Sprintf("%.3g", v)
}

// fxIfFor is fxFor, or "?" when v was not measured.
func fxIfFor(v float64, ok bool, limit float64) string {
	if !ok {
		return "?"
	}
	return fxFor(v, limit)
}

// fxFor formats a ratio judged against limit as fx does, with as many
// more significant digits as it takes not to print a ratio that misses
// the limit as the limit itself (0.02004 against 1/50).
func fxFor(v, limit float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) || v == limit {
		return fx(v)
	}
	for d := 3; d < 17; d++ {
		if s := fmt.Sprintf("%.*g", d, v); s != fmt.Sprintf("%.*g", d, limit) {
			return s
		}
	}
	return fx(v)
}

func allocsOf(v float64, ok bool) string {
	if !ok {
		return "? allocs"
	}
	return fmt.Sprintf("%g allocs", v)
}

func negativeNote(vs []float64) string {
	for _, v := range vs {
		if v < 0 {
			return "negative: the run with a reader was faster (noise)"
		}
	}
	return ""
}

func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

// runsOf lists the values of each run when there are several.
func runsOf(vs []float64) string {
	if len(vs) < 2 {
		return ""
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprintf("%.2f", v)
	}
	return "runs: " + strings.Join(s, ", ")
}
