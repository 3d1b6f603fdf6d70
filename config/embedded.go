package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
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
)

// EmbeddedEtcd is a single etcd member running inside the gateway
// process, for a one-gateway installation that has no etcd cluster. Its
// data lives in the gateway's data dir, so the configuration survives
// restarts.
type EmbeddedEtcd struct {
	e         *embed.Etcd
	endpoints []string
}

// StartEmbeddedEtcd starts a single member with its data in dir, serving
// clients on clientURL and (nobody, but etcd needs one) peers on peerURL,
// both http on a loopback address: the member has no authentication, and
// the configuration holds CHAP secrets. It returns once the member is
// ready.
func StartEmbeddedEtcd(dir, clientURL, peerURL string, logger *slog.Logger) (*EmbeddedEtcd, error) {
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
	return &EmbeddedEtcd{e: e, endpoints: []string{cu.String()}}, nil
}

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
			": the embedded member has no authentication and must listen on a loopback address; use an external etcd cluster to share the configuration")
	}
	u.Path = ""
	return u, nil
}
