package follower

import (
	"context"
	"testing"
)

func TestStatsMove(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 4, 4)
	if err := finish(s, res); err != nil {
		t.Fatal(err)
	}
	if err := h.f.WaitApplied(context.Background(), 4); err != nil {
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
