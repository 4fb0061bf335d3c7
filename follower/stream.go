package follower

import (
	"context"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// ReplicationStream is the follower's side of a Replicate call: Appends in,
// Acks out. A gRPC server stream satisfies it. Like one, Recv and a Send
// blocked by flow control must return (with an error) once the Replicate
// call the stream was passed to has returned, and Recv and Send may be
// called from two goroutines at once. Once the stream has ended, at most
// a Send begun at that moment is still under way when Replicate returns;
// no other is started. Recv may return the same message every time,
// overwritten by the next call: the follower is done with an Append
// before it receives the next. Context is the call's: when it ends (the
// leader went away), the stream ends with its error, a failure of the
// stream (Stats.StreamFailures counts it as other).
type ReplicationStream interface {
	Context() context.Context
	Recv() (*replicationpb.Append, error)
	Send(*replicationpb.Ack) error
}

// SnapshotStream is the follower's side of a SendSnapshot call: chunks in,
// until io.EOF. A gRPC server stream satisfies it. Recv is called from a
// goroutine of InstallSnapshot's, one call at a time; a call still waiting
// when InstallSnapshot returns (the follower closed) must return once the
// call is over, as a gRPC stream's does when its handler returns.
type SnapshotStream interface {
	Recv() (*replicationpb.SnapshotChunk, error)
}
