package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rbdgw/rbdgw/internal/loopback"
)

var prefixSeq atomic.Int64

// etcdHarness builds storeUnderTest values on one etcd cluster: each
// subtest gets its own prefix on it.
func etcdHarness(base EtcdOptions, down, up func(*testing.T), stopOne func(*testing.T) func(), restart func(*testing.T)) func(t *testing.T) storeUnderTest {
	return func(t *testing.T) storeUnderTest {
		prefix := fmt.Sprintf("/rbdgw/v1/test-%d-%d/", os.Getpid(), prefixSeq.Add(1))
		return storeUnderTest{
			client: func(t *testing.T) Store {
				o := base
				o.Prefix, o.DialTimeout, o.RequestTimeout = prefix, 2*time.Second, 2*time.Second
				s, err := OpenEtcd(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			},
			down: down, up: up, stopOne: stopOne, restart: restart,
		}
	}
}

func TestEmbeddedEtcdContract(t *testing.T) {
	dir := t.TempDir()
	clientURL, peerURL := loopback.FreeURL(t), loopback.FreeURL(t)
	var m *EmbeddedEtcd
	start := func(t *testing.T) {
		t.Helper()
		var err error
		if m, err = StartEmbeddedEtcd(dir, clientURL, peerURL, nil); err != nil {
			t.Fatal(err)
		}
	}
	start(t)
	t.Cleanup(func() { m.Close() })
	stop := func(*testing.T) { m.Close() }
	restart := func(t *testing.T) { stop(t); start(t) }
	testStoreContract(t, etcdHarness(m.StoreOptions(), stop, start, nil, restart))
}

func TestEmbeddedEtcdRefusesNonLoopback(t *testing.T) {
	for _, u := range []string{"http://0.0.0.0:2379", "http://192.0.2.1:2379", "https://127.0.0.1:2379", "http://localhost:2379", "127.0.0.1:2379", "http://127.0.0.1"} {
		if _, err := StartEmbeddedEtcd(t.TempDir(), u, loopback.FreeURL(t), nil); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

func TestOpenEtcdRefusesBadOptions(t *testing.T) {
	ctx := context.Background()
	if _, err := OpenEtcd(ctx, EtcdOptions{}); err == nil {
		t.Error("no endpoints accepted")
	}
	if _, err := OpenEtcd(ctx, EtcdOptions{Endpoints: []string{"http://127.0.0.1:1"}, Prefix: "rbdgw"}); err == nil {
		t.Error("relative prefix accepted")
	}
	if _, err := OpenEtcd(ctx, EtcdOptions{Endpoints: []string{"http://127.0.0.1:1"}, CAFile: "/nonexistent/ca.pem"}); err == nil {
		t.Error("missing CA file accepted")
	}
}

// TestEtcdUnreachableFromStart: a store whose endpoints never answered
// fails within the deadline with ErrUnavailable, and without a deadline
// within its request timeout.
func TestEtcdUnreachableFromStart(t *testing.T) {
	s, err := OpenEtcd(context.Background(), EtcdOptions{Endpoints: []string{loopback.FreeURL(t)}, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := s.Get(ctx); !errors.Is(err, ErrUnavailable) || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("Get: %v after %s", err, time.Since(start))
	}
	start = time.Now()
	if _, err := s.Update(context.Background(), addDisk("x")); !errors.Is(err, ErrUnavailable) || time.Since(start) > 2*time.Second {
		t.Fatalf("Update without deadline: %v after %s", err, time.Since(start))
	}
}

// TestEtcdRefusesForeignKeys: a key under the prefix that no object owns
// (written by hand, or by a newer version) makes Get fail naming it,
// rather than serving a configuration with something silently missing.
func TestEtcdRefusesForeignKeys(t *testing.T) {
	s := NewMemStore(Config{})
	s.keys["targets/iqn.2026-11.io.rbdgw:x/luns/0"] = []byte(`{"lun_id":0,"disk":"d"}`)
	if _, _, err := s.Get(context.Background()); err == nil || !strings.Contains(err.Error(), "targets/iqn.2026-11.io.rbdgw:x/luns/0") {
		t.Fatalf("orphan LUN key: %v", err)
	}
	s = NewMemStore(Config{})
	s.keys["disks/d"] = []byte(`{"name":"d","colour":"red"}`)
	if _, _, err := s.Get(context.Background()); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown field: %v", err)
	}
}

// etcdMember is one /usr/bin/etcd process this test started.
type etcdMember struct {
	name, dir, client, peer string
	args                    []string
	cmd                     *exec.Cmd
}

func (m *etcdMember) start(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(filepath.Dir(m.dir), m.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	m.cmd = exec.Command("/usr/bin/etcd", m.args...)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	// Own process group, so a signal to the test's group does not reach it
	// and nothing else is hit when we end it by PID.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (m *etcdMember) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Kill() // by PID: only the process this test started
	m.cmd.Wait()
	m.cmd = nil
}

// TestExternalEtcdClusterContract runs the contract against a real
// 3-member cluster of Debian's etcd-server, one member stopped or all of
// them, as in production with several gateways.
func TestExternalEtcdClusterContract(t *testing.T) {
	if _, err := os.Stat("/usr/bin/etcd"); err != nil {
		t.Skip("/usr/bin/etcd not installed (Debian package etcd-server); the 3-member test needs it")
	}
	if testing.Short() {
		t.Skip("-short: skips the 3-member etcd cluster")
	}
	root := t.TempDir()
	members := make([]*etcdMember, 3)
	var initial []string
	for i := range members {
		m := &etcdMember{name: fmt.Sprintf("m%d", i), client: loopback.FreeURL(t), peer: loopback.FreeURL(t)}
		m.dir = filepath.Join(root, m.name)
		members[i] = m
		initial = append(initial, m.name+"="+m.peer)
	}
	var endpoints []string
	for _, m := range members {
		endpoints = append(endpoints, m.client)
		m.args = []string{
			"--name", m.name, "--data-dir", m.dir,
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(root),
			"--max-txn-ops", "65536",
			// Fast elections keep the one-member-down case short.
			"--heartbeat-interval", "50", "--election-timeout", "500",
		}
	}
	startAll := func(t *testing.T) {
		for _, m := range members {
			m.start(t)
		}
		waitHealthy(t, endpoints)
	}
	stopAll := func(*testing.T) {
		for _, m := range members {
			m.stop()
		}
	}
	// Registered on the parent test: subtests restart members, and the
	// processes must outlive them.
	t.Cleanup(func() { stopAll(t) })
	startAll(t)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, m := range members {
			b, _ := os.ReadFile(filepath.Join(root, m.name+".log"))
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("%s log tail:\n%s", m.name, b)
		}
	})
	stopOne := func(t *testing.T) func() {
		members[0].stop()
		return func() { members[0].start(t); waitHealthy(t, endpoints) }
	}
	restart := func(t *testing.T) { stopAll(t); startAll(t) }
	testStoreContract(t, etcdHarness(EtcdOptions{Endpoints: endpoints}, stopAll, startAll, stopOne, restart))
}

// waitHealthy waits until the cluster answers a linearizable read.
func waitHealthy(t *testing.T, endpoints []string) {
	t.Helper()
	s, err := OpenEtcd(context.Background(), EtcdOptions{Endpoints: endpoints, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Ping(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd cluster not healthy after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStoreRefusesMismatchedKey(t *testing.T) {
	s := NewMemStore(Config{})
	s.keys["disks/d"] = []byte(`{"name":"e","backend":"file:e.img","size":1048576}`)
	if _, _, err := s.Get(context.Background()); err == nil || !strings.Contains(err.Error(), "disks/d") {
		t.Fatalf("disk key naming another disk: %v", err)
	}
}
