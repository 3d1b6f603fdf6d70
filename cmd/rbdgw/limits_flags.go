package main

import (
	"github.com/spf13/pflag"

	"github.com/rbdgw/rbdgw/target"
)

// addLimitFlags binds the portal's resource caps (target.Limits) to
// `serve`'s and `demo`'s flags, each defaulting to the target package's
// value.
func addLimitFlags(f *pflag.FlagSet, l *target.Limits) {
	f.IntVar(&l.MaxConnections, "max-connections", target.DefaultMaxConnections,
		"iSCSI connections the portal holds at once; more are closed at accept")
	f.IntVar(&l.MaxPreLoginPerSource, "max-prelogin-per-source", target.DefaultMaxPreLoginPerSource,
		"connections one source address may hold before completing login")
	f.IntVar(&l.MaxSessionsPerInitiator, "max-sessions-per-initiator", target.DefaultMaxSessionsPerInitiator,
		"sessions one initiator name may hold; more logins are refused (out of resources)")
	f.DurationVar(&l.LoginTimeout, "login-timeout", target.DefaultLoginTimeout,
		"time a connection has from accept to a completed login")
	f.Int64Var(&l.MaxDataPerSession, "max-data-per-session", target.DefaultMaxDataPerSession,
		"bytes of command data one session may have buffered; further commands wait for their R2T")
	f.Int64Var(&l.MaxDataPerServer, "max-data-per-gateway", target.DefaultMaxDataPerServer,
		"bytes of command data all sessions together may have buffered")
	f.DurationVar(&l.CmdSNGapTimeout, "cmdsn-gap-timeout", target.DefaultCmdSNGapTimeout,
		"time commands may wait behind a missing CmdSN before the connection is dropped")
	f.DurationVar(&l.AuthFailureDelay, "chap-failure-delay", target.DefaultAuthFailureDelay,
		"delay of the first refused CHAP login of an initiator name and address; doubles per failure")
	f.DurationVar(&l.AuthFailureMaxDelay, "chap-failure-max-delay", target.DefaultAuthFailureMaxDelay,
		"cap of the CHAP failure delay")
}
