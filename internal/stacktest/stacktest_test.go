package stacktest

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

//go:noinline
func waitFor(ch <-chan struct{}) { <-ch }

// TestWaitBlockedIn: a goroutine waiting in a function is found there.
func TestWaitBlockedIn(t *testing.T) {
	release, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		waitFor(release)
	}()
	WaitBlockedIn(t, "chan receive", "stacktest.waitFor", done)
	close(release)
	<-done
}

// TestBlockedIn: only the first frame outside the runtime and sync
// packages, of a goroutine in the given state, counts.
func TestBlockedIn(t *testing.T) {
	const stacks = `goroutine 1 [running]:
main.main()
	/x/main.go:1 +0x1

goroutine 7 [sync.Mutex.Lock]:
internal/sync.runtime_SemacquireMutex(0x0?, 0x0?, 0x0?)
	/go/src/runtime/sema.go:95 +0x25
sync.(*Mutex).Lock(...)
	/go/src/sync/mutex.go:46
example.com/p.(*T).locked(0xc000010000)
	/x/p.go:10 +0x2a
example.com/p.caller()
	/x/p.go:20 +0x2a

goroutine 9 [chan receive]:
example.com/p.outer()
	/x/p.go:30 +0x2a
example.com/p.inner()
	/x/p.go:40 +0x2a`
	for _, c := range []struct {
		state, fn string
		want      bool
	}{
		{"sync.Mutex.Lock", "p.(*T).locked", true},
		{"sync.Mutex.Lock", "p.caller", false},   // not the first frame outside sync
		{"chan receive", "p.(*T).locked", false}, // another state
		{"chan receive", "p.outer", true},
		{"chan receive", "p.inner", false},
	} {
		if got := blockedIn(stacks, c.state, c.fn); got != c.want {
			t.Errorf("blockedIn(%q, %q) = %v, want %v", c.state, c.fn, got, c.want)
		}
	}
}
