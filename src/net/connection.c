/* libevent glue for one client; see connection.h. */
#include "connection.h"
#include "tls.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* The minimum data rate is judged only after this many seconds of DATA. */
#define DATA_RATE_GRACE 10

/* The replies to one read's commands go to the socket together; a burst of
 * pipelined commands is cut into batches of about this many bytes (the
 * channel stops after the command that passes it, see tr_backlogged). */
#define REPLY_BATCH ((size_t)8 * 1024)
/* Input held while a handler is pending, before reading stops (libevent
 * may add one read of up to 16 KiB). A client may pipeline only a few
 * commands ahead of an answer (RFC 2920), so this is plenty. */
#define INPUT_HIGH ((size_t)16 * 1024)

struct conn {
    struct smtpd_server *srv;
    const struct chan_params *params;
    struct bufferevent *bev;
    struct smtpd_session *chan;
    struct conn *prev, *next;
    struct conn **head;
    bool closing;              /* the channel closed: free once output is sent */
    bool output_paused;        /* reading stopped for output back-pressure */
    unsigned pauses;           /* how often, for the log */
    struct timespec paused_at; /* when the current pause began */
    bool eof;                  /* the client closed its side: finish what it sent */
    enum chan_phase phase;
    struct timespec data_start; /* when the DATA phase began (min_data_rate) */
    struct timespec line_start; /* when the command line being sent began */
    bool line_started;
    struct evbuffer *out;    /* replies not yet written (see flush_out) */
    struct event *answer_ev; /* PHASE_WAIT: the handler's answer_timeout */
    struct event *delay_ev;  /* a failed AUTH's answer is held (tr_delay) */
    bool tls;                /* bev is a bufferevent_openssl */
    bool tls_pending;        /* STARTTLS answered: TLS starts once the 220 is sent */
    bool handshaking;        /* the TLS handshake is under way */
    bool implicit_tls;       /* an implicit TLS listener's: no greeting before TLS */
    struct event *tls_ev;    /* the handshake's deadline (NULL: never TLS) */
    bool shutdown_asked;     /* the server shut down during the handshake */
    bool shutdown_now;
};

static void tr_write(void *io, const char *buf, size_t len)
{
    struct conn *c = io;
    evbuffer_add(c->out, buf, len);
}

/* Write the replies gathered while feeding the channel in one writev, at
 * once: no write event (and its two epoll_ctl calls) per reply. Whatever the
 * socket does not take goes to the bufferevent, which sends it when it can. */
static void flush_out(struct conn *c)
{
    if (evbuffer_get_length(c->out) == 0)
        return;
    /* Under TLS every byte goes through OpenSSL. */
    if (!c->tls && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        evbuffer_write(c->out, bufferevent_getfd(c->bev));
    if (evbuffer_get_length(c->out) > 0)
        bufferevent_write_buffer(c->bev, c->out);
}

static void tr_close(void *io)
{
    struct conn *c = io;
    flush_out(c);
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    /* Free from the write callback, once the last reply is out. */
    bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void tr_resume(void *io)
{
    struct conn *c = io;
    bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* Checked after each command: a burst of pipelined commands stops adding
 * replies once a batch of them is gathered (see conn_read). */
static bool tr_backlogged(void *io)
{
    const struct conn *c = io;
    return evbuffer_get_length(c->out) > REPLY_BATCH;
}

static void tr_start_tls(void *io)
{
    struct conn *c = io;
    c->tls_pending = true;
}

static void delay_over(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    channel_delay_done(c->chan);
    flush_out(c);
}

static bool tr_delay(void *io, unsigned ms)
{
    struct conn *c = io;
    if (!c->delay_ev)
        c->delay_ev = evtimer_new(bufferevent_get_base(c->bev), delay_over, c);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return c->delay_ev && evtimer_add(c->delay_ev, &tv) == 0;
}

static const struct chan_transport transport = {tr_write,      tr_close,     tr_resume,
                                                tr_backlogged, tr_start_tls, tr_delay};

static struct timeval *secs(struct timeval *tv, unsigned s)
{
    if (s == 0)
        return NULL;
    tv->tv_sec = s;
    tv->tv_usec = 0;
    return tv;
}

/* Set the read timeout of the channel's phase (RFC 5321 4.5.3.2). */
static void update_timeouts(struct conn *c, const struct smtpd_config *cfg)
{
    enum chan_phase phase = channel_phase(c->chan);
    if (phase == c->phase || c->handshaking)
        return;
    c->phase = phase;
    if (phase == PHASE_DATA && cfg->min_data_rate)
        clock_gettime(CLOCK_MONOTONIC, &c->data_start);
    struct timeval rtv, wtv;
    unsigned r = phase == PHASE_COMMAND ? cfg->command_timeout
                 : phase == PHASE_DATA  ? cfg->data_timeout
                                        : 0;
    bufferevent_set_timeouts(c->bev, secs(&rtv, r), secs(&wtv, cfg->command_timeout));
    /* The client's read timeout does not cover a handler that never
     * answers (reading may be suspended meanwhile): a timer of its own. */
    struct timeval atv;
    if (phase == PHASE_WAIT && secs(&atv, cfg->answer_timeout))
        evtimer_add(c->answer_ev, &atv);
    else
        evtimer_del(c->answer_ev);
}

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* Move @p t later by the time from @p from to @p to. */
static void shift(struct timespec *t, const struct timespec *from, const struct timespec *to)
{
    t->tv_sec += to->tv_sec - from->tv_sec;
    t->tv_nsec += to->tv_nsec - from->tv_nsec;
    if (t->tv_nsec < 0) {
        t->tv_nsec += 1000000000L;
        t->tv_sec--;
    } else if (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec++;
    }
}

/* The read timeout restarts with every byte; a client that trickles a
 * command line byte by byte is held to command_timeout for the whole line
 * (RFC 5321 4.5.3.2.7). */
static void check_command_time(struct conn *c, const struct smtpd_config *cfg)
{
    if (!cfg->command_timeout || !channel_line_pending(c->chan)) {
        c->line_started = false;
        return;
    }
    if (!c->line_started) {
        c->line_started = true;
        clock_gettime(CLOCK_MONOTONIC, &c->line_start);
    } else if (seconds_since(&c->line_start) > cfg->command_timeout) {
        channel_timeout(c->chan);
    }
}

/* A client that trickles its data is cut off (slowloris in DATA). */
static void check_data_rate(struct conn *c, const struct smtpd_config *cfg)
{
    if (!cfg->min_data_rate || c->phase != PHASE_DATA)
        return;
    double elapsed = seconds_since(&c->data_start);
    if (elapsed > DATA_RATE_GRACE &&
        (double)channel_data_received(c->chan) < (double)cfg->min_data_rate * elapsed)
        channel_too_slow(c->chan);
}

/* The client half-closed: once what it sent has been answered (a pending
 * handler included), close our side too. */
static void finish_eof(struct conn *c)
{
    if (!c->eof || c->closing || channel_phase(c->chan) == PHASE_WAIT ||
        evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        return;
    channel_lost(c->chan, "eof");
    tr_close(c);
}

/* Stop reading a client whose socket does not take all our replies: it is
 * not reading them (the kernel already holds a send buffer's worth). Its
 * commands wait in the kernel, and conn_write() resumes once every reply is
 * sent; a client that never reads holds one batch of our memory until the
 * write timeout. */
static void pause_if_unsent(struct conn *c)
{
    size_t waiting = evbuffer_get_length(bufferevent_get_output(c->bev));
    /* Under TLS the replies are written from the loop, after this: only a
     * batch that is still there says the client is not reading. */
    if (!c->output_paused && !c->closing && waiting > (c->tls ? REPLY_BATCH : 0)) {
        c->output_paused = true;
        clock_gettime(CLOCK_MONOTONIC, &c->paused_at);
        bufferevent_disable(c->bev, EV_READ);
        /* Once at info: the client decides how often this happens. */
        smtpd_session_log(c->chan, c->pauses++ ? SMTPD_LOG_DEBUG : SMTPD_LOG_INFO,
                          "reading paused: %zu bytes of replies wait for the client", waiting);
    }
}

static void conn_read(struct bufferevent *bev, void *arg);
static void conn_write(struct bufferevent *bev, void *arg);
static void conn_event(struct bufferevent *bev, short what, void *arg);
static void tls_deadline(evutil_socket_t fd, short what, void *arg);

/* A bufferevent for @p c and its callbacks, on socket @p fd: plaintext,
 * or (@p ssl) a TLS server side whose handshake starts now. */
static struct bufferevent *make_bev(struct conn *c, struct event_base *base, evutil_socket_t fd,
                                    SSL *ssl)
{
    const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    struct bufferevent *bev =
        ssl ? bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, opts)
            : bufferevent_socket_new(base, fd, opts);
    if (!bev)
        return NULL;
    bufferevent_setcb(bev, conn_read, conn_write, conn_event, c);
    bufferevent_setwatermark(bev, EV_READ, 0, INPUT_HIGH);
    if (ssl) {
        /* A client that closes without close_notify is an ordinary EOF. */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        c->tls = true;
        c->handshaking = true;
        /* A deadline for the whole handshake: the bufferevent's timeouts
         * restart with every byte, and a client could trickle one. */
        struct timeval tv;
        struct timeval *t = secs(&tv, c->params->cfg.tls_handshake_timeout);
        bufferevent_set_timeouts(bev, t, t); /* a silent client, should the timer fail */
        c->tls_ev = c->tls_ev ? c->tls_ev : evtimer_new(base, tls_deadline, c);
        if (c->tls_ev && t)
            evtimer_add(c->tls_ev, t);
    }
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return bev;
}

/* STARTTLS's 220 is out: the same socket goes on under TLS. What the
 * client sent after the STARTTLS line went with the old buffer (RFC 3207
 * 5: never read as a command). */
static void switch_to_tls(struct conn *c)
{
    c->tls_pending = false;
    SSL *ssl = SSL_new(server_tls_ctx(c->srv));
    if (!ssl) {
        conn_drop(c, "out of memory for TLS");
        return;
    }
    struct event_base *base = bufferevent_get_base(c->bev);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    bufferevent_setfd(c->bev, -1); /* the old bufferevent must not close it */
    bufferevent_free(c->bev);
    c->bev = make_bev(c, base, fd, ssl);
    if (!c->bev) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        conn_drop(c, "out of memory for TLS");
    }
}

/* After the STARTTLS line: throw away the rest of the input, and start TLS
 * once the 220 is sent. */
static void begin_tls(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        switch_to_tls(c);
}

/* The handshake finished: the channel learns it, and an implicit TLS
 * session gets its greeting now. */
static void tls_established(struct conn *c)
{
    struct tls_info info = {0};
    tls_info_of(bufferevent_openssl_get_ssl(c->bev), &info);
    c->handshaking = false;
    if (c->tls_ev)
        evtimer_del(c->tls_ev);
    channel_tls_started(c->chan, info.protocol, info.cipher, info.bits);
    if (c->implicit_tls)
        channel_start(c->chan);
    if (c->shutdown_asked)
        channel_shutdown(c->chan, c->shutdown_now);
    c->phase = PHASE_CLOSED; /* forces update_timeouts() */
    flush_out(c);
    if (!c->closing)
        update_timeouts(c, &c->params->cfg);
}

/* The handshake failed or timed out: one log line, and the connection goes. */
static void tls_handshake_failed(struct conn *c, short what)
{
    char why[300], msg[340];
    if (what & BEV_EVENT_TIMEOUT)
        snprintf(why, sizeof(why), "no handshake within %u s",
                 c->params->cfg.tls_handshake_timeout);
    else
        tls_failure(c->bev, why, sizeof(why));
    snprintf(msg, sizeof(msg), "TLS handshake failed: %s", why);
    if (!c->implicit_tls) {
        conn_drop(c, msg);
        return;
    }
    /* The session never started: this line is all the log has of it. */
    smtpd_session_log(c->chan, SMTPD_LOG_INFO, "%s (implicit TLS from %s:%u)", msg,
                      conn_peer_addr(c), smtpd_session_peer_port(c->chan));
    conn_free(c);
}

static void tls_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    if (c->handshaking)
        tls_handshake_failed(c, BEV_EVENT_TIMEOUT);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    /* Feed until the input is used up, a handler is pending or the session
     * closes. A burst of pipelined commands is answered a batch at a time:
     * the channel stops after the command that filled one (tr_backlogged),
     * the batch goes to the socket, and feeding goes on only if it took it. */
    while (!c->closing && !c->output_paused) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t used = channel_feed(c->chan, v.iov_base, v.iov_len);
        evbuffer_drain(in, used);
        if (tr_backlogged(c)) {
            flush_out(c);
            pause_if_unsent(c);
            continue;
        }
        if (used < v.iov_len)
            break;
    }
    flush_out(c);
    if (c->closing)
        return;
    if (c->tls_pending) {
        begin_tls(c);
        return;
    }
    update_timeouts(c, &c->params->cfg);
    check_data_rate(c, &c->params->cfg);
    check_command_time(c, &c->params->cfg);
    finish_eof(c);
    if (c->closing)
        return;
    pause_if_unsent(c);
}

static void answer_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    channel_answer_timeout(c->chan);
}

static void conn_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
    if (c->tls_pending && pending == 0 && !c->closing) {
        c->output_paused = false; /* the 220 was what filled the socket */
        switch_to_tls(c);
        return;
    }
    if (c->closing) {
        if (pending == 0)
            conn_free(c);
        return;
    }
    if (c->output_paused && pending == 0) {
        c->output_paused = false;
        /* The time we did not read is not held against the client. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        shift(&c->line_start, &c->paused_at, &now);
        shift(&c->data_start, &c->paused_at, &now);
        bufferevent_enable(bev, EV_READ);
        tr_resume(c);
    }
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        tls_established(c);
        return;
    }
    if (c->handshaking) {
        tls_handshake_failed(c, what);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && !c->closing) {
        channel_timeout(c->chan);
        return;
    }
    if (what == (BEV_EVENT_EOF | BEV_EVENT_READING) && !c->closing) {
        c->eof = true;
        conn_read(bev, c);
        return;
    }
    char why[300] = "error";
    if (c->tls && !(what & (BEV_EVENT_EOF | BEV_EVENT_TIMEOUT))) {
        char e[256];
        tls_failure(c->bev, e, sizeof(e));
        snprintf(why, sizeof(why), "TLS error: %s", e);
    }
    conn_drop(c, (what & BEV_EVENT_EOF)       ? "eof"
                 : (what & BEV_EVENT_TIMEOUT) ? "write timeout"
                                              : why);
}

void sockaddr_text(const struct sockaddr *sa, char *addr, uint16_t *port)
{
    snprintf(addr, 64, "?");
    *port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, addr, 64);
        *port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, addr, 64);
        *port = ntohs(in6->sin6_port);
    }
}

struct conn *conn_new(struct smtpd_server *srv, struct event_base *base,
                      const struct chan_params *params, evutil_socket_t fd,
                      const struct sockaddr *sa, const struct sockaddr *via, unsigned long id,
                      bool implicit_tls)
{
    char peer[64], local[64], balancer[64];
    struct chan_addrs addrs = {.peer_addr = peer, .local_addr = local};
    sockaddr_text(sa, peer, &addrs.peer_port);
    if (via) {
        sockaddr_text(via, balancer, &addrs.via_port);
        addrs.via_addr = balancer;
    }
    /* The address the client connected to (smtpd_session_local_addr). */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss)); /* the analyzer cannot see the kernel fill it */
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        ss.ss_family = AF_UNSPEC;
    sockaddr_text((struct sockaddr *)&ss, local, &addrs.local_port);
    /* Replies are whole and small: send each at once (no Nagle delay). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        evutil_closesocket(fd);
        return NULL;
    }
    c->srv = srv;
    c->params = params;
    c->phase = PHASE_CLOSED; /* forces the first update_timeouts() */
    c->implicit_tls = implicit_tls;
    c->out = evbuffer_new();
    c->answer_ev = evtimer_new(base, answer_timeout, c);
    c->chan = c->out && c->answer_ev ? channel_new(params, &transport, c, &addrs, id) : NULL;
    SSL *ssl = c->chan && implicit_tls ? SSL_new(server_tls_ctx(srv)) : NULL;
    if (c->chan && (!implicit_tls || ssl))
        c->bev = make_bev(c, base, fd, ssl);
    if (!c->bev) {
        if (ssl)
            SSL_free(ssl);
        evutil_closesocket(fd);
        channel_free(c->chan);
        if (c->answer_ev)
            event_free(c->answer_ev);
        if (c->out)
            evbuffer_free(c->out);
        free(c);
        return NULL;
    }
    if (implicit_tls)
        return c; /* the greeting comes after the handshake (tls_established) */
    channel_start(c->chan);
    flush_out(c);
    if (!c->closing)
        update_timeouts(c, &params->cfg);
    return c;
}

void conn_shutdown(struct conn *c, bool now)
{
    if (c->handshaking) {
        /* Nothing may go out in plaintext now: the channel hears of it once
         * the handshake is over (or the handshake timeout ends it). */
        c->shutdown_asked = true;
        c->shutdown_now = c->shutdown_now || now;
        return;
    }
    if (!c->closing)
        channel_shutdown(c->chan, now);
}

void conn_link(struct conn *c, struct conn **head)
{
    c->head = head;
    c->next = *head;
    c->prev = NULL;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

void conn_drop(struct conn *c, const char *why)
{
    channel_lost(c->chan, why);
    conn_free(c);
}

const char *conn_peer_addr(const struct conn *c)
{
    return smtpd_session_peer_addr(c->chan);
}

struct conn *conn_next(const struct conn *c)
{
    return c->next;
}

void conn_free(struct conn *c)
{
    if (c->head) {
        if (c->prev)
            c->prev->next = c->next;
        else
            *c->head = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    channel_free(c->chan);
    event_free(c->answer_ev);
    if (c->delay_ev)
        event_free(c->delay_ev);
    if (c->tls_ev)
        event_free(c->tls_ev);
    if (c->tls && !c->handshaking) {
        /* close_notify (RFC 8446 6.1), without waiting for the client's. */
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl)
            SSL_shutdown(ssl);
    }
    bufferevent_free(c->bev);
    evbuffer_free(c->out);
    struct smtpd_server *srv = c->srv;
    free(c);
    server_conn_closed(srv);
}
