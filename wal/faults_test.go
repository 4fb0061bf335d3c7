package wal

import (
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/logpos"
)

var errCreateLate = errors.New("injected: create failed after the file was made")

// lateCreateFS fails the creation of prepared segments, so that the log
// creates each segment when it rolls to it, and, when armed, makes the
// next segment file and then reports a failure: what a file system may do
// (a network one, or a failure after the fact), and errorfs cannot.
type lateCreateFS struct {
	vfs.FS
	armed atomic.Bool
}

func (fs *lateCreateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.Contains(name, "next-") {
		return nil, errors.New("injected: no prepared segments")
	}
	if strings.HasSuffix(name, segmentSuffix) && fs.armed.CompareAndSwap(true, false) {
		f, err := fs.FS.Create(name, c)
		if err == nil {
			_ = f.Close()
		}
		return nil, errCreateLate
	}
	return fs.FS.Create(name, c)
}

// TestFailedSegmentCreateLeavesNoFile: a segment whose creation failed
// leaves no file, even when the file system made it before failing: after
// the log is truncated back below it and grows past it again, the file
// would sit inside a segment of the log, and the next Open would cut the
// log there, losing the synced entries after it.
func TestFailedSegmentCreateLeavesNoFile(t *testing.T) {
	mem := vfs.NewMem()
	fs := &lateCreateFS{FS: mem}
	l := mustOpen(t, "wal", Options{FS: fs, SegmentSize: 512})
	o := logpos.Offset(0)
	for len(segFirsts(l)) < 2 {
		mustAppend(t, l, entry(o, 0))
		o++
	}
	// The first entry of the second segment is rewritten, and its
	// segment with it: that roll fails.
	roll := o - 1
	if _, err := l.TruncateLog(roll - 1); err != nil {
		t.Fatal(err)
	}
	fs.armed.Store(true)
	if err := l.AppendAsync(entry(roll, 1)); !errors.Is(err, errCreateLate) {
		t.Fatalf("append rolling to a new segment: %v, want the create's failure", err)
	}
	if _, err := mem.Stat(l.path(segmentName(roll))); err == nil {
		t.Fatalf("the failed segment %s is left on disk", segmentName(roll))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened (the failure failed the log), the log is cut back to its
	// first entry, then grows past the failed segment's name.
	l = mustOpen(t, "wal", Options{FS: fs, SegmentSize: 512})
	if _, err := l.TruncateLog(0); err != nil {
		t.Fatal(err)
	}
	want := entries(0, 0, 0)
	for o := logpos.Offset(1); len(segFirsts(l)) < 3; o++ {
		e := sized(o, 1)
		mustAppend(t, l, e)
		want = append(want, e)
	}
	last := mustSync(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "wal", Options{FS: mem, SegmentSize: 512, MustKeepBelow: last + 1})
	defer l.Close()
	if got := l.LastDurable().Offset; got != last {
		t.Fatalf("reopened log ends at %d, want %d (synced)", got, last)
	}
	checkEntries(t, readAll(t, l, 0), want)
}

// TestRecoveryRemovesASegmentFileInsideThePreviousOne: a segment file
// named inside the offsets of the segment before it is no part of the log
// (a failed segment creation whose removal failed too): Open removes it
// and keeps the segments after it, whatever it holds, even when it is
// named by the last offset of the segment before.
func TestRecoveryRemovesASegmentFileInsideThePreviousOne(t *testing.T) {
	for _, where := range []string{"inside", "at its last offset"} {
		for name, content := range map[string]func(stray logpos.Offset) []byte{
			"empty":  func(logpos.Offset) []byte { return nil },
			"zeroed": func(logpos.Offset) []byte { return make([]byte, 512) },
			"header": func(stray logpos.Offset) []byte { return appendSegmentHeader(nil, segmentHeader{first: stray}) },
		} {
			t.Run(where+"/"+name, func(t *testing.T) {
				mem := vfs.NewMem()
				l := mustOpen(t, "wal", memOpts(mem))
				var want []logpos.Entry
				for o := logpos.Offset(0); len(segFirsts(l)) < 3; o++ {
					e := entry(o, 0)
					mustAppend(t, l, e)
					want = append(want, e)
				}
				last := mustSync(t, l)
				firsts := segFirsts(l)
				stray := logpos.Offset(5)
				if where != "inside" {
					stray = firsts[1] - 1
				}
				if firsts[1] <= 5 {
					t.Fatalf("segments %v: the stray at 5 must fall inside the first", firsts)
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				writeBytes(t, mem, "wal/"+segmentName(stray), content(stray))

				l = mustOpen(t, "wal", Options{FS: mem, SegmentSize: 512, MustKeepBelow: last + 1})
				defer l.Close()
				if got := l.LastDurable().Offset; got != last {
					t.Fatalf("reopened log ends at %d, want %d", got, last)
				}
				checkEntries(t, readAll(t, l, 0), want)
				if _, err := mem.Stat("wal/" + segmentName(stray)); err == nil {
					t.Fatal("the stray segment file is still there")
				}
			})
		}
	}
}

// TestReverseReaderIOErrorIsNotCorruption: a read that fails in the file
// system reaches the reverse reader's caller as that error, as with the
// forward reader, not as damaged data; the next call reads the entry.
func TestReverseReaderIOErrorIsNotCorruption(t *testing.T) {
	mem := vfs.NewMem()
	toggle := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileReadAt && strings.HasSuffix(op.Path, segmentSuffix) {
			return errorfs.ErrInjected
		}
		return nil
	})}
	l := mustOpen(t, "wal", memOpts(errorfs.Wrap(mem, toggle)))
	defer l.Close()
	mustAppend(t, l, entries(0, 9, 0)...)
	mustSync(t, l)
	r, err := l.NewReverseReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	toggle.On()
	_, err = r.Next()
	toggle.Off()
	if !errors.Is(err, errorfs.ErrInjected) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("reverse reader on a failing read: %v; want the file system's error, not ErrCorrupt", err)
	}
	e, err := r.Next()
	if err != nil || e.Offset != 9 {
		t.Fatalf("after the failure: %v, %v; want entry 9", e.Offset, err)
	}
}

// TestRecoveryRefusesTheLastOffset: a record at the last offset, which the
// log never writes (the offset after it overflows), is not recovered as
// one of its entries: the segment holding it is cut there, and the log
// stays appendable at offsets that do not wrap.
func TestRecoveryRefusesTheLastOffset(t *testing.T) {
	mem := vfs.NewMem()
	b := appendSegmentHeader(nil, segmentHeader{first: math.MaxInt64 - 1})
	var crc uint32
	for _, o := range []logpos.Offset{math.MaxInt64 - 1, math.MaxInt64} {
		e := logpos.Entry{Term: 1, Offset: o, Value: []byte("v")}
		b, crc = appendRecord(b, &e, crc)
	}
	if err := mem.MkdirAll("wal", 0o755); err != nil {
		t.Fatal(err)
	}
	writeBytes(t, mem, "wal/"+segmentName(math.MaxInt64-1), b)
	l := mustOpen(t, "wal", memOpts(mem))
	defer l.Close()
	if got := l.LastDurable().Offset; got != math.MaxInt64-1 {
		t.Fatalf("recovered up to %d, want %d (the record at the last offset is not the log's)", got, int64(math.MaxInt64-1))
	}
	if err := l.AppendAsync(logpos.Entry{Term: 1, Offset: math.MinInt64, Value: []byte("w")}); err == nil {
		t.Fatal("an append at the smallest offset was taken after the largest")
	}
}

// TestForwardReaderReadErrorKeepsItsPlace: a forward reader that walks a
// sealed segment from its start (its index gone) and meets a failing read
// on the way reports the file system's error; the next call returns the
// entry it was asked for, not one of those the walk passed.
func TestForwardReaderReadErrorKeepsItsPlace(t *testing.T) {
	mem, firsts := sealedLog(t)
	toggle := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileReadAt && strings.HasSuffix(op.Path, segmentSuffix) {
			return errorfs.ErrInjected
		}
		return nil
	})}
	l := mustOpen(t, "wal", memOpts(errorfs.Wrap(mem, toggle)))
	defer l.Close()
	if err := mem.Remove("wal/" + indexName(0)); err != nil {
		t.Fatal(err)
	}
	from := firsts[1] - 1 // the last entry of the first segment
	r, err := l.NewReader(from)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	toggle.On()
	_, err = r.Next()
	toggle.Off()
	if !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("reader on a failing read: %v; want the file system's error", err)
	}
	for o := from; o <= from+1; o++ {
		e, err := r.Next()
		if err != nil || e.Offset != o {
			t.Fatalf("after the failure: entry %d, %v; want entry %d", e.Offset, err, o)
		}
	}
}
