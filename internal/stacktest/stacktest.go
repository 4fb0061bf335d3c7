// Package stacktest lets tests wait until a goroutine is blocked at a
// given place, read from the stack traces of every goroutine: a test
// holds what a call waits for, waits until the call is there, then
// releases it, without sleeping. Only test files import it.
package stacktest

import (
	"runtime"
	"strings"
	"testing"
)

// WaitBlockedIn waits until a goroutine is blocked (its state, as stack
// traces print it: "select", "chan receive", "sync.Mutex.Lock") directly
// in fn (e.g. "grpcapi.(*Server).lookup": the first frame outside the
// runtime and sync packages). What it waits for is held by the test, so
// it stays there. It fails the test if done closes first: the call did
// not wait.
func WaitBlockedIn(t testing.TB, state, fn string, done <-chan struct{}) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		select {
		case <-done:
			t.Fatalf("the call returned instead of waiting in %s", fn)
		default:
		}
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if blockedIn(string(buf[:n]), state, fn) {
			return
		}
		runtime.Gosched()
	}
}

// blockedIn reports whether the stack traces in stacks show a goroutine
// in state whose first frame outside the runtime and sync packages is fn.
func blockedIn(stacks, state, fn string) bool {
	for _, g := range strings.Split(stacks, "\n\n") {
		// A header, then frames: a function line, then a file line.
		lines := strings.Split(g, "\n")
		if !strings.Contains(lines[0], "["+state) {
			continue
		}
		for i := 1; i < len(lines); i += 2 {
			if !strings.HasPrefix(lines[i], "runtime.") && !strings.HasPrefix(lines[i], "sync.") && !strings.HasPrefix(lines[i], "internal/sync.") {
				if strings.Contains(lines[i], fn+"(") {
					return true
				}
				break
			}
		}
	}
	return false
}
