package grid

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// halfOpenTries, when set, makes TestHalfOpenNetnsMeasure run that many
// half-open trials at the default and at 1 s settings and log the medians:
//
//	go test -run TestHalfOpenNetnsMeasure -v ./grid -args -halfopen.tries=10
var halfOpenTries = flag.Int("halfopen.tries", 0, "half-open trials per setting for TestHalfOpenNetnsMeasure (0 skips it)")

// netns is a network namespace made for one test, with its loopback up.
// Sockets are created inside it by goroutines that enter it (setns on a
// locked thread), so both grid nodes live in this process while their
// traffic crosses the namespace's own netfilter hooks, which the test
// programs with iptables without touching the host's.
type netns struct {
	name string
	fd   int
}

var netnsSeq atomic.Int32

// newNetns creates a namespace, or skips the test with a visible reason
// when that cannot be done here (not root, no ip or iptables). Under CI,
// which runs as root with both installed, it fails instead of skipping.
func newNetns(t testing.TB) *netns {
	t.Helper()
	skip := func(why string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("netns test cannot run under CI: %s", why)
		}
		t.Skipf("SKIPPED (needs root, ip and iptables): %s", why)
	}
	if os.Geteuid() != 0 {
		skip("not root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip(tool + " not installed")
		}
	}
	name := fmt.Sprintf("gridmesh-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		skip(fmt.Sprintf("ip netns add: %v: %s", err, out))
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns := &netns{name: name}
	ns.run(t, "ip", "link", "set", "lo", "up")
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	ns.fd = fd
	return ns
}

// run runs a command inside the namespace.
func (ns *netns) run(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// do runs fn on a fresh OS thread that entered the namespace. The thread
// is never handed back to the scheduler (the goroutine exits locked, so
// the runtime ends the thread), so no other goroutine runs in the
// namespace by accident.
func (ns *netns) do(fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.name, err)
			return
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

// listen opens n listeners on the namespace's loopback.
func (ns *netns) listen(t testing.TB, n int) ([]net.Listener, []string) {
	t.Helper()
	lns := make([]net.Listener, n)
	names := make([]string, n)
	for i := range lns {
		var err error
		must(t, ns.do(func() { lns[i], err = net.Listen("tcp", "127.0.0.1:0") }))
		must(t, err)
		names[i] = "http://" + lns[i].Addr().String()
	}
	return lns, names
}

// dial opens TCP connections from inside the namespace.
func (ns *netns) dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	if e := ns.do(func() { c, err = (&net.Dialer{}).DialContext(ctx, network, addr) }); e != nil {
		return nil, e
	}
	return c, err
}

// dropPort makes every packet to or from port vanish inside the
// namespace, in both directions, without a RST or FIN: the connections
// on that port become half-open. The returned func lifts the rules.
func (ns *netns) dropPort(t testing.TB, port int) func() {
	t.Helper()
	p := strconv.Itoa(port)
	rules := [][]string{
		{"INPUT", "-p", "tcp", "--dport", p, "-j", "DROP"},
		{"INPUT", "-p", "tcp", "--sport", p, "-j", "DROP"},
	}
	for _, r := range rules {
		ns.run(t, append([]string{"iptables", "-I"}, r...)...)
	}
	return func() {
		for _, r := range rules {
			ns.run(t, append([]string{"iptables", "-D"}, r...)...)
		}
	}
}

// netnsHalfOpenTrial connects two nodes inside ns, silences their
// connection with iptables and returns how long each side took to see it
// dead; then it lifts the rules and checks that the pair talks again.
func netnsHalfOpenTrial(t testing.TB, ns *netns, interval, timeout time.Duration) (dialer, acceptor time.Duration) {
	lns, names := ns.listen(t, 2)
	dIdx, aIdx := 0, 1
	if ShouldDial(names[1], names[0]) {
		dIdx, aIdx = 1, 0
	}
	dets := []*detector{newDetector(), newDetector()}
	nodes := make([]*node, 2)
	for i := range nodes {
		o := baseOptions(names[i], names)
		o.PingInterval, o.PingTimeout = interval, timeout
		o.HandshakeTimeout = 2 * time.Second
		o.OnStateChange = dets[i].onChange
		o.NetDial = ns.dial
		nodes[i] = startNode(t, lns[i], o)
	}
	ctx := testCtx(t)
	for _, n := range nodes {
		must(t, n.m.WaitForConnect(ctx))
	}
	must(t, nodes[dIdx].call(ctx, names[aIdx], "before"))

	lift := ns.dropPort(t, lns[aIdx].Addr().(*net.TCPAddr).Port)
	start := time.Now()
	dialer = dets[dIdx].wait(t).Sub(start)
	acceptor = dets[aIdx].wait(t).Sub(start)
	lift()
	for _, n := range nodes {
		must(t, n.m.WaitForConnect(ctx))
	}
	waitFor(t, "requests after the partition healed", func() bool {
		return nodes[dIdx].call(ctx, names[aIdx], "after") == nil &&
			nodes[aIdx].call(ctx, names[dIdx], "after") == nil
	})
	for _, n := range nodes {
		n.stop()
	}
	return dialer, acceptor
}

// TestHalfOpenNetns: packets dropped by iptables in a network namespace,
// no FIN, no RST. Both sides declare the peer dead within PingInterval +
// PingTimeout (plus slack for a busy machine) and reconnect once the
// partition heals.
func TestHalfOpenNetns(t *testing.T) {
	ns := newNetns(t)
	const interval, timeout, slack = time.Second, time.Second, 2 * time.Second
	d, a := netnsHalfOpenTrial(t, ns, interval, timeout)
	t.Logf("half-open (iptables DROP) detected after %v (dialer) and %v (acceptor) at %v + %v", d, a, interval, timeout)
	for _, got := range []time.Duration{d, a} {
		if got > interval+timeout+slack {
			t.Errorf("detection took %v, want at most %v", got, interval+timeout+slack)
		}
	}
}

// TestHalfOpenNetnsMeasure logs the median detection time over
// -halfopen.tries trials at the default settings and at 1 s + 1 s.
func TestHalfOpenNetnsMeasure(t *testing.T) {
	if *halfOpenTries <= 0 {
		t.Skip("set -halfopen.tries to measure")
	}
	ns := newNetns(t)
	for _, s := range []struct{ interval, timeout time.Duration }{
		{time.Second, time.Second},
		{10 * time.Second, 3 * time.Second},
	} {
		var all []time.Duration
		for range *halfOpenTries {
			d, a := netnsHalfOpenTrial(t, ns, s.interval, s.timeout)
			all = append(all, d, a)
		}
		slices.Sort(all)
		t.Logf("%v + %v: %d detections, min %v, median %v, max %v",
			s.interval, s.timeout, len(all), all[0], all[len(all)/2], all[len(all)-1])
		if worst := all[len(all)-1]; worst > s.interval+s.timeout+2*time.Second {
			t.Errorf("worst detection %v exceeds %v + %v", worst, s.interval, s.timeout)
		}
	}
}
