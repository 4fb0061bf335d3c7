package leader

import (
	"errors"
	"testing"
)

// TestEndedAfterEveryAck: a stream the follower ended normally is a
// success once every entry of the run is acknowledged, and a protocol
// violation before; an error ending it stays that error. (Through the
// wire, the run sees the end before its last ack only when it is slow
// between its last send and its wait for the acks: a window too narrow
// for a test to hit at will.)
func TestEndedAfterEveryAck(t *testing.T) {
	r := &runState{run: Run{Count: 3}}
	r.acked.Store(2)
	if err := r.ended(nil); !errors.Is(err, ErrProtocol) {
		t.Errorf("ended with 2 of 3 acknowledged: %v, want ErrProtocol", err)
	}
	r.acked.Store(3)
	if err := r.ended(nil); err != nil {
		t.Errorf("ended with every entry acknowledged: %v, want nil", err)
	}
	cause := errors.New("the stream broke")
	if err := r.ended(cause); err != cause {
		t.Errorf("ended by an error: %v, want it as is", err)
	}
}
