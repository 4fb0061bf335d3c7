package wal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"go.uber.org/goleak"

	"github.com/tablefsm/tablefsm/logpos"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// entry returns a deterministic entry for offset o: the value encodes the
// offset and a generation so that rewritten offsets are told apart.
func entry(o logpos.Offset, gen int) logpos.Entry {
	return logpos.Entry{
		Term:      logpos.Term(1 + gen),
		Offset:    o,
		Value:     fmt.Appendf(nil, "value-%d-gen-%d-%s", o, gen, pad[:((int(o)%17)+17)%17]),
		Timestamp: uint64(1_700_000_000_000 + o),
	}
}

const pad = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

func memOpts(fs vfs.FS) Options {
	return Options{FS: fs, SegmentSize: 512}
}

func mustOpen(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func mustAppend(t testing.TB, l *Log, es ...logpos.Entry) {
	t.Helper()
	for _, e := range es {
		if err := l.AppendAsync(e); err != nil {
			t.Fatalf("AppendAsync(%d): %v", e.Offset, err)
		}
	}
}

func mustSync(t testing.TB, l *Log) logpos.Offset {
	t.Helper()
	o, err := l.Sync(context.Background())
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return o
}

func entries(from, to logpos.Offset, gen int) []logpos.Entry {
	var es []logpos.Entry
	for o := from; o <= to; o++ {
		es = append(es, entry(o, gen))
	}
	return es
}

// readAll reads every durable entry from `from` with a fresh reader,
// copying values.
func readAll(t testing.TB, l *Log, from logpos.Offset) []logpos.Entry {
	t.Helper()
	es, err := tryReadAll(l, from)
	if err != nil {
		t.Fatalf("reading from %d: %v", from, err)
	}
	return es
}

func tryReadAll(l *Log, from logpos.Offset) ([]logpos.Entry, error) {
	r, err := l.NewReader(from)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var es []logpos.Entry
	for {
		e, err := r.Next()
		if errors.Is(err, ErrCaughtUp) {
			return es, nil
		}
		if err != nil {
			return es, err
		}
		e.Value = append([]byte(nil), e.Value...)
		es = append(es, e)
	}
}

func equalEntries(a, b []logpos.Entry) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d entries, want %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Term != b[i].Term || a[i].Offset != b[i].Offset || a[i].Timestamp != b[i].Timestamp || string(a[i].Value) != string(b[i].Value) {
			return fmt.Errorf("entry %d: got %+v, want %+v", i, a[i], b[i])
		}
	}
	return nil
}

func checkEntries(t testing.TB, got, want []logpos.Entry) {
	t.Helper()
	if err := equalEntries(got, want); err != nil {
		t.Fatal(err)
	}
}

// chainOf computes the CRC chain of es from seed, independently of the log.
func chainOf(seed uint32, es []logpos.Entry) uint32 {
	for _, e := range es {
		seed = chainCRC(seed, EncodeEntry(nil, e))
	}
	return seed
}

// gate holds, once armed, the first file-system operation match accepts:
// at is closed when the operation reaches it, which then waits until
// proceed is closed.
type gate struct {
	armed       atomic.Bool
	match       func(errorfs.Op) bool
	at, proceed chan struct{}
}

func newGate(match func(errorfs.Op) bool) *gate {
	return &gate{match: match, at: make(chan struct{}), proceed: make(chan struct{})}
}

// preparingGate holds the worker when it creates the next segment.
func preparingGate() *gate {
	return newGate(func(op errorfs.Op) bool {
		return op.Kind == errorfs.OpCreate && strings.Contains(op.Path, "next-")
	})
}

// gatedMem is an in-memory file system whose operations pass the gates.
func gatedMem(gates ...*gate) vfs.FS { return gated(vfs.NewMem(), gates...) }

// gated is fs whose operations pass the gates before reaching it.
func gated(fs vfs.FS, gates ...*gate) vfs.FS {
	return errorfs.Wrap(fs, errorfs.InjectorFunc(func(op errorfs.Op) error {
		for _, g := range gates {
			if g.match(op) && g.armed.CompareAndSwap(true, false) {
				close(g.at)
				<-g.proceed
			}
		}
		return nil
	}))
}

// faults fails with errorfs.ErrInjected, while armed, every file-system
// operation match accepts, and counts the operations it failed.
type faults struct {
	armed    atomic.Bool
	match    func(errorfs.Op) bool
	injected atomic.Int64
}

// wrap returns fs with the faults injected.
func (f *faults) wrap(fs vfs.FS) vfs.FS {
	return errorfs.Wrap(fs, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if f.armed.Load() && f.match(op) {
			f.injected.Add(1)
			return errorfs.ErrInjected
		}
		return nil
	}))
}

// drainKick takes the worker's pending kick, if any. Called while the
// worker is held at a gate (inside a round): nothing else takes kicks.
func drainKick(l *Log) {
	select {
	case <-l.kick:
	default:
	}
}
