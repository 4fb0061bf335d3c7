package grpcapi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"

	"github.com/tablefsm/tablefsm/follower"
	"github.com/tablefsm/tablefsm/grpcapi/internal/appendwire"
	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store"
)

// NewTerm implements OxiaCoordinationServer: it fences the shard's
// follower at the request's term, opening it when needed.
func (s *Server) NewTerm(_ context.Context, req *replicationpb.NewTermRequest) (*replicationpb.NewTermResponse, error) {
	key, err := unaryKey(req.GetNamespace(), req.GetShard())
	if err != nil {
		return nil, s.status(err)
	}
	if req.GetTerm() < 0 {
		return nil, s.status(invalidf("term", "%d is negative", req.GetTerm()))
	}
	var head logpos.EntryID
	err = s.onShard(key, true, func(sh *shard) (err error) {
		head, err = sh.f.NewTerm(logpos.Term(req.GetTerm()), termOptions(req.GetOptions()))
		return err
	})
	if err != nil {
		return nil, s.status(err)
	}
	return &replicationpb.NewTermResponse{HeadEntryId: entryID(head)}, nil
}

// Truncate implements OxiaLogReplicationServer: it cuts a fenced
// follower's log back to the leader's head entry.
func (s *Server) Truncate(_ context.Context, req *replicationpb.TruncateRequest) (*replicationpb.TruncateResponse, error) {
	key, err := unaryKey(req.GetNamespace(), req.GetShard())
	if err != nil {
		return nil, s.status(err)
	}
	h := req.GetHeadEntryId()
	if h == nil {
		return nil, s.status(invalidf("head_entry_id", "missing"))
	}
	var head logpos.EntryID
	err = s.onShard(key, false, func(sh *shard) (err error) {
		head, err = sh.f.Truncate(logpos.Term(req.GetTerm()), &logpos.EntryID{Term: logpos.Term(h.GetTerm()), Offset: logpos.Offset(h.GetOffset())})
		return err
	})
	// A shard the node does not host is a follower with nothing stored,
	// which refuses Truncate: refused as such, without opening one.
	if errors.Is(err, errNotHosted) {
		err = fmt.Errorf("%w: shard %s is not a member (it has no term)", follower.ErrInvalidStatus, key)
	}
	if err != nil {
		return nil, s.status(err)
	}
	return &replicationpb.TruncateResponse{HeadEntryId: entryID(head)}, nil
}

// GetStatus implements OxiaCoordinationServer. A shard the node does not
// host, or whose follower is not a member, is Aborted/NODE_IS_NOT_MEMBER.
func (s *Server) GetStatus(_ context.Context, req *replicationpb.GetStatusRequest) (*replicationpb.GetStatusResponse, error) {
	ns := req.GetNamespace()
	if ns == "" {
		ns = DefaultNamespace
	}
	key, err := unaryKey(ns, req.GetShard())
	if err != nil {
		return nil, s.status(err)
	}
	var st follower.Status
	for {
		sh, err := s.lookup(key, false)
		if err != nil {
			return nil, s.status(err)
		}
		st = sh.f.Status()
		s.release(sh)
		// A follower a DeleteShard closed is looked up again once that
		// delete is over, as onShard does: found as the delete left it
		// (forgotten, or hosted still if it failed before it removed the
		// data).
		if st.State != follower.StateClosed || s.shuttingDown.Load() || !s.deleted(sh) {
			break
		}
	}
	var serving replicationpb.ServingStatus
	switch st.State {
	case follower.StateFenced:
		serving = replicationpb.ServingStatus_FENCED
	case follower.StateFollower:
		serving = replicationpb.ServingStatus_FOLLOWER
	case follower.StateClosed:
		// Closed by a shutdown while we looked.
		if s.shuttingDown.Load() {
			return nil, s.status(errShuttingDown)
		}
		return nil, s.status(errNotHosted)
	default:
		return nil, s.status(fmt.Errorf("%w: shard %s has no term", follower.ErrNotMember, key))
	}
	return &replicationpb.GetStatusResponse{
		Term:         int64(st.Term),
		Status:       serving,
		HeadOffset:   int64(st.Head),
		CommitOffset: int64(st.Commit),
	}, nil
}

// DeleteShard implements OxiaCoordinationServer: it deletes the shard's
// follower and its data; the node forgets the shard. A shard with no data
// on the node has nothing to delete (but what an earlier delete cut short
// left of it). The data of a shard whose follower does not open (its log
// damaged, say) is removed all the same, checked against the term its
// store holds (follower.Remove).
func (s *Server) DeleteShard(_ context.Context, req *replicationpb.DeleteShardRequest) (*replicationpb.DeleteShardResponse, error) {
	key, err := unaryKey(req.GetNamespace(), req.GetShard())
	if err != nil {
		return nil, s.status(err)
	}
	if req.GetTerm() < 0 {
		return nil, s.status(invalidf("term", "%d is negative", req.GetTerm()))
	}
	for {
		sh, err := s.lookup(key, false)
		no := (*notOpened)(nil)
		if errors.Is(err, errNotHosted) || errors.As(err, &no) {
			// No follower: what there is of the shard (the data of a
			// follower that does not open, or what a delete cut short
			// left) is removed without one.
			removed, rerr := s.removeUnopened(key, logpos.Term(req.GetTerm()))
			if !removed {
				continue // a follower of it opened meanwhile: look again
			}
			if rerr != nil {
				return nil, s.status(rerr)
			}
			if no != nil {
				s.log.Warn("removed a shard whose follower does not open", "namespace", key.namespace, "shard", key.shard, "term", req.GetTerm(), "err", err)
			}
			s.tidyNamespace(key.namespace)
			return &replicationpb.DeleteShardResponse{}, nil
		}
		if err != nil {
			return nil, s.status(err)
		}
		current, err := s.deleteShard(sh, logpos.Term(req.GetTerm()))
		if !current {
			continue // another DeleteShard removed it meanwhile: look again
		}
		if err != nil {
			return nil, s.status(err)
		}
		s.log.Debug("shard deleted", "namespace", key.namespace, "shard", key.shard, "term", req.GetTerm())
		s.tidyNamespace(key.namespace)
		return &replicationpb.DeleteShardResponse{}, nil
	}
}

// deleteShard deletes sh's follower at term, retires the shard once its
// follower is closed (also when deleting panicked), and releases the
// caller's hold on sh. It reports false, doing nothing else, when sh is
// no longer the shard hosted under its key.
func (s *Server) deleteShard(sh *shard, term logpos.Term) (current bool, err error) {
	defer s.release(sh)
	sh.deleting.Lock()
	defer sh.deleting.Unlock()
	if !s.current(sh) {
		return false, nil
	}
	defer func() {
		if sh.f.Status().State == follower.StateClosed {
			s.retire(sh)
		}
	}()
	return true, sh.f.Delete(term)
}

// Replicate implements OxiaLogReplicationServer: the stream is routed by
// its metadata and served by the shard's follower.
func (s *Server) Replicate(stream grpc.BidiStreamingServer[replicationpb.Append, replicationpb.Ack]) error {
	// A shard the node does not host is a follower with nothing stored,
	// which refuses a stream (not a member): refused as such, without
	// opening one.
	key, err := streamKey(stream.Context())
	if err != nil {
		return s.status(err)
	}
	term, err := streamTerm(stream.Context())
	if err != nil {
		return s.status(err)
	}
	return s.status(s.onShard(key, false, func(sh *shard) error {
		return sh.f.ReplicateAt(&appendwire.Stream{BidiStreamingServer: stream}, term)
	}))
}

// onShard runs call on the follower of key, looked up as lookup does. A
// call refused because a DeleteShard closed that follower meanwhile
// (ErrClosed, before the call took anything from its stream) runs again
// on the shard as the delete left it, forgotten: a call that waited for a
// delete sees what a call after it would.
func (s *Server) onShard(key shardKey, create bool, call func(*shard) error) error {
	for {
		sh, err := s.lookup(key, create)
		if err != nil {
			return err
		}
		err = s.holding(sh, call)
		if !errors.Is(err, follower.ErrClosed) || errors.Is(err, follower.ErrStreamEnded) || !s.deleted(sh) {
			return err
		}
	}
}

// holding runs call on sh, then releases the caller's hold on sh,
// however call ends.
func (s *Server) holding(sh *shard, call func(*shard) error) error {
	defer s.release(sh)
	return call(sh)
}

// deleted reports whether sh was deleted and forgotten, once a
// DeleteShard under way on it has finished.
func (s *Server) deleted(sh *shard) bool {
	sh.deleting.Lock()
	defer sh.deleting.Unlock()
	return !s.current(sh)
}

// SendSnapshot implements OxiaLogReplicationServer: the chunks are
// installed by the shard's follower, which replies with the snapshot's
// commit offset. Unlike the other calls, one that a DeleteShard refused
// is not run again: the follower may have taken its first chunk by then.
func (s *Server) SendSnapshot(stream grpc.ClientStreamingServer[replicationpb.SnapshotChunk, replicationpb.SnapshotResponse]) error {
	key, err := streamKey(stream.Context())
	if err != nil {
		return s.status(err)
	}
	sh, err := s.lookup(key, true)
	if err != nil {
		return s.status(err)
	}
	defer s.release(sh)
	offset, err := sh.f.InstallSnapshot(stream)
	if err != nil {
		return s.status(err)
	}
	return stream.SendAndClose(&replicationpb.SnapshotResponse{AckOffset: int64(offset)})
}

func entryID(id logpos.EntryID) *replicationpb.EntryId {
	return &replicationpb.EntryId{Term: int64(id.Term), Offset: int64(id.Offset)}
}

// termOptions converts the options of a NewTerm; missing options are the
// zero options. A key sorting this node does not name (say, a newer
// leader's) is kept as it is, as protobuf keeps unknown enum values.
func termOptions(o *replicationpb.NewTermOptions) follower.TermOptions {
	return follower.TermOptions{
		EnableNotifications: o.GetEnableNotifications(),
		KeySorting:          store.KeySorting(o.GetKeySorting()),
	}
}
