// Package gateway composes a running iSCSI gateway from a configuration:
// it opens the disks' backends, builds the SCSI logical units and routers,
// maps targets, hosts and controls onto target.Target, and serves every
// portal. Start is the only entry point; cmd/rbdgw and the tests both use
// it.
//
// Lifecycle (as etcd's embed): Start -> <-Ready() -> <-Err() -> Shutdown or
// Close.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway/ha"
	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/target"
)

// Config is what Start needs: the configuration model plus process-level
// settings that are not part of the cluster configuration.
type Config struct {
	// Config is the gateway configuration; Start validates and copies it.
	Config config.Config
	// Logger receives structured logs; nil discards them. Secrets are never
	// logged.
	Logger *slog.Logger
	// StallThreshold is how long a backend operation may take before a
	// warning is logged (0: DefaultStallThreshold; negative: off).
	StallThreshold time.Duration
	// Listen opens a portal's listener; nil means net.Listen. Tests can
	// inject listeners here.
	Listen func(network, address string) (net.Listener, error)
	// WrapBackend, when set, wraps each disk's backend (outermost), for
	// tests that inject faults (rbdlun.WithFaults) end to end.
	WrapBackend func(disk string, b scsi.Backend) scsi.Backend
	// ImageRoots are the directories file: disks may live in (relative
	// paths under the first); empty: <data_dir>/images.
	ImageRoots []string
	// Limits bound what initiators can make the portal hold
	// (connections, logins, sessions, buffered data); zero fields take
	// the target package's defaults.
	Limits target.Limits
	// Cluster, when set and the configuration lists gateways, is this
	// gateway's membership of the cluster (ha.Join): every LU is owned by
	// one gateway at a time and reached through ALUA port groups, and
	// persistent reservations live in etcd. Start takes it over: Shutdown
	// (or a failed Start) leaves it.
	Cluster *ha.Cluster
}

// DefaultStallThreshold is well below ESXi's 8 s heartbeat timeout so the
// log shows a slow disk before initiators give up.
const DefaultStallThreshold = 5 * time.Second

// Gateway is a running gateway.
type Gateway struct {
	// Immutable after Start.
	log     *slog.Logger
	srv     *target.Server
	lns     []net.Listener
	portals []target.Portal // bound addresses, as advertised
	stall   time.Duration
	wrapBE  func(disk string, b scsi.Backend) scsi.Backend
	prs     scsi.PRStore
	// imageRoots are the only directories file: images are opened in.
	imageRoots []string
	// ceph is the Ceph cluster connection of rbd: disks (rbd.go); it
	// guards itself.
	ceph cephLink
	// ha is the gateway's part of a multi-gateway cluster (cluster.go);
	// nil for a single gateway.
	ha *clusterState

	// Guarded by mu: Reload replaces them; Shutdown closes the LUs.
	mu  sync.Mutex
	cfg config.Config // private copy
	lus map[string]*scsi.LogicalUnit
	// retired LUs were removed from the configuration by Reload and are
	// being closed (closeRetired), or closed by Shutdown if it comes first.
	retired []*scsi.LogicalUnit
	// closeWG counts the goroutines closing retired LUs (reload.go).
	closeWG sync.WaitGroup
	closed  bool

	// health is the configuration source's status (health.go); it has its
	// own lock.
	health healthState

	ready chan struct{}
	errc  chan error

	serveWG      sync.WaitGroup // one per Serve goroutine
	stopping     chan struct{}
	shutdownOnce sync.Once
	shutdownErr  error
}

// Start validates cfg, opens every disk and portal and starts serving. On
// any failure it closes what it had opened and returns the error.
func Start(cfg Config) (g *Gateway, err error) {
	c := cfg.Config.Clone()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: invalid configuration: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g = &Gateway{
		cfg:      c,
		log:      log,
		lus:      map[string]*scsi.LogicalUnit{},
		ready:    make(chan struct{}),
		errc:     make(chan error, 1),
		stopping: make(chan struct{}),
	}
	// Transactional start: whatever was opened is closed again if a later
	// step fails.
	defer func() {
		if err != nil {
			for _, l := range g.lns {
				l.Close()
			}
			if cfg.Cluster != nil {
				cfg.Cluster.Leave()
			}
			g.closeLUs(context.Background())
			g = nil
		}
	}()
	if cfg.Cluster != nil && len(c.Gateways) > 0 {
		if g.ha, err = newClusterState(cfg.Cluster, &c); err != nil {
			return g, err
		}
	}

	if g.imageRoots, err = config.ImageRoots(cfg.ImageRoots, c.DataDir); err != nil {
		return g, err
	}
	g.wrapBE = cfg.WrapBackend
	g.stall = cfg.StallThreshold
	if g.stall == 0 {
		g.stall = DefaultStallThreshold
	}
	if err := g.openLUs(); err != nil {
		return g, err
	}
	listen := cfg.Listen
	if listen == nil {
		listen = net.Listen
	}
	for _, p := range c.Portals {
		l, err := listen("tcp", p)
		if err != nil {
			return g, fmt.Errorf("gateway: portal %s: %w", p, err)
		}
		g.lns = append(g.lns, l)
		g.portals = append(g.portals, target.Portal{Address: advertised(p, l.Addr()), PortalGroupTag: g.portGroupID()})
	}
	targets, err := g.buildTargets(&g.cfg, g.lus)
	if err != nil {
		return g, err
	}
	var disc *target.CHAP
	if c.DiscoveryAuth.Enabled() {
		disc = chapOf(c.DiscoveryAuth)
	}
	srv, err := target.NewServer(target.Config{Targets: targets, DiscoveryAuth: disc, Logger: log.With("component", "target"), Limits: cfg.Limits})
	if err != nil {
		return g, fmt.Errorf("gateway: %w", err)
	}
	g.srv = srv
	if g.ha != nil {
		g.ha.c.WatchReservations(func(key string) { g.ha.reloadReservations(key, g.log.Warn) })
		g.ha.c.WatchResets(g.ha.replayReset)
	}
	for _, l := range g.lns {
		g.serveWG.Add(1)
		go g.serve(l)
	}
	log.Info("gateway started", "portals", portalAddrs(g.portals), "targets", len(targets), "disks", len(g.lus),
		"discovery_chap", c.DiscoveryAuth.Enabled())
	close(g.ready)
	return g, nil
}

func (g *Gateway) serve(l net.Listener) {
	defer g.serveWG.Done()
	err := g.srv.Serve(l)
	select {
	case <-g.stopping:
		return // Serve ends because we are shutting down.
	default:
	}
	if err == nil || errors.Is(err, target.ErrServerClosed) {
		return
	}
	g.log.Error("portal failed", "portal", l.Addr().String(), "err", err)
	select {
	case g.errc <- fmt.Errorf("gateway: portal %s: %w", l.Addr(), err):
	default: // one error is enough to tell the owner to stop
	}
}

// advertised is the address SendTargets reports for a portal: the
// configured one, with the real port when the configuration asked for
// port 0 (tests).
func advertised(configured string, bound net.Addr) string {
	host, port, err := net.SplitHostPort(configured)
	if err != nil || port != "0" {
		return configured
	}
	if ta, ok := bound.(*net.TCPAddr); ok {
		return net.JoinHostPort(host, fmt.Sprint(ta.Port))
	}
	return configured
}

func portalAddrs(ps []target.Portal) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Address
	}
	return out
}

// Ready is closed once every portal is serving.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Err delivers the first fatal serving error (a portal's accept loop
// failing). It is never closed; select on it alongside a signal channel.
func (g *Gateway) Err() <-chan error { return g.errc }

// Addrs returns the bound portal addresses, in configuration order.
func (g *Gateway) Addrs() []net.Addr {
	out := make([]net.Addr, len(g.lns))
	for i, l := range g.lns {
		out[i] = l.Addr()
	}
	return out
}

// Sessions lists the live iSCSI sessions.
func (g *Gateway) Sessions() []target.SessionInfo { return g.srv.Sessions() }

// LogicalUnits returns the running LUs by disk name (for metrics).
func (g *Gateway) LogicalUnits() map[string]*scsi.LogicalUnit {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]*scsi.LogicalUnit, len(g.lus))
	for k, v := range g.lus {
		out[k] = v
	}
	return out
}

// Config returns a copy of the configuration the gateway runs.
func (g *Gateway) Config() config.Config {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg.Clone()
}

// Shutdown stops the gateway gracefully, in this order:
//
//  1. stop accepting: every portal's listener is closed;
//  2. sessions are asked to log out (Async Message, logout requested) and
//     in-flight commands drain; when ctx ends first, the remaining
//     connections are closed and their commands cancelled;
//  3. the accept loops are waited for;
//  4. every LU's backend is flushed (so write-back data reaches stable
//     storage) and the LU closed, which releases the backend (and the file
//     lock).
//
// Steps 1-2 are target.Server.Shutdown. LUs close only after every
// connection is gone, because a backend must have no call in flight when
// it closes. The result is the first error met (ctx.Err() if the drain was
// cut short, or a flush error). Shutdown and Close may be called more than
// once; later calls return the first result.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.shutdownOnce.Do(func() {
		close(g.stopping)
		g.log.Info("gateway shutting down", "sessions", len(g.srv.Sessions()))
		err := g.srv.Shutdown(ctx)
		switch {
		case errors.Is(err, context.Canceled):
			g.log.Info("connections closed without drain (Close)")
		case err != nil:
			g.log.Warn("drain cut short; remaining connections closed", "err", err)
		}
		g.serveWG.Wait()
		if g.ha != nil {
			// Owners release their images (flushed) and the lease is
			// revoked, so the other gateways take the LUs over at once.
			if lerr := g.ha.c.Leave(); lerr != nil {
				g.log.Warn("leaving the cluster", "err", lerr)
			}
		}
		// A fresh context for the flush: the drain deadline must not stop
		// cached writes from reaching the disk.
		if ferr := g.closeLUs(context.Background()); err == nil {
			err = ferr
		}
		g.closeWG.Wait()
		g.shutdownErr = err
		g.log.Info("gateway stopped")
	})
	return g.shutdownErr
}

// Close stops the gateway at once: connections are closed without waiting
// for logouts, in-flight commands cancelled; LUs are still flushed and
// closed after the last connection is gone.
func (g *Gateway) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := g.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// closeLUs flushes and closes every LU (current and retired), returning
// the first error.
func (g *Gateway) closeLUs(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	all := make(map[string]*scsi.LogicalUnit, len(g.lus)+len(g.retired))
	for name, lu := range g.lus {
		all[name] = lu
	}
	for i, lu := range g.retired {
		all[fmt.Sprintf("%s (retired %d)", lu.Config().Name, i)] = lu
	}
	g.retired = nil
	var first error
	for name, lu := range all {
		if err := lu.Backend().Flush(ctx); err != nil {
			g.log.Error("flush failed at shutdown", "disk", name, "err", err)
			if first == nil {
				first = fmt.Errorf("gateway: flush disk %s: %w", name, err)
			}
		}
		if err := lu.Close(); err != nil {
			g.log.Error("close failed", "disk", name, "err", err)
			if first == nil {
				first = fmt.Errorf("gateway: close disk %s: %w", name, err)
			}
		}
		delete(g.lus, name)
	}
	return first
}
