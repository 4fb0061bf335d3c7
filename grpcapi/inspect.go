package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

// Get implements inspectpb.InspectServer: it reads keys of the shard's
// key-value state, after waiting for an offset to be applied if asked. A
// Get that a DeleteShard cut short (the follower it waited on closed)
// runs again on the shard as the delete left it, as a Get after the
// delete would: not hosted any more, Aborted/NODE_IS_NOT_MEMBER, as
// GetStatus says then.
func (s *Server) Get(ctx context.Context, req *inspectpb.GetRequest) (*inspectpb.GetResponse, error) {
	key, err := unaryKey(req.GetNamespace(), req.GetShard())
	if err != nil {
		return nil, s.status(err)
	}
	var resp *inspectpb.GetResponse
	err = s.onShard(key, false, func(sh *shard) (err error) {
		resp, err = s.get(ctx, key, sh, req)
		return err
	})
	if err != nil {
		return nil, s.status(err)
	}
	return resp, nil
}

// get serves a Get on the follower of sh.
func (s *Server) get(ctx context.Context, key shardKey, sh *shard, req *inspectpb.GetRequest) (*inspectpb.GetResponse, error) {
	// A follower with no term is not a member, as GetStatus says: its
	// state is none of the node's.
	if sh.f.Status().State == follower.StateNotMember {
		return nil, fmt.Errorf("%w: shard %s has no term", follower.ErrNotMember, key)
	}
	if req.MinCommitOffset != nil {
		if err := sh.f.WaitApplied(ctx, logpos.Offset(req.GetMinCommitOffset())); err != nil {
			return nil, err
		}
	}
	resp := &inspectpb.GetResponse{
		Values:       make([]*inspectpb.Value, len(req.GetKeys())),
		CommitOffset: int64(sh.f.Status().Commit),
	}
	for i, k := range req.GetKeys() {
		v, err := sh.f.Get(k)
		switch {
		case errors.Is(err, store.ErrNotFound):
			resp.Values[i] = &inspectpb.Value{}
		case err != nil:
			return nil, err
		default:
			resp.Values[i] = &inspectpb.Value{Found: true, Value: v}
		}
	}
	return resp, nil
}

// Steps implements inspectpb.InspectServer: the shard's recent lifecycle
// steps.
func (s *Server) Steps(_ context.Context, req *inspectpb.StepsRequest) (*inspectpb.StepsResponse, error) {
	key, err := unaryKey(req.GetNamespace(), req.GetShard())
	if err != nil {
		return nil, s.status(err)
	}
	var log *stepLog
	sh, err := s.lookup(key, false)
	switch {
	case err == nil:
		log = sh.steps
		s.release(sh)
	case errors.Is(err, errNotHosted):
		// A deleted shard's last steps stay readable until it is
		// opened again.
		if log = s.retiredSteps(key); log == nil {
			return nil, s.status(err)
		}
	default:
		return nil, s.status(err)
	}
	steps, truncated := log.after(req.GetAfter())
	return &inspectpb.StepsResponse{Steps: steps, Truncated: truncated}, nil
}

// stepLog keeps the most recent lifecycle steps of one shard.
type stepLog struct {
	mu   sync.Mutex
	ring []*inspectpb.Step
	next uint64 // the sequence number of the next step; the first is 1
}

func newStepLog(capacity int) *stepLog {
	return &stepLog{ring: make([]*inspectpb.Step, capacity), next: 1}
}

func (l *stepLog) add(st fsm.Step) {
	rec := &inspectpb.Step{From: st.From, Event: st.Event, To: st.To}
	if st.Err != nil {
		rec.Error = st.Err.Error()
	}
	l.mu.Lock()
	rec.Seq = l.next
	l.ring[l.next%uint64(len(l.ring))] = rec
	l.next++
	l.mu.Unlock()
}

// after returns the kept steps with a sequence number above seq, and
// whether steps after seq were dropped.
func (l *stepLog) after(seq uint64) ([]*inspectpb.Step, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq >= l.next-1 {
		return nil, false // nothing after seq (which may be beyond the last)
	}
	first := seq + 1
	oldest := uint64(1)
	if n := uint64(len(l.ring)); l.next > n {
		oldest = l.next - n
	}
	truncated := first < oldest
	first = max(first, oldest)
	var out []*inspectpb.Step
	for i := first; i < l.next; i++ {
		out = append(out, l.ring[i%uint64(len(l.ring))])
	}
	return out, truncated
}

// stepObserver is the observer of a shard's follower: it records the
// lifecycle steps for Inspect and counts them for the metrics (the
// follower logs them itself).
type stepObserver struct {
	steps  *stepLog
	counts *stepCounts
	// next are the observers the server's options asked for, called in
	// turn after this one.
	next []fsm.Observer
}

func (o *stepObserver) Observe(st fsm.Step) {
	defer func() {
		for _, n := range o.next {
			n.Observe(st)
		}
	}()
	o.steps.add(st)
	var refusal *fsm.Refusal
	if !errors.As(st.Err, &refusal) {
		refusal = nil
	}
	o.counts.add(st, refusal)
}
