package tests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// floodFDLimit is the daemon's RLIMIT_NOFILE in the flood test: low enough
// that a few hundred connections exhaust it.
const floodFDLimit = 128

const floodIQN = "iqn.2026-01.io.rbdgw.test:flood"

// startRbdgwLimited starts rbdgw under prlimit with floodFDLimit open
// files (soft and hard: the Go runtime raises the soft limit to the hard
// one), registering its stop with t.Cleanup.
func startRbdgwLimited(t *testing.T, spec serverSpec) *rbdgwServer {
	t.Helper()
	dir := t.TempDir()
	s := &rbdgwServer{dir: dir, cfgPath: filepath.Join(dir, "rbdgw.json"), dataDir: filepath.Join(dir, "data"), log: filepath.Join(dir, "rbdgw.log")}
	if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s.portal = fmt.Sprintf("127.0.0.1:%d", port)
	if err := s.writeConfig(spec); err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon("rbdgw", s.log, "prlimit", fmt.Sprintf("--nofile=%d:%d", floodFDLimit, floodFDLimit), "--",
		rbdgwBin, "serve", "--config", s.cfgPath, "--data-dir", s.dataDir, "--portal", s.portal, "--image-root", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	s.d = d
	t.Cleanup(func() {
		if exited, werr := d.Exited(); exited && !s.Stopped() {
			t.Errorf("rbdgw (pid %d) exited during the test: %v", d.PID(), werr)
			dumpLog(t, s.log)
			return
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stopping rbdgw: %v", err)
		}
		if t.Failed() {
			dumpLog(t, s.log)
		}
	})
	if err := waitPortal(d, s.portal, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// openFDs counts the daemon's open file descriptors.
func openFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

func read10(lba uint32, blocks uint16) []byte {
	cdb := []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], blocks)
	return cdb
}

// ioRound writes a block pattern at lba and reads it back.
func ioRound(s *rawSession, lba uint32, seed byte) error {
	p := bytes.Repeat([]byte{seed, ^seed, lba8(lba), 0x5a}, 1024)
	if r, err := s.Write10(lba, p); err != nil || r.Status != 0 {
		return fmt.Errorf("write at %d: %v %v", lba, r, err)
	}
	r, err := s.Do(read10(lba, uint16(len(p)/512)), nil, len(p))
	if err != nil || r.Status != 0 {
		return fmt.Errorf("read at %d: %v %v", lba, r, err)
	}
	if !bytes.Equal(r.Data, p) {
		return fmt.Errorf("read at %d returned other data", lba)
	}
	return nil
}

func lba8(lba uint32) byte { return byte(lba) }

// A connect flood that exhausts the daemon's file descriptors used to end
// its portal's accept loop and with it the daemon (issue 8, attack 4).
// Now: accept backs off on EMFILE, the logged-in session keeps doing I/O
// through the flood, the daemon stays up, and new logins work again once
// the flood ends. The flood comes from many loopback addresses so that it
// is not stopped early by the per-source cap on connections logging in.
func TestConnectFloodUnderLowFDLimit(t *testing.T) {
	if e2eTarget() != "rbdgw" {
		t.Skip("rbdgw's own limits")
	}
	needTools(t, "prlimit")
	if buildErr != nil {
		t.Fatalf("rbdgw did not build: %v", buildErr)
	}
	srv := startRbdgwLimited(t, serverSpec{Targets: []targetDef{{IQN: floodIQN, Size: 8 << 20,
		Hosts: []hostACL{{IQN: initiator1, LUNs: []uint64{0}}, {IQN: initiator2, LUNs: []uint64{0}}}}}})
	sess := readySession(t, srv, initiator1, floodIQN)
	if err := ioRound(sess, 0, 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("daemon holds %d file descriptors before the flood (limit %d)", openFDs(srv.PID()), floodFDLimit)

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	exhausted := func() bool { return strings.Contains(logTail(srv.log, 1<<20), "too many open files") }
	deadline := time.Now().Add(60 * time.Second)
	for src := 2; !exhausted(); src++ {
		if time.Now().After(deadline) || src > 250 {
			t.Fatalf("no EMFILE after %d connections; daemon holds %d descriptors", len(flood), openFDs(srv.PID()))
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(src))}, Timeout: 5 * time.Second}
		for k := 0; k < 20; k++ {
			c, err := d.Dial("tcp", srv.Portal())
			if err != nil {
				t.Fatalf("flood dial from 127.0.0.%d: %v", src, err)
			}
			flood = append(flood, c)
		}
		time.Sleep(20 * time.Millisecond) // let the daemon accept this source's batch
	}
	t.Logf("accept hit EMFILE after %d flood connections; daemon holds %d descriptors", len(flood), openFDs(srv.PID()))

	// During the flood, the session's I/O goes on.
	for k := uint32(0); k < 20; k++ {
		if err := ioRound(sess, 8+k*8, byte(k)); err != nil {
			t.Fatalf("I/O during the flood: %v", err)
		}
	}
	if exited, err := srv.Exited(); exited {
		t.Fatalf("rbdgw exited under the flood: %v", err)
	}

	// The flood ends; new logins work again.
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	var s2 *rawSession
	waitUntil := time.Now().Add(60 * time.Second)
	for {
		var err error
		s2, err = dialRaw(srv.Portal(), initiator2, floodIQN, srv.LUN())
		if err == nil {
			break
		}
		if exited, werr := srv.Exited(); exited {
			t.Fatalf("rbdgw exited: %v", werr)
		}
		if time.Now().After(waitUntil) {
			t.Fatalf("no login after the flood: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer s2.Close()
	if err := s2.Ready(); err != nil {
		t.Fatal(err)
	}
	if err := ioRound(s2, 512, 9); err != nil {
		t.Fatal(err)
	}
	if err := ioRound(sess, 1024, 10); err != nil {
		t.Fatalf("first session after the flood: %v", err)
	}
}
