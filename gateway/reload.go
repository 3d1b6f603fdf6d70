package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/scsi"
)

// ErrRestartRequired is wrapped by Reload's error when the new
// configuration changes something only a restart applies.
var ErrRestartRequired = errors.New("restart required")

// Reload applies a new configuration to the running gateway, as a whole or
// not at all: validated, applied to a copy, swapped, so that no session
// ever sees half a configuration.
//
// Applied live: targets added, removed or changed (auth, hosts, LUN maps,
// controls), disks added, disks grown (size larger). Targets that stay
// keep their logged-in sessions: those see a new LUN map at once (with
// REPORTED LUNS DATA HAS CHANGED), new credentials and controls at their
// next login; sessions of removed targets, and of initiators the target's
// ACLs no longer admit, are dropped.
//
// In a cluster, gateways added to or removed from the configuration are
// applied live too: new port groups on every LU, new portals in
// SendTargets, ownership unchanged; so are a disk's preferred_gateway and
// failback.
//
// Refused with ErrRestartRequired: a change of portals, of this gateway's
// own entry (in a cluster), data_dir, discovery_auth, ceph, or of an existing disk's
// backend, wwn, block_size, read_only, write_cache or controls, and
// shrinking a disk.
//
// Disks removed from the configuration are retired at once (sessions
// logged in before the reload find no LU there any more) and closed once
// their commands in flight have finished.
func (g *Gateway) Reload(c config.Config) error {
	c = c.Clone()
	if err := c.Validate(); err != nil {
		return fmt.Errorf("gateway: reload: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errors.New("gateway: reload: gateway is shut down")
	}
	old := &g.cfg
	if !slices.Equal(old.Portals, c.Portals) {
		return fmt.Errorf("gateway: reload: portals changed: %w", ErrRestartRequired)
	}
	if old.DataDir != c.DataDir {
		return fmt.Errorf("gateway: reload: data_dir changed: %w", ErrRestartRequired)
	}
	if old.DiscoveryAuth != c.DiscoveryAuth {
		return fmt.Errorf("gateway: reload: discovery_auth changed: %w", ErrRestartRequired)
	}
	if old.Ceph != c.Ceph {
		// Open rbd: disks keep the cluster connection they were opened on.
		return fmt.Errorf("gateway: reload: ceph changed: %w", ErrRestartRequired)
	}
	var grow, prefer []*config.Disk
	for i := range c.Disks {
		d := &c.Disks[i]
		od, ok := old.Disk(d.Name)
		if !ok {
			continue
		}
		a, b := *od, *d
		a.Size, b.Size = 0, 0
		a.PreferredGateway, b.PreferredGateway = "", ""
		a.Failback, b.Failback = "", ""
		if a != b {
			return fmt.Errorf("gateway: reload: disk %s: only size, preferred_gateway and failback may change live: %w", d.Name, ErrRestartRequired)
		}
		if d.PreferredGateway != od.PreferredGateway || d.Failback != od.Failback {
			prefer = append(prefer, d)
		}
		if d.Size < od.Size {
			return fmt.Errorf("gateway: reload: disk %s: size %s is below %s; shrinking is refused: %w", d.Name, d.Size, od.Size, ErrRestartRequired)
		}
		if d.Size > od.Size {
			grow = append(grow, d)
		}
	}

	if g.ha != nil {
		// Before new disks open, so they get the new port groups, and
		// before the targets are built, so SendTargets lists the new
		// portals. A later failure keeps the new gateway set: it stands
		// on its own.
		if err := g.ha.setGateways(&c); err != nil {
			return fmt.Errorf("gateway: reload: gateways: %w", err)
		}
	}
	// Open new disks first; on failure close them again and change nothing.
	lus := make(map[string]*scsi.LogicalUnit, len(c.Disks))
	var opened []*scsi.LogicalUnit
	undo := func() {
		for _, lu := range opened {
			if g.ha != nil {
				g.ha.undrive(lu.Config().Name, lu)
			}
			lu.Close()
		}
	}
	for i := range c.Disks {
		d := &c.Disks[i]
		if lu, ok := g.lus[d.Name]; ok {
			lus[d.Name] = lu
			continue
		}
		lu, err := g.openLU(d)
		if err != nil {
			undo()
			return fmt.Errorf("gateway: reload: %w", err)
		}
		opened = append(opened, lu)
		lus[d.Name] = lu
	}
	targets, err := g.buildTargets(&c, lus)
	if err != nil {
		undo()
		return fmt.Errorf("gateway: reload: %w", err)
	}
	// Growing is the last step that can fail; a failure leaves earlier
	// disks grown, which initiators see as a resize, harmless.
	for _, d := range grow {
		if err := growBackend(lus[d.Name].Backend(), int64(d.Size)); err != nil {
			undo()
			return fmt.Errorf("gateway: reload: disk %s: %w", d.Name, err)
		}
		g.log.Info("disk grown", "disk", d.Name, "size", int64(d.Size))
	}

	g.srv.SetTargets(targets)
	if g.ha != nil {
		for _, d := range prefer {
			if err := g.ha.setPreference(d); err != nil {
				// Validation admitted it; a driver that stopped meanwhile
				// is the only way here, and its LU is going away.
				g.log.Error("disk preference not applied", "disk", d.Name, "err", err)
			}
		}
	}
	for name, lu := range g.lus {
		if _, ok := lus[name]; !ok {
			// Sessions logged in before still map it: from now on they
			// find no LU there, and the image is let go once the commands
			// in flight have left, so an admin or another gateway can
			// have it (delete the RBD image, for instance).
			lu.Retire()
			if g.ha != nil {
				g.ha.undrive(name, lu)
			}
			g.retired = append(g.retired, lu)
			g.closeWG.Add(1)
			go g.closeRetired(name, lu)
			g.log.Info("disk removed from configuration; closing it", "disk", name)
		}
	}
	g.lus = lus
	g.cfg = c
	g.log.Info("configuration reloaded", "targets", len(targets), "disks", len(lus))
	return nil
}

// growBackend finds the file or rbd backend under any wrappers and grows
// it.
func growBackend(b scsi.Backend, size int64) error {
	gr, ok := findBackend[interface{ Grow(int64) error }](b)
	if !ok {
		return errors.New("backend cannot grow")
	}
	return gr.Grow(size)
}

// retiredQuiesceTimeout bounds the wait for a removed disk's commands in
// flight; a backend stuck longer is closed anyway.
const retiredQuiesceTimeout = 30 * time.Second

// closeRetired closes a disk removed by Reload once its commands in
// flight have left, unless Shutdown has taken it over meanwhile.
func (g *Gateway) closeRetired(name string, lu *scsi.LogicalUnit) {
	defer g.closeWG.Done()
	ctx, cancel := context.WithTimeout(context.Background(), retiredQuiesceTimeout)
	defer cancel()
	if err := lu.Quiesce(ctx); err != nil {
		g.log.Warn("removed disk still busy; closing it anyway", "disk", name, "err", err)
	}
	g.mu.Lock()
	i := slices.Index(g.retired, lu)
	if i >= 0 {
		g.retired = slices.Delete(g.retired, i, i+1)
	}
	g.mu.Unlock()
	if i < 0 {
		return // closeLUs has it
	}
	if err := lu.Backend().Flush(ctx); err != nil {
		g.log.Error("flush of a removed disk failed", "disk", name, "err", err)
	}
	if err := lu.Close(); err != nil {
		g.log.Error("close of a removed disk failed", "disk", name, "err", err)
	}
	g.log.Info("removed disk closed", "disk", name)
}
