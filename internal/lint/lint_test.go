// Package lint holds the project's structural rules as tests. Each
// failure names the rule it breaks and how to fix it.
package lint

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tablefsm/tablefsm"

// pkg is one package of the module, read from its sources.
type pkg struct {
	rel         string // the directory, relative to the module root ("." for the root)
	dir         string
	imports     []string // of the non-test files
	testImports []string // of the test files, in-package and external
	testFiles   []string // paths of the test files
	startsGo    bool     // a non-test file starts a goroutine
}

// packages reads every package of the module (and of the bench module
// nested in it), skipping testdata and hidden directories.
func packages(t *testing.T) []pkg {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the module root %s: %v", root, err)
	}
	var out []pkg
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if p != root && (name == "testdata" || name == "node_modules" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
			return filepath.SkipDir
		}
		bp, err := build.ImportDir(p, build.ImportComment)
		if err != nil {
			if _, none := err.(*build.NoGoError); none {
				return nil
			}
			t.Errorf("reading the package in %s: %v", p, err)
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		k := pkg{rel: filepath.ToSlash(rel), dir: p, imports: bp.Imports}
		k.testImports = append(slices.Clone(bp.TestImports), bp.XTestImports...)
		for _, f := range append(slices.Clone(bp.TestGoFiles), bp.XTestGoFiles...) {
			k.testFiles = append(k.testFiles, filepath.Join(p, f))
		}
		for _, f := range bp.GoFiles {
			if startsGoroutine(t, filepath.Join(p, f)) {
				k.startsGo = true
			}
		}
		out = append(out, k)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d packages under %s", len(out), root)
	}
	return out
}

// startsGoroutine reports whether the Go file at p has a go statement or
// calls a method named Go (sync.WaitGroup.Go and the like).
func startsGoroutine(t *testing.T, p string) bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parsing %s: %v", p, err)
	}
	// The names the file's imports go by: a call pkg.Go is a function
	// of that package, not a method starting a goroutine.
	imported := map[string]bool{}
	for _, imp := range f.Imports {
		name := path.Base(strings.Trim(imp.Path.Value, `"`))
		if imp.Name != nil {
			name = imp.Name.Name
		}
		imported[name] = true
	}
	found := false
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			found = true
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Go" {
				x, isIdent := sel.X.(*ast.Ident)
				found = !isIdent || !imported[x.Name]
			}
		}
		return !found
	})
	return found
}

// internal returns the module-relative path of an import of the module
// ("fsm", "grpcapi/replicationpb"), and whether it is one.
func internal(imp string) (string, bool) {
	if imp == module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(imp, module+"/")
	return rel, ok
}

// stdlib reports whether imp is a standard library package.
func stdlib(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

// layers lists, for the packages under the dependency rule
// (grpcapi → follower → {fsm, wal, store}; fsm and gen know nothing of
// replication), the packages of the module and the outside modules (by
// prefix) their non-test code may import; the standard library is always
// allowed. Packages not listed (grpcapi, the commands, the bench) may
// import anything.
var layers = map[string]struct{ internal, external []string }{
	"logpos":             {},
	"internal/durable":   {external: []string{"github.com/cockroachdb/pebble/v2/vfs"}},
	"fsm":                {external: []string{"github.com/goccy/go-yaml"}},
	"fsm/fsmtest":        {internal: []string{"fsm"}, external: []string{"github.com/looplab/fsm", "pgregory.net/rapid"}},
	"internal/stacktest": {},
	"internal/fdtest":    {},
	"internal/tlstest":   {},
	"internal/tlsfiles":  {},
	"gen/emit":           {internal: []string{"fsm"}},
	"gen":                {internal: []string{"fsm", "gen/emit"}},
	"examples/order":     {internal: []string{"fsm"}},
	"wal":                {internal: []string{"logpos", "internal/durable"}, external: []string{"github.com/cockroachdb/pebble/v2/vfs"}},
	"store/kvpb":         {external: []string{"google.golang.org/protobuf"}},
	// The protocol's messages link no gRPC (its services are in
	// grpcapi/replicationgrpc): nor does a follower embedded without it.
	"grpcapi/replicationpb": {external: []string{"google.golang.org/protobuf"}},
	"store": {
		internal: []string{"logpos", "internal/durable", "store/kvpb"},
		external: []string{"github.com/cockroachdb/pebble/v2", "google.golang.org/protobuf"},
	},
	"follower": {
		internal: []string{"fsm", "wal", "store", "logpos", "internal/durable", "grpcapi/replicationpb"},
		external: []string{"github.com/cockroachdb/pebble/v2/vfs"},
	},
}

// TestLayers: each package imports only what its layer allows, so that
// dependencies go one way and the framework knows nothing of
// replication.
func TestLayers(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range packages(t) {
		rule, ok := layers[p.rel]
		if !ok {
			continue
		}
		seen[p.rel] = true
		for _, imp := range p.imports {
			if rel, ok := internal(imp); ok {
				if !slices.Contains(rule.internal, rel) {
					t.Errorf("%s imports %s, which its layer does not allow (allowed: %v): move the code that needs it up a layer, or change the rule here on purpose", p.rel, rel, rule.internal)
				}
				continue
			}
			if stdlib(imp) {
				continue
			}
			if !slices.ContainsFunc(rule.external, func(prefix string) bool { return imp == prefix || strings.HasPrefix(imp, prefix+"/") }) {
				t.Errorf("%s imports %s, which its layer does not allow (allowed: %v): prefer the standard library, or change the rule here on purpose", p.rel, imp, rule.external)
			}
		}
	}
	for rel := range layers {
		if !seen[rel] {
			t.Errorf("the layer rule names %s, which is not a package any more: update the rule", rel)
		}
	}
}

// testSupport are the module's packages that only test files import.
var testSupport = []string{"fsm/fsmtest", "internal/stacktest", "internal/fdtest", "internal/tlstest"}

// testOnly are the packages that production code never imports: the
// oracle, the property-testing and leak-checking libraries, and the test
// support of the module.
var testOnly = append([]string{
	"github.com/looplab/fsm",
	"pgregory.net/rapid",
	"go.uber.org/goleak",
	"testing",
}, prefixed(module+"/", testSupport)...)

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

// TestOracleStaysInTests: looplab/fsm (the oracle of the generated
// machines) and the other test libraries reach no production code: only
// test files, and the test support packages (testSupport), which only
// test files import.
func TestOracleStaysInTests(t *testing.T) {
	for _, p := range packages(t) {
		if slices.Contains(testSupport, p.rel) || strings.HasPrefix(p.rel, "bench") {
			continue
		}
		for _, imp := range p.imports {
			if slices.Contains(testOnly, imp) {
				t.Errorf("%s imports %s outside its test files: move that code into a _test.go file (or into a test support package)", p.rel, imp)
			}
		}
	}
}

// TestLeakChecks: every package that starts goroutines checks its tests
// for leaked ones with goleak.
func TestLeakChecks(t *testing.T) {
	for _, p := range packages(t) {
		if !p.startsGo {
			continue
		}
		if !slices.Contains(p.testImports, "go.uber.org/goleak") {
			t.Errorf("%s starts goroutines but its tests do not check for leaks: add a TestMain calling goleak.VerifyTestMain(m)", p.rel)
		}
	}
}

// TestNoSleepInTests: tests wait on conditions or channels, never on the
// clock.
func TestNoSleepInTests(t *testing.T) {
	for _, p := range packages(t) {
		for _, file := range p.testFiles {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatalf("parsing %s: %v", file, err)
			}
			timeName := ""
			for _, imp := range f.Imports {
				if imp.Path.Value == `"time"` {
					timeName = "time"
					if imp.Name != nil {
						timeName = imp.Name.Name
					}
				}
			}
			if timeName == "" {
				continue
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "Sleep" {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == timeName {
					t.Errorf("%s: a test sleeps (time's Sleep): wait on a channel or a condition instead", fset.Position(sel.Pos()))
				}
				return true
			})
		}
	}
}

// TestPackageNames: package names say what is inside.
func TestPackageNames(t *testing.T) {
	for _, p := range packages(t) {
		switch path.Base(p.rel) {
		case "util", "utils", "common", "misc", "helpers", "base":
			t.Errorf("package %s: name it after what it holds", p.rel)
		}
	}
}
