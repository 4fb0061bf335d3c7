package grpcapi_test

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestTruncateOfAnUnhostedShardOpensNoFollower: Truncate on a shard the
// node does not host is refused (INVALID_STATUS) without opening a
// follower: no lifecycle step is recorded for the shard, which stays
// unknown to Inspect.Steps (a follower opened and dropped would leave its
// steps readable, as a deleted shard's are).
func TestTruncateOfAnUnhostedShardOpensNoFollower(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "ns", Shard: 3}
	ctx := ctxT(t)
	_, err := n.conn.Truncate(ctx, s, 1, logpos.EntryID{Term: 1, Offset: -1})
	wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidStatus, "")
	steps, err := n.conn.Steps(ctx, s, 0)
	if err == nil {
		t.Fatalf("Steps after a refused Truncate: %v, want NODE_IS_NOT_MEMBER (no follower opened)", steps)
	}
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
}
