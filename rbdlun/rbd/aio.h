#include <stdint.h>
#include <rbd/librbd.h>

// rbdgw_aio is the C side of one in-flight request: librbd's completion
// callback fills it and queues it for Go. Allocated once per request slot
// and reused, so a request allocates nothing here.
struct rbdgw_aio {
	struct rbdgw_aio *next; // link in the completed list
	uint32_t id;            // the Go request slot (aio.go)
	int64_t ret;            // the completion's value
	uint64_t mismatch;      // compare-and-write: written by librbd
	uint32_t direct;        // set before submit: wake the submitter itself
	_Atomic uint32_t done;  // direct requests: futex word, 1 once complete
};

int rbdgw_aio_init(void);
int rbdgw_aio_completion(struct rbdgw_aio *a, rbd_completion_t *c);
int rbdgw_aio_reap(uint32_t *ids, int64_t *rets, int max);
void rbdgw_aio_wait(struct rbdgw_aio *a);
