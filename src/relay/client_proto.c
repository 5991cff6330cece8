/* The relay client's protocol machine; see client_proto.h. */
#include "client_proto.h"
#include "smtpd.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TEXT_UNAVAILABLE "Error: upstream server unavailable, try again later"
#define TEXT_LOST "Error: upstream connection lost, try again later"
#define TEXT_PROTOCOL "Error: upstream protocol error, try again later"
#define TEXT_TLS "Error: TLS to the upstream server failed, try again later"
#define TEXT_AUTH "Error: cannot authenticate to the upstream server, try again later"

/* The longest credential cp_set_auth() takes (smtpd_proxy_new() checks). */
#define AUTH_MAX 255

void cp_local_reply(struct client_reply *r, int code, const char *enh, const char *text)
{
    memset(r, 0, sizeof(*r));
    r->code = code;
    r->local = true;
    r->last = true;
    snprintf(r->enh, sizeof(r->enh), "%s", enh);
    snprintf(r->text, sizeof(r->text), "%s", text);
}

void cp_init(struct client_proto *p, bool lmtp, const char *helo_name, struct cp_out out)
{
    memset(p, 0, sizeof(*p));
    p->st = CP_CONNECTING;
    p->lmtp = lmtp;
    p->helo_name = helo_name;
    p->out = out;
}

void cp_set_tls(struct client_proto *p, enum cp_tls_want want, bool implicit)
{
    p->tls_want = implicit ? CP_TLS_NO : want;
    p->tls_active = implicit;
}

void cp_set_auth(struct client_proto *p, const char *user, const char *pass, bool plaintext)
{
    p->auth_user = user;
    p->auth_pass = pass;
    p->auth_plaintext = plaintext;
}

void cp_connected(struct client_proto *p)
{
    if (p->st == CP_CONNECTING)
        p->st = CP_GREETING;
}

static void send_command(struct client_proto *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void send_command(struct client_proto *p, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 2)
        n = (int)sizeof(line) - 3;
    memcpy(line + n, "\r\n", 2);
    p->out.command(p->out.arg, line, (size_t)n + 2, NULL);
}

/* A line that carries credentials: @p prefix, then @p secret (@p n bytes)
 * in base64 (OpenSSL's, RFC 4648). Logs show @p shown instead; the
 * buffers are wiped once the line is queued. */
static void send_secret(struct client_proto *p, const char *prefix, const unsigned char *secret,
                        size_t n, const char *shown)
{
    char line[16 + 4 * ((2 * AUTH_MAX + 2 + 2) / 3) + 3];
    size_t o = strlen(prefix);
    if (n > 2 * AUTH_MAX + 2 || o > 16)
        return; /* cannot happen: cp_set_auth()'s callers check */
    memcpy(line, prefix, o);
    o += (size_t)EVP_EncodeBlock((unsigned char *)line + o, secret, (int)n);
    memcpy(line + o, "\r\n", 2);
    p->out.command(p->out.arg, line, o + 2, shown);
    OPENSSL_cleanse(line, sizeof(line));
}

static void drop_data(struct client_proto *p)
{
    free(p->data);
    p->data = NULL;
    p->data_len = 0;
}

/* Dot-stuff (RFC 5321 4.5.2) and end with CRLF "." CRLF. A dot after a
 * bare LF or a bare CR is stuffed too, so that a downstream server that
 * takes either as a line end cannot be made to see an end of data (SMTP
 * smuggling). */
static void send_data(struct client_proto *p)
{
    const char *s = p->data;
    size_t n = p->data_len;
    bool line_start = true;
    while (n > 0) {
        if (line_start && *s == '.')
            p->out.data(p->out.arg, ".", 1);
        /* The next CRLF, bare CR or bare LF ends this piece. */
        const char *lf = memchr(s, '\n', n);
        size_t upto = lf ? (size_t)(lf - s) : n;
        const char *cr = memchr(s, '\r', upto);
        size_t len;
        if (cr && (size_t)(cr - s) + 1 < n && cr[1] == '\n')
            len = (size_t)(cr - s) + 2;
        else if (cr)
            len = (size_t)(cr - s) + 1;
        else
            len = lf ? upto + 1 : n;
        line_start = s[len - 1] == '\n' || s[len - 1] == '\r';
        p->out.data(p->out.arg, s, len);
        s += len;
        n -= len;
    }
    if (p->data_len > 0 &&
        !(p->data_len >= 2 && p->data[p->data_len - 2] == '\r' && p->data[p->data_len - 1] == '\n'))
        p->out.data(p->out.arg, "\r\n", 2);
    p->out.data(p->out.arg, ".\r\n", 3);
    drop_data(p);
}

const char *cp_step_name(enum cp_state st, bool lmtp)
{
    switch (st) {
    case CP_GREETING:
        return "the greeting";
    case CP_EHLO:
        return lmtp ? "LHLO" : "EHLO";
    case CP_HELO:
        return "HELO";
    case CP_MAIL:
        return "MAIL";
    case CP_RCPT:
        return "RCPT";
    case CP_DATA_CMD:
        return "DATA";
    case CP_DATA_END:
        return "the end of data";
    case CP_CONNECTING:
        return "the connection";
    case CP_RSET:
        return "RSET";
    case CP_STARTTLS:
        return "STARTTLS";
    case CP_TLS:
        return "the TLS handshake";
    case CP_AUTH_PLAIN:
        return "AUTH PLAIN";
    case CP_AUTH_LOGIN:
        return "AUTH LOGIN";
    case CP_AUTH_USER:
        return "AUTH LOGIN's username";
    case CP_AUTH_PASS:
        return "AUTH LOGIN's password";
    default:
        return "nothing (idle)";
    }
}

/* p->why: @p what, then the reply the upstream sent, escaped. */
static void set_why(struct client_proto *p, const char *what, const struct client_reply *up)
{
    char text[300];
    smtpd_escape(text, sizeof(text), up->text, strlen(up->text));
    if (up->code == 0) /* not a reply at all: the line as it came */
        snprintf(p->why, sizeof(p->why), "%s: %s", what, text);
    else
        snprintf(p->why, sizeof(p->why), "%s: %d%s%s %s", what, up->code, up->enh[0] ? " " : "",
                 up->enh, text);
}

/* The upstream cannot be used: before it was ready, it is unavailable
 * (451 4.4.1); later the transaction with it is lost (421 4.4.2). */
static void lost_reply(const struct client_proto *p, enum cp_state was, struct client_reply *r)
{
    if (was < CP_READY)
        cp_local_reply(r, 451, "4.4.1", TEXT_UNAVAILABLE);
    else
        cp_local_reply(r, 421, "4.4.2", TEXT_LOST);
    (void)p;
}

static enum cp_event die(struct client_proto *p, struct client_reply *r)
{
    lost_reply(p, p->st, r);
    p->st = CP_DEAD;
    drop_data(p);
    return CP_FAILED;
}

static bool in_auth(enum cp_state st)
{
    return st >= CP_AUTH_PLAIN && st <= CP_AUTH_PASS;
}

/* A reply the step does not allow. Nothing the upstream said can be
 * trusted, so the connection goes and the step gets a local 4xx: 421 at
 * RCPT (the recipients accepted so far are gone with the connection), 451
 * where a new connection can take the next command. */
static enum cp_event protocol_error(struct client_proto *p, const struct client_reply *up,
                                    const char *what, struct client_reply *r)
{
    char w[120];
    snprintf(w, sizeof(w), "protocol error: %s in reply to %s", what, cp_step_name(p->st, p->lmtp));
    set_why(p, w, up);
    if (p->st < CP_READY && !in_auth(p->st))
        cp_local_reply(r, 451, "4.4.1", TEXT_UNAVAILABLE);
    else if (p->st == CP_RCPT)
        cp_local_reply(r, 421, "4.4.0", TEXT_PROTOCOL);
    else
        cp_local_reply(r, 451, "4.4.0", TEXT_PROTOCOL);
    p->st = CP_DEAD;
    drop_data(p);
    return CP_FAILED;
}

static enum cp_event refused_open(struct client_proto *p, const char *what,
                                  const struct client_reply *up, struct client_reply *r)
{
    set_why(p, what, up);
    return die(p, r);
}

/* The SASL mechanisms after "AUTH " or the old "AUTH=" (RFC 4954 3;
 * Outlook and old Postfix announce the latter). */
static void parse_auth_mechs(struct client_proto *p, const char *t, size_t n)
{
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = {{"PLAIN", AUTH_MECH_PLAIN}, {"LOGIN", AUTH_MECH_LOGIN}};
    size_t i = 0;
    while (i < n) {
        while (i < n && t[i] == ' ')
            i++;
        size_t len = 0;
        while (i + len < n && t[i + len] != ' ')
            len++;
        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
            if (strlen(known[k].name) == len && strncasecmp(t + i, known[k].name, len) == 0)
                p->auth_mechs |= known[k].bit;
        i += len;
    }
}

static void parse_ehlo_keyword(struct client_proto *p, const char *t, size_t n)
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
        {"STARTTLS", EXT_STARTTLS},
        {"CHUNKING", EXT_CHUNKING},
    };
    if (n > 4 && strncasecmp(t, "AUTH", 4) == 0 && (t[4] == ' ' || t[4] == '=')) {
        parse_auth_mechs(p, t + 5, n - 5);
        return;
    }
    size_t kl = 0;
    while (kl < n && t[kl] != ' ')
        kl++;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].kw) == kl && strncasecmp(t, known[i].kw, kl) == 0)
            p->ext |= known[i].bit;
}

/* TLS is required and cannot be had: 451 4.7.5 (RFC 3463 X.7.5,
 * cryptographic failure), never plaintext. */
static enum cp_event tls_refused(struct client_proto *p, const char *what,
                                 const struct client_reply *up, struct client_reply *r)
{
    if (up)
        set_why(p, what, up);
    else
        snprintf(p->why, sizeof(p->why), "%s", what);
    cp_local_reply(r, 451, "4.7.5", TEXT_TLS);
    p->st = CP_DEAD;
    drop_data(p);
    return CP_FAILED;
}

/* The connection is ready for MAIL: the open's reply is a 250 (the last
 * reply, 250 to EHLO or 235 to AUTH, or our own), with @p text. */
static enum cp_event ready(struct client_proto *p, struct client_reply *r, const char *text)
{
    cp_local_reply(r, 250, "", text);
    r->local = false;
    p->st = CP_READY;
    return CP_REPLY;
}

/* AUTH cannot be done or was refused (p->why says why): 451 4.7.0 (RFC
 * 3463 X.7.0, security or policy status), so the client retries later
 * while the configuration, ours or the upstream's, is put right. */
static enum cp_event auth_failed(struct client_proto *p, bool config_error, struct client_reply *r)
{
    p->config_error = config_error;
    cp_local_reply(r, 451, "4.7.0", TEXT_AUTH);
    p->st = CP_DEAD;
    drop_data(p);
    return CP_FAILED;
}

/* AUTH PLAIN's initial response (RFC 4616 2): no authorization identity,
 * NUL, the username, NUL, the password. */
static void send_auth_plain(struct client_proto *p)
{
    unsigned char msg[2 * AUTH_MAX + 2];
    size_t ul = strnlen(p->auth_user, AUTH_MAX), pl = strnlen(p->auth_pass, AUTH_MAX);
    msg[0] = '\0';
    memcpy(msg + 1, p->auth_user, ul);
    msg[1 + ul] = '\0';
    memcpy(msg + 2 + ul, p->auth_pass, pl);
    send_secret(p, "AUTH PLAIN ", msg, 2 + ul + pl, "AUTH PLAIN [credentials not logged]");
    OPENSSL_cleanse(msg, sizeof(msg));
    p->st = CP_AUTH_PLAIN;
}

/* After the last EHLO: authenticate if credentials are set, with PLAIN,
 * else LOGIN; never without TLS unless that was allowed. */
static enum cp_event authenticate(struct client_proto *p, struct client_reply *r)
{
    if (!p->auth_user)
        return ready(p, r, "ready");
    if (!p->tls_active && !p->auth_plaintext) {
        size_t o = strlen(p->why);
        snprintf(p->why + o, sizeof(p->why) - o,
                 "%sno TLS, so no AUTH: the credentials are never "
                 "sent in plaintext unless TLS is off by configuration",
                 o ? "; " : "");
        return auth_failed(p, true, r);
    }
    if (p->auth_mechs & AUTH_MECH_PLAIN) {
        send_auth_plain(p);
        return CP_MORE;
    }
    if (p->auth_mechs & AUTH_MECH_LOGIN) {
        send_command(p, "AUTH LOGIN");
        p->st = CP_AUTH_LOGIN;
        return CP_MORE;
    }
    snprintf(p->why, sizeof(p->why), "the upstream does not offer AUTH PLAIN or LOGIN");
    return auth_failed(p, true, r);
}

/* A whole reply to an AUTH step: 334 asks LOGIN's next line, 235 ends the
 * exchange; a 4xx/5xx refuses it. A 334 where no line is due, a 235 before
 * the password, or anything else is out of protocol. */
static enum cp_event on_auth_reply(struct client_proto *p, struct client_reply *r)
{
    int cls = r->code / 100;
    bool done_step = p->st == CP_AUTH_PLAIN || p->st == CP_AUTH_PASS;
    if (cls == 4 || cls == 5) {
        set_why(p, cls == 5 ? "AUTH refused" : "AUTH failed for now", r);
        return auth_failed(p, cls == 5, r);
    }
    if (done_step && r->code == 235)
        return ready(p, r, "ready (authenticated)");
    if (done_step || r->code != 334)
        return protocol_error(
            p, r,
            r->code == 334 ? "334 (no SASL challenge is due)" : "a reply other than 235 or 334", r);
    if (p->st == CP_AUTH_LOGIN) {
        send_secret(p, "", (const unsigned char *)p->auth_user, strnlen(p->auth_user, AUTH_MAX),
                    "[AUTH LOGIN username not logged]");
        p->st = CP_AUTH_USER;
    } else {
        send_secret(p, "", (const unsigned char *)p->auth_pass, strnlen(p->auth_pass, AUTH_MAX),
                    "[AUTH LOGIN password not logged]");
        p->st = CP_AUTH_PASS;
    }
    return CP_MORE;
}

/* EHLO or HELO was accepted: STARTTLS first if the policy wants it, then
 * AUTH if configured. */
static enum cp_event greeted(struct client_proto *p, struct client_reply *r)
{
    if (!p->tls_active && p->tls_want != CP_TLS_NO) {
        if (p->ext & EXT_STARTTLS) {
            send_command(p, "STARTTLS");
            p->st = CP_STARTTLS;
            return CP_MORE;
        }
        if (p->tls_want == CP_TLS_MUST)
            return tls_refused(p, "TLS required, but the upstream does not offer STARTTLS", NULL,
                               r);
    }
    return authenticate(p, r);
}

/* A whole reply @p r arrived in state p->st (RFC 5321 4.3.2 says which
 * codes each command may get). */
static enum cp_event on_reply(struct client_proto *p, bool drained, struct client_reply *r)
{
    int cls = r->code / 100;
    switch (p->st) {
    case CP_GREETING:
        if (r->code != 220)
            return refused_open(p, "greeting refused", r, r);
        p->ext = p->auth_mechs = 0;
        send_command(p, "%s %s", p->lmtp ? "LHLO" : "EHLO", p->helo_name);
        p->st = CP_EHLO;
        return CP_MORE;
    case CP_EHLO:
        if (r->code == 250)
            return greeted(p, r);
        if (p->lmtp || cls != 5)
            return refused_open(p, p->lmtp ? "LHLO refused" : "EHLO refused", r, r);
        p->ext = p->auth_mechs = 0;
        send_command(p, "HELO %s", p->helo_name);
        p->st = CP_HELO;
        return CP_MORE;
    case CP_HELO:
        if (r->code != 250)
            return refused_open(p, "HELO refused", r, r);
        return greeted(p, r);
    case CP_STARTTLS:
        if (r->code == 220) {
            p->st = CP_TLS;
            return CP_START_TLS;
        }
        if (p->tls_want == CP_TLS_MUST || cls == 3)
            return tls_refused(p, "STARTTLS refused", r, r);
        /* "may": plaintext, as the EHLO before left it (the log says so). */
        set_why(p, "STARTTLS refused, going on without TLS", r);
        return authenticate(p, r);
    case CP_TLS:
        return CP_MORE;
    case CP_AUTH_PLAIN:
    case CP_AUTH_LOGIN:
    case CP_AUTH_USER:
    case CP_AUTH_PASS:
        return on_auth_reply(p, r);
    case CP_MAIL:
    case CP_RCPT:
    case CP_RSET:
        if (cls == 3)
            return protocol_error(p, r, "3xx", r);
        if (p->st == CP_RCPT)
            p->rcpts_ok += cls == 2;
        else
            p->rcpts_ok = 0;
        p->st = CP_READY;
        return CP_REPLY;
    case CP_DATA_CMD:
        if (r->code == 354) {
            send_data(p);
            p->lmtp_left = p->lmtp ? p->rcpts_ok : 1;
            p->st = CP_DATA_END;
            return CP_MORE;
        }
        if (cls == 2 || cls == 3)
            return protocol_error(p, r, cls == 2 ? "2xx (the data was never sent)" : "3xx", r);
        drop_data(p);
        p->rcpts_ok = 0;
        p->st = CP_READY;
        return CP_REPLY;
    case CP_DATA_END:
        if (cls == 3)
            return protocol_error(p, r, "3xx", r);
        if (!drained && cls == 2)
            return protocol_error(p, r, "2xx before the data was sent", r);
        if (!drained) {
            /* A refusal in mid-data is passed on, but what follows it on
             * this connection is out of step: no more of it. */
            set_why(p, "reply before the end of data was sent", r);
            r->last = true;
            p->st = CP_DEAD;
            return CP_REPLY;
        }
        r->last = p->lmtp_left <= 1;
        if (r->last) {
            p->lmtp_left = 0;
            p->rcpts_ok = 0;
            p->st = CP_READY;
        } else {
            p->lmtp_left--;
        }
        return CP_REPLY;
    case CP_READY:
        /* Unasked: typically 421 before the upstream closes an idle
         * session (RFC 5321 3.8). */
        set_why(p, r->code == 421 ? "closing" : "unexpected reply while idle", r);
        return die(p, r);
    case CP_CONNECTING:
    case CP_DEAD:
        break;
    }
    return CP_MORE;
}

enum cp_event cp_line(struct client_proto *p, const char *line, size_t len, bool output_drained,
                      struct client_reply *r)
{
    if (p->st == CP_CONNECTING || p->st == CP_DEAD)
        return CP_MORE;
    int code;
    bool more;
    const char *text;
    size_t tlen;
    if (!reply_parse_line(line, len, &code, &more, &text, &tlen) ||
        (p->in_reply && code != p->cur.code)) {
        struct client_reply bad;
        cp_local_reply(&bad, 0, "", "");
        smtpd_escape(bad.text, sizeof(bad.text), line, len);
        p->in_reply = false;
        return protocol_error(p, &bad, "not a reply line (or a changed code)", r);
    }
    if (!p->in_reply) {
        memset(&p->cur, 0, sizeof(p->cur));
        p->cur.code = code;
        p->cur.last = true;
        size_t skip = reply_split_enhanced(text, tlen, code, p->cur.enh);
        text += skip;
        tlen -= skip;
        snprintf(p->cur.text, sizeof(p->cur.text), "%.*s", (int)tlen, text);
        p->in_reply = true;
    } else if (p->st == CP_EHLO) {
        parse_ehlo_keyword(p, text, tlen);
    }
    if (more)
        return CP_MORE;
    p->in_reply = false;
    *r = p->cur;
    return on_reply(p, output_drained, r);
}

void cp_lost(struct client_proto *p, const char *why, struct client_reply *r)
{
    lost_reply(p, p->st, r);
    if (p->st != CP_DEAD)
        snprintf(p->why, sizeof(p->why), "%s", why);
    p->st = CP_DEAD;
    drop_data(p);
}

void cp_tls_done(struct client_proto *p)
{
    if (p->st != CP_TLS)
        return;
    p->tls_active = true;
    p->ext = p->auth_mechs = 0; /* what it offers in TLS may differ (RFC 3207 4.2) */
    send_command(p, "%s %s", p->lmtp ? "LHLO" : "EHLO", p->helo_name);
    p->st = CP_EHLO;
}

void cp_tls_failed(struct client_proto *p, const char *why, struct client_reply *r)
{
    tls_refused(p, why, NULL, r);
}

void cp_mail(struct client_proto *p, const char *reverse_path, const char *params)
{
    p->rcpts_ok = 0;
    send_command(p, "MAIL FROM:<%s>%s", reverse_path, params);
    p->st = CP_MAIL;
}

void cp_rcpt(struct client_proto *p, const char *forward_path)
{
    send_command(p, "RCPT TO:<%s>", forward_path);
    p->st = CP_RCPT;
}

void cp_data(struct client_proto *p, char *data, size_t len, bool chunked)
{
    drop_data(p);
    if (chunked && (p->ext & EXT_CHUNKING)) {
        /* One chunk: the message is whole already, so nothing is gained
         * by more, and the reply to it is the final dot's. */
        send_command(p, "BDAT %zu LAST", len);
        p->out.data(p->out.arg, data, len);
        free(data);
        p->lmtp_left = p->lmtp ? p->rcpts_ok : 1;
        p->st = CP_DATA_END;
        return;
    }
    p->data = data;
    p->data_len = len;
    send_command(p, "DATA");
    p->st = CP_DATA_CMD;
}

void cp_rset(struct client_proto *p)
{
    send_command(p, "RSET");
    p->st = CP_RSET;
}

void cp_quit(struct client_proto *p)
{
    if (p->st == CP_READY)
        send_command(p, "QUIT");
    p->st = CP_DEAD;
}

bool cp_ready(const struct client_proto *p)
{
    return p->st == CP_READY;
}

unsigned cp_extensions(const struct client_proto *p)
{
    return p->ext;
}

void cp_free(struct client_proto *p)
{
    drop_data(p);
}
