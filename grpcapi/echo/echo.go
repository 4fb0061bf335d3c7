// Package echo is the baseline of the end-to-end benchmarks: a bare
// OxiaLogReplication Replicate stream that acknowledges every entry as
// soon as it arrives, storing nothing. It is shaped like the follower's
// synchronizer without the storage: a receive loop and one sender, acks
// per entry or coalesced into one cumulative ack per round. What the
// follower adds on top of it (the log, fsync, the applier, the lifecycle)
// is what the benchmarks measure.
//
// A durable echo (RegisterDurable) is the same stream plus the least a
// durable follower must do: the sender writes the values received since
// its last round to a file and makes them durable with one fdatasync
// before it acknowledges them. Nothing else: no framing, no index, no
// state machine, no lifecycle. One entry at a time, it measures one fsync
// and one stream round trip together, on the same machine and with the
// same gaps between them as a follower sees.
package echo

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"

	"github.com/tablefsm/tablefsm/grpcapi/internal/appendwire"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/wal"
)

// Server serves Replicate only; the other methods are Unimplemented.
type Server struct {
	replicationgrpc.UnimplementedOxiaLogReplicationServer
	// fs and dir: where a durable echo's streams write; fs is nil for
	// the plain echo.
	fs    vfs.FS
	dir   string
	files atomic.Int64 // files created, for their names
	mu    struct {
		sync.Mutex
		idle   []*durableFile // prepared files no stream writes to
		closed bool
	}
}

// ServerOptions are the options of the gRPC server an echo is registered
// on, to receive Appends as a node does: decoded into a buffer reused
// from one Append to the next, without allocating (the node's codec for
// Appends). Without them the echo decodes each Append into new messages,
// work a node does not do.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(appendwire.NewCodec())}
}

// Register registers an echo Server on r.
func Register(r grpc.ServiceRegistrar) {
	replicationgrpc.RegisterOxiaLogReplicationServer(r, &Server{})
}

// DurableFileSize is the size of the file each stream of a durable echo
// writes to, prepared as the log prepares a segment. The stream writes
// it from the start again when it is full.
const DurableFileSize = 64 << 20

// RegisterDurable registers a durable echo Server on r and returns it.
// Each stream writes to a file of its own in dir (on fs), prepared as the
// log prepares a segment. A stream takes the file of a stream that ended,
// when there is one, as a follower's streams write to log segments
// prepared before them and kept after them; only when there is none does
// it prepare one, and its first ack waits for that. Close the Server once
// r no longer serves it: that removes its files.
func RegisterDurable(r grpc.ServiceRegistrar, fs vfs.FS, dir string) *Server {
	s := &Server{fs: fs, dir: dir}
	replicationgrpc.RegisterOxiaLogReplicationServer(r, s)
	return s
}

// Close removes the files of a durable echo that no stream writes to; a
// stream still running removes its own when it ends. It does nothing for
// a plain echo, and may be called more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	idle := s.mu.idle
	s.mu.idle, s.mu.closed = nil, true
	s.mu.Unlock()
	var errs []error
	for _, d := range idle {
		errs = append(errs, d.remove())
	}
	return errors.Join(errs...)
}

// Replicate acknowledges each entry received (a durable echo: once it is
// durable), until the client half-closes the stream (then it returns
// nil) or the stream fails.
func (s *Server) Replicate(stream grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	var out *durableFile
	if s.fs != nil {
		var err error
		if out, err = s.take(); err != nil {
			return err
		}
		defer s.release(out)
	}
	var mu sync.Mutex
	var (
		pending   []int64 // per-entry mode: offsets to acknowledge, in order
		received  []byte  // durable echo: values not yet written
		highest   = int64(-1)
		acked     = int64(-1)
		mode      = 0 // 0 undecided, 1 per entry, 2 cumulative
		inputDone bool
		recvErr   error
	)
	wake := make(chan struct{}, 1)
	kick := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	in := &appendwire.Stream{BidiStreamingServer: stream} // each Append valid until the next Recv
	go func() {
		for {
			a, err := in.Recv()
			mu.Lock()
			if err != nil {
				inputDone = true
				if !errors.Is(err, io.EOF) {
					recvErr = err
				}
				mu.Unlock()
				kick()
				return
			}
			if mode == 0 {
				mode = 1
				if a.GetCumulativeAcksSupported() {
					mode = 2
				}
			}
			if e := a.GetEntry(); e != nil {
				if mode == 1 {
					pending = append(pending, e.GetOffset())
				}
				if out != nil {
					received = append(received, e.GetValue()...)
				}
				highest = max(highest, e.GetOffset())
			}
			mu.Unlock()
			kick()
		}
	}()
	var sending []int64
	var writing []byte
	ack := &replicationpb.Ack{}
	for range wake {
		mu.Lock()
		sending = sending[:0]
		if mode == 1 {
			sending = append(sending, pending...)
			pending = pending[:0]
		} else if highest > acked {
			sending = append(sending, highest)
		}
		writing, received = received, writing[:0]
		done, err := inputDone, recvErr
		mu.Unlock()
		if len(writing) > 0 {
			if err := out.writeAndSync(writing); err != nil {
				return err
			}
		}
		for _, o := range sending {
			ack.Offset = o
			if err := stream.Send(ack); err != nil {
				return err
			}
			acked = max(acked, o)
		}
		if done {
			return err
		}
	}
	return nil
}

// durableFile is the file a durable echo stream writes to.
type durableFile struct {
	fs     vfs.FS
	name   string
	f      vfs.File
	pos    int64
	failed bool // a write or fdatasync failed: the file is not reused
}

// take returns a file for a stream to write to: an idle one, else a new
// one.
func (s *Server) take() (*durableFile, error) {
	s.mu.Lock()
	if n := len(s.mu.idle); n > 0 {
		d := s.mu.idle[n-1]
		s.mu.idle = s.mu.idle[:n-1]
		s.mu.Unlock()
		return d, nil
	}
	s.mu.Unlock()
	return s.create()
}

// release takes back the file of a stream that ended: idle for the next
// stream, or removed when it failed or the Server is closed.
func (s *Server) release(d *durableFile) {
	s.mu.Lock()
	if !d.failed && !s.mu.closed {
		s.mu.idle = append(s.mu.idle, d)
		d = nil
	}
	s.mu.Unlock()
	if d != nil {
		_ = d.remove()
	}
}

func (s *Server) create() (*durableFile, error) {
	name := s.fs.PathJoin(s.dir, fmt.Sprintf("echo-stream-%d", s.files.Add(1)))
	f, err := s.fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("echo: %w", err)
	}
	wal.PrepareFile(f, DurableFileSize)
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = s.fs.Remove(name)
		return nil, fmt.Errorf("echo: %w", err)
	}
	return &durableFile{fs: s.fs, name: name, f: f}, nil
}

// writeAndSync writes b after what was written before (from the start
// of the file again when it does not fit) and makes it durable.
func (d *durableFile) writeAndSync(b []byte) error {
	if d.pos+int64(len(b)) > DurableFileSize {
		d.pos = 0
	}
	if _, err := d.f.WriteAt(b, d.pos); err != nil {
		d.failed = true
		return fmt.Errorf("echo: %w", err)
	}
	d.pos += int64(len(b))
	if err := d.f.SyncData(); err != nil {
		d.failed = true
		return fmt.Errorf("echo: %w", err)
	}
	return nil
}

func (d *durableFile) remove() error {
	return errors.Join(d.f.Close(), d.fs.Remove(d.name))
}
