package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/node"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/internal/decimalflag"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/wal"
)

var benchCommand = command{
	name: "bench",
	short: `Stream key-value entries to a follower and print entries/s, MiB/s and ack
latency (p50, p99, max). With no --target it starts a followerd on loopback in
a temporary directory (under $TMPDIR: on a tmpfs, fsyncs cost nothing), and (with --baseline) compares it, in the same run,
with a bare gRPC stream of the same protocol that acks on receipt (the echo
server) and with the durable echo (the echo server plus one write and
fdatasync before each round of acks, on the node's file system: the least a
follower that acks only durable entries pays); and its idle ack latency with
one fsync and one stream round trip, measured together by the durable echo.

With --target it fences the shard at its current term + 1, truncates it and
advertises the log it keeps as committed, which deposes the shard's leader, if
it has one: use a scratch shard.`,
	setup: func(fs *flag.FlagSet, e *env) func(context.Context) error {
		var b benchConfig
		fs.StringVar(&b.target, "target", "", "`address` of the follower node (empty: start a local followerd)")
		fs.StringVar(&b.followerd, "followerd", "", "`path` of the followerd binary to start (default: beside this binary, else built)")
		fs.StringVar(&b.shard.Namespace, "namespace", "bench", "the shard's `namespace`")
		decimalflag.Int64Var(fs, &b.shard.Shard, "shard", 0, "the shard `id`")
		decimalflag.Int64Var(fs, &b.entries, "entries", 100_000, "`entries` per measured stream")
		decimalflag.IntVar(fs, &b.entrySize, "entry-size", 100, "size of each entry's value in `bytes` (a key-value put)")
		decimalflag.IntVar(fs, &b.window, "window", 1000, "`entries` in flight (sent, not yet acked)")
		fs.StringVar(&b.acks, "acks", "cumulative", "ack `mode`: cumulative or per-entry")
		decimalflag.IntVar(fs, &b.rounds, "rounds", 3, "measured `streams` per side; medians are reported")
		decimalflag.Int64Var(fs, &b.idle, "idle", 1000, "`entries` sent one at a time to measure idle ack latency (0: skip)")
		fs.BoolVar(&b.baseline, "baseline", true, "also measure the echo baseline (and, for a local node, the durable echo and fsync) in the same run")
		fs.BoolVar(&b.progress, "progress", false, "draw a progress bar on stderr (default: when stderr is a terminal)")
		fs.DurationVar(&b.stallTimeout, "stall-timeout", time.Minute, "give up when a stream gets no ack for this `duration` (a stalled node), or the node takes as long to apply what it acknowledged")
		return func(ctx context.Context) error {
			if !given(fs, "progress") {
				b.progress = isTerminal(os.Stderr)
			}
			return b.run(ctx, e)
		}
	},
}

type benchConfig struct {
	target, followerd string
	shard             leader.Shard
	entries           int64
	entrySize, window int
	acks              string
	rounds            int
	idle              int64
	baseline          bool
	progress          bool
	stallTimeout      time.Duration
}

// side is one thing measured: the follower node or the echo baseline.
type side struct {
	name string
	conn *leader.Conn
	// next is the offset of the next entry to send; term the stream's term.
	next logpos.Offset
	term logpos.Term
	runs []leader.Result
	lat  []*leader.Histogram
}

// appendBenchKey appends the key the entry at offset puts.
func appendBenchKey(buf []byte, offset int64) []byte {
	return strconv.AppendInt(append(buf, "bench/"...), offset, 10)
}

// minEntrySize is the smallest entry every offset can have: below it the
// entries would be larger than asked (AppendPaddedPut cannot cut the key).
var minEntrySize = len(leader.AppendPut(nil, appendBenchKey(nil, math.MaxInt64), nil))

func (b *benchConfig) run(ctx context.Context, e *env) (err error) {
	switch {
	case b.entries <= 0:
		return usagef("--entries must be positive")
	case b.entrySize < minEntrySize:
		return usagef("--entry-size must be at least %d (a put of the longest key, %q, with an empty value)", minEntrySize, appendBenchKey(nil, math.MaxInt64))
	case b.entrySize > wal.MaxValueSize:
		return usagef("--entry-size must be at most %d (the largest entry a follower's log takes)", wal.MaxValueSize)
	case b.window <= 0:
		return usagef("--window must be positive")
	case b.window > leader.MaxWindow:
		return usagef("--window must be at most %d (the entries a leader keeps in flight)", leader.MaxWindow)
	case b.rounds <= 0:
		return usagef("--rounds must be positive")
	case b.idle < 0:
		return usagef("--idle must be ≥ 0")
	case b.acks != "cumulative" && b.acks != "per-entry":
		return usagef("--acks must be cumulative or per-entry, not %q", b.acks)
	case b.stallTimeout <= 0:
		return usagef("--stall-timeout must be positive")
	case b.target != "" && b.followerd != "":
		return usagef("--followerd is the node bench starts, --target one it does not: give one of them")
	}
	if b.target != "" {
		if err := node.CheckTarget(b.target); err != nil {
			return usagef("invalid --target %q: %v", b.target, err)
		}
	}
	cumulative := b.acks == "cumulative"
	out := e.stdout
	msgSize := b.messageSize()

	tmp, err := os.MkdirTemp("", "replicate-bench-")
	if err != nil {
		return fmt.Errorf("the temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	var procs []*node.Process
	defer func() {
		for _, p := range procs {
			p.Kill()
		}
	}()

	dataDir := ""
	addr := b.target
	if addr == "" {
		argv, aerr := followerdArgv(ctx, b.followerd, tmp, e.stderr)
		if aerr != nil {
			return aerr
		}
		dataDir = filepath.Join(tmp, "node")
		logs, cerr := os.Create(filepath.Join(tmp, "followerd.log"))
		if cerr != nil {
			return cerr
		}
		defer logs.Close()
		var p *node.Process
		// Run before the temporary directory goes: what the node said
		// may tell why the bench failed, starting it included (err is
		// run's result).
		defer func() {
			if err != nil && ctx.Err() == nil { // stopped: nothing to explain
				showNodeLog(e.stderr, p, logs.Name())
			}
		}()
		p, err = startFollowerd(ctx, argv, dataDir, logs, "--max-message-size", strconv.Itoa(msgSize), "--log-level", "warn")
		if err != nil {
			return err
		}
		procs = append(procs, p)
		addr = p.Addr
	}
	fconn, err := leader.Dial(addr, msgSize)
	if err != nil {
		return err
	}
	defer fconn.Close()
	f := &side{name: "followerd", conn: fconn}
	if err := b.fence(ctx, f); err != nil {
		return err
	}
	// echoSide starts an echo server (durable when syncDir is set) as a
	// side of the bench.
	var conns []*leader.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	echoSide := func(name, syncDir string) (*side, error) {
		p, err := startEcho(ctx, syncDir, msgSize)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		conn, err := leader.Dial(p.Addr, msgSize)
		if err != nil {
			return nil, err
		}
		conns = append(conns, conn)
		return &side{name: name, conn: conn}, nil
	}
	var base, durable *side
	if b.baseline {
		if base, err = echoSide("baseline", ""); err != nil {
			return err
		}
		if dataDir != "" {
			// The durable echo, on the node's file system: the least a
			// follower that acks only durable entries pays.
			if durable, err = echoSide("durable echo", filepath.Join(tmp, "echo-fsync")); err != nil {
				return err
			}
		}
	}

	// A stream has no more entries in flight than it has entries.
	window := fmt.Sprint(b.window)
	if int64(b.window) > b.entries {
		window = fmt.Sprintf("%d (every entry; --window %d)", b.entries, b.window)
	}
	fmt.Fprintf(out, "bench: %s × %d B per stream, window %s, %s acks, %s\n", plural(b.entries, "entry", "entries"), b.entrySize, window, b.acks, plural(b.rounds, "round", "rounds"))
	fmt.Fprintf(out, "  followerd  %s  shard %s, term %d, from offset %d\n", addr, b.shard, f.term, f.next)
	if base != nil {
		fmt.Fprintf(out, "  baseline   %s  echo server: a bare stream of the same protocol that acks on receipt and stores nothing\n", base.conn.ClientConn().Target())
	}
	if durable != nil {
		fmt.Fprintf(out, "  durable    %s  durable echo: the echo server plus one write + fdatasync per round of acks, on the node's file system\n", durable.conn.ClientConn().Target())
	}
	fmt.Fprintln(out)

	sides := []*side{f}
	switch {
	case durable != nil:
		sides = []*side{base, durable, f}
	case base != nil:
		sides = []*side{base, f}
	}
	for round := 1; round <= b.rounds; round++ {
		// Who goes first rotates: the work a node leaves running after
		// its stream (its store's compactions) slows whoever follows it.
		for k := range sides {
			s := sides[(k+round-1)%len(sides)]
			res, lat, err := b.stream(ctx, e, s, b.entries, b.window, cumulative, fmt.Sprintf("round %d %s", round, s.name))
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			s.runs = append(s.runs, res)
			s.lat = append(s.lat, lat)
			fmt.Fprintf(out, "round %d  %-12s  %s\n", round, s.name, describe(res, lat))
		}
	}
	fmt.Fprintln(out)
	fRate := medianRate(f.runs)
	fmt.Fprintf(out, "throughput  followerd %s entries/s (%.1f MiB/s), median of %d\n", entryRate(fRate), fRate*float64(b.entrySize)/(1<<20), b.rounds)
	if base != nil {
		bRate := medianRate(base.runs)
		fmt.Fprintf(out, "            baseline  %s entries/s (%.1f MiB/s)\n", entryRate(bRate), bRate*float64(b.entrySize)/(1<<20))
		fmt.Fprintf(out, "            ratio     %.0f %% of the bare stream: %s\n", 100*fRate/bRate, throughputBudget(fRate/bRate, cumulative))
		if durable != nil {
			dRate := medianRate(durable.runs)
			fmt.Fprintf(out, "            durable   %s entries/s, %.0f %% of the bare stream: the most a follower that acks only durable entries reaches; followerd %.0f %% of it\n", entryRate(dRate), 100*dRate/bRate, 100*fRate/dRate)
		}
	}

	if b.idle > 0 {
		if err := b.idleAcks(ctx, e, dataDir, f, base, durable, cumulative); err != nil {
			return err
		}
	}
	for _, p := range procs {
		if err := stopProcess(p, "a child node"); err != nil {
			return err
		}
	}
	procs = nil
	return nil
}

// messageSize is the largest gRPC message the bench sends and lets the
// nodes it starts receive: the node's default, or more when an Append of
// --entry-size needs it (the value plus room for the rest of the
// message). A node given with --target keeps its own limit.
func (b *benchConfig) messageSize() int {
	return max(grpcapi.DefaultMaxMessageSize, b.entrySize+64<<10)
}

// idleChunk is how many idle entries one side sends before the next
// side's turn: the sides alternate, so that the machine's drift hits them
// alike.
const idleChunk = 100

// throughputBudget judges the node's rate as a fraction of the bare
// stream's: at least 0.70 with cumulative acks. Per-entry acks have no
// budget (each entry's ack is a send of its own, which the bare stream
// coalesces no more than the node does).
func throughputBudget(ratio float64, cumulative bool) string {
	switch {
	case !cumulative:
		return "no budget for per-entry acks (≥ 70 % with cumulative acks)"
	case ratio >= 0.70:
		return "within budget (≥ 70 %)"
	}
	return "BELOW budget (≥ 70 %)"
}

// idleBudget judges the idle acks of a node against the budget: the
// median of the durable echo's (one fsync and one stream round trip
// together) plus 50µs. It returns that budget, the verdict, and the
// node's median as a fraction of the budget.
func idleBudget(node, durable *leader.Histogram) (budget time.Duration, verdict string, share float64) {
	budget = durable.Quantile(.5) + 50*time.Microsecond
	p50 := node.Quantile(.5)
	verdict = "within budget"
	if p50 > budget {
		verdict = "OVER budget"
	}
	return budget, verdict, float64(p50) / float64(budget)
}

// idleAcks measures the idle ack latency of f, one entry at a time, and
// with a baseline, of the echo (one stream round trip). With the durable
// echo (a local node), it also measures it (one fsync and one stream
// round trip together: the budget's reference) and the fsync probe on the
// node's file system, and prints the verdict.
func (b *benchConfig) idleAcks(ctx context.Context, e *env, dataDir string, f, base, durable *side, cumulative bool) error {
	out := e.stdout
	fmt.Fprintf(out, "\nidle acks: %s per side, one at a time, the sides taking turns every %d\n", plural(b.idle, "entry", "entries"), idleChunk)
	sides := []*side{f}
	if base != nil {
		sides = append(sides, base)
		if durable != nil {
			sides = append(sides, durable)
		}
	}
	lats := make([]*leader.Histogram, len(sides))
	for i := range lats {
		lats[i] = &leader.Histogram{}
	}
	for from := int64(0); from < b.idle; from += idleChunk {
		n := min(idleChunk, b.idle-from)
		for k := range sides {
			j := (k + int(from/idleChunk)) % len(sides) // rotate who goes first
			_, lat, err := b.stream(ctx, e, sides[j], n, 1, cumulative, "idle "+sides[j].name)
			if err != nil {
				return fmt.Errorf("%s: %w", sides[j].name, err)
			}
			lats[j].Merge(lat)
		}
	}
	line := func(what string, h *leader.Histogram, note string) {
		l := fmt.Sprintf("  %-20s p50 %-9s p99 %-9s max %-9s %s", what, us(h.Quantile(.5)), us(h.Quantile(.99)), us(h.Max()), note)
		fmt.Fprintln(out, strings.TrimRight(l, " "))
	}
	line("followerd ack", lats[0], "")
	if len(sides) < 3 {
		if len(sides) == 2 {
			line("stream round trip", lats[1], "(echo)")
		}
		return nil
	}
	line("fsync + round trip", lats[2], "(durable echo: the bare stream plus one write + fdatasync before each ack)")
	line("stream round trip", lats[1], "(echo, alone)")
	fsync, err := fsyncProbe(dataDir, int(b.idle), b.entrySize)
	if err != nil {
		return err
	}
	line("fsync", fsync, fmt.Sprintf("(alone, back to back: %d B write + fdatasync in a file prepared like a WAL segment, same file system)", b.entrySize))
	budget, verdict, share := idleBudget(lats[0], lats[2])
	fmt.Fprintf(out, "  budget               p50 ≤ fsync + round trip + 50µs = %s: %s (%.2f of it)\n", us(budget), verdict, share)
	fmt.Fprintf(out, "                       (with the parts measured apart: %s)\n", us(fsync.Quantile(.5)+lats[1].Quantile(.5)+50*time.Microsecond))
	return nil
}

// fence makes s a follower of a term above its current one and sets the
// offset to continue from.
func (b *benchConfig) fence(ctx context.Context, s *side) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	term := logpos.Term(0)
	st, err := s.conn.Status(cctx, b.shard)
	switch {
	case err == nil:
		term = logpos.Term(st.GetTerm()) + 1
	case isNotMember(err):
	default:
		return err
	}
	head, err := s.conn.NewTerm(cctx, b.shard, term, &replicationpb.NewTermOptions{})
	if err != nil {
		return err
	}
	head, err = s.conn.Truncate(cctx, b.shard, term, head)
	if err != nil {
		return err
	}
	if head.Offset >= 0 {
		// The log kept is the bench's to commit (a scratch shard), and
		// a follower applies no further than a leader advertised (one
		// interrupted mid-stream, or restarted, has entries beyond
		// it): advertise it, or the wait for it to be applied before
		// the first stream never ends.
		if _, err := s.conn.Replicate(cctx, leader.Run{Shard: b.shard, Term: term, First: head.Offset + 1, Commit: head.Offset}); err != nil {
			return fmt.Errorf("advertising offset %d committed: %w", head.Offset, err)
		}
	}
	s.term, s.next = term, head.Offset+1
	return nil
}

// stream runs one stream of count entries on s.
func (b *benchConfig) stream(ctx context.Context, e *env, s *side, count int64, window int, cumulative bool, label string) (leader.Result, *leader.Histogram, error) {
	if s.name == "followerd" && s.next > 0 {
		// Let the follower apply what earlier streams committed, so that
		// one measurement does not pay for the previous one.
		stalled := fmt.Errorf("%w: not applied within --stall-timeout %s", errStalled, b.stallTimeout)
		gctx, cancel := context.WithTimeoutCause(ctx, b.stallTimeout, stalled)
		_, _, err := s.conn.Get(gctx, b.shard, s.next-1)
		// The node's copy of the deadline may end the call before ours.
		if err != nil && ctx.Err() == nil && (gctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", stalled, err)
		}
		cancel()
		if err != nil {
			return leader.Result{}, nil, fmt.Errorf("waiting for offset %d to be applied: %w", s.next-1, err)
		}
	}
	lat := &leader.Histogram{}
	var acked atomic.Int64
	stop := b.showProgress(e.stderr, label, count, &acked)
	sctx, unwatch := b.watchStall(ctx, &acked)
	defer unwatch()
	key := make([]byte, 0, 32)
	size := b.entrySize
	res, err := s.conn.Replicate(sctx, leader.Run{
		Shard: b.shard, Term: s.term, First: s.next, Count: count, Window: window,
		Cumulative: cumulative, Commit: s.next - 1, Latency: lat, Acked: &acked,
		Value: func(off logpos.Offset, buf []byte) []byte {
			key = appendBenchKey(key[:0], int64(off))
			return leader.AppendPaddedPut(buf, key, size)
		},
	})
	stop()
	if res.LastAck != logpos.NoOffset {
		s.next = res.LastAck + 1
	}
	return res, lat, err
}

// nodeExitGrace is how long a failed bench waits for its local node to
// exit before it says whether the node ended.
var nodeExitGrace = 2 * time.Second

// showNodeLog writes to w, after a failed bench, whether the local node
// p exited (nil: it did not start), and the last warnings and errors it
// logged (in file).
func showNodeLog(w io.Writer, p *node.Process, file string) {
	if p != nil {
		// A stream cut by the node's end usually fails before the node
		// is reaped: give it a moment.
		grace := time.NewTimer(nodeExitGrace)
		defer grace.Stop()
		select {
		case <-p.Done():
			fmt.Fprintf(w, "the local followerd ended: %s\n", p.Ended())
		case <-grace.C:
		}
	}
	data, err := os.ReadFile(file)
	if err != nil || len(data) == 0 {
		return
	}
	title, excerpt := nodeLogExcerpt(strings.Split(strings.TrimRight(string(data), "\n"), "\n"))
	fmt.Fprintf(w, "%s:\n  %s\n", title, excerpt)
}

// nodeLogExcerpt picks the lines of a node's log worth showing after it
// failed: its last ones; or, when the Go runtime reported a crash (a
// panic, a fatal error), the lines that led to it, the report's first
// line and the start of its stack traces, which can run to thousands of
// lines that would hide what happened.
func nodeLogExcerpt(lines []string) (title, excerpt string) {
	const most, before = 20, 5
	for i, line := range lines {
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
			return "the local followerd's log up to its crash", strings.Join(lines[max(0, i-before):min(len(lines), i+most)], "\n  ")
		}
	}
	return "the local followerd's last warnings and errors", strings.Join(lines[max(0, len(lines)-most):], "\n  ")
}

// errStalled is why bench gives up on a node that stopped making
// progress.
var errStalled = errors.New("the node stalled")

// watchStall returns a context that ends, with errStalled as its cause,
// when a tick every --stall-timeout finds no new ack counted in acked
// since the previous one: a node that stops acknowledging is given up on
// between one and two --stall-timeouts after its last ack. stop ends the
// watch.
func (b *benchConfig) watchStall(ctx context.Context, acked *atomic.Int64) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(b.stallTimeout)
		defer t.Stop()
		last := acked.Load()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := acked.Load()
				if n == last {
					cancel(fmt.Errorf("%w: no ack for --stall-timeout %s", errStalled, b.stallTimeout))
					return
				}
				last = n
			}
		}
	}()
	return ctx, func() {
		close(done)
		<-finished
		cancel(nil)
	}
}

// showProgress draws a progress bar until the returned func is called.
func (b *benchConfig) showProgress(w io.Writer, label string, total int64, acked *atomic.Int64) func() {
	if !b.progress {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		draw := func() {
			n := acked.Load()
			const width = 30
			filled := int(int64(width) * n / total)
			rate := float64(n) / time.Since(start).Seconds()
			fmt.Fprintf(w, "\r%-22s [%s%s] %3d%%  %d/%d  %.0f entries/s ", label,
				strings.Repeat("#", filled), strings.Repeat(".", width-filled), 100*n/total, n, total, rate)
		}
		for {
			select {
			case <-t.C:
				draw()
			case <-done:
				draw()
				fmt.Fprint(w, "\r\033[K")
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

func describe(res leader.Result, lat *leader.Histogram) string {
	rate := float64(res.Acked) / res.Elapsed.Seconds()
	mib := float64(res.Bytes) / (1 << 20) / res.Elapsed.Seconds()
	return fmt.Sprintf("%9s entries/s  %6.1f MiB/s  ack p50 %-8s p99 %-8s max %s",
		entryRate(rate), mib, us(lat.Quantile(.5)), us(lat.Quantile(.99)), us(lat.Max()))
}

// entryRate formats a rate of entries per second: whole from 100 up, else
// with three significant digits (large entries go by fractions of one).
func entryRate(r float64) string {
	if r >= 100 || r == 0 {
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
	return strconv.FormatFloat(r, 'g', 3, 64)
}

func medianRate(runs []leader.Result) float64 {
	rates := make([]float64, len(runs))
	for i, r := range runs {
		rates[i] = float64(r.Acked) / r.Elapsed.Seconds()
	}
	slices.Sort(rates)
	if n := len(rates); n%2 == 0 {
		return (rates[n/2-1] + rates[n/2]) / 2
	}
	return rates[len(rates)/2]
}

// us formats a duration in µs or ms.
func us(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0fµs", float64(d)/1e3)
}

// fsyncProbe measures n writes of size bytes, each followed by
// fdatasync, into a file in dir prepared as the WAL prepares its segments:
// one WAL sync's worth of work on the node's file system.
func fsyncProbe(dir string, n, size int) (*leader.Histogram, error) {
	took, err := wal.ProbeSync(vfs.Default, dir, n, size)
	if err != nil {
		return nil, err
	}
	h := &leader.Histogram{}
	for _, d := range took {
		h.Record(d)
	}
	return h, nil
}

func isNotMember(err error) bool {
	return grpcapi.Reason(err) == grpcapi.ReasonNodeIsNotMember
}

// plural is n and the noun that goes with it: "1 round", "3 rounds".
func plural[N int | int64](n N, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
