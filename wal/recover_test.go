package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/internal/durable"
	"github.com/tablefsm/tablefsm/logpos"
)

func listSuffix(t testing.TB, fs vfs.FS, dir, suffix string) []string {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, suffix) {
			out = append(out, fs.PathJoin(dir, n))
		}
	}
	slices.Sort(out)
	return out
}

func readBytes(t testing.TB, fs vfs.FS, path string) []byte {
	t.Helper()
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readIndexFile returns the header and the positions of index file path.
func readIndexFile(t testing.TB, fs vfs.FS, path string) (indexHeader, []uint32) {
	t.Helper()
	b := readBytes(t, fs, path)
	h, err := decodeIndexHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	p, err := decodePositions(&h, b[indexHeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func writeBytes(t testing.TB, fs vfs.FS, path string, b []byte) {
	t.Helper()
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// closedLog writes entries 0..n-1 to a closed log in a new memory FS.
func closedLog(t testing.TB, n logpos.Offset) (vfs.FS, []logpos.Entry) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	all := entries(0, n-1, 0)
	mustAppend(t, l, all...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return fs, all
}

func optsKeep(fs vfs.FS, keep logpos.Offset) Options {
	o := memOpts(fs)
	o.MustKeepBelow = keep + 1
	return o
}

func TestTornTail(t *testing.T) {
	next := entry(100, 0)
	rec, _ := appendRecord(nil, &next, 0)
	for _, tc := range []struct {
		name string
		torn []byte
	}{
		{"half a header", rec[:3]},
		{"header only", rec[:recordHeaderSize]},
		{"half a record", rec[:len(rec)/2]},
		{"whole record, wrong chain", rec},
		{"garbage", bytes.Repeat([]byte{0xa5}, 40)},
		{"garbage after zeroes", append(make([]byte, 30), 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, all := closedLog(t, 100)
			segs := listSuffix(t, fs, "wal", segmentSuffix)
			last := segs[len(segs)-1]
			clean := readBytes(t, fs, last)
			writeBytes(t, fs, last, append(bytes.Clone(clean), tc.torn...))

			// Cutting 100 is refused when 100 must be kept.
			if _, err := Open("wal", optsKeep(fs, 100)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("MustKeepBelow 101: %v, want ErrCorrupt", err)
			}
			l := mustOpen(t, "wal", optsKeep(fs, 99))
			checkEntries(t, readAll(t, l, 0), all)
			if got := l.LastDurable().Offset; got != 99 {
				t.Fatalf("LastDurable = %d", got)
			}
			// The tail is zeroed: nothing of it comes back.
			if got := readBytes(t, fs, last); !bytes.Equal(got[:len(clean)], clean) || !isZero(got[len(clean):]) {
				t.Fatal("torn tail not zeroed")
			}
			mustAppend(t, l, entries(100, 120, 1)...)
			mustSync(t, l)
			l.Close()
			l = mustOpen(t, "wal", optsKeep(fs, 120))
			defer l.Close()
			checkEntries(t, readAll(t, l, 0), append(all, entries(100, 120, 1)...))
		})
	}
}

func TestZeroedRolledOverSegment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content func(b []byte) []byte // from a valid next segment
		later   bool                  // one more segment after it
	}{
		{"all zeroes", func(b []byte) []byte { return make([]byte, len(b)) }, false},
		{"empty file", func(b []byte) []byte { return nil }, false},
		{"header only", func(b []byte) []byte { return append(b[:segmentHeaderSize:segmentHeaderSize], make([]byte, 64)...) }, false},
		{"zeroes, then a later segment", func(b []byte) []byte { return make([]byte, len(b)) }, true},
		{"bad header, valid records", func(b []byte) []byte { c := bytes.Clone(b); c[0] ^= 1; return c }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, all := closedLog(t, 100)
			// Build the segment that would follow, on a copy of the log.
			l := mustOpen(t, "wal", memOpts(fs))
			tail := l.LastCRC()
			l.Close()
			next := entries(100, 105, 0)
			var b []byte
			b = appendSegmentHeader(b, segmentHeader{first: 100, prevCRC: tail})
			crc := tail
			for i := range next {
				b, crc = appendRecord(b, &next[i], crc)
			}
			writeBytes(t, fs, "wal/"+segmentName(100), tc.content(b))
			if tc.later {
				writeBytes(t, fs, "wal/"+segmentName(106), appendSegmentHeader(nil, segmentHeader{first: 106, prevCRC: crc}))
			}
			if _, err := Open("wal", optsKeep(fs, 100)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("MustKeepBelow 101: %v, want ErrCorrupt", err)
			}
			l = mustOpen(t, "wal", optsKeep(fs, 99))
			defer l.Close()
			checkEntries(t, readAll(t, l, 0), all)
			for _, s := range listSuffix(t, fs, "wal", segmentSuffix) {
				if strings.Contains(s, segmentName(100)) || strings.Contains(s, segmentName(106)) {
					t.Fatalf("%s not discarded", s)
				}
			}
			mustAppend(t, l, entry(100, 1))
			mustSync(t, l)
		})
	}
}

func TestIndexRebuilt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(b []byte) []byte
		rebuilt bool // at Open; otherwise the first reader that needs it scans the segment, and the index is written again
	}{
		{"missing", nil, true},
		{"empty", func([]byte) []byte { return nil }, true},
		{"short", func(b []byte) []byte { return b[:indexHeaderSize+2] }, true},
		{"header bit flip", func(b []byte) []byte { b[9] ^= 4; return b }, true},
		{"wrong count", func(b []byte) []byte { return append(b, 0, 0, 0, 0) }, true},
		{"position bit flip", func(b []byte) []byte { b[indexHeaderSize+5] ^= 1; return b }, false},
		{"positions zeroed", func(b []byte) []byte { clear(b[indexHeaderSize:]); return b }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, all := closedLog(t, 100)
			idx := listSuffix(t, fs, "wal", indexSuffix)
			if len(idx) < 3 {
				t.Fatalf("%d index files", len(idx))
			}
			victim := idx[1]
			orig := readBytes(t, fs, victim)
			if tc.damage == nil {
				if err := fs.Remove(victim); err != nil {
					t.Fatal(err)
				}
			} else {
				writeBytes(t, fs, victim, tc.damage(bytes.Clone(orig)))
			}
			l := mustOpen(t, "wal", optsKeep(fs, 99))
			defer l.Close()
			if tc.rebuilt {
				if got := readBytes(t, fs, victim); !bytes.Equal(got, orig) {
					t.Fatal("index not rebuilt as it was")
				}
			}
			// Every seek works, forward and backward.
			for from := logpos.Offset(0); from < 100; from += 7 {
				checkEntries(t, readAll(t, l, from), all[from:])
			}
			r, _ := l.NewReverseReader()
			for i := 99; i >= 0; i-- {
				e, err := r.Next()
				if err != nil {
					t.Fatalf("reverse at %d: %v", i, err)
				}
				checkEntries(t, []logpos.Entry{e}, all[i:i+1])
			}
			_ = r.Close()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if got := readBytes(t, fs, victim); !bytes.Equal(got, orig) {
				t.Fatal("index not written again after a reader found it damaged")
			}
		})
	}
}

func TestBitFlipIsCorruption(t *testing.T) {
	t.Run("sealed segment", func(t *testing.T) {
		fs, all := closedLog(t, 100)
		segs := listSuffix(t, fs, "wal", segmentSuffix)
		b := readBytes(t, fs, segs[1])
		b[segmentHeaderSize+recordHeaderSize+3] ^= 0x40 // inside the first record's payload
		writeBytes(t, fs, segs[1], b)
		l := mustOpen(t, "wal", optsKeep(fs, 99)) // sealed segments are not scanned
		defer l.Close()
		got, err := tryReadAll(l, 0)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read through a flipped bit: %v", err)
		}
		checkEntries(t, got, all[:len(got)])
		r, _ := l.NewReverseReader()
		defer r.Close()
		for {
			if _, err = r.Next(); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("reverse read through a flipped bit: %v", err)
		}
	})
	t.Run("last segment", func(t *testing.T) {
		fs, all := closedLog(t, 100)
		segs := listSuffix(t, fs, "wal", segmentSuffix)
		last := segs[len(segs)-1]
		b := readBytes(t, fs, last)
		b[segmentHeaderSize+recordHeaderSize+1] ^= 1
		writeBytes(t, fs, last, b)
		_, err := Open("wal", optsKeep(fs, 99))
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open: %v, want ErrCorrupt", err)
		}
		// From MustKeepBelow on, the damage is cut like a torn tail.
		l := mustOpen(t, "wal", optsKeep(fs, logpos.NoOffset))
		defer l.Close()
		got := readAll(t, l, 0)
		if len(got) >= 100 {
			t.Fatal("nothing cut")
		}
		checkEntries(t, got, all[:len(got)])
	})
	t.Run("header of a sealed segment", func(t *testing.T) {
		fs, _ := closedLog(t, 100)
		segs := listSuffix(t, fs, "wal", segmentSuffix)
		b := readBytes(t, fs, segs[1])
		b[17] ^= 1
		writeBytes(t, fs, segs[1], b)
		if _, err := Open("wal", optsKeep(fs, 99)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open: %v, want ErrCorrupt", err)
		}
	})
}

func TestLeftoversRemoved(t *testing.T) {
	fs, all := closedLog(t, 50)
	writeBytes(t, fs, "wal/"+indexName(12345), []byte("orphan"))
	writeBytes(t, fs, "wal/"+fmt.Sprintf(preparedName, 3), make([]byte, 100))
	writeBytes(t, fs, "wal/"+indexName(0)+tmpSuffix, []byte("half"))
	writeBytes(t, fs, "wal/unrelated", []byte("kept"))
	l := mustOpen(t, "wal", optsKeep(fs, 49))
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), all)
	for _, n := range []string{indexName(12345), indexName(0) + tmpSuffix} {
		if _, err := fs.Stat("wal/" + n); err == nil {
			t.Errorf("%s left", n)
		}
	}
	if _, err := fs.Stat("wal/unrelated"); err != nil {
		t.Error("an unrelated file was removed")
	}
}

func TestInterruptedClearFinished(t *testing.T) {
	fs, _ := closedLog(t, 50)
	writeBytes(t, fs, "wal/"+clearMarker, nil)
	// Half the segments already gone.
	segs := listSuffix(t, fs, "wal", segmentSuffix)
	for _, s := range segs[:len(segs)/2] {
		_ = fs.Remove(s)
	}
	l := mustOpen(t, "wal", optsKeep(fs, logpos.NoOffset))
	defer l.Close()
	if l.LastDurable() != logpos.NoEntry {
		t.Fatalf("not empty: %v", l.LastDurable())
	}
	if _, err := fs.Stat("wal/" + clearMarker); err == nil {
		t.Fatal("marker left")
	}
}

func TestSecondOpenLocked(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	if _, err := Open("wal", memOpts(fs)); err == nil {
		t.Fatal("a second Open of the same directory succeeded")
	}
	if _, err := Open("x", Options{FS: fs, SegmentSize: 10}); err == nil {
		t.Fatal("tiny segment size accepted")
	}
}

// TestSegmentsSyncedBeforeTheyRoll: when every entry is synced on its own
// (as a follower's sync loop does when entries trickle in), a segment's
// bytes are all durable before the next append rolls it over, and no sync
// round covers it again. Such segments must still count as synced: they
// get an index, their write handle is closed, Trim can drop them, and the
// next Open scans only the last segment.
func TestSegmentsSyncedBeforeTheyRoll(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	all := entries(0, 199, 0)
	for _, e := range all {
		mustAppend(t, l, e)
		mustSync(t, l)
	}
	l.mu.Lock()
	sealed := l.mu.segs[:len(l.mu.segs)-1]
	if len(sealed) < 5 {
		l.mu.Unlock()
		t.Fatalf("only %d sealed segments", len(sealed))
	}
	for _, s := range sealed {
		if !s.synced || s.file != nil {
			t.Errorf("sealed segment %d: synced %v, write handle open %v", s.first, s.synced, s.file != nil)
		}
	}
	l.mu.Unlock()
	if err := l.Trim(150); err != nil {
		t.Fatal(err)
	}
	first := l.FirstOffset()
	if first == 0 || first > 150 {
		t.Errorf("after Trim(150) the log starts at %d", first)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, idx := listSuffix(t, fs, "wal", segmentSuffix), listSuffix(t, fs, "wal", indexSuffix)
	if len(idx) != len(segs)-1 {
		t.Errorf("%d index files for %d segments", len(idx), len(segs))
	}
	// Reopening reads the records of the last segment only.
	counting, scanned := recordReads(fs)
	l = mustOpen(t, "wal", memOpts(counting))
	defer l.Close()
	if got := scanned(); len(got) > 1 {
		t.Errorf("Open read the records of %d segments: %q", len(got), got)
	}
	checkEntries(t, readAll(t, l, first), all[first:])
}

// recordReads wraps fs to note the segment files whose records (not just
// their header) are read; scanned returns their paths, sorted.
func recordReads(fs vfs.FS) (_ vfs.FS, scanned func() []string) {
	var mu sync.Mutex
	read := map[string]bool{}
	counting := errorfs.Wrap(fs, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if (op.Kind == errorfs.OpFileReadAt || op.Kind == errorfs.OpFileRead) &&
			strings.HasSuffix(op.Path, segmentSuffix) && op.Offset >= segmentHeaderSize {
			mu.Lock()
			read[op.Path] = true
			mu.Unlock()
		}
		return nil
	}))
	return counting, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Sorted(maps.Keys(read))
	}
}

// lateRenameFS renames an index into place, once, and then reports a
// failure: what a file system may do, and errorfs cannot.
type lateRenameFS struct {
	vfs.FS
	fired atomic.Bool
}

func (fs *lateRenameFS) Rename(from, to string) error {
	err := fs.FS.Rename(from, to)
	if err == nil && strings.HasSuffix(from, indexSuffix+tmpSuffix) && fs.fired.CompareAndSwap(false, true) {
		return errors.New("injected: rename failed after it was done")
	}
	return err
}

// An index whose rename reached the directory though it reported a
// failure is on disk though the log does not count it as written. When
// TruncateLog then cuts that segment, and the segment ends up last, the
// next open does not take that index's word for what the segment holds.
func TestStaleIndexOfTruncatedSegment(t *testing.T) {
	mem := vfs.NewMem()
	fs := &lateRenameFS{FS: mem}
	fired := &fs.fired
	l := mustOpen(t, "wal", memOpts(fs))
	for o := logpos.Offset(0); ; o++ {
		mustAppend(t, l, entry(o, 0))
		l.mu.Lock()
		rolled := len(l.mu.segs) == 2
		l.mu.Unlock()
		if rolled {
			break
		}
	}
	mustSync(t, l)
	workerRound(l) // writes the first segment's index, whose rename fails after it is done
	if !fired.Load() {
		t.Fatal("the index's rename was not failed")
	}
	if _, err := l.TruncateLog(2); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, entries(3, 5, 1)...)
	mustSync(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "wal", Options{FS: mem, SegmentSize: 512, MustKeepBelow: 6})
	defer l.Close()
	if d := l.LastDurable().Offset; d != 5 {
		t.Errorf("reopened: last durable %d, want 5", d)
	}
	checkEntries(t, readAll(t, l, 0), append(entries(0, 2, 0), entries(3, 5, 1)...))
}

// Records that survived a process crash only in the page cache are made
// durable by Open before LastDurable reports them.
func TestRecoveredTailIsMadeDurable(t *testing.T) {
	mem := vfs.NewCrashableMem()
	if err := durable.MkdirAll(mem, "wal"); err != nil {
		t.Fatal(err)
	}
	all := entries(0, 9, 0)
	b := appendSegmentHeader(nil, segmentHeader{first: 0})
	crc := uint32(0)
	for i := range all {
		b, crc = appendRecord(b, &all[i], crc)
	}
	// The segment's name is durable, its content is in the page cache only.
	writeBytes(t, mem, "wal/"+segmentName(0), b)
	if err := durable.SyncDir(mem, "wal"); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, "wal", memOpts(mem))
	defer l.Close()
	if d := l.LastDurable().Offset; d != 9 {
		t.Fatalf("LastDurable = %d after Open, want 9", d)
	}
	r := mustOpen(t, "wal", memOpts(mem.CrashClone(vfs.CrashCloneCfg{})))
	defer r.Close()
	checkEntries(t, readAll(t, r, 0), all)
}

// twoLogs writes entries 0..n-1 to the closed logs "a" (generation 0) and
// "b" (generation 1) on a new memory FS: the same offsets and record sizes,
// so the same segments, but other terms, values and CRC chains. It returns
// a's entries.
func twoLogs(t testing.TB, n logpos.Offset) (vfs.FS, []logpos.Entry) {
	t.Helper()
	fs := vfs.NewMem()
	for gen, dir := range []string{"a", "b"} {
		l := mustOpen(t, dir, memOpts(fs))
		mustAppend(t, l, entries(0, n-1, gen)...)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	names := func(dir string) []string {
		var out []string
		for _, p := range listSuffix(t, fs, dir, segmentSuffix) {
			out = append(out, fs.PathBase(p))
		}
		return out
	}
	if a, b := names("a"), names("b"); !slices.Equal(a, b) || len(a) < 3 {
		t.Fatalf("segments %q and %q: want the same, at least 3", a, b)
	}
	return fs, entries(0, n-1, 0)
}

// A segment whose first offset follows the segment before it but whose
// chain seed is not that segment's last CRC does not continue the log:
// Open cuts the log there.
func TestSegmentBreakingTheChainIsCut(t *testing.T) {
	fs, all := twoLogs(t, 60)
	// c holds a's first segment, then b's others, each with its index.
	if err := fs.MkdirAll("c", 0o755); err != nil {
		t.Fatal(err)
	}
	segs := listSuffix(t, fs, "a", segmentSuffix)
	for i, p := range segs {
		from := "b"
		if i == 0 {
			from = "a"
		}
		first, _ := parseName(fs.PathBase(p), segmentSuffix)
		writeBytes(t, fs, "c/"+segmentName(first), readBytes(t, fs, from+"/"+segmentName(first)))
		if _, err := fs.Stat(from + "/" + indexName(first)); err == nil {
			writeBytes(t, fs, "c/"+indexName(first), readBytes(t, fs, from+"/"+indexName(first)))
		}
	}
	second, _ := parseName(fs.PathBase(segs[1]), segmentSuffix)
	if _, err := Open("c", optsKeep(fs, second)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open keeping offset %d: %v, want ErrCorrupt", second, err)
	}
	l := mustOpen(t, "c", optsKeep(fs, second-1))
	defer l.Close()
	if d := l.LastDurable().Offset; d != second-1 {
		t.Fatalf("LastDurable = %d, want %d: the chain breaks at %d", d, second-1, second)
	}
	checkEntries(t, readAll(t, l, 0), all[:second])
}

// An index whose header describes a segment with the same offsets but
// another chain seed (another log's) is not trusted: Open rebuilds it from
// the segment, and the log keeps every entry.
func TestIndexOfAnotherChainRebuilt(t *testing.T) {
	fs, all := twoLogs(t, 60)
	idx := listSuffix(t, fs, "a", indexSuffix)
	name := fs.PathBase(idx[1])
	orig := readBytes(t, fs, "a/"+name)
	writeBytes(t, fs, "a/"+name, readBytes(t, fs, "b/"+name))
	l := mustOpen(t, "a", optsKeep(fs, 59))
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), all)
	if got := readBytes(t, fs, "a/"+name); !bytes.Equal(got, orig) {
		t.Fatal("the other log's index was not replaced by the segment's own")
	}
}

// The indexes Close writes are durable when it returns: after a power
// loss, Open reads the records of the last segment only.
func TestIndexesDurableAfterClose(t *testing.T) {
	mem := vfs.NewCrashableMem()
	l := mustOpen(t, "wal", memOpts(mem))
	all := entries(0, 99, 0)
	mustAppend(t, l, all...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	if n := len(listSuffix(t, crashed, "wal", indexSuffix)); n < 3 {
		t.Fatalf("%d index files after Close and a crash", n)
	}
	counting, scanned := recordReads(crashed)
	var warnings bytes.Buffer
	opts := memOpts(counting)
	opts.Logger = slog.New(slog.NewTextHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := mustOpen(t, "wal", opts)
	defer r.Close()
	if got := scanned(); len(got) > 1 {
		t.Errorf("Open read the records of %d segments: %q\n%s", len(got), got, warnings.String())
	}
	checkEntries(t, readAll(t, r, 0), all)
}

// panicHandler is a slog handler that panics on every record at or above
// its level: a logger with a bug.
type panicHandler struct{ level slog.Level }

func (h panicHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h panicHandler) Handle(context.Context, slog.Record) error    { panic("logger bug") }
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h panicHandler) WithGroup(string) slog.Handler                { return h }

// TestPanicDuringRecoveryReleasesTheDirectory: when recovery panics (here
// its logger, on the warning that it cuts a torn tail), the panic goes on
// to the caller, and the directory is not left locked: the log opens again.
func TestPanicDuringRecoveryReleasesTheDirectory(t *testing.T) {
	fs, all := closedLog(t, 100)
	segs := listSuffix(t, fs, "wal", segmentSuffix)
	last := segs[len(segs)-1]
	writeBytes(t, fs, last, append(readBytes(t, fs, last), bytes.Repeat([]byte{0xa5}, 40)...))

	opts := optsKeep(fs, 99)
	opts.Logger = slog.New(panicHandler{slog.LevelWarn})
	func() {
		defer func() {
			if r := recover(); r != "logger bug" {
				t.Fatalf("recovered %v, want the logger's panic", r)
			}
		}()
		l, err := Open("wal", opts)
		t.Fatalf("Open returned (%v, %v) instead of panicking", l, err)
	}()
	l := mustOpen(t, "wal", optsKeep(fs, 99))
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), all)
}

// TestCutBelowADamagedSegmentHeaderIsChecked: a segment whose records
// end early (its tail zeroed, its index gone) followed by a segment whose
// header is damaged loses the offsets from the end of the first on, not
// only from the second's: cutting them is refused when they must be kept.
func TestCutBelowADamagedSegmentHeaderIsChecked(t *testing.T) {
	fs, all := closedLog(t, 100)
	var firsts []logpos.Offset
	for _, name := range listSuffix(t, fs, "wal", segmentSuffix) {
		var first int64
		if _, err := fmt.Sscanf(fs.PathBase(name), "%020d.seg", &first); err != nil {
			t.Fatal(err)
		}
		firsts = append(firsts, logpos.Offset(first))
	}
	if len(firsts) < 4 {
		t.Fatalf("%d segments: the test proves nothing", len(firsts))
	}
	// Segment 1 keeps its first two records; segment 2's header is damaged.
	early, next := firsts[1], firsts[2]
	kept := int64(segmentHeaderSize)
	for _, e := range all[early : early+2] {
		rec, _ := appendRecord(nil, &e, 0)
		kept += int64(len(rec))
	}
	seg := "wal/" + segmentName(early)
	b := readBytes(t, fs, seg)
	clear(b[kept:])
	writeBytes(t, fs, seg, b)
	if err := fs.Remove("wal/" + indexName(early)); err != nil {
		t.Fatal(err)
	}
	damaged := readBytes(t, fs, "wal/"+segmentName(next))
	damaged[0] ^= 1
	writeBytes(t, fs, "wal/"+segmentName(next), damaged)

	if _, err := Open("wal", optsKeep(fs, early+2)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("MustKeepBelow %d (the first offset lost + 1): %v, want ErrCorrupt", early+3, err)
	}
	l := mustOpen(t, "wal", optsKeep(fs, early+1))
	defer l.Close()
	checkEntries(t, readAll(t, l, 0), all[:early+2])
}

// Options' zero value keeps nothing: a log whose first record a crash
// tore opens empty, as any torn tail is cut. Asked to keep offset 0, Open
// refuses it.
func TestZeroOptionsCutATornFirstRecord(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", Options{FS: fs, SegmentSize: 512})
	mustAppend(t, l, entry(0, 0))
	mustSync(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seg := "wal/" + segmentName(0)
	b := readBytes(t, fs, seg)
	b[segmentHeaderSize+recordHeaderSize] ^= 0xff // inside the record
	writeBytes(t, fs, seg, b)

	if _, err := Open("wal", Options{FS: fs, SegmentSize: 512, MustKeepBelow: 1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open keeping offset 0: %v, want ErrCorrupt", err)
	}
	l = mustOpen(t, "wal", Options{FS: fs, SegmentSize: 512})
	defer l.Close()
	if last := l.LastDurable(); !last.IsNone() {
		t.Fatalf("LastDurable = %v, want none", last)
	}
	mustAppend(t, l, entry(0, 1))
	mustSync(t, l)
	checkEntries(t, readAll(t, l, 0), []logpos.Entry{entry(0, 1)})
}

// TestRecoveryCutsRecordsOutOfSequence: records whose CRCs and chain are
// sound but whose offsets do not follow each other (one skipped, one
// repeated) are not the log's: Open cuts the segment before the first of
// them, or refuses it where the log must keep it.
func TestRecoveryCutsRecordsOutOfSequence(t *testing.T) {
	for name, offsets := range map[string][]logpos.Offset{
		"skipped":  {0, 1, 2, 4, 5},
		"repeated": {0, 1, 2, 2, 3},
	} {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewMem()
			if err := mem.MkdirAll("wal", 0o755); err != nil {
				t.Fatal(err)
			}
			b := appendSegmentHeader(nil, segmentHeader{first: 0})
			crc := uint32(0)
			for _, o := range offsets {
				e := entry(o, 0)
				b, crc = appendRecord(b, &e, crc)
			}
			writeBytes(t, mem, "wal/"+segmentName(0), b)
			if _, err := Open("wal", Options{FS: mem, SegmentSize: 512, MustKeepBelow: 4}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open needing offsets below 4: %v, want ErrCorrupt", err)
			}
			l := mustOpen(t, "wal", memOpts(mem))
			defer l.Close()
			if got := l.LastDurable().Offset; got != 2 {
				t.Fatalf("reopened log ends at %d, want 2 (cut before the record out of sequence)", got)
			}
			checkEntries(t, readAll(t, l, 0), entries(0, 2, 0))
			mustAppend(t, l, entry(3, 1))
			mustSync(t, l)
		})
	}
}

// TestTruncateIntoADamagedSealedSegment: a sealed segment whose index's
// positions are damaged (its header, read at open, is sound) and whose
// records stop early (a damaged record in its middle) is refused as
// corrupt by a truncation into it, which changes nothing, rather than cut
// at positions it does not have.
func TestTruncateIntoADamagedSealedSegment(t *testing.T) {
	mem := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(mem))
	var all []logpos.Entry
	for o := logpos.Offset(0); len(segFirsts(l)) < 3; o++ {
		all = append(all, entry(o, 0))
		mustAppend(t, l, all[o])
	}
	mustSync(t, l)
	firsts := segFirsts(l)
	if firsts[1] < 8 {
		t.Fatalf("segments %v: the first must hold at least 8 entries", firsts)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Damage the record of offset 5: find it by its value.
	seg := "wal/" + segmentName(0)
	b := readBytes(t, mem, seg)
	at := bytes.Index(b, all[5].Value)
	if at < 0 {
		t.Fatal("entry 5's value is not in the first segment")
	}
	b[at] ^= 0xff
	writeBytes(t, mem, seg, b)
	index := readBytes(t, mem, "wal/"+indexName(0))
	index[indexHeaderSize] ^= 0xff
	writeBytes(t, mem, "wal/"+indexName(0), index)

	l = mustOpen(t, "wal", memOpts(mem))
	defer l.Close()
	if _, err := l.TruncateLog(2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("TruncateLog(2) into the damaged segment: %v, want ErrCorrupt", err)
	}
	if got := l.LastDurable().Offset; got != all[len(all)-1].Offset {
		t.Fatalf("after the refused truncation the log ends at %d, want %d", got, all[len(all)-1].Offset)
	}
}

// TestSegmentNameAboveMaxOffsetIsNotASegment: a file named like a segment
// but with 20 digits above MaxInt64 is no segment of the log (parseName
// refuses it rather than wrapping it to some offset): recovery leaves it
// alone, and the log opens empty.
func TestSegmentNameAboveMaxOffsetIsNotASegment(t *testing.T) {
	fs := vfs.NewMem()
	if err := fs.MkdirAll("wal", 0o755); err != nil {
		t.Fatal(err)
	}
	if o, ok := parseName("09223372036854775807"+segmentSuffix, segmentSuffix); !ok || o != math.MaxInt64 {
		t.Fatalf("parseName of the name of offset MaxInt64 = %d, %v", o, ok)
	}
	for _, digits := range []string{"09223372036854775808", "99999999999999999999"} {
		if o, ok := parseName(digits+segmentSuffix, segmentSuffix); ok {
			t.Fatalf("parseName accepted %s%s as offset %d", digits, segmentSuffix, o)
		}
	}
	const name = "99999999999999999999" + segmentSuffix
	f, err := fs.Create("wal/"+name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, "wal", memOpts(fs))
	defer l.Close()
	if got := l.FirstOffset(); got != logpos.NoOffset {
		t.Fatalf("FirstOffset = %d, want none", got)
	}
	if _, err := fs.Stat("wal/" + name); err != nil {
		t.Fatalf("recovery removed a file that is no segment: %v", err)
	}
}

// TestReopenedTailIndexRemovalIsDurable: the index file of the segment
// Open makes active again describes what the segment held before the
// appends to come; Open removes it durably, so that a power loss right
// after Open cannot bring it back to be trusted once the segment is
// sealed.
func TestReopenedTailIndexRemovalIsDurable(t *testing.T) {
	mem := vfs.NewCrashableMem()
	l := mustOpen(t, "wal", memOpts(mem))
	mustAppend(t, l, entries(0, 99, 0)...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	firsts := fileFirsts(t, mem, "wal")
	last := firsts[len(firsts)-1]
	stale := "wal/" + indexName(last)
	// An index of the last segment, its name durable (as one renamed
	// into place whose rename reported a failure leaves).
	writeBytes(t, mem, stale, []byte("stale index"))
	if err := durable.SyncDir(mem, "wal"); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "wal", optsKeep(mem, 99))
	defer l.Close()
	if _, err := mem.Stat(stale); err == nil {
		t.Fatal("Open kept the index of the segment it reopened")
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	if _, err := crashed.Stat(stale); err == nil {
		t.Fatal("after a power loss right after Open, the reopened segment's index is back: its removal was not made durable")
	}
}

// TestIndexOfAnotherSegmentIsRebuilt: an index file whose header names
// another first offset (here one copied from another log, whose first
// segment has the same seed, 0) is not trusted: the segment is scanned
// and its index rebuilt, and the log opens whole.
func TestIndexOfAnotherSegmentIsRebuilt(t *testing.T) {
	fs := vfs.NewMem()
	write := func(dir string, from, to logpos.Offset) []logpos.Entry {
		l := mustOpen(t, dir, memOpts(fs))
		es := entries(from, to, 0)
		mustAppend(t, l, es...)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return es
	}
	write("a", 0, 29)
	want := write("b", 100, 129)
	if idx := listSuffix(t, fs, "b", indexSuffix); len(idx) < 2 || idx[0] != fs.PathJoin("b", indexName(100)) {
		t.Fatalf("indexes of b: %v; the test needs segment 100 indexed and not last", idx)
	}
	writeBytes(t, fs, fs.PathJoin("b", indexName(100)), readBytes(t, fs, fs.PathJoin("a", indexName(0))))
	l, err := Open("b", optsKeep(fs, 129))
	if err != nil {
		t.Fatalf("Open with segment 100's index replaced by segment 0's of another log: %v", err)
	}
	defer l.Close()
	checkEntries(t, readAll(t, l, 100), want)
}
