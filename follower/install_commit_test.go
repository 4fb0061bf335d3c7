package follower

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestInstallBelowACommitFloorMakesTheSnapshotCommitTheCommit: a store
// that failed and came back with an older commit leaves a commit floor
// (the commit reached before the failure). An install whose snapshot
// commit is below that floor makes the snapshot's commit the commit
// (SPEC §2.4: head = commit = advertised = the snapshot's commit): the
// floor of the replaced store must not keep the old commit reported, nor
// fail reads of the new store with ErrUnavailable.
func TestInstallBelowACommitFloorMakesTheSnapshotCommitTheCommit(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	storeBackAtCommit2(t, f, dir) // the commit floor is 5 once it is reopened
	if _, err := f.NewTerm(1, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, f, 5) // applied again: the floor is reached
	if floor := logpos.Offset(f.commitFloor.Load()); floor != 5 {
		t.Fatalf("commit floor %d after the store came back older, want 5", floor)
	}

	chunks := confSnap{chunkTerm: 1, storeTerm: 1, commit: 3, prefix: "s"}.build(t)
	off, err := f.InstallSnapshot(&gatedStream{chunks: chunks})
	if err != nil || off != 3 {
		t.Fatalf("InstallSnapshot: %d %v, want 3", off, err)
	}
	if st := f.Status(); st.Commit != 3 || st.Head != 3 || st.State != StateFollower {
		t.Errorf("status after the install: %+v, want head and commit 3", st)
	}
	if v, err := f.Get([]byte("s3")); err != nil || string(v) != "v3" {
		t.Errorf("a key of the snapshot: %q %v", v, err)
	}
}

// endedStream hands out its chunks, then io.EOF; atEnd is set when the
// EOF is handed out.
type endedStream struct {
	chunks []*replicationpb.SnapshotChunk
	n      int
	atEnd  atomic.Bool
}

func (s *endedStream) Context() context.Context { return context.Background() }
func (s *endedStream) Recv() (*replicationpb.SnapshotChunk, error) {
	if s.n >= len(s.chunks) {
		s.atEnd.Store(true)
		return nil, io.EOF
	}
	s.n++
	return s.chunks[s.n-1], nil
}

// TestInstallClosedBetweenItsTransferAndItsCommit: Close runs after every
// chunk has arrived and the staged store was found valid, but before the
// install's commit takes the lifecycle lock. The commit is refused (the
// follower is closed): the install ends as one that Close interrupted,
// with an error matching both ErrClosed and ErrStreamEnded (SPEC §2.4,
// docs: "if Close or Delete did, with an error matching both"), and its
// staged files are removed.
func TestInstallClosedBetweenItsTransferAndItsCommit(t *testing.T) {
	dir := t.TempDir()
	var (
		fp     atomic.Pointer[Follower]
		live   atomic.Pointer[string] // the live database's directory
		once   sync.Once
		locked = make(chan struct{})
	)
	s := &endedStream{chunks: confSnap{chunkTerm: 2, storeTerm: 2, commit: 3, prefix: "s"}.build(t)}
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		// The first operation on the staging directory after the stream
		// handed out its end is the loader's Finish: take the lifecycle
		// lock there, so that the install's commit waits for it.
		l := live.Load()
		if l == nil || !s.atEnd.Load() || !strings.Contains(op.Path, string(filepath.Separator)+"db-") || strings.Contains(op.Path, *l) {
			return nil
		}
		once.Do(func() {
			fp.Load().acquire()
			close(locked)
		})
		return nil
	}))
	f, err := Open(Config{Dir: dir, FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	fp.Store(f)
	defer func() { _ = f.Close() }()
	if _, err := f.NewTerm(2, TermOptions{}); err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(filepath.Join(dir, "store", "CURRENT"))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimSpace(string(cur))
	live.Store(&name)
	res := make(chan error, 1)
	go func() { _, err := f.InstallSnapshot(s); res <- err }()
	<-locked
	// Close, under the lock the hook took (as Close does): the store's
	// close waits for the loader's Finish.
	if err := f.m.Close(); err != nil {
		t.Fatal(err)
	}
	f.release()
	err = within(t, res)
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrStreamEnded) {
		t.Errorf("install whose commit found the follower closed: %v, want ErrClosed and ErrStreamEnded", err)
	}
	if l := stagingLeft(t, vfs.Default, dir); len(l) > 0 {
		t.Errorf("staging left: %v", l)
	}
}

// failingStream fails its first Recv, closing returning just before.
type failingStream struct{ returning chan struct{} }

func (s *failingStream) Context() context.Context { return context.Background() }
func (s *failingStream) Recv() (*replicationpb.SnapshotChunk, error) {
	close(s.returning)
	return nil, errTransport
}

// TestInstallWhoseFirstRecvFailedThenClosed: the stream fails before its
// first chunk and the follower closes before the install looks at the
// follower (it waits for the lifecycle lock, which Close holds). Whether
// the install saw the stream's error or the close first, it fails with
// ErrClosed: refuseBeforeFirstChunk checks a closed follower first
// (SPEC §2: every operation on a Closed follower returns ErrClosed). The
// case is run a number of times: most runs see the stream's error first.
func TestInstallWhoseFirstRecvFailedThenClosed(t *testing.T) {
	for i := range 32 {
		f, err := Open(Config{Dir: t.TempDir(), FS: vfs.NewMem()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.NewTerm(2, TermOptions{}); err != nil {
			t.Fatal(err)
		}
		s := &failingStream{returning: make(chan struct{})}
		f.acquire()
		res := make(chan error, 1)
		go func() { _, err := f.InstallSnapshot(s); res <- err }()
		<-s.returning
		// Close, under the lock taken above, as Close does.
		if err := f.m.Close(); err != nil {
			t.Fatal(err)
		}
		f.release()
		if err := within(t, res); !errors.Is(err, ErrClosed) {
			t.Fatalf("run %d: the first Recv failed, then the follower closed: %v, want ErrClosed", i, err)
		}
	}
}

// TestInstallOnAFollowerThatCannotRepairItsLog: a follower whose log
// failed and cannot be reopened refuses an install with ErrUnavailable
// when it attaches, after the first chunk (the term check's), not after
// taking every chunk only to fail at the commit; nothing changes, and
// once the disk heals the follower works again.
func TestInstallOnAFollowerThatCannotRepairItsLog(t *testing.T) {
	h := newHarness(t, Config{})
	h.newTerm(2)
	s, res := h.replicate(2, 0, 1, -1)
	h.fs.fail("/wal/")
	s.in <- &replicationpb.Append{Term: 2, CommitOffset: -1, Entry: &replicationpb.LogEntry{Term: 2, Offset: 2}}
	if err := within(t, res); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stream on a failing log: %v", err)
	}
	s.cancel()
	before := h.f.Status()
	chunks := confSnap{chunkTerm: 2, storeTerm: 2, commit: 4, options: confSnapOpts}.build(t)
	if len(chunks) < 2 {
		t.Fatalf("the snapshot has %d chunks, want several", len(chunks))
	}
	in := &gatedStream{chunks: cloneChunks(chunks)}
	if _, err := h.f.InstallSnapshot(in); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("install on a follower whose log cannot be repaired: %v, want ErrUnavailable", err)
	}
	if in.n != 1 {
		t.Errorf("the install read %d chunks before it was refused, want 1", in.n)
	}
	if st := h.f.Status(); st != before {
		t.Errorf("the refused install changed the follower: %+v, was %+v", st, before)
	}
	h.fs.heal()
	h.newTerm(3)
}

// TestInstallFailingAtItsCommitFromNotMember: an install into a follower
// with no term (NotMember accepts any chunk term) that fails at the
// commit, the marker's rename refused, leaves the follower as it was: no
// term, NotMember. The snapshot's term is the follower's only once the
// snapshot is in.
func TestInstallFailingAtItsCommitFromNotMember(t *testing.T) {
	var armed atomic.Bool
	dir := t.TempDir()
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, "CURRENT.tmp") {
			return errInjected
		}
		return nil
	}))
	f, err := Open(Config{Dir: dir, FS: efs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	chunks := confSnap{chunkTerm: 5, storeTerm: 5, commit: 4, options: confSnapOpts}.build(t)
	s := &gatedStream{chunks: chunks, gate: make(chan struct{}), gateAt: len(chunks)}
	go func() {
		waitInstallsStarted(t, f, 1)
		armed.Store(true)
		close(s.gate)
	}()
	if _, err := f.InstallSnapshot(s); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("install failing at its commit: %v, want ErrUnavailable", err)
	}
	armed.Store(false)
	want := Status{State: StateNotMember, Term: logpos.NoTerm, Head: logpos.NoOffset, Commit: logpos.NoOffset}
	if st := f.Status(); st != want {
		t.Fatalf("after the failed install: %+v, want %+v", st, want)
	}
	if _, err := f.InstallSnapshot(&gatedStream{chunks: cloneChunks(chunks)}); err != nil {
		t.Fatalf("the same install once the disk works: %v", err)
	}
	if st := f.Status(); st.State != StateFollower || st.Term != 5 || st.Commit != 4 {
		t.Fatalf("after the install: %+v", st)
	}
}
