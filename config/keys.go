package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The store keeps the cluster configuration as one key per object, so an
// update writes only what changed and two admins editing different objects
// do not collide on one big value. Keys, relative to the store's prefix
// (names are path-escaped, so a disk named "pool/image" stays one
// segment):
//
//	gateways/<name>                  Gateway
//	disks/<name>                     Disk
//	targets/<iqn>                    Target without luns, hosts, groups
//	targets/<iqn>/luns/<id>          LUNMap
//	targets/<iqn>/hosts/<iqn>        Host
//	targets/<iqn>/groups/<name>      HostGroup
//	discovery_auth                   CHAP
//	ceph                             Ceph
//	last_tpg_id                      number
//	epoch                            {"updated": time}, written by every update
//
// Values are JSON with the same field names as the configuration file.
const (
	keyGateways      = "gateways/"
	keyDisks         = "disks/"
	keyTargets       = "targets/"
	keyDiscoveryAuth = "discovery_auth"
	keyCeph          = "ceph"
	keyLastTPGID     = "last_tpg_id"
	// keyEpoch is put by every transaction that changes the configuration,
	// deletions included, so a concurrent update always shows in the
	// ranged revision compare (see EtcdStore.Update).
	keyEpoch = "epoch"
)

const (
	segLUNs   = "luns"
	segHosts  = "hosts"
	segGroups = "groups"
)

func esc(name string) string { return url.PathEscape(name) }

// encodeKeys turns a cluster configuration into its keys and JSON values.
// Zero-valued singletons (no discovery CHAP, default Ceph settings) have no
// key, so an empty configuration is an empty prefix.
func encodeKeys(c *Config) (map[string][]byte, error) {
	out := map[string][]byte{}
	var err error
	put := func(key string, v any) {
		if err != nil {
			return
		}
		var b []byte
		if b, err = json.Marshal(v); err != nil {
			err = fmt.Errorf("encode %s: %w", key, err)
			return
		}
		if _, dup := out[key]; dup {
			err = fmt.Errorf("encode: two objects map to key %s", key)
			return
		}
		out[key] = b
	}
	if c.DiscoveryAuth != (CHAP{}) {
		put(keyDiscoveryAuth, c.DiscoveryAuth)
	}
	if c.Ceph != (Ceph{}) {
		put(keyCeph, c.Ceph)
	}
	if c.LastTPGID != 0 {
		put(keyLastTPGID, c.LastTPGID)
	}
	for _, g := range c.Gateways {
		put(keyGateways+esc(g.Name), g)
	}
	for _, d := range c.Disks {
		put(keyDisks+esc(d.Name), d)
	}
	for _, t := range c.Targets {
		base := keyTargets + esc(t.IQN)
		head := t
		head.LUNs, head.Hosts, head.HostGroups = nil, nil, nil
		put(base, head)
		for _, m := range t.LUNs {
			put(base+"/"+segLUNs+"/"+strconv.FormatUint(m.LUNID, 10), m)
		}
		for _, h := range t.Hosts {
			put(base+"/"+segHosts+"/"+esc(h.IQN), h)
		}
		for _, g := range t.HostGroups {
			put(base+"/"+segGroups+"/"+esc(g.Name), g)
		}
	}
	return out, err
}

// decodeKeys rebuilds a configuration from its keys, in canonical order. A
// value that does not decode, or a key no object owns, is an error naming
// the key: serving a configuration with an object silently left out (a
// target, and with it its sessions) would be worse than keeping the last
// good one.
func decodeKeys(kvs map[string][]byte) (Config, error) {
	var c Config
	targets := map[string]*Target{}
	var children []string
	for _, k := range sortedKeys(kvs) {
		v := kvs[k]
		var err error
		switch {
		case k == keyEpoch:
		case k == keyDiscoveryAuth:
			err = strictJSON(v, &c.DiscoveryAuth)
		case k == keyCeph:
			err = strictJSON(v, &c.Ceph)
		case k == keyLastTPGID:
			err = strictJSON(v, &c.LastTPGID)
		case strings.HasPrefix(k, keyGateways):
			var g Gateway
			err = strictJSON(v, &g)
			c.Gateways = append(c.Gateways, g)
		case strings.HasPrefix(k, keyDisks):
			var d Disk
			err = json.Unmarshal(v, &d) // Disk's own decoder is strict
			c.Disks = append(c.Disks, d)
		case strings.HasPrefix(k, keyTargets) && !strings.Contains(k[len(keyTargets):], "/"):
			t := new(Target)
			err = json.Unmarshal(v, t)
			targets[k] = t
		case strings.HasPrefix(k, keyTargets):
			children = append(children, k)
		default:
			err = fmt.Errorf("not a configuration key")
		}
		if err != nil {
			return Config{}, fmt.Errorf("key %s: %w", k, err)
		}
	}
	for _, k := range children {
		head, kind, _ := strings.Cut(k, "/"+segLUNs+"/")
		if kind == "" {
			head, kind, _ = strings.Cut(k, "/"+segHosts+"/")
		}
		if kind == "" {
			head, kind, _ = strings.Cut(k, "/"+segGroups+"/")
		}
		t, ok := targets[head]
		if !ok {
			return Config{}, fmt.Errorf("key %s: no target key %s for it", k, head)
		}
		var err error
		switch seg := k[len(head)+1:]; {
		case strings.HasPrefix(seg, segLUNs+"/"):
			var m LUNMap
			err = strictJSON(kvs[k], &m)
			t.LUNs = append(t.LUNs, m)
		case strings.HasPrefix(seg, segHosts+"/"):
			var h Host
			err = strictJSON(kvs[k], &h)
			t.Hosts = append(t.Hosts, h)
		case strings.HasPrefix(seg, segGroups+"/"):
			var g HostGroup
			err = strictJSON(kvs[k], &g)
			t.HostGroups = append(t.HostGroups, g)
		default:
			err = fmt.Errorf("not a configuration key")
		}
		if err != nil {
			return Config{}, fmt.Errorf("key %s: %w", k, err)
		}
	}
	for _, k := range sortedKeys(targets) {
		c.Targets = append(c.Targets, *targets[k])
	}
	c.Sort()
	return c, nil
}

// keyDiff lists the keys to put (new or changed value) and to delete to
// turn old into next.
func keyDiff(old, next map[string][]byte) (put, del []string) {
	for _, k := range sortedKeys(next) {
		if ov, ok := old[k]; !ok || !bytes.Equal(ov, next[k]) {
			put = append(put, k)
		}
	}
	for _, k := range sortedKeys(old) {
		if _, ok := next[k]; !ok && k != keyEpoch {
			del = append(del, k)
		}
	}
	return put, del
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
