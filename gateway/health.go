package gateway

import (
	"sync"
	"time"
)

// Configuration sources a gateway reports in its Health.
const (
	SourceFile  = "file"  // started from a configuration file (SIGHUP reloads)
	SourceStore = "store" // follows the cluster store (Reconcile)
)

// Health is what a gateway knows about its configuration source: which
// configuration it serves and whether it can still hear about changes.
// When the store is unreachable the gateway keeps serving the last
// configuration it applied; Health is how an operator (the REST API,
// monitoring) sees that.
type Health struct {
	// Source is SourceFile or SourceStore.
	Source string `json:"source"`
	// Gateway is this process's gateway name (store mode).
	Gateway string `json:"gateway,omitempty"`
	// Epoch is the store epoch of the configuration being served (0 for a
	// file).
	Epoch int64 `json:"epoch"`
	// StoreEpoch is the newest epoch received from the store; above Epoch
	// when that configuration could not be applied (see LastError).
	StoreEpoch int64 `json:"store_epoch"`
	// StoreReachable is the result of the latest store ping.
	StoreReachable bool `json:"store_reachable"`
	// LastError is the latest failure (store unreachable, a configuration
	// refused); it clears when the next ping and apply succeed.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// AppliedAt is when the served configuration was applied.
	AppliedAt time.Time `json:"applied_at,omitzero"`
}

// healthState is the mutable Health behind its own lock: the reconciler
// and the pinger write it, API handlers read it, none of them touches the
// gateway's main lock.
type healthState struct {
	mu sync.Mutex
	h  Health
	// applyErr and pingErr are kept apart so a good ping does not hide a
	// configuration that failed to apply, and the reverse.
	applyErr, pingErr error
}

// Health returns a copy of the gateway's configuration health.
func (g *Gateway) Health() Health {
	g.health.mu.Lock()
	defer g.health.mu.Unlock()
	h := g.health.h
	if h.Source == "" {
		h.Source = SourceFile
	}
	return h
}

func (s *healthState) update(f func(h *Health)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.h)
}

// setErrors records the apply and ping outcomes; LastError shows the
// apply error first, since that one means the gateway serves an old
// configuration.
func (s *healthState) setErrors(apply, ping *error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if apply != nil {
		s.applyErr = *apply
	}
	if ping != nil {
		s.pingErr = *ping
		s.h.StoreReachable = *ping == nil
	}
	prev := s.h.LastError
	switch {
	case s.applyErr != nil:
		s.h.LastError = s.applyErr.Error()
	case s.pingErr != nil:
		s.h.LastError = s.pingErr.Error()
	default:
		s.h.LastError = ""
	}
	if s.h.LastError != "" && s.h.LastError != prev {
		s.h.LastErrorAt = time.Now()
	}
}
