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
		"struct{ list.List[int] }", "*struct{ *time.Time }", "[7/2]int", "[^-2]int", "[n-1]int", "[-n]int",
		"['a' - 96]int", "struct{ a int \"// not a comment\" }", "[1 << 20]byte", "  int  ",
		"[1 << 29]struct{}", "[1 << 29]T", "struct{ error }", "struct{ *errors }",
		"[1<<511>>510]int", "[0<<1074]int", "[1>>1074]int", "[((1<<511-1)*2+1)>>511]int",
	}
	rejected := []string{
		"_", "[...]int", "x.(int)", "a[b:c]", "interface{ int }", "interface{ ~int }", "comparable", "nil",
		"iota", "len", "map[[]int]int", "map[func()]int", "struct{ int; int }", "[iota]int", "a.b.c", "f()",
		"func[T any]()", "int // note", "map[struct{ a []int }]int", "[-1 + &x]int", "[1 == 1]int",
		"func(a, a int)", "func(a int) (a int)", "interface{ M(); M() }", "struct{ **time.Time }", "struct{ *error }", "struct{ *any }",
		"[-1]int", "[1.5]int", "[3/2.0]int", "[1/0]int", "[1 % 0]int", "[1.5 % 1]int", "[^1.5]int", "[1 << -1]int",
		"[1 << 30]T", "[1 << 5000]int", "int\n", "int\t", "int /* note */", "[]int\r\n", "int\u2028",
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

// The reason a type is refused is in its diagnostic.
func TestPayloadTypeProblems(t *testing.T) {
	for typ, want := range map[string]string{
		"[-1]int":                         `"[-1]int" is not a Go type: the array length -1 is negative`,
		"[1.5]int":                        `"[1.5]int" is not a Go type: the array length 1.5 is not an integer`,
		"[1/0]int":                        `"[1/0]int" is not a Go type: its array length divides by zero`,
		"[1 << 62]int":                    `"[1 << 62]int" is not a Go type: its array length is too large`,
		"[1<<4096<<4096<<4096>>12288]int": `"[1<<4096<<4096<<4096>>12288]int" is not a Go type: its array length is too large`,
		"[1<<4000*(1<<4000)>>8000]int":    `"[1<<4000*(1<<4000)>>8000]int" is not a Go type: its array length is too large`,
		"int\n":                           `"int\n" is not a Go type: a type is written on one line, without control characters`,
		"int // x":                        `"int // x" is not a Go type: it holds a comment`,
		"[1 << 27]int64":                  `"[1 << 27]int64" takes 16 MiB or more, the limit of a payload`,
		"[1 << 15][1 << 15]uint16":        `"[1 << 15][1 << 15]uint16" takes 16 MiB or more, the limit of a payload`,
		"struct{ a, b [1 << 29]byte }":    `"struct{ a, b [1 << 29]byte }" takes 16 MiB or more, the limit of a payload`,
		"[16 << 20]byte":                  `"[16 << 20]byte" takes 16 MiB or more, the limit of a payload`,
		// Go's untyped integer constants hold 512 bits, and a constant
		// is shifted by at most 1074: past either, the compiler refuses
		// the length, whatever it comes to in the end.
		"[1<<600>>599]int":            `"[1<<600>>599]int" is not a Go type: its array length is too large`,
		"[(1<<300)*(1<<300)>>599]int": `"[(1<<300)*(1<<300)>>599]int" is not a Go type: its array length is too large`,
		"[0<<2000]int":                `"[0<<2000]int" is not a Go type: its array length is too large`,
		"[1>>1075]int":                `"[1>>1075]int" is not a Go type: its array length is too large`,
		"[-^(1<<511-1)*2>>511]int":    `"[-^(1<<511-1)*2>>511]int" is not a Go type: its array length is too large`,
		"[100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000/100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000]int": `"[100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000/100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000]int" is not a Go type: its array length is too large`,
		"interface{ ReadByte() (byte, bool) }": `"interface{ ReadByte() (byte, bool) }" declares the method ReadByte() (byte, bool), ` +
			`which go vet expects as ReadByte() (byte, error) (its stdmethods check): give it that signature or another name`,
		"func(interface{ error; Unwrap() int })": `"func(interface{ error; Unwrap() int })" declares the method Unwrap() int, ` +
			`which go vet expects as Unwrap() error or Unwrap() []error (its stdmethods check): give it that signature or another name`,
	} {
		src := fmt.Sprintf("machine: M\npackage: p\ninitial: A\nunhandled: ignore\n"+
			"states: {A: {}, B: {terminal: true}}\n"+
			"events: {E: {payload: {v: %q}}}\n"+
			"rows: [{from: A, on: E, to: B}]\n", typ)
		_, err := Load("t.yaml", []byte(src))
		if want := `t.yaml:6:24: payload field "v": ` + want; err == nil || err.Error() != want {
			t.Errorf("%q: got\n%v\nwant\n%s", typ, err, want)
		}
	}
}

// FuzzPayloadType checks that no payload type makes the loader panic, and
// that a refused one is reported on one line.
func FuzzPayloadType(f *testing.F) {
	for _, typ := range []string{"[-1]int", "[1.5 << 2]int", "[1e400]int", "['a' &^ 2.5]int", "map[[2]int]func(...int)", "int\n"} {
		f.Add(typ)
	}
	f.Fuzz(func(t *testing.T, typ string) {
		src := fmt.Sprintf("machine: M\npackage: p\ninitial: A\nunhandled: ignore\n"+
			"states: {A: {}, B: {terminal: true}}\n"+
			"events: {E: {payload: {v: %q}}}\n"+
			"rows: [{from: A, on: E, to: B}]\n", typ)
		_, err := Load("t.yaml", []byte(src))
		if err != nil && strings.Count(err.Error(), "\n") > 2 {
			t.Fatalf("more than three lines: %q", err)
		}
	})
}

// TestPayloadJustBelowTheLimit: a payload one byte smaller than the limit
// loads.
func TestPayloadJustBelowTheLimit(t *testing.T) {
	src := "machine: M\npackage: p\ninitial: A\nunhandled: ignore\n" +
		"states: {A: {}, B: {terminal: true}}\n" +
		"events: {E: {payload: {v: \"[16<<20 - 2]byte\", w: \"[1]byte\"}}}\n" +
		"rows: [{from: A, on: E, to: B}]\n"
	if _, err := Load("t.yaml", []byte(src)); err != nil {
		t.Fatal(err)
	}
}

// A guard may read a field that two events spell differently, as long as
// the spellings are of one Go type.
func TestGuardFieldTypeSpelling(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"any", "interface{}", true},
		{"[]byte", "[] uint8", true},
		{"map[rune]any", "map[int32]interface{ }", true},
		{"struct{ f func() }", "struct {f func()}", true},
		{"struct{ byte int }", "struct{ uint8 int }", false}, // field names
		{"struct{ byte }", "struct{ uint8 }", false},         // embedded: named after the type
		{"interface{ byte() }", "interface{ uint8() }", false},
		{"x.Byte", "x.Uint8", false},
		{"int", "int64", false},
		{"func(byte)", "func(uint8)", true},
		{"func() rune", "func() (r int32)", true},
		{"func(a, b int, c ...byte) error", "func(int, int, ...uint8) (err error)", true},
		{"func(*byte)", "func(*uint8)", true},
		{"interface{ M(byte); N() }", "interface{ N(); M(x uint8) }", true},
		{"struct{ a, b int }", "struct{ a int; b int }", true},
		{"(int)", "int", true},
		{"[4]byte", "[2+2]uint8", true},
		{"[n]byte", "[n]uint8", true},
		{"struct{ *byte }", "struct{ *uint8 }", false},
		{"struct{ a, b int }", "struct{ b, a int }", false},
		{"func(int, string)", "func(string, int)", false},
		{"[4]int", "[5]int", false},
		{"chan<- int", "chan int", false},
		{"interface{ error }", "interface{ Error() string }", true},
		{"interface{ error; M() }", "interface{ M(); Error() (s string) }", true},
		{"interface{ any; M() }", "interface{ M() }", true},
		{"interface{ error; Error() string }", "interface{ error }", true},
		{"error", "interface{ Error() string }", false}, // error is a named type
		{"interface{ error }", "interface{ Error() int }", false},
	} {
		src := fmt.Sprintf("machine: M\npackage: p\ninitial: A\nunhandled: ignore\n"+
			"imports: {x: example.com/x}\n"+
			"states: {A: {}, B: {terminal: true}}\n"+
			"events: {E: {payload: {v: %q}}, F: {payload: {v: %q}}}\n"+
			"guards: {Ok: {error: ErrNo, uses: v}}\nerrors: {ErrNo: {}}\n"+
			"rows: [{from: A, on: E, if: [Ok], to: B}, {from: A, on: F, if: [Ok], to: B}]\n", c.a, c.b)
		imports := "imports: {x: example.com/x}\n"
		if !strings.Contains(c.a, "x.") {
			src = strings.Replace(src, imports, "", 1)
		}
		_, err := Load("t.yaml", []byte(src))
		if c.same && err != nil {
			t.Errorf("%q and %q: %v", c.a, c.b, err)
		}
		if !c.same && (err == nil || !strings.Contains(err.Error(), "guard Ok reads payload field \"v\" as")) {
			t.Errorf("%q and %q: %v, want them told apart", c.a, c.b, err)
		}
	}
}
