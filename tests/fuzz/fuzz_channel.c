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
 *       201..254 33554432, 255 SIZE_MAX; 228..254 also make the server LMTP
 *       (on_message then answers some recipients with smtpd_reply_rcpt)
 *   [2] bits 0-1 max_recipients (1, 2, 3, 1000), bits 2-3 bare CR/LF
 *       policy (normalize, reject, accept, accept), bits 4-5 max_errors
 *       (none, 10, 3, 1), bits 6-7 the transport is backlogged from (never,
 *       1, 64, 600) unsent reply bytes on: the channel must then stop after
 *       a command and take the rest once the replies are read
 *   [3..5] seed of the decisions (handler answers, chunk sizes, events)
 * Seed bits 23..16 (the first seed byte): the extension table and hooks,
 * STARTTLS offered, --require-tls, implicit TLS, then AUTH (auth_ext and an
 * on_auth), auth_insecure, auth_required, and auth_failure_delay 0 (else
 * the default). on_auth answers from the input: 235, 535 or another refusal,
 * a code it may not give (250, 334...: SMTPD_ERR_REPLY) then maybe a real
 * one, silence (535), or SMTPD_PENDING and later. A failed AUTH's answer is
 * held: the transport's delay hook is answered with channel_delay_done() at
 * a later point chosen by the input (also after a close, as a timer that
 * fires late would).
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
 * AUTH: on_auth only where AUTH is offered (TLS or auth_insecure), after
 * EHLO, outside a transaction and before any success, with PLAIN or LOGIN,
 * an identity and a password of 1-255 bytes (the identity without control
 * characters); 235 authenticates as that identity (the session's and the
 * next messages' auth_identity), until STARTTLS forgets it; with
 * auth_required no MAIL, RCPT, DATA or message before; the delay is asked
 * for once per refusal, never with auth_failure_delay 0, with 1x, 2x, 4x,
 * 4x... the configured one, nothing is written or read meanwhile and the
 * held answer follows channel_delay_done(); and no log line holds a
 * password given to on_auth (nor its base64, see check_secrets), whenever
 * the client did not also send it in the clear elsewhere.
 *
 * FUZZ_TRACE=1 in the environment prints the dialogue of an input.
 */
#include "auth.h"
#include "bdat_cmd.h"
#include "channel.h"
#include "command.h"
#include "fuzz.h"
#include "reply.h"
#include "starttls.h"

#include <stdarg.h>
#include <string.h>

#define PEER "192.0.2.7"

enum step { K_NONE, K_CONNECT, K_HELO, K_MAIL, K_RCPT, K_DATA_CMD, K_DATA, K_EXT, K_AUTH };

/* What on_auth got, kept to look for in the log afterwards. */
#define MAX_SECRETS 16
struct secret {
    char pw[256];
    char id[256];
    bool plain;
};

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
    bool tls_offered; /* starttls_ext is in the params */
    /* AUTH: offered at all, the identity on_auth is being asked about, the
     * one the session authenticated as (h->authed), refusals so far, and
     * a failed AUTH's answer held for the delay. */
    bool with_auth;
    bool lmtp;                /* smtpd_config.lmtp */
    bool rcpt_answered[1000]; /* LMTP: recipients answered on their own */
    char asked_id[256];
    bool authed;
    char authed_id[256];
    unsigned auth_refusals;
    bool delayed;
    unsigned delay_ms;
    /* For check_secrets: every password on_auth got, all log lines and
     * all server bytes. */
    struct secret secrets[MAX_SECRETS];
    size_t n_secrets;
    char *log_all, *out_all;
    size_t log_len, out_len;
};

/* Append @p n bytes to a growing buffer (NUL-terminated, at most 4 MiB). */
static void grow_add(char **buf, size_t *len, const char *p, size_t n)
{
    if (*len + n > (4u << 20))
        return;
    char *nb = realloc(*buf, *len + n + 1);
    FUZZ_CHECK(nb != NULL);
    memcpy(nb + *len, p, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
}

/* Whether @p needle (@p nn bytes) occurs in @p hay (@p hn bytes), counted
 * up to 2. A plain loop, not memmem: libFuzzer's interceptors would steer
 * inputs toward a match. */
static int occurrences(const char *hay, size_t hn, const char *needle, size_t nn)
{
    int found = 0;
    for (size_t i = 0; nn && i + nn <= hn && found < 2; i++) {
        size_t k = 0;
        while (k < nn && hay[i + k] == needle[k])
            k++;
        if (k == nn)
            found++;
    }
    return found;
}

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

static const char *const step_names[] = {"-",    "connect", "helo",      "mail", "rcpt",
                                         "data", "message", "extension", "auth"};

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
    /* A held answer waits for channel_delay_done; only a 421 that closes
     * the session (shutdown, timeout) may go out meanwhile. */
    FUZZ_CHECK(!h->delayed || memcmp(buf, "421", 3) == 0);
    FUZZ_CHECK(len >= 6 && len <= REPLY_LINE_MAX * 66);
    grow_add(&h->out_all, &h->out_len, buf, len);
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
    /* An overlong line is no continuation: the one after it is a command. */
    static const char too_long[] = "Error: line too long\r\n";
    if (len > sizeof(too_long) &&
        memcmp(buf + len - (sizeof(too_long) - 1), too_long, sizeof(too_long) - 1) == 0)
        h->cont = X_COUNT;
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
    FUZZ_CHECK(h->tls_offered);
    FUZZ_CHECK(!h->tls_wait && !h->closed);
    h->tls_wait = true;
}

/* A refusal of AUTH is answered after the failure delay. */
static bool tr_delay(void *io, unsigned ms)
{
    struct harness *h = io;
    trace("-- transport delay %u ms", ms);
    const struct smtpd_config *cfg = &h->params->cfg;
    FUZZ_CHECK(h->with_auth && cfg->auth_failure_delay > 0);
    FUZZ_CHECK(!h->delayed && !h->closed && !h->lost);
    FUZZ_CHECK(h->auth_refusals > 0);
    unsigned shift = h->auth_refusals < 3 ? h->auth_refusals - 1 : 2;
    FUZZ_CHECK(ms == cfg->auth_failure_delay << shift);
    h->delayed = true;
    h->delay_ms = ms;
    return true;
}

static const struct chan_transport transport = {
    .write = tr_write,
    .close = tr_close,
    .resume = tr_resume,
    .backlogged = tr_backlogged,
    .start_tls = tr_start_tls,
    .delay = tr_delay,
};

/* ---- log ---- */

static bool utf8_ok(const char *s)
{
    return utf8_valid(s, strlen(s));
}

static void log_line(void *arg, enum smtpd_log_level level, const char *line)
{
    struct harness *h = arg;
    FUZZ_CHECK(level <= SMTPD_LOG_DEBUG);
    size_t n = strlen(line);
    grow_add(&h->log_all, &h->log_len, line, n);
    grow_add(&h->log_all, &h->log_len, "\n", 1);
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
    /* Authenticated exactly after a 235 of on_auth (until STARTTLS). */
    const char *id = smtpd_session_auth_identity(s);
    FUZZ_CHECK((id != NULL) == h->authed);
    FUZZ_CHECK(!id || strcmp(id, h->authed_id) == 0);
}

/* auth_required: no transaction before AUTH succeeded. */
static void check_auth_required(const struct harness *h, struct smtpd_session *s)
{
    if (h->params->cfg.auth_required)
        FUZZ_CHECK(smtpd_session_auth_identity(s) != NULL);
}

/* What a callback does: answer now or later, accept or refuse. */
/* LMTP: answer some recipients of the message on their own, checking what
 * smtpd_reply_rcpt refuses. @return whether that answered all of them, and
 * so the message. */
static bool answer_rcpts(struct harness *h, struct smtpd_session *s)
{
    size_t n, left = 0;
    smtpd_session_forward_paths(s, &n);
    FUZZ_CHECK(n >= 1 && n <= sizeof(h->rcpt_answered));
    FUZZ_CHECK(smtpd_reply_rcpt(s, n, 250, NULL, NULL) == SMTPD_ERR_STATE);
    for (size_t i = 0; i < n; i++)
        left += !h->rcpt_answered[i];
    bool all = fuzz_below(&h->rng, 2);
    for (size_t i = 0; i < n; i++) {
        if (h->rcpt_answered[i]) {
            FUZZ_CHECK(smtpd_reply_rcpt(s, i, 250, NULL, NULL) == SMTPD_ERR_STATE);
            continue;
        }
        FUZZ_CHECK(smtpd_reply_rcpt(s, i, 354, NULL, NULL) == SMTPD_ERR_REPLY);
        FUZZ_CHECK(smtpd_reply_rcpt(s, i, 250, "5.1.1", NULL) == SMTPD_ERR_CONFIG);
        if (!all && fuzz_below(&h->rng, 2))
            continue;
        int code = pick_code(h, fuzz_below(&h->rng, 2));
        const char *enh = pick_enh(h, code);
        if (!enh_ok(enh, code))
            enh = NULL;
        trace("-- handler answers recipient %zu: %d", i, code);
        FUZZ_CHECK(smtpd_reply_rcpt(s, i, code, enh, pick_text(h)) == SMTPD_OK);
        h->rcpt_answered[i] = true;
        if (--left == 0) {
            h->last_step = K_DATA;
            h->last_code = code;
            return true;
        }
        FUZZ_CHECK(smtpd_reply_rcpt(s, i, 250, NULL, NULL) == SMTPD_ERR_STATE);
    }
    return false;
}

static enum smtpd_verdict decide(struct harness *h, struct smtpd_session *s, enum step step)
{
    FUZZ_CHECK(s == h->s);
    FUZZ_CHECK(!h->owed);
    FUZZ_CHECK(!h->delayed);
    FUZZ_CHECK(h->n_on_close == 0);
    FUZZ_CHECK(!h->said_backlogged);
    if (step == K_DATA && h->lmtp && fuzz_below(&h->rng, 2) && answer_rcpts(h, s)) {
        FUZZ_CHECK(smtpd_reply(s, 250, NULL, NULL) == SMTPD_ERR_STATE);
        return fuzz_below(&h->rng, 2) ? SMTPD_DONE : SMTPD_PENDING;
    }
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
    check_auth_required(h, s);
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
    check_auth_required(h, s);
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
    check_auth_required(h, s);
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
    /* The limit counts octets as they came; normalizing makes each bare
     * CR or LF two. */
    if (cfg->data_size_limit && cfg->data_size_limit < SIZE_MAX / 4)
        FUZZ_CHECK(m->data_len <=
                   (cfg->bare_lf == SMTPD_BARE_LF_NORMALIZE ? 2 : 1) * (cfg->data_size_limit + 2));
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
    check_auth_required(h, s);
    FUZZ_CHECK((msg->auth_identity != NULL) == h->authed);
    FUZZ_CHECK(!msg->auth_identity || strcmp(msg->auth_identity, h->authed_id) == 0);
    memset(h->rcpt_answered, 0, sizeof(h->rcpt_answered));
    h->in_cb = true;
    enum smtpd_verdict v = decide(h, s, K_DATA);
    h->in_cb = false;
    if (h->owed)
        h->owed_msg = *msg;
    return v;
}

/* on_auth's answer: 235, a refusal, or first a code it may not give. */
static void auth_answer(struct harness *h, struct smtpd_session *s)
{
    static const int bad[] = {250, 220, 299, 334, 354, 300, 199, 600, 0, 251};
    static const int good[] = {235, 235, 235, 535, 535, 454, 421, 550, 530, 499, 452};
    if (fuzz_below(&h->rng, 6) == 0) {
        int c = bad[fuzz_below(&h->rng, sizeof(bad) / sizeof(bad[0]))];
        FUZZ_CHECK(smtpd_reply(s, c, NULL, "not an AUTH answer") == SMTPD_ERR_REPLY);
    }
    int code = good[fuzz_below(&h->rng, sizeof(good) / sizeof(good[0]))];
    const char *enh = NULL;
    switch (fuzz_below(&h->rng, 4)) {
    case 0:
        enh = code == 235 ? "2.7.0" : code == 535 ? "5.7.8" : NULL;
        break;
    case 1:
        /* Of another class: refused, nothing sent. */
        FUZZ_CHECK(smtpd_reply(s, code, code == 235 ? "5.7.8" : "2.7.0", NULL) == SMTPD_ERR_CONFIG);
        break;
    default:
        break;
    }
    trace("-- on_auth answers %d", code);
    /* Noted first: a late answer takes effect (and asks for the delay)
     * inside smtpd_reply. */
    if (code == 235) {
        h->authed = true;
        snprintf(h->authed_id, sizeof(h->authed_id), "%s", h->asked_id);
    } else {
        h->auth_refusals++;
    }
    const char *text = fuzz_below(&h->rng, 2) ? NULL : pick_text(h);
    FUZZ_CHECK(smtpd_reply(s, code, enh, text) == SMTPD_OK);
    FUZZ_CHECK(smtpd_reply(s, 235, NULL, NULL) == SMTPD_ERR_STATE);
}

static bool field_ok(const char *p, bool identity)
{
    size_t n = strlen(p);
    if (n == 0 || n > 255 || !utf8_ok(p))
        return false;
    for (size_t i = 0; identity && i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return false;
    return true;
}

static enum smtpd_verdict on_auth(void *arg, struct smtpd_session *s, const char *mechanism,
                                  const char *identity, const char *password)
{
    struct harness *h = arg;
    const struct smtpd_config *cfg = &h->params->cfg;
    FUZZ_CHECK(!h->in_cb);
    FUZZ_CHECK(s == h->s && h->with_auth);
    FUZZ_CHECK(!h->owed && !h->delayed && !h->closed);
    FUZZ_CHECK(smtpd_session_esmtp(s) && smtpd_session_helo(s) != NULL);
    FUZZ_CHECK(smtpd_session_reverse_path(s) == NULL);
    FUZZ_CHECK(smtpd_session_tls_protocol(s) != NULL || cfg->auth_insecure);
    FUZZ_CHECK(!h->authed && smtpd_session_auth_identity(s) == NULL);
    bool plain = strcmp(mechanism, "PLAIN") == 0;
    FUZZ_CHECK(plain || strcmp(mechanism, "LOGIN") == 0);
    FUZZ_CHECK(field_ok(identity, true));
    FUZZ_CHECK(field_ok(password, false));
    check_session(h, s);
    trace("-- on_auth %s", mechanism);
    if (h->n_secrets < MAX_SECRETS) {
        struct secret *k = &h->secrets[h->n_secrets++];
        snprintf(k->pw, sizeof(k->pw), "%s", password);
        snprintf(k->id, sizeof(k->id), "%s", identity);
        k->plain = plain;
    }
    snprintf(h->asked_id, sizeof(h->asked_id), "%s", identity);
    h->in_cb = true;
    enum smtpd_verdict v = SMTPD_DONE;
    switch (fuzz_below(&h->rng, 8)) {
    case 0:
    case 1:
    case 2:
        auth_answer(h, s);
        break;
    case 3:
        auth_answer(h, s);
        v = SMTPD_PENDING; /* answered already: the same as DONE */
        break;
    case 4:
    case 5:
        trace("-- on_auth: SMTPD_PENDING, answer later");
        h->owed = true;
        h->owed_step = K_AUTH;
        v = SMTPD_PENDING;
        break;
    case 6:
        /* A code it may not give, then nothing: refused as silence is. */
        FUZZ_CHECK(smtpd_reply(s, 250, NULL, NULL) == SMTPD_ERR_REPLY);
        /* fall through */
    default:
        trace("-- on_auth: silence");
        h->auth_refusals++;
        break;
    }
    h->in_cb = false;
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
    if (h->owed_step == K_AUTH) {
        unsigned refusals = h->auth_refusals;
        auth_answer(h, h->s);
        if (!h->closed && h->authed)
            FUZZ_CHECK(strcmp(smtpd_session_auth_identity(h->s), h->authed_id) == 0);
        /* A refusal other than 421 is held for the delay. */
        if (!h->closed && h->auth_refusals > refusals && h->params->cfg.auth_failure_delay)
            FUZZ_CHECK(h->delayed);
    } else if (h->owed_step == K_DATA && h->lmtp && fuzz_below(&h->rng, 2) &&
               answer_rcpts(h, h->s)) {
        /* every recipient answered late: so was the message */
    } else if (h->owed_step != K_EXT || !builtin_answer(h, h->s, "FROM:<late@x.org>", 17)) {
        answer(h, h->s, h->owed_step, fuzz_below(&h->rng, 3) == 0);
    }
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
    /* Reading data, no command line is half read (between the chunks of
     * a BDAT transaction, its data phase, a BDAT line may be). */
    if (ph == PHASE_DATA && smtpd_session_state(h->s) == SMTPD_SESSION_DATA)
        FUZZ_CHECK(!channel_line_pending(h->s));
    if (h->lost || h->closed) {
        FUZZ_CHECK(ph == PHASE_CLOSED);
        return;
    }
    FUZZ_CHECK(ph != PHASE_CLOSED);
    /* The channel waits exactly while the handler owes an answer, or a
     * failed AUTH's answer is held. */
    FUZZ_CHECK((ph == PHASE_WAIT) == (h->owed || h->delayed));
    FUZZ_CHECK(!(h->owed && h->delayed));
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
            /* RFC 3207 4.2: the authentication is forgotten too. */
            FUZZ_CHECK(smtpd_session_auth_identity(h->s) == NULL);
            h->authed = false;
            FUZZ_CHECK(smtpd_session_helo(h->s) == NULL || h->closed);
            continue;
        }
        if (used < len) {
            /* Stopped early: closed, waiting, or told to by the transport. */
            if (!h->closed && !h->owed && !h->delayed) {
                FUZZ_CHECK(said);
                continue;
            }
            break;
        }
    }
    check_phase(h);
}

/* The failure delay is over, from "the event loop". */
static void delay_done(struct harness *h)
{
    trace("-- channel_delay_done");
    bool was = h->delayed;
    h->delayed = false;
    h->resumed = false;
    size_t writes = h->n_writes;
    channel_delay_done(h->s);
    if (was && !h->closed) {
        /* The held answer went out, and reading goes on. */
        FUZZ_CHECK(h->n_writes > writes);
        FUZZ_CHECK(h->closed || h->resumed);
    }
    if (!was)
        FUZZ_CHECK(h->n_writes == writes);
    check_phase(h);
}

/* Canonical base64 of @p n bytes (RFC 4648 4), into @p out. */
static void b64(const unsigned char *p, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = t[v >> 18];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

/* The password given to on_auth must not be in the log. Checked where a
 * match can only be a leak: the password itself when it is at least 8
 * printable bytes the client never sent in the clear and the server never
 * wrote; and the base64 response line it came in (the canonical encoding
 * of the LOGIN password, or of the PLAIN message with an empty or equal
 * authzid), when exactly one candidate occurs in the input, once, and
 * unpadded (so no other encoding decodes to the same bytes). */
static void check_secrets(const struct harness *h, const uint8_t *input, size_t input_len)
{
    const char *in = (const char *)input;
    static const char *const ours[] = {"TLS_AES_128_GCM_SHA256", "ECDHE-RSA-AES256-GCM-SHA384"};
    const char *log = h->log_all ? h->log_all : "";
    for (size_t i = 0; i < h->n_secrets; i++) {
        const struct secret *k = &h->secrets[i];
        size_t pn = strlen(k->pw);
        bool printable = pn >= 8;
        for (size_t j = 0; j < pn && printable; j++)
            printable = k->pw[j] > 0x20 && k->pw[j] < 0x7f && k->pw[j] != '\\';
        bool ours_too = false;
        for (size_t j = 0; j < sizeof(ours) / sizeof(ours[0]); j++)
            ours_too |= occurrences(ours[j], strlen(ours[j]), k->pw, pn) > 0;
        if (printable && !ours_too && occurrences(in, input_len, k->pw, pn) == 0 &&
            occurrences(h->out_all ? h->out_all : "", h->out_len, k->pw, pn) == 0) {
            if (occurrences(log, h->log_len, k->pw, pn)) {
                fprintf(stderr, "password \"%s\" in the log:\n%s", k->pw, log);
                FUZZ_CHECK(!"a password in a log line");
            }
        }
        /* The response line. */
        unsigned char raw[3 * 256];
        char enc[2][1100];
        size_t idn = strlen(k->id), ncand = 0;
        if (k->plain) {
            for (int z = 0; z < 2; z++) {
                size_t o = 0;
                if (z) {
                    memcpy(raw, k->id, idn);
                    o = idn;
                }
                raw[o++] = '\0';
                memcpy(raw + o, k->id, idn);
                o += idn;
                raw[o++] = '\0';
                memcpy(raw + o, k->pw, pn);
                o += pn;
                b64(raw, o, enc[ncand++]);
            }
        } else {
            b64((const unsigned char *)k->pw, pn, enc[ncand++]);
        }
        int found = -1, seen = 0;
        for (size_t c = 0; c < ncand; c++) {
            int n = occurrences(in, input_len, enc[c], strlen(enc[c]));
            seen += n;
            if (n)
                found = (int)c;
        }
        if (seen != 1 || strlen(enc[found]) < 8 || strchr(enc[found], '='))
            continue;
        if (occurrences(log, h->log_len, enc[found], strlen(enc[found]))) {
            fprintf(stderr, "response \"%s\" in the log:\n%s", enc[found], log);
            FUZZ_CHECK(!"an AUTH response in a log line");
        }
    }
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
    /* Bits 19..16: AUTH, auth_insecure, auth_required, no failure delay. */
    /* BDAT always, as a server has it. */
    bool tls = (seed >> 22) & 1;
    h.with_auth = (seed >> 19) & 1;
    h.tls_offered = tls;
    const struct chan_ext *exts[3];
    size_t n_exts = 0;
    if (tls)
        exts[n_exts++] = &starttls_ext;
    if (h.with_auth)
        exts[n_exts++] = &auth_ext;
    exts[n_exts++] = &bdat_ext;
    params.exts = exts;
    params.n_exts = n_exts;
    params.cfg.auth_insecure = h.with_auth && ((seed >> 18) & 1);
    params.cfg.auth_required = h.with_auth && ((seed >> 17) & 1);
    if (h.with_auth && ((seed >> 16) & 1))
        params.cfg.auth_failure_delay = 0;
    params.cfg.require_tls = tls && ((seed >> 21) & 1);
    bool implicit_tls = tls && ((seed >> 20) & 1);
    params.cfg.hostname = (flags & 16) ? long_host : "mx.fuzz.example";
    params.cfg.decode_data = flags & 2;
    params.cfg.enable_smtputf8 = (flags & 1) && !(flags & 2);
    params.cfg.data_size_limit = pick_limit(size_sel);
    params.cfg.lmtp = h.lmtp = size_sel >= 228 && size_sel < 255;
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
        .on_auth = h.with_auth ? on_auth : NULL,
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

    const struct chan_addrs addrs = {PEER, 2525, "192.0.2.25", 25, NULL, 0};
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
        /* The failure delay ends (a timer of a closed session may too). */
        if (h.delayed && !h.lost && fuzz_below(&h.rng, 3) != 0)
            delay_done(&h);
        if (h.owed && !h.lost && fuzz_below(&h.rng, 4) != 0)
            give_owed(&h);
        inbuf_add(&b, client, n);
        client += n;
        left -= n;
        pump(&h, &b);
    }
    /* End of input: the handler answers what it owes, the delay ends, the
     * rest is read. */
    while ((h.owed || h.delayed) && !h.lost) {
        if (h.delayed)
            delay_done(&h);
        else
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
    check_secrets(&h, size > 6 ? data + 6 : data, size > 6 ? size - 6 : 0);
    free(h.log_all);
    free(h.out_all);
    free(b.p);
    return 0;
}
