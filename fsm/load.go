package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// LoadFile reads and loads the table in file. See Load.
func LoadFile(file string) (*Table, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	return Load(file, src)
}

// Load parses and validates the table in src; file names it in
// positions. On failure the error is a Diagnostics listing every problem
// found, sorted by position.
func Load(file string, src []byte) (*Table, error) {
	l := &loader{file: file, broken: map[string]bool{}, src: src}
	if bytes.HasPrefix(src, []byte("\ufeff")) { // a byte order mark
		src, l.bom = src[len("\ufeff"):], len("\ufeff")
	}
	if p, msg, found := notUTF8(src, l.bom); found {
		// The parser would read every invalid byte as U+FFFD: a UTF-16
		// table as one string, a Latin-1 é in a doc or a message as �.
		l.errorf(Pos{File: file, Line: p.Line, Col: p.Col}, "%s", msg)
	} else if t := l.load(src); t != nil {
		l.validate(t)
	}
	l.diags.Sort()
	if err := l.diags.Err(); err != nil {
		return nil, err
	}
	return l.table, nil
}

// ref is a name as written in the source, where it was written.
type ref struct {
	name string
	pos  Pos
}

// rowSrc keeps where each name of a row was written, for diagnostics.
type rowSrc struct {
	from       []ref
	on         ref
	ifs        []ref
	to, refuse ref
	do         []ref
}

// loader turns the YAML syntax tree into a Table, collecting diagnostics.
type loader struct {
	file  string
	src   []byte // the source as given, for byte columns
	bom   int    // the length of the byte order mark src starts with
	lines []int  // the offset in src of each line, once needed
	// chars holds, for each line with a character of several bytes, the
	// byte offset in the line of each of its characters, once needed (a
	// line of ASCII needs none: its columns are its bytes).
	chars map[int][]int
	diags Diagnostics
	rows  []rowSrc // parallel to Table.Rows
	table *Table
	// broken holds the kinds of names ("state", "event", ...) whose
	// section could not be read: references to them are not reported
	// again as unknown.
	broken map[string]bool
	// policyRefs are the errors named by unhandled policies.
	policyRefs []ref
	// guardErrRefs are the errors named by guards, parallel to Table.Guards.
	guardErrRefs []ref
	// initial is where the initial state is named.
	initial Pos
	// machine is where the machine is named.
	machine Pos
	// malformedRows: a row could not be read as written.
	malformedRows bool
	// unread holds the kinds of names ("event", "guard", "action",
	// "error") a row may use where it could not be read (`on: [Go]`):
	// a declaration of such a kind is not reported as never used.
	unread map[string]bool
	// unreadTypes are the positions of payload fields whose type is not
	// a string (reported as such, not as missing).
	unreadTypes map[Pos]bool
	// refusedTypes are the positions of payload fields whose type was
	// reported as no type the generated code can hold: guards and actions
	// reading them are not compared with other events' fields.
	refusedTypes map[Pos]bool
	// badTerminal is set when a state's terminal is not a boolean, or a
	// state's declaration cannot be read: which states end the machine
	// is then unknown.
	badTerminal bool
	// usesAt is where a guard's or action's uses names each field, by
	// "kind Owner.field" ("guard Ready.offset").
	usesAt map[string]Pos
	// payloadFields holds the payload field names of every event.
	payloadFields map[string]int
	// noSuchField holds the "kind Owner.field" uses reported as a field
	// no event has (once, where uses names it, not at each row).
	noSuchField map[string]bool
	// eventsUnread: an event's declaration had a problem, so a payload
	// field may be declared where it could not be read.
	eventsUnread bool
}

// errorf reports a problem at pos. The message is kept on one line: a
// name holding a line break cannot fake another diagnostic.
func (l *loader) errorf(pos Pos, format string, args ...any) {
	l.diags = append(l.diags, Diagnostic{Pos: pos, Msg: oneLine(fmt.Sprintf(format, args...))})
}

func (l *loader) pos(n ast.Node) Pos {
	switch v := n.(type) {
	case *ast.MappingNode:
		if !v.IsFlowStyle && len(v.Values) > 0 {
			return l.pos(v.Values[0])
		}
	case *ast.MappingValueNode:
		return l.pos(v.Key)
	}
	tok := n.GetToken()
	if tok == nil || tok.Position == nil {
		return Pos{File: l.file}
	}
	return l.at(tok.Position.Line, tok.Position.Column)
}

// at is the position of the col-th character of line (both counted from
// 1, as the YAML parser counts them), with its column in bytes, as Go
// tools count columns: a character before it that takes several bytes
// in UTF-8 counts for each of its bytes.
func (l *loader) at(line, col int) Pos {
	if l.lines == nil {
		// Lines end with \n, \r\n or \r, as the parser reads them.
		l.lines = []int{0}
		for i, c := range l.src {
			if c == '\n' || c == '\r' && (i+1 == len(l.src) || l.src[i+1] != '\n') {
				l.lines = append(l.lines, i+1)
			}
		}
	}
	p := Pos{File: l.file, Line: line, Col: col}
	if line < 1 || line > len(l.lines) || col < 1 {
		return p
	}
	start := 0
	if line == 1 {
		start = l.bom // the parser does not see the byte order mark
	}
	chars, ok := l.chars[line]
	if !ok {
		chars = l.charOffsets(line, start)
		if l.chars == nil {
			l.chars = make(map[int][]int)
		}
		l.chars[line] = chars
	}
	switch {
	case chars == nil: // ASCII
		p.Col = start + col
	case col <= len(chars):
		p.Col = chars[col-1] + 1
	default: // past the end of the line (its last character's end is there)
		p.Col = chars[len(chars)-1] + 1 + col - len(chars)
	}
	return p
}

// charOffsets returns the byte offset in line of each character from
// start on, and that of the line's end last, or nil when the line holds
// only single-byte characters. Computed once per line, they keep the
// positions of a long line (a whole table on one) linear in its length.
func (l *loader) charOffsets(line, start int) []int {
	text := l.src[l.lines[line-1]:]
	if i := bytes.IndexAny(text, "\r\n"); i >= 0 {
		text = text[:i]
	}
	ascii := true
	for _, c := range text[start:] {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return nil
	}
	offsets := make([]int, 0, len(text)-start+1)
	for i := start; i < len(text); {
		offsets = append(offsets, i)
		_, size := utf8.DecodeRune(text[i:])
		i += size
	}
	return append(offsets, len(text))
}

// notUTF8 finds the first byte of src that is not UTF-8, and says so: a
// table is UTF-8 text. bom is the length of the byte order mark src
// followed, which counts in the columns of line 1.
func notUTF8(src []byte, bom int) (p Pos, msg string, found bool) {
	if bom == 0 && (bytes.HasPrefix(src, []byte{0xff, 0xfe}) || bytes.HasPrefix(src, []byte{0xfe, 0xff})) {
		return Pos{Line: 1, Col: 1}, "the table is UTF-16 (it starts with a UTF-16 byte order mark): save it as UTF-8", true
	}
	line, start := 1, -bom // start: the offset of the line's first byte
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRune(src[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return Pos{Line: line, Col: i - start + 1}, fmt.Sprintf("byte 0x%02x is not UTF-8: save the table as UTF-8", src[i]), true
		case r == '\n', r == '\r' && (i+1 == len(src) || src[i+1] != '\n'):
			line, start = line+1, i+1
		}
		i += size
	}
	return Pos{}, "", false
}

// maxFlowDepth bounds the nesting of flow collections ([…], {…}) in a
// table, and that of block sequences opened on one line ("- - x"): a
// table needs a few levels, and the YAML parser's time and memory grow
// with the square of the depth. (Block collections opened on lines of
// their own each take a deeper indentation, which bounds their depth by
// the square root of the source's size.)
const maxFlowDepth = 64

// maxMappingKeys bounds the keys of one block mapping: a table needs a
// few hundred at most (MaxStates, MaxEvents), and the YAML parser's time
// grows with the square of their number.
const maxMappingKeys = 1024

// maxDocumentMarkers bounds the document markers (--- and ...) of a
// table file: a table is one document, which needs two at most, and the
// YAML parser's time grows with the square of the number of documents.
const maxDocumentMarkers = 64

// tooLarge finds where flow collections, or block sequences opened on one
// line, nest deeper than maxFlowDepth, where a block mapping gets more
// than maxMappingKeys keys, or where document markers pass
// maxDocumentMarkers, and says so. It counts what the YAML scanner
// sees (which costs time and memory in proportion to the source, unlike
// parsing a deep nesting or a long mapping), so brackets, dashes and
// colons in quoted, plain or block scalars and in comments do not count.
func tooLarge(src []byte) (p Pos, msg string, found bool) {
	depth, markers := 0, 0
	line, entries := 0, 0 // the sequence entries seen on line
	// The open block mappings, innermost last: their keys' column, and
	// how many keys they have.
	type mapping struct{ col, keys int }
	var open []mapping
	closeRight := func(col int) { // ends the mappings right of col
		for len(open) > 0 && open[len(open)-1].col > col {
			open = open[:len(open)-1]
		}
	}
	for _, tk := range lexer.Tokenize(string(src)) {
		at := Pos{Line: tk.Position.Line, Col: tk.Position.Column}
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			if depth++; depth > maxFlowDepth {
				return at, fmt.Sprintf("brackets nested deeper than %d: not a table", maxFlowDepth), true
			}
		case token.SequenceEndType, token.MappingEndType:
			depth = max(depth-1, 0)
		case token.DocumentHeaderType, token.DocumentEndType:
			if markers++; markers > maxDocumentMarkers {
				return at, fmt.Sprintf("more than %d document markers (--- or ...): a table file holds one YAML document", maxDocumentMarkers), true
			}
			// A document's mappings end with it (a table file holds
			// one, which the loader says when it holds more).
			depth, open = 0, open[:0]
		case token.SequenceEntryType:
			if tk.Position.Line != line {
				line, entries = tk.Position.Line, 0
			}
			if entries++; entries > maxFlowDepth {
				return at, fmt.Sprintf("sequences opened on one line nested deeper than %d: not a table", maxFlowDepth), true
			}
			if depth == 0 {
				closeRight(tk.Position.Column)
			}
		case token.MappingValueType:
			if depth > 0 || tk.Prev == nil || tk.Prev.Position == nil {
				continue
			}
			// The key starts at its anchor or tag, if any (the first token
			// of its line, or the first after a sequence entry's dash):
			// siblings line up there, whatever the lengths of those.
			first := tk.Prev
			for p := first.Prev; p != nil && p.Position != nil && p.Position.Line == first.Position.Line &&
				p.Type != token.SequenceEntryType && p.Type != token.MappingValueType; p = p.Prev {
				first = p
			}
			key := first.Position
			closeRight(key.Column)
			if len(open) == 0 || open[len(open)-1].col != key.Column {
				open = append(open, mapping{col: key.Column})
			}
			if open[len(open)-1].keys++; open[len(open)-1].keys > maxMappingKeys {
				return Pos{Line: key.Line, Col: key.Column}, fmt.Sprintf("more than %d keys in one mapping: not a table", maxMappingKeys), true
			}
		}
	}
	return Pos{}, "", false
}

// openBracket returns the { or [ of a flow mapping or sequence that is
// still open where the parser stopped (line and col), the innermost.
func openBracket(src []byte, line, col int) (at Pos, bracket string, ok bool) {
	var stack []token.Token
	for _, tk := range lexer.Tokenize(string(src)) {
		if tk.Position == nil {
			continue
		}
		if tk.Position.Line > line || tk.Position.Line == line && tk.Position.Column >= col {
			break
		}
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			stack = append(stack, *tk)
		case token.SequenceEndType, token.MappingEndType:
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case token.DocumentHeaderType, token.DocumentEndType:
			stack = stack[:0]
		}
	}
	if len(stack) == 0 {
		return Pos{}, "", false
	}
	top := stack[len(stack)-1]
	bracket = "{"
	if top.Type == token.SequenceStartType {
		bracket = "["
	}
	return Pos{Line: top.Position.Line, Col: top.Position.Column}, bracket, true
}

// bareStars finds the unquoted * that stand alone, where the YAML scanner
// sees an alias without a name: "from: *" meant as "from: \"*\"".
func bareStars(src []byte) []Pos {
	var out []Pos
	tokens := lexer.Tokenize(string(src))
	for i, tk := range tokens {
		if tk.Type != token.AliasType || tk.Position == nil {
			continue
		}
		if i+1 < len(tokens) {
			next := tokens[i+1]
			if next.Type == token.StringType && next.Position != nil &&
				next.Position.Line == tk.Position.Line && next.Position.Column == tk.Position.Column+1 {
				continue // *name: an alias, refused elsewhere
			}
		}
		out = append(out, Pos{Line: tk.Position.Line, Col: tk.Position.Column})
	}
	return out
}

// reportBareStars reports each bare * that bareStars found.
func (l *loader) reportBareStars(stars []Pos) {
	for _, p := range stars {
		l.errorf(l.at(p.Line, p.Col), "an unquoted * starts a YAML alias: write \"*\" (quoted) for every live state")
	}
}

// load decodes the table; it returns nil when the source is not YAML or
// not a mapping, so that nothing else is worth checking.
func (l *loader) load(src []byte) *Table {
	t := &Table{File: l.file, Pos: Pos{File: l.file, Line: 1, Col: 1}}
	l.table = t
	if p, msg, found := tooLarge(src); found {
		l.errorf(l.at(p.Line, p.Col), "%s", msg)
		return nil
	}
	// Duplicate keys are reported with every other problem (plainKeys),
	// rather than stopping the parse.
	f, err := parser.ParseBytes(src, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		stars := bareStars(src)
		l.reportBareStars(stars)
		var ye yaml.Error
		switch {
		case errors.As(err, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil:
			p := ye.GetToken().Position
			// The parser's complaint about a bare * says less than the
			// hint above; another mistake before it is reported as well.
			if len(stars) == 0 || p.Line < stars[0].Line || p.Line == stars[0].Line && p.Column < stars[0].Col {
				msg := ye.GetMessage()
				switch msg {
				case "value is not allowed in this context":
					// Mostly a key indented deeper or shallower
					// than its siblings.
					msg += "; check this line's indentation against the lines above"
				case "mapping value is not allowed in this context":
					// A plain value holding ": " (doc: Note: ...),
					// or one that a line indented deeper than its
					// key continues with a key of its own.
					msg += `; quote this value if it holds ": ", and check that no line after it is indented deeper than its key`
				case "found character '\t' that cannot start any token":
					// Mostly a line indented with a tab.
					msg += "; indent with spaces: YAML takes no tab there"
				case "',' or '}' must be specified", "',' or ']' must be specified":
					// Mostly a bracket left open on a line above,
					// which the parser finds out only here.
					opener, closer := "{", "}"
					if strings.Contains(msg, "]") {
						opener, closer = "[", "]"
					}
					if o, bracket, ok := openBracket(src, p.Line, p.Column); ok && bracket == opener {
						at := l.at(o.Line, o.Col)
						msg += fmt.Sprintf("; is a ',' missing, or the %s closing the %s at %d:%d?", closer, opener, at.Line, at.Col)
					}
				}
				l.errorf(l.at(p.Line, p.Column), "YAML syntax: %s", msg)
			}
		case len(stars) == 0:
			l.errorf(t.Pos, "%v", err)
		}
		return nil
	}
	// A bare * the parser took for an alias of the key after it (a
	// sequence item "- *" before a line "on: Go", say) leaves a table of
	// another shape than meant: only the * is worth reporting.
	if stars := bareStars(src); len(stars) > 0 {
		l.reportBareStars(stars)
		return nil
	}
	var body ast.Node
	for _, d := range f.Docs {
		if d.Body == nil || d.Body.Type() == ast.DirectiveType {
			continue // a %YAML or %TAG directive heads the document after it
		}
		if body != nil {
			// A stray --- splits a table in two: what the first part
			// lacks is not worth reporting besides.
			l.errorf(l.pos(d.Body), "a table file holds one YAML document")
			return nil
		}
		body = d.Body
	}
	if body == nil {
		l.errorf(t.Pos, "empty table")
		return nil
	}
	fields, ok := l.fields(body, "the table", []string{
		"machine", "package", "doc", "initial", "unhandled", "imports",
		"states", "events", "guards", "actions", "errors", "rows",
	})
	if !ok {
		return nil
	}
	for _, key := range []string{"machine", "package", "initial", "unhandled", "states", "events", "rows"} {
		if fields[key] == nil {
			l.errorf(t.Pos, "the table lacks %q", key)
		}
	}
	if n := fields["machine"]; n != nil {
		t.Machine, l.machine = l.ident(n, "machine name", machineIdent), l.pos(n)
	}
	if n := fields["package"]; n != nil {
		t.Package = l.packageName(n)
	}
	if n := fields["doc"]; n != nil {
		t.Doc, _ = l.str(n, "doc")
	}
	if n := fields["initial"]; n != nil {
		t.Initial, l.initial = l.ident(n, "initial state", exportedIdent), l.pos(n)
	}
	if n := fields["unhandled"]; n != nil {
		if p := l.policy(n); p != nil {
			t.Unhandled = *p
		} else {
			l.markUnread("error") // the policy may have named one
		}
	} else {
		l.markUnread("error") // the policy it lacks may name one
	}
	for key, what := range map[string]string{
		"imports": "import", "states": "state", "events": "event",
		"guards": "guard", "actions": "action", "errors": "error",
	} {
		if fields[key] == nil {
			if key == "states" || key == "events" {
				l.broken[what] = true // reported as lacking
			}
			continue
		}
		if !isMapping(l.plain(fields[key])) {
			l.broken[what] = true
		}
	}
	if fields["initial"] == nil {
		l.broken["initial"] = true
	}
	if fields["rows"] == nil {
		l.broken["rows"] = true
	}
	for _, e := range l.entries(fields["imports"], "imports") {
		name := l.keyIdent(e, "import name", packageIdent)
		path, _ := l.str(e.Value, "import path")
		if path == "" {
			l.errorf(l.pos(e.Value), "import %q needs a path", name)
		}
		t.Imports = append(t.Imports, Import{Name: name, Path: path, Pos: l.pos(e)})
	}
	for _, e := range l.entries(fields["states"], "states") {
		t.States = append(t.States, l.state(e))
	}
	for _, e := range l.entries(fields["events"], "events") {
		t.Events = append(t.Events, l.event(e))
	}
	for _, e := range l.entries(fields["guards"], "guards") {
		t.Guards = append(t.Guards, l.guard(e))
	}
	for _, e := range l.entries(fields["actions"], "actions") {
		t.Actions = append(t.Actions, l.action(e))
	}
	for _, e := range l.entries(fields["errors"], "errors") {
		t.Errors = append(t.Errors, l.errorDecl(e))
	}
	if n := fields["rows"]; n != nil {
		plain, asText := l.plain(n)
		seq, ok := plain.(*ast.SequenceNode)
		if !ok || asText {
			l.errorf(l.pos(n), "rows must be a list of rows, not %s", kind(plain, asText))
			l.broken["rows"] = true
		} else {
			for _, rn := range seq.Values {
				t.Rows = append(t.Rows, l.row(t, rn))
			}
		}
	}
	return t
}

// entries returns the key/value pairs of a mapping; null is empty.
func (l *loader) entries(n ast.Node, what string) []*ast.MappingValueNode {
	if n == nil {
		return nil
	}
	plain, asText := l.plain(n)
	if !asText {
		switch v := plain.(type) {
		case *ast.NullNode:
			return nil
		case *ast.MappingNode:
			return l.plainKeys(v.Values)
		case *ast.MappingValueNode:
			return l.plainKeys([]*ast.MappingValueNode{v})
		case *ast.AliasNode:
			l.errorf(l.pos(n), "aliases (*name) are not supported: write the value out")
			return nil
		}
	}
	l.errorf(l.pos(n), "%s must be a mapping, not %s", what, kind(plain, asText))
	return nil
}

// isMapping reports whether a node plain returned is a mapping, or null
// (an empty one).
func isMapping(n ast.Node, asText bool) bool {
	switch n.(type) {
	case *ast.NullNode, *ast.MappingNode, *ast.MappingValueNode:
		return !asText
	}
	return false
}

// plain returns n without the anchor (&name) or the tag it may carry.
// An anchor changes nothing (aliases are refused). A !!str tag makes a
// scalar a string, whatever it reads as: asText reports it. Any other
// tag is refused where it stands, and the value under it read as if it
// were not there, so that one mistake is reported once.
func (l *loader) plain(n ast.Node) (node ast.Node, asText bool) {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			if v.Value == nil {
				return ast.Null(v.GetToken()), asText
			}
			n = v.Value
		case *ast.TagNode:
			if tag := v.GetToken().Value; tag == "!!str" {
				asText = true
			} else {
				l.errorf(l.pos(v), "tag %s is not supported: the only tag a table may use is !!str", tag)
			}
			if v.Value == nil {
				return ast.Null(v.GetToken()), asText
			}
			n = v.Value
		default:
			return n, asText
		}
	}
}

// plainKeys returns the pairs of a mapping, each key once, reporting each
// repeated key, each merge key ("<<", dropped: what it would merge is not
// read) and each explicit key ("? key", read as the key it marks, so that
// the mistake is reported once).
func (l *loader) plainKeys(pairs []*ast.MappingValueNode) []*ast.MappingValueNode {
	out := pairs[:0:0]
	first := map[string]Pos{}
	for _, e := range pairs {
		if _, merge := e.Key.(*ast.MergeKeyNode); merge {
			l.errorf(l.pos(e.Key), "merge keys (<<) are not supported: write the entries out")
			continue
		}
		if k, explicit := e.Key.(*ast.MappingKeyNode); explicit {
			l.errorf(l.pos(e.Key), "explicit keys (\"? key\") are not supported: write \"key: value\"")
			key, ok := k.Value.(ast.MapKeyNode)
			if !ok {
				continue // no key a name can be read from
			}
			marked := *e
			marked.Key = key
			e = &marked
		}
		key := l.keyText(e.Key)
		if p, seen := first[key]; seen {
			l.errorf(l.pos(e.Key), "key %q repeated (first at %s)", key, shortPos(p))
			continue
		}
		first[key] = l.pos(e.Key)
		out = append(out, e)
	}
	return out
}

// fields returns the values of a mapping by key, reporting keys outside
// allowed. A null node is an empty mapping.
func (l *loader) fields(n ast.Node, what string, allowed []string) (map[string]ast.Node, bool) {
	if !isMapping(l.plain(n)) {
		l.entries(n, what) // reports the problem
		return nil, false
	}
	out := map[string]ast.Node{}
	for _, e := range l.entries(n, what) {
		key := l.keyText(e.Key)
		if !contains(allowed, key) {
			l.errorf(l.pos(e.Key), "unknown field %q in %s (want one of: %s)", key, what, strings.Join(allowed, ", "))
			continue
		}
		v := e.Value
		if v == nil {
			v = ast.Null(e.Key.GetToken())
		}
		out[key] = v
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// kind names what n is, in messages; asText: it was tagged !!str.
func kind(n ast.Node, asText bool) string {
	if asText {
		return "a string"
	}
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode:
		return "empty"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.AliasNode:
		return "an alias"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	}
	return "a " + n.Type().String()
}

// str returns a string scalar (anchored too). A scalar tagged !!str is
// a string whatever it reads as: !!str 404 is "404".
func (l *loader) str(n ast.Node, what string) (string, bool) {
	plain, asText := l.plain(n)
	switch v := plain.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return strings.TrimRight(v.Value.Value, "\n"), true
	case *ast.NullNode:
		// The parser gives "!!str" with nothing after it a null of its
		// own, which reads as nothing: the empty string.
		if asText && v.String() == "" {
			return "", true
		}
		if asText && v.GetToken() != nil {
			return v.GetToken().Value, true
		}
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		if asText && v.GetToken() != nil {
			return v.GetToken().Value, true
		}
	}
	l.errorf(l.pos(n), "%s must be a string, not %s", what, kind(plain, asText))
	return "", false
}

// boolean returns the value of a boolean; ok is false (and the problem
// reported) when n is not one.
func (l *loader) boolean(n ast.Node, what string) (value, ok bool) {
	plain, asText := l.plain(n)
	if b, ok := plain.(*ast.BoolNode); ok && !asText {
		return b.Value, true
	}
	l.errorf(l.pos(n), "%s must be true or false, not %s", what, kind(plain, asText))
	return false, false
}

type identKind int

const (
	exportedIdent identKind = iota // State, Event, Guard names
	fieldIdent                     // payload fields: lowerCamel
	packageIdent                   // import names and the package
	machineIdent                   // the machine: exported or not
)

// checkIdent reports whether s is an identifier of the given kind.
func checkIdent(s string, k identKind) string {
	if s == "" {
		return "must not be empty"
	}
	for i, r := range s {
		if !(unicode.IsLetter(r) || r == '_' || (i > 0 && unicode.IsDigit(r))) {
			return "must be a Go identifier"
		}
	}
	if goKeywords[s] {
		return "must not be a Go keyword"
	}
	first, _ := utf8.DecodeRuneInString(s)
	switch k {
	case exportedIdent:
		if !unicode.IsUpper(first) {
			return "must start with an upper-case letter"
		}
	case fieldIdent:
		if !unicode.IsLower(first) {
			return "must start with a lower-case letter"
		}
		if goPredeclared[s] || generatedLocals[s] {
			return "must not shadow a Go predeclared name or a name the generated methods use (m, from, refused, fsm)"
		}
	case machineIdent:
		if !unicode.IsUpper(first) && !unicode.IsLower(first) {
			return "must start with an upper-case letter, for an exported machine, or a lower-case one, for a machine used only in its package"
		}
		if unicode.IsUpper(first) {
			break
		}
		if !unicode.IsUpper(unicode.ToUpper(first)) {
			// <Machine>Table, <Machine>TableHash and the generated
			// tests take the name upper-cased: they would be unexported,
			// and a test named Testß… is not run (go vet refuses it).
			return "must start with a letter that has an upper-case form (" + string(first) + " has none): the table, its hash and the generated tests are named with it upper-cased"
		}
		if goPredeclared[s] || s == "init" {
			return "must not be a Go predeclared name or init"
		}
		if _, ok := GeneratedImports[s]; ok || generatedCodeLocals[s] {
			return "must not be a name the generated code gives a package or a variable (" + strings.Join(slices.Sorted(maps.Keys(GeneratedImports)), ", ") + "; " + strings.Join(slices.Sorted(maps.Keys(generatedCodeLocals)), ", ") + ")"
		}
	case packageIdent:
		if strings.ToLower(s) != s || strings.Contains(s, "_") {
			return "must be a lower-case Go package name"
		}
		if s == "documentation" {
			return "is the name the go tool ignores files of"
		}
	}
	return ""
}

func (l *loader) ident(n ast.Node, what string, k identKind) string {
	s, ok := l.str(n, what)
	if !ok {
		return ""
	}
	if msg := checkIdent(s, k); msg != "" {
		l.errorf(l.pos(n), "%s %q %s", what, s, msg)
	}
	return s
}

// keyText is the text of a mapping key: an anchored (&a) or tagged key
// is its value's (a tag other than !!str is refused where it stands), an
// alias (*a) stands as written, and is refused as a name.
func (l *loader) keyText(k ast.Node) string {
	switch k.(type) {
	case *ast.TagNode, *ast.AnchorNode:
		plain, _ := l.plain(k)
		return l.keyText(plain)
	case *ast.AliasNode:
		return k.String()
	}
	if k.GetToken() == nil {
		return ""
	}
	return k.GetToken().Value
}

func (l *loader) keyIdent(e *ast.MappingValueNode, what string, k identKind) string {
	s := l.keyText(e.Key)
	if msg := checkIdent(s, k); msg != "" {
		l.errorf(l.pos(e.Key), "%s %q %s", what, s, msg)
	}
	return s
}

func (l *loader) packageName(n ast.Node) string {
	s := l.ident(n, "package", packageIdent)
	if s == "init" {
		l.errorf(l.pos(n), "package %q: Go imports a package of that name only under another name", s)
	}
	return s
}

// refs reads one name or a list of names.
func (l *loader) refs(n ast.Node, what string) []ref {
	plain, asText := l.plain(n)
	switch v := plain.(type) {
	case *ast.SequenceNode:
		if asText {
			break
		}
		out := make([]ref, 0, len(v.Values))
		for _, x := range v.Values {
			if s, ok := l.name(x, what); ok {
				out = append(out, ref{s, l.pos(x)})
			}
		}
		return out
	case *ast.NullNode:
		if !asText {
			return nil
		}
	}
	if s, ok := l.name(n, what); ok {
		return []ref{{s, l.pos(n)}}
	}
	return nil
}

// name returns a string scalar naming something: not empty.
func (l *loader) name(n ast.Node, what string) (string, bool) {
	s, ok := l.str(n, what)
	if ok && s == "" {
		l.errorf(l.pos(n), "%s must not be empty", what)
		return "", false
	}
	return s, ok
}

func (l *loader) policy(n ast.Node) *Policy {
	p := &Policy{Pos: l.pos(n)}
	if plain, asText := l.plain(n); !isMapping(plain, asText) {
		switch plain.(type) {
		case *ast.StringNode, *ast.LiteralNode:
		default:
			if !asText {
				l.errorf(p.Pos, "unhandled must be \"ignore\" or {refuse: ErrSomething}, not %s", kind(plain, asText))
				return nil
			}
		}
		if s, ok := l.str(n, "unhandled"); ok {
			if s == "ignore" {
				p.Kind = PolicyIgnore
				return p
			}
			l.errorf(p.Pos, "unhandled must be \"ignore\" or {refuse: ErrSomething}, not %q", s)
		}
		return nil
	}
	f, ok := l.fields(n, "unhandled", []string{"refuse"})
	if !ok {
		return nil
	}
	if f["refuse"] == nil {
		l.errorf(p.Pos, "unhandled must be \"ignore\" or {refuse: ErrSomething}")
		return nil
	}
	p.Kind = PolicyRefuse
	p.Error, _ = l.name(f["refuse"], "unhandled error")
	l.policyRefs = append(l.policyRefs, ref{p.Error, l.pos(f["refuse"])})
	return p
}

func (l *loader) state(e *ast.MappingValueNode) State {
	s := State{Name: l.keyIdent(e, "state name", exportedIdent), Pos: l.pos(e)}
	f, ok := l.fields(e.Value, "state "+s.Name, []string{"doc", "terminal", "unhandled"})
	if !ok {
		l.badTerminal = true // it may have been the terminal one
	}
	if n := f["doc"]; n != nil {
		s.Doc, _ = l.str(n, "doc")
	}
	if n := f["terminal"]; n != nil {
		var ok bool
		if s.Terminal, ok = l.boolean(n, "terminal"); !ok {
			l.badTerminal = true
		}
	}
	if n := f["unhandled"]; n != nil {
		if s.Override = l.policy(n); s.Override == nil {
			l.markUnread("error") // the policy may have named one
		}
	}
	return s
}

func (l *loader) event(e *ast.MappingValueNode) Event {
	// A problem in an event's declaration may hide payload fields:
	// which fields no event has is then unknown.
	reported := len(l.diags)
	defer func() {
		if len(l.diags) > reported {
			l.eventsUnread = true
		}
	}()
	ev := Event{Name: l.keyIdent(e, "event name", exportedIdent), Pos: l.pos(e)}
	if reservedMethods[ev.Name] {
		l.errorf(ev.Pos, "event name %q collides with a method of the generated machine", ev.Name)
	}
	l.notVetMethod(ev.Name, "event", ev.Pos)
	f, _ := l.fields(e.Value, "event "+ev.Name, []string{"doc", "payload"})
	if n := f["doc"]; n != nil {
		ev.Doc, _ = l.str(n, "doc")
	}
	for _, pe := range l.entries(f["payload"], "payload") {
		fd := Field{Name: l.keyIdent(pe, "payload field", fieldIdent), Pos: l.pos(pe)}
		// No type at all is checkType's "needs a Go type"; a type that
		// is not a string is reported here, once.
		if _, none := pe.Value.(*ast.NullNode); !none {
			var ok bool
			if fd.Type, ok = l.str(pe.Value, "payload field type"); !ok {
				l.markUnreadType(fd.Pos)
			}
		}
		ev.Payload = append(ev.Payload, fd)
	}
	return ev
}

func (l *loader) guard(e *ast.MappingValueNode) Guard {
	g := Guard{Name: l.keyIdent(e, "guard name", exportedIdent), Pos: l.pos(e)}
	l.notVetMethod(g.Name, "guard", g.Pos)
	f, _ := l.fields(e.Value, "guard "+g.Name, []string{"doc", "error", "uses"})
	if n := f["doc"]; n != nil {
		g.Doc, _ = l.str(n, "doc")
	}
	r := ref{pos: g.Pos}
	if n := f["error"]; n != nil {
		g.Error, _ = l.name(n, "guard error")
		r = ref{g.Error, l.pos(n)}
	} else {
		l.errorf(g.Pos, "guard %s needs the error it refuses with (error: ErrSomething)", g.Name)
	}
	l.guardErrRefs = append(l.guardErrRefs, r)
	g.Uses = l.usesOf("guard", g.Name, f["uses"])
	return g
}

func (l *loader) action(e *ast.MappingValueNode) Action {
	a := Action{Name: l.keyIdent(e, "action name", exportedIdent), Pos: l.pos(e)}
	l.notVetMethod(a.Name, "action", a.Pos)
	f, _ := l.fields(e.Value, "action "+a.Name, []string{"doc", "uses"})
	if n := f["doc"]; n != nil {
		a.Doc, _ = l.str(n, "doc")
	}
	a.Uses = l.usesOf("action", a.Name, f["uses"])
	return a
}

func (l *loader) usesOf(what, owner string, n ast.Node) []string {
	if n == nil {
		return nil
	}
	rs := l.refs(n, "payload field name")
	names := make([]string, 0, len(rs))
	seen := make(map[string]bool, len(rs))
	for _, r := range rs {
		if seen[r.name] {
			l.errorf(r.pos, "%s uses payload field %q twice", owner, r.name)
			continue
		}
		seen[r.name] = true
		names = append(names, r.name)
		if l.usesAt == nil {
			l.usesAt = map[string]Pos{}
		}
		l.usesAt[what+" "+owner+"."+r.name] = r.pos
	}
	return names
}

func (l *loader) errorDecl(e *ast.MappingValueNode) Error {
	d := Error{Name: l.keyIdent(e, "error name", exportedIdent), Pos: l.pos(e)}
	if !strings.HasPrefix(d.Name, "Err") || len(d.Name) == 3 {
		l.errorf(d.Pos, "error name %q must start with \"Err\" and say more", d.Name)
	}
	f, _ := l.fields(e.Value, "error "+d.Name, []string{"doc", "message"})
	if n := f["doc"]; n != nil {
		d.Doc, _ = l.str(n, "doc")
	}
	if n := f["message"]; n != nil {
		var ok bool
		if d.Message, ok = l.str(n, "message"); ok && strings.TrimSpace(d.Message) == "" {
			l.errorf(l.pos(n), "error %s has an empty message: leave message out to derive it from the name", d.Name)
		}
	} else {
		d.Message = messageFromName(d.Name)
	}
	return d
}

// messageFromName turns ErrInvalidTerm into "invalid term". A run of
// capitals is one word, an acronym: ErrHTTPTooWeak is "http too weak".
func messageFromName(name string) string {
	r := []rune(strings.TrimPrefix(name, "Err"))
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) {
			prev := r[i-1]
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			// A word starts at a capital after a lower-case letter or a
			// digit, and at the last capital of a run when a lower-case
			// letter follows it (HTTPToo: HTTP, Too).
			if !unicode.IsUpper(prev) && prev != '_' || unicode.IsUpper(prev) && nextLower {
				b.WriteByte(' ')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

func (l *loader) row(t *Table, n ast.Node) Row {
	r := Row{Pos: l.pos(n)}
	var src rowSrc
	reported := len(l.diags)
	defer func() {
		l.rows = append(l.rows, src)
		l.malformedRows = l.malformedRows || len(l.diags) > reported
	}()
	f, ok := l.fields(n, "a row", []string{"from", "on", "if", "to", "stay", "noop", "refuse", "do", "doc"})
	if !ok {
		l.markUnread("event", "guard", "action", "error")
		return r
	}
	if f["from"] == nil || f["on"] == nil {
		l.errorf(r.Pos, "a row needs \"from\" and \"on\"")
	}
	if x := f["from"]; x != nil {
		before := len(l.diags)
		src.from = l.refs(x, "state name")
		if len(src.from) == 0 && len(l.diags) == before {
			l.errorf(l.pos(x), "\"from\" names no state")
		}
		for i, s := range src.from {
			if slices.ContainsFunc(src.from[:i], func(r ref) bool { return r.name == s.name }) {
				l.errorf(s.pos, "\"from\" names %q twice", s.name)
			}
		}
		in := map[string]bool{}
		add := func(state string) {
			if !in[state] {
				in[state] = true
				r.From = append(r.From, state)
			}
		}
		for _, s := range src.from {
			if s.name != "*" {
				add(s.name)
				continue
			}
			for _, st := range t.States {
				if !st.Terminal {
					add(st.Name)
				}
			}
		}
		if len(r.From) == 0 && len(src.from) > 0 && len(t.States) > 0 {
			l.errorf(l.pos(x), "\"from\": \"*\" names the live states, and the table has none")
		}
	}
	if x := f["on"]; x != nil {
		if s, ok := l.name(x, "event name"); ok {
			r.On, src.on = s, ref{s, l.pos(x)}
		} else {
			l.markUnread("event")
		}
	}
	if x := f["if"]; x != nil {
		before := len(l.diags)
		src.ifs = l.refs(x, "guard name")
		if len(l.diags) > before {
			l.markUnread("guard", "error") // a guard unread, its error too
		}
		for _, g := range src.ifs {
			r.If = append(r.If, g.name)
		}
	}
	if x := f["do"]; x != nil {
		before := len(l.diags)
		src.do = l.refs(x, "action name")
		if len(l.diags) > before {
			l.markUnread("action")
		}
		for _, a := range src.do {
			r.Do = append(r.Do, a.name)
		}
	}
	if x := f["doc"]; x != nil {
		r.Doc, _ = l.str(x, "doc")
	}
	var kinds []string
	if x := f["to"]; x != nil {
		kinds = append(kinds, "to")
		if s, ok := l.name(x, "target state"); ok {
			r.Kind, r.To, src.to = Move, s, ref{s, l.pos(x)}
		}
	}
	for _, k := range []string{"stay", "noop"} {
		if x := f[k]; x != nil {
			on, ok := l.boolean(x, k)
			if ok && !on {
				l.errorf(l.pos(x), "%s: false means nothing; remove it", k)
				continue
			}
			// A value that is not a boolean was meant as this kind all
			// the same: the row is not reported as lacking one.
			kinds = append(kinds, k)
			if ok {
				r.Kind = map[string]RowKind{"stay": Stay, "noop": Noop}[k]
			}
		}
	}
	if x := f["refuse"]; x != nil {
		kinds = append(kinds, "refuse")
		if s, ok := l.name(x, "refusal error"); ok {
			r.Kind, r.Refuse, src.refuse = Refuse, s, ref{s, l.pos(x)}
		} else {
			l.markUnread("error")
		}
	}
	switch {
	case len(kinds) == 0:
		l.errorf(r.Pos, "a row needs one of \"to\", \"stay\", \"noop\" or \"refuse\"")
	case len(kinds) > 1:
		l.errorf(r.Pos, "a row takes only one of \"to\", \"stay\", \"noop\" or \"refuse\", not %s", strings.Join(kinds, " and "))
	case (r.Kind == Noop || r.Kind == Refuse) && len(r.Do) > 0:
		l.errorf(l.pos(f["do"]), "a %s row runs no actions", r.Kind)
	case r.Kind == Stay && len(r.Do) == 0:
		l.errorf(r.Pos, "a stay row runs actions; without any, write noop: true")
	}
	return r
}

// markUnread notes that a row may use names of these kinds where it could
// not be read.
func (l *loader) markUnread(kinds ...string) {
	if l.unread == nil {
		l.unread = make(map[string]bool)
	}
	for _, k := range kinds {
		l.unread[k] = true
	}
}

func (l *loader) markUnreadType(at Pos) {
	if l.unreadTypes == nil {
		l.unreadTypes = make(map[Pos]bool)
	}
	l.unreadTypes[at] = true
}

var reservedMethods = map[string]bool{"State": true, "SetObserver": true}

// notVetMethod reports name, of an event, guard or action (each a method
// of generated code), when go vet expects a method of that name to have
// another signature.
func (l *loader) notVetMethod(name, kind string, at Pos) {
	if sig, ok := vetSignatures[name]; ok && !sig.errorOnly {
		l.errorf(at, "%s name %q is a method Go tools expect with another signature (go vet's stdmethods)", kind, name)
	}
}

// vetSignature is the signature go vet's stdmethods check expects of a
// method of some name: the types of its parameters and results, spelled
// as the check spells them (a package by its name). The check applies
// only to a method whose parameters marked "=" are of those types.
type vetSignature struct {
	params, results []string
	// errorOnly: the check applies only to a type that implements error.
	errorOnly bool
}

// vetSignatures are the methods go vet expects with the signature of a
// standard interface (io.ByteReader's ReadByte, json.Marshaler's
// MarshalJSON, errors' Unwrap, …). An event, guard or action method has
// another; the handlers interface implements no error.
var vetSignatures = map[string]vetSignature{
	"As":            {params: []string{"any"}, results: []string{"bool"}, errorOnly: true},
	"Format":        {params: []string{"=fmt.State", "rune"}},
	"GobDecode":     {params: []string{"[]byte"}, results: []string{"error"}},
	"GobEncode":     {results: []string{"[]byte", "error"}},
	"Is":            {params: []string{"error"}, results: []string{"bool"}, errorOnly: true},
	"MarshalJSON":   {results: []string{"[]byte", "error"}},
	"MarshalXML":    {params: []string{"*xml.Encoder", "xml.StartElement"}, results: []string{"error"}},
	"ReadByte":      {results: []string{"byte", "error"}},
	"ReadFrom":      {params: []string{"=io.Reader"}, results: []string{"int64", "error"}},
	"ReadRune":      {results: []string{"rune", "int", "error"}},
	"Scan":          {params: []string{"=fmt.ScanState", "rune"}, results: []string{"error"}},
	"Seek":          {params: []string{"=int64", "int"}, results: []string{"int64", "error"}},
	"UnmarshalJSON": {params: []string{"[]byte"}, results: []string{"error"}},
	"UnmarshalXML":  {params: []string{"*xml.Decoder", "xml.StartElement"}, results: []string{"error"}},
	"UnreadByte":    {results: []string{"error"}},
	"UnreadRune":    {results: []string{"error"}},
	"Unwrap":        {results: []string{"error"}, errorOnly: true}, // or []error
	"WriteByte":     {params: []string{"byte"}, results: []string{"error"}},
	"WriteTo":       {params: []string{"=io.Writer"}, results: []string{"int64", "error"}},
}

// generatedLocals are the names the bodies of generated event methods
// use: a payload field of one of these names would hide it.
var generatedLocals = map[string]bool{"m": true, "from": true, "refused": true, "fsm": true}

// generatedCodeLocals are the names generated code gives parameters and
// variables: an unexported machine of one of these names would be hidden
// where the generated code names its type.
var generatedCodeLocals = map[string]bool{
	"e": true, "err": true, "f": true, "from": true, "h": true, "m": true, "o": true,
	"r": true, "refused": true, "row": true, "s": true, "set": true, "t": true, "to": true,
}

var goKeywords = map[string]bool{
	"break": true, "case": true, "chan": true, "const": true, "continue": true,
	"default": true, "defer": true, "else": true, "fallthrough": true, "for": true,
	"func": true, "go": true, "goto": true, "if": true, "import": true,
	"interface": true, "map": true, "package": true, "range": true, "return": true,
	"select": true, "struct": true, "switch": true, "type": true, "var": true,
}

var goPredeclared = map[string]bool{
	"any": true, "bool": true, "byte": true, "comparable": true, "complex64": true,
	"complex128": true, "error": true, "float32": true, "float64": true, "int": true,
	"int8": true, "int16": true, "int32": true, "int64": true, "rune": true,
	"string": true, "uint": true, "uint8": true, "uint16": true, "uint32": true,
	"uint64": true, "uintptr": true, "true": true, "false": true, "iota": true,
	"nil": true, "append": true, "cap": true, "clear": true, "close": true,
	"complex": true, "copy": true, "delete": true, "imag": true, "len": true,
	"make": true, "max": true, "min": true, "new": true, "panic": true,
	"print": true, "println": true, "real": true, "recover": true,
}
