package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway"
)

// The demo's fixed identity.
const (
	DemoTargetIQN   = "iqn.2026-11.io.rbdgw:demo"
	DemoCHAPUser    = "rbdgwdemo"
	DemoDiskName    = "demo"
	DemoDiskSize    = 1 << 30
	DemoPortal      = "127.0.0.1:3260"
	demoSecretFile  = "demo-chap-password"
	demoImageFile   = "demo.img"
	demoPasswordLen = 16
	// Letters and digits only: the password goes into an iscsi:// URL,
	// where '@', '/' and '%' would need escaping libiscsi does not undo.
	demoPasswordChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// DemoOptions are `rbdgw demo`'s flags.
type DemoOptions struct {
	DataDir         string
	Portal          string
	ShutdownTimeout time.Duration

	root     *RootOptions
	streams  IOStreams
	password string
	cfg      config.Config
}

// NewDemoCommand returns `rbdgw demo`.
func NewDemoCommand(streams IOStreams, root *RootOptions) *cobra.Command {
	o := &DemoOptions{root: root, streams: streams, Portal: DemoPortal, ShutdownTimeout: DefaultShutdownTimeout}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a throw-away gateway with one sparse 1 GiB LUN and CHAP",
		Long: `Run a gateway with target ` + DemoTargetIQN + `, one sparse 1 GiB
file LUN and CHAP user ` + DemoCHAPUser + `. The password is generated once and
kept in the data dir, so reruns keep it (and the disk's data and WWN). It
prints an iscsi:// URL that libiscsi tools (iscsi-ls, qemu-img) accept as is.`,
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
	f.StringVar(&o.DataDir, "data-dir", "", "where the image, WWN and password live (default: <user cache dir>/rbdgw-demo)")
	f.StringVar(&o.Portal, "portal", o.Portal, "host:port to listen on")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long SIGTERM waits for sessions to drain")
	return cmd
}

// Complete fills the data dir and loads or creates the CHAP password.
func (o *DemoOptions) Complete() error {
	if o.DataDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		o.DataDir = filepath.Join(base, "rbdgw-demo")
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return withCode(ExitStart, err)
	}
	pw, err := demoPassword(filepath.Join(o.DataDir, demoSecretFile))
	if err != nil {
		return withCode(ExitStart, err)
	}
	o.password = pw
	o.cfg = DemoConfig(o.DataDir, o.Portal, pw)
	return nil
}

// Validate checks the flags and the generated configuration.
func (o *DemoOptions) Validate() error {
	if err := config.ValidatePortal(o.Portal); err != nil {
		return withCode(ExitBadArgs, fmt.Errorf("--portal %q: %w", o.Portal, err))
	}
	if o.ShutdownTimeout <= 0 {
		return withCode(ExitBadArgs, fmt.Errorf("--shutdown-timeout %s: must be positive", o.ShutdownTimeout))
	}
	if err := o.cfg.Validate(); err != nil {
		// A stored password edited by hand can break the CHAP rules.
		return withCode(ExitBadConfig, fmt.Errorf("demo configuration (data dir %s): %w", o.DataDir, err))
	}
	return nil
}

// Run serves the demo and prints how to reach it.
func (o *DemoOptions) Run(ctx context.Context) error {
	log, err := o.root.Logger()
	if err != nil {
		return err
	}
	return runGateway(ctx, gateway.Config{Config: o.cfg}, log, o.ShutdownTimeout, func(g *gateway.Gateway) error {
		return o.printUsage(g.Addrs()[0])
	}, nil)
}

func (o *DemoOptions) printUsage(bound net.Addr) error {
	host, _, _ := net.SplitHostPort(o.Portal)
	_, port, _ := net.SplitHostPort(bound.String())
	switch host {
	case "0.0.0.0", "":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	url := DemoURL(DemoCHAPUser, o.password, net.JoinHostPort(host, port), DemoTargetIQN, 0)
	w := o.streams.Out
	_, err := fmt.Fprintf(w, "%s\n\nrbdgw demo is serving target %s (LUN 0: sparse 1 GiB file in %s).\nTry:\n  iscsi-ls -s %s\n  qemu-img info %s\nStop with Ctrl-C (SIGINT) or SIGTERM.\n",
		url, DemoTargetIQN, o.DataDir, url, url)
	return err
}

// DemoURL formats the libiscsi URL: iscsi://<user>%<password>@<host:port>/<iqn>/<lun>.
func DemoURL(user, password, hostport, iqn string, lun int) string {
	return fmt.Sprintf("iscsi://%s%%%s@%s/%s/%d", user, password, hostport, iqn, lun)
}

// DemoConfig is the demo's configuration.
func DemoConfig(dataDir, portal, password string) config.Config {
	c := config.Default()
	c.DataDir = dataDir
	c.Portals = []string{portal}
	c.Disks = []config.Disk{config.NewDisk(DemoDiskName, "file:"+demoImageFile, DemoDiskSize)}
	t := config.NewTarget(DemoTargetIQN)
	t.Alias = "rbdgw demo"
	t.Auth = config.CHAP{Username: DemoCHAPUser, Password: password}
	t.LUNs = []config.LUNMap{{LUNID: 0, Disk: DemoDiskName}}
	c.Targets = []config.Target{t}
	return c
}

// demoPassword reads the stored password or creates one.
func demoPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	pw := make([]byte, demoPasswordLen)
	if _, err := rand.Read(pw); err != nil {
		return "", err
	}
	for i, c := range pw {
		// 256 is not a multiple of 62: the bias (a few percent towards the
		// first letters) is harmless for a demo secret of 16 characters.
		pw[i] = demoPasswordChars[int(c)%len(demoPasswordChars)]
	}
	// O_EXCL: two demos started at once must not end up with two passwords.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return demoPassword(path)
	}
	if err != nil {
		return "", err
	}
	if _, err := f.Write(append(pw, '\n')); err != nil {
		f.Close()
		return "", err
	}
	return string(pw), f.Close()
}
