package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rbdgw/rbdgw/internal/loopback"
)

func TestSecretBox(t *testing.T) {
	key := bytes.Repeat([]byte{7}, SecretKeySize)
	b, err := NewSecretBox(key)
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := b.seal("password1234"), b.seal("password1234")
	if s1 != s2 || !strings.HasPrefix(s1, sealedPrefix) || strings.Contains(s1, "password1234") {
		t.Fatalf("seal: %q %q", s1, s2)
	}
	if p, err := b.open(s1); err != nil || p != "password1234" {
		t.Fatalf("open: %q %v", p, err)
	}
	if p, err := b.open("clearpass1234"); err != nil || p != "clearpass1234" {
		t.Fatalf("clear passes: %q %v", p, err)
	}
	other, _ := NewSecretBox(bytes.Repeat([]byte{8}, SecretKeySize))
	if _, err := other.open(s1); err == nil {
		t.Fatal("opened with another key")
	}
	var none *SecretBox
	if _, err := none.open(s1); err != errSealed {
		t.Fatalf("no key: %v", err)
	}
	if _, err := b.open(sealedPrefix + "!!"); err == nil {
		t.Fatal("malformed accepted")
	}
	if _, err := NewSecretBox(key[:16]); err == nil {
		t.Fatal("short key accepted")
	}
}

func TestLoadSecretKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "k")
	os.WriteFile(good, []byte("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"), 0o600)
	if k, err := LoadSecretKey(good); err != nil || !bytes.Equal(k, bytes.Repeat([]byte{7}, 32)) {
		t.Fatalf("%x %v", k, err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("c2hvcnQ=\n"), 0o600)
	if _, err := LoadSecretKey(bad); err == nil {
		t.Fatal("short key accepted")
	}
}

// TestEtcdSealsPasswords: with a secret key etcd never holds a CHAP
// password in clear; Get returns them; a store without the key (or with
// another) refuses to read rather than serve wrong credentials.
func TestEtcdSealsPasswords(t *testing.T) {
	m, err := StartEmbeddedEtcd(t.TempDir(), loopback.FreeURL(t), loopback.FreeURL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	open := func(key []byte) *EtcdStore {
		o := m.StoreOptions()
		o.Prefix, o.SecretKey = "/sealed/", key
		s, err := OpenEtcd(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	key := bytes.Repeat([]byte{7}, SecretKeySize)
	s := open(key)
	want := sampleCluster()
	want.Targets[0].Auth = CHAP{Username: "target_user", Password: "targetpass12", MutualUsername: "mutual_user", MutualPassword: "mutualpass12"}
	want.Targets[0].Hosts[0].Auth = CHAP{Username: "host_user", Password: "hostpass1234"}
	e1, err := s.Update(ctxT(t), set(want))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(m.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	raw, err := cli.Get(ctxT(t), "/sealed/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range raw.Kvs {
		for _, secret := range []string{"discoverypass", "targetpass12", "mutualpass12", "hostpass1234"} {
			if bytes.Contains(kv.Value, []byte(secret)) {
				t.Errorf("%s holds %s in clear", kv.Key, secret)
			}
		}
	}
	got, _ := mustGet(t, s)
	if got.DiscoveryAuth.Password != "discoverypass" || got.Targets[0].Auth.MutualPassword != "mutualpass12" {
		t.Fatalf("passwords not opened: %+v", got.Targets[0].Auth)
	}
	// Sealing is deterministic, so an unchanged configuration writes
	// nothing.
	if e, err := s.Update(ctxT(t), func(*Config) error { return nil }); err != nil || e != e1 {
		t.Fatalf("no-op update: %d %v (was %d)", e, err, e1)
	}
	if _, _, err := open(nil).Get(ctxT(t)); err == nil || !strings.Contains(err.Error(), "secret key") {
		t.Fatalf("without the key: %v", err)
	}
	if _, _, err := open(bytes.Repeat([]byte{8}, SecretKeySize)).Get(ctxT(t)); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("with another key: %v", err)
	}
}

// The embedded member has client auth: an anonymous client (any user of
// the host can reach its loopback port) reads nothing, and its root
// password is kept 0600 beside its data.
func TestEmbeddedEtcdRefusesAnonymousReads(t *testing.T) {
	dataDir := t.TempDir()
	m, s := embeddedStore(t, dataDir, "/anon/")
	if _, err := s.Client().Put(ctxT(t), "/anon/x", "secret"); err != nil {
		t.Fatal(err)
	}
	anon, err := clientv3.New(clientv3.Config{Endpoints: m.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if resp, err := anon.Get(ctxT(t), "", clientv3.WithPrefix()); err == nil {
		t.Fatalf("anonymous range read answered %d keys", len(resp.Kvs))
	}
	wrong := m.ClientConfig()
	wrong.Password = "guess"
	if cli, err := clientv3.New(wrong); err == nil {
		_, err = cli.Get(ctxT(t), "/anon/x")
		cli.Close()
		if err == nil {
			t.Fatal("a wrong root password read a key")
		}
	}
	st, err := os.Stat(EmbeddedEtcdPasswordFile(dataDir))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", st, err)
	}
}

// A configuration an older version stored (open targets, hosts seeing
// every LUN) keeps granting what it granted, made explicit, once; what is
// created afterwards is deny by default.
func TestMigrateToDenyByDefault(t *testing.T) {
	_, s := embeddedStore(t, t.TempDir(), "/migrate/")
	old := Default()
	old.Disks = []Disk{NewDisk("d0", "file:d0.img", 1<<20), NewDisk("d1", "file:d1.img", 1<<20)}
	open := NewTarget("iqn.2026-11.io.rbdgw:open")
	open.LUNs = []LUNMap{{LUNID: 0, Disk: "d0"}}
	hosts := NewTarget("iqn.2026-11.io.rbdgw:hosts")
	hosts.LUNs = []LUNMap{{LUNID: 3, Disk: "d0"}, {LUNID: 1, Disk: "d1"}}
	hosts.Hosts = []Host{{IQN: "iqn.2026-11.io.rbdgw:all"}, {IQN: "iqn.2026-11.io.rbdgw:some", LUNs: []uint64{1}}}
	old.Targets = []Target{open, hosts}
	if _, err := s.Update(ctxT(t), func(c *Config) error { *c = old.Cluster(); return nil }); err != nil {
		t.Fatal(err)
	}
	changes, err := s.MigrateToDenyByDefault(ctxT(t))
	if err != nil || len(changes) != 2 {
		t.Fatalf("changes %q %v", changes, err)
	}
	target := func(c Config, iqn string) Target {
		for _, t := range c.Targets {
			if t.IQN == iqn {
				return t
			}
		}
		t.Fatalf("no target %s", iqn)
		return Target{}
	}
	c, _, _ := s.Get(ctxT(t))
	o2, h2 := target(c, "iqn.2026-11.io.rbdgw:open"), target(c, "iqn.2026-11.io.rbdgw:hosts")
	if o2.ACL != ACLOpen || fmt.Sprint(h2.Hosts[0].LUNs) != "[1 3]" || fmt.Sprint(h2.Hosts[1].LUNs) != "[1]" {
		t.Fatalf("after migration: %+v %+v", o2, h2.Hosts)
	}
	// Once only: a target created now stays closed.
	if _, err := s.Update(ctxT(t), func(c *Config) error {
		nt := NewTarget("iqn.2026-11.io.rbdgw:new")
		nt.LUNs = []LUNMap{{LUNID: 0, Disk: "d1"}}
		c.Targets = append(c.Targets, nt)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if changes, err := s.MigrateToDenyByDefault(ctxT(t)); err != nil || len(changes) != 0 {
		t.Fatalf("second run: %q %v", changes, err)
	}
	c, _, _ = s.Get(ctxT(t))
	if nt := target(c, "iqn.2026-11.io.rbdgw:new"); nt.ACL != "" {
		t.Fatalf("a target created after the migration was opened: %+v", nt)
	}
}

// embeddedStore starts an embedded member with its data in dataDir and
// opens the store under prefix on it; both end with the test.
func embeddedStore(t *testing.T, dataDir, prefix string) (*EmbeddedEtcd, *EtcdStore) {
	t.Helper()
	m, err := StartEmbeddedEtcd(dataDir, loopback.FreeURL(t), loopback.FreeURL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	o := m.StoreOptions()
	o.Prefix = prefix
	s, err := OpenEtcd(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}
