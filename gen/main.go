// Command gen turns a lifecycle table into Go code, generated tests and
// diagrams.
//
//	go run github.com/tablefsm/tablefsm/gen -in transitions.yaml -out follower \
//	    -mermaid docs/lifecycle.mmd -dot docs/lifecycle.dot -markdown README.md
//
// In -out it writes <machine>_fsm.go (the machine) and <machine>_fsm_test.go
// (its tests), where <machine> is the table's machine name in lower case
// (machine: Order gives order_fsm.go); -out must hold the table's package
// or no Go package yet, and no code gen generated for another machine.
// -mermaid and
// -dot write the diagrams; -markdown replaces the diagram between the
// markers of a Markdown file (each on a line of its own, outside fenced
// code blocks). When the table is invalid, gen prints every
// problem as file:line:col: message and exits with status 1, writing
// nothing.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/build"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tablefsm/tablefsm/fsm"
	"github.com/tablefsm/tablefsm/gen/emit"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is the command without the process: it returns the exit status.
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "the table to read (required)")
	out := fs.String("out", "", "the package directory to write the Go code and tests into")
	mermaid := fs.String("mermaid", "", "write a Mermaid state diagram to this file")
	dot := fs.String("dot", "", "write a Graphviz DOT diagram to this file")
	markdown := fs.String("markdown", "", "embed the Mermaid diagram between the markers of this Markdown file")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: gen -in TABLE.yaml [-out DIR] [-mermaid FILE] [-dot FILE] [-markdown FILE]\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	// A flag given no value takes the next flag as its value (-mermaid
	// -dot x.dot): that is the mistake to report, not what follows.
	var flagAsValue error
	fs.Visit(func(f *flag.Flag) {
		name, _, _ := strings.Cut(strings.TrimLeft(f.Value.String(), "-"), "=")
		if flagAsValue == nil && strings.HasPrefix(f.Value.String(), "-") && (fs.Lookup(name) != nil || name == "h" || name == "help") {
			what := "file"
			if f.Name == "out" {
				what = "directory"
			}
			flagAsValue = fmt.Errorf("gen: -%s takes a %s name, not the flag %s: write the %[2]s's name after -%[1]s", f.Name, what, f.Value)
		}
	})
	switch {
	case flagAsValue != nil:
		fmt.Fprintln(stderr, flagAsValue)
		fs.Usage()
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "gen: unexpected argument %q (the table is given with -in)\n", fs.Arg(0))
		fs.Usage()
		return 2
	case *in == "":
		fmt.Fprintln(stderr, "gen: -in is required: the table to read")
		fs.Usage()
		return 2
	}
	files, err := generate(*in, *out, *mermaid, *dot, *markdown)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := writeChanged(files); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

type file struct {
	path string
	data []byte
	flag string // the flag that names it
}

// generate produces every requested file in memory, so that nothing is
// written unless all of it succeeds.
func generate(in, out, mermaid, dot, markdown string) ([]file, error) {
	src, err := os.ReadFile(in)
	if err != nil {
		return nil, err
	}
	t, err := fsm.Load(in, src)
	if err != nil {
		return nil, err
	}
	var files []file
	if out != "" {
		rel, err := relPath(out, in)
		if err != nil {
			return nil, err
		}
		source := emit.Source{Name: filepath.Base(in), Bytes: src, FromPackage: rel}
		code, err := emit.Go(t, source)
		if err != nil {
			return nil, err
		}
		tests, err := emit.Test(t, source)
		if err != nil {
			return nil, err
		}
		base := filepath.Join(out, strings.ToLower(t.Machine)+"_fsm")
		if err := checkPackage(out, t.Package, base+".go", base+"_test.go"); err != nil {
			return nil, err
		}
		files = append(files, file{base + ".go", code, "-out"}, file{base + "_test.go", tests, "-out"})
	}
	var diagram []byte // only when asked: a large table's takes long
	if mermaid != "" || markdown != "" {
		diagram = emit.Mermaid(t)
	}
	if mermaid != "" {
		files = append(files, file{mermaid, diagram, "-mermaid"})
	}
	if dot != "" {
		files = append(files, file{dot, emit.DOT(t), "-dot"})
	}
	if markdown != "" {
		doc, err := os.ReadFile(markdown)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file: -markdown puts the diagram into a Markdown file that exists, between the lines %s and %s (-mermaid writes a file of its own)", markdown, emit.BeginMarker, emit.EndMarker)
		}
		if err != nil {
			return nil, err
		}
		embedded, err := emit.Embed(doc, diagram)
		if me, ok := errors.AsType[*emit.MarkerError](err); ok {
			return nil, fmt.Errorf("%s:%d: %s", markdown, me.Line, me.Msg)
		}
		if errors.Is(err, emit.ErrNoMarkers) {
			return nil, fmt.Errorf("%s: no diagram markers: put a line %s and a line %s where the diagram goes (not in a fenced code block: markers there do not count)", markdown, emit.BeginMarker, emit.EndMarker)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", markdown, err)
		}
		files = append(files, file{markdown, embedded, "-markdown"})
	}
	if err := distinct(in, files); err != nil {
		return nil, err
	}
	return files, nil
}

// distinct refuses files to write that are the table itself, or one
// file named twice (-mermaid and -dot alike, say): one would be written
// over the other, and the table lost.
func distinct(in string, files []file) error {
	for i, f := range files {
		if sameFile(f.path, in) {
			return fmt.Errorf("%s: %s names the table (-in): writing it would replace the table", f.path, f.flag)
		}
		for _, g := range files[:i] {
			if sameFile(f.path, g.path) {
				return fmt.Errorf("%s: %s and %s name one file: give each its own", f.path, g.flag, f.flag)
			}
		}
	}
	return nil
}

// sameFile reports whether paths a and b name one file: one that exists
// (through links too, or hard links), or one that writing either would
// create.
func sameFile(a, b string) bool {
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(ia, ib)
	}
	ka, okA := fileKey(a)
	kb, okB := fileKey(b)
	return okA && okB && ka == kb
}

// fileKey is the absolute path of the file writing path would write,
// with the links of its directory resolved.
func fileKey(path string) (string, bool) {
	target, err := linkTarget(path)
	if err != nil {
		return "", false
	}
	dir := filepath.Dir(target)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	abs, err := filepath.Abs(filepath.Join(dir, filepath.Base(target)))
	return abs, err == nil
}

// checkPackage refuses to write into a directory whose Go files (those
// the build takes, the files gen writes left aside) are of a package
// other than the table's: the generated code would not build there.
func checkPackage(dir, pkg string, generated ...string) error {
	ctxt := build.Default
	ctxt.ReadDir = func(d string) ([]fs.FileInfo, error) {
		entries, err := os.ReadDir(d)
		var infos []fs.FileInfo
		for _, e := range entries {
			if slices.Contains(generated, filepath.Join(dir, e.Name())) {
				continue
			}
			if info, err := e.Info(); err == nil {
				infos = append(infos, info)
			}
		}
		return infos, err
	}
	p, err := ctxt.ImportDir(dir, 0)
	if mp, ok := errors.AsType[*build.MultiplePackageError](err); ok {
		return fmt.Errorf("%s: holds packages %s (%s) and %s (%s), and the table's package is %s", dir, mp.Packages[0], mp.Files[0], mp.Packages[1], mp.Files[1], pkg)
	}
	if files := slices.Concat(p.GoFiles, p.CgoFiles, p.TestGoFiles); err == nil && len(files) > 0 && p.Name != pkg {
		return fmt.Errorf("%s: holds package %s (%s), not the table's package %s", dir, p.Name, files[0], pkg)
	}
	if err == nil {
		// A package holds one machine: the code generated for another
		// (that of a table whose machine was renamed since, or of a
		// second table) would declare the same names, and the package
		// would not build.
		for _, name := range slices.Concat(p.GoFiles, p.TestGoFiles) {
			if generatedByGen(filepath.Join(dir, name)) {
				return fmt.Errorf("%s: holds %s, generated by tablefsm/gen for another machine: a package holds one machine (delete it if the table's machine was renamed)", dir, name)
			}
		}
	}
	return nil // nothing there yet, or nothing gen can judge
}

// generatedByGen reports whether the file at path starts with the first
// line gen writes.
func generatedByGen(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, len(emit.HeaderPrefix))
	_, err = io.ReadFull(f, buf)
	return err == nil && string(buf) == emit.HeaderPrefix
}

// relPath is the path of target as seen from directory dir, with forward
// slashes so that generated code is the same on every system.
func relPath(dir, target string) (string, error) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	absTarget, err := filepath.Abs(target)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(absDir, absTarget)
	if err != nil {
		return "", err
	}
	return filepath.ToSlash(rel), nil
}

// writeChanged writes the files whose content differs from what is on
// disk (the others keep their modification times). Each goes to a
// temporary file beside its target first; only once all of them are
// written are they renamed into place, so that a file that cannot be
// written (a target that is a directory, a full disk) leaves every
// target as it was.
func writeChanged(files []file) (err error) {
	var written []string // temporary files, by file
	defer func() {
		if err != nil {
			for _, tmp := range written {
				_ = os.Remove(tmp)
			}
		}
	}()
	var targets []string
	for _, f := range files {
		if old, err := os.ReadFile(f.path); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		mode := os.FileMode(0o644)
		path, err := linkTarget(f.path) // a link stays a link: its target is written
		if err != nil {
			return err
		}
		if info, err := os.Stat(path); err == nil {
			if !info.Mode().IsRegular() {
				return fmt.Errorf("%s: not a regular file", f.path)
			}
			mode = info.Mode().Perm() // an existing file keeps its permissions
		}
		tmp, err := writeTemp(path, f.data, mode)
		if err != nil {
			return err
		}
		written, targets = append(written, tmp), append(targets, path)
	}
	for i, tmp := range written {
		if err := os.Rename(tmp, targets[i]); err != nil {
			written = written[i:] // the rest are still to be removed
			return err
		}
	}
	return nil
}

// linkTarget returns the file that writing path writes: path itself, or,
// when path is a symbolic link, the file at the end of its chain of links,
// whether that file exists yet or not (as a shell's > would write it).
func linkTarget(path string) (string, error) {
	for range 255 {
		info, err := os.Lstat(path)
		if err != nil || info.Mode()&os.ModeSymlink == 0 {
			return path, nil
		}
		target, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			// Not cleaned: a ".." in target goes up from where the link
			// really is, which a lexical clean gets wrong when the link's
			// directory is reached through another link.
			target = filepath.Dir(path) + string(filepath.Separator) + target
		}
		path = target
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", path)
}

// writeTemp writes data to a new temporary file with the given
// permissions in the directory of path (created when missing) and returns
// its name.
func writeTemp(path string, data []byte, mode os.FileMode) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err := errors.Join(err, f.Close()); err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
