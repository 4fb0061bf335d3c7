package fsm_test

import (
	"strings"
	"testing"

	"github.com/tablefsm/tablefsm/fsm"
)

// TestSourceHashIgnoresLineEndings: a table checked out with CRLF line
// endings hashes as the same table with LF ones; any other change counts.
func TestSourceHashIgnoresLineEndings(t *testing.T) {
	lf := "machine: M\nstates:\n  A: {}\n"
	crlf := strings.ReplaceAll(lf, "\n", "\r\n")
	if fsm.SourceHash([]byte(lf)) != fsm.SourceHash([]byte(crlf)) {
		t.Errorf("CRLF line endings change the hash")
	}
	if !strings.HasPrefix(fsm.SourceHash([]byte(lf)), "sha256:") {
		t.Errorf("hash %q lacks its sha256: prefix", fsm.SourceHash([]byte(lf)))
	}
	for _, other := range []string{"machine: M\nstates:\n  B: {}\n", "machine: M\nstates:\n  A: {}\n\n", "machine: M\rstates:\r  A: {}\r"} {
		if fsm.SourceHash([]byte(other)) == fsm.SourceHash([]byte(lf)) {
			t.Errorf("%q hashes as %q", other, lf)
		}
	}
}
