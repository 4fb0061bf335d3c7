package follower

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/wal"
)

// leader drives a follower the way a leader does: fence at a new term,
// truncate to the follower's head, stream entries until the stream ends,
// and start over. It records every offset acknowledged, with the term of
// the entry written there.
type leader struct {
	f     *Follower
	terms *atomic.Int64 // the highest term handed out, shared with chaos

	mu    sync.Mutex
	acked map[logpos.Offset]logpos.Term
	// progress is closed and replaced at every ack.
	progress chan struct{}
}

func (l *leader) nextTerm() logpos.Term { return logpos.Term(l.terms.Add(1)) }

// run leads until stop is closed or the follower closes.
func (l *leader) run(t *testing.T, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		term := l.nextTerm()
		head, err := l.f.NewTerm(term, TermOptions{})
		if errors.Is(err, ErrClosed) {
			return
		}
		if err != nil {
			continue // a higher term got there first
		}
		if _, err := l.f.Truncate(term, &head); err != nil {
			continue // chaos fenced again, or a stream attached
		}
		l.stream(t, term, head.Offset, stop)
	}
}

func (l *leader) stream(t *testing.T, term logpos.Term, head logpos.Offset, stop <-chan struct{}) {
	s := newFakeStream()
	res := make(chan error, 1)
	go func() {
		res <- l.f.Replicate(s)
		s.cancel()
	}()
	sent := []logpos.Offset{}
	next := head + 1
	in := s.in
	for {
		select {
		case in <- &replicationpb.Append{Term: int64(term), CommitOffset: int64(next) - 8,
			Entry: &replicationpb.LogEntry{Term: int64(term), Offset: int64(next), Value: kvPut("k", "v")}}:
			sent = append(sent, next)
			next++
		case o := <-s.acks:
			l.ack(t, term, sent, o)
			sent = sent[1:]
		case err := <-res:
			for len(s.acks) > 0 {
				o := <-s.acks
				l.ack(t, term, sent, o)
				sent = sent[1:]
			}
			// A stream attached after another fence captured the newer
			// term: this leader's appends are then of an old term.
			if err == nil || errors.Is(err, ErrStreamEnded) || errors.Is(err, ErrConflict) ||
				errors.Is(err, ErrClosed) || errors.Is(err, ErrInvalidTerm) {
				return
			}
			t.Errorf("stream of term %d: %v", term, err)
			return
		case <-stop:
			close(s.in)
			in, stop = nil, nil // keep draining acks until the result
		}
	}
}

func (l *leader) ack(t *testing.T, term logpos.Term, sent []logpos.Offset, o int64) {
	if len(sent) == 0 || logpos.Offset(o) != sent[0] {
		t.Errorf("ack %d, want the next offset sent of %v", o, sent)
		return
	}
	l.mu.Lock()
	l.acked[logpos.Offset(o)] = term
	close(l.progress)
	l.progress = make(chan struct{})
	l.mu.Unlock()
}

// TestConcurrentControlAndBusyStream races NewTerm, Status, stream and
// install attempts against a leader streaming as fast as it can, then
// Close or Delete. Afterwards every acknowledged entry is in the log, the
// term never went down, at most one stream was attached at a time, and no
// goroutine is left (TestMain checks).
func TestConcurrentControlAndBusyStream(t *testing.T) {
	for _, end := range []string{"close", "delete"} {
		t.Run(end, func(t *testing.T) {
			dir := t.TempDir()
			// At every attach (the observer runs under the lifecycle lock),
			// every stream attached before has stopped syncing and acking.
			var f *Follower
			var streams []*replication
			f, err := Open(Config{Dir: dir, SegmentSize: 64 << 10, TrimEvery: 64,
				Observer: fsm.ObserverFunc(func(s fsm.Step) {
					if s.Event != "AttachStream" || s.Err != nil {
						return
					}
					for _, r := range streams {
						select {
						case <-r.syncDone:
						default:
							t.Errorf("a stream attached while another one is still live")
						}
					}
					streams = append(streams, f.stream)
				})})
			if err != nil {
				t.Fatal(err)
			}
			terms := &atomic.Int64{}
			l := &leader{f: f, terms: terms, acked: map[logpos.Offset]logpos.Term{}, progress: make(chan struct{})}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				l.run(t, stop)
			}()

			// Status never blocks and the term never goes down.
			wg.Add(1)
			go func() {
				defer wg.Done()
				last := logpos.NoTerm
				for {
					select {
					case <-stop:
						return
					default:
					}
					st := f.Status()
					if st.Term < last {
						t.Errorf("term went from %d to %d", last, st.Term)
					}
					last = st.Term
				}
			}()

			// Chaos, between bursts of the leader's progress: fence again,
			// attach a second stream, install a snapshot.
			env := &scriptEnv{t: t}
			for i := 0; i < 12; i++ {
				l.waitAcked(l.count()+25, nil)
				switch i % 3 {
				case 0:
					_, _ = f.NewTerm(logpos.Term(terms.Add(1)), TermOptions{})
				case 1:
					// Conflicts, or ends when the leader fences or stops.
					s := newFakeStream()
					wg.Add(1)
					go func() {
						defer wg.Done()
						done := make(chan struct{})
						go func() {
							select {
							case <-stop:
								close(s.in)
							case <-done:
							}
						}()
						_ = f.Replicate(s)
						close(done)
						s.cancel()
					}()
				case 2:
					_, _ = f.InstallSnapshot(env.snapshotStream(args{"term": "0", "chunk-term": "-1"}))
				}
			}
			close(stop)
			wg.Wait()
			// End while the last stream may still be attached.
			if end == "close" {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := f.Delete(logpos.Term(terms.Load())); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.NewTerm(logpos.Term(terms.Add(1)), TermOptions{}); !errors.Is(err, ErrClosed) {
				t.Fatalf("NewTerm after %s: %v", end, err)
			}
			if end == "delete" {
				return
			}
			if len(streams) < 2 {
				t.Fatalf("%d streams attached", len(streams))
			}
			l.checkDurable(t, dir)
		})
	}
}

func (l *leader) count() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.acked))
}

// waitAcked waits until n offsets are acknowledged, or stop closes. The
// acknowledgements come from the leader's goroutine: waiting on them is
// waiting on the follower's progress.
func (l *leader) waitAcked(n int64, stop <-chan struct{}) {
	for {
		l.mu.Lock()
		count, ch := int64(len(l.acked)), l.progress
		l.mu.Unlock()
		if count >= n {
			return
		}
		select {
		case <-ch:
		case <-stop:
			return
		}
	}
}

// checkDurable reopens the follower's directory and reads its log: every
// acknowledged offset holds an entry of the term it was acknowledged in.
func (l *leader) checkDurable(t *testing.T, dir string) {
	t.Helper()
	f, err := Open(Config{Dir: dir, SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := f.log.NewReader(max(f.log.FirstOffset(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inLog := map[logpos.Offset]logpos.Term{}
	for {
		e, err := r.Next()
		if errors.Is(err, wal.ErrCaughtUp) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		inLog[e.Offset] = e.Term
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for o, term := range l.acked {
		if o < f.log.FirstOffset() {
			continue // trimmed: applied and durable in the store
		}
		if got, ok := inLog[o]; !ok || got != term {
			t.Errorf("acknowledged offset %d of term %d: in the log %v (term %d)", o, term, ok, got)
		}
	}
	if st := f.Status(); st.State != StateFenced {
		t.Errorf("reopened in %v", st.State)
	}
}
