package grpcapi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/grpc/codes"

	"github.com/tablefsm/tablefsm/grpcapi"

	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestRefusedSnapshotsOnUnknownShards: a call that leaves a shard the node did
// not host NotMember with nothing stored (a snapshot that does not
// install, a GetStatus of an empty directory) leaves no follower open
// and no directory behind, so a client cannot make the node hold files
// or directories for shards it does not host. The shard's last steps
// stay readable, and a later call starts afresh.
func TestRefusedSnapshotsOnUnknownShards(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	url := serveMetrics(t, n.srv)
	ctx := ctxT(t)
	chunks := snapshotOf(t, 1, 3)
	if len(chunks) < 2 {
		t.Fatalf("a snapshot of %d chunks", len(chunks))
	}
	refused := []struct {
		name   string
		chunks []*replicationpb.SnapshotChunk
	}{
		{"no chunk", nil},
		{"an unsafe file name", []*replicationpb.SnapshotChunk{{Term: 1, Name: "../x", ChunkCount: 1}}},
		{"missing its last chunk", chunks[:len(chunks)-1]},
		{"a chunk sent twice", append([]*replicationpb.SnapshotChunk{chunks[0]}, chunks...)},
	}
	for i, r := range refused {
		_, err := sendChunks(t, c, leader.Shard{Namespace: "drop", Shard: int64(i)}, r.chunks...)
		wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "")
	}
	// A directory with nothing in it where a shard would be (say, left
	// by a crash) is a shard with nothing stored: GetStatus, or a call
	// of the Inspect service, opens it, finds no member, and drops it.
	for i, call := range []func(leader.Shard) error{
		func(s leader.Shard) error { _, err := c.Status(ctx, s); return err },
		func(s leader.Shard) error { _, _, err := c.Get(ctx, s, 0, key(0)); return err },
		func(s leader.Shard) error { _, err := c.Steps(ctx, s, 0); return err },
	} {
		empty := leader.Shard{Namespace: "drop", Shard: 9 + int64(i)}
		emptyShardDir(t, n, empty)
		if err := call(empty); err != nil && grpcapi.Reason(err) != grpcapi.ReasonNodeIsNotMember {
			t.Fatalf("call %d on the empty directory of %v: %v, want success or NODE_IS_NOT_MEMBER", i, empty, err)
		}
	}

	if got := listTree(t, n.dir); !slices.Equal(got, []string{".lock"}) {
		t.Errorf("left in the data directory: %q, want only its lock", got)
	}
	scrapeMetrics(t, url).want(t, 0, "tablefsm_node_shards")
	for i := range int64(len(refused)) {
		s := leader.Shard{Namespace: "drop", Shard: i}
		steps, err := c.Steps(ctx, s, 0)
		if err != nil || len(steps) == 0 {
			t.Fatalf("steps of %v: %v, %v", s, steps, err)
		}
		if last := steps[len(steps)-1]; last.GetEvent() != "Delete" || last.GetTo() != "Closed" || last.GetError() != "" {
			t.Errorf("the last step of %v is %v, want its Delete", s, last)
		}
		_, err = c.Status(ctx, s)
		wantCode(t, err, codes.Aborted, "NODE_IS_NOT_MEMBER", "")
	}

	// The snapshot installs in full on a shard that refused one.
	s := leader.Shard{Namespace: "drop", Shard: 2}
	if resp, err := sendChunks(t, c, s, chunks...); err != nil || resp.GetAckOffset() != 2 {
		t.Fatalf("installing the snapshot: %v, %v", resp, err)
	}
	if st, err := c.Status(ctx, s); err != nil || st.GetStatus() != replicationpb.ServingStatus_FOLLOWER {
		t.Fatalf("after the install: %v, %v", st, err)
	}
	scrapeMetrics(t, url).want(t, 1, "tablefsm_node_shards")
}

// TestNamespaceDirectories: the directory of a namespace goes with the
// last of its shards, however it goes (deleted here, dropped in
// TestRefusedSnapshotsOnUnknownShards, removed without a follower in
// TestDeleteShardOfADamagedShard); it stays while any other shard of the
// namespace is on disk, hosted or not.
func TestNamespaceDirectories(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	ctx := ctxT(t)
	exists := func(ns string) bool {
		t.Helper()
		_, err := os.Stat(filepath.Join(dir, ns))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	a0, a1 := leader.Shard{Namespace: "a", Shard: 0}, leader.Shard{Namespace: "a", Shard: 1}
	fence(t, n.conn, a0, 1)
	fence(t, n.conn, a1, 1)
	if err := n.conn.Delete(ctx, a0, 1); err != nil {
		t.Fatal(err)
	}
	if !exists("a") {
		t.Fatal("deleting a shard removed the directory of its namespace, which holds another")
	}
	if err := n.conn.Delete(ctx, a1, 1); err != nil {
		t.Fatal(err)
	}
	if exists("a") {
		t.Fatal("the namespace's directory stays after its last shard was deleted")
	}

	// After a restart, b/0 is on disk but not open: deleting b/1, and
	// dropping b/2 (a refused snapshot), leave b's directory.
	b0 := leader.Shard{Namespace: "b", Shard: 0}
	fence(t, n.conn, b0, 1)
	n.stop()
	n = startNode(t, dir)
	if err := n.conn.Delete(ctx, leader.Shard{Namespace: "b", Shard: 1}, 1); err != nil {
		t.Fatal(err)
	}
	_, err := sendChunks(t, n.conn, leader.Shard{Namespace: "b", Shard: 2})
	wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "")
	if got := listTree(t, filepath.Join(dir, "b")); len(got) == 0 || got[0] != "0" || slices.ContainsFunc(got, func(p string) bool { return p == "1" || p == "2" }) {
		t.Fatalf("the directory of namespace b holds %q, want only shard 0", got)
	}
	aWantStatus(t, n.conn, b0, 1, replicationpb.ServingStatus_FENCED, -1, -1)
}

// TestRefusedSnapshotRacingANewTerm: a refused snapshot and a NewTerm on
// a shard the node does not host, at once: whichever comes first, the
// NewTerm's term stays, and so does the shard.
func TestRefusedSnapshotRacingANewTerm(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	for i := range int64(16) {
		s := leader.Shard{Namespace: "race", Shard: i}
		var wg sync.WaitGroup
		wg.Go(func() {
			_, err := sendChunks(t, c, s)
			wantCode(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "")
		})
		wg.Go(func() {
			if _, err := c.Status(ctx, s); err != nil {
				wantCode(t, err, codes.Aborted, "NODE_IS_NOT_MEMBER", "")
			}
		})
		var head logpos.EntryID
		var err error
		wg.Go(func() { head, err = c.NewTerm(ctx, s, 1, nil) })
		wg.Wait()
		if err != nil || head != logpos.NoEntry {
			t.Fatalf("NewTerm on %v: %v, %v", s, head, err)
		}
		st, err := c.Status(ctx, s)
		if err != nil || st.GetTerm() != 1 || st.GetStatus() != replicationpb.ServingStatus_FENCED {
			t.Fatalf("%v after NewTerm: %v, %v", s, st, err)
		}
	}
}

// damagedShard leaves shard s in data directory dir at term 2 with
// entries 0 to 9, and its log damaged: its follower does not open.
func damagedShard(t *testing.T, dir string, s leader.Shard) {
	t.Helper()
	n := startNode(t, dir)
	fence(t, n.conn, s, 2)
	aFill(t, n.conn, s, 2, 0, 9, 9)
	n.stop()
	wal := filepath.Join(dir, s.Namespace, strconv.FormatInt(s.Shard, 10), "wal")
	if err := os.RemoveAll(wal); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wal, []byte("not a log"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// heldDirSync is the operating system's file system, on which the first
// OpenDir of dir (as a directory sync does) made once when reports true
// waits: it closes entered, then waits for proceed.
type heldDirSync struct {
	vfs.FS
	dir     string
	when    func() bool
	held    atomic.Bool
	entered chan struct{}
	proceed chan struct{}
}

func (h *heldDirSync) OpenDir(name string) (vfs.File, error) {
	if name == h.dir && h.when() && h.held.CompareAndSwap(false, true) {
		close(h.entered)
		<-h.proceed
	}
	return h.FS.OpenDir(name)
}

// TestDeleteShardOfADamagedShardRacingADrop: while a DeleteShard removes
// a shard whose follower does not open, a shard of the same namespace
// with nothing stored is dropped: that drop leaves the namespace's
// directory to the DeleteShard, which syncs it once the shard's directory
// is gone, and succeeds; the namespace's directory goes then.
func TestDeleteShardOfADamagedShardRacingADrop(t *testing.T) {
	dir := t.TempDir()
	damaged, empty := leader.Shard{Namespace: "damaged", Shard: 1}, leader.Shard{Namespace: "damaged", Shard: 2}
	damagedShard(t, dir, damaged)
	ns := filepath.Join(dir, "damaged")
	gone := func(name string) bool {
		_, err := os.Stat(filepath.Join(ns, name))
		return errors.Is(err, os.ErrNotExist)
	}
	held := &heldDirSync{FS: vfs.Default, dir: ns, entered: make(chan struct{}), proceed: make(chan struct{}),
		// The last sync of the damaged shard's removal.
		when: func() bool { return gone("1") && gone("1.deleted") }}
	n := startNode(t, dir, func(o *grpcapi.Options) { o.FS = held })
	release := sync.OnceFunc(func() { close(held.proceed) })
	t.Cleanup(release) // before the node's shutdown, which waits for the DeleteShard
	emptyShardDir(t, n, empty)
	deleted := make(chan error, 1)
	go func() { deleted <- n.conn.Delete(ctxT(t), damaged, 2) }()
	<-held.entered
	_, err := n.conn.Status(ctxT(t), empty)
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	release()
	if err := <-deleted; err != nil {
		t.Fatalf("DeleteShard of a shard that does not open, while another of its namespace was dropped: %v", err)
	}
	if _, err := os.Stat(ns); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the namespace's directory once both shards are gone: %v", err)
	}
}

// TestDeleteShardOfADamagedShard: a shard whose follower does not open
// (its log is damaged) answers Unavailable, but DeleteShard still
// removes it, checking the term against the one its store holds; the
// node then forgets it, and a NewTerm starts it afresh.
func TestDeleteShardOfADamagedShard(t *testing.T) {
	dir := t.TempDir()
	s := leader.Shard{Namespace: "damaged", Shard: 1}
	damagedShard(t, dir, s)
	shardDir := filepath.Join(dir, "damaged", "1")

	n := startNode(t, dir)
	c := n.conn
	ctx := ctxT(t)
	_, err := c.Status(ctx, s)
	wantCode(t, err, codes.Unavailable, "RESOURCE_UNAVAILABLE", "")
	err = c.Delete(ctx, s, 1)
	wantCode(t, err, codes.FailedPrecondition, "INVALID_TERM", "below the shard's term 2")
	if _, err := os.Stat(shardDir); err != nil {
		t.Fatalf("a DeleteShard below the shard's term removed it: %v", err)
	}
	if err := c.Delete(ctx, s, 2); err != nil {
		t.Fatalf("DeleteShard of a shard that does not open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "damaged")); !os.IsNotExist(err) {
		t.Fatalf("the namespace's directory after its only shard was deleted: %v, want it gone", err)
	}
	_, err = c.Status(ctx, s)
	wantCode(t, err, codes.Aborted, "NODE_IS_NOT_MEMBER", "")
	if err := c.Delete(ctx, s, 2); err != nil {
		t.Fatalf("DeleteShard again: %v", err)
	}
	if head := fence(t, c, s, 1); head != (logpos.EntryID{Term: 1, Offset: -1}) {
		t.Fatalf("a fresh shard's head %v", head)
	}
}

// TestDeleteShardFinishesACutShortDelete: what a delete cut short left
// of a shard (its directory moved aside, not yet removed) goes with the
// next DeleteShard, which the leader sends again after the Unavailable.
func TestDeleteShardFinishesACutShortDelete(t *testing.T) {
	n := startNode(t, "")
	aside := filepath.Join(n.dir, "cut", "1.deleted")
	if err := os.MkdirAll(filepath.Join(aside, "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := n.conn.Delete(ctxT(t), leader.Shard{Namespace: "cut", Shard: 1}, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(n.dir, "cut")); !os.IsNotExist(err) {
		t.Fatalf("the namespace's directory after the delete: %v, want it gone", err)
	}
}

// TestInspectGetOfANotMember: Inspect.Get of a shard whose follower has
// no term (here, an empty directory a crash left) is Aborted /
// NODE_IS_NOT_MEMBER, as GetStatus is: its state is none of the node's.
func TestInspectGetOfANotMember(t *testing.T) {
	n := startNode(t, "")
	s := leader.Shard{Namespace: "nm", Shard: 1}
	emptyShardDir(t, n, s)
	_, err := n.conn.Inspect.Get(ctxT(t), &inspectpb.GetRequest{Namespace: s.Namespace, Shard: s.Shard, Keys: [][]byte{[]byte("k")}})
	wantCode(t, err, codes.Aborted, "NODE_IS_NOT_MEMBER", "")
}

// TestShutdownLeavesNothingOfAShardNotHosted: a snapshot stream on a shard
// the node does not host, still waiting for its first chunk when the node
// shuts down, leaves nothing of the shard on disk, not even its
// namespace's directory (as a snapshot refused while the node runs does
// not); the shards the node hosts stay.
func TestShutdownLeavesNothingOfAShardNotHosted(t *testing.T) {
	n := startNode(t, "")
	hosted := leader.Shard{Namespace: "kept", Shard: 4}
	fence(t, n.conn, hosted, 1)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	stream, err := n.conn.Replication.SendSnapshot(leader.StreamContext(ctx, leader.Shard{Namespace: "gone", Shard: 3}))
	if err != nil {
		t.Fatal(err)
	}
	stacktest.WaitBlockedIn(t, "select", "follower.(*chunkReceiver).next", nil)
	if _, err := os.Stat(filepath.Join(n.dir, "gone", "3")); err != nil {
		t.Fatalf("the shard waiting for its snapshot has no directory: the test proves nothing: %v", err)
	}
	n.stop()
	_, err = stream.CloseAndRecv()
	aWantErr(t, err, codes.Unavailable, "")
	for _, p := range listTree(t, n.dir) {
		if p != ".lock" && p != "kept" && !strings.HasPrefix(p, filepath.Join("kept", "4")) {
			t.Errorf("%s is left in the data directory", p)
		}
	}
	again := startNode(t, n.dir)
	aWantStatus(t, again.conn, hosted, 1, replicationpb.ServingStatus_FENCED, -1, -1)
}

// TestDropThatCannotRemoveTheDirectory: the node drops a shard with
// nothing stored, but cannot remove its directory. The follower is
// closed all the same (the next call opens the shard again, which a
// follower left open would prevent: it would hold the store's lock), the
// call's answer is unchanged, and once the disk lets it the directory
// goes.
func TestDropThatCannotRemoveTheDirectory(t *testing.T) {
	var stuck atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if stuck.Load() && op.Kind == errorfs.OpRename && strings.HasSuffix(op.Path, filepath.Join("stuck", "4")) {
			return errorfs.ErrInjected
		}
		return nil
	})
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = errorfs.Wrap(vfs.Default, inj) })
	s := leader.Shard{Namespace: "stuck", Shard: 4}
	emptyShardDir(t, n, s)
	stuck.Store(true)
	for range 2 {
		_, err := n.conn.Status(ctxT(t), s)
		wantCode(t, err, codes.Aborted, "NODE_IS_NOT_MEMBER", "")
		if _, err := os.Stat(filepath.Join(n.dir, "stuck", "4")); err != nil {
			t.Fatalf("the directory the drop could not remove: %v", err)
		}
	}
	stuck.Store(false)
	_, err := n.conn.Status(ctxT(t), s)
	wantCode(t, err, codes.Aborted, "NODE_IS_NOT_MEMBER", "")
	if got := listTree(t, n.dir); !slices.Equal(got, []string{".lock"}) {
		t.Errorf("left in the data directory: %q, want only its lock", got)
	}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 3, true)
}
