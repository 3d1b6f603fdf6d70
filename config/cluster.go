package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Gateway is one gateway node of the cluster: the portals it listens on
// (every gateway's discovery advertises them all) and its ALUA target port
// group.
type Gateway struct {
	// Name is what the gateway process is started with (--gateway-name,
	// default its host name); ceph-iscsi keys gateways by FQDN.
	Name string `json:"name" yaml:"name"`
	// Portals are "ip:port" addresses (ceph-iscsi's portal_ip_addresses).
	Portals []string `json:"portals" yaml:"portals"`
	// TPGID is the gateway's target port group id (ceph-iscsi's tpgs):
	// assigned once by the store (above Config.LastTPGID) and never
	// changed or reused. Leave it 0 in an update to have one assigned.
	TPGID uint16 `json:"tpg_id" yaml:"tpg_id"`
}

// HostGroup gives its member hosts one LUN list: a host in a group sees
// the group's disks, at the LUN ids the target maps them to (ceph-iscsi's
// groups:{<name>:{members, disks}}).
type HostGroup struct {
	Name string `json:"name" yaml:"name"`
	// Members are initiator IQNs; each must be one of the target's hosts
	// and belongs to at most one group.
	Members []string `json:"members,omitempty" yaml:"members,omitempty"`
	// Disks are disk names the target maps.
	Disks []string `json:"disks,omitempty" yaml:"disks,omitempty"`
}

// Gateway returns the gateway with the given name.
func (c *Config) Gateway(name string) (*Gateway, bool) {
	return find(c.Gateways, func(g *Gateway) bool { return g.Name == name })
}

// find returns a pointer to the first element of s that match accepts.
func find[T any](s []T, match func(*T) bool) (*T, bool) {
	for i := range s {
		if match(&s[i]) {
			return &s[i], true
		}
	}
	return nil, false
}

// Cluster returns a copy without the per-process settings (portals and
// data_dir): what the store keeps and every gateway shares.
func (c Config) Cluster() Config {
	s := c.Clone()
	s.Portals = nil
	s.DataDir = ""
	return s
}

// Local holds a gateway process's own settings: they come from its
// command line, never from the store.
type Local struct {
	// GatewayName picks the process's entry in Config.Gateways.
	GatewayName string
	// DataDir replaces Config.DataDir when set.
	DataDir string
	// Portals replace Config.Portals when set and the configuration has no
	// gateways (a single gateway, in a file or the embedded store).
	Portals []string
}

// ForGateway returns the configuration the gateway process l runs.
//
// Without Gateways (a configuration file, or a single gateway on the
// embedded store) the process serves l.Portals, else c.Portals. With
// Gateways, it serves the portals of the gateway named l.GatewayName and
// only the targets that list it (or list no gateway); a name the
// configuration lacks is an error, because serving another gateway's
// portals would be worse than not starting.
func (c Config) ForGateway(l Local) (Config, error) {
	out := c.Clone()
	if l.DataDir != "" {
		out.DataDir = l.DataDir
	}
	if len(c.Gateways) == 0 {
		if len(l.Portals) > 0 {
			out.Portals = slices.Clone(l.Portals)
		}
		return out, nil
	}
	gw, ok := c.Gateway(l.GatewayName)
	if !ok {
		names := make([]string, len(c.Gateways))
		for i, g := range c.Gateways {
			names[i] = g.Name
		}
		return Config{}, fmt.Errorf("gateway %q is not in the configuration (gateways: %s); start with --gateway-name set to one of them",
			l.GatewayName, strings.Join(names, ", "))
	}
	out.Portals = slices.Clone(gw.Portals)
	out.Targets = slices.DeleteFunc(out.Targets, func(t Target) bool {
		return len(t.Gateways) > 0 && !slices.Contains(t.Gateways, l.GatewayName)
	})
	return out, nil
}

// HostLUNs returns the LUN ids the initiator iqn may see: its group's
// disks, else the host's own luns list (none when it has none). restricted
// is false when iqn is not a host of the target: an initiator admitted by
// the target's CHAP or an open ACL sees every LUN.
func (t *Target) HostLUNs(iqn string) (ids []uint64, restricted bool) {
	for _, g := range t.HostGroups {
		if !slices.ContainsFunc(g.Members, func(m string) bool { return strings.EqualFold(m, iqn) }) {
			continue
		}
		for _, m := range t.LUNs {
			if slices.Contains(g.Disks, m.Disk) {
				ids = append(ids, m.LUNID)
			}
		}
		return ids, true
	}
	for _, h := range t.Hosts {
		if strings.EqualFold(h.IQN, iqn) {
			return h.LUNs, true
		}
	}
	return nil, false
}

// Sort puts every list the store keeps as separate keys in its canonical
// order (gateways, disks and groups by name, targets and hosts by IQN,
// LUN maps by id), so a configuration read back equals the one written.
// Lists kept inside one key (a target's gateways, a group's members) keep
// their order.
func (c *Config) Sort() {
	slices.SortFunc(c.Gateways, func(a, b Gateway) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Disks, func(a, b Disk) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Targets, func(a, b Target) int { return cmp.Compare(a.IQN, b.IQN) })
	for i := range c.Targets {
		t := &c.Targets[i]
		slices.SortFunc(t.LUNs, func(a, b LUNMap) int { return cmp.Compare(a.LUNID, b.LUNID) })
		slices.SortFunc(t.Hosts, func(a, b Host) int { return cmp.Compare(a.IQN, b.IQN) })
		slices.SortFunc(t.HostGroups, func(a, b HostGroup) int { return cmp.Compare(a.Name, b.Name) })
	}
}

// PrepareUpdate turns next, a changed copy of old, into what a store
// writes, or says why it may not: per-process settings are dropped,
// gateways added with tpg_id 0 get fresh ids above LastTPGID, disks
// without a wwn get one when the configuration lists gateways, lists are
// sorted, and the result must validate (ValidateCluster) and respect the
// rules that tie it to old (a gateway keeps its tpg_id; ids are never
// reused; a disk keeps its wwn). Both stores call it, so the API and gwcli can call it first to
// show the same errors.
func PrepareUpdate(old Config, next *Config) error {
	next.Portals = nil
	next.DataDir = ""
	if next.LastTPGID < old.LastTPGID {
		next.LastTPGID = old.LastTPGID
	}
	for _, g := range next.Gateways {
		next.LastTPGID = max(next.LastTPGID, g.TPGID)
	}
	var e errs
	for i := range next.Gateways {
		g := &next.Gateways[i]
		path := fmt.Sprintf("gateways[%d].tpg_id", i)
		prev, existed := old.Gateway(g.Name)
		switch {
		case existed && g.TPGID == 0:
			g.TPGID = prev.TPGID
		case existed && g.TPGID != prev.TPGID:
			e.add(path, g.TPGID, "gateway %s has tpg_id %d; a port group id never changes", g.Name, prev.TPGID)
		case existed:
		case g.TPGID == 0:
			if next.LastTPGID == maxTPGID {
				e.add(path, g.TPGID, "every target port group id up to %d has been used", maxTPGID)
				continue
			}
			next.LastTPGID++
			g.TPGID = next.LastTPGID
		case g.TPGID <= old.LastTPGID:
			e.add(path, g.TPGID, "already given out (last_tpg_id is %d); ids are never reused, leave it 0 to get a new one", old.LastTPGID)
		}
	}
	oldWWN := make(map[string]string, len(old.Disks)) // a map: thousands of disks
	for _, d := range old.Disks {
		oldWWN[d.Name] = d.WWN
	}
	for i := range next.Disks {
		d := &next.Disks[i]
		prev := oldWWN[d.Name]
		switch {
		case prev != "" && d.WWN != prev:
			e.add(fmt.Sprintf("disks[%d].wwn", i), quote(d.WWN), "disk %s has wwn %s; an LU's identity never changes (initiators' multipath maps hold it)", d.Name, prev)
		case d.WWN == "" && len(next.Gateways) > 0:
			// Every gateway must present the same LU identity: a WWN each
			// gateway generated for itself would make one disk look like
			// several to a multipathing initiator.
			w, err := NewWWN()
			if err != nil {
				return err
			}
			d.WWN = w
		}
	}
	next.Sort()
	if len(e.list) > 0 {
		return joinErrs(e)
	}
	return next.ValidateCluster()
}

const maxTPGID = 1<<16 - 1

func validateGateways(e *errs, c *Config) map[string]int {
	names := map[string]int{}
	tpgs := map[uint16]int{}
	portals := map[string]string{}
	for i := range c.Gateways {
		g := &c.Gateways[i]
		path := fmt.Sprintf("gateways[%d]", i)
		if !validDNSName(g.Name) {
			e.add(path+".name", quote(g.Name), "want a host name (letters, digits, '-' and '.', at most 253 bytes)")
		}
		if j, dup := names[g.Name]; dup {
			e.add(path+".name", quote(g.Name), "duplicate of gateways[%d]", j)
		} else {
			names[g.Name] = i
		}
		// SPC-4 6.37: a TARGET PORT GROUP field of 0 is not a group; the
		// store assigns 1-65535.
		if g.TPGID == 0 {
			e.add(path+".tpg_id", g.TPGID, "not assigned (the store assigns 1-65535 when a gateway is added)")
		} else if j, dup := tpgs[g.TPGID]; dup {
			e.add(path+".tpg_id", g.TPGID, "duplicate of gateways[%d]", j)
		} else {
			tpgs[g.TPGID] = i
		}
		if g.TPGID > c.LastTPGID {
			e.add(path+".tpg_id", g.TPGID, "above last_tpg_id %d", c.LastTPGID)
		}
		if len(g.Portals) == 0 {
			e.add(path+".portals", "[]", "a gateway needs at least one portal")
		}
		for k, p := range g.Portals {
			pp := fmt.Sprintf("%s.portals[%d]", path, k)
			if err := ValidatePortal(p); err != nil {
				e.add(pp, quote(p), "%v", err)
				continue
			}
			// Two gateways may both listen on every address of their own
			// host, not on the same specific address.
			if unspecifiedHost(p) {
				continue
			}
			if other, dup := portals[p]; dup {
				e.add(pp, quote(p), "also a portal of %s", other)
			} else {
				portals[p] = pp
			}
		}
	}
	return names
}

func validateHostGroups(e *errs, path string, t *Target) {
	hosts := map[string]*Host{}
	for i := range t.Hosts {
		hosts[strings.ToLower(t.Hosts[i].IQN)] = &t.Hosts[i]
	}
	mapped := map[string]bool{}
	for _, m := range t.LUNs {
		mapped[m.Disk] = true
	}
	names := map[string]int{}
	member := map[string]string{}
	for i, g := range t.HostGroups {
		gp := fmt.Sprintf("%s.groups[%d]", path, i)
		if !validGroupName(g.Name) {
			e.add(gp+".name", quote(g.Name), "want 1-64 characters of A-Z a-z 0-9 _ . -")
		}
		if j, dup := names[g.Name]; dup {
			e.add(gp+".name", quote(g.Name), "duplicate of %s.groups[%d]", path, j)
		} else {
			names[g.Name] = i
		}
		for k, m := range g.Members {
			mp := fmt.Sprintf("%s.members[%d]", gp, k)
			h, ok := hosts[strings.ToLower(m)]
			switch {
			case !ok:
				e.add(mp, quote(m), "not one of the target's hosts")
				continue
			case len(h.LUNs) > 0:
				e.add(mp, quote(m), "the host has its own luns list; a group member sees the group's disks only")
			}
			if other, dup := member[strings.ToLower(m)]; dup {
				e.add(mp, quote(m), "already a member of %s (a host is in at most one group)", other)
			} else {
				member[strings.ToLower(m)] = gp
			}
		}
		seen := map[string]bool{}
		for k, d := range g.Disks {
			dp := fmt.Sprintf("%s.disks[%d]", gp, k)
			if !mapped[d] {
				e.add(dp, quote(d), "the target maps no such disk")
			}
			if seen[d] {
				e.add(dp, quote(d), "listed twice")
			}
			seen[d] = true
		}
	}
}

func validateTargetGateways(e *errs, path string, t *Target, gateways map[string]int) {
	seen := map[string]bool{}
	for i, name := range t.Gateways {
		gp := fmt.Sprintf("%s.gateways[%d]", path, i)
		if _, ok := gateways[name]; !ok {
			e.add(gp, quote(name), "no gateway of that name in gateways")
		}
		if seen[name] {
			e.add(gp, quote(name), "listed twice")
		}
		seen[name] = true
	}
}

func validGroupName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(isAlnum(r) || strings.ContainsRune("_.-", r)) {
			return false
		}
	}
	return true
}
