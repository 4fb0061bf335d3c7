package emit

import (
	"os"
	"testing"

	"github.com/tablefsm/tablefsm/fsm"
)

// FuzzEmit checks that every table the loader accepts can be emitted:
// Go code and tests that gofmt accepts, and both diagrams, without a
// panic or an error.
func FuzzEmit(f *testing.F) {
	for _, file := range []string{"../../transitions.yaml", "../testdata/job/job.yaml", "../../examples/order/order.yaml", "../../fsm/testdata/semantics.yaml"} {
		src, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		table, err := fsm.Load("f.yaml", src)
		if err != nil {
			return
		}
		s := Source{Name: "f.yaml", Bytes: src, FromPackage: "f.yaml"}
		if _, err := Go(table, s); err != nil {
			t.Fatalf("Go: %v", err)
		}
		if _, err := Test(table, s); err != nil {
			t.Fatalf("Test: %v", err)
		}
		Mermaid(table)
		DOT(table)
	})
}
