package wal

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// TestRollOverAsksForAWorkerRound: a roll-over that seals a segment
// whose bytes an earlier sync round already covered (entries synced one
// by one, as a follower's sync loop does) closes it as synced itself, and
// no later round does: the roll must wake the worker, or the segment gets
// no index (and no next segment is prepared) until Close.
func TestRollOverAsksForAWorkerRound(t *testing.T) {
	held := preparingGate()
	held.armed.Store(true)
	l := mustOpen(t, "wal", memOpts(gatedMem(held)))
	mustAppend(t, l, entry(0, 0))
	mustSync(t, l)
	l.kickWorker()
	<-held.at // the worker is held preparing the next segment
	drainKick(l)
	o := logpos.Offset(1)
	for len(segFirsts(l)) < 2 {
		mustAppend(t, l, entry(o, 0))
		if len(segFirsts(l)) < 2 {
			mustSync(t, l) // the segment is synced before it rolls
		}
		o++
	}
	l.mu.Lock()
	sealed := l.mu.segs[0]
	synced, open := sealed.synced, sealed.file != nil
	l.mu.Unlock()
	if !synced || open {
		t.Fatalf("the sealed segment: synced %v, write handle open %v; the test needs it synced at the roll", synced, open)
	}
	if len(l.kick) != 1 {
		t.Errorf("the roll-over that sealed a synced segment did not wake the worker: it would index it only at Close")
	}
	close(held.proceed)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSyncRoundThatClosesSegmentsWakesTheWorker: a sync round that
// completes a sealed segment (marks it synced and closes its handle)
// wakes the worker to write its index.
func TestSyncRoundThatClosesSegmentsWakesTheWorker(t *testing.T) {
	held := preparingGate()
	held.armed.Store(true)
	l := mustOpen(t, "wal", memOpts(gatedMem(held)))
	mustAppend(t, l, entry(0, 0))
	l.kickWorker()
	<-held.at // the worker is held preparing the next segment
	for o := logpos.Offset(1); len(segFirsts(l)) < 2; o++ {
		mustAppend(t, l, entry(o, 0)) // no sync: the segment rolls unsynced
	}
	drainKick(l) // the roll's
	l.mu.Lock()
	synced := l.mu.segs[0].synced
	l.mu.Unlock()
	if synced {
		t.Fatal("the sealed segment is synced before the round: the test proves nothing")
	}
	mustSync(t, l)
	l.mu.Lock()
	synced = l.mu.segs[0].synced
	l.mu.Unlock()
	if !synced {
		t.Fatal("the round did not mark the sealed segment synced")
	}
	if len(l.kick) != 1 {
		t.Errorf("the round that completed a sealed segment did not wake the worker: it would index it only at Close")
	}
	close(held.proceed)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSyncRoundFailsWhenTheLogFailsUnderIt: a directory fsync that fails
// while a sync round runs (here the worker's, after writing an index)
// may have lost the name of the segment the round is syncing; the
// round's own directory fsync may then succeed without writing it (Linux
// reports a writeback error once). The round must not report the
// segment's entries durable: the log failed.
func TestSyncRoundFailsWhenTheLogFailsUnderIt(t *testing.T) {
	indexHeld := newGate(func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, indexSuffix+tmpSuffix)
	})
	roundHeld := newGate(func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileSyncData })
	var dirFault atomic.Bool
	dirFailed := make(chan struct{})
	fs := errorfs.Wrap(gatedMem(indexHeld, roundHeld), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync && op.Path == "wal" && dirFault.CompareAndSwap(true, false) {
			close(dirFailed)
			return errorfs.ErrInjected
		}
		return nil
	}))
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	mustAppend(t, l, entry(0, 0))
	mustSync(t, l)
	workerRound(l) // the next segment is prepared
	indexHeld.armed.Store(true)
	o := logpos.Offset(1)
	for len(segFirsts(l)) < 2 {
		mustAppend(t, l, entry(o, 0))
		if len(segFirsts(l)) < 2 {
			mustSync(t, l)
		}
		o++
	}
	// The roll-over named segment 2 (its name not durable yet) and woke
	// the worker, which is held writing segment 1's index.
	<-indexHeld.at
	roundHeld.armed.Store(true)
	type result struct {
		d   logpos.Offset
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, err := l.Sync(context.Background())
		done <- result{d, err}
	}()
	<-roundHeld.at // the round took the pending bytes and is fsyncing segment 2
	dirFault.Store(true)
	close(indexHeld.proceed)
	<-dirFailed // the worker's directory fsync failed
	// The worker holds dirMu until it has recorded the failure.
	l.dirMu.Lock()
	//lint:ignore SA2001 an empty critical section: it waits for the holder
	l.dirMu.Unlock()
	close(roundHeld.proceed)
	r := <-done
	if !errors.Is(r.err, ErrFailed) {
		t.Errorf("Sync = %d, %v after a directory fsync failed under it; want ErrFailed", r.d, r.err)
	}
	if d := l.LastDurable().Offset; d >= o-1 {
		t.Errorf("LastDurable = %d: entries of a segment whose name a failed directory fsync may have lost reported durable", d)
	}
}

// TestSyncWithNothingToSyncDoesNotWait: a caller whose entries are all
// durable gets the durable offset at once, while another holds the sync
// slot, whatever its context says: ctx bounds only a wait it needs.
func TestSyncWithNothingToSyncDoesNotWait(t *testing.T) {
	l := mustOpen(t, "wal", memOpts(vfs.NewMem()))
	defer l.Close()
	mustAppend(t, l, entries(0, 4, 0)...)
	mustSync(t, l)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.syncSem <- struct{}{} // as a running sync (or TruncateLog) would
	d, err := l.Sync(ctx)
	<-l.syncSem
	if err != nil || d != 4 {
		t.Fatalf("Sync with everything durable, the slot held and a cancelled context = %d, %v; want 4, nil", d, err)
	}
}

// TestFirstFailureStaysTheLogs: once the log failed, a later failure met
// by an operation already under way does not replace it: every call
// reports the failure that failed the log.
func TestFirstFailureStaysTheLogs(t *testing.T) {
	errData := errors.New("injected: data fsync")
	roundHeld := newGate(func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileSyncData })
	var dirFault, dataFault atomic.Bool
	// The gate is passed first: the data fsync held there fails once let go.
	faulty := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if dirFault.Load() && op.Kind == errorfs.OpFileSync && op.Path == "wal" {
			return errorfs.ErrInjected
		}
		if dataFault.Load() && op.Kind == errorfs.OpFileSyncData {
			return errData
		}
		return nil
	}))
	l := mustOpen(t, "wal", memOpts(gated(faulty, roundHeld)))
	defer l.Close()
	mustAppend(t, l, entries(0, 4, 0)...)
	mustSync(t, l)
	mustAppend(t, l, entry(5, 0))
	roundHeld.armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := l.Sync(context.Background())
		done <- err
	}()
	<-roundHeld.at // the round is at its data fsync
	dirFault.Store(true)
	if err := l.syncDir(); !errors.Is(err, errorfs.ErrInjected) { // as the worker's would
		t.Fatalf("syncDir: %v", err)
	}
	dirFault.Store(false)
	dataFault.Store(true)
	close(roundHeld.proceed)
	err := <-done
	dataFault.Store(false)
	for what, err := range map[string]error{"the round under way": err, "a later Sync": func() error { _, err := l.Sync(context.Background()); return err }()} {
		if !errors.Is(err, ErrFailed) || !errors.Is(err, errorfs.ErrInjected) || errors.Is(err, errData) {
			t.Errorf("%s: %v; want the first failure (the directory fsync's)", what, err)
		}
	}
}

// TestAppendWaitingBehindAFailingRoundIsRefused: an append that rolls
// to a new segment while a sync round holds the segment files (here at
// its data fsync, which then fails) waits for the round; once the round
// has failed the log, the append is refused: its pending bytes are not
// written to a file whose state is unknown, and no segment is started.
func TestAppendWaitingBehindAFailingRoundIsRefused(t *testing.T) {
	roundHeld := newGate(func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileSyncData })
	dataFault := &faults{match: func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileSyncData }}
	// The gate is passed first: the data fsync held there fails once let go.
	l := mustOpen(t, "wal", memOpts(gated(dataFault.wrap(vfs.NewMem()), roundHeld)))
	defer l.Close()
	mustAppend(t, l, entry(0, 0))
	mustSync(t, l)
	workerRound(l) // the next segment is prepared
	mustAppend(t, l, entry(1, 0))
	roundHeld.armed.Store(true)
	synced := make(chan error, 1)
	go func() {
		_, err := l.Sync(context.Background())
		synced <- err
	}()
	<-roundHeld.at                // the round took entry 1's bytes and holds the files
	mustAppend(t, l, entry(2, 0)) // pending: written by the next flush
	// big does not fit the rest of the first segment: its append rolls,
	// and the roll first waits for the round to write entry 2.
	big := sized(3, 470)
	appended := make(chan error, 1)
	go func() { appended <- l.AppendAsync(big) }()
	for !goroutineIn(".(*Log).rollSegment(", "Mutex).Lock") {
		runtime.Gosched()
	}
	dataFault.armed.Store(true)
	close(roundHeld.proceed)
	if err := <-synced; !errors.Is(err, ErrFailed) {
		t.Fatalf("Sync with its data fsync failing: %v; want ErrFailed", err)
	}
	err := <-appended
	dataFault.armed.Store(false)
	if !errors.Is(err, ErrFailed) {
		t.Errorf("AppendAsync waiting behind the round that failed the log = %v; want ErrFailed", err)
	}
	if got := l.LastAppended().Offset; got != 2 {
		t.Errorf("LastAppended = %d after the refused append; want 2", got)
	}
	if got := segFirsts(l); len(got) != 1 {
		t.Errorf("segments %v: the refused append started a segment", got)
	}
}
