package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi/inspectpb"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/internal/durable"
	"github.com/tablefsm/tablefsm/logpos"
)

// DefaultMaxMessageSize is the default Options.MaxMessageSize: 256 MiB,
// what Oxia's data servers take, and the largest value the log takes
// (wal.MaxValueSize). An Oxia leader replicates a client's write as one
// entry, so one large write makes one large Append; under gRPC's own
// 4 MiB the node would refuse it, and the shard's replication would
// stop there. gRPC allocates a message's buffer from the length it
// announces: a lower bound bounds what one message of a client may make
// the node allocate.
const DefaultMaxMessageSize = 256 << 20

// DefaultStepHistory is the default Options.StepHistory.
const DefaultStepHistory = 64

// DefaultHandshakeTimeout is the default Options.HandshakeTimeout.
const DefaultHandshakeTimeout = 5 * time.Second

// DefaultDrainTimeout is the default Options.DrainTimeout.
const DefaultDrainTimeout = 5 * time.Second

// The keepalive of the server's connections, at the HTTP/2 level.
//
// KeepaliveMinTime is the shortest interval between a client's
// keepalive pings that the server takes, whether the client has calls
// open or not. Oxia's leaders ping every 10 s, with or without calls;
// under gRPC's own policy (5 minutes, and none without calls) the
// server would count those pings as abuse and close the connection,
// replication stream included, at the third.
//
// After KeepaliveTime without a frame from a client, the server pings
// it, and it closes the connection when no answer came within
// KeepaliveTimeout: the stream of a leader whose machine or network
// went away ends then, and frees its shard for the next stream of that
// leader, instead of when TCP gives up, minutes later. (A NewTerm of a
// new leader ends it at once either way.)
//
// Options.GRPCOptions can set others: grpc.KeepaliveParams and
// grpc.KeepaliveEnforcementPolicy given there replace these.
const (
	KeepaliveMinTime = 5 * time.Second
	KeepaliveTime    = 10 * time.Second
	KeepaliveTimeout = 5 * time.Second
)

// Options configure a Server.
type Options struct {
	// DataDir holds one directory per hosted shard. It is created when
	// missing. Required.
	DataDir string
	// FS is the file system of DataDir. Default: the operating system's.
	FS vfs.FS
	// Logger receives the server's and the followers' messages. Default:
	// discard.
	Logger *slog.Logger
	// Follower is the template of every shard's follower configuration:
	// its Namespace, Shard, Dir, FS and Logger are set by the server; an
	// Observer given here sees every shard's steps after the server's own
	// (which feeds Inspect and the metrics); the rest (segment size,
	// snapshot limits, state machine, …) is used as given. New refuses
	// sizes Open would refuse (follower.Config.CheckSizes).
	Follower follower.Config
	// ShardObserver, when set, is called each time a shard's follower is
	// opened, for an observer of that shard's lifecycle steps (nil: none).
	// It sees them after the server's own observer and Follower.Observer;
	// unlike the latter, it knows whose steps it sees.
	ShardObserver func(namespace string, shard int64) fsm.Observer
	// MaxMessageSize bounds each message received and sent, in bytes.
	// Default: DefaultMaxMessageSize.
	MaxMessageSize int
	// MaxConcurrentStreams bounds the concurrent calls of one connection.
	// Zero: gRPC's default (no limit).
	MaxConcurrentStreams uint32
	// StepHistory is how many lifecycle steps the Inspect service keeps
	// per shard. Default: DefaultStepHistory.
	StepHistory int
	// HandshakeTimeout bounds how long a new connection may take to
	// become a gRPC connection (gRPC's own default is 120 s): a graceful
	// shutdown waits for the connections still in their handshake, such
	// as one a client opened without a word. Default:
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// DrainTimeout bounds how long a graceful shutdown waits, once every
	// follower is closed, for the handlers to return and the clients to
	// read what was sent to them: a client that stops reading (a leader
	// that no longer reads its acks, a reflection client sending requests
	// without reading the replies) holds its connection, and a handler
	// sending to it, under flow control. The connections still open are
	// then closed, and the shutdown completes. Default:
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// GRPCOptions are appended to the server's own gRPC options (stats
	// handlers, interceptors, credentials, keepalive…). One that forces
	// another codec replaces the server's, which decodes the Appends of
	// replication streams without allocating.
	GRPCOptions []grpc.ServerOption
}

// Server is a follower node: it hosts the followers of many shards under
// one data directory and serves them over gRPC. See the package
// documentation for routing, validation and errors.
type Server struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	replicationgrpc.UnimplementedOxiaCoordinationServer
	inspectpb.UnimplementedInspectServer

	opts   Options
	log    *slog.Logger
	fs     vfs.FS
	lock   io.Closer
	grpc   *grpc.Server
	health *health.Server

	// shuttingDown is set once Shutdown starts, before the health
	// statuses turn NOT_SERVING; drained is cancelled (by drain) once
	// Shutdown has closed every follower. Together they end the streams
	// no follower ends (see endOnShutdown).
	shuttingDown atomic.Bool
	drained      context.Context
	drain        context.CancelFunc
	mu           struct {
		sync.Mutex
		closing bool
		shards  map[shardKey]*shard
		// retired keeps the step logs of the most recently deleted shards
		// (at most maxRetired), for Inspect.Steps to show how they ended.
		retired      map[shardKey]*stepLog
		retiredOrder []shardKey
		// looking holds the keys whose directory lookups are looking
		// for without holding mu (see statLocked).
		looking map[shardKey]*looking
		// removals holds the shards whose data is being removed other
		// than by a DeleteShard on their open follower (by release and
		// removeUnopened), each with a channel closed once it is done:
		// no follower of that key opens before then. The key of a
		// namespace (see namespaceKey) is there while tidyNamespace
		// removes the namespace's directory: no follower of the
		// namespace opens before then.
		removals map[shardKey]chan struct{}
		// untidied holds the namespaces whose directories a removal
		// asked to tidy once closing was set: the shutdown tidies them
		// once no handler runs.
		untidied map[string]bool
	}
	// calls counts the handlers running; idle, made by Shutdown, is
	// closed when none runs any more.
	calls struct {
		sync.Mutex
		running int
		idle    chan struct{}
	}
	// released is closed once the data directory is released, by
	// Shutdown, or after it when it was cut short while followers were
	// closing.
	released     chan struct{}
	shutdownOnce sync.Once
	shutdownErr  error
}

// New creates a server over opts.DataDir, which it locks: only one
// server may use a data directory at a time. An existing directory that
// holds files but no .lock (no node used it) is refused. Call Serve,
// then Shutdown.
func New(opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("grpcapi: no data directory")
	}
	if err := opts.Follower.CheckSizes(); err != nil {
		// Every shard's follower would fail to open: the node's mistake,
		// not a client's, refused before anything is created.
		return nil, fmt.Errorf("grpcapi: Options.Follower: %w", err)
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.StepHistory <= 0 {
		opts.StepHistory = DefaultStepHistory
	}
	if fi, err := opts.FS.Stat(opts.DataDir); err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("grpcapi: the data directory %s is not a directory", opts.DataDir)
		}
		if err := checkNodeDir(opts.FS, opts.DataDir); err != nil {
			return nil, err
		}
		// Made durable, as far as the permissions allow: an operator's
		// mkdir may never have been synced, but syncing the parent
		// needs the right to read it, which starting needs not.
		if err := durable.SyncDir(opts.FS, opts.FS.PathDir(opts.DataDir)); err != nil {
			opts.Logger.Warn("cannot sync the data directory's parent: the directory may not survive a power loss", "data_dir", opts.DataDir, "err", err)
		}
	} else if err := durable.MkdirAll(opts.FS, opts.DataDir); err != nil {
		if errors.Is(err, os.ErrExist) {
			// Stat found nothing, yet something is there.
			return nil, fmt.Errorf("grpcapi: creating the data directory %s: %w (a symbolic link to nothing?)", opts.DataDir, err)
		}
		return nil, fmt.Errorf("grpcapi: creating the data directory: %w", err)
	}
	lock, err := lockDataDir(opts.FS, opts.DataDir)
	if err != nil {
		return nil, err
	}
	if err := checkWritable(opts.FS, opts.DataDir); err != nil {
		return nil, errors.Join(err, lock.Close())
	}
	s := &Server{opts: opts, log: opts.Logger, fs: opts.FS, lock: lock}
	s.sweepDeleted()
	s.drained, s.drain = context.WithCancel(context.Background())
	s.mu.shards = make(map[shardKey]*shard)
	s.mu.retired = make(map[shardKey]*stepLog)
	s.mu.removals = make(map[shardKey]chan struct{})
	s.mu.looking = make(map[shardKey]*looking)
	s.released = make(chan struct{})

	gopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.MaxMessageSize),
		grpc.MaxSendMsgSize(opts.MaxMessageSize),
		grpc.ChainUnaryInterceptor(s.recoverUnary),
		grpc.ChainStreamInterceptor(s.recoverStream, s.endOnShutdown),
		grpc.ForceServerCodecV2(newCodec()),
		grpc.ConnectionTimeout(opts.HandshakeTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
	}
	if opts.MaxConcurrentStreams > 0 {
		gopts = append(gopts, grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams))
	}
	s.grpc = grpc.NewServer(append(gopts, opts.GRPCOptions...)...)
	for _, desc := range []*grpc.ServiceDesc{
		&replicationgrpc.OxiaLogReplication_ServiceDesc,
		&replicationgrpc.OxiaCoordination_ServiceDesc,
		&inspectpb.Inspect_ServiceDesc,
	} {
		s.grpc.RegisterService(decodeChecked(desc), s)
	}
	reflection.Register(s.grpc)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	// Every service registered, health and reflection included.
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	return s, nil
}

// Serve accepts connections on lis until Shutdown. It returns nil after a
// shutdown.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Shutdown stops the node: health turns NOT_SERVING, no new call is
// accepted, every stream and install ends (Unavailable), so do health
// watches, every follower is closed, and Shutdown waits for the running
// handlers to return and the clients to read their last replies, at most
// Options.DrainTimeout from then, and removes what the
// shards whose followers had nothing stored left on disk. When ctx ends
// first, the remaining connections are closed at once and Shutdown
// returns, whatever the handlers still wait for; a connection still in
// its handshake is closed only at the end of its Options.HandshakeTimeout,
// and Serve returns after that.
// Shutdown releases the data directory, unless ctx ended while a
// follower was still closing (it may still write): then the directory is
// released once every follower has closed, after Shutdown returned.
// Calling Shutdown again returns the first result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.mu.closing = true
	s.shuttingDown.Store(true)
	shards := make([]*shard, 0, len(s.mu.shards))
	for _, sh := range s.mu.shards {
		shards = append(shards, sh)
	}
	// No removal starts once closing is set; those under way are waited
	// for with the shards.
	removals := slices.Collect(maps.Values(s.mu.removals))
	// The namespaces whose directories may be left empty: the removals
	// under way do not tidy them once closing is set.
	namespaces := make(map[string]bool)
	for k := range s.mu.removals {
		namespaces[k.namespace] = true
	}
	s.mu.Unlock()
	// shuttingDown is set: whatever a health watch sends from now on
	// says NOT_SERVING, and ends it, Unavailable.
	s.health.Shutdown()
	s.log.Info("shutting down", "shards", len(shards))

	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	closed := make(chan []error, 1)
	if len(shards) == 0 && len(removals) == 0 {
		closed <- nil // nothing to wait for, whatever ctx says
	} else {
		go func() {
			errs := closeShards(shards)
			waitRemoved(removals)
			closed <- errs
		}()
	}
	// When ctx ends first, the connections are closed, and Shutdown
	// returns without waiting for the handlers, nor for gRPC to close
	// the connections (both wait in the background for whatever holds
	// a handler): neither a follower that does not close (say, its disk
	// hangs in an fsync) nor a call stuck on such a disk holds the
	// shutdown past ctx.
	var errs []error
	select {
	case errs = <-closed:
	case <-ctx.Done():
		select {
		case errs = <-closed: // both at once: the followers are closed
		default:
			// The data directory stays locked while that follower may
			// still write.
			s.drain()
			go s.grpc.Stop()
			go func() {
				if err := errors.Join(<-closed...); err != nil {
					s.log.Error("closing followers after a shutdown cut short", "err", err)
				}
				if err := s.releaseDir(); err != nil {
					s.log.Error("releasing the data directory after a shutdown cut short", "err", err)
				}
			}()
			return fmt.Errorf("grpcapi: shutdown cut short while followers were closing (the data directory stays locked until they have closed): %w", context.Cause(ctx))
		}
	}
	s.drain()
	if err := s.waitStopped(ctx, stopped); err != nil {
		errs = append(errs, err)
	} else {
		s.removeLeftEmpty(shards, namespaces)
	}
	errs = append(errs, s.releaseDir())
	return errors.Join(errs...)
}

// waitStopped waits, once every follower is closed, until gRPC has
// stopped: every handler has returned and every client has been sent
// what was written for it. Every handler returns promptly then, but one
// sending to a client that does not read: Options.DrainTimeout after the
// followers closed, the connections still open are closed. If ctx ends
// while a handler still runs, the connections are closed and the error
// says so.
func (s *Server) waitStopped(ctx context.Context, stopped <-chan struct{}) error {
	idle := s.idle()
	t := time.NewTimer(s.opts.DrainTimeout)
	defer t.Stop()
	drained := t.C
	for {
		select {
		case <-stopped:
			return nil
		case <-idle:
			idle = nil
		case <-drained:
			// What gRPC still waits for is the clients reading the
			// replies, acks and statuses queued for them (and the
			// handlers blocked sending to those that do not).
			drained = nil
			s.log.Warn("closing the connections of clients that did not read what was sent to them", "drain_timeout", s.opts.DrainTimeout)
			go s.grpc.Stop()
		case <-ctx.Done():
			select {
			case <-stopped:
				return nil
			default:
			}
			// Every follower is closed, and none opens any more: what the
			// remaining handlers wait for writes nothing to the data
			// directory.
			go s.grpc.Stop()
			if idle != nil {
				// idle and ctx may have been ready at once: no handler
				// running is not a shutdown cut short.
				select {
				case <-idle:
					idle = nil
				default:
				}
			}
			if idle == nil {
				return nil // no handler runs: the clients were slow to read
			}
			return fmt.Errorf("grpcapi: shutdown cut short: %w", context.Cause(ctx))
		}
	}
}

// entered and left count a handler in and out (see Server.calls).
func (s *Server) entered() {
	s.calls.Lock()
	s.calls.running++
	s.calls.Unlock()
}

func (s *Server) left() {
	s.calls.Lock()
	defer s.calls.Unlock()
	s.calls.running--
	if s.calls.running == 0 && s.calls.idle != nil {
		close(s.calls.idle)
		s.calls.idle = nil
	}
}

// idle returns a channel closed once no handler runs.
func (s *Server) idle() <-chan struct{} {
	s.calls.Lock()
	defer s.calls.Unlock()
	ch := make(chan struct{})
	if s.calls.running == 0 {
		close(ch)
	} else {
		s.calls.idle = ch
	}
	return ch
}

// removeLeftEmpty removes, once no handler runs, the directories of the
// shards whose followers had nothing stored when the shutdown closed them
// (a snapshot stream that was waiting for its first chunk on a shard the
// node did not host, say), and then, if empty, their namespaces'
// directories, those of namespaces (the shutdown's removals under way)
// and those the removals that ended during the shutdown asked to tidy:
// the shutdown leaves none of them, as release and DeleteShard do not
// while the node runs. follower.Remove checks on disk that nothing is
// stored.
func (s *Server) removeLeftEmpty(shards []*shard, namespaces map[string]bool) {
	for _, sh := range shards {
		if sh.f == nil {
			continue
		}
		st := sh.f.Status()
		if st.State != follower.StateClosed || st.Term != logpos.NoTerm || st.Head != logpos.NoOffset || st.Commit != logpos.NoOffset {
			continue
		}
		if err := follower.Remove(s.followerConfig(sh.key), 0); err != nil {
			s.log.Warn("keeping the directory of a shard with nothing stored", "namespace", sh.key.namespace, "shard", sh.key.shard, "term", int64(logpos.NoTerm), "err", err)
			continue
		}
		namespaces[sh.key.namespace] = true
	}
	s.mu.Lock()
	for ns := range s.mu.untidied {
		namespaces[ns] = true
	}
	s.mu.Unlock()
	for ns := range namespaces {
		if err := s.fs.Remove(s.fs.PathJoin(s.opts.DataDir, ns)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Debug("namespace directory kept", "namespace", ns, "err", err)
		}
	}
}

// sweepDeleted removes, durably, what a crash left of removals: a
// shard's directory set aside by a Delete (<namespace>/<shard>.deleted;
// opening that shard would remove it, but a shard that was deleted or
// dropped is not called again), and namespace directories left empty.
// It runs before the node serves, with the data directory locked.
func (s *Server) sweepDeleted() {
	fs, data := s.fs, s.opts.DataDir
	namespaces, err := fs.List(data)
	if err != nil {
		s.log.Warn("listing the data directory", "err", err)
		return
	}
	for _, ns := range namespaces {
		if !validNamespace(ns) {
			continue // .lock, or nothing of the node's
		}
		dir := fs.PathJoin(data, ns)
		names, err := fs.List(dir)
		if err != nil {
			continue // not a directory
		}
		removed := 0
		for _, name := range names {
			if shard, aside := strings.CutSuffix(name, ".deleted"); aside {
				if _, ok := parseShardID(shard); ok {
					if err := fs.RemoveAll(fs.PathJoin(dir, name)); err != nil {
						s.log.Warn("removing what a shard's deletion left", "namespace", ns, "dir", name, "err", err)
						continue
					}
					removed++
					s.log.Info("removed what a shard's deletion left", "namespace", ns, "dir", name)
				}
			}
		}
		if removed > 0 {
			if err := durable.SyncDir(fs, dir); err != nil {
				s.log.Warn("syncing a namespace directory", "namespace", ns, "err", err)
			}
		}
		if removed == len(names) {
			if err := fs.Remove(dir); err != nil {
				s.log.Warn("removing an empty namespace directory", "namespace", ns, "err", err)
			} else {
				s.log.Info("removed an empty namespace directory", "namespace", ns)
				if err := durable.SyncDir(fs, data); err != nil {
					s.log.Warn("syncing the data directory", "err", err)
				}
			}
		}
	}
}

// releaseDir releases the data directory.
func (s *Server) releaseDir() error {
	defer close(s.released)
	return s.lock.Close()
}

// closeShards closes the followers of shards, all at once (one that is
// slow to close does not hold the others), once each has finished
// opening, and returns what failed.
func closeShards(shards []*shard) []error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, sh := range shards {
		wg.Go(func() {
			<-sh.ready
			if sh.f == nil {
				return
			}
			if err := sh.f.Close(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("closing shard %s: %w", sh.key, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

// waitRemoved waits until the removals (see Server.mu.removals) are
// done.
func waitRemoved(removals []chan struct{}) {
	for _, done := range removals {
		<-done
	}
}

// endOnShutdown ends the streams that no follower ends (health watches,
// reflection) when the node shuts down, so that a graceful stop need not
// wait for their clients: such a stream's context is cancelled once it
// has sent a message after Shutdown started (a health watch's
// NOT_SERVING, which Shutdown gives every watch of a service it serves),
// or once Shutdown has closed every follower, whichever comes first; a
// receive it is waiting in then returns Unavailable (a reflection stream
// waits for its client's next request). A health watch that has sent
// nothing yet, or whose last message said SERVING, is not ended then: its
// first status or its NOT_SERVING is on its way, and ends it. The
// replication streams end with their followers.
func (s *Server) endOnShutdown(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if strings.HasPrefix(info.FullMethod, "/replication.") {
		return handler(srv, ss)
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	es := &endingStream{ServerStream: ss, ctx: ctx, server: s, end: cancel}
	watch := info.FullMethod == healthpb.Health_Watch_FullMethodName
	defer context.AfterFunc(s.drained, func() {
		// A watch of a service the node does not serve, or one that
		// said NOT_SERVING before: the health server sends no status
		// twice, and nothing else would end it.
		if !watch || es.sent.Load() == sentOther {
			cancel()
		}
	})()
	err := handler(srv, es)
	if status.Code(err) == codes.Canceled && ss.Context().Err() == nil && s.shuttingDown.Load() {
		// Ended by the shutdown, not by its client (a health watch
		// returns Canceled when its context ends).
		return status.Error(codes.Unavailable, "grpcapi: the node is shutting down")
	}
	return err
}

// recoverUnary and recoverStream turn a panic of a handler into an
// Unknown status for its caller and an error in the log, with the stack:
// a bug met by one call does not take the node down with it.
func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (_ any, err error) {
	s.entered()
	defer s.left()
	defer s.recovered(info.FullMethod, &err)
	return handler(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	s.entered()
	defer s.left()
	defer s.recovered(info.FullMethod, &err)
	return handler(srv, ss)
}

// recovered is deferred by the recovering interceptors.
func (s *Server) recovered(method string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	s.log.Error("a call panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*err = status.Error(codes.Unknown, "grpcapi: internal error")
}

// endingStream is a server stream with its own context, ended by end
// once it sent a message during the shutdown (but a health status saying
// SERVING, which a NOT_SERVING follows).
type endingStream struct {
	grpc.ServerStream
	ctx    context.Context
	server *Server
	end    context.CancelFunc
	// sent says what the last message sent was: nothing yet, a health
	// status saying SERVING, or anything else.
	sent atomic.Int32
}

// What an endingStream sent last.
const (
	sentNothing int32 = iota
	sentServing
	sentOther
)

func (e *endingStream) Context() context.Context { return e.ctx }

// RecvMsg returns when a message arrives, the stream fails, or the
// stream is ended, whichever comes first. In the last case the receive
// goes on in the background until gRPC ends the call, which the handler
// returning does, and its message is dropped.
func (e *endingStream) RecvMsg(m any) error {
	if e.ctx.Err() != nil {
		return e.ended()
	}
	done := make(chan error, 1)
	go func() { done <- e.ServerStream.RecvMsg(m) }()
	select {
	case err := <-done:
		return err
	case <-e.ctx.Done():
		return e.ended()
	}
}

// ended is the error of a receive cut short by the end of the stream.
func (e *endingStream) ended() error {
	if e.server.shuttingDown.Load() {
		return status.Error(codes.Unavailable, "grpcapi: the node is shutting down")
	}
	return status.FromContextError(e.ctx.Err()).Err()
}

func (e *endingStream) SendMsg(m any) error {
	err := e.ServerStream.SendMsg(m)
	r, health := m.(*healthpb.HealthCheckResponse)
	serving := health && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
	if serving {
		e.sent.Store(sentServing)
	} else {
		e.sent.Store(sentOther)
	}
	// shuttingDown is set before the health statuses turn NOT_SERVING:
	// a watch sending that is ended, however soon after.
	if e.server.shuttingDown.Load() && !serving {
		e.end()
	}
	return err
}

// shard is one hosted shard: its follower and its recent lifecycle steps.
type shard struct {
	key shardKey
	// ready is closed once opening the follower finished: then f or err
	// is set and never changes.
	ready chan struct{}
	f     *follower.Follower
	err   error
	steps *stepLog
	// counts are the lifecycle steps counted for the metrics.
	counts *stepCounts
	// deleting serializes DeleteShard calls on the shard.
	deleting sync.Mutex
	// users counts the calls that looked the shard up and have not
	// released it yet (guarded by the server's mu).
	users int
}

// dir is the directory of a shard's follower.
func (s *Server) dir(k shardKey) string {
	return s.fs.PathJoin(s.opts.DataDir, k.namespace, strconv.FormatInt(k.shard, 10))
}

// lookup returns the shard k, opening its follower when it is not open
// yet. A shard that is neither open nor on disk is opened only when
// create is set; otherwise lookup returns errNotHosted. Keys must be
// validated. The caller holds the shard until it calls release; on an
// error there is nothing to release.
func (s *Server) lookup(k shardKey, create bool) (*shard, error) {
	// mayOpen: create is set, or the shard's directory was found and k
	// was not forgotten since.
	mayOpen := create
	s.mu.Lock()
	for {
		if s.mu.closing {
			s.mu.Unlock()
			return nil, errShuttingDown
		}
		if sh := s.mu.shards[k]; sh != nil {
			sh.users++
			s.mu.Unlock()
			<-sh.ready
			if sh.err != nil {
				s.release(sh)
				return nil, sh.err
			}
			return sh, nil
		}
		done := s.mu.removals[k]
		if done == nil {
			done = s.mu.removals[namespaceKey(k.namespace)]
		}
		if done != nil {
			// The data of k, or the directory of its namespace, is being
			// removed: look again once it is gone.
			s.mu.Unlock()
			<-done
			s.mu.Lock()
			mayOpen = create // whether it is on disk is looked up again
			continue
		}
		if mayOpen {
			break
		}
		// Whether the shard has data is looked up again if k was
		// forgotten meanwhile (its directory may be gone).
		forgotten, err := s.statLocked(k)
		if err != nil {
			s.mu.Unlock()
			if errors.Is(err, os.ErrNotExist) {
				return nil, errNotHosted
			}
			return nil, fmt.Errorf("%w: looking for shard %s: %w", follower.ErrUnavailable, k, err)
		}
		mayOpen = !forgotten
	}
	sh := &shard{key: k, ready: make(chan struct{}), steps: newStepLog(s.opts.StepHistory), counts: newStepCounts(), users: 1}
	s.mu.shards[k] = sh
	s.unretireLocked(k)
	s.mu.Unlock()
	// fresh: nothing of the shard was on disk before it was opened.
	fresh := false
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		select {
		case <-sh.ready:
			// Opening was over: what panicked is the cleanup of a failed
			// open (sh.err is set, and read by the waiters already).
			panic(r)
		default:
		}
		// Opening panicked: the shard is not hosted, and whoever waits
		// for it gets an error rather than waiting for ever. As after a
		// failed open, what the open created of a new shard goes first
		// (calls on the shard wait for it), then its namespace's
		// directory if left empty.
		sh.err = &notOpened{fmt.Errorf("%w: opening shard %s panicked: %v", follower.ErrUnavailable, k, r)}
		func() {
			defer func() {
				s.forget(sh)
				close(sh.ready)
			}()
			if fresh {
				if err := s.fs.RemoveAll(s.dir(k)); err != nil {
					s.log.Warn("removing what an open that panicked created", "namespace", k.namespace, "shard", k.shard, "err", err)
				}
			}
		}()
		if fresh {
			s.tidyNamespace(k.namespace)
		}
		panic(r)
	}()

	cfg := s.followerConfig(k)
	obs := &stepObserver{steps: sh.steps, counts: sh.counts}
	if o := s.opts.Follower.Observer; o != nil {
		obs.next = append(obs.next, o)
	}
	if s.opts.ShardObserver != nil {
		if o := s.opts.ShardObserver(k.namespace, k.shard); o != nil {
			obs.next = append(obs.next, o)
		}
	}
	cfg.Observer = obs
	_, err := s.fs.Stat(cfg.Dir)
	fresh = errors.Is(err, os.ErrNotExist)
	sh.f, sh.err = follower.Open(cfg)
	if sh.err != nil && fresh {
		// Nothing of the shard was there: what the failed open created
		// goes (the shard stays not hosted, after a restart too).
		if err := s.fs.RemoveAll(cfg.Dir); err != nil {
			s.log.Warn("removing what a failed open created", "namespace", k.namespace, "shard", k.shard, "err", err)
		}
	}
	if sh.err != nil {
		if !errors.Is(sh.err, follower.ErrUnavailable) {
			sh.err = fmt.Errorf("%w: %w", follower.ErrUnavailable, sh.err)
		}
		sh.err = &notOpened{fmt.Errorf("opening shard %s: %w", k, sh.err)}
		s.log.Error("opening a shard failed", "namespace", k.namespace, "shard", k.shard, "err", sh.err)
		s.forget(sh)
	}
	close(sh.ready)
	if sh.err != nil {
		s.release(sh)
		if fresh {
			s.tidyNamespace(k.namespace)
		}
		return nil, sh.err
	}
	return sh, nil
}

// looking counts the lookups looking for the directory of a key (see
// statLocked), and how many times the key was forgotten meanwhile.
type looking struct {
	lookups int
	gone    uint64
}

// statLocked looks whether the directory of k exists, without holding
// s.mu (a disk that hangs holds this call only; s.mu is held when it is
// called and when it returns), and reports whether k was forgotten
// meanwhile (see goneLocked): its directory may be gone since.
func (s *Server) statLocked(k shardKey) (forgotten bool, err error) {
	w := s.mu.looking[k]
	if w == nil {
		w = &looking{}
		s.mu.looking[k] = w
	}
	w.lookups++
	gone := w.gone
	s.mu.Unlock()
	_, err = s.fs.Stat(s.dir(k))
	s.mu.Lock()
	if w.lookups--; w.lookups == 0 {
		delete(s.mu.looking, k)
	}
	return w.gone != gone, err
}

// goneLocked tells the lookups looking for k's directory (see
// statLocked) that k was forgotten, or is being removed.
func (s *Server) goneLocked(k shardKey) {
	if w := s.mu.looking[k]; w != nil {
		w.gone++
	}
}

// followerConfig is the configuration of the follower of shard k,
// without its observer.
func (s *Server) followerConfig(k shardKey) follower.Config {
	cfg := s.opts.Follower
	cfg.Namespace, cfg.Shard = k.namespace, k.shard
	cfg.Dir, cfg.FS, cfg.Logger = s.dir(k), s.fs, s.log
	return cfg
}

// notOpened is the error of a lookup whose follower did not open.
type notOpened struct{ err error }

func (e *notOpened) Error() string { return e.err.Error() }
func (e *notOpened) Unwrap() error { return e.err }

// removeUnopened removes the data of shard k, which has no follower
// (none on disk, or one that did not open), at term (see
// follower.Remove), while calls on k wait for it. It reports false,
// doing nothing, when a follower of k is open or opening, or another
// removal of k or of its namespace's directory is under way: the caller
// looks again (lookup waits for those removals).
func (s *Server) removeUnopened(k shardKey, term logpos.Term) (bool, error) {
	s.mu.Lock()
	if s.mu.closing {
		s.mu.Unlock()
		return true, errShuttingDown
	}
	if s.mu.shards[k] != nil || s.mu.removals[k] != nil || s.mu.removals[namespaceKey(k.namespace)] != nil {
		s.mu.Unlock()
		return false, nil
	}
	defer s.removing(k)()
	return true, follower.Remove(s.followerConfig(k), term)
}

// release ends a call's hold on sh (see lookup). When no call holds it
// any more and its follower is NotMember with nothing stored (a call
// refused before anything was stored, say a snapshot refused on a shard
// the node did not host), which is the same as no follower, the node
// forgets the shard, closes the follower and removes its directory: a
// client cannot make the node keep files open, or directories, for
// shards it does not host. The last steps stay readable as a deleted
// shard's do.
func (s *Server) release(sh *shard) {
	s.mu.Lock()
	sh.users--
	// With no user, nothing can change the follower's state: it is
	// read once, here.
	if sh.users > 0 || s.mu.closing || s.mu.shards[sh.key] != sh || !empty(sh.f.Status()) {
		s.mu.Unlock()
		return
	}
	s.retireLocked(sh)
	done := s.removing(sh.key)
	defer func() {
		done()
		s.tidyNamespace(sh.key.namespace)
	}()

	// Deleted as DeleteShard does (a crash leaves the directory or
	// nothing), at term 0, the lowest Delete takes: the follower has no
	// term.
	if err := sh.f.Delete(0); err != nil {
		// Whatever is left on disk is looked up again by the next call
		// on the shard; the follower, forgotten, is closed.
		_ = sh.f.Close()
		s.log.Warn("dropping a shard with nothing stored", "namespace", sh.key.namespace, "shard", sh.key.shard, "term", int64(logpos.NoTerm), "err", err)
	} else {
		s.log.Debug("shard with nothing stored dropped", "namespace", sh.key.namespace, "shard", sh.key.shard, "term", int64(logpos.NoTerm))
	}
}

// removing marks k as being removed (see Server.mu.removals) and unlocks
// s.mu, which the caller holds. The returned function, which the caller
// defers (a panic while removing must not leave the calls on k waiting
// for ever), ends the removal.
func (s *Server) removing(k shardKey) (done func()) {
	ch := make(chan struct{})
	s.mu.removals[k] = ch
	s.goneLocked(k)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.mu.removals, k)
		s.mu.Unlock()
		close(ch)
	}
}

// namespaceKey is the key under which tidyNamespace registers the
// removal of namespace ns's directory (no shard is negative).
func namespaceKey(ns string) shardKey { return shardKey{namespace: ns, shard: -1} }

// tidyNamespace removes the directory of namespace ns if it is empty
// and no shard of ns is open, opening or being removed, after a shard of
// ns was removed: a client cannot make the node keep a directory for
// each namespace it names. A directory that is not empty stays.
func (s *Server) tidyNamespace(ns string) {
	s.mu.Lock()
	if s.mu.closing {
		if s.mu.untidied == nil {
			s.mu.untidied = map[string]bool{}
		}
		s.mu.untidied[ns] = true
		s.mu.Unlock()
		return
	}
	if s.usesNamespaceLocked(ns) {
		s.mu.Unlock()
		return
	}
	defer s.removing(namespaceKey(ns))()
	dir := s.fs.PathJoin(s.opts.DataDir, ns)
	if err := s.fs.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Debug("namespace directory kept", "namespace", ns, "err", err)
	} else if err == nil {
		if err := durable.SyncDir(s.fs, s.opts.DataDir); err != nil {
			s.log.Warn("syncing the data directory", "namespace", ns, "err", err)
		}
	}
}

// usesNamespaceLocked reports whether a shard of namespace ns is open,
// opening or being removed, or the namespace's directory is being
// removed.
func (s *Server) usesNamespaceLocked(ns string) bool {
	for k := range s.mu.shards {
		if k.namespace == ns {
			return true
		}
	}
	for k := range s.mu.removals {
		if k.namespace == ns {
			return true
		}
	}
	return false
}

// empty reports whether a follower in status st is NotMember with
// nothing stored: no term, no log, nothing applied.
func empty(st follower.Status) bool {
	return st.State == follower.StateNotMember && st.Term == logpos.NoTerm &&
		st.Head == logpos.NoOffset && st.Commit == logpos.NoOffset
}

// forget drops sh from the hosted shards, unless another follower of the
// same key took its place.
func (s *Server) forget(sh *shard) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetLocked(sh)
}

// forgetLocked drops sh from the hosted shards if it is still the shard
// of its key, and reports whether it was.
func (s *Server) forgetLocked(sh *shard) bool {
	if s.mu.shards[sh.key] != sh {
		return false
	}
	delete(s.mu.shards, sh.key)
	s.goneLocked(sh.key)
	return true
}

// maxRetired is how many deleted shards' step logs a server keeps.
const maxRetired = 64

// retire forgets a deleted shard but keeps its step log.
func (s *Server) retire(sh *shard) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retireLocked(sh)
}

// retireLocked is retire with s.mu held.
func (s *Server) retireLocked(sh *shard) {
	if !s.forgetLocked(sh) {
		return
	}
	s.unretireLocked(sh.key)
	s.mu.retired[sh.key] = sh.steps
	s.mu.retiredOrder = append(s.mu.retiredOrder, sh.key)
	for len(s.mu.retiredOrder) > maxRetired {
		delete(s.mu.retired, s.mu.retiredOrder[0])
		s.mu.retiredOrder = s.mu.retiredOrder[1:]
	}
}

// unretireLocked drops the step log kept for a deleted shard k, if any.
func (s *Server) unretireLocked(k shardKey) {
	if _, ok := s.mu.retired[k]; ok {
		delete(s.mu.retired, k)
		s.mu.retiredOrder = slices.DeleteFunc(s.mu.retiredOrder, func(r shardKey) bool { return r == k })
	}
}

// retiredSteps returns the step log of a deleted shard, if kept.
func (s *Server) retiredSteps(k shardKey) *stepLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.retired[k]
}

// current reports whether sh is still the hosted shard of its key.
func (s *Server) current(sh *shard) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.shards[sh.key] == sh
}

// status maps err for a client (see Status).
func (s *Server) status(err error) error { return Status(err, s.shuttingDown.Load()) }
