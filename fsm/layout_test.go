//lint:file-ignore U1000 the structures' fields are there for their sizes

package fsm

import (
	"go/parser"
	"structs"
	"testing"
	"unsafe"
)

// TestSizeOfMatchesTheCompiler: the sizes the validator computes for
// payload types (the limits of channel elements and payloads) are the
// compiler's, padding included, on the platform the test runs on.
func TestSizeOfMatchesTheCompiler(t *testing.T) {
	type boolInt64 struct {
		a bool
		b int64
	}
	type int64Bool struct {
		a int64
		b bool
	}
	type endsEmpty struct {
		a int32
		b struct{}
	}
	type mixed struct {
		a, b bool
		c    int16
		d    [3]byte
		e    complex64
		f    string
		g    []int
		h    complex128
		i    any
	}
	type nested struct {
		a byte
		b [2]boolInt64
		c byte
	}
	word := int64(unsafe.Sizeof(uintptr(0)))
	for _, c := range []struct {
		typ  string
		want uintptr
	}{
		{"struct{ a bool; b int64 }", unsafe.Sizeof(boolInt64{})},
		{"struct{ a int64; b bool }", unsafe.Sizeof(int64Bool{})},
		{"struct{ a int32; b struct{} }", unsafe.Sizeof(endsEmpty{})},
		{"struct{ a complex64; b bool }", unsafe.Sizeof(struct {
			a complex64
			b bool
		}{})},
		{"struct{ a, b bool; c int16; d [3]byte; e complex64; f string; g []int; h complex128; i any }", unsafe.Sizeof(mixed{})},
		{"struct{ a byte; b [2]struct{ a bool; b int64 }; c byte }", unsafe.Sizeof(nested{})},
		{"[4096]struct{ a bool; b int64 }", 4096 * unsafe.Sizeof(boolInt64{})},
		{"struct{}", 0},
		{"[0]int64", 0},
		// A named type counts as nothing: some are empty.
		{"[4096]struct{ h structs.HostLayout; a int64 }", 4096 * unsafe.Sizeof(struct {
			h structs.HostLayout
			a int64
		}{})},
	} {
		e, err := parser.ParseExpr(c.typ)
		if err != nil {
			t.Fatal(err)
		}
		if got := sizeOf(e, word); got != int64(c.want) {
			t.Errorf("sizeOf(%s) = %d, the compiler says %d", c.typ, got, c.want)
		}
	}
}
