package gateway

import (
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	"github.com/rbdgw/rbdgw/alua"
	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway/ha"
	"github.com/rbdgw/rbdgw/scsi"
	"github.com/rbdgw/rbdgw/target"
)

// clusterState is this gateway's part in a cluster of gateways serving the
// same LUs (Config.Cluster with a configuration that lists gateways): each
// gateway is one ALUA target port group, with one relative target port,
// both numbered by its TPG id; each LU is owned by one gateway at a time
// through an ha.Driver, and persistent reservations live in etcd.
type clusterState struct {
	c        *ha.Cluster
	self     config.Gateway
	gateways []config.Gateway // every configured gateway, self included
	groupOf  map[string]uint16

	mu     sync.Mutex
	byKey  map[string]*scsi.LogicalUnit // LU by reservation store key
	groups map[string]*alua.Dynamic     // port groups by disk name
}

func newClusterState(c *ha.Cluster, cfg *config.Config) (*clusterState, error) {
	self, ok := cfg.Gateway(c.Membership().Self())
	if !ok {
		return nil, fmt.Errorf("gateway: this gateway (%s) is not in the configuration's gateways", c.Membership().Self())
	}
	cs := &clusterState{c: c, self: *self, gateways: slices.Clone(cfg.Gateways),
		groupOf: map[string]uint16{}, byKey: map[string]*scsi.LogicalUnit{}, groups: map[string]*alua.Dynamic{}}
	for _, gw := range cfg.Gateways {
		cs.groupOf[gw.Name] = gw.TPGID
	}
	return cs, nil
}

// portGroups returns a new LU's port groups: every gateway's group, Active/
// Non-optimized until the LU's driver learns who owns it.
func (cs *clusterState) portGroups(d *config.Disk) (*alua.Dynamic, error) {
	return alua.NewDynamic(cs.prefer(groupsOf(cs.gateways, nil), d.PreferredGateway), 0)
}

// groupsOf is one group per gateway, each with its state and PREF bit in
// cur (a gateway new to cur starts Active/Non-optimized until the LU's
// driver publishes).
func groupsOf(gateways []config.Gateway, cur *alua.Dynamic) []alua.Group {
	groups := make([]alua.Group, 0, len(gateways))
	for _, gw := range gateways {
		g := alua.Group{ID: gw.TPGID, State: alua.ActiveNonOptimized, RelativePorts: []uint16{gw.TPGID}}
		if cur != nil {
			if old, ok := cur.GroupOf(gw.TPGID); ok {
				g.State, g.Status, g.Preferred = old.State, old.Status, old.Preferred
			}
		}
		groups = append(groups, g)
	}
	return groups
}

// prefer sets PREF on gateway's group alone ("" or an unknown gateway:
// on none).
func (cs *clusterState) prefer(groups []alua.Group, gateway string) []alua.Group {
	id, ok := cs.groupOf[gateway]
	for i := range groups {
		groups[i].Preferred = ok && groups[i].ID == id
	}
	return groups
}

// setGateways applies a new gateway set from the configuration while the
// gateway runs: every LU gets the new port groups and its driver the new
// gateways, and SendTargets lists the new portals. The ownership of each
// LU stays where it is. This gateway's own entry must not change (its
// port group id is its relative port; portals are bound at start).
func (cs *clusterState) setGateways(c *config.Config) error {
	if cs.sameGateways(c) {
		return nil
	}
	self, ok := c.Gateway(cs.self.Name)
	if !ok || self.TPGID != cs.self.TPGID || !slices.Equal(self.Portals, cs.self.Portals) {
		return fmt.Errorf("this gateway's own entry (%s) changed or was removed: %w", cs.self.Name, ErrRestartRequired)
	}
	gateways := slices.Clone(c.Gateways)
	groupOf := make(map[string]uint16, len(gateways))
	names := make([]string, 0, len(gateways))
	for _, gw := range gateways {
		groupOf[gw.Name] = gw.TPGID
		names = append(names, gw.Name)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for name, dyn := range cs.groups {
		if err := dyn.SetGroups(groupsOf(gateways, dyn)); err != nil {
			return fmt.Errorf("disk %s: %w", name, err)
		}
		d, ok := cs.c.Driver(name)
		if !ok {
			continue
		}
		if err := d.SetGateways(names, groupOf); err != nil {
			return fmt.Errorf("disk %s: %w", name, err)
		}
	}
	cs.gateways, cs.groupOf = gateways, groupOf
	return nil
}

// drive starts the ownership driver of a newly opened LU. lock hands the
// image between gateways.
func (cs *clusterState) drive(d *config.Disk, lu *scsi.LogicalUnit, groups *alua.Dynamic, lock ha.ImageLock) error {
	names := make([]string, 0, len(cs.gateways))
	for _, gw := range cs.gateways {
		names = append(names, gw.Name)
	}
	oc := alua.DefaultOwnerConfig(d.Name, cs.self.Name, names)
	// A non-owner may read the image itself only when no owner's cache can
	// hold newer data, and when its backend reads without the lock (file
	// images; an rbd: disk serves only under its lock).
	oc.ReadsAnywhere = !d.WriteCache && !lock.Fences()
	oc.Preferred, oc.Failback = d.PreferredGateway, failbackOf(d)
	if _, err := cs.c.AddLU(ha.LUConfig{Owner: oc, Groups: groups, GroupOf: cs.groupOf, Lock: lock, LU: lu}); err != nil {
		return fmt.Errorf("gateway: disk %s: %w", d.Name, err)
	}
	cs.mu.Lock()
	cs.byKey[prKey(lu)] = lu
	cs.groups[d.Name] = groups
	cs.mu.Unlock()
	return nil
}

// failbackOf maps a disk's failback setting onto the ownership machine's.
func failbackOf(d *config.Disk) alua.FailbackPolicy {
	if d.Failback == config.FailbackPreferred {
		return alua.FailbackPreferred
	}
	return alua.FailbackNone
}

// setPreference applies a disk's new preferred gateway and failback policy
// to its running LU: the PREF bit moves in RTPG and the driver fails back
// (or stops doing so) accordingly.
func (cs *clusterState) setPreference(d *config.Disk) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	dyn := cs.groups[d.Name]
	drv, ok := cs.c.Driver(d.Name)
	if dyn == nil || !ok {
		return fmt.Errorf("disk %s is not driven here", d.Name)
	}
	if err := dyn.SetGroups(cs.prefer(groupsOf(cs.gateways, dyn), d.PreferredGateway)); err != nil {
		return err
	}
	return drv.SetPreference(d.PreferredGateway, failbackOf(d))
}

// undrive stops an LU's driver (releasing the image if owned here).
func (cs *clusterState) undrive(name string, lu *scsi.LogicalUnit) {
	cs.c.RemoveLU(name)
	cs.mu.Lock()
	delete(cs.byKey, prKey(lu))
	delete(cs.groups, name)
	cs.mu.Unlock()
}

// prKey is the LU's key in the reservation store (the scsi package keys
// reservations by the LU's WWN).
func prKey(lu *scsi.LogicalUnit) string {
	w := lu.Config().WWN
	return hex.EncodeToString(w[:])
}

// reloadReservations is called when any gateway committed an LU's
// reservations: this gateway's copy follows, so PERSISTENT RESERVE IN and
// reservation conflicts answer the same on every path.
func (cs *clusterState) reloadReservations(key string, log func(msg string, args ...any)) {
	cs.mu.Lock()
	lu := cs.byKey[key]
	cs.mu.Unlock()
	if lu == nil {
		return
	}
	if err := lu.ReloadPR(); err != nil {
		log("reservations not reloaded", "disk", lu.Config().Name, "err", err)
	}
}

// luEvents relays the resets of the LU with this WWN to the other
// gateways (nil outside a cluster).
func (cs *clusterState) luEvents(wwn [16]byte) scsi.LUEvents {
	if cs == nil {
		return nil
	}
	return cs.c.LUEvents(hex.EncodeToString(wwn[:]))
}

// forwarder carries the commands of disk name that arrive while another
// gateway owns it to that gateway (nil outside a cluster or without a
// peer link).
func (cs *clusterState) forwarder(name string) scsi.Forwarder {
	if cs == nil {
		return nil
	}
	return cs.c.Forwarder(name)
}

// replayReset performs on this gateway's copy of an LU a reset another
// gateway performed, so every path reports it.
func (cs *clusterState) replayReset(key string, ascq byte) {
	cs.mu.Lock()
	lu := cs.byKey[key]
	cs.mu.Unlock()
	if lu != nil {
		lu.ReplayReset(ascq)
	}
}

// portals is what SendTargets advertises: this gateway's bound portals and
// every other gateway's configured ones, each with its gateway's tag.
func (cs *clusterState) portals(own []target.Portal) []target.Portal {
	out := slices.Clone(own)
	for _, gw := range cs.gateways {
		if gw.Name == cs.self.Name {
			continue
		}
		for _, p := range gw.Portals {
			out = append(out, target.Portal{Address: p, PortalGroupTag: gw.TPGID})
		}
	}
	return out
}

// sameGateways reports whether a new configuration keeps the gateway set
// (names, TPG ids, portals) this gateway started with.
func (cs *clusterState) sameGateways(c *config.Config) bool {
	return slices.EqualFunc(cs.gateways, c.Gateways, func(a, b config.Gateway) bool {
		return a.Name == b.Name && a.TPGID == b.TPGID && slices.Equal(a.Portals, b.Portals)
	})
}
