package grpcapi_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestNamespaceCharacterBounds: the last letter and digit of each range
// of ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$ are valid, first and after: a
// valid namespace of a shard not hosted is not a member, on a unary call
// and on a stream alike.
func TestNamespaceCharacterBounds(t *testing.T) {
	n := startNode(t, "")
	for _, ns := range []string{"Z", "z", "9", "A", "a", "0", "aZ", "az", "a9", "Z_z.9-A"} {
		_, err := n.conn.Coordination.GetStatus(ctxT(t), &replicationpb.GetStatusRequest{Namespace: ns, Shard: 1})
		wantCode(t, err, codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
		ctx := metadata.NewOutgoingContext(ctxT(t), metadata.Pairs("namespace", ns, "shard-id", "1"))
		repl, err := n.conn.Replication.Replicate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, recvEnd(repl), codes.Aborted, grpcapi.ReasonNodeIsNotMember, "")
	}
}

// TestMetricsStateSeriesAndActionFailures: the state gauge has a series
// for each of the four lifecycle states (1 for the current one), and an
// action that fails (a Truncate whose log write fails) is counted under
// action_failures_total with its state and event, not as a transition
// (the fence's own Truncate stays the only one counted).
func TestMetricsStateSeriesAndActionFailures(t *testing.T) {
	var failWAL atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failWAL.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.Contains(op.Path, string(filepath.Separator)+"wal") {
			return errorfs.ErrInjected
		}
		return nil
	})
	n := startNode(t, "", func(o *grpcapi.Options) { o.FS = errorfs.Wrap(vfs.Default, inj) })
	url := serveMetrics(t, n.srv)
	c := n.conn
	s := leader.Shard{Namespace: "failures", Shard: 1}
	fencedWithEntries(t, c, s)
	on := func(labels ...string) []string { return append([]string{"namespace=failures", "shard=1"}, labels...) }
	m := scrapeMetrics(t, url)
	for state, want := range map[string]float64{"NotMember": 0, "Fenced": 1, "Follower": 0, "Closed": 0} {
		m.want(t, want, "tablefsm_follower_state", on("state="+state)...)
	}
	truncated := m.value(t, "tablefsm_follower_transitions_total", on("from=Fenced", "event=Truncate", "to=Follower")...)
	if len(m["tablefsm_follower_action_failures_total"].GetMetric()) != 0 {
		t.Fatalf("action failures before any: %v", m["tablefsm_follower_action_failures_total"])
	}

	failWAL.Store(true)
	_, err := c.Truncate(ctxT(t), s, 2, logpos.EntryID{Term: 1, Offset: 1})
	wantCode(t, err, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "")
	failWAL.Store(false)
	m = scrapeMetrics(t, url)
	m.want(t, 1, "tablefsm_follower_action_failures_total", on("state=Fenced", "event=Truncate")...)
	m.want(t, 1, "tablefsm_follower_state", on("state=Fenced")...)
	m.want(t, truncated, "tablefsm_follower_transitions_total", on("from=Fenced", "event=Truncate", "to=Follower")...)
}

// TestDataDirectoryUnderAnotherNameInThisProcess: a data directory a
// server of this process holds is refused to a second server of the
// process that names it through a symbolic link (file locks of one
// process do not exclude each other); once the first is shut down, the
// link's server takes it.
func TestDataDirectoryUnderAnotherNameInThisProcess(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, dir)
	if srv, err := grpcapi.New(grpcapi.Options{DataDir: link}); err == nil {
		_ = srv.Shutdown(ctxT(t))
		t.Fatal("a second server of this process took the data directory through a symbolic link")
	} else if !strings.Contains(err.Error(), "another node of this process") {
		t.Fatalf("the second server: %v, want it refused as held by another node of this process", err)
	}
	n.stop()
	m := startNode(t, link)
	fence(t, m.conn, leader.Shard{Namespace: "linked", Shard: 1}, 1)
}

// TestStartKeepsWhatIsNotANamespace: the sweep at start removes what
// deletions left in namespace directories only: an empty directory
// whose name is no namespace (a volume's lost+found) stays, as does
// a "<shard>.deleted" in it.
func TestStartKeepsWhatIsNotANamespace(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"lost+found", filepath.Join("not-a+namespace", "7.deleted")} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, dir)
	n.stop()
	for _, p := range []string{"lost+found", filepath.Join("not-a+namespace", "7.deleted")} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s after a start: %v", p, err)
		}
	}
}

// TestShardsGaugeCountsOpenFollowersOnly: tablefsm_node_shards counts
// the shards whose follower is open: one still opening (its shard
// observer not returned yet) is not counted, nor does a scrape wait for
// it.
func TestShardsGaugeCountsOpenFollowersOnly(t *testing.T) {
	entered, proceed := make(chan struct{}), make(chan struct{})
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.ShardObserver = func(namespace string, _ int64) fsm.Observer {
			if namespace == "slow" {
				close(entered)
				<-proceed
			}
			return nil
		}
	})
	url := serveMetrics(t, n.srv)
	fence(t, n.conn, leader.Shard{Namespace: "open", Shard: 1}, 1)
	done := make(chan error, 1)
	go func() {
		_, err := n.conn.NewTerm(ctxT(t), leader.Shard{Namespace: "slow", Shard: 1}, 1, nil)
		done <- err
	}()
	<-entered
	scrapeMetrics(t, url).want(t, 1, "tablefsm_node_shards")
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	scrapeMetrics(t, url).want(t, 2, "tablefsm_node_shards")
}

// TestDeleteShardOfAnUnknownShardOpensNoFollower: DeleteShard of a shard
// the node does not host succeeds without opening a follower for it (the
// shard observer, asked at each opening, is never asked).
func TestDeleteShardOfAnUnknownShardOpensNoFollower(t *testing.T) {
	var opened atomic.Int32
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.ShardObserver = func(string, int64) fsm.Observer {
			opened.Add(1)
			return nil
		}
	})
	if _, err := n.conn.Coordination.DeleteShard(ctxT(t), &replicationpb.DeleteShardRequest{Namespace: "gone", Shard: 1, Term: 3}); err != nil {
		t.Fatal(err)
	}
	if got := opened.Load(); got != 0 {
		t.Fatalf("DeleteShard of an unknown shard opened %d followers", got)
	}
}
