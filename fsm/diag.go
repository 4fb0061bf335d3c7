package fsm

import (
	"cmp"
	"slices"
	"strings"
)

// Diagnostic is one problem found in a table, at a position.
type Diagnostic struct {
	Pos Pos
	Msg string
}

func (d Diagnostic) Error() string { return d.Pos.String() + ": " + d.Msg }

// Diagnostics is every problem found in a table, sorted by position. As
// an error it prints one "file:line:col: message" per line.
type Diagnostics []Diagnostic

func (l Diagnostics) Error() string {
	var b strings.Builder
	for i, d := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.Error())
	}
	return b.String()
}

// Sort orders the list by file, line, column and message, and drops exact
// duplicates.
func (l *Diagnostics) Sort() {
	slices.SortFunc(*l, func(a, b Diagnostic) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
			cmp.Compare(a.Msg, b.Msg),
		)
	})
	*l = slices.Compact(*l)
}

// Err returns the list as an error, or nil when it is empty.
func (l Diagnostics) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}
