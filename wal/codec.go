package wal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/bits"

	"github.com/tablefsm/tablefsm/logpos"
)

// castagnoli is the CRC32-C table. crc32.Update recognises it and uses the
// hardware instruction where there is one.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// chainCRC extends the CRC chain: crc_i = crc32c(crc_{i-1}, payload_i).
func chainCRC(prev uint32, payload []byte) uint32 {
	return crc32.Update(prev, castagnoli, payload)
}

// MaxValueSize is the largest entry value the log accepts.
const MaxValueSize = 256 << 20

// maxPayloadSize bounds a serialized LogEntry: the value plus at most
// 1+10 (term) + 1+10 (offset) + 1+10 (value length) + 1+8 (timestamp).
const maxPayloadSize = MaxValueSize + 42

// Record framing: a 4-byte little-endian length word whose high bit is
// always set (so that zeroed space never parses as a record, not even an
// empty payload), a 4-byte little-endian chained CRC, then the payload.
const (
	recordHeaderSize = 8
	recordMarker     = 1 << 31
)

// Protobuf tags of replication.LogEntry.
const (
	tagTerm      = 1<<3 | 0 // varint
	tagOffset    = 2<<3 | 0 // varint
	tagValue     = 3<<3 | 2 // bytes
	tagTimestamp = 4<<3 | 1 // fixed64
)

func varintLen(v uint64) int {
	// 1 + floor(bits/7), with 0 taking one byte.
	return 1 + (bits.Len64(v|1)-1)/7
}

// payloadSize is the size of e's protobuf encoding.
func payloadSize(e *logpos.Entry) int {
	n := 0
	if e.Term != 0 {
		n += 1 + varintLen(uint64(e.Term))
	}
	if e.Offset != 0 {
		n += 1 + varintLen(uint64(e.Offset))
	}
	if len(e.Value) != 0 {
		n += 1 + varintLen(uint64(len(e.Value))) + len(e.Value)
	}
	if e.Timestamp != 0 {
		n += 1 + 8
	}
	return n
}

// appendPayload appends the protobuf wire encoding of e as a
// replication.LogEntry, byte-identical to proto.Marshal: proto3 zero
// values omitted, fields in number order.
func appendPayload(b []byte, e *logpos.Entry) []byte {
	if e.Term != 0 {
		b = append(b, tagTerm)
		b = binary.AppendUvarint(b, uint64(e.Term))
	}
	if e.Offset != 0 {
		b = append(b, tagOffset)
		b = binary.AppendUvarint(b, uint64(e.Offset))
	}
	if len(e.Value) != 0 {
		b = append(b, tagValue)
		b = binary.AppendUvarint(b, uint64(len(e.Value)))
		b = append(b, e.Value...)
	}
	if e.Timestamp != 0 {
		b = append(b, tagTimestamp)
		b = binary.LittleEndian.AppendUint64(b, e.Timestamp)
	}
	return b
}

// EncodeEntry appends the protobuf encoding of e (a replication.LogEntry)
// to b. It is the payload over which the CRC chain is computed.
func EncodeEntry(b []byte, e logpos.Entry) []byte { return appendPayload(b, &e) }

var errMalformed = errors.New("malformed LogEntry")

// consumeVarint decodes a protobuf varint: at most 10 bytes, the 10th at
// most 1 (as protobuf-go).
func consumeVarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, -1
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

// decodePayload decodes a replication.LogEntry. It accepts any valid
// encoding (fields in any order, repeated scalars last-one-wins, unknown
// fields skipped); groups are rejected. Value aliases b.
func decodePayload(b []byte) (logpos.Entry, error) {
	var e logpos.Entry
	for len(b) > 0 {
		tag, n := consumeVarint(b)
		if n < 0 || tag>>3 == 0 || tag>>3 > 1<<29-1 {
			return logpos.Entry{}, errMalformed
		}
		b = b[n:]
		num, typ := tag>>3, tag&7
		switch typ {
		case 0:
			v, n := consumeVarint(b)
			if n < 0 {
				return logpos.Entry{}, errMalformed
			}
			b = b[n:]
			switch num {
			case 1:
				e.Term = logpos.Term(int64(v))
			case 2:
				e.Offset = logpos.Offset(int64(v))
			}
		case 1:
			if len(b) < 8 {
				return logpos.Entry{}, errMalformed
			}
			if num == 4 {
				e.Timestamp = binary.LittleEndian.Uint64(b)
			}
			b = b[8:]
		case 2:
			l, n := consumeVarint(b)
			if n < 0 || l > uint64(len(b)-n) {
				return logpos.Entry{}, errMalformed
			}
			v := b[n : n+int(l)]
			b = b[n+int(l):]
			if num == 3 {
				e.Value = v
			}
		case 5:
			if len(b) < 4 {
				return logpos.Entry{}, errMalformed
			}
			b = b[4:]
		default:
			return logpos.Entry{}, errMalformed
		}
	}
	if len(e.Value) == 0 {
		e.Value = nil
	}
	return e, nil
}

// appendRecord appends the framed record of e, chained to prev, and
// returns the record's CRC.
func appendRecord(b []byte, e *logpos.Entry, prev uint32) ([]byte, uint32) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	b = appendPayload(b, e)
	payload := b[start+recordHeaderSize:]
	crc := chainCRC(prev, payload)
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload))|recordMarker)
	binary.LittleEndian.PutUint32(b[start+4:], crc)
	return b, crc
}

// Reasons a record does not decode. recordZero means the space is unused
// (a clean end); the others are damage.
var (
	errRecordZero      = errors.New("unused space")
	errRecordShort     = errors.New("record cut short")
	errRecordLength    = errors.New("bad record length")
	errRecordChecksum  = errors.New("checksum mismatch")
	errRecordMalformed = errors.New("malformed payload")
)

// recordLen parses a record header: the payload length, or an error.
func recordLen(hdr []byte) (int, error) {
	if len(hdr) < recordHeaderSize {
		return 0, errRecordShort
	}
	w := binary.LittleEndian.Uint32(hdr)
	if w == 0 && binary.LittleEndian.Uint32(hdr[4:]) == 0 {
		return 0, errRecordZero
	}
	if w&recordMarker == 0 || w&^recordMarker > maxPayloadSize {
		return 0, errRecordLength
	}
	return int(w &^ recordMarker), nil
}

// decodeRecord decodes the record at the start of b, chained to prev. It
// returns the entry (its Value aliases b), the record's CRC and its size.
func decodeRecord(b []byte, prev uint32) (logpos.Entry, uint32, int, error) {
	n, err := recordLen(b)
	if err != nil {
		return logpos.Entry{}, 0, 0, err
	}
	if n > len(b)-recordHeaderSize {
		return logpos.Entry{}, 0, 0, errRecordShort
	}
	payload := b[recordHeaderSize : recordHeaderSize+n]
	crc := binary.LittleEndian.Uint32(b[4:])
	if chainCRC(prev, payload) != crc {
		return logpos.Entry{}, 0, 0, errRecordChecksum
	}
	e, err := decodePayload(payload)
	if err != nil {
		return logpos.Entry{}, 0, 0, errRecordMalformed
	}
	return e, crc, recordHeaderSize + n, nil
}

// Segment header: 32 bytes at the start of every segment file.
//
//	0  magic "TWSG"
//	4  version (u16), reserved (u16)
//	8  first offset (i64)
//	16 previous CRC: the chain value the first record is seeded with (u32)
//	20 reserved (8 bytes, zero)
//	28 CRC32-C of bytes 0..28 (u32)
const (
	segmentHeaderSize = 32
	segmentMagic      = "TWSG"
	formatVersion     = 1
)

type segmentHeader struct {
	first   logpos.Offset
	prevCRC uint32
}

func appendSegmentHeader(b []byte, h segmentHeader) []byte {
	start := len(b)
	b = append(b, segmentMagic...)
	b = binary.LittleEndian.AppendUint16(b, formatVersion)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.first))
	b = binary.LittleEndian.AppendUint32(b, h.prevCRC)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

var errBadSegmentHeader = errors.New("bad segment header")

func decodeSegmentHeader(b []byte) (segmentHeader, error) {
	if len(b) < segmentHeaderSize || string(b[:4]) != segmentMagic ||
		binary.LittleEndian.Uint16(b[4:]) != formatVersion ||
		crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
		return segmentHeader{}, errBadSegmentHeader
	}
	h := segmentHeader{
		first:   logpos.Offset(binary.LittleEndian.Uint64(b[8:])),
		prevCRC: binary.LittleEndian.Uint32(b[16:]),
	}
	if h.first < 0 {
		return segmentHeader{}, errBadSegmentHeader
	}
	return h, nil
}

// Index file: a header, then one u32 per record, the record's position in
// the segment file.
//
//	0  magic "TWIX"
//	4  version (u16), reserved (u16)
//	8  first offset (i64)
//	16 record count (u32)
//	20 previous CRC (the segment's seed) (u32)
//	24 CRC of the last record (u32)
//	28 end of the last record in the segment file (u32)
//	32 term of the last record (i64)
//	40 CRC32-C of the positions (u32)
//	44 CRC32-C of bytes 0..44 (u32)
const (
	indexHeaderSize = 48
	indexMagic      = "TWIX"
)

type indexHeader struct {
	first    logpos.Offset
	count    int
	prevCRC  uint32
	lastCRC  uint32
	end      int64
	lastTerm logpos.Term
	posCRC   uint32
}

func (h *indexHeader) last() logpos.Offset { return h.first + logpos.Offset(h.count) - 1 }

func encodeIndex(h indexHeader, positions []uint32) []byte {
	b := make([]byte, 0, indexHeaderSize+4*len(positions))
	b = b[:indexHeaderSize]
	for _, p := range positions {
		b = binary.LittleEndian.AppendUint32(b, p)
	}
	h.posCRC = crc32.Checksum(b[indexHeaderSize:], castagnoli)
	hb := b[:0:indexHeaderSize]
	hb = append(hb, indexMagic...)
	hb = binary.LittleEndian.AppendUint16(hb, formatVersion)
	hb = binary.LittleEndian.AppendUint16(hb, 0)
	hb = binary.LittleEndian.AppendUint64(hb, uint64(h.first))
	hb = binary.LittleEndian.AppendUint32(hb, uint32(h.count))
	hb = binary.LittleEndian.AppendUint32(hb, h.prevCRC)
	hb = binary.LittleEndian.AppendUint32(hb, h.lastCRC)
	hb = binary.LittleEndian.AppendUint32(hb, uint32(h.end))
	hb = binary.LittleEndian.AppendUint64(hb, uint64(h.lastTerm))
	hb = binary.LittleEndian.AppendUint32(hb, h.posCRC)
	binary.LittleEndian.AppendUint32(hb, crc32.Checksum(hb, castagnoli))
	return b
}

var errBadIndex = errors.New("bad index")

func decodeIndexHeader(b []byte) (indexHeader, error) {
	if len(b) < indexHeaderSize || string(b[:4]) != indexMagic ||
		binary.LittleEndian.Uint16(b[4:]) != formatVersion ||
		crc32.Checksum(b[:44], castagnoli) != binary.LittleEndian.Uint32(b[44:]) {
		return indexHeader{}, errBadIndex
	}
	h := indexHeader{
		first:    logpos.Offset(binary.LittleEndian.Uint64(b[8:])),
		count:    int(binary.LittleEndian.Uint32(b[16:])),
		prevCRC:  binary.LittleEndian.Uint32(b[20:]),
		lastCRC:  binary.LittleEndian.Uint32(b[24:]),
		end:      int64(binary.LittleEndian.Uint32(b[28:])),
		lastTerm: logpos.Term(binary.LittleEndian.Uint64(b[32:])),
		posCRC:   binary.LittleEndian.Uint32(b[40:]),
	}
	if h.first < 0 || h.count < 1 || h.end <= segmentHeaderSize || h.first > math.MaxInt64-logpos.Offset(h.count) {
		return indexHeader{}, errBadIndex
	}
	return h, nil
}

// decodePositions checks and decodes the positions that follow an index
// header.
func decodePositions(h *indexHeader, b []byte) ([]uint32, error) {
	if len(b) != 4*h.count || crc32.Checksum(b, castagnoli) != h.posCRC {
		return nil, errBadIndex
	}
	p := make([]uint32, h.count)
	prev := uint32(0)
	for i := range p {
		p[i] = binary.LittleEndian.Uint32(b[4*i:])
		if p[i] < segmentHeaderSize || (i > 0 && p[i] <= prev) || int64(p[i]) >= h.end {
			return nil, errBadIndex
		}
		prev = p[i]
	}
	return p, nil
}
