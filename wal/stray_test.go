package wal

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// failedCreateFS is a lateCreateFS whose removal of the file a failed
// creation left fails too, once: what such a creation can leave behind.
type failedCreateFS struct {
	lateCreateFS
	failRm atomic.Value // the path whose next Remove fails
}

func (fs *failedCreateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.lateCreateFS.Create(name, c)
	if errors.Is(err, errCreateLate) {
		fs.failRm.Store(name)
	}
	return f, err
}

func (fs *failedCreateFS) Remove(name string) error {
	if p, _ := fs.failRm.Load().(string); p != "" && p == name {
		fs.failRm.Store("")
		return errors.New("injected: remove failed")
	}
	return fs.FS.Remove(name)
}

// TestLeftoverSegmentBeforeTheLog: the file of a failed segment creation
// whose removal failed too, which came to sort before every segment of
// the log (the log started above it, or a Trim removed the segment its
// name falls in), is removed at Open; the log is kept whole. It was taken
// for a damaged first segment: Open refused the log, or, keeping nothing,
// cut all of it.
func TestLeftoverSegmentBeforeTheLog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(t *testing.T, fs *failedCreateFS, l *Log) []logpos.Entry
	}{
		{"an empty log started above it", func(t *testing.T, fs *failedCreateFS, l *Log) []logpos.Entry {
			fs.armed.Store(true)
			if err := l.AppendAsync(entry(5, 0)); err == nil {
				t.Fatal("an append whose segment creation failed succeeded")
			}
			want := entries(100, 120, 0)
			mustAppend(t, l, want...)
			return want
		}},
		{"inside a segment Trim removed", func(t *testing.T, fs *failedCreateFS, l *Log) []logpos.Entry {
			o := logpos.Offset(0)
			for len(segFirsts(l)) < 2 {
				mustAppend(t, l, entry(o, 0))
				o++
			}
			roll := o - 1 // the first offset of the second segment
			if _, err := l.TruncateLog(roll - 1); err != nil {
				t.Fatal(err)
			}
			fs.armed.Store(true)
			if err := l.AppendAsync(entry(roll, 1)); err == nil {
				t.Fatal("an append whose segment creation failed succeeded")
			}
			// Back below the leftover's name, then past it in segment 0.
			if _, err := l.TruncateLog(roll - 3); err != nil {
				t.Fatal(err)
			}
			for o = roll - 2; len(segFirsts(l)) < 4; o++ {
				mustAppend(t, l, sized(o, 1))
			}
			mustSync(t, l)
			firsts := segFirsts(l)
			if firsts[1] <= roll {
				t.Fatalf("segments %v: the leftover %d is not inside the first", firsts, roll)
			}
			if err := l.Trim(firsts[2]); err != nil {
				t.Fatal(err)
			}
			want, err := tryReadAll(l, firsts[2])
			if err != nil {
				t.Fatal(err)
			}
			return want
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			fs := &failedCreateFS{lateCreateFS: lateCreateFS{FS: mem}}
			l := mustOpen(t, "wal", Options{FS: fs, SegmentSize: 512})
			want := tc.build(t, fs, l)
			last := mustSync(t, l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if got := listSuffix(t, mem, "wal", segmentSuffix); len(got) < 2 {
				t.Fatalf("segment files %q: no leftover, the test proves nothing", got)
			}
			// Keeping what the log holds, as a follower whose store
			// applied all of it would.
			l, err := Open("wal", Options{FS: mem, SegmentSize: 512, MustKeepBelow: last + 1})
			if err != nil {
				t.Fatalf("Open keeping the log's %d entries: %v", len(want), err)
			}
			defer l.Close()
			checkEntries(t, readAll(t, l, want[0].Offset), want)
			if first := l.FirstOffset(); first != want[0].Offset {
				t.Fatalf("FirstOffset %d, want %d", first, want[0].Offset)
			}
		})
	}
}

// TestBlankFileBeforeTheLog: which files before the log's first segment
// Open removes as leftovers: one never written to (empty, or all zeros as
// a prepared segment is, where its header and first records go) and
// named below MustKeepBelow. One named at or above it may be the log's
// first segment, whose header a crash lost before any of it was durable:
// the log is cut there, as before. One with anything written in its
// header or after it is a damaged segment: below MustKeepBelow, an error.
func TestBlankFileBeforeTheLog(t *testing.T) {
	damaged := make([]byte, 4096)
	damaged[3] = 1
	headerless := make([]byte, 4096) // its header zeroed, records after it
	headerless[segmentHeaderSize+5] = 1
	for _, c := range []struct {
		name    string
		file    []byte
		keep    logpos.Offset // MustKeepBelow
		err     error
		entries bool // the log's entries are kept
	}{
		{"empty, below the offset to keep", nil, 60, nil, true},
		{"zeros, below the offset to keep", make([]byte, 4096), 60, nil, true},
		{"shorter than a header, zeros", make([]byte, 7), 60, nil, true},
		{"empty, keeping nothing", nil, 0, nil, false},
		{"written to, below the offset to keep", damaged, 60, ErrCorrupt, false},
		{"its header zeroed, its records there, below the offset to keep", headerless, 60, ErrCorrupt, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := vfs.NewMem()
			l := mustOpen(t, "wal", memOpts(fs))
			want := entries(50, 59, 0)
			mustAppend(t, l, want...)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			writeBytes(t, fs, "wal/"+segmentName(5), c.file)
			opts := memOpts(fs)
			opts.MustKeepBelow = c.keep
			l, err := Open("wal", opts)
			if !errors.Is(err, c.err) {
				t.Fatalf("Open: %v, want %v", err, c.err)
			}
			if err != nil {
				return
			}
			defer l.Close()
			if !c.entries {
				want = nil
			}
			checkEntries(t, readAll(t, l, 50), want)
			if got := listSuffix(t, fs, "wal", segmentSuffix); len(got) != len(segFirsts(l)) {
				t.Fatalf("segment files %q for segments %v", got, segFirsts(l))
			}
		})
	}
	// Alone in the directory, a leftover leaves an empty log.
	fs := vfs.NewMem()
	l := mustOpen(t, "wal", memOpts(fs))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	writeBytes(t, fs, "wal/"+segmentName(5), nil)
	opts := memOpts(fs)
	opts.MustKeepBelow = 100
	l = mustOpen(t, "wal", opts)
	defer l.Close()
	if last := l.LastDurable(); !last.IsNone() || len(listSuffix(t, fs, "wal", segmentSuffix)) != 0 {
		t.Fatalf("LastDurable %v, segment files %q; want an empty log", last, listSuffix(t, fs, "wal", segmentSuffix))
	}
}

// TestFirstSegmentWithItsFirstBlockZeroed: a first segment whose first
// 4 KiB were zeroed (a lost or zeroed block), its later records there, is
// a damaged segment, not a file never written to: below MustKeepBelow it
// is refused. It was removed as a leftover and the log started at the
// next segment, losing, silently, durable entries up to MustKeepBelow and
// past it.
func TestFirstSegmentWithItsFirstBlockZeroed(t *testing.T) {
	const segSize = 16 << 10
	fs := vfs.NewMem()
	opts := Options{FS: fs, SegmentSize: segSize}
	l := mustOpen(t, "wal", opts)
	for o := logpos.Offset(0); len(segFirsts(l)) < 3; o++ {
		mustAppend(t, l, sized(o, 300))
	}
	last := mustSync(t, l)
	firsts := segFirsts(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seg := "wal/" + segmentName(0)
	b := readBytes(t, fs, seg)
	clear(b[:blankCheckSize])
	writeBytes(t, fs, seg, b)
	// Offsets from 5 on were not applied yet: the log must keep them.
	opts.MustKeepBelow = 5
	l, err := Open("wal", opts)
	if err == nil {
		first := l.FirstOffset()
		_ = l.Close()
		t.Fatalf("Open kept a log starting at %d (it held 0..%d, segments %v), without reporting the damage below %d", first, last, firsts, opts.MustKeepBelow)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	// Keeping nothing, the log is cut there, as for any damaged first segment.
	opts.MustKeepBelow = 0
	l = mustOpen(t, "wal", opts)
	defer l.Close()
	if d := l.LastDurable(); !d.IsNone() {
		t.Fatalf("LastDurable %v, want an empty log", d)
	}
}
