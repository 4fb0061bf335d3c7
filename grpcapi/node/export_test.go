package node

// StallStart makes Main call f as the node starts, once the signals that
// stop it are caught.
func StallStart(f func()) { beforeStart = f }
