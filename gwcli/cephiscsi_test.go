package gwcli

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/rbdgw/rbdgw/config"
)

// sizes stands for the API's image sizes in the import.
func sizes(pool, image string) (config.Size, error) {
	s, ok := map[string]config.Size{"rbd/disk_1": 90 << 30, "rbd/disk_2": 10 << 30, "vms/db_data": 2 << 40}[pool+"/"+image]
	if !ok {
		return 0, errors.New("no such image")
	}
	return s, nil
}

func testKey(t *testing.T) *rsa.PrivateKey {
	b, err := os.ReadFile("testdata/iscsi-gateway.key")
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseRSAKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantImported is testdata/gateway.conf as rbdgw's configuration, written
// out by hand from the file.
func wantImported() config.Config {
	disk := func(name string, size config.Size, wwn string) config.Disk {
		d := config.NewDisk(name, "rbd:"+name, size)
		d.WWN = wwn
		return d
	}
	d2 := disk("rbd/disk_2", 10<<30, "3f2a9c84-6d1e-4b7a-8e55-0c9d1b2a3f4e")
	d2.Controls.MaxDataAreaMB, d2.Controls.HWMaxSectors = 64, 2048

	igw := config.NewTarget("iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw")
	igw.Controls.CmdSNDepth, igw.Controls.ImmediateData, igw.Controls.MaxBurstLength = 64, false, 1048576
	igw.LUNs = []config.LUNMap{{LUNID: 0, Disk: "rbd/disk_1"}, {LUNID: 1, Disk: "rbd/disk_2"}, {LUNID: 2, Disk: "vms/db_data"}}
	igw.Gateways = []string{"ceph-gw-1.example.com", "ceph-gw-2.example.com"}
	igw.Hosts = []config.Host{
		{IQN: "iqn.1994-05.com.redhat:rh7-client", Auth: config.CHAP{Username: "myiscsiusername", Password: "myiscsipassword"}, LUNs: []uint64{0}},
		{IQN: "iqn.1994-05.com.redhat:rh8-client", Auth: config.CHAP{Username: "client2user", Password: "Cl13ntTw0Secret",
			MutualUsername: "client2mutual", MutualPassword: "Mutu4lTw0Secret"}, LUNs: []uint64{0, 1}},
		{IQN: "iqn.1998-01.com.vmware:esx-01"},
		{IQN: "iqn.1998-01.com.vmware:esx-02"},
	}
	igw.HostGroups = []config.HostGroup{{Name: "esx", Members: []string{"iqn.1998-01.com.vmware:esx-01", "iqn.1998-01.com.vmware:esx-02"},
		Disks: []string{"vms/db_data"}}}

	backup := config.NewTarget("iqn.2003-01.com.redhat.iscsi-gw:backup")
	backup.Auth = config.CHAP{Username: "backupuser01", Password: "B4ckupSecret12"}
	backup.LUNs = []config.LUNMap{{LUNID: 5, Disk: "rbd/disk_2"}}
	backup.Gateways = []string{"ceph-gw-1.example.com"}

	return config.Config{
		DiscoveryAuth: config.CHAP{Username: "discoveryuser", Password: "Disc0verySecret", MutualUsername: "discmutualuser", MutualPassword: "Disc0veryMutual"},
		Gateways: []config.Gateway{
			{Name: "ceph-gw-1.example.com", Portals: []string{"192.168.122.69:3260"}},
			{Name: "ceph-gw-2.example.com", Portals: []string{"192.168.122.70:3260"}},
		},
		Disks: []config.Disk{
			disk("rbd/disk_1", 90<<30, "0e4b6a1a-21d1-4f3b-9c7e-5b1f2d3c4a5b"), d2,
			disk("vms/db_data", 2<<40, "7d6c5b4a-3928-4716-a5b4-c3d2e1f0a9b8"),
		},
		Targets: []config.Target{backup, igw},
	}
}

func TestFromCephISCSI(t *testing.T) {
	raw, err := os.ReadFile("testdata/gateway.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !IsCephISCSI(raw) {
		t.Fatal("sample not recognized as a gateway.conf")
	}
	got, warnings, err := FromCephISCSI(raw, ImportOptions{Key: testKey(t), ImageSize: sizes})
	if err != nil {
		t.Fatal(err)
	}
	want := wantImported()
	want.Sort()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("imported:\n%s\nwant:\n%s", g, w)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings for a clean import: %q", warnings)
	}
	// The result is a configuration the store accepts.
	next := got.Clone()
	if err := config.PrepareUpdate(config.Config{}, &next); err != nil {
		t.Fatalf("imported configuration does not validate: %v", err)
	}
}

func TestFromCephISCSIRefusals(t *testing.T) {
	raw, _ := os.ReadFile("testdata/gateway.conf")
	_, _, err := FromCephISCSI(raw, ImportOptions{ImageSize: sizes})
	if err == nil || !strings.Contains(err.Error(), "rh8-client.auth.password is encrypted") || !strings.Contains(err.Error(), "key=") {
		t.Fatalf("no key: %v", err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, _, err = FromCephISCSI(raw, ImportOptions{Key: other, ImageSize: sizes}); err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Fatalf("wrong key: %v", err)
	}
	if _, _, err = FromCephISCSI(raw, ImportOptions{Key: testKey(t), ImageSize: func(p, i string) (config.Size, error) {
		return 0, fmt.Errorf("image %s/%s not found", p, i)
	}}); err == nil || !strings.Contains(err.Error(), "disks.rbd/disk_1: image size") {
		t.Fatalf("missing image: %v", err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(raw, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	for name, tc := range map[string]struct {
		raw  []byte
		want string
	}{
		"backstore": {edit(func(m map[string]any) {
			m["disks"].(map[string]any)["rbd/disk_1"].(map[string]any)["backstore"] = "block"
		}), `backstore "block"`},
		"control": {edit(func(m map[string]any) {
			m["disks"].(map[string]any)["rbd/disk_1"].(map[string]any)["controls"] = map[string]any{"warp_speed": 9}
		}), `unknown control "warp_speed"`},
		"no version": {edit(func(m map[string]any) { delete(m, "version") }), "no version key"},
		"portal gateway unknown": {edit(func(m map[string]any) {
			delete(m["gateways"].(map[string]any), "ceph-gw-2.example.com")
		}), "ceph-gw-2.example.com, which gateways does not list"},
		"not json": {[]byte("{version: 11"), "gateway.conf:"},
	} {
		if _, _, err := FromCephISCSI(tc.raw, ImportOptions{Key: testKey(t), ImageSize: sizes}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	// What does not carry over exactly is said.
	_, warnings, err := FromCephISCSI(edit(func(m map[string]any) {
		tg := m["targets"].(map[string]any)["iqn.2003-01.com.redhat.iscsi-gw:backup"].(map[string]any)
		tg["clients"] = map[string]any{"iqn.1994-05.com.redhat:x": map[string]any{"luns": map[string]any{}}}
		igw := m["targets"].(map[string]any)["iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"].(map[string]any)
		igw["clients"].(map[string]any)["iqn.1994-05.com.redhat:rh7-client"].(map[string]any)["luns"] = map[string]any{}
	}), ImportOptions{Key: testKey(t), ImageSize: sizes})
	if err != nil || len(warnings) < 1 || !strings.Contains(warnings[0], "acl_enabled is false") {
		t.Fatalf("warnings %q %v", warnings, err)
	}
	if IsCephISCSI([]byte(`{"portals":[],"targets":[]}`)) {
		t.Fatal("a gwcli export taken for a gateway.conf")
	}
}
