package tests

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const lifeIQN = "iqn.2026-01.io.rbdgw.test:life"

// TestRestartKeepsDataAndIdentity writes a pattern, restarts the daemon and
// checks that the data and the LU identity (unit serial, designators) an
// initiator sees are unchanged: multipath and ESXi key on the latter.
func TestRestartKeepsDataAndIdentity(t *testing.T) {
	needTools(t, "qemu-img", "iscsi-inq")
	const size = 32 << 20
	s := startServer(t, e2eTarget(), serverSpec{Targets: []targetDef{{IQN: lifeIQN, Size: size}}})
	url := lunURL(s, lifeIQN, nil)
	dir := t.TempDir()
	pattern := filepath.Join(dir, "pattern.raw")
	want, err := writePatternSeed(pattern, size, 3)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := run(2*time.Minute, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", pattern, url); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	identity := func() string {
		var b strings.Builder
		for _, page := range []string{"128", "131"} {
			out, err := inquiry(initiator1, url, "-e", "1", "-c", page)
			if err != nil {
				t.Fatalf("iscsi-inq VPD %s: %v\n%s", page, err, out)
			}
			b.WriteString(out)
		}
		return b.String()
	}
	before := identity()
	if err := s.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if after := identity(); after != before {
		t.Errorf("LU identity changed across a restart:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	back := filepath.Join(dir, "back.raw")
	if out, err := run(2*time.Minute, "qemu-img", "convert", "-f", "raw", "-O", "raw", url, back); err != nil {
		t.Fatalf("qemu-img convert back: %v\n%s", err, out)
	}
	if got, err := sha256File(back); err != nil || got != want {
		t.Errorf("after a restart the LUN reads back as sha256 %s (%v), wrote %s", got, err, want)
	}
}

// TestSIGTERMUnderLoad stops the daemon while an initiator keeps 32 writes
// in flight: it must drain and exit 0 within the grace period, not hang.
func TestSIGTERMUnderLoad(t *testing.T) {
	needTools(t, "qemu-img")
	if e2eTarget() != "rbdgw" {
		t.Skip("tgtd ignores SIGTERM by design")
	}
	s := startServer(t, "rbdgw", serverSpec{Targets: []targetDef{{IQN: lifeIQN, Size: 64 << 20}}})
	load := exec.Command("qemu-img", "bench", "-f", "raw", "-t", "none", "-w", "-d", "32", "-c", "100000000", "-s", "4k", lunURL(s, lifeIQN, nil))
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	loadDone := make(chan error, 1)
	go func() { loadDone <- load.Wait() }()
	t.Cleanup(func() {
		_ = load.Process.Kill()
		<-loadDone
	})
	time.Sleep(1500 * time.Millisecond)
	select {
	case err := <-loadDone:
		loadDone <- err
		t.Fatalf("qemu-img bench ended before the stop: %v", err)
	default:
	}
	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("SIGTERM under load: %v", err)
	}
	_, werr := s.Exited()
	t.Logf("stopped under load in %v (exit: %v)", time.Since(start).Round(time.Millisecond), werr)
	if testing.Verbose() {
		dumpLog(t, s.LogPath())
	}
	if werr != nil {
		t.Errorf("rbdgw exited with %v after SIGTERM under load, want status 0", werr)
	}
}
