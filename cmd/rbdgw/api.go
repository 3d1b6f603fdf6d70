package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway/api"
)

// APIOptions are `rbdgw serve`'s flags for the management REST API.
type APIOptions struct {
	// Addr is host:port; empty turns the API off.
	Addr       string
	User       string
	Password   string
	Cert, Key  string
	TrustedIPs []string

	flags *pflag.FlagSet // to tell a default address from a chosen one
}

// DefaultAPIAddr is the API's listen address: loopback, so that a
// gateway started without thought is not managed from the network.
var DefaultAPIAddr = fmt.Sprintf("127.0.0.1:%d", api.DefaultPort)

// defaultAPIUser is the account generated when no --api-user is given.
const defaultAPIUser = "admin"

// envAPIPassword lets the password stay off the command line (ps shows
// arguments to every user).
const envAPIPassword = "RBDGW_API_PASSWORD"

// AddFlags binds the API flags.
func (o *APIOptions) AddFlags(f *pflag.FlagSet) {
	o.Addr, o.flags = DefaultAPIAddr, f
	f.StringVar(&o.Addr, "api-addr", o.Addr, `management API host:port ("" turns it off); off loopback it serves HTTPS only`)
	f.StringVar(&o.User, "api-user", "", "API basic-auth user (with --api-password or $"+envAPIPassword+"); default "+defaultAPIUser+" with a password generated into <data-dir>/"+apiPasswordFile)
	f.StringVar(&o.Password, "api-password", "", "API basic-auth password (prefer $"+envAPIPassword+")")
	f.StringVar(&o.Cert, "api-cert", "", "PEM certificate: serve the API over HTTPS (with --api-key); off loopback without one a self-signed pair is generated in <data-dir>/"+apiTLSDir)
	f.StringVar(&o.Key, "api-key", "", "PEM private key of --api-cert")
	f.StringSliceVar(&o.TrustedIPs, "api-trusted-ips", nil, "client addresses or CIDRs allowed to use the API (default loopback only)")
}

// options checks the flags and turns them into api.Options (Users still
// empty when no --api-user is given: Start generates the account).
func (o *APIOptions) options() (api.Options, error) {
	var opts api.Options
	if o.Password == "" {
		o.Password = os.Getenv(envAPIPassword)
	}
	if (o.User == "") != (o.Password == "") {
		return opts, withCode(ExitBadArgs, errors.New("--api-user and --api-password (or $"+envAPIPassword+") go together"))
	}
	if o.User != "" {
		opts.Users = map[string]string{o.User: o.Password}
	}
	if (o.Cert == "") != (o.Key == "") {
		return opts, withCode(ExitBadArgs, errors.New("--api-cert and --api-key go together"))
	}
	opts.TLSCert, opts.TLSKey = o.Cert, o.Key
	for _, s := range o.TrustedIPs {
		p, err := parsePrefix(s)
		if err != nil {
			return opts, withCode(ExitBadArgs, fmt.Errorf("--api-trusted-ips %q: %w", s, err))
		}
		opts.TrustedIPs = append(opts.TrustedIPs, p)
	}
	if _, _, err := net.SplitHostPort(o.Addr); o.Addr != "" && err != nil {
		return opts, withCode(ExitBadArgs, fmt.Errorf("--api-addr %q: %w", o.Addr, err))
	}
	return opts, nil
}

// Validate checks the API flags (before the store is opened).
func (o *APIOptions) Validate() error {
	if o.Addr == "" {
		return nil
	}
	_, err := o.options()
	return err
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Start serves the management API on store until ctx ends (store mode
// of rbdgw serve: the API writes the cluster configuration). Image
// operations use librbd when the binary has it and the configuration
// names a Ceph cluster. It returns once the API listens; a later failure
// is logged. With --api-addr "" it does nothing.
func (o *APIOptions) Start(ctx context.Context, store config.Store, dataDir string, imageRoots []string, log *slog.Logger) error {
	if o.Addr == "" {
		return nil
	}
	opts, err := o.options()
	if err != nil {
		return err
	}
	if len(opts.Users) == 0 {
		pw, path, err := apiPassword(dataDir)
		if err != nil {
			return withCode(ExitStart, err)
		}
		opts.Users = map[string]string{defaultAPIUser: pw}
		log.Info("management API credentials: user "+defaultAPIUser+", password in "+path, "user", defaultAPIUser, "password_file", path)
	}
	if opts.TLSCert == "" && !loopbackAddr(o.Addr) {
		cert, key, fp, err := apiSelfSigned(dataDir)
		if err != nil {
			return withCode(ExitStart, err)
		}
		opts.TLSCert, opts.TLSKey = cert, key
		log.Info("management API serves HTTPS off loopback with a self-signed certificate; check its fingerprint on first contact",
			"cert", cert, "sha256", fp)
	}
	if opts.ImageRoots, err = config.ImageRoots(imageRoots, dataDir); err != nil {
		return withCode(ExitBadArgs, err)
	}
	opts.Store, opts.Logger = store, log.With("component", "api")
	images, closeImages, err := imageService(ctx, store)
	if err != nil {
		return withCode(ExitStart, err)
	}
	opts.Images = images
	a, err := api.New(opts)
	if err != nil {
		closeImages()
		return withCode(ExitBadArgs, err)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		closeImages()
		if o.flags != nil && !o.flags.Changed("api-addr") {
			// Any gateway's API manages the whole cluster: a default
			// port taken (a second gateway on one host) must not keep
			// this one from serving iSCSI.
			log.Error("management API not started: default address unavailable; set --api-addr", "addr", o.Addr, "err", err)
			return nil
		}
		return withCode(ExitStart, fmt.Errorf("management API: %w", err))
	}
	go func() {
		defer closeImages()
		if err := a.ServeListener(ctx, ln, nil); err != nil {
			log.Error("management API stopped", "err", err)
		}
	}()
	return nil
}
