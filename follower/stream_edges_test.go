package follower

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/wal"
)

func cumul(ap *replicationpb.Append) *replicationpb.Append {
	ap.CumulativeAcksSupported = true
	return ap
}

// A sync failure while the leader half-closes: the handler returns the
// failure, nothing undurable is acked, and the next stream works, in
// both ack modes.
func TestStreamSyncFailureWithHalfClose(t *testing.T) {
	for _, cum := range []bool{false, true} {
		t.Run(map[bool]string{false: "per-entry", true: "cumulative"}[cum], func(t *testing.T) {
			h := newHarness(t, Config{})
			h.newTerm(1)
			if _, err := h.f.Truncate(1, &logpos.EntryID{Term: 1, Offset: -1}); err != nil {
				t.Fatal(err)
			}
			mk := func(o int64) *replicationpb.Append {
				ap := entryAppend(1, o, -1, "k", "v")
				ap.CumulativeAcksSupported = cum
				return ap
			}
			a := confAttach(t, h.f)
			for o := int64(0); o <= 2; o++ {
				a.send(t, mk(o))
				if got := a.ack(t); got != o {
					t.Fatalf("ack %d want %d", got, o)
				}
			}
			h.fs.failSyncs("/wal/")
			a.send(t, mk(3))
			// A duplicate, durable; unless the failing sync of entry 3
			// ended the stream before the receive loop took it.
			select {
			case a.s.in <- mk(2):
			case err := <-a.res:
				a.res <- err
			}
			close(a.s.in)
			err := a.end(t)
			if !errors.Is(err, ErrUnavailable) {
				// the duplicate may be acked before the sync fails
				t.Fatalf("handler: %v", err)
			}
			for len(a.s.acks) > 0 {
				if o := <-a.s.acks; o > 2 {
					t.Fatalf("ack %d on a failing log", o)
				}
			}
			h.fs.heal()
			if st := h.f.Status(); st.Head != 2 {
				t.Fatalf("head %d after failed sync, want 2", st.Head)
			}
			b := confAttach(t, h.f)
			b.send(t, mk(3))
			if got := b.ack(t); got != 3 {
				t.Fatalf("ack %d", got)
			}
			b.send(t, mk(1))
			if got := b.ack(t); (cum && got != 3) || (!cum && got != 1) {
				t.Fatalf("dup ack %d", got)
			}
			if err := b.finish(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The first Append is a flagged commit advertisement, then unflagged
// entries: cumulative mode (decided by the first Append).
func TestStreamFirstAdvertisementFlaggedDecidesCumulative(t *testing.T) {
	held := newHeldSyncRound(t)
	f := held.f
	a := confAttach(t, f)
	a.send(t, cumul(&replicationpb.Append{Term: 1, CommitOffset: -1}))
	held.armed.Store(true)
	a.send(t, entryAppend(1, 0, -1, "k0", "v"))
	<-held.blocked
	for o := int64(1); o <= 4; o++ {
		a.send(t, entryAppend(1, o, -1, "k", "v"))
	}
	a.send(t, entryAppend(1, 2, -1, "k", "v")) // duplicate
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: -1})
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: -1})
	close(held.gate)
	var acks []int64
	for len(acks) == 0 || acks[len(acks)-1] != 4 {
		acks = append(acks, a.ack(t))
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	for len(a.s.acks) > 0 {
		acks = append(acks, <-a.s.acks)
	}
	if len(acks) != 2 || acks[0] != 0 || acks[1] != 4 {
		t.Fatalf("acks %v, want [0 4]", acks)
	}
}

// Offsets near the ends of int64 and huge/negative commits.
func TestStreamExtremeOffsets(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	a := confAttach(t, h.f)
	a.send(t, entryAppend(1, 0, math.MaxInt64, "k", "v"))
	if got := a.ack(t); got != 0 {
		t.Fatal(got)
	}
	waitApplied(t, h.f, 0)
	a.send(t, entryAppend(1, 1, math.MinInt64, "k", "v"))
	if got := a.ack(t); got != 1 {
		t.Fatal(got)
	}
	waitApplied(t, h.f, 1)
	if st := h.f.Status(); st.Commit != 1 || st.Head != 1 {
		t.Fatalf("status %+v", st)
	}
	a.send(t, entryAppend(1, math.MaxInt64, 5, "k", "v"))
	if err := a.end(t); !errors.Is(err, ErrGap) {
		t.Fatalf("entry at MaxInt64: %v", err)
	}
	b := confAttach(t, h.f)
	b.send(t, entryAppend(1, math.MinInt64, 5, "k", "v"))
	if err := b.end(t); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("entry at MinInt64: %v", err)
	}
}

// NewTerm, Close or Delete racing the last acks of a half-closed stream:
// acks are a prefix in order, nothing acked beyond what NewTerm reports,
// and the handler returns, having finished the stream or been ended.
func TestStreamControlRacesHalfClose(t *testing.T) {
	for i := 0; i < 60; i++ {
		h := newHarness(t, Config{})
		h.newTerm(1)
		a := confAttach(t, h.f)
		cum := i%2 == 1
		for o := int64(0); o < 20; o++ {
			ap := entryAppend(1, o, o-1, "k", "v")
			ap.CumulativeAcksSupported = cum
			a.send(t, ap)
		}
		close(a.s.in)
		var head logpos.EntryID
		var err error
		switch i % 3 {
		case 0:
			head, err = h.f.NewTerm(2, TermOptions{})
		case 1:
			err = h.f.Close()
		case 2:
			err = h.f.Delete(1)
		}
		if err != nil {
			t.Fatal(err)
		}
		// The handler returns (that the operation waits for it, when
		// it ended the stream, is TestBugNewTermReturnsBeforeTheHandler's:
		// here its result may still be on its way to a.res).
		var res error
		select {
		case res = <-a.res:
		case <-bounded(t).Done():
			t.Fatalf("handler still running after the control operation")
		}
		if res != nil && !errors.Is(res, ErrStreamEnded) {
			t.Fatalf("handler: %v", res)
		}
		last := int64(-1)
		for len(a.s.acks) > 0 {
			o := <-a.s.acks
			if (!cum && o != last+1) || (cum && o <= last) {
				t.Fatalf("ack %d after %d", o, last)
			}
			last = o
		}
		if res == nil && last != 19 {
			t.Fatalf("finished stream acked up to %d", last)
		}
		if i%3 == 0 && int64(head.Offset) < last {
			t.Fatalf("NewTerm head %v below ack %d", head, last)
		}
	}
}

// A detached stream's fsync that fails after the next stream attached:
// the next stream must end with the log's failure (ErrUnavailable), ack
// nothing undurable, and the stream after it works.
func TestStreamStaleSyncFailsUnderNextStream(t *testing.T) {
	var armed atomic.Bool
	blocked, gate := make(chan struct{}), make(chan struct{})
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.Contains(op.Path, "/wal/") && op.Kind == errorfs.OpFileSyncData && armed.CompareAndSwap(true, false) {
			close(blocked)
			<-gate
			return errInjected
		}
		return nil
	}))
	f := openFilled(t, Config{Dir: t.TempDir(), FS: efs})
	var err error
	a := confAttach(t, f)
	armed.Store(true)
	a.send(t, entryAppend(1, 3, -1, "k", "v"))
	<-blocked
	a.s.cancel() // transport gone; handler returns, sync loop still in fsync
	if err := a.end(t); err == nil {
		t.Fatal("a stream whose transport went away ended without an error")
	}
	b := confAttach(t, f)
	b.send(t, entryAppend(1, 4, -1, "k", "v"))
	b.send(t, &replicationpb.Append{Term: 1, CommitOffset: -1})
	close(gate) // the old fsync fails now
	// wait for the log failure to be visible
	for !f.logFailed.Load() {
		runtime.Gosched()
	}
	select {
	case b.s.in <- entryAppend(1, 5, -1, "k", "v"):
		close(b.s.in)
		err = b.end(t)
	case err = <-b.res:
	}
	for len(b.s.acks) > 0 {
		t.Errorf("ack %d", <-b.s.acks)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("stream on a log that failed under it: %v, want ErrUnavailable", err)
	}
	c := confAttach(t, f)
	head := f.Status().Head
	c.send(t, entryAppend(1, int64(head)+1, -1, "k", "v"))
	if got := c.ack(t); got != int64(head)+1 {
		t.Fatalf("the stream after the failure: ack %d, want %d", got, head+1)
	}
	if err := c.finish(t); err != nil {
		t.Fatal(err)
	}
}

// openFilled opens a follower with cfg, fenced at term 1 with entries
// 0..2 durable and acknowledged; the test's end closes it.
func openFilled(t *testing.T, cfg Config) *Follower {
	t.Helper()
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	confFill(t, f, 1, 0, 2, -1)
	return f
}

// TestStreamStaleSyncFailsUnderNextStreamForced is the case above with
// the order forced: the next stream (B) takes its duplicate, its sync
// loop waits behind the old stream's (A's) fsync, the fsync fails and A's
// sync loop cuts the head back, and B's next, contiguous entry arrives
// before B's sync loop has seen the failure. B ends with the log's
// failure (ErrUnavailable), not with a gap (the leader's mistake), and
// is not counted as a gap. B's sync loop is held back only by a second
// waiter for the log's sync, which goes first: a TruncateLog of the last
// entry (on a failed log, an ErrFailed that changes nothing) that waits
// for the WAL's worker, held in the creation of an index file.
func TestStreamStaleSyncFailsUnderNextStreamForced(t *testing.T) {
	var armedSync, armedIndex atomic.Bool
	blocked, gate := make(chan struct{}), make(chan struct{})
	indexing, indexGate := make(chan struct{}), make(chan struct{})
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.Contains(op.Path, "/wal/") {
			return nil
		}
		if op.Kind == errorfs.OpFileSyncData && armedSync.CompareAndSwap(true, false) {
			close(blocked)
			<-gate
			return errInjected
		}
		if op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ".tmp") && armedIndex.CompareAndSwap(true, false) {
			close(indexing) // the WAL's worker, holding its maintenance lock
			<-indexGate
		}
		return nil
	}))
	f := openFilled(t, Config{Dir: t.TempDir(), FS: efs, SegmentSize: 64}) // a segment per record
	var err error
	a := confAttach(t, f)
	armedIndex.Store(true)
	armedSync.Store(true)
	a.send(t, entryAppend(1, 3, -1, "k", "v")) // a new segment: the worker indexes the one before
	<-blocked
	<-indexing
	a.s.cancel() // the leader goes away; A's sync loop is still in its fsync
	if err := a.end(t); err == nil {
		t.Fatal("a stream whose transport went away ended without an error")
	}
	gaps := f.Stats().StreamFailures.Gap

	waiter := make(chan error, 1)
	go func() { _, err := f.log.TruncateLog(f.log.LastAppended().Offset); waiter <- err }()
	stacktest.WaitBlockedIn(t, "chan send", "wal.(*Log).quiesce", nil)
	b := confAttach(t, f)
	b.send(t, entryAppend(1, 3, -1, "k", "v")) // a duplicate, acked once durable
	stacktest.WaitBlockedIn(t, "select", "wal.(*Log).Sync", nil)
	close(gate) // A's fsync fails; A's sync loop cuts the head back to 2
	for f.head.Load() != 2 {
		runtime.Gosched()
	}
	select {
	case b.s.in <- entryAppend(1, 4, -1, "k", "v"):
		err = b.end(t)
	case err = <-b.res:
	}
	close(indexGate)
	if werr := <-waiter; !errors.Is(werr, wal.ErrFailed) {
		t.Errorf("the TruncateLog standing in line: %v, want the log's failure", werr)
	}
	for len(b.s.acks) > 0 {
		t.Errorf("ack %d on a log whose fsync of 3 failed", <-b.s.acks)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("stream on a log that failed under it: %v, want ErrUnavailable", err)
	}
	if got := f.Stats().StreamFailures.Gap; got != gaps {
		t.Errorf("the stream's end counted as a gap")
	}
}

// An Append the transport delivers after NewTerm ended the stream (while
// NewTerm waits for the receive loop) is not written: SPEC §6.4.
func TestAppendReceivedAfterTheStreamEnded(t *testing.T) {
	h := newHarness(t, Config{})
	s := newFakeStream()
	// Once the stream ended, and before its handler returns (the
	// transport's context is not done yet), the receive loop, still in
	// Recv, gets one more Append of the ended stream.
	h.f.streamEnded = func(*replication) { s.in <- entryAppend(1, 1, -1, "k", "v") }
	h.newTerm(1)
	res := make(chan error, 1)
	go func() { res <- h.f.Replicate(s); s.cancel() }()
	s.in <- entryAppend(1, 0, -1, "k", "v")
	if o := within(t, s.acks); o != 0 {
		t.Fatalf("ack %d", o)
	}
	if _, err := h.f.NewTerm(2, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := within(t, res); !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("the stream: %v", err)
	}
	if last := h.f.log.LastAppended(); last.Offset != 0 {
		t.Fatalf("the log ends at %v after NewTerm ended the stream at 0", last)
	}
	if st := h.f.Status(); st.Head != 0 {
		t.Fatalf("head %d, want 0", st.Head)
	}
}

// A sync loop whose log failed once the follower had reopened it (the
// failure noted by another of its users, and a control operation
// replacing it) leaves the follower's head alone: it is the reopened
// log's, which has not failed.
func TestStaleSyncFailureLeavesTheReopenedLogsHead(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	confFill(t, h.f, 1, 0, 2, -1)
	// The log the stream attached with, since replaced: it fails its next
	// fsync, of an entry beyond what it made durable.
	fs := newFaultyFS()
	old, err := wal.Open(filepath.Join(t.TempDir(), "wal"), wal.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.AppendAsync(logpos.Entry{Term: 1, Offset: 0, Value: kvPut("k", "v")}); err != nil {
		t.Fatal(err)
	}
	fs.failSyncs("/wal/")
	s := newFakeStream()
	defer s.cancel()
	r := newReplication(h.f, s, logpos.NoTerm) // not attached: its sync loop runs here
	r.log = old
	r.kick()
	r.sync() // returns once its sync failed
	if err := context.Cause(r.ctx); !errors.Is(err, wal.ErrFailed) {
		t.Fatalf("the stream ended with %v, want its log's failure", err)
	}
	if st := h.f.Status(); st.Head != 2 || h.f.logFailed.Load() {
		t.Fatalf("head %d (log failed: %v) after a replaced log failed, want 2 (not failed)", st.Head, h.f.logFailed.Load())
	}
}
