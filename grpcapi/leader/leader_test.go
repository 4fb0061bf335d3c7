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
	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/grpcapi/echo"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
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
	}{
		{"ack for an entry not sent", []int64{50}, true, false},
		{"per-entry ack out of order", []int64{1}, false, false},
		{"cumulative ack going back", []int64{3, 2}, true, false},
		{"stream ended early", []int64{0}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := serve(t, func(s *grpc.Server) {
				replicationpb.RegisterOxiaLogReplicationServer(s, liar{acks: c.acks, end: c.end})
			})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 0, Count: 10, Window: 10, Cumulative: c.cumulative, Value: value})
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
