package ha_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rbdgw/rbdgw/alua"
	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway/ha"
	"github.com/rbdgw/rbdgw/internal/loopback"
	"github.com/rbdgw/rbdgw/rbdlun"
	"github.com/rbdgw/rbdgw/scsi"
)

// startEtcd starts an embedded single-member etcd for the test and
// returns how to reach it.
func startEtcd(t *testing.T) clientv3.Config {
	t.Helper()
	e, err := config.StartEmbeddedEtcd(t.TempDir(), loopback.FreeURL(t), loopback.FreeURL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e.ClientConfig()
}

func newClient(t *testing.T, eps clientv3.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(eps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

const prefix = "/rbdgw/state/v1/test/"

func join(t *testing.T, eps clientv3.Config, self string) (*ha.Cluster, *clientv3.Client) {
	return joinWith(t, eps, ha.Options{Self: self})
}

// joinWith joins with o, filling in the test's prefix and a 2 s lease.
func joinWith(t *testing.T, eps clientv3.Config, o ha.Options) (*ha.Cluster, *clientv3.Client) {
	t.Helper()
	cli := newClient(t, eps)
	o.StatePrefix, o.LeaseTTL = prefix, 2*time.Second
	c, err := ha.Join(context.Background(), cli, o)
	if err != nil {
		t.Fatal(err)
	}
	return c, cli
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestMembershipSeesGatewaysJoinAndLeave(t *testing.T) {
	eps := startEtcd(t)
	a, _ := join(t, eps, "gw-a")
	defer a.Leave()
	b, _ := join(t, eps, "gw-b")
	waitFor(t, "gw-a sees gw-b", 2*time.Second, func() bool { return len(a.Membership().Live()) == 2 })
	if !a.Membership().Valid() || !b.Membership().Valid() {
		t.Fatal("fresh leases are not valid")
	}
	// A clean leave revokes the lease: seen at once, not after the TTL.
	b.Leave()
	took := waitFor(t, "gw-a sees gw-b leave", time.Second, func() bool { return len(a.Membership().Live()) == 1 })
	t.Logf("clean leave seen after %s", took)
}

// A gateway that stops talking to etcd (crash, SIGSTOP) drops out after
// its lease TTL, and its own view of the lease ends before etcd's.
func TestLeaseExpiresWhenGatewayGoesSilent(t *testing.T) {
	eps := startEtcd(t)
	a, _ := join(t, eps, "gw-a")
	defer a.Leave()
	b, bcli := join(t, eps, "gw-b")
	waitFor(t, "gw-a sees gw-b", 2*time.Second, func() bool { return len(a.Membership().Live()) == 2 })
	start := time.Now()
	bcli.Close() // no more keep-alives, no revoke
	waitFor(t, "gw-b's own lease view ends", 3*time.Second, func() bool { return !b.Membership().Valid() })
	bInvalid := time.Since(start)
	waitFor(t, "gw-a sees gw-b's lease expire", 6*time.Second, func() bool { return len(a.Membership().Live()) == 1 })
	expired := time.Since(start)
	t.Logf("gw-b stopped trusting its lease after %s; etcd expired it after %s", bInvalid, expired)
	if bInvalid >= expired {
		t.Fatalf("gw-b trusted its lease (%s) until after etcd expired it (%s)", bInvalid, expired)
	}
	b.Leave()
}

// A lease etcd dropped (the gateway was stopped past its TTL) is replaced
// by a new one with a new generation; the old generation never becomes
// valid again, so an LU served under it stays unserved until re-acquired.
func TestLostLeaseIsReplacedByANewGeneration(t *testing.T) {
	eps := startEtcd(t)
	a, cli := join(t, eps, "gw-a")
	defer a.Leave()
	m := a.Membership()
	old := m.Lease()
	if !m.ValidLease(old) {
		t.Fatal("a fresh lease is not valid")
	}
	leases, err := cli.Leases(context.Background())
	if err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases: %v %v", leases, err)
	}
	if _, err := cli.Revoke(context.Background(), leases.Leases[0].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "gw-a notices the lost lease and takes a new one", 5*time.Second, func() bool {
		return m.Lease() != old && m.Valid()
	})
	if m.ValidLease(old) {
		t.Fatalf("lease generation %d is valid again after it was lost", old)
	}
	if !m.ValidLease(m.Lease()) {
		t.Fatal("the new lease is not valid")
	}
}

// gatewayLU is one gateway's view of a shared file image: its own file
// backend, LU, port groups and ownership driver.
type gatewayLU struct {
	lu     *scsi.LogicalUnit
	groups *alua.Dynamic
	drv    *ha.Driver
}

func serveLU(t *testing.T, c *ha.Cluster, self, image string, opts func(*alua.OwnerConfig)) *gatewayLU {
	t.Helper()
	be, err := rbdlun.OpenFile(image, 1<<20, rbdlun.FileOptions{NoLock: true})
	if err != nil {
		t.Fatal(err)
	}
	groups, err := alua.NewDynamic([]alua.Group{
		{ID: 1, State: alua.ActiveNonOptimized, RelativePorts: []uint16{1}},
		{ID: 2, State: alua.ActiveNonOptimized, RelativePorts: []uint16{2}},
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	lu, err := scsi.NewLogicalUnit(scsi.LUConfig{Name: "disk0", ALUA: groups, PRStore: c.PRStore(), Forwarder: c.Forwarder("disk0")}, be)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lu.Close() })
	oc := alua.DefaultOwnerConfig("disk0", self, []string{"gw-a", "gw-b"})
	oc.DemandWindow, oc.DemandGap, oc.MinHold, oc.ReleaseTimeout = 500*time.Millisecond, 300*time.Millisecond, time.Second, 2*time.Second
	if opts != nil {
		opts(&oc)
	}
	drv, err := c.AddLU(ha.LUConfig{Owner: oc, Groups: groups, GroupOf: map[string]uint16{"gw-a": 1, "gw-b": 2},
		Lock: &ha.FileImage{Path: image, Backend: be}, LU: lu})
	if err != nil {
		t.Fatal(err)
	}
	return &gatewayLU{lu: lu, groups: groups, drv: drv}
}

// One gateway serves (Active/Optimized at its port), the other answers
// TRANSITIONING; when the owner goes silent the survivor takes over after
// the lease expires, and the silent owner admits nothing any more.
func TestFailoverAfterOwnerLeaseExpires(t *testing.T) {
	eps := startEtcd(t)
	image := filepath.Join(t.TempDir(), "disk0.img")
	a, acli := join(t, eps, "gw-a")
	b, bcli := join(t, eps, "gw-b")
	la := serveLU(t, a, "gw-a", image, nil)
	lb := serveLU(t, b, "gw-b", image, nil)
	waitFor(t, "one owner", 5*time.Second, func() bool { return la.drv.Serving() != lb.drv.Serving() })
	owner, other, ownerCli, survivor := la, lb, acli, b
	ownerPort, otherPort := uint16(1), uint16(2)
	if lb.drv.Serving() {
		owner, other, ownerCli, survivor = lb, la, bcli, a
		ownerPort, otherPort = 2, 1
	}
	defer survivor.Leave()
	if st := owner.groups.AdmitAccess(context.Background(), ownerPort, alua.AccessWrite); st != alua.ActiveOptimized {
		t.Fatalf("owner admits media as %v", st)
	}
	if st := other.groups.AdmitAccess(context.Background(), otherPort, alua.AccessWrite); st != alua.Transitioning {
		t.Fatalf("non-owner admits media as %v, want transitioning", st)
	}
	ownerCli.Close() // the owner goes silent
	took := waitFor(t, "survivor serves", 8*time.Second, func() bool { return other.drv.Serving() })
	if st := owner.groups.AdmitAccess(context.Background(), ownerPort, alua.AccessWrite); st == alua.ActiveOptimized {
		t.Fatal("the silent owner still admits media commands after the takeover")
	}
	t.Logf("failover after the owner went silent: %s (lease TTL 2s)", took)
}

// twoGatewaysOnOneLU starts gw-a and gw-b on a fresh etcd, both serving
// one file image with owner settings adjusted by opts; they leave when
// the test ends.
func twoGatewaysOnOneLU(t *testing.T, opts func(*alua.OwnerConfig)) (la, lb *gatewayLU) {
	t.Helper()
	eps := startEtcd(t)
	image := filepath.Join(t.TempDir(), "disk0.img")
	a, _ := join(t, eps, "gw-a")
	b, _ := join(t, eps, "gw-b")
	la, lb = serveLU(t, a, "gw-a", image, opts), serveLU(t, b, "gw-b", image, opts)
	// Registered last, so it runs first: the drivers stop before the LUs
	// close.
	t.Cleanup(func() { a.Leave(); b.Leave() })
	return la, lb
}

// ownerOf returns which of two gateways' LUs serves, waiting for one.
func ownerOf(t *testing.T, la, lb *gatewayLU) (owner, other *gatewayLU, otherPort uint16) {
	t.Helper()
	waitFor(t, "one owner", 5*time.Second, func() bool { return la.drv.Serving() != lb.drv.Serving() })
	if la.drv.Serving() {
		return la, lb, 2
	}
	return lb, la, 1
}

// hammer sends media demand to port on g every 20 ms until stop closes.
func hammer(g *gatewayLU, port uint16, stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
			g.groups.AdmitAccess(context.Background(), port, alua.AccessWrite)
		}
	}
}

// Sustained demand at a non-owner moves the LU there gracefully (the
// owner drains and releases; no fencing); contending demand from both
// sides moves it at most once per ContendedHold.
func TestDemandMovesOwnershipWithoutPingPong(t *testing.T) {
	la, lb := twoGatewaysOnOneLU(t, func(oc *alua.OwnerConfig) { oc.ContendedHold = 2 * time.Second })
	owner, other, otherPort := ownerOf(t, la, lb)
	epoch := owner.drv.Owner().Epoch

	stop := make(chan struct{})
	go hammer(other, otherPort, stop)
	took := waitFor(t, "ownership follows sustained demand", 10*time.Second, func() bool { return other.drv.Serving() })
	close(stop)
	if owner.drv.Serving() {
		t.Fatal("both gateways serve")
	}
	if e := other.drv.Owner().Epoch; e != epoch+1 {
		t.Fatalf("epoch %d after one move from %d", e, epoch)
	}
	t.Logf("graceful move after sustained demand: %s", took)

	// Contention: both gateways get I/O for 6 s.
	before := other.drv.Owner().Epoch
	stop = make(chan struct{})
	go hammer(la, 1, stop)
	go hammer(lb, 2, stop)
	time.Sleep(6 * time.Second)
	close(stop)
	moves := lb.drv.Owner().Epoch - before
	t.Logf("ownership moves during 6 s of contention (ContendedHold 2s): %d", moves)
	if moves > 3 {
		t.Fatalf("ownership moved %d times in 6 s of contention (ping-pong)", moves)
	}
}

// The reservation store is a compare-and-swap on the state's version, and
// every gateway hears of a commit.
func TestPRStoreCompareAndSwap(t *testing.T) {
	eps := startEtcd(t)
	s1 := ha.NewPRStore(newClient(t, eps), prefix)
	s2 := ha.NewPRStore(newClient(t, eps), prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	heard := make(chan string, 4)
	go s2.Watch(ctx, func(lu string) { heard <- lu })
	time.Sleep(100 * time.Millisecond) // let the watch start

	st, err := s1.Load("lu/1")
	if err != nil || st.Version != 0 {
		t.Fatalf("empty load: %+v %v", st, err)
	}
	st.Version = 1
	st.Generation = 7
	if err := s1.Save("lu/1", st); err != nil {
		t.Fatal(err)
	}
	select {
	case lu := <-heard:
		if lu != "lu/1" {
			t.Fatalf("watch reported %q", lu)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the other gateway did not hear of the commit")
	}
	// A gateway with the old copy (version 0) cannot overwrite it.
	old := &scsi.PRState{Version: 1, Generation: 1}
	if err := s2.Save("lu/1", old); !errors.Is(err, scsi.ErrPRStale) {
		t.Fatalf("stale save: %v, want ErrPRStale", err)
	}
	got, err := s2.Load("lu/1")
	if err != nil || got.Version != 1 || got.Generation != 7 {
		t.Fatalf("after the stale save: %+v %v", got, err)
	}
}

// With ReadsAnywhere a non-owner serves reads while the owner is alive,
// without counting them as demand; writes still go to the owner.
func TestReadsAnywhereServesReadsAtNonOwner(t *testing.T) {
	la, lb := twoGatewaysOnOneLU(t, func(oc *alua.OwnerConfig) { oc.ReadsAnywhere = true })
	owner, other, otherPort := ownerOf(t, la, lb)
	waitFor(t, "the non-owner sees the owner's record", 2*time.Second, func() bool { return other.drv.Owner().Owner != "" })
	epoch := owner.drv.Owner().Epoch
	for i := 0; i < 100; i++ {
		if st := other.groups.AdmitAccess(context.Background(), otherPort, alua.AccessRead); st != alua.ActiveNonOptimized {
			t.Fatalf("read at the non-owner admitted as %v", st)
		}
		time.Sleep(15 * time.Millisecond) // 1.5 s of reads: longer than DemandWindow
	}
	if st := other.groups.AdmitAccess(context.Background(), otherPort, alua.AccessWrite); st != alua.Transitioning {
		t.Fatalf("write at the non-owner admitted as %v", st)
	}
	if !owner.drv.Serving() || owner.drv.Owner().Epoch != epoch {
		t.Fatal("reads at the non-owner moved the LU")
	}
}

// With peer links a non-owner serves writes and reads by forwarding them
// to the owner: GOOD at once, no NOT READY, and ownership stays put until
// the demand has lasted.
func TestNonOwnerForwardsToTheOwner(t *testing.T) {
	eps := startEtcd(t)
	image := filepath.Join(t.TempDir(), "disk0.img")
	secret := []byte("a test peer secret of 32 bytes..")
	a, _ := joinWith(t, eps, ha.Options{Self: "gw-a", PeerAddr: "127.0.0.1:0", PeerSecret: secret})
	b, _ := joinWith(t, eps, ha.Options{Self: "gw-b", PeerAddr: "127.0.0.1:0", PeerSecret: secret})
	long := func(oc *alua.OwnerConfig) { oc.DemandWindow, oc.MinHold = time.Minute, time.Minute }
	la, lb := serveLU(t, a, "gw-a", image, long), serveLU(t, b, "gw-b", image, long)
	t.Cleanup(func() { a.Leave(); b.Leave() })
	owner, other, otherPort := ownerOf(t, la, lb)
	waitFor(t, "the non-owner learns the owner's peer link", 5*time.Second, func() bool {
		return b.Membership().PeerAddr("gw-a") != "" && a.Membership().PeerAddr("gw-b") != ""
	})

	n := &scsi.Nexus{InitiatorPort: "iqn.2026-01.test:i,i,0x800000000001", InitiatorName: "iqn.2026-01.test:i",
		TargetPort: fmt.Sprintf("iqn.2026-01.test:t,t,0x%x", otherPort), RelativeTargetPort: otherPort, TargetPortGroup: otherPort}
	exec := func(lu *scsi.LogicalUnit, cdb, out []byte, in int) (scsi.Response, []byte) {
		cmd := &scsi.Command{Nexus: n, CDB: cdb, DataOut: out, DataIn: make([]byte, in), ExpectedLength: uint32(max(len(out), in))}
		if out != nil {
			cmd.Dir = scsi.DirWrite
		}
		if in > 0 {
			cmd.Dir |= scsi.DirRead
		}
		r := lu.Execute(context.Background(), cmd)
		return r, cmd.DataIn[:r.DataLen]
	}
	tur := []byte{0, 0, 0, 0, 0, 0}
	for i := 0; i < 5; i++ { // the new nexus's unit attentions
		if r, _ := exec(other.lu, tur, nil, 0); r.Status == scsi.StatusGood {
			break
		}
	}
	data := bytes.Repeat([]byte{0xc3}, 4096)
	for i := uint32(0); i < 50; i++ {
		cdb := []byte{0x2a, 0, 0, 0, 0, byte(i), 0, 0, 8, 0}
		if r, _ := exec(other.lu, cdb, data, 0); r.Status != scsi.StatusGood {
			t.Fatalf("write %d at the non-owner: status %#x sense %x", i, r.Status, r.Sense)
		}
	}
	r, got := exec(other.lu, []byte{0x28, 0, 0, 0, 0, 49, 0, 0, 8, 0}, nil, 4096)
	if r.Status != scsi.StatusGood || !bytes.Equal(got, data) {
		t.Fatalf("read at the non-owner: status %#x, data matches %v", r.Status, bytes.Equal(got, data))
	}
	if other.drv.Serving() || !owner.drv.Serving() {
		t.Fatal("ownership moved although the demand was short")
	}
	// The owner's own copy sees the data: the writes ran there.
	n.TargetPort, n.RelativeTargetPort = "iqn.2026-01.test:t,t,0x9", 3-otherPort
	for i := 0; i < 5; i++ {
		if r, _ := exec(owner.lu, tur, nil, 0); r.Status == scsi.StatusGood {
			break
		}
	}
	if r, got := exec(owner.lu, []byte{0x28, 0, 0, 0, 0, 10, 0, 0, 8, 0}, nil, 4096); r.Status != scsi.StatusGood || !bytes.Equal(got, data) {
		t.Fatalf("read at the owner: status %#x", r.Status)
	}
}
