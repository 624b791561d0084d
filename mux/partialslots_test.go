package mux

import (
	"context"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// TestEndFreesHalfSentSlots: requests and stream opens whose chunks were
// still arriving when the session ended give their handler and stream
// slots back, so that nothing counts them afterwards. Some complete
// requests and final chunks race the end too.
func TestEndFreesHalfSentSlots(t *testing.T) {
	reg := new(handlers.Registry)
	if err := reg.RegisterSingle(1, func(ctx context.Context, p []byte) ([]byte, error) { return p, nil }); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, MaxFramePayload) // every chunk but a message's last is full
	for round := range 20 {
		p := newRawPeer(t, reg, Version)
		const halfSent = 8
		id := uint64(0)
		for range halfSent {
			id++
			p.send(Header{Op: OpRequest, Flags: FlagMore, Handler: 1, ID: id}, chunk)
		}
		id++
		p.send(Header{Op: OpStreamOpen, Flags: FlagMore, Handler: 2, ID: id}, chunk)
		if st := p.s.Stats(); st.Running != halfSent {
			t.Fatalf("round %d: %d half-sent requests hold %d handler slots", round, halfSent, st.Running)
		}
		// The last chunks of some, and new requests, race the end.
		raced := make(chan struct{})
		go func() {
			defer close(raced)
			for i := uint64(1); i <= 4; i++ {
				out := AppendFrame(nil, Header{Op: OpRequest, Handler: 1, ID: 100 + i}, chunk)
				out = AppendFrame(out, Header{Op: OpRequest, ID: i, Seq: 1}, chunk)
				if _, err := p.conn.Write(out); err != nil {
					return // the session ended
				}
			}
		}()
		if round%2 == 1 {
			time.Sleep(time.Duration(round) * 50 * time.Microsecond)
		}
		p.s.Close()
		p.conn.Close()
		<-raced
		if n, m := len(p.s.hslots), len(p.s.sslots); n != 0 || m != 0 {
			t.Fatalf("round %d: after the end, %d handler slots and %d stream slots are still taken", round, n, m)
		}
		if st := p.s.Stats(); st.Running != 0 || st.OrphanedHandlers != 0 || st.StreamsIn != 0 {
			t.Fatalf("round %d: after the end: %+v", round, st)
		}
	}
}
