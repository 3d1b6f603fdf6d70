package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/internal/ptyterm"
)

// gwcli end to end: the admin shell's documented flow (ceph-iscsi's
// "Configuring the iSCSI target using the command line interface") typed
// into the real interactive gwcli through a pseudo-terminal, against the
// API of a real gateway, on an RBD image of a live Ceph cluster; then
// libiscsi logs in with CHAP through each of the two gateways and writes
// and reads the LUN through each.

const (
	gwcliTarget = "iqn.2026-01.io.rbdgw.test:gwcli"
	gwcliUser   = "gwcliuser01"
	gwcliPass   = "gwcliSecret12"
)

// buildGwcli builds cmd/gwcli into dir.
func buildGwcli(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "gwcli")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/gwcli")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build gwcli: %v\n%s", err, out)
	}
	return bin
}

func TestGwcliFlowTwoGatewaysRBD(t *testing.T) {
	lunURL := func(portal string) string {
		return fmt.Sprintf("iscsi://%s%%%s@%s/%s/0", gwcliUser, gwcliPass, portal, gwcliTarget)
	}
	r := newRBDSpec(t) // skips without RBDGW_CEPH_CONF (a live Ceph cluster)
	needEtcd(t)
	needTools(t, "iscsi-inq", "iscsi-ls")
	if buildErr != nil {
		t.Fatalf("rbdgw did not build: %v", buildErr)
	}
	if !serveHasFlag("--api-addr") {
		t.Fatal("rbdgw serve has no --api-addr: the management API is not wired")
	}
	dir := t.TempDir()
	bin := buildGwcli(t, dir)
	etcd := startEtcd(t, 1)

	// Two gateways, gw-a on 127.0.0.1 serving the API, gw-b on 127.0.0.2.
	type gw struct{ name, portal, data, log string }
	var gws []*gw
	for i, host := range []string{"127.0.0.1", "127.0.0.2"} {
		port, err := freePortOn(host)
		if err != nil {
			t.Fatal(err)
		}
		name := "gw-" + string(rune('a'+i))
		g := &gw{name: name, portal: fmt.Sprintf("%s:%d", host, port), data: filepath.Join(dir, name), log: filepath.Join(dir, name+".log")}
		os.MkdirAll(g.data, 0o755)
		gws = append(gws, g)
	}
	apiPort, err := freePortOn("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	apiURL := fmt.Sprintf("http://127.0.0.1:%d", apiPort)

	// The gateways exist before the targets: each process is started as
	// one of them. The ceph section gives the API its image service.
	seed := map[string]any{
		"ceph":     map[string]string{"conf": r.conf},
		"gateways": []map[string]any{{"name": "gw-a", "portals": []string{gws[0].portal}}, {"name": "gw-b", "portals": []string{gws[1].portal}}},
	}
	b, _ := json.Marshal(seed)
	seedPath := filepath.Join(dir, "seed.json")
	os.WriteFile(seedPath, b, 0o600)
	keyFile := writeSecretKey(t, dir)
	if out, err := run(30*time.Second, rbdgwBin, "config", "import", seedPath, "--etcd-endpoints", etcd.Endpoints(), "--secret-key-file", keyFile); err != nil {
		t.Fatalf("config import: %v\n%s", err, out)
	}
	t.Setenv("RBDGW_API_PASSWORD", "apiSecret")
	daemons := make([]*daemon, len(gws))
	t.Cleanup(func() {
		for _, d := range daemons {
			if d == nil {
				continue
			}
			if err := d.Stop(stopGrace); err != nil {
				t.Errorf("stopping %s: %v", d.name, err)
			}
		}
		if t.Failed() {
			for _, g := range gws {
				t.Logf("tail of %s:\n%s", g.log, logTail(g.log, 4000))
			}
		}
	})
	startGateway := func(i int) {
		g := gws[i]
		api := "--api-addr="
		if i == 0 {
			api = "--api-addr=127.0.0.1:" + fmt.Sprint(apiPort)
		}
		d, err := startDaemon(g.name, g.log, rbdgwBin, "serve", "--etcd-endpoints", etcd.Endpoints(), "--gateway-name", g.name,
			"--data-dir", g.data, "--lease-ttl", "2s", api, "--api-user", "admin", "--secret-key-file", keyFile)
		if err != nil {
			t.Fatal(err)
		}
		daemons[i] = d
		if err := waitPortal(d, g.portal, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for i := range gws {
		startGateway(i)
	}

	home := t.TempDir()
	env := append(os.Environ(), "HOME="+home, "RBDGW_API_URL="+apiURL, "RBDGW_API_USER=admin", "RBDGW_API_PASSWORD=apiSecret")
	gwcli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("gwcli %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	disk := r.image("disk0") // rbd/<prefix>-disk0, removed by r's cleanup
	tp := "/iscsi-targets/" + gwcliTarget
	host := tp + "/hosts/" + initiator1
	// ceph-iscsi's documented flow, typed into the interactive shell.
	sh := ptyterm.Start(t, bin, env[len(os.Environ()):])
	sh.Expect(0, "/> ")
	sh.WaitRaw()
	sh.Run("cd /iscsi-targets", "/iscsi-targets> ")
	sh.Run("create "+gwcliTarget, "ok")
	sh.Run("cd "+tp+"/gateways", "/gateways> ")
	sh.Run("create gw-a "+gws[0].portal, "ok")
	sh.Run("create gw-b "+gws[1].portal, "ok")
	sh.Run("/disks create pool="+r.pool+" image="+strings.TrimPrefix(disk, r.pool+"/")+" size=64M", "ok")
	sh.Run("cd "+tp+"/disks", "/disks> ")
	sh.Run("add "+disk, "ok")
	sh.Run("cd "+tp+"/hosts", "/hosts> ")
	sh.Run("create "+initiator1, "ok")
	sh.Run("cd "+host, initiator1+"> ")
	sh.Run("auth username="+gwcliUser+" password="+gwcliPass, "ok")
	sh.Run("disk add "+disk, "ok")
	sh.Send("exit\r")
	sh.Wait()
	if out := gwcli("ls", "/cluster"); strings.Count(out, "[up, ") != 2 || !strings.Contains(out, "HEALTH_") || !strings.Contains(out, r.pool) {
		t.Fatalf("both gateways should be up, and the Ceph health and pools shown:\n%s", out)
	}
	if out, err := r.cli(time.Minute, "info", disk); err != nil || !strings.Contains(out, "64 MiB") {
		t.Fatalf("rbd info %s: %v\n%s", disk, err, out)
	}

	// Each gateway logs the CHAP initiator in, answers INQUIRY (TEST UNIT
	// READY, which libiscsi's tools send first, succeeds on the LU's
	// non-owner too) and refuses a wrong secret; the change reached both
	// through etcd.
	loggedIn := func(out string, err error) bool {
		return err == nil && strings.Contains(out, "Lun:0")
	}
	for _, g := range gws {
		var out string
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			out, err = run(20*time.Second, "iscsi-ls", "-s", "-i", initiator1, fmt.Sprintf("iscsi://%s%%%s@%s", gwcliUser, gwcliPass, g.portal))
			if loggedIn(out, err) {
				break
			}
		}
		if !loggedIn(out, err) || !strings.Contains(out, gwcliTarget) {
			t.Fatalf("%s: iscsi-ls: %v\n%s", g.name, err, out)
		}
		bad := fmt.Sprintf("iscsi://%s%%%s@%s/%s/0", gwcliUser, "wrongSecret123", g.portal, gwcliTarget)
		if out, err := run(20*time.Second, "iscsi-inq", "-i", initiator1, bad); err == nil || loggedIn(out, err) || strings.Contains(out, "NOT READY") {
			t.Fatalf("%s: a wrong CHAP secret logged in:\n%s", g.name, out)
		}
		if out, err := run(20*time.Second, "iscsi-inq", "-i", initiator1, lunURL(g.portal)); err != nil {
			t.Fatalf("%s: iscsi-inq: %v\n%s", g.name, err, out)
		}
	}

	// The initiator reads and writes the LUN through each gateway: the
	// owner serves them itself, the other forwards them to the owner.
	// Then the owner stops (SIGTERM: it releases the image and its lease
	// at once), the other takes the LU over and serves the same reads and
	// writes on its own; the stopped gateway comes back.
	rw := func(g *gw) (string, error) {
		for _, test := range []string{"ALL.Write10.Simple", "ALL.Read10.Simple"} {
			out, err := run(60*time.Second, "iscsi-test-cu", "--dataloss", "-i", initiator1, "-t", test, lunURL(g.portal))
			if r := classify(out, err); r.outcome != outPass {
				return out, fmt.Errorf("%s through %s: %s %s", test, g.name, r.outcome, r.detail)
			}
		}
		return "", nil
	}
	// gwcli names the LU's owner.
	owner := -1
	ls := gwcli("ls", "/disks")
	for i, g := range gws {
		if strings.Contains(ls, "Owner: "+g.name+"]") {
			owner = i
		}
	}
	if owner < 0 {
		t.Fatalf("gwcli ls /disks names no owner:\n%s", ls)
	}
	if out, err := rw(gws[owner]); err != nil {
		t.Fatalf("the owner %s did not serve reads and writes: %v\n%s", gws[owner].name, err, out)
	}
	other := 1 - owner
	if out, err := rw(gws[other]); err != nil {
		t.Fatalf("%s did not serve (forward) reads and writes while %s owned the LU: %v\n%s", gws[other].name, gws[owner].name, err, out)
	}
	stopped := time.Now()
	if err := daemons[owner].Stop(stopGrace); err != nil {
		t.Fatal(err)
	}
	var out string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if out, err = rw(gws[other]); err == nil {
			t.Logf("%s served reads and writes %s after %s was told to stop", gws[other].name, time.Since(stopped), gws[owner].name)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not serve reads and writes after %s stopped: %v\n%s", gws[other].name, gws[owner].name, err, out)
		}
	}
	startGateway(owner)

	// The undo, in reverse. The gateways close a disk once it leaves the
	// configuration, so deleting it also deletes its RBD image.
	gwcli(host, "disk", "remove", disk)
	gwcli(tp+"/hosts", "delete", initiator1)
	gwcli(tp+"/disks", "delete", disk)
	gwcli("/disks", "delete", disk)
	if out, err := r.cli(time.Minute, "info", disk); err == nil {
		t.Fatalf("rbd info %s after /disks delete: the image is still there\n%s", disk, out)
	}
	if out := gwcli("ls", "/"); strings.Contains(out, "disk0") || !strings.Contains(out, "[Auth: None, Gateways: 2, LUNs: 0, Hosts: 0]") {
		t.Fatalf("after the undo:\n%s", out)
	}
}
