package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeAPI: `rbdgw serve` in store mode serves the management API on
// --api-addr with basic auth; a change made through it reaches the
// store (the gateway's own reconciler follows it).
func TestServeAPI(t *testing.T) {
	dir := t.TempDir()
	apiAddr := freeAddr(t)
	args := []string{"serve", "--data-dir", dir, "--portal", "127.0.0.1:0", "--gateway-name", "gw1",
		"--etcd-listen-client", "http://" + freeAddr(t), "--etcd-listen-peer", "http://" + freeAddr(t),
		"--api-addr", apiAddr, "--api-user", "admin"}
	t.Setenv(envAPIPassword, "s3cret-pass")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- Execute(ctx, args, IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut}) }()

	call := func(method, path, body, user, pass string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+apiAddr+"/api/v1"+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := call("GET", "/health", "", "admin", "s3cret-pass"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("API never answered:\n%s", errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := call("GET", "/config", "", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", code)
	}
	if code, body := call("POST", "/targets", `{"iqn": "iqn.2026-11.io.rbdgw:api"}`, "admin", "s3cret-pass"); code != http.StatusCreated {
		t.Fatalf("create target: %d %s", code, body)
	}
	if code, body := call("GET", "/targets/iqn.2026-11.io.rbdgw:api", "", "admin", "s3cret-pass"); code != 200 || !strings.Contains(body, "cmdsn_depth") {
		t.Fatalf("read back: %d %s", code, body)
	}
	if strings.Contains(errOut.String(), "s3cret-pass") {
		t.Fatal("API password in the log")
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if code, _ := call("GET", "/health", "", "admin", "s3cret-pass"); code != 0 {
		t.Fatalf("API still answering after shutdown: %d", code)
	}
}

func TestServeAPIFlagErrors(t *testing.T) {
	t.Setenv(envAPIPassword, "")
	for _, tc := range []struct {
		args []string
		say  string
	}{
		{[]string{"--api-user", "admin"}, "--api-password"},
		{[]string{"--api-cert", "c.pem"}, "--api-key"},
		{[]string{"--api-trusted-ips", "10.0.0.0/33"}, "--api-trusted-ips"},
		{[]string{"--api-addr", "nocolon"}, "--api-addr"},
	} {
		dir := t.TempDir()
		args := append([]string{"serve", "--data-dir", dir, "--portal", "127.0.0.1:0", "--gateway-name", "gw1",
			"--etcd-listen-client", "http://" + freeAddr(t), "--etcd-listen-peer", "http://" + freeAddr(t)}, tc.args...)
		code, _, errOut := run(context.Background(), args...)
		if code != ExitBadArgs || !strings.Contains(errOut.String(), tc.say) {
			t.Errorf("%v: exit %d: %s", tc.args, code, errOut)
		}
	}
	// A chosen address that is taken stops the start.
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy.Close()
	dir := t.TempDir()
	code, _, errOut := run(context.Background(), "serve", "--data-dir", dir, "--portal", "127.0.0.1:0", "--gateway-name", "gw1",
		"--etcd-listen-client", "http://"+freeAddr(t), "--etcd-listen-peer", "http://"+freeAddr(t), "--api-addr", busy.Addr().String())
	if code != ExitStart || !strings.Contains(errOut.String(), "management API") {
		t.Fatalf("busy API port: exit %d: %s", code, errOut)
	}
}

// TestServeAPIGeneratesCredentials: without --api-user the API is not
// open: a password is generated into the data directory (0600, kept
// across restarts, never logged) and the API answers 401 without it.
func TestServeAPIGeneratesCredentials(t *testing.T) {
	t.Setenv(envAPIPassword, "")
	dir := t.TempDir()
	apiAddr := freeAddr(t)
	args := []string{"serve", "--data-dir", dir, "--portal", "127.0.0.1:0", "--gateway-name", "gw1",
		"--etcd-listen-client", "http://" + freeAddr(t), "--etcd-listen-peer", "http://" + freeAddr(t), "--api-addr", apiAddr}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- Execute(ctx, args, IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut}) }()
	get := func(user, pass string) int {
		req, _ := http.NewRequest("GET", "http://"+apiAddr+"/api/v1/health", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for get("", "") != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatalf("API never answered 401:\n%s", errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	path := filepath.Join(dir, apiPasswordFile)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("password file %s: %v %v", path, st, err)
	}
	b, _ := os.ReadFile(path)
	pw := strings.TrimSpace(string(b))
	if len(pw) < 24 {
		t.Fatalf("generated password %q is short", pw)
	}
	if code := get(defaultAPIUser, pw); code != http.StatusOK {
		t.Fatalf("generated credentials: %d", code)
	}
	if code := get(defaultAPIUser, pw+"x"); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", code)
	}
	if strings.Contains(errOut.String(), pw) || !strings.Contains(errOut.String(), path) {
		t.Fatalf("the log must name the password file, never the password:\n%s", errOut)
	}
	cancel()
	<-done
	// Kept across restarts.
	if again, _, err := apiPassword(dir); err != nil || again != pw {
		t.Fatalf("password after restart %q %v, want %q", again, err, pw)
	}
}

func TestSelfSignedAPICertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key, fp, err := apiSelfSigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", st, err)
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		t.Fatal(err)
	}
	if _, _, fp2, _ := apiSelfSigned(dir); fp2 != fp || len(fp) != 64 {
		t.Fatalf("fingerprint %q then %q", fp, fp2)
	}
	for addr, want := range map[string]bool{"127.0.0.1:5000": true, "[::1]:5000": true, "localhost:5000": true,
		":5000": false, "0.0.0.0:5000": false, "192.0.2.1:5000": false, "[::]:5000": false} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("loopbackAddr(%q) = %v", addr, got)
		}
	}
}
