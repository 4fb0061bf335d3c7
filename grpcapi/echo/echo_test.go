package echo_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/tablefsm/tablefsm/grpcapi/echo"
	"github.com/tablefsm/tablefsm/grpcapi/replicationgrpc"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncFS records, at each SyncData, the bytes written to the file so
// far: what an fdatasync made durable. The sync fails while fail is set,
// each write while failWrites is.
type syncFS struct {
	vfs.FS
	mu         sync.Mutex
	data       []byte // written, in file order (the echo writes sequentially)
	synced     []byte
	syncs      int
	fail       bool
	failWrites bool
	// Sync (not SyncData): that of a file prepared, which fails while
	// failFileSync is set.
	fileSyncs    int
	failFileSync bool
}

type syncFile struct {
	vfs.File
	fs *syncFS
}

func (s *syncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := s.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return &syncFile{File: f, fs: s}, nil
}

func (f *syncFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	if f.fs.failWrites {
		f.fs.mu.Unlock()
		return 0, errors.New("injected write failure")
	}
	f.fs.data = append(f.fs.data[:min(int(off), len(f.fs.data))], p...)
	f.fs.mu.Unlock()
	return f.File.WriteAt(p, off)
}

func (f *syncFile) SyncData() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.fail {
		return errors.New("injected fdatasync failure")
	}
	f.fs.syncs++
	f.fs.synced = append(f.fs.synced[:0], f.fs.data...)
	return f.File.SyncData()
}

func (f *syncFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.failFileSync {
		return errors.New("injected fsync failure")
	}
	f.fs.fileSyncs++
	return f.File.Sync()
}

func (s *syncFS) durable() ([]byte, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.synced...), s.syncs
}

// serveDurable serves a durable echo writing in dir; stop stops the
// server, waiting for its handlers, and closes the echo (it runs at the
// end of the test too, if not called before).
func serveDurable(t *testing.T, fs vfs.FS, dir string) (client replicationgrpc.OxiaLogReplicationClient, durable *echo.Server, stop func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(echo.ServerOptions(), grpc.WaitForHandlers(true))...)
	durable = echo.RegisterDurable(srv, fs, dir)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cc.Close()
			srv.Stop()
			<-done
			if err := durable.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return replicationgrpc.NewOxiaLogReplicationClient(cc), durable, stop
}

// filesIn lists the names of the files in dir.
func filesIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func entry(o int64, cumulative bool) *replicationpb.Append {
	return &replicationpb.Append{
		Term: 1, CommitOffset: -1, CumulativeAcksSupported: cumulative,
		Entry: &replicationpb.LogEntry{Term: 1, Offset: o, Value: []byte{'a' + byte(o%26), '.'}},
	}
}

// TestDurableAcksWhatIsDurable: one entry at a time, in both ack modes,
// each ack comes after an fdatasync that covered the entry's value. A
// second stream writes on in the file the first one prepared; the file is
// gone once the echo is closed.
func TestDurableAcksWhatIsDurable(t *testing.T) {
	for _, cumulative := range []bool{true, false} {
		dir := t.TempDir()
		fs := &syncFS{FS: vfs.Default}
		client, _, stop := serveDurable(t, fs, dir)
		var want []byte
		for run := 0; run < 2; run++ {
			stream, err := client.Replicate(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for o := int64(0); o < 20; o++ {
				a := entry(o, cumulative)
				if err := stream.Send(a); err != nil {
					t.Fatal(err)
				}
				want = append(want, a.Entry.Value...)
				ack, err := stream.Recv()
				if err != nil || ack.GetOffset() != o {
					t.Fatalf("cumulative %v, stream %d: entry %d: ack %v, %v", cumulative, run, o, ack, err)
				}
				if synced, _ := fs.durable(); !bytes.Equal(synced, want) {
					t.Fatalf("cumulative %v, stream %d: ack %d with %q durable, want %q", cumulative, run, o, synced, want)
				}
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if ack, err := stream.Recv(); err != io.EOF {
				t.Fatalf("after the half-close: %v, %v; want the end of the stream", ack, err)
			}
			if names := filesIn(t, dir); len(names) != 1 {
				t.Fatalf("cumulative %v: after stream %d: files %q, want the one file the streams share", cumulative, run, names)
			}
		}
		if _, syncs := fs.durable(); syncs < 40 {
			t.Fatalf("%d fdatasyncs for 40 entries sent one at a time", syncs)
		}
		stop()
		if names := filesIn(t, dir); len(names) != 0 {
			t.Fatalf("left behind: %q", names)
		}
	}
}

// TestAcksByMode: in per-entry mode the echo acks every entry received,
// in order; in cumulative mode it acks the highest offset received, once
// per round, and an entry below an offset acked (a duplicate) brings no
// ack of its own.
func TestAcksByMode(t *testing.T) {
	for _, c := range []struct {
		cumulative bool
		want       []int64
	}{{false, []int64{3, 6, 4}}, {true, []int64{6}}} {
		client, _, _ := serveDurable(t, vfs.Default, t.TempDir())
		stream, err := client.Replicate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(entry(5, c.cumulative)); err != nil {
			t.Fatal(err)
		}
		if ack, err := stream.Recv(); err != nil || ack.GetOffset() != 5 {
			t.Fatalf("cumulative %v: entry 5: ack %v, %v", c.cumulative, ack, err)
		}
		for _, o := range []int64{3, 6, 4} {
			if err := stream.Send(entry(o, c.cumulative)); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		got := acksToTheEnd(t, stream)
		if !slices.Equal(got, c.want) {
			t.Errorf("cumulative %v: after entry 5, entries 3, 6, 4 acked with %v, want %v", c.cumulative, got, c.want)
		}
	}
}

// TestDurableStreamsAtOnceHaveTheirOwnFiles: streams running at the same
// time write to files of their own, the file of a stream that ended
// going to one of them only.
func TestDurableStreamsAtOnceHaveTheirOwnFiles(t *testing.T) {
	dir := t.TempDir()
	client, _, _ := serveDurable(t, vfs.Default, dir)
	ended, err := client.Replicate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := ended.Send(entry(0, true)); err != nil {
		t.Fatal(err)
	}
	if err := ended.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := ended.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		stream, err := client.Replicate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = stream.CloseSend() }()
		if err := stream.Send(entry(0, true)); err != nil {
			t.Fatal(err)
		}
		if ack, err := stream.Recv(); err != nil || ack.GetOffset() != 0 {
			t.Fatalf("stream %d: ack %v, %v", i, ack, err)
		}
	}
	if names := filesIn(t, dir); len(names) != 2 {
		t.Fatalf("two streams running write to %q, want two files", names)
	}
}

// TestDurableSyncFailure: an entry whose write or fdatasync fails is
// never acknowledged; the stream fails, and its file, whose state is
// unknown, is removed rather than handed to the next stream.
func TestDurableSyncFailure(t *testing.T) {
	for _, what := range []string{"write", "fdatasync"} {
		t.Run(what, func(t *testing.T) {
			fs := &syncFS{FS: vfs.Default, fail: what == "fdatasync", failWrites: what == "write"}
			dir := t.TempDir()
			client, _, _ := serveDurable(t, fs, dir)
			stream, err := client.Replicate(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(entry(0, true)); err != nil {
				t.Fatal(err)
			}
			if ack, err := stream.Recv(); err == nil {
				t.Fatalf("acknowledged %v though its %s failed", ack, what)
			}
			// The handler removed its file before it returned, and so
			// before the stream's status was sent.
			if names := filesIn(t, dir); len(names) != 0 {
				t.Fatalf("after the failed stream: files %q, want none", names)
			}
			fs.mu.Lock()
			fs.fail, fs.failWrites = false, false
			fs.mu.Unlock()
			stream, err = client.Replicate(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(entry(0, true)); err != nil {
				t.Fatal(err)
			}
			if ack, err := stream.Recv(); err != nil || ack.GetOffset() != 0 {
				t.Fatalf("the next stream: ack %v, %v", ack, err)
			}
			if names := filesIn(t, dir); len(names) != 1 || names[0] == "echo-stream-1" {
				t.Fatalf("the next stream writes to %q, want a new file", names)
			}
		})
	}
}

// TestDurableCreateFailure: a directory the file cannot be created in
// fails the stream before anything is acknowledged.
func TestDurableCreateFailure(t *testing.T) {
	client, _, _ := serveDurable(t, vfs.Default, "/nonexistent/echo")
	stream, err := client.Replicate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(entry(0, true))
	if ack, err := stream.Recv(); err == nil {
		t.Fatalf("acknowledged %v with no file to write to", ack)
	}
}

// countingCodec is gRPC's protobuf codec, counting what it decodes into
// new Appends (what the generated Recv has it do, per entry).
type countingCodec struct {
	encoding.CodecV2
	appends *atomic.Int64
}

func (c countingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*replicationpb.Append); ok {
		c.appends.Add(1)
	}
	return c.CodecV2.Unmarshal(data, v)
}

// TestEchoReceivesAppendsAsTheNodeDoes: the baseline decodes Appends as
// the node does, into one reused buffer (none goes through gRPC's codec
// into a new message): it does no per-entry work the node does not.
func TestEchoReceivesAppendsAsTheNodeDoes(t *testing.T) {
	orig := encoding.GetCodecV2(protocodec.Name)
	var decoded atomic.Int64
	encoding.RegisterCodecV2(countingCodec{orig, &decoded})
	t.Cleanup(func() { encoding.RegisterCodecV2(orig) })

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(echo.ServerOptions()...)
	echo.Register(srv)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	defer func() { srv.Stop(); <-done }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := replicationgrpc.NewOxiaLogReplicationClient(cc).Replicate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for o := int64(0); o < 100; o++ {
		if err := stream.Send(entry(o, false)); err != nil {
			t.Fatal(err)
		}
		if ack, err := stream.Recv(); err != nil || ack.GetOffset() != o {
			t.Fatalf("entry %d: ack %v, %v", o, ack, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after the half-close: %v", err)
	}
	if n := decoded.Load(); n != 0 {
		t.Errorf("%d of 100 Appends decoded into new messages by gRPC's codec", n)
	}
}

// TestAckModeIsDecidedByTheFirstAppend: a stream keeps the ack mode of
// its first Append whatever the later ones ask: after entry 5, a
// duplicate 3 and entry 6 are acked one by one in per-entry mode, and by
// one cumulative ack 6 in cumulative mode.
func TestAckModeIsDecidedByTheFirstAppend(t *testing.T) {
	for _, c := range []struct {
		cumulative bool
		want       []int64
	}{{false, []int64{3, 6}}, {true, []int64{6}}} {
		client, _, _ := serveDurable(t, vfs.Default, t.TempDir())
		stream, err := client.Replicate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(entry(5, c.cumulative)); err != nil {
			t.Fatal(err)
		}
		if ack, err := stream.Recv(); err != nil || ack.GetOffset() != 5 {
			t.Fatalf("cumulative %v: entry 5: ack %v, %v", c.cumulative, ack, err)
		}
		for _, o := range []int64{3, 6} {
			if err := stream.Send(entry(o, !c.cumulative)); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		got := acksToTheEnd(t, stream)
		if !slices.Equal(got, c.want) {
			t.Errorf("first Append cumulative %v, then 3 and 6 asking the other mode: acks %v, want %v", c.cumulative, got, c.want)
		}
	}
}

// TestDurableFilePreparedBeforeTheFirstAck: a stream's file is prepared
// as a log segment is, to its full size, and made durable before the
// first ack; a file whose preparation could not be made durable fails
// the stream and is removed.
func TestDurableFilePreparedBeforeTheFirstAck(t *testing.T) {
	dir := t.TempDir()
	fs := &syncFS{FS: vfs.Default}
	client, _, _ := serveDurable(t, fs, dir)
	stream, err := client.Replicate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(entry(0, true)); err != nil {
		t.Fatal(err)
	}
	if ack, err := stream.Recv(); err != nil || ack.GetOffset() != 0 {
		t.Fatalf("ack %v, %v", ack, err)
	}
	names := filesIn(t, dir)
	if len(names) != 1 {
		t.Fatalf("files %q, want the stream's", names)
	}
	st, err := os.Stat(filepath.Join(dir, names[0]))
	if err != nil || st.Size() != echo.DurableFileSize {
		t.Fatalf("the stream's file: %v, %v; want it %d bytes long", st, err, echo.DurableFileSize)
	}
	fs.mu.Lock()
	fileSyncs := fs.fileSyncs
	fs.failFileSync = true
	fs.mu.Unlock()
	if fileSyncs == 0 {
		t.Errorf("the first ack came before the prepared file was made durable")
	}
	// A second stream at once prepares a file of its own; its sync fails.
	failed, err := client.Replicate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = failed.Send(entry(0, true))
	if ack, err := failed.Recv(); err == nil {
		t.Fatalf("acknowledged %v though its file was not made durable", ack)
	}
	if got := filesIn(t, dir); !slices.Equal(got, names) {
		t.Fatalf("after the failed preparation: files %q, want only %q", got, names)
	}
}

// acksToTheEnd receives the acks of a stream until it ends, and returns
// their offsets.
func acksToTheEnd(t *testing.T, stream grpc.BidiStreamingClient[replicationpb.Append, replicationpb.Ack]) []int64 {
	t.Helper()
	var got []int64
	for {
		ack, err := stream.Recv()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ack.GetOffset())
	}
}
