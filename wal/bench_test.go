package wal

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// Benchmarks run on real files in a temporary directory (real fsyncs).
// Compare the sub-benchmarks of one run with each other, not with other
// machines: see docs/wal.md.

const benchValueSize = 100

func benchEntry(o logpos.Offset, value []byte) logpos.Entry {
	return logpos.Entry{Term: 1, Offset: o, Value: value, Timestamp: 1_700_000_000_000}
}

// BenchmarkAppend: AppendAsync alone (no fsync), steady state.
func BenchmarkAppend(b *testing.B) {
	l, err := Open(b.TempDir(), Options{MustKeep: logpos.NoOffset})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	value := make([]byte, benchValueSize)
	// Warm up the buffers.
	o := logpos.Offset(0)
	for ; o < 20_000; o++ {
		if err := l.AppendAsync(benchEntry(o, value)); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(benchValueSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := l.AppendAsync(benchEntry(o, value)); err != nil {
			b.Fatal(err)
		}
		o++
	}
}

// pipeline runs a producer that keeps at most window entries appended but
// not durable, and a syncer goroutine that makes them durable in coalesced
// rounds, as the follower's receive and sync loops do.
type pipeline struct {
	durable atomic.Int64
	mu      sync.Mutex
	cond    *sync.Cond
	kick    chan struct{}
	done    chan struct{}
	err     error
}

func newPipeline() *pipeline {
	p := &pipeline{kick: make(chan struct{}, 1), done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.durable.Store(-1)
	return p
}

// syncLoop calls sync whenever kicked until stop, publishing the durable
// offset it returns.
func (p *pipeline) syncLoop(stop <-chan struct{}, sync func() (int64, error)) {
	defer close(p.done)
	for {
		select {
		case <-stop:
			return
		case <-p.kick:
		}
		d, err := sync()
		p.mu.Lock()
		if err != nil && p.err == nil {
			p.err = err
		}
		p.durable.Store(d)
		p.cond.Broadcast()
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (p *pipeline) kickSync() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// waitBelow blocks until at most window entries after durable are pending.
func (p *pipeline) waitBelow(next int64, window int64) error {
	if next-p.durable.Load() <= window {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for next-p.durable.Load() > window && p.err == nil {
		p.kickSync()
		p.cond.Wait()
	}
	return p.err
}

const benchWindow = 1024

// BenchmarkGroupCommit: pipelined AppendAsync + coalesced Sync of 100 B
// entries with 1024 in flight, against the same pipeline written directly
// with write(2) + fdatasync(2) on one file (the budget: the log reaches at
// least 60 % of the raw loop's throughput), and with a tailing reader
// following the writer (the budget: it costs at most 20 %).
func BenchmarkGroupCommit(b *testing.B) {
	b.Run("raw-fdatasync", benchRawGroupCommit)
	b.Run("wal", func(b *testing.B) { benchWALGroupCommit(b, false) })
	b.Run("wal+tailing-reader", func(b *testing.B) { benchWALGroupCommit(b, true) })
}

func benchWALGroupCommit(b *testing.B, tail bool) {
	l, err := Open(b.TempDir(), Options{MustKeep: logpos.NoOffset})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	p := newPipeline()
	stop := make(chan struct{})
	go p.syncLoop(stop, func() (int64, error) {
		o, err := l.Sync(context.Background())
		return int64(o), err
	})
	var readerDone chan int64
	if tail {
		readerDone = make(chan int64)
		r, err := l.NewReader(0)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer r.Close()
			var n int64
			for n < int64(b.N) {
				if _, err := r.Next(); errors.Is(err, ErrCaughtUp) {
					p.mu.Lock()
					for p.durable.Load() < n && p.err == nil {
						p.cond.Wait()
					}
					p.mu.Unlock()
					continue
				} else if err != nil {
					b.Error(err)
					break
				}
				n++
			}
			readerDone <- n
		}()
	}
	value := make([]byte, benchValueSize)
	b.SetBytes(benchValueSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range int64(b.N) {
		if err := p.waitBelow(i, benchWindow); err != nil {
			b.Fatal(err)
		}
		if err := l.AppendAsync(benchEntry(logpos.Offset(i), value)); err != nil {
			b.Fatal(err)
		}
		p.kickSync()
	}
	if err := p.waitBelow(int64(b.N)-1, 0); err != nil {
		b.Fatal(err)
	}
	if tail {
		if n := <-readerDone; n != int64(b.N) {
			b.Fatalf("reader read %d of %d", n, b.N)
		}
	}
	b.StopTimer()
	close(stop)
	<-p.done
}

// benchRawGroupCommit is the baseline: the same producer and syncer over
// a bare file. Records carry the same 8-byte frame as the log's.
func benchRawGroupCommit(b *testing.B) {
	f, err := vfs.Default.Create(filepath.Join(b.TempDir(), "raw"), vfs.WriteCategoryUnspecified)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var (
		mu      sync.Mutex
		pending []byte
		spare   []byte
		last    int64 = -1
	)
	p := newPipeline()
	stop := make(chan struct{})
	go p.syncLoop(stop, func() (int64, error) {
		mu.Lock()
		buf, upTo := pending, last
		pending, spare = spare[:0], nil
		mu.Unlock()
		if len(buf) > 0 {
			if _, err := f.Write(buf); err != nil {
				return p.durable.Load(), err
			}
			if err := f.SyncData(); err != nil { // fdatasync(2)
				return p.durable.Load(), err
			}
		}
		mu.Lock()
		spare = buf[:0]
		mu.Unlock()
		return upTo, nil
	})
	value := make([]byte, benchValueSize)
	var scratch []byte
	b.SetBytes(benchValueSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range int64(b.N) {
		if err := p.waitBelow(i, benchWindow); err != nil {
			b.Fatal(err)
		}
		e := benchEntry(logpos.Offset(i), value)
		scratch, _ = appendRecord(scratch[:0], &e, 0)
		mu.Lock()
		pending = append(pending, scratch...)
		last = i
		mu.Unlock()
		p.kickSync()
	}
	if err := p.waitBelow(int64(b.N)-1, 0); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	close(stop)
	<-p.done
}
