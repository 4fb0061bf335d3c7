package fsm

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Pos is a position in a table's source: file, 1-based line and column.
// The column counts bytes, as Go tools (go/token) count them: a character
// that takes several bytes in UTF-8 moves the columns after it by as many.
type Pos struct {
	File string
	Line int
	Col  int
}

// String returns "file:line:col". A file name holding a character that
// would break the line is quoted, as Go quotes strings.
func (p Pos) String() string {
	file := p.File
	if strings.ContainsFunc(file, breaksLine) {
		file = strconv.Quote(file)
	}
	switch {
	case p.Line == 0:
		return file
	case file == "":
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	default:
		return fmt.Sprintf("%s:%d:%d", file, p.Line, p.Col)
	}
}

// Table is a parsed lifecycle table: the resolved model the generator,
// the diagrams and the test oracle work from. Names are Go identifiers;
// cross references are by name. Positions are those of the source; the
// description generated code returns from <Machine>Table()
// (LifecycleTable for machine: Lifecycle or machine: lifecycle) carries
// none.
type Table struct {
	File      string   // source file name, as given to Load
	Machine   string   // the Go type of the machine, e.g. "Lifecycle"; unexported ("lifecycle") for a machine used only in its package
	Package   string   // the Go package the code is generated into
	Doc       string   // what the machine is, one paragraph
	Initial   string   // the state a new machine starts in
	Unhandled Policy   // what an empty (state, event) cell does
	Imports   []Import // packages payload types refer to
	States    []State
	Events    []Event
	Guards    []Guard
	Actions   []Action
	Errors    []Error
	Rows      []Row
	Pos       Pos
}

// Names are the package-level names generated code declares for a
// machine, derived from its name.
type Names struct {
	Type     string // the machine type: Lifecycle, or lifecycle
	Handlers string // the interface of guards and actions: LifecycleHandlers, lifecycleHandlers
	New      string // the constructor: NewLifecycle, newLifecycle
	// Table and Hash are exported either way: the table as data is for
	// tools, and names no type of the package.
	Table string // the table as data: LifecycleTable
	Hash  string // the hash of the source: LifecycleTableHash
	// Refusals is the table of the refusals the machine returns:
	// _Lifecycle_refusals.
	Refusals string
	// Tests prefixes the generated test functions (TestLifecycleRows),
	// which go test runs only when an upper-case letter follows Test.
	Tests string
	// Lower prefixes what else the generated tests declare: the name in
	// lowerCamel (HTTPServer gives httpServer).
	Lower string
	// Fake, Harness and Fire are the generated tests' fake of the
	// handlers, their harness and the function firing an event:
	// lifecycleFake, lifecycleHarness, lifecycleFire.
	Fake, Harness, Fire string
}

// Payload names the generated tests' variable holding the payloads of
// event: lifecyclePayloadNewTerm.
func (n Names) Payload(event string) string { return n.Lower + "Payload" + event }

// Names returns the names generated code declares for the machine. An
// unexported machine (its name starts with a lower-case letter) gets an
// unexported type, handlers interface and constructor.
func (t *Table) Names() Names {
	m := t.Machine
	if m == "" {
		return Names{}
	}
	first, size := utf8.DecodeRuneInString(m)
	exported := string(unicode.ToUpper(first)) + m[size:]
	lower := lowerCamel(m)
	n := Names{
		Type: m, Handlers: m + "Handlers", New: "New" + m,
		Table: exported + "Table", Hash: exported + "TableHash", Refusals: "_" + m + "_refusals",
		Tests: exported, Lower: lower, Fake: lower + "Fake", Harness: lower + "Harness", Fire: lower + "Fire",
	}
	if !unicode.IsUpper(first) {
		n.New = "new" + exported
	}
	return n
}

// lowerCamel lower-cases the leading upper-case letters of s, all but
// the last of a run followed by more (HTTPServer: httpServer).
func lowerCamel(s string) string {
	r := []rune(s)
	i := 0
	for i < len(r) && unicode.IsUpper(r[i]) && (i == 0 || i+1 == len(r) || unicode.IsUpper(r[i+1])) {
		r[i] = unicode.ToLower(r[i])
		i++
	}
	return string(r)
}

// Import is a package that payload field types may refer to.
type Import struct {
	Name string // the package name used in types, e.g. "logpos"
	Path string // the import path
	Pos  Pos
}

// State is one state of the machine.
type State struct {
	Name     string
	Doc      string
	Terminal bool    // absorbing: no row moves out of it
	Override *Policy // this state's unhandled policy, nil for the table's
	Pos      Pos
}

// Event is something that happens to the machine, with a typed payload.
type Event struct {
	Name    string
	Doc     string
	Payload []Field
	Pos     Pos
}

// Field is one typed payload field of an event.
type Field struct {
	Name string // a Go identifier, e.g. "term"
	Type string // a Go type expression, e.g. "int64" or "*logpos.EntryID"
	Pos  Pos
}

// Guard is a named condition a row may require. It refuses with Error
// when it fails and no later row of its group is taken.
type Guard struct {
	Name  string
	Doc   string
	Error string   // the declared error it refuses with
	Uses  []string // the payload fields it reads, in parameter order
	Pos   Pos
}

// Action is a named effect a row runs when it is taken.
type Action struct {
	Name string
	Doc  string
	Uses []string // the payload fields it reads, in parameter order
	Pos  Pos
}

// Error is a declared error a machine can refuse with. The generated code
// declares it as a sentinel matched with errors.Is.
type Error struct {
	Name    string // the Go identifier, e.g. "ErrInvalidTerm"
	Message string // the error text without the package prefix
	Doc     string
	Pos     Pos
}

// RowKind is what a taken row does.
type RowKind uint8

const (
	// Move runs the row's actions, then moves to the target state.
	Move RowKind = iota + 1
	// Stay runs the row's actions and keeps the state (an internal row).
	Stay
	// Noop does nothing: the event is accepted and ignored.
	Noop
	// Refuse refuses the event with the row's declared error.
	Refuse
)

func (k RowKind) String() string {
	switch k {
	case Move:
		return "move"
	case Stay:
		return "stay"
	case Noop:
		return "noop"
	case Refuse:
		return "refuse"
	}
	return fmt.Sprintf("RowKind(%d)", k)
}

// Row is one line of the table: in any of From, on event On, if every
// guard of If holds, do Kind.
type Row struct {
	From   []string // the states it applies in, "*" expanded
	On     string   // the event
	If     []string // guards, evaluated in order
	Kind   RowKind
	To     string   // the target state of a Move row
	Do     []string // actions of a Move or Stay row, run in order
	Refuse string   // the error of a Refuse row
	Doc    string
	Pos    Pos
}

// PolicyKind is what an empty (state, event) cell does.
type PolicyKind uint8

const (
	// PolicyRefuse refuses the event with the policy's error.
	PolicyRefuse PolicyKind = iota + 1
	// PolicyIgnore accepts the event and does nothing.
	PolicyIgnore
)

// Policy is the unhandled policy of a table or of a state.
type Policy struct {
	Kind  PolicyKind
	Error string // the declared error of PolicyRefuse
	Pos   Pos
}

// State returns the named state and whether it exists.
func (t *Table) State(name string) (State, bool) {
	i := slices.IndexFunc(t.States, func(s State) bool { return s.Name == name })
	if i < 0 {
		return State{}, false
	}
	return t.States[i], true
}

// Event returns the named event and whether it exists.
func (t *Table) Event(name string) (Event, bool) {
	i := slices.IndexFunc(t.Events, func(e Event) bool { return e.Name == name })
	if i < 0 {
		return Event{}, false
	}
	return t.Events[i], true
}

// Guard returns the named guard and whether it exists.
func (t *Table) Guard(name string) (Guard, bool) {
	i := slices.IndexFunc(t.Guards, func(g Guard) bool { return g.Name == name })
	if i < 0 {
		return Guard{}, false
	}
	return t.Guards[i], true
}

// Action returns the named action and whether it exists.
func (t *Table) Action(name string) (Action, bool) {
	i := slices.IndexFunc(t.Actions, func(a Action) bool { return a.Name == name })
	if i < 0 {
		return Action{}, false
	}
	return t.Actions[i], true
}

// PolicyFor returns the unhandled policy that applies in state.
func (t *Table) PolicyFor(state string) Policy {
	if s, ok := t.State(state); ok && s.Override != nil {
		return *s.Override
	}
	return t.Unhandled
}

// Group returns the indexes into Rows of the rows that apply to (state,
// event), in the order they are tried. It reads every row: to look at
// many cells, index them once with Cells.
func (t *Table) Group(state, event string) []int {
	var idx []int
	for i, r := range t.Rows {
		if r.On == event && slices.Contains(r.From, state) {
			idx = append(idx, i)
		}
	}
	return idx
}

// Cell is a (state, event) pair of a table: the rows that apply to it are
// tried in order.
type Cell struct {
	State, Event string
}

// Cells is a table's rows indexed by cell, made by Table.Cells: its Group
// and Evaluate cost what the cell's rows cost, not what the table's do.
type Cells struct {
	t      *Table
	groups map[Cell][]int
}

// Cells indexes the rows of t by cell, in one pass over the rows. The
// index describes the rows as they are when it is made: it does not see
// rows changed, added or removed afterwards.
func (t *Table) Cells() *Cells {
	c := &Cells{t: t, groups: map[Cell][]int{}}
	for i, r := range t.Rows {
		for _, s := range r.From {
			k := Cell{s, r.On}
			if g := c.groups[k]; len(g) == 0 || g[len(g)-1] != i { // a state named twice
				c.groups[k] = append(g, i)
			}
		}
	}
	return c
}

// Group returns the indexes into Rows of the rows that apply to (state,
// event), in the order they are tried, as Table.Group does. The caller
// must not modify the slice.
func (c *Cells) Group(state, event string) []int { return c.groups[Cell{state, event}] }

// Evaluate is Table.Evaluate, with the rows found through the index.
func (c *Cells) Evaluate(state, event string, holds func(guard string) bool, fails func(action string) bool) Outcome {
	return c.t.evaluate(state, c.Group(state, event), holds, fails)
}

// Outcome is what firing an event does, given which guards hold and which
// action fails: the semantics of a table, in one place.
type Outcome struct {
	Row    int      // the index of the taken row, -1 when none
	Kind   RowKind  // the taken row's kind; when none, Noop for an ignored event, else Refuse
	To     string   // the state afterwards
	Err    string   // the declared error refused with, "" if none
	Guard  string   // the guard whose failure refused the event
	Called []string // guards then actions called, in order
	Action string   // the action that failed, "" if none
}

// Evaluate computes the outcome of firing event in state when holds
// reports which guards hold and fails which action fails. It is the
// reference semantics generated code is tested against.
func (t *Table) Evaluate(state, event string, holds func(guard string) bool, fails func(action string) bool) Outcome {
	return t.evaluate(state, t.Group(state, event), holds, fails)
}

// evaluate is Evaluate in state, given the rows of the cell.
func (t *Table) evaluate(state string, group []int, holds func(guard string) bool, fails func(action string) bool) Outcome {
	out := Outcome{Row: -1, Kind: Refuse, To: state}
	if len(group) == 0 {
		p := t.PolicyFor(state)
		if p.Kind == PolicyIgnore {
			out.Kind = Noop
		} else {
			out.Err = p.Error
		}
		return out
	}
	firstFailed := ""
	for _, ri := range group {
		r := t.Rows[ri]
		failed := ""
		for _, g := range r.If {
			out.Called = append(out.Called, g)
			if !holds(g) {
				failed = g
				break
			}
		}
		if failed != "" {
			if firstFailed == "" {
				firstFailed = failed
			}
			continue
		}
		out.Row, out.Kind = ri, r.Kind
		switch r.Kind {
		case Refuse:
			out.Err = r.Refuse
			return out
		case Noop:
			return out
		}
		for _, a := range r.Do {
			out.Called = append(out.Called, a)
			if fails(a) {
				out.Action = a
				return out
			}
		}
		if r.Kind == Move {
			out.To = r.To
		}
		return out
	}
	g, _ := t.Guard(firstFailed)
	out.Guard, out.Err = firstFailed, g.Error
	return out
}
