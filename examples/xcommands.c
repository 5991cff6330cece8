/*
 * An example plugin with commands of its own, the C form of a subclass of
 * Python smtpd's SMTPChannel: `smtpd -n -c build/examples/xcommands.so
 * localhost:8025`.
 *
 *   XSTATE           any time: one 250 line per fact of the session (the
 *                    greeting, the reverse-path, each forward-path so far,
 *                    the state); advertised in EHLO.
 *   XDELAY <s>       answers 250 after s seconds (0-60), from a libevent
 *                    timer: the other clients are served meanwhile.
 *   VRFY <anything>  replaced: 252 quoting its argument.
 *   DATA             refused (554 5.7.1) through on_data when a forward-path
 *                    starts with "nodata@".
 * Messages are accepted and discarded, with a log line each.
 */
#include "smtpd.h"

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XDELAY_MAX 60

/* The plugin's state: the event loop its timers run on. */
struct xcommands {
    struct event_base *base;
};

/* A session's pending XDELAY: its timer, cancelled if the client leaves. */
struct delay {
    struct event *ev;
    struct smtpd_session *s;
};

static enum smtpd_verdict xstate(void *arg, struct smtpd_session *s, const char *params, size_t len)
{
    (void)arg;
    (void)params;
    (void)len;
    static const char *const states[] = {"command", "data", "closed"};
    char text[64][300];
    const char *lines[64];
    size_t n = 0;
    const char *helo = smtpd_session_helo(s);
    if (helo)
        snprintf(text[n++], sizeof(text[0]), "greeting: %s %s",
                 smtpd_session_esmtp(s) ? "EHLO" : "HELO", helo);
    else
        snprintf(text[n++], sizeof(text[0]), "greeting: none");
    const char *rp = smtpd_session_reverse_path(s);
    if (rp)
        snprintf(text[n++], sizeof(text[0]), "reverse-path: <%s>", rp);
    else
        snprintf(text[n++], sizeof(text[0]), "reverse-path: none");
    size_t nfp;
    const char *const *fp = smtpd_session_forward_paths(s, &nfp);
    for (size_t i = 0; i < nfp && n < 63; i++)
        snprintf(text[n++], sizeof(text[0]), "forward-path: <%s>", fp[i]);
    snprintf(text[n++], sizeof(text[0]), "state: %s", states[smtpd_session_state(s)]);
    for (size_t i = 0; i < n; i++)
        lines[i] = text[i];
    smtpd_reply_lines(s, 250, "2.0.0", lines, n);
    return SMTPD_DONE;
}

static void delay_free(struct delay *d)
{
    event_free(d->ev);
    free(d);
}

static void delay_done(evutil_socket_t fd, short what, void *arg)
{
    struct delay *d = arg;
    (void)fd;
    (void)what;
    struct smtpd_session *s = d->s;
    smtpd_session_set_data(s, NULL);
    delay_free(d);
    smtpd_reply(s, 250, "2.0.0", "Delayed OK");
}

static enum smtpd_verdict xdelay(void *arg, struct smtpd_session *s, const char *params, size_t len)
{
    struct xcommands *x = arg;
    char num[8];
    char *end;
    if (len == 0 || len >= sizeof(num)) {
        smtpd_reply(s, 501, "5.5.4", "Syntax: XDELAY <seconds>");
        return SMTPD_DONE;
    }
    memcpy(num, params, len);
    num[len] = '\0';
    long secs = strtol(num, &end, 10);
    if (*end || secs < 0 || secs > XDELAY_MAX) {
        smtpd_reply(s, 501, "5.5.4", "Syntax: XDELAY <seconds> (0 to 60)");
        return SMTPD_DONE;
    }
    struct delay *d = calloc(1, sizeof(*d));
    if (d)
        d->ev = evtimer_new(x->base, delay_done, d);
    struct timeval tv = {secs, 0};
    if (!d || !d->ev || evtimer_add(d->ev, &tv) != 0) {
        if (d && d->ev)
            event_free(d->ev);
        free(d);
        smtpd_reply(s, 451, "4.3.0", "Error: local error in processing");
        return SMTPD_DONE;
    }
    d->s = s;
    smtpd_session_set_data(s, d);
    return SMTPD_PENDING; /* delay_done() answers */
}

static enum smtpd_verdict vrfy(void *arg, struct smtpd_session *s, const char *params, size_t len)
{
    (void)arg;
    char text[300];
    snprintf(text, sizeof(text), "Cannot VRFY \"%.*s\", but will take mail for it",
             (int)(len < 200 ? len : 200), params);
    smtpd_reply(s, 252, "2.5.2", text);
    return SMTPD_DONE;
}

static enum smtpd_verdict on_data(void *arg, struct smtpd_session *s)
{
    (void)arg;
    size_t n;
    const char *const *fp = smtpd_session_forward_paths(s, &n);
    for (size_t i = 0; i < n; i++)
        if (strncmp(fp[i], "nodata@", 7) == 0) {
            smtpd_reply(s, 554, "5.7.1", "No data accepted for nodata@ recipients");
            return SMTPD_DONE;
        }
    return SMTPD_DONE; /* the 354 goes out */
}

static enum smtpd_verdict on_message(void *arg, struct smtpd_session *s,
                                     const struct smtpd_message *m)
{
    (void)arg;
    smtpd_session_log(s, SMTPD_LOG_INFO, "xcommands: took %zu bytes", m->data_len);
    return SMTPD_DONE;
}

/* The client left: a pending XDELAY's answer is not to be given. */
static void on_close(void *arg, struct smtpd_session *s)
{
    (void)arg;
    struct delay *d = smtpd_session_data(s);
    if (d)
        delay_free(d);
}

static void teardown(void *arg)
{
    free(arg);
}

static const struct smtpd_command commands[] = {
    {.verb = "XSTATE", .fn = xstate, .ehlo = "XSTATE", .help = "XSTATE"},
    {.verb = "XDELAY", .fn = xdelay, .help = "XDELAY <seconds>"},
    {.verb = "VRFY", .fn = vrfy, .help = "VRFY <anything>"},
};

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin);

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin)
{
    if (host->argc > 0) {
        plugin->error = "xcommands takes no arguments";
        return -1;
    }
    struct xcommands *x = calloc(1, sizeof(*x));
    if (!x) {
        plugin->error = "out of memory";
        return -1;
    }
    x->base = host->base;
    plugin->handler = (struct smtpd_handler){
        .on_message = on_message,
        .on_data = on_data,
        .on_close = on_close,
        .commands = commands,
        .n_commands = sizeof(commands) / sizeof(commands[0]),
        .arg = x,
    };
    plugin->teardown = teardown;
    return 0;
}
