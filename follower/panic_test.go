package follower

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
)

// panicOn is an observer that panics, once armed, at the first step of
// event that failed or was refused (fails) or that was taken (!fails).
type panicOn struct {
	event string
	armed atomic.Bool
	fails bool // panic on a failed or refused step (else on a taken one)
}

func (o *panicOn) Observe(s fsm.Step) {
	if s.Event == o.event && (s.Err != nil) == o.fails && o.armed.CompareAndSwap(true, false) {
		panic("observer bug")
	}
}

// callRecovering runs fn and returns what it panicked with, if anything.
func callRecovering(fn func()) (p any) {
	defer func() { p = recover() }()
	fn()
	return nil
}

// TestObserverPanicOnAFailedInstallCommit: an observer that panics on a
// failed CommitInstall step (the swap failed) does not leave the install
// attached: the next Truncate and install are not refused with
// ErrConflict.
func TestObserverPanicOnAFailedInstallCommit(t *testing.T) {
	obs := &panicOn{event: EventCommitInstall.String(), fails: true}
	h := newHarness(t, Config{Observer: obs})
	h.newTerm(1)
	chunks := confSnap{chunkTerm: 1, storeTerm: 1, commit: 5, options: confSnapOpts, prefix: "s"}.build(t)
	h.fs.fail("CURRENT.tmp") // the swap fails: ErrUnavailable, nothing changed
	obs.armed.Store(true)
	p := callRecovering(func() { _, _ = h.f.InstallSnapshot(&fakeSnapshotStream{chunks: chunks}) })
	h.fs.heal()
	if p == nil {
		t.Fatal("the observer did not panic")
	}
	if _, err := h.f.Truncate(1, &logpos.EntryID{Term: 1, Offset: -1}); errors.Is(err, ErrConflict) {
		t.Errorf("Truncate after the failed install: %v (the install is still attached)", err)
	}
	if _, err := h.f.InstallSnapshot(&fakeSnapshotStream{chunks: cloneChunks(chunks)}); errors.Is(err, ErrConflict) {
		t.Errorf("the next install: %v (the failed one is still attached)", err)
	}
}

// TestObserverPanicOnAnInstallsBeginning: an observer that panics on the
// BeginInstall step (the install attached, its staging begun) leaves no
// staged files, nor the install attached: the next install succeeds.
func TestObserverPanicOnAnInstallsBeginning(t *testing.T) {
	obs := &panicOn{event: EventBeginInstall.String()}
	h := newHarness(t, Config{Observer: obs})
	h.newTerm(1)
	chunks := confSnap{chunkTerm: 1, storeTerm: 1, commit: 5, options: confSnapOpts, prefix: "s"}.build(t)
	obs.armed.Store(true)
	if p := callRecovering(func() { _, _ = h.f.InstallSnapshot(&fakeSnapshotStream{chunks: cloneChunks(chunks)}) }); p == nil {
		t.Fatal("the observer did not panic")
	}
	if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
		t.Errorf("staging left after the install whose beginning panicked: %v", l)
	}
	if off, err := h.f.InstallSnapshot(&fakeSnapshotStream{chunks: cloneChunks(chunks)}); err != nil || off != 5 {
		t.Errorf("the next install: %d, %v; want 5", off, err)
	}
}

// TestObserverPanicOnAnAbandonedInstall: an observer that panics on the
// refused CommitInstall step of an install NewTerm abandoned once its
// transfer was over (as it waited for the lifecycle lock to commit)
// leaves no staged bytes (SPEC §2.4).
func TestObserverPanicOnAnAbandonedInstall(t *testing.T) {
	obs := &panicOn{event: EventCommitInstall.String(), fails: true}
	h := newHarness(t, Config{Observer: obs})
	h.newTerm(1)
	chunks := confSnap{chunkTerm: 1, storeTerm: 1, commit: 5, options: confSnapOpts, prefix: "s"}.build(t)
	// Every chunk goes through; the end of the stream waits for the gate.
	s := &gatedStream{chunks: chunks, gate: make(chan struct{}), gateAt: len(chunks)}
	res := make(chan any, 1)
	go func() { res <- callRecovering(func() { _, _ = h.f.InstallSnapshot(s) }) }()
	waitInstallsStarted(t, h.f, 1)
	h.f.acquire()
	close(s.gate)
	stacktest.WaitBlockedIn(t, "chan send", "follower.(*Follower).acquire", nil)
	h.f.abandonInstall() // what NewTerm does, holding the lock
	obs.armed.Store(true)
	h.f.release()
	if p := within(t, res); p == nil {
		t.Fatal("the observer did not panic")
	}
	if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
		t.Errorf("staging left after the abandoned install: %v", l)
	}
}

// TestNewTermStopsAnInstallWaitingForChunks: NewTerm abandons an install
// whose leader is slow to send its next chunk; the install fails at once
// with ErrInvalidTerm, its staged files removed, without waiting for the
// chunk.
func TestNewTermStopsAnInstallWaitingForChunks(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	chunks := confSnap{chunkTerm: 1, storeTerm: 1, commit: 5, options: confSnapOpts, prefix: "s"}.build(t)
	s := &gatedStream{chunks: chunks, gate: make(chan struct{}), gateAt: 1}
	defer close(s.gate) // the stream's receive goroutine ends with it
	res := make(chan error, 1)
	go func() { _, err := h.f.InstallSnapshot(s); res <- err }()
	waitInstallsStarted(t, h.f, 1)
	h.f.acquire()
	inst := h.f.install
	h.f.release()
	if inst == nil {
		t.Fatal("no install attached while it waits for its second chunk")
	}
	if _, err := h.f.NewTerm(2, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	// Told already, not at the next chunk: the install is not waited for.
	if !isClosed(inst.abandoned) {
		t.Fatal("NewTerm returned without telling the install's transfer to stop waiting for chunks")
	}
	if err := within(t, res); !errors.Is(err, ErrInvalidTerm) {
		t.Fatalf("the abandoned install: %v, want ErrInvalidTerm", err)
	}
	if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
		t.Errorf("staging left after the abandoned install: %v", l)
	}
	if _, err := h.f.InstallSnapshot(&fakeSnapshotStream{chunks: cloneChunks(chunks)}); !errors.Is(err, ErrInvalidTerm) {
		t.Errorf("a snapshot of term 1 after NewTerm(2): %v, want ErrInvalidTerm", err)
	}
}

// TestObserverPanicInTheApplierRepair: a NewTerm fails because the
// store's sync does, though the term reached the disk; the applier
// repairs the store on its own goroutine and, the store holding the
// higher term, fences the follower through the machine. An observer that
// panics there fails that repair only: the process goes on, and the
// follower ends at the stored term.
func TestObserverPanicInTheApplierRepair(t *testing.T) {
	obs := &panicOn{event: EventNewTerm.String()}
	h := newHarness(t, Config{Observer: obs})
	h.newTermStoredButFailed()
	obs.armed.Store(true)
	h.f.applier.kick() // as a sync round or a commit advertisement does
	for h.f.storeFailed.Load() {
		<-h.f.applier.changed()
	}
	// The repair cleared the failure holding the lifecycle lock: once
	// the lock is free, it has ended.
	h.f.acquire()
	h.f.release()
	if st := h.f.Status(); st.Term != 2 || st.State != StateFenced {
		t.Fatalf("after the applier's repair: %+v", st)
	}
}

// panickyHandler is a logger's handler that panics, once armed, at the
// first record of level Error (msg empty) or with message msg.
type panickyHandler struct {
	slog.Handler
	armed *atomic.Bool
	msg   string // when set, only a record with this message panics (any level)
}

func (h panickyHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h panickyHandler) Handle(ctx context.Context, r slog.Record) error {
	if (h.msg == "" && r.Level >= slog.LevelError || h.msg != "" && r.Message == h.msg) && h.armed.CompareAndSwap(true, false) {
		panic("logger bug")
	}
	return h.Handler.Handle(ctx, r)
}

func (h panickyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return panickyHandler{h.Handler.WithAttrs(as), h.armed, h.msg}
}

func (h panickyHandler) WithGroup(n string) slog.Handler {
	return panickyHandler{h.Handler.WithGroup(n), h.armed, h.msg}
}

// TestLoggerPanicOnAStreamLoop: the log reports its failures through the
// follower's logger on the goroutine that met them, a stream's sync loop
// here; a logger that panics there does not end the process: the stream
// fails with the log's error.
func TestLoggerPanicOnAStreamLoop(t *testing.T) {
	armed := new(atomic.Bool)
	h := newHarness(t, Config{Logger: slog.New(panickyHandler{slog.DiscardHandler, armed, ""})})
	h.newTerm(1)
	if _, err := h.f.Truncate(1, &logpos.EntryID{Term: 0, Offset: -1}); err != nil {
		t.Fatal(err)
	}
	s, res := h.replicate(1, 0, 2, -1)
	h.fs.failSyncs("/wal/")
	armed.Store(true)
	s.in <- entryAppend(1, 3, -1, "k", "v")
	if err := within(t, res); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the stream: %v", err)
	}
}

// TestLoggerPanicDuringClose: a logger that panics on a line Close writes
// (its last, after everything is closed) does not stop the follower from
// being Closed, nor a later Close from returning (SPEC §2.7): the record
// is dropped.
func TestLoggerPanicDuringClose(t *testing.T) {
	armed := new(atomic.Bool)
	f, err := Open(Config{Dir: t.TempDir(), Logger: slog.New(panickyHandler{slog.DiscardHandler, armed, "follower closed"})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if p := callRecovering(func() { err = f.Close() }); p != nil || err != nil {
		t.Fatalf("Close with a logger that panics: %v, panicked with %v", err, p)
	}
	if armed.Load() {
		t.Fatal("the logger was not called: the test proves nothing")
	}
	if st := f.Status(); st.State != StateClosed {
		t.Errorf("after Close: %+v, want Closed", st)
	}
	if p := callRecovering(func() { err = f.Close() }); p != nil || err != nil {
		t.Errorf("Close again: %v, panicked with %v", err, p)
	}
}

// TestLoggerPanicDuringNewTerm: a logger that panics on the line Fence
// writes, between the term's persisting and the state's move, does not
// leave the new term with the old state: the follower is Fenced at it,
// and its leader can truncate it.
func TestLoggerPanicDuringNewTerm(t *testing.T) {
	armed := new(atomic.Bool)
	h := newHarness(t, Config{Logger: slog.New(panickyHandler{slog.DiscardHandler, armed, "fenced"})})
	h.newTerm(1)
	if _, err := h.f.Truncate(1, &logpos.EntryID{Term: 0, Offset: -1}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	var err error
	if p := callRecovering(func() { _, err = h.f.NewTerm(2, TermOptions{}) }); p != nil || err != nil {
		t.Fatalf("NewTerm with a logger that panics: %v, panicked with %v", err, p)
	}
	if armed.Load() {
		t.Fatal("the logger was not called: the test proves nothing")
	}
	if st := h.f.Status(); st.Term != 2 || st.State != StateFenced {
		t.Errorf("after the NewTerm: %+v, want Fenced at term 2", st)
	}
	if _, err := h.f.Truncate(2, &logpos.EntryID{Term: 0, Offset: -1}); err != nil {
		t.Errorf("the leader of term 2 truncating: %v", err)
	}
}

// TestObserverPanicOnTheFirstEntry: an observer that panics on the step a
// stream's first entry takes (moving a Fenced follower to Follower) ends
// the stream, not the process; the entry, which the log took before the
// move, is the head, and the leader's next stream finds it there (a
// duplicate).
func TestObserverPanicOnTheFirstEntry(t *testing.T) {
	obs := &panicOn{event: EventFirstEntry.String()}
	h := newHarness(t, Config{Observer: obs})
	h.newTerm(1)
	obs.armed.Store(true)
	a := confAttach(t, h.f)
	a.send(t, entryAppend(1, 0, -1, "k", "v"))
	select {
	case err := <-a.res:
		if !errors.Is(err, errEntryPanicked) {
			t.Fatalf("the stream: %v, want the observer's panic", err)
		}
	case o := <-a.s.acks:
		t.Fatalf("ack %d: the stream went on after the move panicked", o)
	}
	if st := h.f.Status(); st.Head != 0 {
		t.Fatalf("head %d once the first entry's move panicked, want 0 (the log holds it)", st.Head)
	}
	b := confAttach(t, h.f)
	for o := int64(0); o <= 1; o++ {
		b.send(t, entryAppend(1, o, -1, "k", "v"))
		if got := b.ack(t); got != o {
			t.Fatalf("the next stream: ack %d, want %d", got, o)
		}
	}
	if err := b.finish(t); err != nil {
		t.Fatal(err)
	}
}

// TestObserverPanicInAControlOperationsRepair: the repair that starts a
// control operation adopts a higher term the store holds, fencing through
// the machine; an observer that panics there leaves neither the
// lifecycle lock nor the applier's held (else the test hangs), and the
// next operation runs at the adopted term.
func TestObserverPanicInAControlOperationsRepair(t *testing.T) {
	obs := &panicOn{event: EventNewTerm.String()}
	h := newHarness(t, Config{Observer: obs})
	h.newTermStoredButFailed()
	obs.armed.Store(true)
	if p := callRecovering(func() { _, _ = h.f.Truncate(1, &logpos.EntryID{Offset: -1}) }); p == nil {
		t.Fatal("the observer did not panic")
	}
	// The lifecycle lock is free again (the applier's own repair may
	// hold it for a moment).
	h.f.acquire()
	h.f.release()
	if _, err := h.f.Truncate(2, &logpos.EntryID{Offset: -1}); err != nil {
		t.Fatalf("Truncate at the adopted term: %v", err)
	}
}
