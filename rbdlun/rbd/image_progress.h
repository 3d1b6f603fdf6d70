#include <stdint.h>
#include <rbd/librbd.h>

int rbdgw_flatten(rbd_image_t img, uintptr_t h);
int rbdgw_resize(rbd_image_t img, uint64_t size, int allow_shrink, uintptr_t h);
int rbdgw_rollback(rbd_image_t img, const char *snap, uintptr_t h);
