// Package ha keeps the cluster-wide run-time state of a gateway in etcd:
// its liveness lease, the ownership record of every LU, and persistent
// reservations. It drives alua.Owner (the pure ownership state machine)
// with what it sees there and carries out the machine's actions: etcd
// compare-and-swaps, RBD lock handoffs and ALUA state changes.
//
// Keys live under config.StatePrefix(prefix), beside the configuration,
// so that state writes never bump the configuration epoch:
//
//	alive/<gateway>   leased by the gateway; gone when its lease expires;
//	                  the value is the gateway's peer link address
//	secret-key-check  identifies the cluster's secret key (config), which
//	                  seals CHAP passwords and keys the peer links
//	owners/<lu>       alua.Record as JSON; written by compare-and-swap only
//	pr/<lu>           the LU's persistent reservations (prstore.go)
package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultLeaseTTL is the liveness lease of a gateway: an owner that dies
// is replaced about this long after its last keep-alive, well within the
// 8 s after which ESXi declares a datastore lost.
const DefaultLeaseTTL = 3 * time.Second

// leaseSafetyMargin is subtracted from what the lease grants: the local
// view of "my lease is valid" must end before etcd's (which counts from
// when the server handled the keep-alive, later than when it was sent).
const leaseSafetyMargin = 500 * time.Millisecond

// Membership is this gateway's liveness lease and its view of which
// gateways are alive.
type Membership struct {
	cli    *clientv3.Client
	prefix string // <state prefix>alive/
	self   string
	ttl    time.Duration
	log    *slog.Logger

	// lease is the local view of the current lease: its generation and
	// when it ends, as time on the monotonic clock since base (zero when
	// the lease is lost). A process stopped (SIGSTOP) past the end finds
	// it expired when it resumes, before it serves anything.
	base  time.Time
	lease atomic.Pointer[leaseView]
	gens  atomic.Uint64 // generations handed out

	peerAddr string // published as alive/<self>'s value

	mu    sync.Mutex
	live  []string          // sorted; guarded by mu
	addrs map[string]string // live gateway -> peer address; guarded by mu
	subs  []chan struct{}

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// StartMembership grants this gateway's lease (ttl rounded up to whole
// seconds, at least 2 s), publishes alive/<self> under it with peerAddr
// (this gateway's peer link, "" for none), keeps it alive and watches the
// other gateways' keys. It returns once the lease is granted.
func StartMembership(ctx context.Context, cli *clientv3.Client, statePrefix, self, peerAddr string, ttl time.Duration, log *slog.Logger) (*Membership, error) {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	ttl = max(ttl.Round(time.Second), 2*time.Second)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Membership{cli: cli, prefix: statePrefix + "alive/", self: self, peerAddr: peerAddr, ttl: ttl, log: log, base: time.Now()}
	m.lease.Store(lostLease)
	lease, err := m.grant(ctx)
	if err != nil {
		return nil, err
	}
	rev, err := m.loadLive(ctx)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.done.Add(2)
	go m.keepAlive(runCtx, lease)
	go m.watchLive(runCtx, rev)
	return m, nil
}

// Self is this gateway's name.
func (m *Membership) Self() string { return m.self }

// TTL is the lease's time to live.
func (m *Membership) TTL() time.Duration { return m.ttl }

// Valid reports whether this gateway's lease is certainly still alive in
// etcd. Owners of LUs that have no fence of their own (file images) serve
// media commands only while it holds.
func (m *Membership) Valid() bool {
	return m.lease.Load().validAt(time.Since(m.base))
}

// Lease returns the generation of the current lease; every lease this
// gateway is granted gets a new one. What was decided under one lease
// (serving an LU) must not carry over to the next: between the two,
// another gateway may have claimed it.
func (m *Membership) Lease() uint64 { return m.lease.Load().gen }

// ValidLease reports whether lease generation gen is the current lease and
// certainly still alive in etcd.
func (m *Membership) ValidLease(gen uint64) bool {
	v := m.lease.Load()
	return v.gen == gen && v.validAt(time.Since(m.base))
}

// leaseView is one lease as this gateway knows it; immutable once stored.
type leaseView struct {
	gen   uint64
	until time.Duration // 0: lost
}

var lostLease = &leaseView{}

func (v *leaseView) validAt(now time.Duration) bool { return now < v.until }

// Live returns the gateways whose alive key exists, sorted.
func (m *Membership) Live() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.live)
}

// PeerAddr returns the peer link address a live gateway published ("" when
// it has none or is not live).
func (m *Membership) PeerAddr(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addrs[name]
}

// IsLive reports whether gateway name's alive key exists.
func (m *Membership) IsLive(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, found := slices.BinarySearch(m.live, name)
	return found
}

// Subscribe returns a channel that receives a value (coalesced) whenever
// the live set or this gateway's lease changes, and the function that
// ends the subscription.
func (m *Membership) Subscribe() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs = append(m.subs, c)
	m.mu.Unlock()
	return c, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if i := slices.Index(m.subs, c); i >= 0 {
			m.subs = slices.Delete(m.subs, i, i+1)
		}
	}
}

func (m *Membership) notify() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Close revokes the lease (the other gateways see this one leave at once
// instead of after the TTL) and stops the goroutines.
func (m *Membership) Close() error {
	m.cancel()
	m.done.Wait()
	return nil
}

// grant creates a lease and publishes the alive key under it.
func (m *Membership) grant(ctx context.Context) (clientv3.LeaseID, error) {
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	t0 := time.Since(m.base)
	g, err := m.cli.Grant(ctx, int64(m.ttl/time.Second))
	if err != nil {
		return 0, fmt.Errorf("ha: lease for gateway %s: %w", m.self, err)
	}
	if _, err := m.cli.Put(ctx, m.prefix+m.self, m.peerAddr, clientv3.WithLease(g.ID)); err != nil {
		return 0, fmt.Errorf("ha: publish gateway %s alive: %w", m.self, err)
	}
	m.extend(m.gens.Add(1), t0, g.TTL)
	return g.ID, nil
}

// extend records lease generation gen confirmed (granted or kept alive) by
// a request sent at t0 for ttl seconds.
func (m *Membership) extend(gen uint64, t0 time.Duration, ttl int64) {
	until := t0 + time.Duration(ttl)*time.Second - leaseSafetyMargin
	was := m.Valid()
	m.lease.Store(&leaseView{gen: gen, until: until})
	if !was {
		m.notify()
	}
}

// lose records that the current lease is gone.
func (m *Membership) lose() {
	m.lease.Store(&leaseView{gen: m.Lease()})
}

// keepAlive renews the lease every third of its TTL; a lease etcd has
// expired meanwhile (this process was stopped, or cut off) is replaced by
// a new one, after which other gateways see this one alive again.
func (m *Membership) keepAlive(ctx context.Context, lease clientv3.LeaseID) {
	defer m.done.Done()
	defer func() {
		// Leaving: revoke so the others act at once.
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if lease != 0 {
			_, _ = m.cli.Revoke(rctx, lease)
		}
		m.lose()
	}()
	tick := time.NewTicker(m.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if lease == 0 {
			l, err := m.grant(ctx)
			if err != nil {
				m.log.Warn("gateway lease: cannot renew", "err", err)
				continue
			}
			lease = l
			m.log.Info("gateway lease: granted a new lease", "ttl", m.ttl)
			continue
		}
		t0 := time.Since(m.base)
		kctx, cancel := context.WithTimeout(ctx, m.ttl/3)
		resp, err := m.cli.KeepAliveOnce(kctx, lease)
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			m.extend(m.Lease(), t0, resp.TTL)
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
			// etcd expired the lease: anything this gateway owned may have
			// been claimed by another.
			m.lose()
			m.notify()
			m.log.Warn("gateway lease expired; taking a new one")
			lease = 0
		case ctx.Err() == nil:
			m.log.Warn("gateway lease: keep-alive failed", "err", err)
		}
	}
}

// loadLive reads the alive keys.
func (m *Membership) loadLive(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.ttl)
	defer cancel()
	resp, err := m.cli.Get(ctx, m.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("ha: read live gateways: %w", err)
	}
	addrs := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		addrs[string(kv.Key[len(m.prefix):])] = string(kv.Value)
	}
	m.setLive(addrs)
	return resp.Header.Revision, nil
}

// setLive installs the live gateways and their peer addresses.
func (m *Membership) setLive(addrs map[string]string) {
	live := slices.Sorted(maps.Keys(addrs))
	m.mu.Lock()
	same := slices.Equal(m.live, live)
	m.live, m.addrs = live, addrs
	m.mu.Unlock()
	if !same {
		m.notify()
	}
}

// watchLive follows the alive keys from rev on, reading them afresh when
// the watch breaks.
func (m *Membership) watchLive(ctx context.Context, rev int64) {
	defer m.done.Done()
	watchPrefix(ctx, m.cli, m.prefix, rev, m.loadLive, func(evs []*clientv3.Event) {
		m.mu.Lock()
		addrs := maps.Clone(m.addrs)
		m.mu.Unlock()
		if addrs == nil {
			addrs = map[string]string{}
		}
		for _, ev := range evs {
			name := string(ev.Kv.Key[len(m.prefix):])
			switch ev.Type {
			case clientv3.EventTypePut:
				addrs[name] = string(ev.Kv.Value)
			case clientv3.EventTypeDelete:
				delete(addrs, name)
			}
		}
		m.setLive(addrs)
	})
}
