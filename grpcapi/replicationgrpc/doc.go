// Package replicationgrpc holds the services of the follower side of the
// Oxia replication protocol, OxiaLogReplication and OxiaCoordination
// (their clients, server interfaces and descriptions), generated from
// replication_service.proto; their messages are in grpcapi/replicationpb.
package replicationgrpc
