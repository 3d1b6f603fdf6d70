package ha

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchRetryPause spaces the restarts of a broken watch.
const watchRetryPause = 100 * time.Millisecond

// watchPrefix hands every batch of events under prefix to apply until ctx
// ends. The watch starts after revision rev (0: from now). A watch that
// breaks (compaction, no leader, an etcd restart) starts again after a
// pause: after the revision resync returns when resync is set (it reads
// the keys afresh, so nothing missed during the break is lost), else from
// the present (for events that must not be replayed late).
func watchPrefix(ctx context.Context, cli *clientv3.Client, prefix string, rev int64,
	resync func(context.Context) (int64, error), apply func([]*clientv3.Event)) {
	for ctx.Err() == nil {
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev+1))
		}
		for resp := range cli.Watch(clientv3.WithRequireLeader(ctx), prefix, opts...) {
			if resp.Err() != nil {
				break
			}
			apply(resp.Events)
			rev = resp.Header.Revision
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetryPause):
		}
		rev = 0
		if resync != nil {
			if r, err := resync(ctx); err == nil {
				rev = r
			}
		}
	}
}
