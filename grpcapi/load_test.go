package grpcapi_test

import (
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestLoad runs many streams on many shards of one node at once, in
// three equal rounds: nothing acknowledged is lost, and the heap does not
// grow with the entries streamed (memory follows the windows in flight).
// A leak grows the heap every round; background work (a Pebble flush)
// may make one round jump, so the smaller of the two growths is bounded.
func TestLoad(t *testing.T) {
	const (
		namespaces     = 2
		shardsPerNS    = 8
		entriesPerRun  = 1000
		window         = 128
		heapGrowthMax  = 2 << 20 // a leak of ~130 B per entry streamed exceeds it
		rounds         = 3
		shardsInFlight = namespaces * shardsPerNS
	)
	if testing.Short() {
		t.Skip("load test")
	}
	n := startNode(t, "")
	var shards []leader.Shard
	for _, ns := range []string{"load-a", "load-b"}[:namespaces] {
		for i := range int64(shardsPerNS) {
			shards = append(shards, leader.Shard{Namespace: ns, Shard: i})
		}
	}
	for _, s := range shards {
		fence(t, n.conn, s, 1)
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var after []uint64
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, shardsInFlight)
		for i, s := range shards {
			wg.Go(func() {
				first := logpos.Offset(round * entriesPerRun)
				res, err := n.conn.Replicate(ctxT(t), leader.Run{
					Shard: s, Term: 1, First: first, Count: entriesPerRun, Window: window,
					Cumulative: (i+round)%2 == 0, Commit: first - 1, Value: kvValue,
				})
				if err == nil && res.LastAck != first+entriesPerRun-1 {
					t.Errorf("%v: last ack %d", s, res.LastAck)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range shards {
			checkApplied(t, n.conn, s, logpos.Offset((round+1)*entriesPerRun-1))
		}
		after = append(after, heap())
		t.Logf("round %d: %d streams × %d entries; heap %d KiB, RSS %s", round, len(shards), entriesPerRun, after[round]>>10, rss())
	}
	growth := min(int64(after[1])-int64(after[0]), int64(after[2])-int64(after[1]))
	if growth > heapGrowthMax {
		t.Fatalf("the heap grew by at least %d KiB a round (bound %d KiB): %v", growth>>10, heapGrowthMax>>10, after)
	}
}

// rss reports this process's resident set size, for the log (Pebble's
// memtables and caches live outside the Go heap).
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
