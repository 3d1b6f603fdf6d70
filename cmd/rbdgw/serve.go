package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway"
	"github.com/rbdgw/rbdgw/gateway/ha"
	"github.com/rbdgw/rbdgw/target"
)

// ServeOptions are `rbdgw serve`'s flags and the state Complete derives.
type ServeOptions struct {
	ConfigFile string
	DataDir    string
	Portals    []string
	// ImageRoots are the only directories file: disks may use.
	ImageRoots []string
	// Limits are the portal's resource caps.
	Limits          target.Limits
	ShutdownTimeout time.Duration
	// Store mode (no --config): where the cluster configuration lives,
	// which gateway of it this process is, and a file to import first.
	Store       StoreOptions
	API         APIOptions // the management API (store mode), api.go
	GatewayName string
	// LeaseTTL is the gateway's liveness lease in a cluster (gateway/ha).
	LeaseTTL time.Duration
	// PeerAddr is where the gateway's peer link listens in a cluster;
	// empty: the IP of its first configured portal, any free port.
	PeerAddr string
	Import   string

	root    *RootOptions
	streams IOStreams
	cfg     config.Config
}

// NewServeCommand returns `rbdgw serve`.
func NewServeCommand(streams IOStreams, root *RootOptions) *cobra.Command {
	o := &ServeOptions{root: root, streams: streams, ShutdownTimeout: DefaultShutdownTimeout}
	cmd := &cobra.Command{
		Use:   "serve [--config FILE | --etcd-endpoints URLS]",
		Short: "Run the gateway from a configuration file or the cluster store",
		Long: `Run the gateway.

With --config, from a YAML or JSON configuration file (see
docs/configuration.md): SIGHUP re-reads the file and applies target, host,
LUN map and new-disk changes live.

Without --config, from the cluster configuration in etcd: the external
cluster given by --etcd-endpoints, or else an etcd member embedded in this
process (data in <data-dir>/etcd, client URL --etcd-listen-client). The
gateway follows every change (watch) and applies it live; when etcd is
unreachable it keeps serving the last configuration. --import FILE first
replaces the stored configuration with the file's. When the configuration
lists gateways, this process serves the one named --gateway-name (default:
the host name); otherwise it serves --portal.

SIGINT or SIGTERM drains in-flight commands, logs sessions out, flushes
the disks and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ConfigFile, "config", "", "configuration file (.yaml, .yml or .json); without it the cluster store is used")
	f.StringVar(&o.DataDir, "data-dir", "", "data directory (overrides the file's data_dir; store mode default "+config.DefaultDataDir+")")
	f.StringArrayVar(&o.Portals, "portal", nil, "portals (host:port; repeat for several): override the file's; in store mode, when the configuration lists no gateways (default "+config.DefaultPortal+")")
	addLimitFlags(f, &o.Limits)
	f.StringArrayVar(&o.ImageRoots, "image-root", nil, "directory that file: disk images may live in (repeat for several; relative file: paths are under the first); default <data-dir>/images")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long SIGTERM waits for sessions to drain")
	f.StringVar(&o.GatewayName, "gateway-name", "", "this gateway's name in the cluster configuration (default: the host name)")
	f.DurationVar(&o.LeaseTTL, "lease-ttl", ha.DefaultLeaseTTL, "store mode with several gateways: this gateway's liveness lease in etcd; an owner that dies is replaced about this long after")
	f.StringVar(&o.PeerAddr, "peer-addr", "", "store mode with several gateways: host:port where the other gateways forward the commands of LUs this one owns (default: this gateway's first portal IP, any free port; set a fixed port where a firewall needs one)")
	f.StringVar(&o.Import, "import", "", "store mode: replace the stored configuration with this file's before serving")
	o.Store.AddFlags(f)
	o.API.AddFlags(f)
	cmd.MarkFlagsMutuallyExclusive("config", "etcd-endpoints")
	cmd.MarkFlagsMutuallyExclusive("config", "import")
	return cmd
}

// Complete loads the configuration file and applies the flag overrides;
// in store mode it fills the defaults of the per-process settings.
func (o *ServeOptions) Complete() error {
	if o.ConfigFile == "" {
		if o.DataDir == "" {
			o.DataDir = config.DefaultDataDir
		}
		if len(o.Portals) == 0 {
			o.Portals = []string{config.DefaultPortal}
		}
		return o.completeGatewayName()
	}
	c, err := config.ParseFile(o.ConfigFile)
	if err != nil {
		return withCode(ExitBadConfig, err)
	}
	if o.DataDir != "" {
		c.DataDir = o.DataDir
	}
	if len(o.Portals) > 0 {
		c.Portals = append([]string(nil), o.Portals...)
	}
	if len(c.Gateways) > 0 {
		// A file that lists gateways is served as the store would be:
		// this process is the gateway named --gateway-name.
		if err := o.completeGatewayName(); err != nil {
			return err
		}
		if c, err = c.ForGateway(config.Local{GatewayName: o.GatewayName}); err != nil {
			return withCode(ExitBadConfig, fmt.Errorf("%s: %w", o.ConfigFile, err))
		}
	}
	o.cfg = c
	return nil
}

// completeGatewayName defaults --gateway-name to the host name.
func (o *ServeOptions) completeGatewayName() error {
	if o.GatewayName != "" {
		return nil
	}
	name, err := os.Hostname()
	if err != nil {
		return withCode(ExitBadArgs, fmt.Errorf("--gateway-name not given and the host name is unknown: %w", err))
	}
	o.GatewayName = name
	return nil
}

// Validate checks the flags and the resulting configuration.
func (o *ServeOptions) Validate() error {
	if o.ShutdownTimeout <= 0 {
		return withCode(ExitBadArgs, fmt.Errorf("--shutdown-timeout %s: must be positive", o.ShutdownTimeout))
	}
	for _, p := range o.Portals {
		if err := config.ValidatePortal(p); err != nil {
			return withCode(ExitBadArgs, fmt.Errorf("--portal %q: %w", p, err))
		}
	}
	if o.ConfigFile == "" {
		if err := o.Store.Validate(); err != nil {
			return withCode(ExitBadArgs, err)
		}
		return o.API.Validate()
	}
	if err := o.cfg.Validate(); err != nil {
		return withCode(ExitBadConfig, fmt.Errorf("%s: %w", o.ConfigFile, err))
	}
	return nil
}

// Run serves until a signal or a fatal error.
func (o *ServeOptions) Run(ctx context.Context) error {
	log, err := o.root.Logger()
	if err != nil {
		return err
	}
	if o.ConfigFile == "" {
		return o.runFromStore(ctx, log)
	}
	log.Info("configuration loaded", "file", o.ConfigFile, "data_dir", o.cfg.DataDir, "portals", o.cfg.Portals)
	return runGateway(ctx, gateway.Config{Config: o.cfg, ImageRoots: o.ImageRoots, Limits: o.Limits}, log, o.ShutdownTimeout, nil, func() (config.Config, error) {
		// The same file and overrides as at start.
		if err := o.Complete(); err != nil {
			return config.Config{}, err
		}
		return o.cfg, nil
	})
}
