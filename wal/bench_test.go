package wal

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	l, err := Open(b.TempDir(), Options{})
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

// committer is one side of BenchmarkGroupCommit: a producer appending
// through a pipeline whose syncer makes entries durable in coalesced
// rounds, at most benchWindow entries in flight.
type committer struct {
	p      *pipeline
	stop   chan struct{}
	append func(i int64) error
	// read, when set, is a tailing reader's progress: the benchmark waits
	// for it to have read every entry of a chunk.
	read     *atomic.Int64
	readDone chan struct{}
	spent    time.Duration
}

// run appends entries [from, to) and waits until they are durable (and
// read, with a reader).
func (c *committer) run(from, to int64) error {
	start := time.Now()
	for i := from; i < to; i++ {
		if err := c.p.waitBelow(i, benchWindow); err != nil {
			return err
		}
		if err := c.append(i); err != nil {
			return err
		}
		c.p.kickSync()
	}
	if err := c.p.waitBelow(to-1, 0); err != nil {
		return err
	}
	if c.read != nil {
		c.p.mu.Lock()
		for c.read.Load() < to && c.p.err == nil {
			c.p.cond.Wait()
		}
		c.p.mu.Unlock()
	}
	c.spent += time.Since(start)
	return c.p.err
}

func (c *committer) close() {
	close(c.stop)
	<-c.p.done
	c.p.mu.Lock()
	c.p.cond.Broadcast()
	c.p.mu.Unlock()
	if c.readDone != nil {
		<-c.readDone
	}
}

func newWALCommitter(b *testing.B, tail bool) *committer {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	c := &committer{p: newPipeline(), stop: make(chan struct{})}
	go c.p.syncLoop(c.stop, func() (int64, error) {
		o, err := l.Sync(context.Background())
		return int64(o), err
	})
	value := make([]byte, benchValueSize)
	c.append = func(i int64) error { return l.AppendAsync(benchEntry(logpos.Offset(i), value)) }
	if tail {
		r, err := l.NewReader(0)
		if err != nil {
			b.Fatal(err)
		}
		c.read, c.readDone = new(atomic.Int64), make(chan struct{})
		go func() {
			defer close(c.readDone)
			defer r.Close()
			for {
				_, err := r.Next()
				if errors.Is(err, ErrCaughtUp) {
					c.p.mu.Lock()
					for c.p.durable.Load() < c.read.Load() && c.p.err == nil {
						select {
						case <-c.stop:
							c.p.mu.Unlock()
							return
						default:
						}
						c.p.cond.Wait()
					}
					c.p.mu.Unlock()
					continue
				}
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						b.Error(err)
					}
					return
				}
				c.p.mu.Lock()
				c.read.Add(1)
				c.p.cond.Broadcast()
				c.p.mu.Unlock()
			}
		}()
	}
	return c
}

// newRawCommitter is the baseline: the same producer and syncer over bare
// files, written with pwrite(2) and made durable with fdatasync(2). Like
// the log's segments, each file is prepared with PrepareFile (blocks
// allocated, size set and fsynced) before it is written, and a full one is
// followed by a fresh prepared file rather than overwritten: an appending
// write would make every fdatasync also persist the file's size (more work
// than the log does), and rewriting blocks already written would make it
// persist nothing but data (less). Records carry the same 8-byte frame as
// the log's.
func newRawCommitter(b *testing.B) *committer {
	dir := b.TempDir()
	var files int
	prepare := func() (vfs.File, error) {
		files++
		f, err := vfs.Default.Create(filepath.Join(dir, fmt.Sprintf("raw-%d", files)), vfs.WriteCategoryUnspecified)
		if err != nil {
			return nil, err
		}
		PrepareFile(f, DefaultSegmentSize)
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return nil, err
		}
		return f, nil
	}
	f, err := prepare()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	var (
		mu      sync.Mutex
		pending []byte
		spare   []byte
		last    int64 = -1
		at      int64
	)
	c := &committer{p: newPipeline(), stop: make(chan struct{})}
	go c.p.syncLoop(c.stop, func() (int64, error) {
		mu.Lock()
		buf, upTo := pending, last
		pending, spare = spare[:0], nil
		mu.Unlock()
		if len(buf) > 0 {
			if at+int64(len(buf)) > DefaultSegmentSize {
				// Full: go on in a fresh prepared file, as the log
				// rolls over to a prepared segment.
				old := f
				nf, err := prepare()
				if err != nil {
					return c.p.durable.Load(), err
				}
				f, at = nf, 0
				_ = old.Close()
				_ = vfs.Default.Remove(filepath.Join(dir, fmt.Sprintf("raw-%d", files-1)))
			}
			if _, err := f.WriteAt(buf, at); err != nil { // pwrite(2)
				return c.p.durable.Load(), err
			}
			at += int64(len(buf))
			if err := f.SyncData(); err != nil { // fdatasync(2)
				return c.p.durable.Load(), err
			}
		}
		mu.Lock()
		spare = buf[:0]
		mu.Unlock()
		return upTo, nil
	})
	value := make([]byte, benchValueSize)
	var scratch []byte
	c.append = func(i int64) error {
		e := benchEntry(logpos.Offset(i), value)
		scratch, _ = appendRecord(scratch[:0], &e, 0)
		mu.Lock()
		pending = append(pending, scratch...)
		last = i
		mu.Unlock()
		return nil
	}
	return c
}

// BenchmarkGroupCommit: pipelined AppendAsync + coalesced Sync of 100 B
// entries with 1024 in flight, against the same pipeline written directly
// with pwrite(2) + fdatasync(2) into files prepared as the log prepares its
// segments, and with a tailing reader
// following the writer. The three run in turn, in chunks, so that the
// disk's drift (a shared, noisy machine) hits them alike. Reported:
// ns/entry of each, wal-vs-raw (the log's throughput as a fraction of the
// raw loop's; budget ≥ 0.6) and reader-cost (the throughput a tailing
// reader takes away; budget ≤ 0.2). ns/op is the sum of the three.
func BenchmarkGroupCommit(b *testing.B) {
	sides := []*committer{newRawCommitter(b), newWALCommitter(b, false), newWALCommitter(b, true)}
	const chunk = 8192
	b.SetBytes(3 * benchValueSize)
	b.ReportAllocs()
	b.ResetTimer()
	for from := int64(0); from < int64(b.N); from += chunk {
		to := min(from+chunk, int64(b.N))
		for k := range sides {
			c := sides[(k+int(from/chunk))%len(sides)] // rotate who goes first
			if err := c.run(from, to); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	for _, c := range sides {
		c.close()
	}
	per := func(c *committer) float64 { return float64(c.spent.Nanoseconds()) / float64(b.N) }
	raw, w, wr := per(sides[0]), per(sides[1]), per(sides[2])
	b.ReportMetric(raw, "raw-ns/entry")
	b.ReportMetric(w, "wal-ns/entry")
	b.ReportMetric(wr, "wal+reader-ns/entry")
	b.ReportMetric(raw/w, "wal-vs-raw")
	b.ReportMetric(1-w/wr, "reader-cost")
}
