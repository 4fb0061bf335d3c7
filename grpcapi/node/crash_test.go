package node_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

func crashKey(o logpos.Offset) []byte { return fmt.Appendf(nil, "k%08d", o) }
func crashVal(o logpos.Offset) []byte { return fmt.Appendf(nil, "v%d", o) }

// seededRand returns a random source seeded from the clock, and its
// seed, logged so that a failure can be replayed.
func seededRand(t *testing.T) (uint64, *rand.Rand) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return seed, rand.New(rand.NewPCG(seed, seed>>32))
}

// TestCrash kills a followerd process with SIGKILL at random moments —
// while entries stream, while NewTerm runs, right after it starts — over
// and over, restarting it on the same data each time. After every
// restart: the node answers; its term never went back from the last one
// NewTerm confirmed; it comes back Fenced with a head at or beyond the
// last acknowledged offset; and once a leader advertises the commit,
// every acknowledged entry is applied and readable (so the log was
// contiguous up to it).
func TestCrash(t *testing.T) {
	_, rng := seededRand(t)
	iterations := 10
	if testing.Short() {
		iterations = 4
	}
	dir := t.TempDir()
	s := leader.Shard{Namespace: "crash", Shard: 7}
	var (
		confirmedTerm = logpos.NoTerm   // the last term a NewTerm confirmed
		lastAck       = logpos.NoOffset // the highest offset ever acknowledged
		term          = logpos.Term(0)
	)
	logs := &syncBuffer{}
	for i := 0; i <= iterations; i++ {
		p := startChild(t, dir, logs)
		c := dial(t, p.Addr)
		ctx := ctxT(t)

		if i > 0 {
			st, err := c.Status(ctx, s)
			if err != nil {
				t.Fatalf("iteration %d: the restarted node: %v\nlogs:\n%s", i, err, logs)
			}
			if logpos.Term(st.GetTerm()) < confirmedTerm {
				t.Fatalf("iteration %d: term %d went back from %d", i, st.GetTerm(), confirmedTerm)
			}
			if st.GetStatus() != replicationpb.ServingStatus_FENCED {
				t.Fatalf("iteration %d: restarted %v, want FENCED", i, st.GetStatus())
			}
			if logpos.Offset(st.GetHeadOffset()) < lastAck {
				t.Fatalf("iteration %d: head %d below the last acknowledged offset %d", i, st.GetHeadOffset(), lastAck)
			}
			term = max(term, logpos.Term(st.GetTerm()))
		}

		// A new leader: fence, keep the follower's log, advertise it as
		// committed, and read every acknowledged entry back.
		term++
		head, err := c.NewTerm(ctx, s, term, nil)
		if err != nil {
			t.Fatalf("iteration %d: NewTerm(%d): %v", i, term, err)
		}
		confirmedTerm = term
		if head.Offset < lastAck {
			t.Fatalf("iteration %d: NewTerm head %v below the last ack %d", i, head, lastAck)
		}
		if _, err := c.Truncate(ctx, s, term, head); err != nil {
			t.Fatalf("iteration %d: Truncate: %v", i, err)
		}
		if _, err := c.Replicate(ctx, leader.Run{Shard: s, Term: term, First: head.Offset + 1, Commit: head.Offset, Cumulative: true}); err != nil {
			t.Fatalf("iteration %d: advertising commit %d: %v", i, head.Offset, err)
		}
		if lastAck >= 0 {
			keys := make([][]byte, lastAck+1)
			for o := range keys {
				keys[o] = crashKey(logpos.Offset(o))
			}
			values, _, err := c.Get(ctx, s, lastAck, keys...)
			if err != nil {
				t.Fatalf("iteration %d: reading offsets 0..%d: %v", i, lastAck, err)
			}
			for o, v := range values {
				if !v.GetFound() || string(v.GetValue()) != string(crashVal(logpos.Offset(o))) {
					t.Fatalf("iteration %d: acknowledged entry %d reads %q (found %v)", i, o, v.GetValue(), v.GetFound())
				}
			}
		}
		if i == iterations {
			if got := p.Stop(); got != 0 {
				t.Fatalf("final graceful stop: status %d", got)
			}
			break
		}

		// Stream until killed.
		var once sync.Once
		kill := func() { once.Do(func() { p.Signal(syscall.SIGKILL) }) }
		var acked atomic.Int64
		acked.Store(int64(lastAck))
		cumulative := rng.IntN(2) == 0
		window := 1 + rng.IntN(256)
		var killAt logpos.Offset
		switch mode := rng.IntN(6); mode {
		case 0: // right away, as the stream starts
			killAt = head.Offset
			kill()
		case 1: // while a NewTerm runs
			killAt = -1
			go kill()
			if _, err := c.NewTerm(ctx, s, term+1, nil); err == nil {
				confirmedTerm = term + 1
				term++
			}
		default: // after some acks
			killAt = head.Offset + 1 + logpos.Offset(rng.IntN(3000))
		}
		res, err := c.Replicate(ctx, leader.Run{
			Shard: s, Term: term, First: head.Offset + 1, Count: 4000, Window: window,
			Cumulative: cumulative, Commit: head.Offset,
			Value: func(o logpos.Offset, buf []byte) []byte {
				return leader.AppendPut(buf, crashKey(o), crashVal(o))
			},
			OnAck: func(o logpos.Offset) {
				acked.Store(int64(o))
				if o >= killAt {
					kill()
				}
			},
		})
		kill()
		p.Wait()
		lastAck = max(lastAck, logpos.Offset(acked.Load()))
		t.Logf("iteration %d: term %d, window %d, cumulative %v, kill at %d: %d acked, last ack %d (%v)", i, term, window, cumulative, killAt, res.Acked, lastAck, err)
		_ = c.Close()
	}
}
