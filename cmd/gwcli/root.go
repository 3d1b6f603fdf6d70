package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/rbdgw/rbdgw/gwcli"
)

// IOStreams are the standard streams; tests substitute buffers.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// Where settings come from when no flag gives them.
const (
	envURL      = "RBDGW_API_URL"
	envUser     = "RBDGW_API_USER"
	envPassword = "RBDGW_API_PASSWORD"
	defaultURL  = "http://127.0.0.1:5000"
	// The account a gateway generates when given no --api-user, in its
	// default data directory.
	defaultUser         = "admin"
	defaultPasswordFile = "/var/lib/rbdgw/api-password"
	settingsFile        = ".gwcli.yaml"
	historyFile         = ".gwcli_history"
	bookmarkFile        = ".gwcli_bookmarks.json"
)

// Settings is ~/.gwcli.yaml.
type Settings struct {
	URL          string `yaml:"url"`
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	CACert       string `yaml:"ca_cert"`
	Fingerprint  string `yaml:"fingerprint"`
	Insecure     bool   `yaml:"insecure"`
}

// Options are gwcli's flags.
type Options struct {
	URL, User, Password, CACert, Fingerprint string
	PasswordFile                             string
	Insecure, JSON                           bool
	// Config is the settings file (default ~/.gwcli.yaml).
	Config string

	streams IOStreams
	session *Session // set in the shell: the state one line leaves the next
	client  *gwcli.Client
}

// Session is what the shell keeps between lines: the client, where it
// is, and the last tree (for completion).
type Session struct {
	Client *gwcli.Client
	Cwd    string
	Scope  *gwcli.Scope
	Exit   bool
	Home   string
}

// NewRootCommand builds gwcli's command. The shell builds a fresh one
// for every line, so no flag state carries over from one to the next.
func NewRootCommand(streams IOStreams, session *Session) *cobra.Command {
	o := &Options{streams: streams, session: session}
	cmd := &cobra.Command{
		Use:   "gwcli [PATH] [COMMAND [ARGS...]]",
		Short: "Manage rbdgw gateways: targets, disks, hosts and CHAP (ceph-iscsi's gwcli layout)",
		Long: `gwcli manages an rbdgw cluster through a gateway's REST API.
Without arguments it opens a shell (tab completes paths, commands and
key=value arguments; history in ~/.gwcli_history). With arguments it runs
one command and exits: 0 ok, 1 the API refused or failed, 2 bad
arguments, 3 the API could not be reached.

The API address and credentials come from the flags, else
$RBDGW_API_URL, $RBDGW_API_USER, $RBDGW_API_PASSWORD, else ~/.gwcli.yaml
(url, user, password, password_file, ca_cert, fingerprint, insecure); on a
gateway's host without any of them, user admin with the password the
gateway generated in /var/lib/rbdgw/api-password, else http://127.0.0.1:5000.`,
		Args:          cobra.ArbitraryArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if len(args) == 0 && o.session == nil {
				return runShell(cmd.Context(), o)
			}
			return o.Run(cmd.Context(), args)
		},
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	f := cmd.Flags()
	f.SetInterspersed(false) // "gwcli /disks create size=1G" never mistakes an argument for a flag
	f.StringVar(&o.URL, "url", "", "API URL (default $"+envURL+", ~/.gwcli.yaml, "+defaultURL+")")
	f.StringVarP(&o.User, "user", "u", "", "API user (default $"+envUser+")")
	f.StringVarP(&o.Password, "password", "p", "", "API password (default $"+envPassword+")")
	f.StringVar(&o.PasswordFile, "password-file", "", "read the API password from this file (default on a gateway's host: "+defaultPasswordFile+", user "+defaultUser+")")
	f.StringVar(&o.CACert, "ca-cert", "", "PEM CA certificate to trust for an https API")
	f.StringVar(&o.Fingerprint, "fingerprint", "", "trust an https API whose certificate has this SHA-256 fingerprint (the gateway logs it)")
	f.BoolVar(&o.Insecure, "insecure", false, "do not verify the API's TLS certificate")
	f.BoolVar(&o.JSON, "json", false, "print results as JSON")
	f.StringVar(&o.Config, "config", "", "settings file (default ~/"+settingsFile+")")
	return cmd
}

// Complete fills the settings from flags, environment and file, and
// makes the client (the shell's, when running a shell line).
func (o *Options) Complete() error {
	if o.session != nil && o.session.Client != nil {
		o.client = o.session.Client
		return nil
	}
	home, _ := os.UserHomeDir()
	var s Settings
	path := o.Config
	if path == "" && home != "" {
		path = filepath.Join(home, settingsFile)
	}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := yaml.Unmarshal(b, &s); err != nil {
				return &gwcli.ArgError{Msg: fmt.Sprintf("%s: %v", path, err)}
			}
		case o.Config != "" || !errors.Is(err, os.ErrNotExist):
			return &gwcli.ArgError{Msg: err.Error()}
		}
	}
	pick := func(flag, env, file, def string) string {
		for _, v := range []string{flag, os.Getenv(env), file} {
			if v != "" {
				return v
			}
		}
		return def
	}
	user, password := pick(o.User, envUser, s.User, ""), pick(o.Password, envPassword, s.Password, "")
	pwFile := pick(o.PasswordFile, "", s.PasswordFile, "")
	if pwFile == "" && user == "" && password == "" {
		// On a gateway's host: the account the gateway generated.
		if _, err := os.Stat(defaultPasswordFile); err == nil {
			pwFile, user = defaultPasswordFile, defaultUser
		}
	}
	if pwFile != "" && password == "" {
		b, err := os.ReadFile(pwFile)
		if err != nil {
			return &gwcli.ArgError{Msg: fmt.Sprintf("password file: %v", err)}
		}
		password = strings.TrimSpace(string(b))
		if user == "" {
			user = defaultUser
		}
	}
	c, err := gwcli.NewClient(gwcli.ClientOptions{
		URL:         pick(o.URL, envURL, s.URL, defaultURL),
		User:        user,
		Password:    password,
		CACert:      pick(o.CACert, "", s.CACert, ""),
		Fingerprint: pick(o.Fingerprint, "", s.Fingerprint, ""),
		Insecure:    o.Insecure || s.Insecure,
	})
	if err != nil {
		return err
	}
	o.client = c
	return nil
}

// Run executes one command line.
func (o *Options) Run(ctx context.Context, args []string) error {
	s := o.session
	if s == nil {
		s = &Session{Cwd: "/"}
		s.Home, _ = os.UserHomeDir()
	}
	x := &gwcli.Scope{Ctx: ctx, Client: o.client, Out: o.streams.Out, Err: o.streams.ErrOut, JSON: o.JSON, Shell: o.session != nil}
	if s.Home != "" {
		x.BookmarksFile = filepath.Join(s.Home, bookmarkFile)
	}
	if err := x.Load(s.Cwd, false); err != nil {
		return err
	}
	err := gwcli.Execute(x, args)
	if x.NewCwd != "" {
		s.Cwd = x.NewCwd
	}
	s.Exit = s.Exit || x.Exit
	s.Scope = x
	return err
}

// ranError marks an error from running a command (its exit code is
// gwcli's), as opposed to one from cobra's own parsing (bad arguments).
type ranError struct{ err error }

func (e *ranError) Error() string { return e.err.Error() }
func (e *ranError) Unwrap() error { return e.err }

// Execute runs gwcli with args and returns the exit code.
func Execute(ctx context.Context, args []string, streams IOStreams) int {
	return execute(ctx, args, streams, nil)
}

func execute(ctx context.Context, args []string, streams IOStreams, session *Session) int {
	cmd := NewRootCommand(streams, session)
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, a []string) error {
		if err := run(c, a); err != nil {
			return &ranError{err}
		}
		return nil
	}
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return gwcli.ExitOK
	}
	var ec *exitCode
	if errors.As(err, &ec) {
		return ec.code // the failing line has spoken already
	}
	fmt.Fprintln(streams.ErrOut, "gwcli:", err)
	var re *ranError
	if errors.As(err, &re) {
		return gwcli.ExitCode(re.err)
	}
	return gwcli.ExitBadArgs
}
