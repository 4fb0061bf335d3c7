package store

// Snapshots whose files Pebble reads as valid (every checksum right) but
// whose manifest lists the tables in ways that Pebble does not check on
// opening and trips over later, on goroutines of its own: the loader
// refuses them. The tables are written by Pebble itself, then the
// manifest is edited by appending version edits. Last, a snapshot whose
// reading panics in the middle of the loader's check.

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// refusedLeavingTheStore loads chunks into a store with data, and fails
// the test unless the load is refused with ErrInvalidSnapshot and the
// store is left as it was.
func refusedLeavingTheStore(t *testing.T, chunks []Chunk, why string) {
	t.Helper()
	s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
	fillStore(t, s, model{}, 3, 5, "old")
	before := fingerprintOf(t, s)
	if _, err := load(s, chunks, 0); !errors.Is(err, ErrInvalidSnapshot) || !strings.Contains(err.Error(), why) {
		t.Fatalf("load: %v, want ErrInvalidSnapshot saying %q", err, why)
	}
	assertFingerprint(t, "after the refused snapshot", before, fingerprintOf(t, s))
}

// wholeFiles returns chunks with each file in one chunk.
func wholeFiles(chunks []Chunk) []Chunk {
	var out []Chunk
	for _, c := range chunks {
		if c.Index == 0 {
			out = append(out, Chunk{Name: c.Name, Count: 1})
		}
		out[len(out)-1].Content = append(out[len(out)-1].Content, c.Content...)
	}
	return out
}

// withManifestEdit returns the snapshot with edit appended to its MANIFEST
// as one more version edit record (the record log's checksums are valid).
func withManifestEdit(t testing.TB, chunks []Chunk, edit []byte) []Chunk {
	t.Helper()
	chunks = wholeFiles(chunks)
	for i, c := range chunks {
		if !strings.HasPrefix(c.Name, "MANIFEST-") {
			continue
		}
		var buf bytes.Buffer
		w := record.NewWriter(&buf)
		r := record.NewReader(bytes.NewReader(c.Content), 0)
		for {
			rec, err := r.Next()
			if err != nil {
				break
			}
			var b bytes.Buffer
			if _, err := b.ReadFrom(rec); err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteRecord(b.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.WriteRecord(edit); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		chunks[i].Content = buf.Bytes()
		return chunks
	}
	t.Fatal("no MANIFEST in the snapshot")
	return nil
}

// Version edit encoding (Pebble's internal/manifest, not importable).
type versionEdit []byte

func (e versionEdit) uvarint(v uint64) versionEdit { return binary.AppendUvarint(e, v) }

func (e versionEdit) key(k pebble.InternalKey) versionEdit {
	e = e.uvarint(uint64(len(k.UserKey) + 8))
	e = append(e, k.UserKey...)
	return binary.LittleEndian.AppendUint64(e, uint64(k.Trailer))
}

// deleteTable removes table m from level.
func (e versionEdit) deleteTable(level int, m pebble.SSTableInfo) versionEdit {
	return e.uvarint(6).uvarint(uint64(level)).uvarint(uint64(m.FileNum))
}

// addTable adds table m at level (tag new-file2).
func (e versionEdit) addTable(level int, m pebble.SSTableInfo) versionEdit {
	e = e.uvarint(100).uvarint(uint64(level)).uvarint(uint64(m.FileNum)).uvarint(m.Size)
	e = e.key(m.Smallest).key(m.Largest)
	return e.uvarint(uint64(m.SmallestSeqNum)).uvarint(uint64(m.LargestSeqNum))
}

// rawSnapshot writes a store's records with Pebble itself (automatic
// compactions off, so that the layout is the one written) and returns a
// checkpoint of it as a
// snapshot, with its tables level by level. write writes after the
// store's records (format 1, term 3, options), flushing as it likes; a
// flush follows it.
func rawSnapshot(t testing.TB, write func(db *pebble.DB, apply func(term logpos.Term, off logpos.Offset, key, value string))) ([]Chunk, [][]pebble.SSTableInfo) {
	t.Helper()
	mem := vfs.NewMem()
	opts := Options{FS: mem}.withDefaults().pebbleOptions(false, nil)
	opts.DisableAutomaticCompactions = true
	db, err := pebble.Open("/src", opts)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	b := db.NewBatch()
	must(b.Set(keyFormat, encodeUint64(formatVersion), nil))
	must(b.Set(keyTerm, encodeTerm(3), nil))
	must(b.Set(keyTermOptions, encodeTermOptions(TermOptions{}), nil))
	must(b.Commit(pebble.Sync))
	apply := func(term logpos.Term, off logpos.Offset, key, value string) {
		b := db.NewBatch()
		must(b.Set(userKey(nil, []byte(key)), []byte(value), nil))
		must(b.Set(keyCommit, encodeEntryID(logpos.EntryID{Term: term, Offset: off}), nil))
		must(b.Commit(pebble.NoSync))
	}
	write(db, apply)
	must(db.Flush())
	tables, err := db.SSTables()
	must(err)
	must(db.Checkpoint("/cp"))
	must(db.Close())
	var chunks []Chunk
	for _, c := range chunkDir(t, mem, "/cp", 1<<20) {
		if !isPebbleLog(c.Name) {
			chunks = append(chunks, c)
		}
	}
	return chunks, tables
}

// oneTableSnapshot returns a snapshot whose data is in one table, in L0,
// holding range deletions, and that table.
func oneTableSnapshot(t *testing.T) ([]Chunk, pebble.SSTableInfo) {
	chunks, tables := rawSnapshot(t, func(db *pebble.DB, apply func(logpos.Term, logpos.Offset, string, string)) {
		for i := range 300 { // several data blocks
			apply(3, logpos.Offset(i), fmt.Sprintf("k/%05d", i), fmt.Sprintf("value-%d-%s", i, strings.Repeat("v", 40)))
			if i%100 == 10 { // [k/00002, k/00004), [k/00102, k/00104), [k/00202, k/00204)
				start, end := fmt.Sprintf("k/%05d", i-8), fmt.Sprintf("k/%05d", i-6)
				if err := db.DeleteRange(userKey(nil, []byte(start)), userKey(nil, []byte(end)), nil); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	if len(tables[0]) != 1 {
		t.Fatalf("want one table in L0, have %v", tables)
	}
	return chunks, tables[0][0]
}

// TestLoaderRefusesATableListedTwice: the snapshot carries copies of its
// one table (L0) under other file numbers, and its MANIFEST lists them in
// L0 too (an appended version edit). Pebble opens it, and reading it in
// the foreground finds nothing wrong (the merging iterator hides the
// duplicate keys), but with four tables in L0 the second open of Finish
// schedules a compaction of L0, which meets each key twice with one
// sequence number and panics ("pebble: invariant violation: ... out of
// order", internal/compact.(*Iter).nextInStripeHelper) on Pebble's own
// compaction goroutine: the process dies. (With one copy, Finish and
// Install take the snapshot, and the live store's first compaction of L0
// panics the same way.)
func TestLoaderRefusesATableListedTwice(t *testing.T) {
	chunks, tb := oneTableSnapshot(t)
	var edit versionEdit
	var content []byte
	for _, c := range chunks {
		if strings.HasSuffix(c.Name, ".sst") {
			content = c.Content
		}
	}
	cp := tb
	cp.FileNum = 100
	for range 3 {
		edit = edit.addTable(0, cp)
		chunks = append(chunks, Chunk{Name: fmt.Sprintf("%06d.sst", cp.FileNum), Count: 1, Content: content})
		cp.FileNum++
	}
	edit = edit.uvarint(3).uvarint(103) // next file number
	refusedLeavingTheStore(t, withManifestEdit(t, chunks, edit), "has the bounds of another table")
}

// TestLoaderRefusesAVirtualTable: the MANIFEST lists the snapshot's one
// table as a virtual table over its file (as Pebble's excise writes it),
// which the store never makes: refused.
func TestLoaderRefusesAVirtualTable(t *testing.T) {
	chunks, tb := oneTableSnapshot(t)
	edit := versionEdit(nil).deleteTable(0, tb)
	edit = edit.uvarint(105).uvarint(uint64(tb.FileNum)).uvarint(tb.Size) // created backing table
	edit = edit.uvarint(103).uvarint(0).uvarint(100).uvarint(tb.Size)     // new-file4: L0, table 100
	edit = edit.key(tb.Smallest).key(tb.Largest).uvarint(uint64(tb.SmallestSeqNum)).uvarint(uint64(tb.LargestSeqNum))
	edit = edit.uvarint(66).uvarint(uint64(tb.FileNum)).uvarint(1) // virtual over the table's file; end
	edit = edit.uvarint(3).uvarint(101)                            // next file number
	refusedLeavingTheStore(t, withManifestEdit(t, chunks, edit), "is virtual or not local")
}

// TestLoaderRefusesATableInTwoLevels: the MANIFEST lists the snapshot's
// one table (L0) in L6 as well, under the same number. Finish and Install
// take it. The live store's first compaction rewrites one of the two
// references, Pebble deletes the file as obsolete though the other level
// still names it, and the live store is broken: compactions fail ("file
// 000005 (type sstable) unknown to the objstorage provider"), retried in
// the background, and reads of that table fail (Scan returns that error);
// before that compaction, Scan returns each of the table's keys twice.
func TestLoaderRefusesATableInTwoLevels(t *testing.T) {
	chunks, tb := oneTableSnapshot(t)
	refusedLeavingTheStore(t, withManifestEdit(t, chunks, versionEdit(nil).addTable(6, tb)), "listed twice")
}

// TestLoaderRefusesTableBoundsSmallestAboveLargest: the snapshot has three
// tables in L0; the MANIFEST gives the middle one a largest key below its
// smallest one (an appended version edit deleting and re-adding it; its
// largest user key becomes "\x00\x00"). Pebble opens it, the check
// finds a consistent store (the reserved records are in the other
// tables), and Finish and Install take it. In the live store, entries
// applied after Install vanish from reads once flushed next to that
// table.
func TestLoaderRefusesTableBoundsSmallestAboveLargest(t *testing.T) {
	chunks, middle := threeTableSnapshot(t)
	inverted := middle
	inverted.Largest = pebble.MakeInternalKey([]byte{0, 0}, middle.Largest.SeqNum(), middle.Largest.Kind())
	edit := versionEdit(nil).deleteTable(0, middle).addTable(0, inverted)
	refusedLeavingTheStore(t, withManifestEdit(t, chunks, edit), "smallest key above its largest")
}

// TestLoaderRefusesTableBoundsOfOneKeyInverted: as above, but the middle
// table's bounds name one user key, the largest with a sequence number
// above the smallest's. A key sorts before its older versions, so that
// smallest bound is above the largest though their user keys are equal.
func TestLoaderRefusesTableBoundsOfOneKeyInverted(t *testing.T) {
	chunks, middle := threeTableSnapshot(t)
	inverted := middle
	inverted.Largest = pebble.MakeInternalKey(middle.Smallest.UserKey, middle.Smallest.SeqNum()+1, middle.Smallest.Kind())
	edit := versionEdit(nil).deleteTable(0, middle).addTable(0, inverted)
	refusedLeavingTheStore(t, withManifestEdit(t, chunks, edit), "smallest key above its largest")
}

// threeTableSnapshot returns a snapshot of 300 applied entries in three
// tables in L0, and the middle one of them.
func threeTableSnapshot(t *testing.T) ([]Chunk, pebble.SSTableInfo) {
	t.Helper()
	chunks, tables := rawSnapshot(t, func(db *pebble.DB, apply func(logpos.Term, logpos.Offset, string, string)) {
		for i := range 300 {
			if i == 100 || i == 200 {
				if err := db.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			apply(3, logpos.Offset(i), fmt.Sprintf("k/%05d", i), "v")
		}
	})
	if len(tables[0]) != 3 {
		t.Fatalf("want three tables in L0, have %v", tables)
	}
	slices.SortFunc(tables[0], func(a, b pebble.SSTableInfo) int { return cmp.Compare(a.LargestSeqNum, b.LargestSeqNum) })
	return chunks, tables[0][1]
}

// openFiles counts the files opened through it that are not closed yet.
type openFiles struct {
	vfs.FS
	n atomic.Int64
}

func (fs *openFiles) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil {
		return nil, err
	}
	fs.n.Add(1)
	return &countedFile{File: f, fs: fs}, nil
}

type countedFile struct {
	vfs.File
	fs     *openFiles
	closed atomic.Bool
}

func (f *countedFile) Close() error {
	if f.closed.CompareAndSwap(false, true) {
		f.fs.n.Add(-1)
	}
	return f.File.Close()
}

// TestLoaderClosesWhatAPanicInTheCheckLeftOpen: reading the staged store's
// keys panics in the middle (here the file system, on the first data
// block of a table of user keys only, which nothing reads before: the
// store's own records are in another table). The load is refused as an
// invalid snapshot, the store is as it was, and the staged database is
// closed all the same: every file it opened is closed, nothing of it
// stays on disk.
func TestLoaderClosesWhatAPanicInTheCheckLeftOpen(t *testing.T) {
	chunks, tables := rawSnapshot(t, func(db *pebble.DB, apply func(logpos.Term, logpos.Offset, string, string)) {
		apply(3, 0, "a", "v")
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			if err := db.Set(userKey(nil, []byte(fmt.Sprintf("k/%05d", i))), []byte("value"), nil); err != nil {
				t.Fatal(err)
			}
		}
	})
	if len(tables[0]) != 2 {
		t.Fatalf("want two tables in L0, have %v", tables)
	}
	userTable := slices.MaxFunc(tables[0], func(a, b pebble.SSTableInfo) int { return cmp.Compare(a.LargestSeqNum, b.LargestSeqNum) })
	userTableName := fmt.Sprintf("%s.sst", userTable.FileNum)

	var armed, panicked atomic.Bool
	fs := &openFiles{FS: errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && op.Kind == errorfs.OpFileReadAt && op.Offset == 0 && strings.HasSuffix(op.Path, "/"+userTableName) {
			panicked.Store(true)
			panic("injected: reading the table's first block")
		}
		return nil
	}))}
	s := mustOpen(t, "/shard", Options{FS: fs})
	fillStore(t, s, model{}, 3, 5, "old")
	before, open := fingerprintOf(t, s), fs.n.Load()
	entriesBefore := listDir(t, fs, "/shard")

	armed.Store(true)
	_, err := load(s, chunks, 0)
	armed.Store(false)
	if !errors.Is(err, ErrInvalidSnapshot) || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("load: %v, want ErrInvalidSnapshot with the panic", err)
	}
	if !panicked.Load() {
		t.Fatal("the injected panic did not happen")
	}
	if n := fs.n.Load(); n != open {
		t.Errorf("%d files open after the refused load, %d before", n, open)
	}
	if got := listDir(t, fs, "/shard"); !slices.Equal(got, entriesBefore) {
		t.Errorf("the store's directory holds %v after the refused load, %v before", got, entriesBefore)
	}
	assertFingerprint(t, "after the refused snapshot", before, fingerprintOf(t, s))
}

// TestLoaderRefusesACommitIDWithoutTerm: a snapshot whose commit id has
// no term (which no apply writes: every entry has one) is refused.
func TestLoaderRefusesACommitIDWithoutTerm(t *testing.T) {
	chunks, _ := rawSnapshot(t, func(_ *pebble.DB, apply func(logpos.Term, logpos.Offset, string, string)) {
		apply(logpos.NoTerm, 5, "k", "v")
	})
	refusedLeavingTheStore(t, chunks, "has no term")
}

// TestLoaderRefusesADamagedManifest: a snapshot whose manifest was
// damaged or cut short on the way (chunks carry no length: the sequence
// 0..Count-1 is complete) is refused, and the store keeps its data.
// Pebble reads a manifest up to its first damaged or torn record and
// ignores the rest: the staged store opened at the older version the
// records before describe, and the loader installed it, commit id and
// all, without an error.
func TestLoaderRefusesADamagedManifest(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"a bit of its last record flipped", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }},
		{"its last chunk cut 10 bytes short", func(b []byte) []byte { return b[:len(b)-10] }},
	} {
		t.Run(c.name, func(t *testing.T) {
			chunks, info, _ := memSource(t) // two flushes: two version edits
			whole := wholeFiles(chunks)
			i := slices.IndexFunc(whole, func(c Chunk) bool { return strings.HasPrefix(c.Name, "MANIFEST-") })
			if i < 0 {
				t.Fatal("the snapshot holds no manifest")
			}
			whole[i].Content = c.damage(bytes.Clone(whole[i].Content))

			s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
			fillStore(t, s, model{}, 3, 5, "old")
			before, commit := userData(t, s), s.Commit()
			got, err := load(s, whole, 0)
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("Install = %v, %v; want ErrInvalidSnapshot (the snapshot's commit is %v)", got, err, info.Commit)
			}
			if s.Commit() != commit || !maps.Equal(userData(t, s), before) {
				t.Fatalf("after the refused install: commit %v (was %v), data changed: %v", s.Commit(), commit, !maps.Equal(userData(t, s), before))
			}
		})
	}
}

// TestLoaderRefusesAManifestWhoseLastRecordIsDamaged: a manifest whose
// last record is damaged is refused even when the records before it
// describe the whole snapshot (here a record appended to a whole
// manifest, then damaged), so that Pebble, which stops at the damaged
// record, would open the staged store as sent.
func TestLoaderRefusesAManifestWhoseLastRecordIsDamaged(t *testing.T) {
	chunks, _, _ := memSource(t)
	whole := withManifestEdit(t, chunks, versionEdit(nil).uvarint(3).uvarint(1000)) // next file number 1000
	if _, err := load(mustOpen(t, "/undamaged", Options{FS: vfs.NewMem()}), whole, 0); err != nil {
		t.Fatalf("the manifest with the record appended, undamaged: %v", err)
	}
	i := slices.IndexFunc(whole, func(c Chunk) bool { return strings.HasPrefix(c.Name, "MANIFEST-") })
	whole[i].Content = bytes.Clone(whole[i].Content)
	whole[i].Content[len(whole[i].Content)-1] ^= 0x01
	refusedLeavingTheStore(t, whole, "does not read to its end")
}
