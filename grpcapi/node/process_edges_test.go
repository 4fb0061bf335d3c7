package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tablefsm/tablefsm/grpcapi/node"
)

// waitBuffer is a syncBuffer whose readers can wait for a text to appear.
type waitBuffer struct {
	mu   sync.Mutex
	cond *sync.Cond
	b    bytes.Buffer
}

func newWaitBuffer() *waitBuffer {
	w := &waitBuffer{}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *waitBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cond.Broadcast()
	return w.b.Write(p)
}

func (w *waitBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// waitMatch waits until what was written matches re and returns the
// first submatch.
func (w *waitBuffer) waitMatch(re *regexp.Regexp) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if m := re.FindStringSubmatch(w.b.String()); m != nil {
			return m[len(m)-1]
		}
		w.cond.Wait()
	}
}

// holdScrape starts a scrape of url that the metrics server cannot
// finish: the request announces a one-byte body that never comes, and the
// server, writing the response, waits to discard it. It returns once the
// scrape is in the handler (the in-flight gauge, read by other scrapes,
// counts it), so the connection is active, not idle: an HTTP shutdown
// waits for it.
func holdScrape(t *testing.T, url string) net.Conn {
	t.Helper()
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: %s\r\nContent-Length: 1\r\n\r\n", host); err != nil {
		t.Fatal(err)
	}
	for {
		// Each scrape counts itself; the held one makes two.
		if fams := scrape(t, url); fams["promhttp_metric_handler_requests_in_flight"].GetMetric()[0].GetGauge().GetValue() >= 2 {
			return conn
		}
	}
}

// TestLogFlags: --log-level and --log-format reach the logger: text by
// default, at info; --log-level warn drops the info lines.
func TestLogFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // a line the logs hold, "" for none at info
	}{
		{nil, `level=INFO msg=serving address=`},
		{[]string{"--log-format", "json"}, `"level":"INFO","msg":"serving"`},
		{[]string{"--log-level", "warn"}, ""},
		{[]string{"--log-level", "WARN"}, ""},
	} {
		_, stop, stderr := runMain(t, append([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, c.args...)...)
		if got := stop(); got != 0 {
			t.Fatalf("%q: status %d; stderr:\n%s", c.args, got, stderr)
		}
		logs := stderr.String()
		if c.want == "" && strings.Contains(strings.ToUpper(logs), "INFO") {
			t.Errorf("%q: info lines logged:\n%s", c.args, logs)
		}
		if c.want != "" && !strings.Contains(logs, c.want) {
			t.Errorf("%q: the logs lack %q:\n%s", c.args, c.want, logs)
		}
	}
}

// TestFailedStartReleasesItsAddresses: a node that took its addresses
// and then could not start (its data directory is a file, or its metrics
// address is not local) gives back the address it took.
func TestFailedStartReleasesItsAddresses(t *testing.T) {
	file := t.TempDir() + "/data"
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir", file}, "cannot start"},
		{[]string{"--data-dir", t.TempDir(), "--metrics-listen", "192.0.2.1:0"}, "cannot serve metrics"},
	} {
		// A free port, given to the node by number.
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		_ = lis.Close()
		var stderr bytes.Buffer
		if got := node.Main(ctxT(t), append([]string{"--listen", addr}, c.args...), io.Discard, &stderr); got != 1 || !strings.Contains(stderr.String(), c.want) {
			t.Fatalf("%q: status %d, stderr %q; want 1 and %q", c.args, got, stderr.String(), c.want)
		}
		lis, err = net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%q: the node exited 1 and still holds %s: %v", c.args, addr, err)
		}
		_ = lis.Close()
	}
}

// TestScrapeCutShortIsOnlyLogged: a scrape still running when
// --shutdown-timeout is up does not hold the node: its connection is
// closed, the node logs it and exits 0.
func TestScrapeCutShortIsOnlyLogged(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newWaitBuffer()
	stderr := &syncBuffer{}
	status := make(chan int, 1)
	go func() {
		status <- node.Main(ctx, []string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--shutdown-timeout", "1ms"}, out, stderr)
	}()
	url := out.waitMatch(regexp.MustCompile(`(?m)^` + node.MetricsPrefix + `(\S+)\n`))
	conn := holdScrape(t, url)
	cancel()
	select {
	case got := <-status:
		if got != 0 {
			t.Fatalf("status %d, want 0; stderr:\n%s", got, stderr)
		}
	case <-time.After(time.Minute):
		// Not a measurement: the node waits for the scrape past its
		// --shutdown-timeout of 1 ms, which is the failure.
		_ = conn.Close()
		<-status
		t.Fatalf("the node waited for a held scrape past --shutdown-timeout; stderr:\n%s", stderr)
	}
	if !strings.Contains(stderr.String(), `msg="metrics shutdown"`) {
		t.Errorf("the scrape cut short is not logged:\n%s", stderr)
	}
	// The node closed the scrape's connection before it returned.
	if err := conn.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("the held scrape's connection: %v, want it closed by the node", err)
	}
}

// shutdownHeldByAScrape starts followerd with metrics, holds a scrape
// that cannot finish, stops the node with sig, and returns once the
// shutdown, which waits for the scrape, has begun (after Main stopped
// catching SIGINT and SIGTERM): the node, its logs and the scrape's
// connection.
func shutdownHeldByAScrape(t *testing.T, sig syscall.Signal) (*node.Process, *waitBuffer, net.Conn) {
	t.Helper()
	logs := newWaitBuffer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := node.Start(ctx, []string{os.Args[0], "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--shutdown-timeout", "1m"}, []string{asFollowerd}, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	url := logs.waitMatch(regexp.MustCompile(`"?msg"?[=:]"serving metrics",?\s?"?url"?[=:]"?(http[^"\s]+)`))
	conn := holdScrape(t, url)
	p.Signal(sig)
	logs.waitMatch(regexp.MustCompile(`"?msg"?[=:]"shutting down"`))
	return p, logs, conn
}

// TestSecondSignalEndsAtOnce: a second SIGTERM during a graceful
// shutdown ends followerd at once (killed by the signal), even while
// the shutdown waits for something (here a scrape that cannot finish).
func TestSecondSignalEndsAtOnce(t *testing.T) {
	p, logs, _ := shutdownHeldByAScrape(t, syscall.SIGTERM)
	p.Signal(syscall.SIGTERM)
	if got := p.Wait(); got != -1 || !strings.Contains(p.Ended(), "terminated") {
		t.Fatalf("after a second SIGTERM: exit status %d (%s), want killed by it; logs:\n%s", got, p.Ended(), logs)
	}
}

// TestRepeatedHangupsShutDownGracefully: SIGHUP stops followerd
// gracefully, and more of them during the shutdown (as a node started by
// Start receives when the threads of its dying parent exit one by one) do
// not end it: the shutdown, held by a scrape meanwhile, finishes once the
// scrape's client goes, and the node exits 0.
func TestRepeatedHangupsShutDownGracefully(t *testing.T) {
	p, logs, conn := shutdownHeldByAScrape(t, syscall.SIGHUP)
	p.Signal(syscall.SIGHUP)
	p.Signal(syscall.SIGHUP)
	_ = conn.Close()
	if got := p.Wait(); got != 0 || !strings.Contains(logs.String(), "msg=stopped status=0") {
		t.Fatalf("after repeated SIGHUPs: exit status %d (%s), want 0; logs:\n%s", got, p.Ended(), logs)
	}
}

// TestHangupIgnoredUnderNohup: a followerd started with SIGHUP ignored
// (nohup) leaves it ignored: a SIGHUP does not stop it, the SIGTERM sent
// after it does.
func TestHangupIgnoredUnderNohup(t *testing.T) {
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skip("no nohup here")
	}
	logs := newWaitBuffer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := node.Start(ctx, []string{nohup, os.Args[0], "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, []string{asFollowerd}, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	p.Signal(syscall.SIGHUP)
	p.Signal(syscall.SIGTERM)
	if got := p.Wait(); got != 0 || !strings.Contains(logs.String(), `msg="stop requested" cause="terminated signal received"`) {
		t.Fatalf("SIGHUP then SIGTERM under nohup: exit status %d (%s), want 0, stopped by SIGTERM; logs:\n%s", got, p.Ended(), logs)
	}
}

// TestStartAddsToTheEnvironment: Start runs the child with this
// process's environment plus env.
func TestStartAddsToTheEnvironment(t *testing.T) {
	t.Setenv("NODE_TEST_INHERITED", "inherited")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := node.Start(ctx, []string{"/bin/sh", "-c", `echo "` + node.ListeningPrefix + `$NODE_TEST_INHERITED,$NODE_TEST_ADDED"; exec sleep 600`}, []string{"NODE_TEST_ADDED=added"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if p.Addr != "inherited,added" {
		t.Fatalf("the child saw %q, want inherited,added", p.Addr)
	}
}
