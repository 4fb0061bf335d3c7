package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/echo"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/node"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/decimalflag"
	"github.com/tablefsm/tablefsm/internal/tlsfiles"
	"github.com/tablefsm/tablefsm/logpos"
)

// target is the node and shard a command talks to.
type target struct {
	addr      string
	namespace string
	shard     int64
	timeout   time.Duration
	// TLS: used when any of them is set.
	tlsCA, tlsCert, tlsKey, tlsServerName string
}

func (t *target) flags(fs *flag.FlagSet) {
	fs.StringVar(&t.addr, "target", "127.0.0.1:6649", "`address` of the follower node")
	fs.StringVar(&t.namespace, "namespace", "default", "the shard's `namespace`")
	decimalflag.Int64Var(fs, &t.shard, "shard", 0, "the shard `id`")
	fs.DurationVar(&t.timeout, "timeout", 10*time.Second, "deadline of each call")
	fs.StringVar(&t.tlsCA, "tls-ca", "", "connect over TLS, trusting the authorities in this PEM `file` (empty: the system's); any --tls-* flag turns TLS on")
	fs.StringVar(&t.tlsCert, "tls-cert", "", "over TLS, present the client certificate in this PEM `file` (to a node asking for one); needs --tls-key")
	fs.StringVar(&t.tlsKey, "tls-key", "", "the PEM `file` of the --tls-cert certificate's private key")
	fs.StringVar(&t.tlsServerName, "tls-server-name", "", "over TLS, the `name` the node's certificate must carry (empty: the --target host)")
}

func (t *target) shardName() leader.Shard {
	return leader.Shard{Namespace: t.namespace, Shard: t.shard}
}

func (t *target) dial() (*leader.Conn, error) {
	if err := node.CheckTarget(t.addr); err != nil {
		return nil, usagef("invalid --target %q: %v", t.addr, err)
	}
	if t.timeout <= 0 {
		return nil, usagef("--timeout must be positive, not %v", t.timeout)
	}
	if (t.tlsCert == "") != (t.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together: a certificate needs its key")
	}
	if t.tlsCA == "" && t.tlsCert == "" && t.tlsServerName == "" {
		return leader.Dial(t.addr, 0)
	}
	cfg, err := tlsfiles.Client(t.tlsCA, t.tlsCert, t.tlsKey, t.tlsServerName)
	if err != nil {
		return nil, err
	}
	return leader.Dial(t.addr, 0, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

func (t *target) call(ctx context.Context, f func(ctx context.Context, c *leader.Conn) error) error {
	c, err := t.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return f(ctx, c)
}

var statusCommand = command{
	name:  "status",
	short: "Print a shard's term, status, head and commit offsets (GetStatus).",
	setup: func(fs *flag.FlagSet, e *env) func(context.Context) error {
		var t target
		t.flags(fs)
		return func(ctx context.Context) error {
			if t.namespace == "" {
				t.namespace = "default" // as GetStatus reads it, and so printed
			}
			return t.call(ctx, func(ctx context.Context, c *leader.Conn) error {
				st, err := c.Status(ctx, t.shardName())
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "%s term=%d status=%s head=%d commit=%d\n", t.shardName(), st.GetTerm(), st.GetStatus(), st.GetHeadOffset(), st.GetCommitOffset())
				return nil
			})
		}
	},
}

var newTermCommand = command{
	name:  "new-term",
	short: "Fence a shard at a term (NewTerm) and print the head entry it reports.",
	setup: func(fs *flag.FlagSet, e *env) func(context.Context) error {
		var t target
		t.flags(fs)
		term := decimalflag.Int64(fs, "term", 0, "the `term` to fence at (required)")
		notifications := fs.Bool("notifications", false, "the term's enable_notifications option")
		sorting := fs.String("key-sorting", "unknown", "key `sorting` of the term: unknown, natural or hierarchical")
		return func(ctx context.Context) error {
			if !given(fs, "term") || *term < 0 {
				return usagef("--term is required and must be ≥ 0")
			}
			ks, ok := replicationpb.KeySortingType_value[upper(*sorting)]
			if !ok {
				return usagef("invalid --key-sorting %q", *sorting)
			}
			opts := &replicationpb.NewTermOptions{EnableNotifications: *notifications, KeySorting: replicationpb.KeySortingType(ks)}
			return t.call(ctx, func(ctx context.Context, c *leader.Conn) error {
				head, err := c.NewTerm(ctx, t.shardName(), logpos.Term(*term), opts)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "%s fenced at term %d: head %v\n", t.shardName(), *term, head)
				return nil
			})
		}
	},
}

var truncateCommand = command{
	name:  "truncate",
	short: "Cut a fenced shard's log back to a head entry (Truncate) and print the new head.",
	setup: func(fs *flag.FlagSet, e *env) func(context.Context) error {
		var t target
		t.flags(fs)
		term := decimalflag.Int64(fs, "term", 0, "the leader's `term` (required)")
		headTerm := decimalflag.Int64(fs, "head-term", -1, "`term` of the head entry to keep")
		headOffset := decimalflag.Int64(fs, "head-offset", -1, "`offset` of the head entry to keep (-1: clear the log)")
		return func(ctx context.Context) error {
			if !given(fs, "term") || *term < 0 {
				return usagef("--term is required and must be ≥ 0")
			}
			if *headTerm < -1 || *headOffset < -1 {
				return usagef("--head-term and --head-offset must be ≥ -1 (-1: none)")
			}
			return t.call(ctx, func(ctx context.Context, c *leader.Conn) error {
				head, err := c.Truncate(ctx, t.shardName(), logpos.Term(*term), logpos.EntryID{Term: logpos.Term(*headTerm), Offset: logpos.Offset(*headOffset)})
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "%s truncated: head %v\n", t.shardName(), head)
				return nil
			})
		}
	},
}

var deleteCommand = command{
	name: "delete-shard",
	short: `Delete a shard's follower and its data (DeleteShard); the node forgets the
shard. A term below the shard's is refused. A shard whose follower does not
open (a damaged log, say) is removed once the term checks out against its
store's.`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context) error {
		var t target
		t.flags(fs)
		term := decimalflag.Int64(fs, "term", 0, "the `term` of the request (required)")
		return func(ctx context.Context) error {
			if !given(fs, "term") || *term < 0 {
				return usagef("--term is required and must be ≥ 0")
			}
			return t.call(ctx, func(ctx context.Context, c *leader.Conn) error {
				if err := c.Delete(ctx, t.shardName(), logpos.Term(*term)); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "%s deleted\n", t.shardName())
				return nil
			})
		}
	},
}

var echoCommand = command{
	name: "echo-server",
	short: `Serve the bare-stream baseline of bench: a Replicate stream that acks every
entry at once and stores nothing. With --sync-dir, the durable echo: before
each round of acks it writes the values received to a file in that directory
and makes them durable with one fdatasync, and does nothing else. It removes
its files when it stops, and the directory too when it created it.`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context) error {
		listen := fs.String("listen", "127.0.0.1:0", "`address` to serve on")
		syncDir := fs.String("sync-dir", "", "`directory` of the durable echo's files (empty: store nothing)")
		maxMsg := decimalflag.Int(fs, "max-message-size", grpcapi.DefaultMaxMessageSize, "largest gRPC message received or sent, in `bytes`")
		return func(ctx context.Context) error {
			if *maxMsg <= 0 {
				return usagef("--max-message-size must be positive")
			}
			if err := node.CheckAddress(*listen); err != nil {
				return usagef("invalid --listen %q: %v", *listen, err)
			}
			// Stop waits for the handlers: the durable echo's files are
			// all idle when it is closed, and it removes them.
			srv := grpc.NewServer(append(echo.ServerOptions(), grpc.MaxRecvMsgSize(*maxMsg), grpc.MaxSendMsgSize(*maxMsg), grpc.WaitForHandlers(true))...)
			if *syncDir == "" {
				echo.Register(srv)
			} else {
				_, err := os.Stat(*syncDir)
				created := errors.Is(err, os.ErrNotExist)
				if err := os.MkdirAll(*syncDir, 0o755); err != nil {
					return err
				}
				durable := echo.RegisterDurable(srv, vfs.Default, *syncDir)
				defer func() { // after Stop
					if err := durable.Close(); err != nil {
						fmt.Fprintf(e.stderr, "replicate: removing the durable echo's files: %v\n", err)
					} else if created {
						if err := os.Remove(*syncDir); err != nil {
							fmt.Fprintf(e.stderr, "replicate: removing the durable echo's directory: %v\n", err)
						}
					}
				}()
			}
			lis, err := net.Listen("tcp", *listen)
			if err != nil {
				return err
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(lis) }()
			fmt.Fprintf(e.stdout, "%s%s\n", node.ListeningPrefix, lis.Addr())
			select {
			case <-ctx.Done():
				srv.Stop()
				<-served
				return nil
			case err := <-served:
				return err
			}
		}
	},
}

// given reports whether the flag name was set on the command line.
func given(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
