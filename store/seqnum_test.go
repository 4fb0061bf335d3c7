package store

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tablefsm/tablefsm/logpos"
)

// TestLoaderRefusesTablesAboveTheLastSequenceNumber: the snapshot's
// MANIFEST ends with a version edit setting the last sequence number
// below the sequence numbers of records its table holds. Pebble opens it
// without a word: the records above are invisible at first, and the
// store's own writes after the install get sequence numbers below them.
// As entries are applied, the hidden records surface (a key no entry
// wrote, a commit id that jumps) and shadow the store's own writes. So
// with the last sequence number set just below the table's largest: the
// store's next write would take the number of a record already there.
func TestLoaderRefusesTablesAboveTheLastSequenceNumber(t *testing.T) {
	for _, last := range []uint64{14, 54} {
		t.Run(fmt.Sprintf("last %d", last), func(t *testing.T) { refusesTablesAbove(t, last) })
	}
}

func refusesTablesAbove(t *testing.T, last uint64) {
	chunks, _ := rawSnapshot(t, func(db *pebble.DB, apply func(logpos.Term, logpos.Offset, string, string)) {
		apply(3, 0, "a", "x") // seqnums 13, 14 (the store's records are 10..12)
		for i := range 40 {
			if err := db.Set(userKey(nil, []byte(fmt.Sprintf("pad/%02d", i))), nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Set(userKey(nil, []byte("h")), []byte("hidden"), nil); err != nil { // seqnum 55
			t.Fatal(err)
		}
	})
	chunks = withManifestEdit(t, chunks, versionEdit(nil).uvarint(4 /* last sequence */).uvarint(last))

	s := mustOpen(t, "/shard", Options{FS: vfs.NewMem()})
	_, err := load(s, chunks, 3)
	if errors.Is(err, ErrInvalidSnapshot) {
		t.Logf("refused: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	// Installed: show what it leads to.
	if err := s.ClearLogReset(); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.Apply(kvEntry(t, 3, 1, put("h", "mine"))); err != nil {
		t.Fatal(err)
	}
	v, err := s.Get([]byte("h"))
	got = append(got, fmt.Sprintf("after entry 1 writing h=mine: h=%q (%v)", v, err))
	for off := logpos.Offset(2); off < 60; off++ {
		if err := s.Apply(kvEntry(t, 3, off, put("z", "z"))); err != nil {
			t.Fatalf("apply %d: %v", off, err)
		}
	}
	v, err = s.Get([]byte("h"))
	got = append(got, fmt.Sprintf("after entries 2..59 writing only z: h=%q (%v)", v, err))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, "/shard", Options{FS: s.fs})
	defer s.Close()
	v, err = s.Get([]byte("h"))
	got = append(got, fmt.Sprintf("after reopen: h=%q (%v)", v, err))
	t.Fatalf("a snapshot whose tables hold records above its last sequence number was installed: %v", got)
}
