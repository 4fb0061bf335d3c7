package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/google/go-cmp/cmp"
	"github.com/tablefsm/tablefsm/logpos"
)

// chunkDir reads the files of dir out as a snapshot would.
func chunkDir(t testing.TB, fs vfs.FS, dir string, chunkSize int) []Chunk {
	t.Helper()
	sn := &Snapshot{fs: fs, dir: dir, chunkSize: int64(chunkSize)}
	files, err := sn.list()
	if err != nil {
		t.Fatal(err)
	}
	sn.mu.files = files
	return readChunks(t, sn)
}

// fileChunks returns the indexes in chunks of the chunks of the first
// file for which pick holds.
func fileChunks(t testing.TB, chunks []Chunk, pick func(c Chunk) bool) []int {
	t.Helper()
	var idx []int
	for i, c := range chunks {
		if len(idx) > 0 && c.Name != chunks[idx[0]].Name {
			break
		}
		if len(idx) > 0 || (c.Index == 0 && pick(c)) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		t.Fatal("no such file in the snapshot")
	}
	return idx
}

func multiChunk(c Chunk) bool { return c.Count >= 3 }

// edit returns a copy of chunks changed by f.
func edit(chunks []Chunk, f func([]Chunk) []Chunk) []Chunk {
	return f(slices.Clone(chunks))
}

// snapshotOf returns the chunks of a snapshot of a store prepared by
// prepare.
func snapshotOf(t *testing.T, chunkSize int, prepare func(s *Store)) []Chunk {
	t.Helper()
	s, err := Open(t.TempDir(), Options{SnapshotChunkSize: chunkSize})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	prepare(s)
	chunks, _ := takeSnapshot(t, s)
	return chunks
}

// writeAfterFinish loads the snapshot chunks, finishes it, then writes
// late to the loader and returns what that Write returns.
func writeAfterFinish(chunks []Chunk, late Chunk) func(t *testing.T, s *Store) error {
	return func(t *testing.T, s *Store) error {
		l, err := s.NewLoader()
		if err != nil {
			return err
		}
		if err := writeAll(l, chunks); err != nil {
			return err
		}
		if _, err := l.Finish(); err != nil {
			t.Fatalf("Finish of a good snapshot: %v", err)
		}
		return l.Write(late)
	}
}

// TestLoaderFailuresLeaveTheStore feeds broken snapshots to a store with
// data: each is refused with the right error class, and the store is
// exactly as it was (data, term, options, commit, directory) and works.
func TestLoaderFailuresLeaveTheStore(t *testing.T) {
	const chunkSize = 512
	src := newSource(t, t.TempDir(), Options{SnapshotChunkSize: chunkSize})
	good, _ := takeSnapshot(t, src.s)

	rawPebble := func() []Chunk {
		dir := t.TempDir()
		db, err := pebble.Open(filepath.Join(dir, "db"), &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
		if err != nil {
			t.Fatal(err)
		}
		err = errors.Join(db.Set([]byte("key"), []byte("value"), nil), db.Checkpoint(filepath.Join(dir, "cp")), db.Close())
		if err != nil {
			t.Fatal(err)
		}
		return chunkDir(t, vfs.Default, filepath.Join(dir, "cp"), chunkSize)
	}

	type result int
	const (
		invalid result = iota
		closed
	)
	for _, tc := range []struct {
		name string
		// feed drives a loader of s; it returns the first error.
		feed func(t *testing.T, s *Store) error
		want result
	}{
		{"truncated stream", feedInstall(good[:len(good)-1]), invalid},
		{"truncated mid-file", feedInstall(edit(good, func(c []Chunk) []Chunk {
			i := fileChunks(t, c, multiChunk)
			return c[:i[1]]
		})), invalid},
		{"missing sstable", feedInstall(edit(good, func(c []Chunk) []Chunk {
			i := fileChunks(t, c, func(c Chunk) bool { return strings.HasSuffix(c.Name, ".sst") })
			return slices.Delete(c, i[0], i[len(i)-1]+1)
		})), invalid},
		{"missing manifest", feedInstall(edit(good, func(c []Chunk) []Chunk {
			i := fileChunks(t, c, func(c Chunk) bool { return strings.HasPrefix(c.Name, "MANIFEST") })
			return slices.Delete(c, i[0], i[len(i)-1]+1)
		})), invalid},
		{"corrupt manifest", feedInstall(edit(good, func(c []Chunk) []Chunk {
			i := fileChunks(t, c, func(c Chunk) bool { return strings.HasPrefix(c.Name, "MANIFEST") })
			c[i[0]].Content = []byte(strings.Repeat("?", len(c[i[0]].Content)))
			return c
		})), invalid},
		{"out-of-order chunk", feedInstall(edit(good, func(c []Chunk) []Chunk {
			i := fileChunks(t, c, multiChunk)
			c[i[1]], c[i[2]] = c[i[2]], c[i[1]]
			return c
		})), invalid},
		{"duplicate chunk", feedInstall(edit(good, func(c []Chunk) []Chunk {
			i := fileChunks(t, c, multiChunk)
			return slices.Insert(c, i[1]+1, c[i[1]])
		})), invalid},
		{"duplicate chunk 0", feedInstall(edit(good, func(c []Chunk) []Chunk {
			i := fileChunks(t, c, multiChunk)
			return slices.Insert(c, i[0]+1, c[i[0]])
		})), invalid},
		{"chunk count mismatch", feedInstall(edit(good, func(c []Chunk) []Chunk {
			i := fileChunks(t, c, multiChunk)
			c[i[1]].Count++
			return c
		})), invalid},
		{"file sent twice", feedInstall(append(slices.Clone(good), good[0])), invalid},
		{"interleaved files", feedInstall(edit(good, func(c []Chunk) []Chunk {
			i := fileChunks(t, c, multiChunk)
			other := fileChunks(t, c, func(x Chunk) bool { return x.Name != c[i[0]].Name && x.Count == 1 })
			moved := c[other[0]]
			c = slices.Delete(c, other[0], other[0]+1)
			i = fileChunks(t, c, multiChunk)
			return slices.Insert(c, i[1], moved)
		})), invalid},
		{"negative index", feedInstall([]Chunk{{Name: "a", Index: -1, Count: 1}}), invalid},
		{"zero count", feedInstall([]Chunk{{Name: "a", Index: 0, Count: 0}}), invalid},
		{"index beyond count", feedInstall([]Chunk{{Name: "a", Index: 0, Count: 2}, {Name: "a", Index: 2, Count: 2}}), invalid},
		{"chunk after the end", writeAfterFinish(good, good[0]), invalid},
		// A new file after the end would be installed unchecked (a new
		// MARKER, say, naming a manifest never checked).
		{"new file after the end", writeAfterFinish(good, Chunk{Name: "late", Index: 0, Count: 1, Content: []byte("x")}), invalid},
		{"empty snapshot", feedInstall(nil), invalid},
		{"not a database", feedInstall([]Chunk{
			{Name: "000002.log", Count: 1, Content: []byte("garbage")},
			{Name: "OPTIONS-000003", Count: 1, Content: []byte("[Version]\n")},
		}), invalid},
		{"a Pebble database that is not a store", feedInstall(rawPebble()), invalid},
		{"a store without a term", feedInstall(snapshotOf(t, chunkSize, func(s *Store) {
			for o := range logpos.Offset(3) { // applied, though no term was set
				if err := s.Apply(kvEntry(t, 4, o, put("k", "v"))); err != nil {
					t.Fatal(err)
				}
			}
		})), invalid},
		{"a store nothing was applied to (no commit id)", feedInstall(snapshotOf(t, chunkSize, func(s *Store) {
			fillStore(t, s, model{}, 4, 0, "k")
		})), invalid},
		{"a store without a commit record", feedInstall(snapshotOf(t, chunkSize, func(s *Store) {
			fillStore(t, s, model{}, 4, 3, "k")
			if err := s.db.h.Delete(keyCommit, nil); err != nil {
				t.Fatal(err)
			}
		})), invalid},
		{"a commit above the term", feedInstall(snapshotOf(t, chunkSize, func(s *Store) {
			fillStore(t, s, model{}, 4, 3, "k")
			if err := s.Apply(kvEntry(t, 9, 3, put("k", "v"))); err != nil {
				t.Fatal(err)
			}
		})), invalid},
		{"a commit one term above the term", feedInstall(snapshotOf(t, chunkSize, func(s *Store) {
			fillStore(t, s, model{}, 4, 3, "k")
			if err := s.Apply(kvEntry(t, 5, 3, put("k", "v"))); err != nil {
				t.Fatal(err)
			}
		})), invalid},
		{"a malformed term record", feedInstall(snapshotOf(t, chunkSize, func(s *Store) {
			fillStore(t, s, model{}, 4, 3, "k")
			if err := s.db.h.Set(keyTerm, []byte{1, 2, 3}, nil); err != nil {
				t.Fatal(err)
			}
		})), invalid},
		{"abort", func(t *testing.T, s *Store) error {
			l, err := s.NewLoader()
			if err != nil {
				return err
			}
			if err := writeAll(l, good[:len(good)/2]); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if err := l.Abort(); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			if err := l.Abort(); err != nil {
				t.Fatalf("Abort again: %v", err)
			}
			if _, err := l.Finish(); !errors.Is(err, ErrClosed) {
				t.Fatalf("Finish after Abort: %v", err)
			}
			_, err = s.Install(l, 0)
			return err
		}, closed},
		{"abort after finish", func(t *testing.T, s *Store) error {
			l, err := s.NewLoader()
			if err != nil {
				return err
			}
			if err := writeAll(l, good); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if _, err := l.Finish(); err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if err := l.Abort(); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			return l.Write(good[0])
		}, closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "shard")
			s := mustOpen(t, dir, Options{})
			fillStore(t, s, model{}, 3, 20, "old")
			want := fingerprintOf(t, s)

			err := tc.feed(t, s)
			switch {
			case err == nil:
				t.Fatal("the broken snapshot was accepted")
			case tc.want == invalid && !errors.Is(err, ErrInvalidSnapshot):
				t.Fatalf("error %v, want ErrInvalidSnapshot", err)
			case tc.want == closed && !errors.Is(err, ErrClosed):
				t.Fatalf("error %v, want ErrClosed", err)
			}
			t.Logf("refused: %v", err)
			assertFingerprint(t, "after the failed load", want, fingerprintOf(t, s))
			if got := listDir(t, vfs.Default, parent); !slices.Equal(got, []string{"shard"}) {
				t.Fatalf("the failed load left %q beside the store", got)
			}
			// The store works, and is the same after a restart.
			fillStore(t, s, model{}, 3, 1, "more")
			want = fingerprintOf(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, dir, Options{})
			assertFingerprint(t, "after reopen", want, fingerprintOf(t, s))
		})
	}
}

// TestLoaderChecksTheChunkSequence: the loader itself refuses a chunk
// sequence that breaks its rules, with ErrInvalidSnapshot: Write the chunk
// that breaks it, Finish a last file that misses chunks. The broken file
// here follows a good snapshot and is one Pebble never reads, so nothing
// but the loader can refuse it.
func TestLoaderChecksTheChunkSequence(t *testing.T) {
	good, info, data := memSource(t)
	zzz := func(index, count int32) Chunk {
		return Chunk{Name: "zzz", Index: index, Count: count, Content: []byte{byte('a' + index)}}
	}
	for _, tc := range []struct {
		name  string
		extra []Chunk
		bad   int // the chunk of extra Write refuses; len(extra): Finish refuses; -1: accepted
	}{
		{"whole file", []Chunk{zzz(0, 3), zzz(1, 3), zzz(2, 3)}, -1},
		{"chunks out of order", []Chunk{zzz(0, 3), zzz(2, 3), zzz(1, 3)}, 1},
		{"file sent twice", []Chunk{zzz(0, 1), zzz(0, 1)}, 1},
		{"last file unfinished", []Chunk{zzz(0, 2)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
			before := fingerprintOf(t, s)
			l, err := s.NewLoader()
			if err != nil {
				t.Fatal(err)
			}
			if err := writeAll(l, good); err != nil {
				t.Fatal(err)
			}
			for i, c := range tc.extra {
				err := l.Write(c)
				if i == tc.bad {
					if !errors.Is(err, ErrInvalidSnapshot) {
						t.Fatalf("Write(chunk %d of %d of %q): %v, want ErrInvalidSnapshot", c.Index, c.Count, c.Name, err)
					}
					assertFingerprint(t, "after the refused chunk", before, fingerprintOf(t, s))
					return
				}
				if err != nil {
					t.Fatalf("Write(chunk %d of %d of %q): %v", c.Index, c.Count, c.Name, err)
				}
			}
			_, err = l.Finish()
			if tc.bad < 0 {
				if err != nil {
					t.Fatalf("Finish: %v", err)
				}
				if _, err := s.Install(l, 0); err != nil {
					t.Fatalf("Install: %v", err)
				}
				checkInstalled(t, "after Install", fingerprintOf(t, s), info, data)
				return
			}
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("Finish: %v, want ErrInvalidSnapshot", err)
			}
			assertFingerprint(t, "after the refused snapshot", before, fingerprintOf(t, s))
		})
	}
}

func writeAll(l *Loader, chunks []Chunk) error {
	for _, c := range chunks {
		c.Content = slices.Clone(c.Content) // the FS may scribble on it
		if err := l.Write(c); err != nil {
			return err
		}
	}
	return nil
}

// feedInstall loads chunks into s and installs them.
func feedInstall(chunks []Chunk) func(*testing.T, *Store) error {
	return func(_ *testing.T, s *Store) error {
		_, err := load(s, chunks, 0)
		return err
	}
}

func TestLoaderRefusesUnsafeNames(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "shard")
	s := mustOpen(t, dir, Options{})
	fillStore(t, s, model{}, 3, 5, "k")
	want := fingerprintOf(t, s)
	for _, name := range []string{
		"../x", "/etc/x", "..", ".", "", "a/b", `a\b`, ".hidden", "-dash", "_under",
		"x\x00y", "sp ace", "ünï", strings.Repeat("n", 256), "../" + markerName, "..\\x",
	} {
		l, err := s.NewLoader()
		if err != nil {
			t.Fatal(err)
		}
		err = l.Write(Chunk{Name: name, Index: 0, Count: 1, Content: []byte("escape")})
		if !errors.Is(err, ErrInvalidSnapshot) {
			t.Errorf("name %q: %v, want ErrInvalidSnapshot", name, err)
		}
	}
	for _, p := range []string{filepath.Join(parent, "x"), filepath.Join(dir, "x"), "/etc/x"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (%v)", p, err)
		}
	}
	assertFingerprint(t, "after unsafe names", want, fingerprintOf(t, s))
	// The longest safe name is fine.
	l, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Abort()
	if err := l.Write(Chunk{Name: "a" + strings.Repeat("b._-9", 50) + "1234", Count: 1}); err != nil {
		t.Fatalf("a 255-byte safe name: %v", err)
	}
}

func TestLoaderSizeLimit(t *testing.T) {
	src := newSource(t, t.TempDir(), Options{SnapshotChunkSize: 1000})
	sn, err := src.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	chunks := readChunks(t, sn)
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	// What counts: each file's content, at least 4096 bytes per file.
	var size, content int64
	files := map[string]int64{}
	for _, c := range chunks {
		files[c.Name] += int64(len(c.Content))
		content += int64(len(c.Content))
	}
	for _, n := range files {
		size += max(n, MinCountedFileSize)
	}
	if content != sn.Size() {
		t.Fatalf("chunks hold %d bytes, the snapshot says %d", content, sn.Size())
	}
	if size <= content {
		t.Fatalf("no file of the snapshot is under 4096 bytes (%d files, %d bytes): the test shows nothing", len(files), content)
	}
	small := mustOpen(t, t.TempDir(), Options{MaxSnapshotSize: size - 1})
	want := fingerprintOf(t, small)
	if _, err := load(small, chunks, 0); !errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("a snapshot of %d bytes under a limit of %d: %v", size, size-1, err)
	}
	assertFingerprint(t, "after oversize", want, fingerprintOf(t, small))
	exact := mustOpen(t, t.TempDir(), Options{MaxSnapshotSize: size})
	if _, err := load(exact, chunks, 0); err != nil {
		t.Fatalf("a snapshot of exactly the limit: %v", err)
	}
}

// TestLoaderSizeLimitCountsFiles: empty files count too, 4096 bytes each,
// so that a snapshot of many of them cannot fill a disk's inodes under a
// limit it never reaches in bytes. The file that passes the limit is
// refused before anything of it stays, and the store is as it was.
func TestLoaderSizeLimitCountsFiles(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{MaxSnapshotSize: 3*4096 + 10})
	want := fingerprintOf(t, s)
	l, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Abort()
	for i := range 3 {
		if err := l.Write(Chunk{Name: fmt.Sprintf("empty-%d", i), Count: 1}); err != nil {
			t.Fatalf("empty file %d of 3 under a limit of 3×4096+10: %v", i, err)
		}
	}
	// A fourth file passes the limit, whatever its content.
	if err := l.Write(Chunk{Name: "small", Count: 1}); !errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("a fourth file: %v, want ErrInvalidSnapshot", err)
	}
	assertFingerprint(t, "after the refused file", want, fingerprintOf(t, s))

	s2 := mustOpen(t, t.TempDir(), Options{MaxSnapshotSize: 4096 + 10})
	l2, err := s2.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Abort()
	// Content within a file's 4096 bytes adds nothing; past them it does.
	for i, n := range []int{4000, 96, 10} { // 4096 counted so far, then 4106
		if err := l2.Write(Chunk{Name: "f", Index: int32(i), Count: 4, Content: make([]byte, n)}); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if err := l2.Write(Chunk{Name: "f", Index: 3, Count: 4, Content: []byte{1}}); !errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("one byte past the limit: %v, want ErrInvalidSnapshot", err)
	}
}

// TestLoaderIOErrors injects an I/O error into each file-system operation
// that the loader and Install make themselves (the store's own file
// system is swapped for an injecting one; Pebble's operations are left
// alone: Pebble treats some failures as fatal). An error before the marker
// rename leaves the store untouched, and is not ErrInvalidSnapshot; so
// does one in the directory sync after the rename (the old marker is put
// back); one in the cleanup after the swap is only logged.
func TestLoaderIOErrors(t *testing.T) {
	chunks, info, newData := memSource(t)
	for k := int64(1); ; k++ {
		mem := vfs.NewMem()
		s, err := Open("/shard", Options{FS: mem})
		if err != nil {
			t.Fatal(err)
		}
		fillStore(t, s, model{}, 3, 5, "old")
		old := fingerprintOf(t, s)
		inj := &failOp{k: k}
		s.fs = errorfs.Wrap(mem, inj)
		_, err = load(s, chunks, 0)
		s.fs = mem
		fired, op := inj.result()
		switch {
		case !fired:
			if err != nil {
				t.Fatalf("no error injected, load failed: %v", err)
			}
			t.Logf("injected an error into each of %d operations", k-1)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return
		case err == nil:
			// Only the removal of the replaced database may fail unseen.
			checkInstalled(t, "after a failed "+op, fingerprintOf(t, s), info, newData)
		case errors.Is(err, ErrInvalidSnapshot) || !errors.Is(err, errorfs.ErrInjected):
			t.Fatalf("failed %s: error %v, want the injected I/O error", op, err)
		case s.db.h != nil:
			assertFingerprint(t, "after a failed "+op, old, fingerprintOf(t, s))
		}
		closedByInstall := s.db.h == nil
		if err := s.Close(); err != nil {
			t.Fatalf("Close after a failed %s: %v", op, err)
		}
		r, err := Open("/shard", Options{FS: mem})
		if err != nil {
			t.Fatalf("reopen after a failed %s: %v", op, err)
		}
		got := fingerprintOf(t, r)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if got.Commit == old.Commit && !closedByInstall {
			assertFingerprint(t, "reopen after a failed "+op, old, got)
		} else {
			checkInstalled(t, "reopen after a failed "+op, got, info, newData)
			if len(got.DirectoryListed) != 3 {
				t.Fatalf("reopen after a failed %s: directory %q", op, got.DirectoryListed)
			}
		}
	}
}

// failOp fails the k-th file-system operation.
type failOp struct {
	k  int64
	mu struct {
		sync.Mutex
		n  int64
		op string
	}
}

func (f *failOp) String() string { return "failOp" }

func (f *failOp) MaybeError(op errorfs.Op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.n++
	if f.mu.n != f.k {
		return nil
	}
	f.mu.op = fmt.Sprintf("op %d (kind %d) on %s", f.mu.n, op.Kind, op.Path)
	return errorfs.ErrInjected
}

func (f *failOp) result() (fired bool, op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.op != "", f.mu.op
}

// memSource returns the chunks of a snapshot of a small store on a memory
// file system, with what it carries and its data.
func memSource(t testing.TB) ([]Chunk, SnapshotInfo, model) {
	t.Helper()
	s, err := Open("/src", Options{FS: vfs.NewMem(), SnapshotChunkSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := model{}
	fillStore(t, s, m, 5, 20, "src")
	if err := s.db.h.Flush(); err != nil {
		t.Fatal(err)
	}
	fillStore(t, s, m, 6, 10, "src")
	chunks, info := takeSnapshot(t, s)
	return chunks, info, m
}

// checkInstalled checks that a store fingerprint is that of the snapshot
// described by info and data, with its log reset pending.
func checkInstalled(t testing.TB, what string, got fingerprint, info SnapshotInfo, data model) {
	t.Helper()
	want := got
	want.Data, want.Term, want.Options, want.Commit = data, info.Term, info.Options, info.Commit
	want.ResetPending, want.ResetTo = true, info.Commit
	assertFingerprint(t, what, want, got)
}

// TestLoaderOpenIOError: an operating-system I/O error while opening the
// staged database (reading its manifest) or while checking it (reading a
// table, which only happens once the manifest was read) is an I/O
// failure, not an invalid snapshot, and the live store is as it was.
func TestLoaderOpenIOError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fails func(op errorfs.Op) bool
	}{
		{"manifest", func(op errorfs.Op) bool {
			return op.Kind == errorfs.OpFileRead && strings.Contains(op.Path, "MANIFEST")
		}},
		{"table", func(op errorfs.Op) bool {
			return (op.Kind == errorfs.OpFileRead || op.Kind == errorfs.OpFileReadAt) && strings.HasSuffix(op.Path, ".sst")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunks, _, _ := memSource(t)
			var armed atomic.Bool
			fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
				if armed.Load() && tc.fails(op) {
					return &os.PathError{Op: "read", Path: op.Path, Err: syscall.EIO}
				}
				return nil
			}))
			s := mustOpen(t, "/shard", Options{FS: fs})
			fillStore(t, s, model{}, 3, 5, "old")
			want := fingerprintOf(t, s)
			l, err := s.NewLoader()
			if err != nil {
				t.Fatal(err)
			}
			if err := writeAll(l, chunks); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			_, err = l.Finish()
			armed.Store(false)
			if !errors.Is(err, syscall.EIO) || errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("Finish with a failing disk: %v, want EIO and not ErrInvalidSnapshot", err)
			}
			assertFingerprint(t, "after the failed open", want, fingerprintOf(t, s))
		})
	}
}

func TestCloseAbortsLoaders(t *testing.T) {
	chunks, _, _ := memSource(t)
	mem := vfs.NewMem()
	s, err := Open("/shard", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	writing, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAll(writing, chunks[:1]); err != nil {
		t.Fatal(err)
	}
	finished, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAll(finished, chunks); err != nil {
		t.Fatal(err)
	}
	if _, err := finished.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, mem, "/shard"); !slices.Equal(got, []string{"CURRENT", "LOCK", "db-000001"}) {
		t.Fatalf("after Close: %q", got)
	}
	if _, err := s.Install(finished, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Install on a closed store: %v", err)
	}
	other := mustOpen(t, "/other", Options{FS: mem})
	if _, err := other.Install(finished, 0); err == nil {
		t.Fatal("Install of another store's loader succeeded")
	}
}

// TestLoaderRefusesDamagedTables: a snapshot whose tables were damaged on
// the way (one byte flipped in a data block of each .sst in turn) is
// refused with ErrInvalidSnapshot and the store stays as it was. Pebble's
// default reaction to a checksum mismatch is fatal: it crashed the
// process from a compaction of the staged database.
func TestLoaderRefusesDamagedTables(t *testing.T) {
	src := mustOpen(t, t.TempDir(), Options{})
	fillStore(t, src, model{}, 3, 400, "k")
	chunks, _ := takeSnapshot(t, src)
	var tables []int
	for i, c := range chunks {
		if strings.HasSuffix(c.Name, ".sst") && c.Index == 0 && len(c.Content) > 1024 {
			tables = append(tables, i)
		}
	}
	if len(tables) == 0 {
		t.Fatal("the snapshot has no table of data")
	}
	dst := mustOpen(t, t.TempDir(), Options{})
	fillStore(t, dst, model{}, 2, 10, "old")
	before := fingerprintOf(t, dst)
	for _, i := range tables {
		damaged := slices.Clone(chunks)
		damaged[i].Content = bytes.Clone(damaged[i].Content)
		damaged[i].Content[len(damaged[i].Content)/4] ^= 0x10
		if _, err := load(dst, damaged, 0); !errors.Is(err, ErrInvalidSnapshot) {
			t.Errorf("%s damaged: %v, want ErrInvalidSnapshot", chunks[i].Name, err)
		}
		assertFingerprint(t, "after a damaged snapshot", before, fingerprintOf(t, dst))
	}
	if _, err := load(dst, chunks, 0); err != nil {
		t.Fatalf("the undamaged snapshot: %v", err)
	}
}

// TestLoaderRefusesAPebbleLogWithRecords: a snapshot's data is in its
// tables (Snapshot flushes, and leaves Pebble's logs out). A Pebble log
// holding records is refused as it arrives: replayed when the staged
// store opens, a malformed one (here a record with a valid checksum
// carrying an ingest of a file number that is not a uvarint) makes Pebble
// panic, or spin, on a goroutine of its own. Nothing of it is staged, and
// the live store is untouched and usable. An empty log is taken.
func TestLoaderRefusesAPebbleLogWithRecords(t *testing.T) {
	chunks, info, _ := memSource(t)
	if slices.ContainsFunc(chunks, func(c Chunk) bool { return isPebbleLog(c.Name) }) {
		t.Errorf("the snapshot carries a Pebble log")
	}
	batch := binary.LittleEndian.AppendUint64(nil, 1<<40) // sequence number
	batch = binary.LittleEndian.AppendUint32(batch, 1)    // one record
	batch = append(batch, byte(pebble.InternalKeyKindIngestSST), 1, 0x80)
	var log bytes.Buffer
	w := record.NewWriter(&log)
	if _, err := w.WriteRecord(batch); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mem := vfs.NewMem()
	s := mustOpen(t, "/shard", Options{FS: mem})
	fillStore(t, s, model{}, 3, 5, "old")
	want := fingerprintOf(t, s)
	before := listDir(t, mem, "/shard")
	l, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	bad := append(slices.Clone(chunks), Chunk{Name: "999999.log", Count: 1, Content: log.Bytes()})
	if err := writeAll(l, bad); !errors.Is(err, ErrInvalidSnapshot) || !strings.Contains(err.Error(), "999999.log") {
		t.Fatalf("a snapshot with a Pebble log holding records: %v, want ErrInvalidSnapshot naming the log", err)
	}
	if _, err := s.Install(l, 0); !errors.Is(err, ErrInvalidSnapshot) {
		t.Errorf("Install after the refused chunk: %v, want its error again", err)
	}
	if got := fingerprintOf(t, s); !cmp.Equal(got, want) {
		t.Errorf("the live store changed:\n%s", cmp.Diff(want, got))
	}
	if got := listDir(t, mem, "/shard"); !slices.Equal(got, before) {
		t.Errorf("the store directory holds %v, %v before", got, before)
	}
	fillStore(t, s, model{}, 3, 1, "after")
	withEmpty := append(slices.Clone(chunks), Chunk{Name: "999999.log", Count: 1})
	if got, err := load(s, withEmpty, 0); err != nil || got != info {
		t.Fatalf("a snapshot with an empty Pebble log: %v, %v; want %v", got, err, info)
	}
}

// TestInstallIntoAFailedStoreAbortsTheLoader: Install refuses to run on a
// store that failed (a fatal Pebble error of the live database), and
// abandons the snapshot as it does on any error before the swap: the
// staged files are removed and the loader is over.
func TestInstallIntoAFailedStoreAbortsTheLoader(t *testing.T) {
	chunks, _, _ := memSource(t)
	var failing atomic.Bool
	mem := vfs.NewMem()
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) &&
			strings.HasPrefix(op.Path, "/shard/db-000001/") && strings.HasSuffix(op.Path, ".log") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	s, err := Open("/shard", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }() // reports the store's failure
	fillStore(t, s, model{}, 3, 5, "old")
	before := listDir(t, mem, "/shard")
	l := staged(t, s, chunks)
	if _, err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	if err := s.SetTerm(4, TermOptions{}); !errors.Is(err, ErrFailed) {
		t.Fatalf("SetTerm with the live WAL's sync failing: %v, want ErrFailed", err)
	}
	failing.Store(false)
	if _, err := s.Install(l, 0); !errors.Is(err, ErrFailed) {
		t.Fatalf("Install into a failed store: %v, want ErrFailed", err)
	}
	if got := listDir(t, mem, "/shard"); !slices.Equal(got, before) {
		t.Errorf("after the refused Install the store directory holds %q, %q before", got, before)
	}
	if _, err := l.Finish(); !errors.Is(err, ErrFailed) {
		t.Errorf("Finish after the refused Install: %v, want the loader over with ErrFailed", err)
	}
}

// staged returns a new loader of s into which chunks were written.
func staged(t *testing.T, s *Store, chunks []Chunk) *Loader {
	t.Helper()
	l, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAll(l, chunks); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLoaderRefusesRangeKeys: the store writes no range key; a snapshot
// holding one (which Pebble's background work would decode on its own
// goroutines) is refused, and the live store is untouched.
func TestLoaderRefusesRangeKeys(t *testing.T) {
	src := mustOpen(t, "/src", Options{FS: vfs.NewMem()})
	fillStore(t, src, model{}, 2, 3, "k")
	if err := src.db.h.RangeKeySet([]byte{userPrefix, 'a'}, []byte{userPrefix, 'b'}, nil, []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	chunks, _ := takeSnapshot(t, src)
	s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
	fillStore(t, s, model{}, 3, 5, "old")
	want := fingerprintOf(t, s)
	if _, err := load(s, chunks, 0); !errors.Is(err, ErrInvalidSnapshot) || !strings.Contains(err.Error(), "range key") {
		t.Fatalf("a snapshot holding a range key: %v, want ErrInvalidSnapshot naming it", err)
	}
	if got := fingerprintOf(t, s); !cmp.Equal(got, want) {
		t.Errorf("the live store changed:\n%s", cmp.Diff(want, got))
	}
}
