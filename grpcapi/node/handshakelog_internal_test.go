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
	h := newHandshakeLog(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now }, func(time.Duration, func()) stopper { return &fakeTimer{} })
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
}

// fakeTimer is a timer of handshakeLog that fires when the test says.
type fakeTimer struct {
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool {
	was := !t.stopped
	t.stopped = true
	return was
}

// TestHandshakeLogSummarizesABurst: failures not logged are counted
// within a handshake interval even when no failure follows them, in one
// summary line that keeps to the bucket's rate and says nothing a
// failure's line already said; stop counts what is left, and no summary
// comes after it.
func TestHandshakeLogSummarizesABurst(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var armed []*fakeTimer
	h := newHandshakeLog(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now },
		func(d time.Duration, f func()) stopper {
			if d != handshakeLogEvery {
				t.Errorf("a summary armed for %v, want %v", d, handshakeLogEvery)
			}
			armed = append(armed, &fakeTimer{f: f})
			return armed[len(armed)-1]
		})
	fail := func(n int) {
		for range n {
			h.failed("127.0.0.1:9", errors.New("bad certificate"))
		}
	}
	// summaries returns the summary lines logged since the last call,
	// and how many lines were logged in all.
	summaries := func() (got []string, lines int) {
		defer buf.Reset()
		for line := range strings.Lines(buf.String()) {
			lines++
			if _, n, ok := strings.Cut(line, `msg="TLS handshakes failed and were not logged" unlogged=`); ok {
				got = append(got, strings.TrimSpace(n))
			}
		}
		return got, lines
	}
	fire := func(want int) {
		t.Helper()
		if len(armed) != want {
			t.Fatalf("%d summaries armed, want %d", len(armed), want)
		}
		if want == 0 {
			return
		}
		last := armed[len(armed)-1]
		if last.stopped {
			t.Fatal("the armed summary was stopped")
		}
		last.f()
	}

	fail(handshakeLogBurst)
	if fire(0); len(armed) != 0 {
		t.Fatal("armed with every failure logged")
	}
	fail(5) // not logged: one summary is armed for all of them
	summaries()
	now = now.Add(handshakeLogEvery)
	fire(1)
	if got, lines := summaries(); len(got) != 1 || got[0] != "5" || lines != 1 {
		t.Fatalf("the summary of a burst followed by silence: %q in %d lines, want [5] in 1", got, lines)
	}

	// A failure's line said the count before the summary fired: the
	// summary says nothing.
	fail(1) // no line left: not logged, a second summary armed
	now = now.Add(handshakeLogEvery)
	fail(1) // logged, unlogged=1
	if got, lines := summaries(); len(got) != 0 || lines != 1 {
		t.Fatalf("%q in %d lines, want one failure's line", got, lines)
	}
	fire(2)
	if got, lines := summaries(); lines != 0 {
		t.Fatalf("a summary with nothing left to count logged %q", got)
	}

	// The summary fires while failures that go on took every line: it
	// waits for the next one instead of logging more often.
	fail(1) // not logged: a third summary armed
	fire(3)
	if _, lines := summaries(); lines != 0 || len(armed) != 4 {
		t.Fatalf("%d lines logged and %d summaries armed with no line left, want 0 and 4", lines, len(armed))
	}
	now = now.Add(handshakeLogEvery)
	fire(4)
	if got, lines := summaries(); len(got) != 1 || got[0] != "1" || lines != 1 {
		t.Fatalf("the summary a line later: %q in %d lines, want [1] in 1", got, lines)
	}

	// stop counts what is left and stops the armed summary; no summary
	// comes after it, even one already on its way.
	fail(2)
	if _, lines := summaries(); lines != 0 || len(armed) != 5 {
		t.Fatalf("%d lines logged and %d summaries armed, want 0 and 5", lines, len(armed))
	}
	h.stop()
	if got, lines := summaries(); len(got) != 1 || got[0] != "2" || lines != 1 {
		t.Fatalf("stop: %q in %d lines, want [2] in 1", got, lines)
	}
	if !armed[4].stopped {
		t.Fatal("stop left the armed summary to fire")
	}
	fail(1) // a failure after stop, not logged: no summary is armed for it
	armed[4].f()
	h.stop()
	if got, lines := summaries(); lines != 0 || len(armed) != 5 {
		t.Fatalf("after stop: %q logged, %d summaries armed, want nothing and 5", got, len(armed))
	}
}

// TestHandshakeLogSummaryWithinAnIntervalOfTheFirstUnlogged: the count of
// failures not logged comes at most handshakeLogEvery after the first of
// them, also when the summary armed for earlier ones (which a failure's
// line then counted) finds no line left when it fires: it waits for the
// bucket's next line, not for a whole interval more.
func TestHandshakeLogSummaryWithinAnIntervalOfTheFirstUnlogged(t *testing.T) {
	var buf bytes.Buffer
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	type timer struct {
		fakeTimer
		due time.Time
	}
	var armed []*timer
	h := newHandshakeLog(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now },
		func(d time.Duration, f func()) stopper {
			armed = append(armed, &timer{fakeTimer{f: f}, now.Add(d)})
			return &armed[len(armed)-1].fakeTimer
		})
	fail := func() { h.failed("127.0.0.1:9", errors.New("bad certificate")) }
	at := func(d time.Duration) { now = start.Add(d) }

	for range handshakeLogBurst {
		fail() // the bucket is empty
	}
	at(500 * time.Millisecond)
	fail() // not logged: the summary is armed
	at(time.Second)
	fail() // logged, unlogged=1
	at(1200 * time.Millisecond)
	fail() // not logged: the first of those the summary must count
	first := now
	buf.Reset()
	// Fire each summary armed at its time until one is logged.
	for i := 0; !strings.Contains(buf.String(), "TLS handshakes failed and were not logged"); i++ {
		if i == len(armed) || i > 10 {
			t.Fatalf("%d summaries armed, none logged", len(armed))
		}
		if due := armed[i].due; due.After(now) {
			now = due
		}
		armed[i].f()
	}
	if !strings.Contains(buf.String(), "unlogged=1") {
		t.Fatalf("the summary: %q, want unlogged=1", buf.String())
	}
	if late := now.Sub(first); late > handshakeLogEvery {
		t.Fatalf("the summary came %v after the first failure it counts, want at most %v", late, handshakeLogEvery)
	}
}
