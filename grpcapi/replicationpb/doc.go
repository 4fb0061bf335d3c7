// Package replicationpb holds the messages of the follower side of the
// Oxia replication protocol, generated from replication.proto. It links
// no gRPC: the services that carry them are in grpcapi/replicationgrpc.
package replicationpb
