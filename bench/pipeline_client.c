/*
 * pipeline_client: a small SMTP load generator for bench/run.py.
 *
 * One thread, epoll, S sessions (one TCP connection each, EHLO once, then M
 * messages shared between the sessions over the reused connections, QUIT).
 *
 *   -M none   no pipelining: MAIL, wait, RCPT, wait, DATA, wait for 354,
 *             body + ".", wait: four round trips per message (what
 *             smtp-source does).
 *   -M full   MAIL, RCPT, DATA, body and "." in ONE write per message, then
 *             read the four replies: one round trip per message.  This is
 *             what the brief calls a pipelining client; strictly, RFC 2920
 *             says the client must wait for the 354 before sending the body.
 *   -M rfc    RFC 2920 to the letter: "MAIL RCPT DATA" in one write, wait
 *             for the 354, then body + "." + the next "MAIL RCPT DATA" in
 *             one write (the body may start a new group, section 3.1): one
 *             round trip per message in steady state.
 *   -w W      (full only) keep W messages in flight per session: W messages
 *             per write.  -w 1 is one message per round trip.
 *   -T S      start no new message after S seconds (finish the ones in
 *             flight, QUIT): bounds a run against a slow server; the rate
 *             is then done/wall.
 *   -d US     wait US microseconds between two connects (default 0: all
 *             sessions connect back to back, as smtp-source does).
 *
 * Prints one JSON line on stdout: messages done, wall time (first connect to
 * last close), rate, own user/sys CPU, and whether the server advertised
 * PIPELINING.  Exits 0 only if every message got 250.
 *
 *   cc -O2 -o pipeline_client pipeline_client.c
 *   ./pipeline_client -s 1 -m 5000 -l 1024 -M full 127.0.0.1 2525
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_NONE, M_FULL, M_RFC };
enum phase { P_GREET, P_EHLO, P_XFER, P_QUIT, P_DONE };
/* what the next reply answers */
enum kind { K_MAIL, K_RCPT, K_DATA, K_END };

#define INBUF 65536
#define QMAX 4096

struct buf {
    char *p;
    size_t off, len, cap;
};

struct sess {
    int fd;
    enum phase phase;
    char in[INBUF];
    size_t inlen;
    struct buf out;
    unsigned char q[QMAX]; /* FIFO of expected replies (enum kind) */
    unsigned qh, qn;
    unsigned inflight;
    int want_out;
};

static enum mode mode = M_FULL;
static long to_start, done_msgs, errors;
static unsigned window = 1;
static int advertised;
static char first_error[256];
static const char *env_s, *body_s, *full_s;
static size_t env_n, body_n, full_n;
static const char mail_s[] = "MAIL FROM:<sender@localhost>\r\n";
static const char rcpt_s[] = "RCPT TO:<rcpt@localhost>\r\n";
static const char data_s[] = "DATA\r\n";
static int ep;
static int live;

static void die(const char *m)
{
    perror(m);
    exit(2);
}

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->off == b->len)
        b->off = b->len = 0;
    if (b->len + n > b->cap) {
        if (b->off) {
            memmove(b->p, b->p + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            b->cap = (b->len + n) * 2;
            b->p = realloc(b->p, b->cap);
            if (!b->p)
                die("realloc");
        }
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void expect(struct sess *s, enum kind k)
{
    if (s->qn >= QMAX) {
        fprintf(stderr, "reply queue overflow\n");
        exit(2);
    }
    s->q[(s->qh + s->qn++) % QMAX] = (unsigned char)k;
}

static void fail(struct sess *s, const char *line, size_t n)
{
    errors++;
    if (!first_error[0])
        snprintf(first_error, sizeof(first_error), "%.*s", (int)(n > 200 ? 200 : n), line);
    if (s->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
        live--;
    }
    s->phase = P_DONE;
}

/* Start one message in this session (to_start already checked). */
static void start_msg(struct sess *s)
{
    to_start--;
    switch (mode) {
    case M_NONE:
        put(&s->out, mail_s, sizeof(mail_s) - 1);
        expect(s, K_MAIL);
        break;
    case M_FULL:
        put(&s->out, full_s, full_n);
        expect(s, K_MAIL);
        expect(s, K_RCPT);
        expect(s, K_DATA);
        expect(s, K_END);
        s->inflight++;
        break;
    case M_RFC:
        put(&s->out, env_s, env_n);
        expect(s, K_MAIL);
        expect(s, K_RCPT);
        expect(s, K_DATA);
        break;
    }
}

static void maybe_quit(struct sess *s)
{
    if (s->qn == 0 && to_start == 0 && s->phase == P_XFER) {
        put(&s->out, "QUIT\r\n", 6);
        s->phase = P_QUIT;
    }
}

static void fill(struct sess *s)
{
    if (mode == M_FULL) {
        while (s->inflight < window && to_start > 0)
            start_msg(s);
    } else if (s->qn == 0 && to_start > 0) {
        start_msg(s);
    }
    maybe_quit(s);
}

static void on_reply(struct sess *s, int code, const char *line, size_t n)
{
    switch (s->phase) {
    case P_GREET:
        if (code != 220)
            return fail(s, line, n);
        put(&s->out, "EHLO bench-client.localhost\r\n", 29);
        s->phase = P_EHLO;
        return;
    case P_EHLO:
        if (code != 250)
            return fail(s, line, n);
        s->phase = P_XFER;
        fill(s);
        return;
    case P_QUIT:
        s->phase = P_DONE;
        return;
    case P_DONE:
        return;
    case P_XFER:
        break;
    }
    if (s->qn == 0)
        return fail(s, line, n);
    enum kind k = (enum kind)s->q[s->qh];
    s->qh = (s->qh + 1) % QMAX;
    s->qn--;
    if (k == K_DATA ? code != 354 : code / 100 != 2)
        return fail(s, line, n);
    switch (k) {
    case K_MAIL:
        if (mode == M_NONE) {
            put(&s->out, rcpt_s, sizeof(rcpt_s) - 1);
            expect(s, K_RCPT);
        }
        break;
    case K_RCPT:
        if (mode == M_NONE) {
            put(&s->out, data_s, sizeof(data_s) - 1);
            expect(s, K_DATA);
        }
        break;
    case K_DATA:
        if (mode == M_NONE) {
            put(&s->out, body_s, body_n);
            expect(s, K_END);
        } else if (mode == M_RFC) {
            put(&s->out, body_s, body_n);
            expect(s, K_END);
            if (to_start > 0)
                start_msg(s); /* next envelope in the same write as the body */
        }
        break;
    case K_END:
        done_msgs++;
        if (mode == M_FULL)
            s->inflight--;
        fill(s);
        break;
    }
}

static void parse_input(struct sess *s)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(s->in + start, '\n', s->inlen - start);
        if (!nl)
            break;
        char *line = s->in + start;
        size_t n = (size_t)(nl - line) + 1;
        start += n;
        if (n < 4 || line[0] < '1' || line[0] > '5') {
            fail(s, line, n);
            return;
        }
        if (s->phase == P_EHLO && n >= 14 && strncasecmp(line + 4, "PIPELINING", 10) == 0)
            advertised = 1;
        if (line[3] == '-')
            continue;
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        on_reply(s, code, line, n);
        if (s->phase == P_DONE)
            break;
    }
    if (start) {
        memmove(s->in, s->in + start, s->inlen - start);
        s->inlen -= start;
    }
    if (s->inlen == INBUF)
        fail(s, "reply line too long", 19);
}

static void flush(struct sess *s)
{
    while (s->fd >= 0 && s->out.off < s->out.len) {
        ssize_t w = write(s->fd, s->out.p + s->out.off, s->out.len - s->out.off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!s->want_out) {
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = s};
                    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                    s->want_out = 1;
                }
                return;
            }
            fail(s, strerror(errno), strlen(strerror(errno)));
            return;
        }
        s->out.off += (size_t)w;
    }
    if (s->want_out && s->fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        s->want_out = 0;
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *make_body(size_t size, size_t *n)
{
    static const char hdr[] = "From: <sender@localhost>\r\nTo: <rcpt@localhost>\r\n"
                              "Subject: pipeline_client\r\nMessage-Id: <bench@localhost>\r\n\r\n";
    char *b = malloc(sizeof(hdr) + size + 16);
    if (!b)
        die("malloc");
    size_t len = sizeof(hdr) - 1;
    memcpy(b, hdr, len);
    /* body lines of 78 letters + CRLF (none starts with "."), size bytes */
    size_t start = len;
    while (len - start < size) {
        size_t room = size - (len - start);
        if (room <= 2) {
            b[len++] = 'x';
            continue;
        }
        size_t k = room - 2 < 78 ? room - 2 : 78;
        for (size_t i = 0; i < k; i++)
            b[len + i] = (char)('a' + (i + len / 80) % 26);
        len += k;
        b[len++] = '\r';
        b[len++] = '\n';
    }
    if (len < 2 || b[len - 1] != '\n') {
        b[len++] = '\r';
        b[len++] = '\n';
    }
    memcpy(b + len, ".\r\n", 3);
    len += 3;
    *n = len;
    return b;
}

int main(int argc, char **argv)
{
    int sessions = 1, opt;
    long messages = 1000;
    size_t size = 1024;
    double timeout = 60, deadline = 0;
    long spacing_us = 0;
    while ((opt = getopt(argc, argv, "s:m:l:w:M:t:T:d:")) != -1) {
        switch (opt) {
        case 's':
            sessions = atoi(optarg);
            break;
        case 'm':
            messages = atol(optarg);
            break;
        case 'l':
            size = (size_t)atol(optarg);
            break;
        case 'w':
            window = (unsigned)atoi(optarg);
            break;
        case 't':
            timeout = atof(optarg);
            break;
        case 'T':
            deadline = atof(optarg);
            break;
        case 'd':
            spacing_us = atol(optarg);
            break;
        case 'M':
            mode = !strcmp(optarg, "none") ? M_NONE : !strcmp(optarg, "rfc") ? M_RFC : M_FULL;
            if (strcmp(optarg, "none") && strcmp(optarg, "rfc") && strcmp(optarg, "full")) {
                fprintf(stderr, "-M none|full|rfc\n");
                return 2;
            }
            break;
        default:
            fprintf(
                stderr,
                "usage: %s [-s sessions] [-m msgs] [-l bytes] [-w window] "
                "[-M none|full|rfc] [-t timeout] [-T deadline] [-d connect_spacing_us] host port\n",
                argv[0]);
            return 2;
        }
    }
    if (argc - optind != 2 || sessions < 1 || messages < 0 || window < 1 || window * 4 > QMAX - 8) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((unsigned short)atoi(argv[optind + 1]))};
    if (inet_pton(AF_INET, argv[optind], &sa.sin_addr) != 1) {
        fprintf(stderr, "IPv4 address expected\n");
        return 2;
    }
    size_t bn;
    char *body = make_body(size, &bn);
    body_s = body;
    body_n = bn;
    char env[128];
    env_n = (size_t)snprintf(env, sizeof(env), "%s%s%s", mail_s, rcpt_s, data_s);
    env_s = env;
    char *full = malloc(env_n + bn);
    memcpy(full, env, env_n);
    memcpy(full + env_n, body, bn);
    full_s = full;
    full_n = env_n + bn;
    to_start = messages;
    long requested = messages;

    ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    struct sess *ss = calloc((size_t)sessions, sizeof(*ss));
    if (!ss)
        die("calloc");
    double t0 = now();
    for (int i = 0; i < sessions; i++) {
        struct sess *s = &ss[i];
        s->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (s->fd < 0)
            die("socket");
        if (connect(s->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
            die("connect");
        int one = 1;
        setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK) != 0)
            die("fcntl");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) != 0)
            die("epoll_ctl");
        live++;
        if (spacing_us > 0 && i + 1 < sessions) {
            struct timespec ts = {spacing_us / 1000000, (spacing_us % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
    struct epoll_event evs[256];
    while (live > 0) {
        if (deadline > 0 && to_start > 0 && now() - t0 > deadline) {
            messages -= to_start; /* stop starting new ones */
            to_start = 0;
            for (int i = 0; i < sessions; i++)
                if (ss[i].fd >= 0 && ss[i].phase == P_XFER) {
                    maybe_quit(&ss[i]);
                    flush(&ss[i]);
                }
        }
        if (now() - t0 > timeout) {
            fprintf(stderr, "timeout after %.0f s\n", timeout);
            errors++;
            if (!first_error[0])
                snprintf(first_error, sizeof(first_error), "timeout");
            break;
        }
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct sess *s = evs[i].data.ptr;
            if (s->fd < 0)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t r = read(s->fd, s->in + s->inlen, INBUF - s->inlen);
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    goto out;
                if (r <= 0) {
                    if (s->phase != P_DONE)
                        fail(s, "connection closed early", 23);
                    else if (s->fd >= 0) {
                        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
                        close(s->fd);
                        s->fd = -1;
                        live--;
                    }
                    continue;
                }
                s->inlen += (size_t)r;
                parse_input(s);
            }
        out:
            if (s->fd >= 0)
                flush(s);
            if (s->phase == P_DONE && s->fd >= 0 && s->out.off == s->out.len) {
                epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
                close(s->fd);
                s->fd = -1;
                live--;
            }
        }
    }
    double wall = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    const char *mn = mode == M_NONE ? "none" : mode == M_RFC ? "rfc" : "full";
    for (char *p = first_error; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 32)
            *p = ' ';
    printf("{\"mode\": \"%s\", \"sessions\": %d, \"window\": %u, \"size\": %zu, "
           "\"stopped_at_deadline\": %s, \"messages\": %ld, \"done\": %ld, \"errors\": %ld, "
           "\"wall\": %.6f, "
           "\"rate\": %.1f, \"user\": %.4f, \"sys\": %.4f, \"pipelining_advertised\": %s, "
           "\"first_error\": \"%s\"}\n",
           mn, sessions, window, size, messages != requested ? "true" : "false", messages,
           done_msgs, errors, wall, wall > 0 ? (double)done_msgs / wall : 0.0, user, sys,
           advertised ? "true" : "false", first_error);
    return errors == 0 && done_msgs == messages ? 0 : 1;
}
