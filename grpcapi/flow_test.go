package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// unreadAcks is enough per-entry acks (a dozen bytes each on the wire)
// to exhaust a 64 KiB stream window and the server's write quota.
const unreadAcks = 20000

// streamWithoutReading opens a stream from a leader that sends unreadAcks
// entries with per-entry acks and never reads the acks: the node's ack
// sender ends up blocked by flow control. It returns once the node
// appended every entry.
func streamWithoutReading(t *testing.T, n *node, s leader.Shard) rstream {
	t.Helper()
	// Fixed windows: no BDP estimation that would grow them.
	slow, err := leader.Dial(n.addr, 0, grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = slow.Close() })
	st, _ := aOpen(t, slow, s)
	for o := range int64(unreadAcks) {
		aSend(t, st, aEntry(1, 1, o, -1, false))
	}
	ctx := ctxT(t)
	for aStatus(t, n.conn, s).GetHeadOffset() != unreadAcks-1 {
		if ctx.Err() != nil {
			t.Fatal("the node never appended every entry")
		}
	}
	return st
}

// TestControlOperationsWithALeaderNotReadingAcks: NewTerm and DeleteShard
// end a stream whose leader stopped reading acks (§2.1, §2.6) without
// waiting for it to read them; the stream then ends Canceled.
func TestControlOperationsWithALeaderNotReadingAcks(t *testing.T) {
	n := startNode(t, "")
	for i, op := range []struct {
		name string
		run  func(context.Context, leader.Shard) error
	}{
		{"NewTerm", func(ctx context.Context, s leader.Shard) error { _, err := n.conn.NewTerm(ctx, s, 2, nil); return err }},
		{"DeleteShard", func(ctx context.Context, s leader.Shard) error { return n.conn.Delete(ctx, s, 1) }},
	} {
		t.Run(op.name, func(t *testing.T) {
			s := leader.Shard{Namespace: "flow", Shard: int64(i)}
			fence(t, n.conn, s, 1)
			st := streamWithoutReading(t, n, s)
			if err := op.run(ctxT(t), s); err != nil {
				t.Fatal(err)
			}
			acks, err := aDrain(st)
			aWantErr(t, err, codes.Canceled, "")
			for k, a := range acks {
				if a != int64(k) {
					t.Fatalf("ack %d is %d", k, a)
				}
			}
			if op.name == "NewTerm" {
				aWantStatus(t, n.conn, s, 2, replicationpb.ServingStatus_FENCED, int64(unreadAcks-1), -1)
			}
		})
	}
}

// TestShutdownWithALeaderNotReadingAcks: a graceful shutdown while a
// leader has stopped reading acks closes the follower and ends the
// stream; once the follower is closed, the leader has DrainTimeout to
// read what was sent to it, then its connection is closed and the shutdown
// completes without error (followerd exits 0). The leader reads acks in
// order, then Unavailable.
func TestShutdownWithALeaderNotReadingAcks(t *testing.T) {
	n := startNode(t, "", func(o *grpcapi.Options) { o.DrainTimeout = time.Millisecond })
	s := leader.Shard{Namespace: "flow", Shard: 9}
	fence(t, n.conn, s, 1)
	st := streamWithoutReading(t, n, s)
	n.stop() // fails the test if Shutdown returns an error
	acks, err := aDrain(st)
	aWantErr(t, err, codes.Unavailable, "")
	for k, a := range acks {
		if a != int64(k) {
			t.Fatalf("ack %d is %d", k, a)
		}
	}
}
