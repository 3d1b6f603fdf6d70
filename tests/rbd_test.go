package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of rbd: LUNs on a live Ceph cluster. They skip unless
// RBDGW_CEPH_CONF names one:
//
//	bash ceph/micro-cluster.sh start /tmp/ceph
//	RBDGW_CEPH_CONF=/tmp/ceph/ceph.conf go test -count=1 -v -run RBD ./tests/
//
// (make test-rbd does this with a throwaway cluster.) Images stay small:
// the micro cluster's OSD keeps data in RAM.

const rbdIQN = "iqn.2026-01.io.rbdgw.test:rbd"

// TestRBDDataIntegrity writes a 64 MiB pattern through qemu-img to an
// rbd: LUN and reads the image back with `rbd export`, bypassing the
// gateway: the bytes must be identical.
func TestRBDDataIntegrity(t *testing.T) {
	needTools(t, "qemu-img")
	rbd := newRBDSpec(t)
	const size = 64 << 20
	s := startServer(t, "rbdgw", serverSpec{RBD: rbd, Targets: []targetDef{{IQN: rbdIQN, Size: size}}})
	dir := t.TempDir()
	pattern := filepath.Join(dir, "pattern.raw")
	want, err := writePatternSeed(pattern, size, 11)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := run(5*time.Minute, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", "-t", "none", pattern, lunURL(s, rbdIQN, nil)); err != nil {
		t.Fatalf("qemu-img convert pattern -> LUN: %v\n%s", err, out)
	}
	wrote := time.Since(start)
	back := filepath.Join(dir, "export.raw")
	rbd.export(t, "disk0", back)
	got, err := sha256File(back)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("rbd export sha256 %s, wrote %s", got, want)
		if off, ok := firstDiff(pattern, back); ok {
			t.Errorf("first differing byte at offset %d (block %d)", off, off/512)
		}
	}
	t.Logf("64 MiB written through the gateway in %v (%.0f MiB/s)", wrote.Round(time.Millisecond), 64/wrote.Seconds())
}

// TestRBDTakeover: a second gateway process serving the same image takes
// its exclusive lock over (newest gateway wins). The first one's next
// write ends in CHECK CONDITION NOT READY (02/04/0A) at once, not GOOD and
// not a hang, and the first daemon lives on; the image then holds what the
// first wrote before the takeover and what the second wrote, and nothing
// the first tried to write after it.
func TestRBDTakeover(t *testing.T) {
	rbd := newRBDSpec(t)
	spec := serverSpec{RBD: rbd, Targets: []targetDef{{IQN: rbdIQN, Size: 16 << 20}}}
	a := startServer(t, "rbdgw", spec)
	sa := readySession(t, a, initiator1, rbdIQN)
	before, after, second := bytes.Repeat([]byte{0xA0}, 4096), bytes.Repeat([]byte{0xA1}, 4096), bytes.Repeat([]byte{0xB0}, 4096)
	if r, err := sa.Write10(0, before); err != nil || r.Status != 0 {
		t.Fatalf("first gateway's write before the takeover: %v %v", r, err)
	}

	b := startServer(t, "rbdgw", spec) // takes the lock while starting
	if a.Portal() == b.Portal() {
		t.Fatalf("both gateways on portal %s", a.Portal())
	}
	start := time.Now()
	r, err := sa.Write10(64, after)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("first gateway's write after the takeover: %v (after %v)", err, took)
	}
	if r.Status != 0x02 || r.SenseKey() != "02/04/0a" {
		t.Fatalf("first gateway's write after the takeover: %s, want CHECK CONDITION NOT READY 04/0A", r)
	}
	t.Logf("first gateway's write after the takeover: %s in %v", r, took.Round(time.Microsecond))
	if took > 5*time.Second {
		t.Errorf("the refused write took %v", took)
	}
	// Still refused a moment later, once the lock watcher has noticed.
	time.Sleep(1500 * time.Millisecond)
	if r, err := sa.Write10(72, after); err != nil || r.SenseKey() != "02/04/0a" {
		t.Fatalf("first gateway's second write after the takeover: %v %v", r, err)
	}
	if exited, werr := a.Exited(); exited {
		t.Fatalf("the first gateway exited after losing the lock: %v", werr)
	}
	// A new session still logs in and gets INQUIRY answered (libiscsi's
	// tools cannot show this: their connect fails on the NOT READY of
	// the TEST UNIT READY they send after login).
	probe, err := dialRaw(a.Portal(), initiator2, rbdIQN, a.LUN())
	if err != nil {
		t.Fatalf("the first gateway no longer accepts a login: %v", err)
	}
	r, err = probe.Do([]byte{0x12, 0, 0, 0, 96, 0}, nil, 96)
	probe.Close()
	if err != nil || r.Status != 0 {
		t.Fatalf("the first gateway no longer answers INQUIRY: %v %v", r, err)
	}

	sb := readySession(t, b, initiator2, rbdIQN)
	if r, err := sb.Write10(128, second); err != nil || r.Status != 0 {
		t.Fatalf("second gateway's write: %v %v", r, err)
	}

	img := filepath.Join(t.TempDir(), "export.raw")
	rbd.export(t, "disk0", img)
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:4096], before) {
		t.Error("the first gateway's write from before the takeover is missing")
	}
	if !bytes.Equal(got[64*512:64*512+4096], make([]byte, 4096)) || !bytes.Equal(got[72*512:72*512+4096], make([]byte, 4096)) {
		t.Error("a write the first gateway refused after the takeover landed in the image")
	}
	if !bytes.Equal(got[128*512:128*512+4096], second) {
		t.Error("the second gateway's write is missing")
	}
	if !strings.Contains(logTail(a.LogPath(), 1<<20), "exclusive lock lost") {
		t.Error("the first gateway did not log the loss of the lock")
	}
	if !strings.Contains(logTail(b.LogPath(), 1<<20), "old_owner=") {
		t.Error("the second gateway did not log whose lock it broke")
	}
}

// TestRBDCapacityChange grows the image with `rbd resize` while a session
// is logged in: its next command gets UNIT ATTENTION CAPACITY DATA HAS
// CHANGED (06/2A/09) and READ CAPACITY then reports the new size.
func TestRBDCapacityChange(t *testing.T) {
	rbd := newRBDSpec(t)
	s := startServer(t, "rbdgw", serverSpec{RBD: rbd, Targets: []targetDef{{IQN: rbdIQN, Size: 64 << 20}}})
	ss := readySession(t, s, initiator1, rbdIQN)
	if size, r, err := ss.ReadCapacity10(); err != nil || size != 64<<20 {
		t.Fatalf("READ CAPACITY before: %d %v %v", size, r, err)
	}
	if out, err := rbd.cli(time.Minute, "resize", "--no-progress", "--size", "96M", rbd.image("disk0")); err != nil {
		t.Fatalf("rbd resize: %v\n%s", err, out)
	}
	resized := time.Now()
	for {
		r, err := ss.Do([]byte{0x00, 0, 0, 0, 0, 0}, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == 0x02 {
			if r.SenseKey() != "06/2a/09" {
				t.Fatalf("after the resize: %s, want UNIT ATTENTION 2A/09", r)
			}
			break
		}
		if time.Since(resized) > 10*time.Second {
			t.Fatal("no CAPACITY DATA HAS CHANGED 10s after rbd resize")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("CAPACITY DATA HAS CHANGED reported %v after rbd resize", time.Since(resized).Round(time.Millisecond))
	if size, r, err := ss.ReadCapacity10(); err != nil || size != 96<<20 {
		t.Fatalf("READ CAPACITY after: %d %v %v, want %d", size, r, err, 96<<20)
	}
}

// TestConformanceRBD is TestConformance on LUNs backed by RBD images,
// held to the same expectations.
func TestConformanceRBD(t *testing.T) {
	runConformance(t, newRBDSpec(t))
}
