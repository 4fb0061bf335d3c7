package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/internal/stacktest"
)

// TestInspectGetWaitsForOffsetZero: min_commit_offset is optional, and 0
// is an offset like any other: a Get asking for offset 0 before entry 0 is
// committed waits (here until its deadline, which is all that can end it:
// the deadline bounds the wait, nothing is timed); once entry 0 is
// committed, the same Get returns its value.
func TestInspectGetWaitsForOffsetZero(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "ns", Shard: 1}
	fence(t, n.conn, s, 1)
	st, _ := aOpen(t, n.conn, s)
	aSend(t, st, aEntry(1, 1, 0, -1, false))
	if a := aRecv(t, st); a != 0 {
		t.Fatalf("ack %d, want 0", a)
	}
	// Entry 0 is durable but not committed.
	ctx, cancel := context.WithTimeout(ctxT(t), 200*time.Millisecond)
	defer cancel()
	values, commit, err := n.conn.Get(ctx, s, 0, key(0))
	if err == nil {
		t.Fatalf("Get waiting for offset 0 before it is committed returned %v (commit %d)", values, commit)
	}
	wantCode(t, err, codes.DeadlineExceeded, "", "")

	aSend(t, st, aCommit(1, 0, false))
	values, commit, err = n.conn.Get(ctxT(t), s, 0, key(0))
	if err != nil {
		t.Fatal(err)
	}
	if commit != 0 || !values[0].GetFound() || string(values[0].GetValue()) != string(val(0)) {
		t.Fatalf("after commit 0: commit %d, %v; want commit 0 and %q", commit, values[0], val(0))
	}

	// Entry 1 is durable, not committed: the reply's commit offset is the
	// last applied, not the head, and entry 1's key is not there yet.
	aSend(t, st, aEntry(1, 1, 1, 0, false))
	if a := aRecv(t, st); a != 1 {
		t.Fatalf("ack %d, want 1", a)
	}
	values, commit, err = n.conn.Get(ctxT(t), s, 0, key(1))
	if err != nil || commit != 0 || values[0].GetFound() {
		t.Fatalf("with entry 1 durable, not committed: commit %d, %v, %v; want commit 0 and key(1) not found", commit, values, err)
	}
}

// TestInspectGetOfAShardDeletedWhileItWaits: a Get waiting for an offset
// on a shard that a DeleteShard then deletes ends as a Get after the
// delete does, Aborted with NODE_IS_NOT_MEMBER (the shard is no longer
// hosted, as GetStatus says then too), not FailedPrecondition with
// RESOURCE_CONFLICT, which the follower the delete closed would say.
func TestInspectGetOfAShardDeletedWhileItWaits(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "ns", Shard: 1}
	fence(t, n.conn, s, 1)
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, _, err = n.conn.Get(ctxT(t), s, 100, key(0))
	}()
	stacktest.WaitBlockedIn(t, "select", "follower.(*applier).wait", done)
	if err := n.conn.Delete(ctxT(t), s, 1); err != nil {
		t.Fatal(err)
	}
	<-done
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	_, err = n.conn.Status(ctxT(t), s)
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
}
