/*
 * Test-only plugin for tests/auth/test_later.py: an on_auth that answers
 * late, from a libevent timer on the program's event loop, as a handler
 * asking a remote password service would
 * (`smtpd -n -c tp_auth_later.so --tls-cert C --tls-key K 127.0.0.1:0 [MS]`).
 *
 * on_auth returns SMTPD_PENDING and arms a timer of MS milliseconds (default
 * 1000); when it fires, the answer is 235 for user "alice" with password
 * "s3cret" and 535 5.7.8 otherwise. on_close cancels a timer still pending,
 * so a client that goes away while it waits leaves nothing behind. Messages
 * are accepted, and logged with the identity that sent them:
 * "tp_auth_later: message from alice" (or "from nobody").
 */
#include "later.h"
#include "smtpd.h"

#include <event2/event.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* One session's pending answer (its session data). */
struct pending {
    struct event *timer;
    struct smtpd_session *s;
    bool ok;
};

static void answer(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    (void)fd;
    (void)what;
    struct smtpd_session *s = p->s;
    smtpd_session_set_data(s, NULL);
    event_free(p->timer);
    bool ok = p->ok;
    free(p);
    if (ok)
        smtpd_reply(s, 235, NULL, NULL);
    else
        smtpd_reply(s, 535, "5.7.8", "Authentication credentials invalid");
}

static enum smtpd_verdict on_auth(void *arg, struct smtpd_session *s, const char *mechanism,
                                  const char *identity, const char *password)
{
    struct later *l = arg;
    (void)mechanism;
    struct pending *p = calloc(1, sizeof(*p));
    if (!p) {
        smtpd_reply(s, 454, "4.7.0", "Temporary authentication failure");
        return SMTPD_DONE;
    }
    /* Decided now: the password is wiped once this call returns. */
    p->ok = strcmp(identity, "alice") == 0 && strcmp(password, "s3cret") == 0;
    p->s = s;
    p->timer = evtimer_new(l->base, answer, p);
    if (!p->timer || evtimer_add(p->timer, &l->delay) != 0) {
        if (p->timer)
            event_free(p->timer);
        free(p);
        smtpd_reply(s, 454, "4.7.0", "Temporary authentication failure");
        return SMTPD_DONE;
    }
    smtpd_session_set_data(s, p);
    return SMTPD_PENDING;
}

static void on_close(void *arg, struct smtpd_session *s)
{
    (void)arg;
    struct pending *p = smtpd_session_data(s);
    if (!p)
        return;
    smtpd_session_set_data(s, NULL);
    event_free(p->timer);
    free(p);
    smtpd_session_log(s, SMTPD_LOG_INFO, "tp_auth_later: pending answer cancelled");
}

static enum smtpd_verdict on_message(void *arg, struct smtpd_session *s,
                                     const struct smtpd_message *m)
{
    (void)arg;
    smtpd_session_log(s, SMTPD_LOG_INFO, "tp_auth_later: message from %s",
                      m->auth_identity ? m->auth_identity : "nobody");
    return SMTPD_DONE;
}

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin);

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin)
{
    if (!later_new(host, plugin, 1000, "tp_auth_later: the argument is the delay in milliseconds"))
        return -1;
    plugin->handler.on_auth = on_auth;
    plugin->handler.on_close = on_close;
    plugin->handler.on_message = on_message;
    return 0;
}
