package leader

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

// Conn is a leader's connection to one follower node.
type Conn struct {
	cc           *grpc.ClientConn
	Replication  replicationgrpc.OxiaLogReplicationClient
	Coordination replicationgrpc.OxiaCoordinationClient
	Inspect      inspectpb.InspectClient
}

// Dial connects to the node at addr (host:port), with a message size
// limit of maxMessageSize bytes each way (0: gRPC's default). The
// connection is made lazily, on the first call. It is plaintext unless
// opts carry transport credentials (grpc.WithTransportCredentials, e.g.
// TLS): opts come after Dial's own options, and so win.
func Dial(addr string, maxMessageSize int, opts ...grpc.DialOption) (*Conn, error) {
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if maxMessageSize > 0 {
		dopts = append(dopts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize), grpc.MaxCallSendMsgSize(maxMessageSize)))
	}
	cc, err := grpc.NewClient(addr, append(dopts, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("leader: connecting to %s: %w", addr, err)
	}
	return NewConn(cc), nil
}

// NewConn wraps an existing client connection.
func NewConn(cc *grpc.ClientConn) *Conn {
	return &Conn{
		cc:           cc,
		Replication:  replicationgrpc.NewOxiaLogReplicationClient(cc),
		Coordination: replicationgrpc.NewOxiaCoordinationClient(cc),
		Inspect:      inspectpb.NewInspectClient(cc),
	}
}

// ClientConn returns the underlying gRPC connection.
func (c *Conn) ClientConn() *grpc.ClientConn { return c.cc }

// Close closes the connection.
func (c *Conn) Close() error { return c.cc.Close() }

// Shard names one shard of a namespace.
type Shard struct {
	Namespace string
	Shard     int64
}

func (s Shard) String() string { return s.Namespace + "/" + strconv.FormatInt(s.Shard, 10) }

// StreamContext returns ctx carrying the metadata that routes a Replicate
// or SendSnapshot stream to shard s, in place of any routing ctx carried
// (a node refuses a stream whose metadata names a shard twice); other
// outgoing metadata is kept.
func StreamContext(ctx context.Context, s Shard) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx) // a copy
	if md == nil {
		md = metadata.MD{}
	}
	md.Set("namespace", s.Namespace)
	md.Set("shard-id", strconv.FormatInt(s.Shard, 10))
	return metadata.NewOutgoingContext(ctx, md)
}

// metadataTerm is the metadata key by which a Replicate stream names the
// term of its leader (grpcapi.MetadataTerm).
const metadataTerm = "term"

// replicateContext is StreamContext for a Replicate stream of term t: it
// also names t, in place of any term ctx names.
func replicateContext(ctx context.Context, s Shard, t logpos.Term) context.Context {
	ctx = StreamContext(ctx, s)
	md, _ := metadata.FromOutgoingContext(ctx)
	if t < 0 {
		md.Delete(metadataTerm)
	} else {
		md.Set(metadataTerm, strconv.FormatInt(int64(t), 10))
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// Status returns the shard's GetStatus answer.
func (c *Conn) Status(ctx context.Context, s Shard) (*replicationpb.GetStatusResponse, error) {
	return c.Coordination.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: s.Namespace, Shard: s.Shard})
}

// NewTerm fences the shard at term and returns the follower's head entry.
func (c *Conn) NewTerm(ctx context.Context, s Shard, term logpos.Term, opts *replicationpb.NewTermOptions) (logpos.EntryID, error) {
	resp, err := c.Coordination.NewTerm(ctx, &replicationpb.NewTermRequest{Namespace: s.Namespace, Shard: s.Shard, Term: int64(term), Options: opts})
	if err != nil {
		return logpos.NoEntry, err
	}
	return fromProto(resp.GetHeadEntryId()), nil
}

// Truncate cuts the fenced follower's log after head and returns its new
// head entry.
func (c *Conn) Truncate(ctx context.Context, s Shard, term logpos.Term, head logpos.EntryID) (logpos.EntryID, error) {
	resp, err := c.Replication.Truncate(ctx, &replicationpb.TruncateRequest{
		Namespace: s.Namespace, Shard: s.Shard, Term: int64(term),
		HeadEntryId: &replicationpb.EntryId{Term: int64(head.Term), Offset: int64(head.Offset)},
	})
	if err != nil {
		return logpos.NoEntry, err
	}
	return fromProto(resp.GetHeadEntryId()), nil
}

// Delete deletes the shard from the node.
func (c *Conn) Delete(ctx context.Context, s Shard, term logpos.Term) error {
	_, err := c.Coordination.DeleteShard(ctx, &replicationpb.DeleteShardRequest{Namespace: s.Namespace, Shard: s.Shard, Term: int64(term)})
	return err
}

// Get reads keys of the shard's applied key-value state, once the entry
// at minCommit is applied (no waiting when minCommit is NoOffset). A
// missing key reads as nil with found false.
func (c *Conn) Get(ctx context.Context, s Shard, minCommit logpos.Offset, keys ...[]byte) ([]*inspectpb.Value, logpos.Offset, error) {
	req := &inspectpb.GetRequest{Namespace: s.Namespace, Shard: s.Shard, Keys: keys}
	if minCommit != logpos.NoOffset {
		m := int64(minCommit)
		req.MinCommitOffset = &m
	}
	resp, err := c.Inspect.Get(ctx, req)
	if err != nil {
		return nil, logpos.NoOffset, err
	}
	if len(resp.GetValues()) != len(keys) {
		return nil, logpos.NoOffset, fmt.Errorf("leader: asked for %d keys, got %d values", len(keys), len(resp.GetValues()))
	}
	return resp.GetValues(), logpos.Offset(resp.GetCommitOffset()), nil
}

// Steps returns the shard's lifecycle steps after sequence number after.
func (c *Conn) Steps(ctx context.Context, s Shard, after uint64) ([]*inspectpb.Step, error) {
	resp, err := c.Inspect.Steps(ctx, &inspectpb.StepsRequest{Namespace: s.Namespace, Shard: s.Shard, After: after})
	if err != nil {
		return nil, err
	}
	return resp.GetSteps(), nil
}

func fromProto(id *replicationpb.EntryId) logpos.EntryID {
	if id == nil {
		return logpos.NoEntry
	}
	return logpos.EntryID{Term: logpos.Term(id.GetTerm()), Offset: logpos.Offset(id.GetOffset())}
}
