package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway/api"
	"github.com/rbdgw/rbdgw/gwcli"
)

const (
	tIQN = "iqn.2026-11.io.rbdgw:gwcli"
	hIQN = "iqn.1994-05.com.redhat:rh7-client"
)

// startAPI serves the real API on 127.0.0.1 over an in-memory store and
// points HOME at a fresh directory (settings, history, bookmarks).
// With users nil the API has one account, which the environment names
// (the API never serves without credentials).
func startAPI(t *testing.T, users map[string]string) (url string, store config.Store) {
	t.Helper()
	store = config.NewMemStore(config.Config{})
	srv := httptest.NewServer(newAPI(t, store, users))
	t.Cleanup(srv.Close)
	return srv.URL, store
}

// newAPI builds the API and sets HOME and the environment as startAPI
// describes.
func newAPI(t *testing.T, store config.Store, users map[string]string) *api.API {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	for _, k := range []string{envURL, envUser, envPassword} {
		t.Setenv(k, "")
	}
	if users == nil {
		users = map[string]string{"admin": "gwcli-test-pw"}
		t.Setenv(envUser, "admin")
		t.Setenv(envPassword, "gwcli-test-pw")
	}
	a, err := api.New(api.Options{Store: store, Users: users, ImageRoots: []string{os.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func gw(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Execute(context.Background(), args, IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

func epoch(t *testing.T, s config.Store) int64 {
	_, e, err := s.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestOneShotCommandsAndExitCodes(t *testing.T) {
	url, store := startAPI(t, nil)
	ok := func(args ...string) string {
		t.Helper()
		code, out, errOut := gw(t, "", append([]string{"--url", url}, args...)...)
		if code != gwcli.ExitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	ok("/iscsi-targets", "create", tIQN)
	tp := "/iscsi-targets/" + tIQN
	ok(tp+"/gateways", "create", "gw1", "127.0.0.1,127.0.0.2")
	ok("/disks", "create", "pool=local", "image=disk_1", "size=64M", "backend=file:"+filepath.Join(t.TempDir(), "d1.img"))
	ok(tp+"/disks", "add", "local/disk_1")
	ok(tp+"/hosts", "create", hIQN)
	ok(tp+"/hosts/"+hIQN, "auth", "username=myiscsiusername", "password=myiscsipassword")
	ok(tp+"/hosts/"+hIQN, "disk", "add", "local/disk_1")
	ok(tp, "reconfigure", "immediate_data", "no")

	ls := ok("ls")
	for _, want := range []string{"o- local", "[64M, file:", "LUN 0]", "[Auth: CHAP, LUNs: 0]", "Gateways: 1"} {
		if !strings.Contains(ls, want) {
			t.Errorf("ls lacks %q:\n%s", want, ls)
		}
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(ok("--json", "info", tp)), &info); err != nil || info["controls"].(map[string]any)["immediate_data"] != false {
		t.Fatalf("--json info: %v %v", info, err)
	}

	before := epoch(t, store)
	for _, tc := range []struct {
		code int
		args []string
		msg  string
	}{
		{gwcli.ExitFailure, []string{"/iscsi-targets", "create", tIQN}, "already exists"},
		{gwcli.ExitFailure, []string{"/disks", "delete", "local/disk_1"}, "mapped to"},
		{gwcli.ExitFailure, []string{"/disks", "create", "pool=rbd", "image=x", "size=1G"}, "no Ceph connection"},
		{gwcli.ExitFailure, []string{tp, "reconfigure", "max_burst_length", "100"}, "targets[0].controls.max_burst_length"},
		{gwcli.ExitBadArgs, []string{tp + "/hosts/" + hIQN, "auth", "username=myiscsiusername", "password=toolongpassword123"}, "CHAP passwords are 12-16 characters"},
		{gwcli.ExitBadArgs, []string{"/nowhere"}, "no such path"},
		{gwcli.ExitBadArgs, []string{"--no-such-flag"}, "unknown flag"},
	} {
		code, _, errOut := gw(t, "", append([]string{"--url", url}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%v: exit %d (%s), want %d with %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
	if e := epoch(t, store); e != before {
		t.Fatalf("failed commands wrote: epoch %d -> %d", before, e)
	}

	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	if code, _, errOut := gw(t, "", "--url", deadURL, "ls"); code != gwcli.ExitUnreachable || !strings.Contains(errOut, "cannot reach") {
		t.Fatalf("dead API: %d %s", code, errOut)
	}
}

func TestSettingsSources(t *testing.T) {
	url, _ := startAPI(t, map[string]string{"admin": "s3cret"})
	if code, _, errOut := gw(t, "", "--url", url, "ls"); code != gwcli.ExitFailure || !strings.Contains(errOut, "credentials") {
		t.Fatalf("no credentials: %d %s", code, errOut)
	}
	t.Setenv(envURL, url)
	t.Setenv(envUser, "admin")
	t.Setenv(envPassword, "s3cret")
	if code, _, errOut := gw(t, "", "ls"); code != 0 {
		t.Fatalf("from the environment: %d %s", code, errOut)
	}
	t.Setenv(envURL, "")
	t.Setenv(envUser, "")
	t.Setenv(envPassword, "")
	home, _ := os.UserHomeDir()
	os.WriteFile(filepath.Join(home, settingsFile), []byte("url: "+url+"\nuser: admin\npassword: s3cret\n"), 0o600)
	if code, _, errOut := gw(t, "", "ls"); code != 0 {
		t.Fatalf("from ~/.gwcli.yaml: %d %s", code, errOut)
	}
	if code, _, _ := gw(t, "", "--password", "wrong", "ls"); code != gwcli.ExitFailure {
		t.Fatalf("a flag overrides the file: %d", code)
	}
	os.WriteFile(filepath.Join(home, settingsFile), []byte("url: [\n"), 0o600)
	if code, _, _ := gw(t, "", "ls"); code != gwcli.ExitBadArgs {
		t.Fatalf("broken settings file: %d", code)
	}
}

// TestExportImport: export, break, import restores; a ceph-iscsi
// gateway.conf that cannot be imported here (no Ceph for image sizes)
// fails without writing.
func TestExportImport(t *testing.T) {
	url, store := startAPI(t, nil)
	dir := t.TempDir()
	run := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := gw(t, "", append([]string{"--url", url}, args...)...)
		if code != want {
			t.Fatalf("%v: exit %d, want %d: %s", args, code, want, errOut)
		}
		return out + errOut
	}
	run(0, "/iscsi-targets", "create", tIQN)
	run(0, "/iscsi-targets", "discovery_auth", "username=discoveryuser", "password=Disc0verySecret")
	exported := filepath.Join(dir, "export.json")
	if out := run(0, "export", "file="+exported); strings.Contains(out, "in clear") {
		t.Fatalf("a plain export warns of secrets: %s", out)
	}
	if raw, _ := os.ReadFile(exported); strings.Contains(string(raw), "Disc0verySecret") {
		t.Fatalf("a plain export holds a secret: %s", raw)
	}
	if out := run(0, "export", "secrets=true", "file="+exported); !strings.Contains(out, "CHAP secret in clear") {
		t.Fatalf("an export with secrets does not say so: %s", out)
	}
	want, _, _ := store.Get(context.Background())
	run(0, "/iscsi-targets", "delete", tIQN)
	run(0, "/iscsi-targets", "discovery_auth", "nochap")
	run(0, "import", exported)
	got, _, _ := store.Get(context.Background())
	if g, w := got.Redacted(), want.Redacted(); !strings.EqualFold(jsonOf(g), jsonOf(w)) || got.DiscoveryAuth != want.DiscoveryAuth {
		t.Fatalf("import of the export:\n%s\nwant\n%s", jsonOf(got), jsonOf(want))
	}
	before := epoch(t, store)
	out := run(gwcli.ExitFailure, "import", "../../gwcli/testdata/gateway.conf", "key=../../gwcli/testdata/iscsi-gateway.key")
	if !strings.Contains(out, "image size") || epoch(t, store) != before {
		t.Fatalf("gateway.conf without Ceph: %s", out)
	}
	out = run(gwcli.ExitFailure, "import", "../../gwcli/testdata/gateway.conf")
	if !strings.Contains(out, "encrypted") {
		t.Fatalf("gateway.conf without key: %s", out)
	}
	os.WriteFile(filepath.Join(dir, "junk.json"), []byte(`{"targets": 3}`), 0o600)
	run(gwcli.ExitBadArgs, "import", filepath.Join(dir, "junk.json"))
}

func jsonOf(v any) string {
	b, _ := json.MarshalIndent(v, "", " ")
	return string(b)
}

// TestPipedShell: without a terminal the shell runs stdin line by line,
// cd carrying over, and exits with the last line's code.
func TestPipedShell(t *testing.T) {
	url, store := startAPI(t, nil)
	script := strings.Join([]string{
		"cd /iscsi-targets",
		"create " + tIQN,
		"cd " + tIQN + "/hosts",
		"create " + hIQN,
		"pwd",
		"cd " + hIQN,
		"auth username=myiscsiusername password=myiscsipassword",
		"ls",
	}, "\n")
	code, out, errOut := gw(t, script, "--url", url)
	if code != 0 || !strings.Contains(out, "/iscsi-targets/"+tIQN+"/hosts\n") || !strings.Contains(out, "[Auth: CHAP, LUNs: all]") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	c, _, _ := store.Get(context.Background())
	if c.Targets[0].Hosts[0].Auth.Username != "myiscsiusername" {
		t.Fatalf("%+v", c.Targets[0])
	}
	if code, _, _ := gw(t, "ls\nauth username=x password=y\n", "--url", url); code != gwcli.ExitBadArgs {
		t.Fatalf("last line bad: exit %d", code)
	}
}

// TestTLS: an https API with a self-signed certificate is reached with
// --ca-cert (or --insecure); without either the certificate is refused.
func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(newAPI(t, config.NewMemStore(config.Config{}), nil))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	if code, out, errOut := gw(t, "", "--url", srv.URL, "--ca-cert", ca, "ls"); code != 0 || !strings.Contains(out, "o- iscsi-targets") {
		t.Fatalf("--ca-cert: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := gw(t, "", "--url", srv.URL, "--insecure", "ls"); code != 0 {
		t.Fatalf("--insecure: %d %s", code, errOut)
	}
	sum := sha256.Sum256(srv.Certificate().Raw)
	fp := hex.EncodeToString(sum[:])
	if code, _, errOut := gw(t, "", "--url", srv.URL, "ls"); code != gwcli.ExitUnreachable || !strings.Contains(errOut, "certificate") || !strings.Contains(errOut, fp) {
		t.Fatalf("untrusted certificate (the refusal must show its fingerprint %s): %d %s", fp, code, errOut)
	}
	if code, out, errOut := gw(t, "", "--url", srv.URL, "--fingerprint", fp, "ls"); code != 0 || !strings.Contains(out, "o- iscsi-targets") {
		t.Fatalf("--fingerprint: %d %s %s", code, out, errOut)
	}
	other := strings.Repeat("ab", 32)
	if code, _, errOut := gw(t, "", "--url", srv.URL, "--fingerprint", other, "ls"); code != gwcli.ExitUnreachable || !strings.Contains(errOut, "pinned") {
		t.Fatalf("wrong pin: %d %s", code, errOut)
	}
	if code, _, _ := gw(t, "", "--url", srv.URL, "--ca-cert", filepath.Join(t.TempDir(), "none.pem"), "ls"); code != gwcli.ExitBadArgs {
		t.Fatalf("missing CA file: %d", code)
	}
	if code, _, _ := gw(t, "", "--url", "ftp://x", "ls"); code != gwcli.ExitBadArgs {
		t.Fatalf("bad URL: %d", code)
	}
}

// TestPasswordFile: the API password can come from a file (the one a
// gateway generates), with the generated account's user name.
func TestPasswordFile(t *testing.T) {
	url, _ := startAPI(t, map[string]string{"admin": "from-a-file-pw"})
	pw := filepath.Join(t.TempDir(), "api-password")
	os.WriteFile(pw, []byte("from-a-file-pw\n"), 0o600)
	if code, out, errOut := gw(t, "", "--url", url, "--password-file", pw, "ls"); code != 0 || !strings.Contains(out, "o- iscsi-targets") {
		t.Fatalf("--password-file: %d %s %s", code, out, errOut)
	}
	if code, _, _ := gw(t, "", "--url", url, "ls"); code != gwcli.ExitFailure {
		t.Fatalf("no credentials: exit %d, want %d", code, gwcli.ExitFailure)
	}
}
