package follower

// Fault sweeps: one write operation of an operation (an install, a
// Truncate, a NewTerm) fails with EIO, for each of them in turn. A failed
// operation returns ErrUnavailable and leaves the follower as it was
// (status, data, stored term and options, no staged files); a power loss
// right after it keeps the old store (or, after a success, the new
// state), never a lower term; the follower carries on once the disk is
// healed. Pebble's own files are left alone once it opens a database:
// it takes a failed write or sync of its manifest for fatal (see
// docs/store.md).

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

// oneFault fails the k-th write operation once armed (k = 0: none), and
// counts them.
type oneFault struct {
	armed atomic.Bool
	// pebble: Pebble works in the store's databases (after a snapshot's
	// chunks are staged): its own files are left alone.
	pebble atomic.Bool
	k      int64
	n      atomic.Int64
	hit    atomic.Pointer[string]
}

func (o *oneFault) String() string { return "one fault" }

func (o *oneFault) MaybeError(op errorfs.Op) error {
	// Pebble takes a failed write of its manifest for fatal (documented).
	if !o.armed.Load() || op.Kind.ReadOrWrite() != errorfs.OpIsWrite || strings.Contains(op.Path, "MANIFEST") || strings.Contains(op.Path, "/marker.") ||
		op.Kind == errorfs.OpFileSync && strings.HasPrefix(path.Base(op.Path), "db-") ||
		o.pebble.Load() && strings.Contains(path.Dir(op.Path), "/store/db-") {
		return nil
	}
	if o.n.Add(1) == o.k {
		s := fmt.Sprint(op.Kind, " ", op.Path)
		o.hit.Store(&s)
		return &os.PathError{Op: "injected", Path: op.Path, Err: syscall.EIO}
	}
	return nil
}

type sweepObs struct {
	st   Status
	kv   map[string]string
	term logpos.Term
	opts TermOptions
	log  []logpos.EntryID
}

func sweepObserve(t *testing.T, f *Follower) sweepObs {
	es, err := mdlReadLog(f)
	if err != nil {
		t.Fatalf("reading the log: %v", err)
	}
	var ids []logpos.EntryID
	for _, e := range es {
		ids = append(ids, e.ID())
	}
	term, opts := f.StoredTerm()
	return sweepObs{st: f.Status(), kv: plReadKV(t, f), term: term, opts: opts, log: ids}
}

func (a sweepObs) equal(b sweepObs, withLog bool) bool {
	return a.st == b.st && maps.Equal(a.kv, b.kv) && a.term == b.term && a.opts == b.opts && (!withLog || fmt.Sprint(a.log) == fmt.Sprint(b.log))
}

// sweepFill appends from..to of term with per-entry acks, commit advertised.
func sweepFill(t *testing.T, f *Follower, term logpos.Term, from, to, commit logpos.Offset) {
	s := &mdlStream{fakeStream: newFakeStream()}
	res := make(chan error, 1)
	go func() { res <- f.Replicate(s); s.cancel() }()
	for o := from; o <= to; o++ {
		s.in <- mdlMakeEntry(term, o, int(o)).toAppend(term, o, commit, false)
	}
	for o := from; o <= to; o++ {
		if a := within(t, s.acks); logpos.Offset(a) != o {
			t.Fatalf("ack %d, want %d", a, o)
		}
	}
	close(s.in)
	if err := within(t, res); err != nil {
		t.Fatal(err)
	}
	if err := mdlSettle(f, commit); err != nil {
		t.Fatal(err)
	}
}

type sweepScenario struct {
	name  string
	setup func(t *testing.T, f *Follower)
	// op runs the operation; it reports whether it succeeded.
	op func(t *testing.T, f *Follower, inj *oneFault) error
	// after checks the follower once the operation succeeded.
	after func(t *testing.T, what string, before, now sweepObs)
	// logMayCut: a failure may leave the log's durable view cut already.
	logMayCut bool
}

func sweepRun(t *testing.T, sc sweepScenario, k int64) (int64, string) {
	mem := mdlNewMem(t)
	inj := &oneFault{k: k}
	f, err := Open(Config{Dir: mdlDir, FS: errorfs.Wrap(mem, inj), SegmentSize: 512, TrimEvery: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	sc.setup(t, f)
	before := sweepObserve(t, f)
	inj.armed.Store(true)
	inj.pebble.Store(false)
	opErr := sc.op(t, f, inj)
	inj.armed.Store(false)
	n := inj.n.Load()
	hit := "nothing"
	if h := inj.hit.Load(); h != nil {
		hit = *h
	}
	what := fmt.Sprintf("%s, write %d failed (%s): %v", sc.name, k, hit, opErr)
	now := sweepObserve(t, f)
	if opErr != nil {
		if !errors.Is(opErr, ErrUnavailable) {
			t.Fatalf("%s: the error is not ErrUnavailable", what)
		}
		if !now.equal(before, !sc.logMayCut) {
			t.Fatalf("%s: the failed operation changed the follower:\nbefore %+v\nafter  %+v", what, before, now)
		}
		if left := mdlStagingLeft(mem); len(left) > 0 {
			t.Fatalf("%s: staged files left: %v", what, left)
		}
	} else {
		sc.after(t, what, before, now)
	}
	// Power loss now: the state a restart finds.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	g, err := Open(Config{Dir: mdlDir, FS: crashed, SegmentSize: 512, TrimEvery: 4})
	if err != nil {
		t.Fatalf("%s: reopening after a power loss: %v", what, err)
	}
	defer g.Close()
	re := sweepObserve(t, g)
	if re.term < now.term {
		t.Fatalf("%s: term %d after a power loss, was %d", what, re.term, now.term)
	}
	if opErr != nil && !maps.Equal(re.kv, before.kv) && re.st.Commit >= before.st.Commit {
		t.Fatalf("%s: after a power loss the store is not the old one: commit %d kv %v", what, re.st.Commit, re.kv)
	}
	if opErr == nil {
		sc.after(t, what+" (after a power loss)", before, re)
	}
	// The follower that met the failure carries on once the disk is healed.
	if _, err := f.NewTerm(max(now.st.Term, 5), TermOptions{}); err != nil {
		t.Fatalf("%s: NewTerm after the failure: %v", what, err)
	}
	return n, what
}

func sweep(t *testing.T, sc sweepScenario) {
	n, _ := sweepRun(t, sc, 0)
	for k := int64(1); k <= n; k++ {
		sweepRun(t, sc, k)
	}
	t.Logf("%s: %d write operations failed in turn", sc.name, n)
}

func TestFaultSweepInstall(t *testing.T) {
	for _, storeTerm := range []logpos.Term{1, 3} {
		sn := mdlBuildSnapshot(t, 1, storeTerm, 14)
		sweep(t, sweepScenario{
			name: fmt.Sprintf("install (store term %d)", storeTerm),
			setup: func(t *testing.T, f *Follower) {
				if _, err := f.NewTerm(1, TermOptions{}); err != nil {
					t.Fatal(err)
				}
				sweepFill(t, f, 1, 0, 20, 17)
			},
			op: func(t *testing.T, f *Follower, inj *oneFault) error {
				_, err := f.InstallSnapshot(&eofNotingStream{fakeSnapshotStream{chunks: sn.chunksFor(1, mangleNone, 0)}, inj})
				return err
			},
			after: func(t *testing.T, what string, before, now sweepObs) {
				if now.st.Commit != 14 || now.st.Head != 14 || !maps.Equal(now.kv, sn.kv) || now.term != max(storeTerm, 1) || now.opts != mdlSnapshotOptions {
					t.Fatalf("%s: after the install %+v", what, now)
				}
			},
		})
	}
}

func TestFaultSweepTruncate(t *testing.T) {
	sweep(t, sweepScenario{
		name:      "truncate",
		logMayCut: true,
		setup: func(t *testing.T, f *Follower) {
			if _, err := f.NewTerm(1, TermOptions{}); err != nil {
				t.Fatal(err)
			}
			sweepFill(t, f, 1, 0, 40, 5)
			if _, err := f.NewTerm(2, TermOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		op: func(t *testing.T, f *Follower, inj *oneFault) error {
			_, err := f.Truncate(2, &logpos.EntryID{Term: 1, Offset: 9})
			return err
		},
		after: func(t *testing.T, what string, before, now sweepObs) {
			if now.st.Head != 9 || len(now.log) == 0 || now.log[len(now.log)-1].Offset != 9 {
				t.Fatalf("%s: after the truncation %+v", what, now)
			}
		},
	})
}

func TestFaultSweepNewTerm(t *testing.T) {
	sweep(t, sweepScenario{
		name: "newterm",
		setup: func(t *testing.T, f *Follower) {
			if _, err := f.NewTerm(1, TermOptions{}); err != nil {
				t.Fatal(err)
			}
			sweepFill(t, f, 1, 0, 20, 5)
		},
		op: func(t *testing.T, f *Follower, inj *oneFault) error {
			_, err := f.NewTerm(2, TermOptions{EnableNotifications: true})
			return err
		},
		after: func(t *testing.T, what string, before, now sweepObs) {
			if now.term != 2 || now.st.Term != 2 {
				t.Fatalf("%s: after NewTerm %+v", what, now)
			}
		},
	})
}

// eofNotingStream tells inj when the last chunk was received: Pebble then
// opens the staged files.
type eofNotingStream struct {
	fakeSnapshotStream
	inj *oneFault
}

func (s *eofNotingStream) Recv() (*replicationpb.SnapshotChunk, error) {
	c, err := s.fakeSnapshotStream.Recv()
	if err != nil {
		s.inj.pebble.Store(true)
	}
	return c, err
}
