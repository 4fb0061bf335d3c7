package follower

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// eofHookStream delivers its chunks like a gatedStream and calls atEOF
// just before it reports the end of the snapshot.
type eofHookStream struct {
	gatedStream
	atEOF func()
}

func (s *eofHookStream) Recv() (*replicationpb.SnapshotChunk, error) {
	if s.n >= len(s.chunks) {
		s.atEOF()
	}
	return s.gatedStream.Recv()
}

// TestNewTermBeforeAnInvalidStoreIsFoundWins: SPEC §2.4 "If NewTerm ran
// during the transfer, the install is abandoned with ErrInvalidTerm,
// whatever else is wrong with it (the term check comes first)": every
// chunk arrived, then NewTerm runs while the staged files are being
// checked (at the staging directory's sync), and they turn out not to
// be a store. The install fails with ErrInvalidTerm, not with the
// invalid store's ErrInvalidArgument. (TestConformanceInstallNewTermDuringTransfer
// cannot tell: there the abandoned transfer stops reading chunks before
// it reaches what is wrong with them.)
func TestNewTermBeforeAnInvalidStoreIsFoundWins(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	var (
		fol          atomic.Pointer[Follower]
		armed, fired atomic.Bool
		existing     = map[string]bool{}
		newTermErr   = make(chan error, 1)
	)
	efs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !armed.Load() || op.Kind != errorfs.OpFileSync {
			return nil
		}
		p := filepath.Clean(op.Path)
		if filepath.Dir(p) != storeDir || existing[filepath.Base(p)] {
			return nil // only the staging directory's own sync
		}
		if fired.CompareAndSwap(false, true) {
			_, err := fol.Load().NewTerm(3, TermOptions{})
			newTermErr <- err
		}
		return nil
	}))
	f, chunks := confInstallSetup(t, Config{Dir: dir, FS: efs, ApplyRetryMin: time.Millisecond, ApplyRetryMax: 5 * time.Millisecond})
	fol.Store(f)
	entries, err := os.ReadDir(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		existing[e.Name()] = true
	}
	for _, c := range chunks {
		c.Name = "junk-" + c.Name // every chunk arrives; the files are no store
	}
	s := &eofHookStream{gatedStream: gatedStream{chunks: chunks}, atEOF: func() { armed.Store(true) }}
	_, err = f.InstallSnapshot(s)
	armed.Store(false)
	if !fired.Load() {
		t.Fatal("NewTerm never ran while the staged files were checked")
	}
	if nerr := <-newTermErr; nerr != nil {
		t.Fatalf("NewTerm during the install: %v", nerr)
	}
	if !errors.Is(err, ErrInvalidTerm) {
		t.Fatalf("install abandoned by NewTerm, its files no store: %v, want ErrInvalidTerm", err)
	}
	if st := f.Status(); st.State != StateFenced || st.Term != 3 || st.Commit != 3 || st.Head != 5 {
		t.Fatalf("after the abandoned install: %+v, want Fenced at term 3, commit 3, head 5", st)
	}
	if l := stagingLeft(t, efs, dir); len(l) > 0 {
		t.Errorf("staging left: %v", l)
	}
}
