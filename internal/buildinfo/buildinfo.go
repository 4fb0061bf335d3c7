// Package buildinfo describes the running binary for its --version flag.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Version returns one line naming program, the version of the module it
// was built from (from a tag, else a pseudo-version naming the commit,
// "+dirty" when the tree had changes; "(devel)" when the build recorded
// none), the Go version and the platform: what a bug report needs.
func Version(program string) string {
	version := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	return strings.Join([]string{program, version, runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH}, " ")
}
