package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/internal/netfault"
)

const (
	tIQN = "iqn.2026-11.io.rbdgw:t1"
	hIQN = "iqn.1994-05.com.redhat:client1"
)

// client is a test's view of the API: JSON in, status and JSON out.
type client struct {
	t          testing.TB
	base       string
	http       *http.Client
	user, pass string
}

func (c *client) do(method, path string, in any) (int, map[string]any) {
	c.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+prefix+path, body)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: bad JSON %q", method, path, raw)
		}
	} else {
		out = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, out
}

// must fails the test unless the status is want.
func (c *client) must(want int, method, path string, in any) map[string]any {
	c.t.Helper()
	code, out := c.do(method, path, in)
	if code != want {
		c.t.Fatalf("%s %s: status %d, want %d: %v", method, path, code, want, out)
	}
	return out
}

// baseConfig is a valid starting configuration with one file disk.
func baseConfig() config.Config {
	c := config.Default()
	c.Disks = []config.Disk{config.NewDisk("local/d1", "file:d1.img", 1<<20)}
	return c
}

type testEnv struct {
	store config.Store
	api   *API
	srv   *httptest.Server
}

// The credentials start gives an API whose test names none.
const testUser, testPassword = "admin", "test-password"

func (e *testEnv) client(t testing.TB) *client {
	return &client{t: t, base: e.srv.URL, http: e.srv.Client(), user: testUser, pass: testPassword}
}

func start(t testing.TB, store config.Store, o Options) *testEnv {
	t.Helper()
	o.Store = store
	if o.Users == nil {
		o.Users = map[string]string{testUser: testPassword}
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &testEnv{store: store, api: a, srv: srv}
}

// stores are the Store implementations every API test runs against.
func stores(initial config.Config) map[string]func(t *testing.T) config.Store {
	return map[string]func(t *testing.T) config.Store{
		"mem":  func(*testing.T) config.Store { return config.NewMemStore(initial) },
		"etcd": func(t *testing.T) config.Store { return etcdStore(t, initial) },
	}
}

func TestAuthTrustedIPsAndErrors(t *testing.T) {
	e := start(t, config.NewMemStore(baseConfig()), Options{Users: map[string]string{"admin": "s3cret"}})
	c := e.client(t)
	c.user, c.pass = "", ""
	if code, out := c.do("GET", "/config", nil); code != http.StatusUnauthorized || out["error"] == nil {
		t.Fatalf("no credentials: %d %v", code, out)
	}
	c.user, c.pass = "admin", "wrong"
	if code, _ := c.do("GET", "/config", nil); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", code)
	}
	c.user, c.pass = "nobody", "s3cret"
	if code, _ := c.do("GET", "/config", nil); code != http.StatusUnauthorized {
		t.Fatalf("unknown user: %d", code)
	}
	c.pass, c.user = "s3cret", "admin"
	c.must(200, "GET", "/config", nil)
	c.must(404, "GET", "/nosuch", nil)
	c.must(404, "GET", "/targets/"+tIQN, nil)

	// A trusted list without loopback shuts this client out, before auth.
	e2 := start(t, config.NewMemStore(baseConfig()), Options{TrustedIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if code, out := e2.client(t).do("GET", "/health", nil); code != http.StatusForbidden || !strings.Contains(fmt.Sprint(out["error"]), "trusted") {
		t.Fatalf("untrusted: %d %v", code, out)
	}
	if _, err := New(Options{Store: config.NewMemStore(baseConfig()), TLSCert: "x"}); err == nil {
		t.Fatal("TLS cert without key accepted")
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("no store accepted")
	}
}

func TestStoreUnavailable(t *testing.T) {
	s := config.NewMemStore(baseConfig())
	c := start(t, s, Options{}).client(t)
	s.SetUnavailable(true)
	c.must(http.StatusServiceUnavailable, "GET", "/config", nil)
	c.must(http.StatusServiceUnavailable, "POST", "/targets", map[string]any{"iqn": tIQN})
	s.SetUnavailable(false)
	c.must(http.StatusCreated, "POST", "/targets", map[string]any{"iqn": tIQN})
}

// TestValidationWritesNothing: each refused change answers 400 with the
// configuration path at fault, and the epoch does not move.
func TestValidationWritesNothing(t *testing.T) {
	for name, mk := range stores(baseConfig()) {
		t.Run(name, func(t *testing.T) {
			c := start(t, mk(t), Options{}).client(t)
			c.must(201, "POST", "/targets", map[string]any{"iqn": tIQN})
			epoch := c.must(200, "GET", "/health", nil)["epoch"]
			for _, tc := range []struct {
				method, path string
				body         any
				status       int
				field        string
			}{
				{"POST", "/targets", map[string]any{"iqn": "iqn.bad"}, 400, "iqn"},
				{"POST", "/targets", map[string]any{"iqn": tIQN}, 409, ""},
				{"PUT", "/targets/" + tIQN + "/auth", map[string]any{"username": "user0001", "password": "short"}, 400, "targets[0].auth.password"},
				{"PUT", "/targets/" + tIQN + "/auth", map[string]any{"username": "u", "password": "abcdefghijkl"}, 400, "targets[0].auth.username"},
				{"PUT", "/targets/" + tIQN + "/auth", map[string]any{"username": "user0001", "password": "abcdefghijkl", "mutual_username": "user0002", "mutual_password": "abcdefghijkl"}, 400, "targets[0].auth.mutual_password"},
				{"PATCH", "/targets/" + tIQN + "/controls", map[string]any{"max_burst_length": 100}, 400, "targets[0].controls.max_burst_length"},
				{"PATCH", "/targets/" + tIQN + "/controls", map[string]any{"no_such": 1}, 400, "controls.no_such"},
				{"PATCH", "/targets/" + tIQN + "/controls", map[string]any{"cmdsn_depth": "deep"}, 400, "controls.cmdsn_depth"},
				{"PUT", "/discovery-auth", map[string]any{"password": "abcdefghijkl"}, 400, "discovery_auth.password"},
				{"POST", "/targets/" + tIQN + "/luns", map[string]any{"disk": "nosuch/disk"}, 404, ""},
				{"POST", "/targets/" + tIQN + "/luns", map[string]any{"disk": "local/d1", "lun_id": 20000}, 400, "targets[0].luns[0].lun_id"},
				{"POST", "/targets/" + tIQN + "/hosts", map[string]any{"iqn": "nope"}, 400, "iqn"},
				{"POST", "/targets/" + tIQN + "/hosts", map[string]any{"iqn": hIQN, "extra": 1}, 400, ""},
				{"POST", "/disks", map[string]any{"name": "f2", "backend": "file:f2.img", "size": "1000"}, 400, "disks[0].size"},
				{"POST", "/disks", map[string]any{"pool": "rbd", "image": "i1", "size": "1G"}, 501, ""},
				{"PUT", "/config", map[string]any{"targets": []any{map[string]any{"iqn": "BAD"}}}, 400, "targets[0].iqn"},
				{"PUT", "/disks/local/d1/failback", map[string]any{"failback": "always"}, 400, "disks[0].failback"},
				{"PUT", "/disks/local/d1/failback", map[string]any{"failback": "preferred"}, 400, "disks[0].failback"},
				{"PUT", "/disks/local/d1/failback", map[string]any{"preferred_gateway": "gw-z"}, 400, "disks[0].preferred_gateway"},
				{"PUT", "/disks/local/nosuch/failback", map[string]any{"failback": "none"}, 404, ""},
			} {
				code, out := c.do(tc.method, tc.path, tc.body)
				if code != tc.status || (tc.field != "" && out["field"] != tc.field) || out["error"] == nil {
					t.Errorf("%s %s %v: %d %v; want %d field %q", tc.method, tc.path, tc.body, code, out, tc.status, tc.field)
				}
				if strings.Contains(fmt.Sprint(out), "abcdefghijkl") {
					t.Errorf("%s %s: password in the answer: %v", tc.method, tc.path, out)
				}
			}
			if got := c.must(200, "GET", "/health", nil)["epoch"]; got != epoch {
				t.Fatalf("epoch moved from %v to %v: a refused change wrote", epoch, got)
			}
		})
	}
}

// TestDocumentationFlow is ceph-iscsi's flow through the API: target, two
// gateways, a disk, a LUN, a host with CHAP that gets the disk; then the
// undo in reverse, with the refusals that protect it.
func TestDocumentationFlow(t *testing.T) {
	for name, mk := range stores(baseConfig()) {
		t.Run(name, func(t *testing.T) {
			c := start(t, mk(t), Options{}).client(t)
			tp := "/targets/" + tIQN
			c.must(201, "POST", "/targets", map[string]any{"iqn": tIQN})
			c.must(201, "POST", tp+"/gateways", map[string]any{"name": "gw1", "portals": []string{"127.0.0.1"}})
			g2 := c.must(201, "POST", tp+"/gateways", map[string]any{"name": "gw2", "portals": []string{"127.0.0.2:3261"}})
			if g2["tpg_id"] == float64(0) {
				t.Errorf("gateway got no tpg id: %v", g2)
			}
			c.must(201, "POST", "/disks", map[string]any{"name": "local/d2", "backend": "file:d2.img", "size": "2M"})
			d2 := c.must(200, "PUT", "/disks/local/d2/failback", map[string]any{"failback": "preferred", "preferred_gateway": "gw2"})
			if d2["failback"] != "preferred" || d2["preferred_gateway"] != "gw2" {
				t.Errorf("failback answer %v", d2)
			}
			lun := c.must(201, "POST", tp+"/luns", map[string]any{"disk": "local/d2"})
			if lun["lun_id"] != float64(0) {
				t.Errorf("first LUN got id %v", lun["lun_id"])
			}
			c.must(201, "POST", tp+"/luns", map[string]any{"disk": "local/d1"})
			c.must(409, "POST", tp+"/luns", map[string]any{"disk": "local/d1"})
			c.must(201, "POST", tp+"/hosts", map[string]any{"iqn": hIQN})
			hp := tp + "/hosts/" + hIQN
			c.must(200, "PUT", hp+"/auth", map[string]any{"username": "myiscsiusername", "password": "myiscsipassword"})
			c.must(201, "POST", hp+"/luns", map[string]any{"disk": "local/d2"})
			c.must(200, "PATCH", tp+"/controls", map[string]any{"cmdsn_depth": 64, "immediate_data": false})
			c.must(201, "POST", tp+"/host-groups", map[string]any{"name": "g1"})
			c.must(200, "POST", tp+"/host-groups/g1/disks", map[string]any{"disk": "local/d1"})
			other := "iqn.1994-05.com.redhat:other"
			c.must(404, "POST", tp+"/host-groups/g1/hosts", map[string]any{"iqn": other})
			c.must(201, "POST", tp+"/hosts", map[string]any{"iqn": other})
			// A host with its own LUN list cannot join a group as well.
			c.must(400, "POST", tp+"/host-groups/g1/hosts", map[string]any{"iqn": hIQN})
			c.must(200, "POST", tp+"/host-groups/g1/hosts", map[string]any{"iqn": other})

			var cfg config.Config
			raw, _ := json.Marshal(c.must(200, "GET", "/config?secrets=true", nil))
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			tg := cfg.Targets[0]
			if len(cfg.Gateways) != 2 || len(tg.Gateways) != 2 || len(tg.LUNs) != 2 || tg.Hosts[0].Auth.Password != "myiscsipassword" ||
				tg.Controls.CmdSNDepth != 64 || tg.Controls.ImmediateData || len(tg.HostGroups[0].Members) != 1 {
				t.Fatalf("configuration after the flow: %+v", cfg)
			}
			if got := c.must(200, "GET", hp, nil); got["auth"].(map[string]any)["password"] != "<redacted>" {
				t.Fatalf("host read shows the password: %v", got)
			}
			gws := c.must(200, "GET", "/cluster", nil)["gateways"].([]any)
			if len(gws) != 2 || !strings.HasPrefix(gws[0].(map[string]any)["state"].(string), "down") {
				t.Fatalf("gateway states: %v", gws)
			}

			c.must(409, "DELETE", "/disks/local/d2", nil)     // mapped
			c.must(409, "DELETE", tp+"/luns/0", nil)          // a host has it
			c.must(409, "DELETE", "/gateways/gw1", nil)       // serves the target
			c.must(200, "DELETE", tp+"/gateways/gw1", nil)    // one left
			c.must(409, "DELETE", tp+"/gateways/gw2", nil)    // the last one
			c.must(200, "DELETE", hp+"/luns/local%2Fd2", nil) // by disk name
			c.must(200, "DELETE", tp+"/host-groups/g1/hosts/"+other, nil)
			c.must(200, "DELETE", tp+"/luns/local%2Fd2", nil)
			c.must(200, "DELETE", "/disks/local/d2", nil)
			c.must(404, "DELETE", "/disks/local/d2", nil)
			c.must(200, "DELETE", hp, nil)
			c.must(200, "DELETE", tp, nil)
			c.must(200, "DELETE", "/gateways/gw1", nil)
		})
	}
}

// TestConcurrentClients: two clients adding hosts to one target at the
// same time both get every change in (the store retries on conflict).
func TestConcurrentClients(t *testing.T) {
	for name, mk := range stores(baseConfig()) {
		t.Run(name, func(t *testing.T) {
			e := start(t, mk(t), Options{})
			e.client(t).must(201, "POST", "/targets", map[string]any{"iqn": tIQN})
			const perClient = 15
			var wg sync.WaitGroup
			for k := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := e.client(t)
					for i := range perClient {
						iqn := fmt.Sprintf("iqn.1994-05.com.example:c%d-%d", k, i)
						if code, out := c.do("POST", "/targets/"+tIQN+"/hosts", map[string]any{"iqn": iqn}); code != 201 {
							t.Errorf("%s: %d %v", iqn, code, out)
						}
					}
				}()
			}
			wg.Wait()
			cfg, _, err := e.store.Get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if n := len(cfg.Targets[0].Hosts); n != 2*perClient {
				t.Fatalf("%d hosts, want %d", n, 2*perClient)
			}
		})
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	c := start(t, config.NewMemStore(baseConfig()), Options{}).client(t)
	c.must(201, "POST", "/targets", map[string]any{"iqn": tIQN})
	c.must(200, "PUT", "/discovery-auth", map[string]any{"username": "discover1", "password": "discoverpass"})
	exported := c.must(200, "GET", "/config?secrets=true", nil)
	c.must(200, "DELETE", "/targets/"+tIQN, nil)
	c.must(200, "PUT", "/config", exported)
	again := c.must(200, "GET", "/config?secrets=true", nil)
	if fmt.Sprint(again) != fmt.Sprint(exported) {
		t.Fatalf("import of the export differs:\n%v\n%v", exported, again)
	}
}

// No GET returns a secret unless the admin asks for it by name: every
// read of the configuration, its targets, hosts and discovery auth shows
// passwords as <redacted>; GET /config?secrets=true is the export.
func TestNoSecretInAnyGET(t *testing.T) {
	const hostPass, discPass, tgtPass = "hostpassword1", "discoverpass", "targetpass12"
	e := start(t, config.NewMemStore(baseConfig()), Options{})
	c := e.client(t)
	c.must(201, "POST", "/targets", map[string]any{"iqn": tIQN})
	c.must(200, "PUT", "/discovery-auth", map[string]any{"username": "discover1", "password": discPass})
	c.must(200, "PUT", "/targets/"+tIQN+"/auth", map[string]any{"username": "target01", "password": tgtPass})
	c.must(201, "POST", "/targets/"+tIQN+"/hosts", map[string]any{"iqn": hIQN})
	c.must(200, "PUT", "/targets/"+tIQN+"/hosts/"+hIQN+"/auth", map[string]any{"username": "host0001", "password": hostPass})
	for _, path := range []string{"/config", "/discovery-auth", "/targets", "/targets/" + tIQN,
		"/targets/" + tIQN + "/hosts", "/targets/" + tIQN + "/hosts/" + hIQN, "/disks", "/health", "/cluster"} {
		code, out := c.do("GET", path, nil)
		body := fmt.Sprint(out)
		if code == http.StatusOK && (strings.Contains(body, hostPass) || strings.Contains(body, discPass) || strings.Contains(body, tgtPass)) {
			t.Errorf("GET %s shows a secret: %s", path, body)
		}
	}
	raw, _ := json.Marshal(c.must(200, "GET", "/config?secrets=true", nil))
	for _, s := range []string{hostPass, discPass, tgtPass} {
		if !strings.Contains(string(raw), s) {
			t.Errorf("the explicit export lacks a secret: %s", raw)
		}
	}
}

// Requests a browser could be made to send from another site are
// refused: a body that is not JSON (text/plain and forms need no CORS
// preflight) and a foreign Origin or Sec-Fetch-Site.
func TestCrossSiteRequestsRefused(t *testing.T) {
	e := start(t, config.NewMemStore(baseConfig()), Options{})
	send := func(ctype string, header map[string]string) int {
		req, _ := http.NewRequest("POST", e.srv.URL+prefix+"/targets", strings.NewReader(`{"iqn":"`+tIQN+`"}`))
		req.SetBasicAuth(testUser, testPassword)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, tc := range map[string]struct {
		ctype  string
		header map[string]string
		want   int
	}{
		"text/plain":          {"text/plain", nil, http.StatusUnsupportedMediaType},
		"form":                {"application/x-www-form-urlencoded", nil, http.StatusUnsupportedMediaType},
		"no content type":     {"", nil, http.StatusUnsupportedMediaType},
		"foreign origin":      {"application/json", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		"cross-site fetch":    {"application/json", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		"same-site subdomain": {"application/json", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
	} {
		if got := send(tc.ctype, tc.header); got != tc.want {
			t.Errorf("%s: status %d, want %d", name, got, tc.want)
		}
	}
	c, _, err := e.store.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Targets) != 0 {
		t.Fatalf("a refused request wrote a target: %+v", c.Targets)
	}
	// The same request from the API's own origin (or a tool) goes through.
	if got := send("application/json; charset=utf-8", map[string]string{"Origin": e.srv.URL}); got != http.StatusCreated {
		t.Fatalf("same-origin JSON: status %d", got)
	}
}

// The API refuses to start without credentials, and serves plain HTTP
// only on loopback.
func TestNeverServesOpen(t *testing.T) {
	if _, err := New(Options{Store: config.NewMemStore(baseConfig())}); err == nil {
		t.Fatal("an API without users was built")
	}
	a, err := New(Options{Store: config.NewMemStore(baseConfig()), Users: map[string]string{"admin": "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A listener whose address is not loopback, as Serve would see it.
	if err := a.ServeListener(context.Background(), fakeAddrListener{ln, &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5000}}, nil); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("plain HTTP off loopback: %v", err)
	}
}

type fakeAddrListener struct {
	net.Listener
	addr net.Addr
}

func (l fakeAddrListener) Addr() net.Addr { return l.addr }

// A file: disk may only name an image under the gateway's image roots:
// three POSTs must not map a root-only file into a target.
func TestFileDiskOutsideImageRootsRefused(t *testing.T) {
	root := t.TempDir()
	c := start(t, config.NewMemStore(baseConfig()), Options{ImageRoots: []string{root}}).client(t)
	for _, backend := range []string{"file:/etc/shadow", "file:../../etc/shadow", "file:" + root + "/../x.img"} {
		if code, out := c.do("POST", "/disks", map[string]any{"name": "x", "backend": backend, "size": "1M"}); code != http.StatusBadRequest || out["field"] != "backend" {
			t.Errorf("%s: %d %v", backend, code, out)
		}
	}
	c.must(201, "POST", "/disks", map[string]any{"name": "rel", "backend": "file:sub/rel.img", "size": "1M"})
	c.must(201, "POST", "/disks", map[string]any{"name": "abs", "backend": "file:" + root + "/abs.img", "size": "1M"})
}

// Accept failing with EMFILE slows the API down; it does not end it.
func TestAcceptErrorsDoNotEndTheAPI(t *testing.T) {
	a, err := New(Options{Store: config.NewMemStore(baseConfig()), Users: map[string]string{testUser: testPassword}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &netfault.FlakyListener{Listener: ln}
	fl.Fails.Store(5)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.ServeListener(ctx, fl, nil) }()
	c := &client{t: t, base: "http://" + ln.Addr().String(), http: &http.Client{Timeout: 20 * time.Second}, user: testUser, pass: testPassword}
	c.must(200, "GET", "/health", nil)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeListener: %v", err)
	}
}
