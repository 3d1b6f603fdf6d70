//go:build rbd

package rbd

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/ceph/go-ceph/rados"
)

// Health is the cluster's health as the mons report it ("ceph health"):
// HEALTH_OK, or the status followed by the summary of each check, for
// instance "HEALTH_WARN: no active mgr". The mons answer it without a mgr.
func (c *Cluster) Health(ctx context.Context) (string, error) {
	out, err := c.monCommandOut(ctx, []byte(`{"prefix":"health","format":"json"}`))
	if err != nil {
		return "", err
	}
	var h struct {
		Status string `json:"status"`
		Checks map[string]struct {
			Summary struct {
				Message string `json:"message"`
			} `json:"summary"`
		} `json:"checks"`
	}
	if err := json.Unmarshal(out, &h); err != nil || h.Status == "" {
		return "", fmt.Errorf("rbd: health: unexpected answer %q", out)
	}
	var msgs []string
	for _, ch := range h.Checks {
		msgs = append(msgs, ch.Summary.Message)
	}
	if len(msgs) == 0 {
		return h.Status, nil
	}
	slices.Sort(msgs)
	return h.Status + ": " + strings.Join(msgs, "; "), nil
}

// Pools lists the cluster's pools.
func (c *Cluster) Pools(ctx context.Context) (pools []string, err error) {
	err = c.withConn(ctx, func(conn *rados.Conn) error {
		if pools, err = conn.ListPools(); err != nil {
			return fmt.Errorf("rbd: list pools: %w", err)
		}
		return nil
	})
	slices.Sort(pools)
	return pools, err
}
