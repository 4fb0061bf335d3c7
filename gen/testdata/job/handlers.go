package job

import "time"

// Scheduler is the hand-written half of the Job machine: the facts its
// guards read and the effects its actions have.
type Scheduler struct {
	Slots       map[string]int // free slots per worker
	Preemptible map[string]bool
	MaxAttempts int
	Delay       time.Duration

	Worker    string
	Attempts  int
	LastExit  int
	FailedAt  time.Time
	Preempted []string
	Notified  []string
}

var _ JobHandlers = (*Scheduler)(nil)

func (s *Scheduler) WorkerHasCapacity(worker string) bool { return s.Slots[worker] > 0 }
func (s *Scheduler) CanPreempt(worker string) bool        { return s.Preemptible[worker] }
func (s *Scheduler) ExitedCleanly(exitCode int) bool      { return exitCode == 0 }
func (s *Scheduler) AttemptsLeft() bool                   { return s.Attempts < s.MaxAttempts }
func (s *Scheduler) BackoffElapsed(now time.Time) bool    { return !now.Before(s.FailedAt.Add(s.Delay)) }

func (s *Scheduler) Assign(worker string) error {
	s.Slots[worker]--
	s.Worker = worker
	s.Attempts++
	return nil
}

func (s *Scheduler) Preempt(worker string) error {
	s.Slots[worker]++
	s.Preempted = append(s.Preempted, worker)
	return nil
}

func (s *Scheduler) RecordExit(exitCode int) error {
	s.LastExit = exitCode
	return nil
}

func (s *Scheduler) Release() error {
	s.Slots[s.Worker]++
	s.Worker = ""
	return nil
}

func (s *Scheduler) Notify(by, reason string, urgent bool) error {
	note := by + ": " + reason
	if urgent {
		note += " (urgent)"
	}
	s.Notified = append(s.Notified, note)
	return nil
}
