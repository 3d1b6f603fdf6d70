//go:build rbd

package rbd

import (
	"context"
	"fmt"

	"github.com/ceph/go-ceph/rbd"
)

// mappedWindow bounds one allocation query: GET LBA STATUS may ask about
// the whole image, but one answer only needs the first run of same state.
const mappedWindow = 1 << 30

// Mapped implements scsi.AllocationMapper with rbd_diff_iterate2 against
// the image's beginning (no snapshot): data extents are allocated, the
// gaps between them are not. It reports the run that starts at off.
func (b *Backend) Mapped(ctx context.Context, off, limit int64) (bool, int64, error) {
	if limit <= 0 {
		return false, 0, fmt.Errorf("rbd: mapped: limit %d", limit)
	}
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	if limit > mappedWindow {
		limit = mappedWindow
	}
	if b.fenced.Load() {
		return false, 0, errFenced("mapped")
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.open {
		return false, 0, fmt.Errorf("rbd: mapped: %s is not open", b.spec)
	}
	end := off + limit
	var (
		mapped bool
		runEnd = off // end of the run starting at off found so far
		seen   bool
	)
	const stop = -125 // -ECANCELED: ends the iteration early
	err := b.img.DiffIterate(rbd.DiffIterateConfig{
		Offset:        uint64(off),
		Length:        uint64(limit),
		IncludeParent: rbd.IncludeParent,
		WholeObject:   rbd.DisableWholeObject,
		Callback: func(eo, el uint64, exists int, _ interface{}) int {
			s, e := int64(eo), int64(eo+el)
			if exists == 0 {
				return 0 // a hole reported as such
			}
			switch {
			case !seen && s > off:
				// Unallocated from off up to the first extent.
				runEnd, seen = s, true
				return stop
			case !seen:
				mapped, runEnd, seen = true, e, true
				return 0
			case mapped && s == runEnd:
				runEnd = e // contiguous data extent: same run
				return 0
			default:
				return stop
			}
		},
	})
	if err != nil && errno(err) != 125 {
		if e := errno(err); e != 0 {
			return false, 0, b.mapErr("mapped", e)
		}
		return false, 0, fmt.Errorf("rbd: mapped %s: %w", b.spec, err)
	}
	if !seen {
		runEnd = end // nothing allocated in the window
	}
	if runEnd > end {
		runEnd = end
	}
	if runEnd <= off {
		runEnd = off + 1
	}
	return mapped, runEnd - off, nil
}
