/*
 * fuzz_channel: whole SMTP dialogues through the channel (channel.c and the
 * parsers below it), with a fake transport and a handler whose every answer
 * is chosen by the input: the default answer, an answer at once, SMTPD_PENDING
 * with the answer given before the next feed (as from the event loop), a
 * refusal, odd codes, enhanced codes and texts.
 *
 * Input: a 6-byte header, then the client's bytes.
 *   [0] flags: bit 0 SMTPUTF8, bit 1 decode_data (wins over bit 0), bits 2-3
 *       log level (0 none, 1 info, 2-3 debug), bit 4 a 300-byte hostname,
 *       bit 5 server events between chunks (shutdown, timeout, too slow,
 *       lost connection), bits 6-7 chunk sizes (all at once, 1 byte, 1..16,
 *       1..600)
 *   [1] data_size_limit: 0 none, 1..100 as is, 101..200 (n-100)*50,
 *       201..254 33554432, 255 SIZE_MAX
 *   [2] bits 0-1 max_recipients (1, 2, 3, 1000), bits 2-3 bare CR/LF
 *       policy (normalize, reject, accept, accept), bits 4-5 max_errors
 *       (none, 10, 3, 1), bits 6-7 the transport is backlogged from (never,
 *       1, 64, 600) unsent reply bytes on: the channel must then stop after
 *       a command and take the rest once the replies are read
 *   [3..5] seed of the decisions (handler answers, chunk sizes, events)
 * The input is fed in chunks as connection.c does: bytes the channel does
 * not take stay buffered and are fed again after the next answer. At the end
 * any owed answer is given, the rest fed, and the channel freed (LeakSanitizer
 * checks that nothing is left).
 *
 * Invariants: every write is one whole, well-formed reply (lines of at most
 * 512 octets with CRLF, "ddd-" continuations then "ddd "; an enhanced code
 * only after EHLO and of the reply's class); close comes once and nothing is
 * written after it; the channel waits (PHASE_WAIT) exactly while an answer
 * is owed; resume comes only outside channel_feed, after a late answer; a
 * message handed over has valid paths, upper-case options, CRLF-ended data
 * within the size limit (valid UTF-8 with decode_data, no bare CR or LF
 * unless they are accepted), and its pointers stay readable until the late
 * answer; log lines are escaped; on_close comes once.
 *
 * FUZZ_TRACE=1 in the environment prints the dialogue of an input.
 */
#include "channel.h"
#include "command.h"
#include "fuzz.h"
#include "reply.h"
#include "starttls.h"

#include <stdarg.h>
#include <string.h>

#define PEER "192.0.2.7"

enum step { K_NONE, K_CONNECT, K_HELO, K_MAIL, K_RCPT, K_DATA_CMD, K_DATA, K_EXT };

/* The extension commands of the table (with_ext): which, by index. */
enum ext { X_STATE, X_TXN, X_OUT, X_VRFY, X_MAIL, X_DATA, X_COUNT };

struct harness {
    struct fuzz_rng rng;
    const struct chan_params *params;
    struct smtpd_session *s;
    bool closed, lost, in_feed, in_cb, resumed;
    int n_on_close;
    size_t n_writes;
    /* Replies not yet "sent"; the transport is backlogged from backlog_at
     * bytes on (0: never), until pump() sends them. */
    size_t unsent, backlog_at;
    bool said_backlogged; /* it did in this feed: nothing more may happen in it */
    /* A late answer the handler owes (it returned SMTPD_PENDING). */
    bool owed;
    enum step owed_step;
    struct smtpd_message owed_msg; /* on_message's view, to re-read later */
    /* The last answer given, for checks after it. */
    enum step last_step;
    int last_code;
    /* Extension commands: the one being answered, whether that call may
     * run the built-in (a replaced verb, not a continuation), and the one
     * whose 3xx answer makes the next line its continuation (X_COUNT: none). */
    bool with_ext;
    enum ext owed_ext;
    bool owed_replaces;
    enum ext cont;
    /* STARTTLS was answered: the "handshake" (see pump) comes next. */
    bool tls_wait;
};

/* ---- trace: FUZZ_TRACE=1 ./fuzz_channel reproducer prints the dialogue ---- */

static int tracing = -1;

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
    if (tracing < 0)
        tracing = getenv("FUZZ_TRACE") != NULL;
    if (!tracing)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void trace_bytes(const char *dir, const char *p, size_t n)
{
    if (tracing == 0)
        return;
    char esc[4096];
    smtpd_escape(esc, sizeof(esc), p, n);
    trace("%s %s", dir, esc);
}

static const char *const step_names[] = {"-",    "connect", "helo",    "mail",
                                         "rcpt", "data",    "message", "extension"};

/* ---- transport ---- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Length of an enhanced status code "d.ddd.ddd" at t (before a space or the
 * end), 0 if none. */
static size_t enh_at(const char *t, size_t n)
{
    size_t i = 0, parts = 0;
    while (parts < 3) {
        size_t start = i;
        while (i < n && is_digit(t[i]) && i - start < 3)
            i++;
        if (i == start || (parts == 0 && i != 1))
            return 0;
        if (++parts < 3) {
            if (i >= n || t[i] != '.')
                return 0;
            i++;
        }
    }
    return i == n || t[i] == ' ' ? i : 0;
}

static void tr_write(void *io, const char *buf, size_t len)
{
    struct harness *h = io;
    trace_bytes("S:", buf, len);
    FUZZ_CHECK(!h->closed); /* the channel is inert after close */
    FUZZ_CHECK(!h->lost);
    FUZZ_CHECK(!h->said_backlogged);
    FUZZ_CHECK(len >= 6 && len <= REPLY_LINE_MAX * 66);
    /* One whole reply: lines "ddd-..." and a last "ddd ...", each with CRLF. */
    size_t i = 0;
    const char *first = buf;
    for (;;) {
        const char *lf = memchr(buf + i, '\n', len - i);
        FUZZ_CHECK(lf != NULL);
        size_t n = (size_t)(lf - (buf + i)) + 1;
        const char *l = buf + i;
        FUZZ_CHECK(n >= 6 && n <= REPLY_LINE_MAX);
        FUZZ_CHECK(l[n - 2] == '\r');
        FUZZ_CHECK(l[0] >= '2' && l[0] <= '5' && is_digit(l[1]) && is_digit(l[2]));
        FUZZ_CHECK(memcmp(l, first, 3) == 0);
        for (size_t k = 4; k < n - 2; k++)
            FUZZ_CHECK((unsigned char)l[k] >= 0x20 && l[k] != 0x7f);
        /* Enhanced codes (RFC 2034): only after EHLO, of the reply's class. */
        if (n > 6 && enh_at(l + 4, n - 6)) {
            FUZZ_CHECK(smtpd_session_esmtp(h->s));
            FUZZ_CHECK(l[4] == l[0]);
        }
        i += n;
        if (l[3] == ' ') {
            FUZZ_CHECK(i == len);
            break;
        }
        FUZZ_CHECK(l[3] == '-');
        FUZZ_CHECK(i < len);
    }
    if (h->n_writes == 0 && !h->owed)
        FUZZ_CHECK(memcmp(buf, "220", 3) == 0 || h->last_step == K_CONNECT);
    h->n_writes++;
    h->unsent += len;
}

static void tr_close(void *io)
{
    struct harness *h = io;
    FUZZ_CHECK(!h->closed);
    trace("-- transport close");
    h->closed = true;
}

static void tr_resume(void *io)
{
    struct harness *h = io;
    trace("-- transport resume");
    FUZZ_CHECK(!h->in_feed);
    FUZZ_CHECK(!h->closed);
    h->resumed = true;
}

static bool tr_backlogged(void *io)
{
    struct harness *h = io;
    FUZZ_CHECK(h->in_feed);
    FUZZ_CHECK(!h->said_backlogged); /* asked again: the feed went on */
    h->said_backlogged = h->backlog_at && h->unsent >= h->backlog_at;
    return h->said_backlogged;
}

static void tr_start_tls(void *io)
{
    struct harness *h = io;
    trace("-- transport start_tls");
    FUZZ_CHECK(h->in_feed);
    FUZZ_CHECK(h->params->n_exts == 1);
    FUZZ_CHECK(!h->tls_wait && !h->closed);
    h->tls_wait = true;
}

static const struct chan_transport transport = {
    .write = tr_write,
    .close = tr_close,
    .resume = tr_resume,
    .backlogged = tr_backlogged,
    .start_tls = tr_start_tls,
};

/* ---- log ---- */

static bool utf8_ok(const char *s)
{
    return utf8_valid(s, strlen(s));
}

static void log_line(void *arg, enum smtpd_log_level level, const char *line)
{
    (void)arg;
    FUZZ_CHECK(level <= SMTPD_LOG_DEBUG);
    size_t n = strlen(line);
    FUZZ_CHECK(n < 1024);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)line[i] >= 0x20 && line[i] != 0x7f);
    FUZZ_CHECK(utf8_ok(line));
}

/* ---- handler ---- */

static const char long_text[] =
    "a long text: 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 "
    "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 "
    "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 "
    "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 "
    "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 "
    "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 "
    "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789 end";

static int pick_code(struct harness *h, bool refuse)
{
    static const int ok[] = {250, 251, 252, 220, 235, 299};
    static const int bad[] = {421, 450, 451, 452, 550, 551, 552, 553, 554, 555, 499, 599, 500};
    if (!refuse && fuzz_below(&h->rng, 2))
        return ok[fuzz_below(&h->rng, sizeof(ok) / sizeof(ok[0]))];
    if (fuzz_below(&h->rng, 8) == 0) {
        /* Any code a handler may give: 2xx, 4xx or 5xx (3xx is refused). */
        int c = 200 + (int)fuzz_below(&h->rng, 300);
        return c >= 300 ? c + 100 : c;
    }
    return bad[fuzz_below(&h->rng, sizeof(bad) / sizeof(bad[0]))];
}

static const char *pick_enh(struct harness *h, int code)
{
    static const char *const e[] = {
        NULL,    NULL,    "2.1.0", "4.4.1",     "5.7.1",
        "2.0.0", "x.y.z", "5.1",   "5.1.1.1",   "5.1234.1",
        "5..1",  "5.1.",  "",      "5.999.999", "2.1.5\r\n250 smuggled",
    };
    static char own[16];
    if (fuzz_below(&h->rng, 4) == 0) {
        snprintf(own, sizeof(own), "%d.%u.%u", code / 100, fuzz_below(&h->rng, 10),
                 fuzz_below(&h->rng, 1000));
        return own;
    }
    return e[fuzz_below(&h->rng, sizeof(e) / sizeof(e[0]))];
}

static const char *pick_text(struct harness *h)
{
    static const char *const t[] = {
        NULL,
        NULL,
        "OK then",
        "Accepted\r\n250 smuggled reply",
        "tab\there\x7f\x01 bell",
        "UTF-8: gr\xc3\xbc\xc3\x9f dich",
        "bad UTF-8: \xff\xfe\xc3",
        "",
        long_text,
    };
    return t[fuzz_below(&h->rng, sizeof(t) / sizeof(t[0]))];
}

/* A model of RFC 3463 2: "class.subject.detail", the class the code's. */
static bool enh_ok(const char *e, int code)
{
    if (!e)
        return true;
    size_t n = strlen(e);
    return code / 100 != 3 && n >= 5 && enh_at(e, n) == n && e[0] == '0' + code / 100;
}

/* An answer the library must refuse, then the real one: a single line, or
 * several (smtpd_reply_lines), or for an extension a 3xx continuation. */
static void answer(struct harness *h, struct smtpd_session *s, enum step step, bool refuse)
{
    if (fuzz_below(&h->rng, 8) == 0) {
        static const int out_of_range[] = {0, -1, 199, 600, 1000, 99, 354, 300};
        int c = out_of_range[fuzz_below(&h->rng, 8)];
        bool three = c >= 300 && c < 400;
        FUZZ_CHECK(smtpd_reply(s, c, NULL, "out of range") ==
                   (three && step == K_EXT ? SMTPD_OK : SMTPD_ERR_REPLY));
        if (three && step == K_EXT) {
            h->last_step = step;
            h->last_code = c;
            return;
        }
    }
    int code = pick_code(h, refuse);
    if (step == K_EXT && fuzz_below(&h->rng, 6) == 0)
        code = 334; /* a question: the next line is the answer */
    h->last_step = step;
    h->last_code = code;
    trace("-- handler answers %s: %d", step_names[step], code);
    const char *enh = pick_enh(h, code);
    const char *text = pick_text(h);
    if (!enh_ok(enh, code)) {
        FUZZ_CHECK(smtpd_reply(s, code, enh, text) == SMTPD_ERR_CONFIG);
        enh = NULL;
    }
    if (fuzz_below(&h->rng, 4) == 0) {
        const char *lines[4] = {text ? text : "first", long_text, "", "last"};
        size_t n = 1 + fuzz_below(&h->rng, 4);
        FUZZ_CHECK(smtpd_reply_lines(s, code, enh, lines, n) == SMTPD_OK);
    } else {
        FUZZ_CHECK(smtpd_reply(s, code, enh, text) == SMTPD_OK);
    }
    /* Exactly one answer per callback. */
    if (fuzz_below(&h->rng, 8) == 0)
        FUZZ_CHECK(smtpd_reply(s, 250, NULL, NULL) == SMTPD_ERR_STATE);
}

/* The library's view of the session, from inside any callback. */
static void check_session(const struct harness *h, struct smtpd_session *s)
{
    FUZZ_CHECK(smtpd_session_state(s) == SMTPD_SESSION_COMMAND);
    FUZZ_CHECK(strcmp(smtpd_session_hostname(s), h->params->cfg.hostname) == 0);
    FUZZ_CHECK(strcmp(smtpd_session_local_addr(s), "192.0.2.25") == 0);
    size_t n;
    const char *const *fp = smtpd_session_forward_paths(s, &n);
    FUZZ_CHECK(fp != NULL && n <= h->params->cfg.max_recipients);
    FUZZ_CHECK(n == 0 || smtpd_session_reverse_path(s) != NULL);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(cmd_valid_mailbox(fp[i], strlen(fp[i])));
    /* A continuation comes before any other callback. */
    FUZZ_CHECK(h->cont == X_COUNT);
}

/* What a callback does: answer now or later, accept or refuse. */
static enum smtpd_verdict decide(struct harness *h, struct smtpd_session *s, enum step step)
{
    FUZZ_CHECK(s == h->s);
    FUZZ_CHECK(!h->owed);
    FUZZ_CHECK(h->n_on_close == 0);
    FUZZ_CHECK(!h->said_backlogged);
    unsigned d = fuzz_below(&h->rng, 8);
    trace("-- handler %s: %s", step_names[step],
          d < 2              ? "default answer"
          : d == 4 || d == 5 ? "SMTPD_PENDING, answer later"
                             : "answers now");
    switch (d) {
    case 0:
    case 1:
        h->last_step = step;
        h->last_code = 0;
        return SMTPD_DONE; /* the default answer */
    case 2:
        answer(h, s, step, false);
        return SMTPD_DONE;
    case 3:
        answer(h, s, step, false);
        return SMTPD_PENDING; /* answered already: the same as DONE */
    case 4:
    case 5:
        h->owed = true;
        h->owed_step = step;
        return SMTPD_PENDING;
    case 6:
        answer(h, s, step, true);
        return SMTPD_DONE;
    default:
        answer(h, s, step, fuzz_below(&h->rng, 2));
        return fuzz_below(&h->rng, 2) ? SMTPD_DONE : SMTPD_PENDING;
    }
}

/* An extension's answer: what any callback does, or for a replaced
 * built-in verb, the built-in run (now or later). */
static bool builtin_answer(struct harness *h, struct smtpd_session *s, const char *p, size_t n)
{
    if (!h->owed_replaces) {
        FUZZ_CHECK(smtpd_run_builtin(s, p, n) == SMTPD_ERR_STATE);
        return false;
    }
    if (fuzz_below(&h->rng, 3) == 0)
        return false;
    trace("-- extension runs the built-in");
    h->last_step = K_EXT;
    h->last_code = 0;
    FUZZ_CHECK(smtpd_run_builtin(s, p, n) == SMTPD_OK);
    FUZZ_CHECK(smtpd_run_builtin(s, p, n) == SMTPD_ERR_STATE);
    return true;
}

static enum smtpd_verdict ext_call(struct harness *h, struct smtpd_session *s, enum ext which,
                                   const char *params, size_t len)
{
    FUZZ_CHECK(!h->in_cb);
    FUZZ_CHECK(smtpd_session_data(s) == h);
    FUZZ_CHECK(h->cont == X_COUNT || h->cont == which);
    bool cont = h->cont == which;
    h->cont = X_COUNT;
    check_session(h, s);
    FUZZ_CHECK(params != NULL || len == 0);
    for (size_t i = 0; i < len; i++)
        (void)params[i]; /* readable */
    if (which == X_TXN && !cont)
        FUZZ_CHECK(smtpd_session_reverse_path(s) != NULL);
    if (which == X_OUT && !cont)
        FUZZ_CHECK(smtpd_session_reverse_path(s) == NULL && smtpd_session_helo(s) != NULL);
    h->in_cb = true;
    h->owed_ext = which;
    h->owed_replaces = !cont && (which == X_VRFY || which == X_MAIL || which == X_DATA);
    enum smtpd_verdict v;
    if (!h->owed && builtin_answer(h, s, params, len))
        v = fuzz_below(&h->rng, 2) ? SMTPD_DONE : SMTPD_PENDING;
    else
        v = decide(h, s, K_EXT);
    h->in_cb = false;
    /* A 3xx answered now: the next line is the continuation. */
    if (!h->owed && h->last_step == K_EXT && h->last_code / 100 == 3)
        h->cont = which;
    return v;
}

#define EXT_FN(name, which)                                                                        \
    static enum smtpd_verdict name(void *arg, struct smtpd_session *s, const char *p, size_t n)    \
    {                                                                                              \
        return ext_call(arg, s, which, p, n);                                                      \
    }
EXT_FN(x_state, X_STATE)
EXT_FN(x_txn, X_TXN)
EXT_FN(x_out, X_OUT)
EXT_FN(x_vrfy, X_VRFY)
EXT_FN(x_mail, X_MAIL)
EXT_FN(x_data, X_DATA)

static const struct smtpd_command ext_table[X_COUNT] = {
    [X_STATE] = {.verb = "XSTATE", .fn = x_state, .ehlo = "XSTATE", .help = "XSTATE"},
    [X_TXN] = {.verb = "xtxn", .fn = x_txn, .flags = SMTPD_CMD_NEED_MAIL},
    [X_OUT] = {.verb = "XOUT",
               .fn = x_out,
               .ehlo = "XOUT 1 2",
               .flags = SMTPD_CMD_NO_TRANSACTION | SMTPD_CMD_NEED_GREETING},
    [X_VRFY] = {.verb = "VRFY", .fn = x_vrfy, .help = "VRFY <x>"},
    [X_MAIL] = {.verb = "Mail", .fn = x_mail},
    [X_DATA] = {.verb = "DATA", .fn = x_data},
};

static enum smtpd_verdict on_helo(void *arg, struct smtpd_session *s, const char *domain,
                                  bool esmtp)
{
    struct harness *h = arg;
    FUZZ_CHECK(!h->in_cb);
    FUZZ_CHECK(domain != NULL && domain[0] != '\0');
    FUZZ_CHECK(!esmtp || !smtpd_session_esmtp(s) || smtpd_session_helo(s) != NULL);
    check_session(h, s);
    h->in_cb = true;
    enum smtpd_verdict v = decide(h, s, K_HELO);
    h->in_cb = false;
    return v;
}

static void on_ehlo(void *arg, struct smtpd_session *s, struct smtpd_ehlo *e)
{
    struct harness *h = arg;
    (void)s;
    FUZZ_CHECK(!h->in_cb);
    size_t n = smtpd_ehlo_count(e);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(smtpd_ehlo_line(e, i) != NULL && smtpd_ehlo_line(e, i)[0] != '\0');
    switch (fuzz_below(&h->rng, 4)) {
    case 0:
        smtpd_ehlo_remove(e, "PIPELINING");
        break;
    case 1:
        FUZZ_CHECK(smtpd_ehlo_add(e, "X-FUZZ a b") == SMTPD_OK || n == 64);
        break;
    case 2:
        FUZZ_CHECK(smtpd_ehlo_add(e, "BAD\r\n250 smuggled") == SMTPD_ERR_CONFIG);
        break;
    default:
        for (int i = 0; i < 70; i++)
            smtpd_ehlo_add(e, "XMANY");
        FUZZ_CHECK(smtpd_ehlo_count(e) == 64);
        break;
    }
}

static enum smtpd_verdict on_data(void *arg, struct smtpd_session *s)
{
    struct harness *h = arg;
    FUZZ_CHECK(!h->in_cb);
    size_t n;
    smtpd_session_forward_paths(s, &n);
    FUZZ_CHECK(n >= 1 && smtpd_session_reverse_path(s) != NULL);
    check_session(h, s);
    h->in_cb = true;
    enum smtpd_verdict v = decide(h, s, K_DATA_CMD);
    h->in_cb = false;
    return v;
}

static enum smtpd_verdict on_connect(void *arg, struct smtpd_session *s)
{
    struct harness *h = arg;
    FUZZ_CHECK(!h->in_cb);
    FUZZ_CHECK(strcmp(smtpd_session_peer_addr(s), PEER) == 0);
    FUZZ_CHECK(smtpd_session_peer_port(s) == 2525);
    FUZZ_CHECK(smtpd_session_helo(s) == NULL);
    FUZZ_CHECK(smtpd_session_data(s) == NULL);
    smtpd_session_set_data(s, h);
    h->in_cb = true;
    enum smtpd_verdict v = decide(h, s, K_CONNECT);
    h->in_cb = false;
    return v;
}

static bool valid_path(const char *p, bool may_be_null)
{
    FUZZ_CHECK(p != NULL);
    size_t n = strlen(p);
    return (n == 0 && may_be_null) || cmd_valid_mailbox(p, n);
}

static void check_options(const char *const *o, size_t n)
{
    FUZZ_CHECK(n == 0 || o != NULL);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(o[i] != NULL && o[i][0] != '\0');
        for (const char *c = o[i]; *c; c++)
            FUZZ_CHECK(!(*c >= 'a' && *c <= 'z') && (unsigned char)*c > 0x20);
    }
}

static enum smtpd_verdict on_mail(void *arg, struct smtpd_session *s, const char *reverse_path,
                                  const char *const *params, size_t n_params)
{
    struct harness *h = arg;
    FUZZ_CHECK(!h->in_cb);
    FUZZ_CHECK(smtpd_session_data(s) == h);
    FUZZ_CHECK(smtpd_session_helo(s) != NULL);
    FUZZ_CHECK(valid_path(reverse_path, true));
    check_options(params, n_params);
    check_session(h, s);
    h->in_cb = true;
    enum smtpd_verdict v = decide(h, s, K_MAIL);
    h->in_cb = false;
    return v;
}

static enum smtpd_verdict on_rcpt(void *arg, struct smtpd_session *s, const char *forward_path,
                                  const char *const *params, size_t n_params)
{
    struct harness *h = arg;
    FUZZ_CHECK(!h->in_cb);
    FUZZ_CHECK(valid_path(forward_path, false));
    check_options(params, n_params);
    check_session(h, s);
    h->in_cb = true;
    enum smtpd_verdict v = decide(h, s, K_RCPT);
    h->in_cb = false;
    return v;
}

/* Read every byte a message points to (ASan: still allocated), and check it. */
static void check_message(const struct harness *h, const struct smtpd_message *m)
{
    const struct smtpd_config *cfg = &h->params->cfg;
    FUZZ_CHECK(strcmp(m->peer_addr, PEER) == 0 && m->peer_port == 2525);
    FUZZ_CHECK(m->helo != NULL);
    FUZZ_CHECK(valid_path(m->reverse_path, true));
    FUZZ_CHECK(m->n_forward_paths >= 1 && m->n_forward_paths <= cfg->max_recipients);
    for (size_t i = 0; i < m->n_forward_paths; i++)
        FUZZ_CHECK(valid_path(m->forward_paths[i], false));
    check_options(m->mail_options, m->n_mail_options);
    check_options(m->rcpt_options, m->n_rcpt_options);
    FUZZ_CHECK(!m->smtputf8 || cfg->enable_smtputf8);
    FUZZ_CHECK(m->data != NULL);
    unsigned sum = 0;
    for (size_t i = 0; i < m->data_len; i++)
        sum += (unsigned char)m->data[i];
    (void)sum;
    FUZZ_CHECK(m->data_len == 0 ||
               (m->data_len >= 2 && memcmp(m->data + m->data_len - 2, "\r\n", 2) == 0));
    if (cfg->data_size_limit && cfg->data_size_limit < SIZE_MAX / 2)
        FUZZ_CHECK(m->data_len <= cfg->data_size_limit + 2);
    if (cfg->decode_data)
        FUZZ_CHECK(utf8_valid(m->data, m->data_len));
    /* Unless bare CR / LF are accepted, the data has CRLF line ends only. */
    if (cfg->bare_lf != SMTPD_BARE_LF_ACCEPT) {
        for (size_t i = 0; i < m->data_len; i++) {
            if (m->data[i] == '\r')
                FUZZ_CHECK(i + 1 < m->data_len && m->data[i + 1] == '\n');
            if (m->data[i] == '\n')
                FUZZ_CHECK(i > 0 && m->data[i - 1] == '\r');
        }
    }
}

static enum smtpd_verdict on_message(void *arg, struct smtpd_session *s,
                                     const struct smtpd_message *msg)
{
    struct harness *h = arg;
    FUZZ_CHECK(!h->in_cb);
    FUZZ_CHECK(msg->esmtp == smtpd_session_esmtp(s));
    check_message(h, msg);
    check_session(h, s);
    h->in_cb = true;
    enum smtpd_verdict v = decide(h, s, K_DATA);
    h->in_cb = false;
    if (h->owed)
        h->owed_msg = *msg;
    return v;
}

static void on_reset(void *arg, struct smtpd_session *s)
{
    struct harness *h = arg;
    FUZZ_CHECK(s == h->s);
    FUZZ_CHECK(h->n_on_close == 0);
}

static void on_close(void *arg, struct smtpd_session *s)
{
    struct harness *h = arg;
    FUZZ_CHECK(s == h->s);
    FUZZ_CHECK(!h->in_cb);
    h->n_on_close++;
    h->owed = false; /* cancelled */
    h->cont = X_COUNT;
}

/* The late answer, from "the event loop". */
static void give_owed(struct harness *h)
{
    FUZZ_CHECK(h->owed);
    if (h->owed_step == K_DATA)
        check_message(h, &h->owed_msg);
    h->owed = false;
    h->resumed = false;
    if (h->owed_step != K_EXT || !builtin_answer(h, h->s, "FROM:<late@x.org>", 17))
        answer(h, h->s, h->owed_step, fuzz_below(&h->rng, 3) == 0);
    if (h->owed_step == K_EXT && h->last_code / 100 == 3 && !h->closed)
        h->cont = h->owed_ext;
    if (!h->closed)
        FUZZ_CHECK(h->resumed);
    if (h->owed_step == K_CONNECT && h->last_code >= 400)
        FUZZ_CHECK(h->closed);
}

/* ---- the dialogue ---- */

struct inbuf {
    char *p; /* exactly len bytes, so that ASan sees reads past the end */
    size_t len;
};

static void inbuf_add(struct inbuf *b, const char *p, size_t n)
{
    char *np = malloc(b->len + n ? b->len + n : 1);
    FUZZ_CHECK(np != NULL);
    if (b->len)
        memcpy(np, b->p, b->len);
    if (n)
        memcpy(np + b->len, p, n);
    free(b->p);
    b->p = np;
    b->len += n;
}

static void inbuf_drain(struct inbuf *b, size_t n)
{
    FUZZ_CHECK(n <= b->len);
    char *np = malloc(b->len - n ? b->len - n : 1);
    FUZZ_CHECK(np != NULL);
    memcpy(np, b->p + n, b->len - n);
    free(b->p);
    b->p = np;
    b->len -= n;
}

static void check_phase(const struct harness *h)
{
    enum chan_phase ph = channel_phase(h->s);
    if (ph != PHASE_DATA)
        FUZZ_CHECK(channel_data_received(h->s) == 0);
    if (ph == PHASE_DATA)
        FUZZ_CHECK(!channel_line_pending(h->s));
    if (h->lost || h->closed) {
        FUZZ_CHECK(ph == PHASE_CLOSED);
        return;
    }
    FUZZ_CHECK(ph != PHASE_CLOSED);
    /* The channel waits exactly while the handler owes an answer. */
    FUZZ_CHECK((ph == PHASE_WAIT) == h->owed);
}

/* Feed the buffered bytes as conn_read() does. */
static void pump(struct harness *h, struct inbuf *b)
{
    while (!h->closed && !h->lost && b->len > 0) {
        trace_bytes("C:", b->p, b->len);
        h->in_feed = true;
        size_t used = channel_feed(h->s, b->p, b->len);
        h->in_feed = false;
        trace("-- channel took %zu of %zu bytes", used, b->len);
        FUZZ_CHECK(used <= b->len);
        size_t len = b->len;
        inbuf_drain(b, used);
        bool said = h->said_backlogged;
        h->said_backlogged = false;
        h->unsent = 0; /* the client reads what was written */
        if (h->tls_wait) {
            /* As the connection does: the channel takes nothing until the
             * handshake, and what was pipelined after STARTTLS is gone. */
            FUZZ_CHECK(channel_phase(h->s) == PHASE_TLS);
            FUZZ_CHECK(channel_feed(h->s, "NOOP\r\n", 6) == 0);
            inbuf_drain(b, b->len);
            h->tls_wait = false;
            channel_tls_started(h->s, "TLSv1.3", "TLS_AES_128_GCM_SHA256", 128);
            FUZZ_CHECK(smtpd_session_tls_protocol(h->s) != NULL);
            FUZZ_CHECK(smtpd_session_helo(h->s) == NULL || h->closed);
            continue;
        }
        if (used < len) {
            /* Stopped early: closed, waiting, or told to by the transport. */
            if (!h->closed && !h->owed) {
                FUZZ_CHECK(said);
                continue;
            }
            break;
        }
    }
    check_phase(h);
}

static size_t pick_limit(uint8_t b)
{
    if (b == 0)
        return 0;
    if (b <= 100)
        return b;
    if (b <= 200)
        return (size_t)(b - 100) * 50;
    return b == 255 ? SIZE_MAX : 33554432;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t flags = fuzz_byte(&in);
    uint8_t size_sel = fuzz_byte(&in);
    uint8_t misc = fuzz_byte(&in);
    uint32_t seed = (uint32_t)fuzz_byte(&in) << 16;
    seed |= (uint32_t)fuzz_u16(&in);

    struct harness h = {.rng = {seed * 2654435761u + 1}, .cont = X_COUNT};
    /* The top bit of the seed's first byte: the extension table and hooks. */
    h.with_ext = seed >> 23;
    static char long_host[310];
    if (!long_host[0]) {
        memset(long_host, 'h', 300);
        memcpy(long_host + 300, ".example", 9);
    }
    struct chan_params params = {0};
    smtpd_config_init(&params.cfg);
    /* Seed bits 22, 21 and 20: STARTTLS offered, --require-tls, implicit TLS. */
    static const struct chan_ext *const tls_exts[] = {&starttls_ext};
    bool tls = (seed >> 22) & 1;
    params.exts = tls ? tls_exts : NULL;
    params.n_exts = tls ? 1 : 0;
    params.cfg.require_tls = tls && ((seed >> 21) & 1);
    bool implicit_tls = tls && ((seed >> 20) & 1);
    params.cfg.hostname = (flags & 16) ? long_host : "mx.fuzz.example";
    params.cfg.decode_data = flags & 2;
    params.cfg.enable_smtputf8 = (flags & 1) && !(flags & 2);
    params.cfg.data_size_limit = pick_limit(size_sel);
    static const unsigned rcpts[] = {1, 2, 3, 1000};
    params.cfg.max_recipients = rcpts[misc & 3];
    static const enum smtpd_bare_lf bare[] = {SMTPD_BARE_LF_NORMALIZE, SMTPD_BARE_LF_REJECT,
                                              SMTPD_BARE_LF_ACCEPT, SMTPD_BARE_LF_ACCEPT};
    params.cfg.bare_lf = bare[(misc >> 2) & 3];
    static const unsigned errs[] = {0, 10, 3, 1};
    params.cfg.max_errors = errs[(misc >> 4) & 3];
    static const size_t backlogs[] = {0, 1, 64, 600};
    h.backlog_at = backlogs[(misc >> 6) & 3];
    unsigned lv = (flags >> 2) & 3;
    params.cfg.log = lv ? log_line : NULL;
    params.cfg.log_arg = &h;
    params.cfg.log_level = lv == 1 ? SMTPD_LOG_INFO : SMTPD_LOG_DEBUG;
    params.handler = (struct smtpd_handler){
        .on_connect = on_connect,
        .on_mail = on_mail,
        .on_rcpt = on_rcpt,
        .on_message = on_message,
        .on_reset = on_reset,
        .on_close = on_close,
        .arg = &h,
    };
    if (h.with_ext) {
        params.handler.commands = ext_table;
        params.handler.n_commands = X_COUNT;
        params.handler.on_helo = on_helo;
        params.handler.on_ehlo = on_ehlo;
        params.handler.on_data = on_data;
    }
    h.params = &params;
    bool events = flags & 32;
    unsigned chunk_mode = flags >> 6;

    const struct chan_addrs addrs = {PEER, 2525, "192.0.2.25", 25};
    h.s = channel_new(&params, &transport, &h, &addrs, 1);
    FUZZ_CHECK(h.s != NULL);
    FUZZ_CHECK(channel_phase(h.s) == PHASE_COMMAND);
    if (implicit_tls)
        channel_tls_started(h.s, "TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", 256);
    channel_start(h.s);
    if (!h.owed && h.last_step == K_CONNECT && h.last_code >= 400)
        FUZZ_CHECK(h.closed);
    check_phase(&h);

    struct inbuf b = {0};
    const char *client = (const char *)in.p;
    size_t left = in.n;
    while (left > 0 && !h.lost) {
        size_t n = chunk_mode == 0   ? left
                   : chunk_mode == 1 ? 1
                   : chunk_mode == 2 ? 1 + fuzz_below(&h.rng, 16)
                                     : 1 + fuzz_below(&h.rng, 600);
        if (n > left)
            n = left;
        /* Things that happen between two reads. */
        if (events && !h.closed) {
            switch (fuzz_below(&h.rng, 64)) {
            case 0:
            case 1: {
                bool now = fuzz_below(&h.rng, 2);
                trace("-- channel_shutdown(now=%d)", now);
                channel_shutdown(h.s, now);
                break;
            }
            case 2:
                trace("-- channel_timeout");
                channel_timeout(h.s);
                break;
            case 3:
                trace("-- channel_too_slow");
                channel_too_slow(h.s);
                break;
            case 4:
                trace("-- channel_lost");
                channel_lost(h.s, "eof");
                h.lost = true;
                break;
            default:
                break;
            }
            check_phase(&h);
        }
        if (!h.owed && !h.lost && fuzz_below(&h.rng, 16) == 0)
            FUZZ_CHECK(smtpd_reply(h.s, 250, NULL, NULL) == SMTPD_ERR_STATE);
        if (h.owed && !h.lost && fuzz_below(&h.rng, 4) != 0)
            give_owed(&h);
        inbuf_add(&b, client, n);
        client += n;
        left -= n;
        pump(&h, &b);
    }
    /* End of input: the handler answers what it owes, the rest is read. */
    while (h.owed && !h.lost) {
        give_owed(&h);
        pump(&h, &b);
    }
    if (!h.lost && fuzz_below(&h.rng, 2)) {
        trace("-- channel_lost");
        channel_lost(h.s, "eof");
    }
    trace("-- channel_free");
    channel_free(h.s);
    FUZZ_CHECK(h.n_on_close == 1);
    free(b.p);
    return 0;
}
