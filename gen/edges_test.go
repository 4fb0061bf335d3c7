package main

import (
	"bytes"
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/gen/emit"
)

// gateTable is a valid table with what the job example lacks: docs and a
// message holding quotes and a backslash, an initial state that is not
// the first, a row of two guards alone in its cell, a stay row, moves of
// a state to itself (one into a terminal state), a row with a doc, a
// cell whose second row needs the first guard of the first row, a cell
// refused by the second guard of its first row (Locked, Knock), a
// state with arrows of two styles to itself (Locked), and a state that
// refuses with an error of its own (Gone).
const gateTable = `machine: Gate
package: gate
doc: 'A gate with "quotes" and a back\slash.'
initial: Closed
unhandled: {refuse: ErrNotNow}
imports:
  strings: strings
states:
  Open: {doc: 'Lets "people" through.'}
  Closed: {doc: Shut.}
  Locked: {doc: Locked.}
  Gone: {doc: Removed., terminal: true, unhandled: {refuse: ErrGone}}
events:
  Knock: {payload: {who: string, note: '*strings.Reader'}}
  Lock: {}
  Remove: {}
guards:
  Friendly: {error: ErrNotNow, uses: [who]}
  Awake: {error: ErrNotNow}
  Quiet: {error: ErrNotNow}
actions:
  Greet: {uses: [who]}
  Count: {}
errors:
  ErrNotNow: {message: 'not "now" \ later'}
  ErrGone: {}
rows:
  - {from: Closed, on: Knock, if: [Friendly, Awake], to: Open, do: [Greet], doc: 'the "main" way'}
  - {from: Open, on: Knock, stay: true, do: [Greet]}
  - {from: Open, on: Lock, to: Locked, do: [Count]}
  - {from: Locked, on: Lock, to: Locked, do: [Count]}
  - {from: Closed, on: Lock, if: [Awake, Quiet], to: Locked}
  - {from: Closed, on: Lock, if: [Awake], noop: true}
  - {from: "*", on: Remove, to: Gone}
  - {from: Gone, on: Remove, to: Gone, do: [Count]}
  - {from: Locked, on: Knock, if: [Awake, Quiet], to: Open}
  - {from: Locked, on: Knock, if: [Friendly], stay: true, do: [Greet]}
`

// generated is what the generator makes of one table.
type generated struct {
	code, tests, mermaid, dot string
}

// emitAll loads src as name and generates everything from it.
func emitAll(t *testing.T, name, src string) generated {
	t.Helper()
	table, err := fsm.Load(name, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s := emit.Source{Name: name, Bytes: []byte(src), FromPackage: name}
	code, err := emit.Go(table, s)
	if err != nil {
		t.Fatalf("emit.Go: %v", err)
	}
	tests, err := emit.Test(table, s)
	if err != nil {
		t.Fatalf("emit.Test: %v", err)
	}
	return generated{string(code), string(tests), string(emit.Mermaid(table)), string(emit.DOT(table))}
}

// Docs and messages are written into the generated code as Go strings,
// quoted: a quote or a backslash in them keeps the code valid, and
// Table() and the sentinels carry them as written.
func TestGeneratedCodeQuotesDocsAndMessages(t *testing.T) {
	g := emitAll(t, "gate.yaml", gateTable)
	for _, want := range []string{
		"Doc:       " + strconv.Quote(`A gate with "quotes" and a back\slash.`) + ",",
		"{Name: \"Open\", Doc: " + strconv.Quote(`Lets "people" through.`) + ", Terminal: false}",
		"ErrNotNow = errors.New(" + strconv.Quote(`gate: not "now" \ later`) + ")",
		"Doc: " + strconv.Quote(`the "main" way`) + "}",
	} {
		if !strings.Contains(g.code, want) {
			t.Errorf("the code lacks %s:\n%s", want, g.code)
		}
	}
}

// A table without docs gives comments without dangling colons: a name
// with nothing after it ends with a period.
func TestNoDocsNoDanglingColons(t *testing.T) {
	g := emitAll(t, "bare.yaml", "machine: Bare\npackage: bare\ninitial: A\nunhandled: ignore\nstates:\n  A: {}\n  B: {terminal: true}\n"+
		"events:\n  Boot: {}\nactions:\n  Repair: {}\nrows:\n  - {from: A, on: Boot, to: B, do: Repair}\n")
	for i, line := range strings.Split(g.code, "\n") {
		if c := strings.TrimSpace(line); strings.HasPrefix(c, "//") && strings.HasSuffix(c, ":") {
			t.Errorf("line %d: %q", i+1, line)
		}
	}
	for _, want := range []string{"// EventBoot.\n", "// Repair (action).\n"} {
		if !strings.Contains(g.code, want) {
			t.Errorf("the code lacks %q:\n%s", want, g.code)
		}
	}
}

// The DOT diagram quotes a doc holding a quote, as DOT escapes one.
func TestDOTQuotesDocs(t *testing.T) {
	g := emitAll(t, "gate.yaml", gateTable)
	if want := `"Open" [tooltip="Lets \"people\" through."`; !strings.Contains(g.dot, want) {
		t.Errorf("the DOT diagram lacks %s:\n%s", want, g.dot)
	}
}

// Both diagrams point [*] at the initial state, wherever it stands among
// the states, and draw a stay row as a loop labelled "(stays)", dotted in
// DOT like a no-op.
func TestDiagramsOfInitialStateAndStayRows(t *testing.T) {
	g := emitAll(t, "gate.yaml", gateTable)
	for _, want := range []string{"    [*] --> Closed\n", "    Open --> Open: Knock / Greet (stays)\n"} {
		if !strings.Contains(g.mermaid, want) {
			t.Errorf("the Mermaid diagram lacks %q:\n%s", want, g.mermaid)
		}
	}
	for _, want := range []string{"  \"[*]\" -> \"Closed\";\n", "  \"Open\" -> \"Open\" [label=\"Knock\\n/ Greet (stays)\", style=dotted];\n"} {
		if !strings.Contains(g.dot, want) {
			t.Errorf("the DOT diagram lacks %q:\n%s", want, g.dot)
		}
	}
}

// The guards of a row alone in its cell are called in the order the row
// writes them, each refusing before the next is called.
func TestGuardsOfALoneRowInOrder(t *testing.T) {
	g := emitAll(t, "gate.yaml", gateTable)
	_, body, ok := strings.Cut(g.code, "func (m *Gate) Knock(")
	body, _, _ = strings.Cut(body, "\n}\n")
	_, body, _ = strings.Cut(body, "case StateClosed:")
	friendly, awake := strings.Index(body, "if !m.h.Friendly(who) {"), strings.Index(body, "if !m.h.Awake() {")
	if !ok || friendly < 0 || awake < 0 || friendly > awake {
		t.Errorf("Knock in Closed does not call Friendly, then Awake:\n%s", body)
	}
}

// A cell whose later row needs the first guard of an earlier row (the
// earlier row fails on its second guard) has tests generated for it.
func TestRowsNeedingAnEarlierRowsFirstGuard(t *testing.T) {
	g := emitAll(t, "gate.yaml", gateTable)
	if want := `"row5/Closed/Lock"`; !strings.Contains(g.tests, want) {
		t.Errorf("the tests lack case %s", want)
	}
}

// guardsTable is a valid table whose cell (A, Go) has n guards, one per
// row.
func guardsTable(n int) string {
	var b strings.Builder
	b.WriteString("machine: Many\npackage: many\ninitial: A\nunhandled: ignore\n" +
		"states: {A: {}, B: {terminal: true}}\nevents: {Go: {}}\nerrors: {ErrNo: {}}\nguards:\n")
	for i := range n {
		fmt.Fprintf(&b, "  G%d: {error: ErrNo}\n", i)
	}
	b.WriteString("rows:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {from: A, on: Go, if: [G%d], to: B}\n", i)
	}
	return b.String()
}

// GuardOutcomes enumerates every combination of the guards of a cell of
// up to 10 guards; for a cell of more, every guard holding, each failing
// with the others holding, and the first k failing, for every k (the
// random walk does the rest).
func TestGuardOutcomesUpToTenGuards(t *testing.T) {
	for n, want := range map[int]int{9: 1 << 9, 10: 1 << 10, 11: 1 + 11 + 9 + 1} {
		g := emitAll(t, "many.yaml", guardsTable(n))
		if got := strings.Count(g.tests, `{Name: "A/Go/`); got != want {
			t.Errorf("%d guards: %d GuardOutcomes cases, want %d", n, got, want)
		}
		// No combination is tested twice in place of another.
		names := regexp.MustCompile(`\{Name: "A/Go/[^"]*"`).FindAllString(g.tests, -1)
		if distinct := len(slices.Compact(slices.Sorted(slices.Values(names)))); distinct != want {
			t.Errorf("%d guards: %d distinct GuardOutcomes cases, want %d", n, distinct, want)
		}
	}
	g := emitAll(t, "many.yaml", guardsTable(11))
	// Each row of the cell (one guard each) is taken, and the cell refused;
	// each guard fails once with the others holding (the last alone).
	for _, want := range []string{
		`{Name: "A/Go/+G0+G1+G2+G3+G4+G5+G6+G7+G8+G9+G10", From: StateA, Event: EventGo, Pass: 0x7ff, To: StateB, Row: 0, Calls: "G0"}`,
		`{Name: "A/Go/+G0+G1+G2+G3+G4+G5+G6+G7+G8+G9-G10", From: StateA, Event: EventGo, Pass: 0x3ff, To: StateB, Row: 0, Calls: "G0"}`,
		`{Name: "A/Go/-G0+G1+G2+G3+G4+G5+G6+G7+G8+G9+G10", From: StateA, Event: EventGo, Pass: 0x7fe, To: StateB, Row: 1, Calls: "G0,G1"}`,
		`{Name: "A/Go/-G0-G1-G2-G3-G4-G5-G6-G7-G8-G9+G10", From: StateA, Event: EventGo, Pass: 0x400, To: StateB, Row: 10, Calls: "G0,G1,G2,G3,G4,G5,G6,G7,G8,G9,G10"}`,
		`{Name: "A/Go/-G0-G1-G2-G3-G4-G5-G6-G7-G8-G9-G10", From: StateA, Event: EventGo, Pass: 0x0, To: StateA, Row: -1, Err: "ErrNo", Guard: "G0", Calls: "G0,G1,G2,G3,G4,G5,G6,G7,G8,G9,G10"}`,
	} {
		if !strings.Contains(g.tests, want) {
			t.Errorf("11 guards: no case %s", want)
		}
	}
}

// The generated tests reach every state by a shortest path: breadth
// first, not by the first path found.
func TestPathsAreShortest(t *testing.T) {
	src := "machine: Maze\npackage: maze\ninitial: A\nunhandled: ignore\n" +
		"states: {A: {}, B: {}, C: {}, E: {}, D: {terminal: true}}\n" +
		"events: {ToB: {}, ToC: {}, ToE: {}, ToD: {}}\n" +
		"rows:\n" +
		"  - {from: A, on: ToB, to: B}\n" +
		"  - {from: A, on: ToC, to: C}\n" +
		"  - {from: C, on: ToE, to: E}\n" +
		"  - {from: E, on: ToD, to: D}\n" +
		"  - {from: B, on: ToD, to: D}\n"
	g := emitAll(t, "maze.yaml", src)
	line := regexp.MustCompile(`(?m)^\t\tStateD: \{(.*)\},$`).FindStringSubmatch(g.tests)
	if line == nil {
		t.Fatalf("no path to D in:\n%s", g.tests)
	}
	if got := strings.Count(line[1], "{Event:"); got != 2 {
		t.Errorf("the path to D takes %d steps, want 2: %s", got, line[0])
	}
}

// A second run of the generator leaves the files it would write the same
// untouched (their modification times stay), and rewrites a file that
// differs.
func TestUnchangedFilesAreNotRewritten(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "job.yaml")
	copyFile(t, "testdata/job/job.yaml", in)
	args := []string{"-in", in, "-out", dir, "-mermaid", filepath.Join(dir, "job.mmd")}
	var stderr bytes.Buffer
	if code := run(args, &stderr); code != 0 {
		t.Fatalf("gen exited %d: %s", code, stderr.String())
	}
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	files := []string{"job_fsm.go", "job_fsm_test.go", "job.mmd"}
	for _, f := range files {
		if err := os.Chtimes(filepath.Join(dir, f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(filepath.Join(dir, "job.mmd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "job.mmd"), []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := run(args, &stderr); code != 0 {
		t.Fatalf("gen exited %d: %s", code, stderr.String())
	}
	for _, f := range files[:2] {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !info.ModTime().Equal(old) {
			t.Errorf("%s was rewritten though it had not changed", f)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "job.mmd")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("job.mmd was not rewritten: %q, %v", got, err)
	}
}

// When one requested file cannot be made (a Markdown file without the
// diagram markers), the generator writes none, not even the code.
func TestNothingWrittenWhenMarkdownFails(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	md := filepath.Join(dir, "README.md")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(md, []byte("# No markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run([]string{"-in", "testdata/job/job.yaml", "-out", out, "-markdown", md}, &stderr); code != 1 || !strings.Contains(stderr.String(), "markers") {
		t.Fatalf("gen exited %d: %s", code, stderr.String())
	}
	if entries, err := os.ReadDir(out); err != nil || len(entries) > 0 {
		t.Errorf("gen wrote %d files though the Markdown file lacks its markers (%v)", len(entries), err)
	}
	// A marker it cannot take is reported as file:line: message.
	if err := os.WriteFile(md, []byte("# Two\n\n"+emit.BeginMarker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run([]string{"-in", "testdata/job/job.yaml", "-out", out, "-markdown", md}, &stderr); code != 1 || !strings.Contains(stderr.String(), md+":3: a begin marker with no end marker") {
		t.Fatalf("gen exited %d: %s", code, stderr.String())
	}
}

// When one file cannot be written (here the Mermaid target is a
// directory), the generator writes none of the others either, and leaves
// no temporary file behind.
func TestNothingWrittenWhenAWriteFails(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	mmd := filepath.Join(dir, "job.mmd")
	if err := os.Mkdir(mmd, 0o755); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := run([]string{"-in", "testdata/job/job.yaml", "-out", out, "-dot", filepath.Join(dir, "job.dot"), "-mermaid", mmd}, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "job.mmd") {
		t.Fatalf("gen exited %d: %s", code, stderr.String())
	}
	for _, d := range []string{dir, out} {
		entries, err := os.ReadDir(d)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "out" && e.Name() != "job.mmd" {
				t.Errorf("gen left %s in %s", e.Name(), d)
			}
		}
	}
}

// A target that is a symbolic link stays one (the file it points to is
// written), and a file that is rewritten keeps its permissions.
func TestWriteThroughLinksKeepingModes(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.mmd")
	link := filepath.Join(dir, "job.mmd")
	dot := filepath.Join(dir, "job.dot")
	for _, f := range []string{real, dot} {
		if err := os.WriteFile(f, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("real.mmd", link); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run([]string{"-in", "testdata/job/job.yaml", "-mermaid", link, "-dot", dot}, &stderr); code != 0 {
		t.Fatalf("gen exited %d: %s", code, stderr.String())
	}
	if info, err := os.Lstat(link); err != nil || info.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link is no longer a link: %v, %v", info, err)
	}
	for _, f := range []string{real, dot} {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte("Job")) {
			t.Errorf("%s was not written: %q, %v", f, b, err)
		}
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, %v; want it kept (0640)", f, info.Mode().Perm(), err)
		}
	}
}

// A link to a file not written yet stays a link too, through a chain of
// links (the file at its end is created, as a shell's > would create
// it), and a loop of links is an error that writes nothing.
func TestWriteThroughDanglingLinks(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "job.mmd")
	site := filepath.Join(dir, "site")
	if err := os.Mkdir(site, 0o755); err != nil {
		t.Fatal(err)
	}
	// job.mmd -> site/link.mmd -> (absolute) site/job.mmd, not there yet.
	if err := os.Symlink(filepath.Join("site", "link.mmd"), link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(site, "job.mmd"), filepath.Join(site, "link.mmd")); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run([]string{"-in", "testdata/job/job.yaml", "-mermaid", link}, &stderr); code != 0 {
		t.Fatalf("gen exited %d: %s", code, stderr.String())
	}
	for _, l := range []string{link, filepath.Join(site, "link.mmd")} {
		if info, err := os.Lstat(l); err != nil {
			t.Error(err)
		} else if info.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is no longer a link: %v", l, info.Mode())
		}
	}
	if b, err := os.ReadFile(filepath.Join(site, "job.mmd")); err != nil || !bytes.Contains(b, []byte("Job")) {
		t.Errorf("the file at the end of the links was not written: %q, %v", b, err)
	}

	loop := filepath.Join(dir, "loop.mmd")
	if err := os.Symlink("loop.mmd", loop); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run([]string{"-in", "testdata/job/job.yaml", "-mermaid", loop}, &stderr); code != 1 || !strings.Contains(stderr.String(), "too many levels of symbolic links") {
		t.Errorf("a loop of links: gen exited %d: %s", code, stderr.String())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"job.mmd", "loop.mmd", "site"}; !slices.Equal(names, want) {
		t.Errorf("after the loop the directory holds %q, want %q", names, want)
	}

	// A link whose target goes up ("..") from a directory reached through
	// another link goes up from where the link really is, as the kernel
	// resolves it: alias -> site/sub, alias/up.mmd -> ../up.mmd is
	// site/up.mmd, not up.mmd beside alias.
	if err := os.Mkdir(filepath.Join(site, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("site", "sub"), filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "up.mmd"), filepath.Join(site, "sub", "up.mmd")); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run([]string{"-in", "testdata/job/job.yaml", "-mermaid", filepath.Join(dir, "alias", "up.mmd")}, &stderr); code != 0 {
		t.Fatalf("gen exited %d: %s", code, stderr.String())
	}
	if b, err := os.ReadFile(filepath.Join(site, "up.mmd")); err != nil || !bytes.Contains(b, []byte("Job")) {
		t.Errorf("site/up.mmd, where the link leads, was not written: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "up.mmd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("up.mmd was written beside the alias: %v", err)
	}
}

// The diagram markers of a Markdown file with CRLF line endings are
// found, the diagram goes between them with CRLF line endings too, and
// embedding it again changes nothing.
func TestEmbedInCRLFMarkdown(t *testing.T) {
	doc := "# Title\r\n" + emit.BeginMarker + "\r\nold\r\n" + emit.EndMarker + "\r\nAfter.\r\n"
	got, err := emit.Embed([]byte(doc), []byte("stateDiagram-v2\n    [*] --> A\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "# Title\r\n" + emit.BeginMarker + "\r\n```mermaid\r\nstateDiagram-v2\r\n    [*] --> A\r\n```\r\n" + emit.EndMarker + "\r\nAfter.\r\n"
	if string(got) != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	again, err := emit.Embed(got, []byte("stateDiagram-v2\n    [*] --> A\n"))
	if err != nil || string(again) != want {
		t.Errorf("embedding again: %q, %v", again, err)
	}
}

// tableModule generates the table src into a Go module of its own in a
// temporary directory and returns the directory.
func tableModule(t *testing.T, name, src string) string {
	return genModule(t, "example.com/m", name, func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLargestPayloadBuildsAndRuns: a machine whose payload is as large
// as the loader allows (just under 16 MiB, passed by value from the event
// method to a guard) compiles, and its generated tests fire it without
// overflowing a goroutine's stack.
func TestLargestPayloadBuildsAndRuns(t *testing.T) {
	const src = `machine: Big
package: big
initial: A
unhandled: ignore
states:
  A: {}
  B: {terminal: true}
events:
  Go: {payload: {v: "[16<<20 - 1]byte"}}
guards:
  Ok: {error: ErrNo, uses: [v]}
errors:
  ErrNo: {}
rows:
  - {from: A, on: Go, if: [Ok], to: B}
`
	if _, err := fsm.Load("big.yaml", []byte(src)); err != nil {
		t.Fatal(err)
	}
	dir := tableModule(t, "big.yaml", src)
	out, ok := goTest(t, dir, "-v", "-run", "^(TestBigShortestPaths|TestBigRows|TestBigMatrix)$", ".")
	if !ok {
		t.Fatalf("the generated code of a payload just under the limit:\n%s", out)
	}
	if !strings.Contains(out, "--- PASS: TestBigShortestPaths") {
		t.Fatalf("the generated tests did not run:\n%s", out)
	}
}

// TestTableNameWithABackslash: a table whose file name holds a backslash
// (a name like any other on Unix) names itself in Table() as the
// generated tests load it, so a freshly generated machine passes them.
func TestTableNameWithABackslash(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("a backslash separates paths on Windows")
	}
	const src = "machine: M\npackage: m\ninitial: A\nunhandled: ignore\n" +
		"states:\n  A: {}\n  B: {terminal: true}\n" +
		"events:\n  Go: {}\nrows:\n  - {from: A, on: Go, to: B}\n"
	dir := tableModule(t, `a\b.yaml`, src)
	if out, ok := goTest(t, dir, "-run", "TestMTableIsCurrent", "."); !ok {
		t.Fatalf("the generated tests of a fresh machine fail:\n%s", out)
	}
}

// TestEdgeTablePassesItsGeneratedTests: a table at the edges of what is
// allowed builds and passes its generated tests: as many states as a
// table may have (fsm.MaxStates), a payload holding a function in an
// unexported field, locks of the standard library where a payload may
// hold them (and the machine, by pointer), the largest channel element
// the loader lets through, a guard reading a field whose type two events
// spell differently, and an import of a module whose path holds no dot,
// from a package named otherwise than its path's last element. go vet
// finds nothing wrong in the generated code either.
func TestEdgeTablePassesItsGeneratedTests(t *testing.T) {
	var src strings.Builder
	src.WriteString("machine: Edge\npackage: edge\ninitial: S1\nunhandled: ignore\n" +
		"imports:\n  foo: mlocal/foo\n  sync: sync\n  atomic: sync/atomic\nstates:\n")
	for i := 1; i <= fsm.MaxStates; i++ {
		fmt.Fprintf(&src, "  S%d: {terminal: %v}\n", i, i == fsm.MaxStates)
	}
	src.WriteString("events:\n  Go: {payload: {v: foo.T, s: \"struct{ f func() }\", a: any}}\n" +
		"  Run: {payload: {v: foo.T, s: \"struct {f func()}\", a: \"interface{}\"}}\n" +
		"  Lock: {payload: {mu: \"*sync.Mutex\", rw: \"[]sync.RWMutex\", once: \"map[int]sync.Once\", value: atomic.Value, machine: \"*Edge\", ch: \"chan [8191]int\", padded: \"chan [4095]struct{ a bool; b int64 }\"}}\n" +
		"guards:\n  Ok: {error: ErrNo, uses: [v, s, a]}\nerrors:\n  ErrNo: {}\nrows:\n")
	for i := 1; i < fsm.MaxStates; i++ {
		fmt.Fprintf(&src, "  - {from: S%d, on: Go, if: [Ok], to: S%d}\n", i, i+1)
	}
	src.WriteString("  - {from: S1, on: Run, if: [Ok], to: S2}\n  - {from: S1, on: Lock, noop: true}\n")
	dir := genModule(t, "mlocal", "edge.yaml", func(dir string) {
		if err := os.MkdirAll(filepath.Join(dir, "foo"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "foo", "foo.go"), []byte("package bar\n\ntype T int\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "edge.yaml"), []byte(src.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if out, ok := goTest(t, dir, "-v", "."); !ok || !strings.Contains(out, "--- PASS: TestEdgeStrings") {
		t.Fatalf("the generated tests of the edge table:\n%s", out)
	}
	if out, ok := goCommand(t, dir, "vet", "."); !ok {
		t.Fatalf("go vet of the edge table's generated code:\n%s", out)
	}
}

// Every guard of a row is drawn on its arrow, rows between the same two
// states in different styles stay apart as arrows of their own (a move
// of Locked to itself solid, a stay row of Locked dotted), and a state's
// note names the error it refuses other events with, its own.
func TestDiagramsDrawEveryGuardAndEachStyle(t *testing.T) {
	g := emitAll(t, "gate.yaml", gateTable)
	for _, want := range []string{
		"    Closed --> Open: Knock [Friendly ∧ Awake] / Greet\n",
		"    Closed --> Locked: Lock [Awake ∧ Quiet]\n",
		"    Locked --> Locked: Knock [Friendly] / Greet (stays)\n",
		"    note right of Gone\n        other events: ⊘ ErrGone\n",
	} {
		if !strings.Contains(g.mermaid, want) {
			t.Errorf("the Mermaid diagram lacks %q:\n%s", want, g.mermaid)
		}
	}
	for _, want := range []string{
		`  "Closed" -> "Open" [label="Knock\n[Friendly ∧ Awake]\n/ Greet"];` + "\n",
		`  "Closed" -> "Locked" [label="Lock\n[Awake ∧ Quiet]"];` + "\n",
		`  "Locked" -> "Locked" [label="Lock\n/ Count"];` + "\n",
		`  "Locked" -> "Locked" [label="Knock\n[Friendly]\n/ Greet (stays)", style=dotted];` + "\n",
		`  "Gone" [tooltip="Removed.", xlabel="other events: ⊘ ErrGone", peripheries=2];` + "\n",
	} {
		if !strings.Contains(g.dot, want) {
			t.Errorf("the DOT diagram lacks %q:\n%s", want, g.dot)
		}
	}
}

// TestGateTablePassesItsGeneratedTests: the gate table, whose cells the
// job example lacks (a stay row, guards of two in a cell of one row and
// in a cell of two rows, a refusal decided by a row's second guard),
// builds and passes its generated tests, which check its dispatch
// against the table's semantics.
func TestGateTablePassesItsGeneratedTests(t *testing.T) {
	dir := tableModule(t, "gate.yaml", gateTable)
	out, ok := goTest(t, dir, "-v", "-run", "^TestGate(Matrix|GuardOutcomes|Rows|ShortestPaths|TableIsCurrent)$", ".")
	if !ok || !strings.Contains(out, "--- PASS: TestGateGuardOutcomes") || !strings.Contains(out, "--- PASS: TestGateRows") {
		t.Fatalf("the generated tests of the gate table:\n%s", out)
	}
}

// cgoOnly is s where the build takes cgo files, and empty where it leaves
// them out.
func cgoOnly(s string) string {
	if !build.Default.CgoEnabled {
		return ""
	}
	return s
}

// gen refuses to write Go code into a directory that holds another
// package, or the code it generated for another machine, naming it, and
// writes nothing; files the build leaves out, and the files gen writes
// itself (generated once for another package), do not count.
func TestOutputDirectoryOfAnotherPackage(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string // in the error; empty: accepted
	}{
		{"a main package", map[string]string{"main.go": "package main\n"},
			"holds package main (main.go), not the table's package job"},
		{"two packages", map[string]string{"a.go": "package a\n", "b.go": "package b\n"},
			"holds packages a (a.go) and b (b.go), and the table's package is job"},
		{"tests of another package only", map[string]string{"x_test.go": "package x\n"},
			"holds package x (x_test.go), not the table's package job"},
		{"cgo code of another package", map[string]string{"c.go": "package c\n\nimport \"C\"\n"},
			cgoOnly("holds package c (c.go), not the table's package job")},
		{"a file the build leaves out", map[string]string{"tool.go": "//go:build ignore\n\npackage main\n"}, ""},
		{"the table's package and its external tests", map[string]string{"doc.go": "package job\n", "job_ext_test.go": "package job_test\n"}, ""},
		{"files generated for another package", map[string]string{"job_fsm.go": "package old\n", "job_fsm_test.go": "package old\n"}, ""},
		{"the code generated for another machine", map[string]string{"doc.go": "package job\n",
			"old_fsm.go": "// Code generated by tablefsm/gen from old.yaml. DO NOT EDIT.\n\npackage job\n"},
			"holds old_fsm.go, generated by tablefsm/gen for another machine: a package holds one machine (delete it if the table's machine was renamed)"},
		{"the tests generated for another machine", map[string]string{
			"old_fsm_test.go": "// Code generated by tablefsm/gen from old.yaml. DO NOT EDIT.\n\npackage job\n"},
			"holds old_fsm_test.go, generated by tablefsm/gen for another machine: a package holds one machine (delete it if the table's machine was renamed)"},
		{"a file generated by another tool", map[string]string{"x.pb.go": "// Code generated by protoc-gen-go. DO NOT EDIT.\n\npackage job\n"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			for name, src := range c.files {
				if err := os.WriteFile(filepath.Join(out, name), []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stderr bytes.Buffer
			code := run([]string{"-in", "testdata/job/job.yaml", "-out", out}, &stderr)
			if c.want == "" {
				if code != 0 {
					t.Fatalf("gen exited %d: %s", code, stderr.String())
				}
				return
			}
			if want := out + ": " + c.want + "\n"; code != 1 || stderr.String() != want {
				t.Fatalf("gen exited %d: %q, want 1: %q", code, stderr.String(), want)
			}
			if _, err := os.Stat(filepath.Join(out, "job_fsm.go")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("job_fsm.go written beside another package: %v", err)
			}
		})
	}
}

// Two flags naming one file, or a flag naming the table, are refused
// before anything is written: the file written last would replace the
// other, and the table would be lost.
func TestOutputsNamingOneFile(t *testing.T) {
	for _, c := range []struct {
		name string
		args func(dir string) []string
		want string // in the error, after the path
	}{
		{"a diagram over the table", func(dir string) []string {
			return []string{"-mermaid", filepath.Join(dir, "job.yaml")}
		}, "-mermaid names the table (-in)"},
		{"the code over the table", func(dir string) []string {
			return []string{"-out", dir, "-dot", filepath.Join(dir, "job_fsm.go")}
		}, "-out and -dot name one file"},
		{"two diagrams in one file", func(dir string) []string {
			return []string{"-mermaid", filepath.Join(dir, "job.txt"), "-dot", filepath.Join(dir, ".", "job.txt")}
		}, "-mermaid and -dot name one file"},
		{"a diagram over the table through a link", func(dir string) []string {
			link := filepath.Join(dir, "link.mmd")
			if err := os.Symlink("job.yaml", link); err != nil {
				t.Fatal(err)
			}
			return []string{"-mermaid", link}
		}, "-mermaid names the table (-in)"},
		{"two diagrams through a link to a file not there yet", func(dir string) []string {
			link := filepath.Join(dir, "link.dot")
			if err := os.Symlink("job.dot", link); err != nil {
				t.Fatal(err)
			}
			return []string{"-dot", filepath.Join(dir, "job.dot"), "-mermaid", link}
		}, "-mermaid and -dot name one file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "job.yaml")
			copyFile(t, "testdata/job/job.yaml", in)
			table, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"-in", in}, c.args(dir)...)
			before, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			if code := run(args, &stderr); code != 1 || !strings.Contains(stderr.String(), ": "+c.want) {
				t.Fatalf("gen %q exited %d: %q, want 1 and %q", args, code, stderr.String(), c.want)
			}
			if b, err := os.ReadFile(in); err != nil || !bytes.Equal(b, table) {
				t.Errorf("the table was overwritten: %.40q, %v", b, err)
			}
			after, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before) {
				t.Errorf("gen wrote files though it refused: %v", after)
			}
		})
	}
}

// TestPayloadInterfacesAsGoVetSeesThem: a method of an interface written
// in a payload type is refused exactly when go vet's stdmethods check
// reports it, since go vet runs on the generated code. Both judge the
// same types: go vet as declarations in a package of their own.
func TestPayloadInterfacesAsGoVetSeesThem(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not available")
	}
	types := []string{
		"interface{ ReadByte() (byte, error) }",
		"interface{ ReadByte() (byte, bool) }",
		"interface{ ReadByte() (uint8, error) }",
		"interface{ ReadByte() (b byte, err error) }",
		"interface{ ReadFrom(r io.Reader) (n int64, err error) }",
		"interface{ ReadFrom(r myio.Reader) (int64, error) }",
		"interface{ ReadFrom(myio.Reader) int }",
		"interface{ ReadFrom(string) int }",
		"interface{ WriteTo(w io.Writer) (int, error) }",
		"interface{ WriteTo(a, b int) }",
		"interface{ Seek(string) int }",
		"interface{ Seek(int64, int) int64 }",
		"interface{ Seek(offset int64, whence int) (int64, error) }",
		"interface{ GobDecode(...byte) error }",
		"interface{ GobDecode(string) error }",
		"interface{ MarshalJSON() ([]byte, error); UnmarshalJSON([]byte) error }",
		"interface{ MarshalJSON() string }",
		"struct{ f func(interface{ WriteByte(rune) error }) }",
		"map[string]interface{ UnreadRune() }",
		"interface{ Format(fmt.State, rune) }",
		"interface{ Format(fmt.State, rune) error }",
		"interface{ Format(string) string }",
		"interface{ Scan(fmt.ScanState, rune) error }",
		"interface{ Scan(fmt.ScanState) error }",
		"interface{ MarshalXML(*xml.Encoder, xml.StartElement) error }",
		"interface{ MarshalXML(xml.Encoder, xml.StartElement) error }",
		"interface{ Unwrap() int }",
		"interface{ error; Unwrap() int }",
		"interface{ Error() string; Unwrap() []error }",
		"interface{ Error() string; Unwrap() error }",
		"interface{ Error() int; Unwrap() int }",
		"interface{ error; Is(any) bool }",
		"interface{ error; Is(error) bool }",
		"interface{ Is(any) bool }",
		"interface{ error; As(interface{}) bool }",
		"interface{ error; As(any) (bool) }",
		"interface{ error; As(error) bool }",
		"interface{ ReadRune() (rune, int, error); ReadRune2() }",
		"interface{ ReadRune() (r rune, size int) }",
	}
	const imports = `import (
	"encoding/xml"
	"fmt"
	"io"
	myio "io"
)

var _ = xml.Encoder{}
var _ fmt.State
var _ io.Reader
var _ myio.Reader
`
	dir := t.TempDir()
	src := "package p\n\n" + imports
	firstLine := strings.Count(src, "\n") + 1
	for i, typ := range types {
		src += fmt.Sprintf("type T%d = %s\n", i, typ)
	}
	for name, content := range map[string]string{"go.mod": "module example.com/p\n\ngo 1.26\n", "p.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, ok := goCommand(t, dir, "vet", "-stdmethods", ".")
	if !ok && !strings.Contains(out, "should have signature") {
		t.Fatalf("go vet: %s", out)
	}
	reported := map[int]bool{}
	for _, m := range regexp.MustCompile(`p\.go:(\d+):\d+: method`).FindAllStringSubmatch(out, -1) {
		line, _ := strconv.Atoi(m[1])
		reported[line-firstLine] = true
	}
	if len(reported) == 0 {
		t.Fatalf("go vet reported none of the types:\n%s", out)
	}
	for i, typ := range types {
		var used []string
		for _, imp := range []string{"io: io", "myio: io", "fmt: fmt", "xml: encoding/xml"} {
			if name, _, _ := strings.Cut(imp, ":"); regexp.MustCompile(`\b` + name + `\.`).MatchString(typ) {
				used = append(used, imp)
			}
		}
		table := fmt.Sprintf("machine: M\npackage: p\ninitial: A\nunhandled: ignore\n"+
			"imports: {%s}\n"+
			"states: {A: {}, B: {terminal: true}}\n"+
			"events: {E: {payload: {v: %q}}}\n"+
			"rows: [{from: A, on: E, to: B}]\n", strings.Join(used, ", "), typ)
		_, err := fsm.Load("t.yaml", []byte(table))
		switch {
		case reported[i] && (err == nil || !strings.Contains(err.Error(), "stdmethods")):
			t.Errorf("%s: go vet reports it, the loader does not: %v", typ, err)
		case !reported[i] && err != nil:
			t.Errorf("%s: go vet lets it be, the loader refuses it: %v", typ, err)
		}
	}
}
