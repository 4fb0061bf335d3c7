package follower

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/wal"
)

// applier is the goroutine that applies committed entries to the store:
// in offset order, from commit+1 up to min(advertised, durable head), each
// entry with its commit offset in one atomic batch. A failed entry is
// retried with capped backoff without waiting for new traffic; the commit
// never passes it.
type applier struct {
	f *Follower
	// mu is held while entries are applied. Truncate and snapshot commits
	// take it (after the lifecycle lock) so that the commit stays put.
	mu     sync.Mutex
	reader *wal.Reader // guarded by mu; nil until needed
	// batch and arena hold the entries of one store batch and their
	// values; guarded by mu, reused.
	batch []logpos.Entry
	arena []byte
	// sinceTrim counts entries applied since the log was last trimmed.
	sinceTrim int64

	wake chan struct{}
	quit chan struct{}
	done chan struct{}

	// failures counts apply attempts that failed.
	failures atomic.Int64

	// progress is closed and replaced whenever the commit advances.
	progress struct {
		sync.Mutex
		ch chan struct{}
	}
}

func (a *applier) start(f *Follower) {
	a.f = f
	a.wake = make(chan struct{}, 1)
	a.quit = make(chan struct{})
	a.done = make(chan struct{})
	a.progress.ch = make(chan struct{})
	f.goroutines.Add(1)
	go func() {
		defer f.goroutines.Done()
		defer close(a.done)
		a.run()
	}()
	a.kick() // apply what a previous run left behind, if a leader allows
}

// stop ends the applier's goroutine and waits for it.
func (a *applier) stop() {
	close(a.quit)
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	a.resetLocked()
}

func (a *applier) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *applier) run() {
	for {
		select {
		case <-a.wake:
		case <-a.quit:
			return
		}
		delay := a.f.cfg.ApplyRetryMin
		for {
			err := a.applyAvailable()
			if err == nil {
				break
			}
			a.failures.Add(1)
			a.f.stats.applyErrors.Add(1)
			a.f.noteLogError(err)
			a.notify()
			a.f.logger().Error("applying an entry failed; retrying", "err", err, "retry_in", delay)
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-a.quit:
				timer.Stop()
				return
			}
			delay = min(2*delay, a.f.cfg.ApplyRetryMax)
			a.repair()
		}
	}
}

// maxApplyBatch and maxApplyBytes bound the entries applied in one
// store batch: control operations wait for at most one batch.
const (
	maxApplyBatch = 256
	maxApplyBytes = 4 << 20
)

// applyAvailable applies every entry that is committed and durable, a
// batch at a time under the applier's lock.
func (a *applier) applyAvailable() error {
	applied := false
	defer func() {
		if applied {
			a.notify()
		}
	}()
	for {
		select {
		case <-a.quit:
			// Stopping: Close and Delete wait for the batch under way
			// only. The rest stays in the log: a reopened follower
			// applies it once a leader advertises its commit again.
			return nil
		default:
		}
		n, err := a.applyBatch()
		applied = applied || n > 0
		if err != nil || n == 0 {
			return err
		}
	}
}

// applyBatch applies the next committed and durable entries, at most a
// batch of them, in one store batch. It returns how many it applied.
func (a *applier) applyBatch() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.f
	commit := f.store().Commit().Offset
	target := min(logpos.Offset(f.advertised.Load()), f.durableHead())
	a.batch, a.arena = a.batch[:0], a.arena[:0]
	// Nothing to read when the commit is at the target (and commit+1
	// would overflow at the last offset); the store is still asked, with
	// no entries, so that a failed store is noticed and repaired.
	for o := commit + 1; commit < target && o <= target && len(a.batch) < maxApplyBatch && len(a.arena) < maxApplyBytes; o++ {
		e, err := a.nextLocked(o)
		if err != nil {
			if len(a.batch) == 0 {
				return 0, err
			}
			break // apply what was read; the error comes back next time
		}
		// The reader's buffer is reused by its next read: keep a copy.
		a.arena = append(a.arena, e.Value...)
		a.batch = append(a.batch, e)
	}
	// Point the values at their copies, now that the arena stopped moving.
	at := 0
	for i := range a.batch {
		size := len(a.batch[i].Value)
		a.batch[i].Value = a.arena[at : at+size : at+size]
		at += size
	}
	n, err := f.store().ApplyBatch(a.batch)
	f.stats.applied.Add(uint64(n))
	if invariants && n > 0 {
		assertf(a.batch[n-1].Offset <= f.durableHead(), "applied %d with durable head %d", a.batch[n-1].Offset, f.durableHead())
	}
	if err != nil {
		a.resetLocked() // read the failing entry again next time
		return n, fmt.Errorf("applying entry %d: %w", commit+1+logpos.Offset(n), err)
	}
	if a.sinceTrim += int64(n); a.sinceTrim >= f.cfg.TrimEvery {
		a.sinceTrim = 0
		a.trimLocked()
	}
	return n, nil
}

// nextLocked reads the entry at offset, reopening the reader when the log
// changed under it.
func (a *applier) nextLocked(offset logpos.Offset) (logpos.Entry, error) {
	for attempt := 0; ; attempt++ {
		if a.reader == nil {
			r, err := a.f.log.NewReader(offset)
			if err != nil {
				return logpos.Entry{}, fmt.Errorf("reading entry %d: %w", offset, err)
			}
			a.reader = r
		}
		e, err := a.reader.Next()
		if err == nil && e.Offset == offset {
			return e, nil
		}
		a.resetLocked()
		if err == nil {
			err = fmt.Errorf("read entry %d where %d was expected", e.Offset, offset)
		}
		if attempt > 0 || !errors.Is(err, wal.ErrLogChanged) {
			return logpos.Entry{}, fmt.Errorf("reading entry %d: %w", offset, err)
		}
	}
}

// repair reopens a store that failed (it takes no more writes, so retrying
// alone cannot succeed). It gives up when the follower closes. A panic of
// the repair (an observer's bug, when the reopened store holds a higher
// term and the follower is fenced at it) fails this repair only: the
// applier goes on, and the next repair, by the applier or a control
// operation, finishes what this one left.
func (a *applier) repair() {
	f := a.f
	if !f.storeFailed.Load() || !f.acquireUnless(a.quit) {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			f.logger().Error("repairing the store panicked", "panic", fmt.Sprint(p))
		}
	}()
	defer f.release()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := f.repairLocked(); err != nil {
		f.logger().Warn("repairing the store failed", "err", err)
	}
}

// resetLocked drops the reader: the log was truncated, cleared or closed.
func (a *applier) resetLocked() {
	if a.reader != nil {
		_ = a.reader.Close()
		a.reader = nil
	}
}

// trimLocked makes the store's commit durable and drops the log segments
// it no longer needs. Never past the durable commit.
func (a *applier) trimLocked() {
	durable, err := a.f.store().Sync()
	if err == nil {
		err = a.f.log.Trim(durable.Offset)
	}
	if err != nil {
		a.f.noteLogError(err)
		a.f.logger().Warn("trimming the log failed", "err", err)
	}
}

// changed returns a channel closed at the next apply or failed attempt.
func (a *applier) changed() <-chan struct{} {
	a.progress.Lock()
	defer a.progress.Unlock()
	return a.progress.ch
}

// notify wakes the waiters of WaitApplied. Whatever moves the store's
// commit calls it: an applied batch, a snapshot install, a store reopened
// after a failure. A failed attempt calls it too, though it moves nothing
// (waiters check again and wait on): whoever watches the applier through
// changed sees each attempt.
func (a *applier) notify() {
	a.progress.Lock()
	close(a.progress.ch)
	a.progress.ch = make(chan struct{})
	a.progress.Unlock()
}

func (a *applier) wait(ctx context.Context, offset logpos.Offset) error {
	for {
		ch := a.changed()
		if a.f.m.State() == StateClosed {
			return ErrClosed
		}
		if a.f.store().Commit().Offset >= offset {
			return nil
		}
		select {
		case <-ch:
		case <-a.quit:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
