// Package echo is the baseline of the end-to-end benchmarks: a bare
// OxiaLogReplication Replicate stream that acknowledges every entry as
// soon as it arrives, storing nothing. It is shaped like the follower's
// synchronizer without the storage: a receive loop and one sender, acks
// per entry or coalesced into one cumulative ack per round. What the
// follower adds on top of it (the log, fsync, the applier, the lifecycle)
// is what the benchmarks measure.
package echo

import (
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// Server serves Replicate only; the other methods are Unimplemented.
type Server struct {
	replicationpb.UnimplementedOxiaLogReplicationServer
}

// Register registers an echo Server on r.
func Register(r grpc.ServiceRegistrar) {
	replicationpb.RegisterOxiaLogReplicationServer(r, Server{})
}

// Replicate acknowledges each entry received, until the client
// half-closes the stream (then it returns nil) or the stream fails.
func (Server) Replicate(stream grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	var mu sync.Mutex
	var (
		pending   []int64 // per-entry mode: offsets to acknowledge, in order
		highest   = int64(-1)
		acked     = int64(-1)
		mode      = 0 // 0 undecided, 1 per entry, 2 cumulative
		inputDone bool
		recvErr   error
	)
	wake := make(chan struct{}, 1)
	kick := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	go func() {
		for {
			a, err := stream.Recv()
			mu.Lock()
			if err != nil {
				inputDone = true
				if !errors.Is(err, io.EOF) {
					recvErr = err
				}
				mu.Unlock()
				kick()
				return
			}
			if mode == 0 {
				mode = 1
				if a.GetCumulativeAcksSupported() {
					mode = 2
				}
			}
			if e := a.GetEntry(); e != nil {
				if mode == 1 {
					pending = append(pending, e.GetOffset())
				}
				highest = max(highest, e.GetOffset())
			}
			mu.Unlock()
			kick()
		}
	}()
	var sending []int64
	ack := &replicationpb.Ack{}
	for range wake {
		mu.Lock()
		sending = sending[:0]
		if mode == 1 {
			sending = append(sending, pending...)
			pending = pending[:0]
		} else if highest > acked {
			sending = append(sending, highest)
		}
		done, err := inputDone, recvErr
		mu.Unlock()
		for _, o := range sending {
			ack.Offset = o
			if err := stream.Send(ack); err != nil {
				return err
			}
			acked = max(acked, o)
		}
		if done {
			return err
		}
	}
	return nil
}
