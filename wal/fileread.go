package wal

import (
	"errors"
	"io"
	"io/fs"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var errNotExist = fs.ErrNotExist

// errPastEnd: a read reaches past the readable end of a file.
var errPastEnd = errors.New("read past the end")

// fileReader reads a file through a window buffer, up to a limit.
type fileReader struct {
	f     vfs.File
	limit int64 // bytes at or past limit are never read
	chunk int
	buf   []byte
	start int64 // file position of buf[0]
}

func (fr *fileReader) reset(f vfs.File, limit int64) {
	fr.f, fr.limit, fr.buf, fr.start = f, limit, fr.buf[:0], 0
}

// setLimit moves the readable end; a lower limit drops the buffer.
func (fr *fileReader) setLimit(limit int64) {
	if limit < fr.start+int64(len(fr.buf)) {
		fr.buf = fr.buf[:0]
	}
	fr.limit = limit
}

// bytes returns n bytes at pos, valid until the next call.
func (fr *fileReader) bytes(pos int64, n int) ([]byte, error) {
	if n < 0 || pos < 0 || pos > fr.limit || int64(n) > fr.limit-pos {
		return nil, errPastEnd
	}
	if pos >= fr.start && pos+int64(n) <= fr.start+int64(len(fr.buf)) {
		i := pos - fr.start
		return fr.buf[i : i+int64(n)], nil
	}
	want := int64(max(n, fr.chunk))
	want = min(want, fr.limit-pos)
	if int64(cap(fr.buf)) < want {
		fr.buf = make([]byte, want)
	}
	fr.buf = fr.buf[:want]
	got, err := fr.f.ReadAt(fr.buf, pos)
	if got < int(want) {
		fr.buf = fr.buf[:0]
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	fr.start = pos
	return fr.buf[:n], nil
}

var zeros [64 << 10]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if string(b[:n]) != string(zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// zeroRange overwrites [from, to) of f with zeros.
func zeroRange(f vfs.File, from, to int64) error {
	for from < to {
		n := min(to-from, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:n], from); err != nil {
			return err
		}
		from += n
	}
	return nil
}
