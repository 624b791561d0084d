package handlers

import (
	"context"
	"fmt"
	"sync"
)

// RawStream is one open stream as the calling side sees it, in bytes.
// mux.Stream implements it.
type RawStream interface {
	// Send sends one message, waiting for flow-control credit.
	Send(ctx context.Context, msg []byte) error
	// CloseSend ends the caller's input.
	CloseSend()
	// Recv returns the next message, io.EOF once the handler returned nil,
	// or the error that ended the stream.
	Recv() ([]byte, error)
	// Cancel ends the stream early.
	Cancel()
}

// StreamOpener opens raw streams: mux.Session and grid.Connection
// implement it.
type StreamOpener interface {
	OpenStream(ctx context.Context, h HandlerID, payload []byte) (RawStream, error)
}

// TypedStream is a typed stream handler: an initial Payload, then Req
// messages from the caller and Resp messages from the handler, all msgp
// types. A TypedStream may be used concurrently.
type TypedStream[Payload, Req, Resp Message] struct {
	id         HandlerID
	newPayload func() Payload
	newReq     func() Req
	newResp    func() Resp
}

// NewTypedStream returns a typed stream handler for id; the functions
// return fresh values to decode into.
func NewTypedStream[Payload, Req, Resp Message](id HandlerID, newPayload func() Payload, newReq func() Req, newResp func() Resp) *TypedStream[Payload, Req, Resp] {
	return &TypedStream[Payload, Req, Resp]{id: id, newPayload: newPayload, newReq: newReq, newResp: newResp}
}

// ID returns the handler's ID.
func (t *TypedStream[Payload, Req, Resp]) ID() HandlerID { return t.id }

// In is the typed input of a stream handler. Recv must not be called
// concurrently with itself.
type In[Req Message] struct {
	raw    ServerStream
	newReq func() Req
	id     HandlerID
}

// Recv returns the caller's next message, io.EOF when the caller ended its
// input (or the handler takes none), or the error of ctx or of the
// stream's context, whichever is done first.
func (in *In[Req]) Recv(ctx context.Context) (Req, error) {
	var zero Req
	b, err := in.raw.Recv(ctx)
	if err != nil {
		return zero, err
	}
	req := in.newReq()
	if _, err := req.UnmarshalMsg(b); err != nil {
		return zero, fmt.Errorf("handlers: %v: decode stream message: %w", in.id, err)
	}
	return req, nil
}

// Out is the typed output of a stream handler. Its methods may be called
// concurrently.
type Out[Resp Message] struct {
	raw ServerStream
	id  HandlerID
	// The encoding buffer, reused by Sends that find mu free (the stream
	// copies each message before Send returns).
	mu  sync.Mutex
	buf []byte
}

// Send encodes resp and sends it to the caller, waiting for flow-control
// credit, ctx or the stream's context.
func (o *Out[Resp]) Send(ctx context.Context, resp Resp) error {
	if o.mu.TryLock() {
		defer o.mu.Unlock()
		b, err := o.encode(resp, o.buf[:0])
		if err != nil {
			return err
		}
		if cap(b) <= maxKeptBuffer {
			o.buf = b
		}
		return o.raw.Send(ctx, b)
	}
	b, err := o.encode(resp, make([]byte, 0, resp.Msgsize()))
	if err != nil {
		return err
	}
	return o.raw.Send(ctx, b)
}

func (o *Out[Resp]) encode(resp Resp, buf []byte) ([]byte, error) {
	b, err := resp.MarshalMsg(buf)
	if err != nil {
		return nil, fmt.Errorf("handlers: %v: encode stream message: %w", o.id, err)
	}
	return b, nil
}

// maxKeptBuffer bounds the encoding buffer an Out keeps between messages.
const maxKeptBuffer = 64 << 10

// Register registers fn in r. inCap and outCap are the stream's
// capacities (see StreamHandler); inCap 0 means fn gets no input.
func (t *TypedStream[Payload, Req, Resp]) Register(r *Registry, inCap, outCap int, fn func(ctx context.Context, p Payload, in *In[Req], out *Out[Resp]) error) error {
	return r.RegisterStream(t.id, StreamHandler{
		InCapacity:  inCap,
		OutCapacity: outCap,
		Serve: func(ctx context.Context, payload []byte, st ServerStream) error {
			p := t.newPayload()
			if _, err := p.UnmarshalMsg(payload); err != nil {
				return fmt.Errorf("handlers: %v: decode stream payload: %w", t.id, err)
			}
			return fn(ctx, p, &In[Req]{raw: st, newReq: t.newReq, id: t.id}, &Out[Resp]{raw: st, id: t.id})
		},
	})
}

// Client is the calling side of a typed stream.
type Client[Req, Resp Message] struct {
	raw     RawStream
	newResp func() Resp
	id      HandlerID
}

// Open opens the stream through o with the initial payload p.
func (t *TypedStream[Payload, Req, Resp]) Open(ctx context.Context, o StreamOpener, p Payload) (*Client[Req, Resp], error) {
	b, err := p.MarshalMsg(make([]byte, 0, p.Msgsize()))
	if err != nil {
		return nil, fmt.Errorf("handlers: %v: encode stream payload: %w", t.id, err)
	}
	raw, err := o.OpenStream(ctx, t.id, b)
	if err != nil {
		return nil, err
	}
	return &Client[Req, Resp]{raw: raw, newResp: t.newResp, id: t.id}, nil
}

// Send encodes req and sends it to the handler.
func (c *Client[Req, Resp]) Send(ctx context.Context, req Req) error {
	b, err := req.MarshalMsg(make([]byte, 0, req.Msgsize()))
	if err != nil {
		return fmt.Errorf("handlers: %v: encode stream message: %w", c.id, err)
	}
	return c.raw.Send(ctx, b)
}

// CloseSend ends the handler's input.
func (c *Client[Req, Resp]) CloseSend() { c.raw.CloseSend() }

// Cancel ends the stream early.
func (c *Client[Req, Resp]) Cancel() { c.raw.Cancel() }

// Recv returns the handler's next message, io.EOF once it returned nil, or
// the error that ended the stream.
func (c *Client[Req, Resp]) Recv() (Resp, error) {
	var zero Resp
	b, err := c.raw.Recv()
	if err != nil {
		return zero, err
	}
	resp := c.newResp()
	if _, err := resp.UnmarshalMsg(b); err != nil {
		c.raw.Cancel()
		return zero, fmt.Errorf("handlers: %v: decode stream message: %w", c.id, err)
	}
	return resp, nil
}
