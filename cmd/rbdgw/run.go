package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rbdgw/rbdgw/config"
	"github.com/rbdgw/rbdgw/gateway"
)

// DefaultShutdownTimeout bounds the drain on SIGTERM; after it remaining
// connections are closed.
const DefaultShutdownTimeout = 30 * time.Second

// runGateway starts a gateway and serves until ctx ends, SIGINT or SIGTERM
// arrives (a graceful drain, exit 0) or a portal fails (exit 1). onReady
// runs once the portals accept connections. With reload set, SIGHUP
// re-reads the configuration and applies it (a refused reload is logged
// and the gateway keeps its configuration).
func runGateway(ctx context.Context, gcfg gateway.Config, log *slog.Logger, shutdownTimeout time.Duration,
	onReady func(*gateway.Gateway) error, reload func() (config.Config, error)) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var hup chan os.Signal
	if reload != nil {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	gcfg.Logger = log
	g, err := gateway.Start(gcfg)
	if err != nil {
		return withCode(ExitStart, err)
	}
	<-g.Ready()
	if onReady != nil {
		if err := onReady(g); err != nil {
			g.Close()
			return withCode(ExitError, err)
		}
	}
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("signal received, draining")
			break loop
		case runErr = <-g.Err():
			break loop
		case <-hup:
			c, err := reload()
			if err == nil {
				err = g.Reload(c)
			}
			if err != nil {
				log.Error("reload refused; configuration unchanged", "err", err)
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		// A drain cut short by the timeout is still a clean stop: every
		// connection is closed and the LUs flushed. A flush failure is not.
		runErr = errors.Join(runErr, err)
	}
	return withCode(ExitError, runErr)
}
