package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/tablefsm/tablefsm/logpos"
	"github.com/tablefsm/tablefsm/store/kvpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// FuzzKVDecode checks that KV.Apply, with its in-place decoding of
// canonical values, writes exactly what decoding with proto.Unmarshal
// writes, and fails exactly when it fails, for any value.
func FuzzKVDecode(f *testing.F) {
	marshal := func(ops ...*kvpb.Operation) []byte {
		b, err := proto.Marshal(&kvpb.WriteBatch{Operations: ops})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	bytesField := func(b []byte, num protowire.Number, v []byte) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, v)
	}
	operation := func(fields ...[]byte) []byte { // an Operation of raw fields
		return bytesField(nil, fieldOperations, bytes.Join(fields, nil))
	}
	putMsg := func(k, v string) []byte {
		return bytesField(bytesField(nil, 1, []byte(k)), 2, []byte(v))
	}
	for _, seed := range [][]byte{
		nil,
		marshal(),
		marshal(put("k", "v")),
		marshal(put("", ""), del("k"), delRange("a", "z"), delRange("z", "a")),
		marshal(&kvpb.Operation{}),
		marshal(put("a", "1"), &kvpb.Operation{}, put("b", "2")),
		// Not canonical, and meaningful to proto:
		operation(bytesField(nil, fieldPut, putMsg("a", "1")), bytesField(nil, fieldDelete, bytesField(nil, 1, []byte("b")))),           // two ops: the last wins
		operation(bytesField(nil, fieldPut, putMsg("a", "1")), bytesField(nil, fieldPut, bytesField(nil, 2, []byte("2")))),              // merged puts
		operation(bytesField(nil, fieldPut, append(putMsg("a", "1"), putMsg("b", "2")...))),                                             // repeated fields
		operation(bytesField(nil, fieldPut, protowire.AppendVarint(protowire.AppendTag(putMsg("a", "1"), 9, protowire.VarintType), 5))), // unknown field
		operation(bytesField(nil, fieldDelete, putMsg("a", "1"))),                                                                       // Delete with a field 2
		append(marshal(put("a", "1")), protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 1)...),                 // unknown top-level field
		protowire.AppendVarint(protowire.AppendTag(nil, fieldOperations, protowire.VarintType), 3),                                      // wrong wire type
		append(protowire.AppendVarint(protowire.AppendTag(nil, fieldOperations, protowire.VarintType), 2), operation()...),              // wrong wire type, its value the length of what follows
		// Not proto at all:
		{0xff, 0xff, 0xff},
		marshal(put("key", "value"))[:5],
		{0x0a, 0x05, 0x0a},
	} {
		f.Add(seed)
	}

	db, err := pebble.Open("/kv", &pebble.Options{FS: vfs.NewMem(), Logger: Options{}.withDefaults().pebbleOptions(false, nil).Logger})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	f.Fuzz(func(t *testing.T, value []byte) {
		viaKV, viaProto := db.NewBatch(), db.NewBatch()
		defer viaKV.Close()
		defer viaProto.Close()
		errKV := KV{}.Apply(logpos.Entry{Value: bytes.Clone(value)}, &Writer{b: viaKV, db: db})
		errProto := applyProto(bytes.Clone(value), &Writer{b: viaProto, db: db})
		if (errKV == nil) != (errProto == nil) {
			t.Fatalf("value %x: KV.Apply: %v, proto: %v", value, errKV, errProto)
		}
		if errKV != nil {
			if !errors.Is(errKV, ErrInvalidEntry) || !errors.Is(errProto, ErrInvalidEntry) {
				t.Fatalf("value %x: errors %v and %v, want ErrInvalidEntry", value, errKV, errProto)
			}
			return
		}
		if !bytes.Equal(viaKV.Repr(), viaProto.Repr()) {
			t.Fatalf("value %x: KV.Apply and proto write different batches", value)
		}
	})
}

// TestKVCanonicalPath checks that the values the tests and the demo
// produce take the in-place path (else the benchmark measures the other).
func TestKVCanonicalPath(t *testing.T) {
	v := kvEntry(t, 1, 0, put("a", "1"), del("b"), delRange("c", "d")).Value
	if ok, err := scanWriteBatch(v, nil); !ok || err != nil {
		t.Fatalf("a marshalled batch is not canonical: %v %v", ok, err)
	}
}
