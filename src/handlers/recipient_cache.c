/* Mailman's recent answers; see recipient_cache.h. The index is libc's
 * tsearch(3) tree; a ring in insertion order says what to forget first. */
#include "recipient_cache.h"

#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct answer {
    char *addr;
    bool mailmans;
    time_t when;
};

struct recipient_cache {
    void *root; /* tsearch tree of struct answer *, by addr */
    struct answer **ring;
    size_t cap, next; /* ring slots, and where the next answer goes */
    unsigned ttl;
};

static int by_addr(const void *a, const void *b)
{
    return strcasecmp(((const struct answer *)a)->addr, ((const struct answer *)b)->addr);
}

struct recipient_cache *recipient_cache_new(size_t cap, unsigned ttl)
{
    struct recipient_cache *rc = calloc(1, sizeof(*rc));
    if (!rc)
        return NULL;
    rc->ring = calloc(cap ? cap : 1, sizeof(struct answer *));
    if (!rc->ring) {
        free(rc);
        return NULL;
    }
    rc->cap = cap ? cap : 1;
    rc->ttl = ttl;
    return rc;
}

static void forget(struct recipient_cache *rc, struct answer *a)
{
    tdelete(a, &rc->root, by_addr);
    free(a->addr);
    free(a);
}

void recipient_cache_free(struct recipient_cache *rc)
{
    if (!rc)
        return;
    for (size_t i = 0; i < rc->cap; i++)
        if (rc->ring[i])
            forget(rc, rc->ring[i]);
    free(rc->ring);
    free(rc);
}

static struct answer *find(struct recipient_cache *rc, const char *addr)
{
    struct answer key = {.addr = (char *)addr};
    struct answer **found = tfind(&key, &rc->root, by_addr);
    return found ? *found : NULL;
}

void recipient_cache_put(struct recipient_cache *rc, const char *addr, bool mailmans, time_t now)
{
    struct answer *a = find(rc, addr);
    if (a) {
        a->mailmans = mailmans;
        a->when = now;
        return;
    }
    a = calloc(1, sizeof(*a));
    if (!a || !(a->addr = strdup(addr))) {
        free(a);
        return; /* out of memory: this answer is not remembered */
    }
    a->mailmans = mailmans;
    a->when = now;
    if (!tsearch(a, &rc->root, by_addr)) {
        free(a->addr);
        free(a);
        return;
    }
    if (rc->ring[rc->next])
        forget(rc, rc->ring[rc->next]);
    rc->ring[rc->next] = a;
    rc->next = (rc->next + 1) % rc->cap;
}

int recipient_cache_get(struct recipient_cache *rc, const char *addr, time_t now)
{
    const struct answer *a = find(rc, addr);
    if (!a || now - a->when > (time_t)rc->ttl || now < a->when)
        return -1;
    return a->mailmans ? 1 : 0;
}
