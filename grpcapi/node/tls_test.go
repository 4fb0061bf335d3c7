package node_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
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

// healthAndReflection asks the node, through c, for its health and
// for the list of its services by reflection, and returns the first
// error; the node must say SERVING and list the health service.
func healthAndReflection(t *testing.T, c *leader.Conn) error {
	t.Helper()
	h, err := healthpb.NewHealthClient(c.ClientConn()).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health %v, want SERVING", h.GetStatus())
	}
	refl, err := reflectionpb.NewServerReflectionClient(c.ClientConn()).ServerReflectionInfo(ctxT(t))
	if err != nil {
		return err
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		return err
	}
	r, err := refl.Recv()
	if err != nil {
		return err
	}
	if err := refl.CloseSend(); err != nil {
		return err
	}
	for _, svc := range r.GetListServicesResponse().GetService() {
		if svc.GetName() == healthpb.Health_ServiceDesc.ServiceName {
			return nil
		}
	}
	t.Errorf("reflection lists %v, without the health service", r.GetListServicesResponse().GetService())
	return nil
}

// refused checks that a client the node does not accept gets nowhere:
// its NewTerm, its health check and its reflection stream fail with
// Unavailable (the connection never came up), and the shard's term is
// still what trusted says it is.
func refused(t *testing.T, name string, c, trusted *leader.Conn, s leader.Shard, want string) {
	t.Helper()
	_, err := c.NewTerm(ctxT(t), s, 5, nil)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: NewTerm: %v, want Unavailable with %q", name, err, want)
	}
	if err := healthAndReflection(t, c); status.Code(err) != codes.Unavailable {
		t.Errorf("%s: health and reflection: %v, want Unavailable", name, err)
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
// nothing else: a leader trusting the node's authority replicates to it
// and reaches health and reflection; a plaintext client and one
// trusting another authority reach none of them, and the node logs why.
func TestTLS(t *testing.T) {
	ca, other := tlstest.NewCA(t, "ca"), tlstest.NewCA(t, "other")
	cert, key := ca.Server(t, "node")
	addr, stop, stderr := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--tls-cert", cert, "--tls-key", key)
	// A connection closed before its first byte, as a TCP probe's: the
	// node accepts it before the clients' below, and does not log it.
	probe, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := probe.Close(); err != nil {
		t.Fatal(err)
	}
	trusted := dialTLS(t, addr, ca.File, "", "")
	s := leader.Shard{Namespace: "secure", Shard: 0}
	replicateOver(t, trusted, s, 20)
	if err := healthAndReflection(t, trusted); err != nil {
		t.Fatalf("health and reflection over TLS: %v", err)
	}

	refused(t, "plaintext", dial(t, addr), trusted, s, "")
	refused(t, "another authority", dialTLS(t, addr, other.File, "", ""), trusted, s, "certificate signed by unknown authority")

	if got := stop(); got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr)
	}
	if !strings.Contains(stderr.String(), "tls=server") {
		t.Errorf("the serving line does not say TLS is on:\n%s", stderr)
	}
	handshakesLogged(t, stderr.String(), "first record does not look like a TLS handshake", "bad certificate")
	if strings.Contains(stderr.String(), "err=EOF") {
		t.Errorf("the probe's connection is logged:\n%s", stderr)
	}
}

// handshakesLogged checks that the node's log has a line of a failed
// TLS handshake, with the client's address, for each reason.
func handshakesLogged(t *testing.T, log string, reasons ...string) {
	t.Helper()
	for _, reason := range reasons {
		found := false
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, `msg="TLS handshake failed" remote=127.0.0.1:`) && strings.Contains(line, reason) {
				found = true
			}
		}
		if !found {
			t.Errorf("no failed handshake logged with %q:\n%s", reason, log)
		}
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
	if err := healthAndReflection(t, trusted); err != nil {
		t.Fatalf("health and reflection over mutual TLS: %v", err)
	}

	if got := stop(); got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr)
	}
	if !strings.Contains(stderr.String(), "tls=mutual") {
		t.Errorf("the serving line does not say TLS is mutual:\n%s", stderr)
	}
	// A client certificate of another authority is not sent: the node
	// names the authorities it takes.
	handshakesLogged(t, stderr.String(), "client didn't provide a certificate", "first record does not look like a TLS handshake")
}

// TestTLSFilesRenewed: certificate files rewritten while the node runs
// serve its next connections, with no restart; connections already
// open go on; files that do not load are logged, and the ones loaded
// before stay in use.
func TestTLSFilesRenewed(t *testing.T) {
	old, renewed := tlstest.NewCA(t, "old"), tlstest.NewCA(t, "renewed")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	install := func(ca *tlstest.CA) { ca.InstallServer(t, "node", cert, key) }
	install(old)
	addr, stop, stderr := runMain(t, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--tls-cert", cert, "--tls-key", key)
	before := dialTLS(t, addr, old.File, "", "")
	s := leader.Shard{Namespace: "renewed", Shard: 0}
	replicateOver(t, before, s, 5)

	install(renewed)
	after := dialTLS(t, addr, renewed.File, "", "")
	if st, err := after.Status(ctxT(t), s); err != nil || st.GetTerm() != 1 {
		t.Fatalf("a client trusting the renewed certificate's authority: %v, %v", st, err)
	}
	if _, err := before.Status(ctxT(t), s); err != nil {
		t.Fatalf("the connection opened before the renewal: %v", err)
	}
	refused(t, "trusting the old authority only", dialTLS(t, addr, old.File, "", ""), after, s, "certificate signed by unknown authority")

	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := dialTLS(t, addr, renewed.File, "", "").Status(ctxT(t), s); err != nil {
		t.Fatalf("with a damaged key file, the files loaded before: %v", err)
	}
	if got := stop(); got != 0 {
		t.Fatalf("status %d; stderr:\n%s", got, stderr)
	}
	if !strings.Contains(stderr.String(), "the TLS files changed but do not load") || !strings.Contains(stderr.String(), key) {
		t.Errorf("the damaged key file is not logged:\n%s", stderr)
	}
}
