package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rbdgw/rbdgw/gateway/peer"
	"github.com/rbdgw/rbdgw/scsi"
)

// peerLink is a gateway's end of the peer links: the server that runs the
// commands other gateways forward to LUs this one owns, and the client
// that forwards commands of LUs another gateway owns.
type peerLink struct {
	ln     net.Listener
	public string // the address published for the other gateways
	server *peer.Server
	client *peer.Client
	log    *slog.Logger
	done   sync.WaitGroup
}

// legacyPeerSecretKey is where an older version kept the peer link's
// secret in clear; a joining gateway deletes it.
const legacyPeerSecretKey = "peer-secret"

// openPeerLink listens on addr ("" gives no link: nil). A link listening
// on every address (0.0.0.0, [::]) is published under the gateway's name,
// which is its host name unless configured otherwise.
func openPeerLink(ctx context.Context, cli *clientv3.Client, statePrefix, self, addr string, secret []byte, log *slog.Logger) (*peerLink, error) {
	if addr == "" {
		return nil, nil
	}
	if len(secret) < 16 {
		return nil, errors.New("ha: the peer link needs a secret of at least 16 bytes")
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if _, err := cli.Delete(dctx, statePrefix+legacyPeerSecretKey); err != nil {
		log.Warn("could not delete the peer secret an older version stored in clear", "err", err)
	}
	cancel()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ha: peer link: %w", err)
	}
	return &peerLink{ln: ln, public: publicAddr(self, ln.Addr()), server: &peer.Server{Secret: secret, Self: self, Log: log}, client: &peer.Client{Secret: secret, Self: self}, log: log}, nil
}

// publicAddr is the address to publish for a link listening on a: a, or
// self:port when a is every address.
func publicAddr(self string, a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		return net.JoinHostPort(self, fmt.Sprint(tcp.Port))
	}
	return a.String()
}

// addr is the address the other gateways dial ("" without a link).
func (l *peerLink) addr() string {
	if l == nil {
		return ""
	}
	return l.public
}

// start serves the LUs of c and drops the connections to gateways that
// leave the cluster, so that commands waiting on a dead owner end at once.
func (l *peerLink) start(c *Cluster) {
	l.server.Resolve = func(lu string) (peer.Executor, bool) {
		d, ok := c.Driver(lu)
		if !ok {
			return nil, false
		}
		return d.cfg.LU, true
	}
	l.done.Add(2)
	go func() {
		defer l.done.Done()
		if err := l.server.Serve(l.ln); err != nil {
			l.log.Error("peer link stopped", "err", err)
		}
	}()
	go func() {
		defer l.done.Done()
		l.dropDeparted(c.ctx, c.m)
	}()
}

func (l *peerLink) dropDeparted(ctx context.Context, m *Membership) {
	changes, unsubscribe := m.Subscribe()
	defer unsubscribe()
	known := map[string]string{}
	for {
		now := map[string]string{}
		for _, g := range m.Live() {
			now[g] = m.PeerAddr(g)
		}
		for g, a := range known {
			if now[g] != a && a != "" {
				l.client.Drop(a)
			}
		}
		known = now
		select {
		case <-ctx.Done():
			return
		case <-changes:
		}
	}
}

// close stops both ends; the server waits for the commands it runs.
func (l *peerLink) close() {
	if l == nil {
		return
	}
	l.client.Close()
	l.server.Close()
	l.ln.Close()
	l.done.Wait()
}

// Forwarder returns the scsi.Forwarder of LU lu: it sends commands to the
// LU's owner through the peer link (nil without one). It finds the LU's
// driver when called, so it may be made before AddLU.
func (c *Cluster) Forwarder(lu string) scsi.Forwarder {
	if c.link == nil {
		return nil
	}
	return luForwarder{c: c, lu: lu}
}

type luForwarder struct {
	c  *Cluster
	lu string
}

// errNoOwner: nobody this gateway can forward to serves the LU now.
var errNoOwner = errors.New("ha: the LU has no live owner to forward to")

func (f luForwarder) Forward(ctx context.Context, cmd *scsi.Command) (scsi.Response, error) {
	d, ok := f.c.Driver(f.lu)
	if !ok {
		return scsi.Response{}, errNoOwner
	}
	if !f.c.m.Valid() {
		return scsi.Response{}, fmt.Errorf("ha: LU %s: %w", f.lu, scsi.ErrCutOff)
	}
	owner := d.Owner().Owner
	if !d.ownerServesElsewhere() {
		// No owner, this gateway itself (moving here) or a dead one
		// (being claimed): the device server waits for the move.
		return scsi.Response{}, errNoOwner
	}
	addr := f.c.m.PeerAddr(owner)
	if addr == "" {
		return scsi.Response{}, fmt.Errorf("ha: owner %s of LU %s has no peer link", owner, f.lu)
	}
	return f.c.link.client.Forward(ctx, addr, f.lu, cmd)
}
