package emit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tablefsm/tablefsm/fsm"
)

// maxExhaustiveGuards bounds the guards of one (state, event) group whose
// outcome combinations the generated tests enumerate one by one; a
// larger group gets the combinations of firstFailingCases, and the random
// walk for the rest.
const maxExhaustiveGuards = 10

// secondSetShift is added to the seeds of the first payload set to make
// the second's: odd, so that every boolean differs between the two
// (fsmtest.Value makes booleans from the seed's parity).
const secondSetShift = 1001

// step is one event fired on the way to a state, with the guard outcomes
// that make the intended row be taken.
type step struct {
	event string
	row   int
	pass  uint64
}

// tcase is one generated test case: fire event in state from, with the
// guards of pass holding and the action fail failing.
type tcase struct {
	name  string
	from  string
	event string
	pass  uint64
	fail  string
	want  fsm.Outcome
}

func (m *model) guardBit(g string) uint64 {
	return 1 << slices.IndexFunc(m.t.Guards, func(x fsm.Guard) bool { return x.Name == g })
}

func (m *model) allGuards() uint64 {
	if len(m.t.Guards) == 64 {
		return ^uint64(0)
	}
	return 1<<len(m.t.Guards) - 1
}

func (m *model) evaluate(state, event string, pass uint64, fail string) fsm.Outcome {
	return m.cells.Evaluate(state, event,
		func(g string) bool { return pass&m.guardBit(g) != 0 },
		func(a string) bool { return a == fail })
}

// rowMask returns guard outcomes under which row ri is the row taken for
// its event in state: its guards hold, and each earlier row of the group
// fails on a guard this row does not need.
func (m *model) rowMask(state string, ri int) (uint64, error) {
	t := m.t
	r := t.Rows[ri]
	pass := m.allGuards()
	for _, prev := range m.cells.Group(state, r.On) {
		if prev == ri {
			break
		}
		i := slices.IndexFunc(t.Rows[prev].If, func(g string) bool { return !slices.Contains(r.If, g) })
		if i < 0 {
			return 0, fmt.Errorf("emit: %s is shadowed in %s", rowRef(t, ri), state)
		}
		pass &^= m.guardBit(t.Rows[prev].If[i])
	}
	if got := m.evaluate(state, r.On, pass, ""); got.Row != ri {
		return 0, fmt.Errorf("emit: cannot take %s in %s", rowRef(t, ri), state)
	}
	return pass, nil
}

// paths returns, for each reachable state, the shortest sequence of steps
// from the initial state, found breadth first in table order.
func (m *model) paths() (map[string][]step, error) {
	t := m.t
	paths := map[string][]step{t.Initial: {}}
	queue := []string{t.Initial}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for ri, r := range t.Rows {
			if r.Kind != fsm.Move || !slices.Contains(r.From, s) {
				continue
			}
			if _, seen := paths[r.To]; seen {
				continue
			}
			pass, err := m.rowMask(s, ri)
			if err != nil {
				return nil, err
			}
			paths[r.To] = append(slices.Clone(paths[s]), step{r.On, ri, pass})
			queue = append(queue, r.To)
		}
	}
	return paths, nil
}

// groupGuards lists the guards of a group in order of first use.
func groupGuards(t *fsm.Table, group []int) []string {
	var gs []string
	for _, ri := range group {
		for _, g := range t.Rows[ri].If {
			if !slices.Contains(gs, g) {
				gs = append(gs, g)
			}
		}
	}
	return gs
}

func (m *model) matrixCases() []tcase {
	var out []tcase
	for _, s := range m.t.States {
		for _, e := range m.t.Events {
			out = append(out, tcase{
				name: s.Name + "/" + e.Name, from: s.Name, event: e.Name, pass: m.allGuards(),
				want: m.evaluate(s.Name, e.Name, m.allGuards(), ""),
			})
		}
	}
	return out
}

func (m *model) guardCases() []tcase {
	var out []tcase
	for _, s := range m.t.States {
		for _, e := range m.t.Events {
			gs := groupGuards(m.t, m.cells.Group(s.Name, e.Name))
			if len(gs) == 0 {
				continue
			}
			if len(gs) > maxExhaustiveGuards {
				out = append(out, m.firstFailingCases(s.Name, e.Name, gs)...)
				continue
			}
			for combo := 0; combo < 1<<len(gs); combo++ {
				var pass uint64
				for i, g := range gs {
					if combo&(1<<i) != 0 {
						pass |= m.guardBit(g)
					}
				}
				out = append(out, tcase{
					name: s.Name + "/" + e.Name + "/" + m.outcomeName(gs, pass), from: s.Name, event: e.Name, pass: pass,
					want: m.evaluate(s.Name, e.Name, pass, ""),
				})
			}
		}
	}
	return out
}

// firstFailingCases are the cases of a group too large for every
// combination, whose guards, in the order its rows test them, are gs:
// each guard failing with the others holding (a row of many guards
// refused by each of them), and the first k failing with the others
// holding, for every k (alternative rows of one guard each, taken one
// after the other, then all refused). Every guard holding is the first
// of both.
func (m *model) firstFailingCases(state, event string, gs []string) []tcase {
	var all uint64
	for _, g := range gs {
		all |= m.guardBit(g)
	}
	passes := []uint64{all}
	for _, g := range gs {
		passes = append(passes, all&^m.guardBit(g))
	}
	// The first k failing: k = 1 is above already, k = len(gs) is none
	// holding.
	for k := 2; k < len(gs); k++ {
		pass := all
		for _, g := range gs[:k] {
			pass &^= m.guardBit(g)
		}
		passes = append(passes, pass)
	}
	passes = append(passes, 0)
	var out []tcase
	for _, pass := range passes {
		out = append(out, tcase{
			name: state + "/" + event + "/" + m.outcomeName(gs, pass), from: state, event: event, pass: pass,
			want: m.evaluate(state, event, pass, ""),
		})
	}
	return out
}

// outcomeName names the guard outcomes pass of the guards gs: "+G" for a
// guard that holds, "-G" for one that fails, in order.
func (m *model) outcomeName(gs []string, pass uint64) string {
	var b strings.Builder
	for _, g := range gs {
		if pass&m.guardBit(g) != 0 {
			b.WriteString("+" + g)
		} else {
			b.WriteString("-" + g)
		}
	}
	return b.String()
}

// rowCases takes every row in every state it applies in, and makes each of
// its actions fail in turn.
func (m *model) rowCases() ([]tcase, error) {
	var out []tcase
	for ri, r := range m.t.Rows {
		for _, s := range r.From {
			pass, err := m.rowMask(s, ri)
			if err != nil {
				return nil, err
			}
			name := fmt.Sprintf("row%d/%s/%s", ri, s, r.On)
			out = append(out, tcase{name: name, from: s, event: r.On, pass: pass, want: m.evaluate(s, r.On, pass, "")})
			for _, a := range r.Do {
				out = append(out, tcase{
					name: name + "/" + a + "Fails", from: s, event: r.On, pass: pass, fail: a,
					want: m.evaluate(s, r.On, pass, a),
				})
			}
		}
	}
	return out, nil
}

// fakeParams returns the parameter list of a fake guard or action whose
// parameters have types, and the arguments that pass them on (", a0, a1").
func fakeParams(types []string) (params, args string) {
	ps := make([]string, len(types))
	var as strings.Builder
	for i, typ := range types {
		ps[i] = fmt.Sprintf("a%d %s", i, typ)
		fmt.Fprintf(&as, ", a%d", i)
	}
	return strings.Join(ps, ", "), as.String()
}

// Test returns the machine's generated tests: the state × event matrix,
// every guard outcome of every row group, every row and every failing
// action, the shortest path to every state, a check that the code is
// not stale, and a random walk against the looplab/fsm oracle of fsmtest.
func Test(t *fsm.Table, src Source) ([]byte, error) {
	m := newModel(t)
	paths, err := m.paths()
	if err != nil {
		return nil, err
	}
	rows, err := m.rowCases()
	if err != nil {
		return nil, err
	}
	M, names := t.Machine, m.names
	harness, fake := names.Harness, names.Fake
	var p printer
	p.f("%s", header(src))
	p.f("package %s\n\n", t.Package)
	p.f("%s", importBlock(generatedImports("errors", "testing", "fsmtest"), t.Imports))

	// The generated half of the fake of the handlers interface.
	p.f("%s", comment("", fake+" is a fake of "+m.handlers()+" on an fsmtest.Fake: guard i of the table holds when bit i of its Pass is set, the action named by its Fail fails, and every call is recorded with its arguments."))
	p.f("type %s struct{ f *fsmtest.Fake }\n\n", fake)
	for _, g := range t.Guards {
		params, args := fakeParams(m.paramTypes(g.Name, g.Uses))
		p.f("func (h %s) %s(%s) bool { return h.f.Guard(%#x, %q%s) }\n", fake, g.Name, params, m.guardBit(g.Name), g.Name, args)
	}
	for _, a := range t.Actions {
		params, args := fakeParams(m.paramTypes(a.Name, a.Uses))
		p.f("func (h %s) %s(%s) error { return h.f.Action(%q%s) }\n", fake, a.Name, params, a.Name, args)
	}
	p.f("\nvar _ %s = %s{}\n\n", m.handlers(), fake)

	// The payloads the tests fire events with.
	seed := 0
	for _, e := range t.Events {
		if len(e.Payload) == 0 {
			continue
		}
		p.f("%s", comment("", names.Payload(e.Name)+" is what "+e.Name+" is fired with in these tests, in two sets: for each field, a value of its type made by fsmtest.Value from a seed of its own, the second set's seeds of the other parity."))
		p.f("var %s = [2]struct {\n", names.Payload(e.Name))
		for _, f := range e.Payload {
			p.f("\t%s %s\n", f.Name, f.Type)
		}
		p.f("}{\n")
		first := seed
		for _, shift := range []int{0, secondSetShift} {
			seed = first
			p.f("\t{\n")
			for _, f := range e.Payload {
				seed++
				p.f("\t\tfsmtest.Value[%s](%d),\n", f.Type, seed+shift)
			}
			p.f("\t},\n")
		}
		p.f("}\n\n")
	}
	p.f("// %s fires e with its payload of set set.\n", names.Fire)
	p.f("func %s(m *%s, e Event, set int) error {\n\tswitch e {\n", names.Fire, M)
	for _, e := range t.Events {
		var args []string
		for _, f := range e.Payload {
			args = append(args, names.Payload(e.Name)+"[set]."+f.Name)
		}
		p.f("\tcase %s:\n\t\treturn m.%s(%s)\n", eventConst(e.Name), e.Name, strings.Join(args, ", "))
	}
	p.f("\t}\n\treturn errors.New(\"no such event: \" + e.String())\n}\n\n")

	p.f("// %s runs the tests below on %s through its public API.\n", harness, M)
	p.f("var %s = &fsmtest.Harness[*%s, State, Event]{\n", harness, M)
	p.f("\tTable: %s(),\n", m.tableFunc())
	p.f("\tNewTable: %s,\n", m.tableFunc())
	p.f("\tTablePath: %q,\n\tTableName: %q,\n", src.FromPackage, src.Name)
	p.f("\tNew: func(f *fsmtest.Fake) *%s { return %s(%s{f}) },\n", M, m.constructor(), fake)
	p.f("\tFire: %s,\n", names.Fire)
	p.f("\tPayloads: [2]map[Event]map[string]any{\n")
	for set := range 2 {
		p.f("\t\t{\n")
		for _, e := range t.Events {
			if len(e.Payload) == 0 {
				continue
			}
			p.f("\t\t\t%s: {", eventConst(e.Name))
			for _, f := range e.Payload {
				p.f("%q: %s[%d].%s, ", f.Name, names.Payload(e.Name), set, f.Name)
			}
			p.f("},\n")
		}
		p.f("\t\t},\n")
	}
	p.f("\t},\n")
	p.f("\tErrors: map[string]error{\n")
	for _, e := range t.Errors {
		p.f("\t\t%q: %s,\n", e.Name, e.Name)
	}
	p.f("\t},\n")
	p.f("\t// The shortest way from %s to every state.\n", t.Initial)
	p.f("\tPaths: map[State][]fsmtest.Step[Event]{\n")
	for _, s := range t.States {
		path, ok := paths[s.Name]
		if !ok {
			continue
		}
		p.f("\t\t%s: {", stateConst(s.Name))
		for _, st := range path {
			p.f("{Event: %s, Pass: %#x}, ", eventConst(st.event), st.pass)
		}
		p.f("},\n")
	}
	p.f("\t},\n}\n\n")

	emitCases := func(name, doc string, cases []tcase) {
		p.f("%s", comment("", doc))
		p.f("func Test%s%s(t *testing.T) {\n\t%s.Run(t, []fsmtest.Case[State, Event]{\n", m.names.Tests, name, harness)
		for _, c := range cases {
			errName := c.want.Err
			if c.want.Action != "" {
				errName = "action"
			}
			// Keyed, as vet wants for a struct of another package; the
			// strings that are empty are left out.
			p.f("\t\t{Name: %q, From: %s, Event: %s, Pass: %#x, ", c.name, stateConst(c.from), eventConst(c.event), c.pass)
			if c.fail != "" {
				p.f("Fail: %q, ", c.fail)
			}
			p.f("To: %s, Row: %d", stateConst(c.want.To), c.want.Row)
			for _, kv := range [][2]string{{"Err", errName}, {"Guard", c.want.Guard}, {"Calls", strings.Join(c.want.Called, ",")}} {
				if kv[1] != "" {
					p.f(", %s: %q", kv[0], kv[1])
				}
			}
			p.f("},\n")
		}
		p.f("\t})\n}\n\n")
	}
	emitCases("Matrix", "Every event in every state, with every guard holding.", m.matrixCases())
	emitCases("GuardOutcomes", "Every combination of guard outcomes of every (state, event) group with guards.", m.guardCases())
	emitCases("Rows", "Every row taken in every state it applies in, then each of its actions failing in turn.", rows)

	p.f(`// Test%[5]sShortestPaths drives the machine to every state by the
// shortest path, checking each step.
func Test%[5]sShortestPaths(t *testing.T) { %[1]s.ShortestPaths(t) }

// Test%[5]sStrings checks the names of states and events.
func Test%[5]sStrings(t *testing.T) { %[1]s.Strings(t) }

// Test%[5]sWithoutHandlers fires every event at a machine made with nil
// handlers and at the zero machine: each returns fsm.ErrNoMachine and
// stays where it is.
func Test%[5]sWithoutHandlers(t *testing.T) {
	%[1]s.WithoutHandlers(t, func() *%[2]s { return %[3]s(nil) }, func() *%[2]s { return new(%[2]s) })
}

// Test%[5]sTableIsCurrent fails when %[4]s changed after this code was
// generated, or when %[7]s() or the error sentinels do not describe it.
func Test%[5]sTableIsCurrent(t *testing.T) { %[1]s.TableIsCurrent(t, %[6]s) }

// Test%[5]sRandomWalk fires random events with random guard outcomes,
// failing actions and payloads at the machine and at an independent
// oracle built on looplab/fsm from %[4]s, comparing them after every step.
func Test%[5]sRandomWalk(t *testing.T) { %[1]s.RandomWalk(t) }

// Test%[5]sStateFromAnyGoroutine reads the state while events move the
// machine: under the race detector, it fails unless State is safe to
// call from any goroutine.
func Test%[5]sStateFromAnyGoroutine(t *testing.T) { %[1]s.StateFromAnyGoroutine(t) }
`, harness, M, m.constructor(), src.display(), m.names.Tests, m.hashConst(), m.tableFunc())
	return gofmt(M+" tests", p.Bytes())
}
