/* The asynchronous SMTP/LMTP client; see client.h. The protocol is
 * client_proto.c's; this file resolves, connects, reads lines, keeps the
 * timers and calls back. */
#include "client.h"
#include "tls.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* An upstream reply line longer than this is a protocol error. */
#define CLIENT_LINE_MAX 4096

struct smtp_client {
    struct client_config cfg;
    struct client_proto proto;
    struct bufferevent *bev;
    struct evdns_getaddrinfo_request *dns_req;
    struct evutil_addrinfo *ai_list, *ai_next;
    char addr[64];            /* the address being connected to */
    char connect_errors[400]; /* why each address failed so far */
    struct event *defer_ev;   /* delivers failures outside the caller's call */
    char defer_why[512];      /* the failure waiting for defer_ev; "" none */
    client_cb cb;
    void *cb_arg;
    client_cb idle_cb;
    void *idle_arg;
    unsigned idle_secs;
    int busy;         /* inside a user callback */
    bool closed;      /* client_close() was called */
    bool tls;         /* bev is a bufferevent_openssl */
    bool handshaking; /* its handshake is under way */
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

static bool debug_on(const struct smtp_client *c)
{
    return c->cfg.log && c->cfg.log_level >= SMTPD_LOG_DEBUG;
}

/* ---- output for the protocol machine ---- */

/* The dialogue log shows what the machine allows of each line: never the
 * credentials of AUTH (@p shown stands for such a line). */
static void out_command(void *arg, const char *line, size_t len, const char *shown)
{
    struct smtp_client *c = arg;
    if (debug_on(c) && shown) {
        client_log(c, SMTPD_LOG_DEBUG, "> %s", shown);
    } else if (debug_on(c)) {
        char esc[600];
        smtpd_escape(esc, sizeof(esc), line, len - 2); /* without CRLF */
        client_log(c, SMTPD_LOG_DEBUG, "> %s", esc);
    }
    bufferevent_write(c->bev, line, len);
}

static void out_data(void *arg, const char *buf, size_t len)
{
    struct smtp_client *c = arg;
    evbuffer_add(bufferevent_get_output(c->bev), buf, len);
}

/* ---- life cycle ---- */

static void really_free(struct smtp_client *c)
{
    if (c->ai_list)
        evutil_freeaddrinfo(c->ai_list);
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->defer_ev)
        event_free(c->defer_ev);
    cp_free(&c->proto);
    free(c);
}

/* Run a user callback; returns false if the client was closed in it. */
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

static void set_timeout(struct smtp_client *c, unsigned secs)
{
    struct timeval tv = {secs, 0};
    bufferevent_set_timeouts(c->bev, secs ? &tv : NULL, secs ? &tv : NULL);
}

/* Every step in flight has a timer; an idle connection has the idle one. */
static void sync_timeout(struct smtp_client *c)
{
    if (!c->bev)
        return;
    if (cp_ready(&c->proto))
        set_timeout(c, c->idle_cb ? c->idle_secs : 0);
    else
        set_timeout(c, c->cfg.timeout);
}

static void close_socket(struct smtp_client *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
}

/* The connection is unusable (the machine is dead, p->why says why): tell
 * whoever waits, with @p r. A connection dropped while idle is routine. */
static void report_dead(struct smtp_client *c, bool was_idle, const struct client_reply *r)
{
    close_socket(c);
    client_log(c,
               c->proto.config_error ? SMTPD_LOG_ERROR
               : was_idle            ? SMTPD_LOG_INFO
                                     : SMTPD_LOG_WARNING,
               "%s", c->proto.why);
    if (c->cb) {
        finish(c, r);
    } else if (c->idle_cb) {
        client_cb cb = c->idle_cb;
        c->idle_cb = NULL;
        deliver(c, cb, c->idle_arg, r);
    }
}

/* The connection went (@p why; @p timed_out: it did not answer) or has to
 * go. */
static void drop(struct smtp_client *c, const char *why, bool timed_out)
{
    if (c->proto.st == CP_DEAD)
        return;
    bool was_idle = cp_ready(&c->proto) && !c->cb;
    struct client_reply r;
    cp_lost(&c->proto, why, &r);
    r.timed_out = timed_out;
    report_dead(c, was_idle, &r);
}

static void deferred(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_client *c = arg;
    (void)fd;
    (void)what;
    if (c->proto.st != CP_DEAD) {
        drop(c, c->defer_why, false);
        return;
    }
    /* A command given to a connection that died while idle. */
    struct client_reply r;
    cp_local_reply(&r, 421, "4.4.2", "Error: upstream connection lost, try again later");
    finish(c, &r);
}

/* Fail from inside an API call or a resolver callback that may run inside
 * one: the user hears of it from the event loop. */
static void drop_later(struct smtp_client *c, const char *why)
{
    snprintf(c->defer_why, sizeof(c->defer_why), "%s", why);
    event_active(c->defer_ev, EV_TIMEOUT, 0);
}

/* ---- TLS ---- */

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* A bufferevent on @p fd (-1: connect later): plaintext, or TLS as a
 * client of the smarthost when @p tls. */
static struct bufferevent *make_bev(struct smtp_client *c, evutil_socket_t fd, bool tls)
{
    const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    struct bufferevent *bev = NULL;
    if (tls) {
        SSL *ssl = tls_client_ssl_new(c->cfg.tls_ctx, c->cfg.host);
        bev = ssl ? bufferevent_openssl_socket_new(c->cfg.base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                   opts)
                  : NULL;
        if (!bev && ssl)
            SSL_free(ssl);
        if (bev)
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        c->tls = c->handshaking = bev != NULL;
    } else {
        bev = bufferevent_socket_new(c->cfg.base, fd, opts);
    }
    if (!bev)
        return NULL;
    bufferevent_setcb(bev, on_read, NULL, on_event, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return bev;
}

/* The upstream said 220 to STARTTLS: the socket goes on under TLS. Bytes it
 * sent after that reply are dropped with the old buffer, never read as
 * replies inside TLS (the client side of CVE-2011-0411). */
static void start_tls(struct smtp_client *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    bufferevent_setfd(c->bev, -1); /* the old bufferevent must not close it */
    bufferevent_free(c->bev);
    c->bev = make_bev(c, fd, true);
    if (!c->bev) {
        evutil_closesocket(fd);
        struct client_reply r;
        cp_tls_failed(&c->proto, "TLS: out of memory", &r);
        report_dead(c, false, &r);
        return;
    }
    set_timeout(c, c->cfg.timeout);
}

/* The handshake finished (after STARTTLS, or first of all with smtps). */
static void tls_up(struct smtp_client *c)
{
    c->handshaking = false;
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    struct tls_info info = {0};
    tls_info_of(ssl, &info);
    client_log(c, SMTPD_LOG_INFO, "TLS %s with cipher %s (%d bits), certificate %s", info.protocol,
               info.cipher, info.bits,
               c->cfg.tls == SMTPD_RELAY_TLS_VERIFY ? "verified" : "not verified");
}

/* ---- reading ---- */

static void on_read(struct bufferevent *bev, void *arg)
{
    struct smtp_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (c->bev) {
        size_t n;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
        if (!line) {
            if (evbuffer_get_length(in) > CLIENT_LINE_MAX)
                drop(c, "protocol error: reply line too long", false);
            return;
        }
        if (debug_on(c)) {
            char esc[600];
            smtpd_escape(esc, sizeof(esc), line, n);
            client_log(c, SMTPD_LOG_DEBUG, "< %s", esc);
        }
        enum cp_state before = c->proto.st;
        bool was_idle = before == CP_READY && !c->cb;
        bool drained = evbuffer_get_length(bufferevent_get_output(bev)) == 0;
        struct client_reply r;
        enum cp_event ev = cp_line(&c->proto, line, n, drained, &r);
        free(line);
        if (before == CP_DATA_CMD && c->proto.st == CP_DATA_END)
            client_log(c, SMTPD_LOG_DEBUG, "> (data) .");
        if (ev == CP_FAILED) {
            report_dead(c, was_idle, &r);
            return;
        }
        if (ev == CP_START_TLS) {
            start_tls(c);
            return;
        }
        if (before == CP_STARTTLS && ev == CP_REPLY)
            client_log(c, SMTPD_LOG_WARNING, "%s", c->proto.why);
        if (c->proto.st == CP_DEAD) {
            /* A reply that was passed on, on a connection out of step. */
            close_socket(c);
            client_log(c, SMTPD_LOG_WARNING, "%s", c->proto.why);
        } else if (c->proto.st != before) {
            sync_timeout(c);
        }
        if (ev == CP_REPLY) {
            bool ok = r.last ? finish(c, &r) : deliver(c, c->cb, c->cb_arg, &r);
            if (!ok)
                return;
        }
    }
}

/* ---- connecting ---- */

static void try_connect(struct smtp_client *c);

/* Address @p i failed to connect: remember why for the log line. */
static void connect_failed(struct smtp_client *c, const char *why)
{
    size_t o = strlen(c->connect_errors);
    snprintf(c->connect_errors + o, sizeof(c->connect_errors) - o, "%s%s: %s", o ? "; " : "",
             c->addr, why);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_client *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        client_log(c, SMTPD_LOG_DEBUG, "connected to %s", c->addr);
        if (c->handshaking)
            tls_up(c);
        if (c->proto.st == CP_TLS)
            cp_tls_done(&c->proto);
        else
            cp_connected(&c->proto);
        sync_timeout(c);
        return;
    }
    char tls_why[300] = "";
    if (c->handshaking && !(what & BEV_EVENT_TIMEOUT)) {
        char e[256];
        tls_failure(bev, e, sizeof(e));
        snprintf(tls_why, sizeof(tls_why), "TLS handshake failed: %s", e);
    }
    if (c->proto.st == CP_CONNECTING) {
        int e = EVUTIL_SOCKET_ERROR();
        connect_failed(c, tls_why[0]                   ? tls_why
                          : (what & BEV_EVENT_TIMEOUT) ? "connection timed out"
                          : e                          ? evutil_socket_error_to_string(e)
                                                       : "connection failed");
        close_socket(c);
        try_connect(c);
        return;
    }
    if (c->proto.st == CP_TLS) {
        struct client_reply r;
        if (!tls_why[0])
            snprintf(tls_why, sizeof(tls_why), "TLS handshake: no answer within %u s",
                     c->cfg.timeout);
        cp_tls_failed(&c->proto, tls_why, &r);
        report_dead(c, false, &r);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && cp_ready(&c->proto) && !c->cb && c->idle_cb) {
        /* The idle time of a pooled connection is over: routine, and the
         * owner closes it with a QUIT. */
        client_log(c, SMTPD_LOG_DEBUG, "idle for %u s: closing", c->idle_secs);
        client_cb cb = c->idle_cb;
        c->idle_cb = NULL;
        struct client_reply r;
        cp_local_reply(&r, 421, "4.4.2", "idle timeout");
        deliver(c, cb, c->idle_arg, &r);
        return;
    }
    char why[160];
    if ((what & BEV_EVENT_TIMEOUT) && c->proto.st == CP_GREETING)
        snprintf(why, sizeof(why), "no greeting within %u s", c->cfg.timeout);
    else if (what & BEV_EVENT_TIMEOUT)
        snprintf(why, sizeof(why), "no reply to %s within %u s",
                 cp_step_name(c->proto.st, c->cfg.lmtp), c->cfg.timeout);
    else if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof(why), "%s", "connection closed by the upstream");
    else
        snprintf(why, sizeof(why), "connection error: %s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    drop(c, why, (what & BEV_EVENT_TIMEOUT) != 0);
}

static void address_text(const struct sockaddr *sa, char *buf, size_t n)
{
    char a[48] = "?";
    if (sa->sa_family == AF_INET6) {
        evutil_inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, a, sizeof(a));
        snprintf(buf, n, "[%s]", a);
    } else if (sa->sa_family == AF_INET) {
        evutil_inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, a, sizeof(a));
        snprintf(buf, n, "%s", a);
    } else {
        snprintf(buf, n, "%s", a);
    }
}

/* Connect to the next resolved address; when none is left, fail with the
 * reason of each. */
static void try_connect(struct smtp_client *c)
{
    while (c->ai_next) {
        struct evutil_addrinfo *ai = c->ai_next;
        c->ai_next = ai->ai_next;
        address_text(ai->ai_addr, c->addr, sizeof(c->addr));
        c->tls = c->handshaking = false;
        c->bev = make_bev(c, -1, c->cfg.smtps);
        if (!c->bev) {
            connect_failed(c, "out of memory");
            break;
        }
        set_timeout(c, c->cfg.timeout);
        errno = 0;
        if (bufferevent_socket_connect(c->bev, ai->ai_addr, (int)ai->ai_addrlen) == 0)
            return;
        connect_failed(c, errno ? strerror(errno) : "connection failed");
        close_socket(c);
    }
    char why[sizeof(c->connect_errors) + 32];
    snprintf(why, sizeof(why), "cannot connect: %s",
             c->connect_errors[0] ? c->connect_errors : "no address");
    drop_later(c, why);
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
        if (result != EVUTIL_EAI_CANCEL) {
            char why[200];
            snprintf(why, sizeof(why), "cannot resolve %s: %s", c->cfg.host,
                     evutil_gai_strerror(result));
            drop_later(c, why);
        }
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
    cp_init(&c->proto, cfg->lmtp, cfg->helo_name, (struct cp_out){out_command, out_data, c});
    cp_set_tls(&c->proto,
               cfg->tls == SMTPD_RELAY_TLS_NONE  ? CP_TLS_NO
               : cfg->tls == SMTPD_RELAY_TLS_MAY ? CP_TLS_MAY
                                                 : CP_TLS_MUST,
               cfg->smtps);
    cp_set_auth(&c->proto, cfg->auth_username, cfg->auth_password, cfg->auth_plaintext);
    c->defer_ev = event_new(cfg->base, -1, 0, deferred, c);
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
    if (!c->ai_list && !c->defer_why[0])
        c->dns_req = req;
    return c;
}

unsigned client_extensions(const struct smtp_client *c)
{
    return cp_extensions(&c->proto);
}

bool client_ready(const struct smtp_client *c)
{
    return cp_ready(&c->proto) && !c->cb && c->bev;
}

/* Take a command; false (and a 421 from the loop) if the connection died. */
static bool start(struct smtp_client *c, client_cb cb, void *arg)
{
    c->cb = cb;
    c->cb_arg = arg;
    c->idle_cb = NULL;
    if (cp_ready(&c->proto) && c->bev)
        return true;
    drop_later(c, "connection lost while idle");
    return false;
}

void client_mail(struct smtp_client *c, const char *reverse_path, const char *params, client_cb cb,
                 void *arg)
{
    if (!start(c, cb, arg))
        return;
    cp_mail(&c->proto, reverse_path, params);
    sync_timeout(c);
}

void client_rcpt(struct smtp_client *c, const char *forward_path, client_cb cb, void *arg)
{
    if (!start(c, cb, arg))
        return;
    cp_rcpt(&c->proto, forward_path);
    sync_timeout(c);
}

void client_data(struct smtp_client *c, char *data, size_t len, bool chunked, client_cb cb,
                 void *arg)
{
    if (!start(c, cb, arg)) {
        free(data);
        return;
    }
    cp_data(&c->proto, data, len, chunked);
    sync_timeout(c);
}

void client_rset(struct smtp_client *c, client_cb cb, void *arg)
{
    if (!start(c, cb, arg))
        return;
    cp_rset(&c->proto);
    sync_timeout(c);
}

void client_watch_idle(struct smtp_client *c, client_cb cb, void *arg, unsigned secs)
{
    c->idle_cb = cb;
    c->idle_arg = arg;
    c->idle_secs = secs;
    if (c->bev && cp_ready(&c->proto))
        set_timeout(c, cb ? secs : 0);
}

void client_close(struct smtp_client *c)
{
    if (!c || c->closed)
        return;
    c->closed = true;
    c->cb = NULL;
    c->idle_cb = NULL;
    if (c->bev && cp_ready(&c->proto)) {
        /* The upstream learns we are done (RFC 5321 4.1.1.10). */
        cp_quit(&c->proto);
        struct evbuffer *out = bufferevent_get_output(c->bev);
        /* A bufferevent keeps the front of its output frozen. */
        evbuffer_unfreeze(out, 1);
        SSL *ssl = c->tls ? bufferevent_openssl_get_ssl(c->bev) : NULL;
        if (ssl) {
            /* Under TLS the QUIT is a record of its own, then close_notify. */
            char quit[16];
            int n = evbuffer_remove(out, quit, sizeof(quit));
            if (n > 0 && SSL_write(ssl, quit, n) > 0)
                SSL_shutdown(ssl);
        } else {
            evbuffer_write(out, bufferevent_getfd(c->bev));
        }
    }
    if (c->dns_req) {
        /* The resolver calls on_resolved with EVUTIL_EAI_CANCEL; it frees. */
        evdns_getaddrinfo_cancel(c->dns_req);
        return;
    }
    if (c->busy == 0)
        really_free(c);
}
