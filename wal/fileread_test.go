package wal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestFileReaderWindow: the window reader returns the file's bytes, from
// its buffer or read again, and never a byte at or past its limit.
func TestFileReaderWindow(t *testing.T) {
	fs := vfs.NewMem()
	data := make([]byte, 100)
	for i := range data {
		data[i] = byte(i + 1)
	}
	writeBytes(t, fs, "f", bytes.Clone(data))
	f, err := fs.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fr := fileReader{f: f, limit: 50, chunk: 16}
	for _, r := range []struct{ pos, n int }{{0, 8}, {8, 8}, {8, 9}, {40, 10}, {49, 1}, {50, 0}, {0, 50}} {
		b, err := fr.bytes(int64(r.pos), r.n)
		if err != nil || !bytes.Equal(b, data[r.pos:r.pos+r.n]) {
			t.Fatalf("%d bytes at %d: %v, %v; want %v", r.n, r.pos, b, err, data[r.pos:r.pos+r.n])
		}
	}
	for _, r := range []struct{ pos, n int }{{40, 11}, {49, 2}, {50, 1}, {51, 0}, {0, 51}} {
		if b, err := fr.bytes(int64(r.pos), r.n); !errors.Is(err, errPastEnd) {
			t.Errorf("%d bytes at %d, limit 50: %v, %v; want errPastEnd", r.n, r.pos, b, err)
		}
	}
}
