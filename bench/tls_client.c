/*
 * tls_client: an SMTP load generator for bench/tls.py, plaintext or STARTTLS.
 *
 * S sessions, one thread and one blocking TCP connection each.  A session
 * reads the greeting, sends EHLO, and with -t sends STARTTLS, does the TLS
 * handshake (nothing is verified: it is a benchmark) and sends EHLO again.
 * Then it takes messages from a count M shared by all sessions until none is
 * left: MAIL FROM, wait, RCPT TO, wait, DATA, wait for 354, headers + -l
 * bytes of body + "." in one write, wait for 250 (four round trips per
 * message, what smtp-source does without pipelining), and finally QUIT.
 * Every reply is checked; a session whose reply is not the expected one
 * counts an error and stops.  Without -t the steps are the same minus
 * STARTTLS and the second EHLO, so the two modes compare the transport.
 *
 *   -s S      sessions (threads; default 1)
 *   -m M      messages in all (default 1000)
 *   -l B      body bytes per message (default 1024)
 *   -t        STARTTLS after the first EHLO
 *   -2        TLS 1.2 at most (default: 1.2 or 1.3, OpenSSL decides: 1.3)
 *   -c LIST   TLS 1.2 cipher list / -C TLS 1.3 ciphersuites (default: OpenSSL's)
 *   -T SEC    socket timeout of every read and write (default 60)
 *   -P K      at most K sessions in setup (connect to the last EHLO reply) at
 *             once (default 0: no limit)
 *   -H        hold: after the (second) EHLO every session waits; once all are
 *             there (or have failed) one JSON line {"held": N, ...} goes to
 *             stdout, then the client waits for EOF on stdin before sending
 *             the messages (usually -m 0) and QUIT.  For idle-connection
 *             memory measurements.
 *
 * Prints one JSON line on stdout: messages asked and done, errors, wall
 * seconds (first connect to last close), rate, own user/sys CPU (all
 * threads), the slowest session setup (connect to the last EHLO reply), the
 * TLS protocol, cipher and key exchange group of the first session.  Exits 0
 * only if every message got 250 (and, with -H, every session was held).
 *
 *   cc -O2 -pthread -o tls_client tls_client.c -lssl -lcrypto
 *   ./tls_client -t -s 20 -m 100000 -l 1024 127.0.0.1 2525
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define INBUF 16384

struct conn {
    int fd;
    SSL *ssl;
    char in[INBUF];
    size_t off, len;
    int ready;      /* greeting and EHLO (after STARTTLS with -t) done */
    char line[512]; /* the final line of the last reply, for error messages */
};

static SSL_CTX *ctx;
static struct sockaddr_in addr;
static int use_tls, hold;
static double io_timeout = 60;
static char *msg; /* headers + body + ".\r\n" */
static size_t msg_n;
static atomic_long to_start, done_msgs, errors;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int arrived, released;     /* hold mode: sessions there; main said go */
static int setup_limit, in_setup; /* -P */
static char first_error[256];
static double max_setup;
static char tls_info[160];

static const char mail_s[] = "MAIL FROM:<sender@localhost>\r\n";
static const char rcpt_s[] = "RCPT TO:<rcpt@localhost>\r\n";
static const char data_s[] = "DATA\r\n";
static const char ehlo_s[] = "EHLO bench-client.localhost\r\n";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Record an error (the first one's text is kept) and return -1. */
static int fail(const char *what, const char *detail)
{
    atomic_fetch_add(&errors, 1);
    pthread_mutex_lock(&mu);
    if (!first_error[0])
        snprintf(first_error, sizeof(first_error), "%s: %.200s", what, detail ? detail : "");
    pthread_mutex_unlock(&mu);
    return -1;
}

static const char *ssl_error(void)
{
    static _Thread_local char b[200];
    unsigned long e = ERR_get_error();
    if (!e)
        return errno ? strerror(errno) : "unexpected EOF";
    ERR_error_string_n(e, b, sizeof(b));
    return b;
}

static int write_all(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        if (c->ssl) {
            size_t w = 0;
            if (SSL_write_ex(c->ssl, p, n, &w) != 1)
                return fail("SSL_write", ssl_error());
            p += w;
            n -= w;
        } else {
            ssize_t w = write(c->fd, p, n);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return fail("write", w < 0 ? strerror(errno) : "0 bytes");
            p += w;
            n -= (size_t)w;
        }
    }
    return 0;
}

/* More input into c->in; 0, or -1 on error or EOF. */
static int fill(struct conn *c)
{
    if (c->off > 0) {
        memmove(c->in, c->in + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == INBUF)
        return fail("reply", "line too long");
    for (;;) {
        if (c->ssl) {
            size_t r = 0;
            errno = 0;
            if (SSL_read_ex(c->ssl, c->in + c->len, INBUF - c->len, &r) != 1)
                return fail("SSL_read", ssl_error());
            c->len += r;
            return 0;
        }
        ssize_t r = read(c->fd, c->in + c->len, INBUF - c->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return fail("read", r < 0 ? strerror(errno) : "connection closed");
        c->len += (size_t)r;
        return 0;
    }
}

/*
 * Read one whole reply (every continuation line); return its code, or -1.
 * If starttls is not NULL, set *starttls when a line advertises STARTTLS.
 */
static int read_reply(struct conn *c, int *starttls)
{
    for (;;) {
        char *start = c->in + c->off;
        char *nl = memchr(start, '\n', c->len - c->off);
        if (!nl) {
            if (fill(c) < 0)
                return -1;
            continue;
        }
        size_t n = (size_t)(nl - start) + 1;
        c->off += n;
        if (n < 5 || start[0] < '1' || start[0] > '5' || start[1] < '0' || start[1] > '9' ||
            start[2] < '0' || start[2] > '9' ||
            (start[3] != ' ' && start[3] != '-' && start[3] != '\r')) {
            snprintf(c->line, sizeof(c->line), "%.*s", (int)n, start);
            return fail("malformed reply", c->line);
        }
        if (starttls && n >= 12 && strncasecmp(start + 4, "STARTTLS", 8) == 0)
            *starttls = 1;
        if (start[3] == '-')
            continue;
        snprintf(c->line, sizeof(c->line), "%.*s", (int)(n > 2 ? n - 2 : n), start);
        return (start[0] - '0') * 100 + (start[1] - '0') * 10 + (start[2] - '0');
    }
}

/* Send a command, read its reply, fail unless the code is want. */
static int step(struct conn *c, const char *cmd, size_t n, int want, int *starttls)
{
    if (write_all(c, cmd, n) < 0)
        return -1;
    int code = read_reply(c, starttls);
    if (code < 0)
        return -1;
    if (code != want) {
        char what[64];
        snprintf(what, sizeof(what), "%.*s got", (int)strcspn(cmd, ": \r"), cmd);
        return fail(what, c->line);
    }
    return 0;
}

static int start_tls(struct conn *c)
{
    int offered = 0;
    if (step(c, ehlo_s, sizeof(ehlo_s) - 1, 250, &offered) < 0)
        return -1;
    if (!offered)
        return fail("EHLO", "STARTTLS not advertised");
    if (step(c, "STARTTLS\r\n", 10, 220, NULL) < 0)
        return -1;
    if (c->off != c->len)
        return fail("STARTTLS", "plaintext after the 220 reply");
    c->off = c->len = 0;
    c->ssl = SSL_new(ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        return fail("SSL_new", ssl_error());
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    errno = 0;
    if (SSL_connect(c->ssl) != 1)
        return fail("TLS handshake", ssl_error());
    pthread_mutex_lock(&mu);
    if (!tls_info[0]) {
        int nid = SSL_get_negotiated_group(c->ssl);
        const char *g = nid > 0 ? OBJ_nid2sn(nid) : NULL;
        snprintf(tls_info, sizeof(tls_info),
                 "\"protocol\": \"%s\", \"cipher\": \"%s\", \"group\": \"%s\"",
                 SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl), g ? g : "?");
    }
    pthread_mutex_unlock(&mu);
    return step(c, ehlo_s, sizeof(ehlo_s) - 1, 250, NULL);
}

static int session(struct conn *c)
{
    double t0 = now();
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return fail("socket", strerror(errno));
    struct timeval tv = {(time_t)io_timeout,
                         (suseconds_t)((io_timeout - (double)(time_t)io_timeout) * 1e6)};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        return fail("connect", strerror(errno));
    int code = read_reply(c, NULL);
    if (code < 0)
        return -1;
    if (code != 220)
        return fail("greeting", c->line);
    if (use_tls ? start_tls(c) < 0 : step(c, ehlo_s, sizeof(ehlo_s) - 1, 250, NULL) < 0)
        return -1;
    double setup = now() - t0;
    pthread_mutex_lock(&mu);
    if (setup > max_setup)
        max_setup = setup;
    pthread_mutex_unlock(&mu);
    return 0;
}

static int messages(struct conn *c)
{
    while (atomic_fetch_sub(&to_start, 1) > 0) {
        if (step(c, mail_s, sizeof(mail_s) - 1, 250, NULL) < 0 ||
            step(c, rcpt_s, sizeof(rcpt_s) - 1, 250, NULL) < 0 ||
            step(c, data_s, sizeof(data_s) - 1, 354, NULL) < 0)
            return -1;
        if (write_all(c, msg, msg_n) < 0)
            return -1;
        int code = read_reply(c, NULL);
        if (code < 0)
            return -1;
        if (code != 250)
            return fail("end of data got", c->line);
        atomic_fetch_add(&done_msgs, 1);
    }
    return step(c, "QUIT\r\n", 6, 221, NULL);
}

static void *run(void *arg)
{
    struct conn *c = arg;
    if (setup_limit > 0) {
        pthread_mutex_lock(&mu);
        while (in_setup >= setup_limit)
            pthread_cond_wait(&cv, &mu);
        in_setup++;
        pthread_mutex_unlock(&mu);
    }
    int ok = session(c) == 0;
    if (setup_limit > 0) {
        pthread_mutex_lock(&mu);
        in_setup--;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    c->ready = ok;
    if (hold) {
        pthread_mutex_lock(&mu);
        arrived++;
        pthread_cond_broadcast(&cv);
        while (!released)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
    }
    if (ok && messages(c) == 0 && c->ssl)
        SSL_shutdown(c->ssl); /* our close_notify; the server's is not awaited */
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    return (void *)(long)ok;
}

static char *make_body(size_t size, size_t *n)
{
    static const char hdr[] = "From: <sender@localhost>\r\nTo: <rcpt@localhost>\r\n"
                              "Subject: tls_client\r\nMessage-Id: <bench@localhost>\r\n\r\n";
    char *b = malloc(sizeof(hdr) + size + 16);
    if (!b) {
        perror("malloc");
        exit(2);
    }
    size_t len = sizeof(hdr) - 1;
    memcpy(b, hdr, len);
    /* lines of at most 78 letters + CRLF (none starts with "."), size bytes */
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
    if (b[len - 1] != '\n') {
        b[len++] = '\r';
        b[len++] = '\n';
    }
    memcpy(b + len, ".\r\n", 3);
    *n = len + 3;
    return b;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [-t] [-2] [-s sessions] [-m msgs] [-l bytes] [-T io_timeout] [-H] "
            "[-P max_in_setup] [-c tls12_ciphers] [-C tls13_suites] host port\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    int sessions = 1, opt;
    long count = 1000;
    size_t size = 1024;
    const char *ciphers = NULL, *suites = NULL;
    int tls12 = 0;
    while ((opt = getopt(argc, argv, "s:m:l:t2c:C:T:HP:")) != -1) {
        switch (opt) {
        case 's':
            sessions = atoi(optarg);
            break;
        case 'm':
            count = atol(optarg);
            break;
        case 'l':
            size = (size_t)atol(optarg);
            break;
        case 't':
            use_tls = 1;
            break;
        case 'c':
            ciphers = optarg;
            break;
        case 'C':
            suites = optarg;
            break;
        case 'T':
            io_timeout = atof(optarg);
            break;
        case 'H':
            hold = 1;
            break;
        case 'P':
            setup_limit = atoi(optarg);
            break;
        case '2':
            tls12 = 1;
            break;
        default:
            usage(argv[0]);
        }
    }
    if (argc - optind != 2 || sessions < 1 || count < 0 || io_timeout <= 0)
        usage(argv[0]);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[optind + 1]));
    if (inet_pton(AF_INET, argv[optind], &addr.sin_addr) != 1) {
        fprintf(stderr, "IPv4 address expected\n");
        return 2;
    }
    if (use_tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx || (ciphers && SSL_CTX_set_cipher_list(ctx, ciphers) != 1) ||
            (suites && SSL_CTX_set_ciphersuites(ctx, suites) != 1) ||
            (tls12 && SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1)) {
            fprintf(stderr, "SSL_CTX: %s\n", ssl_error());
            return 2;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    signal(SIGPIPE, SIG_IGN);
    msg = make_body(size, &msg_n);
    atomic_store(&to_start, count);

    struct conn *cs = calloc((size_t)sessions, sizeof(*cs));
    pthread_t *th = calloc((size_t)sessions, sizeof(*th));
    if (!cs || !th) {
        perror("calloc");
        return 2;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    double t0 = now();
    int started = 0;
    for (int i = 0; i < sessions; i++) {
        cs[i].fd = -1;
        int e = pthread_create(&th[i], &attr, run, &cs[i]);
        if (e != 0) {
            fail("pthread_create", strerror(e));
            break;
        }
        started++;
    }
    int held = 0;
    if (hold) {
        pthread_mutex_lock(&mu);
        while (arrived < started)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        for (int i = 0; i < started; i++)
            held += cs[i].ready;
        printf("{\"held\": %d, \"sessions\": %d, \"errors\": %ld, \"setup_wall\": %.6f, "
               "\"max_setup\": %.6f%s%s}\n",
               held, sessions, atomic_load(&errors), now() - t0, max_setup, tls_info[0] ? ", " : "",
               tls_info);
        fflush(stdout);
        char b[256];
        while (fread(b, 1, sizeof(b), stdin) > 0)
            ;
        pthread_mutex_lock(&mu);
        released = 1;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double wall = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    for (char *p = first_error; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 32)
            *p = ' ';
    long done = atomic_load(&done_msgs), errs = atomic_load(&errors);
    printf("{\"tls\": %s, \"sessions\": %d, \"size\": %zu, \"messages\": %ld, \"done\": %ld, "
           "\"errors\": %ld, \"wall\": %.6f, \"rate\": %.1f, \"user\": %.4f, \"sys\": %.4f, "
           "\"max_setup\": %.6f, \"first_error\": \"%s\"%s%s}\n",
           use_tls ? "true" : "false", sessions, size, count, done, errs, wall,
           wall > 0 ? (double)done / wall : 0.0, user, sys, max_setup, first_error,
           tls_info[0] ? ", " : "", tls_info);
    return errs == 0 && done == count && (!hold || held == sessions) ? 0 : 1;
}
