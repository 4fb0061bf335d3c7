package echo_test

import (
	"context"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestDurableStreamEndingAfterClose: a stream still running when the echo
// is closed removes its file when it ends; nothing is left behind.
func TestDurableStreamEndingAfterClose(t *testing.T) {
	dir := t.TempDir()
	client, durable, _ := serveDurable(t, vfs.Default, dir)
	stream, err := client.Replicate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(entry(0, true)); err != nil {
		t.Fatal(err)
	}
	if ack, err := stream.Recv(); err != nil || ack.GetOffset() != 0 {
		t.Fatalf("ack %v, %v", ack, err)
	}
	if err := durable.Close(); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if ack, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after the half-close: %v, %v; want the end of the stream", ack, err)
	}
	// The handler released its file before it returned.
	if names := filesIn(t, dir); len(names) != 0 {
		t.Fatalf("a stream that ended after Close left %q", names)
	}
}
