// Package tlsfiles builds the TLS configurations of followerd and of the
// replicate leader from PEM files: a certificate with its private key,
// and the certificate authorities trusted to sign the other side's.
package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// Server returns the configuration of a server that presents the
// certificate in certFile (PEM: the leaf first, then any intermediates)
// with the private key in keyFile. When clientCAFile is not empty, every
// client must present a certificate signed by one of the authorities in
// it (mutual TLS); otherwise clients are not asked for one.
//
// The files are read again at each handshake, and taken when their
// content changed: a renewed certificate, key or authority file serves
// the next connection, with no restart (connections already open keep
// what they negotiated). Files that do not load then (half written, a
// key of another certificate) are passed to reloadFailed, once for each
// content they take, and the files last loaded stay in use.
func Server(certFile, keyFile, clientCAFile string, reloadFailed func(error)) (*tls.Config, error) {
	f, err := loadServerFiles(certFile, keyFile, clientCAFile, reloadFailed, os.ReadFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return f.current(), nil },
	}, nil
}

// serverFiles are the files of a server's configuration, and the
// configuration last built from them.
type serverFiles struct {
	cert, key, clientCA string
	reloadFailed        func(error)
	readFile            func(name string) ([]byte, error) // os.ReadFile
	mu                  struct {
		sync.Mutex
		cfg    *tls.Config
		loaded [3][]byte  // the contents cfg was built from
		failed *[3][]byte // the contents that last failed to load, if any since
	}
}

// loadServerFiles reads the files of a server's configuration with
// readFile and builds the configuration from them.
func loadServerFiles(certFile, keyFile, clientCAFile string, reloadFailed func(error), readFile func(string) ([]byte, error)) (*serverFiles, error) {
	f := &serverFiles{cert: certFile, key: keyFile, clientCA: clientCAFile, reloadFailed: reloadFailed, readFile: readFile}
	contents, err := f.read()
	if err != nil {
		return nil, err
	}
	if f.mu.cfg, err = f.build(contents); err != nil {
		return nil, err
	}
	f.mu.loaded = contents
	return f, nil
}

// read returns the contents of the certificate, key and authority files.
func (f *serverFiles) read() ([3][]byte, error) {
	var c [3][]byte
	var err error
	if c[0], err = f.readFile(f.cert); err != nil {
		return c, fmt.Errorf("tls: certificate %s: %w", f.cert, err)
	}
	if c[1], err = f.readFile(f.key); err != nil {
		return c, fmt.Errorf("tls: key %s: %w", f.key, err)
	}
	if f.clientCA != "" {
		if c[2], err = f.readFile(f.clientCA); err != nil {
			return c, fmt.Errorf("tls: certificate authorities: %w", err)
		}
	}
	return c, nil
}

func (f *serverFiles) build(c [3][]byte) (*tls.Config, error) {
	cert, err := keyPairOf(c[0], c[1], f.cert, f.key)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// The configuration a handshake takes replaces the server's
		// whole: gRPC's protocol is named here.
		NextProtos: []string{"h2"},
	}
	if f.clientCA != "" {
		if cfg.ClientCAs, err = poolOf(c[2], f.clientCA); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// current is the configuration of the files as they are now, or as they
// were last loaded when they do not load. Most handshakes find the files
// as they were loaded: those read them outside the lock, so that they do
// not wait for one another's reads. Files that changed, or do not read,
// are read again under the lock, and only what is read there is taken:
// reads that take a change are ordered, so one that began before a
// renewal never puts back what the renewal replaced.
func (f *serverFiles) current() *tls.Config {
	c, err := f.read()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && same(c, f.mu.loaded) {
		return f.mu.cfg
	}
	c, err = f.read()
	if err == nil && same(c, f.mu.loaded) {
		return f.mu.cfg
	}
	if err == nil {
		var cfg *tls.Config
		if cfg, err = f.build(c); err == nil {
			f.mu.cfg, f.mu.loaded, f.mu.failed = cfg, c, nil
			return cfg
		}
	}
	if f.mu.failed == nil || !same(c, *f.mu.failed) {
		f.mu.failed = &c
		if f.reloadFailed != nil {
			f.reloadFailed(err)
		}
	}
	return f.mu.cfg
}

// Client returns the configuration of a client that trusts the
// authorities in caFile (empty: the system's), presents the certificate
// in certFile with the key in keyFile when they are given (to a server
// that asks for one), and checks that the server's certificate names
// serverName (empty: the host it dials).
func Client(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("tls: a client certificate needs its key, and a key its certificate")
	}
	if certFile != "" {
		cert, err := keyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		var err error
		if cfg.RootCAs, err = pool(caFile); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

func keyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: certificate %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: key %s: %w", keyFile, err)
	}
	return keyPairOf(certPEM, keyPEM, certFile, keyFile)
}

// keyPairOf parses a certificate and its key, read from the files named.
func keyPairOf(certPEM, keyPEM []byte, certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if encrypted(keyPEM) {
			// crypto/tls says only that it cannot parse the key.
			return tls.Certificate{}, fmt.Errorf("tls: the private key in %s is encrypted, and no passphrase can be given: give it decrypted (openssl pkey -in %s -out FILE)", keyFile, keyFile)
		}
		return tls.Certificate{}, fmt.Errorf("tls: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// encrypted reports whether the first private key of keyPEM is
// encrypted: PKCS#8 "ENCRYPTED PRIVATE KEY", or OpenSSL's legacy
// "Proc-Type: 4,ENCRYPTED" header.
func encrypted(keyPEM []byte) bool {
	rest := keyPEM
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return false
		}
		if b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY") {
			return b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED")
		}
	}
}

func pool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate authorities: %w", err)
	}
	return poolOf(data, caFile)
}

// poolOf parses the authorities of data, read from caFile.
func poolOf(data []byte, caFile string) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tls: certificate authorities: %s holds no PEM certificate", caFile)
	}
	return p, nil
}

// same reports whether two contents of a server's files are equal.
func same(a, b [3][]byte) bool {
	return bytes.Equal(a[0], b[0]) && bytes.Equal(a[1], b[1]) && bytes.Equal(a[2], b[2])
}
