package grpcapi_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
)

// HTTP/2 frames the proxy reports (RFC 9113 §6).
const (
	framePing   = 0x6
	frameGoaway = 0x7
	flagAck     = 0x1
	// clientPreface opens a client's side of an HTTP/2 connection.
	clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

type frameEvent int

// keepalivePing reports whether a PING's payload is that of gRPC's
// keepalive pings, eight zero bytes: its flow-control pings carry
// others.
func keepalivePing(payload []byte) bool {
	return len(payload) == 8 && binary.BigEndian.Uint64(payload) == 0
}

const (
	clientPing    frameEvent = iota // a keepalive PING from the client
	serverPingAck                   // the server's ack of one
	serverGoaway
)

// frameProxy relays HTTP/2 connections between clients and a server,
// reading the frames as they pass: it reports on events each keepalive
// PING a client sends, and each ack of one and each GOAWAY the server
// sends. After
// hold, it relays nothing more, either way, and closes nothing: a
// network that silently drops everything.
type frameProxy struct {
	addr     string
	events   chan frameEvent
	accepted atomic.Int32
	held     chan struct{}
	holdOnce sync.Once
}

func startFrameProxy(t *testing.T, server string) *frameProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &frameProxy{addr: lis.Addr().String(), events: make(chan frameEvent, 1024), held: make(chan struct{})}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := lis.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			track(client)
			upstream, err := net.Dial("tcp", server)
			if err != nil {
				_ = client.Close()
				continue
			}
			track(upstream)
			wg.Add(2)
			go func() {
				defer wg.Done()
				p.relay(upstream, client, len(clientPreface), func(typ, flags byte, payload []byte) {
					if typ == framePing && flags&flagAck == 0 && keepalivePing(payload) {
						p.report(clientPing)
					}
				})
			}()
			go func() {
				defer wg.Done()
				p.relay(client, upstream, 0, func(typ, flags byte, payload []byte) {
					switch {
					case typ == framePing && flags&flagAck != 0 && keepalivePing(payload):
						p.report(serverPingAck)
					case typ == frameGoaway:
						p.report(serverGoaway)
					}
				})
			}()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *frameProxy) report(e frameEvent) {
	select {
	case p.events <- e:
	default: // more than a test waits for
	}
}

// hold makes the network drop everything from now on.
func (p *frameProxy) hold() { p.holdOnce.Do(func() { close(p.held) }) }

// relay copies src to dst: first preface bytes as they are, then frame
// by frame, calling seen with each frame's type and flags. Held, it
// reads on and drops what it reads. It closes both ends when src ends.
func (p *frameProxy) relay(dst, src net.Conn, preface int, seen func(typ, flags byte, payload []byte)) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 9+1<<14)
	if _, err := io.ReadFull(src, buf[:preface]); err != nil {
		return
	}
	if _, err := dst.Write(buf[:preface]); err != nil {
		return
	}
	for {
		header := buf[:9]
		if _, err := io.ReadFull(src, header); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(append([]byte{0}, header[:3]...)))
		if 9+n > len(buf) {
			buf = append(buf[:9], make([]byte, n)...)
		}
		frame := buf[:9+n]
		if _, err := io.ReadFull(src, frame[9:]); err != nil {
			return
		}
		select {
		case <-p.held:
			continue
		default:
		}
		seen(frame[3], frame[4], frame[9:])
		if _, err := dst.Write(frame); err != nil {
			return
		}
	}
}

// TestKeepalivePingsOfAnOxiaLeader: a client that pings as Oxia's
// leaders do, every 10 s whether it has calls open or not, keeps its
// connection: the node answers its pings and never sends GOAWAY.
// (Under gRPC's default policy the node would send GOAWAY, "too many
// pings", in answer to the third ping after the first.)
func TestKeepalivePingsOfAnOxiaLeader(t *testing.T) {
	t.Parallel()
	// The node's own pings, after 10 s without a frame, would keep the
	// client from pinging (it pings after 10 s without one): the node
	// here pings only after an hour.
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.GRPCOptions = []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Hour})}
	})
	p := startFrameProxy(t, n.addr)
	c, err := leader.Dial(p.addr, 0, grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true,
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := leader.Shard{Namespace: "pinged", Shard: 0}
	fence(t, c, s, 1)
	ctx := ctxT(t)
	for acks := 0; acks < 4; {
		select {
		case e := <-p.events:
			switch e {
			case serverPingAck:
				acks++
			case serverGoaway:
				t.Fatalf("the node sent GOAWAY to an idle client pinging every 10 s, after answering %d pings", acks)
			}
		case <-ctx.Done():
			t.Fatalf("the node answered %d pings", acks)
		}
	}
	if _, err := c.Status(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got := p.accepted.Load(); got != 1 {
		t.Fatalf("the client connected %d times, want once", got)
	}
}

// TestKeepaliveEndsTheStreamOfASilentLeader: when a leader's network
// goes silent mid-stream (no FIN, no reset), the node's keepalive pings
// go unanswered and it closes the connection: the stream ends and the
// shard takes the next stream of the same term, from elsewhere, without
// waiting for TCP to give up or for a new term.
func TestKeepaliveEndsTheStreamOfASilentLeader(t *testing.T) {
	t.Parallel()
	sig := &endSignal{ended: make(chan struct{}, 1)}
	n := startNode(t, "", func(o *grpcapi.Options) { o.GRPCOptions = []grpc.ServerOption{grpc.StatsHandler(sig)} })
	p := startFrameProxy(t, n.addr)
	c, err := leader.Dial(p.addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := leader.Shard{Namespace: "silent", Shard: 0}
	fence(t, c, s, 1)
	// A stream without a deadline: the node learns of none, and only
	// its keepalive can end the stream.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.Replication.Replicate(leader.StreamContext(ctx, s))
	if err != nil {
		t.Fatal(err)
	}
	aSend(t, stream, aEntry(1, 1, 0, -1, false))
	if ack := aRecv(t, stream); ack != 0 {
		t.Fatalf("first ack %d, want 0", ack)
	}
	p.hold()
	select {
	case <-sig.ended:
	case <-ctxT(t).Done():
		t.Fatal("the node never ended the stream of a leader gone silent")
	}
	replicate(t, n.conn, s, 1, 1, 10, true)
	checkApplied(t, n.conn, s, 10)
}
