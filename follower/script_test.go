package follower

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
	"github.com/tablefsm/tablefsm/store/kvpb"
	"google.golang.org/protobuf/proto"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the scripts under testdata/scripts")

// A script is a sequence of commands, each followed by "----" and the
// output it must produce, and a blank line:
//
//	new-term term=2
//	----
//	head={-1,-1}
//
// Lines starting with # are comments. Run with -rewrite to replace the
// expected output with what the commands print, then review the diff.

type scriptCmd struct {
	line   int
	text   string // the command line
	want   string // the expected output
	header []string
}

func parseScript(t *testing.T, path string) []scriptCmd {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []scriptCmd
	var comments []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		line++
		return sc.Text(), true
	}
	for {
		text, ok := next()
		if !ok {
			break
		}
		if strings.HasPrefix(text, "#") || strings.TrimSpace(text) == "" {
			comments = append(comments, text)
			continue
		}
		c := scriptCmd{line: line, text: text, header: comments}
		comments = nil
		if sep, ok := next(); !ok || sep != "----" {
			t.Fatalf("%s:%d: a command must be followed by ----", path, c.line)
		}
		var want []string
		for {
			l, ok := next()
			if !ok || l == "" {
				break
			}
			want = append(want, l)
		}
		c.want = strings.Join(want, "\n")
		cmds = append(cmds, c)
	}
	if len(comments) > 0 {
		cmds = append(cmds, scriptCmd{header: comments})
	}
	return cmds
}

func writeScript(path string, cmds []scriptCmd, outputs []string) error {
	var b strings.Builder
	for i, c := range cmds {
		for _, h := range c.header {
			b.WriteString(h + "\n")
		}
		if c.text == "" {
			continue
		}
		b.WriteString(c.text + "\n----\n")
		if outputs[i] != "" {
			b.WriteString(outputs[i] + "\n")
		}
		b.WriteString("\n")
	}
	return os.WriteFile(path, []byte(strings.TrimRight(b.String(), "\n")+"\n"), 0o644)
}

// TestScripts runs every script under testdata/scripts against a real
// follower (real WAL and store in a temporary directory) and fake leader
// streams.
func TestScripts(t *testing.T) {
	paths, err := filepath.Glob("testdata/scripts/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no scripts")
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			cmds := parseScript(t, path)
			env := newScriptEnv(t)
			defer env.shutdown()
			outputs := make([]string, len(cmds))
			for i, c := range cmds {
				if c.text == "" {
					continue
				}
				outputs[i] = env.run(c.text)
				if !*rewrite && outputs[i] != c.want {
					t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, c.line, c.text, outputs[i], c.want)
				}
			}
			if *rewrite {
				if err := writeScript(path, cmds, outputs); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// scriptEnv is the world a script acts on: one follower directory, the
// follower opened on it, and the fake leader streams attached to it.
type scriptEnv struct {
	t       *testing.T
	dir     string
	f       *Follower
	steps   chan fsm.Step
	streams map[string]*fakeStream
	results map[string]chan error
}

func newScriptEnv(t *testing.T) *scriptEnv {
	return &scriptEnv{t: t, dir: t.TempDir(), streams: map[string]*fakeStream{}, results: map[string]chan error{}}
}

func (e *scriptEnv) shutdown() {
	if e.f != nil {
		_ = e.f.Close()
	}
	for name := range e.streams {
		e.finishStream(name)
	}
}

func (e *scriptEnv) open() error {
	e.steps = make(chan fsm.Step, 1024)
	f, err := Open(Config{Dir: e.dir, Observer: fsm.ObserverFunc(func(s fsm.Step) {
		e.steps <- s
	}), SegmentSize: 4096, TrimEvery: 4})
	if err != nil {
		return err
	}
	e.f = f
	return nil
}

// args parses key=value arguments; a bare word is key "".
type args map[string]string

func parseArgs(fields []string) args {
	a := args{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			a[""] = f
			continue
		}
		a[k] = v
	}
	return a
}

func (a args) int(key string, def int64) int64 {
	v, ok := a[key]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		panic(fmt.Sprintf("bad %s=%q", key, v))
	}
	return n
}

func (e *scriptEnv) run(line string) string {
	fields := strings.Fields(line)
	cmd, a := fields[0], parseArgs(fields[1:])
	var out strings.Builder
	say := func(format string, args ...any) {
		if out.Len() > 0 {
			out.WriteByte('\n')
		}
		fmt.Fprintf(&out, format, args...)
	}
	sayErr := func(err error) { say("error: %s", errName(err)) }
	switch cmd {
	case "open", "reopen":
		if cmd == "reopen" && e.f != nil {
			if err := e.f.Close(); err != nil {
				sayErr(err)
			}
		}
		if err := e.open(); err != nil {
			sayErr(err)
			break
		}
		say("%s", e.status())
		e.transitions(&out)
	case "status":
		say("%s", e.status())
	case "new-term":
		opts := TermOptions{EnableNotifications: a["notifications"] == "true"}
		if a["sorting"] == "hierarchical" {
			opts.KeySorting = store.KeySortingHierarchical
		}
		head, err := e.f.NewTerm(logpos.Term(a.int("term", 0)), opts)
		if err != nil {
			sayErr(err)
		} else {
			say("head=%v", head)
		}
		e.transitions(&out)
	case "truncate":
		var head *logpos.EntryID
		if _, ok := a["head"]; ok {
			head = &logpos.EntryID{Term: logpos.Term(a.int("head-term", 0)), Offset: logpos.Offset(a.int("head", 0))}
		}
		got, err := e.f.Truncate(logpos.Term(a.int("term", 0)), head)
		if err != nil {
			sayErr(err)
		} else {
			say("head=%v", got)
		}
		e.transitions(&out)
	case "stream":
		name := a[""]
		s := newFakeStream()
		e.streams[name] = s
		res := make(chan error, 1)
		e.results[name] = res
		go func() {
			res <- e.f.Replicate(s)
			s.cancel() // what gRPC does when the handler returns
		}()
		step := e.waitStep("AttachStream")
		if step.Err != nil {
			say("error: %s", errName(within(e.t, res)))
			delete(e.streams, name)
			delete(e.results, name)
		} else {
			say("attached")
		}
	case "append", "advertise":
		s := e.streams[a["stream"]]
		ap := &replicationpb.Append{
			Term:                    a.int("term", 0),
			CommitOffset:            a.int("commit", -1),
			CumulativeAcksSupported: a["cumulative"] == "true",
		}
		if cmd == "append" {
			off := a.int("offset", 0)
			ap.Entry = &replicationpb.LogEntry{Term: a.int("entry-term", ap.Term), Offset: off, Value: kvPut(a["key"], a["value"])}
			if crc, ok := a["prev-crc"]; ok {
				n, _ := strconv.ParseUint(crc, 10, 32)
				c := uint32(n)
				ap.PreviousEntryCrc = &c
			}
		}
		select {
		case s.in <- ap:
		case <-s.ctx.Done():
			say("stream ended")
		}
		if a["wait"] == "state" {
			e.transitions(&out)
		}
	case "acks":
		s := e.streams[a[""]]
		n := a.int("n", 1)
		var got []string
		for i := int64(0); i < n; i++ {
			select {
			case o := <-s.acks:
				got = append(got, strconv.FormatInt(o, 10))
			case <-time.After(30 * time.Second):
				e.t.Fatalf("%s: waited 30 s for ack %d", line, i+1)
			}
		}
		say("acks: %s", strings.Join(got, " "))
		e.transitions(&out)
	case "half-close":
		close(e.streams[a[""]].in)
	case "result":
		name := a[""]
		if err := e.finishStream(name); err != nil {
			sayErr(err)
		} else {
			say("ok")
		}
		if s, ok := e.streams[name]; ok && len(s.acks) > 0 {
			var rest []string
			for len(s.acks) > 0 {
				rest = append(rest, strconv.FormatInt(<-s.acks, 10))
			}
			say("unread acks: %s", strings.Join(rest, " "))
		}
		delete(e.streams, name)
		e.transitions(&out)
	case "wait-applied":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := e.f.WaitApplied(ctx, logpos.Offset(a.int("", 0)))
		cancel()
		if err != nil {
			sayErr(err)
		} else {
			say("%s", e.status())
		}
	case "get":
		v, err := e.f.Get([]byte(a[""]))
		if err != nil {
			sayErr(err)
		} else {
			say("%s=%s", a[""], v)
		}
	case "install":
		off, err := e.f.InstallSnapshot(e.snapshotStream(a))
		if err != nil {
			sayErr(err)
		} else {
			say("ack=%d", off)
		}
		e.transitions(&out)
	case "delete":
		if err := e.f.Delete(logpos.Term(a.int("term", 0))); err != nil {
			sayErr(err)
		} else {
			say("deleted")
		}
		e.transitions(&out)
	case "close":
		if err := e.f.Close(); err != nil {
			sayErr(err)
		} else {
			say("closed")
		}
		e.transitions(&out)
	case "files":
		_, err := os.Stat(e.dir)
		say("exists=%v", err == nil)
	default:
		e.t.Fatalf("unknown command %q", cmd)
	}
	return out.String()
}

// status prints the follower's status once the applier has applied
// everything it may, so that the commit printed does not depend on timing.
func (e *scriptEnv) status() string {
	if e.f.m.State() != StateClosed {
		target := min(logpos.Offset(e.f.advertised.Load()), e.f.durableHead())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.f.WaitApplied(ctx, target); err != nil {
			e.t.Fatalf("waiting for the applier to reach %d: %v", target, err)
		}
	}
	s := e.f.Status()
	return fmt.Sprintf("%v term=%d head=%d commit=%d", s.State, s.Term, s.Head, s.Commit)
}

// waitStep returns the next lifecycle step of event, printing nothing.
func (e *scriptEnv) waitStep(event string) fsm.Step {
	for {
		select {
		case s := <-e.steps:
			if s.Event == event {
				return s
			}
		case <-time.After(30 * time.Second):
			e.t.Fatalf("no %s step in 30 s", event)
		}
	}
}

// transitions prints the state changes observed since the last command.
func (e *scriptEnv) transitions(out *strings.Builder) {
	for {
		select {
		case s := <-e.steps:
			if s.From != s.To {
				if out.Len() > 0 {
					out.WriteByte('\n')
				}
				fmt.Fprintf(out, "%s -> %s (%s)", s.From, s.To, s.Event)
			}
		default:
			return
		}
	}
}

func (e *scriptEnv) finishStream(name string) error {
	res, ok := e.results[name]
	if !ok {
		return nil
	}
	delete(e.results, name)
	select {
	case err := <-res:
		return err
	case <-time.After(30 * time.Second):
		e.t.Fatalf("stream %s did not end in 30 s", name)
		return nil
	}
}

// snapshotStream builds a snapshot in a store of its own (the leader's),
// with entries 0..commit of term, and returns its chunks as a stream,
// mangled as the arguments say.
func (e *scriptEnv) snapshotStream(a args) *fakeSnapshotStream {
	commit := a.int("commit", 0)
	term := logpos.Term(a.int("term", 0))
	src, err := store.Open(e.t.TempDir(), store.Options{SnapshotChunkSize: 512})
	if err != nil {
		e.t.Fatal(err)
	}
	defer src.Close()
	if err := src.SetTerm(logpos.Term(a.int("store-term", int64(term))), TermOptions{EnableNotifications: true}); err != nil {
		e.t.Fatal(err)
	}
	for o := int64(0); o <= commit; o++ {
		entry := logpos.Entry{Term: term, Offset: logpos.Offset(o), Value: kvPut(fmt.Sprintf("snap%d", o), fmt.Sprintf("v%d", o))}
		if err := src.Apply(entry); err != nil {
			e.t.Fatal(err)
		}
	}
	sn, err := src.Snapshot()
	if err != nil {
		e.t.Fatal(err)
	}
	defer sn.Close()
	chunks := snapshotChunks(e.t, sn, logpos.Term(a.int("chunk-term", int64(term))))
	switch a["mangle"] {
	case "":
	case "empty":
		chunks = nil
	case "truncated":
		chunks = chunks[:len(chunks)-1]
	case "bad-name":
		chunks[0].Name = "../escape"
	case "term-changes":
		chunks[len(chunks)-1].Term++
	case "not-a-store":
		for _, c := range chunks {
			c.Name = "junk-" + c.Name
		}
	default:
		e.t.Fatalf("unknown mangle %q", a["mangle"])
	}
	return &fakeSnapshotStream{chunks: chunks}
}

func kvPut(key, value string) []byte {
	if key == "" {
		key = "k"
	}
	b, err := proto.Marshal(&kvpb.WriteBatch{Operations: []*kvpb.Operation{
		{Op: &kvpb.Operation_Put{Put: &kvpb.Put{Key: []byte(key), Value: []byte(value)}}},
	}})
	if err != nil {
		panic(err)
	}
	return b
}

// errName names the sentinel an error matches, for scripts.
func errName(err error) string {
	for _, s := range []struct {
		name string
		err  error
	}{
		{"ErrInvalidArgument", ErrInvalidArgument}, {"ErrInvalidTerm", ErrInvalidTerm},
		{"ErrInvalidStatus", ErrInvalidStatus}, {"ErrConflict", ErrConflict},
		{"ErrNotMember", ErrNotMember}, {"ErrStreamEnded", ErrStreamEnded},
		{"ErrClosed", ErrClosed}, {"ErrGap", ErrGap}, {"ErrUnavailable", ErrUnavailable},
		{"store.ErrNotFound", store.ErrNotFound},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "unexpected: " + err.Error()
}
