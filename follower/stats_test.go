package follower

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

func TestStatsMove(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 4, 4)
	if err := finish(t, s, res); err != nil {
		t.Fatal(err)
	}
	if err := h.f.WaitApplied(bounded(t), 4); err != nil {
		t.Fatal(err)
	}
	st := h.f.Stats()
	if st.EntriesAppended != 5 || st.BytesAppended != 5*uint64(len(kvPut("k", "v"))) || st.AcksSent != 5 || st.Applied != 5 {
		t.Errorf("counters after 5 entries: %+v", st)
	}
	if st.Syncs == 0 || st.SyncLatency.Count != st.Syncs || st.AckLatency.Count == 0 || st.AppendLatency.Count != 5/sampling {
		t.Errorf("latencies: syncs %d, sync %d, ack %d, append %d", st.Syncs, st.SyncLatency.Count, st.AckLatency.Count, st.AppendLatency.Count)
	}
	var sum uint64
	for _, c := range st.AckLatency.Counts {
		sum += c
	}
	if sum != st.AckLatency.Count || len(st.AckLatency.Counts) != len(st.AckLatency.Bounds)+1 {
		t.Errorf("ack histogram buckets %v hold %d of %d", st.AckLatency.Counts, sum, st.AckLatency.Count)
	}
	if st.StreamAttached || st.Lag() != 0 || st.Commit != 4 {
		t.Errorf("after the stream: attached %v, lag %d, commit %d", st.StreamAttached, st.Lag(), st.Commit)
	}

	env := &scriptEnv{t: t}
	if _, err := h.f.InstallSnapshot(env.snapshotStream(args{"term": "1", "commit": "9", "mangle": "truncated"})); err == nil {
		t.Fatal("a truncated snapshot installed")
	}
	if _, err := h.f.InstallSnapshot(env.snapshotStream(args{"term": "1", "commit": "9"})); err != nil {
		t.Fatal(err)
	}
	st = h.f.Stats()
	if st.InstallsStarted != 2 || st.InstallsCommitted != 1 || st.InstallsAbandoned != 1 {
		t.Errorf("installs: %d started, %d committed, %d abandoned", st.InstallsStarted, st.InstallsCommitted, st.InstallsAbandoned)
	}
}

// levelCounter is a slog handler counting the records of each message at
// each level.
type levelCounter struct {
	mu     sync.Mutex
	counts map[string]int // "LEVEL message"
}

func (c *levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *levelCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[r.Level.String()+" "+r.Message]++
	return nil
}
func (c *levelCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *levelCounter) WithGroup(string) slog.Handler      { return c }

func (c *levelCounter) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[key]
}

// TestStreamFailuresCounted: each stream that fails is counted once under
// its cause and logged (at warn for the leader's mistakes and the log's
// failures, at debug for a leader that went away); streams the leader
// finished or a NewTerm ended are not failures.
func TestStreamFailuresCounted(t *testing.T) {
	logs := &levelCounter{counts: map[string]int{}}
	h := newHarness(t, Config{Logger: slog.New(logs)})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 1, -1)
	if err := finish(t, s, res); err != nil {
		t.Fatal(err)
	}
	entry := func(term, off int64) *replicationpb.Append {
		return &replicationpb.Append{Term: term, CommitOffset: -1, Entry: &replicationpb.LogEntry{Term: term, Offset: off, Value: kvPut("k", "v")}}
	}
	// failWith attaches a stream, sends it a, and returns how it ended.
	failWith := func(a *replicationpb.Append, before func()) error {
		t.Helper()
		s, res := h.replicate(1, 2, 1, -1) // attached, nothing sent yet
		if before != nil {
			before()
		}
		if a != nil {
			s.in <- a
		}
		err := within(t, res)
		s.cancel()
		return err
	}
	for _, c := range []struct {
		name   string
		append *replicationpb.Append
		before func()
		want   error
	}{
		{"another term", entry(2, 2), nil, ErrInvalidTerm},
		{"a gap", entry(1, 5), nil, ErrGap},
		{"a negative offset", entry(1, -1), nil, ErrInvalidArgument},
		{"the log failing", entry(1, 2), func() { h.fs.fail("/wal/") }, ErrUnavailable},
		{"the leader going away", nil, nil, context.Canceled},
	} {
		var err error
		if c.append == nil {
			s, res := h.replicate(1, 2, 1, -1)
			s.cancel()
			err = within(t, res)
		} else {
			err = failWith(c.append, c.before)
		}
		h.fs.heal()
		if !errors.Is(err, c.want) {
			t.Fatalf("%s: the stream ended with %v, want %v", c.name, err, c.want)
		}
	}
	// A stream a NewTerm ended did not fail.
	s, res = h.replicate(1, 2, 2, -1)
	h.newTerm(2)
	if err := within(t, res); !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("a stream NewTerm ended: %v", err)
	}
	s.cancel()

	want := StreamFailures{InvalidTerm: 1, Gap: 1, InvalidArgument: 1, Unavailable: 1, Other: 1}
	if got := h.f.Stats().StreamFailures; got != want {
		t.Errorf("stream failures %+v, want %+v", got, want)
	}
	if got := logs.count("WARN replication stream failed"); got != 4 {
		t.Errorf("%d warnings of a failed stream, want 4", got)
	}
	if got := logs.count("DEBUG replication stream ended"); got != 1 {
		t.Errorf("%d debug lines of a stream ended by its leader, want 1", got)
	}
}

// TestHalfCloseRoundIsNoSync: Stats.Syncs counts the sync rounds that had
// entries to make durable. The round a half-close wakes, with everything
// durable already, does no fsync and is not counted; neither is its
// latency.
func TestHalfCloseRoundIsNoSync(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	a := confAttach(t, h.f)
	a.send(t, entryAppend(1, 0, -1, "k", "v"))
	if o := a.ack(t); o != 0 {
		t.Fatalf("ack %d, want 0", o)
	}
	if err := a.finish(t); err != nil { // its round finds entry 0 durable
		t.Fatal(err)
	}
	if st := h.f.Stats(); st.Syncs != 1 || st.SyncLatency.Count != 1 {
		t.Fatalf("%d syncs (%d timed) for one entry, want 1", st.Syncs, st.SyncLatency.Count)
	}
}

// TestAckLatencySampling: the ack latency is measured for every entry
// that arrives while none waits for its ack (an idle stream's acks are
// all timed), and of a burst, for its first entry only (and for one in
// sampling): the entries queued behind it add nothing to AckLatency.
func TestAckLatencySampling(t *testing.T) {
	held := newHeldSyncRound(t)
	a := confAttach(t, held.f)
	for o := int64(0); o <= 1; o++ { // each arrives with nothing waiting
		a.send(t, entryAppend(1, o, -1, "k", "v"))
		if got := a.ack(t); got != o {
			t.Fatalf("ack %d, want %d", got, o)
		}
	}
	held.armed.Store(true)
	a.send(t, entryAppend(1, 2, -1, "k", "v"))
	<-held.blocked // entry 2 waits in its round's fsync; 3 and 4 queue behind it
	a.send(t, entryAppend(1, 3, -1, "k", "v"))
	a.send(t, entryAppend(1, 4, -1, "k", "v"))
	close(held.gate)
	for o := int64(2); o <= 4; o++ {
		if got := a.ack(t); got != o {
			t.Fatalf("ack %d, want %d", got, o)
		}
	}
	if err := a.finish(t); err != nil { // every ack observed once it returns
		t.Fatal(err)
	}
	if st := held.f.Stats(); st.AcksSent != 5 || st.AckLatency.Count != 3 {
		t.Fatalf("%d acks with %d timed, want 5 with 3 (entries 0, 1 and 2)", st.AcksSent, st.AckLatency.Count)
	}
}

// TestCumulativeAckTimedByTheNewestEntry: in cumulative mode an ack's
// latency is measured from the newest timed entry it covers.
func TestCumulativeAckTimedByTheNewestEntry(t *testing.T) {
	f, s, r := unattachedCumulative(t)
	newest := time.Now()
	r.mu.pending = []pendingAck{{0, newest.Add(-time.Hour)}, {1, time.Time{}}, {2, newest}, {3, time.Time{}}}
	if _, err := r.acknowledge(3); err != nil {
		t.Fatal(err)
	}
	since := time.Since(newest)
	if got := within(t, s.acks); got != 3 {
		t.Fatalf("ack %d, want 3", got)
	}
	if h := f.Stats().AckLatency; h.Count != 1 || h.Sum > since {
		t.Fatalf("ack latency: %d observed, %v in all; want 1, at most %v (since entry 2 arrived)", h.Count, h.Sum, since)
	}
}

// TestFailedSyncRoundIsCounted: a sync round whose fsync fails is counted
// in Stats.Syncs, and timed, as one that succeeds.
func TestFailedSyncRoundIsCounted(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 0, -1) // acked: its round was counted
	before := h.f.Stats()
	h.fs.failSyncs("/wal/")
	s.in <- entryAppend(1, 1, -1, "k", "v")
	if err := within(t, res); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the stream: %v, want ErrUnavailable", err)
	}
	h.fs.heal()
	if st := h.f.Stats(); st.Syncs != before.Syncs+1 || st.SyncLatency.Count != before.SyncLatency.Count+1 {
		t.Fatalf("%d syncs (%d timed) after a failed one, want %d (%d)", st.Syncs, st.SyncLatency.Count, before.Syncs+1, before.SyncLatency.Count+1)
	}
}

// TestStatsCommitIsTheFollowersCommit: Stats reports the commit Status
// does. After the store came back from a failure with an older commit, it
// is the commit reached before, not the store's, until the applier has
// applied the lost entries again (SPEC §6.3: commit never decreases).
func TestStatsCommitIsTheFollowersCommit(t *testing.T) {
	sm := &reapplyGate{entered: make(chan struct{}), release: make(chan struct{})}
	f := openStoreBehind(t, Config{StateMachine: sm}, &sm.armed)
	<-sm.entered // the applier applies again what the store lost
	st := f.Stats()
	close(sm.release)
	if st.Commit != 5 {
		t.Errorf("Stats().Commit %d while the store applies again what it lost, want 5 (the commit reached)", st.Commit)
	}
	waitApplied(t, f, 5)
}

// TestLagIsNeverNegative: Lag counts the entries advertised and not yet
// applied; a commit above the advertised one (Stats reads the advertised
// commit first, and a snapshot install may lower both meanwhile) is no
// lag, not a negative one.
func TestLagIsNeverNegative(t *testing.T) {
	if lag := (Stats{Advertised: 3, Commit: 30}).Lag(); lag != 0 {
		t.Errorf("lag with commit 30 above advertised 3: %d, want 0", lag)
	}
	if lag := (Stats{Advertised: 30, Commit: 3}).Lag(); lag != 27 {
		t.Errorf("lag with commit 3 below advertised 30: %d, want 27", lag)
	}
}
