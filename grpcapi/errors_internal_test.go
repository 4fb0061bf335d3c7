package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/follower"
)

// TestStatusMapping checks Status against SPEC §4 for every domain error,
// wrapped as the follower wraps them, including those a client cannot
// easily provoke through the wire (ErrClosed outside a shutdown, an
// unknown error).
func TestStatusMapping(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("follower: doing something: %w", err) }
	cases := []struct {
		name         string
		err          error
		shuttingDown bool
		code         codes.Code
		reason       string
	}{
		{"nil", nil, false, codes.OK, ""},
		{"closed", wrap(follower.ErrClosed), false, codes.FailedPrecondition, "RESOURCE_CONFLICT"},
		{"conflict", wrap(follower.ErrConflict), false, codes.FailedPrecondition, "RESOURCE_CONFLICT"},
		{"invalid term", wrap(follower.ErrInvalidTerm), false, codes.FailedPrecondition, "INVALID_TERM"},
		{"invalid status", wrap(follower.ErrInvalidStatus), false, codes.FailedPrecondition, "INVALID_STATUS"},
		{"not member", wrap(follower.ErrNotMember), false, codes.Aborted, "NODE_IS_NOT_MEMBER"},
		{"not hosted", errNotHosted, false, codes.Aborted, "NODE_IS_NOT_MEMBER"},
		{"unavailable", wrap(follower.ErrUnavailable), false, codes.Unavailable, "RESOURCE_UNAVAILABLE"},
		{"invalid argument", wrap(follower.ErrInvalidArgument), false, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"validation", invalidf("shard", "bad"), false, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"gap", wrap(follower.ErrGap), false, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"stream ended", wrap(follower.ErrStreamEnded), false, codes.Canceled, ""},
		{"stream ended by close", fmt.Errorf("%w: %w", follower.ErrStreamEnded, follower.ErrClosed), false, codes.Canceled, ""},
		{"shutdown: closed", wrap(follower.ErrClosed), true, codes.Unavailable, ""},
		{"shutdown: stream ended", wrap(follower.ErrStreamEnded), true, codes.Unavailable, ""},
		{"shutdown: refused", errShuttingDown, false, codes.Unavailable, ""},
		{"shutdown: other errors keep their code", wrap(follower.ErrInvalidTerm), true, codes.FailedPrecondition, "INVALID_TERM"},
		// An install abandoned by NewTerm is ErrInvalidTerm whatever else
		// failed with it.
		{"invalid term first", fmt.Errorf("%w: %w", follower.ErrInvalidArgument, follower.ErrInvalidTerm), false, codes.FailedPrecondition, "INVALID_TERM"},
		// The rest of the order: where a refusal must go is told before
		// what is wrong with the request, and a request that cannot
		// succeed is not made to look worth retrying.
		{"not member before invalid term", fmt.Errorf("%w: %w", follower.ErrInvalidTerm, follower.ErrNotMember), false, codes.Aborted, "NODE_IS_NOT_MEMBER"},
		{"invalid term before invalid status", fmt.Errorf("%w: %w", follower.ErrInvalidStatus, follower.ErrInvalidTerm), false, codes.FailedPrecondition, "INVALID_TERM"},
		{"invalid argument before unavailable", fmt.Errorf("%w: %w", follower.ErrUnavailable, follower.ErrInvalidArgument), false, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"transport status kept", fmt.Errorf("follower: receiving: %w", status.Error(codes.Canceled, "context canceled")), false, codes.Canceled, ""},
		{"context", wrap(context.DeadlineExceeded), false, codes.DeadlineExceeded, ""},
		{"unknown", errors.New("something else"), false, codes.Unknown, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Status(c.err, c.shuttingDown)
			if status.Code(got) != c.code {
				t.Fatalf("Status(%v, %v) = %v, want code %v", c.err, c.shuttingDown, got, c.code)
			}
			if r := Reason(got); r != c.reason {
				t.Fatalf("Status(%v) reason %q, want %q", c.err, r, c.reason)
			}
			if c.err != nil {
				st, _ := status.FromError(got)
				if c.reason != "" {
					// The reason and domain Oxia leaders match on, spelled
					// as SPEC §4 spells them.
					info, ok := onlyErrorInfo(st.Details())
					if !ok || info.GetReason() != c.reason || info.GetDomain() != "oxia.io" {
						t.Fatalf("details %v, want exactly one ErrorInfo{reason %q, domain oxia.io}", st.Details(), c.reason)
					}
				}
				if c.reason == "" && len(st.Details()) != 0 {
					t.Fatalf("details %v, want none", st.Details())
				}
			}
		})
	}
}

// onlyErrorInfo returns the ErrorInfo of details when it is all they hold.
func onlyErrorInfo(details []any) (*errdetails.ErrorInfo, bool) {
	if len(details) != 1 {
		return nil, false
	}
	info, ok := details[0].(*errdetails.ErrorInfo)
	return info, ok
}

func TestValidNamespace(t *testing.T) {
	long := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		return string(b)
	}
	for _, ns := range []string{"a", "default", "A-b_c.d", "0", long(128), "x..y"} {
		if !validNamespace(ns) {
			t.Errorf("validNamespace(%q) = false", ns)
		}
	}
	for _, ns := range []string{"", ".", "..", "../x", "a/b", "/abs", "-a", "_a", ".a", "a b", "a\x00", "é", long(129), "a\\b"} {
		if validNamespace(ns) {
			t.Errorf("validNamespace(%q) = true", ns)
		}
	}
}

// TestQuoteCut: a refused value is quoted whole up to 64 bytes, and cut
// there, with its length, beyond.
func TestQuoteCut(t *testing.T) {
	at := strings.Repeat("n", 64)
	if got, want := quoteCut(at), `"`+at+`"`; got != want {
		t.Errorf("quoteCut of 64 bytes = %s, want %s", got, want)
	}
	if got, want := quoteCut(at+"\x00"), `"`+at+`"… (65 bytes)`; got != want {
		t.Errorf("quoteCut of 65 bytes = %s, want %s", got, want)
	}
	_, err := unaryKey(strings.Repeat("x", 1000)+"/", 1)
	if msg := err.Error(); !strings.Contains(msg, "(1001 bytes)") || len(msg) > 200 {
		t.Errorf("refusing a 1001-byte namespace: %q (%d bytes), want it cut", msg, len(msg))
	}
}

func TestParseShardID(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "1": 1, "42": 42, "9223372036854775807": 1<<63 - 1} {
		if got, ok := parseShardID(s); !ok || got != want {
			t.Errorf("parseShardID(%q) = %d, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "-1", "+1", "01", "00", " 1", "1 ", "1e3", "0x1", "9223372036854775808", "abc", "1_000", "١"} {
		if got, ok := parseShardID(s); ok {
			t.Errorf("parseShardID(%q) = %d, true", s, got)
		}
	}
}

// TestRecoverUnary: a unary handler's panic is its caller's Unknown (the
// stream side is driven through the wire by TestPanicInACallIsUnknown).
func TestRecoverUnary(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	resp, err := s.recoverUnary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x.Y/Z"},
		func(context.Context, any) (any, error) { panic("unary bug") })
	if resp != nil || status.Code(err) != codes.Unknown {
		t.Fatalf("a panicking unary handler: %v, %v; want Unknown", resp, err)
	}
	resp, err = s.recoverUnary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x.Y/Z"},
		func(context.Context, any) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Fatalf("a handler that returns: %v, %v", resp, err)
	}
}
