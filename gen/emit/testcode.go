package emit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tablefsm/tablefsm/fsm"
)

// maxExhaustiveGuards bounds the guards of one (state, event) group whose
// outcome combinations the generated tests enumerate one by one; larger
// groups are left to the random walk.
const maxExhaustiveGuards = 10

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
			if len(gs) == 0 || len(gs) > maxExhaustiveGuards {
				continue
			}
			for combo := 0; combo < 1<<len(gs); combo++ {
				var pass uint64
				var bits strings.Builder
				for i, g := range gs {
					holds := combo&(1<<i) != 0
					if holds {
						pass |= m.guardBit(g)
					}
					bits.WriteString(map[bool]string{true: "+", false: "-"}[holds] + g)
				}
				out = append(out, tcase{
					name: s.Name + "/" + e.Name + "/" + bits.String(), from: s.Name, event: e.Name, pass: pass,
					want: m.evaluate(s.Name, e.Name, pass, ""),
				})
			}
		}
	}
	return out
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

// payloadVar names the variable holding the payload of e in the tests.
func payloadVar(lower string, e fsm.Event) string { return lower + "Payload" + e.Name }

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
	M, l := t.Machine, m.lower
	var p printer
	p.f("%s", header(src))
	p.f("package %s\n\n", t.Package)
	p.f("%s", importBlock(generatedImports("sha256", "hex", "errors", "os", "reflect", "slices", "strings", "testing",
		"rapid", "fsm", "fsmtest"), t.Imports))

	// The fake of the handlers interface.
	p.f("// %sFake is a fake of %s: guard i holds when bit i of pass is\n", l, m.handlers())
	p.f("// set, the action named fail fails, calls records every call and args\n")
	p.f("// the arguments of each.\n")
	p.f("type %sFake struct {\n\tpass uint64\n\tfail string\n\tcalls []string\n\targs [][]any\n}\n\n", l)
	p.f("var err%sFakeAction = errors.New(\"fake action failed\")\n\n", M)
	p.f("func (f *%sFake) guard(bit uint64, name string, args ...any) bool {\n\tf.calls = append(f.calls, name)\n\tf.args = append(f.args, args)\n\treturn f.pass&bit != 0\n}\n\n", l)
	p.f("func (f *%sFake) action(name string, args ...any) error {\n\tf.calls = append(f.calls, name)\n\tf.args = append(f.args, args)\n\tif f.fail == name {\n\t\treturn err%sFakeAction\n\t}\n\treturn nil\n}\n\n", l, M)
	for _, g := range t.Guards {
		params, args := fakeParams(m.paramTypes(g.Name, g.Uses))
		p.f("func (f *%sFake) %s(%s) bool { return f.guard(%#x, %q%s) }\n", l, g.Name, params, m.guardBit(g.Name), g.Name, args)
	}
	for _, a := range t.Actions {
		params, args := fakeParams(m.paramTypes(a.Name, a.Uses))
		p.f("func (f *%sFake) %s(%s) error { return f.action(%q%s) }\n", l, a.Name, params, a.Name, args)
	}
	p.f("\nvar _ %s = (*%sFake)(nil)\n\n", m.handlers(), l)

	// The payloads the tests fire events with.
	seed := 0
	for _, e := range t.Events {
		if len(e.Payload) == 0 {
			continue
		}
		p.f("// %s is what %s is fired with in these tests: for each\n// field, a value of its type made by fsmtest.Value from a seed of its own.\n", payloadVar(l, e), e.Name)
		p.f("var %s = struct {\n", payloadVar(l, e))
		for _, f := range e.Payload {
			p.f("\t%s %s\n", f.Name, f.Type)
		}
		p.f("}{\n")
		for _, f := range e.Payload {
			seed++
			p.f("\tfsmtest.Value[%s](%d),\n", f.Type, seed)
		}
		p.f("}\n\n")
	}
	p.f("// %sFire fires e with its payload of these tests.\n", l)
	p.f("func %sFire(m *%s, e Event) error {\n\tswitch e {\n", l, M)
	for _, e := range t.Events {
		var args []string
		for _, f := range e.Payload {
			args = append(args, payloadVar(l, e)+"."+f.Name)
		}
		p.f("\tcase %s:\n\t\treturn m.%s(%s)\n", eventConst(e.Name), e.Name, strings.Join(args, ", "))
	}
	p.f("\t}\n\treturn errors.New(\"no such event: \" + e.String())\n}\n\n")

	p.f("// %sPayloads is the payload of each event, by field.\n", l)
	p.f("var %sPayloads = map[Event]map[string]any{\n", l)
	for _, e := range t.Events {
		if len(e.Payload) == 0 {
			continue
		}
		p.f("\t%s: {", eventConst(e.Name))
		for _, f := range e.Payload {
			p.f("%q: %s.%s, ", f.Name, payloadVar(l, e), f.Name)
		}
		p.f("},\n")
	}
	p.f("}\n\n")
	p.f("// %sUses is the payload fields each guard and action reads.\n", l)
	p.f("var %sUses = map[string][]string{\n", l)
	for _, g := range t.Guards {
		p.f("\t%q: %s,\n", g.Name, strings.TrimPrefix(strs(g.Uses), "[]string"))
	}
	for _, a := range t.Actions {
		p.f("\t%q: %s,\n", a.Name, strings.TrimPrefix(strs(a.Uses), "[]string"))
	}
	p.f("}\n\n")
	p.f(`// %[1]sCheckArgs reports, through report, every guard or action
// call of f that did not get the payload of e it reads.
func %[1]sCheckArgs(f *%[1]sFake, e Event, report func(format string, args ...any)) {
	for i, name := range f.calls {
		uses := %[1]sUses[name]
		if len(f.args[i]) != len(uses) {
			report("%%v: %%s got %%d arguments, want %%d", e, name, len(f.args[i]), len(uses))
			continue
		}
		for j, field := range uses {
			if want := %[1]sPayloads[e][field]; !fsmtest.Same(f.args[i][j], want) {
				report("%%v: %%s got %%s = %%s, want the payload's %%s", e, name, field, fsmtest.Show(f.args[i][j]), fsmtest.Show(want))
			}
		}
	}
}

`, l)

	p.f("// %sErrors maps the table's error names to their sentinels.\n", l)
	p.f("var %sErrors = map[string]error{\n", l)
	for _, e := range t.Errors {
		p.f("\t%q: %s,\n", e.Name, e.Name)
	}
	p.f("}\n\n")
	p.f("var %sGuardBits = map[string]uint64{\n", l)
	for _, g := range t.Guards {
		p.f("\t%q: %#x,\n", g.Name, m.guardBit(g.Name))
	}
	p.f("}\n\n")
	p.f("var %sActions = []string{\"\"", l)
	for _, a := range t.Actions {
		p.f(", %q", a.Name)
	}
	p.f("}\n\n")

	p.f("type %sStep struct {\n\tevent Event\n\tpass uint64\n}\n\n", l)
	p.f("// %sPaths is the shortest way from %s to every state.\n", l, t.Initial)
	p.f("var %sPaths = map[State][]%sStep{\n", l, l)
	for _, s := range t.States {
		path, ok := paths[s.Name]
		if !ok {
			continue
		}
		p.f("\t%s: {", stateConst(s.Name))
		for _, st := range path {
			p.f("{%s, %#x}, ", eventConst(st.event), st.pass)
		}
		p.f("},\n")
	}
	p.f("}\n\n")

	p.f(`// %[1]sAt returns a machine driven from its initial state to state s
// through its public methods only.
func %[1]sAt(t *testing.T, f *%[1]sFake, s State) *%[2]s {
	t.Helper()
	m := New%[2]s(f)
	for _, st := range %[1]sPaths[s] {
		f.pass, f.fail = st.pass, ""
		if err := %[1]sFire(m, st.event); err != nil {
			t.Fatalf("on the way to %%v: %%v: %%v", s, st.event, err)
		}
	}
	if m.State() != s {
		t.Fatalf("path to %%v ends in %%v", s, m.State())
	}
	return m
}

type %[1]sCase struct {
	name  string
	from  State
	event Event
	pass  uint64
	fail  string
	to    State
	row   int
	err   string // a declared error, "action" for the failing action, "" for none
	guard string
	calls string
}

func %[1]sRun(t *testing.T, cases []%[1]sCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &%[1]sFake{}
			m := %[1]sAt(t, f, c.from)
			var steps []fsm.Step
			m.SetObserver(fsm.ObserverFunc(func(s fsm.Step) {
				steps = append(steps, s)
				if got := m.State().String(); got != s.To {
					t.Errorf("the observer saw the machine in %%s, and a step to %%s: it ran before the step was complete", got, s.To)
				}
			}))
			f.pass, f.fail, f.calls, f.args = c.pass, c.fail, nil, nil
			err := %[1]sFire(m, c.event)
			if got := m.State(); got != c.to {
				t.Errorf("state = %%v, want %%v", got, c.to)
			}
			%[1]sCheckErr(t, err, c.from, c.event, c.err, c.guard)
			if got := strings.Join(f.calls, ","); got != c.calls {
				t.Errorf("calls = %%q, want %%q", got, c.calls)
			}
			%[1]sCheckArgs(f, c.event, t.Errorf)
			want := fsm.Step{Machine: %[2]q, From: c.from.String(), Event: c.event.String(), To: c.to.String(), Row: c.row}
			if len(steps) != 1 {
				t.Errorf("observed %%d steps, want one %%+v", len(steps), want)
			} else if got := steps[0]; got.Err != err {
				t.Errorf("observed error %%v, the event returned %%v", got.Err, err)
			} else if got.Err = nil; got != want {
				t.Errorf("observed %%+v, want %%+v", got, want)
			}
		})
	}
}

func %[1]sCheckErr(t *testing.T, err error, from State, e Event, want, guard string) {
	t.Helper()
	switch want {
	case "":
		if err != nil {
			t.Errorf("error = %%v, want none", err)
		}
	case "action":
		if err != err%[2]sFakeAction {
			t.Errorf("error = %%v, want the failing action's, as it is", err)
		}
	default:
		var r *fsm.Refusal
		if !errors.Is(err, %[1]sErrors[want]) || !errors.As(err, &r) {
			t.Errorf("error = %%v, want a refusal with %%s", err, want)
			return
		}
		if r.Guard != guard || r.State != from.String() || r.Event != e.String() || r.Machine != %[2]q {
			t.Errorf("refusal = %%+v, want guard %%q in %%v on %%v", r, guard, from, e)
		}
	}
}

`, l, M)

	emitCases := func(name, doc string, cases []tcase) {
		p.f("%s", comment("", doc))
		p.f("func Test%s%s(t *testing.T) {\n\t%sRun(t, []%sCase{\n", M, name, l, l)
		for _, c := range cases {
			errName := c.want.Err
			if c.want.Action != "" {
				errName = "action"
			}
			p.f("\t\t{%q, %s, %s, %#x, %q, %s, %d, %q, %q, %q},\n",
				c.name, stateConst(c.from), eventConst(c.event), c.pass, c.fail, stateConst(c.want.To),
				c.want.Row, errName, c.want.Guard, strings.Join(c.want.Called, ","))
		}
		p.f("\t})\n}\n\n")
	}
	emitCases("Matrix", "Every event in every state, with every guard holding.", m.matrixCases())
	emitCases("GuardOutcomes", "Every combination of guard outcomes of every (state, event) group with guards.", m.guardCases())
	emitCases("Rows", "Every row taken in every state it applies in, then each of its actions failing in turn.", rows)

	p.f(`// Test%[2]sShortestPaths drives the machine to every state by the
// shortest path, checking each step.
func Test%[2]sShortestPaths(t *testing.T) {
	for i := 1; i < len(stateNames); i++ {
		s := State(i)
		path, ok := %[1]sPaths[s]
		if !ok {
			t.Errorf("no path to %%v", s)
			continue
		}
		t.Run(s.String(), func(t *testing.T) {
			f := &%[1]sFake{}
			m := New%[2]s(f)
			for i, st := range path {
				f.pass = st.pass
				if err := %[1]sFire(m, st.event); err != nil {
					t.Fatalf("step %%d (%%v): %%v", i, st.event, err)
				}
			}
			if m.State() != s {
				t.Fatalf("ended in %%v", m.State())
			}
		})
	}
}

func Test%[2]sStrings(t *testing.T) {
	table := %[2]sTable()
	for i, s := range table.States {
		if got := State(i + 1).String(); got != s.Name {
			t.Errorf("State(%%d) = %%q, want %%q", i+1, got, s.Name)
		}
		if State(i+1).Terminal() != s.Terminal {
			t.Errorf("%%s.Terminal() = %%v", s.Name, !s.Terminal)
		}
	}
	for i, e := range table.Events {
		if got := Event(i + 1).String(); got != e.Name {
			t.Errorf("Event(%%d) = %%q, want %%q", i+1, got, e.Name)
		}
	}
	if State(0).String() != "State(0)" || Event(0).String() != "Event(0)" {
		t.Error("the zero State or Event has a name")
	}
}

// Test%[2]sWithoutHandlers fires every event at a machine made with nil
// handlers and at the zero machine: each returns fsm.ErrNoMachine and
// stays where it is.
func Test%[2]sWithoutHandlers(t *testing.T) {
	for i := 1; i < len(eventNames); i++ {
		e := Event(i)
		m := New%[2]s(nil)
		from := m.State()
		if err := %[1]sFire(m, e); err != fsm.ErrNoMachine {
			t.Errorf("%%v with nil handlers: error %%v, want fsm.ErrNoMachine", e, err)
		}
		if m.State() != from {
			t.Errorf("%%v with nil handlers: moved from %%v to %%v", e, from, m.State())
		}
		var zero %[2]s
		if err := %[1]sFire(&zero, e); err != fsm.ErrNoMachine {
			t.Errorf("%%v on the zero machine: error %%v, want fsm.ErrNoMachine", e, err)
		}
		if zero.State() != 0 {
			t.Errorf("%%v on the zero machine: moved to %%v", e, zero.State())
		}
	}
}

// Test%[2]sTableIsCurrent fails when %[5]s changed after this code was
// generated, or when %[2]sTable() or the error sentinels do not describe it.
func Test%[2]sTableIsCurrent(t *testing.T) {
	src, err := os.ReadFile(%[4]q)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != %[2]sTableHash {
		t.Fatalf("%%s changed since this code was generated: run go generate", %[4]q)
	}
	parsed, err := fsm.Load(%[3]q, src)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parsed.WithoutPositions(), %[2]sTable()) {
		t.Fatalf("%[2]sTable() differs from %%s", %[4]q)
	}
	for _, e := range parsed.Errors {
		want := parsed.Package + ": " + e.Message
		if err := %[1]sErrors[e.Name]; err == nil || err.Error() != want {
			t.Errorf("sentinel %%s = %%v, want %%q", e.Name, err, want)
		}
	}
}

// Test%[2]sRandomWalk fires random events with random guard outcomes and
// failing actions at the machine and at an independent oracle built on
// looplab/fsm, comparing them after every step.
func Test%[2]sRandomWalk(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		f := &%[1]sFake{}
		m := New%[2]s(f)
		var last fsm.Step
		var seen State // the state when the observer ran
		m.SetObserver(fsm.ObserverFunc(func(s fsm.Step) { last, seen = s, m.State() }))
		oracle, err := fsmtest.NewOracle(%[2]sTable())
		if err != nil {
			rt.Fatal(err)
		}
		n := rapid.IntRange(1, 64).Draw(rt, "steps")
		for i := 0; i < n; i++ {
			e := Event(rapid.IntRange(1, len(eventNames)-1).Draw(rt, "event"))
			f.pass = rapid.Uint64().Draw(rt, "pass")
			f.fail = rapid.SampledFrom(%[1]sActions).Draw(rt, "fail")
			f.calls, f.args = nil, nil
			from := m.State()
			err := %[1]sFire(m, e)
			want := oracle.Fire(e.String(),
				func(g string) bool { return f.pass&%[1]sGuardBits[g] != 0 },
				func(a string) bool { return a == f.fail })
			if m.State().String() != want.To || oracle.State() != want.To {
				rt.Fatalf("step %%d: %%v in %%v: state %%v, oracle %%v", i, e, from, m.State(), want.To)
			}
			errName := want.Err
			if want.Action != "" {
				errName = "action"
			}
			switch {
			case errName == "" && err != nil,
				errName == "action" && err != err%[2]sFakeAction,
				errName != "" && errName != "action" && !errors.Is(err, %[1]sErrors[errName]):
				rt.Fatalf("step %%d: %%v in %%v: error %%v, oracle %%q", i, e, from, err, errName)
			}
			var r *fsm.Refusal
			if errors.As(err, &r) && r.Guard != want.Guard {
				rt.Fatalf("step %%d: %%v in %%v: refused by guard %%q, oracle %%q", i, e, from, r.Guard, want.Guard)
			}
			if !slices.Equal(f.calls, want.Called) {
				rt.Fatalf("step %%d: %%v in %%v: calls %%v, oracle %%v", i, e, from, f.calls, want.Called)
			}
			%[1]sCheckArgs(f, e, rt.Fatalf)
			if last.Row != want.Row || last.From != from.String() || last.To != want.To || last.Err != err {
				rt.Fatalf("step %%d: observed %%+v, oracle row %%d to %%v", i, last, want.Row, want.To)
			}
			if seen.String() != last.To {
				rt.Fatalf("step %%d: the observer saw the machine in %%v, and a step to %%v", i, seen, last.To)
			}
		}
	})
}
`, l, M, src.Name, src.FromPackage, src.display())
	return gofmt(M+" tests", p.Bytes())
}
