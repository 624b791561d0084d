package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/config"
)

// reloadPoll is how often the configuration file's size and modification
// time are looked at, to re-read it when it changes on disk.
const reloadPoll = time.Second

// membership feeds a running node's grid.Manager.SetHosts from its
// configuration file, re-read on SIGHUP and when it changes on disk, and
// from DNS discovery (grid.discover). A bad new file is refused with a log
// line naming the field, and the membership in force is kept; so is the
// last good DNS answer when a lookup fails. Only grid.hosts and
// grid.discover apply live: the other fields need a restart, and a file
// that changes grid.local, grid.secret or grid.listen is refused.
//
// It runs on one goroutine, started by watchMembership and waited for by
// the function it returns.
type membership struct {
	m          *grid.Manager
	path       string
	load       func(path string) (config.Grid, error)
	logger     *slog.Logger
	cur        config.Grid // the configuration in force
	found      []string    // the last good DNS answer, sorted
	stamp      fileStamp   // of the file last read
	lastDNSErr string      // to log each distinct failure once
}

// fileStamp is what the poll compares to tell that the file changed.
type fileStamp struct {
	size int64
	mod  time.Time
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{size: -1}
	}
	return fileStamp{fi.Size(), fi.ModTime()}
}

// watchMembership starts following path (whose grid section cfg is, as
// the node runs it) and DNS until ctx ends or the returned function is
// called; that function waits for the goroutine.
func watchMembership(ctx context.Context, m *grid.Manager, path string, cfg config.Grid, load func(string) (config.Grid, error), logger *slog.Logger) (stop func()) {
	s := &membership{m: m, path: path, load: load, logger: logger, cur: cfg, stamp: stampOf(path)}
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx, hup)
	}()
	logger.Info("config: watching for changes (SIGHUP, file)", "file", path, "discover", cfg.Discover != nil)
	return func() {
		cancel()
		<-done
		signal.Stop(hup)
	}
}

func (s *membership) run(ctx context.Context, hup <-chan os.Signal) {
	poll := time.NewTicker(reloadPoll)
	defer poll.Stop()
	dns := time.NewTimer(0) // the first lookup at once
	defer dns.Stop()
	if s.cur.Discover == nil {
		dns.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			s.reload("SIGHUP", dns)
		case <-poll.C:
			if st := stampOf(s.path); st != s.stamp {
				s.reload("file changed", dns)
			}
		case <-dns.C:
			s.discover(ctx)
			dns.Reset(s.cur.Discover.Interval)
		}
	}
}

// reload re-reads the file and applies its membership, or refuses it.
func (s *membership) reload(why string, dns *time.Timer) {
	s.stamp = stampOf(s.path)
	g, err := s.load(s.path)
	if err == nil {
		err = sameNode(s.cur, g)
	}
	if err != nil {
		s.logger.Error("config: reload refused, membership unchanged", "file", s.path, "trigger", why, "err", err)
		return
	}
	old := s.cur.Discover
	s.cur = g
	switch {
	case g.Discover == nil:
		dns.Stop()
		s.found = nil
	case old == nil || *old != *g.Discover:
		dns.Reset(0) // look up with the new settings at once
	}
	s.apply("config file (" + why + ")")
}

// sameNode refuses a new file that changes what only a restart applies.
func sameNode(old, g config.Grid) error {
	for _, f := range []struct{ field, a, b string }{
		{"grid.local", old.Local, g.Local}, {"grid.secret", old.Secret, g.Secret}, {"grid.listen", old.Listen, g.Listen},
	} {
		if f.a != f.b {
			return fmt.Errorf("%w: %s cannot change while the node runs (restart it)", config.ErrConfig, f.field)
		}
	}
	return nil
}

// apply sets the grid's hosts to the file's and DNS's.
func (s *membership) apply(source string) {
	hosts := slices.Clone(s.cur.Hosts)
	for _, h := range s.found {
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	before := len(s.m.Hosts())
	if err := s.m.SetHosts(hosts); err != nil {
		if errors.Is(err, grid.ErrInvalidOptions) {
			err = fmt.Errorf("%w: grid.hosts: %w", config.ErrConfig, err)
		}
		s.logger.Error("config: membership refused, membership unchanged", "source", source, "err", err)
		return
	}
	s.logger.Info("config: membership applied", "source", source, "hosts", len(hosts), "before", before)
}

// discover looks up grid.discover's SRV records and applies them; a
// failed lookup keeps the last good answer.
func (s *membership) discover(ctx context.Context) {
	d := s.cur.Discover
	ctx, cancel := context.WithTimeout(ctx, min(d.Interval, 5*time.Second))
	defer cancel()
	_, srvs, err := resolver(d.Server).LookupSRV(ctx, "", "", d.DNS)
	if err != nil {
		if msg := err.Error(); msg != s.lastDNSErr {
			s.lastDNSErr = msg
			s.logger.Warn("grid: discovery failed, keeping the last membership", "dns", d.DNS, "err", err)
		}
		return
	}
	s.lastDNSErr = ""
	found := make([]string, 0, len(srvs))
	for _, r := range srvs {
		port := int(r.Port)
		if d.Port != 0 {
			port = d.Port
		}
		found = append(found, d.Scheme+"://"+net.JoinHostPort(strings.TrimSuffix(r.Target, "."), strconv.Itoa(port)))
	}
	slices.Sort(found)
	found = slices.Compact(found)
	if slices.Equal(found, s.found) {
		return
	}
	s.found = found
	s.apply("dns " + d.DNS)
}

// resolver returns a resolver that asks server (host:port), or the
// system's when server is empty.
func resolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
}

// gatewayGrid and workerGrid read the grid section of a gateway's or a
// worker's file, checking the whole file.
func gatewayGrid(path string) (config.Grid, error) {
	c, err := config.LoadGateway(path)
	if err != nil {
		return config.Grid{}, err
	}
	return c.Grid, nil
}

func workerGrid(path string) (config.Grid, error) {
	c, err := config.LoadWorker(path)
	if err != nil {
		return config.Grid{}, err
	}
	return c.Grid, nil
}
