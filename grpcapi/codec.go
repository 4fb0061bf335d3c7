package grpcapi

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// codec is the server's message codec: gRPC's protobuf codec, except for
// the Appends of a replication stream, which it decodes into a reused
// appendBuffer without allocating. An Append is the one message a node
// receives per entry; decoding it into fresh messages (three allocations
// and a copy of the value each) costs the node about a tenth of its CPU
// under load.
type codec struct {
	proto encoding.CodecV2
}

func newCodec() codec { return codec{proto: encoding.GetCodecV2(protocodec.Name)} }

// Name is the protobuf codec's: the content subtype stays "proto".
func (codec) Name() string { return protocodec.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*appendBuffer)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	if len(data) == 1 {
		return b.decode(data[0].ReadOnlyData())
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return b.decode(buf.ReadOnlyData())
}

// appendBuffer is an Append decoded over and over into the same memory:
// its entry, its previous CRC and its value's bytes are reused by the
// next decode. It is itself a proto.Message (the embedded Append), so
// that gRPC's own codec can fill it too, by allocating.
type appendBuffer struct {
	replicationpb.Append
	entry replicationpb.LogEntry
	crc   uint32
	value []byte
}

// decode sets b.Append to the message encoded in p, as proto.Unmarshal
// with DiscardUnknown does: fields with another wire type than their own
// are unknown, and unknown fields are skipped; repeated occurrences of a
// scalar keep the last, of the entry merge. p is not retained.
func (b *appendBuffer) decode(p []byte) error {
	m := &b.Append
	m.Term, m.Entry, m.CommitOffset, m.PreviousEntryCrc, m.CumulativeAcksSupported = 0, nil, 0, nil, false
	if r := m.ProtoReflect(); len(r.GetUnknown()) > 0 {
		r.SetUnknown(nil) // left by gRPC's own codec
	}
	for len(p) > 0 {
		num, typ, n := consumeTag(p)
		if n < 0 {
			return protowire.ParseError(n)
		}
		p = p[n:]
		switch {
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(p)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if m.Entry == nil {
				b.entry.Term, b.entry.Offset, b.entry.Value, b.entry.Timestamp = 0, 0, nil, 0
				m.Entry = &b.entry
			}
			if err := b.decodeEntry(v); err != nil {
				return err
			}
			p = p[n:]
		case typ == protowire.VarintType && (num == 1 || num == 3 || num == 4 || num == 5):
			v, n := protowire.ConsumeVarint(p)
			if n < 0 {
				return protowire.ParseError(n)
			}
			switch num {
			case 1:
				m.Term = int64(v)
			case 3:
				m.CommitOffset = int64(v)
			case 4:
				b.crc = uint32(v)
				m.PreviousEntryCrc = &b.crc
			case 5:
				m.CumulativeAcksSupported = protowire.DecodeBool(v)
			}
			p = p[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, p)
			if n < 0 {
				return protowire.ParseError(n)
			}
			p = p[n:]
		}
	}
	return nil
}

// consumeTag is protowire.ConsumeTag refusing field numbers above the
// largest valid one, as protobuf-go does.
func consumeTag(p []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(p)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -2 // protowire's code for an invalid field number
	}
	return num, typ, n
}

// decodeEntry merges the LogEntry encoded in p into b.entry, copying its
// value into b's reused bytes.
func (b *appendBuffer) decodeEntry(p []byte) error {
	e := &b.entry
	for len(p) > 0 {
		num, typ, n := consumeTag(p)
		if n < 0 {
			return protowire.ParseError(n)
		}
		p = p[n:]
		switch {
		case (num == 1 || num == 2) && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(p)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if num == 1 {
				e.Term = int64(v)
			} else {
				e.Offset = int64(v)
			}
			p = p[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(p)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b.value = append(b.value[:0], v...)
			e.Value = b.value
			p = p[n:]
		case num == 4 && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(p)
			if n < 0 {
				return protowire.ParseError(n)
			}
			e.Timestamp = v
			p = p[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, p)
			if n < 0 {
				return protowire.ParseError(n)
			}
			p = p[n:]
		}
	}
	return nil
}

// appendStream is a replication stream whose Recv decodes every Append
// into the same appendBuffer: the message it returns is valid until the
// next Recv (the follower is done with each before it receives the next).
type appendStream struct {
	grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]
	buf appendBuffer
}

func (s *appendStream) Recv() (*replicationpb.Append, error) {
	if err := s.RecvMsg(&s.buf); err != nil {
		return nil, err
	}
	return &s.buf.Append, nil
}
