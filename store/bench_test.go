package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tablefsm/tablefsm/internal/durable"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store/kvpb"
	"google.golang.org/protobuf/proto"
)

// Apply throughput: entries of 1 and 64 small writes (16-byte keys,
// 64-byte values) through the store and the KV state machine ("kv"),
// against the same writes as raw Pebble batches on a database opened with
// the same options ("raw"), all committed without sync (the store's apply
// setting). A third arm, "raw+commit", adds to each raw batch a 16-byte
// record like the store's commit id: the difference between raw and
// raw+commit is the price of the commit id being in the batch, the
// difference between raw+commit and kv is the store's own overhead.
//
// writes=N applies each entry on its own (Store.Apply: one Pebble batch
// per entry, as when entries are committed one at a time) against one
// raw batch per entry. writes=N,run=256 applies runs of 256 entries
// (Store.ApplyBatch: one Pebble batch and one commit id per run, as the
// follower's applier does with what is committed while it works)
// against raw batches of the same 256 entries' writes.
//
// The arms run interleaved in blocks of 256 entries, in every order in
// turn, so that all see the same machine; each reports entries/s, and the
// ratios kv/raw (the budget is >= 0.8) and kv/raw+commit are reported.
func BenchmarkApply(b *testing.B) {
	const block = 256
	for _, c := range []struct{ writes, run int }{{1, 1}, {64, 1}, {1, block}} {
		name := fmt.Sprintf("writes=%d", c.writes)
		if c.run > 1 {
			name += fmt.Sprintf(",run=%d", c.run)
		}
		b.Run(name, func(b *testing.B) {
			ring := applyRing(c.writes)
			values := make([][]byte, len(ring))
			for i, ops := range ring {
				var err error
				if values[i], err = proto.Marshal(&kvpb.WriteBatch{Operations: ops}); err != nil {
					b.Fatal(err)
				}
			}
			s, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			raw := func(name string) *pebble.DB {
				db, err := pebble.Open(filepath.Join(b.TempDir(), name), Options{}.withDefaults().pebbleOptions(false, nil))
				if err != nil {
					b.Fatal(err)
				}
				return db
			}
			plain, withCommit := raw("raw"), raw("raw+commit")
			defer plain.Close()
			defer withCommit.Close()
			// rawBatch writes entries [from, to) in one raw batch.
			rawBatch := func(db *pebble.DB, from, to int, commit bool) {
				batch := db.NewBatch()
				for i := from; i < to; i++ {
					for _, op := range ring[i%len(ring)] {
						if err := batch.Set(op.GetPut().GetKey(), op.GetPut().GetValue(), nil); err != nil {
							b.Fatal(err)
						}
					}
				}
				if commit {
					var id [16]byte
					if err := batch.Set(keyCommit, appendEntryID(id[:0], logpos.EntryID{Term: 1, Offset: logpos.Offset(to - 1)}), nil); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				_ = batch.Close()
			}
			entries := make([]logpos.Entry, 0, c.run)
			// Each arm applies entries [from, to), c.run at a time.
			arms := []func(from, to int){
				func(from, to int) {
					for at := from; at < to; at += c.run {
						entries = entries[:0]
						for i := at; i < min(at+c.run, to); i++ {
							entries = append(entries, logpos.Entry{Term: 1, Offset: logpos.Offset(i), Value: values[i%len(values)]})
						}
						var err error
						if len(entries) == 1 {
							err = s.Apply(entries[0])
						} else {
							_, err = s.ApplyBatch(entries)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				},
				func(from, to int) {
					for at := from; at < to; at += c.run {
						rawBatch(plain, at, min(at+c.run, to), false)
					}
				},
				func(from, to int) {
					for at := from; at < to; at += c.run {
						rawBatch(withCommit, at, min(at+c.run, to), true)
					}
				},
			}
			var times [3]time.Duration // kv, raw, raw+commit
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += block {
				n := min(block, b.N-done)
				// Go through every order of the arms in turn, so that each
				// runs in each position and after each other arm equally
				// often (an arm inherits the background flushes of the one
				// before it).
				for _, arm := range armOrders[(done/block)%len(armOrders)] {
					start := time.Now()
					arms[arm](done, done+n)
					times[arm] += time.Since(start)
				}
			}
			kvTime, rawTime, commitTime := times[0], times[1], times[2]
			b.ReportMetric(float64(b.N)/kvTime.Seconds(), "kv-entries/s")
			b.ReportMetric(float64(b.N)/rawTime.Seconds(), "raw-entries/s")
			b.ReportMetric(float64(b.N)/commitTime.Seconds(), "raw+commit-entries/s")
			b.ReportMetric(rawTime.Seconds()/kvTime.Seconds(), "kv/raw")
			b.ReportMetric(commitTime.Seconds()/kvTime.Seconds(), "kv/raw+commit")
		})
	}
}

// armOrders are the permutations of the three arms of BenchmarkApply.
var armOrders = [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}

// applyRing returns 1024 batches of n puts of random 16-byte keys and
// 64-byte values.
func applyRing(n int) [][]*kvpb.Operation {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	ring := make([][]*kvpb.Operation, 1024)
	for i := range ring {
		for range n {
			k, v := make([]byte, 16), make([]byte, 64)
			for j := range k {
				k[j] = byte(rng.IntN(256))
			}
			for j := range v {
				v[j] = byte(rng.IntN(256))
			}
			ring[i] = append(ring[i], &kvpb.Operation{Op: &kvpb.Operation_Put{Put: &kvpb.Put{Key: k, Value: v}}})
		}
	}
	return ring
}

// benchSnapshotStore returns a store holding about 32 MiB of data, all
// compacted into sstables.
func benchSnapshotStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.SetTerm(1, TermOptions{}); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	value := make([]byte, 1024)
	for i := 0; i < 32<<10/64; i++ {
		var ops []*kvpb.Operation
		for j := 0; j < 64; j++ {
			for k := range value {
				value[k] = byte(rng.IntN(256))
			}
			ops = append(ops, put(fmt.Sprintf("key-%08d", i*64+j), string(value)))
		}
		if err := s.Apply(kvEntry(b, 1, logpos.Offset(i), ops...)); err != nil {
			b.Fatal(err)
		}
	}
	// Settle the LSM, so that neither the source nor a store loading it
	// compacts in the background while measured.
	if err := s.db.h.Compact(context.Background(), []byte{sysPrefix}, userUpperBound, true); err != nil {
		b.Fatal(err)
	}
	return s
}

// Snapshot out: Store.Snapshot plus reading every chunk, against reading
// the same files in chunks of the same size ("read") and a plain copy of
// them (read, write, fsync: "copy").
// Snapshot in: Loader.Write of every chunk, Finish and Install (into the
// same store over and over), against writing the same bytes to files
// with fsync ("write") and the same plain copy.
func BenchmarkSnapshot(b *testing.B) {
	s := benchSnapshotStore(b)
	defer s.Close()
	// A snapshot whose files are "the same data" for the baselines, and
	// whose chunks the loads write.
	sn, err := s.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	defer sn.Close()
	size, srcDir := sn.Size(), sn.dir
	var names []string
	for _, f := range sn.mu.files {
		names = append(names, f.name)
	}
	chunks := readChunks(b, sn)
	chunkSize := s.opts.SnapshotChunkSize
	fs := vfs.Default

	b.Run("out/store", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			sn, err := s.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := sn.Next(); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
			if err := sn.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("out/read", func(b *testing.B) {
		b.SetBytes(size)
		buf := make([]byte, chunkSize)
		for i := 0; i < b.N; i++ {
			for _, name := range names {
				if err := readFile(fs, filepath.Join(srcDir, name), buf); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(size)
		buf := make([]byte, chunkSize)
		dst := filepath.Join(b.TempDir(), "copy")
		for i := 0; i < b.N; i++ {
			if err := copyFiles(fs, srcDir, dst, names, buf); err != nil {
				b.Fatal(err)
			}
			if err := fs.RemoveAll(dst); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("in/store", func(b *testing.B) {
		t, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer t.Close()
		b.SetBytes(size)
		b.ResetTimer() // opening the target store is setup, as the baselines have none
		for i := 0; i < b.N; i++ {
			l, err := t.NewLoader()
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range chunks {
				if err := l.Write(c); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := t.Install(l, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("in/write", func(b *testing.B) {
		b.SetBytes(size)
		dst := filepath.Join(b.TempDir(), "write")
		for i := 0; i < b.N; i++ {
			if err := writeChunks(fs, dst, chunks); err != nil {
				b.Fatal(err)
			}
			if err := fs.RemoveAll(dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func readFile(fs vfs.FS, name string, buf []byte) error {
	f, err := fs.Open(name)
	if err != nil {
		return err
	}
	for {
		_, err = io.ReadFull(f, buf)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = nil
			break
		}
		if err != nil {
			break
		}
	}
	return errors.Join(err, f.Close())
}

// copyFiles copies the named files of src into a new directory dst, each
// file synced, then the directory.
func copyFiles(fs vfs.FS, src, dst string, names []string, buf []byte) error {
	if err := fs.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, name := range names {
		in, err := fs.Open(filepath.Join(src, name))
		if err != nil {
			return err
		}
		out, err := fs.Create(filepath.Join(dst, name), vfs.WriteCategoryUnspecified)
		if err != nil {
			return errors.Join(err, in.Close())
		}
		_, err = io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, buf)
		if err == nil {
			err = out.Sync()
		}
		if err := errors.Join(err, in.Close(), out.Close()); err != nil {
			return err
		}
	}
	return durable.SyncDir(fs, dst)
}

// writeChunks writes the chunks' content into files of a new directory
// dst, each file synced, then the directory.
func writeChunks(fs vfs.FS, dst string, chunks []Chunk) error {
	if err := fs.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	var f vfs.File
	for _, c := range chunks {
		if c.Index == 0 {
			var err error
			if f, err = fs.Create(filepath.Join(dst, c.Name), vfs.WriteCategoryUnspecified); err != nil {
				return err
			}
		}
		if _, err := f.Write(c.Content); err != nil {
			return err
		}
		if c.Index == c.Count-1 {
			if err := errors.Join(f.Sync(), f.Close()); err != nil {
				return err
			}
		}
	}
	return durable.SyncDir(fs, dst)
}
