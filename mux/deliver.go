package mux

import "time"

// finishLocked decides the stream's last Response: err, or just the close
// of Responses if err is nil. With drop, messages not yet taken are
// dropped (and recycled), and so is whatever still arrives (see
// dropLocked). The final goes into resp at once if it fits, else the
// forwarder (running, or started now) delivers it after the messages; once
// the caller cancelled (cs.cancelled), it is never waited for.
//
// force is set when called from fail (endStreams), which may start
// goroutines although the session is closing; otherwise, if the session is
// closing, the final stays pending and endStreams starts its forwarder.
func (cs *cstream) finishLocked(err error, drop, force bool) {
	cs.final, cs.finalErr = true, err
	cs.releaseTokenLocked()
	if cs.resp == nil {
		return // not accepted: NewStream returns the error
	}
	if drop {
		cs.dropLocked()
	}
	cs.settleLocked(force)
}

// settleLocked delivers the decided final: at once if nothing waits before
// it and it fits, else through the forwarder.
func (cs *cstream) settleLocked(force bool) {
	if cs.delivered {
		return
	}
	if cs.fwd {
		cs.pending = true
		return
	}
	if cs.over.len() == 0 && cs.putFinalLocked() {
		return
	}
	cs.pending = true
	cs.startForwarderLocked(force)
}

// putFinalLocked puts the final into resp and closes it if it fits without
// waiting (or there is no error to put), reporting whether it did. A
// stream the caller cancelled never waits for its reader: its messages
// were dropped, so the error fits unless Responses is unbuffered
// (OutCapacity 1) and nobody is receiving from it; then Responses closes
// without it, and Recv returns it.
func (cs *cstream) putFinalLocked() bool {
	if cs.finalErr != nil {
		select {
		case cs.resp <- Response{Err: cs.finalErr}: // room, or a receiver waiting
		default:
			if !cs.cancelled {
				return false
			}
			cs.lostErr = cs.finalErr
		}
	}
	cs.closeRespLocked()
	return true
}

// dropLocked drops the messages the caller has not taken, recycling them,
// and makes the reader drop what still arrives. A forwarder blocked
// handing a message to a caller who stopped reading is woken, so that it
// drops that message too and delivers the final at once.
func (cs *cstream) dropLocked() {
	cs.dropping = true
	cs.s.dropIn(&cs.out.bytes)
	n := dropMsgs(&cs.over)
	n += cs.drainLocked()
	if cs.fwd && cs.kick != nil {
		select {
		case cs.kick <- struct{}{}:
		default:
		}
	}
	if dropHook != nil && n > 0 {
		dropHook(n)
	}
}

// drainLocked empties resp of the messages in it, recycling them, and
// returns how many it took.
func (cs *cstream) drainLocked() int {
	n := 0
	for len(cs.resp) > 0 {
		select {
		case r := <-cs.resp:
			Recycle(r.Msg)
			n++
		default:
		}
	}
	return n
}

// dropHook, if set (by tests), is told how many undelivered messages a
// cancelled stream dropped.
var dropHook func(n int)

func (cs *cstream) closeRespLocked() {
	cs.delivered = true
	cs.endQuickLocked()
	if cs.stop != nil {
		cs.stop() // the caller's context no longer matters
		cs.stop = nil
	}
	if cs.done != nil {
		close(cs.done)
	}
	close(cs.resp)
}

// deliverLocked hands a message to the caller: into resp if it has room
// and nothing waits before it, else to the overflow queue. Reader only.
func (cs *cstream) deliverLocked(msg []byte) {
	if !cs.fwd {
		select {
		case cs.resp <- Response{Msg: msg}: // room, or a receiver waiting
			cs.out.pushed++
			return
		default:
		}
	}
	cs.over.push(msg)
	if !cs.fwd {
		cs.startForwarderLocked(false)
	}
}

// startForwarderLocked starts the goroutine that empties the overflow
// queue. Unless force, it starts none once the session is closing: then
// endStreams, which runs after, starts it with force.
func (cs *cstream) startForwarderLocked(force bool) {
	if force {
		cs.s.handlers.Add(1)
	} else if !cs.s.track() {
		return
	}
	if cs.kick == nil {
		cs.kick = make(chan struct{}, 1)
	}
	cs.fwd = true
	go cs.forward()
}

// forward moves overflowed messages, then a pending final, into resp as
// the caller takes them, granting credit as it goes; it exits when the
// overflow queue is empty.
func (cs *cstream) forward() {
	s := cs.s
	defer s.handlers.Done()
	for {
		cs.mu.Lock()
		if cs.over.len() == 0 {
			cs.fwd = false
			if !cs.pending {
				cs.mu.Unlock()
				return
			}
			cs.pending = false
			cs.mu.Unlock()
			cs.pushFinal()
			return
		}
		r := Response{Msg: cs.over.pop()}
		cs.mu.Unlock()
		pushed, ok := cs.push(r)
		cs.mu.Lock()
		switch {
		case cs.dropping:
			// The messages are dropped (a cancel, or the session's end)
			// and r was on its way: r goes, and so does anything it
			// joined in resp.
			n := cs.drainLocked()
			if !pushed {
				Recycle(r.Msg)
				n++
			}
			if dropHook != nil {
				dropHook(n)
			}
		case !ok:
			cs.giveUpLocked()
			end := cs.takeEndLocked()
			cs.mu.Unlock()
			end.run() // the stream's own goroutine
			return
		default:
			cs.out.pushed++
			cs.grantLocked()
		}
		cs.mu.Unlock()
	}
}

// pushFinal delivers the pending final after the messages: it waits for
// the caller to take it, unless the caller cancels meanwhile (then it does
// not wait: see putFinalLocked) or the session is over and the caller does
// not take it within CloseTimeout.
func (cs *cstream) pushFinal() {
	cs.mu.Lock()
	defer func() {
		end := cs.takeEndLocked()
		cs.mu.Unlock()
		end.run() // the stream's own goroutine
	}()
	for !cs.delivered {
		if cs.finalErr == nil || cs.cancelled {
			cs.putFinalLocked()
			return
		}
		r := Response{Err: cs.finalErr}
		cs.mu.Unlock()
		pushed, ok := cs.push(r)
		cs.mu.Lock()
		switch {
		case pushed:
			cs.closeRespLocked()
		case !ok:
			cs.giveUpLocked()
		}
		// Else the caller cancelled: the loop puts the final without
		// waiting.
	}
}

// giveUpLocked closes Responses of a stream whose caller did not read it
// within CloseTimeout of the session's end.
func (cs *cstream) giveUpLocked() {
	cs.over.clear()
	cs.fwd = false
	if !cs.delivered {
		cs.final, cs.pending = true, false
		cs.closeRespLocked()
	}
}

// push sends r on resp. It returns (false, true) without sending if the
// messages are being dropped (cs.kick), and (false, false) if the session is over
// and the caller did not take r within CloseTimeout, so that neither a
// cancel nor Close waits on a caller that stopped reading.
func (cs *cstream) push(r Response) (pushed, ok bool) {
	select {
	case cs.resp <- r:
		return true, true
	case <-cs.kick:
		return false, true
	case <-cs.s.closing:
	}
	t := time.NewTimer(cs.s.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case cs.resp <- r:
		return true, true
	case <-cs.kick:
		return false, true
	case <-t.C:
		return false, false
	}
}
