package config

import (
	"errors"
	"strings"
	"testing"
)

// valid returns a small configuration that passes Validate; each case in
// TestValidate breaks one thing.
func valid() Config {
	c := Default()
	c.Portals = []string{"127.0.0.1:3260"}
	c.Disks = []Disk{NewDisk("d0", "file:/tmp/d0.img", 1<<30), NewDisk("d1", "file:d1.img", 1<<20)}
	t := NewTarget("iqn.2026-11.io.rbdgw:t")
	t.LUNs = []LUNMap{{0, "d0"}, {1, "d1"}}
	t.Hosts = []Host{{IQN: "iqn.1994-05.com.redhat:h", LUNs: []uint64{1}}}
	c.Targets = []Target{t}
	return c
}

func TestValidate(t *testing.T) {
	goodCHAP := CHAP{Username: "user_name", Password: "password1234"}
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		path    string // "" means valid
		notShow string // must not appear in the error (secrets)
	}{
		{"valid", func(*Config) {}, "", ""},
		{"default is valid", func(c *Config) { *c = Default() }, "", ""},
		{"no portals", func(c *Config) { c.Portals = nil }, "portals", ""},
		{"portal without port", func(c *Config) { c.Portals = []string{"127.0.0.1"} }, "portals[0]", ""},
		{"portal port 0 ok (free port)", func(c *Config) { c.Portals = []string{"127.0.0.1:0"} }, "", ""},
		{"portal port not a number", func(c *Config) { c.Portals = []string{"127.0.0.1:iscsi"} }, "portals[0]", ""},
		{"portal port too big", func(c *Config) { c.Portals = []string{"127.0.0.1:70000"} }, "portals[0]", ""},
		{"portal ipv6 no brackets", func(c *Config) { c.Portals = []string{"::1:3260"} }, "portals[0]", ""},
		{"portal ipv6 ok", func(c *Config) { c.Portals = []string{"[::1]:3260"} }, "", ""},
		{"portal hostname ok", func(c *Config) { c.Portals = []string{"gw-1.example.com:3260"} }, "", ""},
		{"portal bad hostname", func(c *Config) { c.Portals = []string{"gw_1!:3260"} }, "portals[0]", ""},
		{"portal empty host", func(c *Config) { c.Portals = []string{":3260"} }, "portals[0]", ""},
		{"portal duplicate", func(c *Config) { c.Portals = []string{"127.0.0.1:1", "127.0.0.1:1"} }, "portals[1]", ""},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir", ""},

		{"iqn empty", func(c *Config) { c.Targets[0].IQN = "" }, "targets[0].iqn", ""},
		{"iqn no date", func(c *Config) { c.Targets[0].IQN = "iqn.io.rbdgw:t" }, "targets[0].iqn", ""},
		{"iqn month 13", func(c *Config) { c.Targets[0].IQN = "iqn.2026-13.io.rbdgw:t" }, "targets[0].iqn", ""},
		{"iqn no authority", func(c *Config) { c.Targets[0].IQN = "iqn.2026-11.:t" }, "targets[0].iqn", ""},
		{"iqn no dot after date", func(c *Config) { c.Targets[0].IQN = "iqn.2026-11io.rbdgw" }, "targets[0].iqn", ""},
		{"iqn uppercase", func(c *Config) { c.Targets[0].IQN = "iqn.2026-11.io.rbdgw:T" }, "targets[0].iqn", ""},
		{"iqn space", func(c *Config) { c.Targets[0].IQN = "iqn.2026-11.io.rbdgw:a b" }, "targets[0].iqn", ""},
		{"iqn underscore", func(c *Config) { c.Targets[0].IQN = "iqn.2026-11.io.rbdgw:a_b" }, "targets[0].iqn", ""},
		{"iqn too long", func(c *Config) { c.Targets[0].IQN = "iqn.2026-11.io.rbdgw:" + strings.Repeat("a", 210) }, "targets[0].iqn", ""},
		{"iqn no suffix ok", func(c *Config) { c.Targets[0].IQN = "iqn.2026-11.io.rbdgw" }, "", ""},
		{"eui ok", func(c *Config) { c.Targets[0].IQN = "eui.0123456789ABCDEF" }, "", ""},
		{"eui short", func(c *Config) { c.Targets[0].IQN = "eui.0123" }, "targets[0].iqn", ""},
		{"eui not hex", func(c *Config) { c.Targets[0].IQN = "eui.0123456789ABCDEG" }, "targets[0].iqn", ""},
		{"naa 16 ok", func(c *Config) { c.Targets[0].IQN = "naa.52004567BA64678D" }, "", ""},
		{"naa 32 ok", func(c *Config) { c.Targets[0].IQN = "naa.62004567BA64678D0123456789ABCDEF" }, "", ""},
		{"naa 20", func(c *Config) { c.Targets[0].IQN = "naa.62004567BA64678D0123" }, "targets[0].iqn", ""},
		{"unknown name type", func(c *Config) { c.Targets[0].IQN = "wwn.1" }, "targets[0].iqn", ""},
		{"duplicate target", func(c *Config) { c.Targets = append(c.Targets, c.Targets[0]) }, "targets[1].iqn", ""},
		{"alias too long", func(c *Config) { c.Targets[0].Alias = strings.Repeat("a", 256) }, "targets[0].alias", ""},

		{"target chap ok", func(c *Config) { c.Targets[0].Auth = goodCHAP }, "", ""},
		{"chap user short", func(c *Config) { c.Targets[0].Auth = CHAP{Username: "short", Password: "password1234"} }, "targets[0].auth.username", ""},
		{"chap user long", func(c *Config) {
			c.Targets[0].Auth = CHAP{Username: strings.Repeat("u", 65), Password: "password1234"}
		}, "targets[0].auth.username", ""},
		{"chap user bad char", func(c *Config) { c.Targets[0].Auth = CHAP{Username: "user/name", Password: "password1234"} }, "targets[0].auth.username", ""},
		{"chap user all chars ok", func(c *Config) { c.Targets[0].Auth = CHAP{Username: "aZ09@_.:-", Password: "aZ09@_/-aaaa"} }, "", ""},
		{"chap password short", func(c *Config) { c.Targets[0].Auth = CHAP{Username: "user_name", Password: "secret12345"} }, "targets[0].auth.password", "secret12345"},
		{"chap password long", func(c *Config) { c.Targets[0].Auth = CHAP{Username: "user_name", Password: "secret12345678901"} }, "targets[0].auth.password", "secret12345678901"},
		{"chap password bad char", func(c *Config) { c.Targets[0].Auth = CHAP{Username: "user_name", Password: "secret.123456"} }, "targets[0].auth.password", "secret.123456"},
		{"chap password no user", func(c *Config) { c.Targets[0].Auth = CHAP{Password: "password1234"} }, "targets[0].auth.password", "password1234"},
		{"mutual without one-way", func(c *Config) {
			c.Targets[0].Auth = CHAP{MutualUsername: "mutual_user", MutualPassword: "mutualpass12"}
		}, "targets[0].auth.mutual_username", "mutualpass12"},
		{"mutual ok", func(c *Config) {
			c.Targets[0].Auth = CHAP{Username: "user_name", Password: "password1234", MutualUsername: "mutual_user", MutualPassword: "mutualpass12"}
		}, "", ""},
		{"mutual same password", func(c *Config) {
			c.Targets[0].Auth = CHAP{Username: "user_name", Password: "password1234", MutualUsername: "mutual_user", MutualPassword: "password1234"}
		}, "targets[0].auth.mutual_password", "password1234"},
		{"mutual same user", func(c *Config) {
			c.Targets[0].Auth = CHAP{Username: "user_name", Password: "password1234", MutualUsername: "user_name", MutualPassword: "mutualpass12"}
		}, "targets[0].auth.mutual_username", ""},
		{"mutual password without user", func(c *Config) {
			c.Targets[0].Auth = CHAP{Username: "user_name", Password: "password1234", MutualPassword: "mutualpass12"}
		}, "targets[0].auth.mutual_password", "mutualpass12"},
		{"mutual bad password", func(c *Config) {
			c.Targets[0].Auth = CHAP{Username: "user_name", Password: "password1234", MutualUsername: "mutual_user", MutualPassword: "short"}
		}, "targets[0].auth.mutual_password", ""},
		{"discovery chap checked", func(c *Config) { c.DiscoveryAuth = CHAP{Username: "x", Password: "password1234"} }, "discovery_auth.username", ""},
		{"host chap checked", func(c *Config) { c.Targets[0].Hosts[0].Auth = CHAP{Username: "user_name", Password: "p"} }, "targets[0].hosts[0].auth.password", ""},

		{"cmdsn_depth 0", func(c *Config) { c.Targets[0].Controls.CmdSNDepth = 0 }, "targets[0].controls.cmdsn_depth", ""},
		{"cmdsn_depth 513", func(c *Config) { c.Targets[0].Controls.CmdSNDepth = 513 }, "targets[0].controls.cmdsn_depth", ""},
		{"cmdsn_depth 512 ok", func(c *Config) { c.Targets[0].Controls.CmdSNDepth = 512 }, "", ""},
		{"dataout_timeout 0", func(c *Config) { c.Targets[0].Controls.DataOutTimeout = 0 }, "targets[0].controls.dataout_timeout", ""},
		{"nopin_timeout 0 ok", func(c *Config) { c.Targets[0].Controls.NopInTimeout = 0 }, "", ""},
		{"nopin_timeout huge", func(c *Config) { c.Targets[0].Controls.NopInTimeout = 3601 }, "targets[0].controls.nopin_timeout", ""},
		{"nopin_response_timeout 0", func(c *Config) { c.Targets[0].Controls.NopInResponseTimeout = 0 }, "targets[0].controls.nopin_response_timeout", ""},
		{"max_outstanding_r2t 0", func(c *Config) { c.Targets[0].Controls.MaxOutstandingR2T = 0 }, "targets[0].controls.max_outstanding_r2t", ""},
		{"max_outstanding_r2t 65536", func(c *Config) { c.Targets[0].Controls.MaxOutstandingR2T = 65536 }, "targets[0].controls.max_outstanding_r2t", ""},
		{"first_burst 511", func(c *Config) { c.Targets[0].Controls.FirstBurstLength = 511 }, "targets[0].controls.first_burst_length", ""},
		{"first_burst > max_burst", func(c *Config) {
			c.Targets[0].Controls.FirstBurstLength = 1 << 20
		}, "targets[0].controls.first_burst_length", ""},
		{"max_burst 2^24", func(c *Config) { c.Targets[0].Controls.MaxBurstLength = 1 << 24 }, "targets[0].controls.max_burst_length", ""},
		{"max_burst 2^24-1 ok", func(c *Config) { c.Targets[0].Controls.MaxBurstLength = 1<<24 - 1 }, "", ""},
		{"mrdsl 511", func(c *Config) { c.Targets[0].Controls.MaxRecvDataSegmentLength = 511 }, "targets[0].controls.max_recv_data_segment_length", ""},
		{"mxdsl 2^24", func(c *Config) { c.Targets[0].Controls.MaxXmitDataSegmentLength = 1 << 24 }, "targets[0].controls.max_xmit_data_segment_length", ""},

		{"duplicate lun id", func(c *Config) { c.Targets[0].LUNs[1].LUNID = 0 }, "targets[0].luns[1].lun_id", ""},
		{"lun id too big", func(c *Config) { c.Targets[0].LUNs[1].LUNID = 16384 }, "targets[0].luns[1].lun_id", ""},
		{"lun unknown disk", func(c *Config) { c.Targets[0].LUNs[1].Disk = "nope" }, "targets[0].luns[1].disk", ""},
		{"host bad iqn", func(c *Config) { c.Targets[0].Hosts[0].IQN = "host" }, "targets[0].hosts[0].iqn", ""},
		{"host duplicate", func(c *Config) { c.Targets[0].Hosts = append(c.Targets[0].Hosts, c.Targets[0].Hosts[0]) }, "targets[0].hosts[1].iqn", ""},
		{"host unknown lun", func(c *Config) { c.Targets[0].Hosts[0].LUNs = []uint64{7} }, "targets[0].hosts[0].luns[0]", ""},

		{"disk no name", func(c *Config) { c.Disks[0].Name = ""; c.Targets[0].LUNs = c.Targets[0].LUNs[1:] }, "disks[0].name", ""},
		{"disk name space", func(c *Config) { c.Disks[1].Name = "a b"; c.Targets[0].LUNs[1].Disk = "a b" }, "disks[1].name", ""},
		{"disk duplicate", func(c *Config) { c.Disks[1].Name = "d0" }, "disks[1].name", ""},
		{"backend empty", func(c *Config) { c.Disks[0].Backend = "" }, "disks[0].backend", ""},
		{"backend unknown", func(c *Config) { c.Disks[0].Backend = "nbd:x" }, "disks[0].backend", ""},
		{"backend file no path", func(c *Config) { c.Disks[0].Backend = "file:" }, "disks[0].backend", ""},
		{"backend rbd ok", func(c *Config) { c.Disks[0].Backend = "rbd:pool/image" }, "", ""},
		{"backend rbd ns ok", func(c *Config) { c.Disks[0].Backend = "rbd:pool/ns/image" }, "", ""},
		{"backend rbd malformed", func(c *Config) { c.Disks[0].Backend = "rbd:pool" }, "disks[0].backend", ""},
		{"size 0", func(c *Config) { c.Disks[0].Size = 0 }, "disks[0].size", ""},
		{"size not block multiple", func(c *Config) { c.Disks[0].Size = 1000 }, "disks[0].size", ""},
		{"size 4K block 4096 ok", func(c *Config) { c.Disks[0].Size = 4096; c.Disks[0].BlockSize = 4096 }, "", ""},
		{"block size 1000", func(c *Config) { c.Disks[0].BlockSize = 1000 }, "disks[0].block_size", ""},
		{"wwn ok", func(c *Config) { c.Disks[0].WWN = "6001405a-bcde-f012-3456-789abcdef012" }, "", ""},
		{"wwn plain hex ok", func(c *Config) { c.Disks[0].WWN = "6001405abcdef0123456789abcdef012" }, "", ""},
		{"wwn short", func(c *Config) { c.Disks[0].WWN = "6001405abcdef" }, "disks[0].wwn", ""},
		{"wwn not hex", func(c *Config) { c.Disks[0].WWN = "6001405abcdef0123456789abcdef01z" }, "disks[0].wwn", ""},
		{"max_data_area_mb 0", func(c *Config) { c.Disks[0].Controls.MaxDataAreaMB = 0 }, "disks[0].controls.max_data_area_mb", ""},
		{"max_data_area_mb 2049", func(c *Config) { c.Disks[0].Controls.MaxDataAreaMB = 2049 }, "disks[0].controls.max_data_area_mb", ""},
		{"qfull_timeout 601", func(c *Config) { c.Disks[0].Controls.QFullTimeout = 601 }, "disks[0].controls.qfull_timeout", ""},
		{"osd_op_timeout 601", func(c *Config) { c.Disks[0].Controls.OSDOpTimeout = 601 }, "disks[0].controls.osd_op_timeout", ""},
		{"hw_max_sectors 0", func(c *Config) { c.Disks[0].Controls.HWMaxSectors = 0 }, "disks[0].controls.hw_max_sectors", ""},
		{"hw_max_sectors 131073", func(c *Config) { c.Disks[0].Controls.HWMaxSectors = 131073 }, "disks[0].controls.hw_max_sectors", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			wantFieldError(t, err, tc.path)
			if tc.notShow != "" && err != nil && strings.Contains(err.Error(), tc.notShow) {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}

// wantFieldError fails t unless err has a *FieldError at path ("" means
// err must be nil).
func wantFieldError(t *testing.T, err error, path string) {
	t.Helper()
	if path == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("accepted; want an error at %s", path)
	}
	for _, e := range unjoin(err) {
		var fe *FieldError
		if errors.As(e, &fe) && fe.Path == path {
			return
		}
	}
	t.Fatalf("no error at %s: %v", path, err)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestWWNRoundTrip(t *testing.T) {
	w, err := ParseWWN("6001405a-bcde-f012-3456-789abcdef012")
	if err != nil {
		t.Fatal(err)
	}
	if s := FormatWWN(w); s != "6001405a-bcde-f012-3456-789abcdef012" {
		t.Fatal(s)
	}
}

func TestParseBackend(t *testing.T) {
	b, err := ParseBackend("file:/var/x.img")
	if err != nil || b.Kind != BackendFile || b.Path != "/var/x.img" {
		t.Fatal(b, err)
	}
	b, err = ParseBackend("rbd:p/ns/i")
	if err != nil || b.Kind != BackendRBD || b.Pool != "p" || b.Namespace != "ns" || b.Image != "i" {
		t.Fatal(b, err)
	}
}
