package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/internal/loopback"
)

// TestClusterSecretKey: secrets are sealed by default. The first gateway
// of a cluster generates the key in its data directory; a gateway without
// it, or with another key, refuses to start and says what to copy; with
// the copy it starts; CHAP passwords reach etcd sealed, and a password
// an older version stored in clear is sealed by a gateway's start.
func TestClusterSecretKey(t *testing.T) {
	m, err := config.StartEmbeddedEtcd(t.TempDir(), loopback.FreeURL(t), loopback.FreeURL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	auth := m.StoreOptions()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	opts := func() *StoreOptions {
		o := &StoreOptions{Endpoints: auth.Endpoints, User: auth.Username, Password: auth.Password,
			ClusterName: "keys", DialTimeout: 5 * time.Second}
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		return o
	}
	first, second := t.TempDir(), t.TempDir()
	s, closeFirst, err := opts().Open(ctx, first, log)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(first, secretKeyFile)
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("generated key %v %v", st, err)
	}

	// No key here while the cluster has one: refused, naming the copy.
	if _, _, err := opts().Open(ctx, second, log); !errors.Is(err, config.ErrNoClusterKey) || !strings.Contains(err.Error(), "copy") {
		t.Fatalf("second gateway without the key: %v", err)
	}
	// Another key: refused.
	other := filepath.Join(second, "other.key")
	if _, err := config.GenerateSecretKey(other); err != nil {
		t.Fatal(err)
	}
	o := opts()
	o.SecretKeyFile = other
	if _, _, err := o.Open(ctx, second, log); !errors.Is(err, config.ErrNoClusterKey) {
		t.Fatalf("second gateway with another key: %v", err)
	}
	// The copy works, and both derive the same peer link key.
	b, _ := os.ReadFile(keyPath)
	os.WriteFile(filepath.Join(second, secretKeyFile), b, 0o600)
	s2, closeSecond, err := opts().Open(ctx, second, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSecond()
	if p1, p2 := PeerSecret(s), PeerSecret(s2); len(p1) < 16 || string(p1) != string(p2) {
		t.Fatalf("peer secrets %x %x", p1, p2)
	}

	// A password written through the store is sealed in etcd.
	const pw = "hostpassword1"
	if _, err := s.Update(ctx, func(c *config.Config) error {
		c.DiscoveryAuth = config.CHAP{Username: "discovery1", Password: pw}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	raw := func() string {
		cli, err := clientv3.New(m.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		resp, err := cli.Get(ctx, config.EtcdPrefix("keys"), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		for _, kv := range resp.Kvs {
			out.Write(kv.Value)
		}
		return out.String()
	}
	if got := raw(); strings.Contains(got, pw) || !strings.Contains(got, "enc:v1:") {
		t.Fatalf("etcd holds: %s", got)
	}
	closeFirst()

	// A password stored in clear (by an older version) is sealed at start.
	clear, err := config.OpenEtcd(ctx, config.EtcdOptions{Endpoints: auth.Endpoints, Username: auth.Username,
		Password: auth.Password, Prefix: config.EtcdPrefix("keys")})
	if err != nil {
		t.Fatal(err)
	}
	defer clear.Close()
	cli := clear.Client()
	if _, err := cli.Put(ctx, config.EtcdPrefix("keys")+"discovery_auth", `{"username":"discovery1","password":"`+pw+`"}`); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(raw(), pw) {
		t.Fatal("the clear password was not planted")
	}
	sealClearSecrets(ctx, s2, log)
	if got := raw(); strings.Contains(got, pw) {
		t.Fatalf("still in clear after a start: %s", got)
	}
	if c, _, err := s2.Get(ctx); err != nil || c.DiscoveryAuth.Password != pw {
		t.Fatalf("read back %q %v", c.DiscoveryAuth.Password, err)
	}
}
