//go:build !linux

package node

import "os/exec"

// endWithParent does nothing here: only Linux can signal a child when its
// parent dies.
func endWithParent(*exec.Cmd) {}
