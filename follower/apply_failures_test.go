package follower

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
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

// TestApplierAppliesWhatItReadBeforeAReadFailure: entries 0..40 are
// durable before any commit is advertised, so the applier reads them for
// one batch; the log's second segment cannot be opened. The entries read
// before it, those of the first segment, are applied all the same, and
// the rest once the segment can be read.
func TestApplierAppliesWhatItReadBeforeAReadFailure(t *testing.T) {
	h := newHarness(t, Config{SegmentSize: 1024})
	h.newTerm(1)
	a := confAttach(t, h.f)
	const last = 40
	sendAcked(t, a, last)
	var segs []string
	entries, err := os.ReadDir(filepath.Join(h.dir, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".seg") {
			segs = append(segs, e.Name())
		}
	}
	if len(segs) < 2 {
		t.Fatalf("the log has segments %v, want several", segs)
	}
	second, err := strconv.ParseInt(strings.TrimSuffix(segs[1], ".seg"), 10, 64) // named by its first offset
	if err != nil {
		t.Fatal(err)
	}
	h.fs.failMatching(func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpOpen && filepath.Base(op.Path) == segs[1]
	})
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: last})
	waitApplyFailures(t, h.f, 3)
	if c := h.f.store().Commit().Offset; c != logpos.Offset(second-1) {
		t.Fatalf("commit %d while entry %d cannot be read, want %d (the entries read before it applied)", c, second, second-1)
	}
	h.fs.heal()
	waitApplied(t, h.f, last)
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
}

// TestCloseStopsTheApplierWaitingToRetry: Close does not wait out the
// backoff of an applier whose entry failed (here an hour): the applier
// stops at once, without another attempt, and the commit stays below the
// failing entry.
func TestCloseStopsTheApplierWaitingToRetry(t *testing.T) {
	sm := &flakyMachine{}
	sm.fail.Store(true)
	h := newHarness(t, Config{StateMachine: sm, ApplyRetryMin: time.Hour, ApplyRetryMax: time.Hour})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 4, 4)
	if err := finish(t, s, res); err != nil {
		t.Fatal(err)
	}
	waitApplyFailures(t, h.f, 1)
	if err := h.f.Close(); err != nil {
		t.Fatal(err)
	}
	if n := h.f.applier.failures.Load(); n != 1 {
		t.Fatalf("%d failed attempts, want 1 (the retry was due in an hour)", n)
	}
	if c := h.f.Status().Commit; c != 1 {
		t.Fatalf("commit %d after Close, want 1 (entry 2 failed)", c)
	}
}

// TestCloseStopsAnApplierWaitingToRepair: the applier's repair of a
// failed store waits for the lifecycle lock, which Close holds while it
// stops the applier: the repair gives up, and Close goes on, rather than
// each waiting for the other.
func TestCloseStopsAnApplierWaitingToRepair(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTermStoredButFailed()
	h.f.acquire() // as Close does, before it stops the applier
	h.f.applier.kick()
	stacktest.WaitBlockedIn(t, "select", "follower.(*Follower).acquireUnless", nil)
	err := h.f.m.Close()
	h.f.release()
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := h.f.Status(); st.State != StateClosed {
		t.Fatalf("after Close: %+v, want Closed", st)
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
// closes, and fails with ErrClosed (SPEC §2.7: Close ends the install),
// matching ErrStreamEnded too, as every install Close ended does.
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
	if err := within(t, res); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("InstallSnapshot waiting for its first chunk when the follower closed: %v, want ErrClosed and ErrStreamEnded", err)
	}
}
