package follower

// A model-based test of the follower against SPEC.md: rapid draws random
// sequences of every operation (open and reopen, NewTerm, Truncate,
// replication streams with every kind of Append, half-close, snapshot
// installs whole or held mid-transfer, Status, Delete, Close, and crashes
// that drop unsynced data), runs them against a real follower on a
// crashable in-memory file system and against a small reference model of
// SPEC written here, and checks every invariant of SPEC §6 after each step.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
	"github.com/tablefsm/tablefsm/store/kvpb"
	"github.com/tablefsm/tablefsm/wal"
)

// ---------------------------------------------------------------------------
// Helpers shared with crash_test.go.

// mdlDataDir is the parent of the shard directory; the tests create it
// durably, the follower creates the shard directory inside it.
const (
	mdlDataDir = "/data"
	mdlDir     = "/data/shard"
)

// mdlNewMem returns a crashable in-memory file system holding mdlDataDir,
// durably.
func mdlNewMem(t mdlTB) *vfs.MemFS {
	mem := vfs.NewCrashableMem()
	if err := mem.MkdirAll(mdlDataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/", mdlDataDir} {
		dir, err := mem.OpenDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(dir.Sync(), dir.Close()); err != nil {
			t.Fatal(err)
		}
	}
	return mem
}

// mdlTB is what helpers need of a *testing.T or a *rapid.T.
type mdlTB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// mdlOp is one operation of an entry's key-value write batch.
type mdlOp struct {
	del      bool
	key, val string
}

// mdlEntry is what the model knows of a log entry.
type mdlEntry struct {
	term  logpos.Term
	ops   []mdlOp
	value []byte // the serialized kvpb.WriteBatch
	// crc is the log's CRC chain after this entry (SPEC §5), once the
	// model appended it.
	crc uint32
}

// mdlKeys is every key an entry or a snapshot may write: Get is checked
// on all of them.
var mdlKeys = func() []string {
	var keys []string
	for i := range 6 {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	for i := range 16 {
		keys = append(keys, fmt.Sprintf("s%d", i))
	}
	return keys
}()

// mdlMakeEntry builds the entry at offset o of term; seq makes its value
// unique, so that an entry rewritten after a truncation is told apart.
func mdlMakeEntry(term logpos.Term, o logpos.Offset, seq int) mdlEntry {
	ops := []mdlOp{{key: fmt.Sprintf("k%d", o%6), val: fmt.Sprintf("t%d/o%d/#%d", term, o, seq)}}
	if o%4 == 3 {
		ops = append(ops, mdlOp{del: true, key: fmt.Sprintf("k%d", (o+2)%6)})
	}
	wb := &kvpb.WriteBatch{}
	for _, op := range ops {
		if op.del {
			wb.Operations = append(wb.Operations, &kvpb.Operation{Op: &kvpb.Operation_Delete{Delete: &kvpb.Delete{Key: []byte(op.key)}}})
		} else {
			wb.Operations = append(wb.Operations, &kvpb.Operation{Op: &kvpb.Operation_Put{Put: &kvpb.Put{Key: []byte(op.key), Value: []byte(op.val)}}})
		}
	}
	b, err := proto.Marshal(wb)
	if err != nil {
		panic(err)
	}
	return mdlEntry{term: term, ops: ops, value: b}
}

func (e mdlEntry) applyTo(kv map[string]string) {
	for _, op := range e.ops {
		if op.del {
			delete(kv, op.key)
		} else {
			kv[op.key] = op.val
		}
	}
}

func (e mdlEntry) toAppend(term logpos.Term, o logpos.Offset, commit logpos.Offset, cumulative bool) *replicationpb.Append {
	return &replicationpb.Append{
		Term: int64(term), CommitOffset: int64(commit), CumulativeAcksSupported: cumulative,
		Entry: &replicationpb.LogEntry{Term: int64(e.term), Offset: int64(o), Value: e.value},
	}
}

// mdlSnapshot is a snapshot built in a store of its own (a leader's), with
// entries 0..commit of term each putting s<o>.
type mdlSnapshot struct {
	chunks    []*replicationpb.SnapshotChunk // pristine; copy before use
	commit    logpos.EntryID
	storeTerm logpos.Term
	kv        map[string]string
}

var mdlSnapCache struct {
	sync.Mutex
	m map[[3]int64]*mdlSnapshot
}

// mdlSnapshotOptions are the term options every built snapshot carries.
var mdlSnapshotOptions = TermOptions{EnableNotifications: true, KeySorting: store.KeySortingHierarchical}

func mdlBuildSnapshot(t mdlTB, term, storeTerm logpos.Term, commit logpos.Offset) *mdlSnapshot {
	key := [3]int64{int64(term), int64(storeTerm), int64(commit)}
	mdlSnapCache.Lock()
	defer mdlSnapCache.Unlock()
	if sn, ok := mdlSnapCache.m[key]; ok {
		return sn
	}
	src, err := store.Open("/src", store.Options{FS: vfs.NewMem(), SnapshotChunkSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.SetTerm(storeTerm, mdlSnapshotOptions); err != nil {
		t.Fatal(err)
	}
	kv := map[string]string{}
	for o := logpos.Offset(0); o <= commit; o++ {
		k, v := fmt.Sprintf("s%d", o), fmt.Sprintf("snap t%d o%d", term, o)
		kv[k] = v
		if err := src.Apply(logpos.Entry{Term: term, Offset: o, Value: kvPut(k, v)}); err != nil {
			t.Fatal(err)
		}
	}
	sn, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	out := &mdlSnapshot{commit: logpos.EntryID{Term: term, Offset: commit}, storeTerm: storeTerm, kv: kv,
		chunks: snapshotChunks(t, sn, term)}
	if len(out.chunks) < 2 {
		t.Fatalf("a snapshot of %d chunks: the mangles need at least 2", len(out.chunks))
	}
	if mdlSnapCache.m == nil {
		mdlSnapCache.m = map[[3]int64]*mdlSnapshot{}
	}
	mdlSnapCache.m[key] = out
	return out
}

// The ways a snapshot stream can be broken.
const (
	mangleNone       = ""
	mangleEmpty      = "empty"       // no chunk at all
	mangleTruncated  = "truncated"   // the last chunk missing
	mangleBadName    = "bad-name"    // a name with a separator
	mangleTermChange = "term-change" // the last chunk of another term
	mangleNotAStore  = "not-a-store" // files that are no Pebble store
	mangleTransport  = "transport"   // the transport fails after the chunks
	mangleWrongTerm  = "wrong-term"  // every chunk of an unacceptable term
	mangleReorder    = "reorder"     // the last chunk first
)

// mdlBadNames break the chunk name rule ^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$.
var mdlBadNames = []string{"../escape", "", ".hidden", "a/b", "a\\b", strings.Repeat("a", 256), "-x", "a b"}

var mdlMangles = []string{mangleNone, mangleNone, mangleNone, mangleEmpty, mangleTruncated, mangleBadName,
	mangleTermChange, mangleNotAStore, mangleTransport, mangleWrongTerm, mangleReorder}

// chunksFor returns a fresh copy of the snapshot's chunks with term, broken
// as mangle says.
func (sn *mdlSnapshot) chunksFor(term logpos.Term, mangle string, variant int) []*replicationpb.SnapshotChunk {
	var chunks []*replicationpb.SnapshotChunk
	for _, c := range sn.chunks {
		c := proto.Clone(c).(*replicationpb.SnapshotChunk)
		c.Term = int64(term)
		chunks = append(chunks, c)
	}
	switch mangle {
	case mangleEmpty:
		chunks = nil
	case mangleTruncated:
		chunks = chunks[:len(chunks)-1]
	case mangleBadName:
		chunks[1+variant%(len(chunks)-1)].Name = mdlBadNames[variant%len(mdlBadNames)]
	case mangleTermChange:
		chunks[len(chunks)-1].Term++
	case mangleNotAStore:
		for _, c := range chunks {
			c.Name = "junk-" + c.Name
		}
	case mangleReorder:
		// Two chunks of one file swapped.
		// Two chunks of one file swapped; never the first chunk, so that
		// an install held after it attaches.
		i := len(chunks) - 1
		for i > 0 && (chunks[i].ChunkIndex != 0 || chunks[i].ChunkCount < 2) {
			i--
		}
		if i == 0 {
			panic("no file of several chunks after the first chunk")
		}
		chunks[i], chunks[i+1] = chunks[i+1], chunks[i]
	}
	return chunks
}

// mdlSnapshotStream delivers chunks; after the first it waits for gate (if
// set) to be closed. At the end it returns io.EOF, or err when set.
type mdlSnapshotStream struct {
	chunks []*replicationpb.SnapshotChunk
	gate   chan struct{}
	err    error
	n      int
}

func (s *mdlSnapshotStream) Context() context.Context { return context.Background() }

func (s *mdlSnapshotStream) Recv() (*replicationpb.SnapshotChunk, error) {
	if s.n == 1 && s.gate != nil {
		<-s.gate
	}
	if s.n >= len(s.chunks) {
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	s.n++
	return s.chunks[s.n-1], nil
}

var errTransport = errors.New("transport failed")

// mdlStream is a leader's replication stream as gRPC behaves (Recv fails
// once the stream's context is done, which happens when Replicate returns)
// that also checks that acks are never sent from two goroutines at once.
type mdlStream struct {
	*fakeStream
	inSend     atomic.Int32
	concurrent atomic.Int32
	// beforeSend, when set, is called with each ack before it is delivered.
	beforeSend func(int64)
}

func (s *mdlStream) Send(a *replicationpb.Ack) error {
	if s.inSend.Add(1) != 1 {
		s.concurrent.Add(1)
	}
	defer s.inSend.Add(-1)
	if s.beforeSend != nil {
		s.beforeSend(a.Offset)
	}
	return s.fakeStream.Send(a)
}

// mdlRecorder is the observer: it keeps every step of the machine.
type mdlRecorder struct {
	mu      sync.Mutex
	steps   []fsm.Step
	changed chan struct{}
}

func newMdlRecorder() *mdlRecorder { return &mdlRecorder{changed: make(chan struct{})} }

func (r *mdlRecorder) Observe(s fsm.Step) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, s)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *mdlRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.steps)
}

// since returns the steps from index i on and a channel closed at the next.
func (r *mdlRecorder) since(i int) ([]fsm.Step, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.steps[min(i, len(r.steps)):]), r.changed
}

// mdlTableCheck holds every step of one follower's machine against the
// rows of transitions.yaml, in sequence.
type mdlTableCheck struct {
	table   *fsm.Table
	rec     *mdlRecorder
	checked int
	state   string
}

func newMdlTableCheck(rec *mdlRecorder) *mdlTableCheck {
	tb := LifecycleTable()
	return &mdlTableCheck{table: tb, rec: rec, state: tb.Initial}
}

var mdlErrByName = map[string]error{
	"ErrInvalidArgument": ErrInvalidArgument, "ErrInvalidTerm": ErrInvalidTerm, "ErrInvalidStatus": ErrInvalidStatus,
	"ErrConflict": ErrConflict, "ErrNotMember": ErrNotMember, "ErrStreamEnded": ErrStreamEnded, "ErrClosed": ErrClosed,
}

// check validates the steps observed since the last call and returns the
// state the machine is in after them.
func (c *mdlTableCheck) check() (string, error) {
	steps, _ := c.rec.since(c.checked)
	for _, s := range steps {
		c.checked++
		if err := c.step(s); err != nil {
			return c.state, fmt.Errorf("step %d %+v: %w", c.checked, s, err)
		}
		c.state = s.To
	}
	return c.state, nil
}

func (c *mdlTableCheck) step(s fsm.Step) error {
	if s.Machine != "lifecycle" {
		return fmt.Errorf("machine %q", s.Machine)
	}
	if s.From != c.state {
		return fmt.Errorf("starts in %s, but the machine was in %s", s.From, c.state)
	}
	if c.state == "Closed" && s.To != "Closed" {
		return errors.New("left Closed")
	}
	if s.Row < 0 {
		if s.Err == nil || s.To != s.From {
			return errors.New("no row taken, yet accepted or moved")
		}
		if c.state == "Closed" && !errors.Is(s.Err, ErrClosed) {
			return fmt.Errorf("refused in Closed with %v, not ErrClosed", s.Err)
		}
		return nil
	}
	if s.Row >= len(c.table.Rows) {
		return fmt.Errorf("row %d of %d", s.Row, len(c.table.Rows))
	}
	row := c.table.Rows[s.Row]
	if row.On != s.Event || !slices.Contains(row.From, s.From) {
		return fmt.Errorf("row %d is %v on %s", s.Row, row.From, row.On)
	}
	switch row.Kind {
	case fsm.Move:
		if s.Err == nil && s.To != row.To {
			return fmt.Errorf("row %d moves to %s, the machine went to %s", s.Row, row.To, s.To)
		}
		if s.Err != nil && s.To != s.From {
			return fmt.Errorf("row %d: a failed action moved the machine", s.Row)
		}
	case fsm.Stay, fsm.Noop:
		if s.To != s.From {
			return fmt.Errorf("row %d stays, the machine moved", s.Row)
		}
	case fsm.Refuse:
		if s.To != s.From || !errors.Is(s.Err, mdlErrByName[row.Refuse]) {
			return fmt.Errorf("row %d refuses with %s: got %v, moved to %s", s.Row, row.Refuse, s.Err, s.To)
		}
	}
	return nil
}

// mdlFingerprint is what a rejected operation must leave exactly as it
// was: every file of the shard (name and size; staging directories and the
// log's preallocated next segment aside, see mdlStagingLeft).
func mdlFingerprint(fs vfs.FS) (map[string]int64, error) {
	out := map[string]int64{}
	live := ""
	if f, err := fs.Open(mdlDir + "/store/CURRENT"); err == nil {
		b, _ := io.ReadAll(f)
		f.Close()
		live = strings.TrimSpace(string(b))
	}
	var walk func(dir string) error
	walk = func(dir string) error {
		names, err := fs.List(dir)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, n := range names {
			p := dir + "/" + n
			if dir == mdlDir+"/store" && (strings.HasPrefix(n, "db-") && n != live || strings.HasPrefix(n, "checkpoint-")) {
				continue
			}
			// The log's background work: prepared segments and the
			// indexes of sealed ones (a cache, rebuilt when missing).
			if dir == mdlDir+"/wal" && (strings.HasPrefix(n, "next-") || strings.Contains(n, ".idx")) {
				continue
			}
			st, err := fs.Stat(p)
			if errors.Is(err, os.ErrNotExist) {
				continue // removed meanwhile (Pebble's obsolete files)
			}
			if err != nil {
				return err
			}
			if st.IsDir() {
				out[p+"/"] = 0
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			out[p] = st.Size()
		}
		return nil
	}
	return out, walk(mdlDir)
}

// mdlStagingLeft lists what a snapshot install left in the store
// directory: staging databases, checkpoints, a temporary marker.
func mdlStagingLeft(fs vfs.FS) []string {
	live := ""
	if f, err := fs.Open(mdlDir + "/store/CURRENT"); err == nil {
		b, _ := io.ReadAll(f)
		f.Close()
		live = strings.TrimSpace(string(b))
	}
	names, _ := fs.List(mdlDir + "/store")
	var left []string
	for _, n := range names {
		if strings.HasPrefix(n, "db-") && n != live || strings.HasPrefix(n, "checkpoint-") || n == "CURRENT.tmp" {
			left = append(left, n)
		}
	}
	return left
}

// mdlReadLog returns the durable entries of the follower's log.
func mdlReadLog(f *Follower) ([]logpos.Entry, error) {
	first := f.log.FirstOffset()
	if first == logpos.NoOffset {
		return nil, nil
	}
	r, err := f.log.NewReader(first)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []logpos.Entry
	for {
		e, err := r.Next()
		if errors.Is(err, wal.ErrCaughtUp) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		e.Value = slices.Clone(e.Value)
		out = append(out, e)
	}
}

// mdlSettle waits until the applier has applied up to target and finished
// what it was doing with it (trimming, notifying).
func mdlSettle(f *Follower, target logpos.Offset) error {
	if target >= 0 {
		// The deadline only keeps a regression from hanging the tests.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := f.WaitApplied(ctx, target); err != nil {
			return err
		}
	}
	f.applier.mu.Lock()
	//lint:ignore SA2001 a barrier: the applier finished its entry
	f.applier.mu.Unlock()
	return nil
}

// ---------------------------------------------------------------------------
// The reference model.

// mdlModel is SPEC's idea of a follower, at the end of a step.
type mdlModel struct {
	state State
	term  logpos.Term
	opts  TermOptions
	// log holds the entries after base.Offset up to head.
	log  map[logpos.Offset]mdlEntry
	head logpos.Offset
	// durable: every entry up to it is durable (survives a crash).
	durable logpos.Offset
	// base is the snapshot point (NoEntry without an install); baseKV the
	// snapshot's data.
	base   logpos.EntryID
	baseKV map[string]string
	commit logpos.Offset
	// commitFloor: a crash never takes the commit below it (it was made
	// durable by SetTerm or an install).
	commitFloor logpos.Offset
	advertised  logpos.Offset
}

func newMdlModel() mdlModel {
	return mdlModel{state: StateNotMember, term: logpos.NoTerm, log: map[logpos.Offset]mdlEntry{},
		head: logpos.NoOffset, durable: logpos.NoOffset, base: logpos.NoEntry, baseKV: map[string]string{},
		commit: logpos.NoOffset, commitFloor: logpos.NoOffset, advertised: logpos.NoOffset}
}

func (m mdlModel) clone() mdlModel {
	m.log = maps.Clone(m.log)
	m.baseKV = maps.Clone(m.baseKV)
	return m
}

// kvAt is the applied data at commit c.
func (m *mdlModel) kvAt(c logpos.Offset) map[string]string {
	kv := maps.Clone(m.baseKV)
	for o := m.base.Offset + 1; o <= c; o++ {
		m.log[o].applyTo(kv)
	}
	return kv
}

// applyTarget is where the applier stops: min(advertised, durable head).
func (m *mdlModel) applyTarget() logpos.Offset {
	return max(m.commit, min(m.advertised, max(m.durable, m.base.Offset)))
}

// headID is what NewTerm replies: the last durable log entry, else the
// snapshot point, else NoEntry.
func (m *mdlModel) headID() logpos.EntryID {
	if m.durable > m.base.Offset {
		return logpos.EntryID{Term: m.log[m.durable].term, Offset: m.durable}
	}
	return m.base
}

// add appends e at o = head+1. Its chain CRC follows the previous entry's;
// the first entry of an empty log is seeded with the Append's
// previous_entry_crc when given, else 0 (SPEC §5).
func (m *mdlModel) add(o logpos.Offset, e mdlEntry, prevCRC *uint32) {
	seed := uint32(0)
	if prev, ok := m.log[o-1]; ok {
		seed = prev.crc
	} else if prevCRC != nil {
		seed = *prevCRC
	}
	e.crc = crc32.Update(seed, crc32.MakeTable(crc32.Castagnoli),
		wal.EncodeEntry(nil, logpos.Entry{Term: e.term, Offset: o, Value: e.value}))
	m.log[o] = e
	m.head = o
}

// cutAfter drops the entries after o.
func (m *mdlModel) cutAfter(o logpos.Offset) {
	for k := range m.log {
		if k > o {
			delete(m.log, k)
		}
	}
	m.head = max(o, m.base.Offset)
	m.durable = min(m.durable, m.head)
}

// ---------------------------------------------------------------------------
// The driver.

type mdlStreamState struct {
	s          *mdlStream
	res        chan error
	term       logpos.Term
	decided    bool
	cumulative bool
	ended      bool
	err        error
	f          *Follower
	lastAck    logpos.Offset
	// advPending: commit advertisements were sent that nothing confirmed
	// the stream processed (an ack of a later entry, a half-close, the
	// applier moving); advBefore is the advertised offset before them.
	advPending bool
	advBefore  logpos.Offset
}

func (st *mdlStreamState) wait(t fatalHelper) error {
	t.Helper()
	if !st.ended {
		st.err = within(t, st.res)
		st.ended = true
	}
	return st.err
}

type mdlInstall struct {
	sn        *mdlSnapshot
	chunkTerm logpos.Term
	mangle    string
	gate      chan struct{}
	res       chan mdlInstallResult
	f         *Follower
	abandoned bool // a NewTerm ran since it was attached
	once      sync.Once
}

func (in *mdlInstall) open() { in.once.Do(func() { close(in.gate) }) }

type mdlInstallResult struct {
	off logpos.Offset
	err error
}

type mdlDriver struct {
	t      *rapid.T
	cfgMem *vfs.MemFS
	f      *Follower
	rec    *mdlRecorder
	table  *mdlTableCheck
	m      mdlModel
	// deleted is the model from before a Delete, until the next open: a
	// crash may bring it back (the removal was not synced).
	deleted *mdlModel
	stream  *mdlStreamState
	// installs are the installs held mid-transfer; attached is the one the
	// follower has attached, if any.
	installs []*mdlInstall
	attached *mdlInstall
	seq      int
	// termFloor is the highest term seen since the shard was last created.
	termFloor logpos.Term
	// lastCommit is the commit at the previous check of this process.
	lastCommit logpos.Offset
	// commitMayDrop: the last step installed a snapshot below the commit.
	commitMayDrop bool
	// stats counts what the run did, for the test's log.
	stats map[string]int
}

func (d *mdlDriver) note(what string) { d.stats[what]++ }

func (d *mdlDriver) fatalf(format string, args ...any) {
	d.t.Helper()
	d.t.Fatalf(format, args...)
}

func (d *mdlDriver) config() Config {
	return Config{Dir: mdlDir, FS: d.cfgMem, Observer: d.rec, SegmentSize: 512, TrimEvery: 3}
}

// open opens a follower on the current file system and returns the error.
func (d *mdlDriver) open() error {
	d.rec = newMdlRecorder()
	d.table = newMdlTableCheck(d.rec)
	f, err := Open(d.config())
	if err != nil {
		d.f = nil
		return err
	}
	d.f = f
	return nil
}

func (d *mdlDriver) closed() bool { return d.m.state == StateClosed }

// closeFollower closes the follower (if it is still open) and settles
// everything attached to it: the stream ends with a cancellation, the
// installs held mid-transfer fail.
func (d *mdlDriver) closeFollower() {
	if d.f == nil {
		return
	}
	if err := d.f.Close(); err != nil {
		d.fatalf("Close: %v", err)
	}
	if err := d.f.Close(); err != nil {
		d.fatalf("Close again: %v", err)
	}
	d.endedByControl()
	d.settleInstalls(d.f)
	if _, err := d.table.check(); err != nil {
		d.fatalf("transitions: %v", err)
	}
	if d.table.state != "Closed" {
		d.fatalf("closed follower in state %s", d.table.state)
	}
}

// endedByControl: NewTerm, Delete or Close ended the attached stream.
func (d *mdlDriver) endedByControl() {
	st := d.stream
	if st == nil {
		return
	}
	d.stream = nil
	err := st.wait(d.t)
	if !errors.Is(err, ErrStreamEnded) && !errors.Is(err, context.Canceled) {
		d.fatalf("a stream ended by a control operation returned %v, want a cancellation", err)
	}
	d.resolveAdvert(st)
	if n := st.s.concurrent.Load(); n > 0 {
		d.fatalf("acks sent from two goroutines at once (%d times)", n)
	}
}

// resolveAdvert: a stream ended with commit advertisements in flight,
// which it may or may not have processed (a transport that fails, or a
// NewTerm, drops what is in flight). The follower's advertised offset is
// then the one before them or one they carried.
func (d *mdlDriver) resolveAdvert(st *mdlStreamState) {
	if !st.advPending || d.f == nil {
		return
	}
	st.advPending = false
	got := logpos.Offset(d.f.advertised.Load())
	if got != st.advBefore && got != d.m.advertised && (got < st.advBefore || got > d.m.advertised) {
		d.fatalf("advertised %d after a stream ended: not %d (before its advertisements) nor one it advertised (up to %d)", got, st.advBefore, d.m.advertised)
	}
	d.m.advertised = got
	d.note("advertisements in flight when a stream ended")
}

// settleInstalls lets the held installs of a closed follower finish: they
// fail with ErrClosed (or ErrInvalidTerm if a NewTerm abandoned them).
func (d *mdlDriver) settleInstalls(f *Follower) {
	var keep []*mdlInstall
	for _, in := range d.installs {
		if in.f != f {
			keep = append(keep, in)
			continue
		}
		in.open()
		r := within(d.t, in.res)
		if !errors.Is(r.err, ErrClosed) && !(in.abandoned && errors.Is(r.err, ErrInvalidTerm)) {
			d.fatalf("an install interrupted by Close returned %d, %v", r.off, r.err)
		}
	}
	d.installs = keep
	if d.attached != nil && d.attached.f == f {
		d.attached = nil
	}
}

// observation is everything a rejected operation must leave unchanged.
type mdlObservation struct {
	status Status
	kv     map[string]string
	log    []logpos.Entry
	files  map[string]int64
	opts   TermOptions
}

func (d *mdlDriver) observe() mdlObservation {
	o := mdlObservation{status: d.f.Status()}
	var err error
	if o.files, err = mdlFingerprint(d.cfgMem); err != nil {
		d.fatalf("listing files: %v", err)
	}
	if d.closed() {
		return o
	}
	o.kv = d.readKV()
	if o.log, err = mdlReadLog(d.f); err != nil {
		d.fatalf("reading the log: %v", err)
	}
	o.opts = d.f.store().TermOptions()
	return o
}

func (d *mdlDriver) readKV() map[string]string {
	kv := map[string]string{}
	for _, k := range mdlKeys {
		v, err := d.f.Get([]byte(k))
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			d.fatalf("Get %s: %v", k, err)
		default:
			kv[k] = string(v)
		}
	}
	return kv
}

func mdlDiff(a, b mdlObservation) string {
	var out []string
	if a.status != b.status {
		out = append(out, fmt.Sprintf("status %+v -> %+v", a.status, b.status))
	}
	if !maps.Equal(a.kv, b.kv) {
		out = append(out, fmt.Sprintf("data %v -> %v", a.kv, b.kv))
	}
	if len(a.log) != len(b.log) {
		out = append(out, fmt.Sprintf("log of %d entries -> %d", len(a.log), len(b.log)))
	} else {
		for i := range a.log {
			if a.log[i].ID() != b.log[i].ID() || string(a.log[i].Value) != string(b.log[i].Value) {
				out = append(out, fmt.Sprintf("log entry %v -> %v", a.log[i].ID(), b.log[i].ID()))
			}
		}
	}
	for k, v := range a.files {
		w, ok := b.files[k]
		if !ok && strings.Contains(k, "/store/db-") {
			continue // Pebble removes obsolete files in the background
		}
		if ok && strings.Contains(k, "/store/db-") && strings.HasSuffix(k, ".log") {
			// Pebble's log is written by its own goroutine, after an
			// applied entry is visible: its size may change after the
			// applier settled. What it records is compared above (the
			// data, the commit, the term options).
			continue
		}
		if !ok || v != w {
			out = append(out, fmt.Sprintf("file %s: size %d -> %d (present %v)", k, v, w, ok))
		}
	}
	for k := range b.files {
		if _, ok := a.files[k]; !ok {
			out = append(out, fmt.Sprintf("file %s created", k))
		}
	}
	if a.opts != b.opts {
		out = append(out, fmt.Sprintf("term options %+v -> %+v", a.opts, b.opts))
	}
	return strings.Join(out, "; ")
}

// reject runs an operation that SPEC says fails with want, and checks it
// changed nothing.
func (d *mdlDriver) reject(what string, want error, op func() error) {
	d.t.Helper()
	before := d.observe()
	err := op()
	d.note(fmt.Sprintf("rejected %s: %v", what, errName(want)))
	if want == errAnyError && err == nil || want != errAnyError && !errors.Is(err, want) {
		d.fatalf("%s: got %v, want %v", what, err, want)
	}
	if diff := mdlDiff(before, d.observe()); diff != "" {
		d.fatalf("%s was rejected (%v) but changed: %s", what, err, diff)
	}
}

// errAnyError: reject accepts any error.
var errAnyError = errors.New("any error")

func (d *mdlDriver) wantErr(what string, err, want error) {
	d.t.Helper()
	if !errors.Is(err, want) {
		d.fatalf("%s: got %v, want %v", what, err, want)
	}
}

// settle waits for the applier to reach the model's target and records it.
func (d *mdlDriver) settle() {
	if d.closed() {
		return
	}
	d.m.commit = d.m.applyTarget()
	if err := mdlSettle(d.f, d.m.commit); err != nil {
		d.fatalf("waiting for commit %d: %v", d.m.commit, err)
	}
}

// check holds the follower against the model and SPEC §6 after a step.
func (d *mdlDriver) check() {
	d.t.Helper()
	state, err := d.table.check()
	if err != nil {
		d.fatalf("transitions (SPEC §6.6): %v", err)
	}
	st := d.f.Status()
	if st.State.String() != state {
		d.fatalf("Status says %v, the machine's last step left it in %s", st.State, state)
	}
	if st.State != d.m.state {
		d.fatalf("state %v, model %v", st.State, d.m.state)
	}
	// §6.1: the term never decreases.
	if st.Term < d.termFloor {
		d.fatalf("term %d below %d (SPEC §6.1)", st.Term, d.termFloor)
	}
	d.termFloor = st.Term
	if st.Term != d.m.term {
		d.fatalf("term %d, model %d", st.Term, d.m.term)
	}
	if d.closed() {
		if _, err := d.f.Get([]byte("k0")); !errors.Is(err, ErrClosed) {
			d.fatalf("Get on a closed follower: %v", err)
		}
		if err := d.f.WaitApplied(context.Background(), 0); !errors.Is(err, ErrClosed) {
			d.fatalf("WaitApplied on a closed follower: %v", err)
		}
		return
	}
	if st.Head != d.m.head || st.Commit != d.m.commit {
		d.fatalf("head %d commit %d, model head %d commit %d", st.Head, st.Commit, d.m.head, d.m.commit)
	}
	// §6.3: commit ≤ durable head (or the snapshot point); never decreases.
	durable := max(d.f.log.LastDurable().Offset, d.m.base.Offset)
	if st.Commit > durable {
		d.fatalf("commit %d beyond the durable head %d (SPEC §6.3)", st.Commit, durable)
	}
	if st.Commit < d.lastCommit && !d.commitMayDrop {
		d.fatalf("commit went back from %d to %d (SPEC §6.3)", d.lastCommit, st.Commit)
	}
	d.lastCommit = st.Commit
	d.commitMayDrop = false
	if durable < d.m.durable {
		d.fatalf("durable head %d below %d, which was acknowledged or reported durable (SPEC §6.2)", durable, d.m.durable)
	}
	// §6.2: the log is contiguous and holds what was acknowledged.
	entries, err := mdlReadLog(d.f)
	if err != nil {
		d.fatalf("reading the log: %v", err)
	}
	for i, e := range entries {
		if i > 0 && e.Offset != entries[i-1].Offset+1 {
			d.fatalf("log not contiguous: %d after %d", e.Offset, entries[i-1].Offset)
		}
		if e.Offset <= d.m.base.Offset {
			continue
		}
		want, ok := d.m.log[e.Offset]
		if !ok || want.term != e.Term || string(want.value) != string(e.Value) {
			d.fatalf("log entry %v is not the model's (%v, present %v)", e.ID(), want.term, ok)
		}
	}
	last := logpos.NoOffset
	if len(entries) > 0 {
		last = entries[len(entries)-1].Offset
	}
	if max(last, d.m.base.Offset) != durable || durable > d.m.head {
		d.fatalf("log ends at %d, durable head %d, model head %d", last, durable, d.m.head)
	}
	// SPEC §5: the CRC chain, seeded after a snapshot by the leader's.
	if e, ok := d.m.log[d.m.head]; ok {
		if got := d.f.log.LastCRC(); got != e.crc {
			d.fatalf("the log's chain CRC is %#x after entry %d, want %#x", got, d.m.head, e.crc)
		}
	}
	// The entries after the commit are in the log, to be applied again.
	if need := max(st.Commit, d.m.base.Offset) + 1; need <= last && entries[0].Offset > need {
		d.fatalf("the log starts at %d: entry %d, after the commit, cannot be applied again", entries[0].Offset, need)
	}
	// The applied data is the data of the entries up to the commit.
	if kv, want := d.readKV(), d.m.kvAt(st.Commit); !maps.Equal(kv, want) {
		d.fatalf("data at commit %d: %v, want %v", st.Commit, kv, want)
	}
	if o := d.f.store().TermOptions(); d.m.term >= 0 && o != d.m.opts {
		d.fatalf("term options %+v, want %+v", o, d.m.opts)
	}
	// §6.5: at most one stream or install attached, the ones the model knows.
	d.f.acquire()
	stream, install := d.f.stream != nil, d.f.install != nil
	locked := d.f.Status() // §2.5: lock-free, it must not wait for the lock held here
	d.f.release()
	if locked != st {
		d.fatalf("Status changed between two reads at rest: %+v, %+v", st, locked)
	}
	if stream && install {
		d.fatalf("a stream and an install attached at once (SPEC §6.5)")
	}
	if stream != (d.stream != nil) || install != (d.attached != nil) {
		d.fatalf("attached: stream %v install %v, model %v %v", stream, install, d.stream != nil, d.attached != nil)
	}
	if len(d.installs) == 0 {
		if left := mdlStagingLeft(d.cfgMem); len(left) > 0 {
			d.fatalf("staged files left with no install running: %v", left)
		}
	}
	if d.stream != nil && d.stream.s.concurrent.Load() > 0 {
		d.fatalf("acks sent from two goroutines at once")
	}
}

// ---------------------------------------------------------------------------
// Operations.

func (d *mdlDriver) nextSeq() int { d.seq++; return d.seq }

// drawTerm draws a term around the follower's: negative, lower, equal or
// higher.
func (d *mdlDriver) drawTerm(label string) logpos.Term {
	cur := int64(d.m.term)
	if cur < 0 {
		return logpos.Term(rapid.SampledFrom([]int64{-2, -1, 0, 0, 1, 2}).Draw(d.t, label))
	}
	return logpos.Term(rapid.SampledFrom([]int64{-1, cur - 1, cur, cur, cur, cur + 1, cur + 1, cur + 2}).Draw(d.t, label))
}

func (d *mdlDriver) opReopen() {
	d.closeFollower()
	d.t.Logf("reopen")
	if err := d.open(); err != nil {
		d.fatalf("reopen: %v", err)
	}
	if d.deleted != nil {
		d.m, d.termFloor, d.deleted = newMdlModel(), logpos.NoTerm, nil
	}
	d.reopened()
}

// reopened sets the model to what a freshly opened follower is (SPEC §2.8).
func (d *mdlDriver) reopened() {
	d.m.state = StateFenced
	if d.m.term == logpos.NoTerm {
		d.m.state = StateNotMember
	}
	d.m.durable = d.m.head
	d.m.advertised = d.m.commit
	d.lastCommit = d.m.commit
}

func (d *mdlDriver) opCrash() {
	pct := rapid.SampledFrom([]int{0, 0, 50, 100}).Draw(d.t, "unsynced%")
	cfg := vfs.CrashCloneCfg{UnsyncedDataPercent: pct}
	if pct > 0 {
		cfg.RNG = rand.New(rand.NewPCG(rapid.Uint64().Draw(d.t, "crashSeed"), 1))
	}
	d.t.Logf("crash keeping %d%% of unsynced data", pct)
	clone := d.cfgMem.CrashClone(cfg)
	d.closeFollower() // the old process's goroutines stop; its files are gone with it
	d.cfgMem = clone
	if err := d.open(); err != nil {
		d.fatalf("reopen after a crash: %v (SPEC §2.8: a crash is recovered from)", err)
	}
	st := d.f.Status()
	if d.deleted != nil {
		if st.Term == logpos.NoTerm && st.Head == logpos.NoOffset && st.Commit == logpos.NoOffset {
			d.m, d.termFloor = newMdlModel(), logpos.NoTerm
		} else {
			d.m = *d.deleted // the removal did not survive: the shard is back
		}
		d.deleted = nil
	}
	// Every acknowledged entry survives, and nothing else than what was
	// appended (a suffix beyond the durable head may or may not).
	if st.Head < d.m.durable || st.Head > d.m.head {
		d.fatalf("head %d after a crash, want between %d (durable) and %d", st.Head, d.m.durable, d.m.head)
	}
	if st.Term != d.m.term {
		d.fatalf("term %d after a crash, want %d", st.Term, d.m.term)
	}
	if st.Commit < d.m.commitFloor || st.Commit > d.m.commit {
		d.fatalf("commit %d after a crash, want between %d and %d", st.Commit, d.m.commitFloor, d.m.commit)
	}
	d.m.cutAfter(st.Head)
	d.m.head = st.Head
	d.m.commit = st.Commit
	d.reopened()
}

func (d *mdlDriver) opNewTerm() {
	term := d.drawTerm("newTerm")
	opts := TermOptions{EnableNotifications: rapid.Bool().Draw(d.t, "notify"),
		KeySorting: store.KeySorting(rapid.IntRange(0, 2).Draw(d.t, "sorting"))}
	d.t.Logf("NewTerm(%d, %+v)", term, opts)
	if err := d.newTermRejection(term); err != nil {
		d.reject("NewTerm", err, func() error { _, err := d.f.NewTerm(term, opts); return err })
		return
	}
	head, err := d.f.NewTerm(term, opts)
	if err != nil {
		d.fatalf("NewTerm(%d): %v", term, err)
	}
	d.fenced(term, opts)
	d.note("NewTerm succeeded")
	if want := d.m.headID(); head != want {
		d.fatalf("NewTerm replied %v, want %v", head, want)
	}
}

func (d *mdlDriver) newTermRejection(term logpos.Term) error {
	switch {
	case d.closed():
		return ErrClosed
	case term < 0:
		return ErrInvalidArgument
	case term < d.m.term:
		return ErrInvalidTerm
	}
	return nil
}

// fenced applies a successful NewTerm to the model.
func (d *mdlDriver) fenced(term logpos.Term, opts TermOptions) {
	d.endedByControl()
	if d.attached != nil {
		d.attached.abandoned = true
		d.attached = nil
	}
	d.m.term, d.m.opts, d.m.state = term, opts, StateFenced
	d.m.commitFloor = d.m.commit // SetTerm makes the applied entries durable
}

// opNewTermRacing runs NewTerm while the attached stream is busy
// appending: afterwards, nothing of that stream is ever written (§6.4).
func (d *mdlDriver) opNewTermRacing() {
	st := d.stream
	k := rapid.IntRange(1, 8).Draw(d.t, "burst")
	term := d.m.term + logpos.Term(rapid.IntRange(0, 1).Draw(d.t, "termStep"))
	cum := st.cumulative
	if !st.decided {
		cum = rapid.Bool().Draw(d.t, "cumulative")
	}
	d.t.Logf("NewTerm(%d) racing with a burst of %d appends", term, k)
	from := d.m.head + 1
	entries := make([]mdlEntry, k)
	for i := range entries {
		entries[i] = mdlMakeEntry(st.term, from+logpos.Offset(i), d.nextSeq())
	}
	first := make(chan struct{})
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		for i, e := range entries {
			select {
			case st.s.in <- e.toAppend(st.term, from+logpos.Offset(i), logpos.NoOffset, cum):
			case <-st.s.ctx.Done():
				if i == 0 {
					close(first)
				}
				return
			}
			if i == 0 {
				close(first)
			}
		}
	}()
	<-first
	reply, err := d.f.NewTerm(term, d.m.opts)
	if err != nil {
		d.fatalf("NewTerm(%d) racing with a stream: %v", term, err)
	}
	after := d.f.Status()
	lastAppended := d.f.log.LastAppended()
	d.endedByControl()
	<-pushed
	if again := d.f.Status(); again.Head != after.Head || d.f.log.LastAppended() != lastAppended {
		d.fatalf("the old stream wrote after NewTerm returned: head %d -> %d, last appended %v -> %v (SPEC §6.4)",
			after.Head, again.Head, lastAppended, d.f.log.LastAppended())
	}
	if after.Head < d.m.head || after.Head >= from+logpos.Offset(k) {
		d.fatalf("head %d after a burst from %d of %d", after.Head, from, k)
	}
	if reply.Offset < d.m.durable || reply.Offset > after.Head {
		d.fatalf("NewTerm replied %v: not between the acknowledged %d and the head %d", reply, d.m.durable, after.Head)
	}
	for o := from; o <= after.Head; o++ {
		d.m.add(o, entries[o-from], nil)
	}
	// Acks sent before the stream ended: durable ones, in order.
	prev := logpos.NoOffset
	for len(st.s.acks) > 0 {
		a := logpos.Offset(<-st.s.acks)
		if a > reply.Offset && a > d.m.base.Offset {
			d.fatalf("offset %d acknowledged, but NewTerm found the durable head at %v (SPEC §6.2)", a, reply)
		}
		if cum && a <= prev || !cum && a != max(prev+1, from) {
			d.fatalf("ack %d after %d (cumulative %v, burst from %d)", a, prev, cum, from)
		}
		prev = a
	}
	if reply.Offset > d.m.base.Offset {
		d.m.durable = reply.Offset
	}
	d.fenced(term, d.m.opts)
	if want := d.m.headID(); reply != want {
		d.fatalf("NewTerm replied %v, want %v", reply, want)
	}
}

func (d *mdlDriver) opTruncate() {
	var term logpos.Term
	var head *logpos.EntryID
	if d.m.commit <= d.m.head && rapid.Bool().Draw(d.t, "plausible") {
		// What a leader of the term would send.
		term = d.m.term
		off := logpos.Offset(rapid.Int64Range(int64(d.m.commit), int64(d.m.head)).Draw(d.t, "truncOffset"))
		head = &logpos.EntryID{Term: logpos.Term(rapid.Int64Range(-1, 5).Draw(d.t, "headTerm")), Offset: off}
	} else {
		term = d.drawTerm("truncTerm")
		if rapid.IntRange(0, 9).Draw(d.t, "nilHead") > 0 {
			lo, hi := int64(min(d.m.commit, d.m.head))-2, int64(d.m.head)+2
			off := logpos.Offset(rapid.Int64Range(max(lo, -1), hi).Draw(d.t, "truncOffset"))
			head = &logpos.EntryID{Term: logpos.Term(rapid.Int64Range(-1, 5).Draw(d.t, "headTerm")), Offset: off}
		}
	}
	d.t.Logf("Truncate(%d, %v)", term, head)
	var want error
	switch {
	case d.closed():
		want = ErrClosed
	case head == nil:
		want = ErrInvalidArgument
	case d.stream != nil || d.attached != nil:
		want = ErrConflict
	case d.m.state != StateFenced:
		want = ErrInvalidStatus
	case term != d.m.term:
		want = ErrInvalidTerm
	case head.Offset < d.m.commit, head.Offset > d.m.head:
		want = ErrInvalidArgument
	}
	if want != nil {
		d.reject("Truncate", want, func() error { _, err := d.f.Truncate(term, head); return err })
		return
	}
	got, err := d.f.Truncate(term, head)
	if err != nil {
		d.fatalf("Truncate: %v", err)
	}
	d.m.cutAfter(head.Offset)
	d.m.durable = d.m.head
	d.m.state = StateFollower
	d.note("Truncate succeeded")
	if want := (logpos.EntryID{Term: term, Offset: d.m.head}); got != want {
		d.fatalf("Truncate replied %v, want %v", got, want)
	}
}

func (d *mdlDriver) opAttach() {
	d.t.Logf("attach a stream")
	s := &mdlStream{fakeStream: newFakeStream()}
	st := &mdlStreamState{s: s, res: make(chan error, 1), term: d.m.term, f: d.f, lastAck: logpos.NoOffset}
	f := d.f
	mark := d.rec.count()
	var want error
	switch {
	case d.closed():
		want = ErrClosed
	case d.m.state == StateNotMember:
		want = ErrNotMember
	case d.stream != nil || d.attached != nil:
		want = ErrConflict
	}
	var before mdlObservation
	if want != nil {
		before = d.observe()
	}
	go func() {
		st.res <- f.Replicate(s)
		s.cancel() // what gRPC does when the handler returns
	}()
	// Wait for the attach step, or for Replicate to return.
	for {
		steps, changed := d.rec.since(mark)
		if i := slices.IndexFunc(steps, func(s fsm.Step) bool { return s.Event == "AttachStream" }); i >= 0 {
			if err := steps[i].Err; err != nil && want == nil {
				d.fatalf("attaching a stream: %v", err)
			}
			break
		}
		select {
		case <-changed:
		case err := <-st.res:
			st.res <- err
		}
		if len(st.res) > 0 {
			break
		}
	}
	if want == nil {
		if len(st.res) > 0 {
			d.fatalf("attaching a stream: %v", <-st.res)
		}
		d.stream = st
		d.note("stream attached")
		return
	}
	d.wantErr("attaching a stream", st.wait(d.t), want)
	if diff := mdlDiff(before, d.observe()); diff != "" {
		d.fatalf("a refused stream changed: %s", diff)
	}
}

// send delivers an Append, or reports that the stream ended first.
func (st *mdlStreamState) send(a *replicationpb.Append) bool {
	select {
	case st.s.in <- a:
		return true
	case err := <-st.res:
		st.ended, st.err = true, err
		return false
	}
}

// nextAck waits for the next ack; it fails the test if the stream ends
// first.
func (d *mdlDriver) nextAck(st *mdlStreamState) logpos.Offset {
	d.t.Helper()
	select {
	case a := <-st.s.acks:
		return d.ackDurable(st, a)
	default:
	}
	if st.ended {
		d.fatalf("the stream ended (%v) with an ack missing", st.err)
	}
	select {
	case a := <-st.s.acks:
		return d.ackDurable(st, a)
	case err := <-st.res:
		st.ended, st.err = true, err
		d.fatalf("the stream ended (%v) while an ack was due", err)
	}
	return 0
}

// ackDurable checks that an acknowledged offset is durable (§6.2) and, in
// cumulative mode, that acks never decrease.
func (d *mdlDriver) ackDurable(st *mdlStreamState, a int64) logpos.Offset {
	d.t.Helper()
	if durable := max(d.f.log.LastDurable().Offset, d.m.base.Offset); logpos.Offset(a) > durable {
		d.fatalf("offset %d acknowledged, durable head %d (SPEC §6.2)", a, durable)
	}
	if st.cumulative && logpos.Offset(a) < st.lastAck {
		d.fatalf("cumulative ack %d after %d", a, st.lastAck)
	}
	st.lastAck = max(st.lastAck, logpos.Offset(a))
	st.advPending = false // everything the stream received before was processed
	return logpos.Offset(a)
}

// decide records the ack mode the first Append of a stream chooses.
func (st *mdlStreamState) decide(cumulative bool) {
	if !st.decided {
		st.decided, st.cumulative = true, cumulative
	}
}

// streamFailed: the stream must end with want, having written and
// acknowledged nothing.
func (d *mdlDriver) streamFailed(what string, a *replicationpb.Append, want error) {
	st := d.stream
	// A probe follows the failing Append: a stream that wrongly lives on
	// acknowledges it (or the failing Append), instead of hanging the test.
	probe := mdlMakeEntry(st.term, d.m.head+1, d.nextSeq()).toAppend(st.term, d.m.head+1, logpos.NoOffset, false)
	d.reject(what, want, func() error {
		if st.send(a) && st.send(probe) {
			select {
			case o := <-st.s.acks:
				d.fatalf("%s: the stream lived on and acknowledged %d", what, o)
			case err := <-st.res:
				st.ended, st.err = true, err
			}
		}
		return st.err
	})
	d.stream = nil
	d.resolveAdvert(st)
	if len(st.s.acks) > 0 {
		d.fatalf("%s: acknowledged %d on a failing stream", what, <-st.s.acks)
	}
}

func (d *mdlDriver) opAppend() {
	st := d.stream
	kind := rapid.SampledFrom([]string{"new", "new", "new", "new", "dup", "dup", "gap", "wrongTerm", "advert", "advert", "burst", "burstClose"}).Draw(d.t, "append")
	flag := rapid.Bool().Draw(d.t, "cumulativeFlag")
	if kind == "dup" && d.m.head < 0 {
		kind = "new"
	}
	commit := logpos.Offset(rapid.Int64Range(-1, int64(d.m.head)+3).Draw(d.t, "commitOffset"))
	switch kind {
	case "new", "dup":
		o := d.m.head + 1
		e := mdlMakeEntry(st.term, o, d.nextSeq())
		if kind == "dup" {
			o = logpos.Offset(rapid.Int64Range(0, int64(d.m.head)).Draw(d.t, "dupOffset"))
			if old, ok := d.m.log[o]; ok {
				e = old
			}
		}
		a := e.toAppend(st.term, o, commit, flag)
		if rapid.IntRange(0, 2).Draw(d.t, "withPrevCRC") == 0 {
			crc := rapid.Uint32().Draw(d.t, "prevCRC")
			a.PreviousEntryCrc = &crc
		}
		d.t.Logf("append %s %d commit %d cumulative %v previous crc %v", kind, o, commit, flag, a.PreviousEntryCrc != nil)
		if !st.send(a) {
			d.fatalf("the stream ended (%v) before an append", st.err)
		}
		st.decide(flag)
		want := o
		if kind == "new" {
			d.m.add(o, e, a.PreviousEntryCrc)
		} else if st.cumulative {
			want = d.m.head // the durable head answers a duplicate
		}
		if got := d.nextAck(st); got != want {
			d.fatalf("ack %d for the %s entry %d, want %d", got, kind, o, want)
		}
		d.m.durable = d.m.head
		d.m.advertised = max(d.m.advertised, commit)
		d.m.state = StateFollower
	case "gap":
		o := d.m.head + logpos.Offset(rapid.IntRange(2, 4).Draw(d.t, "gap"))
		d.t.Logf("append gap %d", o)
		d.streamFailed("an append after a gap", mdlMakeEntry(st.term, o, d.nextSeq()).toAppend(st.term, o, commit, flag), ErrGap)
	case "wrongTerm":
		term := logpos.Term(rapid.SampledFrom([]int64{-1, int64(st.term) - 1, int64(st.term) + 1}).Draw(d.t, "appendTerm"))
		a := mdlMakeEntry(st.term, d.m.head+1, d.nextSeq()).toAppend(term, d.m.head+1, commit, flag)
		if rapid.Bool().Draw(d.t, "advertOnly") {
			a.Entry = nil
		}
		d.t.Logf("append of term %d on a stream of term %d", term, st.term)
		d.streamFailed("an append of another term", a, ErrInvalidTerm)
	case "advert":
		d.t.Logf("advertise commit %d", commit)
		if !st.send(&replicationpb.Append{Term: int64(st.term), CommitOffset: int64(commit), CumulativeAcksSupported: flag}) {
			d.fatalf("the stream ended (%v) before an advertisement", st.err)
		}
		st.decide(flag)
		if !st.advPending {
			st.advPending, st.advBefore = true, d.m.advertised
		}
		d.m.advertised = max(d.m.advertised, commit)
		// No ack: the next step's acks would show one. No state change.
	case "burst", "burstClose":
		d.burst(st, flag, commit, kind == "burstClose")
	}
}

// burst sends several Appends without waiting, then collects their acks.
// In per-entry mode it mixes new entries and duplicates and wants exactly
// one ack per entry, in order; in cumulative mode it sends new entries and
// wants increasing acks up to the last.
func (d *mdlDriver) burst(st *mdlStreamState, flag bool, commit logpos.Offset, halfClose bool) {
	st.decide(flag)
	k := rapid.IntRange(2, 8).Draw(d.t, "burstLen")
	d.t.Logf("burst of %d (cumulative %v, half-close %v)", k, st.cumulative, halfClose)
	var sent []logpos.Offset
	for range k {
		o := d.m.head + 1
		e := mdlMakeEntry(st.term, o, d.nextSeq())
		if !st.cumulative && d.m.head >= 0 && rapid.IntRange(0, 3).Draw(d.t, "burstDup") == 0 {
			o = logpos.Offset(rapid.Int64Range(0, int64(d.m.head)).Draw(d.t, "dupOffset"))
		} else {
			d.m.add(o, e, nil)
		}
		if !st.send(e.toAppend(st.term, o, commit, flag)) {
			d.fatalf("the stream ended (%v) during a burst", st.err)
		}
		sent = append(sent, o)
	}
	d.m.advertised = max(d.m.advertised, commit)
	d.m.state = StateFollower
	if halfClose {
		close(st.s.in)
		if err := st.wait(d.t); err != nil {
			d.fatalf("a half-closed stream returned %v", err)
		}
		d.stream = nil
	}
	if st.cumulative {
		prev := logpos.NoOffset
		for prev != d.m.head {
			a := d.nextAck(st)
			if a <= prev || a > d.m.head {
				d.fatalf("cumulative ack %d after %d, head %d", a, prev, d.m.head)
			}
			prev = a
		}
	} else {
		for _, o := range sent {
			if a := d.nextAck(st); a != o {
				d.fatalf("ack %d, want %d (acks %v)", a, o, sent)
			}
		}
	}
	if halfClose && len(st.s.acks) > 0 {
		d.fatalf("extra ack %d after a half-close", <-st.s.acks)
	}
	d.m.durable = d.m.head
}

func (d *mdlDriver) opHalfClose() {
	st := d.stream
	d.t.Logf("half-close")
	close(st.s.in)
	if err := st.wait(d.t); err != nil {
		d.fatalf("a half-closed stream returned %v", err)
	}
	d.stream = nil
	// Every entry was acknowledged already: nothing is due. A stream that
	// delivered no entry (commit advertisements only, or nothing) gets no
	// ack at all (SPEC §2.3; TestBugAckForEmptyStream).
	if len(st.s.acks) > 0 {
		d.fatalf("ack %d with nothing due (mode decided %v, cumulative %v, last ack %d)", <-st.s.acks, st.decided, st.cumulative, st.lastAck)
	}
	if st.s.concurrent.Load() > 0 {
		d.fatalf("acks sent from two goroutines at once")
	}
}

// opDisconnect: the transport fails (the leader went away): the handler
// returns the error, nothing else changes, and the follower stays usable
// (SPEC §2.3).
func (d *mdlDriver) opDisconnect() {
	st := d.stream
	d.t.Logf("the transport fails")
	d.reject("a stream whose transport failed", errAnyError, func() error {
		st.s.cancel()
		return st.wait(d.t)
	})
	d.stream = nil
	d.resolveAdvert(st)
	if len(st.s.acks) > 0 {
		d.fatalf("ack %d with nothing due", <-st.s.acks)
	}
	if errors.Is(st.err, ErrStreamEnded) {
		d.fatalf("a transport failure reported as the follower ending the stream: %v", st.err)
	}
}

// drawSnapshot draws a snapshot, its chunk term and how it is broken.
func (d *mdlDriver) drawSnapshot() (*mdlSnapshot, logpos.Term, string) {
	mangle := rapid.SampledFrom(mdlMangles).Draw(d.t, "mangle")
	term := d.m.term
	if term < 0 {
		term = logpos.Term(rapid.IntRange(0, 3).Draw(d.t, "snapTerm"))
	}
	storeTerm := term + logpos.Term(rapid.SampledFrom([]int{0, 0, 2}).Draw(d.t, "storeTermStep"))
	commit := logpos.Offset(rapid.SampledFrom([]int{2, 5, 9, 14}).Draw(d.t, "snapCommit"))
	chunkTerm := term
	if mangle == mangleWrongTerm {
		chunkTerm = logpos.Term(rapid.SampledFrom([]int64{-3, int64(term) - 1, int64(term) + 1}).Draw(d.t, "chunkTerm"))
		if d.m.term < 0 && chunkTerm >= 0 {
			chunkTerm = -3 // any term >= 0 is acceptable then
		}
	}
	return mdlBuildSnapshot(d.t, term, storeTerm, commit), chunkTerm, mangle
}

// installVerdict is the error SPEC §2.4 wants for an install, and whether
// it is decided when the install attaches (before the transfer).
func (d *mdlDriver) installVerdict(chunkTerm logpos.Term, mangle string) (error, bool) {
	switch {
	case d.closed():
		return ErrClosed, true
	case d.stream != nil || d.attached != nil:
		return ErrConflict, true
	case mangle == mangleEmpty:
		return ErrInvalidArgument, true
	case d.m.term >= 0 && chunkTerm != d.m.term, d.m.term < 0 && chunkTerm < 0:
		return ErrInvalidTerm, true
	case mangle == mangleTransport:
		return errAnyError, false
	case mangle != mangleNone:
		return ErrInvalidArgument, false
	}
	return nil, false
}

func (d *mdlDriver) snapshotStream(sn *mdlSnapshot, chunkTerm logpos.Term, mangle string) *mdlSnapshotStream {
	s := &mdlSnapshotStream{chunks: sn.chunksFor(chunkTerm, mangle, rapid.IntRange(0, 63).Draw(d.t, "mangleVariant"))}
	if mangle == mangleTransport {
		s.err = errTransport
	}
	return s
}

// installed applies a successful install to the model.
func (d *mdlDriver) installed(sn *mdlSnapshot, chunkTerm logpos.Term, got logpos.Offset) {
	if got != sn.commit.Offset {
		d.fatalf("install acknowledged %d, want %d", got, sn.commit.Offset)
	}
	if sn.commit.Offset < d.m.commit {
		// SPEC §2.4 does not refuse a snapshot behind the commit; §6.3
		// says the commit never decreases. The test lets the install win.
		d.commitMayDrop = true
	}
	d.m.term = max(d.m.term, chunkTerm, sn.storeTerm)
	d.m.opts = mdlSnapshotOptions
	d.m.log = map[logpos.Offset]mdlEntry{}
	d.m.base = sn.commit
	d.m.baseKV = maps.Clone(sn.kv)
	d.m.head, d.m.durable, d.m.commit, d.m.advertised, d.m.commitFloor = sn.commit.Offset, sn.commit.Offset, sn.commit.Offset, sn.commit.Offset, sn.commit.Offset
	d.m.state = StateFollower
}

func (d *mdlDriver) opInstall() {
	sn, chunkTerm, mangle := d.drawSnapshot()
	d.t.Logf("install a snapshot at %v of term %d (store term %d), chunk term %d, mangle %q", sn.commit, sn.commit.Term, sn.storeTerm, chunkTerm, mangle)
	want, _ := d.installVerdict(chunkTerm, mangle)
	s := d.snapshotStream(sn, chunkTerm, mangle)
	if want != nil {
		d.reject("InstallSnapshot", want, func() error { _, err := d.f.InstallSnapshot(s); return err })
		return
	}
	got, err := d.f.InstallSnapshot(s)
	if err != nil {
		d.fatalf("InstallSnapshot: %v", err)
	}
	d.installed(sn, chunkTerm, got)
	d.note("install succeeded")
}

// opInstallBegin starts an install and holds it after its first chunk.
func (d *mdlDriver) opInstallBegin() {
	sn, chunkTerm, mangle := d.drawSnapshot()
	if mangle == mangleEmpty {
		mangle = mangleNone
	}
	d.t.Logf("begin installing a snapshot at %v, chunk term %d, mangle %q", sn.commit, chunkTerm, mangle)
	want, atBegin := d.installVerdict(chunkTerm, mangle)
	s := d.snapshotStream(sn, chunkTerm, mangle)
	s.gate = make(chan struct{})
	in := &mdlInstall{sn: sn, chunkTerm: chunkTerm, mangle: mangle, gate: s.gate, res: make(chan mdlInstallResult, 1), f: d.f}
	var before mdlObservation
	if atBegin {
		before = d.observe()
	}
	mark := d.rec.count()
	f := d.f
	go func() {
		off, err := f.InstallSnapshot(s)
		in.res <- mdlInstallResult{off, err}
	}()
	for {
		steps, changed := d.rec.since(mark)
		if slices.ContainsFunc(steps, func(s fsm.Step) bool { return s.Event == "BeginInstall" }) {
			break
		}
		select {
		case <-changed:
		case r := <-in.res:
			in.res <- r
		}
		if len(in.res) > 0 {
			break
		}
	}
	if atBegin {
		in.open()
		r := within(d.t, in.res)
		d.wantErr("InstallSnapshot", r.err, want)
		if diff := mdlDiff(before, d.observe()); diff != "" {
			d.fatalf("a refused install changed: %s", diff)
		}
		return
	}
	if len(in.res) > 0 {
		d.fatalf("InstallSnapshot returned before its transfer: %+v", <-in.res)
	}
	d.installs = append(d.installs, in)
	d.attached = in
}

// opInstallAbandoned: NewTerm runs while an install is held mid-transfer;
// the install then fails with ErrInvalidTerm, whatever else is wrong
// with it, and changes nothing.
func (d *mdlDriver) opInstallAbandoned() {
	n := len(d.installs)
	d.opInstallBegin()
	if len(d.installs) == n {
		return // refused at once
	}
	d.settle()
	d.check()
	d.opNewTerm()
	d.settle()
	d.check()
	for i, in := range d.installs {
		if in.abandoned {
			d.installs = slices.Delete(d.installs, i, i+1)
			d.installs = append(d.installs, in)
			break
		}
	}
	if last := d.installs[len(d.installs)-1]; last.abandoned {
		d.t.Logf("finish the abandoned install at %v (mangle %q)", last.sn.commit, last.mangle)
		d.finishInstall(last)
	}
}

// opInstallFinish lets a held install finish.
func (d *mdlDriver) opInstallFinish() {
	i := rapid.IntRange(0, len(d.installs)-1).Draw(d.t, "install")
	in := d.installs[i]
	d.t.Logf("finish the install at %v (mangle %q, abandoned %v)", in.sn.commit, in.mangle, in.abandoned)
	d.finishInstall(in)
}

func (d *mdlDriver) finishInstall(in *mdlInstall) {
	d.installs = slices.DeleteFunc(d.installs, func(x *mdlInstall) bool { return x == in })
	var want error
	switch in.mangle {
	case mangleNone:
	case mangleTransport:
		want = errAnyError
	default:
		want = ErrInvalidArgument
	}
	if in.abandoned {
		want = ErrInvalidTerm // whatever else is wrong with it
	}
	if in == d.attached {
		d.attached = nil // the model detaches it whatever happens
	}
	if want != nil {
		d.reject("finishing an install", want, func() error {
			in.open()
			return within(d.t, in.res).err
		})
		return
	}
	in.open()
	r := within(d.t, in.res)
	if r.err != nil {
		d.fatalf("InstallSnapshot: %v", r.err)
	}
	d.installed(in.sn, in.chunkTerm, r.off)
	d.note("install held mid-transfer succeeded")
}

func (d *mdlDriver) opStatus() {
	st := d.f.Status()
	d.t.Logf("status: %+v", st)
	if st.State != d.m.state || st.Term != d.m.term {
		d.fatalf("status %+v, model %v term %d", st, d.m.state, d.m.term)
	}
}

func (d *mdlDriver) opDelete() {
	term := d.drawTerm("deleteTerm")
	d.t.Logf("Delete(%d)", term)
	if err := d.newTermRejection(term); err != nil {
		d.reject("Delete", err, func() error { return d.f.Delete(term) })
		return
	}
	saved := d.m.clone()
	if err := d.f.Delete(term); err != nil {
		d.fatalf("Delete(%d): %v", term, err)
	}
	d.endedByControl()
	d.settleInstalls(d.f)
	if _, err := d.cfgMem.Stat(mdlDir); !errors.Is(err, os.ErrNotExist) {
		d.fatalf("the shard directory after Delete: %v", err)
	}
	saved.state = StateFenced
	d.deleted = &saved
	d.m.state = StateClosed
}

func (d *mdlDriver) opClose() {
	d.t.Logf("Close")
	if err := d.f.Close(); err != nil {
		d.fatalf("Close: %v", err)
	}
	d.endedByControl()
	d.settleInstalls(d.f)
	d.m.state = StateClosed
}

// opClosedOp runs an operation on a closed follower: ErrClosed, nothing
// changes.
func (d *mdlDriver) opClosedOp() {
	which := rapid.IntRange(0, 5).Draw(d.t, "closedOp")
	d.t.Logf("operation %d on a closed follower", which)
	d.reject("an operation on a closed follower", ErrClosed, func() error {
		switch which {
		case 0:
			_, err := d.f.NewTerm(d.m.term+1, TermOptions{})
			return err
		case 1:
			_, err := d.f.Truncate(d.m.term, &logpos.EntryID{Offset: d.m.head})
			return err
		case 2:
			s := newFakeStream()
			defer s.cancel()
			return d.f.Replicate(s)
		case 3:
			_, err := d.f.InstallSnapshot(&fakeSnapshotStream{chunks: mdlBuildSnapshot(d.t, 1, 1, 2).chunksFor(max(d.m.term, 0), "", 0)})
			return err
		case 4:
			return d.f.Delete(d.m.term + 1)
		default:
			if err := d.f.Close(); err != nil {
				return err
			}
			return ErrClosed
		}
	})
}

// step draws and runs one operation among those that make sense now.
func (d *mdlDriver) step() {
	var ops []string
	add := func(weight int, name string) {
		for range weight {
			ops = append(ops, name)
		}
	}
	add(1, "reopen")
	add(2, "crash")
	switch {
	case d.closed():
		add(2, "closedOp")
	case d.stream != nil:
		add(50, "append")
		add(2, "halfClose")
		add(1, "disconnect")
		add(3, "newTermRacing")
		for _, op := range []string{"newTerm", "truncate", "attach", "install", "installBegin", "status", "delete", "close"} {
			add(1, op)
		}
	default:
		if d.m.state != StateNotMember && d.attached == nil {
			add(8, "attach")
		} else {
			add(2, "attach")
		}
		add(4, "newTerm")
		add(4, "truncate")
		add(2, "install")
		add(2, "installBegin")
		add(1, "installAbandoned")
		add(1, "status")
		add(1, "delete")
		add(1, "close")
	}
	if len(d.installs) > 0 {
		add(3, "installFinish")
	}
	op := rapid.SampledFrom(ops).Draw(d.t, "op")
	d.note(fmt.Sprintf("op %s in %v", op, d.m.state))
	switch op {
	case "reopen":
		d.opReopen()
	case "crash":
		d.opCrash()
	case "closedOp":
		d.opClosedOp()
	case "newTerm":
		d.opNewTerm()
	case "newTermRacing":
		d.opNewTermRacing()
	case "truncate":
		d.opTruncate()
	case "attach":
		d.opAttach()
	case "append":
		d.opAppend()
	case "halfClose":
		d.opHalfClose()
	case "disconnect":
		d.opDisconnect()
	case "install":
		d.opInstall()
	case "installBegin":
		d.opInstallBegin()
	case "installFinish":
		d.opInstallFinish()
	case "installAbandoned":
		d.opInstallAbandoned()
	case "status":
		d.opStatus()
	case "delete":
		d.opDelete()
	case "close":
		d.opClose()
	}
	d.settle()
	d.check()
}

// shutdown ends everything the run started.
func (d *mdlDriver) shutdown() {
	if d.f != nil {
		_ = d.f.Close()
	}
	if d.stream != nil {
		d.stream.wait(d.t)
	}
	for _, in := range d.installs {
		in.open()
		within(d.t, in.res)
	}
}

// mdlRapidDefault sets a rapid flag for the duration of the test, unless
// the command line or the environment set it.
func mdlRapidDefault(t *testing.T, name, env, value string) {
	userSet := os.Getenv(env) != ""
	flag.Visit(func(f *flag.Flag) { userSet = userSet || f.Name == name })
	if userSet {
		return
	}
	old := flag.Lookup(name).Value.String()
	if err := flag.Set(name, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = flag.Set(name, old) })
}

// mdlChecks is how many random sequences TestModel runs unless
// -rapid.checks says otherwise: enough to cover every operation in every
// state many times, within a few seconds.
const mdlChecks = 40

// TestModel runs random sequences of every follower operation against the
// reference model and checks the invariants of SPEC §6 after each step.
func TestModel(t *testing.T) {
	mdlRapidDefault(t, "rapid.checks", "RAPID_CHECKS", fmt.Sprint(mdlChecks))
	mdlRapidDefault(t, "rapid.nofailfile", "RAPID_NOFAILFILE", "true")
	counts := map[string]int{}
	var mu sync.Mutex
	rapid.Check(t, func(rt *rapid.T) {
		d := &mdlDriver{t: rt, m: newMdlModel(), termFloor: logpos.NoTerm, lastCommit: logpos.NoOffset}
		d.cfgMem = mdlNewMem(rt)
		defer d.shutdown()
		if err := d.open(); err != nil {
			rt.Fatalf("Open: %v", err)
		}
		d.check()
		d.stats = map[string]int{}
		n := rapid.IntRange(1, 80).Draw(rt, "steps")
		for range n {
			d.step()
		}
		mu.Lock()
		counts["steps"] += n
		for k, v := range d.stats {
			counts[k] += v
		}
		mu.Unlock()
	})
	keys := slices.Collect(maps.Keys(counts))
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("%s: %d", k, counts[k])
	}
}
