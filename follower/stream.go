package follower

import (
	"context"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// ReplicationStream is the follower's side of a Replicate call: Appends in,
// Acks out. A gRPC server stream satisfies it. Like one, Recv must return
// (with an error) once the Replicate call it was passed to has returned,
// and Recv and Send may be called from two goroutines at once.
type ReplicationStream interface {
	Context() context.Context
	Recv() (*replicationpb.Append, error)
	Send(*replicationpb.Ack) error
}

// SnapshotStream is the follower's side of a SendSnapshot call: chunks in,
// until io.EOF. A gRPC server stream satisfies it.
type SnapshotStream interface {
	Context() context.Context
	Recv() (*replicationpb.SnapshotChunk, error)
}
