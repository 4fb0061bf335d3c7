package emit

import (
	"bytes"
	"errors"
	"fmt"
	"go/format"
	"go/scanner"
	"slices"
	"strconv"
	"strings"

	"github.com/tablefsm/tablefsm/fsm"
)

// printer accumulates Go source.
type printer struct{ bytes.Buffer }

func (p *printer) f(format string, args ...any) { fmt.Fprintf(&p.Buffer, format, args...) }

// gofmt formats generated source; a failure is a generator bug, reported
// with the few lines of the source around the first error.
func gofmt(name string, src []byte) ([]byte, error) {
	out, err := format.Source(src)
	if err != nil {
		return nil, fmt.Errorf("emit: %s does not parse (a bug of the generator): %v%s", name, err, excerpt(src, err))
	}
	return out, nil
}

// excerpt returns the lines of src around the line of the first error of
// err (a scanner.ErrorList), numbered, or "" when err has no position.
func excerpt(src []byte, err error) string {
	var list scanner.ErrorList
	if !errors.As(err, &list) || len(list) == 0 {
		return ""
	}
	const around = 2
	at := list[0].Pos.Line
	lines := strings.Split(string(src), "\n")
	var b strings.Builder
	for n := max(at-around, 1); n <= min(at+around, len(lines)); n++ {
		mark := "  "
		if n == at {
			mark = "> "
		}
		line := lines[n-1]
		if len(line) > 200 {
			line = line[:200] + "…"
		}
		fmt.Fprintf(&b, "\n%s%5d | %s", mark, n, line)
	}
	return b.String()
}

// Go returns the machine's Go code: the State and Event enums, the
// declared errors, the handlers interface, the machine with one method
// per event, and the Table description.
func Go(t *fsm.Table, src Source) ([]byte, error) {
	m := newModel(t)
	var p printer
	p.f("%s", header(src))
	p.f("package %s\n\n", t.Package)
	std := []string{"strconv", "atomic", "fsm"}
	if len(t.Errors) > 0 {
		std = append(std, "errors") // only the declared errors use it
	}
	p.f("%s", importBlock(generatedImports(std...), t.Imports))
	p.f("// %s is the hash of %s this file was generated from.\n", m.hashConst(), src.display())
	p.f("const %s = %q\n\n", m.hashConst(), src.Hash())
	m.enums(&p)
	m.errors(&p)
	m.handlersInterface(&p)
	m.machine(&p)
	for _, e := range t.Events {
		m.eventMethod(&p, e)
	}
	m.refusalTable(&p)
	m.description(&p)
	return gofmt(t.Machine+" code", p.Bytes())
}

func (m *model) enums(p *printer) {
	t := m.t
	p.f("// State is a state of the %s machine. The zero value is not a state.\n", t.Machine)
	p.f("type State uint8\n\nconst (\n")
	for i, s := range t.States {
		doc := sentence(s.Doc)
		if next := m.successors(s.Name); len(next) > 0 {
			doc += " Moves to " + strings.Join(next, ", ") + "."
		} else if s.Terminal {
			doc += " Terminal."
		}
		p.f("%s", comment("\t", described(stateConst(s.Name), strings.TrimSpace(doc))))
		if i == 0 {
			p.f("\t%s State = iota + 1\n", stateConst(s.Name))
		} else {
			p.f("\t%s\n", stateConst(s.Name))
		}
	}
	p.f(")\n\n")
	p.f("var _State_names = [...]string{\"\"")
	for _, s := range t.States {
		p.f(", %q", s.Name)
	}
	p.f("}\n\n")
	p.f("func (s State) String() string {\n\tif s == 0 || int(s) >= len(_State_names) {\n\t\treturn \"State(\" + strconv.Itoa(int(s)) + \")\"\n\t}\n\treturn _State_names[s]\n}\n\n")

	p.f("// Terminal reports whether no event moves the machine out of s.\n")
	p.f("func (s State) Terminal() bool {\n\tswitch s {\n")
	var terminal []string
	for _, s := range t.States {
		if s.Terminal {
			terminal = append(terminal, stateConst(s.Name))
		}
	}
	if len(terminal) > 0 {
		p.f("\tcase %s:\n\t\treturn true\n", strings.Join(terminal, ", "))
	}
	p.f("\t}\n\treturn false\n}\n\n")

	p.f("// Event is an event of the %s machine. The zero value is not an event.\n", t.Machine)
	p.f("type Event uint8\n\nconst (\n")
	for i, e := range t.Events {
		p.f("%s", comment("\t", described(eventConst(e.Name), sentence(e.Doc))))
		if i == 0 {
			p.f("\t%s Event = iota + 1\n", eventConst(e.Name))
		} else {
			p.f("\t%s\n", eventConst(e.Name))
		}
	}
	p.f(")\n\n")
	p.f("var _Event_names = [...]string{\"\"")
	for _, e := range t.Events {
		p.f(", %q", e.Name)
	}
	p.f("}\n\n")
	p.f("func (e Event) String() string {\n\tif e == 0 || int(e) >= len(_Event_names) {\n\t\treturn \"Event(\" + strconv.Itoa(int(e)) + \")\"\n\t}\n\treturn _Event_names[e]\n}\n\n")
}

func (m *model) errors(p *printer) {
	if len(m.t.Errors) == 0 {
		return
	}
	p.f("// The errors the %s machine refuses events with. A refusal unwraps\n", m.t.Machine)
	p.f("// to one of them: match with errors.Is (errors.As gives an *fsm.Refusal).\n")
	p.f("var (\n")
	for _, e := range m.t.Errors {
		doc := e.Doc
		if strings.TrimSpace(doc) == "" {
			doc = e.Message
		}
		p.f("%s", comment("\t", e.Name+": "+sentence(doc)))
		p.f("\t%s = errors.New(%q)\n", e.Name, m.t.Package+": "+e.Message)
	}
	p.f(")\n\n")
}

func (m *model) handlersInterface(p *printer) {
	t := m.t
	p.f("// %s is the hand-written half of the %s machine: its guards\n", m.handlers(), t.Machine)
	p.f("// report whether a row may be taken, its actions are the rows' effects.\n")
	p.f("// A failing action leaves the state unchanged and its error is returned\n")
	p.f("// to the caller as is.\n")
	p.f("type %s interface {\n", m.handlers())
	for _, g := range t.Guards {
		doc := g.Name + " (guard): " + sentence(g.Doc) + " When it fails, the event is refused with " + g.Error + "."
		p.f("%s", comment("\t", doc))
		p.f("\t%s(%s) bool\n", g.Name, m.signature(g.Name, g.Uses))
	}
	for _, a := range t.Actions {
		doc := described(a.Name+" (action)", sentence(lowerFirstWord(a.Doc)))
		p.f("%s", comment("\t", doc))
		p.f("\t%s(%s) error\n", a.Name, m.signature(a.Name, a.Uses))
	}
	p.f("}\n\n")
}

func (m *model) machine(p *printer) {
	t := m.t
	doc := t.Machine + " is a machine generated from " + baseName(t.File) + ". " + sentence(t.Doc) +
		" Its event methods are not safe for concurrent use: the caller serializes them. State is safe to call from any goroutine."
	p.f("%s", comment("", doc))
	p.f("type %s struct {\n\tstate atomic.Uint32\n\th %s\n\tobs fsm.Observer\n}\n\n", t.Machine, m.handlers())
	p.f("// %s returns a machine in state %s that calls h for its guards and\n// actions. With a nil h, every event method returns fsm.ErrNoMachine.\n", m.constructor(), t.Initial)
	p.f("func %s(h %s) *%s {\n\tm := &%s{h: h}\n\tm.state.Store(uint32(%s))\n\treturn m\n}\n\n",
		m.constructor(), m.handlers(), t.Machine, t.Machine, stateConst(t.Initial))
	p.f("// State returns the current state.\nfunc (m *%s) State() State { return State(m.state.Load()) }\n\n", t.Machine)
	p.f("// SetObserver makes o see every step the machine takes; nil stops it.\n")
	p.f("// Like the event methods, it is serialized with them by the caller.\n")
	p.f("func (m *%s) SetObserver(o fsm.Observer) { m.obs = o }\n\n", t.Machine)
	// The nil check on the observer sits at every call site rather than in
	// observe, so that a step nobody observes costs no call.
	p.f("// observe reports a step to the observer; the caller has checked that there is one.\n")
	p.f("func (m *%s) observe(from State, e Event, row int, to State, err error) {\n", t.Machine)
	p.f("\tm.obs.Observe(fsm.Step{Machine: %q, From: from.String(), Event: e.String(), To: to.String(), Row: row, Err: err})\n}\n\n", t.Machine)
	p.f("func (m *%s) refuse(from State, e Event, row int, r *fsm.Refusal) error {\n\terr := fsm.Refused(r)\n\tif m.obs != nil {\n\t\tm.observe(from, e, row, from, err)\n\t}\n\treturn err\n}\n\n", t.Machine)
	p.f("func (m *%s) fail(from State, e Event, row int, err error) error {\n\tif m.obs != nil {\n\t\tm.observe(from, e, row, from, err)\n\t}\n\treturn err\n}\n\n", t.Machine)
}

// accept emits the end of an event method that takes a row (ri, or -1 for
// an ignored event) out of state: the state is published when it changes
// (known here, since the case of the switch names the state), then
// observed. It is written out rather than called so that an unobserved
// transition is one store and one test.
func (m *model) accept(p *printer, ind string, ri int, state, ev, to string) {
	target := "from"
	if to != state {
		target = stateConst(to)
		p.f("%sm.state.Store(uint32(%s))\n", ind, target)
	}
	p.f("%sif m.obs != nil {\n%s\tm.observe(from, %s, %d, %s, nil)\n%s}\n%sreturn nil\n", ind, ind, ev, ri, target, ind, ind)
}

// args returns the argument list for a guard or action call.
func args(uses []string) string { return strings.Join(uses, ", ") }

func (m *model) eventMethod(p *printer, e fsm.Event) {
	t := m.t
	doc := e.Name + " fires event " + e.Name + ". " + sentence(e.Doc)
	p.f("%s", comment("", doc))
	p.f("func (m *%s) %s(%s) error {\n", t.Machine, e.Name, params(e))
	p.f("\tif m.h == nil {\n\t\treturn fsm.ErrNoMachine\n\t}\n")
	p.f("\tswitch from := m.State(); from {\n")
	for _, s := range t.States {
		p.f("\tcase %s:\n", stateConst(s.Name))
		m.cell(p, s.Name, e)
	}
	p.f("\t}\n\treturn fsm.ErrNoMachine\n}\n\n")
}

// cell emits the code of one (state, event) cell: its rows in order, or
// the unhandled policy.
func (m *model) cell(p *printer, state string, e fsm.Event) {
	t := m.t
	ev := eventConst(e.Name)
	group := m.cells.Group(state, e.Name)
	if len(group) == 0 {
		pol := t.PolicyFor(state)
		if pol.Kind == fsm.PolicyIgnore {
			p.f("\t\t// Unhandled: ignored.\n")
			m.accept(p, "\t\t", -1, state, ev, state)
			return
		}
		i := m.refIndex[refusal{state, e.Name, "", pol.Error}]
		p.f("\t\t// Unhandled: refused.\n\t\treturn m.refuse(from, %s, -1, &%s[%d])\n", ev, m.refusalsVar(), i)
		return
	}
	multi := len(group) > 1
	// refused is needed when every row of the group may fail: then the
	// first guard that failed decides the error.
	needRefused := multi && len(t.Rows[group[len(group)-1]].If) > 0
	if needRefused {
		p.f("\t\tvar refused *fsm.Refusal\n")
	}
	for gi, ri := range group {
		r := t.Rows[ri]
		ref := rowRef(t, ri)
		if r.Doc != "" {
			ref += ": " + r.Doc
		}
		p.f("%s", comment("\t\t", ref))
		if len(r.If) == 0 {
			m.take(p, "\t\t", ri, state, ev)
			return
		}
		if !multi {
			for _, g := range r.If {
				gd, _ := t.Guard(g)
				i := m.refIndex[refusal{state, e.Name, g, gd.Error}]
				p.f("\t\tif !m.h.%s(%s) {\n\t\t\treturn m.refuse(from, %s, -1, &%s[%d])\n\t\t}\n", g, args(gd.Uses), ev, m.refusalsVar(), i)
			}
			m.take(p, "\t\t", ri, state, ev)
			return
		}
		p.f("\t\tswitch {\n")
		for _, g := range r.If {
			gd, _ := t.Guard(g)
			p.f("\t\tcase !m.h.%s(%s):\n", g, args(gd.Uses))
			switch {
			case !needRefused:
				p.f("\t\t\t// A later row decides.\n")
			case gi == 0:
				i := m.refIndex[refusal{state, e.Name, g, gd.Error}]
				p.f("\t\t\trefused = &%s[%d]\n", m.refusalsVar(), i)
			default:
				p.f("\t\t\t// The first row's failed guard decides.\n")
			}
		}
		p.f("\t\tdefault:\n")
		m.take(p, "\t\t\t", ri, state, ev)
		p.f("\t\t}\n")
	}
	p.f("\t\treturn m.refuse(from, %s, -1, refused)\n", ev)
}

// take emits what a taken row does.
func (m *model) take(p *printer, ind string, ri int, state, ev string) {
	t := m.t
	r := t.Rows[ri]
	switch r.Kind {
	case fsm.Refuse:
		i := m.refIndex[refusal{state, r.On, "", r.Refuse}]
		p.f("%sreturn m.refuse(from, %s, %d, &%s[%d])\n", ind, ev, ri, m.refusalsVar(), i)
		return
	case fsm.Noop:
		m.accept(p, ind, ri, state, ev, state)
		return
	}
	for _, a := range r.Do {
		ad, _ := t.Action(a)
		p.f("%sif err := m.h.%s(%s); err != nil {\n%s\treturn m.fail(from, %s, %d, err)\n%s}\n", ind, a, args(ad.Uses), ind, ev, ri, ind)
	}
	to := state
	if r.Kind == fsm.Move {
		to = r.To
	}
	m.accept(p, ind, ri, state, ev, to)
}

func (m *model) refusalTable(p *printer) {
	p.f("// %s holds every refusal the machine can return, so that\n// refusing allocates nothing.\n", m.refusalsVar())
	p.f("var %s = [...]fsm.Refusal{\n", m.refusalsVar())
	for _, r := range m.refusals {
		p.f("\t{Machine: %q, State: %q, Event: %q, Guard: %q, Err: %s},\n", m.t.Machine, r.state, r.event, r.guard, r.err)
	}
	p.f("}\n\n")
}

// description emits Table(): the table as data, for tools.
func (m *model) description(p *printer) {
	t := m.t.WithoutPositions()
	p.f("// %s describes the table the machine was generated from, without\n// source positions. Each call returns a fresh copy.\n", m.tableFunc())
	p.f("func %s() *fsm.Table {\n\treturn &fsm.Table{\n", m.tableFunc())
	p.f("\t\tFile: %q,\n\t\tMachine: %q,\n\t\tPackage: %q,\n\t\tDoc: %q,\n\t\tInitial: %q,\n", baseName(t.File), t.Machine, t.Package, t.Doc, t.Initial)
	p.f("\t\tUnhandled: %s,\n", policyLit(t.Unhandled))
	if len(t.Imports) > 0 {
		p.f("\t\tImports: []fsm.Import{\n")
		for _, i := range t.Imports {
			p.f("\t\t\t{Name: %q, Path: %q},\n", i.Name, i.Path)
		}
		p.f("\t\t},\n")
	}
	p.f("\t\tStates: []fsm.State{\n")
	for _, s := range t.States {
		p.f("\t\t\t{Name: %q, Doc: %q, Terminal: %v", s.Name, s.Doc, s.Terminal)
		if s.Override != nil {
			p.f(", Override: &fsm.Policy%s", strings.TrimPrefix(policyLit(*s.Override), "fsm.Policy"))
		}
		p.f("},\n")
	}
	p.f("\t\t},\n\t\tEvents: []fsm.Event{\n")
	for _, e := range t.Events {
		p.f("\t\t\t{Name: %q, Doc: %q", e.Name, e.Doc)
		if len(e.Payload) > 0 {
			p.f(", Payload: []fsm.Field{")
			for _, f := range e.Payload {
				p.f("{Name: %q, Type: %q}, ", f.Name, f.Type)
			}
			p.f("}")
		}
		p.f("},\n")
	}
	p.f("\t\t},\n")
	if len(t.Guards) > 0 {
		p.f("\t\tGuards: []fsm.Guard{\n")
		for _, g := range t.Guards {
			p.f("\t\t\t{Name: %q, Doc: %q, Error: %q, Uses: %s},\n", g.Name, g.Doc, g.Error, strs(g.Uses))
		}
		p.f("\t\t},\n")
	}
	if len(t.Actions) > 0 {
		p.f("\t\tActions: []fsm.Action{\n")
		for _, a := range t.Actions {
			p.f("\t\t\t{Name: %q, Doc: %q, Uses: %s},\n", a.Name, a.Doc, strs(a.Uses))
		}
		p.f("\t\t},\n")
	}
	if len(t.Errors) > 0 {
		p.f("\t\tErrors: []fsm.Error{\n")
		for _, e := range t.Errors {
			p.f("\t\t\t{Name: %q, Message: %q, Doc: %q},\n", e.Name, e.Message, e.Doc)
		}
		p.f("\t\t},\n")
	}
	p.f("\t\tRows: []fsm.Row{\n")
	for _, r := range t.Rows {
		p.f("\t\t\t{From: %s, On: %q, If: %s, Kind: fsm.%s, To: %q, Do: %s, Refuse: %q, Doc: %q},\n",
			strs(r.From), r.On, strs(r.If), kindName(r.Kind), r.To, strs(r.Do), r.Refuse, r.Doc)
	}
	p.f("\t\t},\n\t}\n}\n")
}

func kindName(k fsm.RowKind) string {
	s := k.String()
	return strings.ToUpper(s[:1]) + s[1:]
}

func policyLit(p fsm.Policy) string {
	switch p.Kind {
	case fsm.PolicyIgnore:
		return "fsm.Policy{Kind: fsm.PolicyIgnore}"
	case fsm.PolicyRefuse:
		return "fsm.Policy{Kind: fsm.PolicyRefuse, Error: " + strconv.Quote(p.Error) + "}"
	}
	return "fsm.Policy{}"
}

// strs renders a string slice literal; nil stays nil.
func strs(list []string) string {
	if list == nil {
		return "nil"
	}
	q := slices.Clone(list)
	for i := range q {
		q[i] = strconv.Quote(q[i])
	}
	return "[]string{" + strings.Join(q, ", ") + "}"
}
