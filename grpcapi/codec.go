package grpcapi

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/grpcapi/internal/appendwire"
)

// codec is the server's message codec: that of package appendwire (the
// Appends of a replication stream decoded without allocating), and the
// messages of the node's own services received through checked.
type codec struct {
	appendwire.Codec
}

func newCodec() codec { return codec{appendwire.NewCodec()} }

// Unmarshal decodes data into v, or, for a *checked, into its message.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	in, ok := v.(*checked)
	if !ok {
		return c.Codec.Unmarshal(data, v)
	}
	in.err = nil
	if err := c.Codec.Unmarshal(data, in.m); err != nil {
		name := in.m.ProtoReflect().Descriptor().FullName()
		in.err = fmt.Errorf("%w: malformed %s message: %v", follower.ErrInvalidArgument, name, err)
	}
	return nil
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
