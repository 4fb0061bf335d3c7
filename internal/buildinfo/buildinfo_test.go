package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	got := Version("followerd")
	fields := strings.Fields(got)
	if len(fields) != 4 || fields[0] != "followerd" || fields[1] == "" || fields[2] != runtime.Version() || fields[3] != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("Version = %q, want followerd, a version, %s and %s/%s", got, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
}
