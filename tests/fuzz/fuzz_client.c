/*
 * fuzz_client: the relay client's protocol machine (client_proto.c) fed
 * arbitrary upstream replies at every step, as a misbehaving or hostile
 * upstream would send them: any code, multi-line replies with changing
 * codes, lines that are not replies, 3xx anywhere, premature replies before
 * the data is out, closes at any point, and the relay's commands (MAIL,
 * RCPT, DATA, RSET, QUIT) in between, SMTP or LMTP, with or without SMTP
 * AUTH credentials.
 *
 * Input: byte 0: bit 0 LMTP, bits 1-2 TLS (STARTTLS never, may, must; or
 * implicit TLS), bit 3 AUTH credentials set, bit 4 they may go without
 * TLS. Then operations, one byte each (low 3 bits
 * choose, the rest is a parameter), some followed by more bytes:
 *   0 connected        1 a command, if the machine is ready (param: which)
 *   2 a reply line from a template: [code index][flags], flags bit 0 '-'
 *     (more lines follow), bit 1 an enhanced code, bit 2 the wrong class
 *     for it, bit 3 EHLO keywords as text
 *   3 a raw line: [length] then that many input bytes
 *   4 the output was written to the kernel (drained)
 *   5 the connection is lost (timeout, close)
 *   6,7 a reply line chosen by the parameter alone (fast paths)
 * After STARTTLS is accepted (CP_START_TLS) the next input byte says how
 * the handshake ends: even, done; odd, failed.
 *
 * Invariants (FUZZ_CHECK aborts):
 * - every step the relay waits for (the open, each command) gets exactly
 *   one final reply (r->last), through CP_REPLY or CP_FAILED, and nothing
 *   comes when nothing is awaited but CP_FAILED for an idle connection;
 * - no reply handed on is 1xx or 3xx; its enhanced code is "" or of its
 *   class; a local reply is 421 or 451;
 * - a 2xx to the DATA step comes only after the data and the final dot were
 *   written and drained (the upstream acknowledged data it had);
 * - LMTP: one reply per accepted recipient after the dot, the last marked;
 * - TLS required: the open succeeds only over TLS, never in plaintext; a
 *   TLS failure is a local 451 4.7.5; STARTTLS comes only when wanted;
 * - AUTH: sent only with credentials, once per connection, over TLS unless
 *   plaintext is allowed; LOGIN's two lines only after AUTH LOGIN; every
 *   line with credentials is shown to the log as a placeholder, and no
 *   other line carries them; with credentials the open succeeds only
 *   after AUTH was answered 235;
 * - a dead machine reads nothing and writes nothing; cp_ready() only when
 *   connected and idle;
 * - commands are single CRLF-terminated lines; data is dot-stuffed after
 *   every CRLF, bare CR and bare LF (no line of it can end the data early)
 *   and ends in CRLF "." CRLF;
 * - no leaks (LeakSanitizer), no UB (UBSan).
 */
#include "client_proto.h"
#include "fuzz.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

enum waiting { W_NONE, W_OPEN, W_MAIL, W_RCPT, W_DATA, W_RSET };

struct harness {
    struct client_proto p;
    bool lmtp;
    enum waiting w;
    bool dead;
    bool unflushed;        /* written since the last drain */
    bool data_written;     /* the DATA step's data and final dot went out */
    size_t data_out_len;   /* bytes of dot-stuffed data written this step */
    char data_tail[8];     /* the last bytes of it */
    bool at_line_start;    /* the next data byte starts a line */
    bool dot_open;         /* a line began with '.': the next must be '.' too */
    size_t data_in_len;    /* what was given to cp_data */
    bool bdat;             /* it goes as one BDAT chunk (CHUNKING offered) */
    bool bdat_line;        /* and its BDAT LAST line went out */
    unsigned rcpts_ok;     /* RCPTs answered 2xx since MAIL */
    unsigned lmtp_replies; /* replies seen after the dot so far */
    int n_outputs;         /* commands written since the last event */
    enum cp_tls_want tls;  /* the policy */
    bool implicit_tls;
    bool creds;          /* AUTH credentials are set */
    bool auth_plaintext; /* and may go without TLS */
    int auth_lines;      /* AUTH command lines written */
    int login_lines;     /* LOGIN's username and password lines written */
    bool auth_login;     /* the AUTH line was AUTH LOGIN */
    int last_code;       /* code of the last reply line that ended a reply */
};

#define USER "fuzz@example.org"
#define PASS "pass word:1"
/* base64 of "\0" USER "\0" PASS, of USER and of PASS */
static const char *const secrets[] = {"AGZ1enpAZXhhbXBsZS5vcmcAcGFzcyB3b3JkOjE=",
                                      "ZnV6ekBleGFtcGxlLm9yZw==", "cGFzcyB3b3JkOjE=", PASS};

static bool has(const char *line, size_t len, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(line + i, s, n) == 0)
            return true;
    return false;
}

/* AUTH lines and LOGIN's: when, how often, and what the log sees. */
static void check_auth_line(struct harness *h, const char *line, size_t len, const char *shown)
{
    bool auth = len >= 5 && memcmp(line, "AUTH ", 5) == 0;
    bool secret = false;
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        secret |= has(line, len, secrets[i]);
        if (shown)
            FUZZ_CHECK(!has(shown, strlen(shown), secrets[i]));
    }
    if (auth) {
        FUZZ_CHECK(h->creds && h->auth_lines == 0);
        FUZZ_CHECK(h->p.tls_active || h->auth_plaintext);
        h->auth_lines++;
        h->auth_login = len == 12 && memcmp(line, "AUTH LOGIN", 10) == 0;
        FUZZ_CHECK(h->auth_login ? !shown : shown && secret);
    } else if (secret) {
        FUZZ_CHECK(h->auth_login && shown && ++h->login_lines <= 2);
    }
    FUZZ_CHECK(!secret || shown);
}

static void out_command(void *arg, const char *line, size_t len, const char *shown)
{
    struct harness *h = arg;
    FUZZ_CHECK(!h->dead);
    FUZZ_CHECK(len >= 3 && line[len - 2] == '\r' && line[len - 1] == '\n');
    FUZZ_CHECK(memchr(line, '\n', len - 1) == NULL);
    FUZZ_CHECK(memchr(line, '\r', len - 2) == NULL);
    check_auth_line(h, line, len, shown);
    if (len == 10 && memcmp(line, "STARTTLS", 8) == 0)
        FUZZ_CHECK(h->tls != CP_TLS_NO && !h->p.tls_active);
    if (len >= 5 && memcmp(line, "BDAT ", 5) == 0) {
        /* Only for a chunked message, once, with its exact size. */
        char want[40];
        int n = snprintf(want, sizeof(want), "BDAT %zu LAST\r\n", h->data_in_len);
        FUZZ_CHECK(h->bdat && !h->bdat_line && (size_t)n == len && memcmp(line, want, len) == 0);
        h->bdat_line = true;
    }
    h->unflushed = true;
    h->n_outputs++;
}

/* Data arrives in pieces; each line start is checked across them. */
static void out_data(void *arg, const char *buf, size_t len)
{
    struct harness *h = arg;
    FUZZ_CHECK(!h->dead);
    FUZZ_CHECK(h->w == W_DATA && !h->data_written);
    h->unflushed = true;
    if (h->bdat) {
        /* The chunk's octets, as they are, after its BDAT line. */
        FUZZ_CHECK(h->bdat_line && h->data_out_len + len <= h->data_in_len);
        h->data_out_len += len;
        h->data_written = h->data_out_len == h->data_in_len;
        return;
    }
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (h->dot_open) {
            /* A line that starts with '.' is either stuffed ("..") or the
             * final ".\r\n", which must be the very end. */
            h->dot_open = false;
            if (c != '.') {
                FUZZ_CHECK(c == '\r' && i + 2 == len && buf[i + 1] == '\n');
                h->data_written = true;
            }
        } else if (h->at_line_start && c == '.') {
            h->dot_open = true;
        }
        h->at_line_start = c == '\n' || c == '\r';
        memmove(h->data_tail, h->data_tail + 1, sizeof(h->data_tail) - 1);
        h->data_tail[sizeof(h->data_tail) - 1] = c;
        h->data_out_len++;
    }
}

static void check_reply(const struct client_reply *r)
{
    FUZZ_CHECK(r->code >= 200 && r->code <= 599);
    FUZZ_CHECK(r->code / 100 != 3);
    FUZZ_CHECK(r->enh[0] == '\0' || r->enh[0] == '0' + r->code / 100);
    FUZZ_CHECK(memchr(r->text, '\0', sizeof(r->text)) != NULL);
    if (r->local)
        FUZZ_CHECK(r->code == 421 || r->code == 451);
}

/* What the machine said about one line (or a loss). */
static void event(struct harness *h, enum cp_event ev, const struct client_reply *r)
{
    if (ev == CP_MORE)
        return;
    check_reply(r);
    if (ev == CP_FAILED) {
        FUZZ_CHECK(r->local && r->last);
        FUZZ_CHECK(h->p.st == CP_DEAD);
        h->dead = true;
        h->w = W_NONE;
        return;
    }
    /* CP_REPLY: somebody waits for it. */
    FUZZ_CHECK(h->w != W_NONE);
    FUZZ_CHECK(!r->local);
    switch (h->w) {
    case W_OPEN:
        FUZZ_CHECK(r->code == 250 && r->last);
        /* Never plaintext where TLS is required. */
        if (h->tls == CP_TLS_MUST)
            FUZZ_CHECK(h->p.tls_active);
        /* Authenticated, and over TLS unless plaintext was allowed. */
        if (h->creds)
            FUZZ_CHECK(h->auth_lines == 1 && h->last_code == 235 &&
                       (h->p.tls_active || h->auth_plaintext) &&
                       h->login_lines == (h->auth_login ? 2 : 0));
        else
            FUZZ_CHECK(h->auth_lines == 0);
        break;
    case W_RCPT:
        FUZZ_CHECK(r->last);
        h->rcpts_ok += r->code / 100 == 2;
        break;
    case W_DATA:
        if (r->code / 100 == 2 && h->bdat) {
            FUZZ_CHECK(h->data_written && !h->unflushed && h->data_out_len == h->data_in_len);
        } else if (r->code / 100 == 2) {
            /* Acknowledged data it had: written whole, and out. */
            FUZZ_CHECK(h->data_written && !h->unflushed);
            FUZZ_CHECK(h->data_out_len >= 3 + h->data_in_len);
            /* An empty message is the final dot alone. */
            if (h->data_in_len == 0)
                FUZZ_CHECK(h->data_out_len == 3);
            else
                FUZZ_CHECK(memcmp(h->data_tail + sizeof(h->data_tail) - 5, "\r\n.\r\n", 5) == 0);
        }
        if (h->data_written && h->lmtp && r->code / 100 == 2 && !r->last)
            FUZZ_CHECK(h->lmtp_replies + 1 < h->rcpts_ok);
        h->lmtp_replies++;
        if (r->last && h->data_written && h->lmtp && h->p.st != CP_DEAD && h->rcpts_ok > 0)
            FUZZ_CHECK(h->lmtp_replies == h->rcpts_ok);
        break;
    default:
        FUZZ_CHECK(r->last);
        break;
    }
    if (h->w == W_MAIL || h->w == W_RSET)
        h->rcpts_ok = 0;
    if (r->last) {
        if (h->w == W_DATA)
            h->rcpts_ok = 0;
        h->w = W_NONE;
    }
    if (h->p.st == CP_DEAD) {
        /* A refusal passed on from a connection out of step. */
        FUZZ_CHECK(r->last);
        h->dead = true;
    }
}

static const int codes[] = {220, 250, 251, 252, 221, 354, 334, 421, 450, 451, 452, 500,
                            501, 503, 550, 552, 554, 555, 200, 599, 235, 535, 454};

static const char *const keywords[] = {"SIZE 1000",
                                       "8BITMIME",
                                       "SMTPUTF8",
                                       "PIPELINING",
                                       "ENHANCEDSTATUSCODES",
                                       "AUTH PLAIN",
                                       "size",
                                       "",
                                       "STARTTLS",
                                       "starttls x",
                                       "AUTH LOGIN",
                                       "AUTH=LOGIN PLAIN",
                                       "auth cram-md5 login",
                                       "AUTH",
                                       "AUTH=",
                                       "AUTHPLAIN",
                                       "CHUNKING"};

static void template_line(struct fuzz_in *in, char *line, size_t *len, int code_idx)
{
    uint8_t flags = fuzz_byte(in);
    int code = codes[(unsigned)code_idx % (sizeof(codes) / sizeof(codes[0]))];
    int n = snprintf(line, 200, "%d%c", code, (flags & 1) ? '-' : ' ');
    if (flags & 2) {
        int cls = (flags & 4) ? (code / 100 % 5) + 1 : code / 100;
        n += snprintf(line + n, 200 - (size_t)n, "%d.%d.%d ", cls, flags >> 5, fuzz_byte(in) % 10);
    }
    if (flags & 8)
        n += snprintf(line + n, 200 - (size_t)n, "%s",
                      keywords[fuzz_byte(in) % (sizeof(keywords) / sizeof(keywords[0]))]);
    else
        n += snprintf(line + n, 200 - (size_t)n, "text");
    *len = (size_t)n;
}

static void command(struct harness *h, uint8_t which)
{
    static const char *const paths[] = {"a@example.com", "", "b@x.org", ".x@y"};
    static const char *const params[] = {"", " SIZE=10", " BODY=8BITMIME", " SMTPUTF8"};
    if (h->dead || h->w != W_NONE || !cp_ready(&h->p))
        return;
    h->n_outputs = 0;
    switch (which % 5) {
    case 0:
        cp_mail(&h->p, paths[which / 5 % 4], params[which / 20 % 4]);
        h->w = W_MAIL;
        break;
    case 1:
        cp_rcpt(&h->p, paths[which / 5 % 4]);
        h->w = W_RCPT;
        break;
    case 2: {
        /* Data with dots at line starts after CRLF, bare LF and bare CR. */
        static const char *const bodies[] = {
            "",        "x",       ".",        ".\r\n",  "a\r\n.\r\nb",
            "a\n.\nb", "a\r.\rb", "..\r\n.x", "a\r\n.", "\r\n.\r\n"};
        const char *b = bodies[which / 5 % 10];
        size_t n = strlen(b);
        char *d = malloc(n ? n : 1);
        FUZZ_CHECK(d != NULL);
        memcpy(d, b, n);
        h->data_written = false;
        h->data_out_len = 0;
        h->data_in_len = n;
        h->at_line_start = true;
        h->dot_open = false;
        h->lmtp_replies = 0;
        memset(h->data_tail, 0, sizeof(h->data_tail));
        bool chunked = which / 5 % 2;
        h->bdat = chunked && (cp_extensions(&h->p) & EXT_CHUNKING);
        h->bdat_line = false;
        h->w = W_DATA; /* with BDAT, the data goes out at once */
        cp_data(&h->p, d, n, chunked);
        break;
    }
    case 3:
        cp_rset(&h->p);
        h->w = W_RSET;
        break;
    case 4:
        cp_quit(&h->p);
        FUZZ_CHECK(h->p.st == CP_DEAD);
        h->dead = true;
        return;
    }
    FUZZ_CHECK(h->n_outputs == 1);
    FUZZ_CHECK(!cp_ready(&h->p));
}

/* STARTTLS was accepted: the handshake ends as the input says. */
static void handshake(struct harness *h, struct fuzz_in *in)
{
    FUZZ_CHECK(h->p.st == CP_TLS && h->w == W_OPEN);
    FUZZ_CHECK(h->tls != CP_TLS_NO && !h->implicit_tls && !h->p.tls_active);
    h->n_outputs = 0;
    if (fuzz_byte(in) % 2 == 0) {
        cp_tls_done(&h->p);
        FUZZ_CHECK(h->p.st == CP_EHLO && h->p.tls_active && h->n_outputs == 1);
        return;
    }
    struct client_reply r;
    cp_tls_failed(&h->p, "handshake failed", &r);
    FUZZ_CHECK(r.code == 451 && strcmp(r.enh, "4.7.5") == 0 && h->n_outputs == 0);
    event(h, CP_FAILED, &r);
}

static void feed(struct harness *h, const char *line, size_t len, struct fuzz_in *in)
{
    struct client_reply r;
    memset(&r, 0x5a, sizeof(r));
    enum cp_state before = h->p.st;
    h->n_outputs = 0;
    if (len >= 3 && (len == 3 || line[3] == ' ') && isdigit((unsigned char)line[0]) &&
        isdigit((unsigned char)line[1]) && isdigit((unsigned char)line[2]))
        h->last_code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    enum cp_event ev = cp_line(&h->p, line, len, !h->unflushed, &r);
    if (before == CP_CONNECTING || before == CP_DEAD) {
        FUZZ_CHECK(ev == CP_MORE && h->n_outputs == 0 && h->p.st == before);
        return;
    }
    if (ev == CP_START_TLS) {
        handshake(h, in);
        return;
    }
    event(h, ev, &r);
    FUZZ_CHECK(h->n_outputs <= 1);
    if (h->p.st == CP_READY)
        FUZZ_CHECK(h->w == W_NONE || ev == CP_MORE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct harness h;
    memset(&h, 0, sizeof(h));
    uint8_t first = fuzz_byte(&in);
    h.lmtp = first & 1;
    static const enum cp_tls_want wants[] = {CP_TLS_NO, CP_TLS_MAY, CP_TLS_MUST, CP_TLS_MUST};
    h.implicit_tls = ((first >> 1) & 3) == 3;
    h.tls = h.implicit_tls ? CP_TLS_NO : wants[(first >> 1) & 3];
    cp_init(&h.p, h.lmtp, "relay.example", (struct cp_out){out_command, out_data, &h});
    cp_set_tls(&h.p, wants[(first >> 1) & 3], h.implicit_tls);
    h.creds = first & 8;
    h.auth_plaintext = first & 16;
    if (h.creds)
        cp_set_auth(&h.p, USER, PASS, h.auth_plaintext);
    h.w = W_OPEN;
    while (in.n > 0) {
        uint8_t op = fuzz_byte(&in);
        char line[300];
        size_t len = 0;
        switch (op & 7) {
        case 0:
            cp_connected(&h.p);
            break;
        case 1:
            command(&h, (uint8_t)(op >> 3));
            break;
        case 2:
            template_line(&in, line, &len, fuzz_byte(&in));
            feed(&h, line, len, &in);
            break;
        case 3:
            len = fuzz_byte(&in) % sizeof(line);
            if (len > in.n)
                len = in.n;
            memcpy(line, in.p, len);
            in.p += len;
            in.n -= len;
            feed(&h, line, len, &in);
            break;
        case 4:
            h.unflushed = false;
            break;
        case 5: {
            struct client_reply r;
            bool waited = h.w != W_NONE && !h.dead;
            cp_lost(&h.p, "connection closed", &r);
            check_reply(&r);
            FUZZ_CHECK(r.local && h.p.st == CP_DEAD);
            if (waited && h.w == W_OPEN)
                FUZZ_CHECK(r.code == 451);
            h.dead = true;
            h.w = W_NONE;
            break;
        }
        default:
            template_line(&in, line, &len, op >> 3);
            feed(&h, line, len, &in);
            break;
        }
        FUZZ_CHECK(!cp_ready(&h.p) || (h.w == W_NONE && !h.dead));
    }
    cp_free(&h.p);
    return 0;
}
