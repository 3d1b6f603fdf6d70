package ha

import (
	"context"
	"fmt"
	"net/url"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// State is the cluster's run-time state as stored, for the management
// API: which gateways hold a lease and which gateway owns each LU.
type State struct {
	Live   []string          `json:"live"`
	Owners map[string]string `json:"owners"` // LU (disk name) -> owning gateway
}

// ReadState reads the live gateways and the ownership records under
// statePrefix (config.StatePrefix) in one etcd read.
func ReadState(ctx context.Context, cli *clientv3.Client, statePrefix string) (State, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	alive, owners := statePrefix+"alive/", statePrefix+"owners/"
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(alive, clientv3.WithPrefix()),
		clientv3.OpGet(owners, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return State{}, fmt.Errorf("ha: read cluster state: %w", err)
	}
	st := State{Live: []string{}, Owners: map[string]string{}}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		st.Live = append(st.Live, string(kv.Key[len(alive):]))
	}
	slices.Sort(st.Live)
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		lu, err := url.PathUnescape(string(kv.Key[len(owners):]))
		if err != nil {
			continue
		}
		if rec, err := decodeRecord(kv.Value, kv.ModRevision); err == nil && rec.Owner != "" {
			st.Owners[lu] = rec.Owner
		}
	}
	return st, nil
}
