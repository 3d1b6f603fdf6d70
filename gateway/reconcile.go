package gateway

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"time"

	"github.com/rbdgw/rbdgw/config"
)

// Reconciler defaults.
const (
	// DefaultPingInterval is how often the store's reachability is checked
	// for Health: well under a minute, so monitoring notices an etcd
	// outage quickly; one linearizable read of one key each time.
	DefaultPingInterval = 2 * time.Second
	// DefaultRetryInterval is how soon a configuration that failed to
	// apply (a disk that would not open) is tried again without a new
	// change.
	DefaultRetryInterval = 10 * time.Second
)

// ReconcileOptions say which store to follow and how this process maps
// the cluster configuration onto itself.
type ReconcileOptions struct {
	Store config.Store
	// Local is this process's gateway name, data dir and (single gateway)
	// portals; see config.Config.ForGateway.
	Local config.Local
	// Epoch is the store epoch of the configuration the gateway was
	// started with; changes after it are applied.
	Epoch int64
	// PingInterval and RetryInterval default to DefaultPingInterval and
	// DefaultRetryInterval.
	PingInterval, RetryInterval time.Duration
}

// Reconcile keeps the gateway converged to the store until ctx ends.
//
// Each configuration the store's watch delivers is mapped onto this
// gateway (ForGateway) and applied with Reload, which changes only what
// differs: sessions of targets that stay are not touched. Watching from
// the start epoch means a change made between the gateway's first read
// and this call is applied at once (a gateway that was down catches up
// the same way: it reads the store at start and watches from there).
//
// When the store is unreachable nothing changes on the data path: the
// gateway serves the last configuration it applied, and Health reports
// the outage. A configuration that cannot be applied (a refused reload)
// is also only reported, and tried again every RetryInterval until a
// newer one arrives.
func (g *Gateway) Reconcile(ctx context.Context, o ReconcileOptions) {
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	g.health.update(func(h *Health) {
		h.Source, h.Gateway = SourceStore, o.Local.GatewayName
		h.Epoch, h.StoreEpoch = o.Epoch, o.Epoch
		h.StoreReachable = true
		h.AppliedAt = time.Now()
	})
	var wg sync.WaitGroup
	if p, ok := o.Store.(config.Pinger); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.pingStore(ctx, p, o.PingInterval)
		}()
	}
	defer wg.Wait()

	snaps := o.Store.Watch(ctx, o.Epoch)
	var failed *config.Snapshot // the newest snapshot, while it fails to apply
	retry := time.NewTimer(o.RetryInterval)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case s, ok := <-snaps:
			if !ok {
				return // ctx ended or the store closed
			}
			failed = nil
			if g.applySnapshot(s, o.Local) != nil {
				failed = &s
				retry.Reset(o.RetryInterval)
			}
		case <-retry.C:
			if failed != nil && g.applySnapshot(*failed, o.Local) != nil {
				retry.Reset(o.RetryInterval)
			} else {
				failed = nil
			}
		}
	}
}

// applySnapshot applies one store configuration and records the outcome
// in Health.
func (g *Gateway) applySnapshot(s config.Snapshot, l config.Local) error {
	g.health.update(func(h *Health) { h.StoreEpoch = max(h.StoreEpoch, s.Epoch) })
	start := time.Now()
	c, err := s.Config.ForGateway(l)
	if err == nil && !reflect.DeepEqual(c, g.Config()) {
		err = g.Reload(c)
	}
	if err != nil {
		msg := "configuration from the store not applied; serving the previous one"
		if errors.Is(err, ErrRestartRequired) {
			msg = "configuration from the store needs a restart; serving the previous one"
		}
		g.log.Error(msg, "epoch", s.Epoch, "err", err)
		g.health.setErrors(&err, nil)
		return err
	}
	g.log.Info("configuration applied", "epoch", s.Epoch, "took", time.Since(start))
	g.health.update(func(h *Health) { h.Epoch, h.AppliedAt = s.Epoch, time.Now() })
	// A snapshot arrived, so the store answered.
	var ok error
	g.health.setErrors(&ok, &ok)
	return nil
}

// pingStore checks the store's reachability every interval and logs
// when it changes.
func (g *Gateway) pingStore(ctx context.Context, p config.Pinger, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	reachable := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, every)
		err := p.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		g.health.setErrors(nil, &err)
		switch {
		case err != nil && reachable:
			g.log.Warn("configuration store unreachable; I/O continues on the last configuration",
				"epoch", g.Health().Epoch, "err", err)
		case err == nil && !reachable:
			g.log.Info("configuration store reachable again", "epoch", g.Health().Epoch)
		}
		reachable = err == nil
	}
}
