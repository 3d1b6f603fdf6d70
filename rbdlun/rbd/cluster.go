//go:build rbd

package rbd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// ClusterConfig says how to reach a Ceph cluster.
type ClusterConfig struct {
	// ConfPath is the ceph.conf to read; empty means librados' default
	// search ($CEPH_CONF, /etc/ceph/ceph.conf, ...).
	ConfPath string
	// Cluster is the cluster name; default "ceph".
	Cluster string
	// User is the client id without "client."; default "admin".
	User string
	// Keyring overrides the conf's keyring path (cephx).
	Keyring string
	// OSDOpTimeout bounds every OSD operation (rados_osd_op_timeout), so a
	// dead cluster fails I/O instead of hanging it. Default 30s, as
	// ceph-iscsi's osd_op_timeout; negative means no timeout.
	OSDOpTimeout time.Duration
	// MonOpTimeout bounds mon commands and the initial connect
	// (rados_mon_op_timeout, client_mount_timeout). Default 30s.
	MonOpTimeout time.Duration
}

// Cluster is one gateway's view of a Ceph cluster: the rados connections
// its images share. There is one shared connection per cache mode (librbd
// reads rbd_cache from the connection), created on first use, and a
// blocklisted connection is replaced when a backend reconnects.
type Cluster struct {
	cfg ClusterConfig

	mu     sync.Mutex
	shared map[bool]*radosConn // by write cache on/off; guarded by mu
	closed bool
}

// radosConn is a reference-counted rados client. It is shut down when the
// last backend using it lets go and it is no longer the cluster's shared
// one.
type radosConn struct {
	conn  *rados.Conn
	cache bool
	refs  int  // guarded by Cluster.mu
	stale bool // replaced or cluster closed; guarded by Cluster.mu
	// private: one backend's own connection (Options.PrivateConnection).
	private bool
}

// Connect checks the configuration and opens the default (cache off) rados
// connection, so that a wrong conf or an unreachable cluster fails here.
func Connect(cfg ClusterConfig) (*Cluster, error) {
	if cfg.Cluster == "" {
		cfg.Cluster = "ceph"
	}
	if cfg.User == "" {
		cfg.User = "admin"
	}
	if cfg.OSDOpTimeout == 0 {
		cfg.OSDOpTimeout = 30 * time.Second
	}
	if cfg.MonOpTimeout <= 0 {
		cfg.MonOpTimeout = 30 * time.Second
	}
	c := &Cluster{cfg: cfg, shared: map[bool]*radosConn{}}
	rc, err := c.acquire(false)
	if err != nil {
		return nil, err
	}
	c.release(rc)
	return c, nil
}

func secs(d time.Duration) string {
	if d < 0 {
		return "0"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// dial opens a new rados client.
func (c *Cluster) dial(cache bool) (*rados.Conn, error) {
	conn, err := rados.NewConnWithClusterAndUser(c.cfg.Cluster, "client."+c.cfg.User)
	if err != nil {
		return nil, fmt.Errorf("rbd: new rados client: %w", err)
	}
	if c.cfg.ConfPath != "" {
		err = conn.ReadConfigFile(c.cfg.ConfPath)
	} else {
		err = conn.ReadDefaultConfigFile()
	}
	if err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("rbd: read ceph config %q: %w", c.cfg.ConfPath, err)
	}
	opts := [][2]string{
		{"rados_osd_op_timeout", secs(c.cfg.OSDOpTimeout)},
		{"rados_mon_op_timeout", secs(c.cfg.MonOpTimeout)},
		{"client_mount_timeout", secs(c.cfg.MonOpTimeout)},
		{"rbd_cache", strconv.FormatBool(cache)},
		// Unmapped ranges must read back as zeros (LBPRZ=1): without this,
		// librbd silently skips discards smaller than its granularity.
		{"rbd_skip_partial_discard", "false"},
		// BreakLock blocklists the owner itself (and only when asked), then
		// waits for the new osdmap; librbd's own blocklist-on-break would
		// add a second mon round trip (about 1 s here) to every takeover.
		{"rbd_blocklist_on_break_lock", "false"},
	}
	if c.cfg.Keyring != "" {
		opts = append(opts, [2]string{"keyring", c.cfg.Keyring})
	}
	for _, o := range opts {
		if err := conn.SetConfigOption(o[0], o[1]); err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("rbd: set %s=%s: %w", o[0], o[1], err)
		}
	}
	if err := conn.Connect(); err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("rbd: connect to cluster %q as client.%s: %w", c.cfg.Cluster, c.cfg.User, err)
	}
	return conn, nil
}

// ErrClosed is returned after Cluster.Close.
var ErrClosed = errors.New("rbd: cluster connection closed")

// acquire returns the shared connection for the cache mode, dialling it if
// needed, with one more reference.
func (c *Cluster) acquire(cache bool) (*radosConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	rc := c.shared[cache]
	if rc == nil {
		conn, err := c.dial(cache)
		if err != nil {
			return nil, err
		}
		rc = &radosConn{conn: conn, cache: cache}
		c.shared[cache] = rc
	}
	rc.refs++
	return rc, nil
}

// dialPrivate opens a connection for one backend alone: blocklisting it
// fences that backend only. It is shut down when the backend lets go.
func (c *Cluster) dialPrivate(cache bool) (*radosConn, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	conn, err := c.dial(cache)
	if err != nil {
		return nil, err
	}
	return &radosConn{conn: conn, cache: cache, refs: 1, stale: true, private: true}, nil
}

// renew drops a reference to rc, a connection found fenced (blocklisted),
// and returns a fresh shared connection: the first backend to notice
// replaces the shared one, later ones get that replacement.
func (c *Cluster) renew(rc *radosConn) (*radosConn, error) {
	if rc.private {
		c.release(rc)
		return c.dialPrivate(rc.cache)
	}
	c.mu.Lock()
	if c.shared[rc.cache] == rc {
		delete(c.shared, rc.cache)
		rc.stale = true
	}
	c.mu.Unlock()
	c.release(rc)
	return c.acquire(rc.cache)
}

// release drops a reference; a stale connection is shut down with its last.
func (c *Cluster) release(rc *radosConn) {
	c.mu.Lock()
	rc.refs--
	done := rc.refs == 0 && rc.stale
	c.mu.Unlock()
	if done {
		rc.conn.Shutdown()
	}
}

// Close shuts the shared connections down once their backends are closed.
func (c *Cluster) Close() error {
	c.mu.Lock()
	c.closed = true
	var idle []*radosConn
	for k, rc := range c.shared {
		rc.stale = true
		if rc.refs == 0 {
			idle = append(idle, rc)
		}
		delete(c.shared, k)
	}
	c.mu.Unlock()
	for _, rc := range idle {
		rc.conn.Shutdown()
	}
	return nil
}

// monCommand runs one mon command on the shared cache-off connection.
func (c *Cluster) monCommand(ctx context.Context, cmd []byte) error {
	_, err := c.monCommandOut(ctx, cmd)
	return err
}

// monCommandOut runs a mon command and returns its output.
func (c *Cluster) monCommandOut(ctx context.Context, cmd []byte) (out []byte, err error) {
	err = c.withConn(ctx, func(conn *rados.Conn) error {
		var status string
		out, status, err = conn.MonCommand(cmd)
		if err != nil {
			return fmt.Errorf("rbd: mon command %s: %w (%s)", cmd, err, status)
		}
		return nil
	})
	return out, err
}

// withConn runs f on the shared (cache off) rados connection.
func (c *Cluster) withConn(ctx context.Context, f func(*rados.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rc, err := c.acquire(false)
	if err != nil {
		return err
	}
	defer c.release(rc)
	return f(rc.conn)
}

// Blocklist fences a rados client by address for expire, so none of its
// writes can land any more (mon command "osd blocklist add").
func (c *Cluster) Blocklist(ctx context.Context, addr string, expire time.Duration) error {
	cmd := fmt.Sprintf(`{"prefix":"osd blocklist","blocklistop":"add","addr":%s,"expire":%s}`,
		strconv.Quote(addr), strconv.FormatFloat(expire.Seconds(), 'f', 1, 64))
	return c.monCommand(ctx, []byte(cmd))
}
