package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rbdgw/rbdgw/config"
)

// ServeOptions are `rbdgw serve`'s flags and the state Complete derives.
type ServeOptions struct {
	ConfigFile      string
	DataDir         string
	Portals         []string
	ShutdownTimeout time.Duration

	root    *RootOptions
	streams IOStreams
	cfg     config.Config
}

// NewServeCommand returns `rbdgw serve`.
func NewServeCommand(streams IOStreams, root *RootOptions) *cobra.Command {
	o := &ServeOptions{root: root, streams: streams, ShutdownTimeout: DefaultShutdownTimeout}
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the gateway from a configuration file",
		Long: `Run the gateway from a YAML or JSON configuration file (see
docs/configuration.md). SIGHUP re-reads the file and applies target, host,
LUN map and new-disk changes live. SIGINT or SIGTERM drains in-flight
commands, logs sessions out, flushes the disks and exits 0.`,
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
	f.StringVar(&o.ConfigFile, "config", "", "configuration file (.yaml, .yml or .json)")
	f.StringVar(&o.DataDir, "data-dir", "", "override data_dir from the configuration")
	f.StringArrayVar(&o.Portals, "portal", nil, "override portals (host:port; repeat for several)")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long SIGTERM waits for sessions to drain")
	cmd.MarkFlagRequired("config")
	return cmd
}

// Complete loads the configuration and applies the flag overrides.
func (o *ServeOptions) Complete() error {
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
	o.cfg = c
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
	log.Info("configuration loaded", "file", o.ConfigFile, "data_dir", o.cfg.DataDir, "portals", o.cfg.Portals)
	return runGateway(ctx, o.cfg, log, o.ShutdownTimeout, nil, func() (config.Config, error) {
		// The same file and overrides as at start.
		if err := o.Complete(); err != nil {
			return config.Config{}, err
		}
		return o.cfg, nil
	})
}
