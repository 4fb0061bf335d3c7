package store

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// counter is a state machine that reads: each entry increments a counter
// key, so it must see the writes of the entries before it.
// At failAt it writes, then fails (or panics, with panics set).
type readingCounter struct {
	failAt logpos.Offset
	panics bool
}

var errReadingCounter = errors.New("reading counter: refused")

func (c readingCounter) Apply(e logpos.Entry, w *Writer) error {
	if e.Offset == c.failAt {
		_ = w.Set([]byte("partial"), []byte("written"))
		if c.panics {
			panic("reading counter: panicked")
		}
		return errReadingCounter
	}
	v, err := w.Get([]byte("n"))
	n := 0
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	default:
		n, _ = strconv.Atoi(string(v))
	}
	return w.Set([]byte("n"), []byte(strconv.Itoa(n+1)))
}

func entries(from, to logpos.Offset) []logpos.Entry {
	var es []logpos.Entry
	for o := from; o <= to; o++ {
		es = append(es, logpos.Entry{Term: 1, Offset: o})
	}
	return es
}

func TestApplyBatchReadingStateMachineSeesEveryEntry(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{StateMachine: readingCounter{failAt: -1}})
	if n, err := s.ApplyBatch(entries(0, 9)); n != 10 || err != nil {
		t.Fatalf("ApplyBatch = %d, %v", n, err)
	}
	if v, err := s.Get([]byte("n")); err != nil || string(v) != "10" {
		t.Fatalf("counter = %q, %v; want 10", v, err)
	}
	if c := s.Commit(); c.Offset != 9 {
		t.Fatalf("commit %v", c)
	}
}

func TestApplyBatchStopsAtTheFailingEntry(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{StateMachine: readingCounter{failAt: 4}})
	n, err := s.ApplyBatch(entries(0, 9))
	if n != 4 || !errors.Is(err, errReadingCounter) {
		t.Fatalf("ApplyBatch = %d, %v; want 4 applied and the failure", n, err)
	}
	if c := s.Commit(); c.Offset != 3 {
		t.Fatalf("commit %v, want 3", c)
	}
	if _, err := s.Get([]byte("partial")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the failing entry's write is there: %v", err)
	}
	if v, _ := s.Get([]byte("n")); string(v) != "4" {
		t.Fatalf("counter %q, want 4", v)
	}
}

// A panic of the state machine is the entry's failure: nothing of it is
// written, the entries before it are, and the store stays usable.
func TestApplyBatchStateMachinePanics(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{StateMachine: readingCounter{failAt: 4, panics: true}})
	for _, want := range []int{4, 0} { // and again: the store did not fail
		n, err := s.ApplyBatch(entries(s.Commit().Offset+1, 9))
		if n != want || !errors.Is(err, errStateMachinePanic) || !strings.Contains(err.Error(), "reading counter: panicked") {
			t.Fatalf("ApplyBatch = %d, %v; want the panic as an error", n, err)
		}
		if c := s.Commit(); c.Offset != 3 {
			t.Fatalf("commit %v, want 3", c)
		}
		if _, err := s.Get([]byte("partial")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the panicking entry's write is there: %v", err)
		}
	}
	if _, err := s.Sync(); err != nil {
		t.Fatalf("Sync after a panic: %v", err)
	}
}

func TestApplyBatchKV(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	var batch []logpos.Entry
	for o := logpos.Offset(0); o < 100; o++ {
		batch = append(batch, kvEntry(t, 2, o, put("k"+strconv.Itoa(int(o)), "v")))
	}
	batch[50].Value = []byte{0xff, 0xff} // not a WriteBatch
	n, err := s.ApplyBatch(batch)
	if n != 50 || !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("ApplyBatch = %d, %v", n, err)
	}
	if _, err := s.Get([]byte("k49")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get([]byte("k50")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("k50: %v", err)
	}
	// Out of order in the middle of a batch.
	tail := batch[51:]
	if n, err := s.ApplyBatch(tail); n != 0 || !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("a batch that does not follow the commit: %d, %v", n, err)
	}
	fixed := append([]logpos.Entry{kvEntry(t, 2, 50, put("k50", "v"))}, batch[51:60]...)
	fixed = append(fixed, batch[70])
	if n, err := s.ApplyBatch(fixed); n != 10 || !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("a gap inside a batch: %d, %v", n, err)
	}
	if c := s.Commit(); c.Offset != 59 {
		t.Fatalf("commit %v, want 59", c)
	}
}

// fatalAt reads the store in every entry (so that the store applies one
// entry per batch) and, at offset at, meets a fatal Pebble error, as a
// read of a database whose Pebble gave up does.
type fatalAt struct{ at logpos.Offset }

func (f fatalAt) Apply(e logpos.Entry, w *Writer) error {
	if e.Offset == f.at {
		panic(pebbleFatal{msg: "pebble gave up"})
	}
	if _, err := w.Get([]byte("n")); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return w.Set([]byte("n"), []byte{byte(e.Offset)})
}

// TestApplyBatchCountAfterAFatalError: the entries of the batches
// committed before a fatal Pebble error are counted as applied, as they
// are.
func TestApplyBatchCountAfterAFatalError(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{StateMachine: fatalAt{at: 4}})
	if n, err := s.ApplyBatch(entries(0, 1)); n != 2 || err != nil {
		t.Fatalf("ApplyBatch(0..1) = %d, %v", n, err)
	}
	n, err := s.ApplyBatch(entries(2, 4))
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("ApplyBatch(2..4): %v, want ErrFailed", err)
	}
	if c := s.Commit(); n != 2 || c.Offset != 3 {
		t.Fatalf("ApplyBatch(2..4) = %d with the commit at %v, want 2 (entries 2 and 3 applied)", n, c)
	}
}

// TestApplyAfterTheLargestOffset: a store whose commit is at the largest
// offset takes no entry after it (the offset after it does not exist),
// rather than writing a commit id that Open refuses.
func TestApplyAfterTheLargestOffset(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: fs})
	if err := s.db.h.Set(keyCommit, encodeEntryID(logpos.EntryID{Term: 1, Offset: math.MaxInt64}), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, "/shard", Options{FS: fs})
	if err := s.Apply(kvEntry(t, 1, math.MinInt64, put("k", "v"))); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("Apply of offset %d after commit %d: %v, want ErrOutOfOrder", int64(math.MinInt64), int64(math.MaxInt64), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, "/shard", Options{FS: fs}).Close()
}
