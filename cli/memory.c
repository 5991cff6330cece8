/* See memory.h for why. */
#include "memory.h"

#include <event2/event.h>
#include <stdlib.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Buffers from this size up (message data past its first 64 KiB) get their
 * own mapping and go back to the kernel when freed. Setting it also stops
 * glibc from raising it. */
#define MMAP_THRESHOLD_BYTES (128 * 1024)

struct memory {
    struct event *trim;
};

#ifdef __GLIBC__
static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    /* Hands back every whole free page of the heap, not only its top. */
    malloc_trim(0);
}
#endif

struct memory *memory_start(struct event_base *base, unsigned seconds)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    if (seconds == 0)
        return NULL;
    struct memory *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->trim = event_new(base, -1, EV_PERSIST, on_trim, NULL);
    struct timeval every = {.tv_sec = (time_t)seconds};
    if (!m->trim || event_add(m->trim, &every) != 0) {
        memory_free(m);
        return NULL;
    }
    return m;
#else
    (void)base;
    (void)seconds;
    return NULL;
#endif
}

void memory_free(struct memory *m)
{
    if (!m)
        return;
    if (m->trim)
        event_free(m->trim);
    free(m);
}
