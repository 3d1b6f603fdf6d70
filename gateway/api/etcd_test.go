package api

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rbdgw/rbdgw/config"
)

// One embedded etcd member serves every test of the package; each store
// gets its own key prefix.
var (
	etcdOnce    sync.Once
	etcdMember  *config.EmbeddedEtcd
	etcdErr     error
	etcdPrefixN atomic.Int64
)

func freeURL(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if etcdMember != nil {
		etcdMember.Close()
	}
	os.Exit(code)
}

// etcdStore is a store on a real, embedded etcd, holding initial.
func etcdStore(t *testing.T, initial config.Config) config.Store {
	etcdOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rbdgw-api-etcd")
		if err != nil {
			etcdErr = err
			return
		}
		etcdMember, etcdErr = config.StartEmbeddedEtcd(dir, freeURL(t), freeURL(t), nil)
	})
	if etcdErr != nil {
		t.Fatalf("embedded etcd: %v", etcdErr)
	}
	o := etcdMember.StoreOptions()
	o.Prefix = fmt.Sprintf("/rbdgw-api-test/%d/", etcdPrefixN.Add(1))
	s, err := config.OpenEtcd(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Update(context.Background(), func(c *config.Config) error {
		*c = initial.Cluster()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

// With several gateways, /cluster reports each one up only while it holds
// its lease, and which gateway owns each disk, from the state the
// gateways keep in etcd.
func TestClusterShowsLeasesAndOwners(t *testing.T) {
	cfg := baseConfig()
	cfg.Gateways = []config.Gateway{{Name: "gw1", Portals: []string{"127.0.0.1:1"}, TPGID: 1}, {Name: "gw2", Portals: []string{"127.0.0.2:1"}, TPGID: 2}}
	cfg.LastTPGID = 2
	store := etcdStore(t, cfg)
	es := store.(*config.EtcdStore)
	state := config.StatePrefix(es.Prefix())
	ctx := context.Background()
	if _, err := es.Client().Put(ctx, state+"alive/gw1", "127.0.0.1:9"); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Client().Put(ctx, state+"owners/"+url.PathEscape("local/d1"), `{"owner":"gw1","epoch":3}`); err != nil {
		t.Fatal(err)
	}
	out := start(t, store, Options{}).client(t).must(200, "GET", "/cluster", nil)
	owners, _ := out["owners"].(map[string]any)
	if owners["local/d1"] != "gw1" {
		t.Errorf("owners %v, want local/d1 on gw1", out["owners"])
	}
	states := map[string]string{}
	for _, g := range out["gateways"].([]any) {
		m := g.(map[string]any)
		states[m["name"].(string)] = m["state"].(string)
	}
	if states["gw1"] != "up" || !strings.HasPrefix(states["gw2"], "down: no lease") {
		t.Errorf("gateway states %v: want gw1 up (lease), gw2 down", states)
	}
}
