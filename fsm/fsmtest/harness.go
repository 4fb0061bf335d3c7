package fsmtest

import (
	"errors"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/tablefsm/tablefsm/fsm"
)

// Fake is the machine-independent half of the fake of a machine's
// handlers that generated tests use: the generated half has one method
// per guard and action, which passes its name and arguments on to Guard
// or Action. Guard i of the table holds when bit i of Pass is set; the
// action named Fail fails with ErrFakeAction; Calls records every guard
// and action called, Args the arguments of each, and States the state the
// machine the harness drives was in at each (what its State returned).
type Fake struct {
	Pass   uint64
	Fail   string
	Calls  []string
	Args   [][]any
	States []string

	state func() string // the driven machine's State, once known
}

// ErrFakeAction is what the failing action of a Fake returns.
var ErrFakeAction = errors.New("fsmtest: fake action failed")

// Guard records a call of the guard name, whose bit in Pass says whether
// it holds.
func (f *Fake) Guard(bit uint64, name string, args ...any) bool {
	f.record(name, args)
	return f.Pass&bit != 0
}

// Action records a call of the action name, which fails if it is Fail.
func (f *Fake) Action(name string, args ...any) error {
	f.record(name, args)
	if f.Fail == name {
		return ErrFakeAction
	}
	return nil
}

func (f *Fake) record(name string, args []any) {
	f.Calls = append(f.Calls, name)
	f.Args = append(f.Args, args)
	if f.state != nil {
		f.States = append(f.States, f.state())
	}
}

// set prepares f for the next event.
func (f *Fake) set(pass uint64, fail string) {
	f.Pass, f.Fail, f.Calls, f.Args, f.States = pass, fail, nil, nil, nil
}

// newMachine makes a machine on handlers backed by f, and has f record
// the machine's state at every call.
func (h *Harness[M, S, E]) newMachine(f *Fake) M {
	m := h.New(f)
	f.state = func() string { return m.State().String() }
	return m
}

// checkStates reports, through report, every guard or action of f that
// ran with the machine in another state than from: a state published
// before the row's effects happened (or a guard seeing the target).
func checkStates(f *Fake, from string, report func(format string, args ...any)) {
	for i, s := range f.States {
		if s != from {
			report("%s ran with the machine already in %s, not %s: the state must change only once every guard and action of the row has run", f.Calls[i], s, from)
			return
		}
	}
}

// StateEnum is what a generated State type is.
type StateEnum interface {
	~uint8
	String() string
	Terminal() bool
}

// EventEnum is what a generated Event type is.
type EventEnum interface {
	~uint8
	String() string
}

// Machine is the part of a generated machine the harness drives besides
// its event methods (which Harness.Fire calls).
type Machine[S StateEnum] interface {
	State() S
	SetObserver(fsm.Observer)
}

// Step is one event fired on the way to a state, with the guard outcomes
// (as Fake.Pass) that make the intended row be taken.
type Step[E EventEnum] struct {
	Event E
	Pass  uint64
}

// Case is one generated test case: in state From, with the guards of Pass
// holding and the action Fail failing, Event moves the machine to To by
// row Row (-1 for none), calling the guards and actions Calls (joined by
// commas), and returns the error Err: the name of a declared error,
// refused by Guard ("" for a row's own refusal or the unhandled policy),
// "action" for the failing action's error as it is, "" for none.
type Case[S StateEnum, E EventEnum] struct {
	Name  string
	From  S
	Event E
	Pass  uint64
	Fail  string
	To    S
	Row   int
	Err   string
	Guard string
	Calls string
}

// Harness runs the generated tests of one machine through its public
// API only. Every field is set by the generated test file.
type Harness[M Machine[S], S StateEnum, E EventEnum] struct {
	// Table is what the machine's Table function returns.
	Table *fsm.Table
	// NewTable is the machine's Table function, which returns a fresh
	// copy at each call (TableIsCurrent checks it, when set).
	NewTable func() *fsm.Table
	// TablePath is the table file, read by the tests (relative to the
	// package's directory), and TableName its base name, which the
	// generated code calls it by (and the tests load it under).
	TablePath, TableName string
	// New makes a machine in its initial state on handlers backed by f.
	New func(f *Fake) M
	// Fire fires e at m with its payload of Payloads[set].
	Fire func(m M, e E, set int) error
	// Payloads holds two sets of the payloads events are fired with, by
	// event and field. Every field differs between the two (booleans
	// included), so a handler given a constant instead of the payload
	// fails with one set or the other.
	Payloads [2]map[E]map[string]any
	// Errors maps the table's error names to their sentinels.
	Errors map[string]error
	// Paths is the shortest way from the initial state to every state.
	Paths map[S][]Step[E]
}

// Run runs each case as a subtest, four times: with each payload set, on
// a new machine driven to its From state along Paths with an observer,
// then on another without one (the generated code has a path of its own
// for each). Each checks the state, the error, the guards and actions
// called with the payload they read and the machine still in From; with
// an observer, also the one step the observer sees (after the state
// changed), and that a refusal is the caller's own copy.
func (h *Harness[M, S, E]) Run(t *testing.T, cases []Case[S, E]) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			for set := range h.Payloads {
				for _, observed := range []bool{true, false} {
					h.runCase(t, c, set, observed)
				}
			}
		})
	}
}

func (h *Harness[M, S, E]) runCase(t *testing.T, c Case[S, E], set int, observed bool) {
	t.Helper()
	errorf := func(format string, args ...any) {
		t.Errorf("payload set %d: "+format, append([]any{set}, args...)...)
	}
	if !observed {
		errorf = func(format string, args ...any) {
			t.Errorf("payload set %d, without an observer: "+format, append([]any{set}, args...)...)
		}
	}
	f := &Fake{}
	m := h.at(t, f, c.From)
	var steps []fsm.Step
	if observed {
		m.SetObserver(fsm.ObserverFunc(func(s fsm.Step) {
			steps = append(steps, s)
			if got := m.State().String(); got != s.To {
				errorf("the observer saw the machine in %s, and a step to %s: it ran before the step was complete", got, s.To)
			}
		}))
	}
	f.set(c.Pass, c.Fail)
	err := h.Fire(m, c.Event, set)
	if got := m.State(); got != c.To {
		errorf("state = %v, want %v", got, c.To)
	}
	h.checkErr(errorf, err, c)
	if got := strings.Join(f.Calls, ","); got != c.Calls {
		errorf("calls = %q, want %q", got, c.Calls)
	}
	h.checkArgs(h.Table, f, c.Event, set, errorf)
	checkStates(f, c.From.String(), errorf)
	if !observed {
		return
	}
	want := fsm.Step{Machine: h.Table.Machine, From: c.From.String(), Event: c.Event.String(), To: c.To.String(), Row: c.Row}
	if len(steps) != 1 {
		errorf("observed %d steps, want one %+v", len(steps), want)
	} else if got := steps[0]; got.Err != err {
		errorf("observed error %v, the event returned %v", got.Err, err)
	} else if got.Err = nil; got != want {
		errorf("observed %+v, want %+v", got, want)
	}
	// A refusal is the caller's copy: changing it changes no later one
	// (the run without an observer checks the same refusal again).
	var r *fsm.Refusal
	if errors.As(err, &r) {
		*r = fsm.Refusal{}
	}
}

// at returns a machine on f driven from its initial state to s.
func (h *Harness[M, S, E]) at(t *testing.T, f *Fake, s S) M {
	t.Helper()
	m := h.newMachine(f)
	for _, st := range h.Paths[s] {
		f.set(st.Pass, "")
		if err := h.Fire(m, st.Event, 0); err != nil {
			t.Fatalf("on the way to %v: %v: %v", s, st.Event, err)
		}
	}
	if m.State() != s {
		t.Fatalf("path to %v ends in %v", s, m.State())
	}
	return m
}

func (h *Harness[M, S, E]) checkErr(errorf func(string, ...any), err error, c Case[S, E]) {
	switch c.Err {
	case "":
		if err != nil {
			errorf("error = %v, want none", err)
		}
	case "action":
		if err != ErrFakeAction {
			errorf("error = %v, want the failing action's, as it is", err)
		}
	default:
		var r *fsm.Refusal
		if !errors.Is(err, h.Errors[c.Err]) || !errors.As(err, &r) {
			errorf("error = %v, want a refusal with %s", err, c.Err)
			return
		}
		if r.Guard != c.Guard || r.State != c.From.String() || r.Event != c.Event.String() || r.Machine != h.Table.Machine {
			errorf("refusal = %+v, want guard %q in %v on %v", r, c.Guard, c.From, c.Event)
		}
	}
}

// checkArgs reports, through report, every guard or action call of f
// that did not get the payload of e (of payload set set) it reads, as
// table says.
func (h *Harness[M, S, E]) checkArgs(table *fsm.Table, f *Fake, e E, set int, report func(format string, args ...any)) {
	for i, name := range f.Calls {
		uses := uses(table, name)
		if len(f.Args[i]) != len(uses) {
			report("%v: %s got %d arguments, want %d", e, name, len(f.Args[i]), len(uses))
			continue
		}
		for j, field := range uses {
			if want := h.Payloads[set][e][field]; !Same(f.Args[i][j], want) {
				report("%v: %s got %s = %s, want the payload's %s", e, name, field, Show(f.Args[i][j]), Show(want))
			}
		}
	}
}

// uses returns the payload fields the guard or action name of table
// reads.
func uses(table *fsm.Table, name string) []string {
	if g, ok := table.Guard(name); ok {
		return g.Uses
	}
	if a, ok := table.Action(name); ok {
		return a.Uses
	}
	return nil
}

// guardBit is the bit of Fake.Pass that says whether guard g of table
// holds.
func guardBit(table *fsm.Table, g string) uint64 {
	return 1 << slices.IndexFunc(table.Guards, func(x fsm.Guard) bool { return x.Name == g })
}

// drawPass draws guard outcomes (as Fake.Pass) for e in state s. The
// guards of the cell, in the order its rows test them, hold up to one
// drawn at random (or all of them), which fails; the others hold or not
// at even odds. So a cell's every row, and every guard of it refusing,
// is as likely as the next however many guards come before: independent
// draws would all but never let a row of a dozen guards refuse by its
// last one.
func (h *Harness[M, S, E]) drawPass(rt *rapid.T, table *fsm.Table, s S, e E) uint64 {
	var order []int // guard indexes, first test first
	for _, ri := range table.Group(s.String(), e.String()) {
		for _, g := range table.Rows[ri].If {
			i := slices.IndexFunc(table.Guards, func(x fsm.Guard) bool { return x.Name == g })
			if !slices.Contains(order, i) {
				order = append(order, i)
			}
		}
	}
	var pass uint64
	for g := range table.Guards {
		if rapid.Bool().Draw(rt, "holds") {
			pass |= 1 << g
		}
	}
	if len(order) == 0 {
		return pass
	}
	first := rapid.IntRange(0, len(order)).Draw(rt, "first failing guard")
	for _, g := range order[:first] {
		pass |= 1 << g
	}
	if first < len(order) {
		pass &^= 1 << order[first]
	}
	return pass
}

// ShortestPaths drives a machine to every state along Paths, checking
// that each step is accepted and that the path ends there.
func (h *Harness[M, S, E]) ShortestPaths(t *testing.T) {
	for i := range h.Table.States {
		s := S(i + 1)
		path, ok := h.Paths[s]
		if !ok {
			t.Errorf("no path to %v", s)
			continue
		}
		t.Run(s.String(), func(t *testing.T) {
			f := &Fake{}
			m := h.newMachine(f)
			for i, st := range path {
				f.set(st.Pass, "")
				if err := h.Fire(m, st.Event, 0); err != nil {
					t.Fatalf("step %d (%v): %v", i, st.Event, err)
				}
			}
			if m.State() != s {
				t.Fatalf("ended in %v", m.State())
			}
		})
	}
}

// Strings checks the names of the states and events, and that the
// terminal states are those of the table.
func (h *Harness[M, S, E]) Strings(t *testing.T) {
	for i, s := range h.Table.States {
		if got := S(i + 1).String(); got != s.Name {
			t.Errorf("State(%d) = %q, want %q", i+1, got, s.Name)
		}
		if S(i+1).Terminal() != s.Terminal {
			t.Errorf("%s.Terminal() = %v", s.Name, !s.Terminal)
		}
	}
	for i, e := range h.Table.Events {
		if got := E(i + 1).String(); got != e.Name {
			t.Errorf("Event(%d) = %q, want %q", i+1, got, e.Name)
		}
	}
	if S(0).String() != "State(0)" || E(0).String() != "Event(0)" {
		t.Error("the zero State or Event has a name")
	}
	// The value past the last one has no name, when there is one: with
	// fsm.MaxStates states (or fsm.MaxEvents events) every value of the
	// type but zero names one.
	ns, ne := len(h.Table.States)+1, len(h.Table.Events)+1
	if got, want := S(ns).String(), "State("+strconv.Itoa(ns)+")"; ns <= fsm.MaxStates && got != want {
		t.Errorf("the value past the last state is %q, want %q", got, want)
	}
	if got, want := E(ne).String(), "Event("+strconv.Itoa(ne)+")"; ne <= fsm.MaxEvents && got != want {
		t.Errorf("the value past the last event is %q, want %q", got, want)
	}
}

// WithoutHandlers fires every event at a machine made with nil handlers
// (by bare) and at the zero machine (made by zero): each returns
// fsm.ErrNoMachine and stays where it is.
func (h *Harness[M, S, E]) WithoutHandlers(t *testing.T, bare, zero func() M) {
	for i := range h.Table.Events {
		e := E(i + 1)
		m := bare()
		from := m.State()
		if from.String() != h.Table.Initial {
			t.Errorf("a machine made with nil handlers is in %v, want the initial state %s", from, h.Table.Initial)
		}
		if err := h.Fire(m, e, 0); err != fsm.ErrNoMachine {
			t.Errorf("%v with nil handlers: error %v, want fsm.ErrNoMachine", e, err)
		}
		if m.State() != from {
			t.Errorf("%v with nil handlers: moved from %v to %v", e, from, m.State())
		}
		z := zero()
		if err := h.Fire(z, e, 0); err != fsm.ErrNoMachine {
			t.Errorf("%v on the zero machine: error %v, want fsm.ErrNoMachine", e, err)
		}
		if z.State() != 0 {
			t.Errorf("%v on the zero machine: moved to %v", e, z.State())
		}
	}
}

// TableIsCurrent fails when the table file does not have the hash the
// code was generated from, or when Table and the error sentinels do not
// describe it.
func (h *Harness[M, S, E]) TableIsCurrent(t *testing.T, hash string) {
	src, err := os.ReadFile(h.TablePath)
	if err != nil {
		t.Fatal(err)
	}
	if fsm.SourceHash(src) != hash {
		t.Fatalf("%s changed since this code was generated: run go generate", h.TablePath)
	}
	parsed, err := fsm.Load(h.TableName, src)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parsed.WithoutPositions(), h.Table) {
		t.Fatalf("%s() differs from %s", h.Table.Names().Table, h.TablePath)
	}
	if h.NewTable != nil {
		// Each call returns a copy of its own: changing every part of
		// one changes nothing of the next.
		a, b := h.NewTable(), h.NewTable()
		scribble(reflect.ValueOf(a))
		if !reflect.DeepEqual(parsed.WithoutPositions(), b) {
			t.Errorf("%s() returns data shared between calls: changing one result changed the next", h.Table.Names().Table)
		}
	}
	for _, e := range parsed.Errors {
		want := parsed.Package + ": " + e.Message
		if err := h.Errors[e.Name]; err == nil || err.Error() != want {
			t.Errorf("sentinel %s = %v, want %q", e.Name, err, want)
		}
	}
}

// RandomWalk fires random events, with random guard outcomes, failing
// actions and payload sets, at the machine and at an Oracle of the table
// file (loaded anew, not Table: the walk trusts nothing generated),
// comparing state, error, refusal, calls, arguments, the state the
// guards and actions ran in, and the observed step after every step. The
// observer is set or not at random, step by step: a machine without one
// must behave the same and report nothing. A walk that reaches a terminal
// state may start again on a new machine, so that walks spend their
// steps in the live states rather than in an absorbing one.
func (h *Harness[M, S, E]) RandomWalk(t *testing.T) {
	src, err := os.ReadFile(h.TablePath)
	if err != nil {
		t.Fatal(err)
	}
	table, err := fsm.Load(h.TableName, src)
	if err != nil {
		t.Fatal(err)
	}
	actions := []string{""}
	for _, a := range table.Actions {
		actions = append(actions, a.Name)
	}
	rapid.Check(t, func(rt *rapid.T) {
		var (
			f      *Fake
			m      M
			oracle *Oracle
			last   fsm.Step
			seen   S   // the state when the observer ran
			steps  int // the steps observed during the event
		)
		observer := fsm.ObserverFunc(func(s fsm.Step) { last, seen, steps = s, m.State(), steps+1 })
		observed := false // whether m has the observer
		start := func() {
			f = &Fake{}
			m = h.newMachine(f)
			observed = false
			var err error
			if oracle, err = NewOracle(table); err != nil {
				rt.Fatal(err)
			}
		}
		start()
		n := rapid.IntRange(1, 64).Draw(rt, "steps")
		for i := 0; i < n; i++ {
			if m.State().Terminal() && rapid.Bool().Draw(rt, "start again") {
				start()
			}
			e := E(rapid.IntRange(1, len(table.Events)).Draw(rt, "event"))
			f.set(h.drawPass(rt, table, m.State(), e), rapid.SampledFrom(actions).Draw(rt, "fail"))
			set := rapid.IntRange(0, len(h.Payloads)-1).Draw(rt, "payload set")
			// The observer is set or removed only when the draw changes
			// it: a machine must keep its observer from one step to the
			// next (one that forgets it after a step shows here), and stop
			// reporting once it is removed.
			if want := rapid.Bool().Draw(rt, "observed"); want != observed {
				observed = want
				if observed {
					m.SetObserver(observer)
				} else {
					m.SetObserver(nil)
				}
			}
			from := m.State()
			last, steps = fsm.Step{}, 0 // every event is observed: a step that is not shows
			err := h.Fire(m, e, set)
			want := oracle.Fire(e.String(),
				func(g string) bool { return f.Pass&guardBit(table, g) != 0 },
				func(a string) bool { return a == f.Fail })
			if m.State().String() != want.To || oracle.State() != want.To {
				rt.Fatalf("step %d: %v in %v: state %v, oracle %v", i, e, from, m.State(), want.To)
			}
			errName := want.Err
			if want.Action != "" {
				errName = "action"
			}
			switch {
			case errName == "" && err != nil,
				errName == "action" && err != ErrFakeAction,
				errName != "" && errName != "action" && !errors.Is(err, h.Errors[errName]):
				rt.Fatalf("step %d: %v in %v: error %v, oracle %q", i, e, from, err, errName)
			}
			var r *fsm.Refusal
			refused := errors.As(err, &r)
			if errName != "" && errName != "action" && !refused {
				rt.Fatalf("step %d: %v in %v: error %v is no *fsm.Refusal, oracle refused with %q", i, e, from, err, errName)
			}
			if refused && (r.Guard != want.Guard || r.State != from.String() || r.Event != e.String() || r.Machine != table.Machine) {
				rt.Fatalf("step %d: %v in %v: refusal %+v, oracle guard %q", i, e, from, r, want.Guard)
			}
			if r != nil {
				*r = fsm.Refusal{} // the caller's copy: a later refusal must not see this
			}
			if !slices.Equal(f.Calls, want.Called) {
				rt.Fatalf("step %d: %v in %v: calls %v, oracle %v", i, e, from, f.Calls, want.Called)
			}
			h.checkArgs(table, f, e, set, rt.Fatalf)
			checkStates(f, from.String(), rt.Fatalf)
			if !observed {
				if steps != 0 {
					rt.Fatalf("step %d: observed %+v with the observer removed", i, last)
				}
				continue
			}
			if steps != 1 {
				rt.Fatalf("step %d: %v in %v observed %d times, want once", i, e, from, steps)
			}
			wantStep := fsm.Step{Machine: table.Machine, From: from.String(), Event: e.String(), To: want.To, Row: want.Row, Err: err}
			if last != wantStep {
				rt.Fatalf("step %d: observed %+v, want %+v (oracle row %d)", i, last, wantStep, want.Row)
			}
			if seen.String() != last.To {
				rt.Fatalf("step %d: the observer saw the machine in %v, and a step to %v", i, seen, last.To)
			}
		}
	})
}

// StateFromAnyGoroutine drives a machine to every state along Paths
// while another goroutine reads its State without synchronizing with the
// events, until it sees the state reached: under the race detector, a
// state that is not published atomically fails the test.
func (h *Harness[M, S, E]) StateFromAnyGoroutine(t *testing.T) {
	for s, path := range h.Paths {
		if len(path) == 0 {
			continue
		}
		f := &Fake{}
		m := h.New(f)
		seen, stop := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(seen)
			for m.State() != s {
				select {
				case <-stop: // the machine did not get there
					return
				default:
					runtime.Gosched()
				}
			}
		}()
		for i, st := range path {
			f.set(st.Pass, "")
			if err := h.Fire(m, st.Event, 0); err != nil {
				close(stop)
				<-seen
				t.Fatalf("on the way to %v, step %d (%v): %v", s, i, st.Event, err)
			}
		}
		if got := m.State(); got != s {
			close(stop)
			<-seen
			t.Fatalf("the path to %v ends in %v", s, got)
		}
		<-seen
	}
}

// scribble changes every string, boolean and number reachable from v
// (through pointers, slices, arrays and exported struct fields), so that
// a value sharing any part with it no longer equals what it was.
func scribble(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			scribble(v.Elem())
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			scribble(v.Index(i))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				scribble(v.Field(i))
			}
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString(v.String() + "\x00scribbled")
		}
	case reflect.Bool:
		if v.CanSet() {
			v.SetBool(!v.Bool())
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.CanSet() {
			v.SetInt(v.Int() ^ 1)
		}
	}
}
