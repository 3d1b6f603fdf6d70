package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is written by the command's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func run(ctx context.Context, args ...string) (code int, out, errOut *syncBuffer) {
	out, errOut = &syncBuffer{}, &syncBuffer{}
	code = Execute(ctx, args, IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
	return code, out, errOut
}

func TestVersion(t *testing.T) {
	code, out, _ := run(context.Background(), "version")
	if code != ExitOK || !strings.HasPrefix(out.String(), "rbdgw ") {
		t.Fatalf("%d %q", code, out)
	}
	code, out, _ = run(context.Background(), "version", "-o", "json")
	if code != ExitOK || !strings.HasPrefix(out.String(), `{"version":"dev"`) {
		t.Fatalf("%d %q", code, out)
	}
	if code, _, _ = run(context.Background(), "version", "-o", "yaml"); code != ExitBadArgs {
		t.Fatalf("-o yaml: exit %d", code)
	}
}

func TestBadArgs(t *testing.T) {
	for _, args := range [][]string{
		{"nosuch"},
		{"serve", "--config", "c.yaml", "--etcd-endpoints", "http://127.0.0.1:1"}, // file or store, not both
		{"version", "extra"},
		{"demo", "--portal", "localhost"},
		{"demo", "--no-such-flag"},
		{"--log-level", "loud", "demo", "--data-dir", "DIR", "--portal", "127.0.0.1:0"},
		{"--log-format", "xml", "demo", "--data-dir", "DIR", "--portal", "127.0.0.1:0"},
	} {
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "DIR", t.TempDir())
		}
		code, _, errOut := run(context.Background(), args...)
		if code != ExitBadArgs {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, ExitBadArgs, errOut)
		}
	}
}

func TestServeBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("targets:\n- iqn: not-an-iqn\n"), 0o600)
	code, _, errOut := run(context.Background(), "serve", "--config", bad)
	if code != ExitBadConfig || !strings.Contains(errOut.String(), "targets[0].iqn") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	code, _, _ = run(context.Background(), "serve", "--config", filepath.Join(dir, "missing.yaml"))
	if code != ExitBadConfig {
		t.Fatalf("missing file: exit %d", code)
	}
	// An override can fix what the file gets wrong.
	os.WriteFile(bad, []byte("portals: [\"nope\"]\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code, _, errOut = run(ctx, "serve", "--config", bad, "--portal", "127.0.0.1:0", "--data-dir", dir)
	if code != ExitOK {
		t.Fatalf("override: exit %d: %s", code, errOut)
	}
}

func TestServeExampleAndBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	code, _, errOut := run(context.Background(), "serve", "--config", "../../docs/example-config.yaml",
		"--data-dir", dir, "--portal", busy.Addr().String())
	if code != ExitStart {
		t.Fatalf("busy port: exit %d: %s", code, errOut)
	}
	if strings.Contains(errOut.String(), "examplepass12") {
		t.Fatal("secret in the log")
	}
}

var urlRE = regexp.MustCompile(`(?m)^iscsi://rbdgwdemo%([A-Za-z0-9]{12,16})@127\.0\.0\.1:(\d+)/iqn\.2026-11\.io\.rbdgw:demo/0$`)

// TestDemoRunsAndKeepsPassword starts the demo, connects, cancels (the
// SIGTERM path) and checks the exit code and that a rerun keeps the CHAP
// password.
func TestDemoRunsAndKeepsPassword(t *testing.T) {
	dir := t.TempDir()
	var passwords []string
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		out, errOut := &syncBuffer{}, &syncBuffer{}
		done := make(chan int)
		go func() {
			done <- Execute(ctx, []string{"demo", "--data-dir", dir, "--portal", "127.0.0.1:0", "--log-format", "json"},
				IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
		}()
		var m []string
		deadline := time.Now().Add(10 * time.Second)
		for m == nil && time.Now().Before(deadline) {
			m = urlRE.FindStringSubmatch(out.String())
			time.Sleep(10 * time.Millisecond)
		}
		if m == nil {
			cancel()
			t.Fatalf("no URL printed:\n%s\n%s", out, errOut)
		}
		nc, err := net.Dial("tcp", "127.0.0.1:"+m[2])
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
		for _, want := range []string{"iscsi-ls -s " + m[0], "qemu-img info " + m[0]} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("missing %q in\n%s", want, out)
			}
		}
		if strings.Contains(errOut.String(), m[1]) {
			t.Fatal("password logged")
		}
		cancel()
		if code := <-done; code != ExitOK {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		passwords = append(passwords, m[1])
	}
	if passwords[0] != passwords[1] {
		t.Fatalf("password changed across runs: %v", passwords)
	}
	if st, err := os.Stat(filepath.Join(dir, demoSecretFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file %v %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "images", demoImageFile)); err != nil || st.Size() != DemoDiskSize {
		t.Fatalf("image %v %v", st, err)
	}
}

func TestDemoURL(t *testing.T) {
	got := DemoURL("user", "pw", "[::1]:3260", "iqn.x", 0)
	if got != "iscsi://user%pw@[::1]:3260/iqn.x/0" {
		t.Fatal(got)
	}
	if err := func() error { c := DemoConfig(t.TempDir(), "127.0.0.1:3260", "abcdefghijkl1234"); return c.Validate() }(); err != nil {
		t.Fatal(err)
	}
}

// TestServeReloadsOnSIGHUP edits the configuration file of a running
// `rbdgw serve` and sends SIGHUP: the change is applied, and a bad edit is
// refused without stopping the gateway.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	base := "portals: [\"127.0.0.1:0\"]\ndisks: [{name: d, backend: \"file:d.img\", size: 1M}]\n" +
		"targets:\n  - {iqn: \"iqn.2026-11.io.rbdgw:hup\", luns: [{lun_id: 0, disk: d}]}\n"
	os.WriteFile(cfgPath, []byte(base), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan int)
	go func() {
		done <- Execute(ctx, []string{"serve", "--config", cfgPath, "--data-dir", dir},
			IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
	}()
	waitFor := func(s string) {
		t.Helper()
		waitLog(t, errOut, s)
	}
	waitFor("gateway started")
	os.WriteFile(cfgPath, []byte(base+"  - {iqn: \"iqn.2026-11.io.rbdgw:hup2\", luns: [{lun_id: 0, disk: d}]}\n"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor("configuration reloaded")
	os.WriteFile(cfgPath, []byte("portals: [\"127.0.0.1:0\"]\ntargets: [{iqn: BAD}]\n"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor("reload refused")
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
}

// TestServeLimitFlags: the portal caps given on the command line reach
// the portal: with --max-prelogin-per-source 1 a second connection from
// the same address is closed at once, and --login-timeout closes the
// first when it does not log in.
func TestServeLimitFlags(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfgPath, []byte("portals: [\"127.0.0.1:0\"]\ndisks: [{name: d, backend: \"file:d.img\", size: 1M}]\n"+
		"targets:\n  - {iqn: \"iqn.2026-11.io.rbdgw:limits\", acl: open, luns: [{lun_id: 0, disk: d}]}\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errOut := &syncBuffer{}
	done := make(chan int)
	go func() {
		done <- Execute(ctx, []string{"serve", "--config", cfgPath, "--data-dir", dir,
			"--max-prelogin-per-source", "1", "--login-timeout", "2s"},
			IOStreams{In: strings.NewReader(""), Out: &syncBuffer{}, ErrOut: errOut})
	}()
	waitLog(t, errOut, "gateway started")
	m := regexp.MustCompile(`gateway started"? portals="?\[(127\.0\.0\.1:\d+)`).FindStringSubmatch(errOut.String())
	if m == nil {
		t.Fatalf("no portal in the log:\n%s", errOut)
	}
	closedWithin := func(c net.Conn, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	first, err := net.Dial("tcp", m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := net.Dial("tcp", m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if !closedWithin(second, 5*time.Second) {
		t.Fatal("a second pre-login connection from one address stayed open")
	}
	if !closedWithin(first, 10*time.Second) {
		t.Fatal("a connection that never logged in outlived --login-timeout")
	}
	cancel()
	<-done
}
