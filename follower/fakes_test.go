package follower

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fatalHelper is what within needs of a test: a *testing.T, or the
// *rapid.T of a property test.
type fatalHelper interface {
	Helper()
	Fatalf(format string, args ...any)
}

// within receives from ch, what a call running on another goroutine
// returned, and fails the test if nothing comes within a minute: the
// bound only keeps a regression from hanging the package's tests (and
// hiding the failures of the tests after it).
func within[T any](t fatalHelper, ch <-chan T) T {
	t.Helper()
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("nothing received within a minute")
		var zero T
		return zero
	}
}

// fakeStream is a leader's replication stream as a gRPC server stream
// behaves: Recv returns the Appends sent on in, io.EOF once in is closed
// (the leader half-closed), and an error once the stream's context is
// done, which its owner cancels when Replicate returns.
type fakeStream struct {
	ctx    context.Context
	cancel context.CancelFunc
	in     chan *replicationpb.Append
	acks   chan int64
	// sendErr, when set, is returned by Send.
	sendErr error
}

func newFakeStream() *fakeStream {
	ctx, cancel := context.WithCancel(context.Background())
	return &fakeStream{ctx: ctx, cancel: cancel, in: make(chan *replicationpb.Append), acks: make(chan int64, 1<<16)}
}

func (s *fakeStream) Context() context.Context { return s.ctx }

func (s *fakeStream) Recv() (*replicationpb.Append, error) {
	select {
	case a, ok := <-s.in:
		if !ok {
			return nil, io.EOF
		}
		return a, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

func (s *fakeStream) Send(a *replicationpb.Ack) error {
	if s.sendErr != nil {
		return s.sendErr
	}
	s.acks <- a.Offset
	return nil
}

// fakeSnapshotStream delivers a fixed list of chunks, then io.EOF (or
// err, when set).
type fakeSnapshotStream struct {
	chunks []*replicationpb.SnapshotChunk
	err    error
}

func (s *fakeSnapshotStream) Context() context.Context { return context.Background() }

func (s *fakeSnapshotStream) Recv() (*replicationpb.SnapshotChunk, error) {
	if len(s.chunks) == 0 {
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	c := s.chunks[0]
	s.chunks = s.chunks[1:]
	return c, nil
}

// snapshotChunks reads sn to its end, as the chunks a leader of term
// sends (with their contents copied).
func snapshotChunks(t mdlTB, sn *store.Snapshot, term logpos.Term) []*replicationpb.SnapshotChunk {
	t.Helper()
	var out []*replicationpb.SnapshotChunk
	for {
		c, err := sn.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &replicationpb.SnapshotChunk{Term: int64(term), Name: c.Name,
			Content: slices.Clone(c.Content), ChunkIndex: c.Index, ChunkCount: c.Count})
	}
}
