package emit

import (
	"strings"
	"testing"

	"github.com/tablefsm/tablefsm/fsm"
)

// A table that declares no error, with docs holding characters no Go
// source may hold: the code is emitted (it parses), imports nothing it
// does not use, and keeps the rest of the docs.
func TestGoWithoutErrorsAndOddDocs(t *testing.T) {
	src := []byte("machine: Once\npackage: once\ninitial: Open\nunhandled: ignore\n" +
		"doc: \"a\\uFEFFb\\0c\"\n" +
		"states:\n  Open: {doc: \"open\\0ed\"}\n  Done: {terminal: true}\n" +
		"events:\n  Finish: {}\n" +
		"rows:\n  - {from: Open, on: Finish, to: Done}\n")
	code := goCode(t, src)
	if strings.Contains(string(code), `"errors"`) {
		t.Errorf("imports errors, which no declared error uses:\n%s", code)
	}
	if !strings.Contains(string(code), "StateOpen: opened.") {
		t.Errorf("the state's doc lost more than its NUL:\n%s", code)
	}
}

// An import whose path ends in a major version keeps the table's name.
func TestGoImportNamedNotAfterItsPath(t *testing.T) {
	src := []byte("machine: Once\npackage: once\ninitial: Open\nunhandled: ignore\n" +
		"imports: {v2: example.com/lib/v2, time: time}\n" +
		"states:\n  Open: {}\n  Done: {terminal: true}\n" +
		"events:\n  Finish: {payload: {thing: v2.Thing, at: time.Time}}\n" +
		"rows:\n  - {from: Open, on: Finish, to: Done}\n")
	code := goCode(t, src)
	for _, want := range []string{`v2 "example.com/lib/v2"`, "\t\"time\"\n"} {
		if !strings.Contains(string(code), want) {
			t.Errorf("the imports lack %s:\n%s", want, code)
		}
	}
}

// goCode loads the table src and returns its Go code.
func goCode(t *testing.T, src []byte) []byte {
	t.Helper()
	table, err := fsm.Load("once.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	code, err := Go(table, Source{Name: "once.yaml", Bytes: src, FromPackage: "once.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	return code
}
