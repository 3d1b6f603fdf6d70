package tests

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `rbdgw demo` as the README tells users to, and checks that
// the iscsi:// line it prints works as is with libiscsi's tools.
func TestDemo(t *testing.T) {
	needTools(t, "iscsi-inq", "iscsi-ls")
	if e2eTarget() != "rbdgw" {
		t.Skip("rbdgw demo only")
	}
	if buildErr != nil {
		t.Fatalf("rbdgw did not build: %v", buildErr)
	}
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	portal := "127.0.0.1:" + itoa(port)
	logPath := filepath.Join(dir, "demo.log")
	d, err := startDaemon("rbdgw demo", logPath, rbdgwBin, "demo", "--data-dir", filepath.Join(dir, "data"), "--portal", portal)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(stopGrace); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			dumpLog(t, logPath)
		}
	})
	if err := waitPortal(d, portal, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == "" && time.Now().Before(deadline); {
		url = findURL(logPath)
		if url == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if url == "" {
		t.Fatalf("rbdgw demo printed no line starting with iscsi://")
	}
	if !strings.Contains(url, portal) {
		t.Errorf("demo URL %s does not name the portal %s", url, portal)
	}
	if out, err := inquiry(initiator1, url); err != nil {
		t.Errorf("iscsi-inq %s (the demo's URL, as is): %v\n%s", url, err, out)
	}
	// Discovery with the same credentials the URL carries, if any.
	disc := url
	if i := strings.Index(strings.TrimPrefix(url, "iscsi://"), "/"); i >= 0 {
		disc = url[:len("iscsi://")+i]
	}
	if out, err := run(20*time.Second, "iscsi-ls", "-s", disc); err != nil || !strings.Contains(out, "DIRECT_ACCESS") {
		t.Errorf("iscsi-ls -s %s: %v\n%s", disc, err, out)
	}
}

// findURL returns the first line of the file that starts with iscsi://.
func findURL(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "iscsi://") {
			return strings.Fields(l)[0]
		}
	}
	return ""
}
