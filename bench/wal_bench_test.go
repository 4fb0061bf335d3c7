package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	tidwall "github.com/tidwall/wal"

	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/wal"
)

// BenchmarkWALDurableBatch: append a batch of 1 or 64 entries of 128 B and
// make it durable, in tablefsm's wal, hashicorp/raft-wal and tidwall/wal,
// one after the other on the same disk in the same run. Budget: tablefsm
// at least as fast as both (see docs/wal.md).
func BenchmarkWALDurableBatch(b *testing.B) {
	value := make([]byte, 128)
	for i := range value {
		value[i] = byte(i)
	}
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d/tablefsm", n), func(b *testing.B) {
			l, err := wal.Open(b.TempDir(), wal.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			next := logpos.Offset(0)
			b.SetBytes(int64(n * len(value)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for range n {
					if err := l.AppendAsync(logpos.Entry{Term: 1, Offset: next, Value: value, Timestamp: 1}); err != nil {
						b.Fatal(err)
					}
					next++
				}
				if _, err := l.Sync(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("batch=%d/raft-wal", n), func(b *testing.B) {
			w, err := raftwal.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			logs := make([]*raft.Log, n)
			for i := range logs {
				logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: value}
			}
			next := uint64(1)
			b.SetBytes(int64(n * len(value)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for _, lg := range logs {
					lg.Index = next
					next++
				}
				if err := w.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("batch=%d/tidwall-wal", n), func(b *testing.B) {
			opts := *tidwall.DefaultOptions
			opts.NoSync = false
			w, err := tidwall.Open(b.TempDir(), &opts)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			var batch tidwall.Batch
			next := uint64(1)
			b.SetBytes(int64(n * len(value)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for range n {
					batch.Write(next, value)
					next++
				}
				if err := w.WriteBatch(&batch); err != nil {
					b.Fatal(err)
				}
				batch.Clear()
			}
		})
	}
}

// BenchmarkWALDurableBatchInterleaved runs the three logs of
// BenchmarkWALDurableBatch in turn, one durable batch each per iteration,
// so that the disk's drift (a shared, noisy machine) hits them alike. It
// reports each one's time per batch and tablefsm's speed relative to the
// others (x-vs-…: above 1 means tablefsm is faster).
func BenchmarkWALDurableBatchInterleaved(b *testing.B) {
	value := make([]byte, 128)
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			l, err := wal.Open(b.TempDir(), wal.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			rw, err := raftwal.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer rw.Close()
			opts := *tidwall.DefaultOptions
			opts.NoSync = false
			tw, err := tidwall.Open(b.TempDir(), &opts)
			if err != nil {
				b.Fatal(err)
			}
			defer tw.Close()
			logs := make([]*raft.Log, n)
			for i := range logs {
				logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: value}
			}
			var batch tidwall.Batch
			ctx := context.Background()
			var next int64
			var spent [3]time.Duration
			run := []func() error{
				func() error {
					for i := range n {
						if err := l.AppendAsync(logpos.Entry{Term: 1, Offset: logpos.Offset(next + int64(i)), Value: value, Timestamp: 1}); err != nil {
							return err
						}
					}
					_, err := l.Sync(ctx)
					return err
				},
				func() error {
					for i, lg := range logs {
						lg.Index = uint64(next + int64(i) + 1)
					}
					return rw.StoreLogs(logs)
				},
				func() error {
					for i := range n {
						batch.Write(uint64(next+int64(i)+1), value)
					}
					err := tw.WriteBatch(&batch)
					batch.Clear()
					return err
				},
			}
			b.ResetTimer()
			for it := range b.N {
				for k := range run {
					j := (k + it) % len(run) // rotate who goes first
					start := time.Now()
					if err := run[j](); err != nil {
						b.Fatal(err)
					}
					spent[j] += time.Since(start)
				}
				next += int64(n)
			}
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
			b.ReportMetric(per(spent[0]), "tablefsm-ns/batch")
			b.ReportMetric(per(spent[1]), "raftwal-ns/batch")
			b.ReportMetric(per(spent[2]), "tidwall-ns/batch")
			b.ReportMetric(float64(spent[1])/float64(spent[0]), "x-vs-raftwal")
			b.ReportMetric(float64(spent[2])/float64(spent[0]), "x-vs-tidwall")
		})
	}
}

// countingFS counts the bytes read through it.
type countingFS struct {
	vfs.FS
	read *atomic.Int64
}

type countingFile struct {
	vfs.File
	read *atomic.Int64
}

func (f countingFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.read.Add(int64(n))
	return n, err
}

func (f countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.read.Add(int64(n))
	return n, err
}

func (fs countingFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil {
		return nil, err
	}
	return countingFile{f, fs.read}, nil
}

func (fs countingFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	if err != nil {
		return nil, err
	}
	return countingFile{f, fs.read}, nil
}

func envBytes(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkWALReopenAfterCrash: open a log whose last segment ends in a
// torn record, as a crash leaves it. The log is WAL_REOPEN_BYTES long
// (default 64 MiB; set 1073741824 for the 1 GiB of the budget) in
// WAL_REOPEN_SEGMENT segments (default 8 MiB). read-B/op is what Open
// read: about one segment, not the log, because sealed segments are
// trusted through their index files. The full-scan baseline reads every
// segment once, the least a recovery that rescans the log would do.
func BenchmarkWALReopenAfterCrash(b *testing.B) {
	size := envBytes("WAL_REOPEN_BYTES", 64<<20)
	segSize := envBytes("WAL_REOPEN_SEGMENT", 8<<20)
	dir := b.TempDir()
	l, err := wal.Open(dir, wal.Options{SegmentSize: segSize})
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 1024)
	var last logpos.Offset
	for o := logpos.Offset(0); int64(o)*int64(len(value)+20) < size; o++ {
		if err := l.AppendAsync(logpos.Entry{Term: 1, Offset: o, Value: value}); err != nil {
			b.Fatal(err)
		}
		last = o
	}
	if _, err := l.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var segs []string
	var total int64
	for _, n := range names {
		if strings.HasSuffix(n.Name(), ".seg") {
			segs = append(segs, filepath.Join(dir, n.Name()))
			if fi, err := n.Info(); err == nil {
				total += fi.Size()
			}
		}
	}
	slices.Sort(segs)
	tear := func() {
		f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			b.Fatal(err)
		}
		// Half a record: a length word promising more than is there.
		if _, err := f.Write([]byte{0xff, 0x01, 0x00, 0x80, 1, 2, 3, 4, 5, 6, 7}); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("open", func(b *testing.B) {
		var read atomic.Int64
		fs := countingFS{vfs.Default, &read}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			tear()
			b.StartTimer()
			l, err := wal.Open(dir, wal.Options{FS: fs, SegmentSize: segSize, MustKeepBelow: last + 1})
			if err != nil {
				b.Fatal(err)
			}
			if got := l.LastDurable().Offset; got != last {
				b.Fatalf("reopened at %d, want %d", got, last)
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(read.Load())/float64(b.N), "read-B/op")
		b.ReportMetric(float64(total), "log-B")
		b.ReportMetric(float64(len(segs)), "segments")
	})
	b.Run("full-scan", func(b *testing.B) {
		buf := make([]byte, 1<<20)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			var n int64
			for _, s := range segs {
				f, err := os.Open(s)
				if err != nil {
					b.Fatal(err)
				}
				for {
					m, err := f.Read(buf)
					n += int64(m)
					if err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
				f.Close()
			}
			if n < total {
				b.Fatalf("read %d of %d", n, total)
			}
		}
		b.ReportMetric(float64(total), "read-B/op")
	})
}
