package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/rbdlun"
	"github.com/rbdgw/rbdgw/scsi"
)

func testConfig(t *testing.T) config.Config {
	t.Helper()
	c := config.Default()
	c.DataDir = t.TempDir()
	c.Portals = []string{"127.0.0.1:0"}
	c.Disks = []config.Disk{
		config.NewDisk("d0", "file:d0.img", 64<<20),
		config.NewDisk("d1", "file:"+filepath.Join(c.DataDir, "images", "sub", "abs.img"), 16<<20),
	}
	tg := config.NewTarget("iqn.2026-11.io.rbdgw:gwtest")
	tg.LUNs = []config.LUNMap{{LUNID: 0, Disk: "d0"}, {LUNID: 5, Disk: "d1"}}
	tg.Hosts = []config.Host{{IQN: "iqn.2026-11.io.rbdgw:only-d1", LUNs: []uint64{5}}, {IQN: "iqn.2026-11.io.rbdgw:any", LUNs: []uint64{0, 5}}}
	tg.Auth = config.CHAP{Username: "gwtestuser", Password: "gwtestsecret1"}
	c.Targets = []config.Target{tg}
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestStartBuildsTargetsAndShutsDown(t *testing.T) {
	c := testConfig(t)
	g, err := Start(Config{Config: c, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	<-g.Ready()
	addr := g.Addrs()[0].(*net.TCPAddr)
	if addr.Port == 0 || !addr.IP.IsLoopback() {
		t.Fatalf("bound %v", addr)
	}
	// The image was created sparse, relative to the image root.
	st, err := os.Stat(filepath.Join(c.DataDir, "images", "d0.img"))
	if err != nil || st.Size() != 64<<20 {
		t.Fatalf("image: %v %v", st, err)
	}
	lus := g.LogicalUnits()
	if len(lus) != 2 || lus["d0"].Config().BlockSize != 512 || !lus["d0"].Config().ThinProvisioned {
		t.Fatalf("lus %v", lus)
	}
	if lus["d0"].Config().MaxTransferBlocks != config.DefaultHWMaxSectors {
		t.Fatalf("hw_max_sectors not mapped: %d", lus["d0"].Config().MaxTransferBlocks)
	}
	// The backend is wrapped by the stall detector, which keeps the file
	// backend's capabilities.
	be := lus["d0"].Backend()
	if _, ok := be.(scsi.WriteZeroer); !ok {
		t.Fatal("WriteZeroer lost")
	}
	if u, ok := be.(rbdlun.Unwrapper); !ok {
		t.Fatal("not wrapped")
	} else if _, ok := u.Unwrap().(*rbdlun.FileBackend); !ok {
		t.Fatal("inner is not the file backend")
	}
	// A TCP client can connect to the portal.
	nc, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	// The listener is gone and the image lock released.
	if nc, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond); err == nil {
		nc.Close()
		t.Fatal("portal still accepting after Shutdown")
	}
	fb, err := rbdlun.OpenFile(filepath.Join(c.DataDir, "images", "d0.img"), 0, rbdlun.FileOptions{})
	if err != nil {
		t.Fatalf("image still locked after Shutdown: %v", err)
	}
	fb.Close()
}

func TestWWNGeneratedAndPersisted(t *testing.T) {
	c := testConfig(t)
	g, err := Start(Config{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	w1 := g.LogicalUnits()["d0"].Config().WWN
	g.Close()
	if w1[0]>>4 != 6 || !strings.HasPrefix(config.FormatWWN(w1), "6001405") {
		t.Fatalf("generated WWN %x is not LIO-style NAA 6", w1)
	}
	g, err = Start(Config{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	w2 := g.LogicalUnits()["d0"].Config().WWN
	w3 := g.LogicalUnits()["d1"].Config().WWN
	g.Close()
	if w1 != w2 {
		t.Fatalf("WWN changed across restarts: %x -> %x", w1, w2)
	}
	if w2 == w3 {
		t.Fatal("two disks share a WWN")
	}
	// A configured ceph-iscsi UUID becomes LIO's NAA form.
	c.Disks[0].WWN = "12345678-9abc-def0-1234-56789abcdef0"
	g, err = Start(Config{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	w4 := g.LogicalUnits()["d0"].Config().WWN
	g.Close()
	if got := config.FormatWWN(w4); got != "60014051-2345-6789-abcd-ef0123456789" {
		t.Fatalf("derived %s", got)
	}
}

func TestStartRejectsInvalidConfig(t *testing.T) {
	c := testConfig(t)
	c.Targets[0].Controls.MaxBurstLength = 1
	if _, err := Start(Config{Config: c}); err == nil || !strings.Contains(err.Error(), "max_burst_length") {
		t.Fatalf("err %v", err)
	}
	c = testConfig(t)
	c.Disks[0].Backend = "rbd:pool/img"
	if _, err := Start(Config{Config: c}); err == nil || !strings.Contains(err.Error(), "rbd") {
		t.Fatalf("err %v", err)
	}
}

func TestStartCleansUpOnPortalFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c := testConfig(t)
	c.Portals = []string{"127.0.0.1:0", busy.Addr().String()}
	if _, err := Start(Config{Config: c}); err == nil {
		t.Fatal("started on a busy port")
	}
	// The disks opened before the failure were closed (their flock is free).
	fb, err := rbdlun.OpenFile(filepath.Join(c.DataDir, "images", "d0.img"), 0, rbdlun.FileOptions{})
	if err != nil {
		t.Fatalf("disk left open after failed start: %v", err)
	}
	fb.Close()
}

func TestStartCleansUpOnDiskFailure(t *testing.T) {
	c := testConfig(t)
	// d1 points into a directory that cannot be created.
	blocker := filepath.Join(c.DataDir, "images", "file")
	os.MkdirAll(filepath.Dir(blocker), 0o700)
	os.WriteFile(blocker, nil, 0o600)
	c.Disks[1].Backend = "file:" + filepath.Join(blocker, "x.img")
	if _, err := Start(Config{Config: c}); err == nil {
		t.Fatal("started with an unusable disk")
	}
	fb, err := rbdlun.OpenFile(filepath.Join(c.DataDir, "images", "d0.img"), 0, rbdlun.FileOptions{})
	if err != nil {
		t.Fatalf("d0 left open: %v", err)
	}
	fb.Close()
}

func TestConfigIsCopied(t *testing.T) {
	c := testConfig(t)
	g, err := Start(Config{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c.Targets[0].LUNs[0].Disk = "changed"
	if g.Config().Targets[0].LUNs[0].Disk != "d0" {
		t.Fatal("gateway shares the caller's config")
	}
}

func TestOperationalMapping(t *testing.T) {
	c := config.DefaultTargetControls()
	c.CmdSNDepth = 256
	c.NopInTimeout = 7
	c.NopInResponseTimeout = 9
	c.ImmediateData = false
	op := operational(c)
	if op.CmdSNDepth != 256 || op.NopInInterval != 7*time.Second || op.NopInTimeout != 9*time.Second ||
		op.ImmediateData || op.DataOutTimeout != 20*time.Second || op.MaxBurstLength != 524288 {
		t.Fatalf("%+v", op)
	}
}

// TestIscsiLs logs in with libiscsi's iscsi-ls when it is installed: the
// composition works end to end (CHAP, LUN map, per-host LUN list).
func TestIscsiLs(t *testing.T) {
	bin, err := exec.LookPath("iscsi-ls")
	if err != nil {
		t.Skip("iscsi-ls not installed")
	}
	c := testConfig(t)
	g, err := Start(Config{Config: c, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	addr := g.Addrs()[0].String()
	run := func(initiator string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "-s", "-i", initiator,
			"iscsi://gwtestuser%gwtestsecret1@"+addr).CombinedOutput()
		if err != nil {
			t.Fatalf("iscsi-ls as %s: %v\n%s", initiator, err, out)
		}
		return string(out)
	}
	out := run("iqn.2026-11.io.rbdgw:any")
	t.Logf("iscsi-ls:\n%s", out)
	if !strings.Contains(out, "iqn.2026-11.io.rbdgw:gwtest") || !strings.Contains(out, "Lun:0") || !strings.Contains(out, "Lun:5") {
		t.Fatalf("all-LUN view:\n%s", out)
	}
	out = run("iqn.2026-11.io.rbdgw:only-d1")
	if strings.Contains(out, "Lun:0 ") || !strings.Contains(out, "Lun:5") {
		t.Fatalf("host LUN list not applied:\n%s", out)
	}
}

// TestQemuImgRoundTrip writes data through qemu-img (libiscsi), restarts
// the gateway and compares: what an initiator was told is written survives
// a Shutdown/Start cycle.
func TestQemuImgRoundTrip(t *testing.T) {
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	c := testConfig(t)
	c.Targets[0].Hosts = nil
	src := filepath.Join(t.TempDir(), "src.raw")
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	url := func(g *Gateway) string {
		return "iscsi://gwtestuser%gwtestsecret1@" + g.Addrs()[0].String() + "/iqn.2026-11.io.rbdgw:gwtest/5"
	}
	qemu := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
	}
	g, err := Start(Config{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	qemu("convert", "-n", "-f", "raw", "-O", "raw", src, url(g))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	g, err = Start(Config{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	// The LUN is 16 MiB, the source 8 MiB: compare the prefix, and the
	// backing file directly.
	dst := filepath.Join(t.TempDir(), "dst.raw")
	qemu("convert", "-f", "raw", "-O", "raw", url(g), dst)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 16<<20 || !bytesEqual(got[:8<<20], data) || !bytesEqual(got[8<<20:], make([]byte, 8<<20)) {
		t.Fatal("data read back through iSCSI differs from what was written")
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// TestInjectedWriteFailureReachesInitiator fails every write of one disk
// through WrapBackend and checks that qemu-img sees the error rather than
// a silent success.
func TestInjectedWriteFailureReachesInitiator(t *testing.T) {
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	c := testConfig(t)
	c.Targets[0].Hosts = nil
	sw := rbdlun.NewSwitch(rbdlun.FailOps(rbdlun.OpWrite, rbdlun.OpWriteZeroes, rbdlun.OpUnmap))
	counter := &rbdlun.Counter{Injector: sw}
	g, err := Start(Config{Config: c, WrapBackend: func(disk string, b scsi.Backend) scsi.Backend {
		if disk == "d1" {
			return rbdlun.WithFaults(b, counter)
		}
		return b
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	src := filepath.Join(t.TempDir(), "src.raw")
	os.WriteFile(src, bytes.Repeat([]byte{0x5A}, 1<<20), 0o600)
	url := "iscsi://gwtestuser%gwtestsecret1@" + g.Addrs()[0].String() + "/iqn.2026-11.io.rbdgw:gwtest/5"
	convert := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return exec.CommandContext(ctx, bin, "convert", "-n", "-f", "raw", "-O", "raw", src, url).Run()
	}
	if err := convert(); err != nil {
		t.Fatalf("healthy write failed: %v", err)
	}
	sw.Set(true)
	if err := convert(); err == nil {
		t.Fatal("qemu-img reported success while every write failed")
	}
	if counter.Count() == 0 {
		t.Fatal("no fault injected")
	}
}

// file: disks open only inside the image roots: a path elsewhere (a
// root-only file, say), one that climbs out with "..", and a symlink
// inside the root that points out are all refused, and a relative image
// left in the data directory by an older version is named, not replaced
// by an empty one.
func TestFileDisksStayInTheirRoots(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret.img")
	if err := os.WriteFile(outside, bytes.Repeat([]byte("s"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t)
	root := filepath.Join(c.DataDir, "images")
	os.MkdirAll(root, 0o700)
	if err := os.Symlink(outside, filepath.Join(root, "link.img")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(c.DataDir, "api-password"), []byte("pw"), 0o600)
	for name, backend := range map[string]string{
		"absolute path outside":    "file:" + outside,
		"relative climbing out":    "file:../api-password",
		"absolute climbing out":    "file:" + root + "/../api-password",
		"symlink pointing outside": "file:link.img",
	} {
		c := c
		c.Disks = append([]config.Disk(nil), c.Disks...)
		c.Disks[1].Backend = backend
		c.Disks[1].Size = 0
		if g, err := Start(Config{Config: c}); err == nil {
			g.Close()
			t.Errorf("%s (%s): started", name, backend)
		}
	}
	// An extra root admits its files, by absolute path.
	c.Disks[1].Backend = "file:" + outside
	g, err := Start(Config{Config: c, ImageRoots: []string{root, filepath.Dir(outside)}})
	if err != nil {
		t.Fatalf("a file under an extra root: %v", err)
	}
	g.Close()

	// An image where relative paths used to lead.
	c2 := testConfig(t)
	os.WriteFile(filepath.Join(c2.DataDir, "d0.img"), make([]byte, 4096), 0o600)
	if _, err := Start(Config{Config: c2}); err == nil || !strings.Contains(err.Error(), "move it there") {
		t.Fatalf("image left in the data directory: %v", err)
	}
}
