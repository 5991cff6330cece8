/*
 * The per-client SMTP state machine; see channel.h. One command table says
 * which verb runs which function and what must come before it; every reply
 * is formatted here and leaves through the transport in one write.
 */
#include "channel.h"
#include "auth.h"
#include "auth_guard.h"
#include "cidr.h"
#include "command.h"
#include "data.h"
#include "extension.h"
#include "line.h"
#include "reply.h"
#include "xclient.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* RFC 5321 4.5.3.1.4: 512 octets per command line (counted without CRLF, as
 * smtpd does); MAIL may grow by SIZE=n (RFC 1870: 26) and SMTPUTF8 (10). */
#define COMMAND_LINE_LIMIT 512
#define SIZE_PARAM_EXTRA 26
#define SMTPUTF8_PARAM_EXTRA 10

/* Room for a reply line escaped, with where it came from, in a log line. */
#define LOG_REPLY_MAX 400

enum chan_state {
    ST_COMMAND, /* reading command lines */
    ST_DATA,    /* reading message data after 354 */
    ST_BDAT,    /* reading the octets of a BDAT chunk */
    ST_CLOSED,  /* QUIT, timeout or refusal: nothing more is read */
};

/* The handler step waiting for an answer. */
enum pending_step {
    STEP_NONE,
    STEP_CONNECT,  /* on_connect */
    STEP_HELO,     /* on_helo */
    STEP_MAIL,     /* on_mail */
    STEP_RCPT,     /* on_rcpt */
    STEP_DATA_CMD, /* on_data: the DATA command, before 354 */
    STEP_DATA,     /* on_message: after the final dot */
    STEP_EXT,      /* an extension command's fn */
    STEP_DELAY,    /* a failed AUTH's answer, held for the failure delay */
};

/* Lines a multi-line answer may have. */
#define ANSWER_MAX_LINES 64

struct txn {
    char *reverse_path; /* NULL: no MAIL yet */
    bool smtputf8;
    char **mail_options;
    size_t n_mail_options;
    char **forward_paths;
    size_t n_forward_paths, cap_forward_paths;
    struct data_engine de;
    struct data_buf data;
    /* Refused forward-paths, and the last refusal as it goes to the log
     * (malloc'd: refusals are rare, sessions many). */
    unsigned n_refused;
    char *refusal;
    char *data_refusal; /* the last refusal of DATA itself (on_data) */
    bool chunked;       /* BDAT began the data: no DATA now (RFC 3030 3) */
    bool data_asked;    /* on_data was asked, at the end of the first chunk */
};

/* The BDAT chunk being read (channel_bdat): its size and the octets still
 * to come, whether it is the last, and the reply that refuses it once it
 * has been read (code 0: none). */
struct chunk {
    uint64_t size, left;
    bool last;
    bool pending; /* asked for: read once the BDAT command's step is over */
    int refusal_code;
    const char *refusal_enh, *refusal_text;
};

struct smtpd_session {
    const struct chan_params *params;
    const struct chan_transport *tr;
    void *io;
    unsigned long id;
    void *user_data;
    char peer_addr[64];
    char via[80]; /* " via proxy ADDR:PORT" (chan_addrs.via_addr), or "" */
    char local_addr[64];
    uint16_t peer_port;
    uint16_t local_port;

    enum chan_state state;
    bool extended;       /* EHLO was used: enhanced codes, bigger MAIL lines */
    bool draining;       /* server shutdown: close when idle */
    bool in_feed;        /* inside channel_feed(): completions need no resume */
    bool in_callback;    /* inside a handler callback: answers are applied on return */
    bool seen_command;   /* a first command line came (see http_request) */
    bool closed_in_data; /* it closed during DATA, for the transaction log */
    bool started;        /* channel_start() ran: the session is in the log */
    bool xclient_ok;     /* the client may use XCLIENT (xclient_nets) */
    bool tls;            /* the connection is TLS (STARTTLS done, or implicit) */
    bool tls_requested;  /* the extension answering now asked for TLS */
    bool tls_wait;       /* STARTTLS answered 220: the handshake comes next */
    char tls_protocol[16];
    char tls_cipher[64];
    int tls_bits;
    char *helo; /* HELO/EHLO argument, NULL before */
    unsigned long n_messages;
    unsigned errors;        /* replies to bad commands, for max_errors */
    const char *end_reason; /* why the session closes, for the transaction log */
    /* Who gave the handler's answer (channel_reply_origin), for the log. */
    const char *origin;

    struct line_reader lr;
    struct txn txn;
    struct chunk chunk;
    struct smtpd_message msg; /* handed to on_message; valid until answered */

    /* The handler step awaiting an answer, and the answer once given. */
    enum pending_step step;
    int answer_code;
    bool answered;
    bool greeting_esmtp;
    /* STEP_EXT: the built-in run the extension asked for (below). */
    bool run_builtin;
    char *candidate;    /* forward-path being asked about in STEP_RCPT */
    char *greeting;     /* HELO/EHLO argument being asked about in STEP_HELO */
    char *answer_lines; /* a multi-line answer instead of answer (malloc'd) */
    size_t answer_len;
    char answer[REPLY_LINE_MAX];

    /* STEP_EXT: the extension command being answered, the built-in verb it
     * replaces (CMD_UNKNOWN: none), and the parameters of the built-in run. */
    const struct smtpd_command *ext;
    enum cmd_verb ext_verb;
    char *builtin_params;
    size_t builtin_len;
    /* After an extension's 3xx answer: the next line is its continuation. */
    const struct smtpd_command *cont;

    /* AUTH: the SASL exchange, the identity on_auth is asked about (and
     * its mechanism), the one it accepted, and the failures so far. */
    struct auth_exchange auth;
    char *auth_pending;
    const char *auth_mech;
    char *auth_identity;
    unsigned auth_failures;
    /* STEP_DELAY: the answer that goes out when the delay is over. */
    char *held;
    size_t held_len;
    /* LMTP, STEP_DATA: each recipient's own answer line (NULL: none yet),
     * one per forward-path, and how many have one (smtpd_reply_rcpt). */
    char **rcpt_answers;
    size_t n_rcpt_answers;
};

static void cmd_helo(struct smtpd_session *s, const char *arg, size_t len);
static void cmd_ehlo(struct smtpd_session *s, const char *arg, size_t len);
static void cmd_mail(struct smtpd_session *s, const char *arg, size_t len);
static void cmd_rcpt(struct smtpd_session *s, const char *arg, size_t len);
static void cmd_data(struct smtpd_session *s, const char *arg, size_t len);
static void cmd_rset(struct smtpd_session *s, const char *arg, size_t len);
static void cmd_noop(struct smtpd_session *s, const char *arg, size_t len);
static void cmd_quit(struct smtpd_session *s, const char *arg, size_t len);
static void cmd_vrfy(struct smtpd_session *s, const char *arg, size_t len);
static void cmd_expn(struct smtpd_session *s, const char *arg, size_t len);
static void cmd_help(struct smtpd_session *s, const char *arg, size_t len);

/* What a command needs first; checked in this order (smtpd's order). */
enum { NEED_GREETING = 1, NEED_MAIL = 2, NEED_RCPT = 4 };

static const struct command {
    void (*fn)(struct smtpd_session *s, const char *arg, size_t len);
    unsigned need;
    const char *syntax; /* HELP text */
} commands[CMD_COUNT] = {
    [CMD_HELO] = {cmd_helo, 0, "HELO hostname"},
    [CMD_EHLO] = {cmd_ehlo, 0, "EHLO hostname"},
    [CMD_MAIL] = {cmd_mail, NEED_GREETING, "MAIL FROM: <address>"},
    [CMD_RCPT] = {cmd_rcpt, NEED_GREETING | NEED_MAIL, "RCPT TO: <address>"},
    [CMD_DATA] = {cmd_data, NEED_GREETING | NEED_RCPT, "DATA"},
    [CMD_RSET] = {cmd_rset, 0, "RSET"},
    [CMD_NOOP] = {cmd_noop, 0, "NOOP"},
    [CMD_QUIT] = {cmd_quit, 0, "QUIT"},
    [CMD_VRFY] = {cmd_vrfy, 0, "VRFY <address>"},
    [CMD_EXPN] = {cmd_expn, 0, NULL},
    [CMD_HELP] = {cmd_help, 0, NULL},
};

/* What a command that needs the greeting first says without it. */
static const char *send_greeting_first(const struct smtpd_session *s)
{
    return s->params->cfg.lmtp ? "Error: send LHLO first" : "Error: send HELO first";
}

/* The built-in commands HELP lists, before the extensions'. */
#define SUPPORTED "EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY"
#define SUPPORTED_LMTP "LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY"

/* ---- logging ---- */

static void vlog_session(const struct smtpd_session *s, enum smtpd_log_level level, const char *fmt,
                         va_list ap)
{
    const struct smtpd_config *cfg = &s->params->cfg;
    if (!cfg->log || level > cfg->log_level)
        return;
    char line[1536];
    int n = snprintf(line, sizeof(line), "[%lu] ", s->id);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    cfg->log(cfg->log_arg, level, line);
}

void smtpd_session_log(const struct smtpd_session *s, enum smtpd_log_level level, const char *fmt,
                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_session(s, level, fmt, ap);
    va_end(ap);
}

static bool debug_on(const struct smtpd_session *s)
{
    return s->params->cfg.log && s->params->cfg.log_level >= SMTPD_LOG_DEBUG;
}

/* Log a line of the dialogue (-d): direction and escaped bytes. */
static void log_wire(const struct smtpd_session *s, const char *dir, const char *p, size_t n)
{
    if (!debug_on(s))
        return;
    /* One log line per line of a (multi-line) reply. */
    while (n > 0) {
        const char *lf = memchr(p, '\n', n);
        size_t len = lf ? (size_t)(lf - p) + 1 : n;
        size_t text = len;
        while (text > 0 && (p[text - 1] == '\n' || p[text - 1] == '\r'))
            text--;
        char esc[600];
        smtpd_escape(esc, sizeof(esc), p, text);
        smtpd_session_log(s, SMTPD_LOG_DEBUG, "%s %s", dir, esc);
        p += len;
        n -= len;
    }
}

/* ---- replies ---- */

static void send_raw(struct smtpd_session *s, const char *buf, size_t len)
{
    /* After QUIT, a timeout or a shutdown nothing more goes out (a late
     * handler answer included). */
    if (s->state == ST_CLOSED)
        return;
    log_wire(s, ">", buf, len);
    s->tr->write(s->io, buf, len);
}

/* Enhanced status codes go only to clients that used EHLO (RFC 2034 3).
 * Replies to bad commands count toward the error budget. */
static size_t reply_into(struct smtpd_session *s, char *buf, int code, const char *enh,
                         const char *text)
{
    if ((code >= 500 && code <= 503) || code == 555)
        s->errors++;
    size_t n = reply_format(buf, code, false, s->extended ? enh : NULL, text);
    send_raw(s, buf, n);
    return n;
}

/* Send a reply (the text is copied into the line). */
static void reply(struct smtpd_session *s, int code, const char *enh, const char *text)
{
    char buf[REPLY_LINE_MAX];
    reply_into(s, buf, code, enh, text);
}

static void close_session(struct smtpd_session *s)
{
    if (s->state == ST_CLOSED)
        return;
    s->closed_in_data = s->state == ST_DATA || s->state == ST_BDAT;
    s->state = ST_CLOSED;
    s->tr->close(s->io);
}

/* ---- transaction ---- */

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* LMTP: forget the per-recipient answers of a message. */
static void free_rcpt_answers(struct smtpd_session *s)
{
    if (s->rcpt_answers)
        free_strv(s->rcpt_answers, s->txn.n_forward_paths);
    s->rcpt_answers = NULL;
    s->n_rcpt_answers = 0;
}

static void log_ended(struct smtpd_session *s, const char *why);
static void log_mail_refused(struct smtpd_session *s, const char *line, size_t n);
static void note_rcpt_refused(struct smtpd_session *s, const char *fp, size_t fplen,
                              const char *line, size_t n);

/* End the transaction; @p ended_by (the command, "timeout"...) gets it a
 * log line, NULL when its end was logged already. */
static void txn_clear(struct smtpd_session *s, const char *ended_by)
{
    struct txn *t = &s->txn;
    bool had = t->reverse_path != NULL;
    if (had && ended_by)
        log_ended(s, ended_by);
    free_rcpt_answers(s);
    free(t->refusal);
    free(t->data_refusal);
    free(t->reverse_path);
    free_strv(t->mail_options, t->n_mail_options);
    free_strv(t->forward_paths, t->n_forward_paths);
    struct data_buf keep = t->data;
    data_buf_reset(&keep);
    memset(t, 0, sizeof(*t));
    t->data = keep;
    if (had && s->params->handler.on_reset)
        s->params->handler.on_reset(s->params->handler.arg, s);
}

static char *dup_slice(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

static char *dup_upper(const char *p, size_t n)
{
    char *d = dup_slice(p, n);
    for (size_t i = 0; d && i < n; i++)
        if (d[i] >= 'a' && d[i] <= 'z')
            d[i] = (char)(d[i] - 'a' + 'A');
    return d;
}

static void reply_nomem(struct smtpd_session *s)
{
    reply(s, 451, "4.3.0", "Error: local error in processing, try again later");
}

/* ---- handler calls ---- */

/* Standard enhanced code for a handler's answer at each step. */
static const char *default_enh(enum pending_step step, int code)
{
    if (code == 235 || code == 535) /* AUTH's (RFC 4954 6) */
        return code == 235 ? "2.7.0" : "5.7.8";
    if (code >= 400)
        return code >= 500 ? "5.0.0" : "4.0.0";
    switch (step) {
    case STEP_MAIL:
        return "2.1.0";
    case STEP_RCPT:
        return "2.1.5";
    default:
        return "2.0.0";
    }
}

/* "x.y.z" with the class of the code (RFC 3463 2). */
static bool valid_enh(const char *e, int code)
{
    if (!e || e[0] != '0' + code / 100 || e[1] != '.')
        return false;
    int dots = 0;
    size_t digits = 0;
    for (const char *p = e + 2; *p; p++) {
        if (*p == '.') {
            if (digits == 0 || ++dots > 1)
                return false;
            digits = 0;
        } else if (*p >= '0' && *p <= '9' && digits < 3) {
            digits++;
        } else {
            return false;
        }
    }
    return dots == 1 && digits > 0;
}

static void finish_step(struct smtpd_session *s);
static bool verb_is(const char *v, const char *verb, size_t n);
static void chunk_read(struct smtpd_session *s);
static void lmtp_repeat(struct smtpd_session *s, const char *line, size_t n);
static void check_errors(struct smtpd_session *s);
static void start_chunk(struct smtpd_session *s);
static void chunk_accepted(struct smtpd_session *s);
static void run_builtin(struct smtpd_session *s, enum cmd_verb v, const char *arg, size_t len);
static bool idle(const struct smtpd_session *s);
static void shutdown_now(struct smtpd_session *s);

/* The step's answer is stored: apply it now if it came from the event loop
 * (a pending answer), and read on; inside the callback, ask() applies it
 * on return. */
static enum smtpd_err answer_ready(struct smtpd_session *s)
{
    if (!s->in_callback) {
        finish_step(s);
        if (!s->in_feed && s->state != ST_CLOSED)
            s->tr->resume(s->io);
    }
    return SMTPD_OK;
}

/* The answer of the step in flight: stored, then applied by finish_step()
 * (at once, or on return from the callback). */
static enum smtpd_err give_answer(struct smtpd_session *s, int code, const char *enhanced,
                                  const char *const *lines, size_t n)
{
    if (s->step == STEP_NONE || s->step == STEP_DELAY || s->answered)
        return SMTPD_ERR_STATE;
    /* 3xx replies (354) are the protocol's own; only an extension command
     * may ask for a continuation with one. */
    if (code < 200 || code > 599 || (code / 100 == 3 && s->step != STEP_EXT))
        return SMTPD_ERR_REPLY;
    /* on_auth: 235 authenticates, anything else refuses (RFC 4954 4). */
    if (s->auth_pending && code < 400 && code != 235)
        return SMTPD_ERR_REPLY;
    /* RFC 3463 has no class 3: a 3xx carries no enhanced code. */
    if (enhanced && (code / 100 == 3 || !valid_enh(enhanced, code)))
        return SMTPD_ERR_CONFIG;
    if (n == 0 || n > ANSWER_MAX_LINES)
        return SMTPD_ERR_CONFIG;
    if (!enhanced && code / 100 != 3)
        enhanced = default_enh(s->step, code);
    /* RFC 2034 3: enhanced codes after EHLO, but not in the reply to
     * HELO/EHLO itself (a replacement of theirs). */
    bool greeting_reply =
        s->step == STEP_EXT && (s->ext_verb == CMD_HELO || s->ext_verb == CMD_EHLO);
    const char *enh = s->extended && !greeting_reply ? enhanced : NULL;
    if (s->step == STEP_CONNECT) {
        /* The greeting names us first (RFC 5321 4.2). */
        char t[REPLY_LINE_MAX];
        snprintf(t, sizeof(t), "%s %s", s->params->cfg.hostname, lines[0]);
        s->answer_len = reply_format(s->answer, code, n > 1, NULL, t);
        if (n > 1) {
            s->answer_lines = malloc(n * REPLY_LINE_MAX);
            if (!s->answer_lines)
                return SMTPD_ERR_NOMEM;
            memcpy(s->answer_lines, s->answer, s->answer_len);
            s->answer_len +=
                reply_format_lines(s->answer_lines + s->answer_len, code, NULL, lines + 1, n - 1);
        }
    } else if (n == 1) {
        s->answer_len = reply_format(s->answer, code, false, enh, lines[0]);
    } else {
        s->answer_lines = malloc(n * REPLY_LINE_MAX);
        if (!s->answer_lines)
            return SMTPD_ERR_NOMEM;
        s->answer_len = reply_format_lines(s->answer_lines, code, enh, lines, n);
    }
    s->answered = true;
    s->answer_code = code;
    return answer_ready(s);
}

/* The text of an answer given without one. */
static const char *default_text(int code)
{
    return code == 235  ? "Authentication successful"
           : code < 300 ? "OK"
           : code < 400 ? "Go ahead"
           : code < 500 ? "Error: try again later"
                        : "Error: refused";
}

enum smtpd_err smtpd_reply(struct smtpd_session *s, int code, const char *enhanced,
                           const char *text)
{
    if (!text)
        text = default_text(code);
    return give_answer(s, code, enhanced, &text, 1);
}

enum smtpd_err smtpd_reply_rcpt(struct smtpd_session *s, size_t index, int code,
                                const char *enhanced, const char *text)
{
    size_t n = s->txn.n_forward_paths;
    if (!s->params->cfg.lmtp || s->step != STEP_DATA || s->answered || index >= n ||
        (s->rcpt_answers && s->rcpt_answers[index]))
        return SMTPD_ERR_STATE;
    if (code < 200 || code > 599 || code / 100 == 3)
        return SMTPD_ERR_REPLY;
    if (enhanced && !valid_enh(enhanced, code))
        return SMTPD_ERR_CONFIG;
    if (!s->rcpt_answers && !(s->rcpt_answers = calloc(n, sizeof(char *))))
        return SMTPD_ERR_NOMEM;
    char line[REPLY_LINE_MAX];
    size_t len =
        reply_format(line, code, false,
                     s->extended ? (enhanced ? enhanced : default_enh(STEP_DATA, code)) : NULL,
                     text ? text : default_text(code));
    if (!(s->rcpt_answers[index] = dup_slice(line, len)))
        return SMTPD_ERR_NOMEM;
    if (++s->n_rcpt_answers < n)
        return SMTPD_OK;
    /* All answered: that is the message's answer (the code, for the 421
     * check, is the last one's). */
    memcpy(s->answer, line, len);
    s->answer_len = len;
    s->answer_code = code;
    s->answered = true;
    return answer_ready(s);
}

enum smtpd_err smtpd_reply_lines(struct smtpd_session *s, int code, const char *enhanced,
                                 const char *const *lines, size_t n)
{
    if (!lines && n > 0)
        return SMTPD_ERR_CONFIG;
    for (size_t i = 0; i < n; i++)
        if (!lines[i])
            return SMTPD_ERR_CONFIG;
    return give_answer(s, code, enhanced, lines, n);
}

enum smtpd_err smtpd_run_builtin(struct smtpd_session *s, const char *params, size_t len)
{
    if (s->step != STEP_EXT || s->answered || s->ext_verb == CMD_UNKNOWN || (!params && len))
        return SMTPD_ERR_STATE;
    s->builtin_params = malloc(len + 1);
    if (!s->builtin_params)
        return SMTPD_ERR_NOMEM;
    if (len)
        memcpy(s->builtin_params, params, len);
    s->builtin_params[len] = '\0';
    s->builtin_len = len;
    s->run_builtin = true;
    s->answered = true;
    s->answer_code = 0;
    return answer_ready(s);
}

/* Mark the start of a handler call for @p step; its verdict goes to ask(). */
static void begin_step(struct smtpd_session *s, enum pending_step step)
{
    s->step = step;
    s->answered = false;
    s->in_callback = true;
    s->origin = NULL;
}

/* The handler returned: finish the step now unless the answer is to come. */
static void ask(struct smtpd_session *s, enum smtpd_verdict verdict)
{
    s->in_callback = false;
    if (verdict == SMTPD_PENDING && !s->answered)
        return;
    finish_step(s);
}

/* ---- greeting ---- */

static void log_tls(const struct smtpd_session *s)
{
    smtpd_session_log(s, SMTPD_LOG_INFO, "TLS from %s: %s with cipher %s (%d bits)", s->peer_addr,
                      s->tls_protocol, s->tls_cipher, s->tls_bits);
}

void channel_start(struct smtpd_session *s)
{
    const struct smtpd_handler *h = &s->params->handler;
    if (!s->started) {
        smtpd_session_log(s, SMTPD_LOG_INFO, "connect from %s:%u%s%s", s->peer_addr, s->peer_port,
                          s->via, s->tls ? " (implicit TLS)" : "");
        if (s->tls)
            log_tls(s);
    }
    s->started = true;
    begin_step(s, STEP_CONNECT);
    ask(s, h->on_connect ? h->on_connect(h->arg, s) : SMTPD_DONE);
}

void channel_greeting(const struct smtpd_session *s, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%s smtpd %s %s", s->params->cfg.hostname, SMTPD_VERSION,
             s->params->cfg.lmtp ? "LMTP" : "ESMTP");
}

static void greet(struct smtpd_session *s)
{
    char t[REPLY_LINE_MAX];
    channel_greeting(s, t, sizeof(t));
    reply(s, 220, NULL, t);
}

/* ---- commands ---- */

static void set_greeting(struct smtpd_session *s, const char *arg, size_t len, bool extended)
{
    char *h = dup_slice(arg, len);
    if (!h) {
        reply_nomem(s);
        return;
    }
    /* RFC 5321 4.1.4: a new HELO/EHLO resets the transaction, like RSET. */
    txn_clear(s, extended ? "EHLO" : "HELO");
    free(s->helo);
    s->helo = h;
    s->extended = extended;
}

static const struct smtpd_command *find_extension(const struct smtpd_session *s, const char *verb,
                                                  size_t n);

/* The library's own extension @p i, if this session is offered it and the
 * handler has not replaced its verb; else NULL. */
static const struct chan_ext *own_ext(const struct smtpd_session *s, size_t i)
{
    const struct chan_ext *x = s->params->exts[i];
    if (x->offered && !x->offered(s))
        return NULL;
    return find_extension(s, x->cmd.verb, strlen(x->cmd.verb)) == &x->cmd ? x : NULL;
}

/* The EHLO reply: the keyword lines of ehlo.c, as the handler's on_ehlo
 * leaves them, in one write. */
static void ehlo_reply_send(struct smtpd_session *s)
{
    const struct smtpd_handler *h = &s->params->handler;
    struct smtpd_ehlo e;
    ehlo_init(&e, &s->params->cfg, h->commands, h->n_commands);
    for (size_t i = 0; i < s->params->n_exts; i++) {
        const struct chan_ext *x = own_ext(s, i);
        if (x && x->cmd.ehlo && (!x->advertised || x->advertised(s)))
            smtpd_ehlo_add(&e, x->cmd.ehlo);
    }
    if (h->on_ehlo)
        h->on_ehlo(h->arg, s, &e);
    size_t len;
    char *buf = ehlo_reply(&e, s->params->cfg.hostname, &len);
    if (!buf) {
        reply_nomem(s);
        return;
    }
    send_raw(s, buf, len);
    free(buf);
}

/* The greeting was accepted (by on_helo, or there is none). */
static void accept_greeting(struct smtpd_session *s, const char *arg, size_t len, bool esmtp)
{
    set_greeting(s, arg, len, esmtp);
    if (!s->helo)
        return;
    if (esmtp)
        ehlo_reply_send(s);
    else
        reply(s, 250, NULL, s->params->cfg.hostname);
}

static void greeting(struct smtpd_session *s, const char *arg, size_t len, bool esmtp)
{
    const struct smtpd_handler *h = &s->params->handler;
    if (!h->on_helo) {
        accept_greeting(s, arg, len, esmtp);
        return;
    }
    s->greeting = dup_slice(arg, len);
    if (!s->greeting) {
        reply_nomem(s);
        return;
    }
    s->greeting_esmtp = esmtp;
    begin_step(s, STEP_HELO);
    ask(s, h->on_helo(h->arg, s, s->greeting, esmtp));
}

static void cmd_helo(struct smtpd_session *s, const char *arg, size_t len)
{
    if (len == 0) {
        reply(s, 501, "5.5.4", "Syntax: HELO hostname");
        return;
    }
    /* Going back from ESMTP to plain SMTP is refused, as smtpd does. */
    if (s->extended) {
        reply(s, 503, "5.5.1", "Duplicate HELO/EHLO");
        return;
    }
    greeting(s, arg, len, false);
}

static void cmd_ehlo(struct smtpd_session *s, const char *arg, size_t len)
{
    if (len == 0) {
        reply(s, 501, "5.5.4",
              s->params->cfg.lmtp ? "Syntax: LHLO hostname" : "Syntax: EHLO hostname");
        return;
    }
    greeting(s, arg, len, true);
}

/* Check MAIL parameters (RFC 1870, 6152, 6531) as smtpd does; on success
 * fill the transaction's options. Returns false after replying. */
static bool mail_params(struct smtpd_session *s, const char *p, size_t len)
{
    const struct smtpd_config *cfg = &s->params->cfg;
    const char *end = p + len;
    struct esmtp_param prm;
    enum param_result r;
    size_t count = 0;
    bool unknown = false, bad_body = false, utf8 = false, utf8_value = false;
    bool bad_size = false, too_big = false, bad_auth = false;

    while ((r = cmd_next_param(&p, end, &prm)) == PARAM_OK) {
        count++;
        if (!cfg->decode_data && slice_ieq(prm.key, prm.key_len, "BODY")) {
            if (!prm.value || !(slice_ieq(prm.value, prm.value_len, "7BIT") ||
                                slice_ieq(prm.value, prm.value_len, "8BITMIME")))
                bad_body = true;
        } else if (cfg->enable_smtputf8 && slice_ieq(prm.key, prm.key_len, "SMTPUTF8")) {
            if (prm.value)
                utf8_value = true;
            utf8 = true;
        } else if (s->params->handler.on_auth && slice_ieq(prm.key, prm.key_len, "AUTH")) {
            /* RFC 4954 5: who submitted the message first; kept as given,
             * trusted by nobody here. */
            if (!prm.value)
                bad_auth = true;
        } else if (slice_ieq(prm.key, prm.key_len, "SIZE")) {
            /* size-value = 1*20DIGIT */
            size_t v = 0;
            bool ok = prm.value && prm.value_len <= 20;
            for (size_t i = 0; ok && i < prm.value_len; i++) {
                char c = prm.value[i];
                if (c < '0' || c > '9')
                    ok = false;
                else if (v > (SIZE_MAX - 9) / 10)
                    too_big = true;
                else
                    v = v * 10 + (size_t)(c - '0');
            }
            if (!ok)
                bad_size = true;
            else if (cfg->data_size_limit && (too_big || v > cfg->data_size_limit))
                too_big = true;
            else
                too_big = false;
        } else {
            unknown = true;
        }
    }
    if (r == PARAM_SYNTAX || bad_size || bad_auth) {
        reply(s, 501, "5.5.4", "Syntax: MAIL FROM: <address> [SP <mail-parameters>]");
        return false;
    }
    if (bad_body) {
        reply(s, 501, "5.5.4", "Error: BODY can only be one of 7BIT, 8BITMIME");
        return false;
    }
    if (utf8_value) {
        reply(s, 501, "5.5.4", "Error: SMTPUTF8 takes no arguments");
        return false;
    }
    if (too_big) {
        char buf[REPLY_LINE_MAX];
        size_t n = reply_into(s, buf, 552, "5.3.4",
                              "Error: message size exceeds fixed maximum message size");
        log_mail_refused(s, buf, n);
        return false;
    }
    if (unknown) {
        reply(s, 555, "5.5.4", "MAIL FROM parameters not recognized or not implemented");
        return false;
    }
    struct txn *t = &s->txn;
    t->smtputf8 = utf8;
    if (count > 0) {
        t->mail_options = calloc(count, sizeof(char *));
        if (!t->mail_options) {
            reply_nomem(s);
            return false;
        }
        /* Second pass: keep each parameter as sent, upper-cased (smtpd's
         * mail_options). */
        p = end - len;
        while (cmd_next_param(&p, end, &prm) == PARAM_OK) {
            size_t n = prm.key_len + (prm.value ? prm.value_len + 1 : 0);
            char *o = dup_upper(prm.key, n);
            if (!o) {
                reply_nomem(s);
                return false;
            }
            t->mail_options[t->n_mail_options++] = o;
        }
    }
    return true;
}

static void cmd_mail(struct smtpd_session *s, const char *arg, size_t len)
{
    const char *syntax = s->extended ? "Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
                                     : "Syntax: MAIL FROM: <address>";
    struct path_arg pa;
    if (!cmd_parse_path(arg, len, "FROM:", &pa)) {
        reply(s, 501, "5.1.7", syntax);
        return;
    }
    if (!s->extended && pa.params_len > 0) {
        reply(s, 501, "5.5.4", syntax);
        return;
    }
    if (s->txn.reverse_path) {
        reply(s, 503, "5.5.1", "Error: nested MAIL command");
        return;
    }
    s->txn.reverse_path = dup_slice(pa.addr, pa.addr_len);
    if (!s->txn.reverse_path) {
        reply_nomem(s);
        return;
    }
    if (!mail_params(s, pa.params, pa.params_len)) {
        txn_clear(s, NULL);
        return;
    }
    const struct smtpd_handler *h = &s->params->handler;
    begin_step(s, STEP_MAIL);
    ask(s, h->on_mail ? h->on_mail(h->arg, s, s->txn.reverse_path,
                                   (const char *const *)s->txn.mail_options, s->txn.n_mail_options)
                      : SMTPD_DONE);
}

static void cmd_rcpt(struct smtpd_session *s, const char *arg, size_t len)
{
    const char *syntax = s->extended ? "Syntax: RCPT TO: <address> [SP <mail-parameters>]"
                                     : "Syntax: RCPT TO: <address>";
    struct path_arg pa;
    if (s->txn.chunked) {
        /* on_data has seen the forward-paths; the data is on its way. */
        reply(s, 503, "5.5.1", "Error: no RCPT after BDAT");
        return;
    }
    if (!cmd_parse_path(arg, len, "TO:", &pa)) {
        reply(s, 501, "5.1.3", syntax);
        return;
    }
    if (pa.null_path) {
        /* RFC 5321 4.1.1.3: a forward-path is never null. */
        reply(s, 501, "5.1.3", "Error: null forward-path");
        return;
    }
    if (!s->extended && pa.params_len > 0) {
        reply(s, 501, "5.5.4", syntax);
        return;
    }
    const char *p = pa.params;
    struct esmtp_param prm;
    enum param_result r = cmd_next_param(&p, pa.params + pa.params_len, &prm);
    if (r == PARAM_OK) {
        while ((r = cmd_next_param(&p, pa.params + pa.params_len, &prm)) == PARAM_OK)
            ;
    }
    if (r == PARAM_SYNTAX) {
        reply(s, 501, "5.5.4", syntax);
        return;
    }
    if (pa.params_len > 0) {
        reply(s, 555, "5.5.4", "RCPT TO parameters not recognized or not implemented");
        return;
    }
    if (s->txn.n_forward_paths >= s->params->cfg.max_recipients) {
        char buf[REPLY_LINE_MAX];
        size_t n = reply_into(s, buf, 452, "4.5.3", "Error: too many recipients");
        note_rcpt_refused(s, pa.addr, pa.addr_len, buf, n);
        return;
    }
    s->candidate = dup_slice(pa.addr, pa.addr_len);
    if (!s->candidate) {
        reply_nomem(s);
        return;
    }
    const struct smtpd_handler *h = &s->params->handler;
    begin_step(s, STEP_RCPT);
    ask(s, h->on_rcpt ? h->on_rcpt(h->arg, s, s->candidate, NULL, 0) : SMTPD_DONE);
}

static bool add_forward_path(struct txn *t, char *fp)
{
    if (t->n_forward_paths == t->cap_forward_paths) {
        size_t cap = t->cap_forward_paths ? t->cap_forward_paths * 2 : 4;
        char **v = realloc(t->forward_paths, cap * sizeof(char *));
        if (!v)
            return false;
        t->forward_paths = v;
        t->cap_forward_paths = cap;
    }
    t->forward_paths[t->n_forward_paths++] = fp;
    return true;
}

static void start_data(struct smtpd_session *s)
{
    data_engine_init(&s->txn.de, s->params->cfg.data_size_limit,
                     (enum data_bare_policy)s->params->cfg.bare_lf);
    s->state = ST_DATA;
    reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

static void cmd_data(struct smtpd_session *s, const char *arg, size_t len)
{
    (void)arg;
    if (len > 0) {
        reply(s, 501, "5.5.4", "Syntax: DATA");
        return;
    }
    if (s->txn.chunked) {
        reply(s, 503, "5.5.1", "Error: BDAT and DATA cannot be mixed in one transaction");
        return;
    }
    const struct smtpd_handler *h = &s->params->handler;
    if (!h->on_data) {
        start_data(s);
        return;
    }
    begin_step(s, STEP_DATA_CMD);
    ask(s, h->on_data(h->arg, s));
}

static void cmd_rset(struct smtpd_session *s, const char *arg, size_t len)
{
    (void)arg;
    if (len > 0) {
        reply(s, 501, "5.5.4", "Syntax: RSET");
        return;
    }
    txn_clear(s, "RSET");
    reply(s, 250, "2.0.0", "OK");
}

static void cmd_noop(struct smtpd_session *s, const char *arg, size_t len)
{
    /* RFC 5321 4.1.1.9: any argument is ignored. */
    (void)arg;
    (void)len;
    reply(s, 250, "2.0.0", "OK");
}

static void cmd_quit(struct smtpd_session *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    reply(s, 221, "2.0.0", "Bye");
    s->end_reason = "QUIT";
    close_session(s);
}

static void cmd_vrfy(struct smtpd_session *s, const char *arg, size_t len)
{
    if (len == 0) {
        reply(s, 501, "5.5.4", "Syntax: VRFY <address>");
        return;
    }
    /* As smtpd: a parsable address gets 252 (RFC 5321 3.5.3), else 502. */
    const char *a = arg;
    size_t n = len;
    if (n >= 2 && a[0] == '<' && a[n - 1] == '>') {
        a++;
        n -= 2;
    }
    if (cmd_valid_mailbox(a, n))
        reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery");
    else
        reply(s, 502, "5.5.2", "Could not VRFY that address");
}

static void cmd_expn(struct smtpd_session *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    reply(s, 502, "5.5.1", "EXPN not implemented");
}

static const struct smtpd_command *find_extension(const struct smtpd_session *s, const char *verb,
                                                  size_t n);

/* "Supported commands: ...": the built-ins, then every extension verb that
 * is not a built-in's, in lines that fit a reply. */
/* The lines of the HELP reply being built. */
struct help_lines {
    char line[8][REPLY_LINE_MAX - 20];
    size_t n;  /* index of the line being filled */
    int o;     /* its length */
    bool full; /* a verb found no room: the list ends there */
};

/* Add @p verb, unless it is a built-in's (listed already) or no line is left. */
static void help_add(struct help_lines *hl, const char *verb)
{
    const size_t max = sizeof(hl->line) / sizeof(hl->line[0]);
    if (hl->full || cmd_lookup(verb, strlen(verb)) != CMD_UNKNOWN)
        return;
    if ((size_t)hl->o + strlen(verb) + 2 > sizeof(hl->line[0]) - 1) {
        if (hl->n + 1 == max) {
            hl->full = true;
            return;
        }
        hl->o = 0;
        hl->line[++hl->n][0] = '\0';
    }
    hl->o += snprintf(hl->line[hl->n] + hl->o, sizeof(hl->line[0]) - (size_t)hl->o, "%s%s",
                      hl->o ? " " : "", verb);
}

static void reply_supported(struct smtpd_session *s, int code, const char *enh)
{
    const struct smtpd_handler *h = &s->params->handler;
    struct help_lines hl = {.n = 0};
    const char *ptrs[sizeof(hl.line) / sizeof(hl.line[0])];
    hl.o = snprintf(hl.line[0], sizeof(hl.line[0]), "Supported commands: %s",
                    s->params->cfg.lmtp ? SUPPORTED_LMTP : SUPPORTED);
    for (size_t i = 0; i < s->params->n_exts; i++) {
        const struct chan_ext *x = own_ext(s, i);
        if (x && (!x->advertised || x->advertised(s)))
            help_add(&hl, x->cmd.verb);
    }
    for (size_t i = 0; i < h->n_commands; i++)
        help_add(&hl, h->commands[i].verb);
    size_t n = hl.n;
    for (size_t i = 0; i <= n; i++)
        ptrs[i] = hl.line[i];
    char buf[sizeof(hl.line) / sizeof(hl.line[0]) * REPLY_LINE_MAX];
    if (code >= 500)
        s->errors++;
    send_raw(s, buf, reply_format_lines(buf, code, s->extended ? enh : NULL, ptrs, n + 1));
}

static void cmd_help(struct smtpd_session *s, const char *arg, size_t len)
{
    if (len == 0) {
        reply_supported(s, 250, "2.0.0");
        return;
    }
    const struct smtpd_command *ext = find_extension(s, arg, len);
    if (ext) {
        char t[REPLY_LINE_MAX];
        snprintf(t, sizeof(t), "Syntax: %s", ext->help ? ext->help : ext->verb);
        reply(s, 250, "2.0.0", t);
        return;
    }
    enum cmd_verb v = cmd_lookup(arg, len);
    const char *syntax = commands[v].syntax;
    if (s->params->cfg.lmtp && (v == CMD_HELO || v == CMD_EHLO))
        syntax = NULL; /* refused here: LHLO instead */
    else if (s->params->cfg.lmtp && verb_is("LHLO", arg, len))
        syntax = "LHLO hostname";
    if (!syntax) {
        reply_supported(s, 501, "5.5.4");
        return;
    }
    char t[128];
    bool params = s->extended && (v == CMD_MAIL || v == CMD_RCPT);
    snprintf(t, sizeof(t), "Syntax: %s%s", syntax, params ? " [SP <mail-parameters>]" : "");
    reply(s, 250, "2.0.0", t);
}

/* ---- step completion ---- */

/* ---- the transaction's log line ---- */

/* "from=<..> to=<..>" of the transaction, escaped; a list of forward-paths
 * too long for the line ends in "... (N more)". */
static void format_envelope(const struct smtpd_session *s, char *out, size_t outsz)
{
    const struct txn *t = &s->txn;
    char from[256];
    smtpd_escape(from, sizeof(from), t->reverse_path, strlen(t->reverse_path));
    size_t o = (size_t)snprintf(out, outsz, "from=<%s> to=<", from);
    size_t i = 0;
    for (; i < t->n_forward_paths; i++) {
        char fp[256];
        size_t n = smtpd_escape(fp, sizeof(fp), t->forward_paths[i], strlen(t->forward_paths[i]));
        /* Room for this one, and after it ">" or ",... (N more)>". */
        if (o + 1 + n + 24 > outsz)
            break;
        if (i)
            out[o++] = ',';
        memcpy(out + o, fp, n);
        o += n;
    }
    if (i < t->n_forward_paths)
        o += (size_t)snprintf(out + o, outsz - o, "%s... (%zu more)", i ? "," : "",
                              t->n_forward_paths - i);
    snprintf(out + o, outsz - o, ">");
}

/* The first line of reply @p line (@p n bytes), escaped, and who gave it. */
static void format_reply(const struct smtpd_session *s, const char *line, size_t n, char *out,
                         size_t outsz)
{
    const char *eol = memchr(line, '\r', n);
    size_t o = smtpd_escape(out, outsz - 100, line, eol ? (size_t)(eol - line) : n);
    if (o > 3 && out[3] == '-')
        out[3] = ' '; /* the first line of a multi-line reply */
    if (s->origin)
        snprintf(out + o, outsz - o, " (%s)", s->origin);
}

static bool log_info_on(const struct smtpd_session *s)
{
    return s->params->cfg.log && s->params->cfg.log_level >= SMTPD_LOG_INFO;
}

/* The end of data was answered with @p line. */
static void log_message(struct smtpd_session *s, size_t size, const char *line, size_t n)
{
    if (!log_info_on(s))
        return;
    char env[700], rep[LOG_REPLY_MAX];
    format_envelope(s, env, sizeof(env));
    format_reply(s, line, n, rep, sizeof(rep));
    smtpd_session_log(s, SMTPD_LOG_INFO, "message %s size=%zu reply=%s", env, size, rep);
}

static void log_mail_refused(struct smtpd_session *s, const char *line, size_t n)
{
    if (!log_info_on(s))
        return;
    char env[700], rep[LOG_REPLY_MAX];
    format_envelope(s, env, sizeof(env));
    format_reply(s, line, n, rep, sizeof(rep));
    smtpd_session_log(s, SMTPD_LOG_INFO, "transaction %s refused at MAIL: reply=%s", env, rep);
}

/* A forward-path was refused: counted, and the last one kept for the line
 * that ends the transaction. */
static void note_rcpt_refused(struct smtpd_session *s, const char *fp, size_t fplen,
                              const char *line, size_t n)
{
    struct txn *t = &s->txn;
    t->n_refused++;
    if (!log_info_on(s))
        return;
    char path[256], rep[LOG_REPLY_MAX], all[sizeof(path) + sizeof(rep) + 16];
    smtpd_escape(path, sizeof(path), fp, fplen);
    format_reply(s, line, n, rep, sizeof(rep));
    snprintf(all, sizeof(all), "<%s> reply=%s", path, rep);
    free(t->refusal);
    t->refusal = strdup(all);
}

/* The transaction ended without a message: why, and what was refused. */
static void log_ended(struct smtpd_session *s, const char *why)
{
    const struct txn *t = &s->txn;
    if (!log_info_on(s))
        return;
    char env[700], rcpts[LOG_REPLY_MAX + 300] = "", data[LOG_REPLY_MAX + 40] = "";
    format_envelope(s, env, sizeof(env));
    const char *where =
        s->state == ST_DATA || s->state == ST_BDAT || s->closed_in_data ? "in DATA" : "before DATA";
    if (t->n_refused && t->refusal)
        snprintf(rcpts, sizeof(rcpts), "; %u recipient%s refused, last %s", t->n_refused,
                 t->n_refused == 1 ? "" : "s", t->refusal);
    if (t->data_refusal)
        snprintf(data, sizeof(data), "; DATA refused: reply=%s", t->data_refusal);
    smtpd_session_log(s, SMTPD_LOG_INFO, "transaction %s ended by %s %s%s%s", env, why, where,
                      rcpts, data);
}

/* How long an AUTH answer is held after @p failures failures (0: not at
 * all): the configured delay, doubled at each failure up to four times it. */
static unsigned failure_delay(const struct smtpd_session *s, unsigned failures)
{
    unsigned base = s->params->cfg.auth_failure_delay;
    if (failures == 0)
        return 0;
    unsigned shift = failures < 3 ? failures - 1 : 2;
    return base > UINT_MAX / 4 ? base : base << shift;
}

/* @p id escaped for a log line between double quotes: a quote in it too,
 * so that no user name can end the quoted part and write the rest of the
 * line. */
static void escape_quoted(char *out, size_t outsz, const char *id)
{
    char esc[AUTH_FIELD_MAX * 4 + 8];
    smtpd_escape(esc, sizeof(esc), id, strlen(id));
    size_t o = 0;
    for (const char *p = esc; *p && o + 5 < outsz; p++) {
        if (*p == '"') {
            memcpy(out + o, "\\x22", 4);
            o += 4;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

/* Send AUTH's answer @p ans after @p ms milliseconds (STEP_DELAY); at once
 * when @p ms is 0 or the transport has no timer. */
static void send_after(struct smtpd_session *s, const char *ans, size_t n, unsigned ms)
{
    if (ms == 0 || !s->tr->delay || !(s->held = malloc(n))) {
        send_raw(s, ans, n);
        return;
    }
    memcpy(s->held, ans, n);
    s->held_len = n;
    s->step = STEP_DELAY;
    if (!s->tr->delay(s->io, ms)) {
        s->step = STEP_NONE;
        free(s->held);
        s->held = NULL;
        send_raw(s, ans, n);
    }
}

/* on_auth answered @p code (0: not at all) with @p ans: the session is
 * authenticated, or the failure is counted and logged. Either answer waits
 * as long as the failures so far of the session, and of its address, say
 * (auth_guard.h), so that a success comes no sooner than a failure would. */
static void auth_answered(struct smtpd_session *s, int code, const char *ans, size_t n)
{
    char *id = s->auth_pending;
    s->auth_pending = NULL;
    char esc[AUTH_FIELD_MAX * 6 + 8];
    escape_quoted(esc, sizeof(esc), id);
    struct auth_guard *g = s->params->auth_guard;
    time_t now = time(NULL);
    unsigned of_addr = g ? auth_guard_failures(g, s->peer_addr, now) : 0;
    if (code == 235) {
        smtpd_session_log(s, SMTPD_LOG_INFO, "AUTH %s from %s: authenticated as \"%s\"",
                          s->auth_mech, s->peer_addr, esc);
        s->auth_identity = id;
        send_after(s, ans, n, failure_delay(s, of_addr));
        return;
    }
    free(id);
    s->auth_failures++;
    s->errors++; /* guessing is a bad command too */
    if (g)
        auth_guard_failed(g, s->peer_addr, now);
    smtpd_session_log(s, SMTPD_LOG_INFO, "AUTH %s from %s failed for \"%s\" (failure %u)",
                      s->auth_mech, s->peer_addr, esc, s->auth_failures);
    char buf[REPLY_LINE_MAX];
    if (code == 0) {
        n = reply_format(buf, 535, false, s->extended ? "5.7.8" : NULL,
                         "Error: authentication failed");
        ans = buf;
    }
    unsigned failures = s->auth_failures > of_addr ? s->auth_failures : of_addr + 1;
    /* A 421 closes at once. */
    send_after(s, ans, n, code == 421 ? 0 : failure_delay(s, failures));
}

/* LMTP's end of data (RFC 2033 4.2): a reply per accepted recipient, in
 * RCPT order, its own or the message's (@p line), and a log line each.
 * @return whether one of them was a 421, which closes the session. */
static bool lmtp_answers(struct smtpd_session *s, const char *line, size_t n)
{
    struct txn *t = &s->txn;
    bool delivered = false, closing = false;
    for (size_t i = 0; i < t->n_forward_paths; i++) {
        const char *l = s->rcpt_answers && s->rcpt_answers[i] ? s->rcpt_answers[i] : line;
        size_t len = l == line ? n : strlen(l);
        send_raw(s, l, len);
        delivered |= l[0] == '2';
        closing |= memcmp(l, "421", 3) == 0;
        if (log_info_on(s)) {
            char fp[256], rep[LOG_REPLY_MAX], from[256];
            smtpd_escape(from, sizeof(from), t->reverse_path, strlen(t->reverse_path));
            smtpd_escape(fp, sizeof(fp), t->forward_paths[i], strlen(t->forward_paths[i]));
            format_reply(s, l, len, rep, sizeof(rep));
            smtpd_session_log(s, SMTPD_LOG_INFO, "message from=<%s> to=<%s> size=%zu reply=%s",
                              from, fp, t->data.len, rep);
        }
    }
    if (delivered)
        s->n_messages++;
    free_rcpt_answers(s);
    return closing;
}

static void finish_step(struct smtpd_session *s)
{
    enum pending_step step = s->step;
    bool answered = s->answered;
    int code = answered ? s->answer_code : 250;
    bool builtin = s->run_builtin;
    s->step = STEP_NONE;
    s->answered = false;
    s->run_builtin = false;
    /* An accepted greeting or DATA gets the built-in reply instead. */
    bool accepted = answered && code < 300 && (step == STEP_HELO || step == STEP_DATA_CMD);
    /* The answer, for the log lines below; ours until the end. */
    char *lines = s->answer_lines;
    s->answer_lines = NULL;
    const char *ans = lines ? lines : s->answer;
    size_t ans_len = s->answer_len;
    /* AUTH's answer is sent by auth_answered(), LMTP's per recipient. */
    bool auth = step == STEP_EXT && s->auth_pending;
    bool lmtp_data = step == STEP_DATA && s->params->cfg.lmtp;
    if (answered && !builtin && !accepted && !auth && !lmtp_data) {
        if (step == STEP_EXT && ((code >= 500 && code <= 503) || code == 555))
            s->errors++;
        send_raw(s, ans, ans_len);
    }

    switch (step) {
    case STEP_CONNECT:
        if (!answered)
            greet(s);
        else if (code >= 400)
            close_session(s);
        break;
    case STEP_MAIL:
        if (!answered) {
            reply(s, 250, "2.1.0", "OK");
        } else if (code >= 300) {
            log_mail_refused(s, ans, ans_len);
            txn_clear(s, NULL);
        }
        break;
    case STEP_RCPT:
        if (code < 300) {
            if (!add_forward_path(&s->txn, s->candidate)) {
                free(s->candidate);
                s->candidate = NULL;
                reply_nomem(s);
                break;
            }
            s->candidate = NULL;
            if (!answered)
                reply(s, 250, "2.1.5", "OK");
        } else {
            note_rcpt_refused(s, s->candidate, strlen(s->candidate), ans, ans_len);
        }
        free(s->candidate);
        s->candidate = NULL;
        break;
    case STEP_DATA: {
        char buf[REPLY_LINE_MAX];
        const char *line = ans;
        size_t n = ans_len;
        if (!answered) {
            n = reply_format(buf, 250, false, s->extended ? "2.0.0" : NULL, "OK");
            line = buf;
        }
        if (lmtp_data) {
            if (lmtp_answers(s, line, n)) {
                answered = true;
                code = 421;
            }
        } else {
            if (!answered)
                send_raw(s, line, n);
            log_message(s, s->txn.data.len, line, n);
            if (code < 300)
                s->n_messages++;
        }
        txn_clear(s, NULL);
        break;
    }
    case STEP_HELO: {
        char *g = s->greeting;
        s->greeting = NULL;
        if (code < 300)
            accept_greeting(s, g, strlen(g), s->greeting_esmtp);
        free(g);
        break;
    }
    case STEP_DATA_CMD:
        if (code < 300) {
            /* A late answer for a session that is gone starts nothing. */
            if (s->state == ST_CLOSED)
                break;
            if (s->txn.chunked)
                chunk_accepted(s);
            else
                start_data(s);
            break;
        }
        if (log_info_on(s)) {
            char rep[LOG_REPLY_MAX];
            format_reply(s, ans, ans_len, rep, sizeof(rep));
            free(s->txn.data_refusal);
            s->txn.data_refusal = strdup(rep);
        }
        /* A refused chunk ends the transaction: a later chunk must not
         * become the start of a shorter message. */
        if (s->txn.chunked) {
            if (s->chunk.last)
                lmtp_repeat(s, ans, ans_len);
            txn_clear(s, "BDAT");
        }
        break;
    case STEP_EXT: {
        const struct smtpd_command *ext = s->ext;
        enum cmd_verb verb = s->ext_verb;
        s->ext = NULL;
        if (auth) {
            auth_answered(s, answered ? code : 0, ans, ans_len);
        } else if (builtin) {
            char *p = s->builtin_params;
            s->builtin_params = NULL;
            free(s->greeting);
            s->greeting = NULL;
            if (s->state != ST_CLOSED) /* a late answer: nothing more runs */
                run_builtin(s, verb, p, s->builtin_len);
            free(p);
        } else if (answered && code / 100 == 2 && s->greeting) {
            /* A replacement of HELO/EHLO accepted it (see smtpd_command). */
            char *g = s->greeting;
            s->greeting = NULL;
            set_greeting(s, g, strlen(g), verb == CMD_EHLO);
            free(g);
        } else if (s->chunk.pending) {
            start_chunk(s);
        } else if (!answered) {
            reply(s, 250, "2.0.0", "OK");
        } else if (code / 100 == 3) {
            s->cont = ext;
        }
        free(s->greeting); /* a replacement of HELO/EHLO that refused */
        s->greeting = NULL;
        if (s->tls_requested) {
            /* STARTTLS's 220 is queued: the transport takes over. */
            s->tls_requested = false;
            if (answered && code == 220 && s->state != ST_CLOSED) {
                s->tls_wait = true;
                s->tr->start_tls(s->io);
            }
        }
        break;
    }
    case STEP_NONE:
    case STEP_DELAY:
        break;
    }
    free(lines);
    s->origin = NULL; /* it named who gave this answer only */
    /* RFC 5321 3.8: a 421 closes the session, whoever sent it. */
    if (answered && code == 421 && s->state != ST_CLOSED) {
        s->end_reason = "a 421 reply";
        close_session(s);
    }
    check_errors(s);
}

/* LMTP: a refusal sent at the end of data is every recipient's (RFC 2033
 * 4.2): once more for each recipient after the first. */
static void lmtp_repeat(struct smtpd_session *s, const char *line, size_t n)
{
    if (!s->params->cfg.lmtp)
        return;
    for (size_t i = 1; i < s->txn.n_forward_paths; i++)
        send_raw(s, line, n);
}

/* The final dot: check the data, then hand it to the handler. */
static void end_of_data(struct smtpd_session *s)
{
    const struct smtpd_config *cfg = &s->params->cfg;
    struct txn *t = &s->txn;
    s->state = ST_COMMAND;
    char buf[REPLY_LINE_MAX];
    size_t n = 0, size = t->data.len;
    if (data_too_much(&t->de)) {
        size = data_size(&t->de);
        n = reply_into(s, buf, 552, "5.3.4", "Error: Too much mail data");
    } else if (cfg->bare_lf == SMTPD_BARE_LF_REJECT && data_bare_seen(&t->de)) {
        n = reply_into(s, buf, 550, "5.5.2", "Error: bare <CR> or <LF> in message data");
    } else if (cfg->decode_data && !utf8_valid(t->data.p, t->data.len)) {
        n = reply_into(s, buf, 554, "5.6.0", "Error: message data is not valid UTF-8");
    }
    if (n > 0) {
        lmtp_repeat(s, buf, n);
        log_message(s, size, buf, n);
        txn_clear(s, NULL);
        return;
    }
    s->msg = (struct smtpd_message){
        .peer_addr = s->peer_addr,
        .peer_port = s->peer_port,
        .helo = s->helo,
        .reverse_path = t->reverse_path,
        .forward_paths = (const char *const *)t->forward_paths,
        .n_forward_paths = t->n_forward_paths,
        .mail_options = (const char *const *)t->mail_options,
        .n_mail_options = t->n_mail_options,
        .rcpt_options = NULL,
        .n_rcpt_options = 0,
        .smtputf8 = t->smtputf8,
        .esmtp = s->extended,
        .data = t->data.p ? t->data.p : "",
        .data_len = t->data.len,
        .tls_protocol = s->tls ? s->tls_protocol : NULL,
        .tls_cipher = s->tls ? s->tls_cipher : NULL,
        .tls_cipher_bits = s->tls ? s->tls_bits : 0,
        .auth_identity = s->auth_identity,
        .chunked = t->chunked,
        .lmtp = cfg->lmtp,
    };
    const struct smtpd_handler *h = &s->params->handler;
    begin_step(s, STEP_DATA);
    ask(s, h->on_message(h->arg, s, &s->msg));
}

static bool verb_is(const char *v, const char *verb, size_t n)
{
    return v && strlen(v) == n && strncasecmp(v, verb, n) == 0;
}

/* The handler's command for @p verb, else the library's own. */
static const struct smtpd_command *find_extension(const struct smtpd_session *s, const char *verb,
                                                  size_t n)
{
    const struct smtpd_handler *h = &s->params->handler;
    for (size_t i = 0; i < h->n_commands; i++)
        if (verb_is(h->commands[i].verb, verb, n))
            return &h->commands[i];
    for (size_t i = 0; i < s->params->n_exts; i++)
        if (verb_is(s->params->exts[i]->cmd.verb, verb, n))
            return &s->params->exts[i]->cmd;
    return NULL;
}

/* A built-in command, if what it needs came first. */
static void run_builtin(struct smtpd_session *s, enum cmd_verb v, const char *arg, size_t len)
{
    const struct command *c = &commands[v];
    if ((c->need & NEED_GREETING) && !s->helo) {
        reply(s, 503, "5.5.1", send_greeting_first(s));
        return;
    }
    if ((c->need & NEED_MAIL) && !s->txn.reverse_path) {
        reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if ((c->need & NEED_RCPT) && s->txn.n_forward_paths == 0) {
        reply(s, 503, "5.5.1", "Error: need RCPT command");
        return;
    }
    c->fn(s, arg, len);
}

/* An extension command (or a continuation of one, @p verb CMD_UNKNOWN):
 * its flags checked as a built-in's needs are, then its fn is a step. */
static void run_extension(struct smtpd_session *s, const struct smtpd_command *ext,
                          enum cmd_verb verb, const char *arg, size_t len)
{
    if ((ext->flags & SMTPD_CMD_NEED_GREETING) && !s->helo) {
        reply(s, 503, "5.5.1", send_greeting_first(s));
        return;
    }
    if ((ext->flags & SMTPD_CMD_NEED_MAIL) && !s->txn.reverse_path) {
        reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if ((ext->flags & SMTPD_CMD_NO_TRANSACTION) && s->txn.reverse_path) {
        reply(s, 503, "5.5.1", "Error: not allowed in a transaction");
        return;
    }
    const struct smtpd_handler *h = &s->params->handler;
    /* The library's own commands are not the handler's: no arg of its. */
    bool handlers = h->n_commands && ext >= h->commands && ext < h->commands + h->n_commands;
    s->ext = ext;
    s->ext_verb = verb;
    free(s->greeting);
    s->greeting = verb == CMD_HELO || verb == CMD_EHLO ? dup_slice(arg, len) : NULL;
    begin_step(s, STEP_EXT);
    ask(s, ext->fn(handlers ? h->arg : NULL, s, arg, len));
}

/* What --require-tls lets through before TLS (RFC 3207 4). */
static bool allowed_before_tls(enum cmd_verb v, const char *line, size_t len)
{
    /* BDAT too: its chunk must be read before it is refused (no MAIL can
     * have come before TLS), or its octets would be read as commands. */
    size_t n = cmd_verb_len(line, len);
    return v == CMD_EHLO || v == CMD_HELO || v == CMD_NOOP || v == CMD_RSET || v == CMD_QUIT ||
           verb_is("STARTTLS", line, n) || verb_is("BDAT", line, n);
}

static bool sasl_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* One word of base64 that names no command: what a client that did not
 * wait for AUTH's refusal sends next (LOGIN's fields may be short). */
static bool stray_response(const struct smtpd_session *s, const char *line, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!sasl_name_char(line[i]) && line[i] != '+' && line[i] != '/' && line[i] != '=')
            return false;
    const char *arg;
    size_t arg_len;
    return cmd_split(line, len, &arg, &arg_len) == CMD_UNKNOWN && !find_extension(s, line, len);
}

/* How much of a command line the log may show, since none may carry a
 * password there: nothing of a line answering a 3xx (a SASL response, RFC
 * 4954 4) or of a stray one; of an AUTH line its verb, and the mechanism
 * when it is one we know (what else follows AUTH may be base64 too); all of
 * any other. */
static size_t loggable(const struct smtpd_session *s, const char *line, size_t len)
{
    if (s->cont || stray_response(s, line, len))
        return 0;
    if (len < 4 || strncasecmp(line, "AUTH", 4) != 0 ||
        (len > 4 && line[4] != ' ' && line[4] != '\t'))
        return len;
    size_t i = 4;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    size_t m = i;
    while (m < len && sasl_name_char(line[m]))
        m++;
    bool known = m - i == 5 &&
                 (strncasecmp(line + i, "PLAIN", 5) == 0 || strncasecmp(line + i, "LOGIN", 5) == 0);
    return known ? m : 4;
}

/* Log a command line (-d), as much of it as loggable() allows. */
static void log_command(const struct smtpd_session *s, const char *line, size_t len)
{
    if (!debug_on(s))
        return;
    size_t n = loggable(s, line, len);
    if (n == len) {
        log_wire(s, "<", line, len);
    } else if (n == 0) {
        smtpd_session_log(s, SMTPD_LOG_DEBUG, "< [a response of %zu octets, not logged]", len);
    } else {
        char esc[200];
        smtpd_escape(esc, sizeof(esc), line, n);
        smtpd_session_log(s, SMTPD_LOG_DEBUG, "< %s [initial response not logged]", esc);
    }
}

/* MAIL, RCPT and DATA need AUTH first (smtpd_config.auth_required). */
static bool needs_auth(const struct smtpd_session *s, enum cmd_verb v)
{
    return s->params->cfg.auth_required && !s->auth_identity &&
           (v == CMD_MAIL || v == CMD_RCPT || v == CMD_DATA);
}

static void command_line(struct smtpd_session *s, const char *line, size_t len)
{
    const struct smtpd_config *cfg = &s->params->cfg;
    log_command(s, line, len);
    if (s->cont) {
        /* The answer to an extension's 3xx: its, whatever it holds. */
        const struct smtpd_command *ext = s->cont;
        s->cont = NULL;
        run_extension(s, ext, CMD_UNKNOWN, line, len);
        return;
    }
    if (len == 0) {
        reply(s, 500, "5.5.2", "Error: bad syntax");
        return;
    }
    if (!s->seen_command) {
        s->seen_command = true;
        /* A browser (or a page's form) sent to an SMTP port: its headers
         * and body must never be run as commands (Postfix's
         * smtpd_forbidden_commands). Nothing more of this session is read. */
        if (cmd_is_http_request(line, len)) {
            smtpd_session_log(s, SMTPD_LOG_INFO, "HTTP request from %s: closing", s->peer_addr);
            s->end_reason = "an HTTP request";
            close_session(s);
            return;
        }
    }
    if (!utf8_valid(line, len)) {
        reply(s, 500, "5.5.2", "Error: command line is not valid UTF-8");
        return;
    }
    /* No command's syntax has a NUL (RFC 5321 4.1.2), and one would cut
     * the C strings handlers get (a HELO name, a parameter). */
    if (memchr(line, '\0', len)) {
        reply(s, 500, "5.5.2", "Error: NUL in command line");
        return;
    }
    const char *arg;
    size_t arg_len;
    enum cmd_verb v = cmd_split(line, len, &arg, &arg_len);
    if (cfg->lmtp && (v == CMD_HELO || v == CMD_EHLO)) {
        reply(s, 500, "5.5.1", "Error: this is an LMTP server: use LHLO");
        return;
    }
    /* RFC 2033 4.1: LHLO is EHLO by another name (a handler's own LHLO
     * command comes first, as for any verb). */
    if (cfg->lmtp && verb_is("LHLO", line, cmd_verb_len(line, len)))
        v = CMD_EHLO;
    size_t limit = COMMAND_LINE_LIMIT;
    if (verb_is("AUTH", line, cmd_verb_len(line, len)) && s->params->handler.on_auth)
        limit = AUTH_LINE_MAX;
    else if (v == CMD_MAIL && s->extended)
        limit += (cfg->data_size_limit ? SIZE_PARAM_EXTRA : 0) +
                 (cfg->enable_smtputf8 ? SMTPUTF8_PARAM_EXTRA : 0);
    if (len > limit) {
        reply(s, 500, "5.5.2", "Error: line too long");
        return;
    }
    if (cfg->require_tls && !s->tls && !allowed_before_tls(v, line, len)) {
        /* Counted as a bad command: a client that will not STARTTLS
         * cannot go on forever. */
        s->errors++;
        reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
        return;
    }
    if (needs_auth(s, v)) {
        s->errors++; /* as above */
        reply(s, 530, "5.7.0", "Authentication required");
        return;
    }
    const struct smtpd_command *ext = find_extension(s, line, cmd_verb_len(line, len));
    if (ext) {
        run_extension(s, ext, v, arg, arg_len);
        return;
    }
    if (v == CMD_UNKNOWN) {
        reply(s, 500, "5.5.1", "Error: command not recognized");
        return;
    }
    run_builtin(s, v, arg, arg_len);
}

_Static_assert(AUTH_LINE_MAX <= LINE_LIMIT_MAX, "the line reader holds an AUTH line");

/* What the line reader takes: the longest line of any command (each
 * command's own limit is checked in command_line). */
static size_t line_limit(const struct smtpd_session *s)
{
    const struct smtpd_config *cfg = &s->params->cfg;
    if (s->params->handler.on_auth)
        return AUTH_LINE_MAX;
    return COMMAND_LINE_LIMIT + SIZE_PARAM_EXTRA +
           (cfg->enable_smtputf8 ? SMTPUTF8_PARAM_EXTRA : 0);
}

static void shutdown_now(struct smtpd_session *s)
{
    s->end_reason = "shutdown";
    reply(s, 421, "4.3.2", "Service shutting down, try again later");
    close_session(s);
}

static bool idle(const struct smtpd_session *s)
{
    return s->state == ST_COMMAND && s->step == STEP_NONE && !s->txn.reverse_path &&
           !line_reader_pending(&s->lr) && !s->tls_wait;
}

/* The message data could not be stored: 451, and the session ends. */
static void data_nomem(struct smtpd_session *s)
{
    s->state = ST_COMMAND;
    reply_nomem(s);
    txn_clear(s, "a local error");
    close_session(s);
}

/* Message data up to the end of data, or all of @p buf. */
static void feed_data(struct smtpd_session *s, const char *buf, size_t len, size_t *off)
{
    size_t used = 0;
    enum data_result r = data_feed(&s->txn.de, &s->txn.data, buf + *off, len - *off, &used);
    *off += used;
    if (r == DATA_NOMEM)
        data_nomem(s);
    else if (r == DATA_END)
        end_of_data(s);
}

/* ---- BDAT (RFC 3030) ---- */

void channel_bdat(struct smtpd_session *s, uint64_t size, bool last, bool syntax_ok)
{
    struct txn *t = &s->txn;
    struct chunk *c = &s->chunk;
    *c = (struct chunk){.size = size, .left = size, .last = last, .pending = true};
    if (!syntax_ok) {
        c->refusal_code = 501;
        c->refusal_enh = "5.5.4";
        c->refusal_text = "Syntax: BDAT chunk-size [LAST]";
        return;
    }
    const char *why = !s->helo                  ? send_greeting_first(s)
                      : !t->reverse_path        ? "Error: need MAIL command"
                      : t->n_forward_paths == 0 ? "Error: need RCPT command"
                                                : NULL;
    if (why) {
        c->refusal_code = 503;
        c->refusal_enh = "5.5.1";
        c->refusal_text = why;
        return;
    }
    if (!t->chunked) {
        data_engine_init(&t->de, s->params->cfg.data_size_limit,
                         (enum data_bare_policy)s->params->cfg.bare_lf);
        data_engine_chunked(&t->de);
        t->chunked = true;
    }
    /* Known from the count: nothing of a chunk too big is kept. */
    size_t limit = s->params->cfg.data_size_limit;
    if (limit && (size > limit || t->de.raw > limit - size)) {
        c->refusal_code = 552;
        c->refusal_enh = "5.3.4";
        c->refusal_text = "Error: Too much mail data";
    }
}

/* The octets of a chunk (or all of @p buf), then its answer. */
static void feed_chunk(struct smtpd_session *s, const char *buf, size_t len, size_t *off)
{
    struct chunk *c = &s->chunk;
    size_t n = len - *off;
    if (n > c->left)
        n = (size_t)c->left;
    if (!c->refusal_code) {
        size_t used;
        if (data_feed(&s->txn.de, &s->txn.data, buf + *off, n, &used) == DATA_NOMEM) {
            data_nomem(s);
            return;
        }
    }
    *off += n;
    c->left -= n;
    if (c->left == 0) {
        chunk_read(s);
        check_errors(s);
    }
}

/* BDAT's step is over: read its chunk (none: it ends here). */
static void start_chunk(struct smtpd_session *s)
{
    s->chunk.pending = false;
    s->state = ST_BDAT;
    if (s->chunk.left == 0)
        chunk_read(s);
}

/* The whole chunk is in: its refusal, or on_data for the first chunk
 * (DATA's question; the chunk is read first, so the session stays in
 * step whatever the answer), or its acceptance. */
static void chunk_read(struct smtpd_session *s)
{
    struct chunk *c = &s->chunk;
    struct txn *t = &s->txn;
    s->state = ST_COMMAND;
    if (c->refusal_code == 552) {
        char buf[REPLY_LINE_MAX];
        size_t n = reply_into(s, buf, 552, c->refusal_enh, c->refusal_text);
        if (c->last)
            lmtp_repeat(s, buf, n);
        log_message(s, t->de.raw + c->size, buf, n);
        txn_clear(s, NULL);
        return;
    }
    if (c->refusal_code) {
        reply(s, c->refusal_code, c->refusal_enh, c->refusal_text);
        return;
    }
    const struct smtpd_handler *h = &s->params->handler;
    if (h->on_data && !t->data_asked) {
        t->data_asked = true;
        begin_step(s, STEP_DATA_CMD);
        ask(s, h->on_data(h->arg, s));
        return;
    }
    chunk_accepted(s);
}

/* A chunk taken: 250 for one before the last; after the last, the message
 * goes to the handler as after DATA's final dot. */
static void chunk_accepted(struct smtpd_session *s)
{
    struct txn *t = &s->txn;
    if (!s->chunk.last) {
        char text[80];
        snprintf(text, sizeof(text), "OK: %llu octets received", (unsigned long long)s->chunk.size);
        reply(s, 250, "2.0.0", text);
        return;
    }
    if (!data_chunked_end(&t->de, &t->data)) {
        data_nomem(s);
        return;
    }
    end_of_data(s);
}

/* After a command's answer: 421 once the error budget is spent; the end
 * of a drain. A held answer goes first (channel_delay_done). */
static void check_errors(struct smtpd_session *s)
{
    unsigned max_errors = s->params->cfg.max_errors;
    if (s->step == STEP_DELAY)
        return;
    if (max_errors && s->errors >= max_errors && s->state != ST_CLOSED) {
        smtpd_session_log(s, SMTPD_LOG_INFO, "too many errors from %s", s->peer_addr);
        s->end_reason = "too many errors";
        reply(s, 421, "4.7.0", "Error: too many errors, closing connection");
        close_session(s);
    }
    if (s->draining && idle(s))
        shutdown_now(s);
}

/* One command line (or as much of it as @p buf holds). */
static void feed_command(struct smtpd_session *s, const char *buf, size_t len, size_t *off)
{
    size_t used = 0;
    const char *line;
    size_t n;
    enum line_result r = line_next(&s->lr, line_limit(s), buf + *off, len - *off, &used, &line, &n);
    *off += used;
    if (r == LINE_OK)
        command_line(s, line, n);
    else if (r == LINE_TOO_LONG) {
        /* Whatever it was, it was no response to a 3xx we can use. */
        s->cont = NULL;
        s->auth.step = AUTH_IDLE;
        reply(s, 500, "5.5.2", "Error: line too long");
    }
    check_errors(s);
}

size_t channel_feed(struct smtpd_session *s, const char *buf, size_t len)
{
    size_t off = 0;
    s->in_feed = true;
    while (off < len && s->state != ST_CLOSED && s->step == STEP_NONE && !s->tls_wait) {
        if (s->state == ST_DATA)
            feed_data(s, buf, len, &off);
        else if (s->state == ST_BDAT)
            feed_chunk(s, buf, len, &off);
        else
            feed_command(s, buf, len, &off);
        if (s->tr->backlogged && s->tr->backlogged(s->io))
            break;
    }
    s->in_feed = false;
    return off;
}

/* ---- life cycle ---- */

struct smtpd_session *channel_new(const struct chan_params *params, const struct chan_transport *tr,
                                  void *io, const struct chan_addrs *addrs, unsigned long id)
{
    struct smtpd_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->params = params;
    s->tr = tr;
    s->io = io;
    s->id = id;
    snprintf(s->peer_addr, sizeof(s->peer_addr), "%s", addrs->peer_addr);
    s->peer_port = addrs->peer_port;
    snprintf(s->local_addr, sizeof(s->local_addr), "%s", addrs->local_addr);
    s->local_port = addrs->local_port;
    if (addrs->via_addr)
        snprintf(s->via, sizeof(s->via), " via proxy %s:%u", addrs->via_addr, addrs->via_port);
    s->xclient_ok = cidr_match(params->xclient_nets, params->n_xclient_nets, s->peer_addr);
    s->state = ST_COMMAND;
    line_reader_init(&s->lr);
    return s;
}

bool channel_xclient_allowed(const struct smtpd_session *s)
{
    return s->xclient_ok;
}

/* A kept copy of @p v for what XCLIENT gave (XCLIENT_SET and not empty:
 * an empty LOGIN= is nobody), else NULL. */
static char *xclient_value(enum xclient_has has, const char *v)
{
    return has == XCLIENT_SET && v[0] ? strdup(v) : NULL;
}

void channel_xclient(struct smtpd_session *s, const struct xclient_attrs *a)
{
    char was[80];
    snprintf(was, sizeof(was), "%s:%u", s->peer_addr, s->peer_port);
    txn_clear(s, "XCLIENT");
    if (a->addr != XCLIENT_ABSENT)
        snprintf(s->peer_addr, sizeof(s->peer_addr), "%s",
                 a->addr == XCLIENT_SET ? a->addr_value : "unknown");
    if (a->port != XCLIENT_ABSENT)
        s->peer_port = a->port == XCLIENT_SET ? a->port_value : 0;
    /* As a new connection: no greeting, no authentication, unless given. */
    free(s->helo);
    s->helo = xclient_value(a->helo, a->helo_value);
    s->extended = false;
    free(s->auth_identity);
    s->auth_identity = xclient_value(a->login, a->login_value);
    /* XCLIENT is the proxy's: from now on the client speaks (nginx passes
     * its bytes through), and may use XCLIENT only if it may itself. */
    s->xclient_ok = cidr_match(s->params->xclient_nets, s->params->n_xclient_nets, s->peer_addr);
    /* The values are printable ASCII without spaces (xclient_parse). */
    smtpd_session_log(s, SMTPD_LOG_INFO, "XCLIENT from %s: client %s:%u%s%s%s%s%s%s", was,
                      s->peer_addr, s->peer_port, a->name == XCLIENT_SET ? " name=" : "",
                      a->name == XCLIENT_SET ? a->name_value : "", s->helo ? " helo=" : "",
                      s->helo ? s->helo : "", s->auth_identity ? " login=" : "",
                      s->auth_identity ? s->auth_identity : "");
}

void channel_xclient_esmtp(struct smtpd_session *s, bool esmtp)
{
    s->extended = esmtp;
}

bool channel_request_tls(struct smtpd_session *s)
{
    if (!s->tr->start_tls || s->tls || s->step != STEP_EXT)
        return false;
    s->tls_requested = true;
    return true;
}

void channel_tls_started(struct smtpd_session *s, const char *protocol, const char *cipher,
                         int bits)
{
    s->tls = true;
    snprintf(s->tls_protocol, sizeof(s->tls_protocol), "%s", protocol);
    snprintf(s->tls_cipher, sizeof(s->tls_cipher), "%s", cipher);
    s->tls_bits = bits;
    if (s->started)
        log_tls(s);
    if (!s->tls_wait)
        return;
    /* RFC 3207 4.2: nothing learnt before TLS counts (no transaction can be
     * open: STARTTLS is refused inside one). */
    s->tls_wait = false;
    free(s->helo);
    s->helo = NULL;
    s->extended = false;
    s->cont = NULL;
    s->auth.step = AUTH_IDLE;
    free(s->auth_identity);
    s->auth_identity = NULL;
    line_reader_init(&s->lr);
    if (s->draining)
        shutdown_now(s);
}

const struct smtpd_config *channel_config(const struct smtpd_session *s)
{
    return &s->params->cfg;
}

struct auth_exchange *channel_auth_exchange(struct smtpd_session *s)
{
    return &s->auth;
}

enum smtpd_verdict channel_auth_check(struct smtpd_session *s, const char *mechanism,
                                      const char *identity, const char *password)
{
    const struct smtpd_handler *h = &s->params->handler;
    free(s->auth_pending);
    s->auth_pending = strdup(identity);
    if (!s->auth_pending) {
        smtpd_reply(s, 454, "4.7.0", "Error: temporary authentication failure");
        return SMTPD_DONE;
    }
    s->auth_mech = mechanism;
    return h->on_auth(h->arg, s, mechanism, identity, password);
}

void channel_delay_done(struct smtpd_session *s)
{
    if (s->step != STEP_DELAY)
        return;
    s->step = STEP_NONE;
    send_raw(s, s->held, s->held_len);
    free(s->held);
    s->held = NULL;
    check_errors(s);
    if (s->state != ST_CLOSED)
        s->tr->resume(s->io);
}

bool channel_line_pending(const struct smtpd_session *s)
{
    return s->state == ST_COMMAND && line_reader_pending(&s->lr);
}

size_t channel_data_received(const struct smtpd_session *s)
{
    /* A chunk being skipped (refused) counts too. */
    size_t skipping =
        s->state == ST_BDAT && s->chunk.refusal_code ? (size_t)(s->chunk.size - s->chunk.left) : 0;
    return channel_phase(s) == PHASE_DATA ? s->txn.de.raw + skipping : 0;
}

void channel_too_slow(struct smtpd_session *s)
{
    if (s->state == ST_CLOSED)
        return;
    smtpd_session_log(s, SMTPD_LOG_INFO, "data too slow from %s", s->peer_addr);
    s->end_reason = "a data rate too low";
    reply(s, 421, "4.4.2", "Error: data rate too low, closing connection");
    close_session(s);
}

enum chan_phase channel_phase(const struct smtpd_session *s)
{
    if (s->state == ST_CLOSED)
        return PHASE_CLOSED;
    if (s->step != STEP_NONE)
        return PHASE_WAIT;
    if (s->tls_wait)
        return PHASE_TLS;
    /* A BDAT transaction is one data phase, its BDAT lines included: the
     * data rate is that of the whole message, not of one chunk. */
    bool data = s->state == ST_DATA || s->state == ST_BDAT || s->txn.chunked;
    return data ? PHASE_DATA : PHASE_COMMAND;
}

void channel_timeout(struct smtpd_session *s)
{
    if (s->state == ST_CLOSED)
        return;
    smtpd_session_log(s, SMTPD_LOG_INFO, "timeout from %s", s->peer_addr);
    s->end_reason = "a timeout";
    reply(s, 421, "4.4.2", "Error: timeout exceeded");
    close_session(s);
}

void channel_answer_timeout(struct smtpd_session *s)
{
    static const char *const names[] = {[STEP_NONE] = "",
                                        [STEP_CONNECT] = "the connection",
                                        [STEP_HELO] = "HELO/EHLO",
                                        [STEP_MAIL] = "MAIL",
                                        [STEP_RCPT] = "RCPT",
                                        [STEP_DATA_CMD] = "DATA",
                                        [STEP_DATA] = "the message",
                                        [STEP_EXT] = "an extension command",
                                        [STEP_DELAY] = ""};
    if (s->state == ST_CLOSED || s->step == STEP_NONE || s->step == STEP_DELAY || s->answered)
        return;
    smtpd_session_log(s, SMTPD_LOG_WARNING, "the handler gave no answer to %s within %u s",
                      names[s->step], s->params->cfg.answer_timeout);
    /* The step is over: a late smtpd_reply() finds nothing to answer, and
     * on_close() tells the handler (RFC 5321 3.8: closing takes a 421). */
    s->step = STEP_NONE;
    s->end_reason = "a handler timeout";
    reply(s, 421, "4.3.0", "Error: timeout while processing, try again later");
    close_session(s);
}

void channel_reply_origin(struct smtpd_session *s, const char *origin)
{
    s->origin = origin;
}

void channel_shutdown(struct smtpd_session *s, bool now)
{
    if (s->state == ST_CLOSED)
        return;
    s->draining = true;
    if (now || idle(s))
        shutdown_now(s);
}

void channel_lost(struct smtpd_session *s, const char *why)
{
    if (s->state != ST_CLOSED && s->started) {
        smtpd_session_log(s, SMTPD_LOG_INFO, "lost connection from %s (%s)", s->peer_addr, why);
        /* The client closing its side is a disconnect; the rest is lost. */
        s->end_reason = strcmp(why, "eof") == 0 ? "a disconnect" : "a lost connection";
        s->closed_in_data = s->state == ST_DATA || s->state == ST_BDAT;
    }
    s->state = ST_CLOSED;
}

void channel_free(struct smtpd_session *s)
{
    if (!s)
        return;
    const struct smtpd_handler *h = &s->params->handler;
    if (s->txn.reverse_path)
        log_ended(s, s->end_reason ? s->end_reason : "a disconnect");
    if (s->started)
        smtpd_session_log(s, SMTPD_LOG_INFO, "disconnect from %s messages=%lu", s->peer_addr,
                          s->n_messages);
    s->step = STEP_NONE;
    /* The handler hears of the end first, while the session is still whole
     * (of a session it saw begin: an implicit TLS handshake may fail first). */
    if (h->on_close && s->started)
        h->on_close(h->arg, s);
    free_rcpt_answers(s);
    free(s->txn.refusal);
    free(s->txn.data_refusal);
    free(s->txn.reverse_path);
    free_strv(s->txn.mail_options, s->txn.n_mail_options);
    free_strv(s->txn.forward_paths, s->txn.n_forward_paths);
    free(s->txn.data.p);
    free(s->candidate);
    free(s->greeting);
    free(s->answer_lines);
    free(s->builtin_params);
    free(s->helo);
    free(s->auth_pending);
    free(s->auth_identity);
    free(s->held);
    free(s);
}

/* ---- accessors (smtpd.h) ---- */

void smtpd_session_set_data(struct smtpd_session *s, void *data)
{
    s->user_data = data;
}

void *smtpd_session_data(const struct smtpd_session *s)
{
    return s->user_data;
}

const char *smtpd_session_peer_addr(const struct smtpd_session *s)
{
    return s->peer_addr;
}

uint16_t smtpd_session_peer_port(const struct smtpd_session *s)
{
    return s->peer_port;
}

const char *smtpd_session_tls_protocol(const struct smtpd_session *s)
{
    return s->tls ? s->tls_protocol : NULL;
}

const char *smtpd_session_tls_cipher(const struct smtpd_session *s)
{
    return s->tls ? s->tls_cipher : NULL;
}

const char *smtpd_session_auth_identity(const struct smtpd_session *s)
{
    return s->auth_identity;
}

const char *smtpd_session_helo(const struct smtpd_session *s)
{
    return s->helo;
}

const struct smtpd_command *smtpd_session_command(const struct smtpd_session *s)
{
    return s->step == STEP_EXT ? s->ext : NULL;
}

bool smtpd_session_esmtp(const struct smtpd_session *s)
{
    return s->extended;
}

const char *smtpd_session_reverse_path(const struct smtpd_session *s)
{
    return s->txn.reverse_path;
}

const char *const *smtpd_session_forward_paths(const struct smtpd_session *s, size_t *n)
{
    static const char *const none[1] = {NULL};
    *n = s->txn.n_forward_paths;
    return s->txn.forward_paths ? (const char *const *)s->txn.forward_paths : none;
}

enum smtpd_session_state smtpd_session_state(const struct smtpd_session *s)
{
    return s->state == ST_CLOSED                        ? SMTPD_SESSION_CLOSED
           : s->state == ST_DATA || s->state == ST_BDAT ? SMTPD_SESSION_DATA
                                                        : SMTPD_SESSION_COMMAND;
}

const char *smtpd_session_hostname(const struct smtpd_session *s)
{
    return s->params->cfg.hostname;
}

const char *smtpd_session_local_addr(const struct smtpd_session *s)
{
    return s->local_addr;
}

uint16_t smtpd_session_local_port(const struct smtpd_session *s)
{
    return s->local_port;
}
