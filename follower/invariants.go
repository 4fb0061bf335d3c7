//go:build invariants

package follower

import "fmt"

// invariants is true in builds with the invariants tag: the follower then
// checks the invariants of docs/spec.md §6 as it runs and panics when one breaks.
// Tests run with it in CI; production builds leave it out.
const invariants = true

func assertf(ok bool, format string, args ...any) {
	if !ok {
		panic(fmt.Sprintf("follower: invariant broken: "+format, args...))
	}
}
