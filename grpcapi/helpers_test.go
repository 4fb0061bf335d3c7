package grpcapi_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/logpos"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// node is a grpcapi.Server on a loopback port, with a client connected.
type node struct {
	t      testing.TB
	dir    string
	srv    *grpcapi.Server
	addr   string
	conn   *leader.Conn
	served chan error
	down   bool // shut down
	closed bool // the client closed
}

// startNode starts a server over dir (a fresh temporary directory when
// empty).
func startNode(t testing.TB, dir string, configure ...func(*grpcapi.Options)) *node {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	opts := grpcapi.Options{DataDir: dir}
	for _, c := range configure {
		c(&opts)
	}
	srv, err := grpcapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, dir: dir, srv: srv, addr: lis.Addr().String(), served: make(chan error, 1)}
	go func() { n.served <- srv.Serve(lis) }()
	n.conn, err = leader.Dial(n.addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	return n
}

// stop shuts the server down and closes the client; it fails the test if
// either reports an error.
func (n *node) stop() {
	n.t.Helper()
	n.shutdown()
	if n.closed {
		return
	}
	n.closed = true
	if err := n.conn.Close(); err != nil {
		n.t.Errorf("closing the client: %v", err)
	}
}

// shutdown shuts the server down and leaves the client open: a test that
// reads how its streams end while the node shuts down reads it before
// the client closes (closing it first ends them Canceled, on the
// client's side). It fails the test if the shutdown reports an error.
func (n *node) shutdown() {
	n.t.Helper()
	if n.down {
		return
	}
	n.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		n.t.Errorf("shutdown: %v", err)
	}
	if err := <-n.served; err != nil {
		n.t.Errorf("serve: %v", err)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// kvValue is the entry value the tests write at offset: a put of
// key(offset) to val(offset).
func kvValue(off logpos.Offset, buf []byte) []byte {
	return leader.AppendPut(buf, key(off), val(off))
}

func key(off logpos.Offset) []byte { return fmt.Appendf(nil, "k%08d", off) }
func val(off logpos.Offset) []byte { return fmt.Appendf(nil, "v%d", off) }

// fence runs NewTerm(term) and Truncate to the returned head on shard s,
// leaving it a Follower; it returns the head.
func fence(t testing.TB, c *leader.Conn, s leader.Shard, term logpos.Term) logpos.EntryID {
	t.Helper()
	ctx := ctxT(t)
	head, err := c.NewTerm(ctx, s, term, nil)
	if err != nil {
		t.Fatalf("NewTerm(%v, %d): %v", s, term, err)
	}
	got, err := c.Truncate(ctx, s, term, head)
	if err != nil {
		t.Fatalf("Truncate(%v, %d, %v): %v", s, term, head, err)
	}
	return got
}

// replicate sends count entries from first on s and fails the test
// unless all are acknowledged.
func replicate(t testing.TB, c *leader.Conn, s leader.Shard, term logpos.Term, first logpos.Offset, count int64, cumulative bool) leader.Result {
	t.Helper()
	res, err := c.Replicate(ctxT(t), leader.Run{
		Shard: s, Term: term, First: first, Count: count, Window: 64,
		Cumulative: cumulative, Commit: first - 1, Value: kvValue,
	})
	if err != nil {
		t.Fatalf("replicating %d entries from %d to %v: %v (result %+v)", count, first, s, err, res)
	}
	return res
}

// checkApplied reads the keys of offsets [0, upTo] once upTo is applied
// and fails the test unless each holds its value.
func checkApplied(t testing.TB, c *leader.Conn, s leader.Shard, upTo logpos.Offset) {
	t.Helper()
	var keys [][]byte
	for o := logpos.Offset(0); o <= upTo; o++ {
		keys = append(keys, key(o))
	}
	values, _, err := c.Get(ctxT(t), s, upTo, keys...)
	if err != nil {
		t.Fatalf("reading %v up to %d: %v", s, upTo, err)
	}
	for i, v := range values {
		if !v.GetFound() || string(v.GetValue()) != string(val(logpos.Offset(i))) {
			t.Fatalf("%v: key %s = %q (found %v), want %q", s, keys[i], v.GetValue(), v.GetFound(), val(logpos.Offset(i)))
		}
	}
}

// wantCode fails the test unless err is a gRPC status with code and
// ErrorInfo reason ("" for none) and, when given, a message containing
// substr.
func wantCode(t testing.TB, err error, code codes.Code, reason, substr string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	if got := grpcapi.Reason(err); got != reason {
		t.Fatalf("got reason %q (%v), want %q", got, err, reason)
	}
	if substr != "" && !strings.Contains(st.Message(), substr) {
		t.Fatalf("got message %q, want it to contain %q", st.Message(), substr)
	}
}

// emptyShardDir creates the directory of shard s on node n with nothing
// in it, as a crash may leave one: a shard with nothing stored.
func emptyShardDir(t testing.TB, n *node, s leader.Shard) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(n.dir, s.Namespace, strconv.FormatInt(s.Shard, 10)), 0o755); err != nil {
		t.Fatal(err)
	}
}

// listTree returns every path under dir, relative, sorted.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}
