package fsm

import (
	"go/ast"
	"go/constant"
	"go/format"
	"go/parser"
	"go/scanner"
	"go/token"
	"go/types"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// MaxGuards bounds the guards of a table: generated tests enumerate guard
// outcomes in a 64-bit mask.
const MaxGuards = 64

// MaxStates and MaxEvents bound the states and the events of a table:
// generated code numbers them in a byte, zero meaning none.
const (
	MaxStates = 255
	MaxEvents = 255
)

// MaxCellRows bounds the rows that handle one event in one state: each
// row is checked against the earlier rows of every cell it applies to
// (for shadowing), which takes time with the square of their number; a
// lifecycle needs a few rows per cell.
const MaxCellRows = 64

// GeneratedImports are the packages generated code imports, by the name
// it uses for them. The generator takes its imports from here, so that
// validation knows every name and path it must keep free.
var GeneratedImports = map[string]string{
	"errors": "errors", "strconv": "strconv", "atomic": "sync/atomic", "testing": "testing",
	"fsm": "github.com/tablefsm/tablefsm/fsm", "fsmtest": "github.com/tablefsm/tablefsm/fsm/fsmtest",
}

// importPath matches the characters and the slashes of the import paths
// a table may name (importPathProblem checks the rest).
var importPath = regexp.MustCompile(`^[A-Za-z0-9_.~+-]+(/[A-Za-z0-9_.~+-]+)*$`)

// importPathProblem says what the go command would refuse in the import
// path p, or "".
func importPathProblem(p string) string {
	if !importPath.MatchString(p) {
		return "a character other than letters, digits, _.~+- and single slashes between elements"
	}
	if p[0] == '-' {
		return "a leading dash"
	}
	for _, elem := range strings.Split(p, "/") {
		switch {
		case elem[0] == '.':
			return "an element starting with a dot"
		case elem[len(elem)-1] == '.':
			return "an element ending with a dot"
		case tildeDigits.MatchString(strings.SplitN(elem, ".", 2)[0]):
			return "an element ending, before any dot, with a tilde and digits"
		case windowsReserved.MatchString(elem):
			return "an element that is a reserved file name on Windows"
		}
	}
	return ""
}

var (
	tildeDigits     = regexp.MustCompile(`~[0-9]+$`)
	windowsReserved = regexp.MustCompile(`(?i)^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\.|$)`)
)

// validate checks the cross references and the shape of the machine.
func (l *loader) validate(t *Table) {
	states := index(t.States, func(s State) string { return s.Name })
	events := index(t.Events, func(e Event) string { return e.Name })
	guards := index(t.Guards, func(g Guard) string { return g.Name })
	actions := index(t.Actions, func(a Action) string { return a.Name })
	errs := index(t.Errors, func(e Error) string { return e.Name })
	imports := index(t.Imports, func(i Import) string { return i.Name })

	used := map[string]bool{}
	unresolved := false
	resolve := func(r ref, what string, names map[string]int) bool {
		if _, ok := names[r.name]; !ok {
			unresolved = true
			if l.broken[what] {
				return false
			}
			l.errorf(r.pos, "unknown %s %q%s", what, r.name, didYouMean(r.name, names))
			return false
		}
		used[what+" "+r.name] = true
		return true
	}

	if t.Initial != "" {
		resolve(ref{t.Initial, l.initial}, "state", states)
	}
	if len(t.States) > MaxStates {
		l.errorf(t.States[MaxStates].Pos, "more than %d states", MaxStates)
	}
	if len(t.Events) > MaxEvents {
		l.errorf(t.Events[MaxEvents].Pos, "more than %d events", MaxEvents)
	}
	l.checkImports(t)
	l.checkGenerated(t)
	for _, g := range t.Guards {
		if _, ok := actions[g.Name]; ok {
			l.errorf(g.Pos, "guard %s has the name of an action: both are methods of one interface", g.Name)
		}
	}
	if len(t.Guards) > MaxGuards {
		l.errorf(t.Guards[MaxGuards].Pos, "more than %d guards", MaxGuards)
	}

	for _, r := range l.policyRefs {
		if r.name != "" {
			resolve(r, "error", errs)
		}
	}
	for _, e := range t.Events {
		var size int64
		for _, f := range e.Payload {
			reported := len(l.diags)
			size = min(size+l.checkType(f, imports, used), maxFrame)
			if len(l.diags) > reported || l.unreadTypes[f.Pos] {
				if l.refusedTypes == nil {
					l.refusedTypes = make(map[Pos]bool)
				}
				l.refusedTypes[f.Pos] = true
			}
		}
		if size >= maxPayload && len(e.Payload) > 1 {
			l.errorf(e.Pos, "event %s: its payload takes %s or more, the limit of a payload", e.Name, maxPayloadText)
		}
		names := map[string]bool{}
		for _, f := range e.Payload {
			if names[f.Name] {
				l.errorf(f.Pos, "payload field %q appears twice", f.Name)
			}
			names[f.Name] = true
		}
	}

	// fieldType records the field each guard and action parameter was
	// first seen as, so that a guard shared by two events reads one type.
	fieldType := map[string]fieldUse{}
	l.payloadFields = map[string]int{}
	for _, e := range t.Events {
		for _, f := range e.Payload {
			l.payloadFields[f.Name]++
		}
	}
	for i, r := range t.Rows {
		src := l.rows[i]
		for _, s := range src.from {
			if s.name != "*" {
				resolve(s, "state", states)
			}
		}
		var ev Event
		evOK := false
		if src.on.name != "" && resolve(src.on, "event", events) {
			ev, evOK = t.Event(src.on.name)
		}
		seen := map[string]bool{}
		for _, g := range src.ifs {
			if seen[g.name] {
				l.errorf(g.pos, "guard %s appears twice in one row", g.name)
			}
			seen[g.name] = true
			if resolve(g, "guard", guards) && evOK {
				gd, _ := t.Guard(g.name)
				l.checkUses("guard", g, gd.Uses, ev, fieldType)
			}
		}
		for _, a := range src.do {
			if resolve(a, "action", actions) && evOK {
				ad, _ := t.Action(a.name)
				l.checkUses("action", a, ad.Uses, ev, fieldType)
			}
		}
		if src.to.name != "" {
			resolve(src.to, "state", states)
		}
		if src.refuse.name != "" {
			resolve(src.refuse, "error", errs)
		}
		for _, s := range r.From {
			si, ok := states[s]
			if ok && t.States[si].Terminal && r.Kind == Move && r.To != s {
				at := src.from[0].pos
				if i := slices.IndexFunc(src.from, func(f ref) bool { return f.name == s }); i >= 0 {
					at = src.from[i].pos
				}
				l.errorf(at, "row moves out of terminal state %s", s)
				break
			}
		}
	}

	// A guard's error is used when the guard is: the error of a guard no
	// row uses is reported unused with it, not after it is removed.
	for i, r := range l.guardErrRefs {
		if r.name == "" {
			continue
		}
		if used["guard "+t.Guards[i].Name] {
			resolve(r, "error", errs)
		} else if _, ok := errs[r.name]; !ok {
			unresolved = true
			if !l.broken["error"] {
				l.errorf(r.pos, "unknown error %q%s", r.name, didYouMean(r.name, errs))
			}
		}
	}
	for _, decl := range []struct {
		what  string
		names []ref
	}{
		{"event", refsOf(t.Events, func(e Event) ref { return ref{e.Name, e.Pos} })},
		{"guard", refsOf(t.Guards, func(g Guard) ref { return ref{g.Name, g.Pos} })},
		{"action", refsOf(t.Actions, func(a Action) ref { return ref{a.Name, a.Pos} })},
		{"error", refsOf(t.Errors, func(e Error) ref { return ref{e.Name, e.Pos} })},
		{"import", refsOf(t.Imports, func(i Import) ref { return ref{i.Name, i.Pos} })},
	} {
		for _, d := range decl.names {
			if !used[decl.what+" "+d.name] && !l.broken["rows"] && !l.unread[decl.what] {
				l.errorf(d.pos, "%s %s is declared but never used", decl.what, d.name)
			}
		}
	}
	if len(t.States) == 0 && !l.broken["state"] {
		l.errorf(t.Pos, "the table declares no state")
	}
	if len(t.Events) == 0 && !l.broken["event"] {
		l.errorf(t.Pos, "the table declares no event")
	}
	if unresolved || l.malformedRows || len(l.broken) > 0 || t.Initial == "" || len(t.Guards) > MaxGuards {
		return // the checks below assume that every row reads as written, and guards fit a mask
	}
	l.checkGroups(t)
	l.checkShape(t)
}

// fieldUse is the payload field of an event that a guard or action reads.
type fieldUse struct {
	event string
	field Field
}

// checkUses reports payload fields a guard or action reads that the event
// lacks, and fields read with different types by different events.
func (l *loader) checkUses(what string, at ref, uses []string, ev Event, fieldType map[string]fieldUse) {
	if len(uses) == 0 {
		return
	}
	fields := make(map[string]int, len(ev.Payload))
	for i, f := range ev.Payload {
		if _, dup := fields[f.Name]; !dup {
			fields[f.Name] = i
		}
	}
	for _, u := range uses {
		i, ok := fields[u]
		if !ok {
			if l.reportNoSuchField(what, at.name, u) {
				continue
			}
			l.errorf(at.pos, "%s %s reads payload field %q, which event %s lacks", what, at.name, u, ev.Name)
			continue
		}
		key := at.name + "." + u
		field := ev.Payload[i]
		if l.refusedTypes[field.Pos] {
			continue // reported where the field is declared
		}
		if prev, ok := fieldType[key]; ok && sameType(prev.field.Type) != sameType(field.Type) {
			l.errorf(at.pos, "%s %s reads payload field %q as %s here (event %s, declared at %d:%d) but as %s for event %s (declared at %d:%d)",
				what, at.name, u, field.Type, ev.Name, field.Pos.Line, field.Pos.Col, prev.field.Type, prev.event, prev.field.Pos.Line, prev.field.Pos.Col)
			continue
		}
		fieldType[key] = fieldUse{ev.Name, field}
	}
}

// reportNoSuchField reports, once and where the uses of guard or action
// owner names it, a field that no event's payload has (a misspelt field
// name, most likely), and reports whether it is such a field. A field
// some event has is reported at each row whose event lacks it.
func (l *loader) reportNoSuchField(what, owner, field string) bool {
	key := what + " " + owner + "." + field
	pos, named := l.usesAt[key]
	if _, some := l.payloadFields[field]; some || !named || l.broken["event"] || l.eventsUnread {
		return false
	}
	if !l.noSuchField[key] {
		if l.noSuchField == nil {
			l.noSuchField = map[string]bool{}
		}
		l.noSuchField[key] = true
		l.errorf(pos, "%s %s reads payload field %q, which no event has%s", what, owner, field, didYouMean(field, l.payloadFields))
	}
	return true
}

// errorMethods is the method set of the predeclared error.
var errorMethods = &ast.FieldList{List: []*ast.Field{{
	Names: []*ast.Ident{ast.NewIdent("Error")},
	Type:  &ast.FuncType{Params: &ast.FieldList{}, Results: &ast.FieldList{List: []*ast.Field{{Type: ast.NewIdent("string")}}}},
}}}

// sameType returns a spelling of Go type typ that two spellings of one
// type share, as far as the syntax tells (canonicalType).
func sameType(typ string) string {
	expr, err := parser.ParseExpr(typ)
	if err != nil {
		return typ
	}
	var b strings.Builder
	if err := format.Node(&b, token.NewFileSet(), canonicalType(expr)); err != nil {
		return typ
	}
	return b.String()
}

// canonicalType rebuilds type expression e without what does not change
// the type it spells: any, byte and rune become interface{}, uint8 and
// int32; parentheses go; parameters and results lose their names; a
// struct's fields are declared one name at a time; an interface's methods
// are sorted by name; an array length written with literals becomes its
// value. An embedded field keeps its type as written: it is named after
// it (struct{ byte } is not struct{ uint8 }).
func canonicalType(e ast.Expr) ast.Expr {
	switch x := e.(type) {
	case *ast.ParenExpr:
		return canonicalType(x.X)
	case *ast.Ident:
		switch x.Name {
		case "any":
			return &ast.InterfaceType{Methods: &ast.FieldList{}}
		case "byte":
			return ast.NewIdent("uint8")
		case "rune":
			return ast.NewIdent("int32")
		}
	case *ast.StarExpr:
		return &ast.StarExpr{X: canonicalType(x.X)}
	case *ast.ArrayType:
		n := x.Len
		if v, known, problem := constValue(n); n != nil && known && problem == "" {
			if i := constant.ToInt(v); i.Kind() == constant.Int {
				n = &ast.BasicLit{Kind: token.INT, Value: i.ExactString()}
			}
		}
		return &ast.ArrayType{Len: n, Elt: canonicalType(x.Elt)}
	case *ast.MapType:
		return &ast.MapType{Key: canonicalType(x.Key), Value: canonicalType(x.Value)}
	case *ast.ChanType:
		return &ast.ChanType{Dir: x.Dir, Value: canonicalType(x.Value)}
	case *ast.FuncType:
		return &ast.FuncType{Params: unnamedFields(x.Params), Results: unnamedFields(x.Results)}
	case *ast.StructType:
		fields := &ast.FieldList{}
		for _, f := range x.Fields.List {
			if len(f.Names) == 0 {
				fields.List = append(fields.List, &ast.Field{Type: f.Type, Tag: f.Tag})
				continue
			}
			for _, name := range f.Names {
				fields.List = append(fields.List, &ast.Field{Names: []*ast.Ident{ast.NewIdent(name.Name)}, Type: canonicalType(f.Type), Tag: f.Tag})
			}
		}
		return &ast.StructType{Fields: fields}
	case *ast.InterfaceType:
		// Its method set: embedded interface literals, error and any are
		// spelled out (interface{ error } is interface{ Error() string }),
		// and a method declared twice (identically, or Go refuses it)
		// counts once.
		var methods, embedded []*ast.Field
		seen := map[string]bool{}
		var add func(list *ast.FieldList)
		add = func(list *ast.FieldList) {
			for _, m := range list.List {
				if len(m.Names) > 0 {
					if name := m.Names[0].Name; !seen[name] {
						seen[name] = true
						methods = append(methods, &ast.Field{Names: []*ast.Ident{ast.NewIdent(name)}, Type: canonicalType(m.Type)})
					}
					continue
				}
				switch t := canonicalType(m.Type).(type) {
				case *ast.InterfaceType:
					add(t.Methods) // any, and literals
				case *ast.Ident:
					if t.Name == "error" {
						add(errorMethods)
						continue
					}
					embedded = append(embedded, &ast.Field{Type: t})
				default:
					embedded = append(embedded, &ast.Field{Type: t})
				}
			}
		}
		add(x.Methods)
		slices.SortFunc(methods, func(a, b *ast.Field) int { return strings.Compare(a.Names[0].Name, b.Names[0].Name) })
		return &ast.InterfaceType{Methods: &ast.FieldList{List: append(methods, embedded...)}}
	case *ast.IndexExpr:
		return &ast.IndexExpr{X: x.X, Index: canonicalType(x.Index)}
	case *ast.IndexListExpr:
		indices := make([]ast.Expr, len(x.Indices))
		for i, index := range x.Indices {
			indices[i] = canonicalType(index)
		}
		return &ast.IndexListExpr{X: x.X, Indices: indices}
	}
	return e
}

// unnamedFields returns the parameters or results of a function type one
// type at a time, without names.
func unnamedFields(list *ast.FieldList) *ast.FieldList {
	out := &ast.FieldList{}
	if list == nil {
		return out
	}
	for _, f := range list.List {
		t := f.Type
		if dots, ok := t.(*ast.Ellipsis); ok {
			t = &ast.Ellipsis{Elt: canonicalType(dots.Elt)}
		} else {
			t = canonicalType(t)
		}
		for range max(1, len(f.Names)) {
			out.List = append(out.List, &ast.Field{Type: t})
		}
	}
	return out
}

// checkType reports payload types that are not Go types or that name an
// undeclared package. It returns the least size a value of the type can
// have, in bytes (0 for a type it refuses).
func (l *loader) checkType(f Field, imports map[string]int, used map[string]bool) int64 {
	if l.unreadTypes[f.Pos] {
		return 0
	}
	if strings.TrimSpace(f.Type) == "" {
		l.errorf(f.Pos, "payload field %q needs a Go type", f.Name)
		return 0
	}
	// The type is written into generated code as it stands: it must be
	// that Go type and nothing more.
	if strings.ContainsFunc(f.Type, breaksLine) {
		l.errorf(f.Pos, "payload field %q: %q is not a Go type: a type is written on one line, without control characters", f.Name, f.Type)
		return 0
	}
	expr, err := parser.ParseExpr(f.Type)
	if err != nil {
		l.errorf(f.Pos, "payload field %q: %q is not a Go type", f.Name, f.Type)
		return 0
	}
	if hasComment(f.Type) {
		l.errorf(f.Pos, "payload field %q: %q is not a Go type: it holds a comment", f.Name, f.Type)
		return 0
	}
	problem := ""
	c := typeSyntax{packages: map[string]bool{}, problem: &problem, values: l.generatedValues()}
	if !c.typ(expr) {
		msg := ""
		if problem != "" {
			msg = ": " + problem
		}
		l.errorf(f.Pos, "payload field %q: %q is not a Go type%s", f.Name, f.Type, msg)
		for pkg := range c.packages { // named, if wrongly: not unused
			used["import "+pkg] = true
		}
		return 0
	}
	// The packages it names are used, whatever else is wrong with it.
	for _, pkg := range slices.Sorted(maps.Keys(c.packages)) {
		if _, declared := imports[pkg]; !declared {
			l.errorf(f.Pos, "payload field %q: package %q is not in imports", f.Name, pkg)
		}
		used["import "+pkg] = true
	}
	pathOf := func(pkg string) string {
		if i, ok := imports[pkg]; ok {
			return l.table.Imports[i].Path
		}
		return ""
	}
	if embedsUnsafePointer(expr, pathOf) {
		l.errorf(f.Pos, "payload field %q: %q is not a Go type: it embeds unsafe.Pointer", f.Name, f.Type)
		return 0
	}
	if c := namedConstraint(expr, pathOf); c != "" {
		l.errorf(f.Pos, "payload field %q: %q names %s, a type constraint: it can only constrain a type parameter, never be the type of a value", f.Name, f.Type, c)
		return 0
	}
	if hasTag(expr) {
		l.errorf(f.Pos, "payload field %q: %q has a struct tag: payload types take none (a tag means nothing to a parameter, and go vet checks its syntax; declare the struct as a type in Go and name it here)", f.Name, f.Type)
		return 0
	}
	if method, want := vetMisdeclared(expr, pathOf); method != "" {
		l.errorf(f.Pos, "payload field %q: %q declares the method %s, which go vet expects as %s (its stdmethods check): give it that signature or another name", f.Name, f.Type, method, want)
		return 0
	}
	if lock := heldLock(expr, pathOf, l.table.Machine); lock != "" {
		l.errorf(f.Pos, "payload field %q: %q holds %s, a type that must not be copied, and payloads are passed by value (go vet's copylocks check): use a pointer", f.Name, f.Type, lock)
		return 0
	}
	handlers := ""
	if l.table.Machine != "" {
		handlers = l.table.Machine + "Handlers"
	}
	size, _ := layoutIn(expr, 4, handlers) // the least on any platform
	if size >= maxPayload {
		l.errorf(f.Pos, "payload field %q: %q takes %s or more, the limit of a payload", f.Name, f.Type, maxPayloadText)
		return 0
	}
	// Behind a pointer, a slice, a map, a channel or a function, a value
	// is not copied, but it is still made: by the generated tests (a
	// pointer points to a new value), and by the caller. An array or a
	// struct of 1 GiB or more anywhere in the type is one Go cannot make
	// on a 32-bit platform, and, past 2⁵⁰ bytes, a type the compiler
	// refuses; as an array length of 1 GiB is refused, so is an array or
	// struct of that size.
	var huge ast.Expr
	ast.Inspect(expr, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.ArrayType:
			if x.Len == nil {
				return true
			}
		case *ast.StructType:
		default:
			return huge == nil
		}
		if s, _ := layoutIn(n.(ast.Expr), 4, handlers); s >= maxFrame && huge == nil {
			huge = n.(ast.Expr)
		}
		return huge == nil
	})
	if huge != nil {
		l.errorf(f.Pos, "payload field %q: %q holds %s, which takes 1 GiB or more: no value of it can be made on every platform (the generated tests make one), and the compiler refuses types much larger", f.Name, f.Type, types.ExprString(huge))
		return 0
	}
	return size
}

// heldLock returns the lock type of the standard library that a value of
// type e holds, not behind a pointer, a slice, a map, a channel, a
// function or an interface ("" if none): copying one is what go vet's
// copylocks check reports. The generated machine, named machine, holds
// one. pathOf gives the import path of a package name. (A lock held by a
// type declared elsewhere cannot be told from the syntax.)
func heldLock(e ast.Expr, pathOf func(string) string, machine string) string {
	switch x := e.(type) {
	case *ast.Ident:
		if x.Name == machine {
			return machine + " (the machine: its state is an atomic value)"
		}
	case *ast.ParenExpr:
		return heldLock(x.X, pathOf, machine)
	case *ast.ArrayType:
		if x.Len != nil {
			return heldLock(x.Elt, pathOf, machine)
		}
	case *ast.StructType:
		for _, f := range x.Fields.List {
			if lock := heldLock(f.Type, pathOf, machine); lock != "" {
				return lock
			}
		}
	case *ast.IndexExpr:
		return heldLock(x.X, pathOf, machine)
	case *ast.IndexListExpr:
		return heldLock(x.X, pathOf, machine)
	case *ast.SelectorExpr:
		pkg, _ := x.X.(*ast.Ident)
		if pkg == nil {
			return ""
		}
		switch path := pathOf(pkg.Name); {
		case path == "sync" && syncLocks[x.Sel.Name], path == "sync/atomic" && x.Sel.Name != "Value":
			return pkg.Name + "." + x.Sel.Name
		}
	}
	return ""
}

// vetMisdeclared returns the first method of an interface written in type
// e that go vet's stdmethods check reports, as declared, with the
// signature the check expects; "" if there is none. pathOf gives the
// import path of a package name. (Whether an interface implements error,
// which decides whether Is, As and Unwrap are checked, is read from an
// Error() string method or an embedded error; an interface embedded from
// elsewhere cannot be told from the syntax.)
func vetMisdeclared(e ast.Expr, pathOf func(string) string) (method, want string) {
	ast.Inspect(e, func(n ast.Node) bool {
		it, ok := n.(*ast.InterfaceType)
		if !ok || method != "" {
			return method == ""
		}
		isError := false
		for _, f := range it.Methods.List {
			ft, _ := f.Type.(*ast.FuncType)
			switch {
			case len(f.Names) == 0:
				isError = isError || vetTypeString(f.Type, pathOf) == "error"
			case f.Names[0].Name == "Error" && ft != nil:
				params, results := paramTypes(ft.Params, pathOf), paramTypes(ft.Results, pathOf)
				isError = isError || len(params) == 0 && slices.Equal(results, []string{"string"})
			}
		}
		for _, f := range it.Methods.List {
			ft, ok := f.Type.(*ast.FuncType)
			if !ok {
				continue // an embedded interface
			}
			for _, name := range f.Names {
				if w := vetWants(name.Name, ft, isError, pathOf); w != "" {
					method, want = name.Name+strings.TrimPrefix(types.ExprString(ft), "func"), w
					return false
				}
			}
		}
		return true
	})
	return method, want
}

// vetWants returns the signature go vet's stdmethods check expects of the
// method name of signature ft, declared by an interface that implements
// error or not, when the check reports that method ("" if it does not).
func vetWants(name string, ft *ast.FuncType, isError bool, pathOf func(string) string) string {
	sig, ok := vetSignatures[name]
	if !ok || sig.errorOnly && !isError {
		return ""
	}
	params, results := paramTypes(ft.Params, pathOf), paramTypes(ft.Results, pathOf)
	if name == "WriteTo" && len(params) > 1 {
		return "" // not meant as io.WriterTo: the check lets it be
	}
	if name == "Unwrap" {
		if len(params) == 0 && len(results) == 1 && (results[0] == "error" || results[0] == "[]error") {
			return ""
		}
		return "Unwrap() error or Unwrap() []error"
	}
	// The check applies only when the parameters marked "=" match, and
	// then asks that all do.
	if !vetMatch(sig.params, params, true) || !vetMatch(sig.results, results, true) {
		return ""
	}
	if vetMatch(sig.params, params, false) && vetMatch(sig.results, results, false) {
		return ""
	}
	unmark := func(ts []string) string {
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = strings.TrimPrefix(t, "=")
		}
		return strings.Join(out, ", ")
	}
	w := name + "(" + unmark(sig.params) + ")"
	switch len(sig.results) {
	case 0:
	case 1:
		w += " " + sig.results[0]
	default:
		w += " (" + unmark(sig.results) + ")"
	}
	return w
}

// vetMatch reports whether the types have, where want has one, the type it
// spells: only those marked "=" if marked, all of them and no more if not.
func vetMatch(want, have []string, marked bool) bool {
	for i, w := range want {
		if marked && !strings.HasPrefix(w, "=") {
			continue
		}
		if i >= len(have) || !sameVetType(strings.TrimPrefix(w, "="), have[i]) {
			return false
		}
	}
	return marked || len(have) <= len(want)
}

func sameVetType(a, b string) bool {
	empty := func(t string) bool { return t == "any" || t == "interface{}" }
	return a == b || empty(a) && empty(b)
}

// paramTypes returns the types of a parameter or result list, one for
// each parameter, spelled by vetTypeString.
func paramTypes(fl *ast.FieldList, pathOf func(string) string) []string {
	if fl == nil {
		return nil
	}
	var out []string
	for _, f := range fl.List {
		t := vetTypeString(f.Type, pathOf)
		for range max(len(f.Names), 1) {
			out = append(out, t)
		}
	}
	return out
}

// vetTypeString spells type e as go vet's stdmethods check does: a type of
// another package qualified by the package's name (the last element of
// its path for the packages the check names), whatever the import calls
// it, and a variadic parameter as the slice it is.
func vetTypeString(e ast.Expr, pathOf func(string) string) string {
	switch x := e.(type) {
	case *ast.ParenExpr:
		return vetTypeString(x.X, pathOf)
	case *ast.StarExpr:
		return "*" + vetTypeString(x.X, pathOf)
	case *ast.Ellipsis:
		return "[]" + vetTypeString(x.Elt, pathOf)
	case *ast.SelectorExpr:
		if pkg, ok := x.X.(*ast.Ident); ok {
			path := pathOf(pkg.Name)
			return path[strings.LastIndex(path, "/")+1:] + "." + x.Sel.Name
		}
	}
	return types.ExprString(e)
}

// embedsUnsafePointer reports whether a struct in type e embeds
// unsafe.Pointer (or a pointer to it), which Go refuses. pathOf gives the
// import path of a package name.
func embedsUnsafePointer(e ast.Expr, pathOf func(string) string) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		st, ok := n.(*ast.StructType)
		if !ok || found {
			return !found
		}
		for _, f := range st.Fields.List {
			if len(f.Names) > 0 {
				continue
			}
			t := f.Type
			if star, ok := t.(*ast.StarExpr); ok {
				t = star.X
			}
			if sel, ok := t.(*ast.SelectorExpr); ok && sel.Sel.Name == "Pointer" {
				if pkg, ok := sel.X.(*ast.Ident); ok && pathOf(pkg.Name) == "unsafe" {
					found = true
				}
			}
		}
		return !found
	})
	return found
}

// hasTag reports whether a struct in type e has a field with a tag.
func hasTag(e ast.Expr) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if f, ok := n.(*ast.Field); ok && f.Tag != nil {
			found = true
		}
		return !found
	})
	return found
}

// namedConstraint returns the constraint interface of the standard
// library that type e names anywhere ("" if none): such an interface
// (cmp.Ordered) is no type of a value, wherever it appears in e, embedded
// in an interface included. pathOf gives the import path of a package
// name. (The predeclared comparable is refused as no type at all; a
// constraint declared elsewhere cannot be told from the syntax.)
func namedConstraint(e ast.Expr, pathOf func(string) string) string {
	found := ""
	ast.Inspect(e, func(n ast.Node) bool {
		if x, ok := n.(*ast.SelectorExpr); ok && found == "" {
			if pkg, ok := x.X.(*ast.Ident); ok && pathOf(pkg.Name) == "cmp" && x.Sel.Name == "Ordered" {
				found = pkg.Name + "." + x.Sel.Name
			}
		}
		return found == ""
	})
	return found
}

// syncLocks are the types of package sync that must not be copied.
var syncLocks = map[string]bool{"Mutex": true, "RWMutex": true, "WaitGroup": true, "Once": true, "Cond": true, "Map": true, "Pool": true}

// hasComment reports whether Go source src holds a comment.
func hasComment(src string) bool {
	fset := token.NewFileSet()
	var s scanner.Scanner
	s.Init(fset.AddFile("", -1, len(src)), []byte(src), nil, scanner.ScanComments)
	for {
		_, tok, _ := s.Scan()
		switch tok {
		case token.COMMENT:
			return true
		case token.EOF:
			return false
		}
	}
}

// typeSyntax tells, from its syntax alone, whether an expression is a Go
// type a struct field (a payload parameter) can have, and collects the
// packages it names. problem says why a type is not one, when it can.
type typeSyntax struct {
	packages map[string]bool
	problem  *string
	// values are the names the generated package declares that are not
	// types (the State and Event constants, the errors, New<Machine>,
	// <Machine>Table, <Machine>TableHash), with what each is.
	values map[string]string
}

// notType reports whether the name id, where a type is expected, names
// no type: a predeclared name or one the generated package declares.
func (c typeSyntax) notType(id *ast.Ident) bool {
	if notTypes[id.Name] {
		return true
	}
	if what, ok := c.values[id.Name]; ok {
		*c.problem = id.Name + " is " + what
		return true
	}
	return false
}

// generatedValues returns the names the generated package declares that
// are not types, with what each is: the generated tests' own names too,
// and their fake, a type of the tests only, which the package does not
// build with.
func (l *loader) generatedValues() map[string]string {
	t := l.table
	values := map[string]string{}
	code := func(name, what string) { values[name] = what + " the generated code declares, not a type" }
	for _, s := range t.States {
		code("State"+s.Name, "a constant")
	}
	for _, e := range t.Events {
		code("Event"+e.Name, "a constant")
	}
	for _, e := range t.Errors {
		code(e.Name, "a variable")
	}
	code("_State_names", "a variable")
	code("_Event_names", "a variable")
	if n := t.Names(); n.Type != "" {
		code(n.New, "a function")
		code(n.Table, "a function")
		code(n.Hash, "a constant")
		code(n.Refusals, "a variable")
		code(n.Harness, "a variable")
		code(n.Fire, "a function")
		for _, e := range t.Events {
			if len(e.Payload) > 0 {
				code(n.Payload(e.Name), "a variable")
			}
		}
		values[n.Fake] = "the generated tests' fake, declared in test files only: the package does not build with it"
	}
	return values
}

// notTypes are the predeclared names that are not types of values.
var notTypes = map[string]bool{
	"true": true, "false": true, "iota": true, "nil": true, "comparable": true,
	"append": true, "cap": true, "clear": true, "close": true, "complex": true,
	"copy": true, "delete": true, "imag": true, "len": true, "make": true,
	"max": true, "min": true, "new": true, "panic": true, "print": true,
	"println": true, "real": true, "recover": true, "_": true,
}

func (c typeSyntax) typ(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.Ident:
		return !c.notType(x)
	case *ast.SelectorExpr:
		return c.qualified(x)
	case *ast.ParenExpr:
		return c.typ(x.X)
	case *ast.StarExpr:
		return c.typ(x.X)
	case *ast.ArrayType:
		return (x.Len == nil || c.length(x.Len)) && c.typ(x.Elt)
	case *ast.MapType:
		return c.typ(x.Key) && comparableSyntax(x.Key) && c.typ(x.Value)
	case *ast.ChanType:
		if !c.typ(x.Value) {
			return false
		}
		if sizeOf(x.Value, 8) >= maxChanElem {
			*c.problem = "its channel element takes 64 KiB or more (on 64-bit platforms), more than Go allows"
			return false
		}
		return true
	case *ast.FuncType:
		names := map[string]bool{} // parameters and results share a scope
		return x.TypeParams == nil && c.fields(x.Params, names) && c.fields(x.Results, names)
	case *ast.StructType:
		return c.fields(x.Fields, nil)
	case *ast.InterfaceType:
		methods := map[string]bool{}
		for _, m := range x.Methods.List {
			if len(m.Names) > 0 {
				if name := m.Names[0].Name; name == "_" {
					*c.problem = "a method is named _"
					return false
				} else if methods[name] || !c.typ(m.Type) {
					return false
				}
				methods[m.Names[0].Name] = true
				continue
			}
			// An embedded interface; type terms (int, ~int, A | B) make a
			// constraint, not a type.
			id, isIdent := m.Type.(*ast.Ident)
			_, isSel := m.Type.(*ast.SelectorExpr)
			if !isSel && !(isIdent && (id.Name == "any" || id.Name == "error" || !goPredeclared[id.Name])) || !c.typ(m.Type) {
				return false
			}
		}
		return true
	case *ast.IndexExpr:
		return c.generic(x.X) && c.typ(x.Index)
	case *ast.IndexListExpr:
		return c.generic(x.X) && !slices.ContainsFunc(x.Indices, func(i ast.Expr) bool { return !c.typ(i) })
	}
	return false
}

// qualified is a pkg.Name type.
func (c typeSyntax) qualified(x *ast.SelectorExpr) bool {
	id, ok := x.X.(*ast.Ident)
	if !ok || id.Name == "_" || x.Sel.Name == "_" {
		return false
	}
	c.packages[id.Name] = true
	if !ast.IsExported(x.Sel.Name) {
		*c.problem = id.Name + "." + x.Sel.Name + " is not exported: no other package can name it"
		return false
	}
	return true
}

// generic is the name of a generic type being instantiated.
func (c typeSyntax) generic(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.Ident:
		return !c.notType(x) && !goPredeclared[x.Name]
	case *ast.SelectorExpr:
		return c.qualified(x)
	}
	return false
}

// length is an array length: an integer constant expression. When it is
// written with literals only, its value must be an int Go accepts as a
// length: not negative, not a fraction, not too large.
func (c typeSyntax) length(e ast.Expr) bool {
	if !c.constant(e) {
		return false
	}
	v, known, problem := constValue(e)
	if !known {
		return true // it names constants: the compiler judges it
	}
	n, exact := constant.Int64Val(constant.ToInt(v))
	switch {
	case problem != "":
		*c.problem = "its array length " + problem
	case constant.ToInt(v).Kind() != constant.Int:
		*c.problem = "the array length " + v.String() + " is not an integer"
	case !exact || n >= maxFrame:
		*c.problem = "its array length is too large"
	case n < 0:
		*c.problem = "the array length " + v.String() + " is negative"
	default:
		return true
	}
	return false
}

// maxFrame is the size of a stack frame Go refuses (the compiler's
// "stack frame too large"): sizes are computed up to it.
const maxFrame = 1 << 30

// maxPayload bounds the size of an event's payload. The generated code
// passes a payload by value, from the event method to every guard and
// action, and its tests hold several copies in one frame; a goroutine's
// stack cannot grow past 1 GB (and grows by doubling), so a payload of a
// few hundred MiB already overflows it. The limit keeps far from that.
const (
	maxPayload     = 16 << 20
	maxPayloadText = "16 MiB"
)

// maxChanElem is the size of a channel's element that Go refuses.
const maxChanElem = 1 << 16

// sizeOf returns the least size, in bytes, a value of type e has on
// platforms with machine words of word bytes, laid out as the gc compiler
// lays it out (a named type counts as nothing), up to maxFrame.
func sizeOf(e ast.Expr, word int64) int64 {
	size, _ := layoutOf(e, word)
	return size
}

// layoutOf returns the least size and alignment of a value of type e, as
// sizeOf says. Both grow with those of the parts, so counting a named type
// as taking nothing, aligned to one, gives a lower bound (a named type may
// be empty: structs.HostLayout).
func layoutOf(e ast.Expr, word int64) (size, align int64) { return layoutIn(e, word, "") }

// layoutIn is layoutOf in the generated package of the machine whose
// handlers interface is named handlers ("" for none): there State and
// Event are uint8, and the handlers an interface.
func layoutIn(e ast.Expr, word int64, handlers string) (size, align int64) {
	switch x := e.(type) {
	case *ast.Ident:
		switch x.Name {
		case "State", "Event":
			return 1, 1
		case handlers:
			return 2 * word, word
		}
		if n, ok := basicSizes[x.Name]; ok {
			if x.Name == "complex64" || x.Name == "complex128" {
				return n, min(n/2, word) // aligned as its two floats
			}
			return n, min(n, word)
		}
		if n, ok := wordSizes[x.Name]; ok {
			return n * word, word
		}
	case *ast.ParenExpr:
		return layoutIn(x.X, word, handlers)
	case *ast.StarExpr, *ast.MapType, *ast.ChanType, *ast.FuncType:
		return word, word
	case *ast.InterfaceType:
		return 2 * word, word
	case *ast.ArrayType:
		if x.Len == nil {
			return 3 * word, word // a slice
		}
		elem, align := layoutIn(x.Elt, word, handlers)
		v, known, problem := constValue(x.Len)
		if !known || problem != "" {
			return 0, align // a length that names constants may be 0
		}
		n, exact := constant.Int64Val(constant.ToInt(v))
		switch {
		case !exact || n >= maxFrame:
			return maxFrame, align
		case n <= 0 || elem == 0:
			return 0, align
		}
		return min(n*elem, maxFrame), align // both below 2³⁰: no overflow
	case *ast.StructType:
		var offset, last int64
		align = 1
		for _, f := range x.Fields.List {
			size, a := layoutIn(f.Type, word, handlers)
			align = max(align, a)
			for range max(len(f.Names), 1) {
				offset = min(roundUp(offset, a)+size, maxFrame)
				last = size
			}
		}
		if offset > 0 && last == 0 {
			offset++ // a pointer to the last field must not point past the struct
		}
		return min(roundUp(offset, align), maxFrame), align
	}
	return 0, 1
}

// roundUp rounds n up to a multiple of align (a power of two).
func roundUp(n, align int64) int64 { return (n + align - 1) &^ (align - 1) }

// basicSizes are the sizes of the predeclared types of a fixed size;
// wordSizes, of the others, in machine words.
var (
	basicSizes = map[string]int64{
		"bool": 1, "byte": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2,
		"int32": 4, "uint32": 4, "rune": 4, "float32": 4,
		"int64": 8, "uint64": 8, "float64": 8, "complex64": 8, "complex128": 16,
	}
	wordSizes = map[string]int64{"int": 1, "uint": 1, "uintptr": 1, "string": 2, "error": 2, "any": 2}
)

// constValue computes a constant expression made of literals; known is
// false when it names a constant. problem says why Go would refuse it
// (a division by zero, …): then v is unknown.
func constValue(e ast.Expr) (v constant.Value, known bool, problem string) {
	switch x := e.(type) {
	case *ast.BasicLit:
		v, problem := bounded(constant.MakeFromLiteral(x.Value, x.Kind, 0))
		return v, true, problem
	case *ast.ParenExpr:
		return constValue(x.X)
	case *ast.UnaryExpr:
		v, known, problem := constValue(x.X)
		if !known || problem != "" {
			return v, known, problem
		}
		if x.Op == token.XOR && v.Kind() != constant.Int {
			return constant.MakeUnknown(), true, "applies ^ to " + v.String()
		}
		v, problem = bounded(constant.UnaryOp(x.Op, v, 0))
		return v, true, problem
	case *ast.BinaryExpr:
		a, knownA, problemA := constValue(x.X)
		b, knownB, problemB := constValue(x.Y)
		switch {
		case !knownA || !knownB:
			return nil, false, ""
		case problemA != "":
			return a, true, problemA
		case problemB != "":
			return b, true, problemB
		}
		v, problem := binaryOp(a, x.Op, b)
		return v, true, problem
	}
	return nil, false, ""
}

// binaryOp is constant.BinaryOp and constant.Shift with Go's rules for
// the operands: what Go refuses is a problem, rather than a panic.
func binaryOp(a constant.Value, op token.Token, b constant.Value) (constant.Value, string) {
	unknown := constant.MakeUnknown()
	ints := a.Kind() == constant.Int && b.Kind() == constant.Int
	switch op {
	case token.SHL, token.SHR:
		a, b = constant.ToInt(a), constant.ToInt(b)
		s, ok := constant.Uint64Val(b)
		switch {
		case a.Kind() != constant.Int || b.Kind() != constant.Int || constant.Sign(b) < 0:
			return unknown, "shifts by something other than a natural number"
		case !ok || s > maxShift:
			return unknown, "is too large"
		}
		return bounded(constant.Shift(a, op, uint(s)))
	case token.QUO:
		if constant.Sign(b) == 0 {
			return unknown, "divides by zero"
		}
		if ints {
			op = token.QUO_ASSIGN // integer division, as Go divides untyped integers
		}
	case token.REM, token.AND, token.OR, token.XOR, token.AND_NOT:
		switch {
		case !ints:
			return unknown, "applies " + op.String() + " to a number that is not an integer"
		case op == token.REM && constant.Sign(b) == 0:
			return unknown, "divides by zero"
		}
	}
	return bounded(constant.BinaryOp(a, op, b))
}

// bounded returns v, unless it is an integer of more than maxConstBits
// bits: Go refuses such a constant (a length made of it is too large
// anyway), and a chain of operations on it would cost ever more memory
// and time to compute.
func bounded(v constant.Value) (constant.Value, string) {
	if v.Kind() == constant.Int && constant.BitLen(v) > maxConstBits {
		return constant.MakeUnknown(), "is too large"
	}
	return v, ""
}

// maxShift is the largest shift count, and maxConstBits the size in bits
// of the largest untyped integer constant (its value at every step of an
// expression, a literal's included), that Go accepts in a constant
// expression (go/types' shiftBound and precision): past either, the
// compiler refuses the expression, whatever its value in the end.
const (
	maxShift     = 1023 - 1 + 52
	maxConstBits = 512
)

// constant is an array length: an integer constant expression.
func (c typeSyntax) constant(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.BasicLit:
		return x.Kind == token.INT || x.Kind == token.CHAR || x.Kind == token.FLOAT
	case *ast.Ident:
		return !goPredeclared[x.Name] && x.Name != "_"
	case *ast.SelectorExpr:
		return c.qualified(x)
	case *ast.ParenExpr:
		return c.constant(x.X)
	case *ast.UnaryExpr:
		return (x.Op == token.ADD || x.Op == token.SUB || x.Op == token.XOR) && c.constant(x.X)
	case *ast.BinaryExpr:
		switch x.Op {
		case token.ADD, token.SUB, token.MUL, token.QUO, token.REM, token.AND, token.OR,
			token.XOR, token.SHL, token.SHR, token.AND_NOT:
			return c.constant(x.X) && c.constant(x.Y)
		}
	}
	return false
}

// fields checks a field list: every type, and names that are not
// repeated. A struct's (names == nil) may embed fields, named after their
// types; a function's parameters and results share names.
func (c typeSyntax) fields(list *ast.FieldList, names map[string]bool) bool {
	if list == nil {
		return true
	}
	isStruct := names == nil
	if isStruct {
		names = map[string]bool{}
	}
	for _, f := range list.List {
		if _, variadic := f.Type.(*ast.Ellipsis); variadic && !isStruct {
			if !c.typ(f.Type.(*ast.Ellipsis).Elt) {
				return false
			}
		} else if !c.typ(f.Type) {
			return false
		}
		fieldNames := f.Names
		if len(fieldNames) == 0 && isStruct {
			name := embeddedName(f.Type)
			if name == "" {
				return false
			}
			fieldNames = []*ast.Ident{{Name: name}}
		}
		for _, n := range fieldNames {
			if n.Name != "_" && names[n.Name] {
				return false
			}
			names[n.Name] = true
		}
	}
	return true
}

// embeddedName is the name of an embedded field of type e ("" if e
// cannot be embedded).
func embeddedName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return x.Sel.Name
	case *ast.StarExpr:
		// Not a pointer to a pointer, nor to a predeclared interface
		// (Go embeds *T only when T is not an interface).
		if id, ok := x.X.(*ast.Ident); ok && (id.Name == "error" || id.Name == "any") {
			return ""
		}
		if _, star := x.X.(*ast.StarExpr); !star {
			return embeddedName(x.X)
		}
	case *ast.IndexExpr:
		return embeddedName(x.X)
	case *ast.IndexListExpr:
		return embeddedName(x.X)
	}
	return ""
}

// comparableSyntax reports whether a map key type is not, by its syntax
// alone, one Go cannot compare (a slice, a map or a function).
func comparableSyntax(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.ParenExpr:
		return comparableSyntax(x.X)
	case *ast.ArrayType:
		return x.Len != nil && comparableSyntax(x.Elt)
	case *ast.MapType, *ast.FuncType:
		return false
	case *ast.StructType:
		for _, f := range x.Fields.List {
			if !comparableSyntax(f.Type) {
				return false
			}
		}
	}
	return true
}

// checkImports reports import paths that are not paths, a path imported
// twice, and names that the generated code uses otherwise.
func (l *loader) checkImports(t *Table) {
	paths := map[string]string{}
	for _, imp := range t.Imports {
		if imp.Path == "" {
			continue // reported when loading
		}
		if problem := importPathProblem(imp.Path); problem != "" {
			l.errorf(imp.Pos, "import %s: %q is not an import path (%s)", imp.Name, imp.Path, problem)
			continue
		}
		if imp.Name == "init" {
			l.errorf(imp.Pos, "import %s: Go does not allow a package imported as init", imp.Name)
		}
		if imp.Path == "C" {
			l.errorf(imp.Pos, "import %s: \"C\" is cgo's, which Go imports under no other name (and whose types no other package can name)", imp.Name)
			continue
		}
		if goPredeclared[imp.Name] {
			l.errorf(imp.Pos, "import %s: the generated code uses Go's predeclared %s, which the import would hide", imp.Name, imp.Name)
		}
		if other, ok := paths[imp.Path]; ok {
			l.errorf(imp.Pos, "import %s: %q is already imported as %s", imp.Name, imp.Path, other)
			continue
		}
		paths[imp.Path] = imp.Name
		if path, ok := GeneratedImports[imp.Name]; ok && path != imp.Path {
			l.errorf(imp.Pos, "import %s: the generated code imports %q under that name", imp.Name, path)
		}
		for name, path := range GeneratedImports {
			if path == imp.Path && name != imp.Name {
				l.errorf(imp.Pos, "import %s: the generated code imports %q as %s; use that name", imp.Name, path, name)
			}
		}
		if imp.Name == "m" || imp.Name == "e" {
			l.errorf(imp.Pos, "import %s: a parameter of the generated tests would hide it", imp.Name)
		}
	}
}

// checkGenerated reports names that would collide with each other in
// the generated package: the machine's types and functions, the State and
// Event constants, and the errors.
func (l *loader) checkGenerated(t *Table) {
	type decl struct {
		what string
		pos  Pos
	}
	seen := map[string]decl{}
	add := func(name, what string, pos Pos) {
		if name == "" {
			return
		}
		if prev, ok := seen[name]; ok {
			l.errorf(pos, "%s would be generated as %s, which is already %s (%s)", what, name, prev.what, shortPos(prev.pos))
			return
		}
		seen[name] = decl{what, pos}
	}
	add("State", "the state type", t.Pos)
	add("Event", "the event type", t.Pos)
	if n := t.Names(); n.Type != "" {
		for _, name := range []string{n.Type, n.Handlers, n.Table, n.Hash, n.New} {
			add(name, "machine "+n.Type, l.machine)
		}
		if n.Type == "main" && t.Package == "main" {
			l.errorf(l.machine, "machine name %q: in package main, main must be the program's func main", n.Type)
		}
		for _, imp := range t.Imports {
			if imp.Name == n.Type {
				l.errorf(imp.Pos, "import %s: the machine's type has that name", imp.Name)
			}
		}
	}
	for _, s := range t.States {
		add("State"+s.Name, "state "+s.Name, s.Pos)
	}
	for _, e := range t.Events {
		add("Event"+e.Name, "event "+e.Name, e.Pos)
	}
	for _, e := range t.Errors {
		add(e.Name, "error "+e.Name, e.Pos)
	}
	// An error's text is how a log or a metric tells it apart.
	messages := map[string]Error{}
	for _, e := range t.Errors {
		if prev, ok := messages[e.Message]; ok && e.Message != "" {
			l.errorf(e.Pos, "error %s has the message of error %s (%s), %q: give each error its own", e.Name, prev.Name, shortPos(prev.Pos), e.Message)
			continue
		}
		messages[e.Message] = e
	}
}

// shadow is a row shadowed in state by the row at by, with the same
// guards (dup) or fewer.
type shadow struct {
	state, by string
	dup       bool
}

// checkGroups reports duplicate and shadowed rows: a row is never taken
// when an earlier row of its group requires a subset of its guards. A row
// from "*" is a fallback: where it is shadowed in a state only "*" gave
// it, that state is dropped from its From, so that nothing generated from
// the table (dispatch, diagrams, tests) holds a row that can never be
// taken. It is reported where it is shadowed in a state it names itself,
// or when it is shadowed in every state of its From.
func (l *loader) checkGroups(t *Table) {
	shadowed := make([][]shadow, len(t.Rows)) // per row, in state order
	crowded := map[int]bool{}                 // rows reported past MaxCellRows
	// Each row's guards as a mask (there are at most MaxGuards), so
	// that comparing two rows costs one instruction.
	guardBit := map[string]uint64{}
	for i, g := range t.Guards {
		guardBit[g.Name] = 1 << i
	}
	masks := make([]uint64, len(t.Rows))
	for i, r := range t.Rows {
		for _, g := range r.If {
			masks[i] |= guardBit[g]
		}
	}
	cells := t.Cells()
	for _, s := range t.States {
		for _, e := range t.Events {
			group := cells.Group(s.Name, e.Name)
			if len(group) > MaxCellRows {
				if ri := group[MaxCellRows]; !crowded[ri] {
					crowded[ri] = true
					l.errorf(t.Rows[ri].Pos, "more than %d rows handle %s in %s (this one and those after)", MaxCellRows, e.Name, s.Name)
				}
				group = group[:MaxCellRows] // the rows after are not compared
			}
			for j, rj := range group {
				for _, ri := range group[:j] {
					if masks[ri]&^masks[rj] == 0 { // ri's guards are a subset of rj's
						dup := masks[ri] == masks[rj]
						shadowed[rj] = append(shadowed[rj], shadow{s.Name, shortPos(t.Rows[ri].Pos), dup})
						break
					}
				}
			}
		}
	}
	for i, found := range shadowed {
		if len(found) == 0 {
			continue
		}
		r := &t.Rows[i]
		report := found[0]
		if l.fromWildcard(i) {
			named := slices.IndexFunc(found, func(sh shadow) bool { return l.namesState(i, sh.state) })
			if named < 0 && len(found) < len(r.From) {
				r.From = slices.DeleteFunc(r.From, func(state string) bool {
					return slices.ContainsFunc(found, func(sh shadow) bool { return sh.state == state })
				})
				continue
			}
			if named >= 0 {
				report = found[named]
			} else {
				l.errorf(r.Pos, "row from \"*\" is never taken: in every state \"*\" gives it, an earlier row handles %s whenever it could (%s)", r.On, shadowers(found))
				continue
			}
		}
		if report.dup {
			l.errorf(r.Pos, "duplicate row: the row at %s already handles %s in %s with the same guards", report.by, r.On, report.state)
		} else {
			l.errorf(r.Pos, "row is shadowed in %s: the row at %s handles %s whenever this one could", report.state, report.by, r.On)
		}
	}
}

// shadowers says which rows shadow a row in which states: "in A and C
// the row at 18:5; in D the row at 19:5", the rows in the order they
// first shadow it, their states in table order.
func shadowers(found []shadow) string {
	var rows []string
	states := map[string][]string{}
	for _, sh := range found {
		if _, seen := states[sh.by]; !seen {
			rows = append(rows, sh.by)
		}
		states[sh.by] = append(states[sh.by], sh.state)
	}
	parts := make([]string, len(rows))
	for i, by := range rows {
		parts[i] = "in " + andList(states[by]) + " the row at " + by
	}
	return strings.Join(parts, "; ")
}

// andList joins names as "A", "A and B", "A, B and C".
func andList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// fromWildcard reports whether row i names "*" among its states.
func (l *loader) fromWildcard(i int) bool { return l.namesState(i, "*") }

// namesState reports whether row i names state itself in its "from".
func (l *loader) namesState(i int, state string) bool {
	return slices.ContainsFunc(l.rows[i].from, func(r ref) bool { return r.name == state })
}

func shortPos(p Pos) string { return Pos{Line: p.Line, Col: p.Col}.String() }

// checkShape reports states unreachable from the initial state and live
// states from which no terminal state can be reached.
func (l *loader) checkShape(t *Table) {
	next := map[string][]string{} // the moves out of each state
	prev := map[string][]string{} // the moves into each state
	for _, r := range t.Rows {
		if r.Kind != Move {
			continue
		}
		for _, f := range r.From {
			next[f] = append(next[f], r.To)
			prev[r.To] = append(prev[r.To], f)
		}
	}
	// reach returns the states the edges lead to from the given ones.
	reach := func(edges map[string][]string, from ...string) map[string]bool {
		seen := map[string]bool{}
		for _, s := range from {
			seen[s] = true
		}
		queue := slices.Clone(from)
		for len(queue) > 0 {
			s := queue[0]
			queue = queue[1:]
			for _, n := range edges[s] {
				if !seen[n] {
					seen[n] = true
					queue = append(queue, n)
				}
			}
		}
		return seen
	}
	fromInitial := reach(next, t.Initial)
	var terminal []string
	for _, s := range t.States {
		if s.Terminal {
			terminal = append(terminal, s.Name)
		}
	}
	// Which states are terminal is unknown when a terminal flag is
	// malformed: what would follow from it is not reported.
	if len(terminal) == 0 && !l.badTerminal {
		l.errorf(t.Pos, "no state is terminal: declare where the machine ends (terminal: true)")
	}
	canEnd := reach(prev, terminal...)
	for _, s := range t.States {
		if !fromInitial[s.Name] {
			l.errorf(s.Pos, "state %s is unreachable from the initial state %s", s.Name, t.Initial)
			continue
		}
		if s.Terminal || len(terminal) == 0 || l.badTerminal {
			continue
		}
		if !canEnd[s.Name] {
			l.errorf(s.Pos, "state %s has no path to a terminal state", s.Name)
		}
	}
}

func index[T any](list []T, name func(T) string) map[string]int {
	m := make(map[string]int, len(list))
	for i, x := range list {
		m[name(x)] = i
	}
	return m
}

func refsOf[T any](list []T, f func(T) ref) []ref {
	out := make([]ref, len(list))
	for i, x := range list {
		out[i] = f(x)
	}
	return out
}
