package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
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
//
// With a box, CHAP passwords are sealed (see SecretBox).
func encodeKeys(c *Config, box *SecretBox) (map[string][]byte, error) {
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
		put(keyDiscoveryAuth, box.sealCHAP(c.DiscoveryAuth))
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
		head.Auth = box.sealCHAP(head.Auth)
		put(base, head)
		for _, m := range t.LUNs {
			put(base+"/"+segLUNs+"/"+strconv.FormatUint(m.LUNID, 10), m)
		}
		for _, h := range t.Hosts {
			h.Auth = box.sealCHAP(h.Auth)
			put(base+"/"+segHosts+"/"+esc(h.IQN), h)
		}
		for _, g := range t.HostGroups {
			put(base+"/"+segGroups+"/"+esc(g.Name), g)
		}
	}
	return out, err
}

// keyDecoder rebuilds a configuration from its keys, in canonical order.
// A value that does not decode, or a key no object owns, is an error
// naming the key: serving a configuration with an object silently left
// out (a target, and with it its sessions) would be worse than keeping the
// last good one.
//
// It reuses the objects it decoded from the same bytes last time: a
// change to one LUN of thousands then costs one JSON decode, not
// thousands (decoding dominated an update's CPU time). Safe for
// concurrent use.
type keyDecoder struct {
	box  *SecretBox // opens sealed CHAP passwords; nil: none configured
	mu   sync.Mutex
	last map[string]decodedValue // the keys of the latest decode
}

type decodedValue struct {
	raw []byte
	v   any
}

func (d *keyDecoder) decode(kvs map[string][]byte) (Config, error) {
	d.mu.Lock()
	prev := d.last
	d.mu.Unlock()
	now := make(map[string]decodedValue, len(kvs))
	for k, raw := range kvs {
		if p, ok := prev[k]; ok && bytes.Equal(p.raw, raw) {
			now[k] = p
			continue
		}
		v, err := decodeValue(k, raw, d.box)
		if err != nil {
			return Config{}, fmt.Errorf("key %s: %w", k, err)
		}
		now[k] = decodedValue{raw: raw, v: v}
	}
	d.mu.Lock()
	d.last = now
	d.mu.Unlock()
	c, err := assemble(now)
	if err != nil {
		return Config{}, err
	}
	// Cached objects share their slices with this result: the caller
	// gets its own copy.
	return c.Clone(), nil
}

// decodeValue decodes one key's value into the object its key names,
// opening sealed passwords with box.
func decodeValue(k string, raw []byte, box *SecretBox) (any, error) {
	var v any
	switch {
	case k == keyEpoch:
		return nil, nil
	case k == keyDiscoveryAuth:
		v = new(CHAP)
	case k == keyCeph:
		v = new(Ceph)
	case k == keyLastTPGID:
		v = new(uint16)
	case strings.HasPrefix(k, keyGateways):
		v = new(Gateway)
	case strings.HasPrefix(k, keyDisks):
		v = new(Disk)
	case strings.HasPrefix(k, keyTargets):
		switch rest := k[len(keyTargets):]; {
		case !strings.Contains(rest, "/"):
			v = new(Target)
		case strings.Contains(rest, "/"+segLUNs+"/"):
			v = new(LUNMap)
		case strings.Contains(rest, "/"+segHosts+"/"):
			v = new(Host)
		case strings.Contains(rest, "/"+segGroups+"/"):
			v = new(HostGroup)
		default:
			return nil, errors.New("not a configuration key")
		}
	default:
		return nil, errors.New("not a configuration key")
	}
	// Target, Disk and the controls have strict decoders of their own.
	if err := strictJSON(raw, v); err != nil {
		return nil, err
	}
	// The key names the object: a value naming another one (a hand edit)
	// would be written back under a different key at the next update.
	var err error
	want := ""
	switch v := v.(type) {
	case *CHAP:
		err = box.openCHAP(v)
	case *Gateway:
		want = keyGateways + esc(v.Name)
	case *Disk:
		want = keyDisks + esc(v.Name)
	case *Target:
		want = keyTargets + esc(v.IQN)
		err = box.openCHAP(&v.Auth)
	case *LUNMap:
		want = "/" + segLUNs + "/" + strconv.FormatUint(v.LUNID, 10)
	case *Host:
		want = "/" + segHosts + "/" + esc(v.IQN)
		err = box.openCHAP(&v.Auth)
	case *HostGroup:
		want = "/" + segGroups + "/" + esc(v.Name)
	}
	if err == nil && want != "" && !strings.HasSuffix(k, want) {
		err = fmt.Errorf("the value names another object (its key would be ...%s)", want)
	}
	return v, err
}

// assemble puts decoded objects together into a configuration.
func assemble(objs map[string]decodedValue) (Config, error) {
	var c Config
	targets := map[string]*Target{}
	var children []string
	for _, k := range sortedKeys(objs) {
		switch v := objs[k].v.(type) {
		case *CHAP:
			c.DiscoveryAuth = *v
		case *Ceph:
			c.Ceph = *v
		case *uint16:
			c.LastTPGID = *v
		case *Gateway:
			c.Gateways = append(c.Gateways, *v)
		case *Disk:
			c.Disks = append(c.Disks, *v)
		case *Target:
			t := *v
			targets[k] = &t
		case nil:
		default:
			children = append(children, k)
		}
	}
	for _, k := range children {
		head := k[:len(keyTargets)+strings.Index(k[len(keyTargets):], "/")]
		t, ok := targets[head]
		if !ok {
			return Config{}, fmt.Errorf("key %s: no target key %s for it", k, head)
		}
		switch v := objs[k].v.(type) {
		case *LUNMap:
			t.LUNs = append(t.LUNs, *v)
		case *Host:
			t.Hosts = append(t.Hosts, *v)
		case *HostGroup:
			t.HostGroups = append(t.HostGroups, *v)
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
