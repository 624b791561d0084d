package grid

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// MarshalText renders a State as its name, so that stats encode as
// "connected" rather than a number.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a State's name, as MarshalText writes it.
func (s *State) UnmarshalText(b []byte) error {
	for _, st := range []State{StateConnecting, StateConnected, StateClosed, StateRemoved} {
		if st.String() == string(b) {
			*s = st
			return nil
		}
	}
	return fmt.Errorf("grid: unknown state %q", b)
}

// StatsHandler returns an http.Handler that answers GET with the
// Manager's Stats as JSON (a ManagerStats). Mount it where operators can
// reach it, e.g. at DefaultStatsPath (the gridmesh command serves it
// within its operations port's /stats, which `gridmesh status` reads). It
// takes no locks beyond those of Stats and is safe to poll.
func (m *Manager) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(m.Stats())
	})
}

// DefaultStatsPath is a path to mount StatsHandler at beside the grid
// route, for a library user. The gridmesh command serves the grid's stats
// on its operations port instead, within /stats.
const DefaultStatsPath = "/gridmesh/stats"
