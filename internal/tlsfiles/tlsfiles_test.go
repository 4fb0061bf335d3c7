package tlsfiles_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/tablefsm/tablefsm/internal/tlsfiles"
	"github.com/tablefsm/tablefsm/internal/tlstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// handshake runs a TLS handshake over loopback between a server and a
// client of these configurations, and one byte each way, and returns
// the client's error (nil when both sides agreed). A server's refusal
// of the client's certificate reaches the client as an alert when it
// reads.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 1)
		if _, err := c.Read(b); err == nil {
			_, _ = c.Write(b)
		}
	}()
	defer func() { <-served }()
	c, err := tls.Dial("tcp", lis.Addr().String(), client)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	return err
}

func TestHandshakes(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	other := tlstest.NewCA(t, "other")
	cert, key := ca.Server(t, "node")
	clientCert, clientKey := ca.Client(t, "leader")
	otherCert, otherKey := other.Client(t, "stranger")

	cases := []struct {
		name                            string
		clientCA                        string // the server's --tls-client-ca
		ca, cert, key, serverName, want string
		// force: the client sends its certificate whatever authorities
		// the server names.
		force bool
	}{
		{name: "server only", ca: ca.File},
		{name: "server only, a client certificate not asked for", ca: ca.File, cert: clientCert, key: clientKey},
		{name: "server name checked", ca: ca.File, serverName: "localhost"},
		{name: "another server name", ca: ca.File, serverName: "node.example", want: "certificate is valid for localhost"},
		{name: "the server's authority not trusted", ca: other.File, want: "certificate signed by unknown authority"},
		{name: "mutual", clientCA: ca.File, ca: ca.File, cert: clientCert, key: clientKey},
		{name: "mutual, no client certificate", clientCA: ca.File, ca: ca.File, want: "certificate required"},
		// The client sends no certificate the server's authorities did
		// not sign.
		{name: "mutual, a client certificate of another authority", clientCA: ca.File, ca: ca.File, cert: otherCert, key: otherKey, want: "certificate required"},
		{name: "mutual, a client certificate of another authority sent anyway", clientCA: ca.File, ca: ca.File, cert: otherCert, key: otherKey, force: true, want: "unknown certificate authority"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			server, err := tlsfiles.Server(cert, key, c.clientCA)
			if err != nil {
				t.Fatal(err)
			}
			client, err := tlsfiles.Client(c.ca, c.cert, c.key, c.serverName)
			if err != nil {
				t.Fatal(err)
			}
			if c.force {
				client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return &client.Certificates[0], nil
				}
			}
			err = handshake(t, server, client)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("handshake: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("handshake: %v, want an error with %q", err, c.want)
			}
		})
	}
}

func TestBadFiles(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	cert, key := ca.Server(t, "node")
	_, otherKey := ca.Server(t, "other")
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("no PEM here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	servers := []struct {
		name, cert, key, clientCA, want string
	}{
		{"missing certificate", missing, key, "", "certificate " + missing + " with key " + key + ": open " + missing},
		{"missing key", cert, missing, "", "open " + missing},
		{"not PEM", empty, key, "", "certificate " + empty},
		{"the key of another certificate", cert, otherKey, "", "private key does not match public key"},
		{"missing client authorities", cert, key, missing, "certificate authorities: open " + missing},
		{"client authorities not PEM", cert, key, empty, empty + " holds no PEM certificate"},
	}
	for _, c := range servers {
		t.Run("server/"+c.name, func(t *testing.T) {
			if _, err := tlsfiles.Server(c.cert, c.key, c.clientCA); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Server: %v, want an error with %q", err, c.want)
			}
		})
	}
	clients := []struct {
		name, ca, cert, key, want string
	}{
		{"a certificate without its key", ca.File, cert, "", "needs its key"},
		{"a key without its certificate", ca.File, "", key, "needs its key"},
		{"missing authorities", missing, "", "", "certificate authorities: open " + missing},
		{"authorities not PEM", empty, "", "", empty + " holds no PEM certificate"},
		{"the key of another certificate", ca.File, cert, otherKey, "private key does not match public key"},
	}
	for _, c := range clients {
		t.Run("client/"+c.name, func(t *testing.T) {
			if _, err := tlsfiles.Client(c.ca, c.cert, c.key, ""); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Client: %v, want an error with %q", err, c.want)
			}
		})
	}
}
