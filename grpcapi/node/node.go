// Package node is the followerd command: a follower node serving
// grpcapi over a data directory until SIGINT, SIGTERM or SIGHUP.
// cmd/followerd is a thin main over Main; tests and tools run Main
// directly or re-run their own binary as a node.
package node

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/internal/buildinfo"
	"github.com/tablefsm/tablefsm/internal/decimalflag"
	"github.com/tablefsm/tablefsm/internal/tlsfiles"
)

// ListeningPrefix starts the line Main prints first on stdout once it
// serves: "listening on 127.0.0.1:6649". A parent process reads the
// address from it (useful with --listen 127.0.0.1:0).
const ListeningPrefix = "listening on "

// MetricsPrefix starts the line Main prints after the ListeningPrefix
// line when it serves metrics (--metrics-listen): "metrics on
// http://127.0.0.1:9464/metrics".
const MetricsPrefix = "metrics on "

const usage = `Usage: followerd [flags]

followerd is a follower node of the Oxia replication protocol: it hosts
the follower replicas of many shards, keyed by namespace and shard, under
one data directory, and serves them over gRPC (OxiaLogReplication, the
follower's part of OxiaCoordination, Inspect, health and reflection).

Once it serves it prints "listening on HOST:PORT" on stdout (and, with
--metrics-listen, "metrics on http://HOST:PORT/metrics"); logs go to
stderr. SIGINT, SIGTERM or SIGHUP shut it down gracefully (exit status
0): streams end with Unavailable, every follower is closed, nothing
acknowledged is lost; a second SIGINT or SIGTERM ends it at once.

Flags:
`

// Main runs followerd with args (without the program name) until ctx ends
// or SIGINT, SIGTERM or SIGHUP arrives. It returns the exit status: 0 after a
// graceful shutdown or --help, 1 when the node fails, 2 for a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("followerd", flag.ContinueOnError)
	// The flag package prints help, and a usage error followed by the
	// help, to one writer: help that was asked for goes to stdout; of a
	// usage error, only the error goes to stderr, as the errors below.
	var parseOut bytes.Buffer
	fs.SetOutput(&parseOut)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:6649", "`address` to serve on (port 0: any free port)")
	dataDir := fs.String("data-dir", "./data", "`directory` holding the shards' data, created when missing (an existing one must be empty or a node's)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	maxMsg := decimalflag.Int(fs, "max-message-size", grpcapi.DefaultMaxMessageSize, "largest gRPC message received or sent, in `bytes`")
	maxStreams := decimalflag.Uint(fs, "max-concurrent-streams", 0, "the `number` of concurrent calls allowed per connection (0: no limit)")
	metricsListen := fs.String("metrics-listen", "", "`address` to serve Prometheus metrics on, at /metrics (empty: no metrics; port 0: any free port)")
	pprof := fs.Bool("pprof", false, "also serve the Go runtime's profiles (CPU, heap, goroutines, execution trace) at /debug/pprof/ on the --metrics-listen address, for go tool pprof")
	shutdownTimeout := fs.Duration("shutdown-timeout", 30*time.Second, "how long a graceful shutdown may wait for calls to end before closing connections")
	maxSnapshot := decimalflag.Int64(fs, "max-snapshot-size", 0, "largest snapshot a shard takes from a leader, in `bytes` of file content, each file counting at least 4096; a larger one is refused with InvalidArgument before it fills the disk (0: no limit)")
	tlsCert := fs.String("tls-cert", "", "serve gRPC over TLS with the certificate in this PEM `file` (the leaf first, then any intermediates); needs --tls-key")
	tlsKey := fs.String("tls-key", "", "the PEM `file` of the --tls-cert certificate's private key")
	tlsClientCA := fs.String("tls-client-ca", "", "require of every client a certificate signed by an authority in this PEM `file` (mutual TLS); needs --tls-cert")
	version := fs.Bool("version", false, "print the version and exit")
	switch {
	case len(args) == 1 && args[0] == "help":
		args = []string{"--help"}
	case len(args) == 1 && args[0] == "version":
		args = []string{"--version"}
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "followerd: "+format+"\n", a...)
		fmt.Fprintln(stderr, "Run 'followerd --help' for usage.")
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			stdout.Write(parseOut.Bytes())
			return 0
		}
		return usageErr("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Version("followerd"))
		return 0
	}
	// The four names only, in either case: slog would also take offsets
	// (debug+2), which the usage does not promise.
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
	level, ok := levels[strings.ToLower(*logLevel)]
	if !ok {
		return usageErr("invalid --log-level %q: want debug, info, warn or error", *logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var logger *slog.Logger
	switch strings.ToLower(*logFormat) {
	case "text":
		logger = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		return usageErr("invalid --log-format %q: want text or json", *logFormat)
	}
	if *shutdownTimeout <= 0 {
		return usageErr("invalid --shutdown-timeout %v: want a positive duration", *shutdownTimeout)
	}
	if *maxMsg <= 0 {
		return usageErr("invalid --max-message-size %d: want a positive number of bytes", *maxMsg)
	}
	if *maxSnapshot < 0 {
		return usageErr("invalid --max-snapshot-size %d: want a number of bytes, or 0 for no limit", *maxSnapshot)
	}
	if *maxStreams > 1<<32-1 {
		return usageErr("invalid --max-concurrent-streams %d: want at most %d", *maxStreams, uint64(1<<32-1))
	}
	if *dataDir == "" {
		return usageErr("--data-dir is empty")
	}
	if err := CheckAddress(*listen); err != nil {
		return usageErr("invalid --listen %q: %v", *listen, err)
	}
	if *metricsListen != "" {
		if err := CheckAddress(*metricsListen); err != nil {
			return usageErr("invalid --metrics-listen %q: %v", *metricsListen, err)
		}
	} else if *pprof {
		return usageErr("--pprof needs --metrics-listen: the profiles are served on its address")
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usageErr("--tls-cert and --tls-key go together: a certificate needs its key")
	}
	if *tlsClientCA != "" && *tlsCert == "" {
		return usageErr("--tls-client-ca needs --tls-cert: client certificates are asked for over TLS")
	}
	var creds []grpc.ServerOption
	var handshakes *handshakeLog
	if *tlsCert != "" {
		cfg, err := tlsfiles.Server(*tlsCert, *tlsKey, *tlsClientCA, func(err error) {
			logger.Warn("the TLS files changed but do not load; the ones loaded before stay in use", "err", err)
		})
		if err != nil {
			logger.Error("cannot load the TLS files", "err", err)
			return 1
		}
		handshakes = newHandshakeLog(logger, time.Now, afterFunc)
		creds = append(creds, grpc.Creds(loggedHandshakes{credentials.NewTLS(cfg), handshakes}))
	}

	// From here on, SIGINT, SIGTERM and SIGHUP stop the node gracefully
	// (exit 0), even when they arrive while it is still starting. SIGHUP
	// stays caught, and so ignored, once the shutdown began: it is what a
	// node started by Start receives when the process that started it
	// dies, once for each of that process's threads as they exit. A node
	// started with SIGHUP ignored (nohup) leaves it ignored.
	stopSignals := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		stopSignals = append(stopSignals, syscall.SIGHUP)
	}
	ctx, stop := signal.NotifyContext(ctx, stopSignals...)
	defer stop()
	// Once one came, a second SIGINT or SIGTERM ends the process at
	// once, even while the node is still starting (removing what a
	// crash left can take a while); SIGHUP does not.
	context.AfterFunc(ctx, stop)
	// The addresses are taken before the data directory is created or
	// locked: a node that cannot listen leaves nothing on disk.
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		logger.Error("cannot listen", "address", *listen, "err", err)
		return 1
	}
	var metricsLis net.Listener
	if *metricsListen != "" {
		if metricsLis, err = net.Listen("tcp", *metricsListen); err != nil {
			logger.Error("cannot serve metrics", "address", *metricsListen, "err", err)
			_ = lis.Close()
			return 1
		}
	}
	if beforeStart != nil {
		beforeStart()
	}
	srv, err := grpcapi.New(grpcapi.Options{
		DataDir:              *dataDir,
		Logger:               logger,
		MaxMessageSize:       *maxMsg,
		MaxConcurrentStreams: uint32(*maxStreams),
		Follower:             follower.Config{MaxSnapshotSize: *maxSnapshot},
		GRPCOptions:          creds,
	})
	if err != nil {
		logger.Error("cannot start", "err", err)
		_ = lis.Close()
		if metricsLis != nil {
			_ = metricsLis.Close()
		}
		return 1
	}
	var metrics *metricsServer
	if metricsLis != nil {
		if metrics, err = serveMetrics(metricsLis, srv, *pprof); err != nil {
			logger.Error("cannot serve metrics", "address", *metricsListen, "err", err)
			_ = metricsLis.Close()
			_ = lis.Close()
			_ = srv.Shutdown(context.Background())
			return 1
		}
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	logger.Info("serving", "address", lis.Addr().String(), "data_dir", *dataDir, "tls", tlsMode(*tlsCert, *tlsClientCA))
	fmt.Fprintf(stdout, "%s%s\n", ListeningPrefix, lis.Addr())
	if metrics != nil {
		logger.Info("serving metrics", "url", metrics.url)
		fmt.Fprintf(stdout, "%s%s\n", MetricsPrefix, metrics.url)
	}

	status := 0
	select {
	case <-ctx.Done():
		logger.Info("stop requested", "cause", context.Cause(ctx))
	case err := <-served:
		logger.Error("serving failed", "err", err)
		status = 1
	}
	// Shutting down, whatever the cause: a SIGINT or SIGTERM now ends
	// the process at once.
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	// The metrics stop beside the node, within the same time.
	metricsDone := make(chan error, 1)
	if metrics != nil {
		go func() { metricsDone <- metrics.shutdown(sctx) }()
	} else {
		metricsDone <- nil
	}
	if err := srv.Shutdown(sctx); err != nil {
		logger.Error("shutdown", "err", err)
		status = 1
	}
	if err := <-metricsDone; err != nil {
		// A scrape cut short loses nothing: the exit status is the
		// node's.
		logger.Warn("metrics shutdown", "err", err)
	}
	if status == 0 {
		if err := <-served; err != nil {
			logger.Error("serving failed", "err", err)
			status = 1
		}
	}
	if handshakes != nil {
		handshakes.stop()
	}
	logger.Info("stopped", "status", status)
	return status
}

// beforeStart, when set, runs as the node starts, after the signals are
// caught: tests stall a start there.
var beforeStart func()

// CheckAddress reports what keeps addr from being an address to listen
// on, HOST:PORT (an empty host: every interface; port 0: any free port),
// nil if nothing does. An address it accepts may still fail to listen
// (the port taken, the host not local).
func CheckAddress(addr string) error {
	if addr == "" {
		return errors.New("want HOST:PORT (port 0: any free port)")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT: %w", err)
	}
	_, err = parsePort(port)
	return err
}

// CheckTarget reports what keeps addr from being the address of a node to
// connect to, HOST:PORT with a host and a port from 1 to 65535, nil if
// nothing does. Without it, gRPC would take "host" alone for host:443.
func CheckTarget(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT: %w", err)
	}
	if host == "" {
		return errors.New("want HOST:PORT: missing host")
	}
	if p, err := parsePort(port); err != nil {
		return err
	} else if p == 0 {
		return errors.New("port 0 names no node (want 1 to 65535)")
	}
	return nil
}

// parsePort reads a port number: decimal digits without leading zeros,
// at most 65535. Service names (http) are refused: on a node's command
// line one is more likely a slip than a wish for port 80.
func parsePort(port string) (int, error) {
	p, err := strconv.Atoi(port)
	if err != nil || port == "" || port[0] < '0' || port[0] > '9' || p > 65535 || len(port) > 1 && port[0] == '0' {
		return 0, fmt.Errorf("invalid port %q: want a number from 0 to 65535", port)
	}
	return p, nil
}

// tlsMode names how the node serves, for its log: "off", "server" (TLS)
// or "mutual" (TLS with client certificates).
func tlsMode(cert, clientCA string) string {
	switch {
	case cert == "":
		return "off"
	case clientCA == "":
		return "server"
	}
	return "mutual"
}

// loggedHandshakes are TLS credentials that log each handshake a client
// failed, with its address and the reason: over TLS 1.3 a client whose
// certificate the node refuses learns only that the connection closed,
// and gRPC keeps the node's reason to itself. A connection closed
// before its first byte (a TCP probe) is not logged, and the lines are
// rate-limited (handshakeLog).
type loggedHandshakes struct {
	credentials.TransportCredentials
	log *handshakeLog
}

func (c loggedHandshakes) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil && !errors.Is(err, io.EOF) {
		c.log.failed(conn.RemoteAddr().String(), err)
	}
	return tc, info, err
}

func (c loggedHandshakes) Clone() credentials.TransportCredentials {
	return loggedHandshakes{c.TransportCredentials.Clone(), c.log}
}

// The failed handshakes logged: up to handshakeLogBurst at once, then
// one per handshakeLogEvery, so that a scanner or a client retrying in
// a loop cannot flood the log. Failures that were not logged are
// counted (unlogged) on the next line, which comes at most
// handshakeLogEvery after the first of them: the next failure's, or a
// summary line if none follows.
const (
	handshakeLogBurst = 10
	handshakeLogEvery = time.Second
)

// handshakeLog logs failed handshakes through a token bucket of
// handshakeLogBurst lines, refilled by one each handshakeLogEvery.
type handshakeLog struct {
	log *slog.Logger
	now func() time.Time
	// after runs f once d has passed, unless stopped first: time.AfterFunc.
	after func(d time.Duration, f func()) stopper
	mu    struct {
		sync.Mutex
		tokens   float64
		last     time.Time // when tokens was last refilled
		unlogged int64     // failures not logged since the last line
		summary  stopper   // the summary line armed for them, if any
		stopped  bool
	}
}

// stopper is what handshakeLog keeps of a timer.
type stopper interface{ Stop() bool }

func newHandshakeLog(log *slog.Logger, now func() time.Time, after func(time.Duration, func()) stopper) *handshakeLog {
	h := &handshakeLog{log: log, now: now, after: after}
	h.mu.tokens = handshakeLogBurst
	h.mu.last = now()
	return h
}

// afterFunc is time.AfterFunc as handshakeLog.after.
func afterFunc(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }

func (h *handshakeLog) failed(remote string, err error) {
	h.mu.Lock()
	if !h.takeTokenLocked() {
		h.mu.unlogged++
		if h.mu.summary == nil && !h.mu.stopped {
			h.mu.summary = h.after(handshakeLogEvery, h.summarize)
		}
		h.mu.Unlock()
		return
	}
	unlogged := h.mu.unlogged
	h.mu.unlogged = 0
	h.mu.Unlock()
	attrs := []any{"remote", remote, "err", err}
	if unlogged > 0 {
		attrs = append(attrs, "unlogged", unlogged)
	}
	h.log.Warn("TLS handshake failed", attrs...)
}

// takeTokenLocked refills the bucket for the time elapsed and takes a
// line from it, if one is left.
func (h *handshakeLog) takeTokenLocked() bool {
	now := h.now()
	if elapsed := now.Sub(h.mu.last); elapsed > 0 {
		h.mu.tokens = min(handshakeLogBurst, h.mu.tokens+float64(elapsed)/float64(handshakeLogEvery))
		h.mu.last = now
	}
	if h.mu.tokens < 1 {
		return false
	}
	h.mu.tokens--
	return true
}

// summarize, armed by the first failure not logged, logs how many were
// not logged since the last line, if a failure's line has not said it
// meanwhile: a burst followed by silence is counted without waiting for
// the next failure. Failures that go on keep the lines to the bucket's
// rate: with no line left, it waits for the next.
func (h *handshakeLog) summarize() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mu.summary = nil
	if h.mu.stopped || h.mu.unlogged == 0 {
		return
	}
	if !h.takeTokenLocked() {
		// Armed for earlier failures, which a failure's line counted
		// since: the bucket's next line is at most handshakeLogEvery
		// after the first of these, and the summary comes with it.
		h.mu.summary = h.after(h.untilTokenLocked(), h.summarize)
		return
	}
	h.logUnloggedLocked()
}

// untilTokenLocked is how long the bucket takes to hold a line again,
// when it holds none.
func (h *handshakeLog) untilTokenLocked() time.Duration {
	return time.Duration(math.Ceil((1 - h.mu.tokens) * float64(handshakeLogEvery)))
}

// logUnloggedLocked logs the count of failures not logged, under h.mu
// so that no summary line follows the last one (stop's).
func (h *handshakeLog) logUnloggedLocked() {
	h.log.Warn("TLS handshakes failed and were not logged", "unlogged", h.mu.unlogged)
	h.mu.unlogged = 0
}

// stop logs how many failed handshakes were not logged since the last
// line, if any, once; no summary line comes after it: the node is
// stopping.
func (h *handshakeLog) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.stopped {
		return
	}
	h.mu.stopped = true
	if h.mu.summary != nil {
		h.mu.summary.Stop()
		h.mu.summary = nil
	}
	if h.mu.unlogged > 0 {
		h.logUnloggedLocked()
	}
}
