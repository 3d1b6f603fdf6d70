package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rbdgw/rbdgw/alua"
)

// requestTimeout bounds one etcd call of the ownership layer: a claim
// that cannot reach etcd fails and is retried by the state machine,
// instead of holding the LU's driver.
const requestTimeout = 2 * time.Second

// recordValue is an ownership record as stored (Rev is the key's
// ModRevision, not stored).
type recordValue struct {
	Owner   string `json:"owner,omitempty"`
	Epoch   uint64 `json:"epoch"`
	Request string `json:"request,omitempty"`
}

// Records reads, watches and compare-and-swaps the LUs' ownership records.
type Records struct {
	cli    *clientv3.Client
	prefix string // <state prefix>owners/
	log    *slog.Logger

	mu   sync.Mutex
	last map[string]alua.Record // newest record seen per LU
	subs map[string]func(alua.Record)
}

func newRecords(cli *clientv3.Client, statePrefix string, log *slog.Logger) *Records {
	return &Records{cli: cli, prefix: statePrefix + "owners/", log: log,
		last: map[string]alua.Record{}, subs: map[string]func(alua.Record){}}
}

func (r *Records) key(lu string) string { return r.prefix + url.PathEscape(lu) }

func decodeRecord(v []byte, modRev int64) (alua.Record, error) {
	var rv recordValue
	if err := json.Unmarshal(v, &rv); err != nil {
		return alua.Record{}, err
	}
	return alua.Record{Owner: rv.Owner, Epoch: rv.Epoch, Request: rv.Request, Rev: uint64(modRev)}, nil
}

// CAS writes rec over the stored record if that is still expect (same
// revision; revision 0 means "no record yet"). It reports whether it
// wrote.
func (r *Records) CAS(ctx context.Context, lu string, expect, rec alua.Record) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	v, err := json.Marshal(recordValue{Owner: rec.Owner, Epoch: rec.Epoch, Request: rec.Request})
	if err != nil {
		return false, err
	}
	k := r.key(lu)
	cmp := clientv3.Compare(clientv3.ModRevision(k), "=", int64(expect.Rev))
	if expect.Rev == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
	}
	resp, err := r.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(k, string(v))).Commit()
	if err != nil {
		return false, fmt.Errorf("ha: ownership of %s: %w", lu, err)
	}
	if resp.Succeeded {
		rec.Rev = uint64(resp.Header.Revision)
		r.deliver(lu, rec)
	}
	return resp.Succeeded, nil
}

// Subscribe delivers every newer record of lu to f (from the watch, or at
// once the newest already seen). f runs on the watch goroutine and must
// not block.
func (r *Records) Subscribe(lu string, f func(alua.Record)) (cancel func()) {
	r.mu.Lock()
	r.subs[lu] = f
	rec, seen := r.last[lu]
	r.mu.Unlock()
	if seen {
		f(rec)
	} else {
		f(alua.Record{}) // no record yet: nobody owns the LU
	}
	return func() {
		r.mu.Lock()
		delete(r.subs, lu)
		r.mu.Unlock()
	}
}

// deliver records rec as lu's newest (older revisions are dropped) and
// hands it to the subscriber.
func (r *Records) deliver(lu string, rec alua.Record) {
	r.mu.Lock()
	if old, ok := r.last[lu]; ok && old.Rev >= rec.Rev {
		r.mu.Unlock()
		return
	}
	r.last[lu] = rec
	f := r.subs[lu]
	r.mu.Unlock()
	if f != nil {
		f(rec)
	}
}

// load reads every record and returns the revision to watch after.
func (r *Records) load(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := r.cli.Get(ctx, r.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("ha: read ownership records: %w", err)
	}
	for _, kv := range resp.Kvs {
		r.deliverKV(kv.Key, kv.Value, kv.ModRevision)
	}
	return resp.Header.Revision, nil
}

func (r *Records) deliverKV(key, value []byte, modRev int64) {
	lu, err := url.PathUnescape(string(key[len(r.prefix):]))
	if err != nil {
		return
	}
	rec, err := decodeRecord(value, modRev)
	if err != nil {
		r.log.Warn("ownership record unreadable; ignored", "lu", lu, "err", err)
		return
	}
	r.deliver(lu, rec)
}

// watch follows the records from rev on until ctx ends, reading them
// afresh when the watch breaks.
func (r *Records) watch(ctx context.Context, rev int64) {
	watchPrefix(ctx, r.cli, r.prefix, rev, r.load, func(evs []*clientv3.Event) {
		for _, ev := range evs {
			if ev.Type == clientv3.EventTypePut {
				r.deliverKV(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
			}
		}
	})
}
