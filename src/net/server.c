/*
 * The listening server (smtpd's SMTPServer): listeners on every address a
 * name resolves to, the connection cap, accept back-pressure on EMFILE, the
 * PROXY protocol header before a connection proper, and graceful shutdown.
 */
/* accept4() */
#define _GNU_SOURCE
#include "auth.h"
#include "auth_guard.h"
#include "bdat_cmd.h"
#include "cidr.h"
#include "connection.h"
#include "fqdn.h"
#include "hostport.h"
#include "proxy_wait.h"
#include "smtpd.h"
#include "starttls.h"
#include "tls.h"
#include "xclient_cmd.h"

#include <event2/event.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* After EMFILE/ENFILE, accepting resumes when a client leaves or after this. */
#define ACCEPT_RETRY_SECONDS 1
/* Connections taken per wake-up of a listener: a few, so that worker
 * processes sharing the listener (smtpd --workers) share the clients too. */
#define ACCEPT_BATCH 4

/* Seconds after the grace period that clients get to take their 421. */
#define LAST_CALL_SECONDS 5

/* smtpd_config.proxy_networks: its default, and how many ranges it holds. */
#define PROXY_NETWORKS_DEFAULT "127.0.0.0/8,::1"
#define PROXY_NETWORKS_MAX 64

/* A listening socket and its read event. */
struct listener {
    evutil_socket_t fd;
    struct event *ev;
    bool tls; /* implicit TLS (RFC 8314) */
};

struct smtpd_server {
    struct event_base *base;
    struct chan_params params;
    char *hostname;
    struct listener *listeners;
    size_t n_listeners;
    struct conn *conns;
    size_t n_conns;
    /* proxy_protocol: connections whose PROXY header is awaited. */
    struct proxy_wait *waits;
    size_t n_waits;
    struct cidr proxy_nets[PROXY_NETWORKS_MAX];
    size_t n_proxy_nets;
    struct cidr xclient_nets[PROXY_NETWORKS_MAX]; /* params.xclient_nets */
    unsigned long next_id;
    bool shutting_down;
    bool grace_over; /* the grace period passed: next comes the last call */
    bool accept_paused;
    struct event *grace_ev;
    struct event *retry_ev;
    SSL_CTX *tls_ctx;               /* our reference; NULL: no TLS */
    const struct chan_ext *exts[4]; /* params.exts: see set_extensions */
};

const char *smtpd_strerror(enum smtpd_err err)
{
    switch (err) {
    case SMTPD_OK:
        return "success";
    case SMTPD_ERR_NOMEM:
        return "out of memory";
    case SMTPD_ERR_CONFIG:
        return "invalid configuration";
    case SMTPD_ERR_ADDRESS:
        return "invalid address (expected host:port)";
    case SMTPD_ERR_RESOLVE:
        return "host name does not resolve";
    case SMTPD_ERR_BIND:
        return "cannot listen on address";
    case SMTPD_ERR_STATE:
        return "not allowed in this state";
    case SMTPD_ERR_REPLY:
        return "reply code not allowed here (200-599; 3xx only for an extension command)";
    case SMTPD_ERR_TLS:
        return "TLS setup failed (certificate, key or CA file; or no TLS configured)";
    }
    return "unknown error";
}

void smtpd_config_init(struct smtpd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->data_size_limit = 33554432;
    cfg->command_timeout = 300;
    cfg->data_timeout = 300;
    cfg->answer_timeout = 600;
    cfg->max_connections = 1000;
    cfg->max_recipients = 1000;
    cfg->max_errors = 10;
    cfg->min_data_rate = 500;
    cfg->log_level = SMTPD_LOG_INFO;
    cfg->tls_handshake_timeout = 30;
    cfg->auth_failure_delay = 1000;
    cfg->proxy_timeout = 10;
}

static void server_log(const struct smtpd_server *srv, enum smtpd_log_level level, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

static void server_log(const struct smtpd_server *srv, enum smtpd_log_level level, const char *fmt,
                       ...)
{
    const struct smtpd_config *cfg = &srv->params.cfg;
    if (!cfg->log || level > cfg->log_level)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    cfg->log(cfg->log_arg, level, line);
}

/* The library's own extension commands: STARTTLS on a server with TLS,
 * AUTH when the handler has on_auth, XCLIENT (listed in EHLO only to
 * xclient_networks), BDAT. */
static void set_extensions(struct smtpd_server *srv)
{
    size_t n = 0;
    if (srv->tls_ctx)
        srv->exts[n++] = &starttls_ext;
    if (srv->params.handler.on_auth)
        srv->exts[n++] = &auth_ext;
    srv->exts[n++] = &xclient_ext; /* 550 5.7.0 for all but xclient_networks */
    srv->exts[n++] = &bdat_ext;
    srv->params.exts = srv->exts;
    srv->params.n_exts = n;
}

struct smtpd_server *smtpd_server_new(struct event_base *base, const struct smtpd_config *cfg,
                                      const struct smtpd_handler *handler, enum smtpd_err *err)
{
    enum smtpd_err dummy;
    if (!err)
        err = &dummy;
    if (!base || !cfg || smtpd_handler_check(handler, NULL, 0) != SMTPD_OK ||
        (cfg->decode_data && cfg->enable_smtputf8)) {
        *err = SMTPD_ERR_CONFIG;
        return NULL;
    }
    struct smtpd_server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        *err = SMTPD_ERR_NOMEM;
        return NULL;
    }
    srv->base = base;
    srv->params.cfg = *cfg;
    srv->params.handler = *handler;
    srv->hostname = cfg->hostname ? strdup(cfg->hostname) : fqdn_lookup();
    if (!srv->hostname) {
        free(srv);
        *err = SMTPD_ERR_NOMEM;
        return NULL;
    }
    srv->params.cfg.hostname = srv->hostname;
    if (cfg->proxy_protocol) {
        int n = cidr_parse_list(cfg->proxy_networks ? cfg->proxy_networks : PROXY_NETWORKS_DEFAULT,
                                srv->proxy_nets, PROXY_NETWORKS_MAX);
        if (n < 0) {
            free(srv->hostname);
            free(srv);
            *err = SMTPD_ERR_CONFIG;
            return NULL;
        }
        srv->n_proxy_nets = (size_t)n;
    }
    srv->params.cfg.proxy_networks = NULL; /* parsed: not kept */
    if (cfg->xclient_networks) {
        int n = cidr_parse_list(cfg->xclient_networks, srv->xclient_nets, PROXY_NETWORKS_MAX);
        if (n < 0) {
            free(srv->hostname);
            free(srv);
            *err = SMTPD_ERR_CONFIG;
            return NULL;
        }
        srv->params.xclient_nets = srv->xclient_nets;
        srv->params.n_xclient_nets = (size_t)n;
    }
    srv->params.cfg.xclient_networks = NULL;
    /* The file names are not kept: the context holds what they had. */
    srv->params.cfg.tls_cert_file = srv->params.cfg.tls_key_file = NULL;
    if (cfg->tls_ctx) {
        SSL_CTX_up_ref(cfg->tls_ctx);
        srv->tls_ctx = cfg->tls_ctx;
    } else if (cfg->tls_cert_file || cfg->tls_key_file) {
        char why[512];
        srv->tls_ctx =
            cfg->tls_cert_file && cfg->tls_key_file
                ? tls_server_ctx_new(cfg->tls_cert_file, cfg->tls_key_file, why, sizeof(why))
                : NULL;
        if (!srv->tls_ctx) {
            if (!cfg->tls_cert_file || !cfg->tls_key_file)
                snprintf(why, sizeof(why), "tls_cert_file and tls_key_file go together");
            server_log(srv, SMTPD_LOG_ERROR, "%s", why);
            free(srv->hostname);
            free(srv);
            *err = SMTPD_ERR_TLS;
            return NULL;
        }
    }
    srv->params.cfg.tls_ctx = NULL; /* srv->tls_ctx is the one in use */
    set_extensions(srv);
    bool bad_tls = cfg->require_tls && !srv->tls_ctx;
    bool bad_auth = cfg->auth_required && !handler->on_auth;
    if (handler->on_auth)
        srv->params.auth_guard = auth_guard_new();
    if (bad_tls || bad_auth || (handler->on_auth && !srv->params.auth_guard)) {
        free(srv->hostname);
        if (srv->tls_ctx)
            SSL_CTX_free(srv->tls_ctx);
        auth_guard_free(srv->params.auth_guard);
        free(srv);
        *err = bad_auth ? SMTPD_ERR_CONFIG : bad_tls ? SMTPD_ERR_TLS : SMTPD_ERR_NOMEM;
        return NULL;
    }
    *err = SMTPD_OK;
    return srv;
}

SSL_CTX *server_tls_ctx(const struct smtpd_server *srv)
{
    return srv->tls_ctx;
}

SSL_CTX *smtpd_tls_context_new(const char *cert_file, const char *key_file, char *why, size_t whysz)
{
    char dummy[1];
    if (!why || whysz == 0) {
        why = dummy;
        whysz = sizeof(dummy);
    }
    if (!cert_file || !key_file) {
        snprintf(why, whysz, "a certificate file and a key file are both needed");
        return NULL;
    }
    return tls_server_ctx_new(cert_file, key_file, why, whysz);
}

enum smtpd_err smtpd_server_set_tls_context(struct smtpd_server *srv, SSL_CTX *ctx)
{
    if (!ctx)
        return SMTPD_ERR_CONFIG;
    SSL_CTX_up_ref(ctx);
    SSL_CTX_free(srv->tls_ctx);
    srv->tls_ctx = ctx;
    set_extensions(srv);
    return SMTPD_OK;
}

static void pause_accept(struct smtpd_server *srv, bool pause)
{
    if (srv->accept_paused == pause)
        return;
    srv->accept_paused = pause;
    for (size_t i = 0; i < srv->n_listeners; i++) {
        if (pause)
            event_del(srv->listeners[i].ev);
        else
            event_add(srv->listeners[i].ev, NULL);
    }
}

static void retry_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pause_accept(arg, false);
}

/* Accept failed for lack of descriptors or memory: wait for one to free
 * rather than spin on a listener that stays readable. */
static void accept_pause(struct smtpd_server *srv, int e)
{
    server_log(srv, SMTPD_LOG_WARNING, "accept: %s; pausing", strerror(e));
    pause_accept(srv, true);
    if (!srv->retry_ev)
        srv->retry_ev = evtimer_new(srv->base, retry_accept, srv);
    if (srv->retry_ev) {
        struct timeval tv = {ACCEPT_RETRY_SECONDS, 0};
        evtimer_add(srv->retry_ev, &tv);
    }
}

/* Clients connected now from the address in @p sa. */
static unsigned count_from(const struct smtpd_server *srv, const struct sockaddr *sa)
{
    char addr[64];
    uint16_t port;
    sockaddr_text(sa, addr, &port);
    unsigned n = 0;
    for (const struct conn *c = srv->conns; c; c = conn_next(c))
        n += strcmp(conn_peer_addr(c), addr) == 0;
    return n;
}

static void refuse(evutil_socket_t fd, bool tls)
{
    /* RFC 5321 3.1/4.3.2: refuse with 421 rather than leave it hanging;
     * an implicit TLS client would read it as a broken record: it is
     * only closed. */
    static const char busy[] = "421 4.3.2 Too many connections, try again later\r\n";
    if (!tls) {
        ssize_t n = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n;
    }
    evutil_closesocket(fd);
}

/* The session for client @p sa (via balancer @p via, or NULL), once the
 * per-address cap allows it. */
static void admit(struct smtpd_server *srv, evutil_socket_t fd, const struct sockaddr *sa,
                  const struct sockaddr *via, bool tls)
{
    unsigned per_ip = srv->params.cfg.max_connections_per_ip;
    if (per_ip && count_from(srv, sa) >= per_ip) {
        refuse(fd, tls);
        server_log(srv, SMTPD_LOG_WARNING, "connection refused: %u clients from one address",
                   per_ip);
        return;
    }
    struct conn *c = conn_new(srv, srv->base, &srv->params, fd, sa, via, ++srv->next_id, tls);
    if (!c) {
        server_log(srv, SMTPD_LOG_ERROR, "out of memory for a new client");
        return;
    }
    conn_link(c, &srv->conns);
    srv->n_conns++;
}

/* A connection or a PROXY wait ended: room for the next client. */
static void slot_freed(struct smtpd_server *srv)
{
    if (srv->accept_paused && !srv->shutting_down)
        pause_accept(srv, false);
    if (srv->shutting_down && srv->n_conns == 0 && srv->grace_ev)
        event_del(srv->grace_ev);
}

static void unlink_wait(struct smtpd_server *srv, struct proxy_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        srv->waits = w->next;
    if (w->next)
        w->next->prev = w->prev;
    srv->n_waits--;
}

static void proxy_done(void *arg, struct proxy_wait *w, const char *error)
{
    struct smtpd_server *srv = arg;
    unlink_wait(srv, w);
    if (error) {
        char from[64];
        uint16_t port;
        sockaddr_text((const struct sockaddr *)&w->balancer, from, &port);
        server_log(srv, SMTPD_LOG_WARNING, "connection from %s:%u closed: %s", from, port, error);
    } else {
        evutil_socket_t fd = w->fd;
        w->fd = -1; /* the connection's now */
        admit(srv, fd, (const struct sockaddr *)&w->client, (const struct sockaddr *)&w->balancer,
              w->implicit_tls);
    }
    proxy_wait_free(w);
    slot_freed(srv);
}

/* proxy_protocol: only a balancer in proxy_networks may connect; its
 * connection is a session once its PROXY header is in (proxy_done). */
static void await_proxy_header(struct smtpd_server *srv, evutil_socket_t fd,
                               const struct sockaddr *sa, bool tls)
{
    char addr[64];
    uint16_t port;
    sockaddr_text(sa, addr, &port);
    if (!cidr_match(srv->proxy_nets, srv->n_proxy_nets, addr)) {
        evutil_closesocket(fd);
        server_log(srv, SMTPD_LOG_WARNING,
                   "connection from %s:%u closed: not in the networks allowed to send a PROXY "
                   "header",
                   addr, port);
        return;
    }
    struct proxy_wait *w =
        proxy_wait_new(srv->base, fd, sa, tls, srv->params.cfg.proxy_timeout, proxy_done, srv);
    if (!w) {
        server_log(srv, SMTPD_LOG_ERROR, "out of memory for a new client");
        return;
    }
    w->next = srv->waits;
    if (srv->waits)
        srv->waits->prev = w;
    srv->waits = w;
    srv->n_waits++;
}

static void accept_conn(struct smtpd_server *srv, evutil_socket_t fd, const struct sockaddr *sa,
                        bool tls)
{
    unsigned max = srv->params.cfg.max_connections;
    if (srv->shutting_down || (max && srv->n_conns + srv->n_waits >= max)) {
        refuse(fd, tls);
        server_log(srv, SMTPD_LOG_WARNING, "connection refused: %zu clients (limit %u)",
                   srv->n_conns + srv->n_waits, max);
        return;
    }
    if (srv->params.cfg.proxy_protocol)
        await_proxy_header(srv, fd, sa, tls);
    else
        admit(srv, fd, sa, NULL, tls);
}

/* Server shutdown and teardown: a connection still without its PROXY
 * header has had no greeting; it is closed at once. */
static void close_waits(struct smtpd_server *srv)
{
    while (srv->waits) {
        struct proxy_wait *w = srv->waits;
        unlink_wait(srv, w);
        proxy_wait_free(w);
    }
}

static void listener_ready(evutil_socket_t lfd, short what, void *arg)
{
    struct smtpd_server *srv = arg;
    (void)what;
    bool tls = false;
    for (size_t i = 0; i < srv->n_listeners; i++)
        if (srv->listeners[i].fd == lfd)
            tls = srv->listeners[i].tls;
    for (int i = 0; i < ACCEPT_BATCH && !srv->accept_paused && !srv->shutting_down; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss)); /* the analyzer cannot see the kernel fill it */
        socklen_t sl = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accept_conn(srv, fd, (struct sockaddr *)&ss, tls);
            continue;
        }
        int e = errno;
        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
            accept_pause(srv, e);
        else if (e == EINTR || e == ECONNABORTED)
            continue;
        return; /* EAGAIN: another worker took it, or nothing left */
    }
}

void server_conn_closed(struct smtpd_server *srv)
{
    srv->n_conns--;
    slot_freed(srv);
}

static int listen_socket(const struct addrinfo *ai, bool reuse_port)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    /* "::" must not take the IPv4 port too: "0.0.0.0" is bound separately. */
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static enum smtpd_err listen_on(struct smtpd_server *srv, const char *hostport, bool tls)
{
    char host[256], port[8];
    if (!hostport || !hostport_split(hostport, host, sizeof(host), port, sizeof(port)))
        return SMTPD_ERR_ADDRESS;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) != 0 || !res)
        return SMTPD_ERR_RESOLVE;
    enum smtpd_err err = SMTPD_OK;
    /* With port 0, every address of the name gets the port of the first. */
    char chosen[8] = "";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (chosen[0]) {
            struct sockaddr_in *in = (struct sockaddr_in *)ai->ai_addr;
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ai->ai_addr;
            uint16_t p = htons((uint16_t)atoi(chosen));
            if (ai->ai_family == AF_INET)
                in->sin_port = p;
            else
                in6->sin6_port = p;
        }
        int fd = listen_socket(ai, srv->params.cfg.reuse_port);
        if (fd < 0) {
            err = SMTPD_ERR_BIND;
            break;
        }
        struct listener *v =
            realloc(srv->listeners, (srv->n_listeners + 1) * sizeof(struct listener));
        if (v)
            srv->listeners = v;
        struct event *ev =
            v ? event_new(srv->base, fd, EV_READ | EV_PERSIST, listener_ready, srv) : NULL;
        if (!ev || (!srv->accept_paused && event_add(ev, NULL) != 0)) {
            if (ev)
                event_free(ev);
            close(fd);
            err = SMTPD_ERR_NOMEM;
            break;
        }
        srv->listeners[srv->n_listeners].fd = fd;
        srv->listeners[srv->n_listeners].tls = tls;
        srv->listeners[srv->n_listeners++].ev = ev;
        if (strcmp(port, "0") == 0 && !chosen[0]) {
            struct sockaddr_storage ss;
            memset(&ss, 0, sizeof(ss)); /* the analyzer cannot see the kernel fill it */
            socklen_t sl = sizeof(ss);
            if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
                snprintf(chosen, sizeof(chosen), "%u",
                         ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                       : ((struct sockaddr_in6 *)&ss)->sin6_port));
        }
    }
    int e = errno;
    freeaddrinfo(res);
    errno = e;
    if (err == SMTPD_OK && srv->n_listeners == 0)
        err = SMTPD_ERR_RESOLVE;
    return err;
}

enum smtpd_err smtpd_server_listen(struct smtpd_server *srv, const char *hostport)
{
    return listen_on(srv, hostport, false);
}

enum smtpd_err smtpd_server_listen_tls(struct smtpd_server *srv, const char *hostport)
{
    if (!srv->tls_ctx)
        return SMTPD_ERR_TLS;
    return listen_on(srv, hostport, true);
}

size_t smtpd_server_listener_count(const struct smtpd_server *srv)
{
    return srv->n_listeners;
}

bool smtpd_server_listener_tls(const struct smtpd_server *srv, size_t i)
{
    return i < srv->n_listeners && srv->listeners[i].tls;
}

enum smtpd_err smtpd_server_address(const struct smtpd_server *srv, size_t i, char *buf,
                                    size_t bufsz)
{
    if (i >= srv->n_listeners)
        return SMTPD_ERR_STATE;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss)); /* the analyzer cannot see the kernel fill it */
    socklen_t sl = sizeof(ss);
    if (getsockname(srv->listeners[i].fd, (struct sockaddr *)&ss, &sl) != 0)
        return SMTPD_ERR_BIND;
    char addr[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
        snprintf(buf, bufsz, "[%s]:%u", addr, ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
        snprintf(buf, bufsz, "%s:%u", addr, ntohs(in->sin_port));
    }
    return SMTPD_OK;
}

struct event_base *smtpd_server_base(const struct smtpd_server *srv)
{
    return srv->base;
}

size_t smtpd_server_session_count(const struct smtpd_server *srv)
{
    return srv->n_conns;
}

static void close_listeners(struct smtpd_server *srv)
{
    for (size_t i = 0; i < srv->n_listeners; i++) {
        event_free(srv->listeners[i].ev);
        close(srv->listeners[i].fd);
    }
    free(srv->listeners);
    srv->listeners = NULL;
    srv->n_listeners = 0;
}

/* After the grace period every client gets 421 and is closed once its
 * replies are sent; a client that does not read them would hold the server
 * until the write timeout, so the last call ends it LAST_CALL_SECONDS later. */
static void grace_over(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_server *srv = arg;
    (void)fd;
    (void)what;
    if (srv->grace_over) {
        server_log(srv, SMTPD_LOG_INFO, "dropping %zu clients that did not take their last replies",
                   srv->n_conns);
        while (srv->conns)
            conn_drop(srv->conns, "shutdown");
        return;
    }
    srv->grace_over = true;
    server_log(srv, SMTPD_LOG_INFO, "grace period over: closing %zu clients", srv->n_conns);
    for (struct conn *c = srv->conns; c; c = conn_next(c))
        conn_shutdown(c, true);
    struct timeval tv = {LAST_CALL_SECONDS, 0};
    if (srv->n_conns > 0)
        evtimer_add(srv->grace_ev, &tv);
}

void smtpd_server_shutdown(struct smtpd_server *srv, unsigned grace_seconds)
{
    if (srv->shutting_down)
        return;
    srv->shutting_down = true;
    server_log(srv, SMTPD_LOG_INFO, "shutting down: %zu clients", srv->n_conns);
    close_listeners(srv);
    close_waits(srv);
    if (srv->retry_ev)
        event_del(srv->retry_ev);
    for (struct conn *c = srv->conns; c; c = conn_next(c))
        conn_shutdown(c, false);
    if (srv->n_conns > 0) {
        srv->grace_ev = evtimer_new(srv->base, grace_over, srv);
        struct timeval tv = {grace_seconds, 0};
        if (srv->grace_ev)
            evtimer_add(srv->grace_ev, &tv);
    }
}

void smtpd_server_free(struct smtpd_server *srv)
{
    if (!srv)
        return;
    srv->shutting_down = true;
    close_listeners(srv);
    close_waits(srv);
    while (srv->conns)
        conn_free(srv->conns);
    if (srv->grace_ev)
        event_free(srv->grace_ev);
    if (srv->retry_ev)
        event_free(srv->retry_ev);
    SSL_CTX_free(srv->tls_ctx);
    auth_guard_free(srv->params.auth_guard);
    free(srv->hostname);
    free(srv);
}
