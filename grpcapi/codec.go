package grpcapi

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tablefsm/tablefsm/follower"
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

// Unmarshal decodes data into v, or, for a *checked, into its message.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	in, ok := v.(*checked)
	if !ok {
		return c.unmarshal(data, v)
	}
	in.err = nil
	if err := c.unmarshal(data, in.m); err != nil {
		name := in.m.ProtoReflect().Descriptor().FullName()
		in.err = fmt.Errorf("%w: malformed %s message: %v", follower.ErrInvalidArgument, name, err)
	}
	return nil
}

func (c codec) unmarshal(data mem.BufferSlice, v any) error {
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

// checked is what the handlers of the node's own services receive their
// messages into (see decodeChecked): the codec decodes into m, and should
// the bytes not decode, it keeps the error (an ErrInvalidArgument) in err
// and reports success to gRPC. For a message that does not decode, gRPC
// itself would send Internal at once; a malformed request is the
// client's mistake, and the node answers InvalidArgument.
//
// A checked is itself the protobuf message it carries (ProtoReflect is
// its message's), so that a codec forced in its place through
// Options.GRPCOptions, or a stats handler, sees that message.
type checked struct {
	m   proto.Message
	err error
}

func (c *checked) ProtoReflect() protoreflect.Message { return c.m.ProtoReflect() }

// decodeChecked returns desc with handlers that receive every message
// through checked: a request or stream message that does not decode fails
// the call with InvalidArgument (and the INVALID_ARGUMENT reason).
func decodeChecked(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i := range d.Methods {
		handler := d.Methods[i].Handler
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return handler(srv, ctx, func(m any) error {
				pm, ok := m.(proto.Message)
				if !ok {
					return dec(m)
				}
				in := checked{m: pm}
				if err := dec(&in); err != nil {
					return err
				}
				return Status(in.err, false)
			}, ic)
		}
	}
	d.Streams = slices.Clone(desc.Streams)
	for i := range d.Streams {
		handler := d.Streams[i].Handler
		d.Streams[i].Handler = func(srv any, ss grpc.ServerStream) error {
			return handler(srv, &checkedStream{ServerStream: ss})
		}
	}
	return &d
}

// checkedStream is a server stream whose messages are received through
// checked; its RecvMsg fails with the ErrInvalidArgument of a message
// that does not decode.
type checkedStream struct {
	grpc.ServerStream
	in checked
}

func (s *checkedStream) RecvMsg(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return s.ServerStream.RecvMsg(m)
	}
	s.in.m = pm
	err := s.ServerStream.RecvMsg(&s.in)
	s.in.m = nil
	if err != nil {
		return err
	}
	return s.in.err
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
func (b *appendBuffer) decodeEntry(p []byte) error {
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
