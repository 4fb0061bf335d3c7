package follower

import (
	"errors"
	"fmt"
	"io"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

// installation is one attached snapshot install: the snapshot installer.
// Chunks are staged by the store's loader, out of the way of the live
// store, and nothing of the follower changes until the commit.
type installation struct {
	chunkTerm logpos.Term
	loader    *store.Loader
	// abandoned is closed when NewTerm (or Close) detaches the install:
	// its transfer stops waiting for chunks.
	abandoned chan struct{}
}

// InstallSnapshot receives a snapshot from s and, once every chunk has
// arrived and the staged files open as a valid store, replaces the store
// with it, clears the log and moves to Follower. It returns the snapshot's
// commit offset. Any failure leaves the follower exactly as it was; if
// NewTerm ran during the transfer, it fails with ErrInvalidTerm, if Close
// or Delete did, with an error matching both ErrStreamEnded and
// ErrClosed. See docs/spec.md §2.4.
func (f *Follower) InstallSnapshot(s SnapshotStream) (logpos.Offset, error) {
	if f.view.Load().state == StateClosed {
		// Closed before the call: no stream of it was ended.
		return logpos.NoOffset, ErrClosed
	}
	abandoned := make(chan struct{})
	chunks := f.receiveChunks(s, abandoned)
	defer chunks.stop()
	first, err := chunks.next()
	empty := errors.Is(err, io.EOF)
	if err != nil && !empty {
		return logpos.NoOffset, f.refuseBeforeFirstChunk(fmt.Errorf("follower: receiving the first chunk: %w", err))
	}
	inst := &installation{abandoned: abandoned}
	if !empty {
		inst.chunkTerm = logpos.Term(first.Term)
	}
	if err := f.beginInstall(inst, empty); err != nil {
		return logpos.NoOffset, explained(err, func(guard string) string {
			switch guard {
			case "SnapshotNotEmpty":
				return "empty snapshot"
			case "SnapshotTermAcceptable":
				if term := f.term.Load(); term != int64(logpos.NoTerm) {
					return fmt.Sprintf("snapshot term %d is not the current term %d", inst.chunkTerm, term)
				}
				return fmt.Sprintf("snapshot term %d is negative", inst.chunkTerm)
			}
			return ""
		})
	}
	f.stats.installsStarted.Add(1)
	if err := inst.transfer(first, chunks); err != nil {
		return logpos.NoOffset, f.failInstall(inst, err)
	}
	if _, err := inst.loader.Finish(); err != nil {
		return logpos.NoOffset, f.failInstall(inst, snapshotError(err))
	}
	defer f.control()()
	if err := f.commitInstall(inst); err != nil {
		f.stats.installsAbandoned.Add(1)
		_ = inst.loader.Abort()
		if f.install == inst {
			f.install = nil
		}
		if errors.Is(err, ErrClosed) {
			err = endedByClose(err)
		}
		return logpos.NoOffset, err
	}
	f.stats.installsCommitted.Add(1)
	return f.reply.Offset, nil
}

// commitInstall fires CommitInstall. Should that panic (an observer's
// bug), the install is abandoned before the panic goes on, as when the
// commit fails: it must not keep the next stream or install out, nor its
// staged files (after a commit, the loader is over: Abort does nothing).
// The caller holds the lifecycle lock.
func (f *Follower) commitInstall(inst *installation) error {
	defer func() {
		if p := recover(); p != nil {
			_ = inst.loader.Abort()
			if f.install == inst {
				f.install = nil
			}
			panic(p)
		}
	}()
	return f.m.CommitInstall(inst)
}

// beginInstall attaches inst. Should that panic (an observer's bug, say)
// once inst is attached, the install is abandoned, its staged files
// removed, before the panic goes on: it must not keep the next stream or
// install out.
func (f *Follower) beginInstall(inst *installation, empty bool) error {
	defer func() {
		if p := recover(); p != nil {
			if inst.loader != nil {
				_ = inst.loader.Abort()
			}
			f.acquire()
			if f.install == inst {
				f.install = nil
			}
			f.release()
			panic(p)
		}
	}()
	return f.underControl(func() error { return f.m.BeginInstall(inst, empty, inst.chunkTerm) })
}

// refuseBeforeFirstChunk returns the error of an install whose stream
// failed before its first chunk: the checks that need no chunk come first
// (a closed follower, an attached stream or install), then the stream's
// error.
func (f *Follower) refuseBeforeFirstChunk(err error) error {
	f.acquire()
	defer f.release()
	switch {
	case f.m.State() == StateClosed:
		return fmt.Errorf("%w: %w", ErrClosed, err)
	case f.stream != nil || f.install != nil:
		return fmt.Errorf("%w: a stream or an install is attached: %w", ErrConflict, err)
	}
	return err
}

// chunkReceiver calls a snapshot stream's Recv in a goroutine of its own,
// one call at a time and only when the install asks for the next chunk
// (a stream may reuse a chunk's buffers), so that an install waiting for
// a chunk stops waiting when the follower closes or NewTerm abandons it.
// The goroutine ends when the stream's Recv returns after stop; a gRPC
// server stream's does once its call has returned.
type chunkReceiver struct {
	closing   <-chan struct{}
	abandoned <-chan struct{}
	want      chan struct{}
	ch        chan received
	done      chan struct{}
}

type received struct {
	c   *replicationpb.SnapshotChunk
	err error
}

func (f *Follower) receiveChunks(s SnapshotStream, abandoned <-chan struct{}) *chunkReceiver {
	r := &chunkReceiver{closing: f.closing, abandoned: abandoned, want: make(chan struct{}), ch: make(chan received), done: make(chan struct{})}
	go func() {
		for {
			select {
			case <-r.want:
			case <-r.done:
				return
			}
			c, err := s.Recv()
			select {
			case r.ch <- received{c, err}:
			case <-r.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

// next returns the stream's next chunk, or its error (io.EOF at its end),
// or ErrClosed (and ErrStreamEnded) once the follower closes, or
// errAbandoned once NewTerm abandoned the install. It is not called again
// after an error.
func (r *chunkReceiver) next() (*replicationpb.SnapshotChunk, error) {
	select {
	case r.want <- struct{}{}:
	case <-r.closing:
		return nil, r.closed()
	case <-r.abandoned:
		return nil, errAbandoned
	}
	select {
	case x := <-r.ch:
		return x.c, x.err
	case <-r.closing:
		return nil, r.closed()
	case <-r.abandoned:
		return nil, errAbandoned
	}
}

// errAbandoned ends the transfer of an install that NewTerm abandoned;
// failInstall reports it as ErrInvalidTerm.
var errAbandoned = errors.New("follower: the install was abandoned")

func (r *chunkReceiver) closed() error {
	return endedByClose(fmt.Errorf("%w: the follower closed while the snapshot was being received", ErrClosed))
}

// endedByClose marks err (an ErrClosed) as the end of a stream by Close
// or Delete: a replication stream's or a snapshot's, it matches both
// ErrStreamEnded and ErrClosed.
func endedByClose(err error) error {
	return fmt.Errorf("%w: %w", ErrStreamEnded, err)
}

func (r *chunkReceiver) stop() { close(r.done) }

// transfer stages every chunk of the stream.
func (inst *installation) transfer(c *replicationpb.SnapshotChunk, chunks *chunkReceiver) error {
	for {
		if logpos.Term(c.Term) != inst.chunkTerm {
			return fmt.Errorf("%w: a chunk of term %d in a snapshot of term %d", ErrInvalidArgument, c.Term, inst.chunkTerm)
		}
		err := inst.loader.Write(store.Chunk{Name: c.Name, Index: c.ChunkIndex, Count: c.ChunkCount, Content: c.Content})
		if err != nil {
			return snapshotError(err)
		}
		c, err = chunks.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("follower: receiving a chunk: %w", err)
		}
	}
}

// snapshotError classifies a loader error: an invalid snapshot is the
// leader's mistake, anything else the disk's. A store closed under the
// loader is too: a follower that closes fails the install with ErrClosed
// on its own (failInstall), and one that stays open closed the store to
// reopen it after a failure.
func snapshotError(err error) error {
	if errors.Is(err, store.ErrInvalidSnapshot) {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return fmt.Errorf("%w: staging the snapshot: %w", ErrUnavailable, err)
}

// failInstall ends an install whose transfer failed. The term check comes
// first: an install abandoned by NewTerm fails with ErrInvalidTerm whatever
// else went wrong.
func (f *Follower) failInstall(inst *installation, err error) error {
	f.stats.installsAbandoned.Add(1)
	_ = inst.loader.Abort()
	f.acquire()
	defer f.release()
	switch {
	case f.m.State() == StateClosed:
		return endedByClose(fmt.Errorf("%w: the install was interrupted", ErrClosed))
	case f.install != inst:
		return fmt.Errorf("%w: a new term was fenced during the transfer", ErrInvalidTerm)
	}
	f.install = nil
	return err
}

// CommitSnapshot swaps the staged store in, clears the log and persists
// the term. The caller holds the lifecycle lock and the applier's. The
// swap is the commit point: a crash before it leaves the old state, after
// it Open finishes clearing the log.
func (f hooks) CommitSnapshot(inst *installation) error {
	if f.repairErr != nil {
		return f.repairErr
	}
	minTerm := max(logpos.Term(f.term.Load()), inst.chunkTerm)
	info, err := f.store().Install(inst.loader, minTerm)
	if err != nil {
		f.noteLogError(err)
		return snapshotError(err)
	}
	f.install = nil
	f.commitFloor.Store(int64(logpos.NoOffset)) // the snapshot's commit is the commit
	point := info.Commit.Offset
	if invariants {
		assertf(int64(f.store().Term()) >= f.term.Load(), "install took the term from %d to %d", f.term.Load(), f.store().Term())
	}
	f.term.Store(int64(f.store().Term()))
	f.base.Store(int64(point))
	f.head.Store(int64(point))
	f.advertised.Store(int64(point))
	f.applier.resetLocked()
	f.applier.notify() // the snapshot applied everything up to its point
	f.reply = logpos.EntryID{Term: f.store().Term(), Offset: point}
	if err := f.resetLog(); err != nil {
		// The swap is committed: the follower is the snapshot's. The log
		// still holds the old entries until the reset is retried, by the
		// next operation that touches the log or by Open.
		f.logger().Error("snapshot installed but clearing the log failed", "err", err)
	}
	f.logger().Debug("snapshot installed", "commit", info.Commit)
	return nil
}
