package leader_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/echo"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
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
	for _, size := range []int{0, 10, 100, 127, 128, 129, 200, 16384, 20000} {
		got := leader.AppendPaddedPut(nil, []byte("bench/42"), size)
		var wb kvpb.WriteBatch
		if err := proto.Unmarshal(got, &wb); err != nil || string(wb.GetOperations()[0].GetPut().GetKey()) != "bench/42" {
			t.Fatalf("size %d: %v %v", size, &wb, err)
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
	if h.Quantile(.5) != 0 || h.Count() != 0 {
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
	var o leader.Histogram
	o.Record(time.Second)
	h.Merge(&o)
	if h.Max() != time.Second || h.Count() != 1001 || h.Quantile(1) != time.Second {
		t.Errorf("after merge: max %v count %d q1 %v", h.Max(), h.Count(), h.Quantile(1))
	}
}

// liar acks what it is told to, whatever it receives.
type liar struct {
	replicationpb.UnimplementedOxiaLogReplicationServer
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
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
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
		{"stream ended early", []int64{0}, false, true, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := serve(t, func(s *grpc.Server) {
				replicationpb.RegisterOxiaLogReplicationServer(s, liar{acks: c.acks, end: c.end})
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

// TestReplicateAgainstEcho: a full run against the echo baseline, both
// ack modes, with latencies recorded for every entry.
func TestReplicateAgainstEcho(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { echo.Register(s) })
	for _, cumulative := range []bool{true, false} {
		lat := &leader.Histogram{}
		res, err := conn.Replicate(context.Background(), leader.Run{
			Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 100, Count: 1000, Window: 16,
			Cumulative: cumulative, Value: value, Latency: lat,
		})
		if err != nil || res.Acked != 1000 || res.LastAck != 1099 || lat.Count() != 1000 || res.Bytes != 1000 {
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
		res, err := conn.Replicate(ctx, leader.Run{Shard: s, Term: 1, First: 5, Count: 5, Window: 2, Cumulative: cumulative, Commit: 4, Value: value})
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
		{First: 0, Count: -5, Value: value},
		{First: 0, Count: 1},
	} {
		run.Shard = leader.Shard{Namespace: "x"}
		if res, err := conn.Replicate(context.Background(), run); err == nil || errors.Is(err, leader.ErrProtocol) || res.Sent != 0 {
			t.Errorf("First %d, Count %d: %+v, %v; want a usage error", run.First, run.Count, res, err)
		}
	}
}

// stalledLiar acks an offset never sent after the first Append, then
// stops reading, so that the leader's sends block on flow control.
type stalledLiar struct {
	replicationpb.UnimplementedOxiaLogReplicationServer
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
	conn := serve(t, func(s *grpc.Server) { replicationpb.RegisterOxiaLogReplicationServer(s, stalledLiar{}) })
	big := make([]byte, 1<<20) // 64 of them are far beyond gRPC's windows
	// The deadline only keeps a regression from hanging the suite.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := conn.Replicate(ctx, leader.Run{
		Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 64, Window: 64,
		Value: func(_ logpos.Offset, buf []byte) []byte { return append(buf, big...) },
	})
	if !errors.Is(err, leader.ErrProtocol) {
		t.Fatalf("got %v, want ErrProtocol", err)
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

// TestSendSnapshotSourceFails: when the source fails, even after every
// chunk was sent, the transfer is aborted, not ended: the follower
// installs nothing and the call leaves nothing running.
func TestSendSnapshotSourceFails(t *testing.T) {
	conn := realNode(t)
	ctx := context.Background()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SetTerm(3, store.TermOptions{}); err != nil {
		t.Fatal(err)
	}
	for o := range logpos.Offset(10) {
		if err := st.Apply(logpos.Entry{Term: 3, Offset: o, Value: leader.AppendPut(nil, []byte("k"), []byte("v"))}); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
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
