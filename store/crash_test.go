package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/google/go-cmp/cmp"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store/kvpb"
)

// crasher takes a crash clone of a crashable MemFS just before the k-th
// file-system operation that writes (operations that only read change
// nothing a crash could reveal), once armed. Wrap the MemFS with
// errorfs.Wrap(mem, c) and give the result to the store.
type crasher struct {
	mem *vfs.MemFS
	k   int64
	cfg vfs.CrashCloneCfg

	armed atomic.Bool
	n     atomic.Int64
	mu    struct {
		sync.Mutex
		clone *vfs.MemFS
	}
}

func (c *crasher) String() string { return fmt.Sprintf("crash before write op %d", c.k) }

func (c *crasher) MaybeError(op errorfs.Op) error {
	if !c.armed.Load() || op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	if c.n.Add(1) == c.k {
		clone := c.mem.CrashClone(c.cfg)
		c.mu.Lock()
		c.mu.clone = clone
		c.mu.Unlock()
	}
	return nil
}

// crashed returns the clone, or a clone taken now if the k-th operation
// never came (the crash is then after the last one).
func (c *crasher) crashed() (fs *vfs.MemFS, reached bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.clone != nil {
		return c.mu.clone, true
	}
	return c.mem.CrashClone(c.cfg), false
}

// crashCfgs are the crash models: only synced data survives, or a random
// share of unsynced blocks and directory entries survives too.
func crashCfgs(seed uint64) []vfs.CrashCloneCfg {
	cfgs := []vfs.CrashCloneCfg{{}}
	for _, p := range []int{30, 70, 100} {
		cfgs = append(cfgs, vfs.CrashCloneCfg{UnsyncedDataPercent: p, RNG: rand.New(rand.NewPCG(seed, uint64(p)))})
	}
	return cfgs
}

// atomicityOps are the writes of entry i: new keys, an overwrite, a
// delete and now and then a range delete, with values big enough that
// the WAL spans several blocks.
func atomicityOps(i int) []*kvpb.Operation {
	big := strings.Repeat(fmt.Sprintf("%03d", i), 1000)
	ops := []*kvpb.Operation{
		put(fmt.Sprintf("e/%03d/a", i), big),
		put(fmt.Sprintf("e/%03d/b", i), "b"),
		put("last", fmt.Sprint(i)),
	}
	if i >= 2 {
		ops = append(ops, del(fmt.Sprintf("e/%03d/b", i-2)))
	}
	if i%5 == 4 {
		ops = append(ops, delRange(fmt.Sprintf("e/%03d", i-3), fmt.Sprintf("e/%03d", i-1)))
	}
	return ops
}

// applyAtomicityWorkload opens a store on fs at term 1 and applies the
// entries 0..applied of atomicityOps, syncing after entry synced. It
// returns the store and the models of its data: models[i+1] after entry
// i.
func applyAtomicityWorkload(t *testing.T, fs vfs.FS, synced, applied int) (*Store, []model) {
	t.Helper()
	s, err := Open("/shard", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	models := []model{{}}
	for i := 0; i <= applied; i++ {
		ops := atomicityOps(i)
		if err := s.Apply(kvEntry(t, 1, logpos.Offset(i), ops...)); err != nil {
			t.Fatal(err)
		}
		m := models[i].clone()
		m.apply(ops...)
		models = append(models, m)
		if i == synced {
			if d, err := s.Sync(); err != nil || d.Offset != logpos.Offset(synced) {
				t.Fatalf("Sync = %v, %v", d, err)
			}
		}
	}
	return s, models
}

// TestApplyIsAtomicAcrossCrashes applies entries without syncing and
// crashes: after reopening, the commit is at some entry at or after the
// last Sync, and the data is exactly the data of the entries up to it.
// After Sync, every applied entry is there.
func TestApplyIsAtomicAcrossCrashes(t *testing.T) {
	const synced, applied = 9, 39
	between := 0 // crashes that kept some unsynced entries but not all
	for seed := uint64(0); seed < 3; seed++ {
		for _, cfg := range crashCfgs(seed) {
			t.Run(fmt.Sprintf("seed=%d/unsynced=%d%%", seed, cfg.UnsyncedDataPercent), func(t *testing.T) {
				mem := vfs.NewCrashableMem()
				s, models := applyAtomicityWorkload(t, mem, synced, applied)
				defer s.Close()
				waitWALWritten(t, s, mem)
				crashed := mem.CrashClone(cfg)

				r, err := Open("/shard", Options{FS: crashed})
				if err != nil {
					t.Fatalf("reopen after crash: %v", err)
				}
				defer r.Close()
				c := r.Commit()
				t.Logf("commit after crash: %v", c)
				if c.Offset > synced && c.Offset < applied {
					between++
				}
				if c.Offset < synced || c.Offset > applied {
					t.Fatalf("commit after crash %v, want between %d and %d", c, synced, applied)
				}
				if diff := cmp.Diff(models[c.Offset+1], userData(t, r)); diff != "" {
					t.Fatalf("data after crash with commit %v is not the data of entries 0..%d (-want +got):\n%s", c, c.Offset, diff)
				}
				if r.Term() != 1 || r.DurableCommit() != c {
					t.Fatalf("term %d durable %v after crash", r.Term(), r.DurableCommit())
				}
				// What Open reports durable is: a second crash right away
				// keeps it.
				again, err := Open("/shard", Options{FS: crashed.CrashClone(vfs.CrashCloneCfg{})})
				if err != nil {
					t.Fatal(err)
				}
				if again.Commit() != c {
					t.Errorf("second crash: commit %v, want %v", again.Commit(), c)
				}
				if diff := cmp.Diff(models[c.Offset+1], userData(t, again)); diff != "" {
					t.Errorf("second crash (-want +got):\n%s", diff)
				}
				if err := again.Close(); err != nil {
					t.Fatal(err)
				}
				// The log replays the rest: exactly the next entry is accepted.
				if err := r.Apply(kvEntry(t, 1, c.Offset, atomicityOps(int(c.Offset))...)); !errors.Is(err, ErrOutOfOrder) {
					t.Fatalf("re-applying the commit entry: %v", err)
				}
				for i := int(c.Offset) + 1; i <= applied; i++ {
					if err := r.Apply(kvEntry(t, 1, logpos.Offset(i), atomicityOps(i)...)); err != nil {
						t.Fatal(err)
					}
				}
				if diff := cmp.Diff(models[applied+1], userData(t, r)); diff != "" {
					t.Fatalf("after replay (-want +got):\n%s", diff)
				}

				// After Sync everything is there, whatever else is lost.
				if d, err := s.Sync(); err != nil || d.Offset != applied {
					t.Fatalf("Sync = %v, %v", d, err)
				}
				crashed = mem.CrashClone(cfg)
				r2, err := Open("/shard", Options{FS: crashed})
				if err != nil {
					t.Fatal(err)
				}
				defer r2.Close()
				if r2.Commit().Offset != applied {
					t.Fatalf("commit after Sync and crash %v, want %d", r2.Commit(), applied)
				}
				if diff := cmp.Diff(models[applied+1], userData(t, r2)); diff != "" {
					t.Fatalf("after Sync and crash (-want +got):\n%s", diff)
				}
			})
		}
	}
	if between == 0 {
		t.Error("no crash kept a part of the unsynced entries: the test exercises nothing between the extremes")
	}
}

// waitWALWritten waits until the WAL file of s on mem holds every full
// block of the WAL, synced or not. Pebble hands the full blocks of
// unsynced commits to the file from a goroutine of its own (the last,
// partial block only when a sync asks for it): a crash clone taken before
// that goroutine ran has none of the unsynced entries to keep, whatever
// share of unsynced data the crash keeps. With GOMAXPROCS=1 that was most
// runs, and TestApplyIsAtomicAcrossCrashes found no crash between the
// extremes.
func waitWALWritten(t *testing.T, s *Store, mem *vfs.MemFS) {
	t.Helper()
	const walBlock = 32 << 10 // the block of pebble's WAL records
	s.db.RLock()
	defer s.db.RUnlock()
	dir := mem.PathJoin("/shard", s.db.name)
	for {
		// The logical size of the WAL: every record handed to it. The
		// store's one WAL file is new, not recycled: its size on the
		// file system is what was written of it.
		size := s.db.h.Metrics().WAL.Size
		var logs []string
		var written uint64
		for _, name := range listDir(t, mem, dir) {
			if strings.HasSuffix(name, ".log") {
				fi, err := mem.Stat(mem.PathJoin(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				logs = append(logs, name)
				written += uint64(fi.Size())
			}
		}
		if len(logs) != 1 || written > size {
			t.Fatalf("WAL files %q of %d bytes, the WAL %d bytes", logs, written, size)
		}
		if written >= size/walBlock*walBlock {
			return
		}
		runtime.Gosched()
	}
}

// TestApplyIsAtomicAtEveryWALPrefix: a crash may keep any prefix of the
// unsynced part of the database's WAL; every such prefix reopens to the
// data of exactly the entries up to the commit it holds.
func TestApplyIsAtomicAtEveryWALPrefix(t *testing.T) {
	// The unsynced entries span the end of the WAL's first 32 KiB block.
	const synced, applied = 7, 13
	mem := vfs.NewCrashableMem()
	s, models := applyAtomicityWorkload(t, mem, synced, applied)
	defer s.Close()
	// What a crash now keeps for sure: the synced data, the WAL up to
	// its last sync.
	base := mem.CrashClone(vfs.CrashCloneCfg{})
	dir := mem.PathJoin("/shard", s.db.name)
	var logs []string
	for _, name := range listDir(t, mem, dir) {
		if strings.HasSuffix(name, ".log") {
			logs = append(logs, mem.PathJoin(dir, name))
		}
	}
	if len(logs) != 1 {
		t.Fatalf("WAL files %q, want one", logs)
	}
	wal := logs[0]
	durableWAL := fileContent(t, base, wal)
	// Close hands the rest of the WAL to the file.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	full := fileContent(t, mem, wal)
	if !bytes.HasPrefix(full, durableWAL) || len(full) == len(durableWAL) {
		t.Fatalf("WAL of %d bytes, %d of them synced", len(full), len(durableWAL))
	}
	if len(full) <= 32<<10 || len(durableWAL) >= 32<<10 {
		t.Fatalf("%d bytes of the WAL synced, %d written: the unsynced part is not across its first block's end", len(durableWAL), len(full))
	}
	seen := map[logpos.Offset]bool{}
	for cut := len(durableWAL); ; cut = min(cut+97, len(full)) {
		img := base.CrashClone(vfs.CrashCloneCfg{})
		if err := writeFile(img, wal, string(full[:cut])); err != nil {
			t.Fatal(err)
		}
		r, err := Open("/shard", Options{FS: img})
		if err != nil {
			t.Fatalf("WAL cut at %d of %d bytes: reopen: %v", cut, len(full), err)
		}
		c := r.Commit()
		seen[c.Offset] = true
		if diff := cmp.Diff(models[c.Offset+1], userData(t, r)); diff != "" {
			t.Fatalf("WAL cut at %d of %d bytes: the data is not that of entries 0..%d, the commit (-want +got):\n%s", cut, len(full), c.Offset, diff)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if cut == len(full) {
			break
		}
	}
	for o := logpos.Offset(synced); o <= applied; o++ {
		if !seen[o] {
			t.Errorf("no cut of the WAL reopened with commit offset %d", o)
		}
	}
}

// fileContent returns the content of the file name on fs.
func fileContent(t testing.TB, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSetTermIsDurableWhenItReturns(t *testing.T) {
	mem := vfs.NewCrashableMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	fillStore(t, s, model{}, 1, 3, "k") // SetTerm(1), three entries
	opts := TermOptions{EnableNotifications: true, KeySorting: KeySortingNatural}
	if err := s.SetTerm(7, opts); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, "/shard", Options{FS: mem.CrashClone(vfs.CrashCloneCfg{})})
	if r.Term() != 7 || r.TermOptions() != opts {
		t.Fatalf("after crash: term %d options %+v, want 7 %+v", r.Term(), r.TermOptions(), opts)
	}
	// SetTerm synced the entries applied before it as well.
	if r.Commit().Offset != 2 {
		t.Fatalf("after crash: commit %v, want offset 2", r.Commit())
	}
}

// TestClearLogResetIsDurableWhenItReturns: once ClearLogReset returns, a
// crash does not bring the log reset back (its owner would clear its log
// again, losing the entries it took since).
func TestClearLogResetIsDurableWhenItReturns(t *testing.T) {
	chunks, info, _ := memSource(t)
	mem := vfs.NewCrashableMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	if _, err := load(s, chunks, 0); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, "/shard", Options{FS: mem.CrashClone(vfs.CrashCloneCfg{})})
	if at, pending := r.LogResetPending(); !pending || at != info.Commit {
		t.Fatalf("after Install and a crash: log reset to %v pending %v, want %v", at, pending, info.Commit)
	}
	if err := s.ClearLogReset(); err != nil {
		t.Fatal(err)
	}
	r = mustOpen(t, "/shard", Options{FS: mem.CrashClone(vfs.CrashCloneCfg{})})
	if at, pending := r.LogResetPending(); pending {
		t.Fatalf("after ClearLogReset and a crash: log reset to %v pending again", at)
	}
}

// TestInstalledSnapshotIsDurable: the files of a snapshot are durable once
// Install returns, also the tables that opening the staged database does
// not rewrite (here all of them: the source holds puts only, compacted
// into its last level, so there is no WAL to replay and no tombstone to
// drop).
func TestInstalledSnapshotIsDurable(t *testing.T) {
	src := mustOpen(t, "/src", Options{FS: vfs.NewMem(), SnapshotChunkSize: 4096})
	if err := src.SetTerm(5, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	data := model{}
	for i := range 30 {
		k, v := fmt.Sprintf("src/%03d", i), strings.Repeat(fmt.Sprint(i), 100)
		if err := src.Apply(kvEntry(t, 5, logpos.Offset(i), put(k, v))); err != nil {
			t.Fatal(err)
		}
		data[k] = v
	}
	if err := src.db.h.Compact(context.Background(), []byte{sysPrefix}, userUpperBound, false); err != nil {
		t.Fatal(err)
	}
	chunks, info := takeSnapshot(t, src)
	mem := vfs.NewCrashableMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	fillStore(t, s, model{}, 3, 5, "old")
	if _, err := load(s, chunks, 0); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, "/shard", Options{FS: mem.CrashClone(vfs.CrashCloneCfg{})})
	checkInstalled(t, "after Install and a crash", fingerprintOf(t, r), info, data)
}

// TestCrashDuringCreation crashes before every write of a store's
// creation: reopening always gives a fresh, working store.
func TestCrashDuringCreation(t *testing.T) {
	for k := int64(1); ; k++ {
		mem := vfs.NewCrashableMem()
		c := &crasher{mem: mem, k: k}
		c.armed.Store(true)
		s, err := Open("/data/shard", Options{FS: errorfs.Wrap(mem, c)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		crashed, reached := c.crashed()
		r, err := Open("/data/shard", Options{FS: crashed})
		if err != nil {
			t.Fatalf("crash before write %d of the creation: reopen: %v", k, err)
		}
		if r.Term() != logpos.NoTerm || r.Commit() != logpos.NoEntry {
			t.Fatalf("crash before write %d: term %d commit %v", k, r.Term(), r.Commit())
		}
		if err := r.SetTerm(1, TermOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if !reached {
			t.Logf("creation crashed at each of its %d writes", k-1)
			return
		}
	}
}

func TestOpenRemovesLeftovers(t *testing.T) {
	mem := vfs.NewMem()
	s, err := Open("/shard", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	m := model{}
	fillStore(t, s, m, 2, 5, "k")
	want := fingerprintOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What a crash may leave: a staging database, a checkpoint, a
	// half-written marker, and a database a finished swap replaced.
	for _, f := range []string{"/shard/db-000007/000001.log", "/shard/checkpoint-000042/MANIFEST-000001", "/shard/CURRENT.tmp", "/shard/db-000000/OPTIONS-000003"} {
		if err := mem.MkdirAll(mem.PathDir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		fl, err := mem.Create(f, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fl.Write([]byte("leftover")); err != nil {
			t.Fatal(err)
		}
		fl.Close()
	}
	s = mustOpen(t, "/shard", Options{FS: mem})
	assertFingerprint(t, "after reopen", want, fingerprintOf(t, s))
	// New directories never reuse a number seen.
	l, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Abort()
	if l.name != "db-000043" {
		t.Fatalf("new staging directory %s, want db-000043", l.name)
	}
}

func TestOpenRefusesCorruptLayout(t *testing.T) {
	for name, corrupt := range map[string]func(fs vfs.FS) error{
		"marker garbage": func(fs vfs.FS) error { return writeFile(fs, "/shard/CURRENT", "../../etc\n") },
		"marker empty":   func(fs vfs.FS) error { return writeFile(fs, "/shard/CURRENT", "") },
		"marker names a missing database": func(fs vfs.FS) error {
			return writeFile(fs, "/shard/CURRENT", "db-000009\n")
		},
		"no format record": func(fs vfs.FS) error {
			s, err := Open("/other", Options{FS: fs})
			if err != nil {
				return err
			}
			err = s.db.h.Delete(keyFormat, nil)
			return errors.Join(err, s.Close(), writeFile(fs, "/shard/CURRENT", "db-000001\n"), fs.RemoveAll("/shard/db-000001"), fs.Rename("/other/db-000001", "/shard/db-000001"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewMem()
			s, err := Open("/shard", Options{FS: mem})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := corrupt(mem); err != nil {
				t.Fatal(err)
			}
			wantCorrupt(t, mem, "/shard")
		})
	}
}

// A store whose marker went missing is refused, not replaced by a fresh
// one: its database is kept, and opens again once the marker is back.
func TestOpenRefusesStoreWithoutMarker(t *testing.T) {
	for name, fill := range map[string]func(t *testing.T, s *Store){
		"term only": func(t *testing.T, s *Store) {
			if err := s.SetTerm(4, TermOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		"applied entries": func(t *testing.T, s *Store) { fillStore(t, s, model{}, 2, 5, "k") },
	} {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewMem()
			s := mustOpen(t, "/shard", Options{FS: mem})
			fill(t, s)
			want := fingerprintOf(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			before := listDir(t, mem, "/shard/db-000001")
			if err := mem.Remove("/shard/CURRENT"); err != nil {
				t.Fatal(err)
			}
			wantOpenRefusedWithoutMarker(t, mem, before)
			if err := writeFile(mem, "/shard/CURRENT", "db-000001\n"); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, "/shard", Options{FS: mem})
			defer s.Close()
			assertFingerprint(t, "with the marker back", want, fingerprintOf(t, s))
		})
	}
}

// A database left without a marker whose records do not read is not
// taken for the leftover of a creation: Open fails and removes nothing.
func TestOpenWithoutMarkerKeepsUnreadableStore(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	if err := s.SetTerm(4, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.h.Set(keyFormat, []byte("?"), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mem.Remove("/shard/CURRENT"); err != nil {
		t.Fatal(err)
	}
	before := listDir(t, mem, "/shard/db-000001")
	wantOpenRefusedWithoutMarker(t, mem, before)
}

// wantOpenRefusedWithoutMarker checks that Open of /shard, whose marker
// is gone, fails with ErrCorrupt naming db-000001 and leaves that
// database's files as they were (before).
func wantOpenRefusedWithoutMarker(t *testing.T, fs vfs.FS, before []string) {
	t.Helper()
	s, err := Open("/shard", Options{FS: fs})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "db-000001") {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open without a marker = %v, want ErrCorrupt naming db-000001", err)
	}
	if got := listDir(t, fs, "/shard/db-000001"); !slices.Equal(got, before) {
		t.Fatalf("the refused Open changed the database: %v, was %v", got, before)
	}
}

func writeFile(fs vfs.FS, name, content string) error {
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(content))
	return errors.Join(err, f.Sync(), f.Close())
}

// openOldStore opens the store in dir on fs with some data (the "old"
// store of the crash tests), synced, and returns it with its fingerprint.
func openOldStore(t *testing.T, dir string, fs vfs.FS) (*Store, fingerprint) {
	t.Helper()
	s, err := Open(dir, Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s, model{}, 3, 5, "old")
	if _, err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	return s, fingerprintOf(t, s)
}

// TestInstallCrashAtEveryStep crashes before each file-system write made
// while a snapshot is loaded and installed (the store's and Pebble's),
// and reopens: the store is either the complete old one, with no log
// reset pending, or the complete new one, with the reset pending.
func TestInstallCrashAtEveryStep(t *testing.T) {
	chunks, info, newData := memSource(t)
	for ci, cfg := range []vfs.CrashCloneCfg{{}, {UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(4, 2))}} {
		var olds, news int
		for k := int64(1); ; k++ {
			mem := vfs.NewCrashableMem()
			c := &crasher{mem: mem, k: k, cfg: cfg}
			s, old := openOldStore(t, "/shard", errorfs.Wrap(mem, c))
			c.armed.Store(true)
			_, err := load(s, chunks, 0)
			c.armed.Store(false)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			crashed, reached := c.crashed()
			r, err := Open("/shard", Options{FS: crashed})
			if err != nil {
				t.Fatalf("config %d, crash before write %d: reopen: %v", ci, k, err)
			}
			got := fingerprintOf(t, r)
			what := fmt.Sprintf("config %d, crash before write %d", ci, k)
			if got.Commit == old.Commit {
				assertFingerprint(t, what, old, got)
				olds++
			} else {
				checkInstalled(t, what, got, info, newData)
				if len(got.DirectoryListed) != 3 {
					t.Fatalf("%s: directory %q", what, got.DirectoryListed)
				}
				news++
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if !reached {
				t.Logf("config %d: crashed before each of %d writes: %d old, %d new", ci, k-1, olds, news)
				break
			}
		}
		if olds == 0 || news == 0 {
			t.Errorf("config %d: %d crashes gave the old store, %d the new: both must occur", ci, olds, news)
		}
	}
}

// stepwiseRemoval removes a directory tree one file at a time, as an
// operating system does (MemFS detaches a whole tree at once), children
// in the order List gives them.
type stepwiseRemoval struct{ vfs.FS }

func (fs stepwiseRemoval) RemoveAll(name string) error {
	st, err := fs.Stat(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if st.IsDir() {
		children, err := fs.List(name)
		if err != nil {
			return err
		}
		for _, c := range children {
			if err := fs.RemoveAll(fs.PathJoin(name, c)); err != nil {
				return err
			}
		}
	}
	return fs.Remove(name)
}

// reopenAfterDelete opens the store /data/shard on fs after an interrupted
// Delete of the store old described, checks that it is either that store
// (it reports true) or an empty new one, with nothing of the deleted one
// beside it, and closes it.
func reopenAfterDelete(t *testing.T, what string, fs vfs.FS, old fingerprint) (kept bool) {
	t.Helper()
	r, err := Open("/data/shard", Options{FS: fs})
	if err != nil {
		t.Fatalf("%s: reopen: %v", what, err)
	}
	if got := fingerprintOf(t, r); got.Commit == old.Commit {
		assertFingerprint(t, what, old, got)
		kept = true
	} else if got.Term != logpos.NoTerm || got.Commit != logpos.NoEntry || len(userData(t, r)) != 0 {
		t.Fatalf("%s: neither the old store nor an empty one: %+v", what, got)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if names := listDir(t, fs, "/data"); !slices.Equal(names, []string{"shard"}) {
		t.Fatalf("%s: /data holds %v after reopening", what, names)
	}
	return kept
}

// TestDeleteCrashAtEveryStep: a crash at any point of Delete leaves, after
// reopening, either the whole store or an empty new one, and nothing of
// the deleted one beside it; also on a file system where each removal
// reaches the disk as soon as it is made (Delete makes its move aside
// durable before it removes anything).
func TestDeleteCrashAtEveryStep(t *testing.T) {
	for _, fsys := range []struct {
		name string
		wrap func(vfs.FS) vfs.FS
	}{
		{"removals one by one", func(fs vfs.FS) vfs.FS { return stepwiseRemoval{fs} }},
		{"removals durable at once", func(fs vfs.FS) vfs.FS { return eagerRemoval{fs} }},
	} {
		for ci, cfg := range crashCfgs(9) {
			var kept, gone int
			for k := int64(1); ; k++ {
				mem := vfs.NewCrashableMem()
				c := &crasher{mem: mem, k: k, cfg: cfg}
				s, old := openOldStore(t, "/data/shard", fsys.wrap(errorfs.Wrap(mem, c)))
				c.armed.Store(true)
				if err := s.Delete(); err != nil {
					t.Fatalf("Delete: %v", err)
				}
				c.armed.Store(false)
				crashed, reached := c.crashed()
				if reopenAfterDelete(t, fmt.Sprintf("%s, config %d, crash before write %d", fsys.name, ci, k), crashed, old) {
					kept++
				} else {
					gone++
				}
				if !reached {
					break
				}
			}
			if kept == 0 || gone == 0 {
				t.Errorf("%s, config %d: %d crashes kept the store, %d deleted it: both must occur", fsys.name, ci, kept, gone)
			}
		}
	}
}

// TestDeleteStoppedAtEveryStep: a process stopped at any point of Delete
// (everything it did before reached the disk, nothing after) leaves,
// after reopening, either the whole store or an empty new one, and
// nothing of the deleted one beside it.
func TestDeleteStoppedAtEveryStep(t *testing.T) {
	var kept, gone int
	for k := int64(1); ; k++ {
		mem := vfs.NewMem()
		var armed atomic.Bool
		var n atomic.Int64
		fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
			if armed.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && n.Add(1) >= k {
				return errorfs.ErrInjected
			}
			return nil
		}))
		s, old := openOldStore(t, "/data/shard", stepwiseRemoval{fs})
		armed.Store(true)
		err := s.Delete()
		armed.Store(false)
		stopped := errors.Is(err, errorfs.ErrInjected)
		if err != nil && !stopped {
			t.Fatalf("Delete: %v", err)
		}
		if reopenAfterDelete(t, fmt.Sprintf("stopped before write %d", k), mem, old) {
			kept++
		} else {
			gone++
		}
		if !stopped {
			break
		}
	}
	if kept == 0 || gone == 0 {
		t.Errorf("%d stops kept the store, %d deleted it: both must occur", kept, gone)
	}
}

// TestWrongMarkerRemovesNothing: a marker naming a database that is not
// there (a damaged name) is ErrCorrupt, and Open removes nothing, the
// live database included, nor creates the one named: writing the right
// name back opens the store as it was.
func TestWrongMarkerRemovesNothing(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	fillStore(t, s, model{}, 3, 5, "k")
	want := fingerprintOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(mem, "/shard/CURRENT", "db-000009\n"); err != nil {
		t.Fatal(err)
	}
	before := listDir(t, mem, "/shard")
	wantCorrupt(t, mem, "/shard")
	if got := listDir(t, mem, "/shard"); !slices.Equal(got, before) {
		t.Fatalf("a refused Open changed the directory: %q, was %q", got, before)
	}
	if err := writeFile(mem, "/shard/CURRENT", "db-000001\n"); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, "/shard", Options{FS: mem})
	assertFingerprint(t, "with the marker repaired", want, fingerprintOf(t, s))
}
