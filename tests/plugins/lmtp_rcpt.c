/*
 * Test-only plugin for tests/integration/test_lmtp.py: per-recipient answers
 * in LMTP (`smtpd -n --lmtp -c tp_lmtp_rcpt.so 127.0.0.1:0 [MS]`), as a
 * mailbox store gives them (RFC 2033 4.2).
 *
 * on_message answers recipients whose local part starts with "now" at once
 * (250 2.1.5 "delivered now"), then returns SMTPD_PENDING and arms a timer
 * of MS milliseconds (default 200). When it fires, "reject..." gets 550
 * 5.1.1, "full..." 452 4.2.2, "ok..." 250 2.0.0 "delivered later", each with
 * smtpd_reply_rcpt(); if any recipient is left without an answer ("same..."
 * and others), one smtpd_reply() gives them 250 2.0.0 "delivered with the
 * message's answer". A second answer for a recipient must be refused; if
 * it is not, the plugin logs "tp_lmtp_rcpt: second answer taken". on_close
 * cancels a timer still pending.
 */
#include "later.h"
#include "smtpd.h"

#include <event2/event.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* One session's message waiting for its answers (its session data). */
struct pending {
    struct event *timer;
    struct smtpd_session *s;
    size_t n;
    char **rcpts; /* copies of the forward-paths: the message is the library's */
    bool *answered;
};

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void pending_free(struct pending *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->rcpts[i]);
    free(p->rcpts);
    free(p->answered);
    if (p->timer)
        event_free(p->timer);
    free(p);
}

static void answer(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    (void)fd;
    (void)what;
    struct smtpd_session *s = p->s;
    smtpd_session_set_data(s, NULL);
    bool left = false;
    for (size_t i = 0; i < p->n; i++) {
        const char *r = p->rcpts[i];
        if (p->answered[i])
            continue;
        if (starts(r, "reject"))
            smtpd_reply_rcpt(s, i, 550, "5.1.1", "no such mailbox");
        else if (starts(r, "full"))
            smtpd_reply_rcpt(s, i, 452, "4.2.2", "mailbox full");
        else if (starts(r, "ok"))
            smtpd_reply_rcpt(s, i, 250, "2.0.0", "delivered later");
        else
            left = true;
    }
    if (left)
        smtpd_reply(s, 250, "2.0.0", "delivered with the message's answer");
    pending_free(p);
}

static enum smtpd_verdict on_message(void *arg, struct smtpd_session *s,
                                     const struct smtpd_message *m)
{
    struct later *l = arg;
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return SMTPD_DONE;
    p->s = s;
    p->rcpts = calloc(m->n_forward_paths, sizeof(char *));
    p->answered = calloc(m->n_forward_paths, sizeof(bool));
    p->timer = evtimer_new(l->base, answer, p);
    if (!p->rcpts || !p->answered || !p->timer) {
        pending_free(p);
        smtpd_reply(s, 451, "4.3.0", NULL);
        return SMTPD_DONE;
    }
    size_t n_now = 0;
    for (size_t i = 0; i < m->n_forward_paths; i++, p->n++) {
        if (!(p->rcpts[i] = strdup(m->forward_paths[i]))) {
            pending_free(p);
            smtpd_reply(s, 451, "4.3.0", NULL);
            return SMTPD_DONE;
        }
        if (starts(m->forward_paths[i], "now")) {
            p->answered[i] = smtpd_reply_rcpt(s, i, 250, "2.1.5", "delivered now") == SMTPD_OK;
            n_now += p->answered[i];
            if (smtpd_reply_rcpt(s, i, 550, NULL, NULL) != SMTPD_ERR_STATE)
                smtpd_session_log(s, SMTPD_LOG_INFO, "tp_lmtp_rcpt: second answer taken");
        }
    }
    if (n_now == p->n) {
        /* Every recipient is answered: so is the message. */
        pending_free(p);
        return SMTPD_DONE;
    }
    if (evtimer_add(p->timer, &l->delay) != 0) {
        pending_free(p);
        smtpd_reply(s, 451, "4.3.0", NULL);
        return SMTPD_DONE;
    }
    smtpd_session_set_data(s, p);
    return SMTPD_PENDING;
}

static void on_close(void *arg, struct smtpd_session *s)
{
    (void)arg;
    struct pending *p = smtpd_session_data(s);
    if (p) {
        smtpd_session_set_data(s, NULL);
        pending_free(p);
    }
}

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin);

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin)
{
    if (!later_new(host, plugin, 200, "tp_lmtp_rcpt: the argument is the delay in milliseconds"))
        return -1;
    plugin->handler.on_message = on_message;
    plugin->handler.on_close = on_close;
    return 0;
}
