package follower

// Minimal reproductions of bugs the model and crash tests found, each
// kept as a regression test once fixed.

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// TestBugShardDirectoryNotDurable: Open created the shard directory
// (Config.Dir) but never synced its parent, so the directory entry was not
// durable: a power loss after NewTerm returned and after an entry was
// acknowledged lost the whole shard. The follower reopened NotMember with
// term -1 and an empty log: the term regressed (SPEC §2.1 "persist term
// durably", §6.1) and an acknowledged entry was gone (§6.2). Fixed in
// 243cc34 (internal/durable.MkdirAll); kept as a regression test.
func TestBugShardDirectoryNotDurable(t *testing.T) {
	mem := mdlNewMem(t) // the parent, /data, exists durably
	f, err := Open(Config{Dir: mdlDir, FS: mem, SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	s := newFakeStream()
	res := make(chan error, 1)
	go func() { res <- f.Replicate(s); s.cancel() }()
	s.in <- mdlMakeEntry(1, 0, 1).toAppend(1, 0, -1, false)
	if o := <-s.acks; o != 0 {
		t.Fatalf("ack %d", o)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // power loss: only synced data survives
	_ = f.Close()
	<-res
	g, err := Open(Config{Dir: mdlDir, FS: crashed, SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if st := g.Status(); st.Term != 1 || st.Head != 0 {
		t.Fatalf("after a power loss: %+v; want term 1 (NewTerm returned) and head 0 (acknowledged)", st)
	}
}

// TestBugAckForEmptyStream: a stream on which the leader sent no Append
// at all and then half-closed was sent Ack{durable head} (introduced with
// the ack-latency statistics in 5021ce3). SPEC §2.3: the ack mode is
// decided by the first Append, and "nothing is acked that the stream did
// not deliver (e.g. no acks for the offsets a snapshot covered)". A leader
// in per-entry mode got an ack it could not match. Fixed in 9598247; kept
// as a regression test.
func TestBugAckForEmptyStream(t *testing.T) {
	h := newHarness(t, Config{SegmentSize: 4096})
	h.newTerm(1)
	s, res := h.replicate(1, 0, 2, -1)
	if err := finish(s, res); err != nil {
		t.Fatal(err)
	}
	// A new stream: no Append, half-close.
	s2 := newFakeStream()
	res2 := make(chan error, 1)
	go func() { res2 <- h.f.Replicate(s2); s2.cancel() }()
	if err := finish(s2, res2); err != nil {
		t.Fatal(err)
	}
	if len(s2.acks) > 0 {
		t.Fatalf("a stream that delivered nothing was acknowledged: Ack{%d}", <-s2.acks)
	}
}

// TestBugFailedFirstEntryMovesToFollower: the first entry of a stream
// attached to a Fenced follower fails to be written (the log's disk
// fails). The stream ends with ErrUnavailable and nothing was written or
// acknowledged, yet the follower moved to Follower: the state change
// happens before the write. SPEC §2.3: "the first *accepted* entry-bearing
// Append moves Fenced → Follower; an Append that fails changes nothing"
// (and DESIGN: "a failed action leaves the state where it was"). The
// consequence: the leader of the term can no longer Truncate this follower
// (Truncate is only allowed in Fenced: ErrInvalidStatus) without fencing it
// again. Fixed: the transition comes once the log took the entry; kept as
// a regression test.
func TestBugFailedFirstEntryMovesToFollower(t *testing.T) {
	h := newHarness(t, Config{SegmentSize: 4096})
	h.newTerm(1)
	s := newFakeStream()
	res := make(chan error, 1)
	go func() { res <- h.f.Replicate(s); s.cancel() }()
	h.fs.fail("/wal/")
	s.in <- mdlMakeEntry(1, 0, 1).toAppend(1, 0, -1, false)
	if err := <-res; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the stream: %v", err)
	}
	h.fs.heal()
	if st := h.f.Status(); st.State != StateFenced || st.Head != -1 {
		t.Fatalf("after a first entry that failed to be written: %+v, want Fenced with head -1", st)
	}
	if _, err := h.f.Truncate(1, &logpos.EntryID{Term: 1, Offset: -1}); err != nil {
		t.Fatalf("the leader's Truncate: %v", err)
	}
}
