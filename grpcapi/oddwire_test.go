package grpcapi_test

import (
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestOddButValidAppendsEndToEnd: Appends encoded as protobuf-go never
// encodes them but decodes them (an unknown field first, the term last
// and once more with the wrong wire type, the entry in two pieces whose
// second overrides the first's value and offset, an unknown field in the
// entry) are taken through the node's codec as protobuf-go merges them:
// acked and applied.
func TestOddButValidAppendsEndToEnd(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "odd", Shard: 1}
	fence(t, n.conn, s, 1)
	raw := rawClient(t, n)
	desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
	stream, err := raw.NewStream(leader.StreamContext(ctxT(t), s), desc, "/replication.OxiaLogReplication/Replicate")
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < 3; off++ {
		v := kvValue(logpos.Offset(off), nil)
		var p []byte
		p = protowire.AppendTag(p, 77, protowire.BytesType)
		p = protowire.AppendBytes(p, []byte("junk"))
		p = protowire.AppendTag(p, 3, protowire.VarintType)
		p = protowire.AppendVarint(p, uint64(off-1))
		var e1 []byte
		e1 = protowire.AppendTag(e1, 3, protowire.BytesType)
		e1 = protowire.AppendBytes(e1, []byte("wrong"))
		e1 = protowire.AppendTag(e1, 9, protowire.Fixed32Type)
		e1 = protowire.AppendFixed32(e1, 5)
		e1 = protowire.AppendTag(e1, 2, protowire.VarintType)
		e1 = protowire.AppendVarint(e1, 999)
		p = protowire.AppendTag(p, 2, protowire.BytesType)
		p = protowire.AppendBytes(p, e1)
		p = protowire.AppendTag(p, 1, protowire.Fixed64Type) // term with the wrong wire type: unknown
		p = protowire.AppendFixed64(p, 42)
		var e2 []byte
		e2 = protowire.AppendTag(e2, 3, protowire.BytesType)
		e2 = protowire.AppendBytes(e2, v)
		e2 = protowire.AppendTag(e2, 2, protowire.VarintType)
		e2 = protowire.AppendVarint(e2, uint64(off))
		e2 = protowire.AppendTag(e2, 1, protowire.VarintType)
		e2 = protowire.AppendVarint(e2, 1)
		p = protowire.AppendTag(p, 2, protowire.BytesType)
		p = protowire.AppendBytes(p, e2)
		p = protowire.AppendTag(p, 1, protowire.VarintType)
		p = protowire.AppendVarint(p, 1)
		if err := stream.SendMsg(&p); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acks := 0
	for {
		var reply []byte
		err := stream.RecvMsg(&reply)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		acks++
	}
	if acks != 3 {
		t.Fatalf("%d acks", acks)
	}
	// The last Append advertised commit 1: entries 0 and 1 are applied.
	checkApplied(t, n.conn, s, 1)
}
