package target

import (
	"log/slog"
	"strings"
	"sync"
	"time"
)

// authGuard slows CHAP guessing. It keeps a record per (initiator name,
// source address), and one per source address across names, of the CHAP
// responses that failed. After a failure the failing Login Response waits
// a delay that starts at Limits.AuthFailureDelay and doubles with each
// further failure up to Limits.AuthFailureMaxDelay; and no other CHAP
// response of the same key is checked before that delay has passed, so
// guessing over parallel connections gains nothing: a response that
// arrives early is held (without blocking anything but its own
// connection) until its turn, or refused unchecked when its turn is more
// than AuthFailureMaxDelay away. The per-source record lets
// authSourceAllowance failures pass undelayed, so that one initiator's
// mistakes do not slow its neighbours, and then applies the same curve:
// rotating initiator names does not escape the delay.
//
// A success forgets its (name, source) record; any record is forgotten
// authFailureQuiet after its last failure. The table holds at most
// maxAuthRecords records, so it is not itself a way to exhaust memory.
type authGuard struct {
	base, max time.Duration
	log       *slog.Logger

	mu        sync.Mutex
	recs      map[authKey]*authRecord
	lastSweep time.Time
}

// authKey names a record; initiator is "" in a source's record.
type authKey struct {
	initiator string // lower-cased (RFC 7143 4.2.7.2)
	source    string
}

type authRecord struct {
	failures int       // in the current burst
	last     time.Time // last failure
	next     time.Time // no CHAP response of the key is checked before
	// Logging: the first failure of a burst is logged, then one summary
	// line per authLogEvery, and one when the burst ends.
	target   string
	logged   time.Time
	unlogged int
}

const (
	// authSourceAllowance failures from one address, across initiator
	// names, before its own delay starts.
	authSourceAllowance = 10
	authFailureQuiet    = time.Minute
	authLogEvery        = 30 * time.Second
	maxAuthRecords      = 4096
)

func newAuthGuard(l Limits, log *slog.Logger) *authGuard {
	return &authGuard{base: l.AuthFailureDelay, max: l.AuthFailureMaxDelay, log: log, recs: map[authKey]*authRecord{}}
}

// delay is the wait after the n-th failure of a burst.
func (g *authGuard) delay(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := g.base
	for k := 1; k < n && d < g.max; k++ {
		d *= 2
	}
	return min(d, g.max)
}

func (g *authGuard) recDelay(k authKey, r *authRecord) time.Duration {
	if k.initiator == "" {
		return g.delay(r.failures - authSourceAllowance)
	}
	return g.delay(r.failures)
}

func authKeys(initiator, source string) [2]authKey {
	return [2]authKey{{strings.ToLower(initiator), source}, {"", source}}
}

// admit is called before a CHAP response is checked. It returns how long
// the check must wait for its turn and reserves the turn after it; ok is
// false when the turn is too far away and the response is to be refused
// unchecked.
func (g *authGuard) admit(initiator, source string, now time.Time) (wait time.Duration, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweepLocked(now)
	keys := authKeys(initiator, source)
	slot := now
	for _, k := range keys {
		if r := g.recs[k]; r != nil && r.next.After(slot) {
			slot = r.next
		}
	}
	wait = slot.Sub(now)
	if wait > g.max {
		return 0, false
	}
	for _, k := range keys {
		if r := g.recs[k]; r != nil {
			if d := g.recDelay(k, r); d > 0 {
				r.next = slot.Add(d)
			}
		}
	}
	return wait, true
}

// failed records a CHAP response that did not match and returns how long
// the failing Login Response waits.
func (g *authGuard) failed(initiator, source, target, reason string, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweepLocked(now)
	var wait time.Duration
	for _, k := range authKeys(initiator, source) {
		r := g.recordLocked(k, now)
		r.failures++
		r.last = now
		r.target = target
		d := g.recDelay(k, r)
		if n := now.Add(d); n.After(r.next) {
			r.next = n
		}
		wait = max(wait, d)
		g.logFailureLocked(k, r, initiator, source, reason, d, now)
	}
	return wait
}

// succeeded forgets the failures of an initiator name at a source once
// it proved the secret. The source's record stays: a valid login of one
// name must not reset the count of guesses at others.
func (g *authGuard) succeeded(initiator, source string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.recs, authKeys(initiator, source)[0])
}

func (g *authGuard) recordLocked(k authKey, now time.Time) *authRecord {
	if r := g.recs[k]; r != nil {
		return r
	}
	if len(g.recs) >= maxAuthRecords {
		// Full of records that are not quiet: many sources or names are
		// failing at once. Forget an arbitrary eighth of them, so that
		// filling the table costs O(1) per record.
		n := 0
		for k2 := range g.recs {
			delete(g.recs, k2)
			if n++; n >= maxAuthRecords/8 {
				break
			}
		}
	}
	r := &authRecord{}
	g.recs[k] = r
	return r
}

// sweepLocked forgets records quiet for authFailureQuiet, at most once
// per authFailureQuiet/4.
func (g *authGuard) sweepLocked(now time.Time) {
	if now.Sub(g.lastSweep) < authFailureQuiet/4 {
		return
	}
	g.lastSweep = now
	for k, r := range g.recs {
		if now.Sub(r.last) < authFailureQuiet || r.next.After(now) {
			continue
		}
		if k.initiator != "" && r.unlogged > 0 {
			g.log.Warn("iscsi CHAP failures ended", g.who(k, r)...)
		}
		delete(g.recs, k)
	}
}

func (g *authGuard) who(k authKey, r *authRecord) []any {
	args := []any{"source", k.source}
	if k.initiator != "" {
		args = append(args, "initiator", k.initiator, "target", r.target)
	}
	return append(args, "failures", r.failures, "unlogged", r.unlogged)
}

// logFailureLocked logs the first failure of a burst at WARN, then a
// summary at most every authLogEvery. A source's record logs only when
// its own delay starts: many names guessed from one address.
func (g *authGuard) logFailureLocked(k authKey, r *authRecord, initiator, source, reason string, d time.Duration, now time.Time) {
	if k.initiator == "" {
		if r.failures == authSourceAllowance+1 {
			g.log.Warn("iscsi CHAP failures from one address across initiator names: delaying them all",
				"source", source, "failures", r.failures, "delay", d)
		}
		return
	}
	switch {
	case r.failures == 1:
		r.logged = now
		g.log.Warn("iscsi login refused: CHAP authentication failed", "initiator", initiator, "source", source,
			"target", r.target, "reason", reason, "delay", d)
	case now.Sub(r.logged) >= authLogEvery:
		g.log.Warn("iscsi CHAP authentication still failing", "initiator", initiator, "source", source,
			"target", r.target, "failures", r.failures, "since_last_line", r.unlogged+1, "delay", d)
		r.logged, r.unlogged = now, 0
	default:
		r.unlogged++
	}
}
