package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/ops"
)

// statusMesh prints the whole mesh as the node at arg gathers it (its
// operations port's /mesh): a table of the nodes, the nodes × peers
// matrix, and each node's parts (the gateway's pipeline, the workers'),
// or with asJSON the mesh as served. It fails when a node is down; a node
// that is up without its stats (an older version) is no failure. It
// prints whatever the JSON holds, whatever its shape.
func statusMesh(ctx context.Context, f *statusFetcher, arg string, timeout time.Duration, asJSON bool, out io.Writer) error {
	u, err := meshURL(arg)
	if err != nil {
		return usageError{err}
	}
	body, err := f.fetch(ctx, u, timeout)
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	var ms grid.MeshStats
	if err := json.Unmarshal(body, &ms); err != nil || ms.From == "" {
		return fmt.Errorf("%s: %w (no \"from\"; is this an operations port?): %v", u, errNotStats, err)
	}
	if asJSON {
		var b bytes.Buffer
		_ = json.Indent(&b, body, "", "  ") // it parsed above
		fmt.Fprintf(out, "%s\n", bytes.TrimSpace(b.Bytes()))
	} else {
		var b bytes.Buffer
		printMesh(&b, ms)
		io.WriteString(out, terminalSafe(b.String()))
	}
	down := len(ms.Nodes) - countUp(ms)
	if down > 0 {
		return fmt.Errorf("%d of %d nodes down", down, len(ms.Nodes))
	}
	return nil
}

// terminalSafe replaces the control characters in s, but for newlines
// and tabs, and its invalid UTF-8 with U+FFFD: what nodes answer must not
// drive the terminal (an escape sequence in a node's error).
func terminalSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, s)
}

// meshURL turns a node URL into the URL of its mesh JSON.
func meshURL(arg string) (string, error) {
	u, err := url.Parse(arg)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("bad node URL %q: want http(s)://host:port[/path]", arg)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = ops.MeshPath
	}
	return u.String(), nil
}

// printMesh prints ms as text: the nodes, the matrix of their
// connections (state and round trip, then traffic and errors), and the
// parts each node added to its stats.
func printMesh(out io.Writer, ms grid.MeshStats) {
	labels := make(map[string]string, len(ms.Nodes))
	cols := meshColumns(ms)
	for i, h := range cols {
		labels[h] = fmt.Sprintf("[%d]", i)
	}
	fmt.Fprintf(out, "mesh seen from %s: %d nodes, %d up\n\n", ms.From, len(ms.Nodes), countUp(ms))
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tNODE\tROLE\tSTATE\tPEERS UP\tREQUESTS OUT\tSERVED\tIN FLIGHT\tSTREAMS\tANSWERED IN\tERROR")
	for _, n := range ms.Nodes {
		self := ""
		if n.Self {
			self = " (this node)"
		}
		state, peers, reqs, served, inFlight, streams := nodeState(n), "-", "-", "-", "-", "-"
		if n.Stats != nil {
			g := n.Stats.Grid
			peers = fmt.Sprintf("%d of %d", g.Connected, len(g.Peers))
			reqs, served, inFlight = fmt.Sprint(g.RequestsOut), fmt.Sprint(g.Served), fmt.Sprint(g.InFlight)
			streams = fmt.Sprint(g.StreamsOut + g.StreamsIn)
		}
		fmt.Fprintf(tw, "%s\t%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\n", labels[n.Host], n.Host, self, nodeRole(ms, n), state,
			peers, reqs, served, inFlight, streams, time.Duration(n.CallSeconds*float64(time.Second)).Round(time.Microsecond), nodeErrors(n))
	}
	tw.Flush()
	fmt.Fprintln(out, "\nconnections (row: the node; column: its peer): state and round trip")
	printMatrix(out, ms, cols, labels, func(p grid.ConnectionStats) string {
		if p.State != grid.StateConnected || p.LastRTT == 0 {
			return p.State.String()
		}
		return fmt.Sprintf("%s %v", p.State, p.LastRTT.Round(time.Microsecond))
	})
	fmt.Fprintln(out, "\nbytes in/out, reconnects, errors")
	printMatrix(out, ms, cols, labels, func(p grid.ConnectionStats) string {
		return fmt.Sprintf("%s/%s %d %d", sizeOf(p.BytesIn), sizeOf(p.BytesOut), p.Reconnects, p.RemoteErrors)
	})
	for _, n := range ms.Nodes {
		if n.Stats == nil || len(n.Stats.Sections) == 0 {
			continue
		}
		fmt.Fprintf(out, "\n%s %s\n", labels[n.Host], n.Host)
		printSections(out, n.Stats.Sections)
	}
}

// meshColumns returns the nodes' hosts, once each: the gathering node's
// membership. A peer that a node lists beyond it gets no column (the
// gathering node leaves such peers out; an answer that does not could
// otherwise make the matrix as wide as it likes).
func meshColumns(ms grid.MeshStats) []string {
	seen := make(map[string]bool, len(ms.Nodes))
	var hosts []string
	for _, n := range ms.Nodes {
		if !seen[n.Host] {
			seen[n.Host] = true
			hosts = append(hosts, n.Host)
		}
	}
	return hosts
}

// countUp counts the nodes that are up.
func countUp(ms grid.MeshStats) int {
	up := 0
	for _, n := range ms.Nodes {
		if n.Up {
			up++
		}
	}
	return up
}

// nodeState is a node's state as the table shows it: up, down, or up
// without its stats.
func nodeState(n grid.MeshNode) string {
	switch {
	case !n.Up:
		return "down"
	case n.Stats != nil:
		return "up"
	case n.OlderVersion:
		return "up, no stats (older version)"
	}
	return "up, no stats"
}

// printMatrix prints one row per node and one column per host, each cell
// cell(the node's connection to the host).
func printMatrix(out io.Writer, ms grid.MeshStats, cols []string, labels map[string]string, cell func(grid.ConnectionStats) string) {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprint(tw, "\t")
	for _, h := range cols {
		fmt.Fprintf(tw, "%s\t", labels[h])
	}
	fmt.Fprintln(tw)
	for _, n := range ms.Nodes {
		fmt.Fprintf(tw, "%s\t", labels[n.Host])
		for _, h := range cols {
			switch p, ok := peerOf(n, h); {
			case h == n.Host:
				fmt.Fprint(tw, "-\t")
			case n.Stats == nil:
				fmt.Fprint(tw, "?\t")
			case !ok:
				fmt.Fprint(tw, "not listed\t")
			default:
				fmt.Fprintf(tw, "%s\t", cell(p))
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func peerOf(n grid.MeshNode, host string) (grid.ConnectionStats, bool) {
	if n.Stats == nil {
		return grid.ConnectionStats{}, false
	}
	p, ok := n.Stats.Grid.Peers[host]
	return p, ok
}

// nodeRole names what a node runs, from its sections; a node that is
// down is a worker if a gateway's dispatch lists it.
func nodeRole(ms grid.MeshStats, n grid.MeshNode) string {
	if n.Stats == nil {
		for _, g := range ms.Nodes {
			var d gateway.DispatchStats
			if g.Stats == nil || json.Unmarshal(g.Stats.Sections["dispatch"], &d) != nil {
				continue
			}
			if slices.ContainsFunc(d.Workers, func(w gateway.WorkerStats) bool { return w.Host == n.Host }) {
				return "worker"
			}
		}
		return "-"
	}
	s := n.Stats.Sections
	switch {
	case s["gateway"] != nil || s["dispatch"] != nil:
		return "gateway"
	case s["worker"] != nil || s["processes"] != nil:
		return "worker"
	}
	return "node"
}

// nodeErrors is why a node is down or has no stats, and its sections'
// errors.
func nodeErrors(n grid.MeshNode) string {
	errs := []string{}
	for _, e := range []string{n.Error, n.StatsError} {
		if e != "" {
			errs = append(errs, e)
		}
	}
	if n.PeersLeftOut > 0 {
		errs = append(errs, fmt.Sprintf("%d peers not in this node's hosts left out", n.PeersLeftOut))
	}
	if n.Stats != nil {
		for _, name := range slices.Sorted(maps.Keys(n.Stats.SectionErrors)) {
			errs = append(errs, name+": "+n.Stats.SectionErrors[name])
		}
	}
	return strings.Join(errs, "; ")
}

// txLatency is the gateway's transaction latency in its stats, when it
// has one: from receipt to answer, in seconds.
type txLatency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
}

// printSections prints a node's sections as status prints its /stats.
func printSections(out io.Writer, sections map[string]json.RawMessage) {
	var ns nodeStatus
	b, _ := json.Marshal(sections) // raw JSON already checked: cannot fail
	_ = json.Unmarshal(b, &ns.nodeStats)
	printNodeStats(out, ns)
	var lat struct {
		TxLatency *txLatency `json:"tx_latency"`
	}
	if json.Unmarshal(sections["gateway"], &lat) == nil && lat.TxLatency != nil {
		l := lat.TxLatency
		fmt.Fprintf(out, "  transaction latency: p50 %v, p90 %v, p99 %v (%d transactions)\n",
			seconds(l.P50), seconds(l.P90), seconds(l.P99), l.Count)
	}
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond)
}

// sizeOf prints a byte count in B, kB, MB or GB.
func sizeOf(n uint64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, suffix := float64(n)/unit, "kB"
	for _, s := range []string{"MB", "GB", "TB"} {
		if f < unit {
			break
		}
		f, suffix = f/unit, s
	}
	return fmt.Sprintf("%.1f%s", f, suffix)
}
