package follower

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// TestNewTermSettledEntriesAreApplied: NewTerm ends a stream whose last
// entry the log holds (its commit advertised with it) but no sync round
// of the stream covered; NewTerm makes it durable (settleLog), and the
// applier then applies it, up to the advertised commit, without waiting
// for new traffic (SPEC §3: up to min(advertised, durable head)).
func TestNewTermSettledEntriesAreApplied(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	var r1 *replication
	reached := make(chan struct{})
	f.entryAppended = func(o logpos.Offset) {
		if o == 2 {
			close(reached)
			<-r1.ctx.Done() // held until NewTerm ends the stream: no sync round covers entry 2
		}
	}
	s := newFakeStream()
	res := make(chan error, 1)
	go func() { res <- f.Replicate(s); s.cancel() }()
	s.in <- entryAppend(1, 0, -1, "k0", "v")
	within(t, s.acks)
	s.in <- entryAppend(1, 1, 1, "k1", "v")
	within(t, s.acks)
	waitApplied(t, f, 1)
	f.acquire()
	r1 = f.stream
	f.release()
	s.in <- entryAppend(1, 2, 2, "k2", "v")
	<-reached
	if _, err := f.NewTerm(2, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := within(t, res); !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("the stream: %v", err)
	}
	if d := f.log.LastDurable(); d.Offset != 2 {
		t.Fatalf("log durable at %v after NewTerm, want entry 2", d)
	}
	waitApplied(t, f, 2)
	if v, err := f.Get([]byte(fmt.Sprintf("k%d", 2))); err != nil || string(v) != "v" {
		t.Fatalf("Get(k2) = %q, %v; want v", v, err)
	}
}

// TestNewTermAfterItsSettlingSyncFailed: NewTerm ends a stream whose last
// entry no sync round of the stream covered, and the fsync that would
// make it durable fails: NewTerm fails with ErrUnavailable, the term
// unchanged. The log's failure is sticky, so once the disk heals the next
// NewTerm reopens the log, cut back to the last entry a sync covered, and
// succeeds, replying that entry (docs/follower.md, Failures).
func TestNewTermAfterItsSettlingSyncFailed(t *testing.T) {
	var failSyncs atomic.Bool
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failSyncs.Load() && strings.Contains(op.Path, "/wal/") &&
			(op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) {
			return errInjected
		}
		return nil
	}))
	f, err := Open(Config{Dir: t.TempDir(), FS: efs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	var r1 *replication
	reached := make(chan struct{})
	f.entryAppended = func(o logpos.Offset) {
		if o == 1 {
			close(reached)
			<-r1.ctx.Done() // held until NewTerm ends the stream: no sync round covers entry 1
		}
	}
	s := newFakeStream()
	res := make(chan error, 1)
	go func() { res <- f.Replicate(s); s.cancel() }()
	s.in <- entryAppend(1, 0, -1, "k0", "v")
	if got := within(t, s.acks); got != 0 {
		t.Fatalf("ack %d, want 0", got)
	}
	f.acquire()
	r1 = f.stream
	f.release()
	s.in <- entryAppend(1, 1, -1, "k1", "v")
	<-reached
	failSyncs.Store(true)
	if _, err := f.NewTerm(2, TermOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NewTerm whose sync of the log fails: %v, want ErrUnavailable", err)
	}
	if err := within(t, res); !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("the stream: %v", err)
	}
	if st := f.Status(); st.Term != 1 || st.State != StateFollower {
		t.Fatalf("after the failed NewTerm: %+v, want term 1, Follower", st)
	}
	failSyncs.Store(false) // the disk heals
	id, err := f.NewTerm(2, TermOptions{})
	if err != nil {
		t.Fatalf("NewTerm once the disk healed: %v", err)
	}
	if st := f.Status(); id != (logpos.EntryID{Term: 1, Offset: 0}) || st.Term != 2 || st.State != StateFenced || st.Head != 0 {
		t.Fatalf("NewTerm replied %v, status %+v; want entry {1 0}, term 2, Fenced, head 0", id, st)
	}
}

// TestStatsStreamAttachedFollowsTheStream: Stats().StreamAttached is true
// while a stream is attached, and false once NewTerm has ended it (the
// stream is detached by the control operation, not by its handler).
func TestStatsStreamAttachedFollowsTheStream(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	if h.f.Stats().StreamAttached {
		t.Fatal("StreamAttached before any stream")
	}
	s, res := h.replicate(1, 0, 0, -1)
	if !h.f.Stats().StreamAttached {
		t.Fatal("StreamAttached false while a stream is attached")
	}
	if _, err := h.f.NewTerm(2, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := within(t, res); !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("the stream: %v", err)
	}
	s.cancel()
	if h.f.Stats().StreamAttached {
		t.Fatal("StreamAttached true after NewTerm ended the stream")
	}
}

// TestDeleteThatCannotRemoveReportsTheClosingFailure: a Delete whose
// closing failed (the store could not write what it held) and whose
// directory could not be renamed aside fails with ErrUnavailable, and its
// error carries the closing failure too: the shard is still there, and
// what closing could not write is part of why.
func TestDeleteThatCannotRemoveReportsTheClosingFailure(t *testing.T) {
	errFull := errors.New("store: disk full")
	var full, noRename atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch {
		case full.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.Contains(op.Path, "/store/"):
			return errFull
		case noRename.Load() && op.Kind == errorfs.OpRename:
			return errInjected
		}
		return nil
	}))
	cfg := Config{Dir: "/data/shard", FS: fs, SegmentSize: 1 << 16}
	f := openToDelete(t, cfg, 9)
	waitApplied(t, f, 9) // the store holds writes it has not synced
	full.Store(true)
	noRename.Store(true)
	err := f.Delete(4)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errInjected) {
		t.Fatalf("Delete with a failing rename: %v, want ErrUnavailable wrapping the rename's failure", err)
	}
	if !errors.Is(f.closeErr, errFull) {
		t.Fatalf("closing the store did not fail (%v): the test does not test the delete it means to", f.closeErr)
	}
	if !errors.Is(err, errFull) {
		t.Fatalf("Delete: %v, want it to carry the closing failure %v too", err, f.closeErr)
	}
	if _, err := fs.Stat(cfg.Dir); err != nil {
		t.Fatalf("the shard directory after a failed Delete: %v", err)
	}
}

// TestRemoveOfWhatADeleteLeftIsDurable: Remove of a shard whose directory
// is gone removes what a Delete cut short left (Dir.deleted) and syncs the
// parent before it returns: a power loss does not bring it back.
func TestRemoveOfWhatADeleteLeftIsDurable(t *testing.T) {
	mem := mdlNewMem(t) // the parent, /data, exists durably
	cfg := Config{Dir: mdlDir, FS: mem}
	left := cfg.Dir + ".deleted"
	if err := mem.MkdirAll(left, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := mem.OpenDir(mem.PathDir(cfg.Dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(d.Sync(), d.Close()); err != nil { // what the Delete left is durable
		t.Fatal(err)
	}
	if err := Remove(cfg, 0); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // power loss: only synced data survives
	if _, err := crashed.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after Remove and a power loss: %v, want it gone", left, err)
	}
}

// TestObserverPanicDuringOpenClosesWhatItOpened: an observer that panics
// on the Restore step of Open (a shard with a stored term) gets its panic
// back, and Open has closed the log and the store first: a caller that
// recovers can open the follower again.
func TestObserverPanicDuringOpenClosesWhatItOpened(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	obs := &panicOn{event: EventRestore.String()}
	obs.armed.Store(true)
	if p := callRecovering(func() { _, err = Open(Config{Dir: dir, Observer: obs}) }); p == nil {
		t.Fatalf("Open with an observer that panics on Restore returned %v without panicking", err)
	}
	g, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatalf("Open again after the panic: %v", err)
	}
	if st := g.Status(); st.State != StateFenced || st.Term != 1 {
		t.Errorf("reopened: %+v, want Fenced at term 1", st)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// statusOnMessage is a logger's handler that takes the follower's Status
// when a record with message msg is logged.
type statusOnMessage struct {
	msg string
	f   *atomic.Pointer[Follower]
	got chan Status
}

func (h statusOnMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h statusOnMessage) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h statusOnMessage) WithGroup(string) slog.Handler            { return h }

func (h statusOnMessage) Handle(_ context.Context, r slog.Record) error {
	if f := h.f.Load(); f != nil && r.Message == h.msg {
		h.got <- f.Status()
	}
	return nil
}

// TestStatusDuringNewTermIsTheLastCompletedOperations: NewTerm stores
// the new term before the machine moves to Fenced; Status, read in
// between, reports the term and state that the Truncate before it left,
// never the new term with the old state.
func TestStatusDuringNewTermIsTheLastCompletedOperations(t *testing.T) {
	var fp atomic.Pointer[Follower]
	h := statusOnMessage{msg: "fenced", f: &fp, got: make(chan Status, 1)}
	f, err := Open(Config{Dir: t.TempDir(), Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Truncate(1, &logpos.EntryID{Offset: -1}); err != nil {
		t.Fatal(err)
	}
	fp.Store(f)
	if _, err := f.NewTerm(2, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := <-h.got; st.Term != 1 || st.State != StateFollower {
		t.Fatalf("Status while NewTerm(2) fences: %+v, want term 1, Follower", st)
	}
	if st := f.Status(); st.Term != 2 || st.State != StateFenced {
		t.Fatalf("Status after NewTerm(2): %+v, want term 2, Fenced", st)
	}
}
