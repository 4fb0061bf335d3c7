package grpcapi_test

// Rule-by-rule checks of docs/spec.md §2.1–2.3, §2.5–2.7, §4 and §5 over
// real gRPC on loopback, written from the specification alone: check
// order, error codes and ErrorInfo reasons, acks, routing and the wire
// contract.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

const (
	sFenced   = replicationpb.ServingStatus_FENCED
	sFollower = replicationpb.ServingStatus_FOLLOWER
)

// waitCommit waits until s applied offset.
func waitCommit(t *testing.T, c *leader.Conn, s leader.Shard, off int64) {
	t.Helper()
	if _, _, err := c.Get(ctxT(t), s, logpos.Offset(off)); err != nil {
		t.Fatalf("waiting for commit %d on %v: %v", off, s, err)
	}
}

// TestConformanceTruncateCheckOrder: SPEC §2.2, the first failing check decides
// and a rejected Truncate changes nothing.
func TestConformanceTruncateCheckOrder(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "trunc", Shard: 1}
	fence(t, c, s, 2)
	aFill(t, c, s, 2, 0, 9, 4)
	waitCommit(t, c, s, 4)
	if _, err := c.NewTerm(ctx, s, 3, nil); err != nil {
		t.Fatal(err)
	}
	aWantStatus(t, c, s, 3, sFenced, 9, 4)

	tr := func(term int64, head *replicationpb.EntryId) error {
		_, err := c.Replication.Truncate(ctx, &replicationpb.TruncateRequest{Namespace: s.Namespace, Shard: s.Shard, Term: term, HeadEntryId: head})
		return err
	}
	// Fenced: term before offsets.
	aWantErr(t, tr(4, &replicationpb.EntryId{Term: 2, Offset: 2}), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	aWantErr(t, tr(2, &replicationpb.EntryId{Term: 2, Offset: 20}), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	aWantErr(t, tr(-1, &replicationpb.EntryId{Term: 2, Offset: 5}), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	aWantErr(t, tr(3, &replicationpb.EntryId{Term: 2, Offset: 3}), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	aWantErr(t, tr(3, &replicationpb.EntryId{Term: 2, Offset: -1}), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	aWantErr(t, tr(3, &replicationpb.EntryId{Term: 2, Offset: 10}), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	// Missing head entry first of all.
	aWantErr(t, tr(4, nil), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	aWantStatus(t, c, s, 3, sFenced, 9, 4)

	// An install attached (Fenced): conflict before term and offsets.
	rest, snap, cancelSnap := aHoldInstall(t, c, s, 3)
	_ = rest
	aWantErr(t, tr(4, &replicationpb.EntryId{Term: 2, Offset: 20}), codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	aWantErr(t, tr(3, &replicationpb.EntryId{Term: 2, Offset: 9}), codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	aWantErr(t, tr(3, nil), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	// A stream cannot attach beside the install.
	st, _ := aOpen(t, c, s)
	aSend(t, st, aEntry(3, 3, 10, -1, false))
	_, err := aDrain(st)
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	cancelSnap()
	_, err = snap.CloseAndRecv()
	if status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled install: %v", err)
	}
	aWantStatus(t, c, s, 3, sFenced, 9, 4)

	// The leader's head term is not compared.
	got, err := c.Truncate(ctx, s, 3, logpos.EntryID{Term: 999, Offset: 7})
	// The cancelled install may still be detaching: retry on conflict only.
	for err != nil && grpcapi.Reason(err) == grpcapi.ReasonResourceConflict {
		got, err = c.Truncate(ctx, s, 3, logpos.EntryID{Term: 999, Offset: 7})
	}
	if err != nil || got != (logpos.EntryID{Term: 3, Offset: 7}) {
		t.Fatalf("Truncate to 7: %v, %v; want {3, 7}", got, err)
	}
	aWantStatus(t, c, s, 3, sFollower, 7, 4)

	// Follower: status before term and offsets.
	aWantErr(t, tr(4, &replicationpb.EntryId{Term: 2, Offset: 20}), codes.FailedPrecondition, grpcapi.ReasonInvalidStatus)
	aWantErr(t, tr(3, &replicationpb.EntryId{Term: 2, Offset: 7}), codes.FailedPrecondition, grpcapi.ReasonInvalidStatus)
	// Follower with a stream: conflict before status.
	st, _ = aOpen(t, c, s)
	aSend(t, st, aEntry(3, 3, 8, -1, false))
	if a := aRecv(t, st); a != 8 {
		t.Fatalf("ack %d", a)
	}
	aWantErr(t, tr(4, &replicationpb.EntryId{Term: 2, Offset: 20}), codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	aWantErr(t, tr(4, nil), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	// The stream is unaffected.
	aSend(t, st, aEntry(3, 3, 9, -1, false))
	if a := aRecv(t, st); a != 9 {
		t.Fatalf("ack %d", a)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if acks, err := aDrain(st); err != nil || len(acks) != 0 {
		t.Fatalf("end: %v %v", acks, err)
	}
	aWantStatus(t, c, s, 3, sFollower, 9, 4)
}

// TestConformanceTruncateNotMemberWithInstall: §2.2 conflict comes before the
// status check; §2.3 NotMember comes before the conflict check.
func TestConformanceTruncateNotMemberWithInstall(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "nm", Shard: 0}
	// A stream before the install is refused: the node does not host
	// the shard.
	st, _ := aOpen(t, c, s)
	_, err := aDrain(st)
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)

	// The install opens it, NotMember.
	_, snap, cancelSnap := aHoldInstall(t, c, s, 4)
	_, err = c.Truncate(ctx, s, 4, logpos.NoEntry)
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	st, _ = aOpen(t, c, s)
	_, err = aDrain(st)
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	_, err = c.Status(ctx, s)
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	cancelSnap()
	_, _ = snap.CloseAndRecv()
}

// TestConformanceRejectedOpsDuringStream: rejected NewTerm / DeleteShard /
// Truncate while a stream is attached change nothing; the stream goes on.
func TestConformanceRejectedOpsDuringStream(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "rej", Shard: 0}
	fence(t, c, s, 5)
	st, _ := aOpen(t, c, s)
	// Entries of an older term (3): the reply of NewTerm carries it.
	aSend(t, st, aEntry(5, 3, 0, -1, false))
	if a := aRecv(t, st); a != 0 {
		t.Fatalf("ack %d", a)
	}
	nt := func(term int64, opts *replicationpb.NewTermOptions) error {
		_, err := c.Coordination.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: s.Namespace, Shard: s.Shard, Term: term, Options: opts})
		return err
	}
	aWantErr(t, nt(4, nil), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	aWantErr(t, nt(-1, nil), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	aWantErr(t, nt(-7, &replicationpb.NewTermOptions{KeySorting: 9}), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	aWantErr(t, c.Delete(ctx, s, 4), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	aWantErr(t, c.Delete(ctx, s, -1), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	_, err := c.Truncate(ctx, s, 5, logpos.EntryID{Term: 3, Offset: 0})
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	_, err = sendChunks(t, c, s, snapshotOf(t, 5, 2)...)
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict)
	aWantStatus(t, c, s, 5, sFollower, 0, -1)
	aSend(t, st, aEntry(5, 3, 1, -1, false))
	if a := aRecv(t, st); a != 1 {
		t.Fatalf("ack %d", a)
	}

	// NewTerm at the same term fences again: the stream is Canceled.
	head, err := c.NewTerm(ctx, s, 5, nil)
	if err != nil || head != (logpos.EntryID{Term: 3, Offset: 1}) {
		t.Fatalf("NewTerm(5) again: %v, %v; want {3, 1}", head, err)
	}
	_, err = aDrain(st)
	aWantErr(t, err, codes.Canceled, "")
	aWantStatus(t, c, s, 5, sFenced, 1, -1)
	// Idempotent: again, same answer.
	head2, err := c.NewTerm(ctx, s, 5, nil)
	if err != nil || head2 != head {
		t.Fatalf("NewTerm(5) a third time: %v, %v", head2, err)
	}
	// A new stream attaches at once, and its first durable entry makes
	// the follower a Follower before the ack.
	st2, _ := aOpen(t, c, s)
	aSend(t, st2, aEntry(5, 5, 2, -1, false))
	if a := aRecv(t, st2); a != 2 {
		t.Fatalf("ack %d", a)
	}
	aWantStatus(t, c, s, 5, sFollower, 2, -1)
	if err := st2.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := aDrain(st2); err != nil {
		t.Fatal(err)
	}
}

// TestConformanceNewTermDuringInstallSameTerm: NewTerm at the same term aborts
// an install in progress; the install fails with INVALID_TERM.
func TestConformanceNewTermDuringInstallSameTerm(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "inst", Shard: 0}
	fence(t, c, s, 2)
	aFill(t, c, s, 2, 0, 3, -1)
	rest, snap, _ := aHoldInstall(t, c, s, 2)
	head, err := c.NewTerm(ctx, s, 2, nil)
	if err != nil || head.Offset != 3 {
		t.Fatalf("NewTerm: %v %v", head, err)
	}
	for _, ch := range rest {
		if err := snap.Send(ch); err != nil {
			break
		}
	}
	_, err = snap.CloseAndRecv()
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	aWantStatus(t, c, s, 2, sFenced, 3, -1)
}

// TestConformanceNewTermDuringInstallOnNotMember: §2.4 an install on a
// NotMember follower (which takes any chunk term) that a NewTerm ran
// during is abandoned with INVALID_TERM, whether the new term is below,
// at or above the chunks' term; the follower is as NewTerm left it.
func TestConformanceNewTermDuringInstallOnNotMember(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	for i, term := range []logpos.Term{2, 3, 4} { // the chunks' term is 3
		s := leader.Shard{Namespace: "nminst", Shard: int64(i)}
		rest, snap, _ := aHoldInstall(t, c, s, 3)
		head, err := c.NewTerm(ctxT(t), s, term, nil)
		if err != nil || head != logpos.NoEntry {
			t.Fatalf("NewTerm(%d) during the install: %v, %v", term, head, err)
		}
		for _, ch := range rest {
			if err := snap.Send(ch); err != nil {
				break
			}
		}
		_, err = snap.CloseAndRecv()
		aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
		aWantStatus(t, c, s, int64(term), sFenced, -1, -1)
	}
}

// TestConformanceNoEntryAfterNewTerm: after NewTerm returns, no entry of the old
// stream lands (§2.1, invariant 4).
func TestConformanceNoEntryAfterNewTerm(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "race", Shard: 0}
	term := logpos.Term(1)
	fence(t, c, s, term)
	next := int64(0)
	for round := 0; round < 15; round++ {
		st, cancel := aOpen(t, c, s)
		sendDone := make(chan int64)
		go func(first int64) {
			o := first
			for ; o < first+5000; o++ {
				if err := st.Send(aEntry(term, term, o, -1, round%2 == 0)); err != nil {
					break
				}
			}
			sendDone <- o
		}(next)
		// Wait for some acks.
		for {
			a, err := st.Recv()
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if a.GetOffset() >= next+int64(round*10) {
				break
			}
		}
		reply, err := c.NewTerm(ctx, s, term+1, nil)
		if err != nil {
			t.Fatal(err)
		}
		h1 := aStatus(t, c, s).GetHeadOffset()
		if reply.Offset > logpos.Offset(h1) {
			t.Fatalf("round %d: NewTerm replied %v beyond head %d", round, reply, h1)
		}
		_, err = aDrain(st)
		aWantErr(t, err, codes.Canceled, "")
		<-sendDone
		cancel()
		h2 := aStatus(t, c, s).GetHeadOffset()
		if h2 != h1 {
			t.Fatalf("round %d: head moved from %d to %d after NewTerm returned", round, h1, h2)
		}
		term++
		got, err := c.Truncate(ctx, s, term, reply)
		if err != nil || got.Offset != reply.Offset {
			t.Fatalf("truncate: %v %v", got, err)
		}
		next = int64(got.Offset) + 1
	}
}

// TestConformanceAppendChecks: §2.3 an Append that fails changes nothing; the
// first accepted entry moves Fenced to Follower; attaching does not.
func TestConformanceAppendChecks(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "app", Shard: 0}
	fence(t, c, s, 1)
	aFill(t, c, s, 1, 0, 4, -1)
	if _, err := c.NewTerm(ctx, s, 2, nil); err != nil {
		t.Fatal(err)
	}
	aWantStatus(t, c, s, 2, sFenced, 4, -1)

	for _, tc := range []struct {
		name string
		a    *replicationpb.Append
		code codes.Code
		r    string
	}{
		{"term -1", aEntry(-1, 2, 5, 4, false), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm},
		{"term -1 commit only", aCommit(-1, 4, false), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm},
		{"older term", aEntry(1, 1, 5, 4, false), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm},
		{"newer term", aEntry(3, 3, 5, 4, true), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm},
		{"older term duplicate", aEntry(1, 1, 3, 4, false), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm},
		{"older term with a gap (the term is checked first)", aEntry(1, 1, 9, 4, false), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm},
		{"newer term with a gap", aEntry(3, 3, 1<<40, 4, true), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm},
		{"gap", aEntry(2, 2, 6, 4, false), codes.InvalidArgument, grpcapi.ReasonInvalidArgument},
		{"far gap", aEntry(2, 2, 1<<40, 4, true), codes.InvalidArgument, grpcapi.ReasonInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := aOpen(t, c, s)
			aSend(t, st, tc.a)
			acks, err := aDrain(st)
			if len(acks) != 0 {
				t.Fatalf("acks %v", acks)
			}
			aWantErr(t, err, tc.code, tc.r)
			aWantStatus(t, c, s, 2, sFenced, 4, -1)
		})
	}
	// A commit-only stream: no ack, stays Fenced; the commit may move.
	seq := aLastSeq(t, c, s)
	st, _ := aOpen(t, c, s)
	aSend(t, st, aCommit(2, 2, true))
	aWaitStep(t, c, s, seq, "AttachStream")
	waitCommit(t, c, s, 2)
	aWantStatus(t, c, s, 2, sFenced, 4, 2)
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acks, err := aDrain(st)
	if err != nil || len(acks) != 0 {
		t.Fatalf("commit-only stream: acks %v, %v", acks, err)
	}
	aWantStatus(t, c, s, 2, sFenced, 4, 2)
	// A stream with no message at all.
	st, _ = aOpen(t, c, s)
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acks, err = aDrain(st)
	if err != nil || len(acks) != 0 {
		t.Fatalf("empty stream: acks %v, %v", acks, err)
	}
	aWantStatus(t, c, s, 2, sFenced, 4, 2)

	// A duplicate is accepted: acked, and Fenced → Follower.
	st, _ = aOpen(t, c, s)
	aSend(t, st, aEntry(2, 1, 3, 2, false))
	if a := aRecv(t, st); a != 3 {
		t.Fatalf("ack %d", a)
	}
	aWantStatus(t, c, s, 2, sFollower, 4, 2)
	// Mid-stream failure: follower stays Follower, head unchanged.
	aSend(t, st, aEntry(2, 2, 7, 2, false))
	_, err = aDrain(st)
	aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	aWantStatus(t, c, s, 2, sFollower, 4, 2)
	// ... and is usable.
	aFill(t, c, s, 2, 5, 6, 2)
	aWantStatus(t, c, s, 2, sFollower, 6, 2)
}

// TestConformanceNegativeEntryOffset: an entry offset below 0 is no
// offset at all. The follower is stricter than "entry.offset <= head →
// duplicate" (§2.3) reads: such an Append is a bad request, refused with
// InvalidArgument naming the offset, and nothing is acked or changed.
func TestConformanceNegativeEntryOffset(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	s := leader.Shard{Namespace: "neg", Shard: 0}
	fence(t, c, s, 1)
	aFill(t, c, s, 1, 0, 2, -1)
	before := aStatus(t, c, s)
	st, _ := aOpen(t, c, s)
	aSend(t, st, aEntry(1, 1, -1, -1, false))
	acks, err := aDrain(st)
	aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	if len(acks) != 0 || !strings.Contains(err.Error(), "offset -1") {
		t.Fatalf("acks %v, error %v: want none, and an error naming the offset", acks, err)
	}
	aWantStatus(t, c, s, 1, before.GetStatus(), before.GetHeadOffset(), before.GetCommitOffset())
}

// TestConformancePerEntryAcks: exactly one ack per entry received, in the order
// received, duplicates included; commit-only appends are not acked.
func TestConformancePerEntryAcks(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	s := leader.Shard{Namespace: "pe", Shard: 0}
	fence(t, c, s, 1)
	st, _ := aOpen(t, c, s)
	// The first Append decides: per-entry, even though later ones ask
	// for cumulative acks.
	aSend(t, st, aCommit(1, -1, false))
	var want []int64
	for o := int64(0); o < 5; o++ {
		aSend(t, st, aEntry(1, 1, o, -1, true))
		want = append(want, o)
	}
	for _, o := range []int64{2, 0, 4} {
		aSend(t, st, aEntry(1, 1, o, -1, true))
		want = append(want, o)
	}
	aSend(t, st, aCommit(1, 1, true))
	aSend(t, st, aEntry(1, 1, 5, 1, true))
	aSend(t, st, aEntry(1, 1, 1, 1, true))
	aSend(t, st, aCommit(1, 3, true))
	want = append(want, 5, 1)
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acks, err := aDrain(st)
	if err != nil || !slices.Equal(acks, want) {
		t.Fatalf("acks %v, %v; want %v", acks, err, want)
	}
	// The last advertisement was 3: the applier gets there on its own.
	waitCommit(t, c, s, 3)
	aWantStatus(t, c, s, 1, sFollower, 5, 3)

	// Many entries then an immediate half-close: every one acked, in order.
	st, _ = aOpen(t, c, s)
	want = nil
	for o := int64(6); o < 1006; o++ {
		aSend(t, st, aEntry(1, 1, o, -1, false))
		want = append(want, o)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acks, err = aDrain(st)
	if err != nil || !slices.Equal(acks, want) {
		t.Fatalf("half-close: %d acks (first %v), %v", len(acks), acks[:min(5, len(acks))], err)
	}
	// A new stream attaches at once after the clean end.
	aFill(t, c, s, 1, 1006, 1006, -1)
}

// TestConformanceCumulativeAcks: cumulative mode: non-decreasing acks, a value
// repeated only to answer a duplicate, decided by the first Append.
func TestConformanceCumulativeAcks(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	s := leader.Shard{Namespace: "cum", Shard: 0}
	fence(t, c, s, 1)
	st, _ := aOpen(t, c, s)
	aSend(t, st, aCommit(1, -1, true)) // decides: cumulative
	for o := int64(0); o < 300; o++ {
		aSend(t, st, aEntry(1, 1, o, -1, false))
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acks, err := aDrain(st)
	if err != nil || len(acks) == 0 || acks[len(acks)-1] != 299 {
		t.Fatalf("acks %v, %v", acks, err)
	}
	for i := 1; i < len(acks); i++ {
		if acks[i] <= acks[i-1] {
			t.Fatalf("acks not increasing without duplicates: %v", acks)
		}
	}

	// Duplicates only: each is answered with the durable head.
	st, _ = aOpen(t, c, s)
	aSend(t, st, aEntry(1, 1, 5, -1, true))
	if a := aRecv(t, st); a != 299 {
		t.Fatalf("ack of duplicate 5: %d, want the durable head 299", a)
	}
	aSend(t, st, aEntry(1, 1, 7, -1, true))
	if a := aRecv(t, st); a != 299 {
		t.Fatalf("ack of duplicate 7: %d", a)
	}
	aSend(t, st, aEntry(1, 1, 300, -1, true))
	if a := aRecv(t, st); a != 300 {
		t.Fatalf("ack of 300: %d", a)
	}
	aSend(t, st, aCommit(1, 100, true))
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if acks, err := aDrain(st); err != nil || len(acks) != 0 {
		t.Fatalf("after half-close: %v, %v", acks, err)
	}

	// A cumulative stream with only commit advertisements gets no ack.
	st, _ = aOpen(t, c, s)
	aSend(t, st, aCommit(1, 200, true))
	aSend(t, st, aCommit(1, 250, true))
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if acks, err := aDrain(st); err != nil || len(acks) != 0 {
		t.Fatalf("commit-only cumulative stream: acks %v, %v", acks, err)
	}
	waitCommit(t, c, s, 250)
}

// TestConformanceSnapshotPoint: §2.1 NewTerm replies the snapshot point when the
// log is empty; §2.2 Truncate's head never below commit; §2.3 offsets at
// or below the snapshot point are durable duplicates, and per-entry acks
// only what the stream delivered.
func TestConformanceSnapshotPoint(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "snap", Shard: 0}
	resp, err := sendChunks(t, c, s, snapshotOf(t, 3, 5)...) // from NotMember
	if err != nil || resp.GetAckOffset() != 4 {
		t.Fatalf("install: %v, %v", resp, err)
	}
	aWantStatus(t, c, s, 3, sFollower, 4, 4)
	head, err := c.NewTerm(ctx, s, 4, nil)
	if err != nil || head != (logpos.EntryID{Term: 3, Offset: 4}) {
		t.Fatalf("NewTerm after install: %v, %v; want {3, 4}", head, err)
	}
	_, err = c.Truncate(ctx, s, 4, logpos.EntryID{Term: 3, Offset: 3})
	aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	_, err = c.Truncate(ctx, s, 4, logpos.NoEntry)
	aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	aWantStatus(t, c, s, 4, sFenced, 4, 4)
	got, err := c.Truncate(ctx, s, 4, logpos.EntryID{Term: 3, Offset: 4})
	if err != nil || got != (logpos.EntryID{Term: 4, Offset: 4}) {
		t.Fatalf("Truncate to the snapshot point: %v, %v", got, err)
	}
	st, _ := aOpen(t, c, s)
	for _, o := range []int64{1, 4, 0, 5, 2} {
		aSend(t, st, aEntry(4, 4, o, 4, false))
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acks, err := aDrain(st)
	if err != nil || !slices.Equal(acks, []int64{1, 4, 0, 5, 2}) {
		t.Fatalf("acks %v, %v", acks, err)
	}
	// A gap after the snapshot point.
	st, _ = aOpen(t, c, s)
	aSend(t, st, aEntry(4, 4, 7, 4, false))
	_, err = aDrain(st)
	aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	aWantStatus(t, c, s, 4, sFollower, 5, 4)
}

// TestConformanceCommitAdvertisements: commit-only appends only raise
// advertised; duplicates raise it too; a failing Append does not.
func TestConformanceCommitAdvertisements(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	s := leader.Shard{Namespace: "adv", Shard: 0}
	fence(t, c, s, 1)
	aFillAdvertisedFirst(t, c, s, 3, 5)
	waitCommit(t, c, s, 3)
	// A duplicate advertises.
	st, _ := aOpen(t, c, s)
	aSend(t, st, aEntry(1, 1, 2, 4, false))
	if a := aRecv(t, st); a != 2 {
		t.Fatalf("ack %d", a)
	}
	waitCommit(t, c, s, 4)
	// A gap carrying a commit advertisement is refused whole.
	aSend(t, st, aEntry(1, 1, 9, 5, false))
	_, err := aDrain(st)
	aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	// A wrong-term commit-only Append neither.
	st, _ = aOpen(t, c, s)
	aSend(t, st, aCommit(2, 5, false))
	_, err = aDrain(st)
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	// Wake the applier with a duplicate that advertises nothing new.
	aFill(t, c, s, 1, 3, 3, -1)
	ctx, cancel := context.WithTimeout(ctxT(t), time.Second)
	defer cancel()
	_, _, err = c.Get(ctx, s, 5)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("commit reached 5 from a refused Append: %v (status %v)", err, aStatus(t, c, s))
	}
	aWantStatus(t, c, s, 1, sFollower, 5, 4)
}

// TestConformanceAdvertisedSurvivesTruncate: advertised is the highest
// commit offset a leader sent (§1 conventions); Truncate does not lower
// it (§2.2), so entries up to it that arrive after a Truncate are applied
// (§3) without the leader advertising them again.
func TestConformanceAdvertisedSurvivesTruncate(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "advtrunc", Shard: 0}
	fence(t, c, s, 1)
	aFillAdvertisedFirst(t, c, s, 9, 7)
	waitCommit(t, c, s, 7)
	// A new term; its leader keeps everything (all of it is applied),
	// then sends 8 and 9 and advertises nothing.
	if _, err := c.NewTerm(ctx, s, 2, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Truncate(ctx, s, 2, logpos.EntryID{Term: 1, Offset: 7}); err != nil || got.Offset != 7 {
		t.Fatalf("Truncate: %v, %v", got, err)
	}
	aFill(t, c, s, 2, 8, 9, -1)
	waitCommit(t, c, s, 9)
	aWantStatus(t, c, s, 2, sFollower, 9, 9)
}

// TestConformanceDeleteShard: §2.6 and §5: rejected deletes change nothing;
// after DeleteShard the node forgets the shard.
func TestConformanceDeleteShard(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "del", Shard: 7}
	other := leader.Shard{Namespace: "del2", Shard: 7}
	fence(t, c, s, 10)
	fence(t, c, other, 1)
	aFill(t, c, s, 10, 0, 3, 3)
	waitCommit(t, c, s, 3)
	aWantErr(t, c.Delete(ctx, s, 9), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	aWantErr(t, c.Delete(ctx, s, -1), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	aWantStatus(t, c, s, 10, sFollower, 3, 3)
	checkApplied(t, c, s, 3)
	if err := c.Delete(ctx, s, 10); err != nil {
		t.Fatal(err)
	}
	_, err := c.Status(ctx, s)
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	_, _, err = c.Get(ctx, s, logpos.NoOffset, key(0))
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	if _, err := os.Stat(filepath.Join(dir, "del", "7")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory after delete: %v", err)
	}
	// The other namespace's shard 7 is untouched.
	aWantStatus(t, c, other, 1, sFollower, -1, -1)
	// Deleting again: nothing to delete; a negative term is still invalid.
	if err := c.Delete(ctx, s, 0); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	aWantErr(t, c.Delete(ctx, s, -1), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	// Restart: still forgotten.
	n.stop()
	n = startNode(t, dir)
	c = n.conn
	_, err = c.Status(ctx, s)
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	aWantStatus(t, c, other, 1, sFenced, -1, -1)
	// A later stream: not a member; Truncate: invalid status.
	st, _ := aOpen(t, c, s)
	_, err = aDrain(st)
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	_, err = c.Truncate(ctx, s, 10, logpos.NoEntry)
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidStatus)
	// A later NewTerm starts afresh, even at a lower term.
	head, err := c.NewTerm(ctx, s, 1, nil)
	if err != nil || head != logpos.NoEntry {
		t.Fatalf("NewTerm after delete: %v, %v", head, err)
	}
	aWantStatus(t, c, s, 1, sFenced, -1, -1)
	values, _, err := c.Get(ctx, s, logpos.NoOffset, key(0))
	if err != nil || values[0].GetFound() {
		t.Fatalf("data after delete: %v, %v", values, err)
	}
	// Delete of a NotMember follower with nothing stored.
	ns := leader.Shard{Namespace: "del", Shard: 8}
	st, _ = aOpen(t, c, ns)
	_, _ = aDrain(st)
	if err := c.Delete(ctx, ns, 0); err != nil {
		t.Fatalf("delete of a NotMember shard: %v", err)
	}
	_, err = c.Status(ctx, ns)
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
}

// TestConformanceRestartHosted: §5 a shard with data on disk is hosted after a
// restart; Replicate, Truncate and SendSnapshot each open it as the first
// call (Fenced, with its term and log), a Truncate-only shard is not a
// member.
func TestConformanceRestartHosted(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	c := n.conn
	s := leader.Shard{Namespace: "rs", Shard: 0}
	fence(t, c, s, 2)
	aFill(t, c, s, 2, 0, 4, 4)
	waitCommit(t, c, s, 4)
	nm := leader.Shard{Namespace: "rs", Shard: 1}
	_, err := c.Truncate(ctxT(t), nm, 0, logpos.NoEntry)
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidStatus)
	tr := leader.Shard{Namespace: "rs", Shard: 2} // first touched by a Truncate
	fence(t, c, tr, 2)
	aFill(t, c, tr, 2, 0, 2, -1)
	sn := leader.Shard{Namespace: "rs", Shard: 3} // first touched by a SendSnapshot
	fence(t, c, sn, 2)
	n.stop()
	n = startNode(t, dir)
	c = n.conn
	// Truncate opens tr: Fenced at term 2, entries 0..2.
	if got, err := c.Truncate(ctxT(t), tr, 2, logpos.EntryID{Term: 2, Offset: 1}); err != nil || got != (logpos.EntryID{Term: 2, Offset: 1}) {
		t.Fatalf("Truncate as the first call after the restart: %v, %v; want {2, 1}", got, err)
	}
	aWantStatus(t, c, tr, 2, sFollower, 1, -1)
	// SendSnapshot opens sn with its term: a chunk of term 1 is refused
	// for its term (a NotMember would take it), a snapshot of term 2
	// installs.
	_, err = sendChunks(t, c, sn, &replicationpb.SnapshotChunk{Term: 1, Name: "x", ChunkCount: 1})
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	if resp, err := sendChunks(t, c, sn, snapshotOf(t, 2, 3)...); err != nil || resp.GetAckOffset() != 2 {
		t.Fatalf("install after the restart: %v, %v; want ack 2", resp, err)
	}
	aWantStatus(t, c, sn, 2, sFollower, 2, 2)
	// The stream opens the shard, Fenced; a duplicate is acked.
	st, _ := aOpen(t, c, s)
	aSend(t, st, aEntry(2, 2, 4, 4, true))
	if a := aRecv(t, st); a != 4 {
		t.Fatalf("ack %d", a)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := aDrain(st); err != nil {
		t.Fatal(err)
	}
	aWantStatus(t, c, s, 2, sFollower, 4, 4)
	_, err = c.Status(ctxT(t), nm)
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
}

// TestConformanceRouting: §5 namespaces and shard ids.
func TestConformanceRouting(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	if _, err := c.NewTerm(ctx, leader.Shard{Namespace: "default", Shard: 3}, 4, nil); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Coordination.GetStatus(ctx, &replicationpb.GetStatusRequest{Shard: 3})
	if err != nil || resp.GetTerm() != 4 || resp.GetStatus() != sFenced || resp.GetHeadOffset() != -1 || resp.GetCommitOffset() != -1 {
		t.Fatalf("GetStatus with the default namespace: %v, %v", resp, err)
	}
	_, err = c.Status(ctx, leader.Shard{Namespace: "Default", Shard: 3})
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	_, err = c.Status(ctx, leader.Shard{Namespace: "default", Shard: 4})
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	// Extremes of the valid ranges in unary requests.
	long := leader.Shard{Namespace: strings.Repeat("z", 128), Shard: 1<<63 - 1}
	if _, err := c.NewTerm(ctx, long, 0, nil); err != nil {
		t.Fatalf("NewTerm with a 128-char namespace and max shard: %v", err)
	}
	aWantStatus(t, c, long, 0, sFenced, -1, -1)
	maxTerm := leader.Shard{Namespace: "default", Shard: 5} // the largest term is a term
	if _, err := c.NewTerm(ctx, maxTerm, 1<<63-1, nil); err != nil {
		t.Fatalf("NewTerm at the largest term: %v", err)
	}
	aWantStatus(t, c, maxTerm, 1<<63-1, sFenced, -1, -1)
	for _, ns := range []string{strings.Repeat("z", 129), "é", "a b", "a\x00", ".x", "_x", "-x", "a/b", "a\\b"} {
		_, err := c.NewTerm(ctx, leader.Shard{Namespace: ns, Shard: 1}, 1, nil)
		aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
		if st, _ := status.FromError(err); !strings.Contains(st.Message(), "namespace") {
			t.Fatalf("message %q does not name the field", st.Message())
		}
		_, err = c.Status(ctx, leader.Shard{Namespace: ns, Shard: 1})
		aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
		aWantErr(t, c.Delete(ctx, leader.Shard{Namespace: ns, Shard: 1}, 1), codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
		_, err = c.Truncate(ctx, leader.Shard{Namespace: ns, Shard: 1}, 1, logpos.NoEntry)
		aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	}
	// Validation comes before the term checks: a bad namespace with a
	// negative term names the namespace.
	_, err = c.Coordination.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: "../x", Shard: -1, Term: -1})
	aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	entries, _ := os.ReadDir(n.dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{".lock", "default", strings.Repeat("z", 128)}) {
		t.Fatalf("data dir holds %v", names)
	}
}

// TestConformanceErrorDetails: canceled and shutdown statuses carry no detail;
// reasons carry domain oxia.io (checked by aWantErr everywhere).
func TestConformanceShutdownDuringStreamAndInstall(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	s := leader.Shard{Namespace: "sd", Shard: 0}
	s2 := leader.Shard{Namespace: "sd", Shard: 1}
	fence(t, c, s, 1)
	fence(t, c, s2, 1)
	st, _ := aOpen(t, c, s)
	aSend(t, st, aEntry(1, 1, 0, -1, false))
	aRecv(t, st)
	_, snap, _ := aHoldInstall(t, c, s2, 1)
	done := make(chan struct{})
	go func() { defer close(done); n.shutdown() }()
	_, err := aDrain(st)
	aWantErr(t, err, codes.Unavailable, "")
	// Wait for the install's reply without half-closing: a half-close
	// could reach the follower before the shutdown does, and end the
	// install as an incomplete snapshot (InvalidArgument).
	err = snap.RecvMsg(new(replicationpb.SnapshotResponse))
	aWantErr(t, err, codes.Unavailable, "")
	<-done
}

// TestConformanceShutdownDuringStalledInstall: a leader sent part of a
// snapshot and then nothing, not even a half-close. A graceful shutdown
// (§2.7: Close ends the install) does not wait for its next chunk: the
// call ends with Unavailable and the shutdown completes without error.
func TestConformanceShutdownDuringStalledInstall(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	s := leader.Shard{Namespace: "stall", Shard: 0}
	fence(t, c, s, 1)
	_, snap, _ := aHoldInstall(t, c, s, 1)
	done := make(chan struct{})
	go func() { defer close(done); n.shutdown() }() // fails the test on a shutdown error
	var resp replicationpb.SnapshotResponse
	aWantErr(t, snap.RecvMsg(&resp), codes.Unavailable, "")
	<-done
}

// TestConformanceWireContract: §5 field numbers.
func TestConformanceWireContract(t *testing.T) {
	// Every field of every message: number and type, as SPEC §5 lists
	// them (a type change is a wire change too).
	want := map[string]map[string]string{
		"EntryId":             {"term": "1 int64", "offset": "2 int64"},
		"LogEntry":            {"term": "1 int64", "offset": "2 int64", "value": "3 bytes", "timestamp": "4 fixed64"},
		"SnapshotChunk":       {"term": "1 int64", "name": "2 string", "content": "3 bytes", "chunk_index": "4 int32", "chunk_count": "5 int32"},
		"NewTermOptions":      {"enable_notifications": "1 bool", "key_sorting": "2 enum KeySortingType"},
		"NewTermRequest":      {"namespace": "1 string", "shard": "2 int64", "term": "3 int64", "options": "4 message NewTermOptions"},
		"NewTermResponse":     {"head_entry_id": "1 message EntryId"},
		"TruncateRequest":     {"namespace": "1 string", "shard": "2 int64", "term": "3 int64", "head_entry_id": "4 message EntryId"},
		"TruncateResponse":    {"head_entry_id": "1 message EntryId"},
		"Append":              {"term": "1 int64", "entry": "2 message LogEntry", "commit_offset": "3 int64", "previous_entry_crc": "4 optional uint32", "cumulative_acks_supported": "5 bool"},
		"Ack":                 {"offset": "1 int64"},
		"SnapshotResponse":    {"ack_offset": "1 int64"},
		"DeleteShardRequest":  {"namespace": "1 string", "shard": "2 int64", "term": "3 int64"},
		"DeleteShardResponse": {},
		"GetStatusRequest":    {"shard": "1 int64", "namespace": "100 string"},
		"GetStatusResponse":   {"term": "1 int64", "status": "2 enum ServingStatus", "head_offset": "3 int64", "commit_offset": "4 int64"},
	}
	fd := replicationpb.File_replication_proto
	if fd.Package() != "replication" {
		t.Fatalf("package %s", fd.Package())
	}
	if n := fd.Messages().Len(); n != len(want) {
		t.Errorf("%d messages, want %d", n, len(want))
	}
	for name, fields := range want {
		md := fd.Messages().ByName(protoreflect.Name(name))
		if md == nil {
			t.Errorf("no message %s", name)
			continue
		}
		if md.Fields().Len() != len(fields) {
			t.Errorf("%s has %d fields, want %d", name, md.Fields().Len(), len(fields))
		}
		for f, wantType := range fields {
			fdesc := md.Fields().ByName(protoreflect.Name(f))
			if fdesc == nil {
				t.Errorf("%s.%s missing", name, f)
				continue
			}
			if got := wireType(fdesc); got != wantType {
				t.Errorf("%s.%s is %q, want %q", name, f, got, wantType)
			}
		}
	}
	for _, e := range []struct {
		enum string
		vals map[string]protoreflect.EnumNumber
	}{
		{"KeySortingType", map[string]protoreflect.EnumNumber{"UNKNOWN": 0, "NATURAL": 1, "HIERARCHICAL": 2}},
		{"ServingStatus", map[string]protoreflect.EnumNumber{"NOT_MEMBER": 0, "FENCED": 1, "FOLLOWER": 2, "LEADER": 3}},
	} {
		ed := fd.Enums().ByName(protoreflect.Name(e.enum))
		if ed == nil || ed.Values().Len() != len(e.vals) {
			t.Errorf("enum %s: %v, want %d values", e.enum, ed, len(e.vals))
			continue
		}
		for k, v := range e.vals {
			if ev := ed.Values().ByName(protoreflect.Name(k)); ev == nil || ev.Number() != v {
				t.Errorf("%s.%s: %v, want %d", e.enum, k, ev, v)
			}
		}
	}
	// Every method: request and response types, and which side streams.
	type method struct{ in, out, streams string }
	svc := map[string]map[string]method{
		"OxiaLogReplication": {
			"Truncate":     {"TruncateRequest", "TruncateResponse", "none"},
			"Replicate":    {"Append", "Ack", "both"},
			"SendSnapshot": {"SnapshotChunk", "SnapshotResponse", "client"},
		},
		"OxiaCoordination": {
			"NewTerm":     {"NewTermRequest", "NewTermResponse", "none"},
			"GetStatus":   {"GetStatusRequest", "GetStatusResponse", "none"},
			"DeleteShard": {"DeleteShardRequest", "DeleteShardResponse", "none"},
		},
	}
	// The services are declared in a file of their own, importing the
	// messages' (so that the messages link no gRPC), in the same proto
	// package: their full names are the same.
	sfd := replicationgrpc.File_replication_service_proto
	if sfd.Package() != fd.Package() {
		t.Errorf("the services' proto package is %s, the messages' %s", sfd.Package(), fd.Package())
	}
	for s, ms := range svc {
		sd := sfd.Services().ByName(protoreflect.Name(s))
		if sd == nil {
			t.Errorf("no service %s", s)
			continue
		}
		for m, w := range ms {
			md := sd.Methods().ByName(protoreflect.Name(m))
			if md == nil {
				t.Errorf("%s.%s missing", s, m)
				continue
			}
			streams := map[[2]bool]string{{false, false}: "none", {true, false}: "client", {false, true}: "server", {true, true}: "both"}[[2]bool{md.IsStreamingClient(), md.IsStreamingServer()}]
			if got := (method{string(md.Input().Name()), string(md.Output().Name()), streams}); got != w {
				t.Errorf("%s.%s: %+v, want %+v", s, m, got, w)
			}
		}
	}
}

// wireType spells a field's number and type as TestConformanceWireContract
// lists them: "4 optional uint32", "2 message EntryId".
func wireType(f protoreflect.FieldDescriptor) string {
	typ := f.Kind().String()
	switch f.Kind() {
	case protoreflect.MessageKind:
		typ += " " + string(f.Message().Name())
	case protoreflect.EnumKind:
		typ = "enum " + string(f.Enum().Name())
	}
	if f.HasOptionalKeyword() {
		typ = "optional " + typ
	}
	if f.Cardinality() == protoreflect.Repeated {
		typ = "repeated " + typ
	}
	return fmt.Sprintf("%d %s", f.Number(), typ)
}

// TestConformanceNewTermReplyEntryTerm: NewTerm replies the id of the last
// durable entry: its own term, also after a truncation.
func TestConformanceNewTermReplyEntryTerm(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "nt", Shard: 0}
	fence(t, c, s, 5)
	st, _ := aOpen(t, c, s)
	for o, et := range []logpos.Term{1, 1, 2, 2, 3} {
		aSend(t, st, aEntry(5, et, int64(o), -1, false))
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if acks, err := aDrain(st); err != nil || len(acks) != 5 {
		t.Fatalf("%v %v", acks, err)
	}
	head, err := c.NewTerm(ctx, s, 6, nil)
	if err != nil || head != (logpos.EntryID{Term: 3, Offset: 4}) {
		t.Fatalf("NewTerm: %v %v", head, err)
	}
	if got, err := c.Truncate(ctx, s, 6, logpos.EntryID{Term: 77, Offset: 2}); err != nil || got != (logpos.EntryID{Term: 6, Offset: 2}) {
		t.Fatalf("Truncate: %v %v", got, err)
	}
	head, err = c.NewTerm(ctx, s, 7, nil)
	if err != nil || head != (logpos.EntryID{Term: 2, Offset: 2}) {
		t.Fatalf("NewTerm after truncation: %v %v", head, err)
	}
	if got, err := c.Truncate(ctx, s, 7, logpos.NoEntry); err != nil || got != (logpos.EntryID{Term: 7, Offset: -1}) {
		t.Fatalf("Truncate(-1): %v %v", got, err)
	}
	aWantStatus(t, c, s, 7, sFollower, -1, -1)
	head, err = c.NewTerm(ctx, s, 8, nil)
	if err != nil || head != logpos.NoEntry {
		t.Fatalf("NewTerm after clearing: %v %v", head, err)
	}
	// Entries rewritten after the truncation are the new ones.
	if _, err := c.Truncate(ctx, s, 8, logpos.NoEntry); err != nil {
		t.Fatal(err)
	}
	aFill(t, c, s, 8, 0, 2, 2)
	checkApplied(t, c, s, 2)
}

// TestConformanceLowerNewTermDuringInstall: a rejected NewTerm does not abort the
// install, which completes.
func TestConformanceLowerNewTermDuringInstall(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "li", Shard: 0}
	fence(t, c, s, 4)
	rest, snap, _ := aHoldInstall(t, c, s, 4)
	_, err := c.NewTerm(ctx, s, 3, nil)
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	_, err = c.Coordination.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: s.Namespace, Shard: s.Shard, Term: -1})
	aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
	aWantErr(t, c.Delete(ctx, s, 3), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	for _, ch := range rest {
		if err := snap.Send(ch); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := snap.CloseAndRecv()
	if err != nil || resp.GetAckOffset() != 2 {
		t.Fatalf("install: %v %v", resp, err)
	}
	aWantStatus(t, c, s, 4, sFollower, 2, 2)
}

// TestConformanceDeleteDuringInstall: what an install ended by DeleteShard gets.
func TestConformanceDeleteDuringInstall(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "di", Shard: 0}
	fence(t, c, s, 4)
	rest, snap, _ := aHoldInstall(t, c, s, 4)
	if err := c.Delete(ctx, s, 4); err != nil {
		t.Fatal(err)
	}
	for _, ch := range rest {
		if err := snap.Send(ch); err != nil {
			break
		}
	}
	_, err := snap.CloseAndRecv()
	aWantErr(t, err, codes.Canceled, "") // a stream ended by DeleteShard
	_, err = c.Status(ctx, s)
	aWantErr(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember)
	if _, err := os.Stat(filepath.Join(n.dir, "di", "0")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir after delete: %v", err)
	}
}

// TestConformanceNoLeakedFiles: §2.7 after shutdown no file stays open.
func TestConformanceNoLeakedFiles(t *testing.T) {
	countFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip(err)
		}
		return len(ents)
	}
	before := countFDs()
	n := startNode(t, "")
	c := n.conn
	for i := int64(0); i < 3; i++ {
		s := leader.Shard{Namespace: "fd", Shard: i}
		fence(t, c, s, 1)
		aFill(t, c, s, 1, 0, 50, 49)
	}
	if err := c.Delete(ctxT(t), leader.Shard{Namespace: "fd", Shard: 1}, 1); err != nil {
		t.Fatal(err)
	}
	st, _ := aOpen(t, c, leader.Shard{Namespace: "fd", Shard: 2})
	aSend(t, st, aEntry(1, 1, 51, -1, false))
	aRecv(t, st)
	done := make(chan struct{})
	go func() { defer close(done); n.shutdown() }()
	_, _ = aDrain(st)
	<-done
	n.stop() // the client too
	if after := countFDs(); after > before {
		t.Errorf("open files: %d before, %d after shutdown", before, after)
	}
}

// TestConformanceAcceptedThenFailed: §2.3 "the first accepted entry-bearing
// Append (new or duplicate) moves Fenced → Follower; an Append that fails
// changes nothing": an accepted entry followed at once by a failing one.
// The accepted entry is acknowledged before the stream fails.
func TestConformanceAcceptedThenFailed(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "atf", Shard: 0}
	fence(t, c, s, 1)
	aFill(t, c, s, 1, 0, 4, -1)
	fenced := 0
	for round := int64(0); round < 10; round++ {
		term := logpos.Term(2 + round)
		if _, err := c.NewTerm(ctx, s, term, nil); err != nil {
			t.Fatal(err)
		}
		before := aStatus(t, c, s)
		st, _ := aOpen(t, c, s)
		next := before.GetHeadOffset() + 1
		if err := st.Send(aEntry(term, term, next, -1, false)); err != nil {
			t.Fatal(err)
		}
		_ = st.Send(aEntry(term, term, next+5, -1, false)) // a gap
		acks, err := aDrain(st)
		aWantErr(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument)
		after := aStatus(t, c, s)
		t.Logf("round %d: before %v; acks %v; after %v", round, before, acks, after)
		// The stream fails only once the entry it accepted is durable
		// and acknowledged.
		if !slices.Equal(acks, []int64{next}) {
			t.Errorf("round %d: acks %v before the gap failed the stream, want [%d]", round, acks, next)
		}
		if after.GetHeadOffset() == next && after.GetStatus() == sFenced {
			fenced++
		}
	}
	if fenced > 0 {
		t.Errorf("%d of 10 rounds: the accepted entry was appended (head moved) but the follower stayed FENCED", fenced)
	}
}

// TestConformanceAcceptedEntryStateWhileSyncPending: the deterministic
// variant: with the WAL's fsync held, an accepted first entry has already
// moved the follower to FOLLOWER (head moved, nothing durable or acked
// yet); acceptance, not durability, is what §2.3 ties the move to.
func TestConformanceAcceptedEntryStateWhileSyncPending(t *testing.T) {
	var hold atomic.Bool
	release := make(chan struct{})
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if hold.Load() && strings.Contains(op.Path, string(filepath.Separator)+"wal") {
				<-release
			}
		}
		return nil
	})
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = errorfs.Wrap(vfs.Default, inj) })
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "hold", Shard: 0}
	fence(t, c, s, 1)
	aFill(t, c, s, 1, 0, 4, -1)
	if _, err := c.NewTerm(ctx, s, 2, nil); err != nil {
		t.Fatal(err)
	}
	hold.Store(true)
	st, _ := aOpen(t, c, s)
	aSend(t, st, aEntry(2, 2, 5, -1, false))
	// Wait until the entry was appended (head moved).
	for aStatus(t, c, s).GetHeadOffset() != 5 {
		select {
		case <-ctx.Done():
			t.Fatal("entry 5 never appended")
		default:
			runtime.Gosched()
		}
	}
	got := aStatus(t, c, s)
	hold.Store(false)
	close(release)
	if a := aRecv(t, st); a != 5 {
		t.Fatalf("ack %d", a)
	}
	aWantStatus(t, c, s, 2, sFollower, 5, -1)
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	_, _ = aDrain(st)
	if got.GetStatus() != sFollower {
		t.Errorf("after entry 5 was accepted and appended: %v (SPEC: the first accepted entry-bearing Append moves Fenced → Follower)", got)
	}
}

// TestConformanceNewTermOptionsPersisted: §2.1 options persisted, missing
// options stored as empty, idempotent NewTerm overwrites them, a rejected
// NewTerm does not, an unknown key sorting is kept as it is. Read from
// the store after shutdown.
func TestConformanceNewTermOptionsPersisted(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	c := n.conn
	ctx := ctxT(t)
	a := leader.Shard{Namespace: "opt", Shard: 0}
	b := leader.Shard{Namespace: "opt", Shard: 1}
	optsA := &replicationpb.NewTermOptions{EnableNotifications: true, KeySorting: replicationpb.KeySortingType_HIERARCHICAL}
	optsB := &replicationpb.NewTermOptions{KeySorting: replicationpb.KeySortingType_NATURAL}
	if _, err := c.NewTerm(ctx, a, 1, optsA); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewTerm(ctx, a, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewTerm(ctx, b, 3, optsA); err != nil {
		t.Fatal(err)
	}
	_, err := c.NewTerm(ctx, b, 2, optsB)
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	newer := leader.Shard{Namespace: "opt", Shard: 2} // options with a key sorting this node does not name
	if _, err := c.NewTerm(ctx, newer, 2, &replicationpb.NewTermOptions{KeySorting: 9}); err != nil {
		t.Fatal(err)
	}
	n.stop()
	for _, tc := range []struct {
		s    leader.Shard
		term logpos.Term
		opts store.TermOptions
	}{
		{a, 1, store.TermOptions{}},
		{b, 3, store.TermOptions{EnableNotifications: true, KeySorting: store.KeySorting(replicationpb.KeySortingType_HIERARCHICAL)}},
		{newer, 2, store.TermOptions{KeySorting: 9}},
	} {
		st, err := store.Open(filepath.Join(dir, tc.s.Namespace, fmt.Sprint(tc.s.Shard), "store"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Term() != tc.term || st.TermOptions() != tc.opts {
			t.Errorf("%v: term %d options %+v, want %d %+v", tc.s, st.Term(), st.TermOptions(), tc.term, tc.opts)
		}
		_ = st.Close()
	}
}

// TestConformanceGetStatusLockFree: §2.5 GetStatus answers while a control
// operation holds the follower (a Truncate stuck in its fsync).
func TestConformanceGetStatusLockFree(t *testing.T) {
	var hold atomic.Bool
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if hold.Load() && strings.Contains(op.Path, string(filepath.Separator)+"wal") {
				select {
				case entered <- struct{}{}:
				default:
				}
				<-release
			}
		}
		return nil
	})
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = errorfs.Wrap(vfs.Default, inj) })
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "lf", Shard: 0}
	fence(t, c, s, 1)
	aFill(t, c, s, 1, 0, 4, -1)
	if _, err := c.NewTerm(ctx, s, 2, nil); err != nil {
		t.Fatal(err)
	}
	hold.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := c.Truncate(ctx, s, 2, logpos.EntryID{Term: 1, Offset: 2})
		done <- err
	}()
	<-entered
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := c.Status(sctx, s)
	cancel()
	hold.Store(false)
	close(release)
	if err != nil {
		t.Fatalf("GetStatus while a Truncate holds the follower: %v", err)
	}
	if st.GetStatus() != sFenced || st.GetTerm() != 2 {
		t.Errorf("during the Truncate: %v", st)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	aWantStatus(t, c, s, 2, sFollower, 2, -1)
}

// TestConformanceNewTermPersistFailure: §2.1 "If persisting fails:
// ErrUnavailable, term and state unchanged" — from Follower with a stream.
func TestConformanceNewTermPersistFailure(t *testing.T) {
	var failStore atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failStore.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.Contains(op.Path, string(filepath.Separator)+"store") {
			return errorfs.ErrInjected
		}
		return nil
	})
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = errorfs.Wrap(vfs.Default, inj) })
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "pf", Shard: 0}
	fence(t, c, s, 2)
	st, _ := aOpen(t, c, s)
	aSend(t, st, aEntry(2, 2, 0, -1, false))
	aRecv(t, st)
	failStore.Store(true)
	_, err := c.NewTerm(ctx, s, 3, nil)
	aWantErr(t, err, codes.Unavailable, grpcapi.ReasonResourceUnavailable)
	got := aStatus(t, c, s)
	failStore.Store(false)
	_, serr := aDrain(st)
	aWantErr(t, serr, codes.Canceled, "") // NewTerm ends the stream before it persists
	if got.GetTerm() != 2 || got.GetStatus() != sFollower || got.GetHeadOffset() != 0 {
		t.Errorf("after a failed NewTerm: %v, want term 2 FOLLOWER head 0", got)
	}
	if _, err := c.NewTerm(ctx, s, 3, nil); err != nil {
		t.Fatalf("NewTerm after healing: %v", err)
	}
	aWantStatus(t, c, s, 3, sFenced, 0, -1)
}

// TestConformanceTruncateDurable: §2.2 the removal is durable: after a restart
// the removed entries are gone and the term is kept.
func TestConformanceTruncateDurable(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "td", Shard: 0}
	fence(t, c, s, 1)
	aFill(t, c, s, 1, 0, 9, 1)
	waitCommit(t, c, s, 1)
	if _, err := c.NewTerm(ctx, s, 2, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Truncate(ctx, s, 2, logpos.EntryID{Term: 1, Offset: 4}); err != nil || got.Offset != 4 {
		t.Fatalf("%v %v", got, err)
	}
	n.stop()
	n = startNode(t, dir)
	aWantStatus(t, n.conn, s, 2, sFenced, 4, 1)
	head, err := n.conn.NewTerm(ctxT(t), s, 2, nil)
	if err != nil || head != (logpos.EntryID{Term: 1, Offset: 4}) {
		t.Fatalf("NewTerm after restart: %v %v", head, err)
	}
}

// TestConformanceNewTermOptionsVsTerm: options do not decide a NewTerm,
// even with a key sorting this node does not know (a newer leader's enum
// value): a NewTerm behind the term is refused for its term, and one at
// the term is accepted.
func TestConformanceNewTermOptionsVsTerm(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "ovt", Shard: 0}
	fence(t, c, s, 5)
	unknown := &replicationpb.NewTermOptions{KeySorting: 9}
	_, err := c.Coordination.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: s.Namespace, Shard: s.Shard, Term: 4, Options: unknown})
	aWantErr(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm)
	aWantStatus(t, c, s, 5, sFollower, -1, -1)
	if _, err := c.NewTerm(ctx, s, 5, unknown); err != nil {
		t.Fatal(err)
	}
	aWantStatus(t, c, s, 5, sFenced, -1, -1)
}
