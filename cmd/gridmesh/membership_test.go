package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/config"
	"github.com/gridmesh/gridmesh/internal/ops"
)

// meshRun is a gateway and up to five workers run as processes of this
// command, each worker listing only the gateway and itself, the gateway's
// membership changed while Prime sends transactions without pause.
type meshRun struct {
	t       *testing.T
	ctx     context.Context
	dir     string
	names   []string // the gateway's, then the workers'
	gwPath  string
	gwOps   string // host:port of the gateway's operations port
	gw      *child
	workers map[int]*child
	prime   primeServer
}

// primeServer is what a meshRun asks of Prime.
type primeServer = *primesim.Server

// newMeshRun lays out a run with workers named http://HOST:port, host
// "localhost" or "127.0.0.1" (a DNS answer's targets cannot be IPs).
func newMeshRun(t *testing.T, workers int, host string) *meshRun {
	prime, ctx := processTest(t)
	r := &meshRun{t: t, ctx: ctx, dir: t.TempDir(), workers: make(map[int]*child)}
	addrs := freeAddrs(t, workers+2)
	r.gwOps, addrs = addrs[workers+1], addrs[:workers+1]
	for i, a := range addrs {
		if i > 0 {
			a = strings.Replace(a, "127.0.0.1", host, 1)
		}
		r.names = append(r.names, "http://"+a)
	}
	r.gwPath = filepath.Join(r.dir, "gateway.yaml")
	r.prime = prime
	return r
}

// gatewayYAML is the gateway's file listing hosts, with the lines of grid
// (under "grid:", indented) added.
func (r *meshRun) gatewayYAML(hosts []string, grid string) string {
	return fmt.Sprintf("server_address: %s\nchain_id: c\nsmart_contract_id: sc\napi_key: k\njournal_path: %s\nops_listen: %s\ngrid:\n  local: %s\n  hosts: [%s]\n%s",
		r.prime.Addr(), filepath.Join(r.dir, "j.db"), r.gwOps, r.names[0], strings.Join(hosts, ", "), grid)
}

func (r *meshRun) writeGateway(body string) {
	r.t.Helper()
	tmp := r.gwPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.gwPath); err != nil { // the reader sees the old file or the new one
		r.t.Fatal(err)
	}
}

// startWorker starts worker i (from 1), listing the gateway and itself.
func (r *meshRun) startWorker(i int) {
	r.t.Helper()
	p := filepath.Join(r.dir, fmt.Sprintf("worker%d.yaml", i))
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(r.names[i], "http://"))
	body := fmt.Sprintf("command: [sh, -c, 'cat >/dev/null; echo \"{\\\"ok\\\":true}\"']\ncapacity: 4\ngrid:\n  local: %s\n  listen: 127.0.0.1:%s\n  hosts: [%s, %s]\n  secret: s\n",
		r.names[i], port, r.names[0], r.names[i])
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		r.t.Fatal(err)
	}
	r.workers[i] = startChild(r.t, r.ctx, "worker", "-config", p)
	r.workers[i].waitOutput(r.t, r.ctx, "worker: ready")
}

// stats waits until the gateway's stats satisfy cond, and returns them.
func (r *meshRun) stats(what string, cond func(gateway.NodeStats) bool) gateway.NodeStats {
	r.t.Helper()
	for {
		st, err := scrapeStats(r.ctx, r.gwOps)
		if err == nil && cond(st) {
			return st
		}
		select {
		case <-r.ctx.Done():
			r.t.Fatalf("%s: %+v %v\ngateway:\n%s", what, st.Dispatch, err, r.gw.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// workerOf returns the gateway's view of the worker named name, if any.
func workerOf(st gateway.NodeStats, name string) (gateway.WorkerStats, bool) {
	if st.Dispatch != nil {
		for _, w := range st.Dispatch.Workers {
			if w.Host == name {
				return w, true
			}
		}
	}
	return gateway.WorkerStats{}, false
}

// load submits a transaction to Prime every few milliseconds until stop
// is called, which returns how many it submitted.
func (r *meshRun) load() (stop func() int) {
	var n atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := 0; ; seq++ {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			tx, err := r.prime.NewTransaction("sc", seq, 0)
			if err == nil {
				_, err = r.prime.Submit("sc", tx)
			}
			if err != nil {
				r.t.Errorf("submit: %v", err)
				return
			}
			n.Add(1)
		}
	})
	return func() int {
		close(done)
		wg.Wait()
		return int(n.Load())
	}
}

// gridPeer reads the gateway's grid stats of the peer named name.
func (r *meshRun) gridPeer(name string) grid.ConnectionStats {
	r.t.Helper()
	body := get(r.t, r.ctx, "http://"+r.gwOps+ops.StatsPath)
	var st nodeStats
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Grid == nil {
		r.t.Fatalf("%v: %s", err, body)
	}
	return st.Grid.Peers[name]
}

// growShrink grows the gateway's membership from worker 1 to all, then
// shrinks it back, calling set(k) to make the first k workers members,
// and checks that Prime's report is OK, that each new worker got work
// soon, and that the gateway's connection to worker 1 never dropped.
func (r *meshRun) growShrink(set func(k int)) {
	t := r.t
	r.startWorker(1)
	r.gw = startChild(t, r.ctx, "gateway", "-config", r.gwPath)
	r.stats("worker 1 up", func(st gateway.NodeStats) bool { w, ok := workerOf(st, r.names[1]); return ok && w.Up })
	stop := r.load()
	var toFirst, toUp []time.Duration
	last := len(r.names) - 1
	for i := 2; i <= last; i++ {
		start := time.Now()
		r.startWorker(i)
		set(i)
		var up time.Duration
		r.stats(fmt.Sprintf("worker %d's first transaction", i), func(st gateway.NodeStats) bool {
			w, ok := workerOf(st, r.names[i])
			if ok && w.Up && up == 0 {
				up = time.Since(start)
			}
			return ok && w.Done > 0
		})
		toFirst = append(toFirst, time.Since(start).Round(time.Millisecond))
		toUp = append(toUp, up.Round(time.Millisecond))
	}
	for i := last; i >= 2; i-- {
		set(i - 1)
		r.stats(fmt.Sprintf("worker %d forgotten", i), func(st gateway.NodeStats) bool { _, ok := workerOf(st, r.names[i]); return !ok })
		r.workers[i].term(t, fmt.Sprintf("worker %d", i))
	}
	time.Sleep(200 * time.Millisecond)
	n := stop()
	rep, err := r.prime.WaitReport(r.ctx, n)
	if err != nil || !rep.OK() || rep.Submitted != n {
		t.Fatalf("want %d answered exactly once: %v\n%v", n, err, rep)
	}
	st := r.stats("final", func(gateway.NodeStats) bool { return true })
	peer := r.gridPeer(r.names[1])
	t.Logf("%d transactions: %v", n, rep)
	t.Logf("worker start → up at the gateway: %v; → its first transaction: %v (the membership change included)", toUp, toFirst)
	t.Logf("gateway ↔ worker 1 (stayed): connects %d, re-dispatched %d, may have run twice %d", peer.Connects, st.Dispatch.Redispatched, st.Dispatch.Rerun)
	if peer.Connects != 1 || st.Dispatch.Rerun != 0 {
		t.Errorf("the worker that stayed reconnected (%d connects) or transactions may have run twice (%d)", peer.Connects, st.Dispatch.Rerun)
	}
	r.gw.term(t, "gateway")
	r.workers[1].term(t, "worker 1")
}

// TestProcessMembershipReload: the gateway's membership grows from 1 to 5
// workers and back through its configuration file, re-read on SIGHUP and
// when it changes on disk, under continuous load; a bad file is refused
// with a log line naming the field, the membership kept.
func TestProcessMembershipReload(t *testing.T) {
	r := newMeshRun(t, 5, "127.0.0.1")
	const secret = "  secret: s\n"
	r.writeGateway(r.gatewayYAML(r.names[:2], secret))
	step := 0
	r.growShrink(func(k int) {
		r.writeGateway(r.gatewayYAML(r.names[:k+1], secret))
		if step++; step%2 == 0 { // every other change is noticed on disk alone
			if err := r.gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		if k == len(r.names)-1 { // a bad file: refused, membership kept
			r.writeGateway(r.gatewayYAML(r.names[:2], "")) // no secret
			if err := r.gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			r.gw.waitOutput(t, r.ctx, "grid.secret is required")
			if !strings.Contains(r.gw.stderr.String(), "reload refused") {
				t.Fatalf("no refusal logged:\n%s", r.gw.stderr.String())
			}
			r.writeGateway(r.gatewayYAML(r.names[:k+1], secret))
			if err := r.gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestProcessMembershipDNS: the same growth and shrink through DNS
// discovery, against a DNS server this test runs on loopback, whose SRV
// answer lists the member workers; a failed lookup keeps the membership.
func TestProcessMembershipDNS(t *testing.T) {
	r := newMeshRun(t, 5, "localhost")
	srv := startDNS(t)
	r.writeGateway(r.gatewayYAML(r.names[:1], fmt.Sprintf("  secret: s\n  discover: {dns: workers.test., scheme: http, interval: 100ms, server: %q}\n", srv.addr)))
	srv.set(r.names[1:2])
	r.growShrink(func(k int) {
		if k == len(r.names)-1 {
			srv.fail(true) // lookups fail: the membership stays
			r.gw.waitOutput(t, r.ctx, "discovery failed")
			time.Sleep(300 * time.Millisecond)
			r.stats("workers kept", func(st gateway.NodeStats) bool { return len(st.Dispatch.Workers) == k-1 })
			srv.fail(false)
		}
		srv.set(r.names[1 : k+1])
	})
}

// dnsServer answers SRV queries for workers.test. with the hosts set.
type dnsServer struct {
	addr    string
	mu      sync.Mutex
	hosts   []string // http://IP:port
	failing bool
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{addr: pc.LocalAddr().String()}
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.ActivateAndServe()
	}()
	t.Cleanup(func() {
		_ = s.Shutdown()
		<-done
	})
	return d
}

func (d *dnsServer) set(hosts []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hosts = hosts
}

func (d *dnsServer) fail(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failing = on
}

func (d *dnsServer) serve(w dns.ResponseWriter, q *dns.Msg) {
	d.mu.Lock()
	hosts, failing := d.hosts, d.failing
	d.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(q)
	if failing {
		m.Rcode = dns.RcodeServerFailure
		_ = w.WriteMsg(m)
		return
	}
	for _, h := range hosts {
		hp := strings.TrimPrefix(h, "http://")
		host, port, _ := net.SplitHostPort(hp)
		p, _ := strconv.Atoi(port)
		m.Answer = append(m.Answer, &dns.SRV{
			Hdr:    dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 0},
			Target: host + ".", Port: uint16(p), Priority: 0, Weight: 1,
		})
	}
	_ = w.WriteMsg(m)
}

// TestReloadRefusesNodeChanges: a new file may change grid.hosts and
// grid.discover, not what only a restart applies.
func TestReloadRefusesNodeChanges(t *testing.T) {
	old := config.Grid{Local: "http://a:1", Hosts: []string{"http://a:1"}, Secret: "s"}
	for field, g := range map[string]config.Grid{
		"grid.local":  {Local: "http://b:1", Hosts: old.Hosts, Secret: "s"},
		"grid.secret": {Local: old.Local, Hosts: old.Hosts, Secret: "t"},
		"grid.listen": {Local: old.Local, Hosts: old.Hosts, Secret: "s", Listen: ":9"},
	} {
		if err := sameNode(old, g); !errors.Is(err, config.ErrConfig) || !strings.Contains(err.Error(), field) {
			t.Errorf("changing %s: %v, want ErrConfig naming it", field, err)
		}
	}
	g := old
	g.Hosts = []string{"http://a:1", "http://b:1"}
	g.Discover = &config.Discover{DNS: "x"}
	if err := sameNode(old, g); err != nil {
		t.Errorf("changing hosts and discovery: %v", err)
	}
}
