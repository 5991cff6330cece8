/* AUTH failures per client address; see auth_guard.h. */
#include "auth_guard.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    char addr[64]; /* "" when free */
    unsigned failures;
    time_t last;
};

struct auth_guard {
    struct slot slots[AUTH_GUARD_SLOTS];
};

struct auth_guard *auth_guard_new(void)
{
    return calloc(1, sizeof(struct auth_guard));
}

void auth_guard_free(struct auth_guard *g)
{
    free(g);
}

static const struct slot *find(const struct auth_guard *g, const char *addr)
{
    for (size_t i = 0; i < AUTH_GUARD_SLOTS; i++)
        if (g->slots[i].addr[0] && strcmp(g->slots[i].addr, addr) == 0)
            return &g->slots[i];
    return NULL;
}

static bool recent(const struct slot *sl, time_t now)
{
    return now - sl->last < AUTH_GUARD_WINDOW;
}

unsigned auth_guard_failures(const struct auth_guard *g, const char *addr, time_t now)
{
    const struct slot *sl = find(g, addr);
    return sl && recent(sl, now) ? sl->failures : 0;
}

void auth_guard_failed(struct auth_guard *g, const char *addr, time_t now)
{
    struct slot *sl = (struct slot *)find(g, addr);
    if (!sl) {
        /* A free slot, else the one whose last failure is oldest. */
        sl = &g->slots[0];
        for (size_t i = 0; i < AUTH_GUARD_SLOTS && sl->addr[0]; i++)
            if (!g->slots[i].addr[0] || g->slots[i].last < sl->last)
                sl = &g->slots[i];
        snprintf(sl->addr, sizeof(sl->addr), "%s", addr);
        sl->failures = 0;
    } else if (!recent(sl, now)) {
        sl->failures = 0;
    }
    sl->failures++;
    sl->last = now;
}
