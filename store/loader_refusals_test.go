package store

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tablefsm/tablefsm/logpos"
)

// TestLoaderRefusesAStoreWithoutTermOrCommit: Finish itself (no Install,
// whose term arithmetic could refuse such a store for another reason)
// refuses a staged store that has no term, or whose commit id has a term
// but no offset: a snapshot must carry both.
func TestLoaderRefusesAStoreWithoutTermOrCommit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, s *Store)
	}{
		{"no term", func(t *testing.T, s *Store) {
			for o := range logpos.Offset(3) { // applied at term 0, no term set
				if err := s.Apply(kvEntry(t, 0, o, put("k", "v"))); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"a commit id without offset", func(t *testing.T, s *Store) {
			fillStore(t, s, model{}, 4, 3, "k")
			if err := s.db.h.Set(keyCommit, encodeEntryID(logpos.EntryID{Term: 4, Offset: logpos.NoOffset}), nil); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunks := snapshotOf(t, 4096, func(s *Store) { tc.prepare(t, s) })
			s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
			fillStore(t, s, model{}, 3, 2, "old")
			want := fingerprintOf(t, s)
			l, err := s.NewLoader()
			if err != nil {
				t.Fatal(err)
			}
			if err := writeAll(l, chunks); err != nil {
				t.Fatal(err)
			}
			if info, err := l.Finish(); !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("Finish = %+v, %v, want ErrInvalidSnapshot", info, err)
			}
			assertFingerprint(t, "after the refused snapshot", want, fingerprintOf(t, s))
		})
	}
}

// TestLoaderRefusesAOneByteLog: a Pebble log with any content, a single
// byte too, is refused; only an empty one is carried.
func TestLoaderRefusesAOneByteLog(t *testing.T) {
	chunks, _, _ := memSource(t)
	s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
	l, err := s.NewLoader()
	if err != nil {
		t.Fatal(err)
	}
	bad := append(chunks[:len(chunks):len(chunks)], Chunk{Name: "999999.log", Count: 1, Content: []byte{0}})
	if err := writeAll(l, bad); !errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("a one-byte Pebble log: %v, want ErrInvalidSnapshot", err)
	}
}
