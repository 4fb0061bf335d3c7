package node

import (
	"os/exec"
	"syscall"
)

// endWithParent makes the child receive SIGTERM when this process dies,
// even by SIGKILL, so that a node started by a tool that is killed shuts
// down instead of holding its data directory. Linux sends the signal when
// the thread that started the child exits: the Go runtime ends a thread
// only when a goroutine locked to it (runtime.LockOSThread) returns
// without unlocking, so Start must not be called from such a goroutine.
func endWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
