/*
 * Test-only plugin for tests/integration/test_plugin_loading.py (HooksTest):
 * records what smtpd calls, one line per call, appended to the file named by
 * its first argument (`smtpd -n -c tp_hooks.so 127.0.0.1:0 FILE [MODE]`):
 *
 *   init pid=P version=V argc=N log_level=L
 *   start pid=P arg=ok|wrong listeners=N address=HOST:PORT sessions=N
 *   shutdown pid=P arg=ok|wrong
 *   teardown pid=P arg=ok|wrong
 *
 * start adds an hour-long timer that only shutdown removes: if shutdown were
 * not called at SIGTERM, the event loop would not end. MODE "no_on_message"
 * leaves a handler the library refuses (after init succeeded: teardown is
 * owed, start is not); MODE "init_fails" makes init return -1 (no teardown).
 * Messages are accepted. Init also logs "tp_hooks: loaded" through the host.
 */
#include "smtpd.h"

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct hooks {
    const char *file;
    struct event_base *base;
    struct event *keepalive;
};

/* One line "EVENT pid=P[ arg=ok|wrong]EXTRA", appended (several processes
 * with --workers) and closed at once, so nothing waits in a buffer. */
static void record(const struct hooks *h, const char *event, const void *arg, const char *extra)
{
    FILE *f = fopen(h->file, "a");
    if (!f)
        return;
    fprintf(f, "%s pid=%ld", event, (long)getpid());
    if (arg)
        fprintf(f, " arg=%s", arg == h ? "ok" : "wrong");
    fprintf(f, "%s\n", extra ? extra : "");
    fclose(f);
}

static enum smtpd_verdict on_message(void *arg, struct smtpd_session *s,
                                     const struct smtpd_message *m)
{
    (void)arg;
    (void)s;
    (void)m;
    return SMTPD_DONE;
}

static void keepalive(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void start(void *arg, struct smtpd_server *srv)
{
    struct hooks *h = arg;
    char addr[80] = "none", extra[200];
    smtpd_server_address(srv, 0, addr, sizeof(addr));
    snprintf(extra, sizeof(extra), " listeners=%zu address=%s sessions=%zu",
             smtpd_server_listener_count(srv), addr, smtpd_server_session_count(srv));
    record(h, "start", arg, extra);
    struct timeval hour = {3600, 0};
    h->keepalive = evtimer_new(h->base, keepalive, NULL);
    if (h->keepalive)
        evtimer_add(h->keepalive, &hour);
}

static void shutdown_hook(void *arg)
{
    struct hooks *h = arg;
    record(h, "shutdown", arg, NULL);
    if (h->keepalive)
        event_free(h->keepalive);
    h->keepalive = NULL;
}

static void teardown(void *arg)
{
    struct hooks *h = arg;
    record(h, "teardown", arg, NULL);
    if (h->keepalive)
        event_free(h->keepalive);
    free(h);
}

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin);

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin)
{
    if (host->argc < 1) {
        plugin->error = "tp_hooks needs a FILE argument";
        return -1;
    }
    const char *mode = host->argc > 1 ? host->argv[1] : "";
    struct hooks *h = calloc(1, sizeof(*h));
    if (!h) {
        plugin->error = "out of memory";
        return -1;
    }
    h->file = host->argv[0];
    h->base = host->base;
    char extra[100];
    snprintf(extra, sizeof(extra), " version=%u argc=%d log_level=%d", host->version, host->argc,
             (int)host->log_level);
    record(h, "init", NULL, extra);
    if (host->log)
        host->log(host->log_arg, SMTPD_LOG_INFO, "tp_hooks: loaded");
    plugin->handler.on_message = strcmp(mode, "no_on_message") == 0 ? NULL : on_message;
    plugin->handler.arg = h;
    plugin->start = start;
    plugin->shutdown = shutdown_hook;
    plugin->teardown = teardown;
    if (strcmp(mode, "init_fails") == 0) {
        free(h);
        plugin->error = "tp_hooks: init_fails mode";
        return -1;
    }
    return 0;
}
