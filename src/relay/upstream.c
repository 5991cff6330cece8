/* Upstreams, their connection pools, and legs; see upstream.h. */
#include "upstream.h"
#include "hostport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* An idle pooled connection. */
struct pooled {
    struct upstream *u;
    struct smtp_client *c;
    struct pooled *next;
};

struct upstream {
    struct upstream_config cfg;
    char *hostport;
    char *label; /* "smarthost host:port" or "LMTP host:port", for logs */
    char host[256];
    char port[8];
    struct client_config ccfg;
    struct client_config ccfg_plain; /* the same without TLS ("may" after a TLS failure) */
    struct pooled *idle;
    unsigned n_idle;
    /* Connections on their way back to the pool (RSET in flight). */
    struct pooled *returning;
    bool closing; /* upstream_shutdown(): pool nothing more */
};

struct upstream *upstream_new(const struct upstream_config *cfg, enum smtpd_err *err)
{
    struct upstream *u = calloc(1, sizeof(*u));
    if (!u) {
        *err = SMTPD_ERR_NOMEM;
        return NULL;
    }
    /* An upstream needs a host and a real port. */
    if (!cfg->hostport ||
        !hostport_split(cfg->hostport, u->host, sizeof(u->host), u->port, sizeof(u->port)) ||
        u->host[0] == '\0' || atoi(u->port) == 0) {
        free(u);
        *err = SMTPD_ERR_ADDRESS;
        return NULL;
    }
    u->cfg = *cfg;
    u->hostport = strdup(cfg->hostport);
    size_t ln = strlen(cfg->hostport) + 16;
    u->label = malloc(ln);
    if (u->label)
        snprintf(u->label, ln, "%s %s", cfg->lmtp ? "LMTP" : "smarthost", cfg->hostport);
    if (!u->hostport || !u->label) {
        free(u->hostport);
        free(u->label);
        free(u);
        *err = SMTPD_ERR_NOMEM;
        return NULL;
    }
    u->cfg.hostport = u->hostport;
    u->ccfg = (struct client_config){
        .base = cfg->base,
        .dns = cfg->dns,
        .host = u->host,
        .port = u->port,
        .helo_name = cfg->helo_name,
        .lmtp = cfg->lmtp,
        .timeout = cfg->timeout,
        .tls = cfg->tls,
        .tls_ctx = cfg->tls_ctx,
        .smtps = cfg->smtps,
        .auth_username = cfg->auth_username,
        .auth_password = cfg->auth_password,
        /* Credentials go without TLS only when TLS is off on purpose. */
        .auth_plaintext = cfg->tls == SMTPD_RELAY_TLS_NONE,
        .log = cfg->log,
        .log_arg = cfg->log_arg,
        .log_level = cfg->log_level,
    };
    u->ccfg_plain = u->ccfg;
    u->ccfg_plain.tls = SMTPD_RELAY_TLS_NONE;
    u->ccfg_plain.tls_ctx = NULL;
    u->ccfg_plain.auth_plaintext = false; /* "may" lost its TLS: no AUTH on it */
    return u;
}

const char *upstream_name(const struct upstream *u)
{
    return u->hostport;
}

const char *upstream_label(const struct upstream *u)
{
    return u->label;
}

static void unlink_pooled(struct pooled **head, struct pooled *p)
{
    for (struct pooled **pp = head; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            return;
        }
    }
}

static void pool_lost(void *arg, const struct client_reply *r)
{
    struct pooled *p = arg;
    (void)r;
    unlink_pooled(&p->u->idle, p);
    p->u->n_idle--;
    client_close(p->c);
    free(p);
}

/* Keep an idle, ready connection for the next transaction, or close it.
 * A connection that authenticated stays so across RSET and the next MAIL
 * (RFC 4954 4: AUTH holds for the session); an upstream has one set of
 * credentials, so whoever takes it from the pool wants that identity. */
static void pool_put(struct upstream *u, struct smtp_client *c)
{
    struct pooled *p = NULL;
    if (client_ready(c) && u->n_idle < u->cfg.pool_size && !u->closing)
        p = calloc(1, sizeof(*p));
    if (!p) {
        client_close(c);
        return;
    }
    p->u = u;
    p->c = c;
    p->next = u->idle;
    u->idle = p;
    u->n_idle++;
    client_watch_idle(c, pool_lost, p, u->cfg.idle_timeout);
}

static struct smtp_client *pool_take(struct upstream *u)
{
    struct pooled *p = u->idle;
    if (!p)
        return NULL;
    u->idle = p->next;
    u->n_idle--;
    struct smtp_client *c = p->c;
    free(p);
    client_watch_idle(c, NULL, NULL, 0);
    return c;
}

static void returned(void *arg, const struct client_reply *r)
{
    struct pooled *p = arg;
    struct upstream *u = p->u;
    unlink_pooled(&u->returning, p);
    if (r->code == 250)
        pool_put(u, p->c);
    else
        client_close(p->c);
    free(p);
}

/* RSET, then back to the pool. */
static void pool_return_after_rset(struct upstream *u, struct smtp_client *c)
{
    struct pooled *p = calloc(1, sizeof(*p));
    if (!p) {
        client_close(c);
        return;
    }
    p->u = u;
    p->c = c;
    p->next = u->returning;
    u->returning = p;
    client_rset(c, returned, p);
}

static void close_idle(struct upstream *u)
{
    while (u->idle) {
        struct pooled *p = u->idle;
        u->idle = p->next;
        client_close(p->c);
        free(p);
    }
    u->n_idle = 0;
}

void upstream_shutdown(struct upstream *u)
{
    u->closing = true;
    close_idle(u);
}

void upstream_free(struct upstream *u)
{
    if (!u)
        return;
    close_idle(u);
    while (u->returning) {
        struct pooled *p = u->returning;
        u->returning = p->next;
        client_close(p->c);
        free(p);
    }
    free(u->hostport);
    free(u->label);
    free(u);
}

/* ---- legs ---- */

void leg_init(struct leg *l, struct upstream *u, leg_done_fn done, void *arg)
{
    memset(l, 0, sizeof(*l));
    l->u = u;
    l->done = done;
    l->arg = arg;
}

static void step_done(struct leg *l, const struct client_reply *r)
{
    if (r->last)
        l->waiting = false;
    l->done(l->arg, l, r);
}

bool leg_open(const struct leg *l)
{
    return l->in_txn;
}

static void refuse(struct leg *l, int code, const char *enh, const char *text)
{
    struct client_reply r = {.code = code, .last = true};
    snprintf(r.enh, sizeof(r.enh), "%s", enh);
    snprintf(r.text, sizeof(r.text), "%s", text);
    step_done(l, &r);
}

static void open_and_mail(struct leg *l);

static bool has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return true;
    return false;
}

static void mail_replied(void *arg, const struct client_reply *r)
{
    struct leg *l = arg;
    if (r->code == 421 && !l->retried && !r->timed_out) {
        /* The connection died or is closing (RFC 5321 3.8): a pooled one
         * the upstream dropped as we reused it, or a session it timed out.
         * Nothing is committed yet: once more on a fresh connection. */
        l->retried = true;
        client_close(l->c);
        l->c = NULL;
        open_and_mail(l);
        return;
    }
    l->in_txn = r->code < 300;
    l->n_rcpt = 0;
    step_done(l, r);
}

/* The connection is ready: check what the message needs, send MAIL. */
static void send_mail(struct leg *l)
{
    unsigned ext = client_extensions(l->c);
    if (l->need_smtputf8 && !(ext & EXT_SMTPUTF8)) {
        refuse(l, 553, "5.6.7", "Error: the upstream server does not support SMTPUTF8");
        return;
    }
    if (l->need_8bitmime && !(ext & EXT_8BITMIME)) {
        refuse(l, 554, "5.6.3", "Error: the upstream server does not support 8BITMIME");
        return;
    }
    char params[sizeof(l->params)];
    size_t o = 0;
    params[0] = '\0';
    const char *p = l->params;
    /* l->params holds the client's SIZE/BODY/SMTPUTF8, space-separated. */
    while (*p) {
        const char *end = strchr(p, ' ');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        bool keep = (strncmp(p, "SIZE=", 5) == 0 && (ext & EXT_SIZE)) ||
                    (strncmp(p, "BODY=", 5) == 0 && (ext & EXT_8BITMIME)) ||
                    (n == 8 && strncmp(p, "SMTPUTF8", 8) == 0);
        if (keep && o + n + 2 < sizeof(params)) {
            params[o++] = ' ';
            memcpy(params + o, p, n);
            o += n;
            params[o] = '\0';
        }
        p += n;
        while (*p == ' ')
            p++;
    }
    if (l->need_smtputf8 && !strstr(params, " SMTPUTF8") && o + 10 < sizeof(params))
        memcpy(params + o, " SMTPUTF8", 10);
    client_mail(l->c, l->reverse_path, params, mail_replied, l);
}

static void opened(void *arg, const struct client_reply *r)
{
    struct leg *l = arg;
    const struct upstream_config *cfg = &l->u->cfg;
    if (r->code == 451 && strcmp(r->enh, "4.7.5") == 0 && cfg->tls == SMTPD_RELAY_TLS_MAY &&
        !cfg->smtps && !l->plain_retry) {
        /* "may": the STARTTLS the upstream offered failed (the client
         * logged why); plaintext is allowed, so once more without TLS, as
         * Postfix retries such a delivery. */
        l->plain_retry = true;
        client_close(l->c);
        if (cfg->log && cfg->log_level >= SMTPD_LOG_WARNING) {
            char line[400];
            snprintf(line, sizeof(line),
                     "upstream %s: TLS failed; again without TLS (--relay-tls may)",
                     l->u->hostport);
            cfg->log(cfg->log_arg, SMTPD_LOG_WARNING, line);
        }
        l->c = client_open(&l->u->ccfg_plain, opened, l);
        if (!l->c)
            refuse(l, 451, "4.3.0", "Error: local error in processing");
        return;
    }
    if (r->code != 250) {
        /* Unreachable or refused us (a local 451 4.4.1): the client retries. */
        client_close(l->c);
        l->c = NULL;
        step_done(l, r);
        return;
    }
    send_mail(l);
}

static void open_and_mail(struct leg *l)
{
    l->c = client_open(&l->u->ccfg, opened, l);
    if (!l->c)
        refuse(l, 451, "4.3.0", "Error: local error in processing");
}

void leg_mail(struct leg *l, const char *reverse_path, const char *const *params, size_t n)
{
    free(l->reverse_path);
    l->reverse_path = strdup(reverse_path);
    l->waiting = true;
    l->retried = false;
    l->plain_retry = false;
    /* A UTF-8 reverse-path needs SMTPUTF8 upstream, asked for or not
     * (RFC 6531 3.4). */
    l->need_smtputf8 = has_8bit(reverse_path, strlen(reverse_path));
    l->need_8bitmime = false;
    size_t o = 0;
    l->params[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (strcmp(params[i], "SMTPUTF8") == 0)
            l->need_smtputf8 = true;
        if (strcmp(params[i], "BODY=8BITMIME") == 0)
            l->need_8bitmime = true;
        size_t len = strlen(params[i]);
        if (o + len + 2 < sizeof(l->params)) {
            if (o)
                l->params[o++] = ' ';
            memcpy(l->params + o, params[i], len + 1);
            o += len;
        }
    }
    if (!l->reverse_path) {
        refuse(l, 451, "4.3.0", "Error: local error in processing");
        return;
    }
    l->c = pool_take(l->u);
    if (l->c)
        send_mail(l);
    else
        open_and_mail(l);
}

static void rcpt_replied(void *arg, const struct client_reply *r)
{
    struct leg *l = arg;
    if (r->code < 300)
        l->n_rcpt++;
    step_done(l, r);
}

void leg_rcpt(struct leg *l, const char *forward_path)
{
    l->waiting = true;
    if (!l->c) {
        refuse(l, 451, "4.4.1", "Error: upstream server unavailable, try again later");
        return;
    }
    if (has_8bit(forward_path, strlen(forward_path)) && !(client_extensions(l->c) & EXT_SMTPUTF8)) {
        refuse(l, 553, "5.6.7", "Error: the upstream server does not support SMTPUTF8");
        return;
    }
    client_rcpt(l->c, forward_path, rcpt_replied, l);
}

static void data_replied(void *arg, const struct client_reply *r)
{
    struct leg *l = arg;
    if (r->last) {
        /* A refused DATA command leaves the upstream's transaction open
         * (RFC 5321 4.1.1.4), so a refusal gets an RSET before the
         * connection is reused; after the final dot it is harmless. */
        l->in_txn = r->code >= 300;
        l->n_rcpt = 0;
    }
    step_done(l, r);
}

void leg_data(struct leg *l, char *data, size_t len, bool chunked)
{
    l->waiting = true;
    if (!l->c) {
        free(data);
        refuse(l, 451, "4.4.1", "Error: upstream server unavailable, try again later");
        return;
    }
    /* 8-bit data sent without BODY=8BITMIME is not mangled either. */
    if (!(client_extensions(l->c) & EXT_8BITMIME) && has_8bit(data, len)) {
        free(data);
        refuse(l, 554, "5.6.3", "Error: the upstream server does not support 8BITMIME");
        return;
    }
    client_data(l->c, data, len, chunked, data_replied, l);
}

void leg_end(struct leg *l)
{
    struct smtp_client *c = l->c;
    l->c = NULL;
    free(l->reverse_path);
    l->reverse_path = NULL;
    if (!c)
        return;
    if (l->waiting)
        client_close(c); /* cancel: the upstream drops what it had */
    else if (l->in_txn)
        pool_return_after_rset(l->u, c);
    else
        pool_put(l->u, c);
    l->waiting = false;
    l->in_txn = false;
    l->n_rcpt = 0;
}

/* ---- message data ---- */

/* A peer-supplied name made safe for a header field: printable ASCII and
 * UTF-8 bytes kept, anything else (and parentheses) as '?'. */
static void header_safe(char *out, size_t outsz, const char *in)
{
    size_t o = 0;
    for (; *in && o + 1 < outsz; in++) {
        unsigned char ch = (unsigned char)*in;
        out[o++] =
            (ch >= 0x21 && ch < 0x7f && ch != '(' && ch != ')') || ch >= 0x80 ? (char)ch : '?';
    }
    out[o] = '\0';
}

/* Whether the header section (up to the first empty line) has field @p name
 * ("From:"), case-insensitive. */
static bool has_field(const char *data, size_t len, const char *name)
{
    size_t nl = strlen(name);
    const char *p = data, *end = data + len;
    while (p < end && *p != '\r' && *p != '\n') {
        if ((size_t)(end - p) >= nl && strncasecmp(p, name, nl) == 0)
            return true;
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf)
            break;
        p = lf + 1;
    }
    return false;
}

char *relay_message_data(const struct smtpd_message *m, const char *by_host, unsigned long id,
                         bool add_from_date, size_t *len)
{
    char helo[300], addr[80], date[64], forpart[400] = "";
    header_safe(helo, sizeof(helo), m->helo ? m->helo : "unknown");
    if (strchr(m->peer_addr, ':'))
        snprintf(addr, sizeof(addr), "[IPv6:%s]", m->peer_addr);
    else
        snprintf(addr, sizeof(addr), "[%s]", m->peer_addr);
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", localtime_r(&now, &tm));
    if (m->n_forward_paths == 1) {
        char fp[330];
        header_safe(fp, sizeof(fp), m->forward_paths[0]);
        snprintf(forpart, sizeof(forpart), "\r\n\tfor <%s>", fp);
    }
    /* RFC 5321 4.4 / RFC 3848 / RFC 6531 3.7.3: the protocol used, "S"
     * for TLS and "A" for AUTH (ESMTPSA); with TLS, its protocol and
     * cipher in a comment, as Postfix writes them. Never who
     * authenticated: that is the submitter's business. */
    bool tls = m->tls_protocol != NULL;
    char with[16] = "SMTP";
    const char *proto = m->lmtp       ? (m->smtputf8 ? "UTF8LMTP" : "LMTP")
                        : m->smtputf8 ? "UTF8SMTP"
                                      : "ESMTP";
    if (m->esmtp)
        snprintf(with, sizeof(with), "%s%s%s", proto, tls ? "S" : "", m->auth_identity ? "A" : "");
    char tlspart[200] = "";
    if (tls)
        snprintf(tlspart, sizeof(tlspart), "\r\n\t(using %s with cipher %s (%d bits))",
                 m->tls_protocol, m->tls_cipher ? m->tls_cipher : "unknown", m->tls_cipher_bits);
    char received[2000];
    int rn = snprintf(received, sizeof(received),
                      "Received: from %s (%s)\r\n\tby %s (smtpd %s) with %s id %08lX%06lX%s%s;"
                      "\r\n\t%s\r\n",
                      helo, addr, by_host, SMTPD_VERSION, with, (unsigned long)now & 0xffffffffUL,
                      id & 0xffffffUL, tlspart, forpart, date);
    if (rn < 0 || (size_t)rn >= sizeof(received))
        return NULL;
    if (add_from_date && !has_field(m->data, m->data_len, "From:")) {
        char from[330];
        header_safe(from, sizeof(from), m->reverse_path[0] ? m->reverse_path : "MAILER-DAEMON");
        rn += snprintf(received + rn, sizeof(received) - (size_t)rn, "From: %s\r\n", from);
    }
    if (add_from_date && !has_field(m->data, m->data_len, "Date:"))
        rn += snprintf(received + rn, sizeof(received) - (size_t)rn, "Date: %s\r\n", date);
    size_t body_len;
    char *body = smtpd_insert_x_peer(m->data, m->data_len, m->peer_addr, &body_len);
    if (!body)
        return NULL;
    char *out = malloc((size_t)rn + body_len);
    if (out) {
        memcpy(out, received, (size_t)rn);
        memcpy(out + rn, body, body_len);
        *len = (size_t)rn + body_len;
    }
    free(body);
    return out;
}
