//go:build rbd

package rbd

import (
	"os"
	"testing"
	"time"
)

// TestConnectDeadCluster: a conf whose mon is gone fails within the mon
// timeout instead of librados' default 300 s.
func TestConnectDeadCluster(t *testing.T) {
	conf := os.Getenv("RBDGW_DEAD_CEPH_CONF")
	if conf == "" {
		t.Skip("RBDGW_DEAD_CEPH_CONF is not set (a ceph.conf of a stopped cluster)")
	}
	start := time.Now()
	_, err := Connect(ClusterConfig{ConfPath: conf, MonOpTimeout: 3 * time.Second})
	if err == nil {
		t.Fatal("connected to a dead cluster")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	t.Logf("failed after %v: %v", time.Since(start), err)
}
