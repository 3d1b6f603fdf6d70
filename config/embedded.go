package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Embedded etcd settings.
const (
	// embeddedMaxTxnOps lifts etcd's default of 128 operations per
	// transaction: importing a configuration writes one key per object
	// in one transaction (thousands of LUNs).
	embeddedMaxTxnOps = 1 << 16
	// embeddedMaxRequestBytes: the same import as one request.
	embeddedMaxRequestBytes = 32 << 20
	// embeddedStartTimeout bounds waiting for the member to be ready.
	embeddedStartTimeout = time.Minute
	// embeddedBcryptCost is bcrypt's minimum (golang.org/x/crypto/bcrypt
	// MinCost).
	embeddedBcryptCost = 4
)

// EmbeddedEtcd is a single etcd member running inside the gateway
// process, for a one-gateway installation that has no etcd cluster. Its
// data lives in the gateway's data dir, so the configuration survives
// restarts.
type EmbeddedEtcd struct {
	e         *embed.Etcd
	endpoints []string
	password  string // of EmbeddedEtcdUser
}

// EmbeddedEtcdUser is the account clients of the embedded member use.
// etcd's auth needs a root user; it is the only one.
const EmbeddedEtcdUser = "root"

// EmbeddedEtcdPasswordFile is where the embedded member's root password
// is kept (0600), beside its data directory in dataDir: a client on the
// same host (rbdgw config) reads it there.
func EmbeddedEtcdPasswordFile(dataDir string) string {
	return filepath.Join(dataDir, "etcd-root-password")
}

// StartEmbeddedEtcd starts a single member with its data in dataDir/etcd,
// serving clients on clientURL and (nobody, but etcd needs one) peers on
// peerURL, both http on a loopback address. Client auth is on: every
// other user of the host can reach a loopback port, and the store holds
// the cluster's configuration. The root password is generated at the
// first start (EmbeddedEtcdPasswordFile). It returns once the member is
// ready.
func StartEmbeddedEtcd(dataDir, clientURL, peerURL string, logger *slog.Logger) (*EmbeddedEtcd, error) {
	dir := filepath.Join(dataDir, "etcd")
	cu, err := loopbackURL("client", clientURL)
	if err != nil {
		return nil, err
	}
	pu, err := loopbackURL("peer", peerURL)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg := embed.NewConfig()
	cfg.Name = "rbdgw"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.MaxTxnOps = embeddedMaxTxnOps
	// The only password is the generated root one (192 random bits), for
	// which bcrypt's work factor adds nothing; its cost would be paid at
	// every client's login (tens of milliseconds each, more under -race).
	cfg.BcryptCost = embeddedBcryptCost
	cfg.MaxRequestBytes = embeddedMaxRequestBytes
	// Keep an hour of history: a gateway whose watch falls further behind
	// reads the whole configuration again (compaction resync).
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToSlog(logger.With("component", "etcd")))
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %w", dir, err)
	case <-time.After(embeddedStartTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: not ready after %s", dir, embeddedStartTimeout)
	}
	m := &EmbeddedEtcd{e: e, endpoints: []string{cu.String()}}
	if m.password, err = enableEmbeddedAuth(m.endpoints, EmbeddedEtcdPasswordFile(dataDir)); err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %w", dir, err)
	}
	return m, nil
}

// enableEmbeddedAuth turns on the member's client auth with a root user
// whose password is kept in pwFile, generating both at the first start
// (and on a member an older version started without auth).
func enableEmbeddedAuth(endpoints []string, pwFile string) (string, error) {
	pw, err := ReadSecretFile(pwFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), embeddedStartTimeout)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return "", err
	}
	defer cli.Close()
	st, err := cli.AuthStatus(ctx)
	if err != nil {
		return "", fmt.Errorf("auth status: %w", err)
	}
	if st.Enabled {
		if pw == "" {
			return "", fmt.Errorf("client auth is on but its root password file %s is missing", pwFile)
		}
		return pw, nil
	}
	if pw == "" {
		if pw, err = NewSecretFile(pwFile); err != nil {
			return "", err
		}
	}
	if _, err := cli.UserAdd(ctx, EmbeddedEtcdUser, pw); err != nil && !strings.Contains(err.Error(), "already exists") {
		return "", fmt.Errorf("add user %s: %w", EmbeddedEtcdUser, err)
	}
	if _, err := cli.UserChangePassword(ctx, EmbeddedEtcdUser, pw); err != nil {
		return "", fmt.Errorf("set the password of %s: %w", EmbeddedEtcdUser, err)
	}
	if _, err := cli.UserGrantRole(ctx, EmbeddedEtcdUser, "root"); err != nil {
		return "", fmt.Errorf("grant root: %w", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return "", fmt.Errorf("enable auth: %w", err)
	}
	return pw, nil
}

// Credentials are the user and password OpenEtcd needs for this member.
func (m *EmbeddedEtcd) Credentials() (user, password string) { return EmbeddedEtcdUser, m.password }

// Endpoints are the client URLs to give OpenEtcd.
func (m *EmbeddedEtcd) Endpoints() []string { return append([]string(nil), m.endpoints...) }

// Err delivers a fatal server error.
func (m *EmbeddedEtcd) Err() <-chan error { return m.e.Err() }

// Close stops the member; close clients first, their watches end with it.
func (m *EmbeddedEtcd) Close() error {
	m.e.Close()
	return nil
}

// loopbackURL parses an http URL whose host is a loopback IP with a port.
func loopbackURL(what, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd %s URL %q: %w", what, s, err)
	}
	if u.Scheme != "http" || u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("embedded etcd %s URL %q: want http://<loopback ip>:<port>", what, s)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || port == "" {
		return nil, fmt.Errorf("embedded etcd %s URL %q: want http://<loopback ip>:<port>", what, s)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, errors.New("embedded etcd " + what + " URL " + s +
			": the embedded member listens on a loopback address only (plain HTTP); use an external etcd cluster with TLS to share the configuration")
	}
	u.Path = ""
	return u, nil
}

// StoreOptions are the EtcdOptions that reach this member (endpoints and
// credentials); callers add prefix, key and the rest.
func (m *EmbeddedEtcd) StoreOptions() EtcdOptions {
	return EtcdOptions{Endpoints: m.Endpoints(), Username: EmbeddedEtcdUser, Password: m.password}
}

// ClientConfig is a clientv3 configuration that reaches this member.
func (m *EmbeddedEtcd) ClientConfig() clientv3.Config {
	return clientv3.Config{Endpoints: m.Endpoints(), Username: EmbeddedEtcdUser, Password: m.password, DialTimeout: 5 * time.Second}
}
