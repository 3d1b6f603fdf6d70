package gwcli

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/rbdgw/rbdgw/config"
)

const (
	tIQN = "iqn.2026-11.io.rbdgw:t1"
	hIQN = "iqn.1994-05.com.redhat:rh7-client"
)

// sample is a configuration with something of every kind.
func sample() *config.Config {
	c := &config.Config{
		Gateways: []config.Gateway{{Name: "gw1", Portals: []string{"127.0.0.1:3260"}, TPGID: 1}},
		Disks: []config.Disk{
			config.NewDisk("rbd/disk_1", "rbd:rbd/disk_1", 90<<30),
			config.NewDisk("rbd/disk_2", "rbd:rbd/disk_2", 1<<30),
			config.NewDisk("plain", "file:plain.img", 1<<20),
		},
	}
	t := config.NewTarget(tIQN)
	t.Gateways = []string{"gw1"}
	t.LUNs = []config.LUNMap{{LUNID: 0, Disk: "rbd/disk_1"}, {LUNID: 1, Disk: "plain"}}
	t.Hosts = []config.Host{{IQN: hIQN, Auth: config.CHAP{Username: "myiscsiusername", Password: "myiscsipassword"}, LUNs: []uint64{0}}}
	t.HostGroups = []config.HostGroup{{Name: "g1", Disks: []string{"plain"}}}
	c.Targets = []config.Target{t}
	return c
}

func scopeAt(t *testing.T, path string) *Scope {
	t.Helper()
	x := &Scope{}
	x.SetConfig(sample(), nil, path)
	if x.Cwd.Path() != path {
		t.Fatalf("cwd %s, want %s", x.Cwd.Path(), path)
	}
	return x
}

func TestTreePathsAndResolve(t *testing.T) {
	root := Build(sample(), nil)
	for path, kind := range map[string]Kind{
		"/":                      KindRoot,
		"/cluster/gw1":           KindClusterGateway,
		"/disks/rbd/disk_1":      KindDisk,
		"/disks/plain":           KindDisk,
		"/iscsi-targets/" + tIQN: KindTarget,
		"/iscsi-targets/" + tIQN + "/gateways/gw1":     KindTargetGateway,
		"/iscsi-targets/" + tIQN + "/disks/rbd/disk_1": KindTargetDisk,
		"/iscsi-targets/" + tIQN + "/hosts/" + hIQN:    KindHost,
		"/iscsi-targets/" + tIQN + "/host-groups/g1":   KindHostGroup,
	} {
		n, err := Resolve(root, path)
		if err != nil || n.Kind != kind || n.Path() != strings.TrimSuffix(path, "/") && path != "/" {
			t.Errorf("%s: %v %v", path, n, err)
		}
	}
	hosts, _ := Resolve(root, "/iscsi-targets/"+tIQN+"/hosts")
	for rel, want := range map[string]string{
		"..":                     "/iscsi-targets/" + tIQN,
		"../../..":               "/",
		"../../../../..":         "/",
		"./" + hIQN:              "/iscsi-targets/" + tIQN + "/hosts/" + hIQN,
		strings.ToUpper(hIQN):    "/iscsi-targets/" + tIQN + "/hosts/" + hIQN,
		"/disks/rbd/":            "/disks/rbd",
		"../disks/rbd/disk_1/..": "/iscsi-targets/" + tIQN + "/disks/rbd",
	} {
		n, err := Resolve(hosts, rel)
		if err != nil || n.Path() != want {
			t.Errorf("%s from hosts: %v %v, want %s", rel, n, err, want)
		}
	}
	_, err := Resolve(root, "/disks/nope")
	var ae *ArgError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "disk_1") && !strings.Contains(err.Error(), "rbd") {
		t.Fatalf("bad path: %v", err)
	}
	d, _ := Resolve(root, "/disks/rbd/disk_1")
	if d.Ref != "rbd/disk_1" || !strings.Contains(d.State, "90G") || !strings.Contains(d.State, tIQN+" LUN 0") {
		t.Fatalf("disk node %+v", d)
	}
	h, _ := Resolve(root, "/iscsi-targets/"+tIQN+"/hosts/"+hIQN)
	if h.Target != tIQN || h.State != "Auth: CHAP, LUNs: 0" {
		t.Fatalf("host node %+v", h)
	}
}

func TestRender(t *testing.T) {
	var b bytes.Buffer
	Render(&b, Build(sample(), nil), -1)
	out := b.String()
	for _, want := range []string{
		"o- /\n",
		"\n  o- cluster ",
		"\n    o- gw1 ",
		"\n      o- disk_1 ",
		"[DiscoveryAuth: None, Targets: 1]",
		"[Auth: None, Gateways: 1, LUNs: 2, Hosts: 1]",
		"[Auth: CHAP, LUNs: 0]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ls lacks %q:\n%s", want, out)
		}
	}
	// With the cluster's run-time view, each disk names its owner.
	b.Reset()
	Render(&b, Build(sample(), &ClusterView{Owners: map[string]string{"rbd/disk_1": "gw1"}}), -1)
	if !strings.Contains(b.String(), "Owner: gw1]") || strings.Count(b.String(), "Owner:") != 1 {
		t.Errorf("ls with owners:\n%s", b.String())
	}
	b.Reset()
	Render(&b, Build(sample(), nil), 1)
	if strings.Count(b.String(), "\n") != 4 {
		t.Fatalf("depth 1:\n%s", b.String())
	}
}

func texts(s []Suggestion) []string {
	var out []string
	for _, v := range s {
		out = append(out, v.Text)
	}
	return out
}

func TestComplete(t *testing.T) {
	tp := "/iscsi-targets/" + tIQN
	for _, tc := range []struct {
		cwd, line string
		want      []string // all present
		not       []string // none present
	}{
		{"/", "cd /isc", []string{"/iscsi-targets/"}, nil},
		{"/", "cd /iscsi-targets/", []string{tp + "/"}, nil},
		{"/", "ls " + tp + "/h", []string{tp + "/hosts/", tp + "/host-groups/"}, []string{tp + "/disks/"}},
		{"/", "", []string{"ls", "cd", "export", "import", "disks/", "iscsi-targets/"}, []string{"create"}},
		{"/", "/disks cr", []string{"create"}, []string{"cd"}},
		{"/disks", "cr", []string{"create"}, nil},
		{"/disks", "create ", []string{"pool=", "image=", "size=", "count=", "clone="}, nil},
		{"/disks", "create pool=rbd ", []string{"image=", "size="}, []string{"pool="}},
		{"/disks", "create pool=", []string{"pool=rbd"}, nil},
		{"/disks/rbd", "create ", []string{"image="}, []string{"pool="}},
		{"/disks", "snapshot ", []string{"create", "delete", "rollback", "protect", "unprotect", "list"}, nil},
		{"/disks", "snapshot create ", []string{"rbd/disk_1", "plain"}, nil},
		{"/disks/rbd/disk_1", "snapshot create ", nil, []string{"rbd/disk_1"}},
		{"/disks", "trash ", []string{"list", "restore", "purge", "move"}, nil},
		{tp, "reconfigure ", []string{"cmdsn_depth", "immediate_data", "max_burst_length"}, nil},
		{tp, "reconfigure cmd", []string{"cmdsn_depth"}, []string{"immediate_data"}},
		{tp, "auth ", []string{"nochap", "username=", "password=", "mutual_username="}, nil},
		{tp + "/hosts/" + hIQN, "auth username=x ", []string{"password="}, []string{"username="}},
		{tp + "/hosts/" + hIQN, "disk ", []string{"add", "remove"}, nil},
		{tp + "/hosts/" + hIQN, "disk add ", []string{"rbd/disk_1", "plain"}, []string{"rbd/disk_2"}},
		{tp + "/disks", "add ", []string{"rbd/disk_2"}, []string{"rbd/disk_1"}},
		{tp + "/host-groups/g1", "host add ", []string{hIQN}, nil},
		{tp + "/gateways", "create ", []string{"gw1"}, nil},
		{"/iscsi-targets", "delete ", []string{tIQN}, nil},
		{"/", "goto ", nil, nil},
	} {
		got := texts(Complete(scopeAt(t, tc.cwd), tc.line))
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("at %s, %q: no %q in %q", tc.cwd, tc.line, w, got)
			}
		}
		for _, w := range tc.not {
			if slices.Contains(got, w) {
				t.Errorf("at %s, %q: %q should not be offered: %q", tc.cwd, tc.line, w, got)
			}
		}
	}
}

func TestSplit(t *testing.T) {
	for in, want := range map[string][]string{
		"":                           nil,
		"  ls   /disks ":             {"ls", "/disks"},
		`create image="a b" size=1G`: {"create", "image=a b", "size=1G"},
		`auth password='p w' x\ y`:   {"auth", "password=p w", "x y"},
		`a ""`:                       {"a", ""},
	} {
		got, err := Split(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Split(%q) = %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`a "b`, `a 'b`, `a\`} {
		if _, err := Split(bad); err == nil {
			t.Errorf("Split(%q) accepted", bad)
		}
	}
}

// TestArgumentErrors: bad command lines fail with ArgError (exit 2)
// before anything is sent (the scope has no client: a call would panic).
func TestArgumentErrors(t *testing.T) {
	tp := "/iscsi-targets/" + tIQN
	for _, tc := range []struct {
		cwd  string
		line string
		want string
	}{
		{"/", "nosuch", `no command "nosuch"`},
		{"/", "/nope ls", "no such path"},
		{"/disks", "create pool=rbd image=x", "size= is required"},
		{"/disks", "create pool=rbd image=x size=lots", "want a size"},
		{"/disks", "create pool=rbd image=x size=1G colour=red", `unknown argument "colour"`},
		{"/disks", "create pool=rbd image=x size=1G wwn=xyz", "wwn=xyz"},
		{"/disks", "create pool=rbd pool=rbd image=x size=1G", "given twice"},
		{"/disks", "create image=x size=1G", "pool is required"},
		{"/disks", "resize rbd/disk_1", "size is required"},
		{"/disks", "resize rbd/disk_1 1G extra", "unexpected argument"},
		{"/disks", "snapshot frobnicate rbd/disk_1 s", `no command "snapshot"`},
		{"/iscsi-targets", "create iqn.bad", "iqn iqn.bad"},
		{tp, "reconfigure no_such_knob 3", "is not one of"},
		{tp, "auth username=user0001", "give username= and password="},
		{tp, "auth username=user0001 password=short", "password: length 5: CHAP passwords are 12-16 characters"},
		{tp, "auth username=usr password=abcdefghijkl", "username: length 3: CHAP user names are 8-64 characters"},
		{tp, "auth username=user0001 password=abcdefghijk!", "password: a character is not allowed"},
		{tp, "auth username=user0001 password=abcdefghijkl mutual_username=user0002", "both mutual_username= and mutual_password="},
		{tp, "auth username=user0001 password=abcdefghijkl mutual_username=user0002 mutual_password=abcdefghijkl", "must differ from password"},
		{tp, "auth username=user0001 password=abcdefghijkl mutual_username=user0001 mutual_password=abcdefghijkm", "must differ from username"},
		{tp, "auth nochap username=user0001", "nochap takes no username"},
		{tp, "auth sometimes", `"sometimes" is not one of: nochap`},
		{tp + "/disks", "add rbd/disk_2 lun", "lun_id lun"},
		{tp + "/hosts", "create not-an-iqn", "iqn not-an-iqn"},
		{"/", "ls depth=-1", "depth=-1"},
		{"/", "goto nowhere", `no bookmark "nowhere"`},
	} {
		x := scopeAt(t, tc.cwd)
		words, err := Split(tc.line)
		if err != nil {
			t.Fatal(err)
		}
		err = Execute(x, words)
		var ae *ArgError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != ExitBadArgs {
			t.Errorf("at %s, %q: %v; want an argument error with %q", tc.cwd, tc.line, err, tc.want)
		}
	}
}

func TestNavigationNeedsNoAPI(t *testing.T) {
	x := scopeAt(t, "/")
	x.Shell = true
	var out bytes.Buffer
	x.Out = &out
	for _, tc := range []struct{ line, cwd string }{
		{"cd /iscsi-targets/" + tIQN + "/hosts", "/iscsi-targets/" + tIQN + "/hosts"},
		{"cd ..", "/iscsi-targets/" + tIQN},
		{"disks", "/iscsi-targets/" + tIQN + "/disks"},
		{"/disks/rbd", "/disks/rbd"},
		{"cd", "/"},
	} {
		x.NewCwd = ""
		words, _ := Split(tc.line)
		if err := Execute(x, words); err != nil || x.NewCwd != tc.cwd {
			t.Fatalf("%q: %v, cwd %q want %q", tc.line, err, x.NewCwd, tc.cwd)
		}
		x.SetConfig(x.Config, nil, x.NewCwd)
	}
	x.SetConfig(x.Config, nil, "/disks")
	if err := Execute(x, []string{"ls", "rbd"}); err != nil || !strings.Contains(out.String(), "o- disk_2") {
		t.Fatalf("ls rbd: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := Execute(x, []string{"help"}); err != nil || !strings.Contains(out.String(), "snapshot create <disk> <name>") {
		t.Fatalf("help: %v\n%s", err, out.String())
	}
	out.Reset()
	x.SetConfig(x.Config, nil, "/disks/rbd/disk_1")
	if err := Execute(x, []string{"help"}); err != nil || !strings.Contains(out.String(), "snapshot create <name>") || strings.Contains(out.String(), "\n  create ") {
		t.Fatalf("help at a disk: %v\n%s", err, out.String())
	}
	// A node that vanished (deleted meanwhile) leaves the shell at the
	// nearest ancestor.
	x.SetConfig(&config.Config{}, nil, "/disks/rbd/disk_1")
	if x.Cwd.Path() != "/disks" {
		t.Fatalf("cwd after the disk went: %s", x.Cwd.Path())
	}
}

func TestBookmarks(t *testing.T) {
	x := scopeAt(t, "/iscsi-targets/"+tIQN+"/hosts")
	x.BookmarksFile = t.TempDir() + "/bookmarks.json"
	var out bytes.Buffer
	x.Out = &out
	run := func(line string) error {
		words, _ := Split(line)
		x.NewCwd = ""
		return Execute(x, words)
	}
	if err := run("bookmarks add h"); err != nil {
		t.Fatal(err)
	}
	if err := run("bookmarks add d /disks/rbd"); err != nil {
		t.Fatal(err)
	}
	x.SetConfig(x.Config, nil, "/")
	if err := run("goto h"); err != nil || x.NewCwd != "/iscsi-targets/"+tIQN+"/hosts" {
		t.Fatalf("goto h: %v %q", err, x.NewCwd)
	}
	out.Reset()
	if err := run("bookmarks"); err != nil || out.String() != "d\t/disks/rbd\nh\t/iscsi-targets/"+tIQN+"/hosts\n" {
		t.Fatalf("list: %v %q", err, out.String())
	}
	if got := texts(Complete(x, "goto ")); !slices.Equal(got, []string{"d", "h"}) {
		t.Fatalf("completion: %q", got)
	}
	if err := run("bookmarks delete d"); err != nil {
		t.Fatal(err)
	}
	if err := run("goto d"); ExitCode(err) != ExitBadArgs {
		t.Fatalf("goto a deleted bookmark: %v", err)
	}
	if err := run("bookmarks add x /nowhere"); ExitCode(err) != ExitBadArgs {
		t.Fatalf("bookmark of a missing path: %v", err)
	}
	if err := run("bookmarks rename a b"); ExitCode(err) != ExitBadArgs {
		t.Fatalf("unknown action: %v", err)
	}
}
