//go:build rbd

package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/scsi"
)

// These tests serve rbd: disks from a live cluster:
//
//	ceph/micro-cluster.sh start /tmp/ceph
//	RBDGW_CEPH_CONF=/tmp/ceph/ceph.conf go test -race -tags rbd,pacific -run RBD ./gateway
//
// RBDGW_CEPH_USER and RBDGW_CEPH_KEYRING make the gateways connect as
// another client (a cephx cluster: micro-cluster.sh start DIR --cephx),
// for instance one with only `mon 'profile rbd' osd 'profile rbd'` caps.

func rbdTestConf(t *testing.T) string {
	t.Helper()
	conf := os.Getenv("RBDGW_CEPH_CONF")
	if conf == "" {
		t.Skip("RBDGW_CEPH_CONF is not set: no Ceph cluster to test against (start one with ceph/micro-cluster.sh start DIR)")
	}
	return conf
}

// rbdCLI runs the rbd command line tool against the test cluster.
func rbdCLI(t *testing.T, conf string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rbd", append([]string{"-c", conf}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rbd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rbdTestImage names a fresh image in pool rbd, removed after the test.
func rbdTestImage(t *testing.T, conf string) string {
	name := fmt.Sprintf("gw-test-%d-%08x", time.Now().UnixNano()%1e6, mrand.Uint32())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		exec.CommandContext(ctx, "rbd", "-c", conf, "rm", "--no-progress", "rbd/"+name).Run()
	})
	return name
}

// rbdGatewayConfig serves one rbd: disk "r0" as LUN 0.
func rbdGatewayConfig(t *testing.T, conf, image string, size config.Size) config.Config {
	c := config.Default()
	c.DataDir = t.TempDir()
	c.Portals = []string{"127.0.0.1:0"}
	c.Ceph = config.Ceph{Conf: conf, User: os.Getenv("RBDGW_CEPH_USER"), Keyring: os.Getenv("RBDGW_CEPH_KEYRING")}
	d := config.NewDisk("r0", "rbd:rbd/"+image, size)
	d.Create = true
	d.WWN = "6001405abcdef0123456789abcdef012" // both gateways present one LU
	c.Disks = []config.Disk{d}
	tg := config.NewTarget("iqn.2026-11.io.rbdgw:rbdtest")
	tg.ACL = config.ACLOpen
	tg.LUNs = []config.LUNMap{{LUNID: 0, Disk: "r0"}}
	c.Targets = []config.Target{tg}
	return c
}

// cmdRunner executes CDBs on an LU as one I_T nexus.
type cmdRunner struct {
	t     *testing.T
	lu    *scsi.LogicalUnit
	nexus *scsi.Nexus
}

func newCmdRunner(t *testing.T, lu *scsi.LogicalUnit, name string) *cmdRunner {
	n := &scsi.Nexus{InitiatorPort: name + ",i,0x000000000001", InitiatorName: name, TargetPort: "iqn.2026-11.io.rbdgw:rbdtest,t,0x1", RelativeTargetPort: 1, TargetPortGroup: 1}
	r := &cmdRunner{t: t, lu: lu, nexus: n}
	// The first command of a new nexus reports the power-on unit attention.
	r.exec([]byte{0x00, 0, 0, 0, 0, 0}, nil, 0)
	return r
}

func (r *cmdRunner) exec(cdb, out []byte, in int) scsi.Response {
	cmd := &scsi.Command{Nexus: r.nexus, CDB: cdb, DataOut: out, ExpectedLength: uint32(len(out) + in), DataIn: make([]byte, in)}
	switch {
	case out != nil:
		cmd.Dir = scsi.DirWrite
	case in > 0:
		cmd.Dir = scsi.DirRead
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return r.lu.Execute(ctx, cmd)
}

func (r *cmdRunner) write(lba uint32, p []byte) scsi.Response {
	cdb := []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], uint16(len(p)/512))
	return r.exec(cdb, p, 0)
}

func (r *cmdRunner) read(lba uint32, blocks int) (scsi.Response, []byte) {
	cdb := []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], uint16(blocks))
	cmd := &scsi.Command{Nexus: r.nexus, CDB: cdb, Dir: scsi.DirRead, ExpectedLength: uint32(blocks * 512), DataIn: make([]byte, blocks*512)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := r.lu.Execute(ctx, cmd)
	return resp, cmd.DataIn[:resp.DataLen]
}

// good fails the test unless resp is GOOD.
func (r *cmdRunner) good(what string, resp scsi.Response) {
	r.t.Helper()
	if resp.Status != scsi.StatusGood {
		r.t.Fatalf("%s: status %#x sense %s", what, resp.Status, senseString(resp.Sense))
	}
}

// sense fails the test unless resp is CHECK CONDITION with want
// ("key/asc/ascq" in hex).
func (r *cmdRunner) sense(what string, resp scsi.Response, want string) {
	r.t.Helper()
	if resp.Status != scsi.StatusCheckCondition || senseString(resp.Sense) != want {
		r.t.Fatalf("%s: status %#x sense %s, want CHECK CONDITION %s", what, resp.Status, senseString(resp.Sense), want)
	}
}

// senseString renders key/ASC/ASCQ of fixed-format sense data.
func senseString(s []byte) string {
	if len(s) < 14 {
		return fmt.Sprintf("%x", s)
	}
	return fmt.Sprintf("%02x/%02x/%02x", s[2]&0x0f, s[12], s[13])
}

func randomBytes(n int) []byte {
	p := make([]byte, n)
	rand.Read(p)
	return p
}

// TestRBDDiskServesCreatesAndGrows: an rbd: disk with create is created at
// its size, serves reads and writes, holds the image's exclusive lock,
// grows on reload, and the cluster connection closes with the gateway.
func TestRBDDiskServesCreatesAndGrows(t *testing.T) {
	conf := rbdTestConf(t)
	image := rbdTestImage(t, conf)
	c := rbdGatewayConfig(t, conf, image, 16<<20)
	g, err := Start(Config{Config: c, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	lu := g.LogicalUnits()["r0"]
	if got := lu.Backend().Size(); got != 16<<20 {
		t.Fatalf("size %d, want %d", got, 16<<20)
	}
	if owned, err := g.OwnsDisk("r0"); !owned || err != nil {
		t.Fatalf("OwnsDisk = %v, %v; want the lock held", owned, err)
	}
	if _, ok := lu.Backend().(scsi.WriteZeroer); !ok {
		t.Fatal("the rbd backend's WRITE SAME/zeroing capability is hidden by the wrappers")
	}
	r := newCmdRunner(t, lu, "iqn.2026-11.io.rbdgw:gwtest-a")
	data := randomBytes(8192)
	r.good("write", r.write(100, data))
	resp, got := r.read(100, 16)
	r.good("read", resp)
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs from what was written")
	}
	r.good("test unit ready", r.exec([]byte{0x00, 0, 0, 0, 0, 0}, nil, 0))

	// Reload grows the image; initiators see a capacity change.
	c2 := c.Clone()
	c2.Disks[0].Size = 32 << 20
	if err := g.Reload(c2); err != nil {
		t.Fatal(err)
	}
	if got := lu.Backend().Size(); got != 32<<20 {
		t.Fatalf("size after reload %d, want %d", got, 32<<20)
	}
	if !strings.Contains(rbdCLI(t, conf, "info", "rbd/"+image), "32 MiB") {
		t.Fatalf("rbd info does not show 32 MiB:\n%s", rbdCLI(t, conf, "info", "rbd/"+image))
	}
	r.sense("TEST UNIT READY after growing (CAPACITY DATA HAS CHANGED)", r.exec([]byte{0x00, 0, 0, 0, 0, 0}, nil, 0), "06/2a/09")

	// A restart keeps the data; a smaller configured size keeps the image's.
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if g.ceph.cl != nil || g.ceph.refs != 0 {
		t.Fatalf("cluster still connected after Close (refs %d)", g.ceph.refs)
	}
	g, err = Start(Config{Config: c, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	lu = g.LogicalUnits()["r0"]
	if got := lu.Backend().Size(); got != 32<<20 {
		t.Fatalf("size after restart with a smaller configured size: %d, want the image's %d", got, 32<<20)
	}
	r = newCmdRunner(t, lu, "iqn.2026-11.io.rbdgw:gwtest-a")
	resp, got = r.read(100, 16)
	r.good("read after restart", resp)
	if !bytes.Equal(got, data) {
		t.Fatal("data lost across a restart")
	}
}

// TestRBDMissingImage: without create a missing image fails the start
// with an error that says what to do.
func TestRBDMissingImage(t *testing.T) {
	conf := rbdTestConf(t)
	c := rbdGatewayConfig(t, conf, rbdTestImage(t, conf), 16<<20)
	c.Disks[0].Create = false
	_, err := Start(Config{Config: c})
	if err == nil || !strings.Contains(err.Error(), "create: true") || !strings.Contains(err.Error(), "disk r0") {
		t.Fatalf("start with a missing image: %v", err)
	}
}

// An image without exclusive-lock cannot be handed between gateways: the
// start fails naming the feature and how to enable it.
func TestRBDImageWithoutExclusiveLock(t *testing.T) {
	conf := rbdTestConf(t)
	image := rbdTestImage(t, conf)
	rbdCLI(t, conf, "create", "--size", "16M", "--image-feature", "layering", "rbd/"+image)
	c := rbdGatewayConfig(t, conf, image, 16<<20)
	c.Disks[0].Create = false
	_, err := Start(Config{Config: c})
	if err == nil || !strings.Contains(err.Error(), "exclusive-lock") || !strings.Contains(err.Error(), "rbd feature enable") {
		t.Fatalf("start with an image lacking exclusive-lock: %v", err)
	}
}

// TestRBDTakeover: a second gateway opening the image takes it over
// (newest wins): the first answers NOT READY for reads, writes and TEST
// UNIT READY, recovers a fresh rados client but does not retake the lock
// by itself; TakeOwnership without force is refused while the second
// holds the lock, with force it moves the lock back.
func TestRBDTakeover(t *testing.T) {
	conf := rbdTestConf(t)
	image := rbdTestImage(t, conf)
	c := rbdGatewayConfig(t, conf, image, 16<<20)
	ga, err := Start(Config{Config: c, Logger: testLogger(t).With("gw", "a")})
	if err != nil {
		t.Fatal(err)
	}
	defer ga.Close()
	ra := newCmdRunner(t, ga.LogicalUnits()["r0"], "iqn.2026-11.io.rbdgw:gwtest-a")
	ra.good("write on a", ra.write(0, bytes.Repeat([]byte{0xAA}, 4096)))

	cb := c.Clone()
	cb.DataDir = t.TempDir()
	gb, err := Start(Config{Config: cb, Logger: testLogger(t).With("gw", "b")})
	if err != nil {
		t.Fatal(err)
	}
	defer gb.Close()
	rb := newCmdRunner(t, gb.LogicalUnits()["r0"], "iqn.2026-11.io.rbdgw:gwtest-b")
	rb.good("write on b", rb.write(8, bytes.Repeat([]byte{0xBB}, 4096)))

	// a's next write fails at once (its client is blocklisted), cleanly.
	start := time.Now()
	ra.sense("a's write after the takeover", ra.write(16, bytes.Repeat([]byte{0xA1}, 4096)), "02/04/0a")
	t.Logf("a's write after the takeover failed in %v", time.Since(start))
	// The watcher notices the loss and the gate closes reads too.
	deadline := time.Now().Add(10 * time.Second)
	for {
		owned, _ := ga.OwnsDisk("r0")
		if !owned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a still believes it owns the disk 10s after the takeover")
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, _ := ra.read(8, 8)
	ra.sense("a's read after the takeover", resp, "02/04/0a")
	ra.sense("a's TEST UNIT READY after the takeover", ra.exec([]byte{0x00, 0, 0, 0, 0, 0}, nil, 0), "02/04/0a")
	// a stays off: no lock ping-pong.
	time.Sleep(2 * time.Second)
	if owned, _ := gb.OwnsDisk("r0"); !owned {
		t.Fatal("b lost the disk without anyone asking")
	}
	resp, got := rb.read(0, 24)
	rb.good("read on b", resp)
	if !bytes.Equal(got[:4096], bytes.Repeat([]byte{0xAA}, 4096)) || !bytes.Equal(got[4096:8192], bytes.Repeat([]byte{0xBB}, 4096)) {
		t.Fatal("b does not see a's write before the takeover or its own")
	}
	if !bytes.Equal(got[8192:], make([]byte, 4096)) {
		t.Fatal("a's write after the takeover landed")
	}

	// The failover logic's entry point: refused without force while b
	// holds the lock, granted with it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ga.TakeOwnership(ctx, "r0", false); err == nil {
		t.Fatal("TakeOwnership without force succeeded while b holds the lock")
	}
	if err := ga.TakeOwnership(ctx, "r0", true); err != nil {
		t.Fatal(err)
	}
	ra.good("write on a after taking the disk back", ra.write(24, bytes.Repeat([]byte{0xA2}, 4096)))
	rb.sense("b's write after a took the disk back", rb.write(32, bytes.Repeat([]byte{0xB2}, 4096)), "02/04/0a")
	if err := gb.TakeOwnership(ctx, "nosuch", true); err == nil {
		t.Fatal("TakeOwnership of an unknown disk succeeded")
	}

	// A graceful handoff (the failover driver's ImageLock): a releases,
	// b acquires without fencing, and a's client stays usable.
	da, _ := findBackend[*rbdDisk](ga.LogicalUnits()["r0"].Backend())
	db, _ := findBackend[*rbdDisk](gb.LogicalUnits()["r0"].Backend())
	if err := da.Release(ctx); err != nil {
		t.Fatal(err)
	}
	ra.sense("a's write after its release", ra.write(40, bytes.Repeat([]byte{0xA3}, 4096)), "02/04/0a")
	if err := db.Acquire(ctx, false); err != nil {
		t.Fatalf("acquire after a graceful release: %v", err)
	}
	rb.good("write on b after the handoff", rb.write(48, bytes.Repeat([]byte{0xB3}, 4096)))
	if da.Backend.Fenced() {
		t.Fatal("a graceful handoff blocklisted the old owner")
	}
	if err := da.Acquire(ctx, false); err == nil {
		t.Fatal("a took the lock back without fencing while b holds it")
	}
}

// TestRBDBadInput: an unreadable conf or a missing pool fails the start
// at once with an error naming the disk, and leaves nothing connected.
func TestRBDBadInput(t *testing.T) {
	conf := rbdTestConf(t)
	for _, tc := range []struct {
		name, conf, backend, want string
	}{
		{"missing conf", "/nonexistent/ceph.conf", "rbd:rbd/x", "ceph config"},
		{"missing pool", conf, "rbd:nosuchpool/x", "nosuchpool"},
		{"missing namespace", conf, "rbd:rbd/nosuchns/x", "rbd/nosuchns/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rbdGatewayConfig(t, tc.conf, "x", 16<<20)
			c.Ceph.Conf = tc.conf
			c.Disks[0].Backend = tc.backend
			start := time.Now()
			g, err := Start(Config{Config: c})
			if err == nil {
				g.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), "disk r0") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name disk r0 and %q", err, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %v", d)
			}
			t.Logf("%v", err)
		})
	}
}

// TestRBDTimeoutAndWriteCache: the gateway's rados clients take the
// longest osd_op_timeout of its rbd: disks (0 = none), and write_cache
// gives an LU with WCE=1 whose flush succeeds.
func TestRBDTimeoutAndWriteCache(t *testing.T) {
	for _, tc := range []struct {
		secs [2]uint32
		want time.Duration
	}{
		{[2]uint32{10, 40}, 40 * time.Second},
		{[2]uint32{30, 0}, -1},
	} {
		conf := rbdTestConf(t)
		c := rbdGatewayConfig(t, conf, rbdTestImage(t, conf), 16<<20)
		d1 := config.NewDisk("r1", "rbd:rbd/"+rbdTestImage(t, conf), 16<<20)
		d1.Create, d1.WriteCache = true, true
		c.Disks = append(c.Disks, d1)
		c.Targets[0].LUNs = append(c.Targets[0].LUNs, config.LUNMap{LUNID: 1, Disk: "r1"})
		c.Disks[0].Controls.OSDOpTimeout, c.Disks[1].Controls.OSDOpTimeout = tc.secs[0], tc.secs[1]
		g, err := Start(Config{Config: c, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if g.ceph.osd != tc.want {
			t.Errorf("osd_op_timeout %v gave the clients %v, want %v", tc.secs, g.ceph.osd, tc.want)
		}
		lu := g.LogicalUnits()["r1"]
		if !lu.Config().WriteCache {
			t.Error("write_cache: true did not give WCE=1")
		}
		r := newCmdRunner(t, lu, "iqn.2026-11.io.rbdgw:gwtest-a")
		r.good("cached write", r.write(0, randomBytes(4096)))
		r.good("SYNCHRONIZE CACHE", r.exec([]byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0))
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A takeover from a holder that died (kill -9, its watch still
// registered at the OSD) fences first, then acquires: it no longer waits
// for librbd's lock request to the dead holder to time out (24 s
// before). The holder is an `rbd bench` writing the image, killed by the
// test.
func TestRBDTakeoverFromAKilledHolder(t *testing.T) {
	conf := rbdTestConf(t)
	image := rbdTestImage(t, conf)
	rbdCLI(t, conf, "create", "--size", "16M", "rbd/"+image)
	bench := exec.Command("rbd", "-c", conf, "bench", "--io-type", "write", "--io-size", "4096", "--io-threads", "1",
		"--io-total", "1G", "--io-pattern", "rand", "rbd/"+image)
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			bench.Process.Kill()
		}
		bench.Wait()
	})
	// The bench holds the exclusive lock once it writes.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(rbdCLI(t, conf, "lock", "ls", "rbd/"+image), "auto") {
		if time.Now().After(deadline) {
			t.Fatal("rbd bench never took the exclusive lock")
		}
		time.Sleep(50 * time.Millisecond)
	}
	bench.Process.Signal(syscall.SIGKILL)
	bench.Wait()
	killed = true

	c := rbdGatewayConfig(t, conf, image, 16<<20)
	start := time.Now()
	g, err := Start(Config{Config: c, Logger: testLogger(t)})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	t.Logf("serving the image %v after its holder was killed", took)
	if took > 5*time.Second {
		t.Errorf("taking the lock of a killed holder took %v, want well under 5 s (fence first)", took)
	}
	r := newCmdRunner(t, g.LogicalUnits()["r0"], "iqn.2026-11.io.rbdgw:gwtest-k")
	r.good("write after the takeover", r.write(0, bytes.Repeat([]byte{0xCC}, 4096)))
}
