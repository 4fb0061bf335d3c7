// Command followerd is a follower node of the Oxia replication protocol:
// it serves the followers of many shards over gRPC from one data
// directory. Run it with --help for its flags; see docs/node.md.
package main

import (
	"context"
	"os"

	"github.com/tablefsm/tablefsm/grpcapi/node"
)

func main() {
	os.Exit(node.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
