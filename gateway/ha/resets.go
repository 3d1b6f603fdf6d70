package ha

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rbdgw/rbdgw/scsi"
)

// A logical unit reset belongs to the LU, not to the gateway it came
// through (SAM-5 6.6; libiscsi's MultipathIO.Reset checks every path): the
// gateway that performed one puts it at resets/<lu key>, every other
// gateway replays it on its own copy of the LU (scsi.LogicalUnit.ReplayReset),
// so each of their sessions reports the reset's unit attention too, and
// confirms at reset-acks/<lu key>/<gateway>.
type resetEvent struct {
	From string `json:"from"` // the gateway that performed the reset
	ASCQ byte   `json:"ascq"` // qualifier of its 29h unit attention
	At   int64  `json:"at"`   // unix nanoseconds: every reset is a new value
}

// LUEvents returns the scsi.LUEvents of the LU whose store key is lu: its
// resets are relayed to the other gateways.
func (c *Cluster) LUEvents(lu string) scsi.LUEvents { return &luResets{c: c, lu: lu} }

type luResets struct {
	c  *Cluster
	lu string
}

// resetAckTimeout bounds how long a reset waits for the other live
// gateways to have replayed it (the task management response waits).
const resetAckTimeout = time.Second

// Reset publishes a reset performed here and waits (resetAckTimeout at
// most) until every other live gateway has replayed it, so that the
// initiator, once it has the task management response, finds the unit
// attention on every path.
func (r *luResets) Reset(ascq byte) {
	e := resetEvent{From: r.c.m.Self(), ASCQ: ascq, At: time.Now().UnixNano()}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.c.ctx, resetAckTimeout)
	defer cancel()
	key := url.PathEscape(r.lu)
	if _, err := r.c.cli.Put(ctx, r.c.resetPrefix()+key, string(b)); err != nil {
		r.c.log.Warn("LU reset not relayed to the other gateways", "lu", r.lu, "err", err)
		return
	}
	acks := r.c.resetAckPrefix() + key + "/"
	for {
		missing := without(r.c.m.Live(), r.c.m.Self())
		if resp, err := r.c.cli.Get(ctx, acks, clientv3.WithPrefix()); err == nil {
			for _, kv := range resp.Kvs {
				if string(kv.Value) == strconv.FormatInt(e.At, 10) {
					missing = without(missing, string(kv.Key[len(acks):]))
				}
			}
		}
		if len(missing) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			r.c.log.Warn("LU reset: gateways did not confirm its replay", "lu", r.lu, "missing", missing)
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (c *Cluster) resetPrefix() string    { return c.statePrefix + "resets/" }
func (c *Cluster) resetAckPrefix() string { return c.statePrefix + "reset-acks/" }

// ackReset tells the gateway that performed a reset that this one has
// replayed it.
func (c *Cluster) ackReset(key string, at int64) {
	ctx, cancel := context.WithTimeout(c.ctx, requestTimeout)
	defer cancel()
	if _, err := c.cli.Put(ctx, c.resetAckPrefix()+key+"/"+c.m.Self(), strconv.FormatInt(at, 10)); err != nil {
		c.log.Warn("LU reset replayed but not confirmed", "lu", key, "err", err)
	}
}

// WatchResets calls replay for every reset another gateway performs from
// now on, with the LU's store key, until the gateway leaves. A watch that
// breaks resumes from the present: replaying a reset seen late would abort
// commands that came after it.
func (c *Cluster) WatchResets(replay func(lu string, ascq byte)) {
	prefix := c.resetPrefix()
	var rev int64 // 0 (from the present) if etcd does not answer now
	ctx, cancel := context.WithTimeout(c.ctx, requestTimeout)
	if resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err == nil {
		rev = resp.Header.Revision
	}
	cancel()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		watchPrefix(c.ctx, c.cli, prefix, rev, nil, func(evs []*clientv3.Event) {
			for _, ev := range evs {
				var e resetEvent
				if ev.Type != clientv3.EventTypePut || json.Unmarshal(ev.Kv.Value, &e) != nil || e.From == c.m.Self() {
					continue
				}
				key := string(ev.Kv.Key[len(prefix):])
				if lu, err := url.PathUnescape(key); err == nil {
					replay(lu, e.ASCQ)
					c.ackReset(key, e.At)
				}
			}
		})
	}()
}
