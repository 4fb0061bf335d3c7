package follower

import (
	"context"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/wal"
)

const (
	benchWindow    = 1024
	benchValueSize = 100
)

// benchValue is a 100-byte key-value write batch.
var benchValue = func() []byte {
	v := kvPut("bench-key", "")
	pad := benchValueSize - len(v)
	return kvPut("bench-key", string(make([]byte, pad-2)))
}()

// windowStream is a leader that keeps at most window entries unacked:
// Recv hands out entries 0..n-1 (one reused message, as a gRPC stream
// would decode into fresh ones) and blocks only while the window is full;
// Send records the acked offset. It half-closes after the last entry.
// When advertise is set, each Append carries the last acked offset as the
// commit offset, so the applier works too.
type windowStream struct {
	ctx       context.Context
	cancel    context.CancelFunc
	n         int64
	window    int64
	advertise bool

	next    int64 // owned by Recv
	acked   atomic.Int64
	waiting atomic.Bool
	mu      sync.Mutex
	cond    sync.Cond

	msg   replicationpb.Append
	entry replicationpb.LogEntry

	// warm, when positive, is the entry at which Recv records the
	// process's allocation count in mallocs (the end of the warm-up).
	warm    int64
	mallocs uint64
}

func newWindowStream(term, n, window int64, cumulative, advertise bool) *windowStream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &windowStream{ctx: ctx, cancel: cancel, n: n, window: window, advertise: advertise}
	s.acked.Store(-1)
	s.cond.L = &s.mu
	s.entry = replicationpb.LogEntry{Term: term, Value: benchValue}
	s.msg = replicationpb.Append{Term: term, Entry: &s.entry, CumulativeAcksSupported: cumulative, CommitOffset: -1}
	return s
}

func (s *windowStream) Context() context.Context { return s.ctx }

func (s *windowStream) Recv() (*replicationpb.Append, error) {
	if s.next-s.acked.Load() > s.window {
		s.mu.Lock()
		s.waiting.Store(true)
		for s.next-s.acked.Load() > s.window && s.ctx.Err() == nil {
			s.cond.Wait()
		}
		s.waiting.Store(false)
		s.mu.Unlock()
	}
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	if s.next == s.n {
		return nil, io.EOF
	}
	if s.next == s.warm {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s.mallocs = ms.Mallocs
	}
	s.entry.Offset = s.next
	if s.advertise {
		s.msg.CommitOffset = s.acked.Load()
	}
	s.next++
	return &s.msg, nil
}

func (s *windowStream) Send(a *replicationpb.Ack) error {
	s.acked.Store(max(s.acked.Load(), a.Offset))
	if s.waiting.Load() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	}
	return nil
}

// replicateBench opens a follower on fs, fences it and streams b.N entries
// through Replicate with the window.
func replicateBench(b *testing.B, fs vfs.FS, dir string, cumulative, advertise bool) {
	f, err := Open(Config{Dir: dir, FS: fs, SegmentSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		b.Fatal(err)
	}
	s := newWindowStream(1, int64(b.N), benchWindow, cumulative, advertise)
	// allocs/entry counts the allocations of the whole process after a
	// warm-up of a tenth of the entries, as a fraction: the allocs/op of
	// -benchmem is an integer division that reports 0 for anything below
	// one allocation per entry (one per sync round, say).
	s.warm = int64(b.N) / 10
	b.SetBytes(benchValueSize)
	b.ReportAllocs()
	b.ResetTimer()
	err = f.Replicate(s)
	b.StopTimer()
	s.cancel()
	if err != nil {
		b.Fatal(err)
	}
	if got := s.acked.Load(); got != int64(b.N)-1 {
		b.Fatalf("acked up to %d of %d", got, b.N)
	}
	if s.warm > 0 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.Mallocs-s.mallocs)/float64(int64(b.N)-s.warm), "allocs/entry")
	}
}

// BenchmarkHotPath is the follower's per-entry work without syscalls and
// without gRPC: 100-byte entries through a fake stream, cumulative acks,
// the sync loop running as in production, no commit advertised (so the
// applier stays idle), and a file system that drops the log's writes (so
// that what is measured is the follower and the log, not a disk or an
// in-memory one growing its buffers). The budget: at most 1 µs and no
// allocation per entry in steady state.
func BenchmarkHotPath(b *testing.B) {
	replicateBench(b, discardLogFS{vfs.NewMem()}, "/shard", true, false)
}

// discardLogFS is an in-memory file system whose log files (under a "wal"
// directory) accept writes and keep nothing.
type discardLogFS struct{ vfs.FS }

func (fs discardLogFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f), err
}

func (fs discardLogFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f), err
}

func (fs discardLogFS) wrap(name string, f vfs.File) vfs.File {
	if f == nil || !strings.Contains(name, "/wal/") {
		return f
	}
	return discardFile{f}
}

type discardFile struct{ vfs.File }

func (discardFile) Write(p []byte) (int, error)            { return len(p), nil }
func (discardFile) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// BenchmarkReplicate compares in-process replication on a real disk (a
// fake leader stream through Replicate, the real log and store, the
// applier) with the bare log doing the same pipelined appends and
// coalesced syncs, in one run.
func BenchmarkReplicate(b *testing.B) {
	b.Run("wal", func(b *testing.B) { walPipelineBench(b, b.TempDir()) })
	b.Run("follower-cumulative-no-apply", func(b *testing.B) { replicateBench(b, vfs.Default, b.TempDir(), true, false) })
	b.Run("follower-cumulative", func(b *testing.B) { replicateBench(b, vfs.Default, b.TempDir(), true, true) })
	b.Run("follower-per-entry", func(b *testing.B) { replicateBench(b, vfs.Default, b.TempDir(), false, true) })
}

// walPipelineBench is the baseline: AppendAsync with at most the window
// unsynced, and a goroutine syncing in a loop, as the follower's
// synchronizer does, without anything else.
func walPipelineBench(b *testing.B, dir string) {
	log, err := wal.Open(dir, wal.Options{SegmentSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	var mu sync.Mutex
	cond := sync.Cond{L: &mu}
	durable, appended := int64(-1), int64(-1)
	done := make(chan error, 1)
	go func() {
		for {
			mu.Lock()
			for durable == appended && appended < int64(b.N)-1 {
				cond.Wait()
			}
			if durable == int64(b.N)-1 {
				mu.Unlock()
				done <- nil
				return
			}
			mu.Unlock()
			d, err := log.Sync(context.Background())
			if err != nil {
				done <- err
				return
			}
			mu.Lock()
			durable = int64(d)
			mu.Unlock()
			cond.Broadcast()
		}
	}()
	b.SetBytes(benchValueSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range int64(b.N) {
		mu.Lock()
		for i-durable > benchWindow {
			cond.Wait()
		}
		mu.Unlock()
		if err := log.AppendAsync(logpos.Entry{Term: 1, Offset: logpos.Offset(i), Value: benchValue}); err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		appended = i
		mu.Unlock()
		cond.Broadcast()
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}
