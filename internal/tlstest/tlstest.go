// Package tlstest writes certificate authorities and the certificates
// they sign into PEM files, for tests of TLS. Only test files import it.
package tlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority whose certificate is in the PEM file
// File.
type CA struct {
	File string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
	// chain: the certificates (DER) that follow a certificate this
	// authority issues in its file, this authority's own first when it
	// is an intermediate.
	chain [][]byte
}

// KeyForm is how a private key is written into its PEM file.
type KeyForm int

const (
	// PKCS8 is a "PRIVATE KEY" block (an ECDSA P-256 key).
	PKCS8 KeyForm = iota
	// SEC1 is an "EC PRIVATE KEY" block (an ECDSA P-256 key), as
	// openssl ecparam -genkey writes.
	SEC1
	// PKCS1 is an "RSA PRIVATE KEY" block (an RSA 2048 key), as
	// openssl genrsa -traditional writes.
	PKCS1
)

// NewCA creates a certificate authority named name, its files in a
// temporary directory of t.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca := &CA{dir: t.TempDir(), key: newKey(t)}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ca.key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	ca.File = writePEM(t, filepath.Join(ca.dir, name+".pem"), "CERTIFICATE", der)
	return ca
}

// Intermediate creates an intermediate authority named name, signed by
// ca. The certificate files it issues hold the leaf, then the
// intermediates up to (not including) the root, as a server or client
// sends them; its File holds its own certificate alone.
func (ca *CA) Intermediate(t testing.TB, name string) *CA {
	t.Helper()
	in := &CA{dir: t.TempDir(), key: newKey(t)}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             ca.cert.NotBefore,
		NotAfter:              ca.cert.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &in.key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if in.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	in.chain = append([][]byte{der}, ca.chain...)
	in.File = writePEM(t, filepath.Join(in.dir, name+".pem"), "CERTIFICATE", der)
	return in
}

// Server issues a server certificate for localhost and 127.0.0.1 and
// returns the files of the certificate and of its key.
func (ca *CA) Server(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	return ca.ServerKey(t, name, PKCS8)
}

// InstallServer issues a server certificate as Server does and writes it,
// and its key, over the files certFile and keyFile: a node's certificate
// renewed in place.
func (ca *CA) InstallServer(t testing.TB, name, certFile, keyFile string) {
	t.Helper()
	c, k := ca.Server(t, name)
	for _, f := range [][2]string{{c, certFile}, {k, keyFile}} {
		data, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// ServerKey is Server with its key written in the given form.
func (ca *CA) ServerKey(t testing.TB, name string, form KeyForm) (certFile, keyFile string) {
	t.Helper()
	return ca.issue(t, name, form, &x509.Certificate{
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// Client issues a client certificate and returns the files of the
// certificate and of its key.
func (ca *CA) Client(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	return ca.issue(t, name, PKCS8, &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

func (ca *CA) issue(t testing.TB, name string, form KeyForm, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	var key crypto.Signer
	var keyType string
	var keyDER []byte
	var err error
	switch form {
	case PKCS1:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		key, keyType, keyDER = k, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)
	case SEC1:
		k := newKey(t)
		key, keyType = k, "EC PRIVATE KEY"
		keyDER, err = x509.MarshalECPrivateKey(k)
	default:
		k := newKey(t)
		key, keyType = k, "PRIVATE KEY"
		keyDER, err = x509.MarshalPKCS8PrivateKey(k)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial(t)
	tmpl.Subject = pkix.Name{CommonName: name}
	tmpl.NotBefore = ca.cert.NotBefore
	tmpl.NotAfter = ca.cert.NotAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, filepath.Join(ca.dir, name+".pem"), "CERTIFICATE", append([][]byte{der}, ca.chain...)...),
		writePEM(t, filepath.Join(ca.dir, name+"-key.pem"), keyType, keyDER)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writePEM writes the blocks ders, of type kind, into the file path and
// returns path.
func writePEM(t testing.TB, path, kind string, ders ...[]byte) string {
	t.Helper()
	var out []byte
	for _, der := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})...)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
