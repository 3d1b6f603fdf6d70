package config

import clientv3 "go.etcd.io/etcd/client/v3"

// Client is the store's etcd client, shared with the gateway's cluster
// state (ownership leases and records, persistent reservations), which
// lives beside the configuration under its own prefix (StatePrefix) so
// that state writes never bump the configuration epoch.
func (s *EtcdStore) Client() *clientv3.Client { return s.cli }

// StatePrefix is where a cluster's run-time state lives in etcd:
// "/rbdgw/state/v1/<cluster>/", outside the configuration's prefix.
func StatePrefix(cluster string) string { return "/rbdgw/state/v1/" + cluster + "/" }
