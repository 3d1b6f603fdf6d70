package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/internal/loopback"
)

// waitLog waits until the command's log contains s.
func waitLog(t *testing.T, log *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in log:\n%s", s, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const (
	storeTarget1 = "iqn.2026-11.io.rbdgw:store1"
	storeTarget2 = "iqn.2026-11.io.rbdgw:store2"
	storeFile1   = "portals: [\"192.0.2.1:3260\"]\ndisks: [{name: d, backend: \"file:d.img\", size: 1M}]\n" +
		"targets:\n  - {iqn: \"" + storeTarget1 + "\", luns: [{lun_id: 0, disk: d}], auth: {username: storeuser, password: storepass1234}}\n"
	storeFile2 = storeFile1 + "  - {iqn: \"" + storeTarget2 + "\", luns: [{lun_id: 0, disk: d}]}\n"
)

// TestServeFromEmbeddedStore runs `rbdgw serve` on its embedded etcd:
// --import seeds it, `rbdgw config import` changes it while the gateway
// runs (applied live), `config show` prints it without secrets, and a
// restart serves what the store kept.
func TestServeFromEmbeddedStore(t *testing.T) {
	dir := t.TempDir()
	file1, file2 := filepath.Join(dir, "one.yaml"), filepath.Join(dir, "two.yaml")
	os.WriteFile(file1, []byte(storeFile1), 0o600)
	os.WriteFile(file2, []byte(storeFile2), 0o600)
	client, peer := loopback.FreeURL(t), loopback.FreeURL(t)
	keyFile := filepath.Join(dir, "secret.key")
	os.WriteFile(keyFile, []byte("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"), 0o600)
	storeFlags := []string{"--etcd-listen-client", client, "--etcd-listen-peer", peer, "--cluster-name", "t1", "--secret-key-file", keyFile}
	serve := func(extra ...string) (stop func() int, log *syncBuffer) {
		ctx, cancel := context.WithCancel(context.Background())
		out, errOut := &syncBuffer{}, &syncBuffer{}
		done := make(chan int)
		args := append([]string{"serve", "--data-dir", dir, "--portal", "127.0.0.1:0", "--gateway-name", "gw1", "--api-addr", "127.0.0.1:0"}, storeFlags...)
		go func() {
			done <- Execute(ctx, append(args, extra...), IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
		}()
		t.Cleanup(cancel)
		return func() int { cancel(); return <-done }, errOut
	}

	stop, log := serve("--import", file1)
	waitLog(t, log, "gateway started")
	waitLog(t, log, "configuration imported")
	if strings.Contains(log.String(), storeTarget2) {
		t.Fatal("second target before the import")
	}
	code, out, errOut := run(context.Background(), append([]string{"config", "import", file2, "--data-dir", dir}, storeFlags...)...)
	if code != ExitOK || !strings.Contains(out.String(), "imported") {
		t.Fatalf("config import: exit %d: %s%s", code, out, errOut)
	}
	waitLog(t, log, "configuration applied")
	waitLog(t, log, storeTarget2)
	code, out, errOut = run(context.Background(), append([]string{"config", "show", "--data-dir", dir}, storeFlags...)...)
	if code != ExitOK || !strings.Contains(out.String(), storeTarget2) || strings.Contains(out.String(), "storepass1234") ||
		strings.Contains(out.String(), "192.0.2.1") {
		t.Fatalf("config show: exit %d:\n%s%s", code, out, errOut)
	}
	if code := stop(); code != ExitOK {
		t.Fatalf("exit %d\n%s", code, log)
	}
	if strings.Contains(log.String(), "storepass1234") {
		t.Fatal("secret in the log")
	}
	// The password is sealed in etcd: not in the member's files.
	if out, _ := exec.Command("grep", "-r", "-l", "storepass1234", filepath.Join(dir, "etcd")).Output(); len(out) > 0 {
		t.Fatalf("password in clear in %s", out)
	}

	// Restart without --import: the store kept both targets.
	stop, log = serve()
	waitLog(t, log, "gateway started")
	if !strings.Contains(log.String(), "targets=2") {
		t.Fatalf("after restart:\n%s", log)
	}
	if code := stop(); code != ExitOK {
		t.Fatalf("exit %d\n%s", code, log)
	}
	// With the gateway down, `config` commands fail fast and say so.
	code, _, errOut = run(context.Background(), append([]string{"config", "show", "--timeout", "1s", "--data-dir", dir}, storeFlags...)...)
	if code != ExitError || !strings.Contains(errOut.String(), "unavailable") {
		t.Fatalf("show without etcd: exit %d: %s", code, errOut)
	}
}

// TestServeStoreRefusals: bad store flags, a non-loopback embedded URL,
// and a gateway name the configuration does not list.
func TestServeStoreRefusals(t *testing.T) {
	dir := t.TempDir()
	client, peer := loopback.FreeURL(t), loopback.FreeURL(t)
	base := []string{"serve", "--data-dir", dir, "--portal", "127.0.0.1:0", "--etcd-listen-client", client, "--etcd-listen-peer", peer, "--api-addr", "127.0.0.1:0"}
	for _, tc := range []struct {
		args []string
		code int
		say  string
	}{
		{[]string{"--etcd-prefix", "rbdgw"}, ExitBadArgs, "--etcd-prefix"},
		{[]string{"--cluster-name", "a/b"}, ExitBadArgs, "--cluster-name"},
		{[]string{"--etcd-cert", "c.pem"}, ExitBadArgs, "--etcd-key"},
		{[]string{"--etcd-listen-client", "http://0.0.0.0:2379"}, ExitStart, "loopback"},
		{[]string{"--import", filepath.Join(dir, "missing.yaml")}, ExitBadConfig, "missing.yaml"},
		{[]string{"--secret-key-file", filepath.Join(dir, "nokey")}, ExitStart, "nokey"},
	} {
		code, _, errOut := run(context.Background(), append(append([]string{}, base...), tc.args...)...)
		if code != tc.code || !strings.Contains(errOut.String(), tc.say) {
			t.Errorf("%v: exit %d (want %d): %s", tc.args, code, tc.code, errOut)
		}
	}
	gws := filepath.Join(dir, "gws.yaml")
	os.WriteFile(gws, []byte("gateways: [{name: gw-a, portals: [\"127.0.0.1:0\"]}]\n"), 0o600)
	code, _, errOut := run(context.Background(), append(append([]string{}, base...), "--import", gws, "--gateway-name", "gw-z")...)
	if code != ExitBadConfig || !strings.Contains(errOut.String(), "gw-a") {
		t.Fatalf("unknown gateway: exit %d: %s", code, errOut)
	}
}

// TestServeFileWithGateways: a configuration file that lists gateways is
// served as the gateway named --gateway-name: its portals, its targets.
func TestServeFileWithGateways(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gws.yaml")
	os.WriteFile(file, []byte(`
portals: ["192.0.2.1:3260"]
disks: [{name: d, backend: "file:d.img", size: 1M}]
gateways:
  - {name: gw-a, portals: ["127.0.0.1:0"], tpg_id: 1}
  - {name: gw-b, portals: ["192.0.2.2:3260"], tpg_id: 2}
last_tpg_id: 2
targets:
  - {iqn: "`+storeTarget1+`", luns: [{lun_id: 0, disk: d}], gateways: [gw-a]}
  - {iqn: "`+storeTarget2+`", luns: [{lun_id: 0, disk: d}], gateways: [gw-b]}
`), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errOut := &syncBuffer{}
	done := make(chan int)
	go func() {
		done <- Execute(ctx, []string{"serve", "--config", file, "--data-dir", dir, "--gateway-name", "gw-a"},
			IOStreams{In: strings.NewReader(""), Out: &syncBuffer{}, ErrOut: errOut})
	}()
	waitLog(t, errOut, "gateway started")
	log := errOut.String()
	if !strings.Contains(log, "127.0.0.1:") || strings.Contains(log, "192.0.2.") || strings.Contains(log, storeTarget2) {
		t.Fatalf("gw-a serves the wrong part:\n%s", log)
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	code, _, out := run(context.Background(), "serve", "--config", file, "--data-dir", dir, "--gateway-name", "gw-z")
	if code != ExitBadConfig || !strings.Contains(out.String(), "gw-a, gw-b") {
		t.Fatalf("unknown gateway: exit %d: %s", code, out)
	}
}
