package store

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/tablefsm/tablefsm/logpos"
)

// StateMachine applies log entries to the store. Apply turns one entry
// into writes through w; the store commits them together with the new
// commit id in one atomic batch, or, if Apply returns an error, discards
// them all. Apply must be deterministic (every replica applies the same
// entries) and must not keep w after it returns.
type StateMachine interface {
	Apply(e logpos.Entry, w *Writer) error
}

// Writer collects the writes of one entry, over the user key space. It is
// valid only during StateMachine.Apply.
type Writer struct {
	b  *pebble.Batch
	db *pebble.DB
	// inBatch: earlier entries' writes are in b, not yet in db. readLate:
	// Get was called then, and refused.
	inBatch, readLate bool
}

// errReadInBatch is what Get returns to a state machine reading while
// earlier entries of its batch are not committed yet; the store applies
// the entry again on its own.
var errReadInBatch = errors.New("store: read in the middle of a batch (the entry is applied again)")

var errWriterDone = errors.New("store: writer used outside StateMachine.Apply")

// Set sets key to value. The arguments may be reused after it returns.
func (w *Writer) Set(key, value []byte) error {
	if w.b == nil {
		return errWriterDone
	}
	op := w.b.SetDeferred(len(key)+1, len(value))
	op.Key[0] = userPrefix
	copy(op.Key[1:], key)
	copy(op.Value, value)
	return op.Finish()
}

// Delete removes key.
func (w *Writer) Delete(key []byte) error {
	if w.b == nil {
		return errWriterDone
	}
	op := w.b.DeleteDeferred(len(key) + 1)
	op.Key[0] = userPrefix
	copy(op.Key[1:], key)
	return op.Finish()
}

// DeleteRange removes every key in [start, end) (byte-wise order). An
// empty range (start >= end) removes nothing.
func (w *Writer) DeleteRange(start, end []byte) error {
	if w.b == nil {
		return errWriterDone
	}
	if bytes.Compare(start, end) >= 0 {
		return nil
	}
	op := w.b.DeleteRangeDeferred(len(start)+1, len(end)+1)
	op.Key[0] = userPrefix
	copy(op.Key[1:], start)
	op.Value[0] = userPrefix
	copy(op.Value[1:], end)
	return op.Finish()
}

// Get returns a copy of the value of key as of the commit point before
// this entry, or ErrNotFound: the entry's own writes are not visible.
func (w *Writer) Get(key []byte) ([]byte, error) {
	if w.db == nil {
		return nil, errWriterDone
	}
	if w.inBatch {
		w.readLate = true
		return nil, errReadInBatch
	}
	return getUser(w.db, key)
}

// Apply applies entry e through the state machine and records e as the
// commit point, in one atomic batch that is not synced (Sync makes it
// durable; until then a crash may lose a suffix of applied entries, never
// a part of one). e must be the entry right after the commit point
// (offset commit+1, term not below the commit's and not negative), else
// ErrOutOfOrder. A state machine error is returned wrapped and nothing is written.
// Apply must not run concurrently with Install.
func (s *Store) Apply(e logpos.Entry) error {
	one := [1]logpos.Entry{e}
	_, err := s.ApplyBatch(one[:])
	return err
}

// ApplyBatch applies entries as Apply applies one, each right after the
// previous, in as few Pebble batches as it can: one batch records the
// last entry's id as the commit point, so a crash keeps all of a batch's
// entries or none. It returns how many entries were applied: entries[:n]
// are, nothing of entries[n] is, and the error concerns entries[n].
//
// A state machine reading the store (Writer.Get) sees the state before
// each entry: the first time one reads in the middle of a batch, the
// store goes back to one batch per entry.
func (s *Store) ApplyBatch(entries []logpos.Entry) (n int, err error) {
	ran := false
	var before logpos.EntryID
	err = s.writing(func(h *pebble.DB) (err error) {
		ran, before = true, s.mu.commit // written only with s.write held, as it is here
		n, err = s.applyChunksLocked(h, entries)
		return err
	})
	if ran && errors.Is(err, ErrFailed) {
		// A fatal Pebble error unwound the batches without a count:
		// those committed before it are applied all the same.
		n = int(min(int64(len(entries)), int64(s.Commit().Offset-before.Offset)))
	}
	return n, err
}

// applyChunksLocked applies entries a batch at a time: all of them at
// once, or one by one once the state machine was seen reading.
func (s *Store) applyChunksLocked(h *pebble.DB, entries []logpos.Entry) (int, error) {
	n := 0
	for n < len(entries) {
		k := len(entries) - n
		if s.write.perEntry {
			k = 1
		}
		m, err := s.applyBatchLocked(h, entries[n:n+k])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// applyEntry runs the state machine on e. A panic in it is an error of
// the entry, like any other: the entry is not applied, and the store
// stays usable. A fatal Pebble error (a read of the store failing) goes
// on to the store's own handling.
func applyEntry(sm StateMachine, e logpos.Entry, w *Writer) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, fatal := r.(pebbleFatal); fatal {
				panic(r)
			}
			err = fmt.Errorf("%w: %v", errStateMachinePanic, r)
		}
	}()
	return sm.Apply(e, w)
}

var errStateMachinePanic = errors.New("the state machine panicked")

// applyBatchLocked applies entries in one Pebble batch. When entries[i]
// fails (or reads in the middle of the batch), the batch is dropped and
// entries[:i] are applied again without it.
func (s *Store) applyBatchLocked(h *pebble.DB, entries []logpos.Entry) (int, error) {
	// The store's one batch, reset for each use (a new batch per entry
	// costs a pool round trip and a zeroing), also by the calls again for
	// entries[:i] below, which need nothing of it any more.
	b := s.write.batch
	if b == nil || s.write.batchDB != h {
		b = h.NewBatch()
		s.write.batch, s.write.batchDB = b, h
	} else {
		b.Reset()
	}
	w := &s.write.w
	w.b, w.db = b, h
	defer func() { w.b, w.db, w.inBatch, w.readLate = nil, nil, false, false }()
	prev := s.mu.commit // written only with s.write held, as it is here
	for i, e := range entries {
		var err error
		if e.Offset != prev.Offset+1 || prev.Offset == math.MaxInt64 || e.Term < prev.Term || e.Term < 0 {
			err = fmt.Errorf("%w: entry %v after commit %v", ErrOutOfOrder, e.ID(), prev)
		} else {
			w.inBatch = i > 0
			if err = applyEntry(s.opts.StateMachine, e, w); err != nil {
				err = fmt.Errorf("store: apply %v: %w", e.ID(), err)
			}
			if w.readLate {
				s.write.perEntry = true
				err = nil // not this entry's failure: it is applied on its own next
			}
		}
		if err != nil || w.readLate {
			w.b, w.db, w.inBatch, w.readLate = nil, nil, false, false
			n, perr := s.applyChunksLocked(h, entries[:i])
			if perr != nil {
				return n, perr
			}
			return n, err
		}
		prev = e.ID()
	}
	s.write.buf = appendEntryID(s.write.buf[:0], prev)
	if err := b.Set(keyCommit, s.write.buf, nil); err != nil {
		return 0, fmt.Errorf("store: apply %v: %w", prev, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		s.write.batch = nil // not reused after a failed commit
		return 0, fmt.Errorf("store: apply %v: %w", prev, err)
	}
	s.mu.Lock()
	s.mu.commit = prev
	s.mu.Unlock()
	return len(entries), nil
}
