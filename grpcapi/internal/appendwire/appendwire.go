// Package appendwire decodes the Appends of a replication stream, the one
// message a node receives per entry, without allocating: into a Buffer
// reused from one Append to the next, through a Codec that gRPC servers
// install (grpc.ForceServerCodecV2) and a Stream whose Recv uses it. The
// node and the benchmarks' bare stream (package echo) receive Appends
// alike through it.
package appendwire

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// Codec is gRPC's protobuf codec, except for a *Buffer, which it decodes
// into without allocating. Decoding an Append into fresh messages takes
// three allocations and a copy of the value; for a node under load, about
// a tenth of its CPU.
type Codec struct {
	proto encoding.CodecV2
}

// NewCodec returns a Codec.
func NewCodec() Codec { return Codec{proto: encoding.GetCodecV2(protocodec.Name)} }

// Name is the protobuf codec's: the content subtype stays "proto".
func (Codec) Name() string { return protocodec.Name }

// Marshal is the protobuf codec's.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

// Unmarshal decodes data into v: a *Buffer with Buffer.Decode, anything
// else with the protobuf codec.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*Buffer)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	if len(data) == 1 {
		return b.Decode(data[0].ReadOnlyData())
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return b.Decode(buf.ReadOnlyData())
}

// Buffer is an Append decoded over and over into the same memory:
// its entry, its previous CRC and its value's bytes are reused by the
// next decode. It is itself a proto.Message (the embedded Append), so
// that gRPC's own codec can fill it too, by allocating.
type Buffer struct {
	replicationpb.Append
	entry replicationpb.LogEntry
	crc   uint32
	value []byte
}

// Decode sets b.Append to the message encoded in p, as proto.Unmarshal
// with DiscardUnknown does: fields with another wire type than their own
// are unknown, and unknown fields are skipped; repeated occurrences of a
// scalar keep the last, of the entry merge. p is not retained.
func (b *Buffer) Decode(p []byte) error {
	m := &b.Append
	m.Term, m.Entry, m.CommitOffset, m.PreviousEntryCrc, m.CumulativeAcksSupported = 0, nil, 0, nil, false
	if r := m.ProtoReflect(); len(r.GetUnknown()) > 0 {
		r.SetUnknown(nil) // left by gRPC's own codec
	}
	return eachField(p, func(num protowire.Number, typ protowire.Type, v uint64, bytes []byte) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			m.Term = int64(v)
		case num == 2 && typ == protowire.BytesType:
			if m.Entry == nil {
				b.entry.Term, b.entry.Offset, b.entry.Value, b.entry.Timestamp = 0, 0, nil, 0
				m.Entry = &b.entry
			}
			return b.decodeEntry(bytes)
		case num == 3 && typ == protowire.VarintType:
			m.CommitOffset = int64(v)
		case num == 4 && typ == protowire.VarintType:
			b.crc = uint32(v)
			m.PreviousEntryCrc = &b.crc
		case num == 5 && typ == protowire.VarintType:
			m.CumulativeAcksSupported = protowire.DecodeBool(v)
		}
		return nil
	})
}

// decodeEntry merges the LogEntry encoded in p into b.entry, copying its
// value into b's reused bytes.
func (b *Buffer) decodeEntry(p []byte) error {
	e := &b.entry
	return eachField(p, func(num protowire.Number, typ protowire.Type, v uint64, bytes []byte) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			e.Term = int64(v)
		case num == 2 && typ == protowire.VarintType:
			e.Offset = int64(v)
		case num == 3 && typ == protowire.BytesType:
			b.value = append(b.value[:0], bytes...)
			e.Value = b.value
		case num == 4 && typ == protowire.Fixed64Type:
			e.Timestamp = v
		}
		return nil
	})
}

// eachField calls field for every field of the message encoded in p, in
// order, with its number, its wire type and its value: v for a varint or
// a fixed64, bytes (not retained) for a length-delimited field. Fields of
// other wire types (fixed32, groups) are checked and skipped. Malformed
// input is an error, as protobuf-go finds it: truncation, an invalid
// field number or wire type, an unmatched group.
func eachField(p []byte, field func(num protowire.Number, typ protowire.Type, v uint64, bytes []byte) error) error {
	for len(p) > 0 {
		num, typ, n := protowire.ConsumeTag(p)
		if n >= 0 && num > protowire.MaxValidNumber {
			n = -2 // protowire's code for an invalid field number
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		p = p[n:]
		var v uint64
		var bytes []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(p)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(p)
		case protowire.BytesType:
			bytes, n = protowire.ConsumeBytes(p)
		default:
			n = protowire.ConsumeFieldValue(num, typ, p)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		p = p[n:]
		if err := field(num, typ, v, bytes); err != nil {
			return err
		}
	}
	return nil
}

// Stream is a replication stream whose Recv decodes every Append into
// the same Buffer: the message it returns is valid until the
// next Recv (the follower is done with each before it receives the next).
type Stream struct {
	grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]
	buf Buffer
}

func (s *Stream) Recv() (*replicationpb.Append, error) {
	if err := s.RecvMsg(&s.buf); err != nil {
		return nil, err
	}
	return &s.buf.Append, nil
}
