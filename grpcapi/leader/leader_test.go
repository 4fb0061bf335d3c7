package leader_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/echo"
	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
	"github.com/tablefsm/tablefsm/store/kvpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAppendPutEncodesLikeProto(t *testing.T) {
	for _, c := range []struct{ key, value []byte }{
		{[]byte("k"), []byte("v")},
		{[]byte(""), []byte("")},
		{bytes.Repeat([]byte("k"), 200), bytes.Repeat([]byte("v"), 70000)},
	} {
		want, err := proto.Marshal(&kvpb.WriteBatch{Operations: []*kvpb.Operation{{Op: &kvpb.Operation_Put{Put: &kvpb.Put{Key: c.key, Value: c.value}}}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := leader.AppendPut([]byte("prefix"), c.key, c.value); !bytes.Equal(got[6:], want) {
			t.Fatalf("AppendPut(%d B key, %d B value) differs from proto.Marshal", len(c.key), len(c.value))
		}
	}
	// A buffer reused: what its capacity held before is not the value.
	reused := bytes.Repeat([]byte("z"), 30000)[:0]
	for _, size := range []int{0, 10, 100, 127, 128, 129, 200, 16384, 20000} {
		got := leader.AppendPaddedPut(reused, []byte("bench/42"), size)
		var wb kvpb.WriteBatch
		if err := proto.Unmarshal(got, &wb); err != nil || string(wb.GetOperations()[0].GetPut().GetKey()) != "bench/42" {
			t.Fatalf("size %d: %v %v", size, &wb, err)
		}
		if v := wb.GetOperations()[0].GetPut().GetValue(); len(bytes.Trim(v, "x")) != 0 {
			t.Fatalf("size %d: the value is not filler: %q", size, v)
		}
		minSize := len(leader.AppendPut(nil, []byte("bench/42"), nil))
		if size >= minSize && len(got) != size && len(got) != size-1 {
			t.Fatalf("AppendPaddedPut(size %d) is %d bytes", size, len(got))
		}
		if len(got) > max(size, minSize) {
			t.Fatalf("AppendPaddedPut(size %d) is %d bytes, over", size, len(got))
		}
	}
}

func TestHistogram(t *testing.T) {
	var h leader.Histogram
	if h.Quantile(.5) != 0 || h.Count() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram")
	}
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{.5, 500 * time.Microsecond}, {.99, 990 * time.Microsecond}, {1, time.Millisecond}, {0, time.Microsecond}} {
		got := h.Quantile(c.q)
		if d := got - c.want; d < -c.want/16 || d > c.want/16 {
			t.Errorf("Quantile(%v) = %v, want %v ± 1/16", c.q, got, c.want)
		}
	}
	if h.Max() != time.Millisecond || h.Count() != 1000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	// A rank q*n that floating point puts a hair above an integer
	// (0.07*100 = 7.000000000000001) is that integer's.
	var r leader.Histogram
	for i := 1; i <= 100; i++ {
		r.Record(time.Duration(i) * time.Millisecond)
	}
	if got := r.Quantile(.07); got < 7*time.Millisecond-time.Millisecond/16 || got > 7*time.Millisecond+time.Millisecond/16 {
		t.Errorf("Quantile(0.07) of 1..100 ms = %v, want 7ms ± 1/16", got)
	}
	// The q-quantile is the value of rank ⌈q·n⌉: the median of 1, 2 and
	// 3 ms is 2 ms.
	var three leader.Histogram
	for i := 1; i <= 3; i++ {
		three.Record(time.Duration(i) * time.Millisecond)
	}
	if got := three.Quantile(.5); got < 2*time.Millisecond-time.Millisecond/8 || got > 2*time.Millisecond+time.Millisecond/8 {
		t.Errorf("Quantile(0.5) of 1, 2, 3 ms = %v, want 2ms ± 1/16", got)
	}
	// Never above Max, even when the bucket's middle is: 1000 ns is in
	// the bucket 992..1023.
	var m leader.Histogram
	m.Record(time.Microsecond)
	m.Record(time.Microsecond)
	if got := m.Quantile(.5); got > m.Max() {
		t.Errorf("Quantile(0.5) of 1µs, 1µs = %v, above Max %v", got, m.Max())
	}
	var o leader.Histogram
	o.Record(time.Second)
	h.Merge(&o)
	if h.Max() != time.Second || h.Count() != 1001 || h.Quantile(1) != time.Second {
		t.Errorf("after merge: max %v count %d q1 %v", h.Max(), h.Count(), h.Quantile(1))
	}
}

// liar acks what it is told to, whatever it receives.
type liar struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	acks []int64
	end  bool // end the stream right after the acks
}

func (l liar) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	for _, a := range l.acks {
		if err := s.Send(&replicationpb.Ack{Offset: a}); err != nil {
			return err
		}
	}
	if l.end {
		return nil
	}
	return drain(s)
}

func serve(t *testing.T, register func(*grpc.Server)) *leader.Conn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	c, err := leader.Dial(lis.Addr().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); srv.Stop(); <-done })
	return c
}

func value(off logpos.Offset, buf []byte) []byte { return append(buf, 'x') }

// TestReplicateChecksAcks: acks that break the protocol are errors.
func TestReplicateChecksAcks(t *testing.T) {
	cases := []struct {
		name       string
		acks       []int64
		cumulative bool
		end        bool
		first      logpos.Offset
	}{
		{"per-entry ack for an entry not sent", []int64{50}, false, false, 0},
		{"per-entry ack out of order", []int64{1}, false, false, 0},
		{"cumulative ack going back", []int64{3, 2}, true, false, 0},
		{"cumulative ack repeated with nothing new sent", []int64{3, 3}, true, false, 0},
		{"cumulative ack going back before the run", []int64{4, 2, 14}, true, false, 5},
		{"cumulative ack beyond every entry sent", []int64{1 << 40}, true, false, 0},
		{"stream ended early", []int64{0}, false, true, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := serve(t, func(s *grpc.Server) {
				replicationgrpc.RegisterOxiaLogReplicationServer(s, liar{acks: c.acks, end: c.end})
			})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: c.first, Count: 10, Window: 10, Cumulative: c.cumulative, Value: value})
			if !errors.Is(err, leader.ErrProtocol) {
				t.Fatalf("got %v, want ErrProtocol", err)
			}
		})
	}
}

// TestReplicateFollowerEndsAfterAckingAll: a follower that acknowledges
// every entry, then ends the stream before the leader half-closes, ends
// the run with success every time, whichever of its last ack and its end
// the leader sees first.
func TestReplicateFollowerEndsAfterAckingAll(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, liar{acks: []int64{0}, end: true})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 200 {
		res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 1, Window: 1, Value: value})
		if err != nil || res.Acked != 1 {
			t.Fatalf("run %d: %+v, %v; want the one entry acknowledged", i, res, err)
		}
	}
}

// TestReplicateAgainstEcho: a full run against the echo baseline, both
// ack modes, with latencies recorded for every entry.
func TestReplicateAgainstEcho(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { echo.Register(s) })
	for _, cumulative := range []bool{true, false} {
		lat := &leader.Histogram{}
		res, err := conn.Replicate(context.Background(), leader.Run{
			Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 100, Count: 1000, Window: 16,
			Cumulative: cumulative, Latency: lat,
			Value: func(_ logpos.Offset, buf []byte) []byte { return append(buf, "xyz"...) },
		})
		if err != nil || res.Sent != 1000 || res.Acked != 1000 || res.LastAck != 1099 || lat.Count() != 1000 || res.Bytes != 3000 {
			t.Fatalf("cumulative %v: %+v, %v, %d latencies", cumulative, res, err, lat.Count())
		}
	}
}

// TestReplicateResendsToARealNode: a run that sends again entries the
// follower already has is acknowledged in both ack modes: entry by entry,
// or by the follower's durable head, beyond the entries sent.
func TestReplicateResendsToARealNode(t *testing.T) {
	conn := realNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := leader.Shard{Namespace: "resend", Shard: 1}
	head, err := conn.NewTerm(ctx, s, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Truncate(ctx, s, 1, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Replicate(ctx, leader.Run{Shard: s, Term: 1, First: 0, Count: 20, Window: 20, Cumulative: true, Value: value}); err != nil {
		t.Fatal(err)
	}
	for _, cumulative := range []bool{false, true} {
		res, err := conn.Replicate(ctx, leader.Run{Shard: s, Term: 1, First: 5, Count: 5, Window: 2, Cumulative: cumulative, Commit: 4, Resent: 5, Value: value})
		wantLast := logpos.Offset(9)
		if cumulative {
			wantLast = 19 // the follower's durable head
		}
		if err != nil || res.Acked != 5 || res.LastAck != wantLast {
			t.Errorf("cumulative %v: re-sending 5..9 to a follower with 0..19: %+v, %v", cumulative, res, err)
		}
	}
}

// TestReplicateRejectsBadInput: a run that cannot be sent is refused
// before anything is.
func TestReplicateRejectsBadInput(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { echo.Register(s) })
	for _, run := range []leader.Run{
		{First: -3, Count: 2, Value: value},
		{First: -1, Count: 2, Value: value},
		{First: 0, Count: -1, Value: value},
		{First: 0, Count: -5, Value: value},
		{First: 0, Count: 1},
		{First: math.MaxInt64 - 1, Count: 3, Value: value}, // past the largest offset
		{First: math.MaxInt64 - 1, Count: 2, Value: value}, // the largest offset
		{First: 0, Count: 2, Window: math.MaxInt, Value: value},
		{First: 0, Count: 2, Window: leader.MaxWindow + 1, Value: value},
		{First: 0, Count: 2, Resent: 3, Value: value},
		{First: 0, Count: 2, Resent: -1, Value: value},
	} {
		run.Shard = leader.Shard{Namespace: "x"}
		var res leader.Result
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panicked: %v", p)
				}
			}()
			res, err = conn.Replicate(context.Background(), run)
		}()
		if err == nil || errors.Is(err, leader.ErrProtocol) || strings.Contains(err.Error(), "panicked") || res.Sent != 0 {
			t.Errorf("First %d, Count %d, Window %d, Resent %d: %+v, %v; want a usage error", run.First, run.Count, run.Window, run.Resent, res, err)
		}
	}
	// The largest window is allowed.
	if res, err := conn.Replicate(context.Background(), leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 2, Window: leader.MaxWindow, Value: value}); err != nil || res.Acked != 2 {
		t.Errorf("a run with Window MaxWindow: %+v, %v", res, err)
	}
	// The offset below the largest is a run's last.
	if _, err := conn.Replicate(context.Background(), leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: math.MaxInt64 - 2, Count: 2, Window: 2, Value: value}); err != nil {
		t.Errorf("a run ending below the largest offset: %v", err)
	}
}

// stalledLiar acks an offset never sent after the first Append, then
// stops reading, so that the leader's sends block on flow control.
type stalledLiar struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
}

func (stalledLiar) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	if err := s.Send(&replicationpb.Ack{Offset: 1 << 40}); err != nil {
		return err
	}
	<-s.Context().Done()
	return s.Context().Err()
}

// TestReplicateProtocolErrorUnblocksSend: an ack that breaks the protocol
// ends the run even while its sends are blocked by flow control.
func TestReplicateProtocolErrorUnblocksSend(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { replicationgrpc.RegisterOxiaLogReplicationServer(s, stalledLiar{}) })
	big := make([]byte, 1<<20) // 64 of them are far beyond gRPC's windows
	// The deadline only keeps a regression from hanging the suite.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := conn.Replicate(ctx, leader.Run{
		Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 64, Window: 64,
		Value: func(_ logpos.Offset, buf []byte) []byte { return append(buf, big...) },
	})
	if !errors.Is(err, leader.ErrProtocol) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrProtocol before the deadline", err)
	}
}

// realNode serves a real node (grpcapi.Server over a temporary data
// directory) on loopback.
func realNode(t *testing.T) *leader.Conn {
	t.Helper()
	srv, err := grpcapi.New(grpcapi.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	c, err := leader.Dial(lis.Addr().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	return c
}

// TestDialBoundsMessages: a connection dialled with a message size limit
// neither sends nor receives a message over it.
func TestDialBoundsMessages(t *testing.T) {
	conn := realNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := leader.Shard{Namespace: "limits", Shard: 1}
	head, err := conn.NewTerm(ctx, s, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Truncate(ctx, s, 1, head); err != nil {
		t.Fatal(err)
	}
	big := func(_ logpos.Offset, buf []byte) []byte {
		return leader.AppendPut(buf, []byte("k"), make([]byte, 2048))
	}
	if _, err := conn.Replicate(ctx, leader.Run{Shard: s, Term: 1, Count: 1, Value: big}); err != nil {
		t.Fatal(err)
	}
	small, err := leader.Dial(conn.ClientConn().Target(), 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if _, _, err := small.Get(ctx, s, 0, []byte("k")); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("reading a 2 KiB value with a 1 KiB limit: %v, want ResourceExhausted", err)
	}
	if _, err := small.Replicate(ctx, leader.Run{Shard: s, Term: 1, First: 1, Count: 1, Commit: 0, Value: big}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("sending a 2 KiB entry with a 1 KiB limit: %v, want ResourceExhausted", err)
	}
}

// shortInspector answers every Get with no values.
type shortInspector struct {
	inspectpb.UnimplementedInspectServer
}

func (shortInspector) Get(context.Context, *inspectpb.GetRequest) (*inspectpb.GetResponse, error) {
	return &inspectpb.GetResponse{}, nil
}

// TestGetChecksTheValueCount: a node answering fewer values than keys
// asked for is an error, not a short answer.
func TestGetChecksTheValueCount(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { inspectpb.RegisterInspectServer(s, shortInspector{}) })
	if values, _, err := conn.Get(context.Background(), leader.Shard{Namespace: "x"}, logpos.NoOffset, []byte("a"), []byte("b")); err == nil {
		t.Errorf("two keys answered with %d values and no error", len(values))
	}
}

// headless answers NewTerm without a head entry.
type headless struct {
	replicationgrpc.UnimplementedOxiaCoordinationServer
}

func (headless) NewTerm(context.Context, *replicationpb.NewTermRequest) (*replicationpb.NewTermResponse, error) {
	return &replicationpb.NewTermResponse{}, nil
}

// TestNewTermWithoutAHead: a reply naming no head entry reads as no
// entry, not as entry 0 of term 0.
func TestNewTermWithoutAHead(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { replicationgrpc.RegisterOxiaCoordinationServer(s, headless{}) })
	if head, err := conn.NewTerm(context.Background(), leader.Shard{Namespace: "x"}, 1, nil); err != nil || head != logpos.NoEntry {
		t.Errorf("NewTerm answered without a head: %v, %v; want NoEntry", head, err)
	}
}

// failingSource yields the chunks of a snapshot, then fails where it
// would have ended.
type failingSource struct{ src leader.ChunkSource }

var errDisk = errors.New("disk read error")

func (f failingSource) Next() (store.Chunk, error) {
	ch, err := f.src.Next()
	if errors.Is(err, io.EOF) {
		return store.Chunk{}, errDisk
	}
	return ch, err
}

// termThreeSnapshot returns a snapshot of a store fenced at term 3 that
// applied entries 0 to 9, entry o putting key k<o>.
func termThreeSnapshot(t *testing.T) *store.Snapshot {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.SetTerm(3, store.TermOptions{}); err != nil {
		t.Fatal(err)
	}
	for o := range logpos.Offset(10) {
		if err := st.Apply(logpos.Entry{Term: 3, Offset: o, Value: leader.AppendPut(nil, fmt.Appendf(nil, "k%d", o), []byte("v"))}); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	return sn
}

// TestSendSnapshotSourceFails: when the source fails, even after every
// chunk was sent, the transfer is aborted, not ended: the follower
// installs nothing and the call leaves nothing running.
func TestSendSnapshotSourceFails(t *testing.T) {
	conn := realNode(t)
	ctx := context.Background()
	sn := termThreeSnapshot(t)
	s := leader.Shard{Namespace: "snap", Shard: 0}
	if _, err := conn.Status(ctx, s); status.Code(err) != codes.Aborted { // connects
		t.Fatalf("a fresh node hosts the shard: %v", err)
	}
	before := goleak.IgnoreCurrent()
	if _, err := conn.SendSnapshot(ctx, s, 3, failingSource{sn}); !errors.Is(err, errDisk) {
		t.Fatalf("SendSnapshot: %v, want the source's error", err)
	}
	// The node ends its handler once it sees the cancellation; what the
	// call itself started is gone.
	if err := goleak.Find(before, goleak.IgnoreAnyFunction("github.com/tablefsm/tablefsm/grpcapi.(*Server).SendSnapshot")); err != nil {
		t.Errorf("SendSnapshot returned with its stream still open:\n%v", err)
	}
	if st, err := conn.Status(ctx, s); status.Code(err) != codes.Aborted {
		t.Errorf("after an aborted transfer the shard is %v, %v; want no member (nothing installed)", st, err)
	}
}

// snapshotTaker receives a snapshot and tells on ended how its transfer
// ended: nil when the leader half-closed it (the snapshot is complete,
// acknowledged with offset 7), else the error that ended it. After
// refuseAfter chunks (when not 0) it refuses the snapshot.
type snapshotTaker struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	ended       chan<- error
	received    chan<- struct{} // told of each chunk received
	refuseAfter int
}

var errRefused = status.Error(codes.FailedPrecondition, "snapshot refused")

func (f snapshotTaker) SendSnapshot(s grpc.ClientStreamingServer[replicationpb.SnapshotChunk, replicationpb.SnapshotResponse]) error {
	for n := 1; ; n++ {
		_, err := s.Recv()
		if errors.Is(err, io.EOF) {
			f.ended <- nil
			return s.SendAndClose(&replicationpb.SnapshotResponse{AckOffset: 7})
		}
		if err == nil && n == f.refuseAfter {
			err = errRefused
		}
		if err != nil {
			f.ended <- err
			return err
		}
		if f.received != nil {
			f.received <- struct{}{}
		}
	}
}

// chunkSource yields count chunks (without end when count < 0); after
// them it returns err (io.EOF when nil), once the follower received a
// chunk when received is set.
type chunkSource struct {
	count, sent int32
	err         error
	received    <-chan struct{}
}

func (c *chunkSource) Next() (store.Chunk, error) {
	if c.sent == c.count {
		if c.received != nil {
			<-c.received
		}
		return store.Chunk{}, cmp.Or(c.err, io.EOF)
	}
	c.sent++
	return store.Chunk{Name: "data", Index: c.sent - 1, Count: c.count, Content: []byte("chunk")}, nil
}

// TestSendSnapshotOutcomes: a snapshot the source reads to its end is
// half-closed, and the follower's ack is returned; one whose source fails
// is aborted, never half-closed, even when the follower has every chunk
// already; one the follower refuses midway ends with the follower's
// status.
func TestSendSnapshotOutcomes(t *testing.T) {
	ended := make(chan error, 1)
	received := make(chan struct{}, 3)
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, snapshotTaker{ended: ended, received: received})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := leader.Shard{Namespace: "x"}
	if ack, err := conn.SendSnapshot(ctx, s, 3, &chunkSource{count: 3}); err != nil || ack != 7 || <-ended != nil {
		t.Fatalf("a complete snapshot: ack %d, %v", ack, err)
	}
	for range 3 {
		<-received
	}
	// Repeated: the abort and a half-close would race.
	for i := range 20 {
		if _, err := conn.SendSnapshot(ctx, s, 3, &chunkSource{count: 1, err: errDisk, received: received}); !errors.Is(err, errDisk) {
			t.Fatalf("transfer %d: %v, want the source's error", i, err)
		}
		if err := <-ended; err == nil {
			t.Fatalf("transfer %d: the follower saw a complete snapshot, though the source failed", i)
		}
	}
	refuser := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, snapshotTaker{ended: ended, refuseAfter: 1})
	})
	if _, err := refuser.SendSnapshot(ctx, s, 3, &chunkSource{count: -1}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a snapshot refused midway: %v, want the follower's FailedPrecondition", err)
	}
}

// TestReplicateResendsOverTheHeadToARealNode: a run re-sending entries up
// to the follower's head and beyond it (five duplicates, then new entries
// or none) is acknowledged whatever the timing of the follower's sync
// rounds against the sender.
func TestReplicateResendsOverTheHeadToARealNode(t *testing.T) {
	conn := realNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, count := range []int64{5, 20} {
		for i := range int64(20) {
			s := leader.Shard{Namespace: "overlap", Shard: count*100 + i}
			head, err := conn.NewTerm(ctx, s, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Truncate(ctx, s, 1, head); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Replicate(ctx, leader.Run{Shard: s, Term: 1, First: 0, Count: 20, Window: 20, Cumulative: true, Value: value}); err != nil {
				t.Fatal(err)
			}
			res, err := conn.Replicate(ctx, leader.Run{Shard: s, Term: 1, First: 15, Count: count, Window: 20, Cumulative: true, Commit: 14, Resent: 5, Value: value})
			if err != nil || res.Acked != count || res.LastAck != max(19, 14+logpos.Offset(count)) {
				t.Fatalf("re-sending 15..%d to a follower holding 0..19: %+v, %v", 14+count, res, err)
			}
		}
	}
}

// pacedStep: receive recv more entry-bearing Appends, then send acks.
type pacedStep struct {
	recv int
	acks []int64
}

// pacedFollower plays a script of acks, each group sent once a number of
// entries arrived, so what the leader had sent is known.
type pacedFollower struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	script []pacedStep
}

func (p pacedFollower) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	for _, st := range p.script {
		for n := 0; n < st.recv; {
			a, err := s.Recv()
			if err != nil {
				return err
			}
			if a.GetEntry() != nil {
				n++
			}
		}
		for _, o := range st.acks {
			if err := s.Send(&replicationpb.Ack{Offset: o}); err != nil {
				return err
			}
		}
	}
	return drain(s)
}

// TestReplicateRepeatedCumulativeAcks: a follower holding 0..7 gets a run
// re-sending 5..14 (three duplicates), all of it sent before the first
// ack: its head 7, a repeat of 7 answering duplicates, then 14. Accepted
// when the run says it re-sends three entries, whatever the window;
// without, the repeat answers no duplicate: a protocol violation.
func TestReplicateRepeatedCumulativeAcks(t *testing.T) {
	script := []pacedStep{{recv: 10, acks: []int64{7}}, {acks: []int64{7}}, {acks: []int64{14}}}
	for _, c := range []struct {
		resent int64
		ok     bool
	}{{3, true}, {1, true}, {0, false}} {
		conn := serve(t, func(s *grpc.Server) {
			replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: script})
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 5, Count: 10, Window: 10, Cumulative: true, Commit: 4, Resent: c.resent, Value: value})
		cancel()
		if c.ok && (err != nil || res.Acked != 10 || res.LastAck != 14 || res.PriorAcks != 0) {
			t.Errorf("Resent %d: %+v, %v", c.resent, res, err)
		}
		if !c.ok && !errors.Is(err, leader.ErrProtocol) {
			t.Errorf("Resent %d: %v, want ErrProtocol", c.resent, err)
		}
	}
	// The same acks, the first arriving when only three entries were
	// sent (window 3), or all ten (window 10): both accepted.
	for _, window := range []int{3, 10} {
		conn := serve(t, func(s *grpc.Server) {
			replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: []pacedStep{
				{recv: 3, acks: []int64{19, 19}}, {recv: 3, acks: []int64{20}}, {recv: 3, acks: []int64{23}}, {recv: 1, acks: []int64{24}},
			}})
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 15, Count: 10, Window: window, Cumulative: true, Commit: 14, Resent: 5, Value: value})
		cancel()
		if err != nil || res.Acked != 10 || res.LastAck != 24 {
			t.Errorf("window %d: %+v, %v", window, res, err)
		}
	}
}

// TestReplicateAckBeyondWhatTheFollowerHolds: a run re-sending two entries
// the follower holds (5 and 6) of ten: a cumulative ack far beyond both
// what was sent and what the follower holds acknowledges entries never
// sent, and is a protocol violation, not an ack to advertise as committed.
func TestReplicateAckBeyondWhatTheFollowerHolds(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: []pacedStep{{recv: 10, acks: []int64{1 << 40}}}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 5, Count: 10, Window: 10, Cumulative: true, Commit: 4, Resent: 2, Value: value})
	if !errors.Is(err, leader.ErrProtocol) {
		t.Fatalf("ack 1<<40 for a run of 5..14 over a follower holding 5..6: %+v, %v; want ErrProtocol", res, err)
	}
	// Just beyond: with only entry 5 sent (window 1), ack 7 covers an
	// entry neither sent nor held. (Were it taken, the script acks the
	// rest and the run would end without error.)
	script := []pacedStep{{recv: 1, acks: []int64{7}}}
	for o := int64(6); o <= 14; o++ {
		script = append(script, pacedStep{recv: 1, acks: []int64{max(o, 7)}})
	}
	conn = serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: script})
	})
	res, err = conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 5, Count: 10, Window: 1, Cumulative: true, Commit: 4, Resent: 2, Value: value})
	if !errors.Is(err, leader.ErrProtocol) {
		t.Fatalf("ack 7 with entry 5 sent, over a follower holding 5..6: %+v, %v; want ErrProtocol", res, err)
	}
}

// windowChecker acks every entry as it arrives and checks what the
// leader's Appends advertise against the window: the entry at offset o is
// sent only once o-window is acknowledged, so it advertises at least that
// committed (and at least the run's Commit), never an entry not yet
// acknowledged; the entry-less Append after the last entry advertises it.
type windowChecker struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	window, commit int64
}

func (w windowChecker) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	last := w.commit // the last entry received
	for {
		a, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if a.GetEntry() == nil {
			if a.GetCommitOffset() != last {
				return status.Errorf(codes.FailedPrecondition, "after entry %d the leader advertises commit %d", last, a.GetCommitOffset())
			}
			continue
		}
		o := a.GetEntry().GetOffset()
		if c := a.GetCommitOffset(); c < max(w.commit, o-w.window) || c > max(w.commit, o-1) {
			return status.Errorf(codes.FailedPrecondition, "entry %d advertises commit %d (window %d, run's commit %d)", o, c, w.window, w.commit)
		}
		last = o
		if err := s.Send(&replicationpb.Ack{Offset: o}); err != nil {
			return err
		}
	}
}

// TestReplicateKeepsToTheWindow: no entry is sent before the one a window
// earlier is acknowledged, every Append advertises the last ack as
// committed, and the run's end advertises its last entry.
func TestReplicateKeepsToTheWindow(t *testing.T) {
	for _, window := range []int{0, 1, 3} {
		for _, cumulative := range []bool{false, true} {
			conn := serve(t, func(s *grpc.Server) {
				replicationgrpc.RegisterOxiaLogReplicationServer(s, windowChecker{window: int64(max(window, 1)), commit: 9})
			})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 10, Count: 200, Window: window, Cumulative: cumulative, Commit: 9, Value: value})
			cancel()
			if err != nil || res.Acked != 200 || res.LastAck != 209 {
				t.Errorf("window %d, cumulative %v: %+v, %v", window, cumulative, res, err)
			}
		}
	}
}

// slotFollower receives entries 0 and 1, acks 0, waits for its release,
// then acks 1.
type slotFollower struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	release <-chan struct{}
	acked0  chan<- struct{}
}

func (f slotFollower) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	for n := 0; n < 2; {
		a, err := s.Recv()
		if err != nil {
			return err
		}
		if a.GetEntry() != nil {
			n++
		}
	}
	if err := s.Send(&replicationpb.Ack{Offset: 0}); err != nil {
		return err
	}
	f.acked0 <- struct{}{}
	<-f.release
	if err := s.Send(&replicationpb.Ack{Offset: 1}); err != nil {
		return err
	}
	return drain(s)
}

// TestReplicateLatencyIsEachEntrysOwn: each entry's latency runs from its
// own send to its own ack. Entry 0's covers the making of entry 1's value
// (after entry 0 was sent); entry 1's covers what the follower does
// between its two acks. Both are work the test times itself, so the
// smallest latency recorded is at least the shorter of the two; a
// latency taken from another entry's send (entry 1's send to entry 0's
// ack, a round trip) is not.
func TestReplicateLatencyIsEachEntrysOwn(t *testing.T) {
	release := make(chan struct{})
	acked0 := make(chan struct{}, 1)
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, slotFollower{release: release, acked0: acked0})
	})
	work := func() time.Duration {
		start := time.Now()
		for range 5 {
			runtime.GC()
		}
		return time.Since(start)
	}
	var valueWork time.Duration
	followerDone := make(chan time.Duration, 1)
	go func() {
		<-acked0
		followerDone <- work()
		close(release)
	}()
	lat := &leader.Histogram{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 2, Window: 2, Latency: lat,
		Value: func(off logpos.Offset, buf []byte) []byte {
			if off == 1 {
				valueWork = work()
			}
			return value(off, buf)
		}})
	if err != nil || res.Acked != 2 || lat.Count() != 2 {
		t.Fatalf("%+v, %v, %d latencies", res, err, lat.Count())
	}
	followerWork := <-followerDone
	// Buckets keep a value within 1/16 of its size.
	if least := min(valueWork, followerWork); lat.Quantile(0) < least-least/16 {
		t.Errorf("smallest latency %v, below the %v of work it spans (value %v, follower %v)", lat.Quantile(0), least, valueWork, followerWork)
	}
}

// canceler ends every stream with the status a follower's NewTerm ends an
// attached stream with: Canceled.
type canceler struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
}

func (canceler) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	return status.Error(codes.Canceled, "follower: stream ended")
}

// TestReplicateCallerCancelIsToldApart: a run the caller cancels ends with
// an error that is context.Canceled; one the follower ends with the
// status Canceled (fenced by a NewTerm) does not, and both keep the code.
func TestReplicateCallerCancelIsToldApart(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { echo.Register(s) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, mine := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 1 << 30, Window: 4, Value: value,
		OnAck: func(logpos.Offset) { cancel() }})
	if !errors.Is(mine, context.Canceled) || status.Code(mine) != codes.Canceled {
		t.Errorf("a run the caller cancelled: %v (code %v), want context.Canceled with code Canceled", mine, status.Code(mine))
	}
	// Cancelled before the run starts, too.
	ended, end := context.WithCancel(context.Background())
	end()
	if _, err := conn.Replicate(ended, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 1, Value: value}); !errors.Is(err, context.Canceled) || status.Code(err) != codes.Canceled {
		t.Errorf("a run cancelled before it started: %v (code %v), want context.Canceled with code Canceled", err, status.Code(err))
	}
	// Cancelled with a cause, the error wraps both.
	cctx, ccancel := context.WithCancelCause(context.Background())
	defer ccancel(nil)
	stalled := errors.New("stalled")
	_, mine = conn.Replicate(cctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 1 << 30, Window: 4, Value: value,
		OnAck: func(logpos.Offset) { ccancel(stalled) }})
	if !errors.Is(mine, context.Canceled) || !errors.Is(mine, stalled) || status.Code(mine) != codes.Canceled {
		t.Errorf("a run the caller cancelled with a cause: %v (code %v), want context.Canceled and the cause, with code Canceled", mine, status.Code(mine))
	}
	fconn := serve(t, func(s *grpc.Server) { replicationgrpc.RegisterOxiaLogReplicationServer(s, canceler{}) })
	fctx, fcancel := context.WithTimeout(context.Background(), time.Minute)
	defer fcancel()
	_, fenced := fconn.Replicate(fctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 10, Window: 4, Value: value})
	if errors.Is(fenced, context.Canceled) || status.Code(fenced) != codes.Canceled {
		t.Errorf("a run the follower ended: %v (code %v), want code Canceled, not context.Canceled", fenced, status.Code(fenced))
	}
}

// TestReplicateElapsedStartsAtTheFirstSend: for a run of one entry,
// Result.Elapsed (from the first send to the last ack) and the entry's
// ack latency (from just before its send to its ack) are one interval:
// what the run does before its first send (here the value's making, slow)
// is in neither, and both end at the ack.
func TestReplicateElapsedStartsAtTheFirstSend(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { echo.Register(s) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lat := &leader.Histogram{}
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 1, Latency: lat,
		Value: func(off logpos.Offset, buf []byte) []byte {
			runtime.GC() // slow work before the send
			return value(off, buf)
		}})
	if err != nil || res.Acked != 1 || lat.Count() != 1 {
		t.Fatalf("%+v, %v, %d latencies", res, err, lat.Count())
	}
	// Both are taken from the same two readings of the clock.
	if res.Elapsed != lat.Max() {
		t.Errorf("Elapsed %v, want the only entry's ack latency %v: from its send to its ack", res.Elapsed, lat.Max())
	}
}

// TestReplicateLatenciesAreNotNegative: an ack beyond every entry sent
// covers entries sent after it arrived; their latencies are not below
// zero.
func TestReplicateLatenciesAreNotNegative(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) {
		var script []pacedStep
		for range 200 {
			script = append(script, pacedStep{recv: 1, acks: []int64{1 << 40}})
		}
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: script})
	})
	lat := &leader.Histogram{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 0, Count: 200, Window: 200, Cumulative: true, Resent: 200, Latency: lat, Value: value}); err != nil {
		t.Fatal(err)
	}
	if q := lat.Quantile(0); q <= 0 {
		t.Errorf("smallest latency %v, mean %v: latencies below zero were recorded", q, lat.Mean())
	}
}

// drain reads a stream's Appends until the leader half-closes it.
func drain(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// StreamContext routes to its shard in place of the routing a context
// carries already, and keeps the rest of its metadata.
func TestStreamContextReplacesRouting(t *testing.T) {
	ctx := metadata.AppendToOutgoingContext(context.Background(), "namespace", "old", "shard-id", "7", "trace", "x")
	ctx = leader.StreamContext(ctx, leader.Shard{Namespace: "ns", Shard: 3})
	ctx = leader.StreamContext(ctx, leader.Shard{Namespace: "ns", Shard: 4})
	md, _ := metadata.FromOutgoingContext(ctx)
	for key, want := range map[string][]string{"namespace": {"ns"}, "shard-id": {"4"}, "trace": {"x"}} {
		if got := md.Get(key); !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

// mdRecorder ends each Replicate stream at once, after sending the
// metadata it came with.
type mdRecorder struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	got chan metadata.MD
}

func (r mdRecorder) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	md, _ := metadata.FromIncomingContext(s.Context())
	r.got <- md
	return status.Error(codes.FailedPrecondition, "recorded")
}

// TestReplicateNamesItsTerm: a run's stream names the run's term in its
// "term" metadata, in place of any the caller's context names, and none
// for a negative term; its routing and other metadata are kept.
func TestReplicateNamesItsTerm(t *testing.T) {
	rec := mdRecorder{got: make(chan metadata.MD, 1)}
	conn := serve(t, func(s *grpc.Server) { replicationgrpc.RegisterOxiaLogReplicationServer(s, rec) })
	ctx := metadata.AppendToOutgoingContext(context.Background(), grpcapi.MetadataTerm, "9", "trace", "x")
	for _, c := range []struct {
		term logpos.Term
		want []string
	}{{3, []string{"3"}}, {0, []string{"0"}}, {-1, nil}} {
		_, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "ns", Shard: 5}, Term: c.term, Count: 1, Value: value})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("term %d: %v, want the recorder's refusal", c.term, err)
		}
		md := <-rec.got
		for key, want := range map[string][]string{grpcapi.MetadataTerm: c.want, "namespace": {"ns"}, "shard-id": {"5"}, "trace": {"x"}} {
			if got := md.Get(key); !slices.Equal(got, want) {
				t.Errorf("term %d: %s = %q, want %q", c.term, key, got, want)
			}
		}
	}
}

// TestReplicateOfADeposedLeaderIsRefusedAtAttach: a real node refuses the
// stream of a leader of an older term when it attaches, for the term its
// metadata names, not at its first Append.
func TestReplicateOfADeposedLeaderIsRefusedAtAttach(t *testing.T) {
	conn := realNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := leader.Shard{Namespace: "deposed", Shard: 1}
	if _, err := conn.NewTerm(ctx, s, 2, nil); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Replicate(ctx, leader.Run{Shard: s, Term: 1, Count: 3, Window: 3, Cumulative: true, Value: value})
	if grpcapi.Reason(err) != grpcapi.ReasonInvalidTerm || !strings.Contains(err.Error(), "leader term 1 is not the current term 2") {
		t.Fatalf("a stream of term 1 to a follower at term 2: %v, want INVALID_TERM naming both terms", err)
	}
}

// TestControlCallsOnARealNode: each control call reaches the shard it
// names with the term and entry it is given, and returns the node's
// answer: GetStatus, NewTerm's head, Truncate's new head (in the new
// term), Get's values and commit offset, the steps after a sequence
// number, and DeleteShard, refused for an older term.
func TestControlCallsOnARealNode(t *testing.T) {
	conn := realNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := leader.Shard{Namespace: "control", Shard: 3}
	head, err := conn.NewTerm(ctx, s, 1, nil)
	if err != nil || head != logpos.NoEntry {
		t.Fatalf("NewTerm(1) of a fresh shard: %v, %v; want no head", head, err)
	}
	if _, err := conn.Truncate(ctx, s, 1, head); err != nil {
		t.Fatal(err)
	}
	key := func(off logpos.Offset, buf []byte) []byte {
		return leader.AppendPut(buf, fmt.Appendf(nil, "k%d", off), []byte("v"))
	}
	if _, err := conn.Replicate(ctx, leader.Run{Shard: s, Term: 1, Count: 10, Window: 10, Cumulative: true, Value: key}); err != nil {
		t.Fatal(err)
	}
	values, commit, err := conn.Get(ctx, s, 9, []byte("k0"), []byte("k9"), []byte("k10"))
	if err != nil || commit != 9 || !values[0].GetFound() || !values[1].GetFound() || values[2].GetFound() {
		t.Fatalf("Get once 9 is applied: %v, commit %d, %v", values, commit, err)
	}
	st, err := conn.Status(ctx, s)
	if err != nil || st.GetTerm() != 1 || st.GetStatus() != replicationpb.ServingStatus_FOLLOWER || st.GetHeadOffset() != 9 {
		t.Fatalf("Status: %v, %v; want a follower of term 1 with head 9", st, err)
	}
	if _, err := conn.Status(ctx, leader.Shard{Namespace: "control", Shard: 4}); status.Code(err) != codes.Aborted {
		t.Fatalf("Status of a shard the node does not host: %v, want Aborted", err)
	}
	if head, err = conn.NewTerm(ctx, s, 2, nil); err != nil || head != (logpos.EntryID{Term: 1, Offset: 9}) {
		t.Fatalf("NewTerm(2): %v, %v; want head {1 9}", head, err)
	}
	if head, err = conn.Truncate(ctx, s, 2, head); err != nil || head != (logpos.EntryID{Term: 2, Offset: 9}) {
		t.Fatalf("Truncate(2) to {1 9}: %v, %v; want head {2 9}", head, err)
	}
	steps, err := conn.Steps(ctx, s, 0)
	if err != nil || len(steps) < 2 {
		t.Fatalf("Steps after 0: %v, %v", steps, err)
	}
	last := steps[len(steps)-1].GetSeq()
	if later, err := conn.Steps(ctx, s, last-1); err != nil || len(later) != 1 || later[0].GetSeq() != last {
		t.Fatalf("Steps after %d: %v, %v; want step %d alone", last-1, later, err, last)
	}
	if err := conn.Delete(ctx, s, 1); grpcapi.Reason(err) != grpcapi.ReasonInvalidTerm {
		t.Fatalf("Delete by the leader of term 1 at term 2: %v, want INVALID_TERM", err)
	}
	if err := conn.Delete(ctx, s, 2); err != nil {
		t.Fatal(err)
	}
	if st, err := conn.Status(ctx, s); status.Code(err) != codes.Aborted {
		t.Fatalf("Status after Delete: %v, %v; want Aborted", st, err)
	}
}

// requestRecorder answers NewTerm and Get, passing on the requests.
type requestRecorder struct {
	replicationgrpc.UnimplementedOxiaCoordinationServer
	inspectpb.UnimplementedInspectServer
	newTerms chan *replicationpb.NewTermRequest
	gets     chan *inspectpb.GetRequest
}

func (r requestRecorder) NewTerm(_ context.Context, req *replicationpb.NewTermRequest) (*replicationpb.NewTermResponse, error) {
	r.newTerms <- req
	return &replicationpb.NewTermResponse{HeadEntryId: &replicationpb.EntryId{Term: -1, Offset: -1}}, nil
}

func (r requestRecorder) Get(_ context.Context, req *inspectpb.GetRequest) (*inspectpb.GetResponse, error) {
	r.gets <- req
	return &inspectpb.GetResponse{Values: make([]*inspectpb.Value, len(req.GetKeys())), CommitOffset: 4}, nil
}

// TestRequestsCarryTheCallersArguments: NewTerm sends the options it is
// given; Get asks the node to wait for the entry at minCommit to be
// applied, and not to wait at all when minCommit is NoOffset.
func TestRequestsCarryTheCallersArguments(t *testing.T) {
	rec := requestRecorder{newTerms: make(chan *replicationpb.NewTermRequest, 1), gets: make(chan *inspectpb.GetRequest, 1)}
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaCoordinationServer(s, rec)
		inspectpb.RegisterInspectServer(s, rec)
	})
	ctx := context.Background()
	s := leader.Shard{Namespace: "ns", Shard: 6}
	opts := &replicationpb.NewTermOptions{EnableNotifications: true, KeySorting: replicationpb.KeySortingType_HIERARCHICAL}
	if _, err := conn.NewTerm(ctx, s, 7, opts); err != nil {
		t.Fatal(err)
	}
	want := &replicationpb.NewTermRequest{Namespace: "ns", Shard: 6, Term: 7, Options: opts}
	if got := <-rec.newTerms; !proto.Equal(got, want) {
		t.Errorf("NewTerm sent %v, want %v", got, want)
	}
	for _, minCommit := range []logpos.Offset{logpos.NoOffset, 0, 12} {
		if _, commit, err := conn.Get(ctx, s, minCommit, []byte("a")); err != nil || commit != 4 {
			t.Fatalf("Get: commit %d, %v; want the node's 4", commit, err)
		}
		got := <-rec.gets
		if minCommit == logpos.NoOffset && got.MinCommitOffset != nil || minCommit != logpos.NoOffset && (got.MinCommitOffset == nil || got.GetMinCommitOffset() != int64(minCommit)) {
			t.Errorf("Get with minCommit %d sent min_commit_offset %v", minCommit, got.MinCommitOffset)
		}
	}
}

// slowSender wraps a Conn's Replicate streams so that each entry's Send
// returns only once the run has checked the ack of that entry (its
// receiver is back waiting for the next ack), or the stream ended: gRPC's
// Send only queues a message, and its ack may be checked before Send
// returns. For runs from offset 0 with a window of 1.
type slowSender struct {
	replicationgrpc.OxiaLogReplicationClient
}

func (c slowSender) Replicate(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[replicationpb.Append, replicationpb.Ack], error) {
	s, err := c.OxiaLogReplicationClient.Replicate(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &slowSendStream{BidiStreamingClient: s, recvs: make(chan struct{}, 64)}, nil
}

type slowSendStream struct {
	grpc.BidiStreamingClient[replicationpb.Append, replicationpb.Ack]
	recvs chan struct{} // one per Recv call
	calls int64         // Recv calls seen by Send
}

func (s *slowSendStream) Recv() (*replicationpb.Ack, error) {
	s.recvs <- struct{}{}
	return s.BidiStreamingClient.Recv()
}

func (s *slowSendStream) Send(a *replicationpb.Append) error {
	if err := s.BidiStreamingClient.Send(a); err != nil || a.GetEntry() == nil {
		return err
	}
	// The ack of entry o is checked once Recv is called for the o+2nd time.
	for s.calls < a.GetEntry().GetOffset()+2 {
		select {
		case <-s.recvs:
			s.calls++
		case <-s.Context().Done():
			return nil
		}
	}
	return nil
}

// TestReplicateAckCheckedBeforeSendReturns: an ack checked before the
// Send of its entry returned acknowledges an entry sent, whose latency
// started before the send: for a run of one entry, the whole run.
func TestReplicateAckCheckedBeforeSendReturns(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { echo.Register(s) })
	conn.Replication = slowSender{conn.Replication}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lat := &leader.Histogram{}
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 1, Latency: lat,
		Value: func(off logpos.Offset, buf []byte) []byte {
			runtime.GC() // work before the send, in neither interval
			return value(off, buf)
		}})
	if err != nil || res.Acked != 1 || lat.Count() != 1 {
		t.Fatalf("%+v, %v, %d latencies", res, err, lat.Count())
	}
	if res.Elapsed != lat.Max() {
		t.Errorf("Elapsed %v, latency %v: want one interval, from the send to the ack", res.Elapsed, lat.Max())
	}
}

// batchAcker acknowledges the first n entries with one cumulative ack
// once it has them all, then checks that each later entry, sent in the
// room that ack freed, advertises it as committed; it acks the last
// entry when it has the 2n.
type batchAcker struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	n int64
}

func (b batchAcker) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	for got := int64(0); ; {
		a, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if a.GetEntry() == nil {
			continue
		}
		o := a.GetEntry().GetOffset()
		if o >= b.n && a.GetCommitOffset() < b.n-1 {
			return status.Errorf(codes.FailedPrecondition, "entry %d, sent after ack %d, advertises commit %d", o, b.n-1, a.GetCommitOffset())
		}
		if got++; got == b.n || got == 2*b.n {
			if err := s.Send(&replicationpb.Ack{Offset: got - 1}); err != nil {
				return err
			}
		}
	}
}

// TestReplicateAdvertisesAnAckBeforeUsingTheRoomItFrees: the entries
// sent in the room an ack freed in the window advertise that ack as
// committed, even while the run is still taking the ack in (one
// cumulative ack of many entries).
func TestReplicateAdvertisesAnAckBeforeUsingTheRoomItFrees(t *testing.T) {
	const n = 1 << 17
	conn := serve(t, func(s *grpc.Server) { replicationgrpc.RegisterOxiaLogReplicationServer(s, batchAcker{n: n}) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 2 * n, Window: n, Cumulative: true, Latency: &leader.Histogram{}, Value: value})
	if err != nil || res.Acked != 2*n {
		t.Fatalf("%+v, %v", res, err)
	}
}

// TestSendSnapshotInstallsIntoARealNode: a snapshot sent whole is
// installed by the shard it names, its chunks marked with the term they
// are sent with, and the follower acknowledges its commit offset.
func TestSendSnapshotInstallsIntoARealNode(t *testing.T) {
	conn := realNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sn := termThreeSnapshot(t)
	// A follower fenced at term 3 takes the chunks of that term only.
	s := leader.Shard{Namespace: "snap", Shard: 2}
	if _, err := conn.NewTerm(ctx, s, 3, nil); err != nil {
		t.Fatal(err)
	}
	if ack, err := conn.SendSnapshot(ctx, s, 3, sn); err != nil || ack != 9 {
		t.Fatalf("SendSnapshot: ack %d, %v; want 9", ack, err)
	}
	status, err := conn.Status(ctx, s)
	if err != nil || status.GetTerm() != 3 || status.GetCommitOffset() != 9 {
		t.Fatalf("after the install: %v, %v; want term 3, commit 9", status, err)
	}
	if values, _, err := conn.Get(ctx, s, 9, []byte("k9")); err != nil || !values[0].GetFound() {
		t.Fatalf("k9 after the install: %v, %v", values, err)
	}
}

// TestDialOptionsWin: options given to Dial come after its own, and win
// over them: here a larger send limit than the one Dial sets.
func TestDialOptionsWin(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { echo.Register(s) })
	big, err := leader.Dial(conn.ClientConn().Target(), 1024, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := big.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 1,
		Value: func(_ logpos.Offset, buf []byte) []byte { return append(buf, make([]byte, 2048)...) }})
	if err != nil || res.Acked != 1 {
		t.Fatalf("a 2 KiB entry with Dial's limit 1 KiB raised to 1 MiB: %+v, %v", res, err)
	}
}
