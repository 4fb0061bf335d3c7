package follower

// Power-loss crash tests: the follower runs with its log and its store on
// one crashable in-memory file system, wrapped so that every write
// operation (create, write, sync, rename, remove, ...) is counted. A crash
// clone is taken just before the k-th write of an operation, for k over
// the whole operation, keeping none or a random share of the data that was
// not synced; a new follower is opened on the clone and must hold
// everything SPEC promised before the crash, and resume.

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

// plCrasher takes the crash clone just before the k-th write operation
// once armed. crashed is set before the clone is taken: whatever a
// goroutine saw complete before it read crashed as false is in the clone.
type plCrasher struct {
	mem     *vfs.MemFS
	k       int64
	cfg     vfs.CrashCloneCfg
	armed   atomic.Bool
	n       atomic.Int64
	crashed atomic.Bool
	mu      sync.Mutex
	clone   *vfs.MemFS
}

func (c *plCrasher) String() string { return fmt.Sprintf("crash before write %d", c.k) }

func (c *plCrasher) MaybeError(op errorfs.Op) error {
	if !c.armed.Load() || op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	if c.n.Add(1) == c.k {
		c.crashed.Store(true)
		clone := c.mem.CrashClone(c.cfg)
		c.mu.Lock()
		c.clone = clone
		c.mu.Unlock()
	}
	return nil
}

// before reports whether the crash has not happened yet: what completed
// before the call is in the clone.
func (c *plCrasher) before() bool { return !c.crashed.Load() }

// result returns the clone, taking it now if the k-th write never came
// (the crash is then after the whole operation).
func (c *plCrasher) result() (*vfs.MemFS, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.clone != nil {
		return c.clone, true
	}
	c.crashed.Store(true)
	return c.mem.CrashClone(c.cfg), false
}

// plRun is one crash run: a follower on a crashable file system, what was
// appended to it, and what it promised before the crash.
type plRun struct {
	t *testing.T
	c *plCrasher
	f *Follower
	// versions holds every entry ever appended at each offset.
	versions map[logpos.Offset][]mdlEntry
	// acked is the highest offset acknowledged before the crash, and the
	// entry acknowledged at each offset.
	acked    logpos.Offset
	ackedAt  map[logpos.Offset]mdlEntry
	latest   map[logpos.Offset]mdlEntry // the version last sent at each offset
	minTerm  logpos.Term                // the highest term a NewTerm returned before the crash
	maxTerm  logpos.Term                // the highest term ever asked for
	seq      int
	streams  []*plStream
	snapshot *mdlSnapshot // the snapshot being installed, if any
	// installed: InstallSnapshot returned before the crash.
	installed bool
	// truncatedTo: a Truncate to it returned before the crash (NoOffset if none).
	truncatedTo logpos.Offset
	// oldTermUpTo: after the NewTerm that ended the old stream returned,
	// no entry of the old term lies beyond it (SPEC §6.4).
	oldTerm     logpos.Term
	oldTermUpTo logpos.Offset
	cumulative  bool
	mu          sync.Mutex // guards acked, ackedAt, versions and latest
	// violation is the first broken promise a stream's acks showed.
	violation atomic.Pointer[string]
}

// plStream is a stream attached to the follower under test; every ack it
// sends before the crash is recorded.
type plStream struct {
	s   *mdlStream
	res chan error
}

// attach attaches a stream whose acks before the crash count.
func (r *plRun) attach() *plStream {
	s := &mdlStream{fakeStream: newFakeStream()}
	st := &plStream{s: s, res: make(chan error, 1)}
	f := r.f
	s.beforeSend = func(o int64) {
		if durable := max(f.log.LastDurable().Offset, logpos.Offset(f.base.Load())); logpos.Offset(o) > durable {
			msg := fmt.Sprintf("ack %d sent with the durable head at %d (SPEC §6.2)", o, durable)
			r.violation.CompareAndSwap(nil, &msg)
		}
		if !r.c.before() {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		// An ack means the offset is durable and the log contiguous up to
		// it (SPEC §6.2), in either ack mode.
		for a := r.acked + 1; a <= logpos.Offset(o); a++ {
			r.ackedAt[a] = r.latest[a]
		}
		r.acked = max(r.acked, logpos.Offset(o))
	}
	go func() {
		st.res <- f.Replicate(s)
		s.cancel()
	}()
	r.streams = append(r.streams, st)
	return st
}

// push sends Appends of term for offsets from..to in a goroutine, which
// stops when the stream ends; done is closed when it returns.
func (r *plRun) push(st *plStream, term logpos.Term, from, to logpos.Offset, commitLag logpos.Offset) (done chan struct{}) {
	var es []mdlEntry
	for o := from; o <= to; o++ {
		r.seq++
		es = append(es, mdlMakeEntry(term, o, r.seq))
	}
	done = make(chan struct{})
	go func() {
		defer close(done)
		for i, e := range es {
			o := from + logpos.Offset(i)
			// Recorded before it is sent (its ack may come at once), and
			// forgotten if it is not.
			r.mu.Lock()
			r.versions[o] = append(r.versions[o], e)
			prev, had := r.latest[o]
			r.latest[o] = e
			r.mu.Unlock()
			select {
			case st.s.in <- e.toAppend(term, o, o-commitLag, r.cumulative):
			case <-st.s.ctx.Done():
				r.mu.Lock()
				r.versions[o] = r.versions[o][:len(r.versions[o])-1]
				if had {
					r.latest[o] = prev
				} else {
					delete(r.latest, o)
				}
				r.mu.Unlock()
				return
			}
		}
	}()
	return done
}

// waitAck waits for an ack of at least o; false if the stream ended.
// It fails the test when an ack broke a promise.
func (r *plRun) waitAck(st *plStream, o logpos.Offset) bool {
	for {
		select {
		case a := <-st.s.acks:
			if v := r.violation.Load(); v != nil {
				r.t.Fatal(*v)
			}
			if logpos.Offset(a) >= o {
				return true
			}
		case err := <-st.res:
			st.res <- err
			return false
		}
	}
}

// finish half-closes the stream and returns its result.
func (st *plStream) finish(t *testing.T) error {
	t.Helper()
	close(st.s.in)
	err := within(t, st.res)
	st.res <- err
	return err
}

func (r *plRun) newTerm(term logpos.Term) {
	r.t.Helper()
	r.maxTerm = max(r.maxTerm, term)
	if _, err := r.f.NewTerm(term, TermOptions{}); err != nil {
		r.t.Fatalf("NewTerm(%d): %v", term, err)
	}
	if r.c.before() {
		r.minTerm = max(r.minTerm, term)
	}
}

// fill appends and acknowledges entries from..to of term on a new stream,
// with commit advertised up to commit, and half-closes it.
func (r *plRun) fill(term logpos.Term, from, to, commit logpos.Offset) {
	r.t.Helper()
	st := r.attach()
	done := r.push(st, term, from, to, to-commit)
	if !r.waitAck(st, to) {
		r.t.Fatalf("the stream ended: %v", <-st.res)
	}
	within(r.t, done)
	if err := st.finish(r.t); err != nil {
		r.t.Fatal(err)
	}
	if commit >= 0 {
		if err := mdlSettle(r.f, commit); err != nil {
			r.t.Fatal(err)
		}
	}
}

// plScenario is an operation crashed at every write: setup runs before
// the crasher is armed, run while it is.
type plScenario struct {
	name  string
	setup func(r *plRun)
	run   func(r *plRun)
}

// plConfig opens followers of the crash tests.
func plConfig(fs vfs.FS) Config {
	return Config{Dir: mdlDir, FS: fs, SegmentSize: 512, TrimEvery: 4}
}

// plOnce runs sc with a crash before its k-th write; it returns how many
// writes the operation made and whether the crash happened within it.
func plOnce(t *testing.T, sc plScenario, k int64, pct int, seed uint64) (ops int64, reached bool, outcome string) {
	r, clone, ops, reached := plCrash(t, sc, k, pct, seed)
	what := fmt.Sprintf("%s, crash before write %d of %d, %d%% of unsynced data kept", sc.name, k, ops, pct)
	if !reached {
		what = fmt.Sprintf("%s, crash after all %d writes, %d%% of unsynced data kept", sc.name, ops, pct)
	}
	return ops, reached, r.check(what, clone)
}

// plCrash runs sc with a crash before its k-th write, keeping pct% of the
// unsynced data, and stops the process. It returns the run (what it
// promised), the crash image, how many writes the operation made and
// whether the crash happened within it.
func plCrash(t *testing.T, sc plScenario, k int64, pct int, seed uint64) (r *plRun, clone *vfs.MemFS, ops int64, reached bool) {
	mem := mdlNewMem(t)
	cfg := vfs.CrashCloneCfg{UnsyncedDataPercent: pct}
	if pct > 0 {
		cfg.RNG = rand.New(rand.NewPCG(seed, uint64(k)))
	}
	c := &plCrasher{mem: mem, k: k, cfg: cfg}
	r = &plRun{t: t, c: c, versions: map[logpos.Offset][]mdlEntry{}, ackedAt: map[logpos.Offset]mdlEntry{},
		latest: map[logpos.Offset]mdlEntry{}, acked: logpos.NoOffset, minTerm: logpos.NoTerm, maxTerm: logpos.NoTerm,
		truncatedTo: logpos.NoOffset, oldTerm: logpos.NoTerm, cumulative: k%2 == 0}
	f, err := Open(plConfig(errorfs.Wrap(mem, c)))
	if err != nil {
		t.Fatal(err)
	}
	r.f = f
	sc.setup(r)
	c.armed.Store(true)
	sc.run(r)
	c.armed.Store(false)
	ops = c.n.Load()
	clone, reached = c.result()
	// The old process stops: its goroutines end, its files are gone.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, st := range r.streams {
		within(t, st.res)
	}
	return r, clone, ops, reached
}

// check reopens a follower on the crashed file system and holds it
// against what was promised before the crash; then it resumes.
func (r *plRun) check(what string, fs *vfs.MemFS) (outcome string) {
	t := r.t
	t.Helper()
	g, err := Open(plConfig(fs))
	if err != nil {
		t.Fatalf("%s: reopening: %v", what, err)
	}
	defer g.Close()
	st := g.Status()
	// SPEC §2.8: Fenced with a term, else NotMember. §6.1: the term did
	// not regress below any NewTerm that returned.
	if wantState := map[bool]State{true: StateFenced, false: StateNotMember}[st.Term >= 0]; st.State != wantState {
		t.Fatalf("%s: reopened %v with term %d", what, st.State, st.Term)
	}
	if st.Term < r.minTerm || st.Term > max(r.maxTerm, r.snapshotTerm()) {
		t.Fatalf("%s: term %d, want between %d (returned by NewTerm before the crash) and %d", what, st.Term, r.minTerm, r.maxTerm)
	}
	if left := mdlStagingLeft(fs); len(left) > 0 {
		t.Fatalf("%s: staged files left after reopening: %v", what, left)
	}
	// Which store came back: the snapshot's, or the one before it.
	base, kv := logpos.NoEntry, map[string]string{}
	if r.snapshot != nil && st.Commit >= r.snapshot.commit.Offset && g.store().Commit() == r.snapshot.commit {
		base, kv = r.snapshot.commit, maps.Clone(r.snapshot.kv)
	}
	if r.installed && base == logpos.NoEntry {
		t.Fatalf("%s: InstallSnapshot returned before the crash, but the store is not the snapshot's (commit %v)", what, g.store().Commit())
	}
	if base != logpos.NoEntry && (g.store().Term() < r.snapshot.storeTerm || g.store().TermOptions() != mdlSnapshotOptions) {
		t.Fatalf("%s: the snapshot's store is back with term %d (its own %d), options %+v", what, g.store().Term(), r.snapshot.storeTerm, g.store().TermOptions())
	}
	entries, err := mdlReadLog(g)
	if err != nil {
		t.Fatalf("%s: reading the log: %v", what, err)
	}
	got := map[logpos.Offset]mdlEntry{}
	for i, e := range entries {
		if i > 0 && e.Offset != entries[i-1].Offset+1 {
			t.Fatalf("%s: the log is not contiguous: %d after %d", what, e.Offset, entries[i-1].Offset)
		}
		i := -1
		for j, v := range r.versions[e.Offset] {
			if v.term == e.Term && string(v.value) == string(e.Value) {
				i = j
			}
		}
		if i < 0 {
			t.Fatalf("%s: log entry %v was never appended", what, e.ID())
		}
		got[e.Offset] = r.versions[e.Offset][i]
		if e.Offset <= base.Offset {
			t.Fatalf("%s: entry %d, covered by the installed snapshot, is still in the log", what, e.Offset)
		}
		if e.Term == r.oldTerm && e.Offset > r.oldTermUpTo {
			t.Fatalf("%s: entry %v of the old stream lies after %d, the head when NewTerm returned (SPEC §6.4)", what, e.ID(), r.oldTermUpTo)
		}
		if r.truncatedTo != logpos.NoOffset && e.Offset > r.truncatedTo && e.Term < r.maxTerm && base == logpos.NoEntry {
			t.Fatalf("%s: entry %v, removed by a Truncate that returned, is back", what, e.ID())
		}
	}
	// Every acknowledged entry is there (SPEC §6.2), unless the installed
	// snapshot covers it or replaced the log that held it.
	for o := logpos.Offset(0); o <= r.acked; o++ {
		want := r.ackedAt[o]
		if o <= base.Offset || len(entries) > 0 && o < entries[0].Offset && o <= st.Commit {
			continue // covered by the snapshot, or applied and trimmed
		}
		if e, ok := got[o]; !ok || string(e.value) != string(want.value) {
			if base != logpos.NoEntry && !r.ackedAfterInstall(o) {
				continue // the snapshot replaced the log that held it
			}
			t.Fatalf("%s: entry %d acknowledged before the crash is lost (log %v..%v, commit %d)", what, o, first(entries), last(entries), st.Commit)
		}
	}
	// SPEC §2.8, §3: head = max(last durable, commit); the commit is in the
	// log or the snapshot, and the data is exactly that of the entries up
	// to the commit.
	head := max(last(entries).Offset, base.Offset, g.store().Commit().Offset)
	if st.Head != head || st.Commit > head {
		t.Fatalf("%s: head %d commit %d, the log ends at %v, snapshot point %v", what, st.Head, st.Commit, last(entries), base)
	}
	if len(entries) > 0 && entries[0].Offset > max(st.Commit, base.Offset)+1 {
		t.Fatalf("%s: the log starts at %d, after the commit %d: the entries between cannot be applied again (SPEC §2.8)", what, entries[0].Offset, st.Commit)
	}
	for o := base.Offset + 1; o <= st.Commit; o++ {
		e, ok := got[o]
		if !ok && len(entries) > 0 && o < entries[0].Offset {
			// Trimmed after it was applied: the version acknowledged last,
			// or the only one sent. (A version sent to a stream that was
			// ending may never have been written.) The data check below
			// tells whether that was the one applied.
			if v, acked := r.ackedAt[o]; acked {
				e, ok = v, true
			} else if len(r.versions[o]) == 1 {
				e, ok = r.versions[o][0], true
			}
		}
		if !ok {
			t.Fatalf("%s: committed entry %d is not in the log", what, o)
		}
		e.applyTo(kv)
	}
	if data := plReadKV(t, g); !maps.Equal(data, kv) {
		t.Fatalf("%s: data at commit %d: %v, want %v", what, st.Commit, data, kv)
	}
	r.resume(what, g, base, kv, got)
	outcome = fmt.Sprintf("term %d", st.Term)
	if r.snapshot != nil {
		outcome += map[bool]string{true: ", the snapshot's store", false: ", the old store"}[base != logpos.NoEntry]
	}
	return outcome
}

// ackedAfterInstall: offset o was acknowledged by a stream after the
// install returned (so it is above the snapshot point).
func (r *plRun) ackedAfterInstall(o logpos.Offset) bool {
	return r.installed && r.snapshot != nil && o > r.snapshot.commit.Offset
}

func (r *plRun) snapshotTerm() logpos.Term {
	if r.snapshot == nil {
		return logpos.NoTerm
	}
	return r.snapshot.storeTerm
}

// resume: the reopened follower takes a new stream: the acknowledged
// entries come back as duplicates and are acknowledged, a new entry is
// appended, acknowledged and applied.
func (r *plRun) resume(what string, g *Follower, base logpos.EntryID, kv map[string]string, got map[logpos.Offset]mdlEntry) {
	t := r.t
	st := g.Status()
	if st.Term < 0 {
		t.Fatalf("%s: nothing to resume with: no term", what)
	}
	s := &mdlStream{fakeStream: newFakeStream()}
	res := make(chan error, 1)
	go func() {
		res <- g.Replicate(s)
		s.cancel()
	}()
	send := func(a *replicationpb.Append) {
		select {
		case s.in <- a:
		case err := <-res:
			t.Fatalf("%s: resuming: the stream ended: %v", what, err)
		}
	}
	expect := func(o logpos.Offset) {
		select {
		case a := <-s.acks:
			if logpos.Offset(a) != o {
				t.Fatalf("%s: resuming: ack %d, want %d", what, a, o)
			}
		case err := <-res:
			t.Fatalf("%s: resuming: the stream ended: %v", what, err)
		}
	}
	for o := logpos.Offset(0); o <= min(r.acked, st.Head); o++ {
		e := r.ackedAt[o]
		send(e.toAppend(st.Term, o, logpos.NoOffset, false))
		expect(o)
	}
	next := st.Head + 1
	e := mdlMakeEntry(st.Term, next, -1)
	send(e.toAppend(st.Term, next, next, false))
	expect(next)
	close(s.in)
	if err := within(t, res); err != nil {
		t.Fatalf("%s: resuming: %v", what, err)
	}
	if err := g.WaitApplied(bounded(t), next); err != nil {
		t.Fatalf("%s: resuming: %v", what, err)
	}
	got[next] = e
	for o := st.Commit + 1; o <= next; o++ {
		got[o].applyTo(kv)
	}
	if data := plReadKV(t, g); !maps.Equal(data, kv) {
		t.Fatalf("%s: after resuming, data %v, want %v", what, data, kv)
	}
}

func first(es []logpos.Entry) logpos.EntryID {
	if len(es) == 0 {
		return logpos.NoEntry
	}
	return es[0].ID()
}

func last(es []logpos.Entry) logpos.EntryID {
	if len(es) == 0 {
		return logpos.NoEntry
	}
	return es[len(es)-1].ID()
}

func plReadKV(t *testing.T, f *Follower) map[string]string {
	kv := map[string]string{}
	for _, k := range mdlKeys {
		v, err := f.Get([]byte(k))
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			t.Fatalf("Get %s: %v", k, err)
		default:
			kv[k] = string(v)
		}
	}
	return kv
}

// plPoints picks the crash points of an operation that made n writes:
// every one when there are few, else the first and last ones and an even
// spread in between.
func plPoints(n int64, budget int) []int64 {
	if n <= int64(budget) {
		var ks []int64
		for k := int64(1); k <= n+1; k++ {
			ks = append(ks, k)
		}
		return ks
	}
	set := map[int64]bool{}
	for k := int64(1); k <= 4; k++ {
		set[k], set[n+1-k+1] = true, true
	}
	step := float64(n) / float64(budget-8)
	for x := 1.0; x < float64(n); x += step {
		set[int64(math.Round(x))] = true
	}
	var ks []int64
	for k := range set {
		if k >= 1 {
			ks = append(ks, k)
		}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}

// plCrashEverywhere runs the scenario once to count its writes, then
// crashes it at the chosen points, keeping 0% and then a random share of
// the unsynced data.
func plCrashEverywhere(t *testing.T, sc plScenario, budget int) map[string]int {
	n, _, _ := plOnce(t, sc, math.MaxInt64, 0, 0)
	points := plPoints(n, budget)
	runs, reached := 0, 0
	outcomes := map[string]int{}
	for _, pct := range []int{0, 60} {
		for _, k := range points {
			runs++
			_, ok, outcome := plOnce(t, sc, k, pct, 7)
			if ok {
				reached++
			}
			outcomes[outcome]++
		}
	}
	t.Logf("%s: %d writes; %d crash runs at %d points, %d within the operation; outcomes %v", sc.name, n, runs, len(points), reached, outcomes)
	return outcomes
}

// TestCrashBusyStream: a stream appends entries (per-entry acks in half of
// the runs, cumulative in the other) with commit advertisements, then
// half-closes. Every offset acknowledged before the crash survives.
func TestCrashBusyStream(t *testing.T) {
	plCrashEverywhere(t, plBusyStream(), 40)
}

func plBusyStream() plScenario {
	return plScenario{
		name:  "busy stream",
		setup: func(r *plRun) { r.newTerm(1) },
		run: func(r *plRun) {
			st := r.attach()
			done := r.push(st, 1, 0, 23, 3)
			if !r.waitAck(st, 23) {
				r.t.Fatalf("the stream ended: %v", <-st.res)
			}
			within(r.t, done)
			if err := st.finish(r.t); err != nil {
				r.t.Fatal(err)
			}
			if err := mdlSettle(r.f, 20); err != nil {
				r.t.Fatal(err)
			}
		},
	}
}

// TestCrashNewTermDuringStream: NewTerm runs while a stream is busy
// appending; then the new term's leader truncates and appends. The term
// NewTerm returned survives, and no entry of the old stream lies beyond the
// head NewTerm left.
func TestCrashNewTermDuringStream(t *testing.T) {
	plCrashEverywhere(t, plScenario{
		name: "NewTerm during a busy stream",
		setup: func(r *plRun) {
			r.newTerm(1)
			r.fill(1, 0, 4, 2)
		},
		run: func(r *plRun) {
			st := r.attach()
			done := r.push(st, 1, 5, 30, 2)
			r.waitAck(st, 8)
			r.newTerm(2)
			r.oldTerm, r.oldTermUpTo = 1, logpos.Offset(r.f.Status().Head)
			within(r.t, done)
			if err := within(r.t, st.res); !errors.Is(err, ErrStreamEnded) {
				r.t.Fatalf("the old stream: %v", err)
			}
			st.res <- nil
			head := r.f.Status().Head
			if _, err := r.f.Truncate(2, &logpos.EntryID{Term: 1, Offset: head}); err != nil {
				r.t.Fatal(err)
			}
			r.fill(2, head+1, head+3, head+3)
		},
	}, 40)
}

// TestCrashTruncate: the new term's leader truncates away the old term's
// uncommitted tail and appends its own entries.
func TestCrashTruncate(t *testing.T) {
	plCrashEverywhere(t, plTruncate(), 40)
}

func plTruncate() plScenario {
	return plScenario{
		name: "Truncate",
		setup: func(r *plRun) {
			r.newTerm(1)
			r.fill(1, 0, 19, 5)
			r.newTerm(2)
		},
		run: func(r *plRun) {
			// The leader withdraws what it cuts: entries after 9 need not
			// survive, acknowledged or not.
			r.mu.Lock()
			r.acked = min(r.acked, 9)
			r.mu.Unlock()
			if _, err := r.f.Truncate(2, &logpos.EntryID{Term: 1, Offset: 9}); err != nil {
				r.t.Fatal(err)
			}
			if r.c.before() {
				r.truncatedTo = 9
			}
			r.fill(2, 10, 14, 12)
		},
	}
}

// TestCrashInstall: a snapshot install replaces the store and clears the
// log, then a stream appends after the snapshot point. After a crash the
// store is the old one, complete, or the snapshot's, complete.
func TestCrashInstall(t *testing.T) {
	for _, storeTerm := range []logpos.Term{1, 3} {
		outcomes := plCrashEverywhere(t, plInstall(storeTerm), 50)
		var olds, news int
		for o, n := range outcomes {
			if strings.Contains(o, "old store") {
				olds += n
			} else {
				news += n
			}
		}
		if olds == 0 || news == 0 {
			t.Errorf("store term %d: %d crashes left the old store, %d the new: both must occur", storeTerm, olds, news)
		}
	}
}

// plInstall installs a snapshot whose store holds storeTerm on a
// follower of term 1, then appends after the snapshot point.
func plInstall(storeTerm logpos.Term) plScenario {
	return plScenario{
		name: fmt.Sprintf("install (snapshot store term %d)", storeTerm),
		setup: func(r *plRun) {
			r.newTerm(1)
			r.fill(1, 0, 7, 5)
			r.snapshot = mdlBuildSnapshot(r.t, 1, storeTerm, 14)
		},
		run: func(r *plRun) {
			s := &fakeSnapshotStream{chunks: r.snapshot.chunksFor(1, mangleNone, 0)}
			off, err := r.f.InstallSnapshot(s)
			if err != nil || off != 14 {
				r.t.Fatalf("InstallSnapshot: %d, %v", off, err)
			}
			if r.c.before() {
				r.installed = true
				r.minTerm = max(r.minTerm, storeTerm)
			}
			r.maxTerm = max(r.maxTerm, storeTerm)
			term := logpos.Term(r.f.Status().Term)
			r.fill(term, 15, 17, logpos.NoOffset)
		},
	}
}
