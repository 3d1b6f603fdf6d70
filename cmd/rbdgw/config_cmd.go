package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rbdgw/rbdgw/config"
)

// ConfigOptions are the flags of `rbdgw config import|show`.
type ConfigOptions struct {
	Store   StoreOptions
	DataDir string
	Output  string
	Timeout time.Duration

	root    *RootOptions
	streams IOStreams
}

// NewConfigCommand returns `rbdgw config`, the cluster store's import and
// export. Both talk to the store as clients: the external cluster
// (--etcd-endpoints) or the embedded member of a running `rbdgw serve` on
// this host.
func NewConfigCommand(streams IOStreams, root *RootOptions) *cobra.Command {
	o := &ConfigOptions{root: root, streams: streams, Output: "yaml", Timeout: 10 * time.Second, DataDir: config.DefaultDataDir}
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Import or show the cluster configuration in etcd",
		Args:  cobra.NoArgs,
	}
	o.Store.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&o.DataDir, "data-dir", o.DataDir, "data directory of the gateway whose embedded etcd is used (its etcd password and secret key)")
	cmd.PersistentFlags().DurationVar(&o.Timeout, "timeout", o.Timeout, "give up when etcd does not answer within this time")
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Replace the stored configuration with a configuration file's (portals and data_dir are per-process and not stored)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), func(ctx context.Context, s *config.EtcdStore) error {
				epoch, err := importFile(ctx, s, args[0])
				if err == nil {
					fmt.Fprintf(o.streams.Out, "imported %s at epoch %d\n", args[0], epoch)
				}
				return err
			})
		},
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the stored configuration (passwords redacted)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), o.show)
		},
	}
	show.Flags().StringVarP(&o.Output, "output", "o", o.Output, "yaml or json")
	cmd.AddCommand(imp, show)
	return cmd
}

func (o *ConfigOptions) run(ctx context.Context, f func(context.Context, *config.EtcdStore) error) error {
	if err := o.Store.Validate(); err != nil {
		return withCode(ExitBadArgs, err)
	}
	if o.Output != "yaml" && o.Output != "json" {
		return withCode(ExitBadArgs, fmt.Errorf("-o %q: want yaml or json", o.Output))
	}
	log, err := o.root.Logger()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	s, err := o.Store.Client(ctx, o.DataDir, log)
	if errors.Is(err, config.ErrUnavailable) {
		return withCode(ExitError, err)
	}
	if err != nil {
		return withCode(ExitBadArgs, err)
	}
	defer s.Close()
	if err := f(ctx, s); err != nil {
		return withCode(ExitError, err)
	}
	return nil
}

func (o *ConfigOptions) show(ctx context.Context, s *config.EtcdStore) error {
	c, epoch, err := s.Get(ctx)
	if err != nil {
		return err
	}
	format := config.FormatYAML
	if o.Output == "json" {
		format = config.FormatJSON
	}
	b, err := config.Marshal(c.Redacted(), format)
	if err != nil {
		return err
	}
	if format == config.FormatYAML {
		fmt.Fprintf(o.streams.Out, "# epoch %d\n", epoch)
	}
	_, err = o.streams.Out.Write(b)
	return err
}
