package fsmtest

import (
	"errors"
	"math"
	"testing"
	"time"
)

type node struct {
	Next  *node
	Name  string
	count int
}

type (
	stamp    time.Time
	recvOnly <-chan int
	iface    interface{ M() }
)

// Value makes values that are not zero where the type allows, that differ
// by seed where it has room, and never panics.
func TestValue(t *testing.T) {
	if Value[bool](1) != true || Value[bool](2) != false || Value[bool](-3) != true || Value[int](7) != 7 || Value[string](3) != "v3" || Value[float64](2) != 2.5 {
		t.Error("basic values")
	}
	if v := Value[int8](300); v == 0 || Value[uint8](1000) == 0 {
		t.Errorf("small integers: %d", v)
	}
	if Value[time.Time](1).Equal(Value[time.Time](2)) || Value[time.Time](1).IsZero() || time.Time(Value[stamp](1)).IsZero() {
		t.Error("times")
	}
	if p := Value[*node](5); p == nil || p.Next == nil || p.Name == "" || p.count != 0 {
		t.Errorf("pointer to a struct: %+v", p)
	}
	if s := Value[[]string](4); len(s) != 1 || s[0] != "v4" {
		t.Errorf("slice %q", s)
	}
	if m := Value[map[string]int](4); m["v4"] != 4 {
		t.Errorf("map %v", m)
	}
	if a := Value[[3]int](9); a[0] != 9 {
		t.Errorf("array %v", a)
	}
	if Value[chan int](1) == nil || Value[recvOnly](1) == nil || Value[func(int) (string, error)](1) == nil {
		t.Error("channels and functions")
	}
	if f := Value[func(int) (string, error)](1); f != nil {
		if s, err := f(3); s != "" || err != nil {
			t.Errorf("the function returns %q, %v", s, err)
		}
	}
	if Value[any](6) != 6 || Value[error](1) == nil || Value[iface](1) != nil {
		t.Error("interfaces")
	}
	_ = Value[[1 << 20]byte](1) // a large array: only its first element is set
}

// counter returns a closure: each call a function value of its own, all
// with the same code.
func counter(n int) func() int { return func() int { n++; return n } }

// hidden holds values of kinds Same compares by identity in unexported
// fields, which reflect marks read-only.
type hidden struct {
	f func() int
	v any
}

// Same compares by identity what has one, by value the rest.
// arrays has an array in an unexported field.
type arrays struct{ b [4]uint16 }

func TestSame(t *testing.T) {
	var big, bigger [1 << 16]byte
	bigger[len(bigger)-1] = 1
	p, q := Value[*node](1), Value[*node](1)
	s := Value[[]int](1)
	f := Value[func()](1)
	e := errors.New("x")
	g := counter(1)
	for _, c := range []struct {
		got, want any
		same      bool
	}{
		{p, p, true}, {p, q, false}, {(*node)(nil), p, false},
		{s, s, true}, {s, Value[[]int](1), false}, {s[:0], s, false},
		{3, 3, true}, {3, 4, false}, {int64(3), 3, false}, {"a", "a", true},
		{f, f, true}, {f, (func())(nil), false}, {(func())(nil), (func())(nil), true},
		{f, Value[func()](2), false}, {f, Value[func()](1), false}, // each a function value of its own
		{counter(1), counter(1), false}, {g, g, true}, // closures of one literal
		{Value[time.Time](2), Value[time.Time](2), true}, {Value[time.Time](2), Value[time.Time](3), false},
		{Value[time.Time](3), Value[time.Time](3).UTC(), false}, // the same instant elsewhere
		{node{Name: "a"}, node{Name: "a"}, true}, {node{count: 1}, node{}, false},
		{[]any{e}, []any{e}, false}, {e, e, true}, {nil, nil, true}, {nil, 0, false},
		// Unexported fields: a function, and an interface holding one.
		{hidden{f: g}, hidden{f: g}, true}, {hidden{f: g}, hidden{f: counter(1)}, false},
		{hidden{v: g}, hidden{v: g}, true}, {hidden{v: g}, hidden{v: counter(1)}, false},
		{hidden{v: hidden{f: g}}, hidden{v: hidden{f: g}}, true}, {hidden{v: hidden{f: g}}, hidden{v: hidden{}}, false},
		{Value[hidden](1), Value[hidden](1), true},
		// Arrays: of integers and booleans compared by their bytes, of
		// floating point numbers by ==, in unexported fields too.
		{[3]int{1, 2, 3}, [3]int{1, 2, 3}, true}, {[3]int{1, 2, 3}, [3]int{1, 2, 4}, false},
		{[2]bool{true, false}, [2]bool{true, true}, false}, {[2]bool{true}, [2]bool{true}, true},
		{big, big, true}, {big, bigger, false},
		{[1]float64{math.NaN()}, [1]float64{math.NaN()}, false}, {[1]float64{0}, [1]float64{math.Copysign(0, -1)}, true},
		{arrays{b: [4]uint16{1}}, arrays{b: [4]uint16{1}}, true}, {arrays{b: [4]uint16{1}}, arrays{b: [4]uint16{2}}, false},
	} {
		if got := Same(c.got, c.want); got != c.same {
			t.Errorf("Same(%s, %s) = %v", Show(c.got), Show(c.want), got)
		}
	}
	if got := Show(p); len(got) > 40 || got[:8] != "(*fsmtes" {
		t.Errorf("Show(pointer) = %q", got)
	}
}
