//go:build !invariants

package follower

// invariants is false without the invariants build tag: the checks compile
// away.
const invariants = false

func assertf(bool, string, ...any) {}
