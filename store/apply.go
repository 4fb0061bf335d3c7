package store

import (
	"bytes"
	"errors"
	"fmt"

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
}

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
	return getUser(w.db, key)
}

// Apply applies entry e through the state machine and records e as the
// commit point, in one atomic batch that is not synced (Sync makes it
// durable; until then a crash may lose a suffix of applied entries, never
// a part of one). e must be the entry right after the commit point
// (offset commit+1, term not below the commit's), else ErrOutOfOrder. A
// state machine error is returned wrapped and nothing is written.
// Apply must not run concurrently with Install.
func (s *Store) Apply(e logpos.Entry) (err error) {
	s.write.Lock()
	defer s.write.Unlock()
	s.db.RLock()
	defer s.db.RUnlock()
	h := s.db.h
	if h == nil {
		return ErrClosed
	}
	if err := s.failure(); err != nil {
		return err
	}
	defer catchFatal(&err, s.markFailed)
	commit := s.Commit()
	if e.Offset != commit.Offset+1 || e.Term < commit.Term {
		return fmt.Errorf("%w: entry %v after commit %v", ErrOutOfOrder, e.ID(), commit)
	}
	b := h.NewBatch()
	defer b.Close()
	w := &s.write.w
	w.b, w.db = b, h
	err = s.opts.StateMachine.Apply(e, w)
	w.b, w.db = nil, nil
	if err != nil {
		return fmt.Errorf("store: apply %v: %w", e.ID(), err)
	}
	s.write.buf = appendEntryID(s.write.buf[:0], e.ID())
	if err := b.Set(keyCommit, s.write.buf, nil); err != nil {
		return fmt.Errorf("store: apply %v: %w", e.ID(), err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("store: apply %v: %w", e.ID(), err)
	}
	s.mu.Lock()
	s.mu.commit = e.ID()
	s.mu.Unlock()
	return nil
}
