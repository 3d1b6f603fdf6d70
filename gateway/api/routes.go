package api

import (
	"context"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/rbdgw/rbdgw/config"
)

// prefix is the API's versioned root.
const prefix = "/api/v1"

// mutation edits a copy of the configuration inside one store Update and
// returns what the client gets back. The store may call it more than once
// (on a conflicting write), so it only touches c and its own result.
type mutation func(c *config.Config) (any, error)

// readBack is a mutation result computed from the configuration as
// stored, for values the store fills in (a new gateway's tpg_id).
type readBack func(c *config.Config) (any, error)

// routes registers every resource; docs/api.md lists them.
func (a *API) routes() {
	a.view("GET /health", func(r *http.Request, _ *config.Config, epoch int64) (any, error) {
		h := map[string]any{"status": "ok", "epoch": epoch}
		if a.opts.Health != nil {
			h["gateway"] = a.opts.Health(r.Context())
		}
		return h, nil
	})
	a.mux.HandleFunc("GET "+prefix+"/sysinfo", a.sysinfo)
	a.view("GET /config", func(r *http.Request, c *config.Config, _ int64) (any, error) {
		// Secrets leave only when an admin asks for them by name (a full
		// export meant for an import elsewhere); the read is logged.
		if r.URL.Query().Get("secrets") == "true" {
			user, _, _ := r.BasicAuth()
			a.log.Warn("configuration read with its CHAP secrets in clear", "user", user, "client", r.RemoteAddr)
			return c, nil
		}
		return redacted(c), nil
	})
	a.change("PUT /config", http.StatusOK, putConfig)
	a.view("GET /discovery-auth", func(_ *http.Request, c *config.Config, _ int64) (any, error) {
		return c.DiscoveryAuth.Redacted(), nil
	})
	a.change("PUT /discovery-auth", http.StatusOK, putDiscoveryAuth)
	a.targetRoutes()
	a.hostRoutes()
	a.diskRoutes()
	a.imageRoutes()
	a.modelRoutes()
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("no resource %s %s (see docs/api.md)", r.Method, r.URL.Path))
	})
}

// view answers a read from the current configuration.
func (a *API) view(pattern string, fn func(r *http.Request, c *config.Config, epoch int64) (any, error)) {
	method, path := splitPattern(pattern)
	a.mux.HandleFunc(method+" "+prefix+path, func(w http.ResponseWriter, r *http.Request) {
		c, epoch, err := a.opts.Store.Get(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		v, err := fn(r, &c, epoch)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

// change answers a write: prep reads the request (before the store is
// touched, since the mutation may run more than once), then the mutation
// runs inside one store Update.
func (a *API) change(pattern string, status int, prep func(r *http.Request) (mutation, error)) {
	method, path := splitPattern(pattern)
	a.mux.HandleFunc(method+" "+prefix+path, func(w http.ResponseWriter, r *http.Request) {
		m, err := prep(r)
		if err != nil {
			writeError(w, err)
			return
		}
		v, epoch, err := a.apply(r.Context(), m)
		if err != nil {
			a.log.Info("change refused", "method", r.Method, "path", r.URL.Path, "err", classify(err).Msg)
			writeError(w, err)
			return
		}
		a.log.Info("configuration changed", "method", r.Method, "path", r.URL.Path, "epoch", epoch)
		writeJSON(w, status, v)
	})
}

// apply runs one mutation in one store Update.
func (a *API) apply(ctx context.Context, m mutation) (any, int64, error) {
	var out any
	epoch, err := a.opts.Store.Update(ctx, func(c *config.Config) error {
		v, err := m(c)
		out = v
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	switch v := out.(type) {
	case nil:
		out = map[string]any{"epoch": epoch}
	case readBack:
		c, _, err := a.opts.Store.Get(ctx)
		if err != nil {
			return nil, epoch, err
		}
		out, err = v(&c)
		if err != nil {
			return nil, epoch, err
		}
	}
	return out, epoch, nil
}

func splitPattern(p string) (method, path string) {
	for i := 0; i < len(p); i++ {
		if p[i] == ' ' {
			return p[:i], p[i+1:]
		}
	}
	return "", p
}

func putConfig(r *http.Request) (mutation, error) {
	var n config.Config
	if err := decode(r, &n); err != nil {
		return nil, err
	}
	return func(c *config.Config) (any, error) {
		*c = n.Clone()
		return n.Redacted(), nil
	}, nil
}

func putDiscoveryAuth(r *http.Request) (mutation, error) {
	var auth config.CHAP
	if err := decode(r, &auth); err != nil {
		return nil, err
	}
	return func(c *config.Config) (any, error) {
		c.DiscoveryAuth = auth
		return auth.Redacted(), nil
	}, nil
}

// sysinfo describes the process serving this request.
func (a *API) sysinfo(w http.ResponseWriter, r *http.Request) {
	host, _ := os.Hostname()
	info := map[string]any{
		"hostname":   host,
		"go_version": runtime.Version(),
		"cpus":       runtime.NumCPU(),
		"goroutines": runtime.NumGoroutine(),
		"time":       time.Now().UTC().Format(time.RFC3339),
	}
	if a.opts.SysInfo != nil {
		info["gateway"] = a.opts.SysInfo(r.Context())
	}
	writeJSON(w, http.StatusOK, info)
}
