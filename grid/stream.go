package grid

import (
	"context"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

var _ handlers.StreamOpener = (*Connection)(nil)

// NewStream opens a two-way stream to the peer's stream handler h over the
// connection's current session, sending payload as the handler's initial
// payload. Like Request, it fails at once with an error matching
// ErrDisconnected when the connection is not up; once open, the stream
// ends with an error matching ErrDisconnected (as its last Response) the
// moment the session is lost or replaced, and the handler's context on the
// peer is cancelled. A stream lives on its session: it does not survive a
// reconnect. Once SetHosts removed the peer, NewStream fails at once with
// an error matching ErrPeerRemoved; a stream already open keeps the
// session for up to Options.RemoveGrace, then ends with ErrDisconnected.
//
// Flow control, capacities, cancellation and deadlines are those of
// mux.Session.NewStream: the handler's registered capacities come back in
// the peer's accept, a stream that is not read only stalls itself, and
// ctx's deadline travels to the handler. At most Options.Mux.MaxStreams
// streams (the lower of both sides') may be open at once; one more fails
// with an error matching mux.ErrTooManyStreams.
//
// A stream whose peer vanished without closing its socket ends when the
// connection's ping liveness gives up on the peer, within PingInterval +
// PingTimeout; a stream that is only idle or blocked stays up as long as
// the connection does.
func (c *Connection) NewStream(ctx context.Context, h handlers.HandlerID, payload []byte) (*mux.Stream, error) {
	s, err := c.session()
	if err != nil {
		return nil, err
	}
	return s.NewStream(ctx, h, payload)
}

// OpenStream opens a stream as NewStream does, but without the Requests
// channel (see mux.Session.OpenStream): the caller sends with Send and ends
// its input with CloseSend, and the stream costs no goroutine on this
// side. It returns the handlers.RawStream interface, so that typed stream
// handlers (handlers.TypedStream.Open) can open streams on a Connection;
// the value is a *mux.Stream.
func (c *Connection) OpenStream(ctx context.Context, h handlers.HandlerID, payload []byte) (handlers.RawStream, error) {
	s, err := c.session()
	if err != nil {
		return nil, err
	}
	return s.OpenStream(ctx, h, payload)
}

// RegisterStreamHandler registers h to serve streams for id from every
// peer. Its InCapacity and OutCapacity are sent to each caller when a
// stream opens. Registering an id twice (as a single or stream handler) is
// an error.
func (m *Manager) RegisterStreamHandler(id handlers.HandlerID, h handlers.StreamHandler) error {
	return m.reg.RegisterStream(id, h)
}
