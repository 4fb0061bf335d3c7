package node

import (
	"os/exec"
	"syscall"
)

// endWithParent makes the child receive SIGHUP when this process dies,
// even by SIGKILL, so that a node started by a tool that is killed shuts
// down instead of holding its data directory. Linux sends the signal each
// time the thread that is the child's parent exits: as the threads of a
// dying process exit one after another, the child can receive it several
// times, which is why it is SIGHUP, which followerd does not take for a
// second stop request, and not SIGTERM. The Go runtime ends a thread only
// when a goroutine locked to it (runtime.LockOSThread) returns without
// unlocking, so Start must not be called from such a goroutine.
func endWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGHUP}
}
