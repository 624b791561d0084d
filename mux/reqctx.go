package mux

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// reqCtx is a handler's context: the caller's deadline, cancelled by the
// caller's OpCancel or the session's end, and values from BaseContext. Its
// Done channel and deadline timer are made only if the handler asks for
// Done, so a handler that never waits costs one small allocation (64 bytes:
// the reason it ended is kept as a code rather than an error value).
type reqCtx struct {
	parent   context.Context
	id       uint64
	deadline int64      // Unix nanoseconds; 0: none
	trace    *wireTrace // the trace context the caller sent; nil: none

	mu     sync.Mutex
	ended  ctxEnd
	done   chan struct{}
	timer  *time.Timer
	afters []*func() // AfterFunc's, run when the context ends
}

// ctxEnd is why a reqCtx ended.
type ctxEnd uint8

const (
	ctxLive        ctxEnd = iota
	ctxCanceled           // context.Canceled: the caller cancelled
	ctxDeadline           // context.DeadlineExceeded
	ctxSessionOver        // context.Canceled: the session ended (SessionEnded)
)

func (e ctxEnd) err() error {
	switch e {
	case ctxCanceled, ctxSessionOver:
		return context.Canceled
	case ctxDeadline:
		return context.DeadlineExceeded
	}
	return nil
}

func endOf(err error) ctxEnd {
	if err == context.DeadlineExceeded {
		return ctxDeadline
	}
	return ctxCanceled
}

func (c *reqCtx) Deadline() (time.Time, bool) {
	if c.deadline == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, c.deadline), true
}
func (c *reqCtx) Value(key any) any {
	switch key.(type) {
	case sessionEndKey:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.ended == ctxSessionOver
	case reqCtxKey:
		return c
	}
	return c.parent.Value(key)
}

// reqCtxKey finds, in a context derived from a handler's, the handler's
// reqCtx (serveStreamLast).
type reqCtxKey struct{}

// sessionEndKey asks a handler's context whether its session ended it.
type sessionEndKey struct{}

// SessionEnded reports whether ctx, a handler's context or one derived
// from it, ended because its session did (the connection was lost or
// closed) rather than because the caller cancelled it or its deadline
// passed. A handler whose work should outlive a lost caller (it is
// recorded and answered when the caller comes back) tells the two apart
// with it.
func SessionEnded(ctx context.Context) bool {
	ended, _ := ctx.Value(sessionEndKey{}).(bool)
	return ended
}

func (c *reqCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		switch {
		case c.ended != ctxLive:
			close(c.done)
		case c.deadline != 0:
			c.timer = time.AfterFunc(time.Until(time.Unix(0, c.deadline)), func() { c.cancel(context.DeadlineExceeded) })
		}
	}
	return c.done
}

func (c *reqCtx) Err() error {
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if ended == ctxLive && c.deadline != 0 && time.Now().UnixNano() >= c.deadline {
		c.cancel(context.DeadlineExceeded)
		return c.Err()
	}
	return ended.err()
}

func (c *reqCtx) String() string { return fmt.Sprintf("mux.request(%d)", c.id) }

// cancel records err (context.Canceled or context.DeadlineExceeded) unless
// the context already ended.
func (c *reqCtx) cancel(err error) {
	c.mu.Lock()
	c.cancelLocked(endOf(err))
	c.mu.Unlock()
}

// AfterFunc runs f on a goroutine of its own once the context ends, and
// returns a stop function as context.AfterFunc does. context.AfterFunc
// and the contexts derived from a handler's use it, so that watching a
// handler's context costs no goroutine while it is live.
func (c *reqCtx) AfterFunc(f func()) (stop func() bool) {
	c.Done() // arms the deadline's timer
	fp := &f
	c.mu.Lock()
	if c.ended != ctxLive {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.afters = append(c.afters, fp)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, g := range c.afters {
			if g == fp {
				c.afters = append(c.afters[:i], c.afters[i+1:]...)
				return true
			}
		}
		return false
	}
}

// end ends the context for reason e, unless it already ended.
func (c *reqCtx) end(e ctxEnd) {
	c.mu.Lock()
	c.cancelLocked(e)
	c.mu.Unlock()
}

func (c *reqCtx) cancelLocked(e ctxEnd) {
	if c.ended == ctxLive {
		c.ended = e
		if c.done != nil {
			close(c.done)
		}
		for _, f := range c.afters {
			go (*f)()
		}
		c.afters = nil
	}
	if c.timer != nil {
		c.timer.Stop()
	}
}

// finish cancels the context once the handler returned (as net/http does
// for a request's context) and reports whether the caller had cancelled it.
func (c *reqCtx) finish() (cancelled bool) {
	c.mu.Lock()
	cancelled = c.ended == ctxCanceled || c.ended == ctxSessionOver
	c.cancelLocked(ctxCanceled)
	c.mu.Unlock()
	return cancelled
}
