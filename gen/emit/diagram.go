package emit

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/tablefsm/tablefsm/fsm"
)

// edge is one arrow of a diagram: a row in one of its states.
type edge struct {
	from, to string
	kind     fsm.RowKind
	event    string
	guards   []string
	actions  []string
	refuse   string
}

func (e edge) label(sep string) string {
	parts := []string{e.event}
	if len(e.guards) > 0 {
		parts = append(parts, "["+strings.Join(e.guards, " ∧ ")+"]")
	}
	switch e.kind {
	case fsm.Refuse:
		parts = append(parts, "⊘ "+e.refuse)
	case fsm.Noop:
		parts = append(parts, "(no-op)")
	case fsm.Stay:
		parts = append(parts, "/ "+strings.Join(e.actions, ", ")+" (stays)")
	default:
		if len(e.actions) > 0 {
			parts = append(parts, "/ "+strings.Join(e.actions, ", "))
		}
	}
	return strings.Join(parts, sep)
}

func edges(t *fsm.Table) []edge {
	var out []edge
	for _, r := range t.Rows {
		for _, from := range r.From {
			to := from
			if r.Kind == fsm.Move {
				to = r.To
			}
			out = append(out, edge{from, to, r.Kind, r.On, r.If, r.Do, r.Refuse})
		}
	}
	return out
}

// policyText says what an event that state has no row for does there:
// "" when it has a row for every event.
func policyText(t *fsm.Table, state string) string {
	handled := make(map[string]bool, len(t.Events))
	for _, r := range t.Rows {
		if slices.Contains(r.From, state) {
			handled[r.On] = true
		}
	}
	if len(handled) == len(t.Events) {
		return ""
	}
	if p := t.PolicyFor(state); p.Kind != fsm.PolicyIgnore {
		return "other events: ⊘ " + p.Error
	}
	return "other events: ignored"
}

// Mermaid returns the machine as a Mermaid state diagram: the initial
// state marked by [*], terminal states leading to [*], one edge per row
// and state with its event, guards, actions or refusal, and the unhandled
// policy of each state as a note.
func Mermaid(t *fsm.Table) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "---\ntitle: %s\n---\nstateDiagram-v2\n", t.Machine)
	id := mermaidIDs(t)
	for _, s := range t.States {
		if id[s.Name] != s.Name {
			fmt.Fprintf(&b, "    state \"%s\" as %s\n", s.Name, id[s.Name])
		}
	}
	fmt.Fprintf(&b, "    [*] --> %s\n", id[t.Initial])
	for _, e := range edges(t) {
		fmt.Fprintf(&b, "    %s --> %s: %s\n", id[e.from], id[e.to], mermaidText(e.label(" ")))
	}
	for _, s := range t.States {
		if s.Terminal {
			fmt.Fprintf(&b, "    %s --> [*]\n", id[s.Name])
		}
	}
	for _, s := range t.States {
		if text := policyText(t, s.Name); text != "" {
			fmt.Fprintf(&b, "    note right of %s\n        %s\n    end note\n", id[s.Name], mermaidText(text))
		}
	}
	return b.Bytes()
}

// mermaidIDs gives each state its id in the Mermaid diagram: its name,
// unless Mermaid's lexer may read it, or the line before it, as something
// else; then "_" and its name (no state's name starts with "_"), the
// state declared with its name as its label. Such names are
//   - one of the lexer's keywords, in any case ("End", "Note"), or one
//     followed by what its \b takes for the end of a word: any character
//     but an ASCII letter, digit or underscore ("Clické");
//   - names starting with TB, BT, RL or LR, in any case ("Lrb"): a line
//     starting with one, after a line ending in "direction" (an event
//     SetDirection), makes both lines one direction statement, and their
//     edges vanish without a parse error.
//
// With those renamed, every line of the diagram starts with the
// diagram's own syntax or a state id that is neither.
func mermaidIDs(t *fsm.Table) map[string]string {
	ids := make(map[string]string, len(t.States))
	for _, s := range t.States {
		ids[s.Name] = s.Name
		if mermaidReserved(s.Name) {
			ids[s.Name] = "_" + s.Name
		}
	}
	return ids
}

// mermaidKeywords are the words of Mermaid's state diagram lexer that a
// state id could start with.
var mermaidKeywords = []string{"state", "note", "class", "classdef", "style", "click", "href", "direction", "end",
	"default", "scale", "acctitle", "accdescr", "statediagram"}

// mermaidReserved reports whether Mermaid may read a state id name as
// something else (see mermaidIDs).
func mermaidReserved(name string) bool {
	lower := strings.ToLower(name)
	for _, d := range []string{"tb", "bt", "rl", "lr"} {
		if strings.HasPrefix(lower, d) {
			return true
		}
	}
	for _, k := range mermaidKeywords {
		if strings.HasPrefix(lower, k) && (len(lower) == len(k) || !asciiWordByte(lower[len(k)])) {
			return true
		}
	}
	return false
}

// asciiWordByte reports whether c is what a JavaScript \b counts as part
// of a word.
func asciiWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// mermaidText keeps characters Mermaid reads as syntax out of labels, and
// control characters, which end a line or do not show.
func mermaidText(s string) string {
	return strings.NewReplacer(";", ",", "#", "").Replace(printable(s, " "))
}

// printable returns s, valid UTF-8, with each line break (\n, \r\n, \r,
// and Unicode's line and paragraph separators) replaced by newline and
// every other control character by a space, or dropped when it is NUL.
func printable(s, newline string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u2028", "\n", "\u2029", "\n", "\u0085", "\n").Replace(s)
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(newline)
		case r == 0:
		case unicode.IsControl(r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// DOT returns the machine as a Graphviz digraph with the same content as
// the Mermaid diagram: refusals dashed, no-op and internal rows dotted.
func DOT(t *fsm.Table) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "digraph %s {\n", dotID(t.Machine))
	b.WriteString("  rankdir=LR;\n")
	b.WriteString("  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n")
	b.WriteString("  edge [fontname=\"Helvetica\", fontsize=10];\n")
	b.WriteString("  \"[*]\" [shape=point, width=0.2, label=\"\"];\n")
	for _, s := range t.States {
		attrs := "tooltip=" + dotID(s.Doc)
		if text := policyText(t, s.Name); text != "" {
			attrs += ", xlabel=" + dotID(text)
		}
		if s.Terminal {
			attrs += ", peripheries=2"
		}
		fmt.Fprintf(&b, "  %s [%s];\n", dotID(s.Name), attrs)
	}
	fmt.Fprintf(&b, "  \"[*]\" -> %s;\n", dotID(t.Initial))
	// Edges between the same two states in the same style are drawn as one
	// arrow with one label per row, so that self-loops stay readable.
	type arrow struct{ from, to, style string }
	var order []arrow
	labels := map[arrow][]string{}
	for _, e := range edges(t) {
		a := arrow{e.from, e.to, ""}
		switch e.kind {
		case fsm.Refuse:
			a.style = ", style=dashed, color=firebrick, fontcolor=firebrick"
		case fsm.Noop, fsm.Stay:
			a.style = ", style=dotted"
		}
		if _, ok := labels[a]; !ok {
			order = append(order, a)
		}
		labels[a] = append(labels[a], e.label("\n"))
	}
	for _, a := range order {
		fmt.Fprintf(&b, "  %s -> %s [label=%s%s];\n", dotID(a.from), dotID(a.to), dotID(strings.Join(labels[a], "\n\n")), a.style)
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// dotID quotes s as a DOT string: a line break is \n, other control
// characters, which Graphviz does not take, are spaces or dropped.
func dotID(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(printable(s, "\n")) + `"`
}

// Markers delimit the generated diagram in a Markdown file.
const (
	BeginMarker = "<!-- tablefsm:begin diagram -->"
	EndMarker   = "<!-- tablefsm:end diagram -->"
)

// ErrNoMarkers is returned by Embed when doc lacks the markers.
var ErrNoMarkers = errors.New("emit: the file lacks the diagram markers " + BeginMarker + " and " + EndMarker)

// MarkerError is returned by Embed for markers it cannot take: a begin or
// an end marker alone, two of either, or the end before the begin.
type MarkerError struct {
	Line int // the marker's line, from 1
	Msg  string
}

func (e *MarkerError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Embed replaces what stands between the markers in a Markdown document
// with the Mermaid diagram in a fenced block, so that code hosts render it.
// The markers count only on lines of their own (up to three spaces may
// indent them, spaces or tabs may follow them) outside fenced code
// blocks: naming them in prose or code does not move the diagram there.
// A document has one begin marker and one end marker after it
// (ErrNoMarkers when it has neither, a *MarkerError otherwise). The block's lines end as the begin marker's
// line does (CRLF or LF).
func Embed(doc, mermaid []byte) ([]byte, error) {
	begins, ends := markerLines(doc, BeginMarker), markerLines(doc, EndMarker)
	line := func(at int) int { return 1 + bytes.Count(doc[:at], []byte("\n")) }
	switch {
	case len(begins) == 0 && len(ends) == 0:
		return nil, ErrNoMarkers
	case len(begins) > 1:
		return nil, &MarkerError{line(begins[1]), fmt.Sprintf("a second begin marker (the first is on line %d): a file takes one diagram", line(begins[0]))}
	case len(ends) > 1:
		return nil, &MarkerError{line(ends[1]), fmt.Sprintf("a second end marker (the first is on line %d): a file takes one diagram", line(ends[0]))}
	case len(ends) == 0:
		return nil, &MarkerError{line(begins[0]), "a begin marker with no end marker (" + EndMarker + ") after it"}
	case len(begins) == 0:
		return nil, &MarkerError{line(ends[0]), "an end marker with no begin marker (" + BeginMarker + ") before it"}
	case ends[0] < begins[0]:
		return nil, &MarkerError{line(ends[0]), fmt.Sprintf("the end marker comes before the begin marker (line %d)", line(begins[0]))}
	}
	begin, end := begins[0], ends[0]
	afterBegin := begin + len(BeginMarker)
	for afterBegin < len(doc) && (doc[afterBegin] == ' ' || doc[afterBegin] == '\t') {
		afterBegin++ // spaces after the marker stay on its line
	}
	block := "\n```mermaid\n" + string(mermaid) + "```\n"
	if bytes.HasPrefix(doc[afterBegin:], []byte("\r\n")) {
		block = strings.ReplaceAll(block, "\n", "\r\n")
	}
	var b bytes.Buffer
	b.Write(doc[:afterBegin])
	b.WriteString(block)
	b.Write(doc[bytes.LastIndexByte(doc[:end], '\n')+1:]) // the end marker's line, its indentation kept
	return b.Bytes(), nil
}

// markerLines returns where marker stands alone on a line of doc (up to
// three spaces before it, spaces or tabs after it), outside fenced code
// blocks (``` or ~~~, as CommonMark reads them: a
// Markdown page that shows the markers in a code sample keeps its
// sample).
func markerLines(doc []byte, marker string) []int {
	var found []int
	var fence []byte // the fence of the open code block, if any
	for at := 0; at < len(doc); {
		end := bytes.IndexByte(doc[at:], '\n')
		if end < 0 {
			end = len(doc)
		} else {
			end += at
		}
		line := bytes.TrimSuffix(doc[at:end], []byte("\r"))
		switch f := codeFence(line); {
		case fence == nil && f != nil:
			fence = f
		case fence != nil:
			if f != nil && f[0] == fence[0] && len(f) >= len(fence) && len(bytes.TrimSpace(bytes.TrimLeft(bytes.TrimSpace(line), string(f[:1])))) == 0 {
				fence = nil // a closing fence: the same character, as long or longer, nothing after it
			}
		default:
			// Up to three spaces may indent it, as any HTML line of
			// Markdown.
			text := bytes.TrimLeft(line, " ")
			if indent := len(line) - len(text); indent <= 3 && string(bytes.TrimRight(text, " \t")) == marker {
				found = append(found, at+indent)
			}
		}
		at = end + 1
	}
	return found
}

// codeFence returns the fence (a run of three or more ` or ~) that opens
// or closes a fenced code block on line, or nil.
func codeFence(line []byte) []byte {
	trimmed := bytes.TrimLeft(line, " ")
	if len(line)-len(trimmed) > 3 || len(trimmed) < 3 || trimmed[0] != '`' && trimmed[0] != '~' {
		return nil
	}
	n := len(trimmed) - len(bytes.TrimLeft(trimmed, string(trimmed[:1])))
	if n < 3 || trimmed[0] == '`' && bytes.IndexByte(trimmed[n:], '`') >= 0 {
		return nil // too short, or backticks in a backtick fence's info string
	}
	return trimmed[:n]
}
