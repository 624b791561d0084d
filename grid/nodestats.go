package grid

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
)

// HandlerStats is the grid's built-in stats handler, which every Manager
// registers in its Registry: a single request whose (empty) payload is
// ignored and whose answer is the node's NodeStats as JSON. The ID, 4095,
// is reserved: a Registry given to NewManager must not hold it (so a
// Registry serves one Manager), and since handler names are per process,
// a program that imports grid must not name 4095 otherwise with
// handlers.New, which panics at start-up if it does (see the package
// doc, Stats of the whole mesh).
var HandlerStats = handlers.New(uint16(handlers.MaxHandlerID), "grid-stats")

// Bounds of the stats handler's answer.
const (
	// MaxStatsSections bounds the sections a Manager holds.
	MaxStatsSections = 8
	// MaxStatsSectionBytes bounds one section's JSON; a larger one is
	// left out of the answer with an error in its place.
	MaxStatsSectionBytes = 64 << 10
	// maxStatsAnswer bounds the whole answer: the grid's part is about
	// 600 bytes a peer, the sections at most 8 × 64 KiB. Over it (about a
	// thousand peers), the sections are left out.
	maxStatsAnswer = 1 << 20
	// maxSectionName bounds a section's name.
	maxSectionName = 32
	// maxStatsError bounds an error string in the answer.
	maxStatsError = 256
)

// NodeStats is one node's stats as its stats handler (HandlerStats)
// answers them: the grid's and the sections the application added
// (Manager.SetStatsSection).
type NodeStats struct {
	Host     string    `json:"host"`
	Instance string    `json:"instance"` // the process's instance ID: it changes when the node restarts
	Time     time.Time `json:"time"`     // the node's clock when the stats were taken
	// PingTimeoutSeconds is the node's Options.PingTimeout, which bounds
	// how long a gatherer waits for it (Manager.MeshStats).
	PingTimeoutSeconds float64      `json:"ping_timeout_seconds"`
	Grid               ManagerStats `json:"grid"`
	// Sections holds each section's value as JSON, by name; a section
	// that failed, was too slow or too large is absent here and its
	// error is in SectionErrors.
	Sections      map[string]json.RawMessage `json:"sections,omitempty"`
	SectionErrors map[string]string          `json:"section_errors,omitempty"`
}

// statsSections holds a Manager's stats sections.
type statsSections struct {
	mu     sync.Mutex
	byName map[string]*statsSection
}

// statsSection is one section: its function, and the run in flight.
type statsSection struct {
	fn  func(context.Context) any
	mu  sync.Mutex
	run *sectionRun // nil when none runs
}

// sectionRun is one call of a section's function, which every gatherer
// arriving while it runs shares: a slow section runs once at a time,
// however often it is asked for.
type sectionRun struct {
	done chan struct{} // closed when val and err are set
	val  json.RawMessage
	err  error
}

// SetStatsSection adds a section named name to this node's stats (what
// HandlerStats answers, and so every node's Manager.MeshStats): fn returns
// a value that encodes as JSON, e.g. a struct of counters. A nil fn
// removes the section; a name set again is replaced. Names are 1 to 32
// characters of a-z, 0-9, '_' and '-'; a Manager holds at most
// MaxStatsSections.
//
// fn runs on a goroutine of the Manager's, at most one call at a time,
// with a context that ends after half of Options.PingTimeout (and when
// the Manager closes). Whoever asks for the stats waits for it that long
// at most: a section still running is then reported as an error, and the
// rest of the stats are answered without it. A value whose JSON exceeds
// MaxStatsSectionBytes, a panic or an encoding error are reported the
// same way. Like a handler, fn must honour its context: Close waits for
// it.
func (m *Manager) SetStatsSection(name string, fn func(ctx context.Context) any) error {
	if err := checkSectionName(name); err != nil {
		return err
	}
	s := &m.sections
	s.mu.Lock()
	defer s.mu.Unlock()
	if fn == nil {
		delete(s.byName, name)
		return nil
	}
	if _, ok := s.byName[name]; !ok && len(s.byName) >= MaxStatsSections {
		return fmt.Errorf("grid: stats section %q: already %d sections (MaxStatsSections)", name, MaxStatsSections)
	}
	if s.byName == nil {
		s.byName = make(map[string]*statsSection)
	}
	s.byName[name] = &statsSection{fn: fn}
	return nil
}

func checkSectionName(name string) error {
	if name == "" || len(name) > maxSectionName {
		return fmt.Errorf("grid: stats section name %q: want 1 to %d characters", name, maxSectionName)
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' && r != '-' {
			return fmt.Errorf("grid: stats section name %q: only a-z, 0-9, '_' and '-'", name)
		}
	}
	return nil
}

// sectionTimeout is how long a stats answer waits for its sections.
func (m *Manager) sectionTimeout() time.Duration { return m.opts.PingTimeout / 2 }

// NodeStats returns this node's stats, as its stats handler answers them
// to a peer: its grid stats and its sections, each section waited for at
// most half of Options.PingTimeout, or until ctx ends.
func (m *Manager) NodeStats(ctx context.Context) NodeStats {
	st := NodeStats{
		Host: m.opts.Local, Instance: m.instance, Time: time.Now(),
		PingTimeoutSeconds: m.opts.PingTimeout.Seconds(), Grid: m.Stats(),
	}
	for h, p := range st.Grid.Peers {
		p.LastError = clip(p.LastError, maxStatsError)
		st.Grid.Peers[h] = p
	}
	m.sections.mu.Lock()
	sections := maps.Clone(m.sections.byName)
	m.sections.mu.Unlock()
	if len(sections) == 0 {
		return st
	}
	d := m.sectionTimeout()
	ctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("no answer within %v", d))
	defer cancel()
	runs := make(map[string]*sectionRun, len(sections))
	for name, s := range sections {
		runs[name] = s.start(m)
	}
	for _, name := range slices.Sorted(maps.Keys(runs)) {
		val, err := runs[name].wait(ctx)
		if err != nil {
			if st.SectionErrors == nil {
				st.SectionErrors = make(map[string]string)
			}
			st.SectionErrors[name] = clip(err.Error(), maxStatsError)
			continue
		}
		if st.Sections == nil {
			st.Sections = make(map[string]json.RawMessage)
		}
		st.Sections[name] = val
	}
	return st
}

// start returns the run in flight, or starts one; nil once the Manager
// is closed.
func (s *statsSection) start(m *Manager) *sectionRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run != nil {
		return s.run
	}
	if !m.enter() {
		return nil
	}
	r := &sectionRun{done: make(chan struct{})}
	s.run = r
	go m.runSection(s, r)
	return r
}

// runSection calls s's function for r, on a goroutine the Manager waits
// for.
func (m *Manager) runSection(s *statsSection, r *sectionRun) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(m.ctx, m.sectionTimeout())
	defer cancel()
	r.val, r.err = callSection(ctx, s.fn)
	s.mu.Lock()
	s.run = nil
	s.mu.Unlock()
	close(r.done)
}

// callSection calls fn and encodes its value, within the bounds.
func callSection(ctx context.Context, fn func(context.Context) any) (val json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			val, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	b, err := json.Marshal(fn(ctx))
	switch {
	case err != nil:
		return nil, err
	case len(b) > MaxStatsSectionBytes:
		return nil, fmt.Errorf("%d bytes of JSON, over MaxStatsSectionBytes (%d)", len(b), MaxStatsSectionBytes)
	}
	return b, nil
}

// wait waits for the run's value until ctx ends.
func (r *sectionRun) wait(ctx context.Context) (json.RawMessage, error) {
	if r == nil {
		return nil, ErrClosed
	}
	select {
	case <-r.done:
		return r.val, r.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// serveStats is the stats handler: this node's NodeStats as JSON, within
// maxStatsAnswer.
func (m *Manager) serveStats(ctx context.Context, _ []byte) ([]byte, error) {
	st := m.NodeStats(ctx)
	b, err := json.Marshal(st)
	if err != nil || len(b) <= maxStatsAnswer {
		return b, err
	}
	for name := range st.Sections {
		if st.SectionErrors == nil {
			st.SectionErrors = make(map[string]string)
		}
		st.SectionErrors[name] = "left out: the node's stats are over 1 MiB"
	}
	st.Sections = nil
	if b, err = json.Marshal(st); err == nil && len(b) > maxStatsAnswer {
		err = fmt.Errorf("grid: stats of %d peers are over 1 MiB", len(st.Grid.Peers))
	}
	return b, err
}

// registerStats registers the stats handler in the Manager's registry.
func (m *Manager) registerStats() error {
	if err := m.reg.RegisterSingle(HandlerStats, m.serveStats); err != nil {
		return optionError("Registry", "handler %v is the grid's own (a Registry serves one Manager): %v", HandlerStats, err)
	}
	return nil
}
