package follower

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

var errInjected = errors.New("injected I/O error")

// faultyFS is the real file system with a switchable fault: while a rule
// is set, every write or sync under a path containing its fragment fails
// (or, with failSyncs, every sync: the writes before it do reach the
// file, as when a disk fails a flush).
type faultyFS struct {
	*errorfs.FS
	rule      atomic.Pointer[string]
	syncsOnly atomic.Bool
	match     atomic.Pointer[func(errorfs.Op) bool]
}

func newFaultyFS() *faultyFS {
	f := &faultyFS{}
	f.FS = errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if m := f.match.Load(); m != nil && (*m)(op) {
			return errInjected
		}
		frag := f.rule.Load()
		if frag == nil || !strings.Contains(op.Path, *frag) {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return errInjected
		}
		if !f.syncsOnly.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return errInjected
		}
		return nil
	}))
	return f
}

func (f *faultyFS) fail(fragment string) { f.syncsOnly.Store(false); f.rule.Store(&fragment) }
func (f *faultyFS) failSyncs(fragment string) {
	f.syncsOnly.Store(true)
	f.rule.Store(&fragment)
}

// failMatching fails every operation match reports, until heal.
func (f *faultyFS) failMatching(match func(errorfs.Op) bool) { f.match.Store(&match) }
func (f *faultyFS) heal()                                    { f.rule.Store(nil); f.match.Store(nil) }

// harness is a follower on a faulty file system with helpers to drive it.
type harness struct {
	t   *testing.T
	fs  *faultyFS
	dir string
	f   *Follower
	cfg Config
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, fs: newFaultyFS(), dir: t.TempDir()}
	cfg.Dir, cfg.FS = h.dir, h.fs
	if cfg.ApplyRetryMin == 0 {
		cfg.ApplyRetryMin, cfg.ApplyRetryMax = time.Millisecond, 10*time.Millisecond
	}
	h.cfg = cfg
	h.open()
	t.Cleanup(func() { _ = h.f.Close() })
	return h
}

func (h *harness) open() {
	h.t.Helper()
	f, err := Open(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.f = f
}

func (h *harness) newTerm(term logpos.Term) {
	h.t.Helper()
	if _, err := h.f.NewTerm(term, TermOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// newTermStoredButFailed fences the follower at term 1, then fails
// NewTerm(2) on the store's sync, after the term's write reached the disk:
// the follower is at term 1, the store holds term 2, and its failure is
// noted for the next repair. The disk is healed on return.
func (h *harness) newTermStoredButFailed() {
	h.t.Helper()
	h.newTerm(1)
	h.fs.failSyncs("/store/")
	if _, err := h.f.NewTerm(2, TermOptions{}); !errors.Is(err, ErrUnavailable) {
		h.t.Fatalf("NewTerm with failing store syncs: %v", err)
	}
	h.fs.heal()
}

// replicate attaches a stream, sends entries from..to of term with
// per-entry acks and the given commit offset, waits for their acks, and
// returns the stream still attached, with a channel for its result.
func (h *harness) replicate(term logpos.Term, from, to, commit int64) (*fakeStream, <-chan error) {
	h.t.Helper()
	s := newFakeStream()
	res := make(chan error, 1)
	go func() {
		res <- h.f.Replicate(s)
		s.cancel()
	}()
	for o := from; o <= to; o++ {
		select {
		case s.in <- &replicationpb.Append{Term: int64(term), CommitOffset: commit,
			Entry: &replicationpb.LogEntry{Term: int64(term), Offset: o, Value: kvPut("k", "v")}}:
		case err := <-res:
			h.t.Fatalf("stream ended: %v", err)
		}
	}
	for o := from; o <= to; o++ {
		select {
		case got := <-s.acks:
			if got != o {
				h.t.Fatalf("ack %d, want %d", got, o)
			}
		case err := <-res:
			h.t.Fatalf("stream ended: %v", err)
		}
	}
	return s, res
}

// finish half-closes a stream and returns its result.
func finish(t testing.TB, s *fakeStream, res <-chan error) error {
	t.Helper()
	close(s.in)
	return within(t, res)
}

func TestNewTermPersistFailureChangesNothing(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	h.fs.fail("/store/")
	_, err := h.f.NewTerm(2, TermOptions{})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, store.ErrFailed) || !errors.Is(err, errInjected) {
		t.Fatalf("NewTerm with a failing store: %v, want ErrUnavailable wrapping the store's and the disk's errors", err)
	}
	if st := h.f.Status(); st.Term != 1 || st.State != StateFenced {
		t.Fatalf("after a failed NewTerm: %+v", st)
	}
	h.fs.heal()
	// The follower stays usable: the next operation reopens the store.
	h.newTerm(2)
	if st := h.f.Status(); st.Term != 2 || st.State != StateFenced {
		t.Fatalf("after NewTerm: %+v", st)
	}
	_ = h.f.Close()
	h.open()
	if st := h.f.Status(); st.Term != 2 {
		t.Fatalf("term after reopen: %d", st.Term)
	}
}

// TestChecksComeBeforeAFailedRepair: while a store that failed cannot be
// reopened, every operation still runs its checks in their order, and
// fails with ErrUnavailable only once they all pass (SPEC §2: the first
// failing check decides the error). Nothing changes either way, and the
// follower works again once the store does.
func TestChecksComeBeforeAFailedRepair(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(2)
	h.fs.fail("/store/")
	if _, err := h.f.NewTerm(3, TermOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NewTerm with a failing store: %v", err)
	}
	otherTerm := confSnap{chunkTerm: 7, storeTerm: 7, commit: 4, options: confSnapOpts}.build(t)
	newTerm := func(term logpos.Term) func() error {
		return func() error { _, err := h.f.NewTerm(term, TermOptions{}); return err }
	}
	truncate := func(term logpos.Term, head *logpos.EntryID) func() error {
		return func() error { _, err := h.f.Truncate(term, head); return err }
	}
	install := func(s SnapshotStream) func() error {
		return func() error { _, err := h.f.InstallSnapshot(s); return err }
	}
	replicate := func() error {
		s := newFakeStream()
		defer s.cancel()
		return h.f.Replicate(s)
	}
	before := h.f.Status()
	for _, c := range []struct {
		name string
		do   func() error
		want error
	}{
		{"NewTerm(-1)", newTerm(-1), ErrInvalidArgument},
		{"NewTerm below the term", newTerm(1), ErrInvalidTerm},
		{"NewTerm", newTerm(2), ErrUnavailable},
		{"Truncate without a head", truncate(2, nil), ErrInvalidArgument},
		{"Truncate at another term", truncate(3, &logpos.EntryID{Offset: -1}), ErrInvalidTerm},
		{"Truncate beyond the head", truncate(2, &logpos.EntryID{Offset: 9}), ErrInvalidArgument},
		{"Truncate", truncate(2, &logpos.EntryID{Offset: -1}), ErrUnavailable},
		{"empty install", install(&gatedStream{}), ErrInvalidArgument},
		{"install at another term", install(&gatedStream{chunks: cloneChunks(otherTerm)}), ErrInvalidTerm},
		{"Replicate", replicate, ErrUnavailable},
		{"Delete(-1)", func() error { return h.f.Delete(-1) }, ErrInvalidArgument},
	} {
		if err := c.do(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if st := h.f.Status(); st != before {
			t.Errorf("%s changed the follower: %+v, was %+v", c.name, st, before)
		}
	}
	h.fs.heal()
	h.newTerm(3)
}

// TestFailedNewTermStillAbandonsTheInstall: NewTerm abandons the install
// under way before it persists the term (SPEC §2.1), so an install it
// abandoned fails with ErrInvalidTerm even when persisting the term then
// failed, and nothing of the snapshot is installed.
func TestFailedNewTermStillAbandonsTheInstall(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(2)
	chunks := confSnap{chunkTerm: 2, storeTerm: 2, commit: 6, options: confSnapOpts}.build(t)
	gate := make(chan struct{})
	res := make(chan error, 1)
	go func() {
		_, err := h.f.InstallSnapshot(&gatedStream{chunks: chunks, gate: gate, gateAt: 1})
		res <- err
	}()
	waitInstallsStarted(t, h.f, 1)
	h.fs.fail("db-000001") // the live store, not the one being staged
	if _, err := h.f.NewTerm(3, TermOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NewTerm with a failing store: %v", err)
	}
	h.fs.heal()
	close(gate)
	if err := within(t, res); !errors.Is(err, ErrInvalidTerm) {
		t.Fatalf("the install NewTerm abandoned: %v, want ErrInvalidTerm", err)
	}
	if st := h.f.Status(); st.Term != 2 || st.State != StateFenced || st.Commit != -1 {
		t.Fatalf("after the abandoned install: %+v", st)
	}
}

// TestNewTermSyncFailureTakesEffectLater: NewTerm fails because the
// store's sync does, but the term's write reached the disk. When the store
// is reopened, the term it holds stands (a restart would read it), so the
// follower is fenced at it, as that NewTerm would have left it: never a
// Follower of a term no leader truncated it in.
func TestNewTermSyncFailureTakesEffectLater(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	if _, err := h.f.Truncate(1, &logpos.EntryID{Term: 0, Offset: -1}); err != nil {
		t.Fatal(err)
	}
	s, res := h.replicate(1, 0, 2, 2)
	h.fs.failSyncs("/store/")
	_, err := h.f.NewTerm(2, TermOptions{KeySorting: store.KeySortingNatural})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NewTerm with failing store syncs: %v", err)
	}
	if err := within(t, res); !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("the stream ended with %v", err)
	}
	s.cancel()
	if st := h.f.Status(); st.Term != 1 || st.State != StateFollower {
		t.Fatalf("after the failed NewTerm: %+v", st)
	}
	h.fs.heal()
	// The next control operation reopens the store, which holds term 2.
	if _, err := h.f.Truncate(1, &logpos.EntryID{Term: 1, Offset: 2}); !errors.Is(err, ErrInvalidTerm) {
		t.Fatalf("Truncate of term 1 once the store is back: %v", err)
	}
	if st := h.f.Status(); st.Term != 2 || st.State != StateFenced || st.Head != 2 {
		t.Fatalf("once the store is back: %+v, want term 2, Fenced, head 2", st)
	}
	if got := h.f.store().TermOptions(); got.KeySorting != store.KeySortingNatural {
		t.Fatalf("term options %+v, want those of the NewTerm", got)
	}
	// The leader of the new term goes on.
	if _, err := h.f.Truncate(2, &logpos.EntryID{Term: 1, Offset: 2}); err != nil {
		t.Fatal(err)
	}
	_ = h.f.Close()
	h.open()
	if st := h.f.Status(); st.Term != 2 || st.State != StateFenced {
		t.Fatalf("after reopen: %+v", st)
	}
}

// TestApplyStoreFailureRepairs: the store failing under the applier is
// reopened by the applier's own retries, without new traffic. (Applied
// batches are not synced one by one; the sync before each trim is what
// meets the failing disk.)
func TestApplyStoreFailureRepairs(t *testing.T) {
	h := newHarness(t, Config{TrimEvery: 1})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 2, 0)
	if err := h.f.WaitApplied(bounded(t), 0); err != nil {
		t.Fatal(err)
	}
	h.fs.fail("/store/")
	s.in <- &replicationpb.Append{Term: 1, CommitOffset: 2}
	waitApplyFailures(t, h.f, 1)
	h.fs.heal()
	if err := h.f.WaitApplied(bounded(t), 2); err != nil {
		t.Fatal(err)
	}
	if err := finish(t, s, res); err != nil {
		t.Fatal(err)
	}
	if v, err := h.f.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("Get after repair: %q %v", v, err)
	}
}

// TestApplierRepairsAFailedStoreOnItsOwn: a store that failed (under a
// NewTerm, here) and that no control operation repairs is reopened by the
// applier, at its first retry once the disk is healthy, not tried again
// and again as it is; it holds the term of the failed NewTerm, which the
// follower adopts.
func TestApplierRepairsAFailedStoreOnItsOwn(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTermStoredButFailed()
	h.f.applier.kick() // as a sync round or a commit advertisement does
	for {
		changed := h.f.applier.changed()
		if !h.f.storeFailed.Load() {
			break
		}
		if n := h.f.applier.failures.Load(); n > 2 {
			t.Fatalf("%d failed attempts on a healthy disk: the store was not reopened", n)
		}
		<-changed
	}
	h.f.acquire() // the repair has ended once the lifecycle lock is free
	h.f.release()
	if st := h.f.Status(); st.Term != 2 || st.State != StateFenced {
		t.Fatalf("after the applier's repair: %+v, want Fenced at the stored term 2", st)
	}
}

// waitApplyFailures waits until the applier of f has failed n attempts
// or more.
func waitApplyFailures(t *testing.T, f *Follower, n int64) {
	t.Helper()
	ctx := bounded(t)
	for {
		changed := f.applier.changed()
		if f.applier.failures.Load() >= n {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("the applier failed %d attempts, want %d or more", f.applier.failures.Load(), n)
		}
	}
}

// sendAcked sends entries 0..last of term 1 on a, each of a hundred
// bytes or so (a few to a segment of 1 KiB), and reads their acks.
func sendAcked(t *testing.T, a *confStream, last int64) {
	t.Helper()
	for o := int64(0); o <= last; o++ {
		a.send(t, entryAppend(1, o, -1, fmt.Sprintf("k%d", o), strings.Repeat("v", 100)))
	}
	for o := int64(0); o <= last; o++ {
		if got := a.ack(t); got != o {
			t.Fatalf("ack %d, want %d", got, o)
		}
	}
}

// TestLogFailedByATrimIsReopened: the applier trims the log once the
// store's commit is durable; here the sync of the log's directory after
// a segment's removal fails, which fails the log. Once the disk is
// healthy, the next control operation reopens the log: NewTerm, then the
// Truncate to its head, succeed.
func TestLogFailedByATrimIsReopened(t *testing.T) {
	h := newHarness(t, Config{SegmentSize: 1024, TrimEvery: 1})
	walDir := filepath.Join(h.dir, "wal")
	var removed, fired atomic.Bool
	h.fs.failMatching(func(op errorfs.Op) bool {
		switch {
		case op.Kind == errorfs.OpRemove && strings.HasSuffix(op.Path, ".seg"):
			removed.Store(true)
		case op.Kind == errorfs.OpFileSync && removed.Load() && filepath.Clean(op.Path) == walDir:
			fired.Store(true)
			return true
		}
		return false
	})
	h.newTerm(1)
	a := confAttach(t, h.f)
	const last = 40
	sendAcked(t, a, last)
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: last}) // applied, and trimmed, with no append after
	waitApplied(t, h.f, last)
	a.s.cancel() // the leader goes away: no sync round meets the failed log
	a.end(t)
	if !fired.Load() {
		t.Fatal("no trim removed a segment")
	}
	h.fs.heal()
	head, err := h.f.NewTerm(2, TermOptions{})
	if err != nil {
		t.Fatalf("NewTerm once the disk is healthy: %v", err)
	}
	if head.Offset != last {
		t.Fatalf("NewTerm: head %v, want offset %d", head, last)
	}
	if _, err := h.f.Truncate(2, &head); err != nil {
		t.Fatalf("Truncate to NewTerm's head once the disk is healthy: %v", err)
	}
}

func TestTruncateWALFailureStaysFenced(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 5, -1)
	if err := finish(t, s, res); err != nil {
		t.Fatal(err)
	}
	h.newTerm(2)
	h.fs.fail("/wal/")
	_, err := h.f.Truncate(2, &logpos.EntryID{Term: 1, Offset: 2})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Truncate with a failing log: %v", err)
	}
	if st := h.f.Status(); st.State != StateFenced || st.Head != 5 {
		t.Fatalf("after a failed Truncate: %+v", st)
	}
	h.fs.heal()
	// The follower stays usable: the next Truncate reopens the log.
	head, err := h.f.Truncate(2, &logpos.EntryID{Term: 1, Offset: 2})
	if err != nil || head != (logpos.EntryID{Term: 2, Offset: 2}) {
		t.Fatalf("Truncate after healing: %v %v", head, err)
	}
	if st := h.f.Status(); st.State != StateFollower || st.Head != 2 {
		t.Fatalf("after Truncate: %+v", st)
	}
}

func TestStreamWALFailureKeepsFollowerUsable(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 2, -1)
	h.fs.fail("/wal/")
	s.in <- &replicationpb.Append{Term: 1, CommitOffset: -1, Entry: &replicationpb.LogEntry{Term: 1, Offset: 3}}
	err := within(t, res)
	s.cancel()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stream on a failing log: %v", err)
	}
	select {
	case o := <-s.acks:
		t.Fatalf("offset %d acknowledged on a failing log", o)
	default:
	}
	h.fs.heal()
	// A new stream resumes from the last durable entry.
	s2, res2 := h.replicate(1, 3, 4, 4)
	if err := finish(t, s2, res2); err != nil {
		t.Fatal(err)
	}
	if err := h.f.WaitApplied(bounded(t), 4); err != nil {
		t.Fatal(err)
	}
}

// TestReopenedLogGivesTheApplierANewReader: the applier's reader of a
// log that failed is dropped when the log is reopened, so applying
// resumes on the reopened log without a failed attempt (one on the closed
// log would be counted, logged and retried after a backoff).
func TestReopenedLogGivesTheApplierANewReader(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 4, 2)
	if err := h.f.WaitApplied(bounded(t), 2); err != nil {
		t.Fatal(err)
	}
	h.fs.fail("/wal/")
	s.in <- &replicationpb.Append{Term: 1, CommitOffset: 2, Entry: &replicationpb.LogEntry{Term: 1, Offset: 5}}
	if err := within(t, res); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stream on a failing log: %v", err)
	}
	s.cancel()
	h.fs.heal()
	s2, res2 := h.replicate(1, 5, 6, 6)
	if err := finish(t, s2, res2); err != nil {
		t.Fatal(err)
	}
	if err := h.f.WaitApplied(bounded(t), 6); err != nil {
		t.Fatal(err)
	}
	if n := h.f.Stats().ApplyErrors; n != 0 {
		t.Errorf("%d failed apply attempts after the log was reopened, want 0", n)
	}
}

func TestStreamSendFailure(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s := newFakeStream()
	s.sendErr = errInjected
	res := make(chan error, 1)
	go func() {
		res <- h.f.Replicate(s)
		s.cancel()
	}()
	s.in <- &replicationpb.Append{Term: 1, CommitOffset: -1, Entry: &replicationpb.LogEntry{Term: 1, Offset: 0}}
	if err := within(t, res); !errors.Is(err, errInjected) {
		t.Fatalf("stream whose sends fail: %v", err)
	}
	s2, res2 := h.replicate(1, 1, 1, -1)
	if err := finish(t, s2, res2); err != nil {
		t.Fatal(err)
	}
}

func TestInstallIOFailureLeavesEverything(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(3)
	s, res := h.replicate(3, 0, 3, 3)
	if err := finish(t, s, res); err != nil {
		t.Fatal(err)
	}
	if err := h.f.WaitApplied(bounded(t), 3); err != nil {
		t.Fatal(err)
	}
	env := &scriptEnv{t: t}
	snap := env.snapshotStream(args{"term": "3", "commit": "20"})
	h.fs.fail("/store/")
	_, err := h.f.InstallSnapshot(snap)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("install on a failing disk: %v", err)
	}
	h.fs.heal()
	if st := h.f.Status(); st.Term != 3 || st.Head != 3 || st.Commit != 3 || st.State != StateFollower {
		t.Fatalf("after a failed install: %+v", st)
	}
	if _, err := h.f.Get([]byte("snap20")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a key of the failed snapshot: %v", err)
	}
	// The follower is still usable, and a later install succeeds.
	if off, err := h.f.InstallSnapshot(env.snapshotStream(args{"term": "3", "commit": "20"})); err != nil || off != 20 {
		t.Fatalf("install after healing: %d %v", off, err)
	}
}

// flakyMachine is the KV state machine failing while fail is set.
type flakyMachine struct {
	fail     atomic.Bool
	attempts atomic.Int64
}

func (m *flakyMachine) Apply(e logpos.Entry, w *store.Writer) error {
	m.attempts.Add(1)
	if m.fail.Load() && e.Offset == 2 {
		return errInjected
	}
	return store.KV{}.Apply(e, w)
}

// TestApplyFailureRetriesWithoutTraffic: the commit never passes a failing
// entry, and once it applies again the applier catches up on its own.
func TestApplyFailureRetriesWithoutTraffic(t *testing.T) {
	sm := &flakyMachine{}
	sm.fail.Store(true)
	h := newHarness(t, Config{StateMachine: sm})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 4, 4)
	if err := finish(t, s, res); err != nil {
		t.Fatal(err)
	}
	// Wait until the applier has failed on entry 2 a few times.
	waitApplyFailures(t, h.f, 3)
	if c := h.f.Status().Commit; c != 1 {
		t.Fatalf("commit %d passed or fell short of the failing entry", c)
	}
	sm.fail.Store(false)
	if err := h.f.WaitApplied(bounded(t), 4); err != nil {
		t.Fatal(err)
	}
	if c := h.f.Status().Commit; c != 4 {
		t.Fatalf("commit %d after recovery", c)
	}
}

// failingOnceArmed is the KV state machine failing every entry once armed.
type failingOnceArmed struct{ armed atomic.Bool }

func (m *failingOnceArmed) Apply(e logpos.Entry, w *store.Writer) error {
	if m.armed.Load() {
		return errInjected
	}
	return store.KV{}.Apply(e, w)
}

// TestTruncateBelowTheCommitOfAStoreBehind: a store that failed and came
// back older (here at commit 2, while entries up to 5 had been applied)
// leaves the commit at 5 until the applier applies them again (it keeps
// failing here). A Truncate below 5 is refused with ErrInvalidArgument
// (SPEC §6.3: the commit never decreases), although the store holds only
// up to 2; the log keeps its entries.
func TestTruncateBelowTheCommitOfAStoreBehind(t *testing.T) {
	sm := &failingOnceArmed{}
	f := openStoreBehind(t, Config{StateMachine: sm, ApplyRetryMin: time.Hour, ApplyRetryMax: time.Hour}, &sm.armed)
	if c := f.store().Commit().Offset; c != 2 {
		t.Fatalf("the reopened store has commit %d, want 2", c)
	}
	if _, err := f.Truncate(1, &logpos.EntryID{Term: 1, Offset: 3}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Truncate to 3 with commit 5: %v, want ErrInvalidArgument", err)
	}
	if st := f.Status(); st.State != StateFenced || st.Commit != 5 || st.Head != 5 {
		t.Fatalf("after the refused Truncate: %+v, want Fenced with head and commit 5", st)
	}
}

// A stream's transport fails while its sync loop is in an fsync that then
// fails too, and the disk goes on failing syncs: the stream was detached
// before the log failed, yet the head is what the log synced, also after
// a NewTerm whose repair fails; and the log's failure is noted all the
// same, so once the disk heals the next control operation reopens the
// log instead of failing on it.
func TestWALFailureAfterTransportFailure(t *testing.T) {
	var hold, failing atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.Contains(op.Path, "/wal/") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			// The log's segment, not the one prepared in the background.
			if strings.HasSuffix(op.Path, ".seg") && hold.CompareAndSwap(true, false) {
				close(entered)
				<-release
				failing.Store(true)
				return errInjected
			}
			if failing.Load() {
				return errInjected
			}
		}
		return nil
	}))
	f, err := Open(Config{Dir: t.TempDir(), FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	s := newFakeStream()
	res := make(chan error, 1)
	go func() { res <- f.Replicate(s) }()
	s.in <- entryAppend(1, 0, -1, "k", "0")
	within(t, s.acks)
	hold.Store(true)
	s.in <- entryAppend(1, 1, -1, "k", "1")
	<-entered // the sync loop is in the fsync covering entry 1
	f.acquire()
	r := f.stream
	f.release()
	s.cancel() // the transport fails meanwhile
	if err := within(t, res); !errors.Is(err, context.Canceled) {
		t.Fatalf("stream whose transport failed: %v", err)
	}
	close(release) // the fsync fails
	<-r.syncDone
	if st := f.Status(); st.Head != 0 {
		t.Errorf("status after the failed fsync: %+v, want head 0 (entry 1 was never durable)", st)
	}
	if _, err := f.NewTerm(2, TermOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NewTerm on a failing disk: %v, want ErrUnavailable", err)
	}
	if st := f.Status(); st.Head != 0 {
		t.Errorf("status after a failed repair: %+v, want head 0 (entry 1 was never durable)", st)
	}
	failing.Store(false)
	if _, err := f.NewTerm(2, TermOptions{}); err != nil {
		t.Fatalf("NewTerm after the log failed under an ended stream: %v", err)
	}
	if st := f.Status(); st.Term != 2 || st.State != StateFenced || st.Head != 0 {
		t.Fatalf("after NewTerm: %+v, want term 2, Fenced, head 0", st)
	}
}

// markerFailure lets a store install rename its new marker into place,
// then fails the fsync of the store directory and the creation of the
// marker that would undo the swap: Install fails with store.ErrFailed,
// though the marker on disk names the snapshot's database.
type markerFailure struct {
	armed atomic.Bool
	phase atomic.Int32
	// failClear, while set, fails the log's clears (and so its reset).
	failClear atomic.Bool
}

func (m *markerFailure) String() string { return "marker failure" }

func (m *markerFailure) MaybeError(op errorfs.Op) error {
	if m.failClear.Load() && strings.HasSuffix(op.Path, "/wal/"+clearMarkerName) {
		return errorfs.ErrInjected
	}
	if !m.armed.Load() {
		return nil
	}
	switch m.phase.Load() {
	case 0:
		if op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, "/store/CURRENT.tmp") {
			m.phase.Store(1)
		}
	case 1:
		if op.Kind == errorfs.OpFileSync && op.Path == mdlDir+"/store" {
			m.phase.Store(2)
			return errorfs.ErrInjected
		}
	case 2:
		if op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, "/store/CURRENT.tmp") {
			m.phase.Store(3)
			m.armed.Store(false)
			return errorfs.ErrInjected
		}
	}
	return nil
}

// An install of a snapshot below the commit fails after its swap reached
// the disk: the next control operation reopens the store, which is the
// snapshot's, and the follower is the snapshot's too: commit and head at
// the snapshot point, a leader can truncate to the head NewTerm returns,
// and reads work.
func TestInstallFailedAfterSwapBelowCommit(t *testing.T) {
	inj := &markerFailure{}
	f, err := Open(Config{Dir: mdlDir, FS: errorfs.Wrap(vfs.NewMem(), inj), SegmentSize: 512, TrimEvery: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	s := &mdlStream{fakeStream: newFakeStream()}
	res := make(chan error, 1)
	go func() { res <- f.Replicate(s); s.cancel() }()
	for o := logpos.Offset(0); o <= 30; o++ {
		s.in <- mdlMakeEntry(1, o, int(o)).toAppend(1, o, o, true)
	}
	close(s.in)
	if err := within(t, res); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitApplied(bounded(t), 30); err != nil {
		t.Fatal(err)
	}
	// The floor a store that failed and came back older leaves, once
	// applied again: the snapshot's commit replaces it too.
	f.commitFloor.Store(30)
	sn := mdlBuildSnapshot(t, 1, 1, 14)
	inj.armed.Store(true)
	if _, err := f.InstallSnapshot(&fakeSnapshotStream{chunks: sn.chunksFor(1, mangleNone, 0)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("install whose store failed: %v", err)
	}
	if inj.phase.Load() != 3 {
		t.Fatalf("the failure was not injected (phase %d)", inj.phase.Load())
	}
	// A repair that reopens the store (the snapshot's) but cannot reset
	// the log: the follower is the snapshot's all the same, its head too.
	inj.failClear.Store(true)
	if _, err := f.NewTerm(2, TermOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NewTerm while the log cannot be reset: %v, want ErrUnavailable", err)
	}
	if st := f.Status(); st.Commit != 14 || st.Head != 14 {
		t.Fatalf("after a repair whose log reset failed: %+v, want head and commit at the snapshot point 14", st)
	}
	// The replaced log still holds entries up to 30: none of them is
	// applied on the snapshot's store.
	if adv := f.Stats().Advertised; adv != 14 {
		t.Fatalf("advertised commit %d after a repair whose log reset failed, want the snapshot point 14", adv)
	}
	inj.failClear.Store(false)
	head, err := f.NewTerm(2, TermOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (logpos.EntryID{Term: 1, Offset: 14}); head != want {
		t.Fatalf("NewTerm after the repair: head %v, want %v", head, want)
	}
	if st := f.Status(); st.Commit != 14 || st.Head != 14 {
		t.Fatalf("after the repair: %+v, want head and commit at the snapshot point 14", st)
	}
	if _, err := f.Truncate(2, &head); err != nil {
		t.Fatalf("Truncate to the head NewTerm returned: %v", err)
	}
	if _, err := f.Get([]byte("s0")); err != nil {
		t.Fatalf("Get on the snapshot's store: %v", err)
	}
}

// gatedSM applies entries as the KV state machine does, each once the
// test lets it through gate.
type gatedSM struct{ gate chan struct{} }

func (m gatedSM) Apply(e logpos.Entry, w *store.Writer) error {
	<-m.gate
	return store.KV{}.Apply(e, w)
}

// Close waits for the batch the applier is applying, not for the whole
// backlog of committed entries: with a slow state machine that would be
// a hang, during which the lifecycle lock is held.
func TestCloseDoesNotWaitForTheBacklog(t *testing.T) {
	sm := gatedSM{gate: make(chan struct{})}
	f, err := Open(Config{Dir: t.TempDir(), StateMachine: sm})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	const backlog = 4 * maxApplyBatch
	confFill(t, f, 1, 0, backlog-1, backlog-1)
	sm.gate <- struct{}{} // the applier is at work
	closed := make(chan error, 1)
	go func() { closed <- f.Close() }()
	<-f.applier.quit // Close is stopping the applier
	// Entries applied from here on: the rest of the batch under way (the
	// entry let through above may have ended the one before it).
	applied := 0
	for {
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
			if applied > maxApplyBatch {
				t.Fatalf("Close waited for %d entries to be applied, more than a batch (%d)", applied, maxApplyBatch)
			}
			return
		case sm.gate <- struct{}{}:
			applied++
		}
	}
}

// failedSyncOfEntry3 returns a follower of term 1 whose log holds 0..2
// durably, and entry 3 written but not synced: the stream that sent it
// ended with ErrUnavailable when its fsync failed. Syncs of the log still
// fail.
func failedSyncOfEntry3(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, Config{})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 2, -1)
	h.fs.failSyncs("/wal/")
	s.in <- entryAppend(1, 3, -1, "k", "3")
	if err := within(t, res); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stream whose fsync failed: %v, want ErrUnavailable", err)
	}
	s.cancel()
	return h
}

// TestHeadAfterAFailedSync: once a stream ended because its fsync failed,
// the head is what the log synced, while the disk keeps failing (every
// repair fails) and after a Close and an Open in the same process.
func TestHeadAfterAFailedSync(t *testing.T) {
	h := failedSyncOfEntry3(t)
	if st := h.f.Status(); st.Head != 2 {
		t.Fatalf("status after the failed sync: %+v, want head 2 (entry 3 was never durable)", st)
	}
	if _, err := h.f.NewTerm(2, TermOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NewTerm on a failing disk: %v, want ErrUnavailable", err)
	}
	if st := h.f.Status(); st.Head != 2 {
		t.Fatalf("status after a failed repair: %+v, want head 2", st)
	}
	h.fs.heal()
	if err := h.f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	h.open()
	head, err := h.f.NewTerm(2, TermOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if head.Offset != 2 {
		t.Fatalf("NewTerm after Close and Open: head %v, want offset 2 (entry 3's fsync failed)", head)
	}
}

// TestEntriesOfAFailedSyncAreNotTrusted: an entry whose fsync failed is
// not counted as durable when the log is reopened, although its bytes are
// in the file (the kernel may keep them in its cache only, or drop them,
// and a later fsync need not report the earlier failure): the log is cut
// back to what a sync covered, and the leader sends the rest again.
func TestEntriesOfAFailedSyncAreNotTrusted(t *testing.T) {
	h := failedSyncOfEntry3(t)
	h.fs.heal()
	head, err := h.f.NewTerm(2, TermOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if head.Offset != 2 {
		t.Fatalf("NewTerm after the failed sync: head %v, want offset 2 (entry 3 was never durable)", head)
	}
	if st := h.f.Status(); st.Head != 2 {
		t.Fatalf("status head %d, want 2", st.Head)
	}
	// The leader of term 2 sends entry 3 again.
	if _, err := h.f.Truncate(2, &head); err != nil {
		t.Fatal(err)
	}
	s2, res2 := h.replicate(2, 3, 3, 3)
	if err := finish(t, s2, res2); err != nil {
		t.Fatal(err)
	}
	if err := h.f.WaitApplied(bounded(t), 3); err != nil {
		t.Fatal(err)
	}
}

// TestFailedCutOfAReopenedLogLeavesItClosed: when the log reopened after
// a failed sync cannot be cut back to what that sync covered (here, its
// segment cannot be zeroed), the repair fails with ErrUnavailable and
// closes what it opened, so a later repair, once the disk is healthy,
// opens the log again and cuts it.
func TestFailedCutOfAReopenedLogLeavesItClosed(t *testing.T) {
	h := failedSyncOfEntry3(t)
	h.fs.heal()
	h.fs.failMatching(func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpFileWriteAt && strings.HasSuffix(op.Path, ".seg")
	})
	if _, err := h.f.NewTerm(2, TermOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("NewTerm while the log cannot be cut: %v, want ErrUnavailable", err)
	}
	h.fs.heal()
	head, err := h.f.NewTerm(2, TermOptions{})
	if err != nil {
		t.Fatalf("NewTerm once the disk is healthy: %v", err)
	}
	if head.Offset != 2 {
		t.Fatalf("NewTerm once the disk is healthy: head %v, want offset 2 (entry 3 was never durable)", head)
	}
}

// logAttr records, from every log message msg, the value of its
// attribute key.
type logAttr struct {
	slog.Handler
	msg, key string
	mu       sync.Mutex
	values   []slog.Value
}

func newLogAttr(msg, key string) *logAttr {
	return &logAttr{Handler: slog.DiscardHandler, msg: msg, key: key}
}

func (h *logAttr) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == h.key {
				h.mu.Lock()
				h.values = append(h.values, a.Value)
				h.mu.Unlock()
			}
			return true
		})
	}
	return nil
}

func (h *logAttr) Enabled(context.Context, slog.Level) bool { return true }
func (h *logAttr) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logAttr) WithGroup(string) slog.Handler            { return h }

// seen returns the values recorded so far.
func (h *logAttr) seen() []slog.Value {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.values)
}

// TestRepairOfAFailedLogResetShowsNoReplacedEntry: a snapshot installed
// below the follower's log whose log reset failed leaves the old entries
// in the log's files; the repair that reopens the log never publishes a
// head from them (the log had stopped counting them durable when the
// reset began), not even for the moment before it resets the log.
func TestRepairOfAFailedLogResetShowsNoReplacedEntry(t *testing.T) {
	logs := newLogAttr("log reopened after a failure", "head")
	h := newHarness(t, Config{Logger: slog.New(logs)})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 20, 20)
	if err := finish(t, s, res); err != nil {
		t.Fatal(err)
	}
	if err := h.f.WaitApplied(bounded(t), 20); err != nil {
		t.Fatal(err)
	}
	chunks := confSnap{chunkTerm: 1, storeTerm: 1, commit: 6}.build(t)
	h.fs.fail(clearMarkerName)
	if off, err := h.f.InstallSnapshot(&fakeSnapshotStream{chunks: chunks}); err != nil || off != 6 {
		t.Fatalf("install whose log reset fails: %d, %v; want it installed at 6", off, err)
	}
	h.fs.heal()
	head, err := h.f.NewTerm(2, TermOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if head.Offset != 6 {
		t.Fatalf("NewTerm after the repair: head %v, want the snapshot point 6", head)
	}
	if heads := logs.seen(); len(heads) != 1 || heads[0].Int64() != 6 {
		t.Fatalf("heads published on reopening the log: %v, want [6] (the snapshot point, never the replaced log's 20)", heads)
	}
}

// clearMarkerName is the file the log writes first when it clears itself.
const clearMarkerName = "CLEARING"

// TestEveryRepairAdoptsAHigherStoredTerm: a store holding a term above the
// follower's (an adoption that an earlier repair could not finish leaves
// it so, with the store no longer marked failed) is adopted by the next
// control operation's repair, whether or not that repair reopens the
// store: the operation is then judged at the adopted term.
func TestEveryRepairAdoptsAHigherStoredTerm(t *testing.T) {
	for _, from := range []State{StateNotMember, StateFollower} {
		t.Run(from.String(), func(t *testing.T) {
			rec := newMdlRecorder()
			h := newHarness(t, Config{Observer: rec})
			if from == StateFollower {
				h.newTerm(1)
				if _, err := h.f.Truncate(1, &logpos.EntryID{Term: 0, Offset: -1}); err != nil {
					t.Fatal(err)
				}
			}
			opts := TermOptions{KeySorting: store.KeySortingNatural}
			if err := h.f.store().SetTerm(3, opts); err != nil {
				t.Fatal(err)
			}
			if st := h.f.Status(); st.State != from || st.Term == 3 {
				t.Fatalf("before any repair: %+v", st)
			}
			before := rec.count()
			if _, err := h.f.Truncate(1, &logpos.EntryID{Term: 1, Offset: -1}); !errors.Is(err, ErrInvalidTerm) {
				t.Fatalf("Truncate of term 1 with term 3 stored: %v, want ErrInvalidTerm", err)
			}
			// A NotMember is restored to Fenced, as on opening; any other
			// is fenced again.
			want := EventNewTerm
			if from == StateNotMember {
				want = EventRestore
			}
			if steps, _ := rec.since(before); len(steps) == 0 || steps[0].Event != want.String() || steps[0].Err != nil {
				t.Fatalf("steps of the repair: %+v, want %s first", steps, want)
			}
			if st := h.f.Status(); st.Term != 3 || st.State != StateFenced {
				t.Fatalf("after the repair: %+v, want term 3, Fenced", st)
			}
			if _, err := h.f.Truncate(3, &logpos.EntryID{Term: 1, Offset: -1}); err != nil {
				t.Fatalf("Truncate at the adopted term: %v", err)
			}
			if got := h.f.store().TermOptions(); got != opts {
				t.Fatalf("term options %+v, want %+v", got, opts)
			}
		})
	}
}

// TestStreamNamingItsTermIsJudgedAtTheAdoptedTerm: the term a stream's
// leader names (ReplicateAt) is compared with the follower's term once
// the lifecycle lock is held and the repair has run, not with the term
// it showed before: a NewTerm(2) that failed though its term reached the
// disk stands, so the leader of term 1 is refused (the message names
// both terms) and leaves the shard to the leader of term 2, whose stream
// attaches.
func TestStreamNamingItsTermIsJudgedAtTheAdoptedTerm(t *testing.T) {
	for _, leader := range []logpos.Term{1, 2} {
		t.Run(fmt.Sprintf("leader of term %d", leader), func(t *testing.T) {
			h := newHarness(t, Config{})
			h.newTermStoredButFailed()
			if got := h.f.Term(); got != 1 {
				t.Fatalf("term %d before the repair, want 1", got)
			}
			s := newFakeStream()
			res := make(chan error, 1)
			go func() { res <- h.f.ReplicateAt(s, leader); s.cancel() }()
			a := &confStream{s: s, res: res}
			if leader == 2 {
				a.send(t, entryAppend(2, 0, -1, "k", "v"))
				if got := a.ack(t); got != 0 {
					t.Fatalf("ack %d, want 0", got)
				}
				if err := a.finish(t); err != nil {
					t.Fatal(err)
				}
				if st := h.f.Status(); st.Term != 2 || st.State != StateFollower {
					t.Fatalf("after the stream of the leader of term 2: %+v", st)
				}
				return
			}
			select {
			case err := <-res:
				if !errors.Is(err, ErrInvalidTerm) || !strings.Contains(err.Error(), "leader term 1 is not the current term 2") {
					t.Fatalf("the stream of the leader of term 1: %v, want ErrInvalidTerm naming terms 1 and 2", err)
				}
			case <-bounded(t).Done():
				s.cancel()
				t.Fatalf("the stream of the leader of term 1 attached in term %d", h.f.Term())
			}
			if st := h.f.Status(); st.Term != 2 || st.State != StateFenced {
				t.Fatalf("after the refused stream: %+v, want term 2, Fenced", st)
			}
			if _, err := h.f.Truncate(2, &logpos.EntryID{Term: 0, Offset: -1}); err != nil {
				t.Fatalf("the leader of term 2 truncating after the refused stream: %v", err)
			}
		})
	}
}

// TestDeleteAfterAFailedRepairAdoptsTheStoredTerm: a control operation
// whose repair cannot reopen the store fails with ErrUnavailable; the
// repair that Delete runs next reopens it and adopts the term it holds,
// so that Delete below that term is refused (SPEC §2.6).
func TestDeleteAfterAFailedRepairAdoptsTheStoredTerm(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTermStoredButFailed()
	h.fs.fail("/store/")
	if _, err := h.f.Truncate(1, &logpos.EntryID{Offset: -1}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Truncate while the store cannot reopen: %v, want ErrUnavailable", err)
	}
	h.fs.heal()
	if err := h.f.Delete(1); !errors.Is(err, ErrInvalidTerm) {
		t.Fatalf("Delete(1) with term 2 stored: %v, want ErrInvalidTerm", err)
	}
	if st := h.f.Status(); st.Term != 2 || st.State != StateFenced {
		t.Fatalf("after the refused Delete: %+v, want term 2, Fenced", st)
	}
}

// TestClosedFollowerLeavesAFailedStoreClosed: the store failed, then the
// follower closed; an operation on the closed follower fails with
// ErrClosed and opens nothing: the shard opens again.
func TestClosedFollowerLeavesAFailedStoreClosed(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTermStoredButFailed()
	_ = h.f.Close() // may report the store's failure
	if _, err := h.f.NewTerm(3, TermOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewTerm on a closed follower: %v, want ErrClosed", err)
	}
	g, err := Open(h.cfg)
	if err != nil {
		t.Fatalf("opening the shard again: %v", err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}
