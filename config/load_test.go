package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadExample(t *testing.T) {
	c, err := Load("../docs/example-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Targets) != 1 || len(c.Disks) != 2 {
		t.Fatalf("targets %d disks %d", len(c.Targets), len(c.Disks))
	}
	d1, ok := c.Disk("disk1")
	if !ok || d1.Size != 256<<20 || d1.BlockSize != 512 || d1.Controls != DefaultDiskControls() {
		t.Fatalf("disk1 defaults not applied: %+v", d1)
	}
	tg := c.Targets[0]
	if tg.Controls != DefaultTargetControls() {
		t.Fatalf("controls %+v", tg.Controls)
	}
	if len(tg.Hosts) != 2 || tg.Hosts[0].Auth.Username != "client1user" || len(tg.Hosts[1].LUNs) != 2 {
		t.Fatalf("hosts %+v", tg.Hosts)
	}
}

func TestPartialControlsKeepDefaults(t *testing.T) {
	y := `
portals: ["127.0.0.1:3260"]
disks:
  - {name: d, backend: "file:/x", size: 1M, controls: {hw_max_sectors: 64}}
targets:
  - iqn: iqn.2026-11.io.rbdgw:t
    controls: {cmdsn_depth: 512, immediate_data: no}
    luns: [{lun_id: 3, disk: d}]
`
	for _, tc := range []struct {
		name string
		in   []byte
		f    Format
	}{
		{"yaml", []byte(y), FormatYAML},
		{"json", toJSON(t, y), FormatJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.in, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			ctl := c.Targets[0].Controls
			want := DefaultTargetControls()
			want.CmdSNDepth = 512
			want.ImmediateData = false
			if ctl != want {
				t.Fatalf("controls %+v want %+v", ctl, want)
			}
			dc := c.Disks[0].Controls
			if dc.HWMaxSectors != 64 || dc.MaxDataAreaMB != DefaultMaxDataAreaMB || c.Disks[0].BlockSize != 512 {
				t.Fatalf("disk %+v", c.Disks[0])
			}
			if c.DataDir != DefaultDataDir {
				t.Fatalf("data_dir %q", c.DataDir)
			}
		})
	}
}

// toJSON converts the YAML test input to JSON through the model, so both
// decoders see the same document.
func toJSON(t *testing.T, y string) []byte {
	c, err := Parse([]byte(y), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Marshal(c, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnknownKeysRejected(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		f        Format
	}{
		{"yaml top", "portalz: []\n", FormatYAML},
		{"yaml target control", "targets:\n- iqn: iqn.2026-11.io.x:y\n  controls: {cmdsn_dept: 4}\n", FormatYAML},
		{"yaml disk", "disks:\n- {name: a, backnd: x}\n", FormatYAML},
		{"json top", `{"portalz": []}`, FormatJSON},
		{"json nested", `{"targets":[{"iqn":"iqn.2026-11.io.x:y","controls":{"cmdsn_dept":4}}]}`, FormatJSON},
		{"json disk controls", `{"disks":[{"name":"a","controls":{"hw_max_sector":4}}]}`, FormatJSON},
		{"json trailing", `{} {}`, FormatJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.in), tc.f); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	c, err := Load("../docs/example-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []Format{FormatYAML, FormatJSON} {
		b, err := Marshal(c, f)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := Parse(b, f)
		if err != nil {
			t.Fatalf("format %d: %v\n%s", f, err, b)
		}
		j1, _ := json.Marshal(c)
		j2, _ := json.Marshal(c2)
		if string(j1) != string(j2) {
			t.Fatalf("format %d round trip:\n%s\n%s", f, j1, j2)
		}
	}
}

func TestLoadJSONFileAndInvalid(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "c.json")
	os.WriteFile(good, []byte(`{"portals":["[::1]:3260"],"disks":[{"name":"a","backend":"file:a.img","size":"4K"}],
"targets":[{"iqn":"iqn.2026-11.io.rbdgw:a","luns":[{"lun_id":0,"disk":"a"}]}]}`), 0o600)
	c, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Disks[0].Size != 4096 {
		t.Fatalf("size %d", c.Disks[0].Size)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("targets:\n- iqn: iqn.2026-11.io.rbdgw:a\n  luns: [{lun_id: 0, disk: nope}]\n"), 0o600)
	_, err = Load(bad)
	var fe *FieldError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "targets[0].luns[0].disk") {
		t.Fatalf("err %v", err)
	}
}

func TestRedactedHidesSecrets(t *testing.T) {
	c, err := Load("../docs/example-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c.Redacted())
	for _, s := range []string{"examplepass12", "client1pass12"} {
		if strings.Contains(string(b), s) {
			t.Fatalf("secret %q in redacted output", s)
		}
	}
	if c.Targets[0].Auth.Password != "examplepass12" {
		t.Fatal("Redacted changed the original")
	}
}

func TestCloneIsDeep(t *testing.T) {
	c, _ := Load("../docs/example-config.yaml")
	d := c.Clone()
	d.Targets[0].Hosts[0].LUNs[0] = 9
	d.Targets[0].LUNs[0].Disk = "x"
	d.Portals[0] = "y"
	if c.Targets[0].Hosts[0].LUNs[0] != 0 || c.Targets[0].LUNs[0].Disk != "disk0" || c.Portals[0] == "y" {
		t.Fatal("clone shares memory")
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"1G", 1 << 30, true}, {"1g", 1 << 30, true}, {"512", 512, true}, {"4KiB", 4096, true},
		{"10MB", 10 << 20, true}, {"2T", 2 << 40, true}, {" 3 M ", 3 << 20, true}, {"0", 0, true},
		{"", 0, false}, {"-1", 0, false}, {"1.5G", 0, false}, {"G", 0, false}, {"9999999999T", 0, false}, {"1P", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v", tc.in, got, err)
		}
		if tc.ok && tc.want != 0 {
			back, err := ParseSize(got.String())
			if err != nil || back != got {
				t.Errorf("String round trip %q: %q", tc.in, got.String())
			}
		}
	}
}
