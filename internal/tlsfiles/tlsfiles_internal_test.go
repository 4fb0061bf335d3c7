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
	install := func(ca *tlstest.CA) {
		t.Helper()
		c, k := ca.Server(t, "node")
		for _, f := range [][2]string{{c, cert}, {k, key}} {
			data, err := os.ReadFile(f[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f[1], data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
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
	var second *tls.Config
	select {
	case second = <-fast:
	case <-time.After(time.Minute):
		close(release)
		<-slow
		t.Fatal("a handshake waited for another's read of the files")
	}
	if second == first {
		t.Fatal("the renewed files were not taken")
	}

	close(release)
	if got := <-slow; got != second {
		t.Fatal("a read that began before the renewal returned another configuration than the one in use")
	}
	if got := f.current(); got != second {
		t.Fatal("a read that began before the renewal replaced the renewed configuration")
	}
	select {
	case err := <-failed:
		t.Fatalf("reported: %v", err)
	default:
	}
}
