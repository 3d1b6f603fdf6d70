//go:build rbd

package gateway

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway/ha"
	"github.com/rbdgw/rbdgw/internal/loopback"
)

// clusterMember is one gateway of an in-process cluster: its own etcd
// client (closing it makes the gateway fall silent, as a crash would) and
// its ha membership.
type clusterMember struct {
	g    *Gateway
	cli  *clientv3.Client
	tpg  uint16
	name string
}

// TestRBDClusterFailover: two gateways serve one rbd: disk through
// gateway/ha. One owns it (holds the lock; the other answers NOT READY
// 04/0A to writes); when the owner falls silent, the other claims the LU
// after the lease expires, breaks the lock and blocklists the old owner,
// whose later writes fail while the new owner's land.
func TestRBDClusterFailover(t *testing.T) {
	conf := rbdTestConf(t)
	image := rbdTestImage(t, conf)
	etcd, err := config.StartEmbeddedEtcd(t.TempDir(), loopback.FreeURL(t), loopback.FreeURL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	base := rbdGatewayConfig(t, conf, image, 16<<20)
	base.LastTPGID = 2
	base.Gateways = []config.Gateway{
		{Name: "gw-a", Portals: []string{"127.0.0.1:3260"}, TPGID: 1},
		{Name: "gw-b", Portals: []string{"127.0.0.2:3260"}, TPGID: 2},
	}
	start := func(name string, tpg uint16) *clusterMember {
		cli, err := clientv3.New(etcd.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		cl, err := ha.Join(context.Background(), cli, ha.Options{Self: name, StatePrefix: "/rbdgw/test.state/", LeaseTTL: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c := base.Clone()
		c.DataDir = t.TempDir()
		g, err := Start(Config{Config: c, Cluster: cl})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		return &clusterMember{g: g, cli: cli, tpg: tpg, name: name}
	}
	a, b := start("gw-a", 1), start("gw-b", 2)
	owns := func(m *clusterMember) bool { ok, _ := m.g.OwnsDisk("r0"); return ok }
	deadline := time.Now().Add(10 * time.Second)
	for owns(a) == owns(b) {
		if time.Now().After(deadline) {
			t.Fatalf("no single owner: gw-a %v, gw-b %v", owns(a), owns(b))
		}
		time.Sleep(20 * time.Millisecond)
	}
	owner, other := a, b
	if owns(b) {
		owner, other = b, a
	}
	runner := func(m *clusterMember, initiator string) *cmdRunner {
		r := newCmdRunner(t, m.g.LogicalUnits()["r0"], initiator)
		r.nexus.RelativeTargetPort, r.nexus.TargetPortGroup = m.tpg, m.tpg
		return r
	}
	ro, rn := runner(owner, "iqn.2026-12.test:one"), runner(other, "iqn.2026-12.test:two")
	// past the unit attentions of the new nexus and the ALUA states
	for i := 0; i < 5 && ro.exec([]byte{0, 0, 0, 0, 0, 0}, nil, 0).Status != 0; i++ {
	}
	before := randomBytes(4096)
	ro.good("write at the owner", ro.write(0, before))
	var resp = rn.write(0, randomBytes(4096))
	for i := 0; i < 5 && senseString(resp.Sense) == "06/2a/06"; i++ {
		resp = rn.write(0, randomBytes(4096))
	}
	rn.sense("write at the non-owner", resp, "02/04/0a")
	// Path checkers send TEST UNIT READY to every path: a non-owner's path
	// is healthy.
	rn.good("TEST UNIT READY at the non-owner", rn.exec([]byte{0, 0, 0, 0, 0, 0}, nil, 0))

	killed := time.Now()
	owner.cli.Close() // the owner falls silent: no keep-alives, no revoke
	for !owns(other) {
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("%s did not take the LU over after %s fell silent", other.name, owner.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s serves %s after the owner fell silent (lease TTL 2s)", other.name, time.Since(killed))
	after := randomBytes(4096)
	resp = rn.write(0, after)
	for i := 0; i < 10 && resp.Status != 0; i++ { // unit attentions, transition
		time.Sleep(50 * time.Millisecond)
		resp = rn.write(0, after)
	}
	rn.good("write at the new owner", resp)
	stale := ro.write(0, randomBytes(4096))
	if stale.Status == 0 {
		t.Fatal("the fenced owner acknowledged a write after the takeover")
	}
	got, data := rn.read(0, 8)
	rn.good("read at the new owner", got)
	if string(data) != string(after) {
		t.Fatal("the image does not hold the new owner's write")
	}
}
