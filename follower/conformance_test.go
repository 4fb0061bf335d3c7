package follower

// Rule-by-rule checks of docs/spec.md §2.4 (snapshot installs), §3 (the
// applier), §2.8 (reopening), §2.3 (duplicates after an install) and §5
// (CRC seeding after a snapshot), written from the specification alone.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
	"github.com/tablefsm/tablefsm/wal"
)

// ---------------------------------------------------------------------------
// helpers

type confSnap struct {
	chunkTerm logpos.Term
	storeTerm logpos.Term // NoTerm: the leader's store was never given a term
	entryTerm logpos.Term // the entries' term, when not storeTerm
	commit    logpos.Offset
	options   TermOptions
	prefix    string
	chunkSize int
}

// build returns the chunks of a snapshot of a store of its own.
func (o confSnap) build(t *testing.T) []*replicationpb.SnapshotChunk {
	t.Helper()
	if o.prefix == "" {
		o.prefix = "snap"
	}
	if o.chunkSize == 0 {
		o.chunkSize = 512
	}
	src, err := store.Open(t.TempDir(), store.Options{SnapshotChunkSize: o.chunkSize})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if o.storeTerm != logpos.NoTerm {
		if err := src.SetTerm(o.storeTerm, o.options); err != nil {
			t.Fatal(err)
		}
	}
	for off := logpos.Offset(0); off <= o.commit; off++ {
		term := max(o.storeTerm, 0)
		if o.entryTerm != 0 {
			term = o.entryTerm
		}
		e := logpos.Entry{Term: term, Offset: off, Value: kvPut(fmt.Sprintf("%s%d", o.prefix, off), fmt.Sprintf("v%d", off))}
		if err := src.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	out := snapshotChunks(t, sn, o.chunkTerm)
	if len(out) < 3 {
		t.Fatalf("snapshot of %d chunks", len(out))
	}
	return out
}

// gatedStream delivers chunks; before delivering chunk number gateAt (if
// gate is set) it waits for gate. After the chunks it returns err or EOF.
type gatedStream struct {
	chunks []*replicationpb.SnapshotChunk
	gate   chan struct{}
	gateAt int
	err    error
	n      int
	// firstErr is returned by the very first Recv.
	firstErr error
}

func (s *gatedStream) Context() context.Context { return context.Background() }
func (s *gatedStream) Recv() (*replicationpb.SnapshotChunk, error) {
	if s.n == 0 && s.firstErr != nil {
		s.n++
		return nil, s.firstErr
	}
	if s.gate != nil && s.n == s.gateAt {
		<-s.gate
	}
	if s.n >= len(s.chunks) {
		s.n++
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	s.n++
	return s.chunks[s.n-1], nil
}

func cloneChunks(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
	out := make([]*replicationpb.SnapshotChunk, len(cs))
	for i, c := range cs {
		out[i] = &replicationpb.SnapshotChunk{Term: c.Term, Name: c.Name, Content: slices.Clone(c.Content), ChunkIndex: c.ChunkIndex, ChunkCount: c.ChunkCount}
	}
	return out
}

// confObs is everything a failed install must leave as it was.
type confObs struct {
	St         Status
	Advertised int64
	Base       int64
	StoreTerm  logpos.Term
	Opts       TermOptions
	StoreCmt   logpos.EntryID
	Log        []logpos.Entry
	KV         map[string]string
	WAL        map[string]int64
	Reset      bool
}

func confObserve(t *testing.T, f *Follower, dir string, fs vfs.FS) confObs {
	t.Helper()
	o := confObs{St: f.Status(), Advertised: f.advertised.Load(), Base: f.base.Load(),
		StoreTerm: f.store().Term(), Opts: f.store().TermOptions(), StoreCmt: f.store().Commit(), KV: map[string]string{}, WAL: map[string]int64{}}
	_, o.Reset = f.store().LogResetPending()
	var err error
	o.Log, err = mdlReadLog(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store().Scan(nil, nil, func(k, v []byte) bool { o.KV[string(k)] = string(v); return true }); err != nil {
		t.Fatal(err)
	}
	names, _ := fs.List(fs.PathJoin(dir, "wal"))
	for _, n := range names {
		if strings.HasPrefix(n, "next-") || strings.Contains(n, ".idx") {
			continue // the log's background work (a prepared segment, an index)
		}
		if st, err := fs.Stat(fs.PathJoin(dir, "wal", n)); err == nil {
			o.WAL[n] = st.Size()
		}
	}
	return o
}

func (a confObs) diff(b confObs) string {
	var d []string
	if a.St != b.St {
		d = append(d, fmt.Sprintf("status %+v -> %+v", a.St, b.St))
	}
	if a.Advertised != b.Advertised {
		d = append(d, fmt.Sprintf("advertised %d -> %d", a.Advertised, b.Advertised))
	}
	if a.Base != b.Base {
		d = append(d, fmt.Sprintf("base %d -> %d", a.Base, b.Base))
	}
	if a.StoreTerm != b.StoreTerm || a.Opts != b.Opts || a.StoreCmt != b.StoreCmt || a.Reset != b.Reset {
		d = append(d, fmt.Sprintf("store term/opts/commit/reset %d %+v %v %v -> %d %+v %v %v", a.StoreTerm, a.Opts, a.StoreCmt, a.Reset, b.StoreTerm, b.Opts, b.StoreCmt, b.Reset))
	}
	if len(a.Log) != len(b.Log) {
		d = append(d, fmt.Sprintf("log %d entries -> %d", len(a.Log), len(b.Log)))
	} else {
		for i := range a.Log {
			if a.Log[i].ID() != b.Log[i].ID() || string(a.Log[i].Value) != string(b.Log[i].Value) {
				d = append(d, fmt.Sprintf("log entry %d changed", i))
			}
		}
	}
	if !maps.Equal(a.KV, b.KV) {
		d = append(d, fmt.Sprintf("kv %v -> %v", a.KV, b.KV))
	}
	if !maps.Equal(a.WAL, b.WAL) {
		d = append(d, fmt.Sprintf("wal files %v -> %v", a.WAL, b.WAL))
	}
	return strings.Join(d, "; ")
}

// stagingLeft lists what an install left in the store directory.
func stagingLeft(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	sdir := fs.PathJoin(dir, "store")
	live := ""
	if f, err := fs.Open(fs.PathJoin(sdir, "CURRENT")); err == nil {
		b, _ := io.ReadAll(f)
		f.Close()
		live = strings.TrimSpace(string(b))
	}
	names, _ := fs.List(sdir)
	var left []string
	for _, n := range names {
		if strings.HasPrefix(n, "db-") && n != live || strings.HasPrefix(n, "checkpoint-") || n == "CURRENT.tmp" {
			left = append(left, n)
		}
	}
	return left
}

// stream helpers

type confStream struct {
	s   *fakeStream
	res chan error
}

func confAttach(t *testing.T, f *Follower) *confStream {
	t.Helper()
	s := newFakeStream()
	res := make(chan error, 1)
	go func() { res <- f.Replicate(s); s.cancel() }()
	return &confStream{s: s, res: res}
}

func (a *confStream) send(t *testing.T, ap *replicationpb.Append) {
	t.Helper()
	timer := time.NewTimer(time.Minute) // only keeps a regression from hanging the tests
	defer timer.Stop()
	select {
	case a.s.in <- ap:
	case err := <-a.res:
		a.res <- err
		t.Fatalf("stream ended before an append was taken: %v", err)
	case <-timer.C:
		t.Fatalf("append %d not taken within a minute", ap.GetEntry().GetOffset())
	}
}

func (a *confStream) ack(t *testing.T) int64 {
	t.Helper()
	select {
	case o := <-a.s.acks:
		return o
	case err := <-a.res:
		a.res <- err
		// acks sent before it ended are still buffered
		select {
		case o := <-a.s.acks:
			return o
		default:
		}
		t.Fatalf("stream ended waiting for an ack: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("no ack within 30s")
	}
	return 0
}

// end waits for the stream to end, and returns why.
func (a *confStream) end(t *testing.T) error {
	t.Helper()
	return within(t, a.res)
}

func (a *confStream) finish(t *testing.T) error {
	t.Helper()
	close(a.s.in)
	return a.end(t)
}

func entryAppend(term logpos.Term, off, commit int64, key, val string) *replicationpb.Append {
	return &replicationpb.Append{Term: int64(term), CommitOffset: commit,
		Entry: &replicationpb.LogEntry{Term: int64(term), Offset: off, Value: kvPut(key, val)}}
}

// fill replicates entries from..to (per-entry acks) with commit
// advertised, and half-closes.
func confFill(t *testing.T, f *Follower, term logpos.Term, from, to, commit int64) {
	t.Helper()
	a := confAttach(t, f)
	for o := from; o <= to; o++ {
		a.send(t, entryAppend(term, o, commit, fmt.Sprintf("k%d", o), fmt.Sprintf("t%d", term)))
	}
	for o := from; o <= to; o++ {
		if got := a.ack(t); got != o {
			t.Fatalf("ack %d want %d", got, o)
		}
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
}

func waitApplied(t *testing.T, f *Follower, o logpos.Offset) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := f.WaitApplied(ctx, o); err != nil {
		t.Fatalf("WaitApplied(%d): %v (status %+v)", o, err, f.Status())
	}
	f.applier.mu.Lock()
	//lint:ignore SA2001 a barrier: the applier finished its batch
	f.applier.mu.Unlock()
}

// bounded returns a context that ends a minute from now or when the
// test ends. The deadline only keeps a regression from hanging the
// package's tests (and hiding the failures of the tests after it).
func bounded(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitInstallsStarted waits until n installs attached.
func waitInstallsStarted(t *testing.T, f *Follower, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for f.stats.installsStarted.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("install never attached")
		}
		runtime.Gosched()
	}
}

var confOpts = TermOptions{EnableNotifications: false, KeySorting: store.KeySortingNatural}
var confSnapOpts = TermOptions{EnableNotifications: true, KeySorting: store.KeySortingHierarchical}

// populated: a follower at term 2 with entries 0..5, commit 3, Follower.
func confPopulated(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := newHarness(t, cfg)
	if _, err := h.f.NewTerm(2, confOpts); err != nil {
		t.Fatal(err)
	}
	confFill(t, h.f, 2, 0, 5, 3)
	waitApplied(t, h.f, 3)
	if st := h.f.Status(); st.State != StateFollower || st.Term != 2 || st.Head != 5 || st.Commit != 3 {
		t.Fatalf("setup: %+v", st)
	}
	return h
}

// confInstallSetup opens a follower with cfg, fenced at term 2 with
// entries 0..5 and commit 3 applied, and builds a snapshot of term 2 at
// commit 30 for it. The follower closes with the test.
func confInstallSetup(t *testing.T, cfg Config) (*Follower, []*replicationpb.SnapshotChunk) {
	t.Helper()
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if _, err := f.NewTerm(2, confOpts); err != nil {
		t.Fatal(err)
	}
	confFill(t, f, 2, 0, 5, 3)
	waitApplied(t, f, 3)
	return f, confSnap{chunkTerm: 2, storeTerm: 2, commit: 30, options: confSnapOpts, prefix: "s"}.build(t)
}

// ---------------------------------------------------------------------------
// §2.4 check order

func TestConformanceInstallCheckOrder(t *testing.T) {
	good := confSnap{chunkTerm: 2, storeTerm: 2, commit: 4, options: confSnapOpts}.build(t)
	wrongTerm := cloneChunks(good)
	for _, c := range wrongTerm {
		c.Term = 7
	}
	badNameWrongTerm := cloneChunks(wrongTerm)
	badNameWrongTerm[0].Name = "../x"

	t.Run("stream attached beats empty and wrong term", func(t *testing.T) {
		h := confPopulated(t, Config{})
		a := confAttach(t, h.f)
		a.send(t, &replicationpb.Append{Term: 2, CommitOffset: 3}) // make sure it is attached
		for name, s := range map[string]SnapshotStream{
			"empty":      &gatedStream{},
			"wrong term": &gatedStream{chunks: cloneChunks(wrongTerm)},
			"good":       &gatedStream{chunks: cloneChunks(good)},
		} {
			before := confObserve(t, h.f, h.dir, h.fs)
			if _, err := h.f.InstallSnapshot(s); !errors.Is(err, ErrConflict) {
				t.Errorf("%s with a stream attached: %v, want ErrConflict", name, err)
			}
			if d := before.diff(confObserve(t, h.f, h.dir, h.fs)); d != "" {
				t.Errorf("%s: refused install changed: %s", name, d)
			}
		}
		if err := a.finish(t); err != nil {
			t.Fatal(err)
		}
		if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
			t.Errorf("staging left: %v", l)
		}
	})

	t.Run("install attached beats empty, wrong term and a failed first Recv", func(t *testing.T) {
		h := confPopulated(t, Config{})
		gate := make(chan struct{})
		first := &gatedStream{chunks: cloneChunks(good), gate: gate, gateAt: 1}
		res := make(chan error, 1)
		go func() { _, err := h.f.InstallSnapshot(first); res <- err }()
		waitInstallsStarted(t, h.f, 1)
		for name, s := range map[string]SnapshotStream{
			"empty":            &gatedStream{},
			"wrong term":       &gatedStream{chunks: cloneChunks(wrongTerm)},
			"first Recv fails": &gatedStream{firstErr: errTransport},
		} {
			if _, err := h.f.InstallSnapshot(s); !errors.Is(err, ErrConflict) {
				t.Errorf("%s with an install attached: %v, want ErrConflict", name, err)
			}
		}
		if _, err := h.f.Truncate(2, &logpos.EntryID{Offset: 5}); !errors.Is(err, ErrConflict) {
			// Follower: Truncate's conflict check comes before the status check.
			t.Errorf("Truncate with an install attached: %v, want ErrConflict", err)
		}
		if err := h.f.Replicate(newFakeStream()); !errors.Is(err, ErrConflict) {
			t.Errorf("Replicate with an install attached: %v, want ErrConflict", err)
		}
		close(gate)
		if err := within(t, res); err != nil {
			t.Fatalf("the attached install: %v", err)
		}
	})

	t.Run("empty before term", func(t *testing.T) {
		h := newHarness(t, Config{})
		if _, err := h.f.InstallSnapshot(&gatedStream{}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "empty snapshot") {
			t.Errorf("empty on NotMember: %v, want ErrInvalidArgument saying \"empty snapshot\"", err)
		}
		if st := h.f.Status(); st.State != StateNotMember || st.Term != -1 {
			t.Errorf("after an empty snapshot: %+v", st)
		}
	})

	t.Run("term before names", func(t *testing.T) {
		h := confPopulated(t, Config{})
		before := confObserve(t, h.f, h.dir, h.fs)
		if _, err := h.f.InstallSnapshot(&gatedStream{chunks: cloneChunks(badNameWrongTerm)}); !errors.Is(err, ErrInvalidTerm) {
			t.Errorf("bad name + wrong term: %v, want ErrInvalidTerm", err)
		}
		if d := before.diff(confObserve(t, h.f, h.dir, h.fs)); d != "" {
			t.Errorf("changed: %s", d)
		}
	})

	t.Run("closed", func(t *testing.T) {
		h := confPopulated(t, Config{})
		_ = h.f.Close()
		for name, s := range map[string]SnapshotStream{
			"empty":      &gatedStream{},
			"wrong term": &gatedStream{chunks: cloneChunks(wrongTerm)},
			"good":       &gatedStream{chunks: cloneChunks(good)},
		} {
			if _, err := h.f.InstallSnapshot(s); !errors.Is(err, ErrClosed) || errors.Is(err, ErrStreamEnded) {
				t.Errorf("%s on a closed follower: %v, want ErrClosed (and no stream ended)", name, err)
			}
		}
	})
}

// TestConformanceInstallFirstRecvFailsCheckOrder: the first Recv of the stream
// fails (transport). SPEC §2: "Every operation on a Closed follower
// returns ErrClosed", and §2.4 lists the conflict check first.
func TestConformanceInstallFirstRecvFailsCheckOrder(t *testing.T) {
	t.Run("closed", func(t *testing.T) {
		h := confPopulated(t, Config{})
		_ = h.f.Close()
		_, err := h.f.InstallSnapshot(&gatedStream{firstErr: errTransport})
		if !errors.Is(err, ErrClosed) {
			t.Errorf("closed follower, first Recv fails: %v, want ErrClosed", err)
		}
	})
	t.Run("conflict", func(t *testing.T) {
		h := confPopulated(t, Config{})
		a := confAttach(t, h.f)
		a.send(t, &replicationpb.Append{Term: 2, CommitOffset: 3})
		_, err := h.f.InstallSnapshot(&gatedStream{firstErr: errTransport})
		if !errors.Is(err, ErrConflict) {
			t.Errorf("stream attached, first Recv fails: %v, want ErrConflict", err)
		}
		if err := a.finish(t); err != nil {
			t.Fatal(err)
		}
	})
}

// ---------------------------------------------------------------------------
// §2.4 term rules and commit-point effects

func TestConformanceInstallTermRules(t *testing.T) {
	type tc struct {
		name      string
		fence     logpos.Term // NoTerm: stay NotMember
		chunkTerm logpos.Term
		storeTerm logpos.Term
		later     int64 // when != 0, the last chunk's term
		want      error
		wantTerm  logpos.Term
	}
	cases := []tc{
		{name: "notmember chunk 0", fence: -1, chunkTerm: 0, storeTerm: 0, wantTerm: 0},
		{name: "notmember chunk 5 store 2", fence: -1, chunkTerm: 5, storeTerm: 2, wantTerm: 5},
		{name: "notmember chunk 2 store 5", fence: -1, chunkTerm: 2, storeTerm: 5, wantTerm: 5},
		{name: "notmember chunk -1", fence: -1, chunkTerm: -1, storeTerm: 2, want: ErrInvalidTerm},
		{name: "notmember chunk -7", fence: -1, chunkTerm: -7, storeTerm: 2, want: ErrInvalidTerm},
		{name: "fenced 0 chunk 0", fence: 0, chunkTerm: 0, storeTerm: 0, wantTerm: 0},
		{name: "fenced 0 chunk -1", fence: 0, chunkTerm: -1, storeTerm: 0, want: ErrInvalidTerm},
		{name: "fenced 4 chunk 3", fence: 4, chunkTerm: 3, storeTerm: 3, want: ErrInvalidTerm},
		{name: "fenced 4 chunk 5", fence: 4, chunkTerm: 5, storeTerm: 5, want: ErrInvalidTerm},
		{name: "fenced 4 chunk 4 store 1", fence: 4, chunkTerm: 4, storeTerm: 1, wantTerm: 4},
		{name: "fenced 4 chunk 4 store 9", fence: 4, chunkTerm: 4, storeTerm: 9, wantTerm: 9},
		{name: "fenced 4 later chunk 5", fence: 4, chunkTerm: 4, storeTerm: 4, later: 5, want: ErrInvalidArgument},
		{name: "fenced 4 later chunk -1", fence: 4, chunkTerm: 4, storeTerm: 4, later: -1, want: ErrInvalidArgument},
		{name: "notmember later chunk other", fence: -1, chunkTerm: 3, storeTerm: 3, later: 4, want: ErrInvalidArgument},
		{name: "store without term", fence: 4, chunkTerm: 4, storeTerm: logpos.NoTerm, want: ErrInvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			if c.fence != logpos.NoTerm {
				if _, err := h.f.NewTerm(c.fence, confOpts); err != nil {
					t.Fatal(err)
				}
			}
			chunks := confSnap{chunkTerm: c.chunkTerm, storeTerm: c.storeTerm, commit: 6, options: confSnapOpts}.build(t)
			if c.later != 0 {
				chunks[len(chunks)-1].Term = c.later
			}
			before := confObserve(t, h.f, h.dir, h.fs)
			off, err := h.f.InstallSnapshot(&gatedStream{chunks: chunks})
			if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
				t.Errorf("staging left: %v", l)
			}
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Fatalf("InstallSnapshot: %v, want %v", err, c.want)
				}
				if d := before.diff(confObserve(t, h.f, h.dir, h.fs)); d != "" {
					t.Errorf("failed install changed: %s", d)
				}
				return
			}
			if err != nil || off != 6 {
				t.Fatalf("InstallSnapshot: %d %v", off, err)
			}
			st := h.f.Status()
			if st.Term != c.wantTerm || st.State != StateFollower || st.Head != 6 || st.Commit != 6 {
				t.Errorf("after install: %+v, want term %d Follower head=commit=6", st, c.wantTerm)
			}
			if adv := h.f.advertised.Load(); adv != 6 {
				t.Errorf("advertised %d, want 6", adv)
			}
			if o := h.f.store().TermOptions(); o != confSnapOpts {
				t.Errorf("options %+v, want the snapshot's %+v", o, confSnapOpts)
			}
			// persisted
			_ = h.f.Close()
			h.open()
			st = h.f.Status()
			if st.Term != c.wantTerm || st.State != StateFenced || st.Head != 6 || st.Commit != 6 {
				t.Errorf("after reopen: %+v, want term %d Fenced head=commit=6", st, c.wantTerm)
			}
			if o := h.f.store().TermOptions(); o != confSnapOpts {
				t.Errorf("options after reopen %+v, want %+v", o, confSnapOpts)
			}
		})
	}
}

// TestConformanceInstallCommitEffects: on a follower with a log and a commit,
// the install replaces store and log; head = commit = advertised = the
// snapshot's commit, both when above and below the current positions.
func TestConformanceInstallCommitEffects(t *testing.T) {
	for _, point := range []logpos.Offset{20, 4, 1} {
		t.Run(fmt.Sprint(point), func(t *testing.T) {
			h := confPopulated(t, Config{})
			// advertise more than the follower has
			a := confAttach(t, h.f)
			a.send(t, &replicationpb.Append{Term: 2, CommitOffset: 50})
			if err := a.finish(t); err != nil {
				t.Fatal(err)
			}
			waitApplied(t, h.f, 5)
			chunks := confSnap{chunkTerm: 2, storeTerm: 2, commit: point, options: confSnapOpts, prefix: "s"}.build(t)
			off, err := h.f.InstallSnapshot(&gatedStream{chunks: chunks})
			if err != nil || off != point {
				t.Fatalf("InstallSnapshot: %d %v", off, err)
			}
			st := h.f.Status()
			if st.Head != point || st.Commit != point || st.State != StateFollower || st.Term != 2 {
				t.Errorf("status %+v", st)
			}
			if adv := h.f.advertised.Load(); adv != int64(point) {
				t.Errorf("advertised %d, want %d", adv, point)
			}
			if l, _ := mdlReadLog(h.f); len(l) != 0 {
				t.Errorf("log holds %d entries after the install", len(l))
			}
			if _, pending := h.f.store().LogResetPending(); pending {
				t.Errorf("log reset still pending")
			}
			if _, err := h.f.Get([]byte("k0")); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("an old key survived: %v", err)
			}
			if v, err := h.f.Get([]byte(fmt.Sprintf("s%d", point))); err != nil || string(v) != fmt.Sprintf("v%d", point) {
				t.Errorf("snapshot key: %q %v", v, err)
			}
			if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
				t.Errorf("staging left: %v", l)
			}
			// NewTerm's reply is the snapshot point when the log is empty.
			head, err := h.f.NewTerm(3, TermOptions{})
			if err != nil || head.Offset != point {
				t.Errorf("NewTerm after install: %v %v", head, err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// §2.4 failed installs leave everything as it was

type confFault struct {
	name   string
	mangle func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk
	err    error // transport error at the end
	cfg    func(*Config)
	ioFail string // fragment made to fail during the transfer
	want   error  // nil: any error
}

func confFaults() []confFault {
	var fs []confFault
	for _, n := range []string{"", "../escape", "..", ".", ".hidden", "a/b", "a\\b", strings.Repeat("a", 256), "-x", "_x", "a b", "é", "a\x00", "a\n", "/abs"} {
		n := n
		fs = append(fs, confFault{name: fmt.Sprintf("bad name %q first", n), mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			// rename every chunk of the first file
			old := cs[0].Name
			for _, c := range cs {
				if c.Name == old {
					c.Name = n
				}
			}
			return cs
		}, want: ErrInvalidArgument})
		fs = append(fs, confFault{name: fmt.Sprintf("bad name %q last", n), mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			old := cs[len(cs)-1].Name
			for _, c := range cs {
				if c.Name == old {
					c.Name = n
				}
			}
			return cs
		}, want: ErrInvalidArgument})
	}
	fs = append(fs,
		confFault{name: "truncated", mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk { return cs[:len(cs)-1] }, want: ErrInvalidArgument},
		confFault{name: "later chunk term", mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			cs[len(cs)-1].Term++
			return cs
		}, want: ErrInvalidArgument},
		confFault{name: "not a store", mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			for _, c := range cs {
				c.Name = "junk-" + c.Name
			}
			return cs
		}, want: ErrInvalidArgument},
		confFault{name: "interleaved", mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			// find a multi-chunk file; move its chunk 1 after the next file's first chunk
			for i := 0; i+1 < len(cs); i++ {
				if cs[i].ChunkIndex == 0 && cs[i].ChunkCount >= 2 {
					j := i + int(cs[i].ChunkCount)
					if j < len(cs) {
						c1 := cs[i+1]
						rest := slices.Clone(cs)
						rest = slices.Delete(rest, i+1, i+2)
						rest = slices.Insert(rest, j, c1)
						return rest
					}
				}
			}
			panic("no multi-chunk file followed by another")
		}, want: ErrInvalidArgument},
		confFault{name: "file twice", mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			c := cs[len(cs)-1]
			if c.ChunkCount != 1 {
				panic("last file multi-chunk")
			}
			d := &replicationpb.SnapshotChunk{Term: c.Term, Name: c.Name, Content: c.Content, ChunkIndex: 0, ChunkCount: 1}
			return append(cs, d)
		}, want: ErrInvalidArgument},
		confFault{name: "chunk index skipped", mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			// a file of 3 chunks or more whose chunk 1 says it is chunk 2
			for i, c := range cs {
				if c.ChunkIndex == 0 && c.ChunkCount >= 3 {
					cs[i+1].ChunkIndex = 2
					return cs
				}
			}
			panic("no file of 3 chunks or more")
		}, want: ErrInvalidArgument},
		confFault{name: "chunk count changed", mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			// a later chunk of a file says another count than its chunk 0
			for i, c := range cs {
				if c.ChunkIndex == 0 && c.ChunkCount >= 2 {
					cs[i+1].ChunkCount++
					return cs
				}
			}
			panic("no multi-chunk file")
		}, want: ErrInvalidArgument},
		confFault{name: "count zero", mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			cs[len(cs)-1].ChunkCount, cs[len(cs)-1].ChunkIndex = 0, 0
			return cs
		}, want: ErrInvalidArgument},
		confFault{name: "index beyond count", mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			cs[len(cs)-1].ChunkIndex = cs[len(cs)-1].ChunkCount
			return cs
		}, want: ErrInvalidArgument},
		confFault{name: "corrupt content", mangle: func(cs []*replicationpb.SnapshotChunk) []*replicationpb.SnapshotChunk {
			for _, c := range cs {
				if strings.HasPrefix(c.Name, "MANIFEST") {
					for i := range c.Content {
						c.Content[i] ^= 0xff
					}
				}
			}
			return cs
		}, want: ErrInvalidArgument},
		confFault{name: "too large", cfg: func(c *Config) { c.MaxSnapshotSize = 1000 }, want: ErrInvalidArgument},
		confFault{name: "transport", err: errTransport},
		confFault{name: "io staging", ioFail: "/store/db-", want: ErrUnavailable},
		confFault{name: "io store", ioFail: "/store/", want: ErrUnavailable},
	)
	return fs
}

func TestConformanceInstallFailureLeavesEverything(t *testing.T) {
	base := confSnap{chunkTerm: 2, storeTerm: 2, commit: 30, options: confSnapOpts, prefix: "s"}.build(t)
	for _, fl := range confFaults() {
		t.Run(fl.name, func(t *testing.T) {
			cfg := Config{}
			if fl.cfg != nil {
				fl.cfg(&cfg)
			}
			h := confPopulated(t, cfg)
			chunks := cloneChunks(base)
			if fl.mangle != nil {
				chunks = fl.mangle(chunks)
			}
			before := confObserve(t, h.f, h.dir, h.fs)
			s := &gatedStream{chunks: chunks, err: fl.err}
			if fl.ioFail != "" {
				s.gate, s.gateAt = make(chan struct{}), 1
				go func() {
					waitInstallsStarted(t, h.f, 1)
					h.fs.fail(fl.ioFail)
					close(s.gate)
				}()
			}
			_, err := h.f.InstallSnapshot(s)
			h.fs.heal()
			if err == nil || (fl.want != nil && !errors.Is(err, fl.want)) {
				t.Fatalf("InstallSnapshot: %v, want %v", err, fl.want)
			}
			after := confObserve(t, h.f, h.dir, h.fs)
			if d := before.diff(after); d != "" {
				t.Errorf("failed install (%v) changed: %s", err, d)
			}
			if fl.ioFail != "" {
				// The disk refused removals too: the staged bytes go
				// with the next NewTerm.
				if _, err := h.f.NewTerm(2, confOpts); err != nil {
					t.Fatal(err)
				}
			}
			if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
				t.Errorf("staging left: %v", l)
			}
			// The follower still works: the stream continues at 6.
			a := confAttach(t, h.f)
			a.send(t, entryAppend(2, 6, 6, "k6", "x"))
			if o := a.ack(t); o != 6 {
				t.Errorf("ack %d", o)
			}
			if err := a.finish(t); err != nil {
				t.Errorf("stream after a failed install: %v", err)
			}
			waitApplied(t, h.f, 6)
		})
	}
}

// TestConformanceInstallNewTermDuringTransfer: whatever else is wrong, an
// install during whose transfer NewTerm ran fails with ErrInvalidTerm,
// and leaves everything as NewTerm left it.
func TestConformanceInstallNewTermDuringTransfer(t *testing.T) {
	base := confSnap{chunkTerm: 2, storeTerm: 2, commit: 30, options: confSnapOpts, prefix: "s"}.build(t)
	faults := append([]confFault{{name: "none"}}, confFaults()...)
	for _, newTerm := range []logpos.Term{2, 3} {
		for _, fl := range faults {
			if strings.HasPrefix(fl.name, "bad name") && !strings.HasSuffix(fl.name, "last") {
				continue // the first chunk goes in before the hold
			}
			t.Run(fmt.Sprintf("newterm %d %s", newTerm, fl.name), func(t *testing.T) {
				cfg := Config{}
				if fl.cfg != nil {
					fl.cfg(&cfg)
				}
				if cfg.MaxSnapshotSize > 0 {
					// Too large after the first chunk, which goes in
					// before the hold (a file counts at least
					// MinCountedFileSize).
					cfg.MaxSnapshotSize = max(int64(len(base[0].Content)), store.MinCountedFileSize)
					files := map[string]int64{}
					for _, c := range base {
						files[c.Name] += int64(len(c.Content))
					}
					var counted int64
					for _, n := range files {
						counted += max(n, store.MinCountedFileSize)
					}
					if counted <= cfg.MaxSnapshotSize {
						t.Fatalf("the snapshot (%d bytes as counted) fits the limit of %d", counted, cfg.MaxSnapshotSize)
					}
				}
				h := confPopulated(t, cfg)
				chunks := cloneChunks(base)
				if fl.mangle != nil {
					chunks = fl.mangle(chunks)
				}
				s := &gatedStream{chunks: chunks, err: fl.err, gate: make(chan struct{}), gateAt: 1}
				res := make(chan error, 1)
				go func() { _, err := h.f.InstallSnapshot(s); res <- err }()
				waitInstallsStarted(t, h.f, 1)
				if _, err := h.f.NewTerm(newTerm, TermOptions{}); err != nil {
					t.Fatal(err)
				}
				before := confObserve(t, h.f, h.dir, h.fs)
				if fl.ioFail != "" {
					h.fs.fail(fl.ioFail)
				}
				close(s.gate)
				err := within(t, res)
				h.fs.heal()
				if !errors.Is(err, ErrInvalidTerm) {
					t.Fatalf("install abandoned by NewTerm: %v, want ErrInvalidTerm", err)
				}
				if d := before.diff(confObserve(t, h.f, h.dir, h.fs)); d != "" {
					t.Errorf("abandoned install changed: %s", d)
				}
				if st := h.f.Status(); st.State != StateFenced || st.Term != newTerm {
					t.Errorf("status %+v", st)
				}
				if fl.ioFail != "" {
					// The disk refused removals too: the staged bytes go
					// with the next NewTerm.
					if _, err := h.f.NewTerm(newTerm, TermOptions{}); err != nil {
						t.Fatal(err)
					}
				}
				if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
					t.Errorf("staging left: %v", l)
				}
			})
		}
	}
}

// TestConformanceInstallMarkerSyncFailure: the directory sync after the
// marker rename fails once. §2.4: "an I/O failure → ErrUnavailable; ...
// the follower is exactly as it was", before and after a restart, and it
// keeps working.
func TestConformanceInstallMarkerSyncFailure(t *testing.T) {
	var armed, renamed atomic.Bool
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !armed.Load() {
			return nil
		}
		if op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, "CURRENT.tmp") {
			renamed.Store(true)
			return nil
		}
		if op.Kind == errorfs.OpFileSync && renamed.Load() && filepath.Clean(op.Path) == storeDir {
			armed.Store(false)
			return errInjected
		}
		return nil
	}))
	cfg := Config{Dir: dir, FS: efs, ApplyRetryMin: time.Millisecond, ApplyRetryMax: 5 * time.Millisecond}
	f, chunks := confInstallSetup(t, cfg)
	before := confObserve(t, f, dir, efs)
	armed.Store(true)
	_, err := f.InstallSnapshot(&gatedStream{chunks: chunks})
	armed.Store(false)
	if !renamed.Load() {
		t.Fatal("the install never renamed its marker")
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("install with a failing marker sync: %v, want ErrUnavailable", err)
	}
	if d := before.diff(confObserve(t, f, dir, efs)); d != "" {
		t.Fatalf("the failed install changed: %s", d)
	}
	if _, err := f.NewTerm(3, confOpts); err != nil {
		t.Fatalf("NewTerm after the failed install: %v", err)
	}
	if v, err := f.Get([]byte("k0")); err != nil || v == nil {
		t.Fatalf("Get after the failed install: %q, %v", v, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := Open(cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer g.Close()
	if st := g.Status(); st.State != StateFenced || st.Term != 3 || st.Commit != before.St.Commit || st.Head != before.St.Head {
		t.Fatalf("reopened %+v, want Fenced at term 3 with head %d and commit %d", st, before.St.Head, before.St.Commit)
	}
}

// ---------------------------------------------------------------------------
// §2.3 duplicates after an install; §5 CRC seeding

func confInstalled(t *testing.T, point logpos.Offset) *harness {
	t.Helper()
	h := confPopulated(t, Config{})
	chunks := confSnap{chunkTerm: 2, storeTerm: 2, commit: point, options: confSnapOpts, prefix: "s"}.build(t)
	if off, err := h.f.InstallSnapshot(&gatedStream{chunks: chunks}); err != nil || off != point {
		t.Fatalf("install: %d %v", off, err)
	}
	return h
}

func TestConformanceDuplicatesAfterInstall(t *testing.T) {
	for _, reopen := range []bool{false, true} {
		t.Run(fmt.Sprintf("per-entry reopen=%v", reopen), func(t *testing.T) {
			h := confInstalled(t, 20)
			if reopen {
				_ = h.f.Close()
				h.open()
			}
			a := confAttach(t, h.f)
			for _, o := range []int64{0, 7, 20, 19} {
				a.send(t, entryAppend(2, o, 20, "d", "d"))
			}
			for _, o := range []int64{0, 7, 20, 19} {
				if got := a.ack(t); got != o {
					t.Errorf("ack %d, want %d", got, o)
				}
			}
			a.send(t, entryAppend(2, 21, 20, "n", "n"))
			a.send(t, entryAppend(2, 3, 20, "d", "d"))
			for _, o := range []int64{21, 3} {
				if got := a.ack(t); got != o {
					t.Errorf("ack %d, want %d", got, o)
				}
			}
			if st := h.f.Status(); st.State != StateFollower || st.Head != 21 {
				t.Errorf("status %+v", st)
			}
			if err := a.finish(t); err != nil {
				t.Fatal(err)
			}
			if len(a.s.acks) > 0 {
				t.Errorf("extra ack %d", <-a.s.acks)
			}
			// The duplicates wrote nothing: the log holds only 21.
			l, _ := mdlReadLog(h.f)
			if len(l) != 1 || l[0].Offset != 21 {
				t.Errorf("log %v", l)
			}
		})
		t.Run(fmt.Sprintf("cumulative reopen=%v", reopen), func(t *testing.T) {
			h := confInstalled(t, 20)
			if reopen {
				_ = h.f.Close()
				h.open()
			}
			a := confAttach(t, h.f)
			ap := entryAppend(2, 5, 20, "d", "d")
			ap.CumulativeAcksSupported = true
			a.send(t, ap)
			if got := a.ack(t); got != 20 {
				t.Errorf("cumulative ack for a duplicate below the snapshot point: %d, want 20", got)
			}
			a.send(t, entryAppend(2, 21, 20, "n", "n"))
			if got := a.ack(t); got != 21 {
				t.Errorf("ack %d, want 21", got)
			}
			a.send(t, entryAppend(2, 2, 20, "d", "d"))
			if got := a.ack(t); got != 21 {
				t.Errorf("ack %d, want 21", got)
			}
			if err := a.finish(t); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("gap after the snapshot point", func(t *testing.T) {
		h := confInstalled(t, 20)
		a := confAttach(t, h.f)
		a.send(t, entryAppend(2, 22, 20, "g", "g"))
		if err := a.end(t); !errors.Is(err, ErrGap) {
			t.Errorf("entry 22 after point 20: %v, want ErrGap", err)
		}
		if st := h.f.Status(); st.Head != 20 {
			t.Errorf("status %+v", st)
		}
	})
	t.Run("fenced after install: duplicate moves to follower", func(t *testing.T) {
		h := confInstalled(t, 20)
		if _, err := h.f.NewTerm(3, TermOptions{}); err != nil {
			t.Fatal(err)
		}
		a := confAttach(t, h.f)
		a.send(t, entryAppend(3, 4, 20, "d", "d"))
		if got := a.ack(t); got != 4 {
			t.Errorf("ack %d", got)
		}
		if st := h.f.Status(); st.State != StateFollower {
			t.Errorf("status %+v", st)
		}
		if err := a.finish(t); err != nil {
			t.Fatal(err)
		}
	})
}

func confChain(prev uint32, e logpos.Entry) uint32 {
	return crc32.Update(prev, crc32.MakeTable(crc32.Castagnoli), wal.EncodeEntry(nil, e))
}

func TestConformanceCRCSeedAfterSnapshot(t *testing.T) {
	h := confInstalled(t, 20)
	seed := uint32(0xdeadbeef)
	a := confAttach(t, h.f)
	// a duplicate carrying a CRC first: must not seed anything
	dup := entryAppend(2, 20, 20, "d", "d")
	other := uint32(1)
	dup.PreviousEntryCrc = &other
	a.send(t, dup)
	e21 := entryAppend(2, 21, 20, "a", "1")
	e21.Entry.Timestamp = 12345
	e21.PreviousEntryCrc = &seed
	a.send(t, e21)
	e22 := entryAppend(2, 22, 20, "b", "2")
	wrong := uint32(42)
	e22.PreviousEntryCrc = &wrong // not the first: ignored
	a.send(t, e22)
	for _, o := range []int64{20, 21, 22} {
		if got := a.ack(t); got != o {
			t.Fatalf("ack %d want %d", got, o)
		}
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	le21 := logpos.Entry{Term: 2, Offset: 21, Value: e21.Entry.Value, Timestamp: 12345}
	le22 := logpos.Entry{Term: 2, Offset: 22, Value: e22.Entry.Value}
	want := confChain(confChain(seed, le21), le22)
	if got := h.f.log.LastCRC(); got != want {
		t.Errorf("chain after the snapshot: %08x, want %08x", got, want)
	}
	_ = h.f.Close()
	h.open()
	if got := h.f.log.LastCRC(); got != want {
		t.Errorf("chain after reopen: %08x, want %08x", got, want)
	}
	if l, err := mdlReadLog(h.f); err != nil || len(l) != 2 {
		t.Errorf("log after reopen: %v %v", l, err)
	}
	// Truncate back to the snapshot point empties the log: the next first
	// entry seeds the chain again.
	if _, err := h.f.NewTerm(3, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.f.Truncate(3, &logpos.EntryID{Term: 2, Offset: 20}); err != nil {
		t.Fatal(err)
	}
	seed2 := uint32(0x01020304)
	b := confAttach(t, h.f)
	e := entryAppend(3, 21, 20, "c", "3")
	e.PreviousEntryCrc = &seed2
	b.send(t, e)
	if got := b.ack(t); got != 21 {
		t.Fatalf("ack %d", got)
	}
	if err := b.finish(t); err != nil {
		t.Fatal(err)
	}
	want2 := confChain(seed2, logpos.Entry{Term: 3, Offset: 21, Value: e.Entry.Value})
	if got := h.f.log.LastCRC(); got != want2 {
		t.Errorf("chain after truncating to the snapshot point: %08x, want %08x", got, want2)
	}
}

// ---------------------------------------------------------------------------
// §3 the applier

// confFlaky fails the entry at off failN times, then applies it (KV).
type confFlaky struct {
	off    logpos.Offset
	failN  int64
	failed atomic.Int64
	f      atomic.Pointer[Follower]
	mu     sync.Mutex
	// commits seen while failing
	commits []logpos.Offset
}

func (m *confFlaky) Apply(e logpos.Entry, w *store.Writer) error {
	if e.Offset == m.off {
		m.mu.Lock()
		if f := m.f.Load(); f != nil {
			m.commits = append(m.commits, f.store().Commit().Offset)
		}
		m.mu.Unlock()
		if m.failed.Load() < m.failN {
			m.failed.Add(1)
			_ = w.Set([]byte("partial"), []byte("must not be kept"))
			return errInjected
		}
	}
	return store.KV{}.Apply(e, w)
}

// retryDelays records the retry_in of every "applying an entry failed;
// retrying" message.
type retryDelays struct {
	slog.Handler
	mu sync.Mutex
	d  []time.Duration
}

func (h *retryDelays) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "applying an entry failed; retrying" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "retry_in" {
				h.mu.Lock()
				h.d = append(h.d, a.Value.Duration())
				h.mu.Unlock()
			}
			return true
		})
	}
	return nil
}

func (h *retryDelays) Enabled(context.Context, slog.Level) bool { return true }
func (h *retryDelays) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *retryDelays) WithGroup(string) slog.Handler            { return h }

// The backoff is read from the delays the applier logs, not measured: a
// loaded machine may take any time between two attempts.
func TestConformanceApplierRetriesCapped(t *testing.T) {
	sm := &confFlaky{off: 2, failN: 40}
	delays := &retryDelays{Handler: slog.DiscardHandler}
	h := newHarness(t, Config{StateMachine: sm, ApplyRetryMin: time.Millisecond, ApplyRetryMax: 3 * time.Millisecond, Logger: slog.New(delays)})
	sm.f.Store(h.f)
	h.newTerm(1)
	confFill(t, h.f, 1, 0, 5, 5) // all traffic is over before the retries
	waitApplied(t, h.f, 5)
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if got := sm.failed.Load(); got != 40 {
		t.Errorf("failed %d times", got)
	}
	for i, c := range sm.commits {
		if i > 0 && c != 1 { // the first attempt runs inside a batch with 0 and 1
			t.Errorf("attempt %d on entry 2 saw commit %d, want 1", i, c)
		}
	}
	// Every failure is logged, with the delay before the next attempt,
	// before that attempt: all 40 are logged once entry 2 is applied.
	delays.mu.Lock()
	got := slices.Clone(delays.d)
	delays.mu.Unlock()
	if len(got) != 40 {
		t.Fatalf("%d retries logged for 40 failures", len(got))
	}
	for i, d := range got {
		want := min(time.Millisecond<<i, 3*time.Millisecond) // doubles from 1ms, capped at 3ms
		if i > 2 {
			want = 3 * time.Millisecond
		}
		if d != want {
			t.Errorf("retry %d in %v, want %v (ApplyRetryMin 1ms, ApplyRetryMax 3ms)", i+1, d, want)
		}
	}
	if _, err := h.f.Get([]byte("partial")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("writes of a failed apply were kept: %v", err)
	}
	if st := h.f.Stats(); st.ApplyErrors < 40 {
		t.Errorf("ApplyErrors %d", st.ApplyErrors)
	}
}

// TestConformanceApplierBoundedByAdvertised: the applier never goes beyond the
// advertised commit, and a commit advertised beyond the log is bounded by
// the durable head.
func TestConformanceApplierBoundedByAdvertised(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(1)
	a := confAttach(t, h.f)
	for o := int64(0); o <= 5; o++ {
		a.send(t, entryAppend(1, o, 2, fmt.Sprintf("k%d", o), "v"))
	}
	for o := int64(0); o <= 5; o++ {
		a.ack(t)
	}
	waitApplied(t, h.f, 2)
	if c := h.f.Status().Commit; c != 2 {
		t.Errorf("commit %d, advertised 2", c)
	}
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: 100})
	waitApplied(t, h.f, 5)
	if st := h.f.Status(); st.Commit != 5 || st.Head != 5 {
		t.Errorf("status %+v", st)
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// §2.8 reopen

// confCounter adds one to the count under the entry's value.
type confCounter struct{}

func (confCounter) Apply(e logpos.Entry, w *store.Writer) error {
	n := 0
	v, err := w.Get(e.Value)
	switch {
	case err == nil:
		if _, err := fmt.Sscan(string(v), &n); err != nil {
			return err
		}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	return w.Set(e.Value, []byte(fmt.Sprint(n+1)))
}

func TestConformanceReopenState(t *testing.T) {
	h := newHarness(t, Config{})
	_ = h.f.Close()
	h.open()
	if st := h.f.Status(); st.State != StateNotMember || st.Term != -1 || st.Head != -1 || st.Commit != -1 {
		t.Errorf("fresh reopen: %+v", st)
	}
	if err := h.f.Replicate(newFakeStream()); !errors.Is(err, ErrNotMember) {
		t.Errorf("Replicate on NotMember: %v", err)
	}
	h.newTerm(1)
	confFill(t, h.f, 1, 0, 6, 3)
	waitApplied(t, h.f, 3)
	_ = h.f.Close()
	h.open()
	st := h.f.Status()
	if st.State != StateFenced || st.Term != 1 || st.Head != 6 || st.Commit != 3 {
		t.Errorf("reopen: %+v, want Fenced term 1 head 6 commit 3", st)
	}
	if adv := h.f.advertised.Load(); adv != 3 {
		t.Errorf("advertised %d after reopen, want 3 (the commit)", adv)
	}
	// Nothing beyond the commit is applied until a leader advertises it.
	b := confAttach(t, h.f)
	b.send(t, &replicationpb.Append{Term: 1, CommitOffset: 5})
	waitApplied(t, h.f, 5)
	if st := h.f.Status(); st.Commit != 5 || st.State != StateFenced {
		t.Errorf("after advertising 5 on a reopened follower: %+v, want commit 5 (not 6), Fenced", st)
	}
	if err := b.finish(t); err != nil {
		t.Fatal(err)
	}
}

// TestConformanceReopenReapplyExactlyOnce: a power loss drops applied batches
// that were not synced; after reopening, the entries after the commit are
// applied again, each exactly once in effect.
func TestConformanceReopenReapplyExactlyOnce(t *testing.T) {
	for _, trim := range []int64{0, 3} {
		for seed := range 4 {
			t.Run(fmt.Sprintf("trim %d seed %d", trim, seed), func(t *testing.T) {
				mem := mdlNewMem(t)
				cfg := Config{Dir: mdlDir, FS: mem, StateMachine: confCounter{}, SegmentSize: 1024, TrimEvery: trim,
					ApplyRetryMin: time.Millisecond, ApplyRetryMax: 5 * time.Millisecond}
				f, err := Open(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.NewTerm(1, TermOptions{}); err != nil {
					t.Fatal(err)
				}
				a := confAttach(t, f)
				const n = 40
				for o := int64(0); o < n; o++ {
					a.send(t, &replicationpb.Append{Term: 1, CommitOffset: o - 1, Entry: &replicationpb.LogEntry{Term: 1, Offset: o, Value: []byte("c")}})
				}
				for o := int64(0); o < n; o++ {
					a.ack(t)
				}
				a.send(t, &replicationpb.Append{Term: 1, CommitOffset: n - 1})
				waitApplied(t, f, n-1)
				crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: seed * 30, RNG: rand.New(rand.NewPCG(uint64(seed), 7))})
				if err := a.finish(t); err != nil {
					t.Fatal(err)
				}
				_ = f.Close()
				cfg.FS = crashed
				g, err := Open(cfg)
				if err != nil {
					t.Fatalf("reopen after a crash: %v", err)
				}
				defer g.Close()
				st := g.Status()
				t.Logf("after crash: %+v", st)
				if st.State != StateFenced || st.Term != 1 || st.Head != n-1 {
					t.Errorf("after crash: %+v", st)
				}
				if adv := g.advertised.Load(); adv != int64(st.Commit) {
					t.Errorf("advertised %d, commit %d", adv, st.Commit)
				}
				count := func() int {
					v, err := g.Get([]byte("c"))
					if errors.Is(err, store.ErrNotFound) {
						return 0
					}
					if err != nil {
						t.Fatal(err)
					}
					var c int
					fmt.Sscan(string(v), &c)
					return c
				}
				if c := count(); c != int(st.Commit)+1 {
					t.Errorf("counter %d with commit %d", c, st.Commit)
				}
				b := confAttach(t, g)
				b.send(t, &replicationpb.Append{Term: 1, CommitOffset: n - 1})
				waitApplied(t, g, n-1)
				if err := b.finish(t); err != nil {
					t.Fatal(err)
				}
				if c := count(); c != n {
					t.Errorf("counter %d after re-applying, want %d", c, n)
				}
			})
		}
	}
}

// TestConformanceInstallWriteFailureCleansStaging: only writes and syncs of the
// staged files fail (removing still works): no staged bytes may remain.
func TestConformanceInstallWriteFailureCleansStaging(t *testing.T) {
	for _, kinds := range [][]errorfs.OpKind{{errorfs.OpFileWrite}, {errorfs.OpFileSync}, {errorfs.OpCreate}} {
		t.Run(fmt.Sprint(kinds), func(t *testing.T) {
			var armed atomic.Bool
			dir := t.TempDir()
			efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if armed.Load() && slices.Contains(kinds, op.Kind) && strings.Contains(op.Path, "/store/db-") {
					return errInjected
				}
				return nil
			}))
			f, chunks := confInstallSetup(t, Config{Dir: dir, FS: efs})
			before := confObserve(t, f, dir, efs)
			s := &gatedStream{chunks: chunks, gate: make(chan struct{}), gateAt: 1}
			go func() {
				waitInstallsStarted(t, f, 1)
				armed.Store(true)
				close(s.gate)
			}()
			_, err := f.InstallSnapshot(s)
			armed.Store(false)
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("install on failing writes: %v", err)
			}
			if d := before.diff(confObserve(t, f, dir, efs)); d != "" {
				t.Errorf("changed: %s", d)
			}
			if l := stagingLeft(t, efs, dir); len(l) > 0 {
				t.Errorf("staging left: %v", l)
			}
		})
	}
}

// TestConformanceInstallRemoveFailureCleanedLater: the disk fails (removals
// too) during the transfer; once it heals, the next NewTerm removes what
// was staged, without a restart.
func TestConformanceInstallRemoveFailureCleanedLater(t *testing.T) {
	h := confPopulated(t, Config{})
	chunks := confSnap{chunkTerm: 2, storeTerm: 2, commit: 30, options: confSnapOpts, prefix: "s"}.build(t)
	s := &gatedStream{chunks: chunks, gate: make(chan struct{}), gateAt: 1}
	go func() {
		waitInstallsStarted(t, h.f, 1)
		h.fs.fail("/store/")
		close(s.gate)
	}()
	_, err := h.f.InstallSnapshot(s)
	h.fs.heal()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("install: %v", err)
	}
	if _, err := h.f.NewTerm(3, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
		t.Errorf("after healing and NewTerm, staging still left: %v", l)
	}
	if _, err := h.f.Truncate(3, &logpos.EntryID{Offset: 5}); err != nil {
		t.Fatal(err)
	}
	ok := confSnap{chunkTerm: 3, storeTerm: 3, commit: 30, options: confSnapOpts, prefix: "s"}.build(t)
	if _, err := h.f.InstallSnapshot(&gatedStream{chunks: ok}); err != nil {
		t.Fatal(err)
	}
	if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
		t.Errorf("after healing, NewTerm, Truncate and a successful install, staging still left: %v", l)
	}
	_ = h.f.Close()
	h.open()
	if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
		t.Errorf("after reopen staging left: %v", l)
	}
}

// durableCheck records, for each entry applied, whether it was durable
// (SPEC §3: up to min(advertised, durable head)).
type durableCheck struct {
	f       atomic.Pointer[Follower]
	mu      sync.Mutex
	applied []logpos.Offset
	bad     []string
}

func (m *durableCheck) Apply(e logpos.Entry, w *store.Writer) error {
	if f := m.f.Load(); f != nil {
		m.mu.Lock()
		m.applied = append(m.applied, e.Offset)
		if dh := f.durableHead(); e.Offset > dh {
			m.bad = append(m.bad, fmt.Sprintf("applied %d with durable head %d", e.Offset, dh))
		}
		if adv := logpos.Offset(f.advertised.Load()); e.Offset > adv {
			m.bad = append(m.bad, fmt.Sprintf("applied %d with advertised %d", e.Offset, adv))
		}
		m.mu.Unlock()
	}
	return store.KV{}.Apply(e, w)
}

func TestConformanceApplierBoundedByDurableHead(t *testing.T) {
	var block atomic.Bool
	gate := make(chan struct{})
	dir := t.TempDir()
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if block.Load() && strings.Contains(op.Path, "/wal/") &&
			(op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) {
			<-gate
		}
		return nil
	}))
	sm := &durableCheck{}
	f, err := Open(Config{Dir: dir, FS: efs, StateMachine: sm})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sm.f.Store(f)
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	confFill(t, f, 1, 0, 2, 2)
	waitApplied(t, f, 2)
	block.Store(true)
	a := confAttach(t, f)
	for o := int64(3); o <= 8; o++ {
		a.send(t, entryAppend(1, o, 8, fmt.Sprintf("k%d", o), "v"))
	}
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: 8})
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: 8}) // the previous one was handled
	for range 1000 {
		runtime.Gosched()
	}
	if c := f.Status().Commit; c > 2 {
		t.Errorf("commit %d while nothing after 2 is durable", c)
	}
	if len(a.s.acks) > 0 {
		t.Fatalf("the WAL sync was not blocked: an ack arrived")
	}
	block.Store(false)
	close(gate)
	for o := int64(3); o <= 8; o++ {
		a.ack(t)
	}
	waitApplied(t, f, 8)
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if len(sm.bad) > 0 {
		t.Errorf("%v", sm.bad)
	}
	for i := 1; i < len(sm.applied); i++ {
		if sm.applied[i] < sm.applied[i-1] {
			t.Errorf("applied out of order: %v", sm.applied)
			break
		}
	}
}

func TestConformanceInstallClosedDuringTransfer(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run(fmt.Sprint("delete=", del), func(t *testing.T) {
			h := confPopulated(t, Config{})
			chunks := confSnap{chunkTerm: 2, storeTerm: 2, commit: 30, options: confSnapOpts, prefix: "s"}.build(t)
			s := &gatedStream{chunks: chunks, gate: make(chan struct{}), gateAt: 2}
			res := make(chan error, 1)
			go func() { _, err := h.f.InstallSnapshot(s); res <- err }()
			waitInstallsStarted(t, h.f, 1)
			if del {
				if err := h.f.Delete(2); err != nil {
					t.Fatal(err)
				}
			} else if err := h.f.Close(); err != nil {
				t.Fatal(err)
			}
			close(s.gate)
			if err := within(t, res); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrStreamEnded) {
				t.Errorf("install interrupted by close: %v, want ErrClosed and ErrStreamEnded", err)
			}
			if !del {
				if l := stagingLeft(t, h.fs, h.dir); len(l) > 0 {
					t.Errorf("staging left: %v", l)
				}
				h.open()
				if st := h.f.Status(); st.Term != 2 || st.Head != 5 || st.Commit != 3 || st.State != StateFenced {
					t.Errorf("after reopen %+v", st)
				}
			} else {
				h.open()
				if st := h.f.Status(); st.State != StateNotMember || st.Head != -1 {
					t.Errorf("after delete and reopen %+v", st)
				}
			}
		})
	}
}

func TestConformanceNotMemberFailedInstallReopen(t *testing.T) {
	h := newHarness(t, Config{})
	for _, chunks := range [][]*replicationpb.SnapshotChunk{
		confSnap{chunkTerm: 3, storeTerm: logpos.NoTerm, commit: 4}.build(t),
		confSnap{chunkTerm: -1, storeTerm: 3, commit: 4}.build(t),
		func() []*replicationpb.SnapshotChunk {
			c := confSnap{chunkTerm: 3, storeTerm: 3, commit: 4}.build(t)
			return c[:len(c)-1]
		}(),
	} {
		if _, err := h.f.InstallSnapshot(&gatedStream{chunks: chunks}); err == nil {
			t.Fatal("install succeeded")
		}
		if st := h.f.Status(); st.State != StateNotMember || st.Term != -1 {
			t.Errorf("after a failed install %+v", st)
		}
	}
	_ = h.f.Close()
	h.open()
	if st := h.f.Status(); st.State != StateNotMember || st.Term != -1 || st.Head != -1 || st.Commit != -1 {
		t.Errorf("after reopen %+v", st)
	}
	if err := h.f.Replicate(newFakeStream()); !errors.Is(err, ErrNotMember) {
		t.Errorf("Replicate: %v", err)
	}
}

// TestConformanceInstallEmptyStoreSnapshot: §2.4 the staged store must
// carry a commit id; a snapshot of a store nothing was applied to is an
// invalid store: ErrInvalidArgument, nothing changed (a populated
// follower's commit does not go back to -1).
func TestConformanceInstallEmptyStoreSnapshot(t *testing.T) {
	h := confPopulated(t, Config{})
	chunks := confSnap{chunkTerm: 2, storeTerm: 2, commit: -1}.build(t)
	before := confObserve(t, h.f, h.dir, h.fs)
	off, err := h.f.InstallSnapshot(&gatedStream{chunks: chunks})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("install of a store with no commit id: ack %d, %v; want ErrInvalidArgument", off, err)
	}
	if d := before.diff(confObserve(t, h.f, h.dir, h.fs)); d != "" {
		t.Errorf("the refused install changed: %s", d)
	}
}

// TestConformanceInstallCommitPhaseIOFailure: the disk fails after every chunk
// arrived, while the staged store is opened, stamped and swapped in
// (before the marker rename).
func TestConformanceInstallCommitPhaseIOFailure(t *testing.T) {
	type flt struct {
		name  string
		match func(op errorfs.Op) bool
	}
	for _, fl := range []flt{
		{"staged sync", func(op errorfs.Op) bool {
			return strings.Contains(op.Path, "/store/db-") && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData)
		}},
		{"staged writes", func(op errorfs.Op) bool {
			return strings.Contains(op.Path, "/store/db-") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && op.Kind != errorfs.OpRemoveAll && op.Kind != errorfs.OpRemove
		}},
		{"marker create", func(op errorfs.Op) bool {
			return op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, "CURRENT.tmp")
		}},
		{"marker rename", func(op errorfs.Op) bool {
			return op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, "CURRENT.tmp")
		}},
	} {
		t.Run(fl.name, func(t *testing.T) {
			var armed atomic.Bool
			var fired atomic.Int64
			dir := t.TempDir()
			efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if armed.Load() && fl.match(op) {
					fired.Add(1)
					return errInjected
				}
				return nil
			}))
			f, chunks := confInstallSetup(t, Config{Dir: dir, FS: efs, ApplyRetryMin: time.Millisecond, ApplyRetryMax: 5 * time.Millisecond})
			before := confObserve(t, f, dir, efs)
			s := &gatedStream{chunks: chunks, gate: make(chan struct{}), gateAt: len(chunks)}
			go func() {
				waitInstallsStarted(t, f, 1)
				armed.Store(true)
				close(s.gate)
			}()
			_, err := f.InstallSnapshot(s)
			armed.Store(false)
			if fired.Load() == 0 {
				t.Fatalf("fault never fired (install: %v)", err)
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("install: %v, want ErrUnavailable", err)
			}
			if d := before.diff(confObserve(t, f, dir, efs)); d != "" {
				t.Errorf("changed: %s", d)
			}
			if l := stagingLeft(t, efs, dir); len(l) > 0 {
				t.Errorf("staging left: %v", l)
			}
			a := confAttach(t, f)
			a.send(t, entryAppend(2, 6, 6, "k6", "x"))
			if o := a.ack(t); o != 6 {
				t.Errorf("ack %d", o)
			}
			if err := a.finish(t); err != nil {
				t.Errorf("stream: %v", err)
			}
			waitApplied(t, f, 6)
		})
	}
}

// TestConformanceInstallLogClearFailure: the store swap succeeded but clearing
// the log fails. The install is committed; the follower must behave as
// one whose log is empty after the snapshot point.
func TestConformanceInstallLogClearFailure(t *testing.T) {
	var armed, renamed, walFail atomic.Bool
	dir := t.TempDir()
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, "CURRENT.tmp") {
			renamed.Store(true)
			walFail.Store(true)
			return nil
		}
		if walFail.Load() && strings.Contains(op.Path, "/wal") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return errInjected
		}
		return nil
	}))
	cfg := Config{Dir: dir, FS: efs, ApplyRetryMin: time.Millisecond, ApplyRetryMax: 5 * time.Millisecond}
	f, chunks := confInstallSetup(t, cfg)
	armed.Store(true)
	off, err := f.InstallSnapshot(&gatedStream{chunks: chunks})
	armed.Store(false)
	walFail.Store(false)
	if !renamed.Load() {
		t.Fatal("the store swap never happened: nothing was injected")
	}
	// The swap is the commit point: the install succeeded even though
	// clearing the log failed after it.
	if err != nil || off != 30 {
		t.Fatalf("install: %d, %v; want 30 after the swap", off, err)
	}
	if st := f.Status(); st.Head != 30 || st.Commit != 30 || st.State != StateFollower {
		t.Errorf("status %+v", st)
	}
	a := confAttach(t, f)
	a.send(t, entryAppend(2, 12, 30, "d", "d")) // a duplicate below the point
	crc := uint32(99)
	e := entryAppend(2, 31, 30, "n", "n")
	e.PreviousEntryCrc = &crc
	a.send(t, e)
	for _, o := range []int64{12, 31} {
		if got := a.ack(t); got != o {
			t.Errorf("ack %d, want %d", got, o)
		}
	}
	if err := a.finish(t); err != nil {
		t.Errorf("stream after the failed clear: %v", err)
	}
	if l, _ := mdlReadLog(f); len(l) != 1 || l[0].Offset != 31 {
		t.Errorf("log %v", l)
	}
	_ = f.Close()
	g, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if st := g.Status(); st.Head != 31 || st.Commit != 30 || st.Term != 2 {
		t.Errorf("after reopen %+v", st)
	}
}

// TestConformanceRejectedNewTermKeepsInstall: a NewTerm refused by its guards
// changes nothing, so it does not abandon the install in progress.
func TestConformanceRejectedNewTermKeepsInstall(t *testing.T) {
	for _, term := range []logpos.Term{1, -1} {
		t.Run(fmt.Sprint(term), func(t *testing.T) {
			h := confPopulated(t, Config{})
			chunks := confSnap{chunkTerm: 2, storeTerm: 2, commit: 30, options: confSnapOpts, prefix: "s"}.build(t)
			s := &gatedStream{chunks: chunks, gate: make(chan struct{}), gateAt: 1}
			res := make(chan error, 1)
			go func() { _, err := h.f.InstallSnapshot(s); res <- err }()
			waitInstallsStarted(t, h.f, 1)
			if _, err := h.f.NewTerm(term, TermOptions{}); err == nil {
				t.Fatal("NewTerm accepted")
			}
			close(s.gate)
			if err := within(t, res); err != nil {
				t.Errorf("install after a refused NewTerm: %v", err)
			}
		})
	}
}

// TestConformanceFailingAppendAcknowledgesWhatCameBefore: §2.3, an Append
// the stream fails on (a gap, a wrong term, a negative offset) changes
// nothing, the advertised commit included, and ends the stream only once
// the entries it accepted before are durable and acknowledged, as a
// half-close would: per entry, one ack each; cumulative, the last of
// them. The failing Append itself is neither written nor acknowledged.
func TestConformanceFailingAppendAcknowledgesWhatCameBefore(t *testing.T) {
	for name, c := range map[string]struct {
		bad  *replicationpb.Append
		want error
	}{
		"gap":             {entryAppend(1, 5, 1, "k", "v"), ErrGap},
		"wrong term":      {entryAppend(2, 3, 1, "k", "v"), ErrInvalidTerm},
		"negative offset": {entryAppend(1, -1, 1, "k", "v"), ErrInvalidArgument},
	} {
		for _, cumulative := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/cumulative=%v", name, cumulative), func(t *testing.T) {
				f, err := Open(Config{Dir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.NewTerm(1, TermOptions{}); err != nil {
					t.Fatal(err)
				}
				a := confAttach(t, f)
				for o := int64(0); o < 3; o++ {
					ap := entryAppend(1, o, -1, "k", "v")
					ap.CumulativeAcksSupported = cumulative
					a.send(t, ap) // not waiting for acks: some are pending
				}
				a.send(t, c.bad)
				if err := a.end(t); !errors.Is(err, c.want) {
					t.Fatalf("the stream ended with %v, want %v", err, c.want)
				}
				var acks []int64
				for len(a.s.acks) > 0 {
					acks = append(acks, <-a.s.acks)
				}
				if cumulative {
					if len(acks) == 0 || acks[len(acks)-1] != 2 {
						t.Fatalf("cumulative acks %v before the stream failed, want the last one 2", acks)
					}
				} else if want := []int64{0, 1, 2}; !slices.Equal(acks, want) {
					t.Fatalf("acks %v before the stream failed, want %v", acks, want)
				}
				if adv, st := f.Stats().Advertised, f.Status(); adv != -1 || st.Head != 2 || st.Commit != -1 || st.State != StateFollower {
					t.Fatalf("after the failed append: advertised %d, %+v; want -1, Follower with head 2, commit -1", adv, st)
				}
				if durable := f.log.LastDurable().Offset; durable != 2 {
					t.Fatalf("durable head %d, want 2", durable)
				}
			})
		}
	}
}

// unattachedCumulative opens a follower and a replication of a fake
// stream in cumulative mode that is not attached: the test drives its
// sync rounds itself. Both are closed when the test ends.
func unattachedCumulative(t *testing.T) (*Follower, *fakeStream, *replication) {
	t.Helper()
	f, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	s := newFakeStream()
	t.Cleanup(s.cancel)
	r := newReplication(f, s, logpos.NoTerm)
	r.mu.mode = cumulative
	return f, s, r
}

// TestConformanceCumulativeAckNotRepeated: in cumulative mode a sync
// round acks the durable head only when it moved, even when entries it
// covered are still waiting (an entry recorded after the round that made
// it durable had acked it), and repeats a value only to answer a
// duplicate, once the duplicate is durable.
func TestConformanceCumulativeAckNotRepeated(t *testing.T) {
	_, s, r := unattachedCumulative(t)
	round := func(durable logpos.Offset, received ...logpos.Offset) {
		t.Helper()
		r.mu.Lock()
		for _, o := range received {
			r.mu.pending = append(r.mu.pending, pendingAck{offset: o})
		}
		r.mu.Unlock()
		if _, err := r.acknowledge(durable); err != nil {
			t.Fatal(err)
		}
	}
	round(5, 4, 5)
	round(5, 5) // 5 was durable before it was recorded: no second ack
	r.mu.Lock()
	r.mu.dupUpTo = 3 // a duplicate of 3 arrived
	r.mu.Unlock()
	round(5)
	round(7, 6, 7)
	r.mu.Lock()
	r.mu.dupUpTo = 9 // a duplicate of 9, appended but not durable yet
	r.mu.Unlock()
	round(7) // not answered before 9 is durable
	round(9, 8, 9)
	close(s.acks)
	var acks []int64
	for a := range s.acks {
		acks = append(acks, a)
	}
	if want := []int64{5, 5, 7, 9}; !slices.Equal(acks, want) {
		t.Fatalf("acks %v, want %v: the head when it moves, repeated for a duplicate only, once it is durable", acks, want)
	}
}

// TestConformanceDuplicateOfOffsetZeroAnswered: §2.3, a duplicate is
// acknowledged once it is durable, on the stream that acknowledged the
// entry already too, and offset 0 is no exception: per entry, one more
// Ack{0}; cumulative, the durable head 0 repeated to answer it (the one
// value a cumulative ack repeats). The duplicate is received after the
// entry's own ack, so that it is answered in a round of its own.
func TestConformanceDuplicateOfOffsetZeroAnswered(t *testing.T) {
	for _, cumulative := range []bool{false, true} {
		t.Run(fmt.Sprintf("cumulative=%v", cumulative), func(t *testing.T) {
			h := newHarness(t, Config{})
			h.newTerm(1)
			f := h.f
			a := confAttach(t, f)
			send := func() {
				t.Helper()
				ap := entryAppend(1, 0, -1, "k", "v")
				ap.CumulativeAcksSupported = cumulative
				a.send(t, ap)
			}
			send()
			if got := a.ack(t); got != 0 {
				t.Fatalf("ack %d for entry 0, want 0", got)
			}
			send() // the duplicate
			// The half-close ends the stream once every entry received,
			// the duplicate included, is acknowledged.
			if err := a.finish(t); err != nil {
				t.Fatal(err)
			}
			var acks []int64
			for len(a.s.acks) > 0 {
				acks = append(acks, <-a.s.acks)
			}
			if !slices.Equal(acks, []int64{0}) {
				t.Fatalf("acks after the duplicate of 0: %v, want [0]", acks)
			}
			if st := f.Status(); st.State != StateFollower || st.Head != 0 {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

// TestConformanceCumulativeAckPerSyncRound: §2.3 in cumulative mode, one
// Ack{durable head} per sync round, not one per entry: the entries that
// arrive while an fsync is in progress are covered by the next round and
// acknowledged by one ack.
func TestConformanceCumulativeAckPerSyncRound(t *testing.T) {
	held := newHeldSyncRound(t)
	f := held.f
	cumulative := func(o int64) *replicationpb.Append {
		ap := entryAppend(1, o, -1, fmt.Sprintf("k%d", o), "v")
		ap.CumulativeAcksSupported = true
		return ap
	}
	a := confAttach(t, f)
	held.armed.Store(true)
	a.send(t, cumulative(0))
	<-held.blocked // the round of entry 0 is in its fsync
	for o := int64(1); o <= 9; o++ {
		a.send(t, cumulative(o))
	}
	// Once a second advertisement is taken, the first and every entry
	// before it were handled: all of 1..9 wait for the next round.
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: -1})
	a.send(t, &replicationpb.Append{Term: 1, CommitOffset: -1})
	close(held.gate)
	var acks []int64
	for len(acks) == 0 || acks[len(acks)-1] != 9 {
		acks = append(acks, a.ack(t))
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}
	if want := []int64{0, 9}; !slices.Equal(acks, want) || len(a.s.acks) != 0 {
		t.Errorf("acks %v (and %d more), want %v: one per sync round", acks, len(a.s.acks), want)
	}
	if st := f.Stats(); st.AcksSent != 2 || st.Syncs < 2 {
		t.Errorf("%d acks sent in %d sync rounds, want 2 in at least 2", st.AcksSent, st.Syncs)
	}
}

// TestRefusalsSayWhy: a refused argument is named in the error, with what
// it was checked against, beside the sentinel and the refusing guard.
func TestRefusalsSayWhy(t *testing.T) {
	h := confPopulated(t, Config{}) // term 2, head 5, commit 3, Follower
	wrongTerm := confSnap{chunkTerm: 7, storeTerm: 7, commit: 4, options: confSnapOpts}.build(t)
	for _, c := range []struct {
		name string
		do   func() error
		want error
		says string
	}{
		{"NewTerm(-1)", func() error { _, err := h.f.NewTerm(-1, TermOptions{}); return err }, ErrInvalidArgument, "term -1 is negative"},
		{"NewTerm(1)", func() error { _, err := h.f.NewTerm(1, TermOptions{}); return err }, ErrInvalidTerm, "term 1 is below the current term 2"},
		{"Delete(1)", func() error { return h.f.Delete(1) }, ErrInvalidTerm, "term 1 is below the current term 2"},
		{"empty install", func() error { _, err := h.f.InstallSnapshot(&gatedStream{}); return err }, ErrInvalidArgument, "empty snapshot"},
		{"install at term 7", func() error { _, err := h.f.InstallSnapshot(&gatedStream{chunks: cloneChunks(wrongTerm)}); return err }, ErrInvalidTerm, "snapshot term 7 is not the current term 2"},
		{"fence", func() error { _, err := h.f.NewTerm(2, TermOptions{}); return err }, nil, ""},
		{"Truncate(nil)", func() error { _, err := h.f.Truncate(2, nil); return err }, ErrInvalidArgument, "no head_entry_id"},
		{"Truncate at term 3", func() error { _, err := h.f.Truncate(3, &logpos.EntryID{Offset: 4}); return err }, ErrInvalidTerm, "term 3 is not the current term 2"},
		{"Truncate below the commit", func() error { _, err := h.f.Truncate(2, &logpos.EntryID{Offset: 2}); return err }, ErrInvalidArgument, "head_entry_id offset 2 is below the commit offset 3"},
		{"Truncate beyond the head", func() error { _, err := h.f.Truncate(2, &logpos.EntryID{Offset: 9}); return err }, ErrInvalidArgument, "head_entry_id offset 9 is beyond the head offset 5"},
	} {
		err := c.do()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %q does not say %q", c.name, err, c.says)
		}
	}

	// A follower with no term takes a snapshot of any term but a
	// negative one, which is not a term at all.
	nm := newHarness(t, Config{})
	negative := confSnap{chunkTerm: -1, storeTerm: 7, commit: 4, options: confSnapOpts}.build(t)
	_, err := nm.f.InstallSnapshot(&gatedStream{chunks: cloneChunks(negative)})
	if says := "snapshot term -1 is negative"; !errors.Is(err, ErrInvalidTerm) || !strings.Contains(err.Error(), says) {
		t.Errorf("install at term -1 into a follower with no term: %v, want %v saying %q", err, ErrInvalidTerm, says)
	}
}

// TestTheLastOffset: at the end of the offsets, a snapshot may reach the
// last offset; an entry there is then a duplicate as anywhere (no
// overflow makes it a gap) and the applier has nothing to apply (no
// overflow makes it read past the end). The last offset itself, which the
// log cannot hold, is an invalid argument rather than a storage failure.
func TestTheLastOffset(t *testing.T) {
	t.Run("snapshot at the last offset", func(t *testing.T) {
		h := confPopulated(t, Config{})
		if off, err := h.f.InstallSnapshot(&gatedStream{chunks: lastOffsetSnapshot(t)}); err != nil || off != math.MaxInt64 {
			t.Fatalf("install: %d %v", off, err)
		}
		a := confAttach(t, h.f)
		a.send(t, entryAppend(2, math.MaxInt64, math.MaxInt64, "d", "d"))
		if got := a.ack(t); got != math.MaxInt64 {
			t.Fatalf("ack %d, want the last offset", got)
		}
		if err := a.finish(t); err != nil {
			t.Fatal(err)
		}
		if n, err := h.f.applier.applyBatch(); n != 0 || err != nil {
			t.Fatalf("the applier at the last offset: applied %d, %v; want nothing to apply", n, err)
		}
		// Reopened, the log must keep everything up to the last offset:
		// nothing can be below the bound it is opened with.
		if err := h.f.Close(); err != nil {
			t.Fatal(err)
		}
		h.open()
		if st := h.f.Status(); st.State != StateFenced || st.Head != math.MaxInt64 || st.Commit != math.MaxInt64 {
			t.Fatalf("reopened after an install at the last offset: %+v", st)
		}
	})
	t.Run("append of the last offset", func(t *testing.T) {
		h := confInstalled(t, 20)
		h.f.head.Store(math.MaxInt64 - 1) // no log reaches that far in a test
		a := confAttach(t, h.f)
		a.send(t, entryAppend(2, math.MaxInt64, 20, "n", "n"))
		if err := a.end(t); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("appending the last offset: %v, want ErrInvalidArgument", err)
		}
	})
	// Far from the head, the last offset is a gap like any other: the gap
	// check comes before the offset's own.
	t.Run("the last offset beyond the head", func(t *testing.T) {
		h := confInstalled(t, 20)
		a := confAttach(t, h.f)
		a.send(t, entryAppend(2, math.MaxInt64, 20, "n", "n"))
		if err := a.end(t); !errors.Is(err, ErrGap) {
			t.Fatalf("appending the last offset after head 20: %v, want ErrGap", err)
		}
		if st := h.f.Status(); st.Head != 20 {
			t.Fatalf("head %d after the refused entry, want 20", st.Head)
		}
	})
}

// lastOffsetSnapshot returns the chunks of a snapshot of term 2 whose
// commit is the last offset. No store applies that many entries: its
// commit record is written into the database directly, as the store lays
// it out (CURRENT names the live database, "\x00commit" holds the term
// and the offset big-endian).
func lastOffsetSnapshot(t *testing.T) []*replicationpb.SnapshotChunk {
	t.Helper()
	dir := t.TempDir()
	src, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.SetTerm(2, confSnapOpts); err != nil {
		t.Fatal(err)
	}
	if err := src.Apply(logpos.Entry{Term: 2, Offset: 0, Value: kvPut("k", "v")}); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	live, err := os.ReadFile(filepath.Join(dir, "CURRENT"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(filepath.Join(dir, strings.TrimSpace(string(live))), &pebble.Options{ErrorIfNotExists: true, Logger: quietPebble{t}})
	if err != nil {
		t.Fatal(err)
	}
	commit := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 2), math.MaxInt64)
	if err := errors.Join(db.Set([]byte("\x00commit"), commit, pebble.Sync), db.Close()); err != nil {
		t.Fatal(err)
	}
	if src, err = store.Open(dir, store.Options{}); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if c := src.Commit(); c.Offset != math.MaxInt64 {
		t.Fatalf("the crafted store's commit is %v", c)
	}
	sn, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	return snapshotChunks(t, sn, 2)
}

// TestConformanceInstallAbandonedBeforeItsCommit: NewTerm runs once every
// chunk arrived, while the staged store is being opened and checked (the
// install holds no lock then): the commit that follows is refused with
// ErrInvalidTerm, the follower keeps its state and the new term, and no
// staged bytes remain while it runs on.
func TestConformanceInstallAbandonedBeforeItsCommit(t *testing.T) {
	var armed atomic.Bool
	blocked, release := make(chan struct{}), make(chan struct{})
	dir := t.TempDir()
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpOpen && strings.Contains(op.Path, "/store/db-") && strings.Contains(op.Path, "MANIFEST") && armed.CompareAndSwap(true, false) {
			close(blocked)
			<-release
		}
		return nil
	}))
	f, chunks := confInstallSetup(t, Config{Dir: dir, FS: efs})
	armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := f.InstallSnapshot(&fakeSnapshotStream{chunks: chunks})
		done <- err
	}()
	<-blocked
	before := confObserve(t, f, dir, efs)
	if _, err := f.NewTerm(3, confOpts); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := within(t, done); !errors.Is(err, ErrInvalidTerm) {
		t.Fatalf("the install abandoned before its commit: %v, want ErrInvalidTerm", err)
	}
	after := confObserve(t, f, dir, efs)
	if after.St.Term != 3 || after.St.State != StateFenced || after.St.Commit != before.St.Commit || after.St.Head != before.St.Head {
		t.Fatalf("after the abandoned install: %+v, want Fenced at term 3 with head %d and commit %d", after.St, before.St.Head, before.St.Commit)
	}
	if l := stagingLeft(t, efs, dir); len(l) > 0 {
		t.Errorf("staging left: %v", l)
	}
}

// quietPebble is the logger of the Pebble databases tests open directly:
// Pebble's informational messages are dropped (its default logger writes
// them to the test binary's output), errors fail the test.
type quietPebble struct{ t testing.TB }

func (quietPebble) Infof(string, ...any)                {}
func (l quietPebble) Errorf(format string, args ...any) { l.t.Errorf("pebble: "+format, args...) }
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// TestConformanceStreamOfALeaderNamingItsTerm: a stream whose leader
// says which term it leads (ReplicateAt) attaches only in that term. A
// deposed leader's is refused with ErrInvalidTerm, changing nothing, and
// after it the new leader truncates and streams; the checks before it
// (not a member, a stream attached) come first.
func TestConformanceStreamOfALeaderNamingItsTerm(t *testing.T) {
	h := confPopulated(t, Config{}) // term 2, Follower
	if _, err := h.f.NewTerm(3, confOpts); err != nil {
		t.Fatal(err)
	}
	// refusedAt returns ReplicateAt's error; a stream that attaches
	// instead fails the test, at a deadline, rather than hang it.
	refusedAt := func(term logpos.Term) error {
		t.Helper()
		s := newFakeStream()
		res := make(chan error, 1)
		go func() { res <- h.f.ReplicateAt(s, term) }()
		select {
		case err := <-res:
			return err
		case <-bounded(t).Done():
			s.cancel()
			t.Fatalf("a stream of a leader of term %d attached in term %d", term, h.f.Status().Term)
			return nil
		}
	}
	for _, stale := range []logpos.Term{2, 4, 0} {
		before := confObserve(t, h.f, h.dir, h.fs)
		if err := refusedAt(stale); !errors.Is(err, ErrInvalidTerm) {
			t.Errorf("a stream of a leader of term %d in term 3: %v, want ErrInvalidTerm", stale, err)
		}
		if d := before.diff(confObserve(t, h.f, h.dir, h.fs)); d != "" {
			t.Errorf("the refused stream of term %d changed: %s", stale, d)
		}
	}
	// Nothing is attached: the new leader truncates, then streams.
	head, err := h.f.Truncate(3, &logpos.EntryID{Term: 2, Offset: 5})
	if err != nil {
		t.Fatalf("the new leader's Truncate after the refused stream: %v", err)
	}
	s := newFakeStream()
	res := make(chan error, 1)
	go func() { res <- h.f.ReplicateAt(s, 3); s.cancel() }()
	a := &confStream{s: s, res: res}
	a.send(t, entryAppend(3, int64(head.Offset)+1, -1, "k", "v"))
	if got := a.ack(t); got != int64(head.Offset)+1 {
		t.Fatalf("ack %d, want %d", got, head.Offset+1)
	}
	// A stream attached comes first, as for a stream that names no term.
	if err := h.f.ReplicateAt(newFakeStream(), 2); !errors.Is(err, ErrConflict) {
		t.Errorf("a stale stream while one is attached: %v, want ErrConflict", err)
	}
	if err := a.finish(t); err != nil {
		t.Fatal(err)
	}

	// Not a member comes first too.
	nm := newHarness(t, Config{})
	if err := nm.f.ReplicateAt(newFakeStream(), 1); !errors.Is(err, ErrNotMember) {
		t.Errorf("a stream naming a term on a replica that is not a member: %v, want ErrNotMember", err)
	}
}
