package grpcapi_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

type rstream = grpc.BidiStreamingClient[replicationpb.Append, replicationpb.Ack]

// aOpen opens a raw Replicate stream (nothing sent yet).
func aOpen(t *testing.T, c *leader.Conn, s leader.Shard) (rstream, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	st, err := c.Replication.Replicate(leader.StreamContext(ctx, s))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return st, cancel
}

func aEntry(term logpos.Term, entryTerm logpos.Term, off, commit int64, cum bool) *replicationpb.Append {
	return &replicationpb.Append{
		Term:                    int64(term),
		Entry:                   &replicationpb.LogEntry{Term: int64(entryTerm), Offset: off, Value: kvValue(logpos.Offset(off), nil)},
		CommitOffset:            commit,
		CumulativeAcksSupported: cum,
	}
}

func aCommit(term logpos.Term, commit int64, cum bool) *replicationpb.Append {
	return &replicationpb.Append{Term: int64(term), CommitOffset: commit, CumulativeAcksSupported: cum}
}

// aSend sends a. io.EOF means the server ended the stream already (say,
// refusing to attach it): its status is what the next Recv returns.
func aSend(t *testing.T, st rstream, a *replicationpb.Append) {
	t.Helper()
	if err := st.Send(a); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("send: %v", err)
	}
}

func aRecv(t *testing.T, st rstream) int64 {
	t.Helper()
	ack, err := st.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return ack.GetOffset()
}

// aDrain reads acks until the stream ends; err is nil for a clean end (EOF).
func aDrain(st rstream) ([]int64, error) {
	var acks []int64
	for {
		ack, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return acks, nil
		}
		if err != nil {
			return acks, err
		}
		acks = append(acks, ack.GetOffset())
	}
}

func aStatus(t *testing.T, c *leader.Conn, s leader.Shard) *replicationpb.GetStatusResponse {
	t.Helper()
	st, err := c.Status(ctxT(t), s)
	if err != nil {
		t.Fatalf("GetStatus(%v): %v", s, err)
	}
	return st
}

func aWantStatus(t *testing.T, c *leader.Conn, s leader.Shard, term int64, state replicationpb.ServingStatus, head, commit int64) {
	t.Helper()
	st := aStatus(t, c, s)
	if st.GetTerm() != term || st.GetStatus() != state || st.GetHeadOffset() != head || st.GetCommitOffset() != commit {
		t.Fatalf("status of %v = {term %d %v head %d commit %d}, want {term %d %v head %d commit %d}",
			s, st.GetTerm(), st.GetStatus(), st.GetHeadOffset(), st.GetCommitOffset(), term, state, head, commit)
	}
}

// aWantErr checks code, the exact set of details (one ErrorInfo with
// domain oxia.io and reason, or none when reason is "").
func aWantErr(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got %v, want code %v (reason %q)", err, code, reason)
	}
	details := st.Details()
	if reason == "" {
		if len(details) != 0 {
			t.Fatalf("got details %v on %v, want none", details, err)
		}
		return
	}
	if len(details) != 1 {
		t.Fatalf("got details %v on %v, want one ErrorInfo", details, err)
	}
	info, ok := details[0].(*errdetails.ErrorInfo)
	if !ok {
		t.Fatalf("got details %v on %v, want one ErrorInfo", details, err)
	}
	if info.GetReason() != reason || info.GetDomain() != "oxia.io" {
		t.Fatalf("got ErrorInfo{reason %q, domain %q} (%v), want reason %q, domain oxia.io", info.GetReason(), info.GetDomain(), err, reason)
	}
}

// aFill runs a per-entry stream of entries [from, to] in term (commit
// advertised: commit), waits for every ack, and half-closes.
func aFill(t *testing.T, c *leader.Conn, s leader.Shard, term logpos.Term, from, to, commit int64) {
	t.Helper()
	st, _ := aOpen(t, c, s)
	for o := from; o <= to; o++ {
		aSend(t, st, aEntry(term, term, o, commit, false))
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acks, err := aDrain(st)
	if err != nil || int64(len(acks)) != to-from+1 {
		t.Fatalf("fill %d..%d: acks %v, %v", from, to, acks, err)
	}
}

// aFillAdvertisedFirst runs a per-entry stream in term 1 whose first
// Append advertises commit (beyond the head), then entries 0..last with
// no advertisement; it waits for every ack and half-closes.
func aFillAdvertisedFirst(t *testing.T, c *leader.Conn, s leader.Shard, commit, last int64) {
	t.Helper()
	st, _ := aOpen(t, c, s)
	aSend(t, st, aCommit(1, commit, false))
	for o := int64(0); o <= last; o++ {
		aSend(t, st, aEntry(1, 1, o, -1, false))
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if acks, err := aDrain(st); err != nil || int64(len(acks)) != last+1 {
		t.Fatalf("acks %v, %v", acks, err)
	}
}

// aWaitStep polls the Inspect steps until one with event (and no error)
// appears after seq; it returns its seq.
func aWaitStep(t *testing.T, c *leader.Conn, s leader.Shard, after uint64, event string) uint64 {
	t.Helper()
	ctx := ctxT(t)
	for {
		steps, err := c.Steps(ctx, s, after)
		if status.Code(err) == codes.Aborted {
			steps, err = nil, nil // not hosted yet: the call that opens it is on its way
		}
		if err != nil {
			t.Fatalf("steps: %v", err)
		}
		for _, st := range steps {
			if st.GetEvent() == event && st.GetError() == "" {
				return st.GetSeq()
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s step", event)
		default:
			runtime.Gosched()
		}
	}
}

func aLastSeq(t *testing.T, c *leader.Conn, s leader.Shard) uint64 {
	t.Helper()
	steps, err := c.Steps(ctxT(t), s, 0)
	if err != nil || len(steps) == 0 {
		return 0
	}
	return steps[len(steps)-1].GetSeq()
}

// aHoldInstall starts a SendSnapshot on s with the first chunk of a
// real snapshot of term and waits until the install is attached. It
// returns a function that aborts the transfer (cancelling the call) and
// returns the call's error.
func aHoldInstall(t *testing.T, c *leader.Conn, s leader.Shard, term logpos.Term) (rest []*replicationpb.SnapshotChunk, stream grpc.ClientStreamingClient[replicationpb.SnapshotChunk, replicationpb.SnapshotResponse], cancel context.CancelFunc) {
	t.Helper()
	chunks := snapshotOf(t, term, 3)
	ctx, cancel := context.WithCancel(ctxT(t))
	t.Cleanup(cancel)
	seq := aLastSeq(t, c, s)
	stream, err := c.Replication.SendSnapshot(leader.StreamContext(ctx, s))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(chunks[0]); err != nil {
		t.Fatal(err)
	}
	aWaitStep(t, c, s, seq, "BeginInstall")
	return chunks[1:], stream, cancel
}
