package mux

import "time"

// finishLocked decides the stream's last Response: err, or just the close
// of Responses if err is nil. With drop, messages not yet taken are
// dropped. The final goes into resp at once if it fits, else the
// forwarder (running, or started now) delivers it after the messages.
//
// force is set when called from fail (endStreams), which may start
// goroutines although the session is closing; otherwise, if the session is
// closing, the final stays pending and endStreams starts its forwarder.
func (cs *cstream) finishLocked(err error, drop, force bool) {
	cs.final, cs.finalErr = true, err
	if cs.stop != nil {
		cs.stop()
		cs.stop = nil
	}
	cs.releaseTokenLocked()
	if cs.resp == nil {
		return // not accepted: NewStream returns the error
	}
	if drop {
		cs.over.clear()
		for len(cs.resp) > 0 {
			select {
			case <-cs.resp:
			default:
			}
		}
	}
	if cs.fwd {
		cs.pending = true
		return
	}
	if cs.over.len() == 0 {
		if err == nil {
			cs.closeRespLocked()
			return
		}
		select {
		case cs.resp <- Response{Err: err}: // room, or a receiver waiting
			cs.closeRespLocked()
			return
		default:
		}
	}
	cs.pending = true
	cs.startForwarderLocked(force)
}

func (cs *cstream) closeRespLocked() {
	cs.delivered = true
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
	cs.over.push(Response{Msg: msg})
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
			err := cs.finalErr
			cs.mu.Unlock()
			if err != nil {
				cs.push(Response{Err: err})
			}
			cs.mu.Lock()
			cs.closeRespLocked()
			cs.mu.Unlock()
			return
		}
		r := cs.over.pop()
		cs.mu.Unlock()
		if !cs.push(r) {
			cs.mu.Lock()
			cs.over.clear()
			cs.fwd = false
			if !cs.delivered {
				cs.final, cs.pending = true, false
				cs.closeRespLocked()
			}
			cs.mu.Unlock()
			return
		}
		cs.mu.Lock()
		cs.out.pushed++
		if !cs.final {
			if g := cs.out.grantable(len(cs.resp)); g > 0 {
				s.grant(OpStreamCreditOut, cs.id, g)
			}
		}
		cs.mu.Unlock()
	}
}

// push sends r on resp. Once the session is over it waits at most
// CloseTimeout for the caller to take it, so that Close cannot hang on a
// caller that stopped reading; it reports false if it gave up.
func (cs *cstream) push(r Response) bool {
	select {
	case cs.resp <- r:
		return true
	case <-cs.s.closing:
	}
	t := time.NewTimer(cs.s.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case cs.resp <- r:
		return true
	case <-t.C:
		return false
	}
}
