package job

import (
	"errors"
	"testing"
	"time"
)

// TestJobLifecycle runs a job through a failure, a backoff and a retry
// with the real handlers.
func TestJobLifecycle(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Scheduler{Slots: map[string]int{"w1": 1}, Preemptible: map[string]bool{}, MaxAttempts: 2, Delay: time.Minute}
	m := NewJob(s)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start("w2"); !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("Start on a full worker: %v", err)
	}
	must(m.Start("w1"))
	if m.State() != StateRunning || s.Slots["w1"] != 0 {
		t.Fatalf("after Start: %v, slots %v", m.State(), s.Slots)
	}
	must(m.Finish(3))
	if m.State() != StateBackoff || s.Slots["w1"] != 1 || s.LastExit != 3 {
		t.Fatalf("after a failed attempt: %v %+v", m.State(), s)
	}
	s.FailedAt = start
	if err := m.Tick(start.Add(time.Second)); !errors.Is(err, ErrBackoffPending) {
		t.Fatalf("early Tick: %v", err)
	}
	must(m.Tick(start.Add(time.Minute)))
	must(m.Start("w1"))
	must(m.Finish(0))
	if m.State() != StateSucceeded || s.Attempts != 2 {
		t.Fatalf("after the retry: %v, %d attempts", m.State(), s.Attempts)
	}
	if err := m.Cancel("too late", "ops", false); !errors.Is(err, ErrFinished) {
		t.Fatalf("Cancel after success: %v", err)
	}
}

func TestJobCancelIsAbsorbing(t *testing.T) {
	s := &Scheduler{Slots: map[string]int{"w1": 0}, Preemptible: map[string]bool{"w1": true}, MaxAttempts: 1}
	m := NewJob(s)
	if err := m.Start("w1"); err != nil {
		t.Fatal(err)
	}
	if len(s.Preempted) != 1 {
		t.Fatalf("Start through preemption: %+v", s)
	}
	if err := m.Cancel("not needed", "ops", true); err != nil || m.State() != StateCancelled {
		t.Fatalf("Cancel: %v in %v", err, m.State())
	}
	if len(s.Notified) != 1 || s.Notified[0] != "ops: not needed (urgent)" {
		t.Fatalf("notified %q", s.Notified)
	}
	// Cancelled ignores every later event.
	if err := m.Finish(0); err != nil || m.State() != StateCancelled {
		t.Fatalf("Finish after Cancel: %v in %v", err, m.State())
	}
}
