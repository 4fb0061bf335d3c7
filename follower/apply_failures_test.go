package follower

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// TestApplierReportsAFailureInsideABatch: entries 0..5 are durable before
// any commit is advertised, so the applier takes them in one batch, of
// which entry 2 fails once: 0 and 1 are applied, and that one failure is
// reported (logged and counted once) as entry 2's, wrapping the state
// machine's error, before entry 2 is applied on the retry (SPEC §3: the
// error is visible in logs and metrics).
func TestApplierReportsAFailureInsideABatch(t *testing.T) {
	sm := &confFlaky{off: 2, failN: 1}
	logged := newLogAttr("applying an entry failed; retrying", "err")
	h := newHarness(t, Config{StateMachine: sm, Logger: slog.New(logged)})
	h.newTerm(1)
	a := confAttach(t, h.f)
	for o := int64(0); o <= 5; o++ {
		a.send(t, entryAppend(1, o, -1, fmt.Sprintf("k%d", o), "v"))
	}
	for o := int64(0); o <= 5; o++ {
		if got := a.ack(t); got != o {
			t.Fatalf("ack %d, want %d", got, o)
		}
	}
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: 5})
	waitApplied(t, h.f, 5)
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	var errs []error
	for _, v := range logged.seen() {
		err, _ := v.Any().(error)
		errs = append(errs, err)
	}
	if len(errs) != 1 {
		t.Fatalf("%d apply failures logged (%v), want 1", len(errs), errs)
	}
	if !errors.Is(errs[0], errInjected) || !strings.Contains(errs[0].Error(), "applying entry 2") {
		t.Errorf("apply failure logged as %v, want entry 2's, wrapping %v", errs[0], errInjected)
	}
	if got := h.f.Stats().ApplyErrors; got != 1 {
		t.Errorf("ApplyErrors %d, want 1", got)
	}
}

// firstChunkNeverComes is a snapshot stream whose leader never sends: Recv
// reports its first call on called, then blocks until done is closed.
type firstChunkNeverComes struct{ called, done chan struct{} }

func (s *firstChunkNeverComes) Context() context.Context { return context.Background() }

func (s *firstChunkNeverComes) Recv() (*replicationpb.SnapshotChunk, error) {
	close(s.called)
	<-s.done
	return nil, io.EOF
}

// TestCloseEndsAnInstallWaitingForItsFirstChunk: an install not yet
// attached (its first chunk has not come) stops waiting when the follower
// closes, and fails with ErrClosed (SPEC §2.7: Close ends the install).
func TestCloseEndsAnInstallWaitingForItsFirstChunk(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s := &firstChunkNeverComes{called: make(chan struct{}), done: make(chan struct{})}
	defer close(s.done)
	res := make(chan error, 1)
	go func() {
		_, err := h.f.InstallSnapshot(s)
		res <- err
	}()
	<-s.called
	if err := h.f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Fatalf("InstallSnapshot waiting for its first chunk when the follower closed: %v, want ErrClosed", err)
	}
}
