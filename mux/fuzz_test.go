package mux_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

// seedFrames are valid frames of every op, made by the encoder.
func seedFrames() [][]byte {
	hs := []mux.Header{
		{Op: mux.OpRequest, Handler: hEcho, ID: 1, Deadline: 1000},
		{Op: mux.OpRequest, Handler: hEcho, ID: 2},
		{Op: mux.OpResponse, ID: 1},
		{Op: mux.OpResponse, Flags: mux.FlagError, ID: 3},
		{Op: mux.OpCancel, ID: 4},
		{Op: mux.OpPing, ID: 5},
		{Op: mux.OpPong, ID: 5},
		{Op: mux.OpClose},
	}
	var out [][]byte
	for _, h := range hs {
		out = append(out, mux.AppendFrame(nil, h, []byte("payload")))
	}
	out = append(out, mux.AppendFrame(nil, mux.Header{Op: mux.OpAck}, binary.BigEndian.AppendUint64(nil, 64)))
	// A request in two chunks: every chunk but the last is full.
	out = append(out,
		mux.AppendFrame(nil, mux.Header{Op: mux.OpRequest, Flags: mux.FlagMore, Handler: hEcho, ID: 3}, make([]byte, mux.MaxFramePayload)),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpRequest, ID: 3, Seq: 1}, []byte("tail")))
	// Trace contexts (version 3): before a request, a request in chunks
	// and a stream open, with and without a tracestate.
	tr, _ := hex.DecodeString("004bf92f3577b34da6a3ce929d0e0e473600f067aa0ba902b701")
	out = append(out,
		mux.AppendFrame(nil, mux.Header{Op: mux.OpTrace, ID: 10}, append(tr, "k=v"...)),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpRequest, Handler: hEcho, ID: 10}, []byte("traced")),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpTrace, ID: 11}, tr),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpRequest, Flags: mux.FlagMore, Handler: hEcho, ID: 11}, make([]byte, mux.MaxFramePayload)),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpRequest, ID: 11, Seq: 1}, []byte("tail")),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpTrace, ID: 12}, tr),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamOpen, Handler: hsServe, ID: 12}, nil),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpCancel, ID: 12}, nil))
	// A stream to the echo stream handler: open, two messages (one in
	// chunks), credit for its output, end of input; and a cancelled one.
	credit := []byte{0, 0, 0, 1}
	out = append(out,
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamOpen, Handler: hsEcho, ID: 20, Deadline: 1000}, nil),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamIn, ID: 20}, []byte("in")),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamIn, Flags: mux.FlagMore, ID: 20}, make([]byte, mux.MaxFramePayload)),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamIn, ID: 20, Seq: 1}, []byte("nk")),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamCreditOut, ID: 20}, credit),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamCloseIn, ID: 20}, nil),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamOpen, Handler: hsEcho, ID: 21}, []byte("p")),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamIn, ID: 21}, []byte("x")),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpCancel, ID: 21}, nil),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamCloseIn, ID: 21}, nil),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamAccept, ID: 22}, make([]byte, 8)),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamCreditIn, ID: 22}, credit),
		// The same to the echo handler in the Serve form.
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamOpen, Handler: hsServe, ID: 23}, nil),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamIn, ID: 23}, []byte("in")),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamIn, Flags: mux.FlagMore, ID: 23}, make([]byte, mux.MaxFramePayload)),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamIn, ID: 23, Seq: 1}, []byte("nk")),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamCreditOut, ID: 23}, credit),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamCloseIn, ID: 23}, nil),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpStreamOpen, Handler: hsServe, ID: 24, Deadline: 1}, []byte("p")),
		mux.AppendFrame(nil, mux.Header{Op: mux.OpCancel, ID: 24}, nil),
	)
	return out
}

// FuzzParseHeader checks that any 24 bytes either parse into a header that
// re-encodes to the same bytes, or give an ErrProtocol error; never a panic.
func FuzzParseHeader(f *testing.F) {
	for _, fr := range seedFrames() {
		f.Add(fr[:mux.HeaderSize])
	}
	f.Add(make([]byte, mux.HeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := mux.ParseHeader(b)
		if err != nil {
			if !errors.Is(err, mux.ErrProtocol) {
				t.Fatalf("error %v does not match ErrProtocol", err)
			}
			return
		}
		if h.Length > mux.MaxFramePayload {
			t.Fatalf("accepted length %d", h.Length)
		}
		payload := make([]byte, h.Length)
		re := mux.AppendFrame(nil, h, payload)
		if !bytes.Equal(re[:mux.HeaderSize], b[:mux.HeaderSize]) {
			t.Fatalf("round trip: %x != %x", re[:mux.HeaderSize], b[:mux.HeaderSize])
		}
	})
}

// helloFrame is what a peer sends first.
func helloFrame() []byte {
	p := make([]byte, 20)
	copy(p, "GMUX")
	p[4] = mux.Version
	binary.BigEndian.PutUint32(p[8:], 1<<20)
	binary.BigEndian.PutUint32(p[12:], 64)
	binary.BigEndian.PutUint32(p[16:], 64)
	return mux.AppendFrame(nil, mux.Header{Op: mux.OpHello}, p)
}

// FuzzSession feeds a session arbitrary bytes after a valid hello, as a
// hostile peer would. The session must never panic, must end with an error
// or keep serving, and Close must return with no goroutine left behind.
func FuzzSession(f *testing.F) {
	frames := seedFrames()
	f.Add(bytes.Join(frames, nil))
	f.Add(bytes.Join(frames[len(frames)-20:], nil)) // the streams alone
	for _, fr := range frames {
		f.Add(fr)
	}
	f.Add(mux.AppendFrame(nil, mux.Header{Op: mux.OpRequest, Handler: hPanic, ID: 9}, nil))
	f.Add(mux.AppendFrame(nil, mux.Header{Op: mux.OpRequest, Handler: hMissing, ID: 9}, nil))
	f.Add([]byte{0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	// Trace frames whose seq or deadline is not 0 (SPEC.md, TRACE: a
	// protocol error), each before the request it would trace.
	tr, _ := hex.DecodeString("004bf92f3577b34da6a3ce929d0e0e473600f067aa0ba902b701")
	for _, h := range []mux.Header{{Op: mux.OpTrace, ID: 30, Seq: 9}, {Op: mux.OpTrace, ID: 30, Deadline: 77}} {
		f.Add(append(mux.AppendFrame(nil, h, tr), mux.AppendFrame(nil, mux.Header{Op: mux.OpRequest, Handler: hEcho, ID: 30}, []byte("x"))...))
	}
	reg := echoRegistry(f)
	mustRegister(f, reg, hPanic, func(context.Context, []byte) ([]byte, error) { panic("fuzz") })
	mustStream(f, reg, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 2, OutCapacity: 2})
	mustStream(f, reg, hsServe, handlers.StreamHandler{Serve: streamtest.ServeEcho, InCapacity: 2, OutCapacity: 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		s, err := mux.NewSession(a, reg, mux.Config{MaxMessageSize: 1 << 20, HelloTimeout: time.Second, CloseTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		drained := make(chan struct{})
		go func() { // the peer reads whatever the session says
			io.Copy(io.Discard, b)
			close(drained)
		}()
		// net.Pipe's Write returns once the session has read every byte
		// (or it ended and closed its side).
		b.SetWriteDeadline(time.Now().Add(2 * time.Second))
		b.Write(helloFrame())
		b.Write(data)
		s.Close()
		b.Close()
		<-drained
		if err := s.Err(); !errors.Is(err, mux.ErrDisconnected) && !errors.Is(err, mux.ErrProtocol) {
			t.Fatalf("session ended with %v", err)
		}
	})
}

var _ = handlers.MaxHandlerID
