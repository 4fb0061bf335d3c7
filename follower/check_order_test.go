package follower

// Pairs of checks of docs/spec.md §2 that fail together: the first one
// listed decides the error, and the rejected operation changes nothing
// (no file, no field, no state). Each case below makes at least two
// checks fail at once.

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/wal"
)

// treeOf lists every file and directory under dir with its size (-1 for
// a directory); a missing dir is an empty map. Left out: what the log
// prepares in the background, and the sizes of Pebble's logs (which grow
// in the background with applies made before; the store's contents are
// compared by confObserve).
func treeOf(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if name := d.Name(); strings.HasPrefix(name, "next-") || strings.Contains(name, ".idx") {
			return nil // the log's background work (a prepared segment, an index)
		}
		if d.IsDir() {
			out[rel] = -1
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[rel] = info.Size()
		if strings.HasSuffix(rel, ".log") {
			out[rel] = 0
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func treeDiff(a, b map[string]int64) string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, k+" removed")
		} else if w != v {
			d = append(d, fmt.Sprintf("%s %d -> %d", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k+" created")
		}
	}
	return strings.Join(d, "; ")
}

// changesNothing runs refused, an operation the follower refuses, and
// fails the test if it changed the follower (confObserve) or its files.
func changesNothing(t *testing.T, h *harness, what string, refused func()) {
	t.Helper()
	before, tree := confObserve(t, h.f, h.dir, h.fs), treeOf(t, h.dir)
	refused()
	if d := before.diff(confObserve(t, h.f, h.dir, h.fs)); d != "" {
		t.Errorf("%s changed: %s", what, d)
	}
	if d := treeDiff(tree, treeOf(t, h.dir)); d != "" {
		t.Errorf("%s changed the disk: %s", what, d)
	}
}

// TestCheckOrderClosedFirst: SPEC §2 "Every operation on a Closed follower
// returns ErrClosed (Close returns nil)", also when the operation's own
// checks fail too, and nothing on disk changes (after Delete: nothing is
// created again).
func TestCheckOrderClosedFirst(t *testing.T) {
	wrongTerm := confSnap{chunkTerm: 7, storeTerm: 7, commit: 4, options: confSnapOpts}.build(t)
	wrongTerm[0].Name = "../x"
	for _, how := range []string{"Close", "Delete"} {
		t.Run(how, func(t *testing.T) {
			h := confPopulated(t, Config{}) // term 2, head 5, commit 3, Follower
			if how == "Close" {
				if err := h.f.Close(); err != nil {
					t.Fatal(err)
				}
			} else if err := h.f.Delete(2); err != nil {
				t.Fatal(err)
			}
			before := treeOf(t, h.dir)
			st := h.f.Status()
			for _, c := range []struct {
				name string
				do   func() error
			}{
				{"NewTerm(-1)", func() error { _, err := h.f.NewTerm(-1, TermOptions{}); return err }},
				{"NewTerm(1) below the term", func() error { _, err := h.f.NewTerm(1, TermOptions{}); return err }},
				{"Truncate without head", func() error { _, err := h.f.Truncate(2, nil); return err }},
				{"Truncate wrong term, beyond head", func() error { _, err := h.f.Truncate(9, &logpos.EntryID{Offset: 99}); return err }},
				{"Truncate below commit", func() error { _, err := h.f.Truncate(2, &logpos.EntryID{Offset: 0}); return err }},
				{"Delete(-1)", func() error { return h.f.Delete(-1) }},
				{"Delete(1) below the term", func() error { return h.f.Delete(1) }},
				{"Replicate", func() error {
					s := newFakeStream()
					defer s.cancel()
					return h.f.Replicate(s)
				}},
				{"InstallSnapshot empty", func() error { _, err := h.f.InstallSnapshot(&gatedStream{}); return err }},
				{"InstallSnapshot wrong term, bad name", func() error {
					_, err := h.f.InstallSnapshot(&gatedStream{chunks: cloneChunks(wrongTerm)})
					return err
				}},
			} {
				if err := c.do(); !errors.Is(err, ErrClosed) {
					t.Errorf("%s on a follower closed by %s: %v, want ErrClosed", c.name, how, err)
				}
			}
			if err := h.f.Close(); err != nil {
				t.Errorf("Close of a closed follower: %v, want nil", err)
			}
			if d := treeDiff(before, treeOf(t, h.dir)); d != "" {
				t.Errorf("operations refused with ErrClosed changed the disk: %s", d)
			}
			if got := h.f.Status(); got != st {
				t.Errorf("status %+v -> %+v", st, got)
			}
		})
	}
}

// TestCheckOrderTruncatePairs: SPEC §2.2 head given, nothing attached,
// Fenced, term, not below commit, not beyond head; in that order.
func TestCheckOrderTruncatePairs(t *testing.T) {
	type tc struct {
		name string
		term logpos.Term
		head *logpos.EntryID
		want error
	}
	at := func(o logpos.Offset) *logpos.EntryID { return &logpos.EntryID{Term: 2, Offset: o} }
	run := func(t *testing.T, h *harness, cases []tc) {
		t.Helper()
		for _, c := range cases {
			changesNothing(t, h, c.name+": the refused Truncate", func() {
				if _, err := h.f.Truncate(c.term, c.head); !errors.Is(err, c.want) {
					t.Errorf("%s: %v, want %v", c.name, err, c.want)
				}
			})
		}
	}

	t.Run("Fenced", func(t *testing.T) {
		h := confPopulated(t, Config{}) // term 2, head 5, commit 3
		if _, err := h.f.NewTerm(2, confOpts); err != nil {
			t.Fatal(err)
		}
		run(t, h, []tc{
			{"no head + wrong term", 3, nil, ErrInvalidArgument},
			{"wrong term + below commit", 3, at(1), ErrInvalidTerm},
			{"wrong term + beyond head", 3, at(9), ErrInvalidTerm},
			{"negative term + beyond head", -1, at(9), ErrInvalidTerm},
		})
	})

	t.Run("Fenced with a stream attached", func(t *testing.T) {
		h := confPopulated(t, Config{})
		if _, err := h.f.NewTerm(2, confOpts); err != nil {
			t.Fatal(err)
		}
		a := confAttach(t, h.f)
		a.send(t, &replicationpb.Append{Term: 2, CommitOffset: -1}) // attached, still Fenced
		a.send(t, &replicationpb.Append{Term: 2, CommitOffset: -1}) // the first was handled
		if st := h.f.Status(); st.State != StateFenced {
			t.Fatalf("setup: %+v", st)
		}
		run(t, h, []tc{
			{"no head + attached", 2, nil, ErrInvalidArgument},
			{"attached + wrong term", 3, at(4), ErrConflict},
			{"attached + below commit", 2, at(1), ErrConflict},
			{"attached + beyond head", 2, at(9), ErrConflict},
			{"attached + wrong term + beyond head", 1, at(9), ErrConflict},
		})
		// The stream is untouched by the refusals.
		a.send(t, entryAppend(2, 6, 3, "k6", "v"))
		if got := a.ack(t); got != 6 {
			t.Fatalf("ack %d, want 6", got)
		}
		if err := a.finish(t); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Follower", func(t *testing.T) {
		h := confPopulated(t, Config{})
		run(t, h, []tc{
			{"no head + Follower", 2, nil, ErrInvalidArgument},
			{"Follower + wrong term", 3, at(4), ErrInvalidStatus},
			{"Follower + below commit", 2, at(1), ErrInvalidStatus},
			{"Follower + beyond head", 2, at(9), ErrInvalidStatus},
		})
	})

	t.Run("NotMember", func(t *testing.T) {
		h := newHarness(t, Config{})
		run(t, h, []tc{
			{"no head + NotMember", 0, nil, ErrInvalidArgument},
			{"NotMember + wrong term + beyond head", 5, at(9), ErrInvalidStatus},
		})
	})

	t.Run("NotMember with an install attached", func(t *testing.T) {
		h := newHarness(t, Config{})
		chunks := confSnap{chunkTerm: 4, storeTerm: 4, commit: 6, options: confSnapOpts}.build(t)
		s := &gatedStream{chunks: chunks, gate: make(chan struct{}), gateAt: 1}
		res := make(chan error, 1)
		go func() { _, err := h.f.InstallSnapshot(s); res <- err }()
		waitInstallsStarted(t, h.f, 1)
		for _, c := range []tc{
			{"no head + install + NotMember", 4, nil, ErrInvalidArgument},
			{"install + NotMember", 4, at(0), ErrConflict},
			{"install + NotMember + wrong term + beyond head", 9, at(9), ErrConflict},
		} {
			before := h.f.Status()
			if _, err := h.f.Truncate(c.term, c.head); !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
			if after := h.f.Status(); after != before {
				t.Errorf("%s: %+v -> %+v", c.name, before, after)
			}
		}
		// A stream on a NotMember follower with an install attached: not
		// a member comes first.
		if err := h.f.Replicate(newFakeStream()); !errors.Is(err, ErrNotMember) {
			t.Errorf("Replicate on a NotMember follower with an install attached: %v, want ErrNotMember", err)
		}
		close(s.gate)
		if err := within(t, res); err != nil {
			t.Fatalf("the held install: %v", err)
		}
		if st := h.f.Status(); st.State != StateFollower || st.Term != 4 || st.Commit != 6 {
			t.Fatalf("after the install: %+v", st)
		}
	})
}

// TestCheckOrderAppendPairs: SPEC §2.3, each Append: the stream term, then
// commit advertisement / duplicate / gap, then (stricter than SPEC,
// documented) the entry's offset, term and size. A failing Append changes
// nothing: not the state (a Fenced follower stays Fenced), the head, the
// advertised commit (also not that of a commit advertisement of another
// term, -1 included), the log or its files; nothing is acknowledged.
func TestCheckOrderAppendPairs(t *testing.T) {
	big := func(a *replicationpb.Append) *replicationpb.Append {
		a.Entry.Value = make([]byte, wal.MaxValueSize+1)
		return a
	}
	entryTerm := func(a *replicationpb.Append, term int64) *replicationpb.Append {
		a.Entry.Term = term
		return a
	}
	crc := uint32(0xdeadbeef)
	withCRC := func(a *replicationpb.Append) *replicationpb.Append {
		a.PreviousEntryCrc = &crc
		return a
	}
	// The follower: term 2, Fenced, entries 0..3 of term 1, commit -1 (so
	// that a commit offset the failing Append carries would show).
	for _, c := range []struct {
		name string
		a    *replicationpb.Append
		want error
	}{
		{"wrong term + gap", entryAppend(3, 9, 3, "k", "v"), ErrInvalidTerm},
		{"wrong term + duplicate", entryAppend(1, 2, 3, "k", "v"), ErrInvalidTerm},
		{"wrong term + negative offset", entryAppend(1, -3, 3, "k", "v"), ErrInvalidTerm},
		{"wrong term + oversized", big(entryAppend(3, 4, 3, "k", "v")), ErrInvalidTerm},
		{"wrong term + entry term above", entryTerm(entryAppend(3, 4, 3, "k", "v"), 9), ErrInvalidTerm},
		{"wrong term + last offset", entryAppend(3, math.MaxInt64, 3, "k", "v"), ErrInvalidTerm},
		{"wrong term + commit advertisement", &replicationpb.Append{Term: 3, CommitOffset: 3}, ErrInvalidTerm},
		{"negative term + commit advertisement", &replicationpb.Append{Term: -1, CommitOffset: 3}, ErrInvalidTerm},
		{"gap + entry term above the stream's", entryTerm(entryAppend(2, 6, 3, "k", "v"), 9), ErrGap},
		{"gap + entry term below the last", entryTerm(entryAppend(2, 6, 3, "k", "v"), 0), ErrGap},
		{"gap + oversized", big(entryAppend(2, 6, 3, "k", "v")), ErrGap},
		{"gap + last offset", entryAppend(2, math.MaxInt64, 3, "k", "v"), ErrGap},
		{"gap + previous crc", withCRC(entryAppend(2, 6, 3, "k", "v")), ErrGap},
		{"first entry of a Fenced follower: oversized", big(entryAppend(2, 4, 3, "k", "v")), ErrInvalidArgument},
		{"first entry of a Fenced follower: entry term above", entryTerm(entryAppend(2, 4, 3, "k", "v"), 3), ErrInvalidArgument},
		{"first entry of a Fenced follower: entry term below", entryTerm(entryAppend(2, 4, 3, "k", "v"), 0), ErrInvalidArgument},
		{"oversized + entry term above", entryTerm(big(entryAppend(2, 4, 3, "k", "v")), 3), ErrInvalidArgument},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.newTerm(1)
			confFill(t, h.f, 1, 0, 3, -1)
			if _, err := h.f.NewTerm(2, confOpts); err != nil {
				t.Fatal(err)
			}
			if st := h.f.Status(); st.State != StateFenced || st.Head != 3 || h.f.advertised.Load() != -1 {
				t.Fatalf("setup: %+v advertised %d", st, h.f.advertised.Load())
			}
			changesNothing(t, h, "a failing Append", func() {
				a := confAttach(t, h.f)
				a.send(t, c.a)
				select {
				case err := <-a.res:
					if !errors.Is(err, c.want) {
						t.Fatalf("the stream ended with %v, want %v", err, c.want)
					}
				case o := <-a.s.acks:
					t.Fatalf("offset %d acknowledged", o)
				}
				if len(a.s.acks) > 0 {
					t.Fatalf("ack %d", <-a.s.acks)
				}
			})
			// And the follower takes the entry the leader sends next.
			next := confAttach(t, h.f)
			next.send(t, entryAppend(2, 4, -1, "k4", "v"))
			if got := next.ack(t); got != 4 {
				t.Fatalf("ack %d, want 4", got)
			}
			if err := next.finish(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCheckOrderInstallPairs: SPEC §2.4 nothing attached, not empty, first
// chunk's term, then names / sequence / store; NewTerm during the
// transfer decides whatever else is wrong.
func TestCheckOrderInstallPairs(t *testing.T) {
	t.Run("NotMember: negative chunk term + bad name", func(t *testing.T) {
		h := newHarness(t, Config{})
		chunks := confSnap{chunkTerm: -1, storeTerm: 2, commit: 4, options: confSnapOpts}.build(t)
		chunks[0].Name = "../escape"
		changesNothing(t, h, "the refused install", func() {
			if _, err := h.f.InstallSnapshot(&gatedStream{chunks: chunks}); !errors.Is(err, ErrInvalidTerm) {
				t.Fatalf("%v, want ErrInvalidTerm", err)
			}
		})
	})

	for name, mangle := range map[string]func([]*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk{
		"later chunk of another term": func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			cs[len(cs)-1].Term = 8
			return cs
		},
		"truncated": func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk { return cs[:len(cs)-1] },
		"bad later name": func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			cs[len(cs)-1].Name = "a/b"
			return cs
		},
	} {
		t.Run("Fenced: wrong first term + "+name, func(t *testing.T) {
			h := confPopulated(t, Config{})
			chunks := mangle(confSnap{chunkTerm: 3, storeTerm: 3, commit: 4, options: confSnapOpts}.build(t))
			changesNothing(t, h, "the refused install", func() {
				if _, err := h.f.InstallSnapshot(&gatedStream{chunks: chunks}); !errors.Is(err, ErrInvalidTerm) {
					t.Fatalf("%v, want ErrInvalidTerm", err)
				}
			})
		})
	}

	t.Run("install attached + wrong term + bad first name", func(t *testing.T) {
		h := confPopulated(t, Config{})
		good := confSnap{chunkTerm: 2, storeTerm: 2, commit: 30, options: confSnapOpts, prefix: "s"}.build(t)
		s := &gatedStream{chunks: good, gate: make(chan struct{}), gateAt: 1}
		res := make(chan error, 1)
		go func() { _, err := h.f.InstallSnapshot(s); res <- err }()
		waitInstallsStarted(t, h.f, 1)
		bad := confSnap{chunkTerm: 7, storeTerm: 7, commit: 4, options: confSnapOpts}.build(t)
		bad[0].Name = "../x"
		if _, err := h.f.InstallSnapshot(&gatedStream{chunks: bad}); !errors.Is(err, ErrConflict) {
			t.Errorf("%v, want ErrConflict", err)
		}
		close(s.gate)
		if err := within(t, res); err != nil {
			t.Fatalf("the attached install: %v", err)
		}
	})

	t.Run("abandoned install fails after a new one attached", func(t *testing.T) {
		h := confPopulated(t, Config{})
		old := confSnap{chunkTerm: 2, storeTerm: 2, commit: 30, options: confSnapOpts, prefix: "s"}.build(t)
		old[len(old)-1].Name = "a/b" // also broken
		s1 := &gatedStream{chunks: old, gate: make(chan struct{}), gateAt: 1}
		res1 := make(chan error, 1)
		go func() { _, err := h.f.InstallSnapshot(s1); res1 <- err }()
		waitInstallsStarted(t, h.f, 1)
		if _, err := h.f.NewTerm(3, TermOptions{}); err != nil {
			t.Fatal(err)
		}
		fresh := confSnap{chunkTerm: 3, storeTerm: 3, commit: 40, options: confSnapOpts, prefix: "t"}.build(t)
		s2 := &gatedStream{chunks: fresh, gate: make(chan struct{}), gateAt: 1}
		res2 := make(chan error, 1)
		go func() { _, err := h.f.InstallSnapshot(s2); res2 <- err }()
		waitInstallsStarted(t, h.f, 2)
		close(s1.gate) // the abandoned one fails now, beside the new one
		if err := <-res1; !errors.Is(err, ErrInvalidTerm) {
			t.Errorf("abandoned install: %v, want ErrInvalidTerm", err)
		}
		close(s2.gate)
		if err := <-res2; err != nil {
			t.Fatalf("the new install: %v", err)
		}
		if st := h.f.Status(); st.State != StateFollower || st.Term != 3 || st.Commit != 40 {
			t.Fatalf("after the new install: %+v", st)
		}
		if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
			t.Errorf("staging left: %v", l)
		}
	})
}

// TestCheckOrderRefusedDeleteKeepsInstall: SPEC §2.6 a refused Delete
// (negative term, or below the term) has no side effect: the install in
// progress goes on and commits.
func TestCheckOrderRefusedDeleteKeepsInstall(t *testing.T) {
	for _, term := range []logpos.Term{-1, 1} {
		t.Run(fmt.Sprint(term), func(t *testing.T) {
			h := confPopulated(t, Config{})
			chunks := confSnap{chunkTerm: 2, storeTerm: 2, commit: 30, options: confSnapOpts, prefix: "s"}.build(t)
			s := &gatedStream{chunks: chunks, gate: make(chan struct{}), gateAt: 1}
			res := make(chan error, 1)
			go func() { _, err := h.f.InstallSnapshot(s); res <- err }()
			waitInstallsStarted(t, h.f, 1)
			want := ErrInvalidTerm
			if term < 0 {
				want = ErrInvalidArgument
			}
			if err := h.f.Delete(term); !errors.Is(err, want) {
				t.Fatalf("Delete(%d): %v, want %v", term, err, want)
			}
			close(s.gate)
			if err := within(t, res); err != nil {
				t.Errorf("install after a refused Delete: %v", err)
			}
			if st := h.f.Status(); st.State != StateFollower || st.Commit != 30 {
				t.Errorf("after the install: %+v", st)
			}
		})
	}
}

// TestCheckOrderRefusedOpsKeepStream: a NewTerm or a Delete refused by its
// checks (negative, or below the term: both fail for -1) does not end the
// attached stream (SPEC §2: a rejected operation changes nothing).
func TestCheckOrderRefusedOpsKeepStream(t *testing.T) {
	h := confPopulated(t, Config{}) // term 2, head 5
	a := confAttach(t, h.f)
	a.send(t, entryAppend(2, 6, 3, "k6", "v"))
	if got := a.ack(t); got != 6 {
		t.Fatalf("ack %d", got)
	}
	for _, c := range []struct {
		name string
		do   func() error
		want error
	}{
		{"NewTerm(-1)", func() error { _, err := h.f.NewTerm(-1, TermOptions{}); return err }, ErrInvalidArgument},
		{"NewTerm(1)", func() error { _, err := h.f.NewTerm(1, TermOptions{}); return err }, ErrInvalidTerm},
		{"Delete(-1)", func() error { return h.f.Delete(-1) }, ErrInvalidArgument},
		{"Delete(1)", func() error { return h.f.Delete(1) }, ErrInvalidTerm},
	} {
		if err := c.do(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	a.send(t, entryAppend(2, 7, 3, "k7", "v"))
	if got := a.ack(t); got != 7 {
		t.Fatalf("ack %d after the refusals, want 7", got)
	}
	if err := a.finish(t); err != nil {
		t.Fatalf("the stream: %v", err)
	}
	if st := h.f.Status(); st.State != StateFollower || st.Term != 2 || st.Head != 7 {
		t.Fatalf("%+v", st)
	}
}
