package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/wal"
)

// The benchmarks of this file feed the plots of docs/BENCHMARKS.md (see
// cmd/report): throughput against the window, the distribution of ack
// latencies, WAL throughput against the batch size, and memory over a
// long stream. Like the others, each compares with a baseline in the
// same run.

// streamWindows are the windows of BenchmarkStreamWindow.
var streamWindows = []int{1, 4, 16, 64, 256, 1000, 4096}

// BenchmarkStreamWindow: entries/s through followerd, through the bare
// echo stream and through the durable echo, cumulative acks, against the
// window (entries in flight). The three alternate in chunks of streams,
// so that the machine's drift hits them alike; each streams b.N entries.
// Reported: the entries/s of each, followerd's fraction of the echo's
// (the budget), the durable echo's fraction of the echo's, and
// followerd's of the durable echo's. The durable echo pays the least any
// follower that makes entries durable before acking them pays (one write
// and one fdatasync per round, nothing else): its fraction is one no such
// follower reaches.
func BenchmarkStreamWindow(b *testing.B) {
	for _, w := range streamWindows {
		b.Run(fmt.Sprintf("window=%d", w), func(b *testing.B) {
			sides := []*target{startFollower(b), startEcho(b), startDurableEcho(b)}
			var spent [3]time.Duration
			chunk := int64(min(max(16*w, 64), 8192))
			b.SetBytes(int64(len(sides)) * entrySize)
			b.ResetTimer()
			for from := int64(0); from < int64(b.N); from += chunk {
				n := min(chunk, int64(b.N)-from)
				for k := range sides {
					j := (k + int(from/chunk)) % len(sides) // rotate who goes first
					d, err := sides[j].timed(n, w, true, nil)
					if err != nil {
						b.Fatal(err)
					}
					spent[j] += d
				}
			}
			b.StopTimer()
			rate := func(d time.Duration) float64 { return float64(b.N) / d.Seconds() }
			b.ReportMetric(rate(spent[0]), "followerd-entries/s")
			b.ReportMetric(rate(spent[1]), "echo-entries/s")
			b.ReportMetric(rate(spent[2]), "durable-entries/s")
			b.ReportMetric(spent[1].Seconds()/spent[0].Seconds(), "followerd-vs-echo")
			b.ReportMetric(spent[1].Seconds()/spent[2].Seconds(), "durable-vs-echo")
			b.ReportMetric(spent[2].Seconds()/spent[0].Seconds(), "followerd-vs-durable")
		})
	}
}

// timed streams n entries as stream does and returns the time from the
// first send to the end of the stream, not counting the wait for earlier
// entries to be applied.
func (t *target) timed(n int64, window int, cumulative bool, lat *leader.Histogram) (time.Duration, error) {
	ctx := context.Background()
	if t.wait && t.next > 0 {
		if _, _, err := t.conn.Get(ctx, benchShard, t.next-1); err != nil {
			return 0, err
		}
	}
	key := make([]byte, 0, 32)
	start := time.Now()
	res, err := t.conn.Replicate(ctx, leader.Run{
		Shard: benchShard, Term: t.term, First: t.next, Count: n, Window: window,
		Cumulative: cumulative, Commit: t.next - 1, Latency: lat,
		Value: func(off logpos.Offset, buf []byte) []byte {
			key = strconv.AppendInt(append(key[:0], "bench/"...), int64(off), 10)
			return leader.AppendPaddedPut(buf, key, entrySize)
		},
	})
	d := time.Since(start)
	if err != nil {
		return d, err
	}
	t.next = res.LastAck + 1
	return d, nil
}

// latencyQuantiles are the quantiles BenchmarkAckLatency reports, as
// metrics named q<permille>-µs (q500-µs is the median).
var latencyQuantiles = []float64{
	.001, .01, .05, .1, .15, .2, .25, .3, .35, .4, .45, .5, .55, .6, .65, .7,
	.75, .8, .85, .9, .95, .975, .99, .995, .999,
}

// BenchmarkAckLatency: the distribution of ack latencies (from just before
// an entry's Append is sent to the ack that covers it) of followerd under
// a steady stream, with per-entry and cumulative acks, at two windows.
func BenchmarkAckLatency(b *testing.B) {
	for _, w := range []int{64, 1000} {
		for _, mode := range []struct {
			name       string
			cumulative bool
		}{{"per-entry", false}, {"cumulative", true}} {
			b.Run(fmt.Sprintf("window=%d/%s", w, mode.name), func(b *testing.B) {
				t := startFollower(b)
				lat := t.streamLatency(b, int64(b.N), w, mode.cumulative)
				for _, q := range latencyQuantiles {
					b.ReportMetric(float64(lat.Quantile(q).Nanoseconds())/1e3, "q"+strconv.FormatFloat(q*1000, 'f', -1, 64)+"-µs")
				}
			})
		}
	}
}

// streamLatency streams n entries and returns their ack latencies.
func (t *target) streamLatency(b *testing.B, n int64, window int, cumulative bool) *leader.Histogram {
	b.Helper()
	lat := &leader.Histogram{}
	b.SetBytes(entrySize)
	b.ResetTimer()
	if _, err := t.timed(n, window, cumulative, lat); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	return lat
}

// walBatches are the batch sizes of BenchmarkWALBatch.
var walBatches = []int{1, 4, 16, 64, 256, 1024}

const (
	walValueSize = 100
	// rawRecordSize is what the raw baseline writes per entry: about
	// what the log writes for a 100-byte value (frame, term, offset,
	// timestamp, value).
	rawRecordSize = 128
)

// BenchmarkWALBatch: durable batches of 100-byte entries through the log
// (AppendAsync × batch, then Sync) against the raw ceiling of the same
// disk: the same number of bytes written into a file prepared as the log
// prepares a segment (and never rewritten), with one pwrite and one
// fdatasync per batch. The two alternate, one batch
// each per op, so that the disk's drift hits both. Reported: entries/s
// of each and the log's fraction of the raw rate.
func BenchmarkWALBatch(b *testing.B) {
	for _, n := range walBatches {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			l, err := wal.Open(b.TempDir(), wal.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			// Large enough for the whole run: like the log, which always
			// writes into freshly prepared space, the baseline never
			// rewrites blocks it already wrote (whose fdatasync would
			// persist data only, a cheaper operation than the log's).
			raw := newRawFile(b, max(64<<20, int64(b.N)*int64(n)*rawRecordSize+rawRecordSize))
			defer raw.f.Close()
			value := make([]byte, walValueSize)
			buf := make([]byte, n*rawRecordSize)
			ctx := context.Background()
			next := logpos.Offset(0)
			sides := []func() error{
				func() error {
					for range n {
						if err := l.AppendAsync(logpos.Entry{Term: 1, Offset: next, Value: value, Timestamp: 1}); err != nil {
							return err
						}
						next++
					}
					_, err := l.Sync(ctx)
					return err
				},
				func() error { return raw.writeSync(buf) },
			}
			var spent [2]time.Duration
			b.ResetTimer()
			for i := range b.N {
				for k := range sides {
					j := (k + i) % len(sides)
					start := time.Now()
					if err := sides[j](); err != nil {
						b.Fatal(err)
					}
					spent[j] += time.Since(start)
				}
			}
			b.StopTimer()
			rate := func(d time.Duration) float64 { return float64(b.N*n) / d.Seconds() }
			b.ReportMetric(rate(spent[0]), "wal-entries/s")
			b.ReportMetric(rate(spent[1]), "raw-entries/s")
			b.ReportMetric(spent[1].Seconds()/spent[0].Seconds(), "wal-vs-raw")
		})
	}
}

// rawFile is a preallocated file written in a ring with pwrite and
// fdatasync: the most a disk does for durable appends.
type rawFile struct {
	f    vfs.File
	size int64
	at   int64
}

func newRawFile(b *testing.B, size int64) *rawFile {
	b.Helper()
	f, err := vfs.Default.OpenReadWrite(filepath.Join(b.TempDir(), "raw"), vfs.WriteCategoryUnspecified)
	if err != nil {
		b.Fatal(err)
	}
	_ = f.Preallocate(0, size)
	if _, err := f.WriteAt(make([]byte, 1), size-1); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return &rawFile{f: f, size: size}
}

func (r *rawFile) writeSync(p []byte) error {
	if r.at+int64(len(p)) > r.size {
		r.at = 0
	}
	if _, err := r.f.WriteAt(p, r.at); err != nil {
		return err
	}
	r.at += int64(len(p))
	return r.f.SyncData()
}

// BenchmarkMemory streams b.N entries (run it with -benchtime Nx) to
// followerd in ten streams, window 1000, cumulative acks, and measures
// the memory of the process (node and leader) after each tenth: the live
// Go heap after a GC, and the resident set after returning free memory to
// the OS (VmRSS), which also counts what the Go heap does not: Pebble's
// memtables and block cache, allocated outside it in cgo builds. Memory
// must not grow with the number of entries. Neither need be monotonic (the
// WAL indexes the entries of its active segment until it rolls over,
// memtables fill and flush), so the peaks of the two halves of the run are
// compared. Reported: the heap after the first tenth and at the end, the
// peaks of each half, heap and RSS, and the second heap peak / the first.
//
// Every sample is taken between streams: this shows that nothing
// accumulates from one stream to the next. What a stream holds while it
// is in flight is BenchmarkMemoryWindow's.
func BenchmarkMemory(b *testing.B) {
	t := startFollower(b)
	const parts = 10
	heap := func() float64 {
		// Twice: the first GC only moves pooled buffers aside.
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc) / (1 << 20)
	}
	var first, last float64
	var peak, rssPeak [2]float64
	per := max(int64(b.N)/parts, 1)
	for i := range parts {
		t.stream(b, per, window, true)
		last = heap()
		if i == 0 {
			first = last
		}
		half := i * 2 / parts
		peak[half] = max(peak[half], last)
		debug.FreeOSMemory()
		rss, err := residentMiB()
		if err != nil {
			b.Fatal(err)
		}
		rssPeak[half] = max(rssPeak[half], rss)
	}
	b.ReportMetric(first, "heap-first-MiB")
	b.ReportMetric(last, "heap-last-MiB")
	b.ReportMetric(peak[0], "heap-peak1-MiB")
	b.ReportMetric(peak[1], "heap-peak2-MiB")
	b.ReportMetric(peak[1]/peak[0], "heap-growth")
	b.ReportMetric(rssPeak[0], "rss-peak1-MiB")
	b.ReportMetric(rssPeak[1], "rss-peak2-MiB")
	b.ReportMetric(float64(per*parts), "entries")
}

// memoryWindows are the windows of BenchmarkMemoryWindow: far enough
// apart that the entries in flight, not the noise, make the difference.
var memoryWindows = []int{100, 10000}

// BenchmarkMemoryWindow streams b.N entries (run it with -benchtime Nx)
// to a fresh followerd, cumulative acks, at each window of memoryWindows,
// and samples the live Go heap of the process (node and leader) at the
// end of every GC cycle while the stream is in flight. Reported: the peak
// and the number of cycles sampled (a peak of few cycles means little).
// The memory that entries in flight hold is the difference between the
// peaks of two windows over the same number of entries, divided by the
// difference of the windows (see cmd/report): everything else (the WAL's
// index of its active segment, Pebble's buffers, gRPC's) is the same in
// both runs.
func BenchmarkMemoryWindow(b *testing.B) {
	for _, w := range memoryWindows {
		b.Run(fmt.Sprintf("window=%d", w), func(b *testing.B) {
			t := startFollower(b)
			runtime.GC()
			s := sampleLiveHeap()
			t.stream(b, int64(b.N), w, true)
			peak, cycles := s.stop()
			b.ReportMetric(float64(peak)/(1<<20), "live-peak-MiB")
			b.ReportMetric(float64(cycles), "gc-cycles")
			b.ReportMetric(float64(b.N), "entries")
		})
	}
}

// liveHeapSampler records the live heap (/gc/heap/live:bytes) after each
// GC cycle: a cleanup attached to a fresh object runs once per cycle, and
// arms the next.
type liveHeapSampler struct {
	mu      sync.Mutex
	stopped bool
	peak    uint64
	cycles  int
	sample  [1]metrics.Sample
}

func sampleLiveHeap() *liveHeapSampler {
	s := &liveHeapSampler{}
	s.sample[0].Name = "/gc/heap/live:bytes"
	s.arm()
	return s
}

func (s *liveHeapSampler) arm() {
	runtime.AddCleanup(new([16]byte), func(s *liveHeapSampler) { s.cycleEnded() }, s)
}

func (s *liveHeapSampler) cycleEnded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	metrics.Read(s.sample[:])
	s.peak = max(s.peak, s.sample[0].Value.Uint64())
	s.cycles++
	s.arm()
}

// stop ends the sampling and returns the peak and the number of cycles.
func (s *liveHeapSampler) stop() (peak uint64, cycles int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	return s.peak, s.cycles
}

// residentMiB returns the process's resident set (VmRSS) in MiB.
func residentMiB() (float64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS: %w", err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}
