package config

import (
	"context"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// schemaKey, in the state prefix, records the access semantics the
// stored configuration was written for. Absent: an older version, for
// which a target without hosts admitted every initiator and a host
// without LUNs saw every LUN of its target.
const (
	schemaKey         = "schema"
	schemaDenyDefault = "2"
)

// MigrateToDenyByDefault keeps a configuration written by an older
// version working as it did, now that access is denied by default: each
// target it left open to everyone (no hosts, no CHAP, some LUNs) gets an
// explicit acl: open, and each host without a LUN list (and no group)
// gets its target's LUNs. It runs once per cluster: the first gateway to
// start marks the store, so targets created afterwards are deny by
// default. It returns what it changed, for the log; an admin closes the
// opened targets by giving them hosts.
func (s *EtcdStore) MigrateToDenyByDefault(ctx context.Context) ([]string, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	key := StatePrefix(s.prefix) + schemaKey
	// Marking first: should the rewrite below fail, the store errs on the
	// closed side (the gateways log what now admits nobody).
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, schemaDenyDefault)).
		Commit()
	if err != nil {
		return nil, unavailable(ctx, "mark the configuration schema", err)
	}
	if !resp.Succeeded {
		return nil, nil
	}
	var changes []string
	_, err = s.Update(ctx, func(c *Config) error {
		changes = keepOldAccess(c)
		return nil
	})
	return changes, err
}

// keepOldAccess rewrites c so that it grants what it granted under the
// old open defaults, and says what it changed.
func keepOldAccess(c *Config) []string {
	var changes []string
	for i := range c.Targets {
		t := &c.Targets[i]
		if len(t.Hosts) == 0 && !t.Auth.Enabled() && t.ACL == "" && len(t.LUNs) > 0 {
			t.ACL = ACLOpen
			changes = append(changes, fmt.Sprintf("target %s had no hosts and no CHAP, so it admitted every initiator: set acl: open to keep that; give it hosts to close it", t.IQN))
		}
		all := make([]uint64, 0, len(t.LUNs))
		for _, m := range t.LUNs {
			all = append(all, m.LUNID)
		}
		slices.Sort(all)
		for j := range t.Hosts {
			h := &t.Hosts[j]
			if len(h.LUNs) > 0 || len(all) == 0 || inGroup(t, h.IQN) {
				continue
			}
			h.LUNs = slices.Clone(all)
			changes = append(changes, fmt.Sprintf("host %s of target %s had no LUN list, so it saw every LUN: given LUNs %v to keep that", h.IQN, t.IQN, all))
		}
	}
	return changes
}

// inGroup reports whether iqn is a member of one of t's host groups.
func inGroup(t *Target, iqn string) bool {
	return slices.ContainsFunc(t.HostGroups, func(g HostGroup) bool {
		return slices.ContainsFunc(g.Members, func(m string) bool { return strings.EqualFold(m, iqn) })
	})
}
