package grpcapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
)

// logBuffer collects JSON log lines from many goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the records logged so far, decoded.
func (l *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(l.b.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// TestLogs: every line about a shard names its namespace, shard and term
// (the log's, the store's and Pebble's lines included), each transition
// of the lifecycle is one line at info and nothing else about a shard is
// at info but its opening, and replicating entries logs nothing at info.
func TestLogs(t *testing.T) {
	logs := &logBuffer{}
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	s := leader.Shard{Namespace: "logs", Shard: 7}
	// A directory with nothing stored, which GetStatus opens and drops.
	emptyShardDir(t, n, s)
	if _, err := n.conn.Status(ctxT(t), s); status.Code(err) != codes.Aborted {
		t.Fatalf("GetStatus of a shard with nothing stored: %v", err)
	}
	if len(logs.recordsWithMessage(t, "shard with nothing stored dropped")) != 1 {
		t.Errorf("the drop of a shard with nothing stored is not logged")
	}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 10, true)
	before := len(logs.lines(t))
	replicate(t, n.conn, s, 1, 10, 500, false)
	replicate(t, n.conn, s, 1, 510, 500, true)
	checkApplied(t, n.conn, s, 1009)
	for _, rec := range logs.lines(t)[before:] {
		if rec["level"] != "DEBUG" {
			t.Errorf("replicating logged at %v: %v", rec["level"], rec)
		}
	}
	if _, err := n.conn.NewTerm(ctxT(t), s, 2, nil); err != nil {
		t.Fatal(err)
	}
	// A NewTerm that keeps the state (Fenced at 2 → Fenced at 3) is a
	// transition too, logged with the term it fenced at.
	if _, err := n.conn.NewTerm(ctxT(t), s, 3, nil); err != nil {
		t.Fatal(err)
	}
	// A refused one is at debug.
	if _, err := n.conn.NewTerm(ctxT(t), s, 2, nil); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("NewTerm with a lower term: %v", err)
	}
	if err := n.conn.Delete(ctxT(t), s, 3); err != nil {
		t.Fatal(err)
	}

	var transitions []string
	sawStorage := false
	for _, rec := range logs.lines(t) {
		_, hasShard := rec["shard"]
		_, hasNS := rec["namespace"]
		if hasShard != hasNS || (hasShard && (rec["namespace"] != "logs" || rec["shard"] != 7.0)) {
			t.Errorf("a line with shard %v and namespace %v: %v", rec["shard"], rec["namespace"], rec)
		}
		if !hasShard && rec["msg"] != "shutting down" {
			t.Errorf("a line naming no shard: %v", rec)
		}
		if _, ok := rec["term"]; hasShard && !ok {
			t.Errorf("a shard's line without its term: %v", rec)
		}
		sawStorage = sawStorage || rec["component"] == "pebble"
		switch {
		case rec["msg"] == "transition":
			if rec["level"] != "INFO" {
				t.Errorf("a transition at %v: %v", rec["level"], rec)
			}
			transitions = append(transitions, fmt.Sprintf("%v %v %v (term %v)", rec["from"], rec["event"], rec["to"], rec["term"]))
		case rec["level"] == "INFO" && hasShard && rec["msg"] != "follower opened":
			t.Errorf("a line at info that is no transition: %v", rec)
		case rec["msg"] == "follower opened" && rec["state"] != "NotMember":
			t.Errorf("opened in state %v, want its name NotMember", rec["state"])
		}
	}
	want := []string{
		"NotMember Delete Closed (term -1)",
		"NotMember NewTerm Fenced (term 1)", "Fenced Truncate Follower (term 1)", "Follower NewTerm Fenced (term 2)",
		"Fenced NewTerm Fenced (term 3)", "Fenced Delete Closed (term 3)",
	}
	if strings.Join(transitions, ", ") != strings.Join(want, ", ") {
		t.Errorf("transitions logged:\n  %s\nwant\n  %s", strings.Join(transitions, ", "), strings.Join(want, ", "))
	}
	if !sawStorage {
		t.Errorf("no line of Pebble's at debug level")
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for line := range strings.Lines(logs.b.String()) {
		if n := strings.Count(line, `"term":`); n > 1 {
			t.Errorf("a line naming the term %d times: %s", n, line)
		}
	}
}

// recordsWithMessage returns the records logged so far whose msg is msg.
func (l *logBuffer) recordsWithMessage(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, rec := range l.lines(t) {
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// TestApplyFailuresLogged: an entry the state machine cannot apply is an
// error in the log, naming the shard and the cause, on every attempt,
// and the attempts back off: the delay doubles from ApplyRetryMin and
// stops at ApplyRetryMax (SPEC §3). The delays are read from the log
// lines, not measured.
func TestApplyFailuresLogged(t *testing.T) {
	logs := &logBuffer{}
	sm := poisonSM{failed: make(chan struct{}, 1)}
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		o.Follower.StateMachine = sm
		o.Follower.ApplyRetryMin, o.Follower.ApplyRetryMax = time.Millisecond, 4*time.Millisecond
	})
	s := leader.Shard{Namespace: "logs", Shard: 3}
	fence(t, n.conn, s, 1)
	if _, err := n.conn.Replicate(ctxT(t), leader.Run{
		Shard: s, Term: 1, First: 0, Count: 1, Window: 1, Commit: -1,
		Value: func(logpos.Offset, []byte) []byte { return poison },
	}); err != nil {
		t.Fatal(err)
	}
	// Each attempt after the first comes after the line of the one
	// before: six failures seen, five lines written.
	for range 6 {
		<-sm.failed
	}
	recs := logs.recordsWithMessage(t, "applying an entry failed; retrying")
	if len(recs) < 5 {
		t.Fatalf("%d lines for at least 5 failed attempts", len(recs))
	}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}
	for i, w := range want {
		rec := recs[i]
		if rec["level"] != "ERROR" || rec["namespace"] != "logs" || rec["shard"] != 3.0 || !strings.Contains(fmt.Sprint(rec["err"]), "poisoned entry") {
			t.Errorf("attempt %d: %v", i+1, rec)
		}
		if got := time.Duration(rec["retry_in"].(float64)); got != w {
			t.Errorf("attempt %d: retry in %v, want %v", i+1, got, w)
		}
	}
}

// TestPanicInACallIsUnknown: a handler that panics answers its call with
// Unknown and logs the panic with its stack; the node goes on serving.
func TestPanicInACallIsUnknown(t *testing.T) {
	logs := &logBuffer{}
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		o.GRPCOptions = append(o.GRPCOptions, grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
			panic("handler bug")
		}))
	})
	cc, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	err = cc.Invoke(ctxT(t), "/nowhere.Service/Call", &replicationpb.GetStatusRequest{}, &replicationpb.GetStatusResponse{})
	if status.Code(err) != codes.Unknown {
		t.Fatalf("a panicking call: %v, want Unknown", err)
	}
	recs := logs.recordsWithMessage(t, "a call panicked")
	if len(recs) != 1 || recs[0]["level"] != "ERROR" || recs[0]["method"] != "/nowhere.Service/Call" ||
		recs[0]["panic"] != "handler bug" || !strings.Contains(fmt.Sprint(recs[0]["stack"]), "goroutine") {
		t.Fatalf("logged %v", recs)
	}
	s := leader.Shard{Namespace: "logs", Shard: 4}
	fence(t, n.conn, s, 1)
	replicate(t, n.conn, s, 1, 0, 3, true)
}
