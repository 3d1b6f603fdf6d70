package tests

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The multi-gateway harness: an etcd cluster, a configuration with two
// gateways (gw-a on 127.0.0.1, gw-b on 127.0.0.2) imported into it, and
// both gateways as rbdgw processes in store mode sharing file images.

const (
	mgTarget   = "iqn.2026-01.io.rbdgw.test:multigw"
	mgDiskSize = 64 << 20
	mgLeaseTTL = "2s"
	initiator3 = "iqn.2026-01.io.rbdgw.test:init3"
)

// ALUA asymmetric access states (SPC-4 6.37).
const (
	aluaOptimized    = 0x0
	aluaNonOptimized = 0x1
	aluaUnavailable  = 0x3
	aluaTransition   = 0xf
)

// mgGateway is one rbdgw process of the cluster.
type mgGateway struct {
	name, portal, dataDir, log string
	tpg                        uint16 // its target port group id, learnt from VPD 83h
	d                          *daemon
}

// mgCluster is two gateways on one etcd cluster.
type mgCluster struct {
	t    *testing.T
	etcd *etcdCluster
	dir  string // config file, images, logs
	// keyFile is the cluster's secret key, which every gateway needs.
	keyFile string
	gws     []*mgGateway
	wwns    []string // disk WWNs: an LU keeps its identity across imports
	// diskMod, when set, adjusts each disk of the imported configuration.
	diskMod func(*mgConfigDisk)
}

// The configuration file with gateways, in the file format an admin
// writes (docs/configuration.md).
type mgConfigGateway struct {
	Name    string   `json:"name"`
	Portals []string `json:"portals"`
}
type mgConfigDisk struct {
	Name             string `json:"name"`
	Backend          string `json:"backend"`
	Size             string `json:"size"`
	WWN              string `json:"wwn"`
	PreferredGateway string `json:"preferred_gateway,omitempty"`
	Failback         string `json:"failback,omitempty"`
}
type mgConfig struct {
	Gateways []mgConfigGateway `json:"gateways"`
	Disks    []mgConfigDisk    `json:"disks"`
	Targets  []cfgTarget       `json:"targets"`
}

// startMultiGateway starts etcd (etcdMembers members), imports a
// configuration with disks LUNs and starts gw-a and gw-b.
func startMultiGateway(t *testing.T, etcdMembers, disks int) *mgCluster {
	t.Helper()
	return startMultiGatewayWith(t, etcdMembers, disks, nil)
}

// startMultiGatewayWith is startMultiGateway with diskMod applied to every
// disk of the configuration.
func startMultiGatewayWith(t *testing.T, etcdMembers, disks int, diskMod func(*mgConfigDisk)) *mgCluster {
	t.Helper()
	needEtcd(t)
	if e2eTarget() != "rbdgw" {
		t.Skip("several gateways in one cluster are an rbdgw feature")
	}
	if buildErr != nil {
		t.Fatalf("rbdgw did not build: %v", buildErr)
	}
	c := &mgCluster{t: t, etcd: startEtcd(t, etcdMembers), dir: t.TempDir(), diskMod: diskMod}
	c.keyFile = writeSecretKey(t, c.dir)
	for i, host := range []string{"127.0.0.1", "127.0.0.2"} {
		port, err := freePortOn(host)
		if err != nil {
			t.Fatal(err)
		}
		name := "gw-" + string(rune('a'+i))
		g := &mgGateway{name: name, portal: fmt.Sprintf("%s:%d", host, port),
			dataDir: filepath.Join(c.dir, name), log: filepath.Join(c.dir, name+".log")}
		if err := os.MkdirAll(g.dataDir, 0o755); err != nil {
			t.Fatal(err)
		}
		c.gws = append(c.gws, g)
	}
	if _, err := c.importConfig(disks); err != nil {
		t.Fatal(err)
	}
	// Registered after etcd's cleanup, so it runs first: the gateways
	// leave while the store is still there.
	t.Cleanup(c.cleanup)
	for _, g := range c.gws {
		if err := c.start(g); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range c.gws {
		id, err := c.identity(g, 0)
		if err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		g.tpg = id.tpg
	}
	return c
}

func (c *mgCluster) cleanup() {
	for _, g := range c.gws {
		if g.d == nil {
			continue
		}
		if exited, werr := g.d.Exited(); exited && !g.d.stopRequested.Load() {
			c.t.Errorf("%s (pid %d) died during the test: %v", g.name, g.d.PID(), werr)
		}
		_ = syscall.Kill(g.d.PID(), syscall.SIGCONT) // in case a test left it stopped
		if err := g.d.Stop(stopGrace); err != nil {
			c.t.Errorf("stopping %s: %v", g.name, err)
		}
	}
	if c.t.Failed() {
		for _, g := range c.gws {
			c.t.Logf("tail of %s:\n%s", g.log, logTail(g.log, 6000))
		}
	}
}

// freePortOn returns a TCP port on host that was free a moment ago.
// writeSecretKey writes a cluster secret key (as `head -c 32 /dev/urandom
// | base64` would) into dir: the gateways of one cluster share it, as an
// admin copies the first gateway's key to the others.
func writeSecretKey(t *testing.T, dir string) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := crand.Read(key); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "secret.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func freePortOn(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// importConfig writes the cluster configuration with disks disks (LUNs
// 0..disks-1 of one target) and imports it with `rbdgw config import`;
// it returns when the import committed.
func (c *mgCluster) importConfig(disks int) (time.Time, error) {
	cfg := mgConfig{Targets: []cfgTarget{{IQN: mgTarget, ACL: "open"}}}
	for _, g := range c.gws {
		cfg.Gateways = append(cfg.Gateways, mgConfigGateway{Name: g.name, Portals: []string{g.portal}})
	}
	for i := 0; i < disks; i++ {
		if i == len(c.wwns) {
			c.wwns = append(c.wwns, fmt.Sprintf("6001405%016x%09x", rand.Uint64(), rand.Uint64()>>28))
		}
		name := fmt.Sprintf("disk%d", i)
		d := mgConfigDisk{Name: name, Backend: "file:" + filepath.Join(c.dir, name+".img"),
			Size: fmt.Sprint(mgDiskSize), WWN: c.wwns[i]}
		if c.diskMod != nil {
			c.diskMod(&d)
		}
		cfg.Disks = append(cfg.Disks, d)
		cfg.Targets[0].LUNs = append(cfg.Targets[0].LUNs, cfgLUN{LUNID: uint64(i), Disk: name})
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return time.Time{}, err
	}
	path := filepath.Join(c.dir, fmt.Sprintf("cluster-%d.json", disks))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return time.Time{}, err
	}
	out, err := run(30*time.Second, rbdgwBin, "config", "import", path, "--etcd-endpoints", c.etcd.Endpoints(),
		"--secret-key-file", c.keyFile)
	if err != nil {
		return time.Time{}, fmt.Errorf("rbdgw config import: %v\n%s", err, out)
	}
	return time.Now(), nil
}

// start starts g (again, on its data directory) and waits for its portal.
func (c *mgCluster) start(g *mgGateway) error {
	args := []string{"serve", "--etcd-endpoints", c.etcd.Endpoints(),
		"--gateway-name", g.name, "--data-dir", g.dataDir, "--lease-ttl", mgLeaseTTL, "--image-root", c.dir,
		"--secret-key-file", c.keyFile}
	if serveHasFlag("--api-addr") {
		// The management API would listen on every address (:5000), and
		// two gateways on one host would compete for its port.
		args = append(args, "--api-addr=")
	}
	d, err := startDaemon(g.name, g.log, rbdgwBin, args...)
	if err != nil {
		return err
	}
	g.d = d
	return waitPortal(d, g.portal, 30*time.Second)
}

var serveHelp = sync.OnceValue(func() string {
	out, _ := run(30*time.Second, rbdgwBin, "serve", "--help")
	return out
})

// serveHasFlag reports whether rbdgw serve has a flag.
func serveHasFlag(name string) bool { return strings.Contains(serveHelp(), name+" ") }

// kill SIGKILLs g (by PID) and reaps it.
func (c *mgCluster) kill(g *mgGateway) {
	g.d.stopRequested.Store(true)
	_ = syscall.Kill(g.d.PID(), syscall.SIGKILL)
	<-g.d.done
}

// running reports whether g's process is up.
func (g *mgGateway) running() bool {
	if g.d == nil {
		return false
	}
	exited, _ := g.d.Exited()
	return !exited
}

// other is the gateway that is not g.
func (c *mgCluster) other(g *mgGateway) *mgGateway {
	if g == c.gws[0] {
		return c.gws[1]
	}
	return c.gws[0]
}

// byTPG returns the gateway of a target port group id.
func (c *mgCluster) byTPG(id uint16) *mgGateway {
	for _, g := range c.gws {
		if g.tpg == id {
			return g
		}
	}
	return nil
}

// dial logs initiator in to lun through g, past the new nexus's unit
// attentions.
func (c *mgCluster) dial(g *mgGateway, initiator string, lun int) (*rawSession, error) {
	s, err := dialRaw(g.portal, initiator, mgTarget, lun)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", g.name, err)
	}
	s.timeout = 10 * time.Second
	if err := s.Ready(); err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: %w", g.name, err)
	}
	return s, nil
}

// ---- SCSI commands the tests need beyond rawSession's ----

func isUA(r scsiResult) bool { return r.Status == 0x02 && strings.HasPrefix(r.SenseKey(), "06/") }

// isNotReady: NOT READY, LOGICAL UNIT NOT ACCESSIBLE (02/04/xx), e.g.
// 04/0A ASYMMETRIC ACCESS STATE TRANSITION.
func isNotReady(r scsiResult) bool {
	return r.Status == 0x02 && strings.HasPrefix(r.SenseKey(), "02/04/")
}

// doUA sends a command again while it meets unit attentions.
func (s *rawSession) doUA(cdb, out []byte, in int) (scsiResult, error) {
	for i := 0; ; i++ {
		r, err := s.Do(cdb, out, in)
		if err != nil || !isUA(r) || i == 10 {
			return r, err
		}
	}
}

// tpgState is one descriptor of REPORT TARGET PORT GROUPS.
type tpgState struct {
	ID    uint16
	State byte
	Pref  bool // PREF: the preferred group
	Ports []uint16
}

func (g tpgState) String() string {
	name := map[byte]string{aluaOptimized: "A/O", aluaNonOptimized: "A/NO", 2: "S", aluaUnavailable: "U", 0xe: "O", aluaTransition: "T"}[g.State]
	if g.Pref {
		name += " pref"
	}
	return fmt.Sprintf("tpg %d %s ports %v", g.ID, name, g.Ports)
}

// dataIn sends a command that returns in bytes of data, past unit
// attentions; any status but GOOD is an error.
func (s *rawSession) dataIn(what string, cdb []byte, in int) ([]byte, error) {
	r, err := s.doUA(cdb, nil, in)
	if err != nil {
		return nil, err
	}
	if r.Status != 0 {
		return nil, fmt.Errorf("%s: %s", what, r)
	}
	return r.Data, nil
}

// RTPG sends REPORT TARGET PORT GROUPS (A3h/0Ah).
func (s *rawSession) RTPG() ([]tpgState, error) {
	data, err := s.dataIn("REPORT TARGET PORT GROUPS", []byte{0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0}, 1024)
	if err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(data)) + 4
	if n > len(data) {
		return nil, fmt.Errorf("REPORT TARGET PORT GROUPS: %d bytes, header says %d", len(data), n)
	}
	var out []tpgState
	for p := data[4:n]; len(p) >= 8; {
		g := tpgState{ID: binary.BigEndian.Uint16(p[2:]), State: p[0] & 0x0f, Pref: p[0]&0x80 != 0}
		ports := int(p[7])
		if len(p) < 8+4*ports {
			return nil, fmt.Errorf("REPORT TARGET PORT GROUPS: truncated descriptor % x", p)
		}
		for i := 0; i < ports; i++ {
			g.Ports = append(g.Ports, binary.BigEndian.Uint16(p[8+4*i+2:]))
		}
		out = append(out, g)
		p = p[8+4*ports:]
	}
	return out, nil
}

// lunIdentity is what VPD 83h says about the LU and the port.
type lunIdentity struct {
	naa     []byte // NAA designator of the LU
	relPort uint16 // relative target port identifier
	tpg     uint16 // target port group
}

// Identity reads INQUIRY VPD page 83h.
func (s *rawSession) Identity() (lunIdentity, error) {
	var id lunIdentity
	data, err := s.dataIn("INQUIRY VPD 83h", []byte{0x12, 0x01, 0x83, 0x01, 0x00, 0}, 256)
	if err != nil {
		return id, err
	}
	n := min(int(binary.BigEndian.Uint16(data[2:]))+4, len(data))
	for p := data[4:n]; len(p) >= 4 && len(p) >= 4+int(p[3]); p = p[4+int(p[3]):] {
		d, assoc, typ := p[4:4+int(p[3])], (p[1]>>4)&3, p[1]&0x0f
		switch {
		case assoc == 0 && typ == 3:
			id.naa = slices.Clone(d)
		case assoc == 1 && typ == 4 && len(d) == 4:
			id.relPort = binary.BigEndian.Uint16(d[2:])
		case assoc == 1 && typ == 5 && len(d) == 4:
			id.tpg = binary.BigEndian.Uint16(d[2:])
		}
	}
	if id.naa == nil || id.relPort == 0 || id.tpg == 0 {
		return id, fmt.Errorf("INQUIRY VPD 83h lacks an NAA, relative port or port group designator: % x", data[:n])
	}
	return id, nil
}

// identity reads VPD 83h of lun through g.
func (c *mgCluster) identity(g *mgGateway, lun int) (lunIdentity, error) {
	s, err := c.dial(g, initiator3, lun)
	if err != nil {
		return lunIdentity{}, err
	}
	defer s.Close()
	return s.Identity()
}

// ReportLUNs returns the LUN ids REPORT LUNS lists.
func (s *rawSession) ReportLUNs() ([]int, error) {
	data, err := s.dataIn("REPORT LUNS", []byte{0xa0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, 65536) // up to 8191 LUNs
	if err != nil {
		return nil, err
	}
	n := min(int(binary.BigEndian.Uint32(data))+8, len(data))
	var luns []int
	for p := data[8:n]; len(p) >= 8; p = p[8:] {
		luns = append(luns, int(p[0]&0x3f)<<8|int(p[1]))
	}
	return luns, nil
}

// Read10 reads blocks 512-byte blocks at lba, waiting out unit attentions
// and transitions (up to 10 s).
func (s *rawSession) Read10(lba uint32, blocks int) ([]byte, error) {
	cdb := []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], uint16(blocks))
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := s.doUA(cdb, nil, blocks*512)
		switch {
		case err != nil:
			return nil, err
		case r.Status == 0:
			return r.Data, nil
		case isNotReady(r) && time.Now().Before(deadline):
			time.Sleep(50 * time.Millisecond)
		default:
			return nil, fmt.Errorf("READ(10) lba %d: %s", lba, r)
		}
	}
}

// ---- ownership as the initiators see it ----

// aluaView is RTPG through every running gateway at one moment.
type aluaView map[string][]tpgState // by gateway name

func (v aluaView) String() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(v)) {
		fmt.Fprintf(&b, "[via %s: %v] ", name, v[name])
	}
	return b.String()
}

// view reads RTPG of lun through every running gateway.
func (c *mgCluster) view(lun int) (aluaView, error) {
	v := aluaView{}
	for _, g := range c.gws {
		if !g.running() {
			continue
		}
		s, err := c.dial(g, initiator3, lun)
		if err != nil {
			return v, err
		}
		st, err := s.RTPG()
		s.Close()
		if err != nil {
			return v, fmt.Errorf("%s: %w", g.name, err)
		}
		v[g.name] = st
	}
	return v, nil
}

// settledOwner reports the owner when every path gives the same answer:
// one group Active/Optimized, the groups of the other running gateways
// Active/Non-optimized, those of stopped ones Unavailable.
func (c *mgCluster) settledOwner(v aluaView) (*mgGateway, error) {
	var first []tpgState
	for _, st := range v {
		if first == nil {
			first = st
		} else if !slices.EqualFunc(first, st, func(a, b tpgState) bool {
			return a.ID == b.ID && a.State == b.State && slices.Equal(a.Ports, b.Ports)
		}) {
			return nil, fmt.Errorf("the paths disagree: %v", v)
		}
	}
	if len(first) != len(c.gws) {
		return nil, fmt.Errorf("want %d port groups: %v", len(c.gws), v)
	}
	var owner *mgGateway
	for _, st := range first {
		g := c.byTPG(st.ID)
		switch {
		case g == nil:
			return nil, fmt.Errorf("port group %d is no gateway's: %v", st.ID, v)
		case st.State == aluaOptimized && owner == nil:
			owner = g
		case st.State == aluaNonOptimized && g.running():
		case st.State == aluaUnavailable && !g.running():
		default:
			return nil, fmt.Errorf("%s (running %v) in %v", g.name, g.running(), st)
		}
	}
	if owner == nil || !owner.running() {
		return nil, fmt.Errorf("no running gateway is Active/Optimized: %v", v)
	}
	return owner, nil
}

// startOwned starts a cluster (startMultiGateway) and waits for the
// first owner of LUN 0.
func startOwned(t *testing.T, etcdMembers, disks int) (*mgCluster, *mgGateway) {
	t.Helper()
	c := startMultiGateway(t, etcdMembers, disks)
	owner, _, err := c.waitOwner(0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, owner
}

// waitOwner waits until every running gateway reports the same settled
// ownership of lun and returns the owner.
func (c *mgCluster) waitOwner(lun int, timeout time.Duration) (*mgGateway, aluaView, error) {
	deadline := time.Now().Add(timeout)
	for {
		v, err := c.view(lun)
		if err == nil {
			var owner *mgGateway
			if owner, err = c.settledOwner(v); err == nil {
				return owner, v, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, v, fmt.Errorf("ownership of LUN %d not settled after %v: %w", lun, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---- a multipathing writer ----

const (
	mpBlocks = 8 // 512-byte blocks per write (4 KiB)
	mpBytes  = mpBlocks * 512
)

// mpPattern is the content of write seq at lba: every 16 bytes name the
// block, the write and the writer, so no two writes look alike.
func mpPattern(tag byte, seq, lba uint32) []byte {
	b := make([]byte, mpBytes)
	for off := 0; off < len(b); off += 16 {
		binary.BigEndian.PutUint32(b[off:], lba+uint32(off/512))
		binary.BigEndian.PutUint32(b[off+4:], seq)
		binary.BigEndian.PutUint32(b[off+8:], 0x4d50494f) // "MPIO"
		binary.BigEndian.PutUint32(b[off+12:], uint32(tag)<<24|uint32(off))
	}
	return b
}

// mpAck is one acknowledged write.
type mpAck struct {
	lba, seq uint32
	gw       *mgGateway    // whose path acknowledged it
	at       time.Time     // when the GOOD status arrived
	took     time.Duration // from the first attempt, retries included
}

// mpWriter writes numbered 4 KiB blocks to its region of an LU, as a
// multipathing initiator would: through the path that accepts them,
// switching paths on NOT READY (04/0A) or a lost connection, sending a
// command again after a unit attention. pinned keeps it on one path.
type mpWriter struct {
	c         *mgCluster
	initiator string
	lun       int
	tag       byte
	first     uint32 // first LBA of the region
	slots     uint32 // 4 KiB writes that fit
	pinned    *mgGateway

	cur      int // index of the current path in c.gws
	sess     []*rawSession
	seq      uint32
	limit    time.Duration // pause between writes (spare the shared CPU)
	patience time.Duration // a write no path takes for this long fails the writer; 0: retry until stopped

	mu      sync.Mutex
	acks    []mpAck
	unknown map[uint32]bool // blocks an abandoned write may have reached
	retries map[string]int  // why commands were sent again
}

func (c *mgCluster) newWriter(initiator string, lun int, tag byte, first, slots uint32) *mpWriter {
	return &mpWriter{c: c, initiator: initiator, lun: lun, tag: tag, first: first, slots: slots,
		sess: make([]*rawSession, len(c.gws)), limit: time.Millisecond, patience: 30 * time.Second,
		unknown: map[uint32]bool{}, retries: map[string]int{}}
}

// use makes g the current path.
func (w *mpWriter) use(g *mgGateway) {
	w.cur = slices.Index(w.c.gws, g)
}

func (w *mpWriter) note(why string) {
	w.mu.Lock()
	w.retries[why]++
	w.mu.Unlock()
}

// switchPath moves to the next path unless pinned, dropping nothing.
func (w *mpWriter) switchPath() {
	if w.pinned == nil {
		w.cur = (w.cur + 1) % len(w.c.gws)
	}
}

func (w *mpWriter) session() (*rawSession, error) {
	if w.pinned != nil {
		w.use(w.pinned)
	}
	if s := w.sess[w.cur]; s != nil {
		return s, nil
	}
	s, err := w.c.dial(w.c.gws[w.cur], w.initiator, w.lun)
	if err != nil {
		return nil, err
	}
	w.sess[w.cur] = s
	return s, nil
}

func (w *mpWriter) drop() {
	if s := w.sess[w.cur]; s != nil {
		s.Close()
		w.sess[w.cur] = nil
	}
}

// Close ends the writer's sessions.
func (w *mpWriter) Close() {
	for i := range w.sess {
		w.cur = i
		w.drop()
	}
}

// run writes until ctx ends; it fails on any answer a multipathing
// initiator could not retry, or a write no path takes within patience.
func (w *mpWriter) run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := w.writeNext(ctx); err != nil {
			return err
		}
		time.Sleep(w.limit)
	}
	return nil
}

func (w *mpWriter) writeNext(ctx context.Context) error {
	seq := w.seq
	w.seq++
	lba := w.first + (seq%w.slots)*mpBlocks
	data := mpPattern(w.tag, seq, lba)
	start := time.Now()
	maybeLanded := false
	for {
		if ctx.Err() != nil {
			if maybeLanded {
				w.mu.Lock()
				w.unknown[lba] = true
				w.mu.Unlock()
			}
			return nil
		}
		if w.patience > 0 && time.Since(start) > w.patience {
			return fmt.Errorf("write %d (lba %d) not acknowledged by any path within %v (retries %v)", seq, lba, w.patience, w.Retries())
		}
		s, err := w.session()
		if err != nil {
			w.note("login " + w.c.gws[w.cur].name)
			w.switchPath()
			time.Sleep(20 * time.Millisecond)
			continue
		}
		g := w.c.gws[w.cur]
		r, err := s.Write10(lba, data)
		switch {
		case err != nil:
			maybeLanded = true
			w.note("connection " + g.name)
			w.drop()
			w.switchPath()
			time.Sleep(20 * time.Millisecond)
		case r.Status == 0:
			w.mu.Lock()
			w.acks = append(w.acks, mpAck{lba: lba, seq: seq, gw: g, at: time.Now(), took: time.Since(start)})
			delete(w.unknown, lba)
			w.mu.Unlock()
			return nil
		case isUA(r):
			w.note("unit attention " + r.SenseKey())
		case isNotReady(r):
			w.note("not ready " + r.SenseKey() + " " + g.name)
			w.switchPath()
			time.Sleep(20 * time.Millisecond)
		case r.Status == 0x08 || r.Status == 0x28: // BUSY, TASK SET FULL
			w.note("busy " + g.name)
			time.Sleep(20 * time.Millisecond)
		default:
			return fmt.Errorf("write %d (lba %d) through %s: %s", seq, lba, g.name, r)
		}
	}
}

// Acks returns a copy of the acknowledged writes so far.
func (w *mpWriter) Acks() []mpAck {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

// Retries returns why commands were sent again, so far.
func (w *mpWriter) Retries() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.retries {
		out[k] = v
	}
	return out
}

// firstAckAfter returns the first write g acknowledged after t.
func (w *mpWriter) firstAckAfter(g *mgGateway, t time.Time) (mpAck, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.acks {
		if a.gw == g && a.at.After(t) {
			return a, true
		}
	}
	return mpAck{}, false
}

// reset forgets the acknowledgements (a new run).
func (w *mpWriter) reset() {
	w.mu.Lock()
	w.acks, w.retries = nil, map[string]int{}
	w.mu.Unlock()
}

// verify reads back every acknowledged block through g and counts the
// ones that do not hold their last acknowledged write.
func (w *mpWriter) verify(g *mgGateway) (checked int, err error) {
	w.mu.Lock()
	last := map[uint32]mpAck{}
	for _, a := range w.acks {
		last[a.lba] = a
	}
	for lba := range w.unknown {
		delete(last, lba)
	}
	w.mu.Unlock()
	s, err := w.c.dial(g, w.initiator, w.lun)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	const chunk = 2048 // blocks per READ: 1 MiB
	chunks := map[uint32][]byte{}
	var bad []string
	for _, lba := range slices.Sorted(maps.Keys(last)) {
		a := last[lba]
		base := lba / chunk * chunk
		data, ok := chunks[base]
		if !ok {
			if data, err = s.Read10(base, chunk); err != nil {
				return checked, fmt.Errorf("reading back through %s: %w", g.name, err)
			}
			chunks[base] = data
		}
		got := data[(lba-base)*512:][:mpBytes]
		if want := mpPattern(w.tag, a.seq, lba); !bytes.Equal(got, want) {
			bad = append(bad, fmt.Sprintf("lba %d write %d (acknowledged by %s at %s): holds lba %d write %d",
				lba, a.seq, a.gw.name, a.at.Format("15:04:05.000"), binary.BigEndian.Uint32(got), binary.BigEndian.Uint32(got[4:])))
		}
		checked++
	}
	if len(bad) > 0 {
		return checked, fmt.Errorf("%d of %d acknowledged writes lost, first: %s", len(bad), checked, strings.Join(bad[:min(5, len(bad))], "; "))
	}
	return checked, nil
}

// runWriter starts w in a goroutine; stop ends it and returns its error.
func runWriter(w *mpWriter) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx) }()
	return func() error {
		cancel()
		err := <-done
		w.Close()
		return err
	}
}
