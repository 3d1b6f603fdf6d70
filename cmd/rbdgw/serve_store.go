package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway"
	"github.com/rbdgw/rbdgw/gateway/ha"
)

// storeRetryInterval is how often a gateway starting without a reachable
// store tries again.
const storeRetryInterval = time.Second

// runFromStore is `rbdgw serve` in store mode: open the store (starting
// the embedded member if needed), import a file if asked, read the
// configuration (waiting for etcd if it is down: there is nothing to serve
// before), start the gateway on this process's part of it and reconcile
// until a signal.
func (o *ServeOptions) runFromStore(ctx context.Context, log *slog.Logger) error {
	s, closeStore, err := o.Store.Open(ctx, o.DataDir, log)
	if err != nil {
		return withCode(ExitStart, err)
	}
	defer func() {
		if err := closeStore(); err != nil {
			log.Warn("closing the configuration store", "err", err)
		}
	}()
	sealClearSecrets(ctx, s, log)
	migrateAccess(ctx, s, log)
	if o.Import != "" {
		epoch, err := importFile(ctx, s, o.Import)
		if err != nil {
			return err
		}
		log.Info("configuration imported", "file", o.Import, "epoch", epoch)
	}
	c, epoch, err := getWhenReachable(ctx, s, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before there was anything to serve
		}
		return withCode(ExitBadConfig, err)
	}
	local := config.Local{GatewayName: o.GatewayName, DataDir: o.DataDir, Portals: o.Portals}
	cfg, err := c.ForGateway(local)
	if err != nil {
		return withCode(ExitBadConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return withCode(ExitBadConfig, err)
	}
	log.Info("configuration read from the store", "prefix", o.Store.Prefix, "epoch", epoch,
		"gateway", o.GatewayName, "portals", cfg.Portals, "targets", len(cfg.Targets), "disks", len(cfg.Disks))

	// The reconciler stops on the same signals as runGateway, before the
	// gateway shuts down.
	rctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := o.API.Start(rctx, s, o.DataDir, o.ImageRoots, log); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	reconcile := func(g *gateway.Gateway) error {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.Reconcile(rctx, gateway.ReconcileOptions{Store: s, Local: local, Epoch: epoch})
		}()
		return nil
	}
	// SIGHUP reads the whole configuration again (the watch should have
	// delivered it already; this is the operator's "resync now").
	resync := func() (config.Config, error) {
		c, _, err := s.Get(ctx)
		if err != nil {
			return config.Config{}, err
		}
		return c.ForGateway(local)
	}
	gcfg := gateway.Config{Config: cfg, ImageRoots: o.ImageRoots, Limits: o.Limits}
	if len(cfg.Gateways) > 0 {
		// Several gateways serve the same LUs: join the cluster's
		// ownership and reservation state (the gateway leaves it at
		// shutdown).
		es := s
		peerAddr, err := o.peerAddr(cfg)
		if err != nil {
			return withCode(ExitStart, err)
		}
		cl, err := ha.Join(ctx, es.Client(), ha.Options{Self: o.GatewayName, StatePrefix: config.StatePrefix(o.Store.Prefix),
			LeaseTTL: o.LeaseTTL, PeerAddr: peerAddr, PeerSecret: PeerSecret(s), Logger: log})
		if err != nil {
			return withCode(ExitStart, err)
		}
		log.Info("joined the gateway cluster", "gateway", o.GatewayName, "lease_ttl", cl.Membership().TTL(),
			"live", cl.Membership().Live(), "peer_link", cl.Membership().PeerAddr(o.GatewayName))
		gcfg.Cluster = cl
	}
	return runGateway(ctx, gcfg, log, o.ShutdownTimeout, reconcile, resync)
}

// sealClearSecrets rewrites, sealed, the CHAP passwords an older version
// (or a gateway without a key) stored in clear: an update that changes
// nothing writes exactly the keys whose sealed form differs from what is
// stored, and none at all when everything is sealed already.
func sealClearSecrets(ctx context.Context, s *config.EtcdStore, log *slog.Logger) {
	epoch, err := s.Update(ctx, func(*config.Config) error { return nil })
	if err != nil {
		log.Warn("could not seal the CHAP passwords stored in clear", "err", err)
		return
	}
	log.Debug("stored CHAP passwords are sealed", "epoch", epoch)
}

// migrateAccess keeps a configuration an older version stored granting
// what it granted, now that access is denied by default (once per
// cluster; config.EtcdStore.MigrateToDenyByDefault), and says so.
func migrateAccess(ctx context.Context, s *config.EtcdStore, log *slog.Logger) {
	changes, err := s.MigrateToDenyByDefault(ctx)
	if err != nil {
		log.Warn("could not carry the configuration over to deny-by-default access; what now admits nobody is logged per target", "err", err)
	}
	for _, c := range changes {
		log.Warn("configuration carried over to deny-by-default access: "+c, "change", c)
	}
}

// getWhenReachable reads the configuration, retrying while the store is
// unavailable, until ctx ends.
func getWhenReachable(ctx context.Context, s config.Store, log *slog.Logger) (config.Config, int64, error) {
	for {
		c, epoch, err := s.Get(ctx)
		if err == nil || !errors.Is(err, config.ErrUnavailable) {
			return c, epoch, err
		}
		log.Warn("configuration store unreachable; retrying", "err", err, "in", storeRetryInterval)
		select {
		case <-ctx.Done():
			return config.Config{}, 0, ctx.Err()
		case <-time.After(storeRetryInterval):
		}
	}
}

// peerAddr is where this gateway's peer link listens: --peer-addr, or the
// host of its first configured portal (an address the other gateways
// reach; a wildcard portal makes the link publish the gateway's name)
// with any free port.
func (o *ServeOptions) peerAddr(cfg config.Config) (string, error) {
	if o.PeerAddr != "" {
		return o.PeerAddr, nil
	}
	self, ok := cfg.Gateway(o.GatewayName)
	if !ok || len(self.Portals) == 0 {
		return "", fmt.Errorf("gateway %s has no portal in the configuration to put its peer link on; give --peer-addr", o.GatewayName)
	}
	host, _, err := net.SplitHostPort(self.Portals[0])
	if err != nil {
		return "", fmt.Errorf("gateway %s: portal %q: %w", o.GatewayName, self.Portals[0], err)
	}
	return net.JoinHostPort(host, "0"), nil
}
