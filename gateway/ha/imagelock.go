package ha

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Flusher is the part of a backend a handoff needs.
type Flusher interface {
	Flush(ctx context.Context) error
}

// FileImage is the ImageLock of a file image shared by gateways on one
// machine (the embedded default's multipath). A file has no lock another
// process can break, so nothing stops a stale owner at the storage:
// safety comes from the lease - an owner serves only while its lease is
// certainly valid (Membership.Valid), and another claims only after etcd
// expired it. The flock on the file makes a graceful handoff wait until
// the old owner really let go; a fencing takeover goes ahead without it,
// since the old owner may be stopped (SIGSTOP) with the lock held.
//
// Open the backend itself with rbdlun.FileOptions.NoLock: every gateway
// keeps the file open.
type FileImage struct {
	Path    string
	Backend Flusher

	mu sync.Mutex
	f  *os.File // holds the flock while owned; guarded by mu
}

func (fi *FileImage) Acquire(_ context.Context, fence bool) error {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	if fi.f != nil {
		return nil
	}
	f, err := os.Open(fi.Path)
	if err != nil {
		return fmt.Errorf("ha: image %s: %w", fi.Path, err)
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	switch {
	case err == nil:
		fi.f = f
		return nil
	case errors.Is(err, unix.EWOULDBLOCK) && fence:
		// The old owner's lease expired but its process holds the lock:
		// the lease is the fence; serve without the flock.
		f.Close()
		return nil
	default:
		f.Close()
		return fmt.Errorf("ha: image %s is still held by its previous owner: %w", fi.Path, err)
	}
}

func (fi *FileImage) Release(ctx context.Context) error {
	if err := fi.Backend.Flush(ctx); err != nil {
		return err
	}
	fi.mu.Lock()
	defer fi.mu.Unlock()
	if fi.f != nil {
		fi.f.Close() // drops the flock
		fi.f = nil
	}
	return nil
}

func (*FileImage) Fences() bool { return false }
