package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// IOStreams are the standard streams a command uses; tests substitute
// buffers.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// Exit codes. Scripts and the tests tell a bad command line from a bad
// configuration from a runtime failure by them.
const (
	ExitOK        = 0
	ExitError     = 1 // runtime failure (a portal died, shutdown failed)
	ExitBadArgs   = 2 // unknown command or flag, bad flag value
	ExitBadConfig = 3 // the configuration does not load or validate
	ExitStart     = 4 // the gateway could not start (port in use, disk unusable)
)

// exitError carries an exit code through cobra's RunE.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// RootOptions are the flags every command shares.
type RootOptions struct {
	LogLevel  string
	LogFormat string
	streams   IOStreams
}

// Logger builds the structured logger the flags ask for, writing to ErrOut.
func (o *RootOptions) Logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return nil, withCode(ExitBadArgs, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.LogLevel))
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(o.LogFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(o.streams.ErrOut, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(o.streams.ErrOut, hopts)), nil
	default:
		return nil, withCode(ExitBadArgs, fmt.Errorf("--log-format %q: want text or json", o.LogFormat))
	}
}

// NewRootCommand builds the command tree. A fresh tree per call: no flag
// state is shared between invocations.
func NewRootCommand(streams IOStreams) *cobra.Command {
	o := &RootOptions{LogLevel: "info", LogFormat: "text", streams: streams}
	cmd := &cobra.Command{
		Use:           "rbdgw",
		Short:         "iSCSI gateway for block devices (file-backed now, Ceph RBD later)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	cmd.PersistentFlags().StringVar(&o.LogLevel, "log-level", o.LogLevel, "log level: debug, info, warn, error")
	cmd.PersistentFlags().StringVar(&o.LogFormat, "log-format", o.LogFormat, "log format: text or json")
	cmd.AddCommand(NewServeCommand(streams, o), NewDemoCommand(streams, o), NewConfigCommand(streams, o), NewVersionCommand(streams))
	return cmd
}

// Execute runs the command line and returns the process exit code.
// Cancelling ctx stops serve and demo as SIGTERM does.
func Execute(ctx context.Context, args []string, streams IOStreams) int {
	cmd := NewRootCommand(streams)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(streams.ErrOut, "rbdgw:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Errors that did not pass through withCode come from cobra itself:
	// unknown commands and flags, wrong argument counts.
	return ExitBadArgs
}
