package bench

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/echo"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/wal"
)

// The end-to-end benchmarks stream 100-byte key-value entries from the
// leader driver over loopback gRPC to a follower node (grpcapi.Server: the
// follower, its WAL with fsync, its applier) and, in the same run, to the
// echo baseline: a bare stream of the same protocol that acks on receipt.
// One op is one entry. Both run in this process; `replicate bench` runs
// them as separate processes (see docs/node.md).

// TestMain checks that the servers and followers the benchmarks start
// leave no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	entrySize = 100
	window    = 1000
)

var benchShard = leader.Shard{Namespace: "bench", Shard: 0}

// target is something to stream to.
type target struct {
	conn *leader.Conn
	term logpos.Term
	next logpos.Offset
	wait bool // wait for the previous entries to be applied before a run
}

func startFollower(b *testing.B) *target {
	b.Helper()
	srv, err := grpcapi.New(grpcapi.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := leader.Dial(lis.Addr().String(), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = conn.Close()
		if err := srv.Shutdown(context.Background()); err != nil {
			b.Error(err)
		}
		if err := <-served; err != nil {
			b.Error(err)
		}
	})
	ctx := context.Background()
	head, err := conn.NewTerm(ctx, benchShard, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	if head, err = conn.Truncate(ctx, benchShard, 1, head); err != nil {
		b.Fatal(err)
	}
	return &target{conn: conn, term: 1, next: head.Offset + 1, wait: true}
}

func startEcho(b *testing.B) *target {
	b.Helper()
	return serveEcho(b, echo.Register)
}

// startDurableEcho starts the durable echo: the bare stream plus one
// write and fdatasync per round, in a file prepared like a WAL segment.
func startDurableEcho(b *testing.B) *target {
	b.Helper()
	dir := b.TempDir()
	return serveEcho(b, func(r grpc.ServiceRegistrar) {
		d := echo.RegisterDurable(r, vfs.Default, dir)
		b.Cleanup(func() { // after the server stopped
			if err := d.Close(); err != nil {
				b.Error(err)
			}
		})
	})
}

func serveEcho(b *testing.B, register func(grpc.ServiceRegistrar)) *target {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(echo.ServerOptions()...) // Appends received as the node receives them
	register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := leader.Dial(lis.Addr().String(), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		if err := <-served; err != nil {
			b.Error(err)
		}
	})
	return &target{conn: conn, term: 1}
}

// stream sends n entries with the given window and reports latency.
func (t *target) stream(b *testing.B, n int64, window int, cumulative bool) {
	b.Helper()
	ctx := context.Background()
	if t.wait && t.next > 0 {
		if _, _, err := t.conn.Get(ctx, benchShard, t.next-1); err != nil {
			b.Fatal(err)
		}
	}
	lat := &leader.Histogram{}
	key := make([]byte, 0, 32)
	b.ResetTimer()
	res, err := t.conn.Replicate(ctx, leader.Run{
		Shard: benchShard, Term: t.term, First: t.next, Count: n, Window: window,
		Cumulative: cumulative, Commit: t.next - 1, Latency: lat,
		Value: func(off logpos.Offset, buf []byte) []byte {
			key = strconv.AppendInt(append(key[:0], "bench/"...), int64(off), 10)
			return leader.AppendPaddedPut(buf, key, entrySize)
		},
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	t.next = res.LastAck + 1
	b.SetBytes(entrySize)
	b.ReportMetric(float64(lat.Quantile(.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat.Quantile(.99).Microseconds()), "p99-µs")
}

// BenchmarkStream: throughput through a window of 1000 entries.
func BenchmarkStream(b *testing.B) {
	for _, mode := range []struct {
		name       string
		cumulative bool
	}{{"cumulative", true}, {"per-entry", false}} {
		b.Run("followerd/"+mode.name, func(b *testing.B) {
			startFollower(b).stream(b, int64(b.N), window, mode.cumulative)
		})
		b.Run("echo/"+mode.name, func(b *testing.B) {
			startEcho(b).stream(b, int64(b.N), window, mode.cumulative)
		})
	}
}

// BenchmarkIdleAck: one entry at a time, through followerd and the
// budget's baselines: "one fsync + one stream round trip" measured
// together by the durable echo (the bare stream plus one write and
// fdatasync before each ack), and apart by the echo and by the fsync
// probe. The three streams alternate in chunks, so that the machine's
// drift hits them alike; each sends b.N entries. Reported: the p50 ack
// latency of each, and of the probe.
func BenchmarkIdleAck(b *testing.B) {
	sides := []*target{startFollower(b), startDurableEcho(b), startEcho(b)}
	names := []string{"followerd", "echo-fsync", "echo"}
	lats := make([]*leader.Histogram, len(sides))
	for i := range lats {
		lats[i] = &leader.Histogram{}
	}
	const chunk = 100
	b.ResetTimer()
	for from := int64(0); from < int64(b.N); from += chunk {
		n := min(chunk, int64(b.N)-from)
		for k := range sides {
			j := (k + int(from/chunk)) % len(sides) // rotate who goes first
			if _, err := sides[j].timed(n, 1, true, lats[j]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	// One record write + fdatasync per op, back to back, into a file
	// prepared as the WAL prepares a segment.
	took, err := wal.ProbeSync(vfs.Default, b.TempDir(), b.N, entrySize)
	if err != nil {
		b.Fatal(err)
	}
	probe := &leader.Histogram{}
	for _, d := range took {
		probe.Record(d)
	}
	for i, name := range names {
		b.ReportMetric(float64(lats[i].Quantile(.5).Microseconds()), name+"-p50-µs")
	}
	b.ReportMetric(float64(probe.Quantile(.5).Microseconds()), "fsync-p50-µs")
}

// memStream is a follower.ReplicationStream over channels: the follower
// without gRPC, to tell the transport's share of the cost from the
// storage's.
type memStream struct {
	ctx  context.Context
	in   chan *replicationpb.Append
	acks chan int64
}

func (m *memStream) Context() context.Context { return m.ctx }

func (m *memStream) Recv() (*replicationpb.Append, error) {
	select {
	case a, ok := <-m.in:
		if !ok {
			return nil, io.EOF
		}
		return a, nil
	case <-m.ctx.Done():
		return nil, m.ctx.Err()
	}
}

func (m *memStream) Send(a *replicationpb.Ack) error {
	select {
	case m.acks <- a.GetOffset():
		return nil
	case <-m.ctx.Done():
		return m.ctx.Err()
	}
}

// BenchmarkStreamDirect streams to a follower in this process without
// gRPC, with the same window, entries and cumulative acks as
// BenchmarkStream, advertising the acked offset as committed (so the
// applier runs) or not (the log alone).
func BenchmarkStreamDirect(b *testing.B) {
	for _, apply := range []bool{true, false} {
		name := "log+apply"
		if !apply {
			name = "log"
		}
		b.Run(name, func(b *testing.B) {
			f, err := follower.Open(follower.Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if _, err := f.NewTerm(1, follower.TermOptions{}); err != nil {
				b.Fatal(err)
			}
			if _, err := f.Truncate(1, &logpos.NoEntry); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := &memStream{ctx: ctx, in: make(chan *replicationpb.Append, window), acks: make(chan int64, window)}
			done := make(chan error, 1)
			go func() { done <- f.Replicate(s) }()
			n := int64(b.N)
			acked := int64(-1)
			key := make([]byte, 0, 32)
			b.SetBytes(entrySize)
			b.ResetTimer()
			for i := int64(0); i < n; i++ {
				for i-acked > window {
					acked = <-s.acks
				}
				commit := int64(-1)
				if apply {
					commit = acked
				}
				key = strconv.AppendInt(append(key[:0], "bench/"...), i, 10)
				s.in <- &replicationpb.Append{
					Term:         1,
					Entry:        &replicationpb.LogEntry{Term: 1, Offset: i, Value: leader.AppendPaddedPut(nil, key, entrySize)},
					CommitOffset: commit, CumulativeAcksSupported: true,
				}
			}
			for acked < n-1 {
				acked = <-s.acks
			}
			b.StopTimer()
			close(s.in)
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
