package node_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/internal/tlsfiles"
	"github.com/tablefsm/tablefsm/internal/tlstest"
	"github.com/tablefsm/tablefsm/logpos"
)

// dialTLS connects to the node at addr over TLS, trusting the
// authorities in caFile and presenting the client certificate in
// certFile, with keyFile, when they are given.
func dialTLS(t *testing.T, addr, caFile, certFile, keyFile string) *leader.Conn {
	t.Helper()
	cfg, err := tlsfiles.Client(caFile, certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := leader.Dial(addr, 0, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// replicateOver fences shard s at term 1 through c, replicates entries
// to it and waits until they are applied.
func replicateOver(t *testing.T, c *leader.Conn, s leader.Shard, entries int64) {
	t.Helper()
	head, err := c.NewTerm(ctxT(t), s, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Truncate(ctxT(t), s, 1, head); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Replicate(ctxT(t), leader.Run{
		Shard: s, Term: 1, First: 0, Count: entries, Window: 4, Cumulative: true, Commit: -1,
		Value: func(o logpos.Offset, buf []byte) []byte { return leader.AppendPut(buf, []byte("k"), []byte("v")) },
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctxT(t), s, logpos.Offset(entries-1)); err != nil {
		t.Fatal(err)
	}
}

// refused checks that a client the node does not accept gets nowhere:
// its NewTerm fails with Unavailable (the connection never came up),
// and the shard's term is still what trusted says it is.
func refused(t *testing.T, name string, c, trusted *leader.Conn, s leader.Shard, want string) {
	t.Helper()
	_, err := c.NewTerm(ctxT(t), s, 5, nil)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: NewTerm: %v, want Unavailable with %q", name, err, want)
	}
	st, err := trusted.Status(ctxT(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetTerm() != 1 {
		t.Errorf("%s: the shard's term is %d after a refused client's NewTerm, want 1", name, st.GetTerm())
	}
}

// TestTLS: with --tls-cert and --tls-key the node serves over TLS and
// nothing else: a leader trusting the node's authority replicates to it,
// a plaintext client and one trusting another authority do not reach a
// follower.
func TestTLS(t *testing.T) {
	ca, other := tlstest.NewCA(t, "ca"), tlstest.NewCA(t, "other")
	cert, key := ca.Server(t, "node")
	addr, stop, stderr := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--tls-cert", cert, "--tls-key", key)
	trusted := dialTLS(t, addr, ca.File, "", "")
	s := leader.Shard{Namespace: "secure", Shard: 0}
	replicateOver(t, trusted, s, 20)

	refused(t, "plaintext", dial(t, addr), trusted, s, "")
	refused(t, "another authority", dialTLS(t, addr, other.File, "", ""), trusted, s, "certificate signed by unknown authority")

	if got := stop(); got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr)
	}
	if !strings.Contains(stderr.String(), "tls=server") {
		t.Errorf("the serving line does not say TLS is on:\n%s", stderr)
	}
}

// TestMutualTLS: with --tls-client-ca as well, a client must present a
// certificate signed by an authority of that file.
func TestMutualTLS(t *testing.T) {
	ca, other := tlstest.NewCA(t, "ca"), tlstest.NewCA(t, "other")
	cert, key := ca.Server(t, "node")
	leaderCert, leaderKey := ca.Client(t, "leader")
	strangerCert, strangerKey := other.Client(t, "stranger")
	addr, stop, stderr := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca.File)
	trusted := dialTLS(t, addr, ca.File, leaderCert, leaderKey)
	s := leader.Shard{Namespace: "secure", Shard: 1}
	replicateOver(t, trusted, s, 20)

	// The server's refusal reaches the client as an alert or as a
	// connection it closed, whichever the client sees first.
	refused(t, "no client certificate", dialTLS(t, addr, ca.File, "", ""), trusted, s, "")
	refused(t, "a certificate of another authority", dialTLS(t, addr, ca.File, strangerCert, strangerKey), trusted, s, "")
	refused(t, "plaintext", dial(t, addr), trusted, s, "")

	if got := stop(); got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr)
	}
	if !strings.Contains(stderr.String(), "tls=mutual") {
		t.Errorf("the serving line does not say TLS is mutual:\n%s", stderr)
	}
}
