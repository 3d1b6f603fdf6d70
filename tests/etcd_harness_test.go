package tests

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// etcdBin is Debian's etcd-server (3.4), the external store of the
// multi-gateway tests.
const etcdBin = "/usr/bin/etcd"

// needEtcd skips a test when Debian's etcd is not installed.
func needEtcd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(etcdBin); err != nil {
		t.Skipf("%s not installed (Debian package etcd-server; make deps installs it): "+
			"the multi-gateway tests keep the cluster's state in an external etcd", etcdBin)
	}
}

// etcdCluster is 1 or 3 etcd members on 127.0.0.1, started by the test
// and stopped by PID when it ends.
type etcdCluster struct {
	members []*etcdMember
}

type etcdMember struct {
	name, client, log string
	args              []string
	d                 *daemon
}

// startEtcd starts an n-member cluster in a temporary directory and waits
// until every member reports itself healthy (a leader and a quorum).
func startEtcd(t *testing.T, n int) *etcdCluster {
	t.Helper()
	needEtcd(t)
	root := t.TempDir()
	ports, err := freePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	c := &etcdCluster{}
	var initial []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("etcd%d", i)
		m := &etcdMember{name: name, client: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			log: filepath.Join(root, name+".log")}
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		initial = append(initial, name+"="+peer)
		m.args = []string{"--name", name, "--data-dir", filepath.Join(root, name),
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster-state", "new", "--initial-cluster-token", filepath.Base(root),
			// Fast elections: losing a member costs well under a lease TTL.
			"--heartbeat-interval", "50", "--election-timeout", "500",
			// An import of a whole configuration is one transaction with a
			// key per object (docs/configuration.md): thousands of LUNs.
			"--max-txn-ops", "65536", "--max-request-bytes", "33554432"}
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.args = append(m.args, "--initial-cluster", strings.Join(initial, ","))
		m.d, err = startDaemon(m.name, m.log, etcdBin, m.args...)
		if err != nil {
			t.Fatalf("starting %s: %v", m.name, err)
		}
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			if err := m.d.Stop(5 * time.Second); err != nil {
				t.Logf("stopping %s: %v", m.name, err)
			}
			if t.Failed() {
				t.Logf("tail of %s:\n%s", m.log, logTail(m.log, 1500))
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range c.members {
		for !m.healthy() {
			if exited, werr := m.d.Exited(); exited {
				t.Fatalf("%s exited at start (%v):\n%s", m.name, werr, logTail(m.log, 2000))
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not healthy after 30s:\n%s", m.name, logTail(m.log, 2000))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// freePorts returns n distinct ports on 127.0.0.1 that were free a moment
// ago.
func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// Endpoints is the --etcd-endpoints value.
func (c *etcdCluster) Endpoints() string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.client)
	}
	return strings.Join(eps, ",")
}

// get fetches a path of a member's client URL.
func (m *etcdMember) get(path string) (string, error) {
	cl := http.Client{Timeout: time.Second}
	resp, err := cl.Get(m.client + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// healthy: the member answers /health with a leader and a quorum.
func (m *etcdMember) healthy() bool {
	b, err := m.get("/health")
	return err == nil && strings.Contains(b, `"health":"true"`)
}

// Leader returns the index of the member that leads, or -1.
func (c *etcdCluster) Leader() int {
	for i, m := range c.members {
		if exited, _ := m.d.Exited(); exited {
			continue
		}
		if b, err := m.get("/metrics"); err == nil && strings.Contains(b, "\netcd_server_is_leader 1\n") {
			return i
		}
	}
	return -1
}

// Kill SIGKILLs member i (by PID) and reaps it.
func (c *etcdCluster) Kill(i int) {
	m := c.members[i]
	m.d.stopRequested.Store(true)
	_ = syscall.Kill(m.d.PID(), syscall.SIGKILL)
	<-m.d.done
}
