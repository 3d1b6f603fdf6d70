package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rbdgw/rbdgw/scsi"
)

// dialTimeout bounds connecting to another gateway.
const dialTimeout = 2 * time.Second

// cancelDrainTimeout bounds the wait for the owner's answer to a command
// that was aborted here: past it the connection is closed, which cancels
// whatever it still carries at the owner.
const cancelDrainTimeout = 10 * time.Second

// Client forwards commands to other gateways, one connection per gateway
// address, opened on first use and again after a failure.
type Client struct {
	// Secret is the cluster's peer secret; Self is this gateway's name,
	// bound into each session's keys.
	Secret []byte
	Self   string

	mu     sync.Mutex
	conns  map[string]*clientConn
	drops  map[string]chan struct{} // closed by Drop: abandon dials to the address
	closed bool
}

// ErrClosed is returned by Forward after Close.
var ErrClosed = errors.New("peer: client closed")

// Forward runs cmd at the gateway listening on addr against LU lu (its
// WWN key) and returns that gateway's response, with cmd.DataIn filled.
// When ctx ends first the command is cancelled there, and Forward still
// waits (a bounded time) for it to finish, so that an aborted command
// has no effect afterwards.
func (c *Client) Forward(ctx context.Context, addr, lu string, cmd *scsi.Command) (scsi.Response, error) {
	head, err := encodeCommand(lu, cmd)
	if err != nil {
		return scsi.Response{}, err
	}
	cc, err := c.conn(ctx, addr)
	if err != nil {
		return scsi.Response{}, err
	}
	return cc.do(ctx, head, cmd)
}

// Drop closes the connection to addr (its gateway left the cluster): the
// commands waiting on it fail at once instead of when TCP gives up.
func (c *Client) Drop(addr string) {
	c.mu.Lock()
	cc := c.conns[addr]
	delete(c.conns, addr)
	if d := c.drops[addr]; d != nil {
		close(d)
		delete(c.drops, addr)
	}
	c.mu.Unlock()
	if cc != nil {
		cc.fail(fmt.Errorf("peer: %s left the cluster", addr))
	}
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	for _, cc := range conns {
		cc.fail(ErrClosed)
	}
	return nil
}

// conn returns a working connection to addr, dialing one if needed.
func (c *Client) conn(ctx context.Context, addr string) (*clientConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if cc := c.conns[addr]; cc != nil && cc.alive() {
		c.mu.Unlock()
		return cc, nil
	}
	if c.drops == nil {
		c.drops = map[string]chan struct{}{}
	}
	dropped := c.drops[addr]
	if dropped == nil {
		dropped = make(chan struct{})
		c.drops[addr] = dropped
	}
	c.mu.Unlock()

	// The dial and the handshake end early when ctx ends or the address
	// is dropped: a stopped (SIGSTOP) gateway's kernel still accepts the
	// connection, and nothing would answer the handshake.
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	go func() {
		select {
		case <-dropped:
			cancel()
		case <-dctx.Done():
		}
	}()
	nc, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	stop := context.AfterFunc(dctx, func() { nc.SetDeadline(time.Now()) })
	sess, err := clientHandshake(nc, c.Secret, c.Self)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = fmt.Errorf("peer: handshake with %s abandoned: %w", addr, context.Cause(dctx))
		}
		return nil, err
	}
	cc := &clientConn{c: nc, sess: sess, pending: map[uint64]chan result{}}
	go cc.readLoop()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cc.fail(ErrClosed)
		return nil, ErrClosed
	}
	if old := c.conns[addr]; old != nil && old.alive() {
		// Another caller connected meanwhile: use one connection.
		cc.fail(errors.New("peer: duplicate connection"))
		return old, nil
	}
	if c.conns == nil {
		c.conns = map[string]*clientConn{}
	}
	c.conns[addr] = cc
	return cc, nil
}

// result is a command's answer as the read loop received it.
type result struct {
	f   frame
	err error
}

// clientConn is one connection to another gateway.
type clientConn struct {
	c    net.Conn
	sess *session

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan result
	err     error // set once the connection failed
}

func (cc *clientConn) alive() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err == nil
}

// fail closes the connection and ends every pending command with err.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.err == nil {
		cc.err = err
	}
	pending := cc.pending
	cc.pending = map[uint64]chan result{}
	cc.mu.Unlock()
	cc.c.Close()
	for _, ch := range pending {
		ch <- result{err: err}
	}
}

func (cc *clientConn) readLoop() {
	for {
		f, err := cc.sess.readFrame()
		if err != nil {
			cc.fail(fmt.Errorf("peer: connection to %s: %w", cc.c.RemoteAddr(), err))
			return
		}
		cc.mu.Lock()
		ch := cc.pending[f.id]
		delete(cc.pending, f.id)
		cc.mu.Unlock()
		if ch != nil {
			ch <- result{f: f}
		}
	}
}

func (cc *clientConn) do(ctx context.Context, head []byte, cmd *scsi.Command) (scsi.Response, error) {
	ch := make(chan result, 1)
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		return scsi.Response{}, err
	}
	cc.nextID++
	id := cc.nextID
	cc.pending[id] = ch
	cc.mu.Unlock()

	if err := cc.sess.writeFrame(kindCommand, id, head, cmd.DataOut); err != nil {
		cc.fail(fmt.Errorf("peer: connection to %s: %w", cc.c.RemoteAddr(), err))
		return scsi.Response{}, err
	}
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		_ = cc.sess.writeFrame(kindCancel, id)
		t := time.NewTimer(cancelDrainTimeout)
		select {
		case r = <-ch:
			t.Stop()
		case <-t.C:
			cc.fail(fmt.Errorf("peer: %s did not finish a cancelled command within %v", cc.c.RemoteAddr(), cancelDrainTimeout))
			r = <-ch
		}
	}
	if r.err != nil {
		return scsi.Response{}, r.err
	}
	switch r.f.kind {
	case kindResponse:
		resp, err := decodeResponse(r.f.body, cmd.DataIn)
		if err != nil {
			cc.fail(err)
			return scsi.Response{}, err
		}
		return resp, nil
	case kindRefused:
		d := decoder{b: r.f.body}
		return scsi.Response{}, fmt.Errorf("peer: %s refused the command: %s", cc.c.RemoteAddr(), d.str())
	default:
		err := fmt.Errorf("%w: frame kind %d from %s", errMalformed, r.f.kind, cc.c.RemoteAddr())
		cc.fail(err)
		return scsi.Response{}, err
	}
}
