package leader_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store/kvpb"
)

// earlyAcker acks entries 0 and 1 as soon as entry 0 arrives (atOnce: as
// soon as the stream opens, before any entry), then waits for the leader
// to end the stream and says so on ended.
type earlyAcker struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	ended  chan<- struct{}
	atOnce bool
}

func (f earlyAcker) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	defer close(f.ended)
	if !f.atOnce {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
	for _, o := range []int64{0, 1} {
		if err := s.Send(&replicationpb.Ack{Offset: o}); err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return s.Context().Err()
}

// TestReplicatePerEntryAckForAnEntryNotSent: in per-entry mode an ack
// for the next offset, arriving before that entry was sent (the leader is
// still making its value), acknowledges an entry the follower never
// received: a protocol violation, not an ack.
func TestReplicatePerEntryAckForAnEntryNotSent(t *testing.T) {
	ended := make(chan struct{})
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, earlyAcker{ended: ended})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	acked1 := make(chan struct{})
	_, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 3, Window: 2,
		OnAck: func(o logpos.Offset) {
			if o == 1 {
				close(acked1)
			}
		},
		Value: func(off logpos.Offset, buf []byte) []byte {
			if off == 1 { // entry 1 is not sent until this returns
				select {
				case <-ended: // the leader refused ack 1 and ended the stream
				case <-acked1:
					t.Error("ack 1 taken before entry 1 was sent")
					cancel()
				case <-ctx.Done():
				}
			}
			return value(off, buf)
		}})
	if !errors.Is(err, leader.ErrProtocol) {
		t.Fatalf("got %v, want ErrProtocol", err)
	}
}

// TestReplicateAckBeforeAnyEntrySent: an ack for the run's first offset,
// arriving before that entry was sent, acknowledges an entry the follower
// never received, in either ack mode: a protocol violation.
func TestReplicateAckBeforeAnyEntrySent(t *testing.T) {
	for _, cumulative := range []bool{false, true} {
		ended := make(chan struct{})
		conn := serve(t, func(s *grpc.Server) {
			replicationgrpc.RegisterOxiaLogReplicationServer(s, earlyAcker{ended: ended, atOnce: true})
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		acked0 := make(chan struct{})
		_, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 2, Window: 2, Cumulative: cumulative,
			OnAck: func(o logpos.Offset) {
				if o == 0 {
					close(acked0)
				}
			},
			Value: func(off logpos.Offset, buf []byte) []byte {
				if off == 0 { // entry 0 is not sent until this returns
					select {
					case <-ended: // the leader refused ack 0 and ended the stream
					case <-acked0:
						t.Errorf("cumulative %v: ack 0 taken before entry 0 was sent", cumulative)
						cancel()
					case <-ctx.Done():
					}
				}
				return value(off, buf)
			}})
		cancel()
		if !errors.Is(err, leader.ErrProtocol) {
			t.Fatalf("cumulative %v: got %v, want ErrProtocol", cumulative, err)
		}
	}
}

// TestReplicateCountsAcksBeforeTheRun: cumulative acks below the run's
// first entry, before any entry of the run is acknowledged, are counted
// in Result.PriorAcks and cover nothing.
func TestReplicateCountsAcksBeforeTheRun(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: []pacedStep{{recv: 2, acks: []int64{3, 4, 6}}}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 5, Count: 2, Window: 2, Cumulative: true, Commit: 4, Value: value})
	if err != nil || res.PriorAcks != 2 || res.Acked != 2 || res.LastAck != 6 {
		t.Errorf("acks 3, 4, 6 for 5..6: %+v, %v; want two prior acks, both entries acknowledged", res, err)
	}
}

// TestReplicateCountZeroAdvertisesTheCommit: a run of no entries sends
// one entry-less Append advertising Run.Commit, and ends when the
// follower ends the stream.
func TestReplicateCountZeroAdvertisesTheCommit(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, windowChecker{window: 1, commit: 9})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 10, Commit: 9})
	if err != nil || res.Sent != 0 || res.Acked != 0 || res.LastAck != logpos.NoOffset {
		t.Errorf("a run of no entries: %+v, %v", res, err)
	}
}

// TestReplicateCumulativeAckBackBelowTheDurableHead: a follower holding
// 0..15 acks its durable head 15 for the first entry of a run re-sending
// 0..19, then acks 1: its acks went back, even though 1 is an entry sent
// and not yet covered by the run's count.
func TestReplicateCumulativeAckBackBelowTheDurableHead(t *testing.T) {
	script := []pacedStep{{recv: 1, acks: []int64{15}}}
	for o := int64(1); o < 20; o++ {
		script = append(script, pacedStep{recv: 1, acks: []int64{o}})
	}
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: script})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 20, Window: 1, Cumulative: true, Resent: 16, Value: value})
	if !errors.Is(err, leader.ErrProtocol) {
		t.Fatalf("acks 15 then 1: %+v, %v; want ErrProtocol", res, err)
	}
}

// TestReplicateRepeatsBeyondResent: one entry re-sent (Resent 1): the
// follower's durable head 7 answers it, and one repeat is allowed; a
// second repeat answers no duplicate.
func TestReplicateRepeatsBeyondResent(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: []pacedStep{{recv: 1, acks: []int64{7, 7, 7}}}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 5, Count: 1, Window: 1, Cumulative: true, Commit: 4, Resent: 1, Value: value})
	if !errors.Is(err, leader.ErrProtocol) {
		t.Fatalf("acks 7, 7, 7 for one re-sent entry: %+v, %v; want ErrProtocol", res, err)
	}
}

// TestReplicateRepeatedAckBeforeTheRun: a cumulative ack below the run,
// repeated with no entry re-sent, answers no duplicate.
func TestReplicateRepeatedAckBeforeTheRun(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: []pacedStep{{recv: 10, acks: []int64{3, 3, 14}}}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 5, Count: 10, Window: 10, Cumulative: true, Commit: 4, Value: value})
	if !errors.Is(err, leader.ErrProtocol) {
		t.Fatalf("acks 3, 3, 14 for 5..14: %+v, %v; want ErrProtocol", res, err)
	}
}

// commitWatcher acks every entry and, when the leader half-closes, fails
// the stream unless an entry-less Append after the last entry advertised
// that entry as committed.
type commitWatcher struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
}

func (commitWatcher) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	last, advertised := int64(-1), int64(-1)
	for {
		a, err := s.Recv()
		if errors.Is(err, io.EOF) {
			if advertised != last {
				return status.Errorf(codes.FailedPrecondition, "the run ended with entry %d, advertised %d after it", last, advertised)
			}
			return nil
		}
		if err != nil {
			return err
		}
		if a.GetEntry() == nil {
			advertised = a.GetCommitOffset()
			continue
		}
		last, advertised = a.GetEntry().GetOffset(), -1
		if err := s.Send(&replicationpb.Ack{Offset: last}); err != nil {
			return err
		}
	}
}

// TestReplicateAdvertisesTheLastAckAtTheEnd: the run's end tells the
// follower its last entry is committed, in both ack modes.
func TestReplicateAdvertisesTheLastAckAtTheEnd(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) { replicationgrpc.RegisterOxiaLogReplicationServer(s, commitWatcher{}) })
	for _, cumulative := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 10, Count: 50, Window: 4, Cumulative: cumulative, Commit: 9, Value: value})
		cancel()
		if err != nil || res.Acked != 50 {
			t.Errorf("cumulative %v: %+v, %v", cumulative, res, err)
		}
	}
}

// quitter acks entry 0, then ends the stream normally while the leader
// still has entries to send; ended is closed just before it returns.
type quitter struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	ended chan<- struct{}
}

func (q quitter) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	defer close(q.ended)
	if _, err := s.Recv(); err != nil {
		return err
	}
	return s.Send(&replicationpb.Ack{Offset: 0})
}

// TestReplicateFollowerEndsWhileEntriesAreSent: a follower that ends the
// stream (OK) with one entry acknowledged, while the leader is still
// sending (its sends then fail with io.EOF), did not do what the run
// asked: a protocol violation, not a success.
func TestReplicateFollowerEndsWhileEntriesAreSent(t *testing.T) {
	ended := make(chan struct{})
	conn := serve(t, func(s *grpc.Server) { replicationgrpc.RegisterOxiaLogReplicationServer(s, quitter{ended: ended}) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const count = 1 << 16 // far beyond gRPC's stream window: a send fails once the stream is gone
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: count, Window: count,
		Value: func(off logpos.Offset, buf []byte) []byte {
			if off == 1 {
				<-ended
			}
			return value(off, buf)
		}})
	if !errors.Is(err, leader.ErrProtocol) {
		t.Fatalf("a follower ending the stream after one ack of %d: %+v, %v; want ErrProtocol", count, res, err)
	}
}

// TestReplicateReportsEachAck: OnAck gets each ack's offset (the
// follower's durable head, beyond the entries of a re-sent run), and
// Run.Acked counts the entries acknowledged.
func TestReplicateReportsEachAck(t *testing.T) {
	var script []pacedStep
	for range 5 {
		script = append(script, pacedStep{recv: 1, acks: []int64{19}})
	}
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: script})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var acks []logpos.Offset
	var acked atomic.Int64
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 5, Count: 5, Window: 1, Cumulative: true, Commit: 4, Resent: 5, Value: value,
		OnAck: func(o logpos.Offset) { acks = append(acks, o) }, Acked: &acked})
	if err != nil || res.Acked != 5 || res.LastAck != 19 {
		t.Fatalf("%+v, %v", res, err)
	}
	if want := []logpos.Offset{19, 19, 19, 19, 19}; !slices.Equal(acks, want) {
		t.Errorf("OnAck got %v, want %v", acks, want)
	}
	if acked.Load() != 5 {
		t.Errorf("Run.Acked counted %d, want 5", acked.Load())
	}
}

// TestReplicateCumulativeLatencyIsEachEntrysOwn: one cumulative ack
// covering entries 0 and 1 ends both latencies, each from its own send:
// entry 0's spans the making of entry 1's value, work the test times.
func TestReplicateCumulativeLatencyIsEachEntrysOwn(t *testing.T) {
	// The follower acks entries 0 and 1 at once, with a cumulative ack 1.
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: []pacedStep{{recv: 2, acks: []int64{1}}}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var valueWork time.Duration
	lat := &leader.Histogram{}
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 2, Window: 2, Cumulative: true, Latency: lat,
		Value: func(off logpos.Offset, buf []byte) []byte {
			if off == 1 {
				start := time.Now()
				for range 5 {
					runtime.GC()
				}
				valueWork = time.Since(start)
			}
			return value(off, buf)
		}})
	if err != nil || res.Acked != 2 || lat.Count() != 2 {
		t.Fatalf("%+v, %v, %d latencies", res, err, lat.Count())
	}
	// Buckets keep a value within 1/16 of its size; Max is exact.
	if lat.Max() < valueWork {
		t.Errorf("largest latency %v, below the %v entry 0 waited for entry 1's value", lat.Max(), valueWork)
	}
	// Entry 1's latency starts at its own send, after that wait.
	if least := lat.Quantile(0); lat.Max()-least < valueWork-least/16 {
		t.Errorf("latencies %v and %v, less than the %v between the two sends apart", least, lat.Max(), valueWork)
	}
}

// TestHistogramMergeAndMean: a merged histogram answers quantiles and the
// mean over every duration of both.
func TestHistogramMergeAndMean(t *testing.T) {
	var a, b, m leader.Histogram
	for i := 1; i <= 100; i++ {
		a.Record(time.Duration(i) * time.Millisecond)
		b.Record(time.Duration(i) * time.Second)
	}
	if got, want := a.Mean(), 50500*time.Microsecond; got != want {
		t.Errorf("Mean of 1..100 ms = %v, want %v", got, want)
	}
	m.Merge(&a)
	m.Merge(&b)
	if m.Count() != 200 || m.Max() != 100*time.Second {
		t.Fatalf("merged: count %d, max %v", m.Count(), m.Max())
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{.25, 50 * time.Millisecond}, {.5, 100 * time.Millisecond}, {.75, 50 * time.Second}} {
		if got := m.Quantile(c.q); got < c.want-c.want/16 || got > c.want+c.want/16 {
			t.Errorf("merged Quantile(%v) = %v, want %v ± 1/16", c.q, got, c.want)
		}
	}
	if got, want := m.Mean(), (50500*time.Microsecond+50500*time.Millisecond)/2; got != want {
		t.Errorf("merged Mean = %v, want %v", got, want)
	}
}

// TestAppendPaddedPutIsAsLongAsItCanBe: the batch is at most size bytes,
// and one more value byte would make it longer than size.
func TestAppendPaddedPutIsAsLongAsItCanBe(t *testing.T) {
	for _, key := range [][]byte{[]byte("bench/42"), nil} {
		paddedPutIsAsLongAsItCanBe(t, key)
	}
}

func paddedPutIsAsLongAsItCanBe(t *testing.T, key []byte) {
	t.Helper()
	minSize := len(leader.AppendPut(nil, key, nil))
	for size := 0; size < 70000; size += 1 + size/64 {
		got := leader.AppendPaddedPut(nil, key, size)
		var wb kvpb.WriteBatch
		if err := proto.Unmarshal(got, &wb); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		n := len(wb.GetOperations()[0].GetPut().GetValue())
		if size >= minSize && len(got) > size {
			t.Fatalf("size %d: %d bytes", size, len(got))
		}
		if longer := len(leader.AppendPut(nil, key, make([]byte, n+1))); longer <= size {
			t.Fatalf("size %d: a %d B value makes %d bytes, but a %d B one fits (%d bytes)", size, n, len(got), n+1, longer)
		}
	}
}

// repeater acks its durable head 7 three times as soon as the first
// entry arrives, then waits for the leader to end the stream and says so
// on ended.
type repeater struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	ended chan<- struct{}
}

func (f repeater) Replicate(s grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	defer close(f.ended)
	if _, err := s.Recv(); err != nil {
		return err
	}
	for range 3 {
		if err := s.Send(&replicationpb.Ack{Offset: 7}); err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return s.Context().Err()
}

// TestReplicateRepeatsBeyondTheDuplicatesSent: a run re-sending 5..7
// (Resent 3) has sent only entry 5 (entry 6's value is still being made)
// when the follower acks 7, 7, 7: the first covers entry 5, one repeat is
// allowed, but the second answers a duplicate not sent yet.
func TestReplicateRepeatsBeyondTheDuplicatesSent(t *testing.T) {
	ended := make(chan struct{})
	conn := serve(t, func(s *grpc.Server) { replicationgrpc.RegisterOxiaLogReplicationServer(s, repeater{ended: ended}) })
	// The deadline only keeps a regression (the repeats taken, the
	// follower waiting for an end that does not come) from hanging.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 5, Count: 3, Window: 1, Cumulative: true, Commit: 4, Resent: 3,
		Value: func(off logpos.Offset, buf []byte) []byte {
			if off == 6 {
				select {
				case <-ended:
				case <-ctx.Done():
				}
			}
			return value(off, buf)
		}})
	if !errors.Is(err, leader.ErrProtocol) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acks 7, 7, 7 with only entry 5 sent: %+v, %v; want ErrProtocol before the deadline", res, err)
	}
}

// TestReplicatePerEntryAckRepeated: in per-entry mode each entry is
// acknowledged exactly once: a second ack of entry 0 is a protocol
// violation, even when every entry is acknowledged after it.
func TestReplicatePerEntryAckRepeated(t *testing.T) {
	acks := []int64{0, 0}
	for o := int64(1); o < 10; o++ {
		acks = append(acks, o)
	}
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: []pacedStep{{recv: 10, acks: acks}}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, Count: 10, Window: 10, Value: value})
	if !errors.Is(err, leader.ErrProtocol) {
		t.Fatalf("acks 0, 0, 1..9 for 0..9 per entry: %+v, %v; want ErrProtocol", res, err)
	}
}

// TestReplicateRepeatAnsweringTheOnlyDuplicate: a run of one entry the
// follower holds (5, Resent 1): its durable head 7 covers the entry, and
// one repeat of 7 answers that duplicate, with only one entry ever sent.
func TestReplicateRepeatAnsweringTheOnlyDuplicate(t *testing.T) {
	conn := serve(t, func(s *grpc.Server) {
		replicationgrpc.RegisterOxiaLogReplicationServer(s, pacedFollower{script: []pacedStep{{recv: 1, acks: []int64{7, 7}}}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Replicate(ctx, leader.Run{Shard: leader.Shard{Namespace: "x"}, Term: 1, First: 5, Count: 1, Window: 1, Cumulative: true, Commit: 4, Resent: 1, Value: value})
	if err != nil || res.Acked != 1 || res.LastAck != 7 {
		t.Fatalf("acks 7, 7 for one re-sent entry 5: %+v, %v; want it acknowledged", res, err)
	}
}
