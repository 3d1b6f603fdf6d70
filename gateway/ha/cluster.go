package ha

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options configure a gateway's membership in the cluster.
type Options struct {
	// Self is this gateway's name (config.Gateway.Name).
	Self string
	// StatePrefix is config.StatePrefix of the configuration's prefix.
	StatePrefix string
	// LeaseTTL is the liveness lease (DefaultLeaseTTL).
	LeaseTTL time.Duration
	// PeerAddr is where this gateway's peer link listens (host:port; port
	// 0 picks one), over which the other gateways forward the commands
	// of LUs this gateway owns. The host must be an address the other
	// gateways reach, or unspecified (0.0.0.0, [::]): the link is then
	// published as Self:port, so Self must resolve to this gateway (it is
	// the host name by default). Empty: no peer link; commands at a
	// non-owner are answered NOT READY until ownership moves.
	PeerAddr string
	// PeerSecret keys the peer link (both ends need the same); required
	// with PeerAddr. The gateway derives it from the cluster's secret key,
	// so it is never stored.
	PeerSecret []byte
	Logger     *slog.Logger
}

// Cluster is one gateway's part in the cluster-wide state: its lease, the
// ownership records, the reservation store and one Driver per LU.
type Cluster struct {
	cli         *clientv3.Client
	statePrefix string
	m           *Membership
	recs        *Records
	prs         *PRStore
	log         *slog.Logger
	link        *peerLink // nil without Options.PeerAddr

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	drivers map[string]*Driver // by LU name
}

// Join starts this gateway's membership: it takes its lease, reads the
// ownership records and starts watching them.
func Join(ctx context.Context, cli *clientv3.Client, o Options) (*Cluster, error) {
	if o.Self == "" || o.StatePrefix == "" {
		return nil, fmt.Errorf("ha: a gateway name and a state prefix are required")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("gateway", o.Self)
	link, err := openPeerLink(ctx, cli, o.StatePrefix, o.Self, o.PeerAddr, o.PeerSecret, log)
	if err != nil {
		return nil, err
	}
	m, err := StartMembership(ctx, cli, o.StatePrefix, o.Self, link.addr(), o.LeaseTTL, log)
	if err != nil {
		link.close()
		return nil, err
	}
	recs := newRecords(cli, o.StatePrefix, log)
	rev, err := recs.load(ctx)
	if err != nil {
		m.Close()
		link.close()
		return nil, err
	}
	c := &Cluster{cli: cli, statePrefix: o.StatePrefix, m: m, recs: recs, prs: NewPRStore(cli, o.StatePrefix), log: log,
		link: link, drivers: map[string]*Driver{}}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		recs.watch(c.ctx, rev)
	}()
	if link != nil {
		link.start(c)
	}
	return c, nil
}

// Membership is the gateway's lease and live view.
func (c *Cluster) Membership() *Membership { return c.m }

// PRStore is the cluster's reservation store, for the LUs' scsi.LUConfig.
func (c *Cluster) PRStore() *PRStore { return c.prs }

// WatchReservations reloads an LU's reservations whenever any gateway
// commits them; reload receives the LU's store key.
func (c *Cluster) WatchReservations(reload func(lu string)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.prs.Watch(c.ctx, reload)
	}()
}

// AddLU starts the ownership driver of an LU.
func (c *Cluster) AddLU(cfg LUConfig) (*Driver, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.drivers[cfg.Owner.LU]; dup {
		return nil, fmt.Errorf("ha: LU %s is already driven", cfg.Owner.LU)
	}
	d, err := newDriver(cfg, c.m, c.recs, c.log)
	if err != nil {
		return nil, err
	}
	d.start(c.ctx)
	c.drivers[cfg.Owner.LU] = d
	return d, nil
}

// RemoveLU stops an LU's driver (releasing the image if this gateway owns
// it).
func (c *Cluster) RemoveLU(lu string) {
	c.mu.Lock()
	d := c.drivers[lu]
	delete(c.drivers, lu)
	c.mu.Unlock()
	if d != nil {
		d.stop()
	}
}

// Driver returns the driver of an LU.
func (c *Cluster) Driver(lu string) (*Driver, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.drivers[lu]
	return d, ok
}

// Leave stops every driver (owners release their images), then revokes
// the lease so the other gateways take the LUs over at once.
func (c *Cluster) Leave() error {
	c.mu.Lock()
	ds := make([]*Driver, 0, len(c.drivers))
	for _, d := range c.drivers {
		ds = append(ds, d)
	}
	c.drivers = map[string]*Driver{}
	c.mu.Unlock()
	for _, d := range ds {
		d.stop()
	}
	c.cancel()
	c.wg.Wait()
	c.link.close()
	return c.m.Close()
}
