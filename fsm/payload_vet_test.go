package fsm

import (
	"fmt"
	"strings"
	"testing"
)

// payloadTable is a valid table whose one event carries a payload field v
// of type typ, with io, sync and example.com/x imported as io, sync and x.
func payloadTable(typ string) string {
	return fmt.Sprintf("machine: M\npackage: p\ninitial: A\nunhandled: ignore\n"+
		"imports: {io: io, sync: sync, x: example.com/x}\n"+
		"states: {A: {}, B: {terminal: true}}\n"+
		"events: {E: {payload: {v: %q, r: io.Reader, w: sync.Locker, t: x.T}}}\n"+
		"rows: [{from: A, on: E, to: B}]\n", typ)
}

// Methods of interfaces in payload types that go vet's stdmethods check
// lets through are accepted: WriteTo with more than one parameter (not
// meant as io.WriterTo), Unwrap returning []error in an error.
func TestPayloadInterfacesGoVetAccepts(t *testing.T) {
	for _, typ := range []string{
		"interface{ WriteTo(w io.Writer, n int) (int64, error) }",
		"interface{ WriteTo(w io.Writer, n int) bool }",
		"interface{ error; Unwrap() []error }",
		"interface{ Error() string; Unwrap() []error }",
		"interface{ Unwrap() int }",
		"interface{ Seek(string) int }",
		"interface{ Seek(int64, int) (int64, error) }",
	} {
		if got := loadErr(t, payloadTable(typ)); got != "" {
			t.Errorf("%s: refused:\n%s", typ, got)
		}
	}
}

// A method of an interface in a payload type with more parameters or
// results than the standard signature go vet's stdmethods check expects
// is refused, as the check refuses it.
func TestPayloadInterfaceMethodWithExtraParametersRefused(t *testing.T) {
	for typ, want := range map[string]string{
		"interface{ Seek(int64, int, bool) (int64, error) }":   "Seek(int64, int, bool) (int64, error), which go vet expects as Seek(int64, int) (int64, error)",
		"interface{ WriteTo(io.Writer) (int64, error, bool) }": "WriteTo(io.Writer) (int64, error, bool), which go vet expects as WriteTo(io.Writer) (int64, error)",
	} {
		got := loadErr(t, payloadTable(typ))
		if !strings.Contains(got, `"`+typ+`" declares the method `+want) || strings.Count(got, "\n") > 0 {
			t.Errorf("%s: got\n%s\nwant the method %s", typ, got, want)
		}
	}
}

// Every lock of package sync is refused in a payload by value (go vet's
// copylocks check), and accepted behind a pointer.
func TestEveryLockOfPackageSyncRefusedByValue(t *testing.T) {
	for _, lock := range []string{"Mutex", "RWMutex", "WaitGroup", "Once", "Cond", "Map", "Pool"} {
		typ := "sync." + lock
		want := `t.yaml:7:24: payload field "v": "` + typ + `" holds ` + typ + `, a type that must not be copied, and payloads are passed by value (go vet's copylocks check): use a pointer`
		if got := loadErr(t, payloadTable(typ)); got != want {
			t.Errorf("%s: got\n%s\nwant\n%s", typ, got, want)
		}
		if got := loadErr(t, payloadTable("*"+typ)); got != "" {
			t.Errorf("*%s: refused:\n%s", typ, got)
		}
	}
}

// A payload's size is read as laid out on 32-bit platforms, where it is
// least: an int takes 4 bytes there, an int64 8.
func TestPayloadSizeReadOn32BitPlatforms(t *testing.T) {
	if got := loadErr(t, payloadTable("[1 << 21]int")); got != "" {
		t.Errorf("[1 << 21]int: refused:\n%s", got)
	}
	if got := loadErr(t, payloadTable("[1 << 21]uintptr")); got != "" {
		t.Errorf("[1 << 21]uintptr: refused:\n%s", got)
	}
	want := `t.yaml:7:24: payload field "v": "[1 << 21]int64" takes 16 MiB or more, the limit of a payload`
	if got := loadErr(t, payloadTable("[1 << 21]int64")); got != want {
		t.Errorf("[1 << 21]int64: got\n%s\nwant\n%s", got, want)
	}
}

// A predeclared type that is not generic is not instantiated.
func TestPredeclaredTypeNotInstantiated(t *testing.T) {
	for _, typ := range []string{"int[string]", "error[int]", "any[int, bool]", "string[x.T]"} {
		if got := loadErr(t, payloadTable(typ)); !strings.Contains(got, `"`+typ+`" is not a Go type`) {
			t.Errorf("%s: got\n%s\nwant it refused as no Go type", typ, got)
		}
	}
}
