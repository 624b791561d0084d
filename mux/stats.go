package mux

// Stats is a snapshot of a session's counters and gauges. The counters
// only grow; the gauges describe what is alive, so on a session that has
// ended they are all 0 except OrphanedHandlers.
type Stats struct {
	// Counters.
	BytesIn, BytesOut uint64 // bytes read from and written to the pipe
	FramesIn          uint64 // frames read
	Writes            uint64 // batches written (each one Write call)
	RequestsOut       uint64 // requests sent by this side
	Served            uint64 // requests served for the peer (handlers returned)
	RemoteErrors      uint64 // requests of ours answered with an error
	Cancelled         uint64 // requests of ours given up by their caller
	// ServedInline counts the requests whose handler was registered
	// inline and started on the reader (counted when it starts, so it may
	// lead Served by the one running). InlineHandoffs counts the times
	// the reading moved to a new goroutine: an inline handler overran
	// Config.InlineBudget, or the session ended while one ran (rarely, a
	// late timer moves it early). Handoffs that keep growing name a
	// handler that should not be inline.
	ServedInline, InlineHandoffs uint64
	// PeerRead is how many bytes of ours the peer has acknowledged reading
	// (its latest OpAck; a version 1 peer sends none). It grows as the
	// peer reads, even while its answers wait behind data in the pipe:
	// proof that the peer is alive and hears us, which bytes leaving this
	// side are not.
	PeerRead uint64

	// Gauges.
	InFlight int // requests of ours awaiting an answer
	Running  int // handlers running for the peer (and requests still arriving)
	// Unanswered counts the peer's requests handed to a handler whose
	// answer is not queued yet: Running, and handlers that returned while
	// their answer is on its way to the queue. Once it is 0, closing the
	// session loses no answer (Close flushes the queue).
	Unanswered  int
	StreamsOut  int // streams this side opened that are still open
	StreamsIn   int // streams served for the peer
	QueuedBytes int // bytes waiting for the writer
	// OrphanedHandlers counts the handlers (single and stream) still
	// running after the session ended: their contexts are cancelled, and
	// their answers will be dropped. 0 while the session is open.
	OrphanedHandlers int
}

// Add returns the field-wise sum of st and o, as when totalling the stats
// of several sessions.
func (st Stats) Add(o Stats) Stats {
	return Stats{
		BytesIn: st.BytesIn + o.BytesIn, BytesOut: st.BytesOut + o.BytesOut,
		FramesIn: st.FramesIn + o.FramesIn, Writes: st.Writes + o.Writes,
		RequestsOut: st.RequestsOut + o.RequestsOut, Served: st.Served + o.Served,
		RemoteErrors: st.RemoteErrors + o.RemoteErrors, Cancelled: st.Cancelled + o.Cancelled,
		ServedInline: st.ServedInline + o.ServedInline, InlineHandoffs: st.InlineHandoffs + o.InlineHandoffs,
		PeerRead: st.PeerRead + o.PeerRead,
		InFlight: st.InFlight + o.InFlight, Running: st.Running + o.Running, Unanswered: st.Unanswered + o.Unanswered,
		StreamsOut: st.StreamsOut + o.StreamsOut, StreamsIn: st.StreamsIn + o.StreamsIn,
		QueuedBytes: st.QueuedBytes + o.QueuedBytes, OrphanedHandlers: st.OrphanedHandlers + o.OrphanedHandlers,
	}
}

// Counters returns st with every gauge zeroed: what a session that is gone
// adds to a running total.
func (st Stats) Counters() Stats {
	return Stats{
		BytesIn: st.BytesIn, BytesOut: st.BytesOut, FramesIn: st.FramesIn, Writes: st.Writes,
		RequestsOut: st.RequestsOut, Served: st.Served, RemoteErrors: st.RemoteErrors,
		Cancelled: st.Cancelled, ServedInline: st.ServedInline, InlineHandoffs: st.InlineHandoffs,
		PeerRead: st.PeerRead,
	}
}

// Stats returns a snapshot of the session's counters and gauges.
func (s *Session) Stats() Stats {
	// Each count is loaded before the one it never exceeds, so that the
	// differences are never negative: answered ≤ served ≤ dispatched,
	// and stream handlers returned ≤ started.
	answered := s.stats.answered.Load()
	served := s.stats.served.Load()
	streamsReturned := s.stats.streamsReturned.Load()
	dispatched := s.stats.dispatched.Load()
	unreturned := int(dispatched-served) + int(s.stats.streamsServed.Load()-streamsReturned)
	st := Stats{
		BytesIn: s.stats.bytesIn.Load(), BytesOut: s.stats.bytesOut.Load(),
		FramesIn: s.stats.framesIn.Load(), Writes: s.stats.writes.Load(),
		Served:       served,
		RemoteErrors: s.stats.remoteErrs.Load(), Cancelled: s.stats.cancelled.Load(),
		ServedInline: s.stats.inline.Load(), InlineHandoffs: s.stats.handoffs.Load(),
		PeerRead: s.stats.peerRead.Load(),
	}
	s.pendMu.Lock()
	st.InFlight, st.RequestsOut = len(s.pending), s.requestsOut
	s.pendMu.Unlock()
	select {
	case <-s.closing:
		// Nothing is alive but the handlers that have not returned.
		st.InFlight = 0
		st.OrphanedHandlers = unreturned
		return st
	default:
	}
	st.Running, st.Unanswered, st.QueuedBytes = len(s.hslots), int(dispatched-answered), s.q.queued()
	s.strMu.Lock()
	st.StreamsOut, st.StreamsIn = len(s.cstreams), len(s.sstreams)
	s.strMu.Unlock()
	return st
}
