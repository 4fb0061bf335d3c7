package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

var codecCases = []logpos.Entry{
	{},
	{Offset: 1},
	{Term: 1, Offset: 0, Value: []byte("x")},
	{Term: -1, Offset: -1},
	{Term: math.MinInt64, Offset: math.MaxInt64, Timestamp: math.MaxUint64},
	{Term: 7, Offset: 1 << 40, Value: bytes.Repeat([]byte{0xff}, 300), Timestamp: 1},
	{Term: 300, Offset: 127, Value: []byte{}, Timestamp: 1 << 63},
	{Term: 128, Offset: 16384, Value: bytes.Repeat([]byte("ab"), 70000)},
}

func TestEncodingMatchesProtobuf(t *testing.T) {
	for _, e := range codecCases {
		pb := &replicationpb.LogEntry{Term: int64(e.Term), Offset: int64(e.Offset), Value: e.Value, Timestamp: e.Timestamp}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
		if err != nil {
			t.Fatal(err)
		}
		got := EncodeEntry(nil, e)
		if !bytes.Equal(got, want) {
			t.Fatalf("%+v: encoded %x, proto.Marshal %x", e.ID(), got, want)
		}
		if n := payloadSize(&e); n != len(want) {
			t.Fatalf("%+v: payloadSize %d, want %d", e.ID(), n, len(want))
		}
		if e.Term < 0 && len(got) < 11 {
			t.Fatalf("negative term not a 10-byte varint: %x", got)
		}
		// Each decodes the other's output.
		var back replicationpb.LogEntry
		if err := proto.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		if back.Term != int64(e.Term) || back.Offset != int64(e.Offset) || back.Timestamp != e.Timestamp || !bytes.Equal(back.Value, e.Value) {
			t.Fatalf("proto.Unmarshal of our encoding: %v, want %+v", &back, e)
		}
		dec, err := decodePayload(want)
		if err != nil {
			t.Fatal(err)
		}
		if dec.Term != e.Term || dec.Offset != e.Offset || dec.Timestamp != e.Timestamp || !bytes.Equal(dec.Value, e.Value) {
			t.Fatalf("decode of proto.Marshal: %+v, want %+v", dec, e)
		}
	}
}

func TestDecodePayloadLenient(t *testing.T) {
	// Fields out of order, repeated (last wins), an unknown field of every
	// wire type, a known field with another wire type (skipped, as
	// protobuf-go does).
	var b []byte
	b = append(b, tagTimestamp)
	b = binary.LittleEndian.AppendUint64(b, 9)
	b = append(b, tagOffset, 5, tagOffset, 6)
	b = append(b, 5<<3|0, 1)                      // unknown varint
	b = append(b, 6<<3|1, 1, 2, 3, 4, 5, 6, 7, 8) // unknown fixed64
	b = append(b, 7<<3|2, 2, 'h', 'i')            // unknown bytes
	b = append(b, 8<<3|5, 1, 2, 3, 4)             // unknown fixed32
	b = append(b, 1<<3|2, 1, 'z')                 // term as bytes: unknown
	b = append(b, tagValue, 3, 'a', 'b', 'c', tagTerm, 2)
	e, err := decodePayload(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Term != 2 || e.Offset != 6 || e.Timestamp != 9 || string(e.Value) != "abc" {
		t.Fatalf("decoded %+v", e)
	}
	var pb replicationpb.LogEntry
	if err := proto.Unmarshal(b, &pb); err != nil || pb.Term != 2 || pb.Offset != 6 || pb.Timestamp != 9 || string(pb.Value) != "abc" {
		t.Fatalf("protobuf disagrees: %v %v", &pb, err)
	}
	for _, bad := range [][]byte{
		{tagTerm},                      // no value
		{tagTerm, 0x80},                // truncated varint
		{tagValue, 5, 'a'},             // short bytes
		{tagTimestamp, 1, 2},           // short fixed64
		{8<<3 | 5, 1, 2, 3},            // short fixed32
		{0},                            // field 0
		{0, 1},                         // field 0 with a value
		{3<<3 | 3},                     // group
		bytes.Repeat([]byte{0xff}, 11), // overlong varint
		append([]byte{tagTerm}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02), // overflow
	} {
		if _, err := decodePayload(bad); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
}

func TestRecordFraming(t *testing.T) {
	e := logpos.Entry{Term: 3, Offset: 9, Value: []byte("hello")}
	b, crc := appendRecord(nil, &e, 77)
	if crc != chainCRC(77, EncodeEntry(nil, e)) {
		t.Fatal("record CRC is not the chain CRC of the payload")
	}
	got, gotCRC, n, err := decodeRecord(append(b, 1, 2, 3), 77)
	if err != nil || n != len(b) || gotCRC != crc || got.Offset != 9 || string(got.Value) != "hello" {
		t.Fatalf("decodeRecord = %+v %x %d %v", got, gotCRC, n, err)
	}
	if _, _, _, err := decodeRecord(b, 78); err != errRecordChecksum {
		t.Fatalf("wrong chain: %v", err)
	}
	if _, _, _, err := decodeRecord(make([]byte, 16), 0); err != errRecordZero {
		t.Fatalf("zeroes: %v", err)
	}
	if _, _, _, err := decodeRecord(b[:len(b)-1], 77); err != errRecordShort {
		t.Fatalf("short: %v", err)
	}
	// A zero length word is unused space only with a zero CRC word: with
	// any other it is damage.
	if _, _, _, err := decodeRecord([]byte{0, 0, 0, 0, 1, 0, 0, 0, 0, 0}, 0); err != errRecordLength {
		t.Fatalf("zero length, non-zero CRC: %v", err)
	}
	// The largest payload a record may declare, and one byte more.
	var hdr [recordHeaderSize]byte
	binary.LittleEndian.PutUint32(hdr[:], maxPayloadSize|recordMarker)
	if n, err := recordLen(hdr[:]); n != maxPayloadSize || err != nil {
		t.Fatalf("length %d: %d, %v", maxPayloadSize, n, err)
	}
	binary.LittleEndian.PutUint32(hdr[:], (maxPayloadSize+1)|recordMarker)
	if _, err := recordLen(hdr[:]); err != errRecordLength {
		t.Fatalf("length %d: %v", maxPayloadSize+1, err)
	}
	// The empty entry with a zero seed still has a non-zero header.
	z, _ := appendRecord(nil, &logpos.Entry{}, 0)
	if _, _, n, err := decodeRecord(z, 0); err != nil || n != recordHeaderSize {
		t.Fatalf("empty entry: %d %v", n, err)
	}
}

func TestIndexEncoding(t *testing.T) {
	h := indexHeader{first: 10, count: 3, prevCRC: 1, lastCRC: 2, end: 200, lastTerm: 4}
	b := encodeIndex(h, []uint32{32, 60, 100})
	got, err := decodeIndexHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	p, err := decodePositions(&got, b[indexHeaderSize:])
	if err != nil || len(p) != 3 || p[2] != 100 || got.last() != 12 || got.lastTerm != 4 {
		t.Fatalf("%+v %v %v", got, p, err)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x10
		if h2, err := decodeIndexHeader(c); err == nil {
			if _, err := decodePositions(&h2, c[indexHeaderSize:]); err == nil {
				t.Fatalf("bit flip at %d not detected", i)
			}
		}
	}
}

// TestSegmentHeaderEncoding: a segment header decodes to what was
// encoded, and a flipped bit anywhere in it, the reserved bytes and the
// CRC included, makes it a bad header.
func TestSegmentHeaderEncoding(t *testing.T) {
	want := segmentHeader{first: 1 << 40, prevCRC: 0xdeadbeef}
	b := appendSegmentHeader(nil, want)
	if got, err := decodeSegmentHeader(b); err != nil || got != want || len(b) != segmentHeaderSize {
		t.Fatalf("decoded %+v, %v from %d bytes; want %+v from %d", got, err, len(b), want, segmentHeaderSize)
	}
	// A negative first offset, the header's CRC right.
	if got, err := decodeSegmentHeader(appendSegmentHeader(nil, segmentHeader{first: -1})); !errors.Is(err, errBadSegmentHeader) {
		t.Errorf("first offset -1: decoded %+v, %v; want errBadSegmentHeader", got, err)
	}
	for i := range len(b) * 8 {
		c := bytes.Clone(b)
		c[i/8] ^= 1 << (i % 8)
		if got, err := decodeSegmentHeader(c); !errors.Is(err, errBadSegmentHeader) {
			t.Errorf("bit %d of byte %d flipped: decoded %+v, %v; want errBadSegmentHeader", i%8, i/8, got, err)
		}
	}
}

// TestIndexHeaderChecked: a header whose checksums hold but that no
// segment's index can have (no record, its end inside the segment's own
// header, offsets past the largest) is a bad index, so that the segment
// is scanned instead of trusted.
func TestIndexHeaderChecked(t *testing.T) {
	for name, h := range map[string]indexHeader{
		"no record":               {first: 10, count: 0, end: 200},
		"end at the header's":     {first: 10, count: 1, end: segmentHeaderSize},
		"last offset overflows":   {first: math.MaxInt64 - 1, count: 2, end: 200},
		"negative first offset":   {first: -1, count: 1, end: 200},
		"end before the header's": {first: 10, count: 1, end: segmentHeaderSize - 1},
	} {
		if got, err := decodeIndexHeader(encodeIndex(h, make([]uint32, h.count))); !errors.Is(err, errBadIndex) {
			t.Errorf("%s: decoded %+v, %v; want errBadIndex", name, got, err)
		}
	}
}

// TestIndexPositionsChecked: positions that their CRC vouches for but
// that cannot be a segment's records (not increasing, inside the header,
// at or past the end of its records) make the index unusable, so that
// the segment is scanned instead of read at the wrong places.
func TestIndexPositionsChecked(t *testing.T) {
	h := indexHeader{first: 10, count: 3, prevCRC: 1, lastCRC: 2, end: 200, lastTerm: 4}
	for _, positions := range [][]uint32{
		{32, 100, 60},
		{32, 60, 60},
		{16, 60, 100},
		{32, 60, 200},
		{32, 60, 250},
	} {
		b := encodeIndex(h, positions)
		got, err := decodeIndexHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := decodePositions(&got, b[indexHeaderSize:]); !errors.Is(err, errBadIndex) {
			t.Errorf("positions %v: decoded %v, %v; want errBadIndex", positions, p, err)
		}
	}
}

// FuzzDecodeRecord: the record decoder never panics; what it accepts
// protobuf-go accepts with the same fields, and re-encodes to a record
// that decodes to the same entry.
func FuzzDecodeRecord(f *testing.F) {
	for _, e := range codecCases[:7] {
		b, _ := appendRecord(nil, &e, 0)
		f.Add(b, uint32(0))
		b, _ = appendRecord(nil, &e, 0xdeadbeef)
		f.Add(b, uint32(0xdeadbeef))
	}
	f.Add(make([]byte, 8), uint32(0))
	f.Add([]byte{0x05, 0, 0, 0x80, 1, 2, 3, 4, 0x08, 0x01}, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, prev uint32) {
		e, crc, n, err := decodeRecord(b, prev)
		if err != nil {
			// Make the checksum right and try the payload itself.
			l, lerr := recordLen(b)
			if lerr != nil || l > len(b)-recordHeaderSize {
				return
			}
			payload := b[recordHeaderSize : recordHeaderSize+l]
			fixed := bytes.Clone(b)
			binary.LittleEndian.PutUint32(fixed[4:], chainCRC(prev, payload))
			if e, crc, n, err = decodeRecord(fixed, prev); err != nil {
				return
			}
			b = fixed
		}
		payload := b[recordHeaderSize:n]
		if crc != chainCRC(prev, payload) {
			t.Fatalf("CRC %x is not the chain CRC", crc)
		}
		var pb replicationpb.LogEntry
		if err := proto.Unmarshal(payload, &pb); err != nil {
			t.Fatalf("we decoded %x, protobuf-go refuses it: %v", payload, err)
		}
		if pb.Term != int64(e.Term) || pb.Offset != int64(e.Offset) || pb.Timestamp != e.Timestamp || !bytes.Equal(pb.Value, e.Value) {
			t.Fatalf("decoded %+v, protobuf-go %v", e, &pb)
		}
		re, _ := appendRecord(nil, &e, prev)
		e2, _, _, err := decodeRecord(re, prev)
		if err != nil || e2.Term != e.Term || e2.Offset != e.Offset || e2.Timestamp != e.Timestamp || !bytes.Equal(e2.Value, e.Value) {
			t.Fatalf("re-encoding does not round-trip: %+v %v", e2, err)
		}
	})
}
