//go:build rbd

// C side of the asynchronous librbd calls: every request gets a completion
// whose callback hands the result to Go (rbdgwAioDone, aio.go). librbd
// calls it on one of its own threads once the OSDs have answered.
#include <stdint.h>
#include <rbd/librbd.h>
#include "_cgo_export.h"

static void rbdgw_aio_cb(rbd_completion_t c, void *arg) {
	int64_t r = (int64_t)rbd_aio_get_return_value(c);
	rbd_aio_release(c);
	rbdgwAioDone((uintptr_t)arg, r);
}

int rbdgw_aio_completion(uintptr_t h, rbd_completion_t *c) {
	return rbd_aio_create_completion((void *)h, rbdgw_aio_cb, c);
}
