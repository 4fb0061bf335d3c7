package tlsfiles_test

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"os"
	"os/exec"
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
	addr, done := serveOnce(t, server)
	defer done()
	return exchange(addr, client)
}

// serveOnce listens on loopback with the server configuration, accepts
// one connection and sends back the byte it reads. done stops it.
func serveOnce(t *testing.T, server *tls.Config) (addr string, done func()) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
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
	return lis.Addr().String(), func() {
		_ = lis.Close()
		<-served
	}
}

// exchange dials addr with the client configuration, sends a byte and
// reads one back.
func exchange(addr string, client *tls.Config) error {
	c, err := tls.Dial("tcp", addr, client)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	// The byte may come with the server's close_notify, as io.EOF.
	if n, err := c.Read(make([]byte, 1)); n == 0 {
		return err
	}
	return nil
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
		// maxVersion: the newest TLS version the client speaks (0: Go's).
		maxVersion uint16
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
		// The server speaks TLS 1.2 or later.
		{name: "a TLS 1.2 client", ca: ca.File, maxVersion: tls.VersionTLS12},
		{name: "a TLS 1.1 client", ca: ca.File, maxVersion: tls.VersionTLS11, want: "protocol version"},
		// A server certificate (extended key usage serverAuth alone) is
		// no client certificate: the client sends it, the server
		// refuses it.
		{name: "mutual, a server certificate as the client's", clientCA: ca.File, ca: ca.File, cert: cert, key: key, want: "bad certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			server, err := tlsfiles.Server(cert, key, c.clientCA, nil)
			if err != nil {
				t.Fatal(err)
			}
			client, err := tlsfiles.Client(c.ca, c.cert, c.key, c.serverName)
			if err != nil {
				t.Fatal(err)
			}
			if c.maxVersion != 0 {
				// Go's client refuses below TLS 1.2 unless told.
				client.MinVersion, client.MaxVersion = tls.VersionTLS10, c.maxVersion
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
		{"missing certificate", missing, key, "", "tls: certificate " + missing + ": open " + missing},
		{"missing key", cert, missing, "", "open " + missing},
		{"not PEM", empty, key, "", "certificate " + empty},
		{"the key of another certificate", cert, otherKey, "", "private key does not match public key"},
		{"missing client authorities", cert, key, missing, "certificate authorities: open " + missing},
		{"client authorities not PEM", cert, key, empty, empty + " holds no PEM certificate"},
	}
	for _, c := range servers {
		t.Run("server/"+c.name, func(t *testing.T) {
			if _, err := tlsfiles.Server(c.cert, c.key, c.clientCA, nil); err == nil || !strings.Contains(err.Error(), c.want) {
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

// TestChainsAndKeyForms: a certificate file holding the leaf, then the
// intermediate authority that signed it, is sent whole, so that each
// side trusts the root alone; keys load in the PKCS#8, SEC1 and PKCS#1
// forms.
func TestChainsAndKeyForms(t *testing.T) {
	root := tlstest.NewCA(t, "root")
	in := root.Intermediate(t, "intermediate")
	clientCert, clientKey := in.Client(t, "leader")
	for _, f := range []struct {
		name string
		form tlstest.KeyForm
	}{{"PKCS#8", tlstest.PKCS8}, {"SEC1", tlstest.SEC1}, {"PKCS#1", tlstest.PKCS1}} {
		t.Run(f.name, func(t *testing.T) {
			cert, key := in.ServerKey(t, "node", f.form)
			server, err := tlsfiles.Server(cert, key, root.File, nil)
			if err != nil {
				t.Fatal(err)
			}
			client, err := tlsfiles.Client(root.File, clientCert, clientKey, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := handshake(t, server, client); err != nil {
				t.Fatalf("handshake: %v", err)
			}
		})
	}
}

// TestEncryptedKey: an encrypted private key is named as such, with the
// file, rather than as a key that does not parse.
func TestEncryptedKey(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	cert, _ := ca.Server(t, "node")
	ciphertext := make([]byte, 144)
	if _, err := rand.Read(ciphertext); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, b := range []*pem.Block{
		// PKCS#8, as openssl pkcs8 -topk8 writes it.
		{Type: "ENCRYPTED PRIVATE KEY", Bytes: ciphertext},
		// OpenSSL's legacy form, as openssl ec -aes256 writes it.
		{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: ciphertext},
	} {
		key := filepath.Join(dir, strings.ReplaceAll(b.Type, " ", "-")+".pem")
		if err := os.WriteFile(key, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
		want := "the private key in " + key + " is encrypted"
		if _, err := tlsfiles.Server(cert, key, "", nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Server with %s: %v, want an error with %q", b.Type, err, want)
		}
		if _, err := tlsfiles.Client(ca.File, cert, key, ""); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Client with %s: %v, want an error with %q", b.Type, err, want)
		}
	}
}

// systemRootsAddr names, in the environment of a child of
// TestSystemRoots, the server it dials.
const systemRootsAddr = "TLSFILES_TEST_SYSTEM_ROOTS_ADDR"

// TestSystemRoots: without an authorities file, a client trusts the
// system's, which Go reads on Linux from SSL_CERT_FILE when it is set.
// They are read once per process, so each client runs in a child
// process of this test binary.
func TestSystemRoots(t *testing.T) {
	if addr := os.Getenv(systemRootsAddr); addr != "" {
		client, err := tlsfiles.Client("", "", "", "localhost")
		if err != nil {
			t.Fatal(err)
		}
		if err := exchange(addr, client); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return
	}
	ca, other := tlstest.NewCA(t, "ca"), tlstest.NewCA(t, "other")
	cert, key := ca.Server(t, "node")
	server, err := tlsfiles.Server(cert, key, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		roots, want string
	}{{ca.File, ""}, {other.File, "certificate signed by unknown authority"}} {
		addr, done := serveOnce(t, server)
		cmd := exec.Command(os.Args[0], "-test.run=^TestSystemRoots$", "-test.count=1")
		cmd.Env = append(os.Environ(), systemRootsAddr+"="+addr, "SSL_CERT_FILE="+c.roots, "SSL_CERT_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		done()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("system roots from %s: %v\n%s", c.roots, err, out)
		case c.want != "" && (err == nil || !strings.Contains(string(out), c.want)):
			t.Errorf("system roots from %s: %v, want a failure with %q:\n%s", c.roots, err, c.want, out)
		}
	}
}

// TestServerTakesRenewedFiles: files rewritten while a server runs
// serve its next handshake, the client authorities included; files
// that do not load are reported once, and those loaded before stay in
// use.
func TestServerTakesRenewedFiles(t *testing.T) {
	first, second := tlstest.NewCA(t, "first"), tlstest.NewCA(t, "second")
	dir := t.TempDir()
	cert, key, clientCA := filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"), filepath.Join(dir, "clients.pem")
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	install := func(ca *tlstest.CA) {
		t.Helper()
		ca.InstallServer(t, "node", cert, key)
		data, err := os.ReadFile(ca.File)
		if err != nil {
			t.Fatal(err)
		}
		write(clientCA, data)
	}
	client := func(ca *tlstest.CA) *tls.Config {
		t.Helper()
		c, k := ca.Client(t, "leader")
		cfg, err := tlsfiles.Client(ca.File, c, k, "")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	install(first)
	failed := make(chan error, 16)
	server, err := tlsfiles.Server(cert, key, clientCA, func(err error) { failed <- err })
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string, ca *tlstest.CA, want string) {
		t.Helper()
		err := handshake(t, server, client(ca))
		switch {
		case want == "" && err != nil:
			t.Fatalf("%s: handshake: %v", step, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Fatalf("%s: handshake: %v, want an error with %q", step, err, want)
		}
	}
	noFailure := func(step string) {
		t.Helper()
		select {
		case err := <-failed:
			t.Fatalf("%s: reported %v", step, err)
		default:
		}
	}
	// reported checks that the files' failure to load was reported,
	// naming the file at fault.
	reported := func(step, file string) {
		t.Helper()
		select {
		case err := <-failed:
			if !strings.Contains(err.Error(), file) {
				t.Fatalf("%s: the failure does not name %s: %v", step, file, err)
			}
		default:
			t.Fatalf("%s: not reported", step)
		}
	}
	check("first files", first, "")
	check("first files", second, "certificate signed by unknown authority")

	install(second)
	check("renewed files", second, "")
	check("renewed files", first, "certificate signed by unknown authority")
	noFailure("renewed files")

	// A certificate file being rewritten: the files loaded before serve.
	write(cert, []byte("-----BEGIN CERTIFICATE-----\nMIIB"))
	check("a damaged certificate file", second, "")
	reported("a damaged certificate file", cert)
	check("the same damaged file", second, "")
	noFailure("the same damaged file")

	install(first)
	check("files renewed again", first, "")
	noFailure("files renewed again")

	// A file missing, for a moment, as a renewal may leave it.
	if err := os.Remove(cert); err != nil {
		t.Fatal(err)
	}
	check("a missing certificate file", first, "")
	reported("a missing certificate file", cert)
}
