package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Etcd store defaults.
const (
	DefaultEtcdPrefixRoot  = "/rbdgw/v1/"
	DefaultClusterName     = "default"
	DefaultDialTimeout     = 5 * time.Second
	DefaultRequestTimeout  = 5 * time.Second
	DefaultEtcdClientURL   = "http://127.0.0.1:2379"
	DefaultEtcdPeerURL     = "http://127.0.0.1:2380"
	watchRetryInitialDelay = 100 * time.Millisecond
	watchRetryMaxDelay     = 2 * time.Second
)

// EtcdPrefix is the key prefix of a cluster's configuration:
// "/rbdgw/v1/<cluster>/".
func EtcdPrefix(cluster string) string { return DefaultEtcdPrefixRoot + cluster + "/" }

// EtcdOptions say how to reach the etcd cluster and where the
// configuration lives in it.
type EtcdOptions struct {
	// Endpoints are client URLs ("http://127.0.0.1:2379", or https with TLS).
	Endpoints []string
	// Prefix holds the configuration's keys; it ends in "/". Default
	// EtcdPrefix(DefaultClusterName).
	Prefix string
	// CertFile and KeyFile are the client certificate, CAFile the CA that
	// signed the servers' certificates. Any of them set turns TLS on.
	CertFile, KeyFile, CAFile string
	// DialTimeout bounds connection setup (DefaultDialTimeout).
	DialTimeout time.Duration
	// RequestTimeout bounds a call whose context has no deadline
	// (DefaultRequestTimeout), so no caller waits forever on a cluster
	// without quorum.
	RequestTimeout time.Duration
	// Logger receives the etcd client's warnings; nil discards them.
	Logger *slog.Logger
	// SecretKey, when set (SecretKeySize bytes, see LoadSecretKey), seals
	// the CHAP passwords the store writes and opens those it reads.
	SecretKey []byte
	// Username and Password authenticate to an etcd with auth enabled
	// (the embedded member always has it).
	Username, Password string
}

// EtcdStore is the Store in etcd: one key per object (see keys.go), the
// epoch is the etcd revision of the last configuration change.
type EtcdStore struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	dec     keyDecoder
	key     []byte // the secret key, for DerivedKey; nil without one

	closeOnce sync.Once
	closed    chan struct{} // closed by Close: watches end
}

var (
	_ Store  = (*EtcdStore)(nil)
	_ Pinger = (*EtcdStore)(nil)
)

// OpenEtcd returns a store on the given etcd cluster. It does not wait
// for the cluster: a gateway must be able to start (and keep serving)
// while etcd is down; the first call that needs etcd reports it.
func OpenEtcd(ctx context.Context, o EtcdOptions) (*EtcdStore, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = EtcdPrefix(DefaultClusterName)
	}
	if !strings.HasSuffix(o.Prefix, "/") || !strings.HasPrefix(o.Prefix, "/") {
		return nil, fmt.Errorf("etcd: prefix %q: want an absolute key prefix ending in '/'", o.Prefix)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := clientv3.Config{
		Endpoints:   o.Endpoints,
		DialTimeout: o.DialTimeout,
		Context:     context.WithoutCancel(ctx),
		Logger:      zapToSlog(log.With("component", "etcd-client")),
		// A configuration of thousands of LUNs is read in one range.
		MaxCallRecvMsgSize: 64 << 20,
		MaxCallSendMsgSize: 64 << 20,
		Username:           o.Username,
		Password:           o.Password,
	}
	var box *SecretBox
	if o.SecretKey != nil {
		var err error
		if box, err = NewSecretBox(o.SecretKey); err != nil {
			return nil, fmt.Errorf("etcd: %w", err)
		}
	}
	if o.CertFile != "" || o.KeyFile != "" || o.CAFile != "" {
		tls, err := transport.TLSInfo{CertFile: o.CertFile, KeyFile: o.KeyFile, TrustedCAFile: o.CAFile}.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd: TLS: %w", err)
		}
		cfg.TLS = tls
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		// With credentials the client authenticates at once, so a
		// cluster that does not answer shows here.
		return nil, unavailable(ctx, "connect", err)
	}
	return &EtcdStore{cli: cli, prefix: o.Prefix, timeout: o.RequestTimeout, log: log, closed: make(chan struct{}),
		dec: keyDecoder{box: box}, key: append([]byte(nil), o.SecretKey...)}, nil
}

// bounded gives ctx the store's request timeout when it has no deadline.
func (s *EtcdStore) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.timeout)
}

// load reads every key under the prefix: relative keys to values, their
// mod revisions, the read's revision and the epoch.
func (s *EtcdStore) load(ctx context.Context) (kv map[string][]byte, rev, epoch int64, err error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, 0, unavailable(ctx, "read configuration", err)
	}
	kv = make(map[string][]byte, len(resp.Kvs))
	for _, e := range resp.Kvs {
		kv[string(e.Key[len(s.prefix):])] = e.Value
		epoch = max(epoch, e.ModRevision)
	}
	return kv, resp.Header.Revision, epoch, nil
}

// Get returns the configuration and its epoch (0 for an empty store).
func (s *EtcdStore) Get(ctx context.Context) (Config, int64, error) {
	kv, _, epoch, err := s.load(ctx)
	if err != nil {
		return Config{}, 0, err
	}
	c, err := s.dec.decode(kv)
	if err != nil {
		return Config{}, 0, fmt.Errorf("etcd %s: %w", s.prefix, err)
	}
	return c, epoch, nil
}

// Update implements Store.Update with one transaction per attempt.
//
// The transaction's only compare is ranged: every key under the prefix
// must have a mod revision no newer than our read. That covers each key
// we read being changed and any key being added; a deletion leaves no
// revision behind, but every update also puts the epoch key, so a
// concurrent update that only deletes still fails the compare. One ranged
// compare rather than one per key keeps a configuration of thousands of
// objects within etcd's limit on operations per transaction
// (--max-txn-ops, 128 by default), which then bounds only how many keys a
// single update changes.
func (s *EtcdStore) Update(ctx context.Context, fn func(*Config) error) (int64, error) {
	delay := 5 * time.Millisecond
	for {
		kv, rev, epoch, err := s.load(ctx)
		if err != nil {
			return 0, err
		}
		next, put, del, err := s.dec.planUpdate(kv, fn)
		if err != nil || len(put)+len(del) == 0 {
			return epoch, err
		}
		ops := make([]clientv3.Op, 0, len(put)+len(del)+1)
		for _, k := range put {
			ops = append(ops, clientv3.OpPut(s.prefix+k, string(next[k])))
		}
		for _, k := range del {
			ops = append(ops, clientv3.OpDelete(s.prefix+k))
		}
		stamp, _ := json.Marshal(struct {
			Updated time.Time `json:"updated"`
		}{time.Now().UTC()})
		ops = append(ops, clientv3.OpPut(s.prefix+keyEpoch, string(stamp)))

		tctx, cancel := s.bounded(ctx)
		resp, err := s.cli.Txn(tctx).
			If(clientv3.Compare(clientv3.ModRevision(s.prefix), "<", rev+1).WithPrefix()).
			Then(ops...).
			Commit()
		cancel()
		if err != nil {
			return 0, unavailable(tctx, "write configuration", err)
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
		// Conflict: someone else's update landed between our read and our
		// write. Read again after a short randomized pause, so two
		// writers retrying in step do not collide forever.
		s.log.Debug("configuration update conflict, retrying", "read_revision", rev)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(delay/2 + rand.N(delay)):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// Watch implements Store.Watch. It reads the whole configuration, sends
// it when it is newer than `after`, then follows etcd's watch from that
// read's revision, keeping the keys locally and sending the reassembled
// configuration once per watch response (several revisions in one
// response coalesce into the last). When the watch breaks (compaction, no
// leader, an error) it reads everything again and resumes.
func (s *EtcdStore) Watch(ctx context.Context, after int64) <-chan Snapshot {
	out := newLatest()
	// The watch ends with ctx or with the store.
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		select {
		case <-s.closed:
		case <-ctx.Done():
		}
	}()
	go func() {
		defer out.close()
		defer cancel()
		delay := watchRetryInitialDelay
		for ctx.Err() == nil {
			kv, rev, epoch, err := s.load(ctx)
			if err != nil {
				s.log.Warn("config watch: read failed; retrying", "err", err, "in", delay)
				select {
				case <-ctx.Done():
				case <-time.After(delay):
				}
				delay = min(2*delay, watchRetryMaxDelay)
				continue
			}
			delay = watchRetryInitialDelay
			after = s.send(out, kv, epoch, after)
			// WithRequireLeader: a member cut off from the quorum ends the
			// watch instead of keeping it silently stale.
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for resp := range s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
				if resp.CompactRevision != 0 || resp.Canceled || resp.Err() != nil {
					s.log.Info("config watch interrupted; reading the configuration again", "err", resp.Err(), "compacted", resp.CompactRevision)
					break
				}
				for _, ev := range resp.Events {
					k := string(ev.Kv.Key[len(s.prefix):])
					if ev.Type == mvccpb.DELETE {
						delete(kv, k)
					} else {
						kv[k] = ev.Kv.Value
					}
					epoch = max(epoch, ev.Kv.ModRevision)
				}
				after = s.send(out, kv, epoch, after)
			}
			cancel()
		}
	}()
	return out.ch
}

// send decodes kv and sends it as the snapshot at epoch if that is past
// `after`; it returns the new `after`.
func (s *EtcdStore) send(out *latest, kv map[string][]byte, epoch, after int64) int64 {
	if epoch <= after {
		return after
	}
	c, err := s.dec.decode(kv)
	if err != nil {
		s.log.Error("config watch: configuration does not decode; keeping the last one", "epoch", epoch, "err", err)
		return after
	}
	out.put(Snapshot{Config: c, Epoch: epoch})
	return epoch
}

// Ping does a linearizable read of one key: it succeeds only when a
// quorum answers.
func (s *EtcdStore) Ping(ctx context.Context) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	_, err := s.cli.Get(ctx, s.prefix+keyEpoch)
	return unavailable(ctx, "ping", err)
}

// Close ends every watch and closes the client. Later calls do nothing.
func (s *EtcdStore) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		err = s.cli.Close()
	})
	return err
}

// unavailable wraps errors that mean "etcd is not answering" in
// ErrUnavailable; other errors (a request etcd refuses, such as too many
// operations in one transaction) pass through with context.
func unavailable(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) && errors.Is(ctx.Err(), context.Canceled) && !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return fmt.Errorf("etcd: %s: %w", op, err)
	}
	code := codes.Unknown
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if st, ok := status.FromError(err); ok {
		code = st.Code()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), code == codes.Unavailable, code == codes.DeadlineExceeded,
		errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTimeout):
		return fmt.Errorf("%w: etcd: %s: %v", ErrUnavailable, op, err)
	}
	return fmt.Errorf("etcd: %s: %w", op, err)
}

// DerivedKey returns a key for purpose derived from the store's secret
// key, so that other secrets of the cluster (the peer link's) need not be
// stored anywhere; nil when the store has no key.
func (s *EtcdStore) DerivedKey(purpose string) []byte {
	if s.key == nil {
		return nil
	}
	return DeriveKey(s.key, purpose)
}
