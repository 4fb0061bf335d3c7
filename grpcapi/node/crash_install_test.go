//go:build linux

package node_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

// The two states a shard is checked against in the crash tests of
// SendSnapshot and DeleteShard: the old one, replicated (term ciOldTerm,
// offsets 0..ciOldHead) and applied up to offset ciOldN-1, the entries
// after it durable in the log but not committed; and the new one, a
// snapshot of other keys, another commit and a higher stored term.
const (
	ciOldTerm logpos.Term = 3
	ciOldN                = 30
	ciOldHead             = 39
	ciNewTerm logpos.Term = 5 // the term stored in the snapshot
	ciNewN                = 300
)

var ciShard = leader.Shard{Namespace: "crash-install", Shard: 7}

func ciOldKey(i int) []byte { return fmt.Appendf(nil, "old%04d", i) }
func ciOldVal(i int) []byte { return fmt.Appendf(nil, "o%d", i) }
func ciNewKey(i int) []byte { return fmt.Appendf(nil, "new%04d", i) }

// ciNewVals are the snapshot's values: random bytes in hex, which Pebble
// does not compress, so that the snapshot comes in many chunks.
var ciNewVals = func() [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([][]byte, ciNewN)
	for i := range vals {
		raw := make([]byte, 100)
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		vals[i] = []byte(hex.EncodeToString(raw))
	}
	return vals
}()

type ciState int

const (
	ciOld ciState = iota
	ciNew
	ciGone
)

func (s ciState) String() string { return [...]string{"old", "new", "gone"}[s] }

// ciFixture is what every iteration starts from: a data directory holding
// the old state (left by a graceful stop, so every applied entry is
// durable), and the snapshot of the new state, in chunks.
type ciFixture struct {
	template string
	chunks   []store.Chunk
	logs     *syncBuffer
}

func newCIFixture(t *testing.T) *ciFixture {
	t.Helper()
	fx := &ciFixture{template: t.TempDir(), logs: &syncBuffer{}, chunks: ciSnapshot(t)}
	p := startChild(t, fx.template, fx.logs)
	c := dial(t, p.Addr)
	ctx := ctxT(t)
	head, err := c.NewTerm(ctx, ciShard, ciOldTerm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Truncate(ctx, ciShard, ciOldTerm, head); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Replicate(ctx, leader.Run{
		Shard: ciShard, Term: ciOldTerm, First: 0, Count: ciOldN, Window: 8, Commit: logpos.NoOffset,
		Value: func(o logpos.Offset, buf []byte) []byte {
			return leader.AppendPut(buf, ciOldKey(int(o)), ciOldVal(int(o)))
		},
	}); err != nil {
		t.Fatal(err)
	}
	if _, commit, err := c.Get(ctx, ciShard, ciOldN-1); err != nil || commit != ciOldN-1 {
		t.Fatalf("waiting for the old state to be applied: commit %d, %v", commit, err)
	}
	// Entries after the commit, acknowledged (durable) but with the
	// commit still advertised at ciOldN-1: nothing applies them.
	stream, err := c.Replication.Replicate(leader.StreamContext(ctx, ciShard))
	if err != nil {
		t.Fatal(err)
	}
	for o := int64(ciOldN); o <= ciOldHead; o++ {
		entry := &replicationpb.LogEntry{Term: int64(ciOldTerm), Offset: o, Value: leader.AppendPut(nil, ciOldKey(int(o)), ciOldVal(int(o)))}
		if err := stream.Send(&replicationpb.Append{Term: int64(ciOldTerm), Entry: entry, CommitOffset: ciOldN - 1}); err != nil {
			t.Fatal(err)
		}
		if ack, err := stream.Recv(); err != nil || ack.GetOffset() != o {
			t.Fatalf("ack %v, %v; want %d", ack, err, o)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("the stream ended with %v", err)
	}
	if got := p.Stop(); got != 0 {
		t.Fatalf("stopping the node of the old state: status %d\nlogs:\n%s", got, fx.logs)
	}
	_ = c.Close()
	return fx
}

// ciSnapshot is a snapshot of the new state, taken from a store of its
// own, in small chunks.
func ciSnapshot(t *testing.T) []store.Chunk {
	t.Helper()
	return buildSnapshot(t, ciNewTerm, 2048, ciNewN, func(o logpos.Offset) []byte {
		return leader.AppendPut(nil, ciNewKey(int(o)), ciNewVals[o])
	})
}

// copy makes a data directory holding the old state.
func (fx *ciFixture) copy(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dir, os.DirFS(fx.template)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// errKilled ends a SendSnapshot whose node was killed before it was
// given the next chunk.
var errKilled = errors.New("the node was killed")

// killingSource hands out the snapshot's chunks and kills the node when
// asked for chunk killAt (len(chunks): when asked for the end, before the
// leader half-closes; -1: never).
type killingSource struct {
	chunks []store.Chunk
	next   int
	killAt int
	kill   func()
}

func (k *killingSource) Next() (store.Chunk, error) {
	if k.next == k.killAt {
		k.kill()
		return store.Chunk{}, errKilled
	}
	if k.next == len(k.chunks) {
		return store.Chunk{}, io.EOF
	}
	k.next++
	return k.chunks[k.next-1], nil
}

// ciCheck reads the shard and returns which state it holds; anything but
// exactly the old state, exactly the new one, or no shard at all (Aborted
// / NODE_IS_NOT_MEMBER) fails. The shard is Fenced, as a restart leaves
// it, but for a snapshot installed since (installed: Follower).
func ciCheck(t *testing.T, c *leader.Conn, installed bool, fail func(string, ...any)) ciState {
	t.Helper()
	ctx := ctxT(t)
	st, err := c.Status(ctx, ciShard)
	if err != nil {
		if status.Code(err) == codes.Aborted && grpcapi.Reason(err) == "NODE_IS_NOT_MEMBER" {
			return ciGone
		}
		fail("GetStatus: %v", err)
	}
	got := fmt.Sprintf("term %d, %v, head %d, commit %d", st.GetTerm(), st.GetStatus(), st.GetHeadOffset(), st.GetCommitOffset())
	var state ciState
	switch got {
	case fmt.Sprintf("term %d, FENCED, head %d, commit %d", ciOldTerm, ciOldHead, ciOldN-1):
		state = ciOld
	case fmt.Sprintf("term %d, %v, head %d, commit %d", ciNewTerm, map[bool]string{false: "FENCED", true: "FOLLOWER"}[installed], ciNewN-1, ciNewN-1):
		state = ciNew
	default:
		fail("GetStatus: %s: neither the old state (term %d, head %d, commit %d) nor the new one (term %d, commit %d)", got, ciOldTerm, ciOldHead, ciOldN-1, ciNewTerm, ciNewN-1)
	}
	// Every key of both states; those of the old log after its commit
	// are read too, and must not be there.
	keys := make([][]byte, 0, ciOldHead+1+ciNewN)
	for i := range ciOldHead + 1 {
		keys = append(keys, ciOldKey(i))
	}
	for i := range ciNewN {
		keys = append(keys, ciNewKey(i))
	}
	values, commit, err := c.Get(ctx, ciShard, logpos.NoOffset, keys...)
	if err != nil {
		fail("reading the %s state: %v", state, err)
	}
	if want := map[ciState]logpos.Offset{ciOld: ciOldN - 1, ciNew: ciNewN - 1}[state]; commit != want {
		fail("the %s state reads at commit %d, want %d", state, commit, want)
	}
	for i, v := range values {
		var want []byte // nil: absent
		switch {
		case i < ciOldN && state == ciOld:
			want = ciOldVal(i)
		case i > ciOldHead && state == ciNew:
			want = ciNewVals[i-ciOldHead-1]
		}
		if v.GetFound() != (want != nil) || !bytes.Equal(v.GetValue(), want) {
			fail("the %s state (%s): key %s reads %.20q (found %v), want %.20q (found %v): a mix of states", state, got, keys[i], v.GetValue(), v.GetFound(), want, want != nil)
		}
	}
	return state
}

// ciCheckDir checks the data directory of a node that opened the shard
// (or found it gone) in state: nothing of a Delete or of an install is
// left over; the store holds its marker and the one database it names.
func ciCheckDir(dir string, state ciState, fail func(string, ...any)) {
	list := func(d string) []string {
		entries, err := os.ReadDir(d)
		if err != nil {
			fail("listing %s: %v", d, err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	// Nowhere what a Delete set aside, a checkpoint, a marker being
	// written.
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name := d.Name(); strings.HasSuffix(name, ".deleted") || strings.HasPrefix(name, "checkpoint-") || name == "CURRENT.tmp" {
			fail("a leftover: %s", path)
		}
		return nil
	})
	if err != nil {
		fail("walking the data directory: %v", err)
	}
	ns := filepath.Join(dir, ciShard.Namespace)
	if state == ciGone {
		if _, err := os.Stat(ns); !errors.Is(err, os.ErrNotExist) {
			fail("the shard is gone but its namespace directory holds %q (%v)", list(ns), err)
		}
		return
	}
	if got := list(ns); !slices.Equal(got, []string{fmt.Sprint(ciShard.Shard)}) {
		fail("the namespace directory holds %q, want only the shard's directory", got)
	}
	if got := list(filepath.Join(ns, fmt.Sprint(ciShard.Shard))); !slices.Equal(got, []string{"store", "wal"}) {
		fail("the shard's directory holds %q, want store and wal", got)
	}
	storeDir := filepath.Join(ns, fmt.Sprint(ciShard.Shard), "store")
	marker, err := os.ReadFile(filepath.Join(storeDir, "CURRENT"))
	if err != nil {
		fail("reading the store's marker: %v", err)
	}
	live := strings.TrimSuffix(string(marker), "\n")
	if got, want := list(storeDir), []string{"CURRENT", "LOCK", live}; !slices.Equal(got, want) {
		fail("the store's directory holds %q, want %q (staging leftovers)", got, want)
	}
}

// median returns the median of xs (sorting them).
func median(xs []int64) int64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// TestCrashInstall kills a followerd process with SIGKILL at a random
// moment of a SendSnapshot — before the first chunk, mid-transfer, after
// the last chunk but before the end of the stream, at a random step of
// the node's staging, validation and commit (the n-th change it makes to
// its files), right after its reply — and restarts it on the same data.
// The shard must hold exactly the old state or exactly the new one
// (GetStatus and every value; the old one whenever the node could not
// have seen the end of the snapshot, the new one whenever it replied),
// with no staging leftovers on disk; a shard that kept the old state
// takes the snapshot again.
func TestCrashInstall(t *testing.T) {
	seed, rng := seededRand(t)
	iterations := 16
	if testing.Short() {
		iterations = 6
	}
	fx := newCIFixture(t)

	// How many changes to its files a node makes for a SendSnapshot on
	// a shard it opened: the median of every one that was not killed.
	var changes []int64
	sendAll := func(c *leader.Conn, dir string, opened bool) (logpos.Offset, error) {
		w := watchFiles(t, dir, 0, nil)
		ack, err := c.SendSnapshot(ctxT(t), ciShard, ciOldTerm, &killingSource{chunks: fx.chunks, killAt: -1})
		if n := w.stop(t); err == nil && opened {
			changes = append(changes, n)
		}
		return ack, err
	}
	{
		dir := fx.copy(t)
		p := startChild(t, dir, fx.logs)
		c := dial(t, p.Addr)
		fail := func(format string, args ...any) {
			t.Fatalf("seed %d, calibration: "+format+"\nlogs:\n%s", append(append([]any{seed}, args...), fx.logs)...)
		}
		if got := ciCheck(t, c, false, fail); got != ciOld {
			fail("the fixture holds the %s state", got)
		}
		if ack, err := sendAll(c, dir, true); err != nil || ack != ciNewN-1 {
			fail("SendSnapshot: ack %d, %v", ack, err)
		}
		if got := ciCheck(t, c, true, fail); got != ciNew {
			fail("after SendSnapshot the shard holds the %s state", got)
		}
		ciCheckDir(dir, ciNew, fail)
		p.Kill()
		_ = c.Close()
	}
	t.Logf("a snapshot of %d chunks; installing it makes %d file changes", len(fx.chunks), changes[0])

	for i := range iterations {
		// Mostly over the old state; else to a node that does not host
		// the shard (NotMember: a replica whose data was lost), whose
		// old state is no shard at all.
		dir, old := fx.copy(t), ciOld
		if rng.IntN(5) == 0 {
			dir, old = filepath.Join(t.TempDir(), "data"), ciGone
		}
		logs := &syncBuffer{}
		desc := fmt.Sprintf("over the %s state", old)
		fail := func(format string, args ...any) {
			t.Fatalf("seed %d, iteration %d (%s): "+format+"\nlogs:\n%s", append(append([]any{seed, i, desc}, args...), logs)...)
		}

		p := startChild(t, dir, logs)
		c := dial(t, p.Addr)
		src := &killingSource{chunks: fx.chunks, killAt: -1, kill: p.Kill}
		var killAtChange int64 // 0: none
		switch mode := rng.IntN(10); {
		case mode == 0:
			src.killAt = 0
			desc += ", killed before the first chunk"
		case mode <= 2:
			src.killAt = 1 + rng.IntN(len(fx.chunks)-1)
			desc += fmt.Sprintf(", killed before chunk %d of %d", src.killAt, len(fx.chunks))
		case mode == 3:
			src.killAt = len(fx.chunks) - 1 + rng.IntN(2)
			desc += fmt.Sprintf(", killed before chunk %d of %d (at the last, before the end of the stream)", src.killAt, len(fx.chunks))
		case mode <= 8:
			n := median(changes)
			killAtChange = 1 + rng.Int64N(n+n/8)
			desc += fmt.Sprintf(", killed at file change %d (of about %d)", killAtChange, n)
		default:
			desc += ", killed right after the reply"
		}
		// Mostly on a shard the node opened already, as a running node
		// has it (as the changes were counted); else the stream opens it.
		if old == ciOld && rng.IntN(4) > 0 {
			if _, err := c.Status(ctxT(t), ciShard); err != nil {
				fail("GetStatus before SendSnapshot: %v", err)
			}
		} else {
			desc += ", the shard opened by SendSnapshot"
		}
		w := watchFiles(t, dir, killAtChange, p.Kill)
		ack, err := c.SendSnapshot(ctxT(t), ciShard, ciOldTerm, src)
		seen := w.stop(t)
		may := map[ciState]bool{old: true, ciNew: true} // what the restart may find
		switch {
		case err == nil && ack != ciNewN-1:
			fail("SendSnapshot acknowledged %d, want %d", ack, ciNewN-1)
		case err == nil:
			may = map[ciState]bool{ciNew: true} // it replied: installed
		case src.killAt >= 0:
			may = map[ciState]bool{old: true} // the stream did not end
		case killAtChange == 0 || seen < killAtChange:
			fail("SendSnapshot failed without a kill: %v", err)
		}
		if killAtChange > 0 && seen < killAtChange {
			desc += fmt.Sprintf(" (after the reply: %d changes)", seen)
		}
		p.Kill()
		_ = c.Close()

		p = startChild(t, dir, logs)
		c = dial(t, p.Addr)
		got := ciCheck(t, c, false, fail)
		if !may[got] {
			fail("the restarted node holds the %s state (SendSnapshot: ack %d, %v)", got, ack, err)
		}
		ciCheckDir(dir, got, fail)
		t.Logf("iteration %d: %s: SendSnapshot %v; restarted with the %s state", i, desc, err, got)
		if got == old {
			if ack, err := sendAll(c, dir, old == ciOld); err != nil || ack != ciNewN-1 {
				fail("SendSnapshot again after the restart: ack %d, %v", ack, err)
			}
			if got := ciCheck(t, c, true, fail); got != ciNew {
				fail("after SendSnapshot again the shard holds the %s state", got)
			}
			ciCheckDir(dir, ciNew, fail)
		}
		ciContinue(t, c, fail)
		_ = c.Close()
		p.Kill()
	}
}

// ciContinue checks that a shard in the new state goes on from the
// snapshot's point: an older term is refused; a new leader finds its head
// at the snapshot's commit, and the next entry is appended, committed and
// applied.
func ciContinue(t *testing.T, c *leader.Conn, fail func(string, ...any)) {
	t.Helper()
	ctx := ctxT(t)
	if _, err := c.NewTerm(ctx, ciShard, ciOldTerm, nil); grpcapi.Reason(err) != "INVALID_TERM" {
		fail("NewTerm(%d) on the new state of term %d: %v, want INVALID_TERM", ciOldTerm, ciNewTerm, err)
	}
	term := ciNewTerm + 1
	head, err := c.NewTerm(ctx, ciShard, term, nil)
	if err != nil || head != (logpos.EntryID{Term: ciNewTerm, Offset: ciNewN - 1}) {
		fail("NewTerm(%d) on the new state: head %v, %v; want {%d %d}", term, head, err, ciNewTerm, ciNewN-1)
	}
	if _, err := c.Truncate(ctx, ciShard, term, head); err != nil {
		fail("Truncate after the snapshot: %v", err)
	}
	next := logpos.Offset(ciNewN)
	if _, err := c.Replicate(ctx, leader.Run{
		Shard: ciShard, Term: term, First: next, Count: 1, Commit: next - 1,
		Value: func(_ logpos.Offset, buf []byte) []byte { return leader.AppendPut(buf, []byte("next"), []byte("v")) },
	}); err != nil {
		fail("replicating offset %d after the snapshot: %v", next, err)
	}
	values, commit, err := c.Get(ctx, ciShard, next, []byte("next"), ciNewKey(0), ciOldKey(0))
	if err != nil || commit != next || string(values[0].GetValue()) != "v" || !bytes.Equal(values[1].GetValue(), ciNewVals[0]) || values[2].GetFound() {
		fail("after offset %d: commit %d, values %v, %v", next, commit, values, err)
	}
}

// TestCrashDelete kills a followerd process with SIGKILL at a random
// moment of a DeleteShard — at a random step of it (the n-th change the
// node makes to its files), right after its reply — and restarts it on
// the same data. The shard must be either whole (the old state, every
// value) or gone (GetStatus Aborted / NODE_IS_NOT_MEMBER, gone whenever
// the node replied, and a later NewTerm starting a fresh follower), with
// nothing half-deleted left on disk.
func TestCrashDelete(t *testing.T) {
	seed, rng := seededRand(t)
	iterations := 12
	if testing.Short() {
		iterations = 5
	}
	fx := newCIFixture(t)

	// How many changes to its files a node makes for a DeleteShard of a
	// shard it opened.
	var changes int64
	{
		dir := fx.copy(t)
		p := startChild(t, dir, fx.logs)
		c := dial(t, p.Addr)
		fail := func(format string, args ...any) {
			t.Fatalf("seed %d, calibration: "+format+"\nlogs:\n%s", append(append([]any{seed}, args...), fx.logs)...)
		}
		if got := ciCheck(t, c, false, fail); got != ciOld {
			fail("the fixture holds the %s state", got)
		}
		w := watchFiles(t, dir, 0, nil)
		if err := c.Delete(ctxT(t), ciShard, ciOldTerm); err != nil {
			fail("DeleteShard: %v", err)
		}
		changes = w.stop(t)
		if got := ciCheck(t, c, false, fail); got != ciGone {
			fail("after DeleteShard the shard holds the %s state", got)
		}
		ciCheckDir(dir, ciGone, fail)
		p.Kill()
		_ = c.Close()
	}
	t.Logf("a DeleteShard makes %d file changes", changes)

	for i := range iterations {
		dir := fx.copy(t)
		logs := &syncBuffer{}
		var desc string
		fail := func(format string, args ...any) {
			t.Fatalf("seed %d, iteration %d (%s): "+format+"\nlogs:\n%s", append(append([]any{seed, i, desc}, args...), logs)...)
		}

		p := startChild(t, dir, logs)
		c := dial(t, p.Addr)
		var killAtChange int64 // 0: none
		if rng.IntN(6) == 0 {
			desc = "killed right after the reply"
		} else {
			killAtChange = 1 + rng.Int64N(changes)
			desc = fmt.Sprintf("killed at file change %d of about %d", killAtChange, changes)
		}
		// Mostly on a shard the node opened already, as a running node
		// has it (as the changes were counted); else DeleteShard opens it.
		if rng.IntN(4) > 0 {
			if got := ciCheck(t, c, false, fail); got != ciOld {
				fail("before the delete the shard holds the %s state", got)
			}
		} else {
			desc += ", the shard opened by DeleteShard"
		}
		w := watchFiles(t, dir, killAtChange, p.Kill)
		err := c.Delete(ctxT(t), ciShard, ciOldTerm)
		if seen := w.stop(t); err != nil && (killAtChange == 0 || seen < killAtChange) {
			fail("DeleteShard failed without a kill: %v", err)
		}
		p.Kill()
		_ = c.Close()

		p = startChild(t, dir, logs)
		c = dial(t, p.Addr)
		got := ciCheck(t, c, false, fail)
		if got == ciNew || err == nil && got != ciGone {
			fail("the restarted node holds the %s state (DeleteShard: %v)", got, err)
		}
		ciCheckDir(dir, got, fail)
		t.Logf("iteration %d: %s: DeleteShard %v; restarted with the %s state", i, desc, err, got)
		if got == ciOld {
			if err := c.Delete(ctxT(t), ciShard, ciOldTerm); err != nil {
				fail("DeleteShard again after the restart: %v", err)
			}
			if got := ciCheck(t, c, false, fail); got != ciGone {
				fail("after DeleteShard again the shard holds the %s state", got)
			}
			ciCheckDir(dir, ciGone, fail)
		}
		// A fresh follower: a term below the deleted shard's is taken,
		// and nothing of the old state is there.
		head, err := c.NewTerm(ctxT(t), ciShard, 1, nil)
		if err != nil || head != logpos.NoEntry {
			fail("NewTerm(1) after the delete: head %v, %v; want a fresh follower", head, err)
		}
		st, err := c.Status(ctxT(t), ciShard)
		if err != nil || st.GetTerm() != 1 || st.GetStatus() != replicationpb.ServingStatus_FENCED || st.GetHeadOffset() != -1 || st.GetCommitOffset() != -1 {
			fail("GetStatus of the fresh follower: %v, %v", st, err)
		}
		values, _, err := c.Get(ctxT(t), ciShard, logpos.NoOffset, ciOldKey(0), ciOldKey(ciOldN-1))
		if err != nil || values[0].GetFound() || values[1].GetFound() {
			fail("the fresh follower reads old keys: %v, %v", values, err)
		}
		_ = c.Close()
		p.Kill()
	}
}

// fileEvents counts the changes made to the files under a directory
// (created, written and closed, renamed, removed), watching each of its
// directories with inotify, and those created later as they appear. It
// is the hook that spreads the kills of a crash test over the steps of
// an operation: at the n-th change the node made, it is killed.
type fileEvents struct {
	fd    int
	f     *os.File
	paths map[int32]string // of each watch; used by the reader only
	done  chan struct{}

	mu   sync.Mutex
	n    int64
	at   int64 // call fn at the at-th change (0: never)
	fn   func()
	errs []error
}

const fileEventMask = syscall.IN_CREATE | syscall.IN_CLOSE_WRITE | syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO | syscall.IN_DELETE

// watchFiles starts counting the changes under dir; at the at-th one
// (0: never) it calls fn, on a goroutine of its own.
func watchFiles(t *testing.T, dir string, at int64, fn func()) *fileEvents {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	// Non-blocking: a read deadline ends a Read under way (stop).
	w := &fileEvents{fd: fd, f: os.NewFile(uintptr(fd), "inotify"), paths: map[int32]string{}, done: make(chan struct{}), at: at, fn: fn}
	if err := w.addAll(dir); err != nil {
		_ = w.f.Close()
		t.Fatal(err)
	}
	go w.read()
	return w
}

// addAll watches dir and every directory in it.
func (w *fileEvents) addAll(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = w.add(path)
		}
		return err
	})
}

func (w *fileEvents) add(path string) error {
	wd, err := syscall.InotifyAddWatch(w.fd, path, fileEventMask)
	if err != nil {
		return fmt.Errorf("watching %s: %w", path, err)
	}
	w.paths[int32(wd)] = path
	return nil
}

func (w *fileEvents) read() {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return // stopped
		}
		for b := buf[:n]; len(b) >= syscall.SizeofInotifyEvent; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&b[0]))
			name := strings.TrimRight(string(b[syscall.SizeofInotifyEvent:syscall.SizeofInotifyEvent+ev.Len]), "\x00")
			b = b[syscall.SizeofInotifyEvent+ev.Len:]
			if ev.Mask&fileEventMask == 0 {
				continue // a watch removed, a queue overflow
			}
			if ev.Mask&syscall.IN_ISDIR != 0 && ev.Mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0 {
				if parent, ok := w.paths[ev.Wd]; ok {
					// What the directory holds before it is watched
					// is not counted (a miss only moves the kill
					// later), but its directories are watched.
					if err := w.addAll(filepath.Join(parent, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
						w.mu.Lock()
						w.errs = append(w.errs, err)
						w.mu.Unlock()
					}
				}
			}
			w.mu.Lock()
			w.n++
			fire := w.n == w.at
			w.mu.Unlock()
			if fire {
				w.fn()
			}
		}
	}
}

// stop stops watching and returns the number of changes seen.
func (w *fileEvents) stop(t *testing.T) int64 {
	t.Helper()
	_ = w.f.SetReadDeadline(time.Now()) // ends the reader's Read
	<-w.done
	_ = w.f.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := errors.Join(w.errs...); err != nil {
		t.Fatal(err)
	}
	return w.n
}
