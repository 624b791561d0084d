package bench

import (
	"context"
	"errors"
	"net/http"
)

// MaxPayload is the largest payload, in bytes, every baseline accepts.
const MaxPayload = 16 << 20

// newHTTPServer returns the HTTP server a baseline serves h on, on
// loopback: a request has setupTimeout to arrive, header and body, and as
// long to be answered, and a connection idle for as long between requests
// is closed. The WebSocket upgrade hijacks the connection, and net/http
// clears these deadlines when it does, so they do not end a measurement's
// connection.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: setupTimeout,
		ReadTimeout:       setupTimeout,
		WriteTimeout:      setupTimeout,
		IdleTimeout:       setupTimeout,
	}
}

// ErrClosed is returned by calls made on, or in flight during, a closed
// baseline.
var ErrClosed = errors.New("bench: closed")

// A Caller performs one request/response round trip: the response of a
// baseline is the request payload, echoed. Implementations are safe for
// concurrent use.
//
// The caller must not modify payload until Call returns. The returned slice
// is owned by the caller.
type Caller interface {
	Call(ctx context.Context, payload []byte) ([]byte, error)
}

// A Recycler takes back a message its Call or Recv returned, once the
// caller is done with it, to reuse the memory (gridmesh: mux.Recycle). The
// runners in this package hand every response back to a Caller or
// EchoStream that implements it, as a program that uses the library's
// buffer reuse does; [WithoutRecycle] hides it.
type Recycler interface {
	Recycle(msg []byte)
}

// recycler returns x's Recycle method, or a function that does nothing.
func recycler(x any) func([]byte) {
	if r, ok := x.(Recycler); ok {
		return r.Recycle
	}
	return func([]byte) {}
}

// WithoutRecycle returns p without its Recycle methods: the runners then
// leave every response to the garbage collector, as a program that never
// recycles does.
func WithoutRecycle(p Pair) Pair { return plainPair{p} }

type plainPair struct{ p Pair }

func (p plainPair) Call(ctx context.Context, payload []byte) ([]byte, error) {
	return p.p.Call(ctx, payload)
}
func (p plainPair) Close() error { return p.p.Close() }

// WithoutRecycleStreams is WithoutRecycle for a Streamer and its streams.
func WithoutRecycleStreams(s Streamer) Streamer { return plainStreamer{s} }

type plainStreamer struct{ s Streamer }

func (s plainStreamer) OpenStream(ctx context.Context) (EchoStream, error) {
	st, err := s.s.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return plainStream{st}, nil
}
func (s plainStreamer) Close() error { return s.s.Close() }

type plainStream struct{ st EchoStream }

func (s plainStream) Send(msg []byte) error { return s.st.Send(msg) }
func (s plainStream) Recv() ([]byte, error) { return s.st.Recv() }
func (s plainStream) CloseSend() error      { return s.st.CloseSend() }

// A Pair is a server and a client connected over TCP loopback in this
// process.
type Pair interface {
	Caller
	// Close closes client and server and waits for all goroutines they
	// started. Calls in flight fail, and later calls fail with an error.
	Close() error
}

// A Streamer is a server and a client connected over TCP loopback in this
// process that open bidirectional streams echoing each message.
type Streamer interface {
	// OpenStream opens one bidirectional echo stream. To release it, either
	// call Recv until it returns an error (io.EOF after CloseSend) or cancel
	// ctx.
	OpenStream(ctx context.Context) (EchoStream, error)
	// Close closes client and server and waits for all goroutines they
	// started. Open streams fail.
	Close() error
}

// An EchoStream is one bidirectional stream: every message sent is received
// back, in order. Send and Recv may be called from two different goroutines,
// but neither concurrently with itself.
type EchoStream interface {
	// Send sends one message. The caller must not modify msg afterwards.
	Send(msg []byte) error
	// Recv receives the next echoed message; after CloseSend and all echoes,
	// it returns io.EOF.
	Recv() ([]byte, error)
	// CloseSend ends the sending side of the stream.
	CloseSend() error
}
