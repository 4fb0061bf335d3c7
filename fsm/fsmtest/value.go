package fsmtest

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Value returns a value of type T made from seed, for the payloads
// generated tests fire events with: not the zero value where the type
// allows one to be made, and different for different seeds where the
// type has room (numbers, strings, times, and what holds them).
//
//   - booleans are true for odd seeds, false for even ones; integers
//     are seed (reduced to fit the type);
//     floats seed+0.5; complex numbers seed+1i; strings "v<seed>";
//     time.Time seed seconds after 2000-01-01 UTC, in UTC for even
//     seeds and in a zone of its own (UTC+1) for odd ones, so that a
//     time given on in another location shows;
//   - pointers point to a new value, slices hold one, maps one entry,
//     arrays have their first element set, structs their exported
//     fields; channels are new and unbuffered; functions return zero
//     values; an interface holds an int (or, for error, an error) when
//     such a value implements it.
//
// What Value cannot make (unexported struct fields, other interfaces,
// unsafe pointers, values nested too deep) is left zero. Value never
// panics: a type it fails on gives its zero value.
//
// Where a type has no room, values of different seeds are the same, and
// so swapping two arguments of that type goes unseen: booleans of seeds
// of one parity, and pointers to or slices of zero-size types (Go gives
// every such value one address).
func Value[T any](seed int) (v T) {
	defer func() {
		if recover() != nil {
			var zero T
			v = zero
		}
	}()
	fill(reflect.ValueOf(&v).Elem(), seed, 0)
	return v
}

// maxDepth bounds how deep Value fills a value: types may refer to
// themselves.
const maxDepth = 4

var (
	timeType = reflect.TypeFor[time.Time]()
	epoch    = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	oddZone  = time.FixedZone("UTC+1", 3600)
)

// valueError is the error Value puts in an error interface.
type valueError int

func (e valueError) Error() string { return "fsmtest: value error" }

func fill(v reflect.Value, seed, depth int) {
	t := v.Type()
	if depth > maxDepth {
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		v.SetBool(seed%2 != 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := int64(seed)
		for v.OverflowInt(n) {
			n = n%100 + 1
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n := uint64(seed)
		for v.OverflowUint(n) {
			n = n%100 + 1
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(seed) + 0.5)
	case reflect.Complex64, reflect.Complex128:
		v.SetComplex(complex(float64(seed), 1))
	case reflect.String:
		v.SetString("v" + strconv.Itoa(seed))
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		fill(p.Elem(), seed, depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(t, 1, 1)
		fill(s.Index(0), seed, depth+1)
		v.Set(s)
	case reflect.Array:
		if t.Len() > 0 {
			fill(v.Index(0), seed, depth+1)
		}
	case reflect.Map:
		k := reflect.New(t.Key()).Elem()
		fill(k, seed, depth+1)
		e := reflect.New(t.Elem()).Elem()
		fill(e, seed, depth+1)
		m := reflect.MakeMapWithSize(t, 1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Chan:
		both := reflect.ChanOf(reflect.BothDir, t.Elem())
		v.Set(reflect.MakeChan(both, 0).Convert(t))
	case reflect.Func:
		v.Set(reflect.MakeFunc(t, func([]reflect.Value) []reflect.Value {
			out := make([]reflect.Value, t.NumOut())
			for i := range out {
				out[i] = reflect.Zero(t.Out(i))
			}
			return out
		}))
	case reflect.Interface:
		switch {
		case t.NumMethod() == 0:
			v.Set(reflect.ValueOf(seed))
		case reflect.TypeFor[valueError]().Implements(t):
			v.Set(reflect.ValueOf(valueError(seed)))
		}
	case reflect.Struct:
		if t == timeType || t.ConvertibleTo(timeType) && timeType.ConvertibleTo(t) {
			at := epoch.Add(time.Duration(seed) * time.Second)
			if seed%2 != 0 {
				at = at.In(oddZone)
			}
			v.Set(reflect.ValueOf(at).Convert(t))
			return
		}
		for i := range t.NumField() {
			if f := v.Field(i); f.CanSet() {
				fill(f, seed+i, depth+1)
			}
		}
	}
}

// Same reports whether got is want itself, as generated tests check the
// arguments a guard or an action got: pointers, channels, maps, slices
// and functions are the same one (the same address; for a function, the
// same function value, closure included), other values are equal, field
// by field and element by element.
func Same(got, want any) bool {
	if got == nil || want == nil {
		return got == nil && want == nil
	}
	a, b := reflect.ValueOf(got), reflect.ValueOf(want)
	return a.Type() == b.Type() && same(addressable(a), addressable(b))
}

// addressable returns an addressable copy of v, whose parts same can
// read whether they are exported or not (see readable).
func addressable(v reflect.Value) reflect.Value {
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	return c
}

// readable returns v, or, when v was reached through an unexported field,
// v at the same address without reflect's read-only mark: a function
// there can be copied (funcIdentity), an interface's value read. v is
// addressable (same only sees parts of addressable copies).
func readable(v reflect.Value) reflect.Value {
	if v.CanInterface() {
		return v
	}
	return reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
}

// same compares a and b, addressable values of one type.
func same(a, b reflect.Value) bool {
	a, b = readable(a), readable(b)
	switch a.Kind() {
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float()
	case reflect.Complex64, reflect.Complex128:
		return a.Complex() == b.Complex()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Pointer, reflect.Chan, reflect.Map, reflect.UnsafePointer:
		return a.Pointer() == b.Pointer()
	case reflect.Func:
		return funcIdentity(a) == funcIdentity(b)
	case reflect.Slice:
		return a.Pointer() == b.Pointer() && a.Len() == b.Len() && a.IsNil() == b.IsNil()
	case reflect.Array:
		if bitwise(a.Type().Elem().Kind()) {
			// Equal exactly when their bytes are: compared at once
			// (a payload may be an array of a million bytes, compared
			// at every step of a random walk).
			n := int(a.Type().Size())
			return bytes.Equal(unsafe.Slice((*byte)(a.Addr().UnsafePointer()), n), unsafe.Slice((*byte)(b.Addr().UnsafePointer()), n))
		}
		for i := range a.Len() {
			if !same(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range a.NumField() {
			if !same(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() && b.IsNil()
		}
		return a.Elem().Type() == b.Elem().Type() && same(addressable(a.Elem()), addressable(b.Elem()))
	}
	return false
}

// bitwise reports whether values of kind k are equal exactly when their
// bytes are (no padding, no floating point, nothing pointed to).
func bitwise(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

// funcIdentity is what tells function values apart: the function value
// itself (a pointer to its code and the variables it captured), where
// reflect's Pointer gives only the code, shared by every closure of one
// function literal and by every function reflect.MakeFunc makes.
func funcIdentity(f reflect.Value) unsafe.Pointer {
	v := reflect.New(f.Type())
	v.Elem().Set(f)
	return *(*unsafe.Pointer)(v.UnsafePointer())
}

// Show formats v, an argument Same compared, for a test's failure
// message: a pointer, channel, map, function or slice as its type and
// address (what Same compares), any other value in Go syntax, cut short.
func Show(v any) string {
	if v == nil {
		return "nil"
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Func:
		return fmt.Sprintf("(%s)(%p)", rv.Type(), funcIdentity(rv))
	case reflect.Pointer, reflect.Chan, reflect.Map, reflect.Slice, reflect.UnsafePointer:
		return fmt.Sprintf("(%s)(%#x)", rv.Type(), rv.Pointer())
	}
	const most = 200
	s := fmt.Sprintf("%#v", v)
	if len(s) > most {
		s = strings.ToValidUTF8(s[:most], "") + "…"
	}
	return s
}
