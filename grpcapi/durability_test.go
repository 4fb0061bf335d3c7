package grpcapi_test

import (
	"bytes"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/grpc/codes"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/durable"
)

// onFS puts a node on fs, with small log segments: a crashable MemFS
// holds the preallocated segments in memory, and copies them in each
// crash image.
func onFS(fs vfs.FS) func(*grpcapi.Options) {
	return func(o *grpcapi.Options) {
		o.FS = fs
		o.Follower.SegmentSize = 64 << 10
	}
}

// memWithDataDir returns a crashable MemFS holding /data durably.
func memWithDataDir(t *testing.T) *vfs.MemFS {
	t.Helper()
	mem := vfs.NewCrashableMem()
	if err := durable.MkdirAll(mem, "/data"); err != nil {
		t.Fatal(err)
	}
	return mem
}

// memTree lists every path under dir on fs, relative, depth first.
func memTree(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	var out []string
	var walk func(rel string)
	walk = func(rel string) {
		names, err := fs.List(fs.PathJoin(dir, rel))
		if err != nil {
			return // a file
		}
		for _, n := range names {
			p := n
			if rel != "" {
				p = rel + "/" + n
			}
			out = append(out, p)
			walk(p)
		}
	}
	walk("")
	return out
}

// Power losses (only what was synced survives: vfs.CrashClone) after
// calls that returned: what they did is there after a restart.

// TestDataDirectoryIsDurable: a node creates its data directory durably,
// so that a NewTerm that returned on its first start (the term persisted,
// docs/spec.md §2.1) survives a power loss.
func TestDataDirectoryIsDurable(t *testing.T) {
	mem := vfs.NewCrashableMem()
	n := startNode(t, "/data", onFS(mem))
	s := leader.Shard{Namespace: "ns", Shard: 0}
	if _, err := n.conn.NewTerm(ctxT(t), s, 1, nil); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // power loss: only synced data survives
	n.stop()
	again := startNode(t, "/data", onFS(crashed))
	aWantStatus(t, again.conn, s, 1, replicationpb.ServingStatus_FENCED, -1, -1)
}

// TestDeleteShardIsDurable: after a DeleteShard that returned and a
// power loss, nothing of the shard is left: neither its data set aside
// (ns/0.deleted, which nothing would look for again) nor its namespace's
// directory, even before a restart tidies what a crash left.
func TestDeleteShardIsDurable(t *testing.T) {
	mem := memWithDataDir(t)
	n := startNode(t, "/data", onFS(mem))
	s := leader.Shard{Namespace: "ns", Shard: 0}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 20, true)
	if err := n.conn.Delete(ctxT(t), s, 1); err != nil {
		t.Fatal(err)
	}
	if got := memTree(t, mem, "/data"); len(got) != 1 || got[0] != ".lock" {
		t.Fatalf("before the crash: %q", got)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // power loss after DeleteShard returned
	n.stop()
	if got := memTree(t, crashed, "/data"); len(got) != 1 || got[0] != ".lock" {
		t.Fatalf("after the crash: %q", got)
	}
	again := startNode(t, "/data", onFS(crashed))
	_, err := again.conn.Status(ctxT(t), s)
	wantCode(t, err, codes.Aborted, "NODE_IS_NOT_MEMBER", "")
	again.stop()
	var left []string
	for _, p := range memTree(t, crashed, "/data") {
		if p != ".lock" {
			left = append(left, p)
		}
	}
	if len(left) > 0 {
		t.Fatalf("after a DeleteShard that returned, a power loss and a restart, the data directory holds %d paths: %s ...",
			len(left), strings.Join(left[:min(len(left), 8)], " "))
	}
}

// TestRetriedDeleteShardIsDurable: a DeleteShard renames ns/0 to
// ns/0.deleted but the sync of ns/ fails (Unavailable). The leader
// retries; the node, which forgot the shard, removes ns/0.deleted and
// answers OK only once ns/ is synced: after a power loss the rename is
// not undone, and the shard stays forgotten (docs/spec.md §5).
func TestRetriedDeleteShardIsDurable(t *testing.T) {
	mem := memWithDataDir(t)
	var failSync atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync && op.Path == "/data/ns" && failSync.CompareAndSwap(true, false) {
			return errorfs.ErrInjected
		}
		return nil
	})
	n := startNode(t, "/data", onFS(errorfs.Wrap(mem, inj)))
	s := leader.Shard{Namespace: "ns", Shard: 0}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 5, true)
	failSync.Store(true)
	err := n.conn.Delete(ctxT(t), s, 1)
	wantCode(t, err, codes.Unavailable, "RESOURCE_UNAVAILABLE", "")
	if failSync.Load() {
		t.Fatal("the sync of ns/ was never attempted: the test proves nothing")
	}
	if err := n.conn.Delete(ctxT(t), s, 1); err != nil {
		t.Fatalf("retried DeleteShard: %v", err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // power loss after DeleteShard returned OK
	n.stop()
	again := startNode(t, "/data", onFS(crashed))
	st, err := again.conn.Status(ctxT(t), s)
	if err == nil {
		t.Fatalf("after DeleteShard returned OK and a power loss, the shard is hosted again: %v", st)
	}
	wantCode(t, err, codes.Aborted, "NODE_IS_NOT_MEMBER", "")
}

// TestConcurrentFirstUseInANewNamespace: NewTerm on ns/0 creates ns/ and
// ns/0/ and is slow to sync /data; NewTerm on ns/1 meanwhile finds ns/
// there. It syncs /data itself before it returns: the term it answered
// for survives a power loss taken before the first call's sync.
func TestConcurrentFirstUseInANewNamespace(t *testing.T) {
	mem := memWithDataDir(t)
	var armed atomic.Bool
	blocked, unblock := make(chan struct{}), make(chan struct{})
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync && op.Path == "/data" && armed.CompareAndSwap(true, false) {
			close(blocked)
			<-unblock // the first NewTerm is slow to sync /data
		}
		return nil
	})
	n := startNode(t, "/data", onFS(errorfs.Wrap(mem, inj)))
	a, b := leader.Shard{Namespace: "ns", Shard: 0}, leader.Shard{Namespace: "ns", Shard: 1}
	armed.Store(true)
	first := make(chan error, 1)
	go func() { _, err := n.conn.NewTerm(ctxT(t), a, 1, nil); first <- err }()
	<-blocked
	if _, err := n.conn.NewTerm(ctxT(t), b, 1, nil); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // power loss once ns/1's NewTerm returned
	close(unblock)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	n.stop()
	again := startNode(t, "/data", onFS(crashed))
	aWantStatus(t, again.conn, b, 1, replicationpb.ServingStatus_FENCED, -1, -1)
}

// TestStartRemovesWhatDeletionsLeft: a node starting removes, durably,
// what crashes left of removals: a shard's directory set aside by a
// Delete (nothing calls a deleted shard again, which would remove it
// too), and namespace directories left empty. It keeps the shards and
// anything that is not a shard's set-aside directory.
func TestStartRemovesWhatDeletionsLeft(t *testing.T) {
	mem := vfs.NewCrashableMem()
	n := startNode(t, "/data", onFS(mem))
	s := leader.Shard{Namespace: "ns", Shard: 1}
	fence(t, n.conn, s, 1)
	n.stop()
	for _, dir := range []string{"/data/ns/0.deleted/wal", "/data/ns/x.deleted", "/data/empty", "/data/gone/7.deleted/store"} {
		if err := durable.MkdirAll(mem, dir); err != nil { // there after a crash too
			t.Fatal(err)
		}
	}
	again := startNode(t, "/data", onFS(mem))
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // what the start removed stays removed
	aWantStatus(t, again.conn, s, 1, replicationpb.ServingStatus_FENCED, -1, -1)
	want := []string{".lock", "ns", "ns/1", "ns/x.deleted"}
	for _, fs := range []vfs.FS{mem, crashed} {
		var got []string
		for _, p := range memTree(t, fs, "/data") {
			if !strings.HasPrefix(p, "ns/1/") {
				got = append(got, p)
			}
		}
		if slices.Sort(got); !slices.Equal(got, want) {
			t.Errorf("the data directory holds %q, want %q", got, want)
		}
	}
}

// TestDataDirectoryNotANodes: an existing directory that holds files but
// no .lock was never a node's data directory (a mistyped --data-dir): the
// node refuses it, naming what it holds, and removes nothing of it,
// though it holds what a node's start would tidy away. A file system's
// lost+found alone is no obstacle, nor is anything in a node's directory.
func TestDataDirectoryNotANodes(t *testing.T) {
	mem := vfs.NewMem()
	for _, dir := range []string{"/home/Downloads", "/home/projects/7.deleted/keep", "/volume/lost+found", "/node/ns/7.deleted"} {
		if err := mem.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before := memTree(t, mem, "/home")
	slices.Sort(before)
	_, err := grpcapi.New(grpcapi.Options{DataDir: "/home", FS: mem})
	if err == nil || !strings.Contains(err.Error(), `the data directory /home is not a node's: it holds "Downloads" and 1 more but no .lock`) {
		t.Fatalf("a directory of other files: %v", err)
	}
	after := memTree(t, mem, "/home")
	if slices.Sort(after); !slices.Equal(after, before) {
		t.Fatalf("the refused directory holds %q, held %q", after, before)
	}
	for _, dir := range []string{"/volume", "/node"} {
		if dir == "/node" {
			if err := mem.MkdirAll("/node/ns/0", 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := mem.Create("/node/.lock", vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			_ = f.Close()
		}
		srv, err := grpcapi.New(grpcapi.Options{DataDir: dir, FS: mem})
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if err := srv.Shutdown(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	got := memTree(t, mem, "/node")
	if slices.Sort(got); !slices.Equal(got, []string{".lock", "ns", "ns/0"}) {
		t.Fatalf("a node's directory after its start holds %q, want what a deletion left removed", got)
	}
}

// crashesAtDataDirSync takes crash images each time the data directory
// /data is about to be synced while it holds a namespace directory "ns":
// the moment a fresh node's first NewTerm made its shard's directories
// and has synced none of them yet.
type crashesAtDataDirSync struct {
	*vfs.MemFS
	mu     sync.Mutex
	images []*vfs.MemFS
}

func (c *crashesAtDataDirSync) OpenDir(name string) (vfs.File, error) {
	if name == "/data" {
		if _, err := c.MemFS.Stat("/data/ns"); err == nil {
			c.mu.Lock()
			for seed := range uint64(100) {
				c.images = append(c.images, c.MemFS.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(seed, seed))}))
			}
			c.mu.Unlock()
		}
	}
	return c.MemFS.OpenDir(name)
}

// TestNewLockIsDurableFirst: a node's new .lock, what marks its data
// directory as a node's, is durable before anything else is created
// there. A power loss during a fresh node's first NewTerm keeps it,
// whatever else it loses, and the node restarts over the directory (it
// would be refused as "not a node's" for ever).
func TestNewLockIsDurableFirst(t *testing.T) {
	fs := &crashesAtDataDirSync{MemFS: vfs.NewCrashableMem()}
	n := startNode(t, "/data", onFS(fs))
	if _, err := n.conn.NewTerm(ctxT(t), leader.Shard{Namespace: "ns", Shard: 0}, 1, nil); err != nil {
		t.Fatal(err)
	}
	n.stop()
	if len(fs.images) == 0 {
		t.Fatal("no crash image taken: the data directory was not synced once ns existed")
	}
	for i, img := range fs.images {
		names, err := img.List("/data")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(names, ".lock") {
			t.Fatalf("crash image %d holds %q and no .lock", i, names)
		}
		srv, err := grpcapi.New(grpcapi.Options{DataDir: "/data", FS: img})
		if err != nil {
			t.Fatalf("crash image %d (%q): %v", i, names, err)
		}
		if err := srv.Shutdown(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStartLogsWhatItRemoves: each removal a node's start makes, of what
// a deleted shard left and of an empty namespace directory, is logged.
func TestStartLogsWhatItRemoves(t *testing.T) {
	mem := vfs.NewMem()
	for _, d := range []string{"/node/empty", "/node/ns/7.deleted"} {
		if err := mem.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := mem.Create("/node/.lock", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	var logs bytes.Buffer
	srv, err := grpcapi.New(grpcapi.Options{DataDir: "/node", FS: mem, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := memTree(t, mem, "/node"); !slices.Equal(got, []string{".lock"}) {
		t.Fatalf("the data directory holds %q, want only .lock", got)
	}
	for _, want := range []string{
		`msg="removed what a shard's deletion left" namespace=ns dir=7.deleted`,
		`msg="removed an empty namespace directory" namespace=ns`,
		`msg="removed an empty namespace directory" namespace=empty`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the logs lack %s:\n%s", want, logs.String())
		}
	}
}

// TestDataDirectoryInAParentNotReadable: syncing the data directory's
// parent needs the right to read it. A node whose data directory exists
// starts without it (with a warning); one that would create its data
// directory there refuses to start, as it could not make it durable.
func TestDataDirectoryInAParentNotReadable(t *testing.T) {
	for _, exists := range []bool{true, false} {
		mem := vfs.NewMem()
		if err := mem.MkdirAll("/srv", 0o711); err != nil {
			t.Fatal(err)
		}
		if exists {
			if err := mem.MkdirAll("/srv/data", 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
			if op.Kind == errorfs.OpOpenDir && op.Path == "/srv" {
				return os.ErrPermission
			}
			return nil
		}))
		srv, err := grpcapi.New(grpcapi.Options{DataDir: "/srv/data", FS: fs})
		switch {
		case exists && err != nil:
			t.Errorf("a node whose data directory exists: %v", err)
		case !exists && !errors.Is(err, os.ErrPermission):
			t.Errorf("a node creating its data directory: %v, want a permission error", err)
		}
		if srv != nil {
			if err := srv.Shutdown(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestDataDirectoryNotWritable: a node whose data directory takes no new
// file (its lock file is there and can be locked, but the directory's
// permissions changed, or its file system became read-only) refuses to
// start, saying so, rather than serve and fail every call that opens a
// shard; it leaves the directory as it was, unlocked.
func TestDataDirectoryNotWritable(t *testing.T) {
	for _, op := range []errorfs.OpKind{errorfs.OpCreate, errorfs.OpRemove} {
		mem := vfs.NewMem()
		if err := mem.MkdirAll("/data/ns/1", 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := mem.Create("/data/.lock", vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		var refuse atomic.Bool
		refuse.Store(true)
		fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(o errorfs.Op) error {
			if refuse.Load() && o.Kind == op && strings.HasPrefix(o.Path, "/data/") {
				return os.ErrPermission
			}
			return nil
		}))
		srv, err := grpcapi.New(grpcapi.Options{DataDir: "/data", FS: fs})
		if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "the data directory /data is not writable") {
			t.Fatalf("%v refused: New: %v, want the data directory not writable", op, err)
		}
		if srv != nil {
			t.Fatal("a server came back with the error")
		}
		if op == errorfs.OpCreate {
			if got := sortedTree(t, mem, "/data"); !slices.Equal(got, []string{".lock", "ns", "ns/1"}) {
				t.Fatalf("the data directory holds %q after the refusal", got)
			}
		}
		// Writable again, the directory is free to take.
		refuse.Store(false)
		srv, err = grpcapi.New(grpcapi.Options{DataDir: "/data", FS: fs})
		if err != nil {
			t.Fatalf("%v refused, then allowed: %v", op, err)
		}
		if err := srv.Shutdown(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if got := sortedTree(t, mem, "/data"); !slices.Equal(got, []string{".lock", "ns", "ns/1"}) {
			t.Fatalf("the data directory holds %q after a start", got)
		}
	}
}

// sortedTree is memTree in sorted order.
func sortedTree(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	return slices.Sorted(slices.Values(memTree(t, fs, dir)))
}

// TestDataDirectoryOfOneForeignFile: a directory that holds one file of
// something else (a file system's lost+found aside) is refused with a
// message naming that file alone, and is left as it was.
func TestDataDirectoryOfOneForeignFile(t *testing.T) {
	mem := vfs.NewMem()
	if err := mem.MkdirAll("/vol/lost+found", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := mem.Create("/vol/notes.txt", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	_, err = grpcapi.New(grpcapi.Options{DataDir: "/vol", FS: mem})
	if err == nil || !strings.Contains(err.Error(), `the data directory /vol is not a node's: it holds "notes.txt" but no .lock`) {
		t.Fatalf("a directory of one other file: %v", err)
	}
	got := memTree(t, mem, "/vol")
	if slices.Sort(got); !slices.Equal(got, []string{"lost+found", "notes.txt"}) {
		t.Fatalf("the refused directory holds %q", got)
	}
}
