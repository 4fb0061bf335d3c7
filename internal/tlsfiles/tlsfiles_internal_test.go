package tlsfiles

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tablefsm/tablefsm/internal/tlstest"
)

// TestServerReadsOutsideTheLock: a handshake reading the files does not
// hold up another's, and a read that ends after a later one took renewed
// files does not bring back what it read: the later one's configuration
// stays in use.
func TestServerReadsOutsideTheLock(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	install := func(ca *tlstest.CA) { ca.InstallServer(t, "node", cert, key) }
	install(tlstest.NewCA(t, "first"))

	// The next read of the key, once armed, stops after it read the file,
	// until released.
	var armed atomic.Bool
	stopped, release := make(chan struct{}), make(chan struct{})
	readFile := func(name string) ([]byte, error) {
		data, err := os.ReadFile(name)
		if name == key && armed.CompareAndSwap(true, false) {
			close(stopped)
			<-release
		}
		return data, err
	}
	failed := make(chan error, 4)
	f, err := loadServerFiles(cert, key, "", func(err error) { failed <- err }, readFile)
	if err != nil {
		t.Fatal(err)
	}
	first := f.current()

	armed.Store(true)
	slow := make(chan *tls.Config, 1)
	go func() { slow <- f.current() }()
	<-stopped // the slow handshake read the first files

	install(tlstest.NewCA(t, "second"))
	fast := make(chan *tls.Config, 1)
	go func() { fast <- f.current() }()
	renewalTaken(t, f, first, fast, slow, release)
	select {
	case err := <-failed:
		t.Fatalf("reported: %v", err)
	default:
	}
}

// TestServerReadBeforeARenewalDoesNotPutItBack: a handshake that read the
// files before a renewal, and comes to compare them only after another
// handshake took the renewed ones, gets the renewed configuration and
// leaves it in use, even though its read began after the other's.
func TestServerReadBeforeARenewalDoesNotPutItBack(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	install := func(ca *tlstest.CA) { ca.InstallServer(t, "node", cert, key) }
	install(tlstest.NewCA(t, "first"))

	// Once armed, the next read of the certificate stops before it reads
	// the file, and the next read of the key after it read the file,
	// each until released.
	var beforeCert, afterKey atomic.Bool
	certStopped, certRelease := make(chan struct{}), make(chan struct{})
	keyStopped, keyRelease := make(chan struct{}), make(chan struct{})
	readFile := func(name string) ([]byte, error) {
		if name == cert && beforeCert.CompareAndSwap(true, false) {
			close(certStopped)
			<-certRelease
		}
		data, err := os.ReadFile(name)
		if name == key && afterKey.CompareAndSwap(true, false) {
			close(keyStopped)
			<-keyRelease
		}
		return data, err
	}
	f, err := loadServerFiles(cert, key, "", func(err error) { t.Errorf("reported: %v", err) }, readFile)
	if err != nil {
		t.Fatal(err)
	}
	first := f.current()

	beforeCert.Store(true)
	early := make(chan *tls.Config, 1)
	go func() { early <- f.current() }()
	<-certStopped // the early handshake has read nothing yet
	afterKey.Store(true)
	late := make(chan *tls.Config, 1)
	go func() { late <- f.current() }()
	<-keyStopped // the late handshake read the first files

	install(tlstest.NewCA(t, "second"))
	close(certRelease) // the early handshake reads the renewed files
	renewalTaken(t, f, first, early, late, keyRelease)
}

// renewalTaken checks a renewal of the files that first was built from:
// the handshake taker takes the renewed files without waiting for the
// one stalled (until release is closed), which read them before the
// renewal; that one then returns the renewed configuration too, and
// leaves it in use.
func renewalTaken(t *testing.T, f *serverFiles, first *tls.Config, taker, stalled <-chan *tls.Config, release chan<- struct{}) {
	t.Helper()
	var second *tls.Config
	select {
	case second = <-taker:
	case <-time.After(time.Minute):
		close(release)
		<-stalled
		t.Fatal("a handshake waited for another's read of the files")
	}
	if second == first {
		t.Fatal("the renewed files were not taken")
	}
	close(release)
	if got := <-stalled; got != second {
		t.Fatal("a handshake that read the files before the renewal returned another configuration than the one in use")
	}
	if got := f.current(); got != second {
		t.Fatal("a handshake that read the files before the renewal put the previous configuration back")
	}
}
