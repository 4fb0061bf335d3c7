package grpcapi

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc/metadata"

	"github.com/tablefsm/tablefsm/logpos"
)

// The metadata keys that route a stream to its shard.
const (
	MetadataNamespace = "namespace"
	MetadataShardID   = "shard-id"
)

// MetadataTerm is the metadata key by which the leader of a Replicate
// stream may say which term it leads, as Oxia's leaders do: optional,
// at most once, a decimal term.
const MetadataTerm = "term"

// DefaultNamespace is the namespace of a GetStatus request that names
// none.
const DefaultNamespace = "default"

// shardKey names one shard on the node.
type shardKey struct {
	namespace string
	shard     int64
}

func (k shardKey) String() string { return k.namespace + "/" + strconv.FormatInt(k.shard, 10) }

// validNamespace reports whether ns matches ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$:
// a single path element that cannot be "." or "..".
func validNamespace(ns string) bool {
	if len(ns) == 0 || len(ns) > 128 {
		return false
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// parseShardID parses a shard id as ^(0|[1-9][0-9]*)$ into an int64 ≥ 0.
func parseShardID(s string) (int64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// unaryKey validates the namespace and shard of a unary request.
func unaryKey(namespace string, shard int64) (shardKey, error) {
	if !validNamespace(namespace) {
		return shardKey{}, invalidf("namespace", "%s is not a valid namespace", quoteCut(namespace))
	}
	if shard < 0 {
		return shardKey{}, invalidf("shard", "%d is negative", shard)
	}
	return shardKey{namespace, shard}, nil
}

// streamKey validates the routing metadata of a stream: "namespace" and
// "shard-id", each exactly once.
func streamKey(ctx context.Context) (shardKey, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	ns, err := single(md, MetadataNamespace)
	if err != nil {
		return shardKey{}, err
	}
	if !validNamespace(ns) {
		return shardKey{}, invalidf("namespace metadata", "%s is not a valid namespace", quoteCut(ns))
	}
	id, err := single(md, MetadataShardID)
	if err != nil {
		return shardKey{}, err
	}
	shard, ok := parseShardID(id)
	if !ok {
		return shardKey{}, invalidf("shard-id metadata", "%s is not a decimal shard id in [0, 2^63)", quoteCut(id))
	}
	return shardKey{ns, shard}, nil
}

// streamTerm returns the term the stream's leader says it leads in its
// metadata, or NoTerm when it says none.
func streamTerm(ctx context.Context) (logpos.Term, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(MetadataTerm)
	switch {
	case len(v) == 0:
		return logpos.NoTerm, nil
	case len(v) > 1:
		return 0, invalidf(MetadataTerm+" metadata", "given %d times, must be given at most once", len(v))
	}
	term, ok := parseShardID(v[0]) // the same decimal form
	if !ok {
		return 0, invalidf(MetadataTerm+" metadata", "%s is not a decimal term in [0, 2^63)", quoteCut(v[0]))
	}
	return logpos.Term(term), nil
}

// maxQuoted is how much of a refused value a message quotes.
const maxQuoted = 64

// quoteCut quotes s for a message, cut after its first maxQuoted bytes:
// a refusal stays small enough for any client's header limits, whatever
// it refuses.
func quoteCut(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:maxQuoted], len(s))
}

func single(md metadata.MD, key string) (string, error) {
	switch v := md.Get(key); len(v) {
	case 1:
		return v[0], nil
	case 0:
		return "", invalidf(key+" metadata", "missing")
	default:
		return "", invalidf(key+" metadata", "given %d times, must be given once", len(v))
	}
}
