package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rbdgw/rbdgw/gateway"
)

// Version is set at link time: -ldflags "-X main.Version=v0.1.0".
var Version = "dev"

// VersionInfo is what `rbdgw version` prints.
type VersionInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	// Backends are the disk backends this binary serves: rbd only when
	// built with -tags rbd,pacific.
	Backends []string `json:"backends"`
}

// VersionOptions are `rbdgw version`'s flags.
type VersionOptions struct {
	Output  string
	streams IOStreams
}

// NewVersionCommand prints the version and build information.
func NewVersionCommand(streams IOStreams) *cobra.Command {
	o := &VersionOptions{Output: "text", streams: streams}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run()
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", o.Output, "output format: text or json")
	return cmd
}

// Validate checks the output format.
func (o *VersionOptions) Validate() error {
	if o.Output != "text" && o.Output != "json" {
		return withCode(ExitBadArgs, fmt.Errorf("-o %q: want text or json", o.Output))
	}
	return nil
}

// Run prints the version.
func (o *VersionOptions) Run() error {
	v := VersionInfo{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Backends: []string{"file"}}
	if gateway.RBDSupport {
		v.Backends = append(v.Backends, "rbd")
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.Revision = s.Value
			}
		}
	}
	if o.Output == "json" {
		return json.NewEncoder(o.streams.Out).Encode(v)
	}
	rev := ""
	if v.Revision != "" {
		rev = " " + v.Revision
	}
	_, err := fmt.Fprintf(o.streams.Out, "rbdgw %s%s %s %s backends %s\n", v.Version, rev, v.GoVersion, v.Platform, strings.Join(v.Backends, ","))
	return err
}
