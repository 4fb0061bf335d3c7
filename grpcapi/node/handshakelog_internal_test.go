package node

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestHandshakeLogIsRateLimited: failed handshakes are logged up to a
// burst, then one per interval, and the next line logged says how many
// were not; a long quiet time refills the burst, no more.
func TestHandshakeLogIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := newHandshakeLog(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now })
	fail := func(n int) {
		for range n {
			h.failed("127.0.0.1:9", errors.New("bad certificate"))
		}
	}
	lines := func() []string {
		defer buf.Reset()
		return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	}
	count := func(want int, wantUnlogged string) {
		t.Helper()
		got := lines()
		if len(got) == 1 && got[0] == "" {
			got = nil
		}
		if len(got) != want {
			t.Fatalf("%d lines logged, want %d:\n%s", len(got), want, strings.Join(got, "\n"))
		}
		for i, line := range got {
			if !strings.Contains(line, `msg="TLS handshake failed" remote=127.0.0.1:9 err="bad certificate"`) {
				t.Fatalf("line %d: %s", i, line)
			}
			want := ""
			if i == 0 {
				want = wantUnlogged
			}
			if _, unlogged, _ := strings.Cut(line, "unlogged="); unlogged != want {
				t.Fatalf("line %d says unlogged=%q, want %q: %s", i, unlogged, want, line)
			}
		}
	}

	fail(handshakeLogBurst + 2)
	count(handshakeLogBurst, "")
	now = now.Add(handshakeLogEvery / 2)
	fail(1)
	count(0, "")
	now = now.Add(handshakeLogEvery / 2)
	fail(2)
	count(1, "3")
	now = now.Add(time.Hour)
	fail(handshakeLogBurst + 1)
	count(handshakeLogBurst, "1")
	now = now.Add(-time.Minute) // a clock stepped back refills nothing
	fail(1)
	count(0, "")
	now = now.Add(time.Minute + handshakeLogEvery)
	fail(1)
	count(1, "2")

	// A burst followed by silence: flush counts what was not logged,
	// once.
	now = now.Add(time.Hour)
	fail(handshakeLogBurst + 3)
	lines()
	h.flush()
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], `msg="TLS handshakes failed and were not logged" unlogged=3`) {
		t.Fatalf("flush after a burst: %q", got)
	}
	h.flush()
	if got := lines(); len(got) != 1 || got[0] != "" {
		t.Fatalf("a second flush: %q", got)
	}
}
