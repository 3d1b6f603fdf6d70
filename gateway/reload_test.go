package gateway

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/rbdlun"
)

func TestReloadRefusesRestartOnlyChanges(t *testing.T) {
	c := testConfig(t)
	g, err := Start(Config{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for name, mutate := range map[string]func(*config.Config){
		"portal":   func(c *config.Config) { c.Portals = []string{"127.0.0.1:1"} },
		"data_dir": func(c *config.Config) { c.DataDir = t.TempDir() },
		"discovery_auth": func(c *config.Config) {
			c.DiscoveryAuth = config.CHAP{Username: "discovery", Password: "discoverypass"}
		},
		"disk backend": func(c *config.Config) { c.Disks[0].Backend = "file:other.img" },
		"disk wwn":     func(c *config.Config) { c.Disks[0].WWN = "6001405abcdef0123456789abcdef012" },
		"disk ro":      func(c *config.Config) { c.Disks[0].ReadOnly = true },
		"disk shrink":  func(c *config.Config) { c.Disks[0].Size = 32 << 20 },
	} {
		n := g.Config()
		mutate(&n)
		if err := g.Reload(n); !errors.Is(err, ErrRestartRequired) {
			t.Errorf("%s: %v", name, err)
		}
	}
	n := g.Config()
	n.Targets[0].Controls.CmdSNDepth = 0
	if err := g.Reload(n); err == nil || errors.Is(err, ErrRestartRequired) {
		t.Fatalf("invalid config: %v", err)
	}
	if g.Config().Targets[0].Controls.CmdSNDepth != config.DefaultCmdSNDepth {
		t.Fatal("refused reload changed the config")
	}
}

func TestReloadAddsDisksGrowsAndRemaps(t *testing.T) {
	bin, err := exec.LookPath("iscsi-ls")
	if err != nil {
		t.Skip("iscsi-ls not installed")
	}
	c := testConfig(t)
	c.Targets[0].Hosts = nil
	g, err := Start(Config{Config: c, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ls := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "-s", "iscsi://gwtestuser%gwtestsecret1@"+g.Addrs()[0].String()).CombinedOutput()
		if err != nil {
			t.Fatalf("iscsi-ls: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := ls(); strings.Contains(out, "Lun:7") {
		t.Fatalf("before:\n%s", out)
	}
	n := g.Config()
	n.Disks = append(n.Disks, config.NewDisk("d2", "file:d2.img", 8<<20))
	n.Disks[0].Size = 128 << 20
	n.Targets[0].LUNs = append(n.Targets[0].LUNs, config.LUNMap{LUNID: 7, Disk: "d2"})
	second := config.NewTarget("iqn.2026-11.io.rbdgw:second")
	second.ACL = config.ACLOpen
	second.LUNs = []config.LUNMap{{LUNID: 0, Disk: "d1"}}
	n.Targets = append(n.Targets, second)
	if err := g.Reload(n); err != nil {
		t.Fatal(err)
	}
	out := ls()
	if !strings.Contains(out, "Lun:7") || !strings.Contains(out, "iqn.2026-11.io.rbdgw:second") {
		t.Fatalf("after reload:\n%s", out)
	}
	if got := g.LogicalUnits()["d0"].Backend().Size(); got != 128<<20 {
		t.Fatalf("d0 not grown: %d", got)
	}
	// Remove the second target and disk d2 again.
	n = g.Config()
	n.Targets = n.Targets[:1]
	n.Targets[0].LUNs = n.Targets[0].LUNs[:2]
	n.Disks = n.Disks[:2]
	if err := g.Reload(n); err != nil {
		t.Fatal(err)
	}
	out = ls()
	if strings.Contains(out, "Lun:7") || strings.Contains(out, ":second") {
		t.Fatalf("after removal:\n%s", out)
	}
	if _, ok := g.LogicalUnits()["d2"]; ok {
		t.Fatal("d2 still listed")
	}
	// The removed disk's image is let go (its flock dropped) at once, not
	// at shutdown: another process may have it.
	var reopened *rbdlun.FileBackend
	for start := time.Now(); reopened == nil; time.Sleep(20 * time.Millisecond) {
		reopened, err = rbdlun.OpenFile(filepath.Join(c.DataDir, "images", "d2.img"), 8<<20, rbdlun.FileOptions{})
		if err != nil && time.Since(start) > 5*time.Second {
			t.Fatalf("the removed disk's image is still held: %v", err)
		}
	}
	reopened.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(n); err == nil {
		t.Fatal("reload after shutdown accepted")
	}
}
