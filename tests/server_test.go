package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chap is one set of CHAP credentials; Mutual* authenticate the target.
type chap struct {
	User, Pass             string
	MutualUser, MutualPass string
}

// hostACL admits one initiator, optionally with its own credentials.
type hostACL struct {
	IQN  string
	Auth *chap
	LUNs []uint64 // LUN ids the host sees; empty: all (rbdgw only)
}

// targetDef describes one target with a single file-backed LUN.
type targetDef struct {
	IQN   string
	Size  int64 // LUN size in bytes
	Auth  *chap
	Hosts []hostACL // empty: any initiator, unless DenyByDefault
	// DenyByDefault leaves a target without hosts and CHAP as rbdgw
	// serves it by default (admitting nobody) instead of acl: open.
	DenyByDefault bool
	// ExtraLUNs adds LUNs 1..ExtraLUNs of the same size (rbdgw only).
	ExtraLUNs int
	// ReadOnly write-protects the LUN (rbdgw read_only, tgtd readonly=1).
	ReadOnly bool
}

// serverSpec is what a test wants served.
type serverSpec struct {
	Targets       []targetDef
	DiscoveryAuth *chap
	// RBD, when set, backs every LUN with an RBD image instead of a file
	// (rbdgw only; rbd_harness_test.go).
	RBD *rbdSpec
}

// server is a running iSCSI target implementation under test.
type server interface {
	Kind() string
	Portal() string // "127.0.0.1:port"
	LUN() int       // the LUN id of each target's disk
	PID() int
	// Exited reports whether the process died.
	Exited() (bool, error)
	// Stopped reports whether the test stopped the process on purpose.
	Stopped() bool
	// Restart stops (or reaps) the process and starts a fresh one on the
	// same port and backing files.
	Restart() error
	Stop() error
	LogPath() string
}

const (
	initiator1 = "iqn.2026-01.io.rbdgw.test:init1"
	initiator2 = "iqn.2026-01.io.rbdgw.test:init2"
	stopGrace  = 10 * time.Second
)

// startServer starts the implementation chosen by kind, registering its
// shutdown with t.Cleanup.
func startServer(t testing.TB, kind string, spec serverSpec) server {
	t.Helper()
	dir := t.TempDir()
	var (
		s   server
		err error
	)
	switch kind {
	case "rbdgw":
		if buildErr != nil {
			t.Fatalf("rbdgw did not build: %v", buildErr)
		}
		s, err = startRbdgw(dir, spec)
	case "tgtd":
		needTools(t, "tgtd", "tgtadm")
		s, err = startTgtd(dir, spec)
	default:
		t.Fatalf("unknown target kind %q (want rbdgw or tgtd)", kind)
	}
	if err != nil {
		t.Fatalf("starting %s: %v", kind, err)
	}
	t.Cleanup(func() {
		if exited, werr := s.Exited(); exited && !s.Stopped() {
			t.Errorf("%s (pid %d) had exited before the end of the test: %v; log %s", kind, s.PID(), werr, s.LogPath())
			dumpLog(t, s.LogPath())
			return
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stopping %s: %v", kind, err)
		}
		if t.Failed() {
			dumpLog(t, s.LogPath())
		}
	})
	return s
}

// dumpLog logs the tail of a daemon log.
func dumpLog(t testing.TB, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	t.Logf("tail of %s:\n%s", path, b)
}

// ---- rbdgw ----

type rbdgwServer struct {
	dir, cfgPath, dataDir, portal, log string
	d                                  *daemon
}

// The JSON shape of config/ (docs/example-config.yaml). The tests speak
// the file format, not the Go package, as an admin would.
type cfgCHAP struct {
	Username       string `json:"username,omitempty"`
	Password       string `json:"password,omitempty"`
	MutualUsername string `json:"mutual_username,omitempty"`
	MutualPassword string `json:"mutual_password,omitempty"`
}
type cfgHost struct {
	IQN  string   `json:"iqn"`
	Auth *cfgCHAP `json:"auth,omitempty"`
	LUNs []uint64 `json:"luns,omitempty"`
}
type cfgLUN struct {
	LUNID uint64 `json:"lun_id"`
	Disk  string `json:"disk"`
}
type cfgTarget struct {
	IQN   string    `json:"iqn"`
	Auth  *cfgCHAP  `json:"auth,omitempty"`
	Hosts []cfgHost `json:"hosts,omitempty"`
	LUNs  []cfgLUN  `json:"luns"`
	// ACL "open" admits any initiator to a target without hosts; the
	// suites that test something else than access control use it.
	ACL string `json:"acl,omitempty"`
}
type cfgDisk struct {
	Name     string `json:"name"`
	Backend  string `json:"backend"`
	Size     string `json:"size"`
	ReadOnly bool   `json:"read_only,omitempty"`
	Create   bool   `json:"create,omitempty"`
}
type cfgFile struct {
	Portals       []string    `json:"portals"`
	DataDir       string      `json:"data_dir"`
	DiscoveryAuth *cfgCHAP    `json:"discovery_auth,omitempty"`
	Ceph          *cfgCeph    `json:"ceph,omitempty"`
	Disks         []cfgDisk   `json:"disks"`
	Targets       []cfgTarget `json:"targets"`
}

func toCfgCHAP(c *chap) *cfgCHAP {
	if c == nil {
		return nil
	}
	return &cfgCHAP{Username: c.User, Password: c.Pass, MutualUsername: c.MutualUser, MutualPassword: c.MutualPass}
}

func startRbdgw(dir string, spec serverSpec) (*rbdgwServer, error) {
	s := &rbdgwServer{dir: dir, cfgPath: filepath.Join(dir, "rbdgw.json"), dataDir: filepath.Join(dir, "data"), log: filepath.Join(dir, "rbdgw.log")}
	if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.portal = fmt.Sprintf("127.0.0.1:%d", port)
		if err := s.writeConfig(spec); err != nil {
			return nil, err
		}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

// writeConfig writes spec as rbdgw's JSON configuration.
func (s *rbdgwServer) writeConfig(spec serverSpec) error {
	cfg := cfgFile{Portals: []string{s.portal}, DataDir: s.dataDir, DiscoveryAuth: toCfgCHAP(spec.DiscoveryAuth), Ceph: spec.RBD.ceph()}
	for i, td := range spec.Targets {
		disk := fmt.Sprintf("disk%d", i)
		if td.ReadOnly && spec.RBD == nil {
			// rbdgw creates missing images, but not read-only ones.
			if err := makeImage(filepath.Join(s.dir, disk+".img"), td.Size); err != nil {
				return err
			}
		}
		cfg.Disks = append(cfg.Disks, s.disk(spec.RBD, disk, td.Size, td.ReadOnly))
		ct := cfgTarget{IQN: td.IQN, Auth: toCfgCHAP(td.Auth), LUNs: []cfgLUN{{LUNID: 0, Disk: disk}}}
		for l := 1; l <= td.ExtraLUNs; l++ {
			extra := fmt.Sprintf("disk%d-%d", i, l)
			cfg.Disks = append(cfg.Disks, s.disk(spec.RBD, extra, td.Size, false))
			ct.LUNs = append(ct.LUNs, cfgLUN{LUNID: uint64(l), Disk: extra})
		}
		for _, h := range td.Hosts {
			ct.Hosts = append(ct.Hosts, cfgHost{IQN: h.IQN, Auth: toCfgCHAP(h.Auth), LUNs: h.LUNs})
		}
		if len(ct.Hosts) == 0 && ct.Auth == nil && !td.DenyByDefault {
			ct.ACL = "open"
		}
		cfg.Targets = append(cfg.Targets, ct)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(s.cfgPath, b, 0o600)
}

// disk is the configuration of one disk: an image file in the server's
// directory, or an RBD image named after the disk when rbd is set.
func (s *rbdgwServer) disk(rbd *rbdSpec, name string, size int64, readOnly bool) cfgDisk {
	d := cfgDisk{Name: name, Backend: "file:" + filepath.Join(s.dir, name+".img"), Size: fmt.Sprintf("%d", size), ReadOnly: readOnly}
	if rbd != nil {
		d.Backend, d.Create = "rbd:"+rbd.image(name), true
	}
	return d
}

// makeImage creates a sparse image file of size bytes if none exists.
func makeImage(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if os.IsExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Reload rewrites the configuration and sends SIGHUP.
func (s *rbdgwServer) Reload(spec serverSpec) error {
	if err := s.writeConfig(spec); err != nil {
		return err
	}
	return s.d.cmd.Process.Signal(syscall.SIGHUP)
}

func (s *rbdgwServer) start() error {
	d, err := startDaemon("rbdgw", s.log, rbdgwBin, "serve", "--config", s.cfgPath, "--data-dir", s.dataDir, "--portal", s.portal,
		"--image-root", s.dir)
	if err != nil {
		return err
	}
	if err := waitPortal(d, s.portal, 20*time.Second); err != nil {
		_ = d.Stop(2 * time.Second)
		return err
	}
	s.d = d
	return nil
}

func (s *rbdgwServer) Kind() string          { return "rbdgw" }
func (s *rbdgwServer) Portal() string        { return s.portal }
func (s *rbdgwServer) LUN() int              { return 0 }
func (s *rbdgwServer) PID() int              { return s.d.PID() }
func (s *rbdgwServer) LogPath() string       { return s.log }
func (s *rbdgwServer) Exited() (bool, error) { return s.d.Exited() }
func (s *rbdgwServer) Stop() error           { return s.d.Stop(stopGrace) }
func (s *rbdgwServer) Stopped() bool         { return s.d.stopRequested.Load() }
func (s *rbdgwServer) Restart() error {
	_ = s.d.Stop(2 * time.Second)
	return s.start()
}

// ---- tgtd (the reference) ----

type tgtdServer struct {
	dir, portal, log string
	ctlPort          int
	spec             serverSpec
	d                *daemon
}

func startTgtd(dir string, spec serverSpec) (*tgtdServer, error) {
	s := &tgtdServer{dir: dir, spec: spec, log: filepath.Join(dir, "tgtd.log")}
	for i, td := range spec.Targets {
		if err := os.Truncate(s.img(i), 0); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		f, err := os.OpenFile(s.img(i), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		err = f.Truncate(td.Size)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.portal = fmt.Sprintf("127.0.0.1:%d", port)
	// The management channel is an abstract socket named by this number;
	// a random one keeps us away from any system tgtd.
	s.ctlPort = 20000 + port%10000
	return s, s.start()
}

func (s *tgtdServer) img(i int) string { return filepath.Join(s.dir, fmt.Sprintf("disk%d.img", i)) }

func (s *tgtdServer) start() error {
	d, err := startDaemon("tgtd", s.log, "tgtd", "-f", "-C", itoa(s.ctlPort), "--iscsi", "portal="+s.portal)
	if err != nil {
		return err
	}
	s.d = d
	if err := waitPortal(d, s.portal, 20*time.Second); err != nil {
		_ = d.Stop(2 * time.Second)
		return err
	}
	if err := s.configure(); err != nil {
		_ = d.Stop(2 * time.Second)
		return err
	}
	return nil
}

func (s *tgtdServer) adm(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	full := append([]string{"-C", itoa(s.ctlPort), "--lld", "iscsi"}, args...)
	out, err := exec.CommandContext(ctx, "tgtadm", full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tgtadm %s: %v: %s", strings.Join(full, " "), err, out)
	}
	return nil
}

func (s *tgtdServer) configure() error {
	// tgtd takes a moment after listening before its control socket works.
	var err error
	for i := 0; i < 50; i++ {
		if err = s.adm("--mode", "target", "--op", "show"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	accounts := map[string]bool{}
	account := func(u, p string) error {
		if accounts[u] {
			return nil
		}
		accounts[u] = true
		return s.adm("--mode", "account", "--op", "new", "--user", u, "--password", p)
	}
	for i, td := range s.spec.Targets {
		tid := itoa(i + 1)
		steps := [][]string{
			{"--mode", "target", "--op", "new", "--tid", tid, "-T", td.IQN},
			{"--mode", "logicalunit", "--op", "new", "--tid", tid, "--lun", "1", "-b", s.img(i)},
		}
		if td.ReadOnly {
			steps = append(steps, []string{"--mode", "logicalunit", "--op", "update", "--tid", tid, "--lun", "1", "--params", "readonly=1"})
		}
		if len(td.Hosts) == 0 {
			steps = append(steps, []string{"--mode", "target", "--op", "bind", "--tid", tid, "-I", "ALL"})
		}
		for _, h := range td.Hosts {
			steps = append(steps, []string{"--mode", "target", "--op", "bind", "--tid", tid, "-Q", h.IQN})
		}
		for _, st := range steps {
			if err := s.adm(st...); err != nil {
				return err
			}
		}
		auths := []*chap{td.Auth}
		for _, h := range td.Hosts {
			auths = append(auths, h.Auth)
		}
		for _, a := range auths {
			if a == nil {
				continue
			}
			if err := account(a.User, a.Pass); err != nil {
				return err
			}
			if err := s.adm("--mode", "account", "--op", "bind", "--tid", tid, "--user", a.User); err != nil {
				return err
			}
			if a.MutualUser != "" {
				if err := account(a.MutualUser, a.MutualPass); err != nil {
					return err
				}
				if err := s.adm("--mode", "account", "--op", "bind", "--tid", tid, "--user", a.MutualUser, "--outgoing"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *tgtdServer) Kind() string          { return "tgtd" }
func (s *tgtdServer) Portal() string        { return s.portal }
func (s *tgtdServer) LUN() int              { return 1 }
func (s *tgtdServer) PID() int              { return s.d.PID() }
func (s *tgtdServer) LogPath() string       { return s.log }
func (s *tgtdServer) Exited() (bool, error) { return s.d.Exited() }
func (s *tgtdServer) Stopped() bool         { return s.d.stopRequested.Load() }

// Stop asks tgtd to shut down through its control socket (it ignores
// SIGTERM while targets exist), then falls back to SIGKILL silently: tgtd
// is the reference, not the code under test.
func (s *tgtdServer) Stop() error {
	if exited, _ := s.d.Exited(); !exited {
		_ = s.adm("--mode", "system", "--op", "delete", "--force")
	}
	_ = s.d.Stop(time.Second)
	return nil
}

func (s *tgtdServer) Restart() error {
	_ = s.Stop()
	return s.start()
}

// ---- initiator side ----

// lunURL is a libiscsi/qemu URL for one LUN, with CHAP credentials when
// given (mutual ones as libiscsi's target_user/target_password arguments).
func lunURL(s server, iqn string, auth *chap) string {
	return fmt.Sprintf("iscsi://%s%s/%s/%d%s", userinfo(auth), s.Portal(), iqn, s.LUN(), mutualArgs(auth))
}

// portalURL is a discovery URL.
func portalURL(s server, auth *chap) string {
	return fmt.Sprintf("iscsi://%s%s", userinfo(auth), s.Portal())
}

func userinfo(a *chap) string {
	if a == nil || a.User == "" {
		return ""
	}
	return a.User + "%" + a.Pass + "@"
}

func mutualArgs(a *chap) string {
	if a == nil || a.MutualUser == "" {
		return ""
	}
	return "?target_user=" + url.QueryEscape(a.MutualUser) + "&target_password=" + url.QueryEscape(a.MutualPass)
}

// run runs a tool with a timeout and returns its combined output.
func run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s timed out after %v: %w", name, timeout, ctx.Err())
	}
	return string(out), err
}

// inquiry runs iscsi-inq as initiator against url.
func inquiry(initiator, url string, extra ...string) (string, error) {
	args := append([]string{"-i", initiator}, extra...)
	return run(20*time.Second, "iscsi-inq", append(args, url)...)
}
