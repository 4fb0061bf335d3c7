package emit

import (
	"fmt"
	"regexp"
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

// largeTable is a valid table of n states and n events with a row in
// every cell of the live states.
func largeTable(n int) *fsm.Table {
	t := &fsm.Table{File: "big.yaml", Machine: "Big", Package: "big", Initial: "S0", Unhandled: fsm.Policy{Kind: fsm.PolicyIgnore}}
	for i := range n {
		t.States = append(t.States, fsm.State{Name: fmt.Sprintf("S%d", i), Terminal: i == n-1})
		t.Events = append(t.Events, fsm.Event{Name: fmt.Sprintf("E%d", i)})
	}
	for s := range n - 1 {
		for e := range n {
			t.Rows = append(t.Rows, fsm.Row{From: []string{t.States[s].Name}, On: t.Events[e].Name, Kind: fsm.Move, To: t.States[(s+e+1)%n].Name})
		}
	}
	return t
}

// The model of the largest table (255 states and events, a row in every
// cell) is made in a fraction of a second: cells are found through an
// index of the rows, not by looking through every row for each.
func TestModelOfLargestTable(t *testing.T) {
	table := largeTable(fsm.MaxStates)
	m := newModel(table)
	if _, err := m.paths(); err != nil {
		t.Fatal(err)
	}
	rows, err := m.rowCases()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(table.Rows) || len(m.matrixCases()) != fsm.MaxStates*fsm.MaxEvents {
		t.Fatalf("%d row cases, want %d", len(rows), len(table.Rows))
	}
	if next := m.successors("S0"); len(next) != fsm.MaxStates-1 {
		t.Fatalf("S0 moves to %d states, want %d", len(next), fsm.MaxStates-1)
	}
}

func BenchmarkGenerateLargeTable(b *testing.B) {
	for _, n := range []int{25, 50, 100} {
		table := largeTable(n)
		src := Source{Name: "big.yaml", FromPackage: "big.yaml"}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Go(table, src); err != nil {
					b.Fatal(err)
				}
				if _, err := Test(table, src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A table whose file name holds a line break, or a quote, is named quoted
// in the comments of the generated files: the header stays one line, in
// the form go help generate documents, and the files parse.
func TestOddTableNames(t *testing.T) {
	src := []byte("machine: Once\npackage: once\ninitial: Open\nunhandled: ignore\n" +
		"states:\n  Open: {}\n  Done: {terminal: true}\n" +
		"events:\n  Finish: {}\n" +
		"rows:\n  - {from: Open, on: Finish, to: Done}\n")
	header := regexp.MustCompile(`^// Code generated .* DO NOT EDIT\.$`)
	for name, shown := range map[string]string{
		"once.yaml":            "once.yaml",
		"on\nce.yaml":          `"on\nce.yaml"`,
		"*/ package x //.yaml": "*/ package x //.yaml",
		"say \"once\".yaml":    `"say \"once\".yaml"`,
	} {
		table, err := fsm.Load(name, src)
		if err != nil {
			t.Fatal(err)
		}
		s := Source{Name: name, Bytes: src, FromPackage: name}
		code, err := Go(table, s)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		tests, err := Test(table, s)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		for _, file := range [][]byte{code, tests} {
			first, _, _ := strings.Cut(string(file), "\n")
			if !header.MatchString(first) || !strings.Contains(first, " from "+shown+". ") {
				t.Errorf("%q: header %q", name, first)
			}
		}
	}
}

// Source that does not parse, a bug of the generator, is reported with
// the lines around the error, not the whole file.
func TestGofmtFailureIsShort(t *testing.T) {
	var src strings.Builder
	src.WriteString("package x\n\n")
	for i := range 1000 {
		fmt.Fprintf(&src, "var v%d = %d\n", i, i)
	}
	src.WriteString("func broken( {\n}\n")
	for i := range 1000 {
		fmt.Fprintf(&src, "var w%d = %d\n", i, i)
	}
	_, err := gofmt("X code", []byte(src.String()))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if lines := strings.Count(msg, "\n"); lines > 6 || !strings.Contains(msg, "> ") || !strings.Contains(msg, "func broken( {") {
		t.Errorf("%d lines:\n%s", lines, msg)
	}
}

// An import of the table is written under its name, which may differ
// from the last element of its path, except for a standard library
// package named after it.
func TestImportSpec(t *testing.T) {
	for _, c := range []struct{ name, path, want string }{
		{"time", "time", `"time"`},
		{"template", "text/template", `"text/template"`},
		{"rand", "math/rand/v2", `rand "math/rand/v2"`},
		{"clock", "time", `clock "time"`},
		{"logpos", "github.com/tablefsm/tablefsm/logpos", `logpos "github.com/tablefsm/tablefsm/logpos"`},
		{"mylib", "example.com/alias/mylib", `mylib "example.com/alias/mylib"`},
		// A module whose path holds no dot: its package may be named
		// otherwise.
		{"foo", "mlocal/foo", `foo "mlocal/foo"`},
		{"mlocal", "mlocal", `mlocal "mlocal"`},
	} {
		if got := importSpec(fsm.Import{Name: c.name, Path: c.path}); got != c.want {
			t.Errorf("importSpec(%s %s) = %s, want %s", c.name, c.path, got, c.want)
		}
	}
}

// A doc line starting with "+build", given as such or made by wrapping,
// stays the doc's text: as a "// +build" comment gofmt would move it to
// the top of the file, a build constraint.
func TestDocLineStartingWithPlusBuild(t *testing.T) {
	for name, c := range map[string]struct{ doc, line string }{
		"a line of its own": {`"Waits.\n+build ignore"`, `// \+build ignore`},
		"a wrapped line":    {strings.Repeat("x", 70) + " +build ignore", `// \+build ignore`},
		"+build alone":      {strings.Repeat("x", 70) + " +build " + strings.Repeat("y", 70), "// \\+build\n"},
	} {
		t.Run(name, func(t *testing.T) {
			code := string(goCode(t, []byte("machine: Once\npackage: once\ninitial: Open\nunhandled: ignore\n"+
				"states:\n  Open: {doc: "+c.doc+"}\n  Done: {terminal: true}\n"+
				"events:\n  Finish: {}\n"+
				"rows:\n  - {from: Open, on: Finish, to: Done}\n")))
			head, _, _ := strings.Cut(code, "\npackage once\n")
			if strings.Contains(head, "+build") {
				t.Errorf("the doc became a build constraint:\n%s", head)
			}
			if !strings.Contains(code, c.line) {
				t.Errorf("the doc's +build line is not in the code:\n%s", code)
			}
		})
	}
}
