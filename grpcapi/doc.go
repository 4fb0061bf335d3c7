// Package grpcapi serves followers over gRPC with the Oxia replication
// protocol (SPEC §5): one Server hosts many shards, keyed by (namespace,
// shard), each a follower.Follower in a directory of its own under the
// data directory:
//
//	<data>/.lock                 held while a Server uses the directory
//	<data>/<namespace>/<shard>/  one follower: wal/ and store/
//
// A namespace's directory is removed with the last of its shards.
//
// # Routing and validation
//
// Unary calls name the shard in their body (GetStatus: an empty namespace
// is "default"); the Replicate and SendSnapshot streams in the metadata
// keys "namespace" and "shard-id", each exactly once (a Replicate stream
// may add "term", the term its leader leads: it then attaches only in
// that term; SendSnapshot does not read "term", its chunks' term
// decides). Every name and every request field the server can judge
// is validated before any follower is touched or any file is created: a
// shard id (and a term) is a decimal int64 ≥ 0 without sign, padding or
// leading zeros; a namespace matches ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$,
// so no name can leave the data directory. A bad value is
// InvalidArgument with a message naming the field.
//
// A follower is opened on first use by NewTerm or SendSnapshot. Truncate,
// Replicate, GetStatus, DeleteShard and the Inspect service open only
// shards that have a directory on disk (after a restart, every shard with
// data is hosted); for any other shard Truncate is INVALID_STATUS and
// Replicate, GetStatus and Inspect NODE_IS_NOT_MEMBER, as a follower with
// nothing stored answers, and DeleteShard has nothing to delete: a call
// refused for that reason leaves nothing on disk. A follower
// that is NotMember (no term stored) is reported as not a member, like
// no follower at all, and once no call holds it, one with nothing stored
// (a snapshot refused on a shard the node did not host, a NewTerm that
// could not store its term) is closed and its directory removed: a
// client cannot make the node keep files open, or directories, for
// shards or namespaces it does not host. DeleteShard removes the shard's data and the node forgets it,
// also when its follower does not open (a damaged log, say), once the
// term checks out against the one the shard's store holds.
//
// # Errors
//
// Follower errors become gRPC status codes with a google.rpc.ErrorInfo
// detail (domain "oxia.io", Oxia's reasons) in one place, [Status],
// exactly as SPEC §4 lists them. A stream ended by NewTerm, DeleteShard
// or Close is Canceled; anything ended by the node shutting down is
// Unavailable; neither carries an ErrorInfo.
//
// # Services
//
// Beside OxiaLogReplication and the follower's part of OxiaCoordination,
// the server registers the standard gRPC health service (serving until
// shutdown starts), server reflection (so grpcurl works), and Inspect
// (package inspectpb): a read-only view of what each follower applied and
// of the lifecycle steps it took. Methods of the Oxia services that a
// follower does not serve (the leader's) are Unimplemented.
//
// # Metrics and logs
//
// [Server.Collector] is a Prometheus collector of every hosted shard
// (labels namespace and shard): lifecycle transitions and refusals,
// counted by each follower's observer; the follower's counters, latency
// histograms, positions and applier lag, read from its lock-free Stats at
// each scrape. followerd serves it with --metrics-listen. Log lines about
// a shard carry its namespace and shard (the follower's, its term too);
// each transition (a step along a row that moves, including a move back
// into the same state, such as NewTerm in Fenced) is one line at info,
// and nothing is logged per entry at info.
//
// Shutdown stops accepting calls, ends every stream (Unavailable), closes
// every follower and waits for the handlers: what was acknowledged is
// durable, so nothing acknowledged is lost.
package grpcapi
