package fsmtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tablefsm/tablefsm/fsm"
)

// The tests below check the harness's own checks: each runs a harness
// method, in a child process of this test binary, on a hand-written
// machine with one bug that only one check of the harness sees, and
// wants the child to fail with that check's message (and to pass when
// the machine has no bug).

const switchYAML = `machine: Switch
package: toggle
initial: Off
unhandled: {refuse: ErrNotAllowed}
states:
  Off: {}
  On: {}
  Gone: {terminal: true, unhandled: ignore}
events:
  Flip: {payload: {n: int}}
  Break: {}
guards:
  Free: {error: ErrStuck, uses: [n]}
  Loose: {error: ErrStuck}
actions:
  Click: {uses: [n]}
errors:
  ErrNotAllowed: {}
  ErrStuck: {}
rows:
  - {from: Off, on: Flip, if: [Free], to: On, do: [Click]}
  - {from: Off, on: Flip, if: [Loose], to: On, do: [Click]}
  - {from: On, on: Flip, to: Off}
  - {from: [Off, On], on: Break, to: Gone}
`

type (
	swState uint8
	swEvent uint8
)

const (
	swOff swState = iota + 1
	swOn
	swGone
)

const (
	swFlip swEvent = iota + 1
	swBreak
)

// swBug names the bug the switch machine has in this process: set from
// the environment in the child process only.
var swBug = os.Getenv("FSMTEST_SWITCH_BUG")

func (s swState) String() string {
	if swBug == "misnamed" && s == swOn {
		return "Onn"
	}
	if int(s) < 4 {
		return [...]string{"State(0)", "Off", "On", "Gone"}[s]
	}
	return "State(" + string(rune('0'+s)) + ")"
}
func (s swState) Terminal() bool { return s == swGone }
func (e swEvent) String() string {
	if swBug == "event zero named" && e == 0 {
		return "Flip"
	}
	if int(e) < 3 {
		return [...]string{"Event(0)", "Flip", "Break"}[e]
	}
	return "Event(" + string(rune('0'+e)) + ")"
}

var (
	errSwNotAllowed = errors.New("switch: not allowed")
	errSwStuck      = errors.New("switch: stuck")
)

// swMachine implements switchYAML by hand, on a Fake, with the bug swBug.
type swMachine struct {
	state atomic.Uint32
	f     *Fake
	obs   fsm.Observer
}

func (m *swMachine) State() swState {
	s := swState(m.state.Load())
	if swBug == "lies unobserved" && m.obs == nil && s == swGone {
		return swOn // the machine behaves as in Gone, but says On
	}
	return s
}

func (m *swMachine) SetObserver(o fsm.Observer) { m.obs = o }

func (m *swMachine) observe(from swState, e swEvent, row int, to swState, err error) {
	if m.obs != nil {
		m.obs.Observe(fsm.Step{Machine: "Switch", From: from.String(), Event: e.String(), To: to.String(), Row: row, Err: err})
	}
}

func (m *swMachine) move(from swState, e swEvent, row int, to swState) error {
	m.state.Store(uint32(to))
	m.observe(from, e, row, to, nil)
	return nil
}

func (m *swMachine) refuse(from swState, e swEvent, guard string, sentinel error) error {
	err := fsm.Refused(&fsm.Refusal{Machine: "Switch", State: from.String(), Event: e.String(), Guard: guard, Err: sentinel})
	m.observe(from, e, -1, from, err)
	return err
}

func (m *swMachine) Flip(n int) error {
	if m.f == nil {
		return fsm.ErrNoMachine
	}
	from := swState(m.state.Load())
	switch from {
	case swOff:
		row := 0
		if !m.f.Guard(1, "Free", n) {
			row = 1
			if !m.f.Guard(2, "Loose") {
				guard, sentinel := "Free", errSwStuck
				switch swBug {
				case "wrong guard":
					guard = "Loose"
				case "wrong sentinel":
					sentinel = errSwNotAllowed
				case "refusal in another state":
					return m.refuse(swOn, swFlip, guard, sentinel)
				}
				return m.refuse(from, swFlip, guard, sentinel)
			}
		}
		if err := m.f.Action("Click", n); err != nil {
			m.observe(from, swFlip, row, from, err)
			return err
		}
		return m.move(from, swFlip, row, swOn)
	case swOn:
		if swBug == "spurious error" {
			err := errors.New("switch: spurious")
			m.state.Store(uint32(swOff))
			m.observe(from, swFlip, 2, swOff, err)
			return err
		}
		return m.move(from, swFlip, 2, swOff)
	}
	m.observe(from, swFlip, -1, from, nil) // Gone ignores it
	return nil
}

func (m *swMachine) Break() error {
	if m.f == nil {
		if swBug == "moves without handlers" {
			m.state.Store(uint32(swGone))
		}
		return fsm.ErrNoMachine
	}
	from := swState(m.state.Load())
	if from == swGone {
		m.observe(from, swBreak, -1, from, nil)
		return nil
	}
	return m.move(from, swBreak, 3, swGone)
}

// switchHarness is a harness of swMachine, its table in dir.
func switchHarness(t *testing.T, dir string) *Harness[*swMachine, swState, swEvent] {
	t.Helper()
	path := filepath.Join(dir, "switch.yaml")
	if err := os.WriteFile(path, []byte(switchYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	table, err := fsm.Load("switch.yaml", []byte(switchYAML))
	if err != nil {
		t.Fatal(err)
	}
	return &Harness[*swMachine, swState, swEvent]{
		Table:     table.WithoutPositions(),
		TablePath: path,
		TableName: "switch.yaml",
		New: func(f *Fake) *swMachine {
			m := &swMachine{f: f}
			m.state.Store(uint32(swOff))
			return m
		},
		Fire: func(m *swMachine, e swEvent, set int) error {
			switch e {
			case swFlip:
				return m.Flip(1 + set) // the payloads below
			case swBreak:
				return m.Break()
			}
			return errors.New("no such event")
		},
		Payloads: [2]map[swEvent]map[string]any{
			{swFlip: {"n": 1}, swBreak: {}},
			{swFlip: {"n": 2}, swBreak: {}},
		},
		Errors: map[string]error{"ErrNotAllowed": errSwNotAllowed, "ErrStuck": errSwStuck},
		Paths: map[swState][]Step[swEvent]{
			swOff:  {},
			swOn:   {{Event: swFlip, Pass: 1}},
			swGone: {{Event: swBreak}},
		},
	}
}

// switchCases are right cases of the switch machine's table.
var switchCases = []Case[swState, swEvent]{
	{Name: "Off/Flip/-Free-Loose", From: swOff, Event: swFlip, Pass: 0, To: swOff, Row: -1, Err: "ErrStuck", Guard: "Free", Calls: "Free,Loose"},
	{Name: "Off/Flip/+Free", From: swOff, Event: swFlip, Pass: 1, To: swOn, Row: 0, Calls: "Free,Click"},
	{Name: "Off/Break", From: swOff, Event: swBreak, To: swGone, Row: 3},
	{Name: "On/Break", From: swOn, Event: swBreak, To: swGone, Row: 3},
	{Name: "Gone/Flip", From: swGone, Event: swFlip, To: swGone, Row: -1},
}

// TestHarnessChild runs, in the child process only, the harness method
// FSMTEST_SWITCH_RUN on the switch machine.
func TestHarnessChild(t *testing.T) {
	run := os.Getenv("FSMTEST_SWITCH_RUN")
	if run == "" {
		t.Skip("run by TestHarnessSeesEachBug only")
	}
	h := switchHarness(t, t.TempDir())
	switch run {
	case "Run":
		h.Run(t, switchCases)
	case "RunWrongCase0", "RunWrongCase2", "RunWrongCase4":
		// One case of the list wrong: every case must run.
		cases := slices.Clone(switchCases)
		i := int(run[len(run)-1] - '0')
		cases[i].Calls = "Wrong"
		h.Run(t, cases)
	case "RandomWalk":
		h.RandomWalk(t)
	case "ShortestPaths":
		h.ShortestPaths(t)
	case "Strings":
		h.Strings(t)
	case "WithoutHandlers":
		h.WithoutHandlers(t, func() *swMachine {
			m := &swMachine{}
			m.state.Store(uint32(swOff))
			return m
		}, func() *swMachine { return &swMachine{} })
	default:
		t.Fatalf("no such run %q", run)
	}
}

// child runs TestHarnessChild with the run and bug given, and returns
// its output and whether it passed.
func child(t *testing.T, run, bug string) (string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHarnessChild$", "-test.count=1", "-test.v", "-rapid.nofailfile", "-rapid.checks=300")
	cmd.Env = append(os.Environ(), "FSMTEST_SWITCH_RUN="+run, "FSMTEST_SWITCH_BUG="+bug)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return string(out), err == nil
}

// TestHarnessSeesEachBug: the switch machine passes every harness method
// used here without a bug, and each bug fails the method with the message
// of the check that sees it.
func TestHarnessSeesEachBug(t *testing.T) {
	if os.Getenv("FSMTEST_SWITCH_RUN") != "" {
		t.Skip("in the child process")
	}
	for _, run := range []string{"Run", "RandomWalk", "ShortestPaths", "Strings", "WithoutHandlers"} {
		if out, ok := child(t, run, ""); !ok {
			t.Fatalf("%s fails on the switch machine without a bug:\n%s", run, out)
		}
	}
	for _, c := range []struct{ run, bug, want string }{
		// The refusal's guard, and its sentinel, each compared on its own.
		{"Run", "wrong guard", "refusal = "},
		{"RandomWalk", "wrong guard", "oracle guard"},
		{"Run", "wrong sentinel", "want a refusal with ErrStuck"},
		{"RandomWalk", "wrong sentinel", `oracle "ErrStuck"`},
		// The state, where nothing else shows it.
		{"Run", "lies unobserved", "without an observer: state = On, want Gone"},
		{"RandomWalk", "lies unobserved", "state On, oracle Gone"},
		{"ShortestPaths", "lies unobserved", "ended in On"},
		{"Strings", "misnamed", `State(2) = "Onn", want "On"`},
		{"RandomWalk", "refusal in another state", "oracle guard"},
		{"RandomWalk", "spurious error", `error switch: spurious, oracle ""`},
		{"WithoutHandlers", "moves without handlers", "Break with nil handlers: moved from Off to Gone"},
		{"Strings", "event zero named", "the zero State or Event has a name"},
		// Every case runs, the first and the last included.
		{"RunWrongCase0", "", `want "Wrong"`},
		{"RunWrongCase2", "", `want "Wrong"`},
		{"RunWrongCase4", "", `want "Wrong"`},
	} {
		out, ok := child(t, c.run, c.bug)
		if ok || !strings.Contains(out, c.want) {
			t.Errorf("%s on a switch with bug %q: passed %v, want a failure with %q:\n%s", c.run, c.bug, ok, c.want, out)
		}
	}
}

// TestScribbleChangesEveryKind: scribble changes each kind it promises
// to, reached through a pointer and a slice, so that TableIsCurrent sees
// data shared between two results of a Table function whatever it holds.
func TestScribbleChangesEveryKind(t *testing.T) {
	type parts struct {
		S string
		B bool
		I int
		K int8
		L []int64
	}
	n := 7
	v := &parts{S: "s", B: true, I: 1, K: 2, L: []int64{4}}
	shared := v.L
	p := &n
	scribble(reflect.ValueOf(v))
	scribble(reflect.ValueOf(p))
	if v.S == "s" || v.B || v.I == 1 || v.K == 2 || shared[0] == 4 || n == 7 {
		t.Errorf("scribble left %+v, %d unchanged in part", *v, n)
	}
}
