package config

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrClosed is returned by a store's methods after Close.
var ErrClosed = errors.New("config store closed")

// Pinger is implemented by stores that can tell whether they are reachable
// without reading the whole configuration (both of ours do). A gateway's
// health report uses it.
type Pinger interface {
	// Ping returns nil when the store answers a linearizable read, else
	// an error wrapping ErrUnavailable (or ErrClosed).
	Ping(ctx context.Context) error
}

// MemStore is the in-memory Store: the same key layout, validation, epochs
// and watch semantics as the etcd store, in one process. It is for tests of
// the packages above config (which then need no etcd) and must not be used for a
// real cluster: nothing survives the process.
//
// SetUnavailable makes it behave like an etcd cluster without quorum, so
// tests can see what a gateway does when it loses its store.
type MemStore struct {
	mu          sync.Mutex
	keys        map[string][]byte // the etcd store's layout, values as JSON
	epoch       int64
	changed     chan struct{} // closed and replaced at every change
	unavailable bool
	closed      bool
	dec         keyDecoder
}

var (
	_ Store  = (*MemStore)(nil)
	_ Pinger = (*MemStore)(nil)
)

// NewMemStore returns a store holding the cluster part of initial (see
// Config.Cluster), at epoch 1. initial is not validated: tests may start
// from any value, and the first Update validates.
func NewMemStore(initial Config) *MemStore {
	c := initial.Cluster()
	c.Sort()
	keys, err := encodeKeys(&c, nil)
	if err != nil {
		// Only a configuration with two objects of one name gets here.
		panic(fmt.Sprintf("config: NewMemStore: %v", err))
	}
	return &MemStore{keys: keys, epoch: 1, changed: make(chan struct{})}
}

// SetUnavailable cuts the store off (true) or restores it (false). While
// cut off, Get, Update and Ping fail with ErrUnavailable, and watchers get
// nothing; restored, watchers receive the configuration they missed.
func (s *MemStore) SetUnavailable(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unavailable = down
	s.broadcast()
}

// broadcast wakes watchers. Caller holds mu.
func (s *MemStore) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// state returns a copy of the keys, the epoch and the channel closed at
// the next change, or the reason the store cannot answer.
func (s *MemStore) state() (map[string][]byte, int64, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, 0, nil, ErrClosed
	case s.unavailable:
		return nil, 0, s.changed, fmt.Errorf("%w: in-memory store set unavailable", ErrUnavailable)
	}
	keys := make(map[string][]byte, len(s.keys))
	for k, v := range s.keys {
		keys[k] = v // values are never modified in place
	}
	return keys, s.epoch, s.changed, nil
}

// Get returns the configuration and its epoch.
func (s *MemStore) Get(ctx context.Context) (Config, int64, error) {
	if err := ctx.Err(); err != nil {
		return Config{}, 0, err
	}
	keys, epoch, _, err := s.state()
	if err != nil {
		return Config{}, 0, err
	}
	c, err := s.dec.decode(keys)
	return c, epoch, err
}

// Update applies fn as Store.Update says: optimistic, like the etcd store,
// so fn runs without the store's lock and may be called more than once.
func (s *MemStore) Update(ctx context.Context, fn func(*Config) error) (int64, error) {
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		keys, epoch, _, err := s.state()
		if err != nil {
			return 0, err
		}
		next, put, del, err := s.dec.planUpdate(keys, fn)
		if err != nil || len(put)+len(del) == 0 {
			return epoch, err
		}
		s.mu.Lock()
		if s.epoch != epoch || s.closed || s.unavailable {
			// Someone wrote meanwhile (or the store went away): read again.
			s.mu.Unlock()
			continue
		}
		for _, k := range put {
			s.keys[k] = next[k]
		}
		for _, k := range del {
			delete(s.keys, k)
		}
		s.epoch++
		epoch = s.epoch
		s.broadcast()
		s.mu.Unlock()
		return epoch, nil
	}
}

// planUpdate decodes the current keys, applies fn and PrepareUpdate to a
// copy, and returns the new keys with those to put and to delete: the
// part of Update both stores share.
func (d *keyDecoder) planUpdate(keys map[string][]byte, fn func(*Config) error) (next map[string][]byte, put, del []string, err error) {
	old, err := d.decode(keys)
	if err != nil {
		return nil, nil, nil, err
	}
	c := old.Clone()
	if err := fn(&c); err != nil {
		return nil, nil, nil, err
	}
	if err := PrepareUpdate(old, &c); err != nil {
		return nil, nil, nil, err
	}
	if next, err = encodeKeys(&c, d.box); err != nil {
		return nil, nil, nil, err
	}
	put, del = keyDiff(keys, next)
	return next, put, del, nil
}

// Watch sends the configuration whenever the epoch passes the last one
// sent (starting after `after`).
func (s *MemStore) Watch(ctx context.Context, after int64) <-chan Snapshot {
	out := newLatest()
	go func() {
		defer out.close()
		for {
			keys, epoch, changed, err := s.state()
			if errors.Is(err, ErrClosed) {
				return
			}
			if err == nil && epoch > after {
				c, derr := s.dec.decode(keys)
				if derr == nil {
					out.put(Snapshot{Config: c, Epoch: epoch})
					after = epoch
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	}()
	return out.ch
}

// Ping reports whether the store is reachable.
func (s *MemStore) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, _, _, err := s.state()
	return err
}

// Close ends every watch; later calls fail with ErrClosed.
func (s *MemStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.broadcast()
	}
	return nil
}

// latest is a watch channel that holds only the newest snapshot: the
// producer never blocks on a slow reader, and the reader, when it gets to
// read, gets the newest configuration (Store.Watch's contract).
type latest struct{ ch chan Snapshot }

func newLatest() *latest { return &latest{ch: make(chan Snapshot, 1)} }

// put replaces an unread snapshot with s. Only one goroutine puts.
func (l *latest) put(s Snapshot) {
	for {
		select {
		case l.ch <- s:
			return
		default:
		}
		select {
		case <-l.ch: // drop the older unread snapshot
		default:
		}
	}
}

// close ends the watch; an unread snapshot is still delivered first.
func (l *latest) close() { close(l.ch) }
