package grpcapi_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc/codes"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// statEIOFS is the operating system's file system, on which a Stat of
// path fails with EIO.
type statEIOFS struct {
	vfs.FS
	path string
}

func (f *statEIOFS) Stat(name string) (vfs.FileInfo, error) {
	if name == f.path {
		return nil, &os.PathError{Op: "stat", Path: name, Err: syscall.EIO}
	}
	return f.FS.Stat(name)
}

// TestLookupStatFailureIsUnavailable: when the node cannot tell whether
// it hosts a shard (looking for its directory fails other than with "does
// not exist"), a call that does not create the shard is Unavailable /
// RESOURCE_UNAVAILABLE, not Aborted / NODE_IS_NOT_MEMBER: a leader must
// not take a disk error for the shard being gone.
func TestLookupStatFailureIsUnavailable(t *testing.T) {
	dir := t.TempDir()
	s := leader.Shard{Namespace: "ns", Shard: 1}
	fs := &statEIOFS{FS: vfs.Default, path: filepath.Join(dir, s.Namespace, "1")}
	n := startNode(t, dir, func(o *grpcapi.Options) { o.FS = fs })
	ctx := ctxT(t)
	_, err := n.conn.Status(ctx, s)
	wantCode(t, err, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "")
	_, err = n.conn.Coordination.GetStatus(ctx, &replicationpb.GetStatusRequest{Namespace: s.Namespace, Shard: s.Shard})
	wantCode(t, err, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "")
	_, _, err = n.conn.Get(ctx, s, -1, []byte("k"))
	wantCode(t, err, codes.Unavailable, grpcapi.ReasonResourceUnavailable, "")
}
