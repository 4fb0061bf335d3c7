// Package tlsfiles builds the TLS configurations of followerd and of the
// replicate leader from PEM files: a certificate with its private key,
// and the certificate authorities trusted to sign the other side's.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Server returns the configuration of a server that presents the
// certificate in certFile (PEM: the leaf first, then any intermediates)
// with the private key in keyFile. When clientCAFile is not empty, every
// client must present a certificate signed by one of the authorities in
// it (mutual TLS); otherwise clients are not asked for one.
func Server(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := keyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		if cfg.ClientCAs, err = pool(clientCAFile); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
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
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		if encrypted(keyFile) {
			// crypto/tls says only that it cannot parse the key.
			return tls.Certificate{}, fmt.Errorf("tls: the private key in %s is encrypted, and no passphrase can be given: give it decrypted (openssl pkey -in %s -out FILE)", keyFile, keyFile)
		}
		return tls.Certificate{}, fmt.Errorf("tls: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// encrypted reports whether the first private key in the PEM file
// keyFile is encrypted: PKCS#8 "ENCRYPTED PRIVATE KEY", or OpenSSL's
// legacy "Proc-Type: 4,ENCRYPTED" header.
func encrypted(keyFile string) bool {
	rest, err := os.ReadFile(keyFile)
	if err != nil {
		return false
	}
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
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tls: certificate authorities: %s holds no PEM certificate", caFile)
	}
	return p, nil
}
