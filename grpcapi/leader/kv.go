package leader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

// AppendPut appends to buf a serialized store/kvpb.WriteBatch holding one
// put of key to value: an entry value for the default key-value state
// machine. It encodes exactly as proto.Marshal would, without allocating
// beyond buf.
func AppendPut(buf, key, value []byte) []byte {
	return appendPut(buf, key, len(value), func(b []byte) []byte { return append(b, value...) })
}

// AppendPaddedPut appends to buf a WriteBatch putting key to a value of
// filler bytes, sized so that the whole batch is at most size bytes long
// and as long as it can be (a batch with an empty value when size is too
// small for key).
func AppendPaddedPut(buf, key []byte, size int) []byte {
	n := max(size-batchSize(len(key), 0), 0)
	for n > 0 && batchSize(len(key), n) > size {
		n--
	}
	return appendPutFilled(buf, key, n)
}

// batchSize is the encoded size of a one-put batch with the given key and
// value lengths.
func batchSize(keyLen, valueLen int) int {
	put := 0
	if keyLen > 0 {
		put += protowire.SizeTag(1) + protowire.SizeBytes(keyLen)
	}
	if valueLen > 0 {
		put += protowire.SizeTag(2) + protowire.SizeBytes(valueLen)
	}
	op := protowire.SizeTag(1) + protowire.SizeBytes(put)
	return protowire.SizeTag(1) + protowire.SizeBytes(op)
}

func appendPutFilled(buf, key []byte, n int) []byte {
	return appendPut(buf, key, n, func(b []byte) []byte {
		b = slices.Grow(b, n)
		filler := b[len(b) : len(b)+n]
		for i := range filler {
			filler[i] = 'x'
		}
		return b[:len(b)+n]
	})
}

// appendPut encodes a one-put WriteBatch whose value, n bytes long, value
// appends. Empty fields are left out, as proto3 does.
func appendPut(buf, key []byte, n int, value func([]byte) []byte) []byte {
	put := 0
	if len(key) > 0 {
		put += protowire.SizeTag(1) + protowire.SizeBytes(len(key))
	}
	if n > 0 {
		put += protowire.SizeTag(2) + protowire.SizeBytes(n)
	}
	op := protowire.SizeTag(1) + protowire.SizeBytes(put)
	buf = protowire.AppendTag(buf, 1, protowire.BytesType) // WriteBatch.operations
	buf = protowire.AppendVarint(buf, uint64(op))
	buf = protowire.AppendTag(buf, 1, protowire.BytesType) // Operation.put
	buf = protowire.AppendVarint(buf, uint64(put))
	if len(key) > 0 {
		buf = protowire.AppendTag(buf, 1, protowire.BytesType) // Put.key
		buf = protowire.AppendBytes(buf, key)
	}
	if n > 0 {
		buf = protowire.AppendTag(buf, 2, protowire.BytesType) // Put.value
		buf = protowire.AppendVarint(buf, uint64(n))
		buf = value(buf)
	}
	return buf
}

// ChunkSource yields snapshot chunks until io.EOF; *store.Snapshot is one.
type ChunkSource interface {
	Next() (store.Chunk, error)
}

// SendSnapshot streams every chunk of src to the shard, each marked with
// term, and returns the offset the follower acknowledged: the snapshot's
// commit offset. When src fails, the call is cancelled rather than ended:
// the follower sees a transfer cut short, not a complete snapshot, and
// installs nothing.
func (c *Conn) SendSnapshot(ctx context.Context, s Shard, term logpos.Term, src ChunkSource) (logpos.Offset, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Replication.SendSnapshot(StreamContext(ctx, s))
	if err != nil {
		return logpos.NoOffset, err
	}
	for {
		ch, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// Half-closing would tell the follower the snapshot is
			// complete; cancelling aborts it.
			cancel()
			return logpos.NoOffset, fmt.Errorf("leader: reading the snapshot: %w", err)
		}
		err = stream.Send(&replicationpb.SnapshotChunk{
			Term: int64(term), Name: ch.Name, Content: ch.Content, ChunkIndex: ch.Index, ChunkCount: ch.Count,
		})
		if errors.Is(err, io.EOF) {
			break // the follower ended the call: CloseAndRecv says why
		}
		if err != nil {
			return logpos.NoOffset, err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return logpos.NoOffset, err
	}
	return logpos.Offset(resp.GetAckOffset()), nil
}
