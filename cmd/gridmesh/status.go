package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/grid"
)

// runStatus fetches the stats of one or more running nodes (served by
// grid.Manager.StatsHandler, and by gateway.Metrics.StatsHandler on a
// gateway or worker node) and prints one table per node, or with -json
// one nodeStatus object per node.
func runStatus(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("status", out)
	asJSON := fs.Bool("json", false, "print one JSON object per node instead of a table: url, error, grid, gateway, dispatch, worker, processes")
	timeout := fs.Duration("timeout", 5*time.Second, "time allowed for each node to answer")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: gridmesh status [flags] NODE-URL...\n\n"+
			"NODE-URL is a node's stats URL, or its base URL (then %s is appended).\n\n", grid.DefaultStatsPath)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("no node URL given")
	}
	failed := 0
	for _, arg := range fs.Args() {
		u, err := statsURL(arg)
		if err != nil {
			return err
		}
		st, err := fetchNodeStatus(ctx, u, *timeout)
		switch {
		case errors.Is(err, errNotGridStats):
			return err
		case err != nil:
			failed++
		}
		if *asJSON {
			b, _ := json.MarshalIndent(st, "", "  ") // plain data: cannot fail
			fmt.Fprintf(out, "%s\n", b)
			continue
		}
		if err != nil {
			fmt.Fprintf(out, "%s: %v\n", u, err)
			continue
		}
		printStats(out, *st.Grid)
		printNodeStats(out, st)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d nodes did not answer", failed, fs.NArg())
	}
	return nil
}

// nodeStatus is what `gridmesh status -json` prints for each node: one
// JSON object with everything the table shows. Its fields:
//
//   - "url": the grid stats URL asked;
//   - "error": why the node did not answer; the fields below are then absent;
//   - "grid": the node's grid.ManagerStats (connections, per peer under "Peers");
//   - "gateway", "dispatch": a gateway node's parts, as gateway.NodeStats
//     names them (gateway.Stats, gateway.DispatchStats);
//   - "worker", "processes": a worker node's, as worker.NodeStats names
//     them (worker.Status, worker.ProcessStats);
//
// each absent when the node has no such part (a plain grid node has none).
type nodeStatus struct {
	URL   string             `json:"url"`
	Error string             `json:"error,omitempty"`
	Grid  *grid.ManagerStats `json:"grid,omitempty"`

	Gateway   *gateway.Stats         `json:"gateway,omitempty"`
	Dispatch  *gateway.DispatchStats `json:"dispatch,omitempty"`
	Worker    *worker.Status         `json:"worker,omitempty"`
	Processes *worker.ProcessStats   `json:"processes,omitempty"`
}

// errNotGridStats: a URL answered with something other than grid stats.
var errNotGridStats = errors.New("not grid stats")

// fetchNodeStatus reads the grid stats at u and, when the node serves
// them, its gateway parts' counters. An error other than errNotGridStats
// is also recorded in the result's Error.
func fetchNodeStatus(ctx context.Context, u string, timeout time.Duration) (nodeStatus, error) {
	st := nodeStatus{URL: u}
	body, err := fetchStats(ctx, u, timeout)
	if err != nil {
		st.Error = err.Error()
		return st, err
	}
	st.Grid = new(grid.ManagerStats)
	if err := json.Unmarshal(body, st.Grid); err != nil {
		return st, fmt.Errorf("%s: %w: %w", u, errNotGridStats, err)
	}
	// A gateway or worker node also serves its own counters; a plain
	// grid node answers 404 there, and is shown without them.
	var gs gateway.NodeStats
	fetchPart(ctx, sibling(u, gateway.StatsPath), timeout, &gs)
	st.Gateway, st.Dispatch = gs.Gateway, gs.Dispatch
	var ws worker.NodeStats
	fetchPart(ctx, sibling(u, worker.StatsPath), timeout, &ws)
	st.Worker, st.Processes = ws.Worker, ws.Processes
	return st, nil
}

// fetchPart decodes the JSON at u into v, if the node serves it.
func fetchPart(ctx context.Context, u string, timeout time.Duration, v any) {
	if body, err := fetchStats(ctx, u, timeout); err == nil {
		_ = json.Unmarshal(body, v)
	}
}

// statsURL turns a node URL into the URL of its stats.
func statsURL(arg string) (string, error) {
	u, err := url.Parse(arg)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("bad node URL %q: want http(s)://host:port[/path]", arg)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = grid.DefaultStatsPath
	}
	return u.String(), nil
}

// sibling returns the URL u with its path replaced by path.
func sibling(u, path string) string {
	p, _ := url.Parse(u) // built by statsURL
	p.Path = path
	return p.String()
}

// maxStatsBody bounds what status reads from a node.
const maxStatsBody = 8 << 20

func fetchStats(ctx context.Context, u string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatsBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func printStats(out io.Writer, st grid.ManagerStats) {
	fmt.Fprintf(out, "%s: %d of %d peers connected, %d reconnects, %d requests out, %d served, %d in flight, %d streams\n",
		st.Local, st.Connected, len(st.Peers), st.Reconnects, st.RequestsOut, st.Served, st.InFlight, st.StreamsOut+st.StreamsIn)
	if st.OrphanedHandlers > 0 {
		fmt.Fprintf(out, "%s: %d handlers still running for lost sessions (they ignore their context)\n", st.Local, st.OrphanedHandlers)
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSTATE\tDIALS\tCONNECTS\tRTT\tBYTES IN\tBYTES OUT\tIN FLIGHT\tSTREAMS\tQUEUED\tLAST ERROR")
	hosts := make([]string, 0, len(st.Peers))
	for h := range st.Peers {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		p := st.Peers[h]
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%v\t%d\t%d\t%d\t%d\t%d\t%s\n",
			h, p.State, p.Dials, p.Connects, p.LastRTT.Round(time.Microsecond), p.BytesIn, p.BytesOut,
			p.InFlight, p.StreamsOut+p.StreamsIn, p.QueuedBytes, p.LastError)
	}
	tw.Flush()
}

func printNodeStats(out io.Writer, ns nodeStatus) {
	if g := ns.Gateway; g != nil {
		fmt.Fprintf(out, "gateway: prime connected %v, received %d, ran %d, from journal %d, duplicates %d, sent %d, send errors %d, failed %d (%d too large), in flight %d, throttled %d, streams %d\n",
			g.Connected, g.Received, g.Started, g.FromJournal, g.Duplicates, g.Sent, g.SendErrors, g.Failed, g.TooLarge, g.InFlight, g.Throttled, g.Streams)
		fmt.Fprintf(out, "  contract errors %d, contract timeouts %d\n", g.ContractErrors, g.ContractTimeouts)
		fmt.Fprintf(out, "journal: %d written, %d write errors, %d sent marks pending, %d dropped\n",
			g.Journaled, g.JournalErrors, g.MarksPending, g.MarksDropped)
	}
	if d := ns.Dispatch; d != nil {
		fmt.Fprintf(out, "dispatch: redispatched %d, may have run twice %d, routed to the worker that ran them %d, answered from workers' records %d\n",
			d.Redispatched, d.Rerun, d.RoutedHome, d.FromRecord)
		for _, w := range d.Workers {
			fmt.Fprintf(out, "  worker %s: up %v, running %d of %d, done %d%s\n", w.Host, w.Up, w.Running, w.Capacity, w.Done, ifTrue(w.Draining, ", draining"))
		}
	}
	if w := ns.Worker; w != nil {
		fmt.Fprintf(out, "worker: running %d of %d, done %d, refused %d%s\n", w.Running, w.Capacity, w.Done, w.Refused, ifTrue(w.Draining, ", draining"))
		fmt.Fprintf(out, "  contract errors %d, timeouts %d; answered from its record %d; remembers %d runs (%d bytes)\n",
			w.ContractErrors, w.ContractTimeouts, w.FromRecord, w.Recorded, w.RecordedBytes)
	}
	if p := ns.Processes; p != nil {
		fmt.Fprintf(out, "contract processes: %d of %d up, %d in flight, %d starts, %d ended, %d wedged, %d protocol errors, %d cancelled\n",
			p.Running, p.Processes, p.InFlight, p.Starts, p.Ended, p.Wedged, p.ProtocolErrs, p.Cancelled)
	}
}

// ifTrue returns s if b, else "".
func ifTrue(b bool, s string) string {
	if b {
		return s
	}
	return ""
}
