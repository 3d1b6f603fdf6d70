package target

import (
	"sync"
	"time"
)

// logLimiter keeps a flood from flooding the log: one line per key (an
// event and its source) per interval; the lines in between are counted
// and the count rides on the next line that goes out.
type logLimiter struct {
	every time.Duration

	mu   sync.Mutex
	keys map[string]*limitedKey
}

type limitedKey struct {
	last       time.Time
	suppressed uint64
}

// Caps of logLimiter: the table of keys is itself bounded, so many
// sources cannot grow it without end; past the cap every new key shares
// one entry.
const (
	logLimitEvery   = 5 * time.Second
	maxLogLimitKeys = 1024
	logOverflowKey  = "*"
)

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, keys: map[string]*limitedKey{}}
}

// allow reports whether a line for key may be logged now, and how many
// were suppressed since the last one that was.
func (l *logLimiter) allow(key string, now time.Time) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.keys[key]
	if k == nil {
		if len(l.keys) >= maxLogLimitKeys {
			for name, e := range l.keys {
				if now.Sub(e.last) >= l.every && e.suppressed == 0 {
					delete(l.keys, name)
				}
			}
		}
		if len(l.keys) >= maxLogLimitKeys {
			key = logOverflowKey
			k = l.keys[key]
		}
		if k == nil {
			k = &limitedKey{}
			l.keys[key] = k
			k.last = now
			return true, 0
		}
	}
	if now.Sub(k.last) < l.every {
		k.suppressed++
		return false, 0
	}
	n := k.suppressed
	k.last, k.suppressed = now, 0
	return true, n
}
