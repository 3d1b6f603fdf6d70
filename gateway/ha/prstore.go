package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rbdgw/rbdgw/scsi"
)

// PRStore keeps persistent reservations in etcd, one key per LU
// (pr/<lu key>), so that every gateway answers for the same reservations
// (scsi.PRStore contract). A state's Version is the etcd version of its key
// (the number of commits since the key was created): Save is a
// compare-and-swap on it, so a gateway holding an old copy can never
// overwrite a newer commit.
type PRStore struct {
	cli    *clientv3.Client
	prefix string // <state prefix>pr/
}

var _ scsi.PRStore = (*PRStore)(nil)

// NewPRStore returns the reservation store of the cluster whose state
// lives under statePrefix.
func NewPRStore(cli *clientv3.Client, statePrefix string) *PRStore {
	return &PRStore{cli: cli, prefix: statePrefix + "pr/"}
}

func (s *PRStore) key(lu string) string { return s.prefix + url.PathEscape(lu) }

// Load returns lu's committed state, or an empty one (Version 0).
func (s *PRStore) Load(lu string) (*scsi.PRState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key(lu))
	if err != nil {
		return nil, fmt.Errorf("ha: reservations of %s: %w", lu, err)
	}
	st := &scsi.PRState{}
	if len(resp.Kvs) == 0 {
		return st, nil
	}
	kv := resp.Kvs[0]
	if err := json.Unmarshal(kv.Value, st); err != nil {
		return nil, fmt.Errorf("ha: reservations of %s: corrupt state: %w", lu, err)
	}
	st.Version = uint64(kv.Version)
	return st, nil
}

// Save commits st if the stored state is still version st.Version-1.
func (s *PRStore) Save(lu string, st *scsi.PRState) error {
	if st.Version == 0 {
		return fmt.Errorf("ha: reservations of %s: version 0 cannot be committed", lu)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	k := s.key(lu)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(k), "=", int64(st.Version-1))).
		Then(clientv3.OpPut(k, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("ha: reservations of %s: %w", lu, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("ha: reservations of %s: version %d was committed elsewhere: %w", lu, st.Version-1, scsi.ErrPRStale)
	}
	return nil
}

// Watch calls changed with the LU key of every reservation commit, from
// any gateway, until ctx ends; the gateway reloads that LU's copy
// (scsi.LogicalUnit.ReloadPR) so PERSISTENT RESERVE IN and reservation
// conflicts answer the same on every path.
func (s *PRStore) Watch(ctx context.Context, changed func(lu string)) {
	// A commit missed while the watch was broken is caught by the next
	// one's reload, or by the owner's reload when it takes the LU.
	watchPrefix(ctx, s.cli, s.prefix, 0, nil, func(evs []*clientv3.Event) {
		for _, ev := range evs {
			if lu, err := url.PathUnescape(string(ev.Kv.Key[len(s.prefix):])); err == nil {
				changed(lu)
			}
		}
	})
}
