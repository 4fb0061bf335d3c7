package grpcapi_test

import (
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
