//go:build rbd

// C side of the asynchronous librbd calls. librbd runs a request's
// completion callback on its own thread (io_context_pool), which also
// dispatches new requests. The callback does not call into Go: a cgo
// callback from a foreign thread must get a P from the Go scheduler and
// blocks that librbd thread while every P is busy, stalling every other
// request of the image behind Go's scheduling. Instead it pushes the
// request on a lock-free list and, when the list was empty, bumps an
// eventfd that one Go goroutine waits on through the netpoller
// (aio.go: reapLoop), which then takes the whole list at once. A request
// submitted while no other is in flight is "direct": its submitter waits
// on a futex in C and the callback wakes it, one thread hand-off instead
// of the reaper's two (eventfd, then the channel); see aio.go.
#include <errno.h>
#include <stdatomic.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "aio.h"

// done is a Treiber stack of completed requests: callbacks only push and
// the reaper only takes everything (exchange), so there is no ABA.
static _Atomic(struct rbdgw_aio *) done;
// taken: requests the reaper took from done and has not handed out yet
// (more than fit its batch). Reaper only.
static struct rbdgw_aio *taken;
static int efd = -1;

// rbdgw_aio_init creates the eventfd and returns it, or -errno. Called
// once, before the first request.
int rbdgw_aio_init(void) {
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return efd < 0 ? -errno : efd;
}

static void rbdgw_aio_cb(rbd_completion_t c, void *arg) {
	struct rbdgw_aio *a = arg;
	a->ret = (int64_t)rbd_aio_get_return_value(c);
	rbd_aio_release(c);
	if (a->direct) {
		atomic_store_explicit(&a->done, 1, memory_order_release);
		// a may be reused once done is seen: only its address is used
		// below, and a stray wake-up of a later waiter on it re-checks.
		syscall(SYS_futex, &a->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		return;
	}
	struct rbdgw_aio *old = atomic_load_explicit(&done, memory_order_relaxed);
	do {
		a->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&done, &old, a, memory_order_release, memory_order_relaxed));
	if (old == NULL) {
		// The reaper drains the list until it is empty before it waits,
		// so only a push onto an empty list needs to wake it.
		uint64_t one = 1;
		ssize_t n;
		do {
			n = write(efd, &one, sizeof one);
		} while (n < 0 && errno == EINTR);
	}
}

int rbdgw_aio_completion(struct rbdgw_aio *a, rbd_completion_t *c) {
	return rbd_aio_create_completion(a, rbdgw_aio_cb, c);
}

// rbdgw_aio_reap hands out up to max completed requests (slot id and
// value) and returns how many; 0 means none is waiting.
int rbdgw_aio_reap(uint32_t *ids, int64_t *rets, int max) {
	if (taken == NULL) {
		taken = atomic_exchange_explicit(&done, NULL, memory_order_acquire);
	}
	int n = 0;
	while (taken != NULL && n < max) {
		ids[n] = taken->id;
		rets[n] = taken->ret;
		// Step past it before Go sees it: Go may reuse it at once.
		taken = taken->next;
		n++;
	}
	return n;
}

// rbdgw_aio_wait blocks until the direct request a completed.
void rbdgw_aio_wait(struct rbdgw_aio *a) {
	while (atomic_load_explicit(&a->done, memory_order_acquire) == 0) {
		syscall(SYS_futex, &a->done, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	}
}
