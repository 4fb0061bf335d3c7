package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// model is what a workload knows about the log it drives: which entries
// the log reported durable (they must survive any crash), and every
// version ever appended at each offset with the step that removed it.
type model struct {
	mu        sync.Mutex
	step      int // operations completed
	log       []logpos.Entry
	mustHave  []logpos.Entry // reported durable, not being removed
	trimFloor logpos.Offset  // entries below may have been trimmed
	versions  map[logpos.Offset][]version
}

type version struct {
	e       logpos.Entry
	removed int // step that completed the removal; 0 while present
}

// expectation is a copy of the model's guarantees at one instant.
type expectation struct {
	step      int
	mustHave  []logpos.Entry
	trimFloor logpos.Offset
}

func newModel() *model {
	return &model{versions: map[logpos.Offset][]version{}, trimFloor: logpos.NoOffset}
}

func (m *model) expect() expectation {
	m.mu.Lock()
	defer m.mu.Unlock()
	return expectation{step: m.step, mustHave: append([]logpos.Entry(nil), m.mustHave...), trimFloor: m.trimFloor}
}

func (m *model) lastOffset() logpos.Offset {
	if len(m.log) == 0 {
		return logpos.NoOffset
	}
	return m.log[len(m.log)-1].Offset
}

// durableTo records what the log reports durable after an operation.
func (m *model) durableTo(d logpos.Offset) {
	m.mustHave = m.mustHave[:0]
	for _, e := range m.log {
		if e.Offset <= d {
			m.mustHave = append(m.mustHave, e)
		}
	}
}

// removeAfter marks the versions after lastSafe removed at the next step.
func (m *model) removeAfter(lastSafe logpos.Offset) {
	kept := m.log[:0]
	for _, e := range m.log {
		if e.Offset <= lastSafe {
			kept = append(kept, e)
			continue
		}
		vs := m.versions[e.Offset]
		for i := range vs {
			if vs[i].removed == 0 {
				vs[i].removed = m.step + 1
			}
		}
	}
	m.log = kept
}

// check opens a log on fs and holds it against x. It returns the reopened
// log's last offset.
func (m *model) check(fs vfs.FS, x expectation) error {
	keep := logpos.NoOffset
	if n := len(x.mustHave); n > 0 {
		keep = x.mustHave[n-1].Offset
	}
	l, err := Open("wal", Options{FS: fs, SegmentSize: 512, MustKeepBelow: keep + 1})
	if err != nil {
		return fmt.Errorf("reopen (must keep %d): %w", keep, err)
	}
	defer l.Close()
	first := l.FirstOffset()
	got, err := tryReadAll(l, max(first, 0))
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if d := l.LastDurable(); len(got) > 0 && d != got[len(got)-1].ID() || len(got) == 0 && d != logpos.NoEntry {
		return fmt.Errorf("LastDurable %v, last entry read %d of %d", d, len(got), len(got))
	}
	present := map[logpos.Offset]logpos.Entry{}
	for i, e := range got {
		if e.Offset != first+logpos.Offset(i) {
			return fmt.Errorf("entry %d has offset %d: not contiguous from %d", i, e.Offset, first)
		}
		present[e.Offset] = e
		m.mu.Lock()
		vs := m.versions[e.Offset]
		m.mu.Unlock()
		ok := false
		for _, v := range vs {
			if (v.removed == 0 || v.removed > x.step) && equalEntries([]logpos.Entry{e}, []logpos.Entry{v.e}) == nil {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("offset %d holds %+v: never appended, or removed before the crash", e.Offset, e)
		}
	}
	for _, want := range x.mustHave {
		if want.Offset < x.trimFloor {
			continue
		}
		e, ok := present[want.Offset]
		if !ok {
			return fmt.Errorf("durable entry %d lost (log %d..%d)", want.Offset, first, first+logpos.Offset(len(got))-1)
		}
		if err := equalEntries([]logpos.Entry{e}, []logpos.Entry{want}); err != nil {
			return fmt.Errorf("durable entry %d changed: %w", want.Offset, err)
		}
	}
	// The recovered log takes appends.
	next := logpos.Offset(0)
	if len(got) > 0 {
		next = got[len(got)-1].Offset + 1
	}
	if err := l.AppendAsync(entry(next, 99)); err != nil {
		return fmt.Errorf("append after recovery: %w", err)
	}
	if _, err := l.Sync(context.Background()); err != nil {
		return fmt.Errorf("sync after recovery: %w", err)
	}
	return nil
}

// workload drives a log on fs through a seeded script of appends, syncs,
// truncations, trims, clears and reopens. Errors from the log are
// returned through onErr: nil means every operation must succeed.
type workload struct {
	t     testing.TB
	fs    vfs.FS
	m     *model
	rng   *rand.Rand
	gen   int
	l     *Log
	steps int
	// tolerate: operations may fail (injected errors); the model only
	// moves on success.
	tolerate bool
	failures int
	history  []string
	name     string
}

func (w *workload) fatalf(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf(format, args...)
}

func (w *workload) opened() bool {
	if w.l != nil {
		return true
	}
	l, err := Open("wal", Options{FS: w.fs, SegmentSize: 512})
	if err != nil {
		if !w.tolerate {
			w.fatalf("Open: %v", err)
		}
		w.failures++
		return false
	}
	w.l = l
	w.m.mu.Lock()
	// A reopened log holds what was on disk: entries the model had not
	// seen durable may have survived.
	w.m.log = w.m.log[:0]
	w.m.mu.Unlock()
	got, err := tryReadAll(l, max(l.FirstOffset(), 0))
	if err != nil {
		w.fatalf("read after open (failures %q): %v", w.history, err)
	}
	w.m.mu.Lock()
	w.m.log = got
	w.m.durableTo(l.LastDurable().Offset)
	w.m.mu.Unlock()
	return true
}

func (w *workload) failed(op string, err error) {
	if err == nil {
		return
	}
	if !w.tolerate {
		w.fatalf("%s: %v", op, err)
	}
	w.history = append(w.history, fmt.Sprintf("step %d: %s: %v", w.m.step, op, err))
	w.failures++
}

func (w *workload) run() {
	defer func() {
		if w.l != nil {
			_ = w.l.Close()
		}
	}()
	ctx := context.Background()
	for range w.steps {
		if !w.opened() {
			continue
		}
		l, m := w.l, w.m
		m.mu.Lock()
		last := m.lastOffset()
		m.mu.Unlock()
		var err error
		p := w.rng.IntN(100)
		if debugCrash {
			fmt.Println(w.name, "step", m.step, "p", p, "last", last)
		}
		switch {
		case p < 45:
			n := 1 + w.rng.IntN(12)
			next := last + 1
			if last == logpos.NoOffset {
				next = logpos.Offset(w.rng.IntN(3) * 1000)
			}
			for i := range n {
				e := entry(next+logpos.Offset(i), w.gen)
				m.mu.Lock()
				m.versions[e.Offset] = append(m.versions[e.Offset], version{e: e})
				m.mu.Unlock()
				if err = l.AppendAsync(e); err != nil {
					break
				}
				m.mu.Lock()
				m.log = append(m.log, e)
				m.mu.Unlock()
			}
			w.failed("append", err)
		case p < 75:
			_, err = l.Sync(ctx)
			w.failed("sync", err)
		case p < 85 && last != logpos.NoOffset:
			first := max(l.FirstOffset(), 0)
			m.mu.Lock()
			lastSafe := first - 1 + logpos.Offset(w.rng.IntN(int(last-first)+2))
			for i := range m.mustHave {
				if m.mustHave[i].Offset > lastSafe {
					m.mustHave = m.mustHave[:i]
					break
				}
			}
			m.mu.Unlock()
			var got logpos.Offset
			got, err = l.TruncateLog(lastSafe)
			w.failed("truncate", err)
			if err == nil {
				if lastSafe < first {
					lastSafe = logpos.NoOffset
				}
				if got != lastSafe {
					w.fatalf("TruncateLog = %d, want %d", got, lastSafe)
				}
				m.mu.Lock()
				m.removeAfter(lastSafe)
				m.mu.Unlock()
				w.gen++
			}
		case p < 90:
			upTo := l.LastDurable().Offset - logpos.Offset(w.rng.IntN(20))
			m.mu.Lock()
			m.trimFloor = max(m.trimFloor, upTo)
			m.mu.Unlock()
			w.failed("trim", l.Trim(upTo))
		case p < 93:
			m.mu.Lock()
			m.mustHave = nil
			m.mu.Unlock()
			err = l.Clear()
			w.failed("clear", err)
			if err == nil {
				m.mu.Lock()
				m.removeAfter(logpos.NoOffset - 1)
				m.trimFloor = logpos.NoOffset
				m.mu.Unlock()
				w.gen++
				if w.rng.IntN(2) == 0 {
					w.failed("seed", l.SeedChain(w.rng.Uint32()))
				}
			}
		default:
			w.failed("close", l.Close())
			w.l = nil
		}
		m.mu.Lock()
		if w.l != nil {
			m.durableTo(w.l.LastDurable().Offset)
		}
		m.step++
		m.mu.Unlock()
	}
}

const debugCrash = false

// TestCrashAtEveryStep crashes (clones the file system as a power loss
// would leave it) before every write, sync, create, rename and removal of
// a scripted workload, then checks each crash image.
func TestCrashAtEveryStep(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			m := newModel()
			type crash struct {
				fs *vfs.MemFS
				x  expectation
				op string
			}
			var (
				mu      sync.Mutex
				crashes []crash
				n       int
			)
			rng := rand.New(rand.NewPCG(seed, 7))
			fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
				if op.Kind.ReadOrWrite() != errorfs.OpIsWrite || op.Kind == errorfs.OpFileClose {
					return nil
				}
				x := m.expect()
				mu.Lock()
				defer mu.Unlock()
				n++
				cfg := vfs.CrashCloneCfg{}
				if p := n % 3; p > 0 {
					cfg = vfs.CrashCloneCfg{UnsyncedDataPercent: 50 * p, RNG: rand.New(rand.NewPCG(seed, uint64(n)))}
				}
				if debugCrash {
					fmt.Println(t.Name(), "op", n, op.Kind, op.Path, "step", x.step)
				}
				crashes = append(crashes, crash{mem.CrashClone(cfg), x, fmt.Sprint(op.Kind, " ", op.Path, " ", cfg.UnsyncedDataPercent)})
				return nil
			}))
			w := &workload{t: t, fs: fs, m: m, rng: rng, steps: 120, name: t.Name()}
			w.run()
			if len(crashes) < 200 {
				t.Fatalf("only %d crash points", len(crashes))
			}
			for i, c := range crashes {
				if err := m.check(c.fs, c.x); err != nil {
					if debugCrash {
						fmt.Println(c.fs.String())
						for j := max(0, i-12); j <= i; j++ {
							fmt.Println("crash", j, crashes[j].op, crashes[j].x.step)
						}
					}
					t.Fatalf("crash %d (after step %d, before op %s): %v", i, c.x.step, c.op, err)
				}
			}
			t.Logf("%d crash images checked", len(crashes))
		})
	}
}

// TestInjectedErrors fails the n-th write operation of the workload, for
// about 150 values of n spread evenly over its writes (every one when
// it has fewer). The log either carries on or fails cleanly (ErrFailed,
// every later write refused); reopened without errors, it holds every
// entry it reported durable.
func TestInjectedErrors(t *testing.T) {
	// Count the write operations of a clean run first.
	var total int
	{
		var mu sync.Mutex
		fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
			mu.Lock()
			defer mu.Unlock()
			if op.Kind.ReadOrWrite() == errorfs.OpIsWrite && op.Kind != errorfs.OpFileClose {
				total++
			}
			return nil
		}))
		w := &workload{t: t, fs: fs, m: newModel(), rng: rand.New(rand.NewPCG(1, 1)), steps: 60}
		w.run()
	}
	stride := max(1, total/150)
	injected := 0
	for k := 1; k <= total; k += stride {
		mem := vfs.NewMem()
		var count int
		var on = true
		var mu sync.Mutex
		fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
			mu.Lock()
			defer mu.Unlock()
			if !on || op.Kind.ReadOrWrite() != errorfs.OpIsWrite || op.Kind == errorfs.OpFileClose {
				return nil
			}
			count++
			if count == k {
				return errorfs.ErrInjected
			}
			return nil
		}))
		m := newModel()
		w := &workload{t: t, fs: fs, m: m, rng: rand.New(rand.NewPCG(1, 1)), steps: 60, tolerate: true}
		w.run()
		if w.failures > 0 {
			injected++
		}
		mu.Lock()
		on = false
		mu.Unlock()
		if err := m.check(mem, m.expect()); err != nil {
			t.Fatalf("error injected at write %d: %v\nhistory: %q", k, err, w.history)
		}
	}
	if injected == 0 {
		t.Fatal("no injected error reached the caller")
	}
	t.Logf("%d of %d write operations failed in turn; %d runs saw an error", (total+stride-1)/stride, total, injected)
}

func TestFailedIsSticky(t *testing.T) {
	mem := vfs.NewMem()
	toggle := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSyncData {
			return errorfs.ErrInjected
		}
		return nil
	})}
	l := mustOpen(t, "wal", memOpts(errorfs.Wrap(mem, toggle)))
	mustAppend(t, l, entries(0, 9, 0)...)
	mustSync(t, l)
	mustAppend(t, l, entries(10, 19, 0)...)
	toggle.On()
	if _, err := l.Sync(context.Background()); !errors.Is(err, ErrFailed) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Sync: %v", err)
	}
	toggle.Off()
	if got := l.LastDurable().Offset; got != 9 {
		t.Fatalf("durable %d after a failed sync", got)
	}
	if err := l.AppendAsync(entry(20, 0)); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after failure: %v", err)
	}
	if _, err := l.Sync(context.Background()); !errors.Is(err, ErrFailed) {
		t.Fatalf("sync after failure: %v", err)
	}
	if _, err := l.TruncateLog(5); !errors.Is(err, ErrFailed) {
		t.Fatalf("truncate after failure: %v", err)
	}
	// Durable entries stay readable.
	checkEntries(t, readAll(t, l, 0), entries(0, 9, 0))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "wal", optsKeep(mem, 9))
	defer l.Close()
	got := readAll(t, l, 0)
	checkEntries(t, got[:10], entries(0, 9, 0))
}

// TestSegmentNamedAfterEarlierNamesAreDurable: a segment's name reaches
// the disk only after the names of the segments before it, so that a
// crash never leaves a later segment without an earlier one (a hole at
// the start of the log). Here the first segment is named and filled
// without a sync round; the roll-over to the second makes the first's
// name durable before naming the second.
func TestSegmentNamedAfterEarlierNamesAreDurable(t *testing.T) {
	mem := vfs.NewCrashableMem()
	l := mustOpen(t, "wal", memOpts(mem))
	defer l.Close()
	mustAppend(t, l, entries(0, 0, 0)...)
	first := segmentName(0)
	o := logpos.Offset(1)
	segments := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.mu.segs)
	}
	for segments() < 2 {
		mustAppend(t, l, entry(o, 0))
		o++
	}
	// Only what was made durable survives this crash.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	names, err := crashed.List("wal")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, first) {
		t.Fatalf("after a crash right after the roll-over the directory holds %v: the first segment's name was not durable", names)
	}
}

// abandon leaves l as a process crash would: its goroutine stopped, its
// files closed without a sync, its lock released (what the page cache
// holds stays: only a power loss, CrashClone, drops it).
func abandon(l *Log) {
	close(l.quit)
	l.wg.Wait()
	l.closeFiles()
	l.mu.Lock()
	l.mu.closed = true
	l.mu.Unlock()
}

// TestRecoveredNamesAreMadeDurable: a segment that a process crash left
// named but with its name not durable (nothing was synced) holds entries
// the reopened log reports durable once synced: recovery syncs the
// directory, so a later power loss keeps them.
func TestRecoveredNamesAreMadeDurable(t *testing.T) {
	mem := vfs.NewCrashableMem()
	// No segment is prepared in the background: the appender names the
	// first one itself, and nothing syncs the directory before the crash.
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpCreate && strings.Contains(op.Path, "next-") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	opts := Options{FS: fs, SegmentSize: 8 << 20}
	l := mustOpen(t, "wal", opts)
	big := bytes.Repeat([]byte("v"), 300<<10)
	for o := logpos.Offset(0); o < 4; o++ {
		mustAppend(t, l, logpos.Entry{Term: 1, Offset: o, Value: big})
	}
	abandon(l)
	l = mustOpen(t, "wal", opts)
	// The entries the appender wrote (those it had buffered are lost).
	next := l.LastAppended().Offset + 1
	if next < 2 {
		t.Fatalf("the crash left %d entries: the test proves nothing", next)
	}
	mustAppend(t, l, logpos.Entry{Term: 1, Offset: next, Value: []byte("x")})
	if d := mustSync(t, l); d != next {
		t.Fatalf("durable up to %d, want %d", d, next)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open("wal", Options{FS: crashed, SegmentSize: 8 << 20, MustKeepBelow: next + 1})
	if err != nil {
		t.Fatalf("reopening after a power loss: %v", err)
	}
	defer l2.Close()
	if d := l2.LastDurable().Offset; d != next {
		t.Fatalf("Sync reported %d durable; after a power loss the log ends at %d", next, d)
	}
}

// TestDirectorySyncFailureIsSticky: a failed directory fsync may have
// lost the name of a segment created since the last one that succeeded
// (Linux reports a writeback failure once, to the next fsync, and a later
// fsync succeeds without writing what was lost). Whichever call meets it
// (the background index write, Trim), the log fails: it reported the
// entries of that segment durable at the next Sync. At Open (an index
// rebuilt), Open fails.
func TestDirectorySyncFailureIsSticky(t *testing.T) {
	t.Run("open", func(t *testing.T) {
		fs, _ := closedLog(t, 100)
		if err := fs.Remove("wal/" + indexName(0)); err != nil {
			t.Fatal(err)
		}
		var armed, failed atomic.Bool
		efs := errorfs.Wrap(fs, errorfs.InjectorFunc(func(op errorfs.Op) error {
			if op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, indexSuffix+tmpSuffix) {
				armed.Store(true)
			}
			if op.Kind == errorfs.OpFileSync && op.Path == "wal" && armed.CompareAndSwap(true, false) {
				failed.Store(true)
				return errorfs.ErrInjected
			}
			return nil
		}))
		l, err := Open("wal", optsKeep(efs, 99))
		if !failed.Load() {
			t.Fatal("no directory fsync failed: the test proves nothing")
		}
		if err == nil {
			_, serr := l.Sync(context.Background())
			_ = l.Close()
			t.Fatalf("Open whose directory fsync failed returned a log (Sync: %v)", serr)
		}
		if !errors.Is(err, errorfs.ErrInjected) {
			t.Fatalf("Open: %v, want the fsync's failure", err)
		}
	})
	for _, at := range []string{"index", "trim"} {
		t.Run(at, func(t *testing.T) {
			var indexArmed, armed, failed atomic.Bool
			fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
				if op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, indexSuffix+tmpSuffix) && indexArmed.Load() {
					armed.Store(true) // fail the directory sync that follows
				}
				if op.Kind == errorfs.OpFileSync && op.Path == "wal" && armed.CompareAndSwap(true, false) {
					failed.Store(true)
					return errorfs.ErrInjected
				}
				return nil
			}))
			l := mustOpen(t, "wal", memOpts(fs))
			defer l.Close()
			o := logpos.Offset(0)
			for len(segFirsts(l)) < 3 {
				mustAppend(t, l, entry(o, 0))
				mustSync(t, l)
				o++
			}
			workerRound(l) // the indexes of the sealed segments are written
			// Appends until one starts a segment, whose name is not
			// durable until a directory fsync succeeds.
			n := len(segFirsts(l))
			indexArmed.Store(at == "index")
			for len(segFirsts(l)) == n {
				mustAppend(t, l, entry(o, 0))
				o++
				if at == "index" && len(segFirsts(l)) == n {
					// The segment rolled over is then synced
					// whole, and the worker indexes it at once.
					mustSync(t, l)
				}
			}
			switch at {
			case "index":
				workerRound(l)
			case "trim":
				armed.Store(true)
				if err := l.Trim(segFirsts(l)[1]); err == nil {
					t.Fatal("Trim whose directory fsync failed returned nil")
				}
			}
			if !failed.Load() {
				t.Fatal("no directory fsync failed: the test proves nothing")
			}
			if d, err := l.Sync(context.Background()); !errors.Is(err, ErrFailed) {
				t.Fatalf("after a failed directory fsync, Sync = %d, %v (durable %d); want ErrFailed", d, err, l.LastDurable().Offset)
			}
		})
	}
}
