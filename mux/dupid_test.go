package mux

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// TestDuplicateRequestID checks that a peer reusing the ID of a request
// still being served, or still arriving in chunks, breaks the protocol.
func TestDuplicateRequestID(t *testing.T) {
	req := func(id uint64, flags uint8) Header {
		return Header{Op: OpRequest, Flags: flags, Handler: 1, ID: id}
	}
	for _, tc := range []struct {
		name   string
		frames []Header
	}{
		{"served", []Header{req(7, 0), req(7, 0)}},
		{"chunked then single", []Header{req(7, FlagMore), req(7, 0)}},
		{"single then chunked", []Header{req(7, 0), req(7, FlagMore)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			reg := new(handlers.Registry)
			block := func(ctx context.Context, p []byte) ([]byte, error) { <-ctx.Done(); return nil, ctx.Err() }
			if err := reg.RegisterSingle(1, block); err != nil {
				t.Fatal(err)
			}
			s, err := NewSession(a, reg, Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			go func() { _, _ = io.Copy(io.Discard, b) }()
			hl := hello{Version: Version, MaxMessageSize: 1 << 20, MaxConcurrent: 8, MaxStreams: 8}
			out := AppendFrame(nil, Header{Op: OpHello}, hl.append(nil))
			for _, h := range tc.frames {
				p := []byte("x")
				if h.Flags&FlagMore != 0 {
					p = make([]byte, MaxFramePayload) // a chunk before the last is full
				}
				out = AppendFrame(out, h, p)
			}
			// The session may end (and close its side) before it has read
			// everything: the write's error does not matter.
			go func() { _, _ = b.Write(out) }()
			select {
			case <-s.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("session did not end")
			}
			if !errors.Is(s.Err(), ErrProtocol) {
				t.Fatalf("session ended with %v, want ErrProtocol", s.Err())
			}
		})
	}
}
