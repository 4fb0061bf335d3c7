package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tablefsm/tablefsm/fsm"
)

// turnstileTable declares an unexported machine. A payload field has the
// machine's name and another payload names its type, so that the
// generated code must not refer to the type where a parameter hides it.
const turnstileTable = `machine: turnstile
package: gate
initial: Locked
unhandled: {refuse: ErrNotNow}
states:
  Locked: {}
  Unlocked: {}
  Broken: {terminal: true}
events:
  Coin: {payload: {turnstile: int, cents: int}}
  Push: {payload: {next: "*turnstile"}}
  Smash: {}
guards:
  EnoughMoney: {error: ErrNotNow, uses: [cents]}
actions:
  Collect: {uses: [turnstile, cents]}
errors:
  ErrNotNow: {}
rows:
  - {from: Locked, on: Coin, if: [EnoughMoney], to: Unlocked, do: [Collect]}
  - {from: Unlocked, on: Push, to: Locked}
  - {from: "*", on: Smash, to: Broken}
`

// turnstileHandlers is hand-written code of the package using the
// unexported machine, as the follower does its own.
const turnstileHandlers = `package gate

type counter struct{ total int }

var _ turnstileHandlers = (*counter)(nil)

func (c *counter) EnoughMoney(cents int) bool { return cents >= 50 }

func (c *counter) Collect(turnstile, cents int) error {
	c.total += cents
	return nil
}

// Run drives a machine of its own, the package's only way in.
func Run(cents ...int) (State, int) {
	c := &counter{}
	m := newTurnstile(c)
	for _, v := range cents {
		_ = m.Coin(0, v)
	}
	return m.State(), c.total
}
`

// TestUnexportedMachine: a machine declared with a lower-case name is
// generated unexported (its type, handlers interface and constructor), so
// that its package exports only what a caller can use: the states, the
// events, the errors and the table as data. Its generated tests run
// under their usual names, and go vet finds nothing wrong.
func TestUnexportedMachine(t *testing.T) {
	dir := genModule(t, "example.com/gate", "turnstile.yaml", func(dir string) {
		for name, src := range map[string]string{"turnstile.yaml": turnstileTable, "counter.go": turnstileHandlers} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
	out, ok := goTest(t, dir, "-v", ".")
	if !ok {
		t.Fatalf("go test of an unexported machine:\n%s", out)
	}
	for _, test := range []string{"TestTurnstileMatrix", "TestTurnstileRows", "TestTurnstileTableIsCurrent", "TestTurnstileWithoutHandlers", "TestTurnstileRandomWalk"} {
		if !strings.Contains(out, "--- PASS: "+test+" ") {
			t.Errorf("%s did not run and pass:\n%s", test, out)
		}
	}
	if out, ok := goCommand(t, dir, "vet", "."); !ok {
		t.Fatalf("go vet of an unexported machine:\n%s", out)
	}

	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, "turnstile_fsm.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var exported []string
	for name, obj := range f.Scope.Objects {
		if ast.IsExported(name) && obj.Kind != ast.Con {
			exported = append(exported, name)
		}
	}
	slices.Sort(exported)
	want := []string{"ErrNotNow", "Event", "State", "TurnstileTable"}
	if !slices.Equal(exported, want) {
		t.Errorf("exported by the generated code, constants aside: %v, want %v", exported, want)
	}
	for _, name := range []string{"turnstile", "turnstileHandlers", "newTurnstile", "TurnstileTableHash", "StateLocked", "EventCoin"} {
		if f.Scope.Lookup(name) == nil {
			t.Errorf("the generated code declares no %s", name)
		}
	}
}

// TestUnexportedMachineNamesThatWouldBeHidden: every name the generated
// code gives a parameter or a variable is refused as the name of an
// unexported machine, which it would hide where the code names the
// machine's type. The names are read from the code generated for the
// tables of this repository, so that a template naming a new variable
// fails here until the loader refuses it too.
func TestUnexportedMachineNamesThatWouldBeHidden(t *testing.T) {
	locals := map[string]bool{}
	for _, src := range []string{gateTable, turnstileTable, readFile(t, "testdata/job/job.yaml"), readFile(t, "../transitions.yaml")} {
		g := emitAll(t, "t.yaml", src)
		for _, code := range []string{g.code, g.tests} {
			f, err := parser.ParseFile(token.NewFileSet(), "x.go", code, 0)
			if err != nil {
				t.Fatal(err)
			}
			collectLocals(f, locals)
		}
	}
	// The names of payload fields are the table's, not the generator's.
	payload := map[string]bool{}
	for _, src := range []string{gateTable, turnstileTable, readFile(t, "testdata/job/job.yaml"), readFile(t, "../transitions.yaml")} {
		tb, err := fsm.Load("t.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range tb.Events {
			for _, f := range e.Payload {
				payload[f.Name] = true
			}
		}
	}
	base := strings.Replace(turnstileTable, "machine: turnstile", "machine: NAME", 1)
	base = strings.ReplaceAll(base, `"*turnstile"`, "int")
	checked := 0
	for name := range locals {
		if payload[name] || isGeneratedParam(name) {
			continue
		}
		checked++
		src := strings.Replace(base, "NAME", name, 1)
		if _, err := fsm.Load("t.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), `machine name "`+name+`"`) {
			t.Errorf("machine: %s, a name the generated code gives a variable: %v, want it refused", name, err)
		}
	}
	if checked < 10 {
		t.Fatalf("only %d names found in the generated code: %v", checked, locals)
	}
}

// isGeneratedParam reports whether name is a parameter of a generated
// fake's method (a0, a1, …): only the fake's own body sees them, and it
// names no type of the package.
func isGeneratedParam(name string) bool {
	return len(name) > 1 && name[0] == 'a' && strings.Trim(name[1:], "0123456789") == ""
}

// collectLocals adds to names the receivers, parameters, results and
// variables that the functions of f declare.
func collectLocals(f *ast.File, names map[string]bool) {
	fields := func(l *ast.FieldList) {
		if l == nil {
			return
		}
		for _, fl := range l.List {
			for _, n := range fl.Names {
				names[n.Name] = true
			}
		}
	}
	inBody := func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.FuncLit:
			fields(x.Type.Params)
			fields(x.Type.Results)
		case *ast.AssignStmt:
			for _, e := range x.Lhs {
				if id, ok := e.(*ast.Ident); ok && x.Tok == token.DEFINE && id.Name != "_" {
					names[id.Name] = true
				}
			}
		case *ast.RangeStmt:
			for _, e := range []ast.Expr{x.Key, x.Value} {
				if id, ok := e.(*ast.Ident); ok && x.Tok == token.DEFINE && id.Name != "_" {
					names[id.Name] = true
				}
			}
		case *ast.ValueSpec:
			for _, id := range x.Names {
				names[id.Name] = true
			}
		}
		return true
	}
	for _, d := range f.Decls {
		switch x := d.(type) {
		case *ast.FuncDecl:
			fields(x.Recv)
			fields(x.Type.Params)
			fields(x.Type.Results)
			if x.Body != nil {
				ast.Inspect(x.Body, inBody)
			}
		case *ast.GenDecl:
			// Package-level declarations: only function literals in
			// their values declare locals.
			ast.Inspect(x, func(n ast.Node) bool {
				if lit, ok := n.(*ast.FuncLit); ok {
					fields(lit.Type.Params)
					fields(lit.Type.Results)
					ast.Inspect(lit.Body, inBody)
					return false
				}
				return true
			})
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
