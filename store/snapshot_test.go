package store

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/tablefsm/tablefsm/internal/fdtest"
	"github.com/tablefsm/tablefsm/logpos"
)

// source is a store to take snapshots from, with its data partly flushed
// into sstables and partly only in Pebble's WAL.
type source struct {
	s *Store
	m model
}

func newSource(t testing.TB, dir string, opts Options) *source {
	t.Helper()
	src := &source{s: mustOpen(t, dir, opts), m: model{}}
	fillStore(t, src.s, src.m, 5, 60, "src")
	if err := src.s.db.h.Flush(); err != nil {
		t.Fatal(err)
	}
	fillStore(t, src.s, src.m, 6, 40, "src") // term 6, unflushed
	return src
}

// checkChunkStream checks the shape of a snapshot's chunks: files one
// after the other, each file's chunks 0..count-1 with one count.
func checkChunkStream(t *testing.T, chunks []Chunk, chunkSize int) (files int) {
	t.Helper()
	seen := map[string]bool{}
	for i, c := range chunks {
		if !validName(c.Name) {
			t.Errorf("chunk %d: unsafe name %q", i, c.Name)
		}
		if c.Index == 0 {
			if seen[c.Name] {
				t.Errorf("chunk %d: file %q again", i, c.Name)
			}
			seen[c.Name] = true
		} else if prev := chunks[i-1]; prev.Name != c.Name || prev.Index != c.Index-1 || prev.Count != c.Count {
			t.Errorf("chunk %d %q %d/%d does not follow %q %d/%d", i, c.Name, c.Index, c.Count, prev.Name, prev.Index, prev.Count)
		}
		if c.Index < c.Count-1 && len(c.Content) != chunkSize {
			t.Errorf("chunk %d of %q: %d bytes, want %d", c.Index, c.Name, len(c.Content), chunkSize)
		}
		if len(c.Content) > chunkSize {
			t.Errorf("chunk %d of %q: %d bytes > %d", c.Index, c.Name, len(c.Content), chunkSize)
		}
	}
	if n := len(chunks); n > 0 && chunks[n-1].Index != chunks[n-1].Count-1 {
		t.Errorf("the last file ends at chunk %d of %d", chunks[n-1].Index, chunks[n-1].Count)
	}
	return len(seen)
}

func TestSnapshotRoundTrip(t *testing.T) {
	const chunkSize = 1024
	src := newSource(t, t.TempDir(), Options{SnapshotChunkSize: chunkSize})
	want := fingerprintOf(t, src.s)
	chunks, info := takeSnapshot(t, src.s)
	if info.Commit != want.Commit || info.Term != want.Term || info.Options != want.Options {
		t.Fatalf("snapshot info %+v, store has %v %d %+v", info, want.Commit, want.Term, want.Options)
	}
	if files := checkChunkStream(t, chunks, chunkSize); files < 4 {
		t.Fatalf("snapshot of %d files", files)
	}
	if multi := chunks[0].Count > 1 || chunks[len(chunks)-1].Count > 1; !multi && len(chunks) < 10 {
		t.Fatalf("no file took more than one chunk; the test would miss chunking")
	}
	if got := listDir(t, vfs.Default, src.s.dir); !cmp.Equal(got, []string{"CURRENT", "LOCK", "db-000001"}) {
		t.Fatalf("the closed snapshot left %q", got)
	}

	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, b *Store)
	}{
		{"fresh", func(*testing.T, *Store) {}},
		{"older data", func(t *testing.T, b *Store) {
			m := model{}
			fillStore(t, b, m, 2, 30, "old")
			fillStore(t, b, m, 2, 10, "src") // keys the snapshot holds too
			if _, err := b.Sync(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := mustOpen(t, dir, Options{})
			tc.prepare(t, b)

			// Readers keep going during the install.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := b.Get([]byte("src/00001/a")); err != nil && !errors.Is(err, ErrNotFound) {
						t.Errorf("Get during Install: %v", err)
						return
					}
					_ = b.Term()
					_ = b.Commit()
				}
			})
			got, err := load(b, chunks, info.Term)
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if got != info {
				t.Fatalf("Install = %+v, want %+v", got, info)
			}
			wantB := want
			wantB.ResetPending, wantB.ResetTo = true, info.Commit
			wantB.DirectoryListed = []string{"CURRENT", "LOCK", b.db.name}
			assertFingerprint(t, "after install", wantB, fingerprintOf(t, b))
			if b.DurableCommit() != info.Commit {
				t.Fatalf("DurableCommit = %v, want %v", b.DurableCommit(), info.Commit)
			}

			// The same after a restart, until the log reset is cleared.
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			b = mustOpen(t, dir, Options{})
			assertFingerprint(t, "after install and reopen", wantB, fingerprintOf(t, b))
			if err := b.ClearLogReset(); err != nil {
				t.Fatal(err)
			}
			if err := b.ClearLogReset(); err != nil {
				t.Fatalf("ClearLogReset again: %v", err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			b = mustOpen(t, dir, Options{})
			wantB.ResetPending, wantB.ResetTo = false, logpos.NoEntry
			assertFingerprint(t, "after ClearLogReset and reopen", wantB, fingerprintOf(t, b))

			// Replication goes on from the snapshot's commit.
			next := kvEntry(t, 6, info.Commit.Offset+1, put("after", "snapshot"))
			if err := b.Apply(next); err != nil {
				t.Fatalf("Apply after install: %v", err)
			}
		})
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	src := newSource(t, t.TempDir(), Options{SnapshotChunkSize: 4096})
	want := fingerprintOf(t, src.s)
	sn, err := src.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	// Writes and a new term after the snapshot are not in it.
	fillStore(t, src.s, model{}, 8, 20, "later")
	if err := src.s.db.h.Flush(); err != nil {
		t.Fatal(err)
	}
	chunks := readChunks(t, sn)
	if _, err := sn.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after the end: %v, want io.EOF", err)
	}
	b := mustOpen(t, t.TempDir(), Options{})
	info, err := load(b, chunks, 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Commit != want.Commit || info.Term != want.Term {
		t.Fatalf("installed %+v, want commit %v term %d", info, want.Commit, want.Term)
	}
	if diff := cmp.Diff(want.Data, userData(t, b)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Next(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
}

func TestInstallTerm(t *testing.T) {
	src := newSource(t, t.TempDir(), Options{}) // term 6
	chunks, info := takeSnapshot(t, src.s)
	for _, tc := range []struct {
		name              string
		liveTerm, minTerm logpos.Term
		want              logpos.Term
	}{
		{"snapshot term", logpos.NoTerm, logpos.NoTerm, 6},
		{"minimum term", 3, 9, 9},
		{"live term", 11, 7, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := mustOpen(t, dir, Options{})
			if tc.liveTerm >= 0 {
				if err := b.SetTerm(tc.liveTerm, TermOptions{KeySorting: KeySortingNatural}); err != nil {
					t.Fatal(err)
				}
			}
			got, err := load(b, chunks, tc.minTerm)
			if err != nil {
				t.Fatal(err)
			}
			if got.Term != tc.want || b.Term() != tc.want {
				t.Fatalf("term %d (store %d), want %d", got.Term, b.Term(), tc.want)
			}
			// The snapshot's options are kept, whatever the term.
			if b.TermOptions() != info.Options {
				t.Fatalf("options %+v, want the snapshot's %+v", b.TermOptions(), info.Options)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			b = mustOpen(t, dir, Options{})
			if b.Term() != tc.want || b.TermOptions() != info.Options {
				t.Fatalf("after reopen: term %d options %+v", b.Term(), b.TermOptions())
			}
		})
	}
}

// TestSnapshotChunkSizes checks the chunk arithmetic at its edges: a file
// of exactly one chunk, one byte more, an empty file.
func TestSnapshotChunkSizes(t *testing.T) {
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem, SnapshotChunkSize: 10})
	sn := &Snapshot{s: s, fs: mem, dir: "/cp", chunkSize: 10}
	for name, size := range map[string]int{"a-empty": 0, "b-ten": 10, "c-eleven": 11, "d-thirty": 30} {
		if err := mem.MkdirAll("/cp", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(mem, "/cp/"+name, string(make([]byte, size))); err != nil {
			t.Fatal(err)
		}
	}
	files, err := sn.list()
	if err != nil {
		t.Fatal(err)
	}
	sn.mu.files = files
	var got []string
	for _, c := range readChunks(t, sn) {
		got = append(got, fmt.Sprintf("%s %d/%d %d", c.Name, c.Index, c.Count, len(c.Content)))
	}
	want := []string{
		"a-empty 0/1 0",
		"b-ten 0/1 10",
		"c-eleven 0/2 10", "c-eleven 1/2 1",
		"d-thirty 0/3 10", "d-thirty 1/3 10", "d-thirty 2/3 10",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if sn.Size() != 51 {
		t.Fatalf("Size() = %d, want 51", sn.Size())
	}
}

// TestSnapshotNextAfterAFailedRead: Next, called again after a read
// failed (one that read some of the bytes, then failed), returns the chunk whose
// read failed, with the file's bytes at its place, and the snapshot reads
// out whole.
func TestSnapshotNextAfterAFailedRead(t *testing.T) {
	mem := vfs.NewMem()
	sn, content := thirtyByteSnapshot(t, mem, &failingReads{FS: mem, failAt: 2})
	if _, err := sn.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Next(); !errors.Is(err, errInjectedRead) {
		t.Fatalf("the second read: %v, want the injected error", err)
	}
	rest := readChunks(t, sn)
	if len(rest) != 2 || rest[0].Index != 1 || string(rest[0].Content) != string(content[10:20]) || string(rest[1].Content) != string(content[20:]) {
		t.Fatalf("after the failed read: %q, want chunks 1 and 2 of %q", rest, content)
	}
}

// thirtyByteSnapshot writes a checkpoint of one 30-byte file, /cp/data,
// into mem and returns a snapshot of it in chunks of 10 bytes that reads
// through fs, and the file's content.
func thirtyByteSnapshot(t *testing.T, mem, fs vfs.FS) (*Snapshot, []byte) {
	t.Helper()
	s := mustOpen(t, "/shard", Options{FS: mem, SnapshotChunkSize: 10})
	content := make([]byte, 30)
	for i := range content {
		content[i] = byte('a' + i)
	}
	if err := mem.MkdirAll("/cp", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(mem, "/cp/data", string(content)); err != nil {
		t.Fatal(err)
	}
	sn := &Snapshot{s: s, fs: fs, dir: "/cp", chunkSize: 10}
	files, err := sn.list()
	if err != nil {
		t.Fatal(err)
	}
	sn.mu.files = files
	return sn, content
}

// TestSnapshotNextOfAFileCutShort: a file of the checkpoint that is
// shorter than when the snapshot listed it (damaged on disk) fails the
// chunk reaching past its end, with an error that is not io.EOF: callers
// take io.EOF for the end of the snapshot, and would send what they read
// on as a complete one.
func TestSnapshotNextOfAFileCutShort(t *testing.T) {
	mem := vfs.NewMem()
	sn, content := thirtyByteSnapshot(t, mem, mem)
	if err := writeFile(mem, "/cp/data", string(content[:25])); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		c, err := sn.Next()
		if err != nil || string(c.Content) != string(content[i*10:i*10+10]) {
			t.Fatalf("chunk %d: %q, %v", i, c.Content, err)
		}
	}
	c, err := sn.Next()
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("the chunk past the end of the cut file: %q, %v; want an error other than io.EOF", c.Content, err)
	}
}

var errInjectedRead = errors.New("injected read failure")

// failingReads is a file system whose files' failAt-th read (counted
// over all files) reads half of what it was asked for, then fails.
type failingReads struct {
	vfs.FS
	failAt int32
	reads  atomic.Int32
}

func (fs *failingReads) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil {
		return nil, err
	}
	return &failingRead{File: f, fs: fs}, nil
}

type failingRead struct {
	vfs.File
	fs *failingReads
}

func (f *failingRead) Read(p []byte) (int, error) {
	if f.fs.reads.Add(1) == f.fs.failAt {
		n, _ := f.File.Read(p[:len(p)/2])
		return n, errInjectedRead
	}
	return f.File.Read(p)
}

func (f *failingRead) ReadAt(p []byte, off int64) (int, error) {
	if f.fs.reads.Add(1) == f.fs.failAt {
		n, _ := f.File.ReadAt(p[:len(p)/2], off)
		return n, errInjectedRead
	}
	return f.File.ReadAt(p, off)
}

// TestSnapshotReadOutLeavesNoFileOpen: a snapshot read out to its end
// (io.EOF) and closed holds no file of the store open, before the store
// closes.
func TestSnapshotReadOutLeavesNoFileOpen(t *testing.T) {
	fdtest.Watch(t)
	dir := filepath.Join(t.TempDir(), "shard")
	s := mustOpen(t, dir, Options{SnapshotChunkSize: 512})
	fillStore(t, s, model{}, 3, 20, "k")
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	readChunks(t, sn)
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, f := range fdtest.OpenUnder(t, dir) {
		if strings.Contains(f, checkpointPrefix) {
			open = append(open, f)
		}
	}
	if len(open) != 0 {
		t.Fatalf("the read-out, closed snapshot still holds open: %q", open)
	}
}
