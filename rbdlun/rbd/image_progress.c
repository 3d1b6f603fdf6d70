//go:build rbd

// C side of the long librbd operations that report progress (flatten,
// resize, rollback): librbd calls rbdgw_progress_cb between objects,
// which hands the numbers to Go (rbdgwProgress, image_progress.go). A
// negative return from it makes librbd stop the operation there.
#include <stdint.h>
#include <rbd/librbd.h>
#include "_cgo_export.h"
#include "image_progress.h"

static int rbdgw_progress_cb(uint64_t done, uint64_t total, void *arg) {
	return rbdgwProgress((uintptr_t)arg, done, total);
}

int rbdgw_flatten(rbd_image_t img, uintptr_t h) {
	return rbd_flatten_with_progress(img, rbdgw_progress_cb, (void *)h);
}

int rbdgw_resize(rbd_image_t img, uint64_t size, int allow_shrink, uintptr_t h) {
	return rbd_resize2(img, size, allow_shrink != 0, rbdgw_progress_cb, (void *)h);
}

int rbdgw_rollback(rbd_image_t img, const char *snap, uintptr_t h) {
	return rbd_snap_rollback_with_progress(img, snap, rbdgw_progress_cb, (void *)h);
}
