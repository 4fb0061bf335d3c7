package follower

import (
	"testing"
)

// TestHalfCloseAcksEverything: when the leader half-closes, every entry it
// sent is made durable and acknowledged before Replicate returns, in both
// ack modes, however the sync rounds fall (docs/spec.md §2.3).
func TestHalfCloseAcksEverything(t *testing.T) {
	for _, cumulative := range []bool{true, false} {
		for round := 0; round < 8; round++ {
			f, err := Open(Config{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.NewTerm(1, TermOptions{}); err != nil {
				t.Fatal(err)
			}
			const n = 3000
			s := newWindowStream(1, n, n, cumulative, true)
			err = f.Replicate(s)
			s.cancel()
			if err != nil {
				t.Fatal(err)
			}
			if got := s.acked.Load(); got != n-1 {
				t.Fatalf("cumulative=%v: Replicate returned with acks up to %d of %d", cumulative, got, n-1)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
