package fsm

// WithoutPositions returns a deep copy of t with every position cleared:
// the form generated code describes a table in, for comparing a generated
// <Machine>Table() with the source it came from.
func (t *Table) WithoutPositions() *Table {
	c := *t
	c.Pos = Pos{}
	c.Unhandled.Pos = Pos{}
	c.Imports = mapSlice(t.Imports, func(x Import) Import { x.Pos = Pos{}; return x })
	c.States = mapSlice(t.States, func(x State) State {
		x.Pos = Pos{}
		if x.Override != nil {
			p := *x.Override
			p.Pos = Pos{}
			x.Override = &p
		}
		return x
	})
	c.Events = mapSlice(t.Events, func(x Event) Event {
		x.Pos = Pos{}
		x.Payload = mapSlice(x.Payload, func(f Field) Field { f.Pos = Pos{}; return f })
		return x
	})
	c.Guards = mapSlice(t.Guards, func(x Guard) Guard { x.Pos = Pos{}; x.Uses = clone(x.Uses); return x })
	c.Actions = mapSlice(t.Actions, func(x Action) Action { x.Pos = Pos{}; x.Uses = clone(x.Uses); return x })
	c.Errors = mapSlice(t.Errors, func(x Error) Error { x.Pos = Pos{}; return x })
	c.Rows = mapSlice(t.Rows, func(x Row) Row {
		x.Pos = Pos{}
		x.From, x.If, x.Do = clone(x.From), clone(x.If), clone(x.Do)
		return x
	})
	return &c
}

func mapSlice[T any](in []T, f func(T) T) []T {
	if in == nil {
		return nil
	}
	out := make([]T, len(in))
	for i, x := range in {
		out[i] = f(x)
	}
	return out
}

func clone(in []string) []string { return mapSlice(in, func(s string) string { return s }) }
