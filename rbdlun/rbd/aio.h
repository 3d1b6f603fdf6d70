#include <stdint.h>
#include <rbd/librbd.h>

int rbdgw_aio_completion(uintptr_t h, rbd_completion_t *c);
