package grpcapi_test

import (
	"testing"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

func TestLifecycleThroughTheWire(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "ns", Shard: 3}
	head := fence(t, n.conn, s, 1)
	if head.Offset != -1 {
		t.Fatalf("head = %v", head)
	}
	replicate(t, n.conn, s, 1, 0, 100, true)
	checkApplied(t, n.conn, s, 99)
	replicate(t, n.conn, s, 1, 100, 100, false)
	checkApplied(t, n.conn, s, 199)
	st, err := n.conn.Status(ctxT(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetTerm() != 1 || st.GetStatus() != replicationpb.ServingStatus_FOLLOWER || st.GetHeadOffset() != 199 || st.GetCommitOffset() != 199 {
		t.Fatalf("status = %v", st)
	}
}
