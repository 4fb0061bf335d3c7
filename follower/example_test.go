package follower_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
	"github.com/tablefsm/tablefsm/store/kvpb"
)

// memStream is a leader's replication stream held in memory, standing in
// for a gRPC server stream: Recv hands out the leader's Appends, then
// io.EOF (the leader half-closed the stream); Send records the acks. It
// never blocks. A stream whose Recv waits for the leader must also return
// once the Replicate call has returned (a gRPC stream does, its context
// ending): NewTerm, Delete and Close wait for the stream's receive loop.
type memStream struct {
	appends []*replicationpb.Append

	mu   sync.Mutex // Send runs on another goroutine than Recv
	acks []int64
}

func (s *memStream) Context() context.Context { return context.Background() }

func (s *memStream) Recv() (*replicationpb.Append, error) {
	if len(s.appends) == 0 {
		return nil, io.EOF
	}
	a := s.appends[0]
	s.appends = s.appends[1:]
	return a, nil
}

func (s *memStream) Send(ack *replicationpb.Ack) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acks = append(s.acks, ack.Offset)
	return nil
}

// put is an entry value for the default state machine, store.KV: a
// kvpb.WriteBatch that sets key to value.
func put(key, value string) []byte {
	b, err := proto.Marshal(&kvpb.WriteBatch{Operations: []*kvpb.Operation{
		{Op: &kvpb.Operation_Put{Put: &kvpb.Put{Key: []byte(key), Value: []byte(value)}}},
	}})
	if err != nil {
		panic(err)
	}
	return b
}

// Example fences a follower, truncates it, replicates three entries into
// it, reads the applied state and closes it.
func Example() {
	dir, err := os.MkdirTemp("", "follower-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	f, err := follower.Open(follower.Config{Namespace: "default", Shard: 7, Dir: filepath.Join(dir, "default", "7")})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	// A coordinator fences the follower at term 1. It answers with its
	// head: the last entry it holds durably.
	head, err := f.NewTerm(1, follower.TermOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("fenced, head", head)

	// The leader of term 1 keeps the follower's log up to that head.
	head, err = f.Truncate(1, &head)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("truncated, head", head)

	// Three entries, then an Append with no entry that advertises offset 2
	// as committed. Without cumulative_acks_supported, every entry is
	// acknowledged on its own, once it is durable.
	s := &memStream{appends: []*replicationpb.Append{
		{Term: 1, Entry: &replicationpb.LogEntry{Term: 1, Offset: 0, Value: put("color", "red")}, CommitOffset: -1},
		{Term: 1, Entry: &replicationpb.LogEntry{Term: 1, Offset: 1, Value: put("size", "XL")}, CommitOffset: -1},
		{Term: 1, Entry: &replicationpb.LogEntry{Term: 1, Offset: 2, Value: put("color", "blue")}, CommitOffset: -1},
		{Term: 1, CommitOffset: 2},
	}}
	if err := f.Replicate(s); err != nil {
		log.Fatal(err)
	}
	fmt.Println("acks", s.acks)

	// Committed entries are applied in the background.
	if err := f.WaitApplied(context.Background(), 2); err != nil {
		log.Fatal(err)
	}
	color, err := f.Get([]byte("color"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("color=%s\n", color)
	fmt.Printf("%+v\n", f.Status())

	st := f.Stats()
	fmt.Println("appended", st.EntriesAppended, "acks", st.AcksSent, "applied", st.Applied, "lag", st.Lag())

	// A term is never accepted twice in reverse.
	_, err = f.NewTerm(0, follower.TermOptions{})
	fmt.Println("stale term refused:", errors.Is(err, follower.ErrInvalidTerm))

	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// fenced, head {-1,-1}
	// truncated, head {1,-1}
	// acks [0 1 2]
	// color=blue
	// {Term:1 State:Follower Head:2 Commit:2}
	// appended 3 acks 3 applied 3 lag 0
	// stale term refused: true
}

// ExampleConfig_observer prints every step of a follower's lifecycle
// machine, refusals included. Reopening a follower that has a term
// restores it as Fenced.
func ExampleConfig_observer() {
	dir, err := os.MkdirTemp("", "follower-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cfg := follower.Config{
		Dir: dir,
		Observer: fsm.ObserverFunc(func(s fsm.Step) {
			if s.Err != nil {
				fmt.Printf("%s: %s refused: %v\n", s.From, s.Event, s.Err)
				return
			}
			fmt.Printf("%s --%s--> %s\n", s.From, s.Event, s.To)
		}),
	}
	f, err := follower.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	_, _ = f.NewTerm(2, follower.TermOptions{})
	_, _ = f.NewTerm(1, follower.TermOptions{})
	_ = f.Close()

	f, err = follower.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	_ = f.Close()
	// Output:
	// NotMember --NewTerm--> Fenced
	// Fenced: NewTerm refused: lifecycle: NewTerm refused in Fenced (guard TermNotBehind failed): follower: invalid term
	// Fenced --Close--> Closed
	// NotMember --Restore--> Fenced
	// Fenced --Close--> Closed
}

// Counter is a state machine of its own: an entry's value names a key, and
// applying the entry adds one to the decimal count stored under that key.
type Counter struct{}

func (Counter) Apply(e logpos.Entry, w *store.Writer) error {
	n := 0
	v, err := w.Get(e.Value) // the state before this entry
	switch {
	case err == nil:
		if n, err = strconv.Atoi(string(v)); err != nil {
			return err
		}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	return w.Set(e.Value, strconv.AppendInt(nil, int64(n+1), 10))
}

// ExampleConfig_stateMachine plugs Counter into a follower in place of
// the default key-value state machine.
func ExampleConfig_stateMachine() {
	dir, err := os.MkdirTemp("", "follower-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	f, err := follower.Open(follower.Config{Dir: dir, StateMachine: Counter{}})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	head, err := f.NewTerm(1, follower.TermOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := f.Truncate(1, &head); err != nil {
		log.Fatal(err)
	}
	s := &memStream{}
	for i, page := range []string{"/home", "/about", "/home"} {
		s.appends = append(s.appends, &replicationpb.Append{
			Term:  1,
			Entry: &replicationpb.LogEntry{Term: 1, Offset: int64(i), Value: []byte(page)},
			// With one replica, what it acknowledged is committed.
			CommitOffset: int64(i) - 1,
		})
	}
	s.appends = append(s.appends, &replicationpb.Append{Term: 1, CommitOffset: 2})
	if err := f.Replicate(s); err != nil {
		log.Fatal(err)
	}
	if err := f.WaitApplied(context.Background(), 2); err != nil {
		log.Fatal(err)
	}
	for _, page := range []string{"/home", "/about"} {
		n, err := f.Get([]byte(page))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %s\n", page, n)
	}
	// Output:
	// /home 2
	// /about 1
}

// snapshotStream is a SendSnapshot call held in memory: it reads the
// chunks out of a store snapshot one at a time, marked with the leader's
// term, then returns io.EOF.
type snapshotStream struct {
	sn   *store.Snapshot
	term logpos.Term
}

func (s snapshotStream) Context() context.Context { return context.Background() }

func (s snapshotStream) Recv() (*replicationpb.SnapshotChunk, error) {
	c, err := s.sn.Next() // io.EOF after the last chunk
	if err != nil {
		return nil, err
	}
	return &replicationpb.SnapshotChunk{
		Term: int64(s.term), Name: c.Name, Content: c.Content,
		ChunkIndex: c.Index, ChunkCount: c.Count,
	}, nil
}

// ExampleFollower_InstallSnapshot copies a follower's state into a new
// follower that was never fenced: the way a leader brings back a replica
// that lost its data.
func ExampleFollower_InstallSnapshot() {
	dir, err := os.MkdirTemp("", "follower-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	a, err := follower.Open(follower.Config{Dir: filepath.Join(dir, "a")})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	if _, err := a.NewTerm(3, follower.TermOptions{}); err != nil {
		log.Fatal(err)
	}
	s := &memStream{appends: []*replicationpb.Append{
		{Term: 3, Entry: &replicationpb.LogEntry{Term: 3, Offset: 0, Value: put("color", "green")}, CommitOffset: -1},
		{Term: 3, CommitOffset: 0},
	}}
	if err := a.Replicate(s); err != nil {
		log.Fatal(err)
	}
	if err := a.WaitApplied(context.Background(), 0); err != nil {
		log.Fatal(err)
	}

	b, err := follower.Open(follower.Config{Dir: filepath.Join(dir, "b")})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	sn, err := a.Snapshot()
	if err != nil {
		log.Fatal(err)
	}
	defer sn.Close()
	commit, err := b.InstallSnapshot(snapshotStream{sn: sn, term: 3})
	if err != nil {
		log.Fatal(err)
	}
	color, err := b.Get([]byte("color"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("installed up to %d: %+v color=%s\n", commit, b.Status(), color)
	// Output:
	// installed up to 0: {Term:3 State:Follower Head:0 Commit:0} color=green
}
