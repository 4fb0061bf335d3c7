package docs

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/grpcapi/node"
)

const guide = "guide.md"

// block is one fenced code block of a Markdown file.
type block struct {
	lang string
	line int // of the opening fence
	text string
}

func fencedBlocks(t *testing.T, md string) []block {
	t.Helper()
	var blocks []block
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		lang, ok := strings.CutPrefix(lines[i], "```")
		if !ok {
			continue
		}
		start := i
		var body []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			body = append(body, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: code block never closed", guide, start+1)
		}
		blocks = append(blocks, block{lang: lang, line: start + 1, text: strings.Join(body, "\n")})
	}
	return blocks
}

// sources reads the files of the module (from its root, "..") whose path
// passes keep.
func sources(t *testing.T, keep func(path string) bool) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		rel := filepath.ToSlash(strings.TrimPrefix(path, ".."+string(filepath.Separator)))
		if d.IsDir() || !keep(rel) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no source files found")
	}
	return files
}

// dedent removes one leading tab from every line that has one: the body
// of a function, as the guide shows it.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "\t")
	}
	return strings.Join(lines, "\n")
}

// holdsLines reports whether text holds want as whole lines.
func holdsLines(text, want string) bool {
	return strings.Contains("\n"+text+"\n", "\n"+want+"\n")
}

// TestGuideGoSnippets: every ```go block of the guide is a run of whole
// lines of an example_test.go file (compiled and run by go test) or of a
// Go file under examples/, as written or with one level of indentation
// removed (the body of an Example function).
func TestGuideGoSnippets(t *testing.T) {
	md := readGuide(t)
	files := sources(t, func(p string) bool {
		return strings.HasSuffix(p, "example_test.go") ||
			strings.HasPrefix(p, "examples/") && strings.HasSuffix(p, ".go")
	})
	n := 0
	for _, b := range fencedBlocks(t, md) {
		if b.lang != "go" {
			continue
		}
		n++
		if !inAny(files, b.text) {
			t.Errorf("%s:%d: this Go snippet is not in any example_test.go or examples/ file; "+
				"copy it from the example it comes from (or change the example first):\n%s", guide, b.line, b.text)
		}
	}
	if n == 0 {
		t.Errorf("%s has no Go snippet", guide)
	}
}

func inAny(files map[string]string, snippet string) bool {
	for _, src := range files {
		if holdsLines(src, snippet) || holdsLines(dedent(src), snippet) {
			return true
		}
	}
	return false
}

// TestGuideYAMLSnippets: every ```yaml block of the guide is a run of
// whole lines of a YAML file of the module (the tables it shows).
func TestGuideYAMLSnippets(t *testing.T) {
	md := readGuide(t)
	files := sources(t, func(p string) bool { return strings.HasSuffix(p, ".yaml") })
	for _, b := range fencedBlocks(t, md) {
		if b.lang == "yaml" && !inAny(files, b.text) {
			t.Errorf("%s:%d: this YAML snippet is not in any .yaml file of the module:\n%s", guide, b.line, b.text)
		}
	}
}

// TestGuideDiagnostics: the generator's output the guide shows for the
// broken table is what loading that table reports today.
func TestGuideDiagnostics(t *testing.T) {
	src, err := os.ReadFile("../examples/order/testdata/broken.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// gen runs in examples/order with -in testdata/broken.yaml.
	_, err = fsm.Load("testdata/broken.yaml", src)
	if err == nil {
		t.Fatal("examples/order/testdata/broken.yaml loads without a problem")
	}
	if md := readGuide(t); !holdsLines(md, err.Error()) {
		t.Errorf("%s does not show what gen prints for examples/order/testdata/broken.yaml; it prints:\n%s", guide, err)
	}
}

// TestGuideFollowerdHelp: the guide shows followerd --help as it is.
func TestGuideFollowerdHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := node.Main(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("followerd --help exited with %d: %s", code, stderr.String())
	}
	help := strings.TrimRight(stdout.String()+stderr.String(), "\n")
	if md := readGuide(t); !holdsLines(md, help) {
		t.Errorf("the followerd --help shown in %s is out of date; followerd prints:\n%s", guide, help)
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestGuideLinks: every relative link of the guide names a file or
// directory that exists, and every #anchor a heading of its Markdown file.
func TestGuideLinks(t *testing.T) {
	md := readGuide(t)
	for i, line := range strings.Split(md, "\n") {
		for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
			if strings.Contains(m[1], "://") {
				continue
			}
			target, anchor, _ := strings.Cut(m[1], "#")
			if target == "" {
				target = guide
			}
			if _, err := os.Stat(filepath.FromSlash(target)); err != nil {
				t.Errorf("%s:%d: broken link %s", guide, i+1, m[1])
				continue
			}
			if anchor != "" && !slices.Contains(anchors(t, target), anchor) {
				t.Errorf("%s:%d: %s has no heading #%s", guide, i+1, target, anchor)
			}
		}
	}
}

// anchors returns the anchors GitHub gives the headings of a Markdown file.
func anchors(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(file))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inCode := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		heading := strings.TrimLeft(line, "#")
		if inCode || heading == line || !strings.HasPrefix(heading, " ") {
			continue
		}
		var slug strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				slug.WriteRune(r)
			case r == ' ':
				slug.WriteByte('-')
			}
		}
		out = append(out, slug.String())
	}
	return out
}

func readGuide(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(guide)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
