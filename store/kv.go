package store

import (
	"fmt"

	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store/kvpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// KV is the default state machine: an entry's value is a serialized
// kvpb.WriteBatch whose operations apply in order: a put sets a key, a
// delete removes one, a range delete removes [start, end) in byte-wise
// order (nothing when start >= end, so an empty end removes nothing). A
// value that does not decode, or an operation with no op set, is
// ErrInvalidEntry and nothing of the entry is written.
type KV struct{}

// Apply implements StateMachine.
//
// Values as protoc-gen-go marshals them (fields once each, no unknown
// fields) are decoded in place, without allocating; anything else goes
// through proto.Unmarshal, which has the last word on what a value means.
func (KV) Apply(e logpos.Entry, w *Writer) error {
	// One operation (the common case): it is decoded once, and applied
	// only once it is known canonical, so nothing needs undoing.
	if op, ok := singleOperation(e.Value); ok {
		if kind, first, second, ok := scanOperation(op); ok {
			return applyOperation(w, 0, kind, first, second)
		}
		return applyProto(e.Value, w)
	}
	if canonical, _ := scanWriteBatch(e.Value, nil); canonical {
		_, err := scanWriteBatch(e.Value, w)
		return err
	}
	return applyProto(e.Value, w)
}

// applyProto is KV.Apply through proto.Unmarshal.
func applyProto(value []byte, w *Writer) error {
	var wb kvpb.WriteBatch
	if err := proto.Unmarshal(value, &wb); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	for i, op := range wb.GetOperations() {
		var err error
		switch op := op.GetOp().(type) {
		case *kvpb.Operation_Put:
			err = w.Set(op.Put.GetKey(), op.Put.GetValue())
		case *kvpb.Operation_Delete:
			err = w.Delete(op.Delete.GetKey())
		case *kvpb.Operation_DeleteRange:
			err = w.DeleteRange(op.DeleteRange.GetStart(), op.DeleteRange.GetEnd())
		default:
			err = noOpError(i)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func noOpError(i int) error {
	return fmt.Errorf("%w: operation %d has no op", ErrInvalidEntry, i)
}

// Field numbers of kv.proto.
const (
	fieldOperations  protowire.Number = 1 // WriteBatch.operations
	fieldPut         protowire.Number = 1 // Operation.put
	fieldDelete      protowire.Number = 2 // Operation.delete
	fieldDeleteRange protowire.Number = 3 // Operation.delete_range
	fieldFirst       protowire.Number = 1 // Put.key, Delete.key, DeleteRange.start
	fieldSecond      protowire.Number = 2 // Put.value, DeleteRange.end
)

// scanWriteBatch walks a serialized WriteBatch in its canonical form and,
// if w is not nil, applies its operations to w. It reports false, having
// applied nothing, for anything outside the canonical form: malformed
// wire data, unknown fields, a field of the wrong wire type, an Operation
// with more than one op field (proto merges or replaces those). A
// canonical batch with an operation without op is ErrInvalidEntry.
func scanWriteBatch(b []byte, w *Writer) (canonical bool, err error) {
	for i := 0; len(b) > 0; i++ {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != fieldOperations || typ != protowire.BytesType {
			return false, nil
		}
		b = b[n:]
		op, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false, nil
		}
		b = b[n:]
		kind, first, second, ok := scanOperation(op)
		if !ok {
			return false, nil
		}
		if w == nil {
			continue
		}
		if err := applyOperation(w, i, kind, first, second); err != nil {
			return true, err
		}
	}
	return true, nil
}

// singleOperation returns the Operation of a serialized WriteBatch that is
// one operations field and nothing else.
func singleOperation(b []byte) (op []byte, ok bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != fieldOperations || typ != protowire.BytesType {
		return nil, false
	}
	op, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return nil, false
	}
	return op, true
}

// applyOperation applies operation i, as scanOperation decoded it, to w.
func applyOperation(w *Writer, i int, kind protowire.Number, first, second []byte) error {
	switch kind {
	case fieldPut:
		return w.Set(first, second)
	case fieldDelete:
		return w.Delete(first)
	case fieldDeleteRange:
		return w.DeleteRange(first, second)
	}
	return noOpError(i)
}

// scanOperation decodes a canonical Operation: at most one op field,
// whose message has fields 1 and 2 (Delete: only 1) of bytes type, each
// at most once. kind is 0 when no op is set.
func scanOperation(b []byte) (kind protowire.Number, first, second []byte, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || kind != 0 || typ != protowire.BytesType || num < fieldPut || num > fieldDeleteRange {
			return 0, nil, nil, false
		}
		b = b[n:]
		msg, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, nil, nil, false
		}
		b = b[n:]
		kind = num
		var seenFirst, seenSecond bool
		for len(msg) > 0 {
			num, typ, n := protowire.ConsumeTag(msg)
			if n < 0 || typ != protowire.BytesType {
				return 0, nil, nil, false
			}
			msg = msg[n:]
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return 0, nil, nil, false
			}
			msg = msg[n:]
			switch {
			case num == fieldFirst && !seenFirst:
				first, seenFirst = v, true
			case num == fieldSecond && !seenSecond && kind != fieldDelete:
				second, seenSecond = v, true
			default:
				return 0, nil, nil, false
			}
		}
	}
	return kind, first, second, true
}
