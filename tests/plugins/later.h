/*
 * What the test plugins that answer from a timer share: the event loop and
 * the delay, from the plugin's one optional argument (milliseconds, 0 to
 * 600000). later_new() fills plugin->handler.arg and plugin->teardown, or
 * plugin->error (returning NULL) for a bad argument or no memory.
 */
#ifndef TP_LATER_H
#define TP_LATER_H

#include "smtpd.h"

#include <event2/event.h>

#include <stdlib.h>

struct later {
    struct event_base *base;
    struct timeval delay;
};

static inline void later_free(void *arg)
{
    free(arg);
}

static inline struct later *later_new(const struct smtpd_plugin_host *host,
                                      struct smtpd_plugin *plugin, long default_ms,
                                      const char *usage)
{
    long ms = default_ms;
    if (host->argc > 0) {
        char *end;
        ms = strtol(host->argv[0], &end, 10);
        if (*end || ms < 0 || ms > 600000) {
            plugin->error = usage;
            return NULL;
        }
    }
    struct later *l = calloc(1, sizeof(*l));
    if (!l) {
        plugin->error = "out of memory";
        return NULL;
    }
    l->base = host->base;
    l->delay.tv_sec = ms / 1000;
    l->delay.tv_usec = (ms % 1000) * 1000;
    plugin->handler.arg = l;
    plugin->teardown = later_free;
    return l;
}

#endif
