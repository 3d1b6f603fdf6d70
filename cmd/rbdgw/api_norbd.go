//go:build !rbd

package main

import (
	"context"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway/api"
)

// imageService: a build without librbd manages file disks only.
func imageService(context.Context, config.Store) (api.ImageService, func(), error) {
	return nil, func() {}, nil
}
