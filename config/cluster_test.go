package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// validCluster returns a two-gateway cluster configuration that passes
// Validate; each case in TestValidateCluster breaks one thing.
func validCluster() Config {
	c := valid()
	c.Gateways = []Gateway{
		{Name: "gw-a", Portals: []string{"127.0.0.1:3260"}, TPGID: 1},
		{Name: "gw-b.example.com", Portals: []string{"127.0.0.2:3260", "0.0.0.0:3261"}, TPGID: 2},
	}
	c.LastTPGID = 3 // gateway 3 was removed once
	tg := &c.Targets[0]
	tg.Gateways = []string{"gw-a"}
	tg.Hosts = append(tg.Hosts, Host{IQN: "iqn.1994-05.com.redhat:g1"}, Host{IQN: "iqn.1994-05.com.redhat:g2"})
	tg.HostGroups = []HostGroup{{Name: "esx_cluster-1", Members: []string{"iqn.1994-05.com.redhat:g1", "iqn.1994-05.com.redhat:g2"}, Disks: []string{"d0"}}}
	return c
}

func TestValidateCluster(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		path   string
	}{
		{"valid", func(*Config) {}, ""},
		{"gateway bad name", func(c *Config) { c.Gateways[0].Name = "gw a" }, "gateways[0].name"},
		{"gateway empty name", func(c *Config) { c.Gateways[0].Name = "" }, "gateways[0].name"},
		{"gateway duplicate", func(c *Config) { c.Gateways[1].Name = "gw-a" }, "gateways[1].name"},
		{"gateway no portals", func(c *Config) { c.Gateways[0].Portals = nil }, "gateways[0].portals"},
		{"gateway bad portal", func(c *Config) { c.Gateways[0].Portals = []string{"127.0.0.1"} }, "gateways[0].portals[0]"},
		{"portal on two gateways", func(c *Config) { c.Gateways[1].Portals[0] = "127.0.0.1:3260" }, "gateways[1].portals[0]"},
		{"wildcard portal on two gateways ok", func(c *Config) {
			c.Gateways[0].Portals = []string{"0.0.0.0:3261"}
			c.Gateways[1].Portals = []string{"0.0.0.0:3261"}
		}, ""},
		{"tpg id 0", func(c *Config) { c.Gateways[0].TPGID = 0 }, "gateways[0].tpg_id"},
		{"tpg id duplicate", func(c *Config) { c.Gateways[1].TPGID = 1 }, "gateways[1].tpg_id"},
		{"tpg id above last", func(c *Config) { c.Gateways[1].TPGID = 9 }, "gateways[1].tpg_id"},
		{"target unknown gateway", func(c *Config) { c.Targets[0].Gateways = []string{"gw-z"} }, "targets[0].gateways[0]"},
		{"target gateway twice", func(c *Config) { c.Targets[0].Gateways = []string{"gw-a", "gw-a"} }, "targets[0].gateways[1]"},
		{"target gateways without cluster", func(c *Config) { c.Gateways = nil }, "targets[0].gateways[0]"},
		{"group bad name", func(c *Config) { c.Targets[0].HostGroups[0].Name = "a/b" }, "targets[0].groups[0].name"},
		{"group duplicate", func(c *Config) {
			c.Targets[0].HostGroups = append(c.Targets[0].HostGroups, HostGroup{Name: "esx_cluster-1"})
		}, "targets[0].groups[1].name"},
		{"group unknown host", func(c *Config) {
			c.Targets[0].HostGroups[0].Members[0] = "iqn.1994-05.com.redhat:nobody"
		}, "targets[0].groups[0].members[0]"},
		{"host in two groups", func(c *Config) {
			c.Targets[0].HostGroups = append(c.Targets[0].HostGroups, HostGroup{Name: "other", Members: []string{"IQN.1994-05.com.redhat:g2"}})
		}, "targets[0].groups[1].members[0]"},
		{"member with own luns", func(c *Config) {
			c.Targets[0].HostGroups[0].Members = append(c.Targets[0].HostGroups[0].Members, "iqn.1994-05.com.redhat:h")
		}, "targets[0].groups[0].members[2]"},
		{"group unmapped disk", func(c *Config) {
			c.Disks = append(c.Disks, NewDisk("d9", "file:d9.img", 1<<20))
			c.Targets[0].HostGroups[0].Disks = []string{"d9"}
		}, "targets[0].groups[0].disks[0]"},
		{"group disk twice", func(c *Config) { c.Targets[0].HostGroups[0].Disks = []string{"d0", "d0"} }, "targets[0].groups[0].disks[1]"},
		{"failback to a preferred gateway", func(c *Config) {
			c.Disks[0].PreferredGateway, c.Disks[0].Failback = "gw-b.example.com", FailbackPreferred
		}, ""},
		{"preferred gateway without failback", func(c *Config) { c.Disks[0].PreferredGateway = "gw-a" }, ""},
		{"preferred gateway unknown", func(c *Config) { c.Disks[0].PreferredGateway = "gw-z" }, "disks[0].preferred_gateway"},
		{"failback without preferred gateway", func(c *Config) { c.Disks[0].Failback = FailbackPreferred }, "disks[0].failback"},
		{"failback unknown policy", func(c *Config) { c.Disks[0].Failback = "always" }, "disks[0].failback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validCluster()
			tc.mutate(&c)
			wantFieldError(t, c.Validate(), tc.path)
			// The cluster part alone gives the same verdict: none of these
			// cases touch portals or data_dir.
			wantFieldError(t, c.ValidateCluster(), tc.path)
		})
	}
}

func TestValidateClusterIgnoresProcessSettings(t *testing.T) {
	c := validCluster().Cluster()
	if c.Portals != nil || c.DataDir != "" {
		t.Fatalf("Cluster kept %v %q", c.Portals, c.DataDir)
	}
	if err := c.ValidateCluster(); err != nil {
		t.Fatal(err)
	}
	wantFieldError(t, c.Validate(), "portals")
}

func TestPrepareUpdateAssignsTPGIDsOnce(t *testing.T) {
	old := validCluster().Cluster()
	next := old.Clone()
	next.Portals = []string{"127.0.0.1:1"} // per-process: dropped
	next.Gateways = append(next.Gateways, Gateway{Name: "gw-c", Portals: []string{"127.0.0.3:3260"}})
	next.Gateways[0].TPGID = 0 // existing gateway: keeps its id
	if err := PrepareUpdate(old, &next); err != nil {
		t.Fatal(err)
	}
	if next.Portals != nil {
		t.Fatal("portals kept")
	}
	// last_tpg_id was 3 (a removed gateway had it): the new one gets 4.
	if g, _ := next.Gateway("gw-c"); g.TPGID != 4 || next.LastTPGID != 4 {
		t.Fatalf("gw-c tpg %d last %d", g.TPGID, next.LastTPGID)
	}
	if g, _ := next.Gateway("gw-a"); g.TPGID != 1 {
		t.Fatalf("gw-a tpg %d", g.TPGID)
	}

	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		path   string
	}{
		{"id changed", func(c *Config) { c.Gateways[0].TPGID = 7 }, "gateways[0].tpg_id"},
		{"removed id reused", func(c *Config) {
			c.Gateways = append(c.Gateways, Gateway{Name: "gw-c", Portals: []string{"127.0.0.3:3260"}, TPGID: 3})
		}, "gateways[2].tpg_id"},
		{"last_tpg_id lowered is raised back", func(c *Config) { c.LastTPGID = 0 }, ""},
		{"explicit fresh id ok", func(c *Config) {
			c.Gateways = append(c.Gateways, Gateway{Name: "gw-c", Portals: []string{"127.0.0.3:3260"}, TPGID: 10})
		}, ""},
		{"invalid result refused", func(c *Config) { c.Targets[0].LUNs[0].Disk = "nope" }, "targets[0].luns[0].disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := old.Clone()
			tc.mutate(&n)
			wantFieldError(t, PrepareUpdate(old, &n), tc.path)
		})
	}

	// Disks of a cluster get a WWN once, and keep it.
	if d, _ := next.Disk("d0"); d.WWN == "" || !strings.HasPrefix(d.WWN, "6001405") {
		t.Fatalf("d0 wwn %q", d.WWN)
	}
	moved := next.Clone()
	moved.Disks[0].WWN = "6001405a-bcde-f012-3456-789abcdef012"
	wantFieldError(t, PrepareUpdate(next, &moved), "disks[0].wwn")
	single := valid().Cluster()
	if err := PrepareUpdate(single, &single); err != nil || single.Disks[0].WWN != "" {
		t.Fatalf("single gateway: wwn %q (each gateway keeps its own in data_dir) %v", single.Disks[0].WWN, err)
	}

	full := old.Clone()
	full.LastTPGID = maxTPGID
	n := full.Clone()
	n.Gateways = append(n.Gateways, Gateway{Name: "gw-c", Portals: []string{"127.0.0.3:3260"}})
	wantFieldError(t, PrepareUpdate(full, &n), "gateways[2].tpg_id")
}

func TestForGateway(t *testing.T) {
	c := validCluster()
	second := NewTarget("iqn.2026-11.io.rbdgw:all")
	c.Targets = append(c.Targets, second)

	a, err := c.ForGateway(Local{GatewayName: "gw-a", DataDir: "/var/lib/a", Portals: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Portals, []string{"127.0.0.1:3260"}) || a.DataDir != "/var/lib/a" || len(a.Targets) != 2 {
		t.Fatalf("gw-a: %v %q %d targets", a.Portals, a.DataDir, len(a.Targets))
	}
	b, err := c.ForGateway(Local{GatewayName: "gw-b.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	// The first target lists only gw-a.
	if len(b.Targets) != 1 || b.Targets[0].IQN != second.IQN || len(b.Portals) != 2 {
		t.Fatalf("gw-b: %v %v", b.Portals, b.Targets)
	}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ForGateway(Local{GatewayName: "gw-x"}); err == nil {
		t.Fatal("unknown gateway accepted")
	}
	// No gateways: a file configuration, served as it is.
	f := valid()
	got, err := f.ForGateway(Local{GatewayName: "anything"})
	if err != nil || !reflect.DeepEqual(got, f) {
		t.Fatalf("file mode: %v %v", got, err)
	}
	// ... or the process's portals, for a single gateway on a store.
	got, err = f.Cluster().ForGateway(Local{DataDir: "/d", Portals: []string{"127.0.0.1:3260"}})
	if err != nil || !slices.Equal(got.Portals, []string{"127.0.0.1:3260"}) || got.DataDir != "/d" || got.Validate() != nil {
		t.Fatalf("single gateway on a store: %+v %v", got, err)
	}
}

func TestHostLUNs(t *testing.T) {
	tg := validCluster().Targets[0]
	for _, tc := range []struct {
		iqn        string
		ids        []uint64
		restricted bool
	}{
		{"iqn.1994-05.com.redhat:g1", []uint64{0}, true}, // group: disk d0 at LUN 0
		{"IQN.1994-05.COM.REDHAT:G2", []uint64{0}, true},
		{"iqn.1994-05.com.redhat:h", []uint64{1}, true}, // own list
		{"iqn.1994-05.com.redhat:other", nil, false},
	} {
		ids, r := tg.HostLUNs(tc.iqn)
		if !slices.Equal(ids, tc.ids) || r != tc.restricted {
			t.Errorf("%s: %v %v", tc.iqn, ids, r)
		}
	}
}

func TestCloneCopiesClusterLists(t *testing.T) {
	c := validCluster()
	d := c.Clone()
	d.Gateways[0].Portals[0] = "x"
	d.Targets[0].Gateways[0] = "x"
	d.Targets[0].HostGroups[0].Members[0] = "x"
	d.Targets[0].HostGroups[0].Disks[0] = "x"
	if !reflect.DeepEqual(c, validCluster()) {
		t.Fatal("Clone shares memory with the original")
	}
}
