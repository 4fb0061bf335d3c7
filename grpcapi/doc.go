// Package grpcapi serves followers over gRPC with the Oxia replication
// protocol: routing by (namespace, shard), validation and error mapping.
package grpcapi
