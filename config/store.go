package config

import (
	"context"
	"errors"
)

// Store holds the cluster configuration that every gateway shares. The
// etcd store is the real one (one key per object, see docs/architecture.md);
// the REST API is its only writer and each gateway's reconciler its reader.
//
// The epoch is the etcd revision of the configuration: it only grows, and
// two gateways showing the same epoch serve the same configuration.
type Store interface {
	// Get returns the current configuration and its epoch.
	Get(ctx context.Context) (Config, int64, error)
	// Update reads the current configuration, applies fn to a copy,
	// validates the result and writes what changed in one transaction
	// that fails if anything it read changed meanwhile; on such a conflict
	// it reads again and calls fn again. When fn or validation fails,
	// nothing is written and that error is returned. It returns the new
	// epoch (the old one when fn changed nothing).
	Update(ctx context.Context, fn func(*Config) error) (int64, error)
	// Watch sends the configuration each time it changes after epoch
	// `after`, newest last, until ctx ends; then the channel is closed. A
	// slow reader may miss intermediate snapshots, never the latest.
	Watch(ctx context.Context, after int64) <-chan Snapshot
	// Close releases the store's client (and an embedded server).
	Close() error
}

// Snapshot is one configuration as the store held it at Epoch.
type Snapshot struct {
	Config Config
	Epoch  int64
}

// ErrUnavailable wraps store errors that come from losing etcd (no
// quorum, unreachable endpoints): the caller may retry, and a gateway keeps
// serving its last known configuration.
var ErrUnavailable = errors.New("config store unavailable")
