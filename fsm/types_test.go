package fsm

import (
	"fmt"
	"strings"
	"testing"
)

// Payload types are judged by their syntax: what a struct field can be
// written as is accepted, anything else is "not a Go type".
func TestPayloadTypeSyntax(t *testing.T) {
	accepted := []string{
		"int", "[]byte", "[32]byte", "[1 << 3]int", "[n]int", "*time.Time", "map[string][]int",
		"map[[2]int]bool", "chan<- int", "func(int, ...string) (bool, error)", "struct{ a int \"tag\" }",
		"struct{ _ int; _ int }", "struct{ time.Time; b int }", "interface{ M() int }", "interface{ error }",
		"any", "error", "list.List[int]", "Pair[int, string]", "['a']int", "[2.0]int",
		"struct{ list.List[int] }", "*struct{ *time.Time }",
	}
	rejected := []string{
		"_", "[...]int", "x.(int)", "a[b:c]", "interface{ int }", "interface{ ~int }", "comparable", "nil",
		"iota", "len", "map[[]int]int", "map[func()]int", "struct{ int; int }", "[iota]int", "a.b.c", "f()",
		"func[T any]()", "int // note", "map[struct{ a []int }]int", "[-1 + &x]int", "[1 == 1]int",
		"func(a, a int)", "func(a int) (a int)", "interface{ M(); M() }", "struct{ **time.Time }",
	}
	check := func(typ string) bool {
		src := fmt.Sprintf("machine: M\npackage: p\ninitial: A\nunhandled: ignore\n"+
			"imports: {time: time, list: example.com/list}\n"+
			"states: {A: {}, B: {terminal: true}}\n"+
			"events: {E: {payload: {v: %q}}}\n"+
			"rows: [{from: A, on: E, to: B}]\n", typ)
		_, err := Load("t.yaml", []byte(src))
		return err == nil || !strings.Contains(err.Error(), "is not a Go type")
	}
	for _, typ := range accepted {
		if !check(typ) {
			t.Errorf("%q is refused", typ)
		}
	}
	for _, typ := range rejected {
		if check(typ) {
			t.Errorf("%q is accepted", typ)
		}
	}
}
