package primesim

import (
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Serve accepts connections on lis until Close. It returns nil after Close.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = lis.Close()
		return ErrClosed
	}
	s.addr = lis.Addr()
	g := s.grpc
	s.mu.Unlock()
	return g.Serve(lis)
}

// Start listens on the TCP address addr (e.g. "127.0.0.1:0") and serves in
// the background until Close. Addr reports the bound address once Start
// returns.
func (s *Server) Start(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("primesim: listen %s: %w", addr, err)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = lis.Close()
		return ErrClosed
	}
	s.addr = lis.Addr()
	g := s.grpc
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		if err := g.Serve(lis); err != nil {
			s.log.Error("primesim: serve failed", "err", err)
		}
	}()
	return nil
}

// Addr returns the listening address, or nil before Serve or Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close ends every stream with status Unavailable, stops the gRPC server
// (gracefully, forcibly after a few seconds), writes the state file, if
// any, a last time, every answer included, closes it, and waits for all
// goroutines the server started. The books stay readable through Report.
// Close is idempotent and always returns nil.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		live := s.liveLocked()
		g := s.grpc
		s.mu.Unlock()
		for _, ss := range live {
			ss.end(status.Error(codes.Unavailable, "primesim shutting down"))
		}
		stopGRPC(g)
		s.wg.Wait()
		if s.state != nil {
			close(s.state.quit)
			<-s.state.done
		}
	})
	return nil
}

// Pause stops serving as a restarting Prime would: every stream ends with
// status Unavailable, the listener and connections close, and the books
// and backlogs stay. Transactions submitted while paused wait in the
// backlog; Start (on the same address or another) serves again, and a
// client that attaches then gets every unanswered transaction, oldest
// first. Pause after Close does nothing.
func (s *Server) Pause() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	live := s.liveLocked()
	old := s.grpc
	s.grpc = s.newGRPC()
	s.mu.Unlock()
	for _, ss := range live {
		ss.end(status.Error(codes.Unavailable, "primesim restarting"))
	}
	stopGRPC(old)
}

// liveLocked returns the live sessions; s.mu is held.
func (s *Server) liveLocked() []*session {
	var live []*session
	for _, c := range s.contracts {
		if c.session != nil {
			live = append(live, c.session)
		}
	}
	return live
}

// stopGRPC stops g gracefully, forcibly after gracefulStopTimeout.
func stopGRPC(g *grpc.Server) {
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(gracefulStopTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		g.Stop()
		<-stopped
	}
}

// Stop is an alias for Close.
func (s *Server) Stop() { _ = s.Close() }
