package appendwire

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tablefsm/tablefsm/grpcapi/replicationpb"
)

// checkDecode decodes p with Buffer.Decode, into a buffer that
// decoded other messages before, and with protobuf-go into a fresh
// message: both fail, or both succeed with equal messages.
func checkDecode(t *testing.T, b *Buffer, p []byte) {
	t.Helper()
	want := &replicationpb.Append{}
	werr := proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(p, want)
	gerr := b.Decode(p)
	switch {
	case (werr == nil) != (gerr == nil):
		t.Fatalf("input %x: protobuf-go says %v, the decoder %v", p, werr, gerr)
	case werr == nil && !proto.Equal(&b.Append, want):
		t.Fatalf("input %x: decoded\n%s\nwant\n%s", p, prototext.Format(&b.Append), prototext.Format(want))
	}
}

// randomAppend encodes a random Append the way a leader might, and ways
// one might not: fields in any order, repeated, with another wire type,
// unknown fields (groups included), an entry in several pieces.
func randomAppend(rng *rand.Rand) []byte {
	var p []byte
	varint := func(num protowire.Number, v uint64) {
		p = protowire.AppendTag(p, num, protowire.VarintType)
		p = protowire.AppendVarint(p, v)
	}
	anyInt := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return uint64(rng.Int64N(1000))
		case 2:
			return uint64(-1 - rng.Int64N(3)) // negative int64s: ten bytes
		}
		return rng.Uint64()
	}
	entry := func() []byte {
		var e []byte
		for range rng.IntN(6) {
			switch rng.IntN(6) {
			case 0, 1:
				e = protowire.AppendTag(e, protowire.Number(1+rng.IntN(2)), protowire.VarintType)
				e = protowire.AppendVarint(e, anyInt())
			case 2:
				v := make([]byte, rng.IntN(40))
				for i := range v {
					v[i] = byte(rng.IntN(256))
				}
				e = protowire.AppendTag(e, 3, protowire.BytesType)
				e = protowire.AppendBytes(e, v)
			case 3:
				e = protowire.AppendTag(e, 4, protowire.Fixed64Type)
				e = protowire.AppendFixed64(e, rng.Uint64())
			case 4: // a known number with another wire type: unknown
				e = protowire.AppendTag(e, protowire.Number(1+rng.IntN(4)), protowire.Fixed32Type)
				e = protowire.AppendFixed32(e, rng.Uint32())
			case 5:
				e = protowire.AppendTag(e, protowire.Number(5+rng.IntN(100)), protowire.BytesType)
				e = protowire.AppendBytes(e, []byte("unknown"))
			}
		}
		return e
	}
	for range rng.IntN(8) {
		switch rng.IntN(8) {
		case 0:
			varint(1, anyInt())
		case 1, 2:
			p = protowire.AppendTag(p, 2, protowire.BytesType)
			p = protowire.AppendBytes(p, entry())
		case 3:
			varint(3, anyInt())
		case 4:
			varint(4, anyInt()) // previous_entry_crc: a uint32 from any varint
		case 5:
			varint(5, uint64(rng.IntN(3)))
		case 6: // a known number with another wire type: unknown
			p = protowire.AppendTag(p, protowire.Number(1+rng.IntN(5)), protowire.Fixed64Type)
			p = protowire.AppendFixed64(p, rng.Uint64())
		case 7: // an unknown group with a field inside
			num := protowire.Number(6 + rng.IntN(1000))
			p = protowire.AppendTag(p, num, protowire.StartGroupType)
			p = protowire.AppendTag(p, 1, protowire.VarintType)
			p = protowire.AppendVarint(p, anyInt())
			p = protowire.AppendTag(p, num, protowire.EndGroupType)
		}
	}
	return p
}

// TestAppendDecodeMatchesProtobuf: the decoder agrees with protobuf-go on
// random Appends, on every prefix of them and on copies with a byte
// changed, decoding all of them into one reused buffer.
func TestAppendDecodeMatchesProtobuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var b Buffer
	for range 3000 {
		p := randomAppend(rng)
		checkDecode(t, &b, p)
		for cut := range len(p) {
			checkDecode(t, &b, p[:cut])
		}
		if len(p) > 0 {
			q := append([]byte(nil), p...)
			q[rng.IntN(len(q))] ^= byte(1 + rng.IntN(255))
			checkDecode(t, &b, q)
		}
	}
	// A real leader's message, as the leader driver sends it.
	crc := uint32(7)
	real, err := proto.Marshal(&replicationpb.Append{
		Term: 3, CommitOffset: 41, PreviousEntryCrc: &crc, CumulativeAcksSupported: true,
		Entry: &replicationpb.LogEntry{Term: 3, Offset: 42, Value: []byte("value"), Timestamp: 1700000000000},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDecode(t, &b, real)
}

// FuzzAppendDecode: as TestAppendDecodeMatchesProtobuf, on any input.
func FuzzAppendDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		f.Add(randomAppend(rng))
	}
	f.Add([]byte{0x00})             // field number 0
	f.Add([]byte{0x0c})             // an end group with no start
	f.Add([]byte{0x12, 0x05, 0x1a}) // an entry longer than the input
	var b Buffer
	f.Fuzz(func(t *testing.T, p []byte) { checkDecode(t, &b, p) })
}

// TestAppendDecodeAllocates: decoding an Append into a buffer that
// decoded one before allocates nothing, through the codec as gRPC calls
// it; other messages go to gRPC's protobuf codec.
func TestAppendDecodeAllocates(t *testing.T) {
	crc := uint32(7)
	p, err := proto.Marshal(&replicationpb.Append{
		Term: 3, CommitOffset: 41, PreviousEntryCrc: &crc, CumulativeAcksSupported: true,
		Entry: &replicationpb.LogEntry{Term: 3, Offset: 42, Value: make([]byte, 100), Timestamp: 1700000000000},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := NewCodec()
	data := mem.BufferSlice{mem.SliceBuffer(p)}
	var b Buffer
	if err := c.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := c.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per Append", n)
	}
	if b.Entry.GetOffset() != 42 || len(b.Entry.GetValue()) != 100 || b.GetPreviousEntryCrc() != 7 {
		t.Errorf("decoded %v", prototext.Format(&b.Append))
	}
	// In two pieces, as gRPC may hand a message over.
	split := mem.BufferSlice{mem.SliceBuffer(p[:10]), mem.SliceBuffer(p[10:])}
	b = Buffer{}
	if err := c.Unmarshal(split, &b); err != nil || b.Entry.GetOffset() != 42 {
		t.Errorf("in two pieces: %v, %v", prototext.Format(&b.Append), err)
	}
	// gRPC's own protobuf codec (a server that installed another codec)
	// fills the buffer too, by allocating.
	b = Buffer{}
	if err := c.proto.Unmarshal(data, &b); err != nil || b.Entry.GetOffset() != 42 || b.GetPreviousEntryCrc() != 7 {
		t.Errorf("through gRPC's codec: %v, %v", prototext.Format(&b.Append), err)
	}
	// A buffer gRPC's codec filled, an unknown field included, decodes
	// the next Append as a new message: the unknown field is gone.
	withUnknown := protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), p...), 99, protowire.VarintType), 1)
	if err := c.proto.Unmarshal(mem.BufferSlice{mem.SliceBuffer(withUnknown)}, &b); err != nil {
		t.Fatal(err)
	}
	checkDecode(t, &b, p)
	var ack replicationpb.Ack
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x08, 0x05})}, &ack); err != nil || ack.GetOffset() != 5 {
		t.Errorf("an Ack: %v, %v", &ack, err)
	}
}

// TestAppendDecodeCopiesTheValue: the decoded value does not share the
// input's memory, which gRPC reuses once the message is decoded.
func TestAppendDecodeCopiesTheValue(t *testing.T) {
	p, err := proto.Marshal(&replicationpb.Append{Entry: &replicationpb.LogEntry{Offset: 1, Value: []byte("value")}})
	if err != nil {
		t.Fatal(err)
	}
	var b Buffer
	if err := b.Decode(p); err != nil {
		t.Fatal(err)
	}
	clear(p)
	if got := string(b.Entry.GetValue()); got != "value" {
		t.Errorf("value %q once the input is overwritten, want %q", got, "value")
	}
}
