package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store/kvpb"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// mustOpen opens a store and closes it at the end of the test.
func mustOpen(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// wantCorrupt fails the test unless opening the store in dir fails with
// ErrCorrupt.
func wantCorrupt(t testing.TB, fs vfs.FS, dir string) {
	t.Helper()
	s, err := Open(dir, Options{FS: fs})
	if !errors.Is(err, ErrCorrupt) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
}

// Operations of a kvpb.WriteBatch, for building entries.
func put(k, v string) *kvpb.Operation {
	return &kvpb.Operation{Op: &kvpb.Operation_Put{Put: &kvpb.Put{Key: []byte(k), Value: []byte(v)}}}
}

func del(k string) *kvpb.Operation {
	return &kvpb.Operation{Op: &kvpb.Operation_Delete{Delete: &kvpb.Delete{Key: []byte(k)}}}
}

func delRange(start, end string) *kvpb.Operation {
	return &kvpb.Operation{Op: &kvpb.Operation_DeleteRange{DeleteRange: &kvpb.DeleteRange{Start: []byte(start), End: []byte(end)}}}
}

// kvEntry builds the entry (term, offset) carrying ops for the KV state
// machine.
func kvEntry(t testing.TB, term logpos.Term, offset logpos.Offset, ops ...*kvpb.Operation) logpos.Entry {
	t.Helper()
	v, err := proto.Marshal(&kvpb.WriteBatch{Operations: ops})
	if err != nil {
		t.Fatal(err)
	}
	return logpos.Entry{Term: term, Offset: offset, Value: v, Timestamp: 1}
}

// model is the user data a store should hold, applied independently of
// the store.
type model map[string]string

func (m model) apply(ops ...*kvpb.Operation) {
	for _, op := range ops {
		switch op := op.GetOp().(type) {
		case *kvpb.Operation_Put:
			m[string(op.Put.Key)] = string(op.Put.Value)
		case *kvpb.Operation_Delete:
			delete(m, string(op.Delete.Key))
		case *kvpb.Operation_DeleteRange:
			for k := range m {
				if k >= string(op.DeleteRange.Start) && k < string(op.DeleteRange.End) {
					delete(m, k)
				}
			}
		}
	}
}

func (m model) clone() model {
	c := make(model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// userData returns every user key and value of s.
func userData(t testing.TB, s *Store) model {
	t.Helper()
	m := model{}
	var prev []byte
	err := s.Scan(nil, nil, func(k, v []byte) bool {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			t.Errorf("Scan out of order: %q after %q", k, prev)
		}
		prev = bytes.Clone(k)
		m[string(k)] = string(v)
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return m
}

// fingerprint is everything observable about a store.
type fingerprint struct {
	Data            model
	Term            logpos.Term
	Options         TermOptions
	Commit          logpos.EntryID
	ResetPending    bool
	ResetTo         logpos.EntryID
	DirectoryListed []string
}

func fingerprintOf(t testing.TB, s *Store) fingerprint {
	t.Helper()
	reset, pending := s.LogResetPending()
	names, err := s.fs.List(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return fingerprint{
		Data:            userData(t, s),
		Term:            s.Term(),
		Options:         s.TermOptions(),
		Commit:          s.Commit(),
		ResetPending:    pending,
		ResetTo:         reset,
		DirectoryListed: names,
	}
}

func assertFingerprint(t testing.TB, what string, want, got fingerprint) {
	t.Helper()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("%s: store differs (-want +got):\n%s", what, diff)
	}
}

// fillStore sets term and options and applies n entries of a few writes
// each to s, mirroring them in m. Keys are prefixed with prefix.
func fillStore(t testing.TB, s *Store, m model, term logpos.Term, n int, prefix string) {
	t.Helper()
	if s.Term() < term {
		if err := s.SetTerm(term, TermOptions{EnableNotifications: true, KeySorting: KeySortingHierarchical}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		ops := []*kvpb.Operation{
			put(fmt.Sprintf("%s/%05d/a", prefix, i), fmt.Sprintf("value-a-%d", i)),
			put(fmt.Sprintf("%s/%05d/b", prefix, i), fmt.Sprintf("value-b-%d-%s", i, bytes.Repeat([]byte("x"), i%50))),
		}
		if i > 0 && i%3 == 0 {
			ops = append(ops, del(fmt.Sprintf("%s/%05d/a", prefix, i-1)))
		}
		if i > 0 && i%7 == 0 {
			ops = append(ops, delRange(fmt.Sprintf("%s/%05d", prefix, i-5), fmt.Sprintf("%s/%05d", prefix, i-3)))
		}
		off := s.Commit().Offset + 1
		if err := s.Apply(kvEntry(t, term, off, ops...)); err != nil {
			t.Fatalf("Apply(%d): %v", off, err)
		}
		m.apply(ops...)
	}
}

// readChunks reads a snapshot out to the end, copying every chunk.
func readChunks(t testing.TB, sn *Snapshot) []Chunk {
	t.Helper()
	var chunks []Chunk
	for {
		c, err := sn.Next()
		if errors.Is(err, io.EOF) {
			return chunks
		}
		if err != nil {
			t.Fatalf("Snapshot.Next: %v", err)
		}
		c.Content = bytes.Clone(c.Content)
		chunks = append(chunks, c)
	}
}

// takeSnapshot returns the chunks and info of a snapshot of s.
func takeSnapshot(t testing.TB, s *Store) ([]Chunk, SnapshotInfo) {
	t.Helper()
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer func() {
		if err := sn.Close(); err != nil {
			t.Errorf("Snapshot.Close: %v", err)
		}
	}()
	return readChunks(t, sn), sn.Info()
}

// load writes chunks into a new loader of s and installs it.
func load(s *Store, chunks []Chunk, minTerm logpos.Term) (SnapshotInfo, error) {
	l, err := s.NewLoader()
	if err != nil {
		return SnapshotInfo{}, err
	}
	for _, c := range chunks {
		c.Content = bytes.Clone(c.Content)
		if err := l.Write(c); err != nil {
			return SnapshotInfo{}, err
		}
	}
	return s.Install(l, minTerm)
}

// listDir lists dir on fs, sorted.
func listDir(t testing.TB, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}
