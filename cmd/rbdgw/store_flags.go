package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/rbdgw/rbdgw/config"
)

// StoreOptions are the flags that say where the cluster configuration
// lives: an external etcd cluster (--etcd-endpoints) or, without one, an
// etcd member embedded in this process with its data in the data dir.
// `serve` and `config` share them.
type StoreOptions struct {
	Endpoints   []string
	Prefix      string
	ClusterName string
	CertFile    string
	KeyFile     string
	CAFile      string
	DialTimeout time.Duration
	// SecretKeyFile holds the key that seals CHAP passwords in etcd.
	SecretKeyFile string
	// The embedded member's URLs (loopback only).
	EmbeddedClientURL string
	EmbeddedPeerURL   string
}

// AddFlags binds the options to fs.
func (o *StoreOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.Endpoints, "etcd-endpoints", nil,
		"etcd client URLs (comma-separated); without them an embedded single etcd member runs in <data-dir>/etcd")
	fs.StringVar(&o.Prefix, "etcd-prefix", "", "etcd key prefix of the configuration (default /rbdgw/v1/<cluster-name>/)")
	fs.StringVar(&o.ClusterName, "cluster-name", config.DefaultClusterName, "cluster name, part of the default --etcd-prefix")
	fs.StringVar(&o.CertFile, "etcd-cert", "", "client certificate for etcd (TLS)")
	fs.StringVar(&o.KeyFile, "etcd-key", "", "client key for etcd (TLS)")
	fs.StringVar(&o.CAFile, "etcd-cacert", "", "CA certificate that signed the etcd servers' certificates (TLS)")
	fs.DurationVar(&o.DialTimeout, "etcd-dial-timeout", config.DefaultDialTimeout, "etcd connection timeout")
	fs.StringVar(&o.SecretKeyFile, "secret-key-file", "",
		"file with a base64 32-byte key (head -c 32 /dev/urandom | base64): CHAP passwords are stored encrypted with it; every gateway needs the same one")
	fs.StringVar(&o.EmbeddedClientURL, "etcd-listen-client", config.DefaultEtcdClientURL,
		"embedded etcd: client URL (loopback only)")
	fs.StringVar(&o.EmbeddedPeerURL, "etcd-listen-peer", config.DefaultEtcdPeerURL,
		"embedded etcd: peer URL (loopback only)")
}

// Validate checks the flags that can be checked without a network.
func (o *StoreOptions) Validate() error {
	if o.Prefix == "" {
		if o.ClusterName == "" || strings.ContainsAny(o.ClusterName, "/ \t\n") {
			return fmt.Errorf("--cluster-name %q: want a non-empty name without '/' or spaces", o.ClusterName)
		}
		o.Prefix = config.EtcdPrefix(o.ClusterName)
	}
	if !strings.HasPrefix(o.Prefix, "/") || !strings.HasSuffix(o.Prefix, "/") {
		return fmt.Errorf("--etcd-prefix %q: want an absolute key prefix ending in '/'", o.Prefix)
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("--etcd-cert and --etcd-key go together")
	}
	if o.DialTimeout <= 0 {
		return fmt.Errorf("--etcd-dial-timeout %s: must be positive", o.DialTimeout)
	}
	return nil
}

// Open connects to the store, first starting the embedded etcd member
// when no endpoints are given. The returned close function closes the
// client, then the member.
func (o *StoreOptions) Open(ctx context.Context, dataDir string, log *slog.Logger) (config.Store, func() error, error) {
	endpoints := o.Endpoints
	var member *config.EmbeddedEtcd
	if len(endpoints) == 0 {
		dir := filepath.Join(dataDir, "etcd")
		var err error
		member, err = config.StartEmbeddedEtcd(dir, o.EmbeddedClientURL, o.EmbeddedPeerURL, log)
		if err != nil {
			return nil, nil, err
		}
		endpoints = member.Endpoints()
		log.Info("embedded etcd started", "dir", dir, "client_url", endpoints[0])
	}
	s, err := o.client(ctx, endpoints, log)
	if err != nil {
		if member != nil {
			member.Close()
		}
		return nil, nil, err
	}
	closeAll := func() error {
		err := s.Close()
		if member != nil {
			err = errors.Join(err, member.Close())
		}
		return err
	}
	return s, closeAll, nil
}

// Client connects to the store without ever starting a member: to the
// external cluster, or to the embedded member of a running `rbdgw serve`
// on this host (--etcd-listen-client).
func (o *StoreOptions) Client(ctx context.Context, log *slog.Logger) (config.Store, error) {
	endpoints := o.Endpoints
	if len(endpoints) == 0 {
		endpoints = []string{o.EmbeddedClientURL}
	}
	return o.client(ctx, endpoints, log)
}

func (o *StoreOptions) client(ctx context.Context, endpoints []string, log *slog.Logger) (*config.EtcdStore, error) {
	var key []byte
	if o.SecretKeyFile != "" {
		var err error
		if key, err = config.LoadSecretKey(o.SecretKeyFile); err != nil {
			return nil, err
		}
	}
	return config.OpenEtcd(ctx, config.EtcdOptions{
		Endpoints: endpoints, Prefix: o.Prefix,
		CertFile: o.CertFile, KeyFile: o.KeyFile, CAFile: o.CAFile,
		DialTimeout: o.DialTimeout, Logger: log, SecretKey: key,
	})
}

// importFile replaces the store's configuration with the cluster part of
// a configuration file (its portals and data_dir are per-process and not
// stored). It returns the new epoch.
func importFile(ctx context.Context, s config.Store, path string) (int64, error) {
	c, err := config.ParseFile(path)
	if err != nil {
		return 0, withCode(ExitBadConfig, err)
	}
	epoch, err := s.Update(ctx, func(dst *config.Config) error {
		// Keep the store's port group bookkeeping: ids are never reused.
		last := dst.LastTPGID
		*dst = c.Cluster()
		dst.LastTPGID = max(dst.LastTPGID, last)
		return nil
	})
	var fe *config.FieldError
	if errors.As(err, &fe) {
		return 0, withCode(ExitBadConfig, fmt.Errorf("%s: %w", path, err))
	}
	if err != nil {
		return 0, withCode(ExitStart, fmt.Errorf("import %s: %w", path, err))
	}
	return epoch, nil
}
