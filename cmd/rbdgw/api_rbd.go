//go:build rbd

package main

import (
	"context"
	"fmt"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway/api"
	"github.com/rbdgw/rbdgw/rbdlun/rbd"
)

// imageService connects to the Ceph cluster the configuration names (its
// ceph section; with none, no image operations).
func imageService(ctx context.Context, store config.Store) (api.ImageService, func(), error) {
	c, _, err := store.Get(ctx)
	if err != nil || c.Ceph.Conf == "" {
		// No cluster named (or the store not reachable yet): file disks
		// only; image operations answer 501.
		return nil, func() {}, nil
	}
	cl, err := rbd.Connect(rbd.ClusterConfig{ConfPath: c.Ceph.Conf, Cluster: c.Ceph.Cluster, User: c.Ceph.User, Keyring: c.Ceph.Keyring})
	if err != nil {
		return nil, nil, fmt.Errorf("management API: connect to Ceph (%s): %w", c.Ceph.Conf, err)
	}
	return api.RBDImages{Cluster: cl}, func() { cl.Close() }, nil
}
