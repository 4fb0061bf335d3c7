package grpcapi_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tablefsm/tablefsm/grpcapi"
	"github.com/tablefsm/tablefsm/grpcapi/leader"
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

// TestLogs: every line about a shard names its namespace and shard, the
// follower's lines carry the term, each state change is one line at
// info, and replicating entries logs nothing at info.
func TestLogs(t *testing.T) {
	logs := &logBuffer{}
	n := startNode(t, "", func(o *grpcapi.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	s := leader.Shard{Namespace: "logs", Shard: 7}
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
	if err := n.conn.Delete(ctxT(t), s, 2); err != nil {
		t.Fatal(err)
	}

	var changes []string
	for _, rec := range logs.lines(t) {
		_, hasShard := rec["shard"]
		_, hasNS := rec["namespace"]
		if hasShard != hasNS || (hasShard && (rec["namespace"] != "logs" || rec["shard"] != 7.0)) {
			t.Errorf("a line with shard %v and namespace %v: %v", rec["shard"], rec["namespace"], rec)
		}
		if !hasShard && rec["msg"] != "shutting down" {
			t.Errorf("a line naming no shard: %v", rec)
		}
		if _, ok := rec["term"]; hasShard && !ok && !fromStorage(rec) {
			t.Errorf("a shard's line without its term: %v", rec)
		}
		if rec["msg"] == "state changed" {
			if rec["level"] != "INFO" {
				t.Errorf("a state change at %v: %v", rec["level"], rec)
			}
			changes = append(changes, rec["from"].(string)+" "+rec["event"].(string)+" "+rec["to"].(string))
		}
	}
	want := []string{"NotMember NewTerm Fenced", "Fenced Truncate Follower", "Follower NewTerm Fenced", "Fenced Delete Closed"}
	if strings.Join(changes, ", ") != strings.Join(want, ", ") {
		t.Errorf("state changes logged:\n  %s\nwant\n  %s", strings.Join(changes, ", "), strings.Join(want, ", "))
	}
}

// fromStorage reports whether a line comes from the follower's log or
// store (or Pebble under it): they get the follower's logger with
// namespace and shard, but not the term, which changes under them.
func fromStorage(rec map[string]any) bool {
	msg, _ := rec["msg"].(string)
	return rec["component"] == "pebble" || strings.HasPrefix(msg, "store: ") || strings.HasPrefix(msg, "wal: ")
}
