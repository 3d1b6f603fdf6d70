//go:build rbd

package rbd

import (
	"slices"
	"strings"
	"testing"
)

// The mons report health without a mgr (the micro cluster has none, so it
// warns), and the pool list has the test pool.
func TestClusterHealthAndPools(t *testing.T) {
	c := connect(t)
	h, err := c.Health(t.Context())
	if err != nil || !strings.HasPrefix(h, "HEALTH_") {
		t.Fatalf("health %q: %v", h, err)
	}
	pools, err := c.Pools(t.Context())
	if err != nil || !slices.Contains(pools, "rbd") {
		t.Fatalf("pools %v: %v", pools, err)
	}
	t.Logf("health %q, pools %v", h, pools)
}
