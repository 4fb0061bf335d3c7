package grpcapi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/follower"
)

// ErrorDomain is the domain of every ErrorInfo the server sends: Oxia
// leaders match on it.
const ErrorDomain = "oxia.io"

// The ErrorInfo reasons, as Oxia names them.
const (
	ReasonResourceConflict    = "RESOURCE_CONFLICT"
	ReasonInvalidTerm         = "INVALID_TERM"
	ReasonInvalidStatus       = "INVALID_STATUS"
	ReasonNodeIsNotMember     = "NODE_IS_NOT_MEMBER"
	ReasonResourceUnavailable = "RESOURCE_UNAVAILABLE"
	ReasonInvalidArgument     = "INVALID_ARGUMENT"
)

var (
	// errShuttingDown: the node is shutting down.
	errShuttingDown = errors.New("grpcapi: the node is shutting down")
	// errNotHosted: the shard has no follower and no data on this node.
	// It is a follower.ErrNotMember.
	errNotHosted = fmt.Errorf("%w: the shard is not hosted on this node", follower.ErrNotMember)
	// errInvalid marks a request that failed the server's own validation.
	// It is a follower.ErrInvalidArgument.
	errInvalid = follower.ErrInvalidArgument
)

// invalidf returns an InvalidArgument error naming field.
func invalidf(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", errInvalid, field, fmt.Sprintf(format, args...))
}

// mapping is one row of SPEC §4.
type mapping struct {
	err    error
	code   codes.Code
	reason string
}

// mappings are tried in order: the first sentinel the error matches
// decides. An error can match several (a snapshot abandoned by NewTerm
// is ErrInvalidTerm whatever else failed), so the order is part of the
// contract.
var mappings = [...]mapping{
	{follower.ErrNotMember, codes.Aborted, ReasonNodeIsNotMember},
	{follower.ErrInvalidTerm, codes.FailedPrecondition, ReasonInvalidTerm},
	{follower.ErrInvalidStatus, codes.FailedPrecondition, ReasonInvalidStatus},
	{follower.ErrConflict, codes.FailedPrecondition, ReasonResourceConflict},
	{follower.ErrClosed, codes.FailedPrecondition, ReasonResourceConflict},
	{follower.ErrInvalidArgument, codes.InvalidArgument, ReasonInvalidArgument},
	{follower.ErrGap, codes.InvalidArgument, ReasonInvalidArgument},
	{follower.ErrUnavailable, codes.Unavailable, ReasonResourceUnavailable},
}

// Status maps an error of the follower or of the server to the gRPC
// status a client receives (SPEC §4). It is the only place where that
// mapping is made. shuttingDown tells whether the node is shutting down:
// then whatever ended because the follower closed is Unavailable.
//
//   - nil → nil;
//   - ending by shutdown → Unavailable, no detail;
//   - follower.ErrStreamEnded (a stream ended by NewTerm, DeleteShard or
//     Close) → Canceled, no detail;
//   - the follower's sentinels → the code and ErrorInfo reason of §4;
//   - an error that already carries a gRPC status (the transport's, a
//     client that went away) → that status; a context error → its code;
//   - anything else → Unknown.
func Status(err error, shuttingDown bool) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if errors.Is(err, errShuttingDown) {
		return status.Error(codes.Unavailable, msg)
	}
	if shuttingDown && (errors.Is(err, follower.ErrClosed) || errors.Is(err, follower.ErrStreamEnded)) {
		return status.Error(codes.Unavailable, "node shutting down: "+msg)
	}
	if errors.Is(err, follower.ErrStreamEnded) {
		return status.Error(codes.Canceled, msg)
	}
	for _, m := range mappings {
		if errors.Is(err, m.err) {
			return withReason(m.code, m.reason, msg)
		}
	}
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unknown, msg)
}

// withReason returns a status with an ErrorInfo detail.
func withReason(code codes.Code, reason, msg string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// Reason returns the ErrorInfo reason of an error a client received from
// a server of the oxia.io domain, or "" when it carries none.
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}
