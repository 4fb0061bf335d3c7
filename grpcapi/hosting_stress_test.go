package grpcapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/stacktest"
	"github.com/tablefsm/tablefsm/logpos"
)

// unexpected collects, from concurrent calls, the errors a hosting race
// would cause: Unavailable (a double open, a half-removed directory),
// Unknown or Internal. Refusals of the protocol are expected.
type unexpected struct {
	mu   sync.Mutex
	errs []string
}

func (u *unexpected) report(op string, s leader.Shard, err error) {
	switch status.Code(err) {
	case codes.Unavailable, codes.Unknown, codes.Internal:
		u.mu.Lock()
		u.errs = append(u.errs, fmt.Sprintf("%s %v: %v", op, s, err))
		u.mu.Unlock()
	}
}

// check fails t with every error collected.
func (u *unexpected) check(t *testing.T) {
	t.Helper()
	for _, e := range u.errs {
		t.Error(e)
	}
}

// TestHostingStress: random calls on a few shards at once. No call is
// ever Unavailable or Unknown (no double open, no half-removed
// directory), and at the end what GetStatus says matches the disk.
func TestHostingStress(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	shards := []leader.Shard{{Namespace: "st", Shard: 0}, {Namespace: "st", Shard: 1}}
	var wg sync.WaitGroup
	var bad unexpected
	report := bad.report
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			ctx := context.Background()
			for range 150 {
				s := shards[r.IntN(len(shards))]
				switch r.IntN(6) {
				case 0, 1:
					_, err := c.NewTerm(ctx, s, logpos.Term(r.IntN(3)+1), nil)
					report("NewTerm", s, err)
				case 2:
					report("DeleteShard", s, c.Delete(ctx, s, 5))
				case 3:
					_, err := c.Status(ctx, s)
					report("GetStatus", s, err)
				case 4:
					_, err := sendChunks(t, c, s)
					report("SendSnapshot", s, err)
				case 5:
					_, err := c.Truncate(ctx, s, 3, logpos.EntryID{Term: 3, Offset: -1})
					report("Truncate", s, err)
				}
			}
		})
	}
	wg.Wait()
	bad.check(t)
	nsUsed := false
	for _, s := range shards {
		_, err := c.Status(ctxT(t), s)
		_, serr := os.Stat(filepath.Join(n.dir, s.Namespace, strconv.FormatInt(s.Shard, 10)))
		if err == nil {
			nsUsed = true
			if serr != nil {
				t.Errorf("%v is hosted but has no directory: %v", s, serr)
			}
		} else {
			wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
			if !os.IsNotExist(serr) {
				t.Errorf("%v is not hosted but its directory is there: %v", s, serr)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(n.dir, "st")); (err == nil) != nsUsed {
		t.Errorf("namespace directory: %v, with a hosted shard: %v", err, nsUsed)
	}
}

// TestNewTermRacingDeleteShard: a NewTerm at the same time as the
// DeleteShard of a shard holding data acts either on the old follower
// before the delete (then the delete removes it) or on a fresh one after
// it (no data): never on the deleted data.
func TestNewTermRacingDeleteShard(t *testing.T) {
	n := startNode(t, "")
	c := n.conn
	ctx := ctxT(t)
	for i := range int64(20) {
		s := leader.Shard{Namespace: "race" + strconv.FormatInt(i%3, 10), Shard: i}
		fence(t, c, s, 1)
		replicate(t, c, s, 1, 0, 5, true)
		var wg sync.WaitGroup
		var head logpos.EntryID
		var nerr, derr error
		wg.Go(func() { head, nerr = c.NewTerm(ctx, s, 2, nil) })
		wg.Go(func() { derr = c.Delete(ctx, s, 2) })
		wg.Wait()
		if nerr != nil || derr != nil {
			t.Fatalf("%v: NewTerm %v, DeleteShard %v", s, nerr, derr)
		}
		st, err := c.Status(ctx, s)
		switch head {
		case logpos.EntryID{Term: 1, Offset: 4}: // before the delete
			wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
		case logpos.NoEntry: // after it
			if err != nil || st.GetTerm() != 2 || st.GetHeadOffset() != -1 || st.GetCommitOffset() != -1 {
				t.Fatalf("%v after a fresh NewTerm: %v, %v", s, st, err)
			}
			if err := c.Delete(ctx, s, 2); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%v: NewTerm's head %v", s, head)
		}
	}
}

// TestShutdownRacingOpensAndDeletes: calls that open, drop and delete
// shards while the node shuts down. The shutdown succeeds, the data
// directory is released, every NewTerm that succeeded is kept (unless
// deleted after), and nothing is left on disk of shards without a term.
func TestShutdownRacingOpensAndDeletes(t *testing.T) {
	for round := range 4 {
		dir := t.TempDir()
		n := startNode(t, dir)
		c := n.conn
		var wg sync.WaitGroup
		var mu sync.Mutex
		fenced := map[leader.Shard]bool{}
		start := make(chan struct{})
		var ops sync.WaitGroup
		ops.Add(30 + round*10)
		var opsOnce sync.Mutex
		left := 30 + round*10
		progress := func() {
			opsOnce.Lock()
			defer opsOnce.Unlock()
			if left > 0 {
				left--
				ops.Done()
			}
		}
		for g := range 12 {
			wg.Go(func() {
				<-start
				ctx := context.Background()
				for i := range int64(20) {
					s := leader.Shard{Namespace: fmt.Sprintf("ns%d", (g+int(i))%4), Shard: int64(g)*100 + i}
					var err error
					switch (g + int(i)) % 3 {
					case 0:
						_, err = c.NewTerm(ctx, s, 1, nil)
						if err == nil {
							mu.Lock()
							fenced[s] = true
							mu.Unlock()
						}
					case 1:
						var stream replicationgrpc.OxiaLogReplication_SendSnapshotClient
						stream, err = c.Replication.SendSnapshot(leader.StreamContext(ctx, s))
						if err == nil {
							_, err = stream.CloseAndRecv()
						}
					case 2:
						_, err = c.NewTerm(ctx, s, 1, nil)
						if err == nil {
							err = c.Delete(ctx, s, 1)
							if err == nil {
								progress()
								continue
							}
							mu.Lock()
							fenced[s] = true // the delete may or may not have happened
							mu.Unlock()
						}
					}
					progress()
					if err != nil && status.Code(err) != codes.InvalidArgument && status.Code(err) != codes.Unavailable {
						t.Errorf("round %d: %v: %v", round, s, err)
					}
				}
			})
		}
		close(start)
		ops.Wait()
		n.shutdown()
		wg.Wait()
		n.stop()
		again := startNode(t, dir)
		for _, ns := range []string{"ns0", "ns1", "ns2", "ns3"} {
			names, err := os.ReadDir(filepath.Join(dir, ns))
			if err != nil {
				continue
			}
			if len(names) == 0 {
				t.Errorf("round %d: namespace %s left empty", round, ns)
			}
			for _, e := range names {
				id, err := strconv.ParseInt(e.Name(), 10, 64)
				if err != nil {
					t.Errorf("round %d: %s/%s left", round, ns, e.Name())
					continue
				}
				s := leader.Shard{Namespace: ns, Shard: id}
				if _, err := again.conn.Status(ctxT(t), s); err != nil {
					t.Errorf("round %d: %v left on disk without a term: %v", round, s, err)
				}
				mu.Lock()
				if !fenced[s] {
					t.Errorf("round %d: %v on disk, but no NewTerm of it succeeded", round, s)
				}
				mu.Unlock()
			}
		}
		mu.Lock()
		for s := range fenced {
			if (s.Shard%100+s.Shard/100)%3 == 2 {
				continue
			}
			if _, err := again.conn.Status(ctxT(t), s); err != nil {
				t.Errorf("round %d: %v fenced before the shutdown: %v", round, s, err)
			}
		}
		mu.Unlock()
		again.stop()
	}
}

// failingFS fails, while armed, every operation on a path containing sub.
func failingFS(sub string) (vfs.FS, *atomic.Bool) {
	armed := new(atomic.Bool)
	return errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && strings.Contains(op.Path, sub) {
			return errorfs.ErrInjected
		}
		return nil
	})), armed
}

// TestConcurrentFailedFirstOpens: many first calls on a new shard whose
// follower cannot open: every one fails cleanly, nothing is left on disk,
// and once the disk heals the next NewTerm opens the shard.
func TestConcurrentFailedFirstOpens(t *testing.T) {
	fs, armed := failingFS(string(filepath.Separator) + filepath.Join("ff", "3", "store"))
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	c := n.conn
	s := leader.Shard{Namespace: "ff", Shard: 3}
	armed.Store(true)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 24 {
		wg.Go(func() {
			var err error
			switch i % 3 {
			case 0:
				_, err = c.NewTerm(context.Background(), s, 1, nil)
				if err == nil {
					err = fmt.Errorf("NewTerm succeeded on a disk that fails")
				} else if status.Code(err) != codes.Unavailable {
					err = fmt.Errorf("NewTerm: %w", err)
				} else {
					err = nil
				}
			case 1:
				_, err = c.Status(context.Background(), s)
				if c := status.Code(err); c == codes.Unavailable || c == codes.Aborted {
					err = nil
				}
			case 2:
				var stream replicationgrpc.OxiaLogReplication_SendSnapshotClient
				stream, err = c.Replication.SendSnapshot(leader.StreamContext(context.Background(), s))
				if err == nil {
					_, err = stream.CloseAndRecv()
				}
				if c := status.Code(err); c == codes.Unavailable || c == codes.InvalidArgument {
					err = nil
				}
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := listTree(t, n.dir); !slices.Equal(got, []string{".lock"}) {
		t.Errorf("left after failed opens: %q", got)
	}
	armed.Store(false)
	fence(t, c, s, 1)
	aWantStatus(t, c, s, 1, replicationpb.ServingStatus_FOLLOWER, -1, -1)
}

// TestFailedOpenOfAnEmptyDirectory: a shard directory a crash left empty,
// whose follower cannot open: the calls are Unavailable, and once the
// disk heals GetStatus finds nothing stored and drops it.
func TestFailedOpenOfAnEmptyDirectory(t *testing.T) {
	fs, armed := failingFS(string(filepath.Separator) + filepath.Join("fe", "1", "store"))
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	c := n.conn
	s := leader.Shard{Namespace: "fe", Shard: 1}
	emptyShardDir(t, n, s)
	armed.Store(true)
	_, err := c.Status(ctxT(t), s)
	wantCode(t, err, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "")
	err = c.Delete(ctxT(t), s, 1)
	t.Logf("DeleteShard of an empty directory that does not open: %v", err)
	armed.Store(false)
	t.Logf("tree: %q", listTree(t, n.dir))
	_, err = c.Status(ctxT(t), s)
	wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	if got := listTree(t, n.dir); !slices.Equal(got, []string{".lock"}) {
		t.Errorf("left: %q", got)
	}
}

// TestHostingStressAcrossRestarts: as TestHostingStress, on shards that
// are on disk but not open (the node restarts between rounds), with
// streams too.
func TestHostingStressAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	shards := []leader.Shard{{Namespace: "sr", Shard: 0}, {Namespace: "sr", Shard: 1}, {Namespace: "sq", Shard: 0}}
	for round := range 6 {
		n := startNode(t, dir)
		c := n.conn
		if round == 0 {
			for _, s := range shards {
				fence(t, c, s, 1)
			}
		}
		var wg sync.WaitGroup
		var bad unexpected
		report := bad.report
		for g := range 10 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(g), uint64(round)))
				ctx := context.Background()
				for range 40 {
					s := shards[r.IntN(len(shards))]
					switch r.IntN(8) {
					case 0, 1:
						_, err := c.NewTerm(ctx, s, logpos.Term(r.IntN(3)+1), nil)
						report("NewTerm", s, err)
					case 2:
						report("DeleteShard", s, c.Delete(ctx, s, 5))
					case 3, 4:
						_, err := c.Status(ctx, s)
						report("GetStatus", s, err)
					case 5:
						stream, err := c.Replication.SendSnapshot(leader.StreamContext(ctx, s))
						if err == nil {
							_, err = stream.CloseAndRecv()
						}
						report("SendSnapshot", s, err)
					case 6:
						_, err := c.Truncate(ctx, s, 3, logpos.EntryID{Term: 3, Offset: -1})
						report("Truncate", s, err)
					case 7:
						sctx, cancel := context.WithCancel(ctx)
						stream, err := c.Replication.Replicate(leader.StreamContext(sctx, s))
						if err == nil {
							_ = stream.CloseSend()
							_, err = aDrain(stream)
						}
						cancel()
						report("Replicate", s, err)
					}
				}
			})
		}
		wg.Wait()
		bad.check(t)
		for _, s := range shards {
			_, err := c.Status(ctxT(t), s)
			_, serr := os.Stat(filepath.Join(dir, s.Namespace, strconv.FormatInt(s.Shard, 10)))
			if err == nil && serr != nil {
				t.Errorf("%v is hosted but has no directory: %v", s, serr)
			}
			if err != nil && !os.IsNotExist(serr) {
				t.Errorf("%v is not hosted (%v) but its directory is there: %v", s, err, serr)
			}
		}
		n.stop()
		if t.Failed() {
			return
		}
	}
}

// TestPanicTidyingAfterAFailedOpen: a new shard's follower fails to open
// (an I/O error) while another call waits for it, and removing the
// namespace's directory afterwards panics (a file system bug). The call
// that opened answers Unknown, as any call that panicked, with the file
// system's panic logged; the one that waited gets the open's failure,
// Unavailable. (The recovery of a panic while opening ran again once
// opening was over: it wrote the shard's error while the waiter read it,
// and closed the shard's ready channel again, which panicked in turn.)
func TestPanicTidyingAfterAFailedOpen(t *testing.T) {
	var armed atomic.Bool
	var once sync.Once
	blocked, gate := make(chan struct{}), make(chan struct{})
	sep := string(filepath.Separator)
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !armed.Load() {
			return nil
		}
		if strings.Contains(op.Path, sep+filepath.Join("pt", "0", "store")) {
			once.Do(func() {
				close(blocked)
				<-gate
			})
			return errorfs.ErrInjected
		}
		if op.Kind == errorfs.OpRemove && strings.HasSuffix(op.Path, sep+"pt") {
			panic("file system bug")
		}
		return nil
	}))
	logs := &logBuffer{}
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.FS = fs
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	s := leader.Shard{Namespace: "pt", Shard: 0}
	armed.Store(true)
	opener, waiter := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := n.conn.NewTerm(ctxT(t), s, 1, nil)
		opener <- err
	}()
	<-blocked
	go func() {
		_, err := n.conn.NewTerm(ctxT(t), s, 1, nil)
		waiter <- err
	}()
	stacktest.WaitBlockedIn(t, "chan receive", "grpcapi.(*Server).lookup", nil)
	close(gate)
	wantCode(t, <-opener, codes.Unknown, "", "")
	wantCode(t, <-waiter, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "")
	armed.Store(false)
	recs := logs.recordsWithMessage(t, "a call panicked")
	if len(recs) != 1 || recs[0]["panic"] != "file system bug" {
		t.Errorf("logged panics: %v, want one, the file system's", recs)
	}
	fence(t, n.conn, s, 1)
}

// TestPanicOpeningANewShardLeavesNothing: a new shard whose follower's
// open panics (a file system bug, once its directory is made) is one that
// did not open: like one whose open failed, it leaves nothing on disk.
func TestPanicOpeningANewShardLeavesNothing(t *testing.T) {
	var armed atomic.Bool
	sep := string(filepath.Separator)
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.Contains(op.Path, sep+filepath.Join("po", "0", "store")) && armed.CompareAndSwap(true, false) {
			panic("file system bug")
		}
		return nil
	}))
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = fs })
	s := leader.Shard{Namespace: "po", Shard: 0}
	armed.Store(true)
	_, err := n.conn.NewTerm(ctxT(t), s, 1, nil)
	wantCode(t, err, codes.Unknown, "", "")
	if got := listTree(t, n.dir); !slices.Equal(got, []string{".lock"}) {
		t.Errorf("left after an open that panicked: %q", got)
	}
	fence(t, n.conn, s, 1)
}
