package grpcapi_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
)

// TestOptionsObserverSeesSteps: an observer given in the follower template
// sees every shard's lifecycle steps, besides the server's own.
func TestOptionsObserverSeesSteps(t *testing.T) {
	var mu sync.Mutex
	var steps []fsm.Step
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.Follower.Observer = fsm.ObserverFunc(func(s fsm.Step) {
			mu.Lock()
			steps = append(steps, s)
			mu.Unlock()
		})
	})
	fence(t, n.conn, leader.Shard{Namespace: "ns", Shard: 3}, 1)
	mu.Lock()
	defer mu.Unlock()
	var events []string
	for _, s := range steps {
		events = append(events, s.Event+":"+s.From+"->"+s.To)
	}
	want := []string{"NewTerm:NotMember->Fenced", "Truncate:Fenced->Follower"}
	if len(events) != len(want) || events[0] != want[0] || events[1] != want[1] {
		t.Fatalf("observed %v, want %v", events, want)
	}
}

// TestShardObserver: the observer ShardObserver returns for a shard sees
// that shard's steps only, after the template's observer, and is asked
// for again when the shard is opened again after a restart.
func TestShardObserver(t *testing.T) {
	var mu sync.Mutex
	var seen []string // "namespace/shard event:from->to", in order
	record := func(who string) fsm.Observer {
		return fsm.ObserverFunc(func(s fsm.Step) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, who+" "+s.Event+":"+s.From+"->"+s.To)
		})
	}
	opts := func(o *grpcapi.Options) {
		o.Follower.Observer = record("template")
		o.ShardObserver = func(namespace string, shard int64) fsm.Observer {
			if shard == 9 {
				return nil // not observed
			}
			return record(fmt.Sprintf("%s/%d", namespace, shard))
		}
	}
	dir := t.TempDir()
	n := startNode(t, dir, opts)
	fence(t, n.conn, leader.Shard{Namespace: "a", Shard: 1}, 1)
	if _, err := n.conn.NewTerm(ctxT(t), leader.Shard{Namespace: "b", Shard: 9}, 1, nil); err != nil {
		t.Fatal(err)
	}
	n.stop()
	n = startNode(t, dir, opts)
	if _, err := n.conn.Status(ctxT(t), leader.Shard{Namespace: "a", Shard: 1}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The node's stop closes the shards at once: their Close steps come
	// in any order.
	if !slices.Contains(seen, "a/1 Close:Follower->Closed") {
		t.Errorf("a/1's observer did not see it close: %v", seen)
	}
	seen = slices.DeleteFunc(seen, func(s string) bool { return strings.Contains(s, " Close:") })
	want := []string{
		"template NewTerm:NotMember->Fenced", "a/1 NewTerm:NotMember->Fenced",
		"template Truncate:Fenced->Follower", "a/1 Truncate:Fenced->Follower",
		"template NewTerm:NotMember->Fenced", // shard b/9, not observed on its own
		"template Restore:NotMember->Fenced", "a/1 Restore:NotMember->Fenced",
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("observed\n  %s\nwant\n  %s", strings.Join(seen, "\n  "), strings.Join(want, "\n  "))
	}
}
