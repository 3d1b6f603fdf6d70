package config

import (
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Client is the store's etcd client, shared with the gateway's cluster
// state (ownership leases and records, persistent reservations), which
// lives beside the configuration under its own prefix (StatePrefix) so
// that state writes never bump the configuration epoch.
func (s *EtcdStore) Client() *clientv3.Client { return s.cli }

// StatePrefix is where the run-time state of the cluster whose
// configuration lives under prefix is kept: beside it, not under it
// ("/rbdgw/v1/default/" -> "/rbdgw/v1/default.state/"), so state writes
// never bump the configuration epoch.
func StatePrefix(prefix string) string { return strings.TrimSuffix(prefix, "/") + ".state/" }

// Prefix is the key prefix of the configuration (StatePrefix of it holds
// the cluster's run-time state).
func (s *EtcdStore) Prefix() string { return s.prefix }
