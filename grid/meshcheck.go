package grid

import (
	"encoding/json"
	"fmt"
	"slices"
)

// What a gatherer (Manager.MeshStats) accepts of a peer's answer. The
// answering node bounds its own answer (serveStats), but the peer may run
// another version, or be buggy or hostile past the handshake, and the mux
// carries up to its MaxResponseBytes (16 MiB by default): the gatherer
// checks the same bounds again, so that a node's row in MeshStats holds
// at most about 1 MiB and the mesh's matrix as many columns as the
// gatherer has hosts.
const (
	// maxStatsAnswerIn bounds a peer's answer: maxStatsAnswer, which a
	// node of this version keeps to, with slack for another version's.
	maxStatsAnswerIn = maxStatsAnswer + 64<<10
	// maxStatsName bounds the names a peer sends: its instance ID, its
	// local name, its peers' instance IDs.
	maxStatsName = 128
)

// decodePeerStats decodes the answer b of host's stats handler and
// bounds it: only the peers in members are kept (how many others the
// peer listed is returned), sections over MaxStatsSectionBytes become
// errors, at most MaxStatsSections named ones are kept, and every text is
// clipped.
func decodePeerStats(host string, b []byte, members map[string]bool) (*NodeStats, int, error) {
	if len(b) > maxStatsAnswerIn {
		return nil, 0, fmt.Errorf("grid: stats of %s refused: %d bytes, over the bound of 1 MiB", host, len(b))
	}
	var st NodeStats
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, 0, fmt.Errorf("grid: stats of %s: %w", host, err)
	}
	if st.Host != host {
		return nil, 0, fmt.Errorf("grid: stats of %s name another node, %q", host, clip(st.Host, maxStatsName))
	}
	st.Instance = clip(st.Instance, maxStatsName)
	st.Grid.Local = clip(st.Grid.Local, maxStatsName)
	leftOut := keepMembers(&st.Grid, host, members)
	boundSections(&st)
	return &st, leftOut, nil
}

// keepMembers keeps in g.Peers only the hosts in members (host itself
// aside), their texts clipped, and returns how many it left out.
func keepMembers(g *ManagerStats, host string, members map[string]bool) int {
	peers := make(map[string]ConnectionStats, min(len(g.Peers), len(members)))
	for h, p := range g.Peers {
		if h == host || !members[h] {
			continue
		}
		p.Host = h
		p.PeerInstance = clip(p.PeerInstance, maxStatsName)
		p.LastError = clip(p.LastError, maxStatsError)
		peers[h] = p
	}
	leftOut := len(g.Peers) - len(peers)
	g.Peers = peers
	return leftOut
}

// boundSections keeps the first MaxStatsSections well-named sections of
// st (by name, whether a value or an error), turns a value over
// MaxStatsSectionBytes into an error, and clips the errors.
func boundSections(st *NodeStats) {
	names := make([]string, 0, len(st.Sections)+len(st.SectionErrors))
	for name := range st.Sections {
		names = append(names, name)
	}
	for name := range st.SectionErrors {
		if _, ok := st.Sections[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	sections, errs := map[string]json.RawMessage{}, map[string]string{}
	for _, name := range names {
		if checkSectionName(name) != nil {
			continue
		}
		if len(sections)+len(errs) == MaxStatsSections {
			break
		}
		v, ok := st.Sections[name]
		switch {
		case !ok:
			errs[name] = clip(st.SectionErrors[name], maxStatsError)
		case len(v) > MaxStatsSectionBytes:
			errs[name] = fmt.Sprintf("refused: %d bytes of JSON, over MaxStatsSectionBytes (%d)", len(v), MaxStatsSectionBytes)
		default:
			sections[name] = v
		}
	}
	st.Sections, st.SectionErrors = nil, nil
	if len(sections) > 0 {
		st.Sections = sections
	}
	if len(errs) > 0 {
		st.SectionErrors = errs
	}
}
