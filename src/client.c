/* The asynchronous SMTP/LMTP client; see client.h. */
#include "client.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* An upstream reply line longer than this is a protocol error. */
#define CLIENT_LINE_MAX 4096

enum cstate {
    C_RESOLVE,
    C_CONNECT,
    C_GREETING,
    C_EHLO,
    C_HELO,
    C_READY,
    C_MAIL,
    C_RCPT,
    C_DATA_CMD,
    C_DATA_END,
    C_RSET,
    C_DEAD,
};

struct smtp_client {
    struct client_config cfg;
    struct bufferevent *bev;
    struct evdns_getaddrinfo_request *dns_req;
    struct evutil_addrinfo *ai_list, *ai_next;
    struct event *defer_ev; /* delivers failures outside the caller's call */
    enum cstate st;
    unsigned ext;
    client_cb cb;
    void *cb_arg;
    client_cb idle_cb;
    void *idle_arg;
    struct client_reply pending; /* failure waiting for defer_ev */
    /* The reply being read. */
    bool in_reply;
    struct client_reply cur;
    /* Data for the DATA step, sent after 354. */
    char *data;
    size_t data_len;
    unsigned rcpts_ok;  /* accepted RCPTs in this transaction (LMTP) */
    unsigned lmtp_left; /* LMTP replies still due after the final dot */
    int busy;           /* inside a user callback */
    bool closed;        /* client_close() was called */
};

static void client_log(const struct smtp_client *c, enum smtpd_log_level level, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

static void client_log(const struct smtp_client *c, enum smtpd_log_level level, const char *fmt,
                       ...)
{
    if (!c->cfg.log || level > c->cfg.log_level)
        return;
    char line[1024];
    int n = snprintf(line, sizeof(line), "upstream %s:%s: ", c->cfg.host, c->cfg.port);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    c->cfg.log(c->cfg.log_arg, level, line);
}

static void really_free(struct smtp_client *c)
{
    if (c->ai_list)
        evutil_freeaddrinfo(c->ai_list);
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->defer_ev)
        event_free(c->defer_ev);
    free(c->data);
    free(c);
}

/* Run the user callback; returns false if the client was closed in it. */
static bool deliver(struct smtp_client *c, client_cb cb, void *arg, const struct client_reply *r)
{
    c->busy++;
    cb(arg, r);
    c->busy--;
    if (c->closed) {
        if (c->busy == 0)
            really_free(c);
        return false;
    }
    return true;
}

/* Finish the step in flight with reply @p r. */
static bool finish(struct smtp_client *c, const struct client_reply *r)
{
    client_cb cb = c->cb;
    c->cb = NULL;
    if (!cb)
        return true;
    return deliver(c, cb, c->cb_arg, r);
}

static void make_local(struct client_reply *r, int code, const char *enh, const char *text)
{
    memset(r, 0, sizeof(*r));
    r->code = code;
    r->local = true;
    r->last = true;
    snprintf(r->enh, sizeof(r->enh), "%s", enh);
    snprintf(r->text, sizeof(r->text), "%s", text);
}

/* The connection is gone: report to whoever waits. Before the greeting is
 * through the upstream is unavailable (451 4.4.1); later the transaction is
 * lost (421 4.4.2). */
static void fail(struct smtp_client *c, const char *why)
{
    enum cstate was = c->st;
    if (was == C_DEAD)
        return;
    c->st = C_DEAD;
    client_log(c, SMTPD_LOG_WARNING, "%s", why);
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    struct client_reply r;
    if (was <= C_HELO)
        make_local(&r, 451, "4.4.1", "Error: upstream server unavailable, try again later");
    else
        make_local(&r, 421, "4.4.2", "Error: upstream connection lost, try again later");
    if (c->cb) {
        finish(c, &r);
    } else if (c->idle_cb) {
        client_cb cb = c->idle_cb;
        c->idle_cb = NULL;
        deliver(c, cb, c->idle_arg, &r);
    }
}

static void deferred_fail(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_client *c = arg;
    (void)fd;
    (void)what;
    if (c->st != C_DEAD) {
        fail(c, c->pending.text);
        return;
    }
    /* A command given to a connection that died while idle. */
    struct client_reply r;
    make_local(&r, 421, "4.4.2", "Error: upstream connection lost, try again later");
    finish(c, &r);
}

/* Fail from inside an API call or a resolver callback that may run inside
 * one: the user hears of it from the event loop. */
static void fail_later(struct smtp_client *c, const char *why)
{
    snprintf(c->pending.text, sizeof(c->pending.text), "%s", why);
    event_active(c->defer_ev, EV_TIMEOUT, 0);
}

static void send_line(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void send_line(struct smtp_client *c, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 2)
        n = (int)sizeof(line) - 3;
    if (c->cfg.log && c->cfg.log_level >= SMTPD_LOG_DEBUG) {
        char esc[600];
        smtpd_escape(esc, sizeof(esc), line, (size_t)n);
        client_log(c, SMTPD_LOG_DEBUG, "> %s", esc);
    }
    memcpy(line + n, "\r\n", 2);
    bufferevent_write(c->bev, line, (size_t)n + 2);
}

static void set_timeout(struct smtp_client *c, unsigned secs)
{
    struct timeval tv = {secs, 0};
    bufferevent_set_timeouts(c->bev, secs ? &tv : NULL, secs ? &tv : NULL);
}

/* Wait for the reply to a command just sent. */
static void expect(struct smtp_client *c, enum cstate st)
{
    c->st = st;
    set_timeout(c, c->cfg.timeout);
}

static void become_ready(struct smtp_client *c)
{
    c->st = C_READY;
    set_timeout(c, 0);
}

static void parse_ehlo_keyword(struct smtp_client *c, const char *t, size_t n)
{
    static const struct {
        const char *kw;
        unsigned bit;
    } known[] = {
        {"SIZE", EXT_SIZE},
        {"8BITMIME", EXT_8BITMIME},
        {"SMTPUTF8", EXT_SMTPUTF8},
        {"PIPELINING", EXT_PIPELINING},
        {"ENHANCEDSTATUSCODES", EXT_ENHANCEDSTATUSCODES},
    };
    size_t kl = 0;
    while (kl < n && t[kl] != ' ')
        kl++;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].kw) == kl && strncasecmp(t, known[i].kw, kl) == 0)
            c->ext |= known[i].bit;
}

/* Dot-stuff (RFC 5321 4.5.2) into the output and end with CRLF "." CRLF.
 * A dot after a bare LF or a bare CR is stuffed too, so that a downstream
 * server that takes either as a line end cannot be made to see an end of
 * data (SMTP smuggling). */
static void send_data(struct smtp_client *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const char *p = c->data;
    size_t n = c->data_len;
    bool line_start = true;
    while (n > 0) {
        if (line_start && *p == '.')
            evbuffer_add(out, ".", 1);
        /* The next CRLF, bare CR or bare LF ends this piece. */
        const char *lf = memchr(p, '\n', n);
        size_t upto = lf ? (size_t)(lf - p) : n;
        const char *cr = memchr(p, '\r', upto);
        size_t len;
        if (cr && (size_t)(cr - p) + 1 < n && cr[1] == '\n')
            len = (size_t)(cr - p) + 2;
        else if (cr)
            len = (size_t)(cr - p) + 1;
        else
            len = lf ? upto + 1 : n;
        line_start = p[len - 1] == '\n' || p[len - 1] == '\r';
        evbuffer_add(out, p, len);
        p += len;
        n -= len;
    }
    if (c->data_len > 0 &&
        !(c->data_len >= 2 && c->data[c->data_len - 2] == '\r' && c->data[c->data_len - 1] == '\n'))
        evbuffer_add(out, "\r\n", 2);
    evbuffer_add(out, ".\r\n", 3);
    client_log(c, SMTPD_LOG_DEBUG, "> (%zu bytes of data) .", c->data_len);
    free(c->data);
    c->data = NULL;
}

/* A whole reply arrived in state c->st. Returns false if the client is gone. */
static bool on_reply(struct smtp_client *c, struct client_reply *r)
{
    switch (c->st) {
    case C_GREETING:
        if (r->code != 220) {
            fail(c, "greeting refused");
            return false;
        }
        c->ext = 0;
        send_line(c, "%s %s", c->cfg.lmtp ? "LHLO" : "EHLO", c->cfg.helo_name);
        expect(c, C_EHLO);
        return true;
    case C_EHLO:
        if (r->code == 250) {
            become_ready(c);
            return finish(c, r);
        }
        if (c->cfg.lmtp || r->code < 500) {
            fail(c, "EHLO refused");
            return false;
        }
        c->ext = 0;
        send_line(c, "HELO %s", c->cfg.helo_name);
        expect(c, C_HELO);
        return true;
    case C_HELO:
        if (r->code != 250) {
            fail(c, "HELO refused");
            return false;
        }
        become_ready(c);
        return finish(c, r);
    case C_RCPT:
        if (r->code < 300)
            c->rcpts_ok++;
        become_ready(c);
        return finish(c, r);
    case C_MAIL:
    case C_RSET:
        c->rcpts_ok = 0;
        become_ready(c);
        return finish(c, r);
    case C_DATA_CMD:
        if (r->code == 354) {
            send_data(c);
            c->lmtp_left = c->cfg.lmtp ? c->rcpts_ok : 1;
            expect(c, C_DATA_END);
            return true;
        }
        become_ready(c);
        return finish(c, r);
    case C_DATA_END: {
        r->last = c->lmtp_left <= 1;
        if (r->last) {
            c->lmtp_left = 0;
            c->rcpts_ok = 0;
            become_ready(c);
            return finish(c, r);
        }
        c->lmtp_left--;
        /* More LMTP replies follow: keep the callback. */
        return deliver(c, c->cb, c->cb_arg, r);
    }
    case C_READY:
        /* Unasked: typically 421 before the upstream closes. */
        fail(c, r->code == 421 ? "upstream closing (421)" : "unexpected reply while idle");
        return false;
    default:
        return true;
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct smtp_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t n;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
        if (!line) {
            if (evbuffer_get_length(in) > CLIENT_LINE_MAX)
                fail(c, "reply line too long");
            return;
        }
        int code;
        bool more;
        const char *text;
        size_t tlen;
        if (!reply_parse_line(line, n, &code, &more, &text, &tlen) ||
            (c->in_reply && code != c->cur.code)) {
            free(line);
            fail(c, "malformed reply");
            return;
        }
        if (c->cfg.log && c->cfg.log_level >= SMTPD_LOG_DEBUG) {
            char esc[600];
            smtpd_escape(esc, sizeof(esc), line, n);
            client_log(c, SMTPD_LOG_DEBUG, "< %s", esc);
        }
        if (!c->in_reply) {
            memset(&c->cur, 0, sizeof(c->cur));
            c->cur.code = code;
            c->cur.last = true;
            size_t skip = reply_split_enhanced(text, tlen, code, c->cur.enh);
            text += skip;
            tlen -= skip;
            snprintf(c->cur.text, sizeof(c->cur.text), "%.*s", (int)tlen, text);
            c->in_reply = true;
        } else if (c->st == C_EHLO) {
            parse_ehlo_keyword(c, text, tlen);
        }
        free(line);
        if (more)
            continue;
        c->in_reply = false;
        struct client_reply r = c->cur;
        if (!on_reply(c, &r))
            return;
    }
}

static void try_connect(struct smtp_client *c);

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_client *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        client_log(c, SMTPD_LOG_DEBUG, "connected");
        expect(c, C_GREETING);
        return;
    }
    if (c->st == C_CONNECT && (what & BEV_EVENT_ERROR)) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        try_connect(c);
        return;
    }
    fail(c, (what & BEV_EVENT_TIMEOUT) ? "timeout"
            : (what & BEV_EVENT_EOF)   ? "connection closed"
                                       : "connection error");
}

/* Connect to the next resolved address. */
static void try_connect(struct smtp_client *c)
{
    while (c->ai_next) {
        struct evutil_addrinfo *ai = c->ai_next;
        c->ai_next = ai->ai_next;
        c->bev = bufferevent_socket_new(c->cfg.base, -1,
                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (!c->bev)
            break;
        bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        c->st = C_CONNECT;
        set_timeout(c, c->cfg.timeout);
        if (bufferevent_socket_connect(c->bev, ai->ai_addr, (int)ai->ai_addrlen) == 0)
            return;
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    c->st = C_CONNECT;
    fail_later(c, "cannot connect");
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct smtp_client *c = arg;
    c->dns_req = NULL;
    if (c->closed) {
        /* client_close() cancelled the lookup and left the free to us. */
        if (res)
            evutil_freeaddrinfo(res);
        really_free(c);
        return;
    }
    if (result != 0) {
        if (result != EVUTIL_EAI_CANCEL)
            fail_later(c, "cannot resolve host name");
        return;
    }
    c->ai_list = c->ai_next = res;
    try_connect(c);
}

struct smtp_client *client_open(const struct client_config *cfg, client_cb cb, void *arg)
{
    struct smtp_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->cfg = *cfg;
    c->cb = cb;
    c->cb_arg = arg;
    c->st = C_RESOLVE;
    c->defer_ev = event_new(cfg->base, -1, 0, deferred_fail, c);
    if (!c->defer_ev) {
        free(c);
        return NULL;
    }
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
                                    .ai_socktype = SOCK_STREAM,
                                    .ai_protocol = IPPROTO_TCP,
                                    .ai_flags = EVUTIL_AI_ADDRCONFIG};
    /* May answer at once (numeric hosts): on_resolved never calls back. */
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(cfg->dns, cfg->host, cfg->port, &hints, on_resolved, c);
    if (c->st == C_RESOLVE && !c->ai_list)
        c->dns_req = req;
    return c;
}

unsigned client_extensions(const struct smtp_client *c)
{
    return c->ext;
}

bool client_ready(const struct smtp_client *c)
{
    return c->st == C_READY && !c->cb;
}

/* Take a command; false (and a 421 from the loop) if the connection died. */
static bool start(struct smtp_client *c, client_cb cb, void *arg)
{
    c->cb = cb;
    c->cb_arg = arg;
    c->idle_cb = NULL;
    if (c->st == C_READY)
        return true;
    fail_later(c, "connection lost while idle");
    return false;
}

void client_mail(struct smtp_client *c, const char *reverse_path, const char *params, client_cb cb,
                 void *arg)
{
    if (!start(c, cb, arg))
        return;
    c->rcpts_ok = 0;
    send_line(c, "MAIL FROM:<%s>%s", reverse_path, params);
    expect(c, C_MAIL);
}

void client_rcpt(struct smtp_client *c, const char *forward_path, client_cb cb, void *arg)
{
    if (!start(c, cb, arg))
        return;
    send_line(c, "RCPT TO:<%s>", forward_path);
    expect(c, C_RCPT);
}

void client_data(struct smtp_client *c, char *data, size_t len, client_cb cb, void *arg)
{
    free(c->data);
    c->data = data;
    c->data_len = len;
    if (!start(c, cb, arg))
        return;
    send_line(c, "DATA");
    expect(c, C_DATA_CMD);
}

void client_rset(struct smtp_client *c, client_cb cb, void *arg)
{
    if (!start(c, cb, arg))
        return;
    send_line(c, "RSET");
    expect(c, C_RSET);
}

void client_watch_idle(struct smtp_client *c, client_cb cb, void *arg, unsigned secs)
{
    c->idle_cb = cb;
    c->idle_arg = arg;
    if (c->bev && c->st == C_READY)
        set_timeout(c, cb ? secs : 0);
}

void client_close(struct smtp_client *c)
{
    if (!c || c->closed)
        return;
    c->closed = true;
    c->cb = NULL;
    c->idle_cb = NULL;
    if (c->bev && c->st == C_READY) {
        /* Best effort: the upstream learns we are done (RFC 5321 4.1.1.10). */
        send_line(c, "QUIT");
        struct evbuffer *out = bufferevent_get_output(c->bev);
        /* A bufferevent keeps the front of its output frozen. */
        evbuffer_unfreeze(out, 1);
        evbuffer_write(out, bufferevent_getfd(c->bev));
    }
    if (c->dns_req) {
        /* The resolver calls on_resolved with EVUTIL_EAI_CANCEL; it frees. */
        evdns_getaddrinfo_cancel(c->dns_req);
        return;
    }
    if (c->busy == 0)
        really_free(c);
}
