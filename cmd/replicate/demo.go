package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/node"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/decimalflag"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
	"github.com/tablefsm/tablefsm/store/kvpb"
)

var demoCommand = command{
	name: "demo",
	short: `Run the whole follower lifecycle against real followerd nodes over loopback,
in a temporary directory: NewTerm, Truncate, a stream of key-value entries,
reading the applied values back, kill -9 and restart, a new leader, a stale
NewTerm refused, a snapshot installed into a second node, DeleteShard.`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context) error {
		var d demo
		fs.StringVar(&d.followerd, "followerd", "", "`path` of the followerd binary (default: beside this binary, else built with go build)")
		decimalflag.Int64Var(fs, &d.entries, "entries", 1000, "`entries` per replication stream")
		fs.BoolVar(&d.keep, "keep", false, "keep the temporary directory (data and node logs)")
		return func(ctx context.Context) error {
			if d.entries < 10 || d.entries > maxDemoEntries {
				return usagef("--entries must be at least 10 and at most %d", maxDemoEntries)
			}
			d.out = e.stdout
			return d.run(ctx, e)
		}
	},
}

// The demo's key space: entries put and delete keys user/000…user/199.
const demoKeys = 200

// maxDemoEntries bounds --entries: the demo writes about three times as
// many entries, at offsets that must stay far from the largest.
const maxDemoEntries = 1 << 40

// demoWindow is the entries the demo's leader keeps in flight.
const demoWindow = 64

type demo struct {
	followerd string
	entries   int64
	keep      bool
	out       io.Writer

	tmp   string
	argv  []string
	shard leader.Shard
	store *store.Store // the leader's own copy of what is committed

	// Counters for the summary.
	acked, transitions int
	started            time.Time
}

// demoNode is one followerd child and what the demo knows of it.
type demoNode struct {
	name string
	dir  string
	logs *os.File
	proc *node.Process
	conn *leader.Conn
	seq  uint64 // the last step shown
}

// entryValue is the entry the demo leader writes at offset off in term t:
// a kvpb.WriteBatch putting one key and, every fifth entry, deleting
// another.
func entryValue(t logpos.Term, off logpos.Offset) []byte {
	wb := &kvpb.WriteBatch{Operations: []*kvpb.Operation{{Op: &kvpb.Operation_Put{Put: &kvpb.Put{
		Key:   fmt.Appendf(nil, "user/%03d", int64(off)%demoKeys),
		Value: fmt.Appendf(nil, "written at offset %d in term %d", off, t),
	}}}}}
	if off%5 == 4 {
		wb.Operations = append(wb.Operations, &kvpb.Operation{Op: &kvpb.Operation_Delete{Delete: &kvpb.Delete{
			Key: fmt.Appendf(nil, "user/%03d", int64(off)*7%demoKeys),
		}}})
	}
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(wb)
	if err != nil {
		panic(err) // a fixed, valid message
	}
	return v
}

// demoTimeout is how long a demo streaming entries per stream may run
// (entries ≤ 2⁴⁰: no overflow).
func demoTimeout(entries int64) time.Duration {
	return 2*time.Minute + time.Duration(entries)*time.Millisecond
}

func (d *demo) printf(format string, a ...any) { fmt.Fprintf(d.out, format, a...) }

func (d *demo) step(n int, format string, a ...any) {
	d.printf("\n== %d. %s\n", n, fmt.Sprintf(format, a...))
}

func (d *demo) run(ctx context.Context, e *env) (err error) {
	d.started = time.Now()
	d.shard = leader.Shard{Namespace: "demo", Shard: 0}
	d.tmp, err = os.MkdirTemp("", "tablefsm-demo-")
	if err != nil {
		return fmt.Errorf("the temporary directory: %w", err)
	}
	parent := ctx // ends when this command is stopped (SIGINT, SIGTERM)
	defer func() {
		switch {
		case d.keep:
			d.printf("\nkept %s (node data and logs)\n", d.tmp)
		case err != nil && parent.Err() == nil && d.nodeLogged():
			// The error may point at a node's log: it stays.
			fmt.Fprintf(e.stderr, "kept %s (node data and logs) after the failure\n", d.tmp)
		default:
			_ = os.RemoveAll(d.tmp)
		}
	}()
	d.argv, err = followerdArgv(ctx, d.followerd, d.tmp, e.stderr)
	if err != nil {
		return err
	}
	d.store, err = store.Open(filepath.Join(d.tmp, "leader"), store.Options{})
	if err != nil {
		return err
	}
	defer d.store.Close()

	d.printf("tablefsm demo: this process is the leader of shard %s; the followers are real\n", d.shard)
	d.printf("followerd processes on loopback, in %s.\n", d.tmp)
	d.printf("Each step prints what the node answered and the lifecycle steps its follower took\n")
	d.printf("(read back through the node's Inspect service).\n")

	a := &demoNode{name: "A", dir: filepath.Join(d.tmp, "nodeA")}
	b := &demoNode{name: "B", dir: filepath.Join(d.tmp, "nodeB")}
	defer func() {
		for _, n := range []*demoNode{a, b} {
			if n.proc != nil {
				n.proc.Kill()
				_ = n.conn.Close()
			}
			if n.logs != nil {
				_ = n.logs.Close()
			}
		}
	}()
	// A step that hangs is an error, not a hang: the whole demo is given
	// 2 minutes, and 1 ms more per entry of a stream.
	cctx, cancel := context.WithTimeout(ctx, demoTimeout(d.entries))
	defer cancel()
	ctx = cctx

	// 1. A node that has never heard of the shard.
	d.step(1, "start node A")
	if err := d.start(ctx, a); err != nil {
		return err
	}
	_, err = a.conn.Status(ctx, d.shard)
	d.printf("   GetStatus(%s) → %s: the node does not host the shard yet\n", d.shard, describeErr(err))
	if grpcapi.Reason(err) != grpcapi.ReasonNodeIsNotMember {
		return fmt.Errorf("GetStatus of an unknown shard: got %v, want NODE_IS_NOT_MEMBER", err)
	}

	// 2-3. Fence and truncate.
	d.step(2, "NewTerm(term 1): the coordinator makes this process leader of term 1")
	head, err := a.conn.NewTerm(ctx, d.shard, 1, nil)
	if err != nil {
		return err
	}
	if err := d.store.SetTerm(1, store.TermOptions{}); err != nil {
		return err
	}
	d.printf("   → head entry %v (an empty log)\n", head)
	if err := d.showSteps(ctx, a); err != nil {
		return err
	}
	if err := d.showStatus(ctx, a); err != nil {
		return err
	}

	d.step(3, "Truncate(term 1, head %v): the leader confirms the follower's log", head)
	head, err = a.conn.Truncate(ctx, d.shard, 1, head)
	if err != nil {
		return err
	}
	d.printf("   → head entry %v\n", head)
	if err := d.showSteps(ctx, a); err != nil {
		return err
	}

	// 4-5. Stream and read back.
	d.step(4, "Replicate: %d key-value entries (kvpb.WriteBatch puts and deletes), window %d, cumulative acks", d.entries, demoWindow)
	res, err := d.replicate(ctx, a, 1, 0, d.entries, demoWindow, nil)
	if err != nil {
		return err
	}
	d.printf("   → %d entries acknowledged, each only once durable (fsync); last ack %d; commit offset %d advertised\n", res.Acked, res.LastAck, res.LastAck)
	if err := d.showSteps(ctx, a); err != nil {
		return err
	}

	d.step(5, "read the applied values back")
	if err := d.compare(ctx, a); err != nil {
		return err
	}

	// 6. Kill -9 mid-stream.
	killAt := d.entries + d.entries/2
	d.step(6, "Replicate %d more entries, and kill -9 node A once offset %d is acknowledged", d.entries, killAt)
	var kill sync.Once
	var killed atomic.Bool
	proc := a.proc
	// The leader reads no further ack until node A is gone, and the
	// window keeps the last entries unsent until then (the window's
	// entries sent before the kill, and those the ack that triggers it
	// frees, stay below the last offset): the stream cannot finish.
	window := min(demoWindow, max(1, int(d.entries/8)))
	res, err = d.replicate(ctx, a, 1, logpos.Offset(d.entries), d.entries, window, func(o logpos.Offset) {
		if int64(o) >= killAt {
			kill.Do(func() {
				proc.Signal(syscall.SIGKILL)
				<-proc.Done()
				killed.Store(true)
			})
		}
	})
	if err == nil {
		return errors.New("the stream survived the kill")
	}
	if !killed.Load() {
		return fmt.Errorf("the stream failed before node A was killed: %w", err)
	}
	lastAck := res.LastAck
	d.printf("   → node A killed (SIGKILL) with %d entries of the stream acknowledged, last ack %d\n", res.Acked, lastAck)
	d.printf("   → the leader's stream ended: %s\n", describeErr(err))
	a.proc.Kill()
	_ = a.conn.Close()
	a.proc = nil

	d.step(7, "restart node A on the same data")
	if err := d.start(ctx, a); err != nil {
		return err
	}
	st, err := a.conn.Status(ctx, d.shard)
	if err != nil {
		return err
	}
	if err := d.showSteps(ctx, a); err != nil {
		return err
	}
	d.printf("   status: term %d, %s, head %d, commit %d\n", st.GetTerm(), st.GetStatus(), st.GetHeadOffset(), st.GetCommitOffset())
	if st.GetTerm() != 1 || st.GetStatus() != replicationpb.ServingStatus_FENCED || logpos.Offset(st.GetHeadOffset()) < lastAck {
		return fmt.Errorf("after the restart: %v; want term 1, FENCED, head ≥ %d", st, lastAck)
	}
	d.printf("   → back Fenced (a restarted follower waits for its leader), nothing acknowledged lost: head %d ≥ last ack %d\n", st.GetHeadOffset(), lastAck)
	if st.GetHeadOffset() > int64(lastAck) {
		d.printf("     (offsets %d..%d were written but their acks never reached the leader)\n", lastAck+1, st.GetHeadOffset())
	}

	// 8. A new leader.
	d.step(8, "a new leader (term 2) takes over from the last acknowledged entry")
	head, err = a.conn.NewTerm(ctx, d.shard, 2, nil)
	if err != nil {
		return err
	}
	if err := d.store.SetTerm(2, store.TermOptions{}); err != nil {
		return err
	}
	d.printf("   NewTerm(term 2) → head entry %v\n", head)
	keep := logpos.EntryID{Term: 1, Offset: lastAck}
	head, err = a.conn.Truncate(ctx, d.shard, 2, keep)
	if err != nil {
		return err
	}
	d.printf("   Truncate(term 2, head %v) → head entry %v: entries the leader never saw acknowledged are dropped\n", keep, head)
	// What was acknowledged before the kill, read back once the new
	// leader advertises it committed (a restarted follower applies no
	// further than a leader said).
	if _, err := a.conn.Replicate(ctx, leader.Run{Shard: d.shard, Term: 2, First: lastAck + 1, Commit: lastAck, Cumulative: true}); err != nil {
		return err
	}
	d.printf("   commit offset %d advertised: the entries acknowledged before the kill\n", lastAck)
	if err := d.compare(ctx, a); err != nil {
		return err
	}
	res, err = d.replicate(ctx, a, 2, lastAck+1, d.entries/2, demoWindow, nil)
	if err != nil {
		return err
	}
	d.printf("   Replicate: %d entries of term 2 acknowledged, last ack %d\n", res.Acked, res.LastAck)
	if err := d.showSteps(ctx, a); err != nil {
		return err
	}
	if err := d.compare(ctx, a); err != nil {
		return err
	}

	// 9. The old leader comes back.
	d.step(9, "the deposed leader of term 1 comes back: NewTerm(term 1), then a stream of term 1")
	_, err = a.conn.NewTerm(ctx, d.shard, 1, nil)
	d.printf("   NewTerm(term 1) → %s\n", describeErr(err))
	if grpcapi.Reason(err) != grpcapi.ReasonInvalidTerm {
		return fmt.Errorf("a stale NewTerm: got %v, want INVALID_TERM", err)
	}
	// The stream names its term in its metadata: it is refused when it
	// attaches, before any of its entries is read.
	stale, err := a.conn.Replicate(ctx, leader.Run{
		Shard: d.shard, Term: 1, First: res.LastAck + 1, Count: 1, Cumulative: true, Commit: logpos.NoOffset,
		Value: func(off logpos.Offset, buf []byte) []byte { return append(buf, entryValue(1, off)...) },
	})
	d.printf("   Replicate(term 1) → %s, %d entries acknowledged\n", describeErr(err), stale.Acked)
	if grpcapi.Reason(err) != grpcapi.ReasonInvalidTerm || stale.Acked != 0 {
		return fmt.Errorf("a stale stream: got %v with %d entries acknowledged, want INVALID_TERM and none", err, stale.Acked)
	}
	if err := d.showSteps(ctx, a); err != nil {
		return err
	}
	if err := d.showStatus(ctx, a); err != nil {
		return err
	}

	// 10. A snapshot into a second node.
	d.step(10, "snapshot the leader's own store and install it into node B (SendSnapshot)")
	if err := d.start(ctx, b); err != nil {
		return err
	}
	sn, err := d.store.Snapshot()
	if err != nil {
		return err
	}
	info := sn.Info()
	counter := &countingSource{src: sn}
	ack, err := b.conn.SendSnapshot(ctx, d.shard, info.Term, counter)
	_ = sn.Close()
	if err != nil {
		return err
	}
	d.printf("   leader snapshot at commit %v, term %d: %d files, %d chunks, %d bytes\n", info.Commit, info.Term, counter.files, counter.chunks, counter.bytes)
	d.printf("   → ack_offset %d\n", ack)
	if ack != info.Commit.Offset {
		return fmt.Errorf("SendSnapshot acknowledged offset %d, want the snapshot's commit %d", ack, info.Commit.Offset)
	}
	if err := d.showSteps(ctx, b); err != nil {
		return err
	}
	st, err = b.conn.Status(ctx, d.shard)
	if err != nil {
		return err
	}
	d.printf("   node %s status: term %d, %s, head %d, commit %d\n", b.name, st.GetTerm(), st.GetStatus(), st.GetHeadOffset(), st.GetCommitOffset())
	if st.GetTerm() != int64(info.Term) || st.GetStatus() != replicationpb.ServingStatus_FOLLOWER ||
		st.GetHeadOffset() != int64(ack) || st.GetCommitOffset() != int64(ack) {
		return fmt.Errorf("node B after the install: %v; want term %d, FOLLOWER, head and commit %d", st, info.Term, ack)
	}
	if err := d.compare(ctx, b); err != nil {
		return err
	}

	// 11. Delete.
	d.step(11, "DeleteShard(term 2) on node A")
	if err := a.conn.Delete(ctx, d.shard, 2); err != nil {
		return err
	}
	if err := d.showSteps(ctx, a); err != nil {
		return err
	}
	_, err = a.conn.Status(ctx, d.shard)
	d.printf("   GetStatus → %s\n", describeErr(err))
	if grpcapi.Reason(err) != grpcapi.ReasonNodeIsNotMember {
		return fmt.Errorf("GetStatus after DeleteShard: got %v, want NODE_IS_NOT_MEMBER", err)
	}
	if _, err := os.Stat(filepath.Join(a.dir, d.shard.Namespace, "0")); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the shard's directory is still on node A (%v)", err)
	}
	d.printf("   the shard's directory is gone from node A's data\n")

	// 12. Stop.
	d.step(12, "stop both nodes (SIGTERM)")
	for _, n := range []*demoNode{a, b} {
		_ = n.conn.Close()
		code := n.proc.Stop()
		n.proc = nil
		d.printf("   node %s exited with status %d\n", n.name, code)
		if code != 0 {
			return fmt.Errorf("node %s exited with status %d (logs: %s)", n.name, code, n.logs.Name())
		}
	}

	commit := d.store.Commit()
	d.printf("\nsummary: %d entries acknowledged over 3 streams and 2 terms, one kill -9 with nothing\n", d.acked)
	d.printf("acknowledged lost, %d keys checked after every stream, a snapshot at commit %v\n", demoKeys, commit)
	d.printf("installed into a second node, the deposed leader refused, the shard deleted; %d lifecycle\n", d.transitions)
	d.printf("steps shown; %.1fs.\n", time.Since(d.started).Seconds())
	return nil
}

// nodeLogged tells whether a node wrote to its log in the temporary
// directory: what a failure keeps the directory for.
func (d *demo) nodeLogged() bool {
	logs, _ := filepath.Glob(filepath.Join(d.tmp, "node*.log"))
	for _, name := range logs {
		if fi, err := os.Stat(name); err == nil && fi.Size() > 0 {
			return true
		}
	}
	return false
}

// start starts node n (again) over its data directory.
func (d *demo) start(ctx context.Context, n *demoNode) error {
	if n.logs == nil {
		var err error
		if n.logs, err = os.Create(filepath.Join(d.tmp, "node"+n.name+".log")); err != nil {
			return err
		}
	}
	p, err := startFollowerd(ctx, d.argv, n.dir, n.logs)
	if err != nil {
		// An empty log is not worth pointing at, and a failure with no
		// node log removes the temporary directory (nodeLogged).
		if fi, serr := n.logs.Stat(); serr == nil && fi.Size() > 0 {
			return fmt.Errorf("node %s: %w (logs: %s)", n.name, err, n.logs.Name())
		}
		return fmt.Errorf("node %s: %w", n.name, err)
	}
	conn, err := leader.Dial(p.Addr, 0)
	if err != nil {
		p.Kill()
		return err
	}
	n.proc, n.conn, n.seq = p, conn, 0
	d.printf("   node %s: followerd pid %d serving on %s (data %s)\n", n.name, p.Pid(), p.Addr, n.dir)
	return nil
}

// replicate streams count entries of term from first to n; the leader's
// store applies each entry as it is acknowledged (committed).
func (d *demo) replicate(ctx context.Context, n *demoNode, term logpos.Term, first logpos.Offset, count int64, window int, onAck func(logpos.Offset)) (leader.Result, error) {
	var mu sync.Mutex
	var applyErr error
	applied := first - 1
	res, err := n.conn.Replicate(ctx, leader.Run{
		Shard: d.shard, Term: term, First: first, Count: count, Window: window, Cumulative: true,
		Commit: first - 1,
		Value: func(off logpos.Offset, buf []byte) []byte {
			return append(buf, entryValue(term, off)...)
		},
		OnAck: func(o logpos.Offset) {
			mu.Lock()
			for ; applied < o && applyErr == nil; applied++ {
				applyErr = d.store.Apply(logpos.Entry{Term: term, Offset: applied + 1, Value: entryValue(term, applied+1)})
			}
			mu.Unlock()
			if onAck != nil {
				onAck(o)
			}
		},
	})
	d.acked += int(res.Acked)
	if applyErr != nil {
		return res, fmt.Errorf("the leader's store: %w", applyErr)
	}
	return res, err
}

// compare reads every key of the demo's key space from n, once n applied
// the leader's commit, and checks it against the leader's store.
func (d *demo) compare(ctx context.Context, n *demoNode) error {
	commit := d.store.Commit().Offset
	keys := make([][]byte, demoKeys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user/%03d", i)
	}
	values, seen, err := n.conn.Get(ctx, d.shard, commit, keys...)
	if err != nil {
		return err
	}
	present := 0
	for i, k := range keys {
		want, err := d.store.Get(k)
		found := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		got := values[i]
		if got.GetFound() != found || !bytes.Equal(got.GetValue(), want) {
			return fmt.Errorf("node %s: %s = %q (found %v), the leader has %q (found %v)", n.name, k, got.GetValue(), got.GetFound(), want, found)
		}
		if found {
			present++
		}
	}
	d.printf("   node %s applied up to offset %d: all %d keys equal the leader's (%d present, %d deleted), e.g. %s = %q\n",
		n.name, seen, demoKeys, present, demoKeys-present, keys[7], values[7].GetValue())
	return nil
}

// showSteps prints the lifecycle steps n's follower took since the last
// call.
func (d *demo) showSteps(ctx context.Context, n *demoNode) error {
	steps, err := n.conn.Steps(ctx, d.shard, n.seq)
	if err != nil {
		return err
	}
	for _, s := range steps {
		n.seq = s.GetSeq()
		d.transitions++
		switch {
		case s.GetError() != "":
			d.printf("   node %s lifecycle: %-9s --%s--> refused: %s\n", n.name, s.GetFrom(), s.GetEvent(), s.GetError())
		case s.GetFrom() == s.GetTo() && !movesBack(s.GetFrom(), s.GetEvent()):
			d.printf("   node %s lifecycle: %-9s --%s--> %s (stays)\n", n.name, s.GetFrom(), s.GetEvent(), s.GetTo())
		default:
			d.printf("   node %s lifecycle: %-9s --%s--> %s\n", n.name, s.GetFrom(), s.GetEvent(), s.GetTo())
		}
	}
	return nil
}

// movesBack reports whether event, in state from, is handled by a row
// that moves (back into from, for a step that ends where it began) rather
// than one that stays: a NewTerm fencing a Fenced follower again is a
// transition, an attached stream is not.
func movesBack(from, event string) bool {
	for _, r := range follower.LifecycleTable().Rows {
		if r.On == event && r.Kind == fsm.Move && r.To == from && slices.Contains(r.From, from) {
			return true
		}
	}
	return false
}

func (d *demo) showStatus(ctx context.Context, n *demoNode) error {
	st, err := n.conn.Status(ctx, d.shard)
	if err != nil {
		return err
	}
	d.printf("   node %s status: term %d, %s, head %d, commit %d\n", n.name, st.GetTerm(), st.GetStatus(), st.GetHeadOffset(), st.GetCommitOffset())
	return nil
}

// describeErr renders a gRPC error as code, reason and message.
func describeErr(err error) string {
	if err == nil {
		return "OK"
	}
	st, _ := status.FromError(err)
	if r := grpcapi.Reason(err); r != "" {
		return fmt.Sprintf("%s %s (%s)", st.Code(), r, st.Message())
	}
	return fmt.Sprintf("%s (%s)", st.Code(), st.Message())
}

// countingSource counts what a snapshot sends.
type countingSource struct {
	src                  leader.ChunkSource
	files, chunks, bytes int
}

func (c *countingSource) Next() (store.Chunk, error) {
	ch, err := c.src.Next()
	if err == nil {
		c.chunks++
		c.bytes += len(ch.Content)
		if ch.Index == 0 {
			c.files++
		}
	}
	return ch, err
}
