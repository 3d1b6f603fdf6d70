package gateway

import (
	"context"

	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/internal/loopback"
)

const (
	recTarget = "iqn.2026-11.io.rbdgw:rec"
	recOther  = "iqn.2026-11.io.rbdgw:other"
)

// recConfig is a cluster configuration with n small disks mapped as LUNs
// 0..n-1 of one target, no CHAP. Disks carry WWNs so that starting 1000
// of them does not write (and fsync) 1000 generated ones.
func recConfig(n int) config.Config {
	var c config.Config
	tg := config.NewTarget(recTarget)
	tg.ACL = config.ACLOpen
	for i := range n {
		c.Disks = append(c.Disks, recDisk(i))
		tg.LUNs = append(tg.LUNs, config.LUNMap{LUNID: uint64(i), Disk: c.Disks[i].Name})
	}
	c.Targets = []config.Target{tg}
	return c
}

func recDisk(i int) config.Disk {
	d := config.NewDisk(fmt.Sprintf("d%04d", i), fmt.Sprintf("file:img/d%04d.img", i), 1<<20)
	d.WWN = fmt.Sprintf("6001405%025x", i+1)
	return d
}

// addLUN maps a new disk as LUN id of target iqn.
func addLUN(iqn string, id int) func(*config.Config) error {
	return func(c *config.Config) error {
		d := recDisk(id)
		c.Disks = append(c.Disks, d)
		for i := range c.Targets {
			if c.Targets[i].IQN == iqn {
				c.Targets[i].LUNs = append(c.Targets[i].LUNs, config.LUNMap{LUNID: uint64(id), Disk: d.Name})
				return nil
			}
		}
		return fmt.Errorf("no target %s", iqn)
	}
}

// startFromStore does what `rbdgw serve` does in store mode: read the
// store, start the gateway on this process's part of it, follow the store.
func startFromStore(t *testing.T, s config.Store, l config.Local) *Gateway {
	t.Helper()
	_, epoch, err := s.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	g, err := Start(Config{Config: mustForGateway(t, s, l), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Reconcile(ctx, ReconcileOptions{Store: s, Local: l, Epoch: epoch, PingInterval: 100 * time.Millisecond, RetryInterval: 200 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		g.Close()
	})
	waitFor(t, 5*time.Second, "reconciler running", func() bool { return g.Health().Source == SourceStore })
	return g
}

func singleGateway(t *testing.T) config.Local {
	return config.Local{DataDir: t.TempDir(), Portals: []string{"127.0.0.1:0"}}
}

// waitFor polls cond every millisecond and returns how long it took to
// hold.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func hasLUN(g *Gateway, iqn string, id uint64) bool {
	c := g.Config()
	for _, tg := range c.Targets {
		if tg.IQN != iqn {
			continue
		}
		for _, m := range tg.LUNs {
			if m.LUNID == id {
				return true
			}
		}
	}
	return false
}

// iscsiLs lists the gateway's targets and LUNs through libiscsi, as an
// initiator logging in now sees them.
func iscsiLs(t *testing.T, addr net.Addr) string {
	t.Helper()
	bin, err := exec.LookPath("iscsi-ls")
	if err != nil {
		t.Skip("iscsi-ls not installed (libiscsi-bin)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-s", "iscsi://"+addr.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
	return string(out)
}

func TestReconcileAppliesStoreChanges(t *testing.T) {
	s := config.NewMemStore(recConfig(2))
	defer s.Close()
	g := startFromStore(t, s, singleGateway(t))
	if out := iscsiLs(t, g.Addrs()[0]); strings.Contains(out, "Lun:7") {
		t.Fatalf("before:\n%s", out)
	}
	epoch, err := s.Update(context.Background(), addLUN(recTarget, 7))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "LUN 7 applied", func() bool { return hasLUN(g, recTarget, 7) })
	if out := iscsiLs(t, g.Addrs()[0]); !strings.Contains(out, "Lun:7") {
		t.Fatalf("after:\n%s", out)
	}
	h := g.Health()
	if h.Source != SourceStore || h.Epoch != epoch || h.StoreEpoch != epoch || !h.StoreReachable || h.LastError != "" {
		t.Fatalf("health %+v, want epoch %d", h, epoch)
	}
	// A removal converges too.
	if _, err := s.Update(context.Background(), func(c *config.Config) error {
		c.Targets[0].LUNs = c.Targets[0].LUNs[:1]
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "LUN 7 removed", func() bool { return !hasLUN(g, recTarget, 7) })
}

// TestReconcileCatchesUp: a change made after the gateway read the store
// and before it watched (as for a gateway that was down) is applied.
func TestReconcileCatchesUp(t *testing.T) {
	s := config.NewMemStore(recConfig(1))
	defer s.Close()
	l := singleGateway(t)
	_, epoch, err := s.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	g, err := Start(Config{Config: mustForGateway(t, s, l), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := s.Update(context.Background(), addLUN(recTarget, 3)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.Reconcile(ctx, ReconcileOptions{Store: s, Local: l, Epoch: epoch}) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "missed change applied", func() bool { return hasLUN(g, recTarget, 3) })
}

// TestReconcileStoreOutage: with the store unreachable the gateway keeps
// serving and says so; when it returns, changes flow again.
func TestReconcileStoreOutage(t *testing.T) {
	s := config.NewMemStore(recConfig(2))
	defer s.Close()
	g := startFromStore(t, s, singleGateway(t))
	s.SetUnavailable(true)
	waitFor(t, 5*time.Second, "health shows the outage", func() bool { return !g.Health().StoreReachable })
	h := g.Health()
	if !strings.Contains(h.LastError, config.ErrUnavailable.Error()) || h.LastErrorAt.IsZero() {
		t.Fatalf("health during outage: %+v", h)
	}
	// I/O keeps running on the last configuration.
	if out := iscsiLs(t, g.Addrs()[0]); !strings.Contains(out, "Lun:1") {
		t.Fatalf("during outage:\n%s", out)
	}
	s.SetUnavailable(false)
	waitFor(t, 5*time.Second, "health shows the store back", func() bool { h := g.Health(); return h.StoreReachable && h.LastError == "" })
	if _, err := s.Update(context.Background(), addLUN(recTarget, 9)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "change after the outage", func() bool { return hasLUN(g, recTarget, 9) })
}

// TestReconcileRefusedChangeIsReported: a change the running gateway
// cannot apply live leaves it on the previous configuration, reported in
// Health; the next good change clears it.
func TestReconcileRefusedChangeIsReported(t *testing.T) {
	s := config.NewMemStore(recConfig(2))
	defer s.Close()
	g := startFromStore(t, s, singleGateway(t))
	start := g.Health().Epoch
	bad, err := s.Update(context.Background(), func(c *config.Config) error {
		c.Disks[0].Backend = "file:img/elsewhere.img" // restart-only
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "refusal reported", func() bool { return g.Health().StoreEpoch == bad && g.Health().LastError != "" })
	if h := g.Health(); h.Epoch != start || !strings.Contains(h.LastError, ErrRestartRequired.Error()) {
		t.Fatalf("health %+v", h)
	}
	good, err := s.Update(context.Background(), func(c *config.Config) error {
		c.Disks[0].Backend = "file:img/d0000.img"
		return addLUN(recTarget, 5)(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "good change applied", func() bool { h := g.Health(); return h.Epoch == good && h.LastError == "" })
}

// TestReconcileServesOwnGateway: with gateways in the configuration each
// process serves its own portals and the targets that list it.
func TestReconcileServesOwnGateway(t *testing.T) {
	c := recConfig(2)
	other := config.NewTarget(recOther)
	other.ACL = config.ACLOpen
	other.LUNs = []config.LUNMap{{LUNID: 0, Disk: "d0001"}}
	other.Gateways = []string{"gw-b"}
	c.Targets = append(c.Targets, other)
	c.Gateways = []config.Gateway{
		{Name: "gw-a", Portals: []string{"127.0.0.1:0"}},
		{Name: "gw-b", Portals: []string{"127.0.0.2:0"}},
	}
	s := config.NewMemStore(config.Config{})
	defer s.Close()
	if _, err := s.Update(context.Background(), func(dst *config.Config) error { *dst = c; return nil }); err != nil {
		t.Fatal(err)
	}
	a := startFromStore(t, s, config.Local{GatewayName: "gw-a", DataDir: t.TempDir(), Portals: []string{"127.0.0.3:0"}})
	if ip := a.Addrs()[0].(*net.TCPAddr).IP.String(); ip != "127.0.0.1" {
		t.Fatalf("gw-a listens on %s", ip)
	}
	if out := iscsiLs(t, a.Addrs()[0]); strings.Contains(out, recOther) || !strings.Contains(out, recTarget) {
		t.Fatalf("gw-a serves:\n%s", out)
	}
	// Add gw-a to the other target: it appears there.
	if _, err := s.Update(context.Background(), func(c *config.Config) error {
		for i := range c.Targets {
			if c.Targets[i].IQN == recOther {
				c.Targets[i].Gateways = append(c.Targets[i].Gateways, "gw-a")
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "other target on gw-a", func() bool { return hasLUN(a, recOther, 0) })
}

// TestReconcileHostGroups: a host in a group sees the group's disks only.
func TestReconcileHostGroups(t *testing.T) {
	c := recConfig(3)
	member := "iqn.2026-11.io.rbdgw:member"
	c.Targets[0].ACL = ""
	c.Targets[0].Hosts = []config.Host{{IQN: member}, {IQN: "iqn.2026-11.io.rbdgw:loner"}}
	c.Targets[0].HostGroups = []config.HostGroup{{Name: "cluster1", Members: []string{member}, Disks: []string{"d0002"}}}
	s := config.NewMemStore(c)
	defer s.Close()
	g := startFromStore(t, s, singleGateway(t))
	bin, err := exec.LookPath("iscsi-ls")
	if err != nil {
		t.Skip("iscsi-ls not installed")
	}
	out, err := exec.Command(bin, "-i", member, "-s", "iscsi://"+g.Addrs()[0].String()).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Lun:2") || strings.Contains(string(out), "Lun:0") || strings.Contains(string(out), "Lun:1") {
		t.Fatalf("group member sees:\n%s", out)
	}
}

// TestReconcileKeepsSessions: a session running I/O on one target is not
// disturbed while the store adds a target and LUNs. The I/O comes from
// qemu-img bench, which retries the REPORTED LUNS DATA HAS CHANGED unit
// attention the LUN added to its own target raises, as initiators do
// (libiscsi's iscsi-perf miscounts its requests in flight after a unit
// attention and never ends).
func TestReconcileKeepsSessions(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed (qemu-utils)")
	}
	s := config.NewMemStore(recConfig(1))
	defer s.Close()
	g := startFromStore(t, s, singleGateway(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemuImg, "bench", "-f", "raw", "-t", "none", "-n", "-c", "60000", "-d", "4", "-s", "4096",
		"iscsi://"+g.Addrs()[0].String()+"/"+recTarget+"/0")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var before []uint16
	waitFor(t, 10*time.Second, "qemu-img logged in", func() bool {
		before = nil
		for _, si := range g.Sessions() {
			if si.TargetName == recTarget && !si.Discovery {
				before = append(before, si.TSIH)
			}
		}
		return len(before) > 0
	})
	var took []time.Duration
	// Four changes to another target, then one to the session's own
	// target (a LUN added): the session stays in every case.
	for i := 1; i <= 5; i++ {
		iqn := recOther
		if i == 5 {
			iqn = recTarget
		}
		start := time.Now()
		if _, err := s.Update(context.Background(), func(c *config.Config) error {
			if i == 1 {
				tg := config.NewTarget(recOther)
				tg.ACL = config.ACLOpen
				c.Targets = append(c.Targets, tg)
			}
			return addLUN(iqn, i)(c)
		}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "change applied", func() bool { return hasLUN(g, iqn, uint64(i)) })
		took = append(took, time.Since(start))
	}
	var after []uint16
	for _, si := range g.Sessions() {
		if si.TargetName == recTarget && !si.Discovery {
			after = append(after, si.TSIH)
		}
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("sessions changed across reconciles: %v -> %v", before, after)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("qemu-img bench during reconciles: %v\n%s", err, out.String())
	}
	t.Logf("5 changes (4 to another target, 1 to the session's) applied during I/O (each %v); session TSIH %v kept; qemu-img bench: %s", took, before, lastLine(out.String()))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestReconcileAddLUNAt1000 measures what issue 4 asks: with 1000 LUNs
// configured, one more is served within a second of the store accepting
// it, on the in-memory store and on embedded etcd (watch included).
func TestReconcileAddLUNAt1000(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips opening 1000 disks")
	}
	const n = 1000
	run := func(t *testing.T, s config.Store) {
		if _, err := s.Update(context.Background(), func(c *config.Config) error { *c = recConfig(n); return nil }); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		g := startFromStore(t, s, singleGateway(t))
		t.Logf("gateway with %d LUNs started in %s", n, time.Since(start).Round(time.Millisecond))
		var worst time.Duration
		for i := range 3 {
			id := n + i
			start := time.Now()
			if _, err := s.Update(context.Background(), addLUN(recTarget, id)); err != nil {
				t.Fatal(err)
			}
			stored := time.Since(start)
			waitFor(t, 10*time.Second, "LUN applied", func() bool { return hasLUN(g, recTarget, uint64(id)) })
			took := time.Since(start)
			worst = max(worst, took)
			t.Logf("LUN %d: store update %s, served (LU map) %s after the update call", id, stored.Round(time.Microsecond), took.Round(time.Microsecond))
		}
		start = time.Now()
		out := iscsiLs(t, g.Addrs()[0])
		// SAM-5 4.7.6: LUNs above 255 use flat space addressing (01b in the
		// top bits), which iscsi-ls prints as 0x4000 + the LUN.
		if !strings.Contains(out, fmt.Sprintf("Lun:%d ", 0x4000+n+2)) {
			t.Fatalf("iscsi-ls does not list LUN %d:\n%s", n+2, out[max(0, len(out)-2000):])
		}
		t.Logf("iscsi-ls (login, REPORT LUNS, %d INQUIRYs) lists LUN %d; took %s", n+3, n+2, time.Since(start).Round(time.Millisecond))
		switch {
		case worst <= time.Second:
		case raceEnabled:
			t.Logf("adding a LUN at %d LUNs took %s under -race; the 1s budget applies without it", n, worst)
		default:
			t.Fatalf("adding a LUN at %d LUNs took %s; want under 1s", n, worst)
		}
	}
	t.Run("MemStore", func(t *testing.T) {
		s := config.NewMemStore(config.Config{})
		defer s.Close()
		run(t, s)
	})
	t.Run("EmbeddedEtcd", func(t *testing.T) {
		m, err := config.StartEmbeddedEtcd(t.TempDir(), loopback.FreeURL(t), loopback.FreeURL(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() }) // last: after the gateway and client
		s, err := config.OpenEtcd(context.Background(), m.StoreOptions())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		run(t, s)
	})
}

// TestTwoGatewaysFollowEtcd: two gateways of one cluster on one etcd both
// apply a change; a change made while one is down succeeds, and that
// gateway serves it when it starts again.
func TestTwoGatewaysFollowEtcd(t *testing.T) {
	m, err := config.StartEmbeddedEtcd(t.TempDir(), loopback.FreeURL(t), loopback.FreeURL(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() }) // last: after the gateways and clients

	open := func() config.Store {
		o := m.StoreOptions()
		o.Prefix = config.EtcdPrefix("two")
		s, err := config.OpenEtcd(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	admin := open()
	c := recConfig(2)
	c.Gateways = []config.Gateway{{Name: "gw-a", Portals: []string{"127.0.0.1:0"}}, {Name: "gw-b", Portals: []string{"127.0.0.2:0"}}}
	if _, err := admin.Update(context.Background(), func(dst *config.Config) error { *dst = c; return nil }); err != nil {
		t.Fatal(err)
	}
	cfg, _, _ := admin.Get(context.Background())
	if a, _ := cfg.Gateway("gw-a"); a.TPGID != 1 {
		t.Fatalf("gw-a tpg_id %d", a.TPGID)
	}
	if b, _ := cfg.Gateway("gw-b"); b.TPGID != 2 {
		t.Fatalf("gw-b tpg_id %d", b.TPGID)
	}
	localB := config.Local{GatewayName: "gw-b", DataDir: t.TempDir()}
	a := startFromStore(t, open(), config.Local{GatewayName: "gw-a", DataDir: t.TempDir()})
	b, err := Start(Config{Config: mustForGateway(t, admin, localB), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	b.Close() // gw-b is down
	if _, err := admin.Update(context.Background(), addLUN(recTarget, 4)); err != nil {
		t.Fatalf("update with a gateway down: %v", err)
	}
	waitFor(t, 5*time.Second, "gw-a applies", func() bool { return hasLUN(a, recTarget, 4) })
	b = startFromStore(t, open(), localB)
	if !hasLUN(b, recTarget, 4) {
		t.Fatal("gw-b did not catch up at start")
	}
	if ip := b.Addrs()[0].(*net.TCPAddr).IP.String(); ip != "127.0.0.2" {
		t.Fatalf("gw-b listens on %s", ip)
	}
	epoch, err := admin.Update(context.Background(), addLUN(recTarget, 5))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Gateway{a, b} {
		waitFor(t, 5*time.Second, "both apply", func() bool { return g.Health().Epoch == epoch && hasLUN(g, recTarget, 5) })
	}
}

func mustForGateway(t *testing.T, s config.Store, l config.Local) config.Config {
	t.Helper()
	c, _, err := s.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.ForGateway(l)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHealthOfFileGateway(t *testing.T) {
	c := recConfig(1)
	c.Portals, c.DataDir = []string{"127.0.0.1:0"}, t.TempDir()
	g, err := Start(Config{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if h := g.Health(); h.Source != SourceFile || h.Epoch != 0 || h.LastError != "" {
		t.Fatalf("%+v", h)
	}
}
