package grpcapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

// openStream attaches a Replicate stream to s and waits until the
// follower acknowledged a first entry at offset first (so the stream is
// attached for sure). The shard must be a fenced or following member.
func openStream(t *testing.T, c *leader.Conn, s leader.Shard, term logpos.Term, first logpos.Offset) (rstream, context.CancelFunc) {
	t.Helper()
	stream, cancel := aOpen(t, c, s)
	send(t, stream, term, first)
	if ack := aRecv(t, stream); ack != int64(first) {
		t.Fatalf("first ack %d, want %d", ack, first)
	}
	return stream, cancel
}

// send sends the entry at off of term; the commit stays behind: these
// tests are not about applying.
func send(t *testing.T, stream rstream, term logpos.Term, off logpos.Offset) {
	t.Helper()
	aSend(t, stream, aEntry(term, term, int64(off), -1, false))
}

// recvEnd reads acks until the stream ends and returns how it ended.
func recvEnd(stream grpc.BidiStreamingClient[replicationpb.Append, replicationpb.Ack]) error {
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}

// sendChunks sends chunks on a SendSnapshot stream to s and returns the
// result.
func sendChunks(t *testing.T, c *leader.Conn, s leader.Shard, chunks ...*replicationpb.SnapshotChunk) (*replicationpb.SnapshotResponse, error) {
	t.Helper()
	stream, err := c.Replication.SendSnapshot(leader.StreamContext(ctxT(t), s))
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chunks {
		if err := stream.Send(ch); err != nil {
			break // CloseAndRecv tells why
		}
	}
	return stream.CloseAndRecv()
}

// snapshotOf builds a real snapshot of term with n applied entries.
func snapshotOf(t *testing.T, term logpos.Term, n int) []*replicationpb.SnapshotChunk {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{SnapshotChunkSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SetTerm(term, store.TermOptions{}); err != nil {
		t.Fatal(err)
	}
	for o := range logpos.Offset(n) {
		if err := st.Apply(logpos.Entry{Term: term, Offset: o, Value: kvValue(o, nil)}); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	var out []*replicationpb.SnapshotChunk
	for {
		ch, err := sn.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		// Content is reused by the next call to Next.
		out = append(out, &replicationpb.SnapshotChunk{Term: int64(term), Name: ch.Name, Content: bytes.Clone(ch.Content), ChunkIndex: ch.Index, ChunkCount: ch.Count})
	}
}

// TestErrorsThroughTheWire drives every row of SPEC §4 that a client can
// provoke through a real connection and checks code and ErrorInfo.
func TestErrorsThroughTheWire(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	shard := func(i int64) leader.Shard { return leader.Shard{Namespace: "errors", Shard: i} }

	t.Run("RESOURCE_CONFLICT: a second stream", func(t *testing.T) {
		s := shard(1)
		fence(t, c, s, 1)
		_, cancel := openStream(t, c, s, 1, 0)
		defer cancel()
		second, err := c.Replication.Replicate(leader.StreamContext(ctx, s))
		if err != nil {
			t.Fatal(err)
		}
		send(t, second, 1, 1)
		wantCode(t, recvEnd(second), codes.FailedPrecondition, grpcapi.ReasonResourceConflict, "")
		// Truncate and SendSnapshot conflict with the attached stream too.
		if _, err := c.NewTerm(ctx, s, 1, nil); err != nil { // ends the stream
			t.Fatal(err)
		}
	})
	t.Run("RESOURCE_CONFLICT: Truncate and SendSnapshot while a stream is attached", func(t *testing.T) {
		s := shard(2)
		fence(t, c, s, 1)
		if _, err := c.NewTerm(ctx, s, 2, nil); err != nil {
			t.Fatal(err)
		}
		_, cancel := openStream(t, c, s, 2, 0)
		defer cancel()
		_, err := c.Truncate(ctx, s, 2, logpos.EntryID{Term: 2, Offset: 0})
		wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict, "")
		_, err = sendChunks(t, c, s, snapshotOf(t, 2, 3)...)
		wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonResourceConflict, "")
	})
	t.Run("INVALID_TERM", func(t *testing.T) {
		s := shard(3)
		fence(t, c, s, 5)
		_, err := c.NewTerm(ctx, s, 4, nil)
		wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm, "")
		err = c.Delete(ctx, s, 4)
		wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm, "")
		// An Append of another term fails the stream.
		stream, err := c.Replication.Replicate(leader.StreamContext(ctx, s))
		if err != nil {
			t.Fatal(err)
		}
		send(t, stream, 6, 0)
		wantCode(t, recvEnd(stream), codes.FailedPrecondition, grpcapi.ReasonInvalidTerm, "")
		// A snapshot of another term.
		_, err = sendChunks(t, c, s, snapshotOf(t, 4, 2)...)
		wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm, "")
		// Truncate with another term (the follower is Fenced again).
		if _, err := c.NewTerm(ctx, s, 5, nil); err != nil {
			t.Fatal(err)
		}
		_, err = c.Truncate(ctx, s, 6, logpos.NoEntry)
		wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidTerm, "")
	})
	t.Run("INVALID_STATUS", func(t *testing.T) {
		s := shard(4)
		fence(t, c, s, 1) // Follower now
		_, err := c.Truncate(ctx, s, 1, logpos.NoEntry)
		wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidStatus, "")
		// A NotMember follower cannot be truncated either.
		_, err = c.Truncate(ctx, shard(40), 0, logpos.NoEntry)
		wantCode(t, err, codes.FailedPrecondition, grpcapi.ReasonInvalidStatus, "")
	})
	t.Run("NODE_IS_NOT_MEMBER", func(t *testing.T) {
		_, err := c.Status(ctx, shard(5))
		wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
		stream, err := c.Replication.Replicate(leader.StreamContext(ctx, shard(5)))
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, recvEnd(stream), codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
		// The stream opened a follower that is still not a member.
		_, err = c.Status(ctx, shard(5))
		wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
		_, _, err = c.Get(ctx, shard(50), logpos.NoOffset, []byte("k"))
		wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	})
	t.Run("INVALID_ARGUMENT", func(t *testing.T) {
		s := shard(6)
		fence(t, c, s, 1)
		replicate(t, c, s, 1, 0, 10, true)
		checkApplied(t, c, s, 9) // commit 9: a Truncate to 5 goes below it
		if _, err := c.NewTerm(ctx, s, 2, nil); err != nil {
			t.Fatal(err)
		}
		_, err := c.Truncate(ctx, s, 2, logpos.EntryID{Term: 1, Offset: 5})
		wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, "")
		_, err = c.Truncate(ctx, s, 2, logpos.EntryID{Term: 1, Offset: 10})
		wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, "")
		// A gap on the stream.
		stream, err := c.Replication.Replicate(leader.StreamContext(ctx, s))
		if err != nil {
			t.Fatal(err)
		}
		send(t, stream, 2, 12)
		wantCode(t, recvEnd(stream), codes.InvalidArgument, grpcapi.ReasonInvalidArgument, "")
		// Snapshots: empty, a bad name, not a store.
		_, err = sendChunks(t, c, s)
		wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, "")
		_, err = sendChunks(t, c, s, &replicationpb.SnapshotChunk{Term: 2, Name: "../escape", Content: []byte("x"), ChunkCount: 1})
		wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, "")
		_, err = sendChunks(t, c, s, &replicationpb.SnapshotChunk{Term: 2, Name: "MANIFEST-000001", Content: []byte("not a store"), ChunkCount: 1})
		wantCode(t, err, codes.InvalidArgument, grpcapi.ReasonInvalidArgument, "")
		st, err := c.Status(ctx, s)
		if err != nil || st.GetTerm() != 2 || st.GetHeadOffset() != 9 {
			t.Fatalf("after rejected calls: %v, %v", st, err)
		}
	})
	t.Run("Canceled: a stream ended by NewTerm", func(t *testing.T) {
		s := shard(7)
		fence(t, c, s, 1)
		stream, cancel := openStream(t, c, s, 1, 0)
		defer cancel()
		if _, err := c.NewTerm(ctx, s, 2, nil); err != nil {
			t.Fatal(err)
		}
		wantCode(t, recvEnd(stream), codes.Canceled, "", "")
	})
	t.Run("Canceled: a stream ended by DeleteShard", func(t *testing.T) {
		s := shard(8)
		fence(t, c, s, 1)
		stream, cancel := openStream(t, c, s, 1, 0)
		defer cancel()
		if err := c.Delete(ctx, s, 1); err != nil {
			t.Fatal(err)
		}
		wantCode(t, recvEnd(stream), codes.Canceled, "", "")
	})
}

// TestErrorsUnavailable: storage failures are Unavailable with
// RESOURCE_UNAVAILABLE, and the shard works again once storage does.
func TestErrorsUnavailable(t *testing.T) {
	var failWAL, diskFull atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failWAL.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.Contains(op.Path, string(filepath.Separator)+"wal") {
			return errorfs.ErrInjected
		}
		if diskFull.Load() && op.Kind == errorfs.OpFileSync && strings.Contains(op.Path, "MANIFEST") {
			return syscall.ENOSPC // Pebble gives up opening the store
		}
		return nil
	})
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = errorfs.Wrap(vfs.Default, inj) })
	c := n.conn
	ctx := ctxT(t)
	s := leader.Shard{Namespace: "disk", Shard: 1}
	fencedWithEntries(t, c, s)
	failWAL.Store(true)
	_, err := c.Truncate(ctx, s, 2, logpos.EntryID{Term: 1, Offset: 1})
	wantCode(t, err, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "")
	failWAL.Store(false)
	st, err := c.Status(ctx, s)
	if err != nil || st.GetStatus() != replicationpb.ServingStatus_FENCED || st.GetHeadOffset() != 4 {
		t.Fatalf("after the failed truncate: %v, %v; want FENCED, head 4", st, err)
	}

	// A shard whose directory cannot be created cannot be opened.
	if err := os.MkdirAll(filepath.Join(n.dir, "disk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "disk", "2"), []byte("a file, not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = c.NewTerm(ctx, leader.Shard{Namespace: "disk", Shard: 2}, 1, nil)
	wantCode(t, err, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "")

	// A new shard on a full disk: Unavailable, and nothing of it is left
	// (it is not hosted); it opens once the disk has room.
	full := leader.Shard{Namespace: "disk", Shard: 3}
	diskFull.Store(true)
	_, err = c.NewTerm(ctx, full, 1, nil)
	wantCode(t, err, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "")
	if _, err := os.Stat(filepath.Join(n.dir, "disk", "3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the shard whose open failed left its directory: %v", err)
	}
	_, err = c.Status(ctx, full)
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	diskFull.Store(false)
	fence(t, c, full, 1)
}

// TestShutdownEndsStreams: a node shutting down ends its streams with
// Unavailable and no ErrorInfo; what was acked is there after a restart.
func TestShutdownEndsStreams(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	s := leader.Shard{Namespace: "down", Shard: 0}
	fence(t, n.conn, s, 1)
	stream, cancel := openStream(t, n.conn, s, 1, 0)
	defer cancel()
	for o := logpos.Offset(1); o < 20; o++ {
		send(t, stream, 1, o)
	}
	acked := logpos.Offset(0)
	for acked < 19 {
		ack, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		acked = logpos.Offset(ack.GetOffset())
	}
	done := make(chan struct{})
	go func() { defer close(done); n.shutdown() }()
	wantCode(t, recvEnd(stream), codes.Unavailable, "", "")
	<-done

	n2 := startNode(t, dir)
	st, err := n2.conn.Status(ctxT(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetTerm() != 1 || st.GetStatus() != replicationpb.ServingStatus_FENCED || st.GetHeadOffset() < int64(acked) {
		t.Fatalf("after restart: %v, want term 1, FENCED, head ≥ %d", st, acked)
	}
}

// fencedWithEntries fences s at term 1, streams entries 0 to 4 to it
// (acked, never committed), then fences it at term 2: s is Fenced, with
// a log a Truncate can cut.
func fencedWithEntries(t *testing.T, c *leader.Conn, s leader.Shard) {
	t.Helper()
	fence(t, c, s, 1)
	stream, cancel := openStream(t, c, s, 1, 0)
	for o := logpos.Offset(1); o < 5; o++ {
		send(t, stream, 1, o)
	}
	for acked := int64(0); acked < 4; {
		ack, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		acked = ack.GetOffset()
	}
	cancel()
	if _, err := c.NewTerm(ctxT(t), s, 2, nil); err != nil {
		t.Fatal(err)
	}
}
