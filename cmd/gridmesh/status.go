package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/tlsfiles"
)

// runStatus fetches the stats of one or more running nodes from their
// operations ports (/stats, served by ops_listen) and prints one table
// per node, or with -json one nodeStatus object per node; with -mesh, the
// whole mesh as one node gathers it (statusMesh).
func runStatus(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("status", out)
	asJSON := fs.Bool("json", false, "print one JSON object per node instead of a table: url, error, grid, gateway, dispatch, worker, processes (with -mesh: the mesh as the node serves it)")
	mesh := fs.Bool("mesh", false, "show the whole mesh as the one node given gathers it over the grid (its "+ops.MeshPath+"): every node, the matrix of their connections, the gateway's pipeline")
	timeout := fs.Duration("timeout", 5*time.Second, "time allowed for each node to answer")
	cacert := fs.String("cacert", "", "CA bundle (PEM file) to verify https:// operations ports against (default: the system roots)")
	tokenFile := fs.String("token-file", "", "file holding the operations ports' bearer token (their ops_token_file)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: gridmesh status [flags] OPS-URL...\n"+
			"       gridmesh status -mesh [flags] OPS-URL\n\n"+
			"OPS-URL is a node's operations port (its ops_listen), http(s)://host:port;\n"+
			"%s (with -mesh, %s) is read from it unless the URL has a path.\n\n", ops.StatsPath, ops.MeshPath)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("no node URL given")
	}
	client, err := statusClient(*cacert, *tokenFile)
	if err != nil {
		return err
	}
	defer client.http.CloseIdleConnections()
	if *mesh {
		if fs.NArg() != 1 {
			return usagef("-mesh takes one node URL, %d given", fs.NArg())
		}
		return statusMesh(ctx, client, fs.Arg(0), *timeout, *asJSON, out)
	}
	failed := 0
	for _, arg := range fs.Args() {
		u, err := statsURL(arg)
		if err != nil {
			return usageError{err}
		}
		st, err := client.fetchNodeStatus(ctx, u, *timeout)
		switch {
		case errors.Is(err, errNotStats):
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
//   - "url": the stats URL asked;
//   - "error": why the node did not answer; the fields below are then absent;
//   - "grid", "gateway", "dispatch", "worker", "processes": the node's
//     /stats, a nodeStats.
type nodeStatus struct {
	URL   string `json:"url"`
	Error string `json:"error,omitempty"`
	nodeStats
}

// errNotStats: a URL answered with something other than a node's stats.
var errNotStats = errors.New("not a gridmesh node's stats")

// statusFetcher reads nodes' stats over HTTP(S), with the bearer token
// when there is one.
type statusFetcher struct {
	http  *http.Client
	token string
}

// statusClient returns a fetcher trusting cacert (if set) and sending the
// token in tokenFile (if set).
func statusClient(cacert, tokenFile string) (*statusFetcher, error) {
	f := &statusFetcher{http: &http.Client{}}
	if cacert != "" {
		r, err := tlsfiles.Load(tlsfiles.Files{CA: cacert}, tlsfiles.Options{})
		if err != nil {
			return nil, fmt.Errorf("-cacert: %w", err)
		}
		f.http.Transport = &http.Transport{TLSClientConfig: r.ClientConfig()}
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("-token-file: %w", err)
		}
		f.token = strings.TrimRight(string(b), "\r\n")
	}
	return f, nil
}

// fetchNodeStatus reads the stats at u. An error other than errNotStats
// is also recorded in the result's Error.
func (f *statusFetcher) fetchNodeStatus(ctx context.Context, u string, timeout time.Duration) (nodeStatus, error) {
	st := nodeStatus{URL: u}
	body, err := f.fetch(ctx, u, timeout)
	if err != nil {
		st.Error = err.Error()
		return st, err
	}
	if err := json.Unmarshal(body, &st.nodeStats); err != nil || st.Grid == nil {
		return st, fmt.Errorf("%s: %w (no \"grid\" object; is this an operations port?): %v", u, errNotStats, err)
	}
	return st, nil
}

// statsURL turns a node URL into the URL of its stats.
func statsURL(arg string) (string, error) {
	u, err := url.Parse(arg)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("bad node URL %q: want http(s)://host:port[/path]", arg)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = ops.StatsPath
	}
	return u.String(), nil
}

// maxStatsBody bounds what status reads from a node.
const maxStatsBody = 8 << 20

func (f *statusFetcher) fetch(ctx context.Context, u string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatsBody))
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && f.token == "":
		return nil, fmt.Errorf("HTTP 401: the operations port wants its token (-token-file)")
	case resp.StatusCode != http.StatusOK:
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
		fmt.Fprintf(out, "dispatch: redispatched %d, may have run twice %d, routed to the worker that ran them %d, answered from workers' records %d, lost workers not back in time %d\n",
			d.Redispatched, d.Rerun, d.RoutedHome, d.FromRecord, d.HomeGone)
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
