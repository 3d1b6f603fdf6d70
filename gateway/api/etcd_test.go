package api

import (
	"context"
	"fmt"
	"net"
	"os"
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
	s, err := config.OpenEtcd(context.Background(), config.EtcdOptions{
		Endpoints: etcdMember.Endpoints(),
		Prefix:    fmt.Sprintf("/rbdgw-api-test/%d/", etcdPrefixN.Add(1)),
	})
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
