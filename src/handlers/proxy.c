/*
 * PureProxy and MailmanProxy: relay each transaction in real time through
 * the asynchronous client (client.c, legs in upstream.c), so that every
 * upstream reply reaches the client at the step it belongs to, and 250 after
 * DATA means every upstream has the message.
 *
 * PureProxy: one leg, to the smarthost, opened at MAIL FROM.
 * MailmanProxy: at each RCPT TO, Mailman's LMTP server is asked first (250:
 * a list address, delivered over that LMTP session; 550: not Mailman's, so
 * it goes to the smarthost exactly as with PureProxy). Both legs open at
 * the first recipient that needs them.
 */
#include "channel.h"
#include "cidr.h"
#include "client.h"
#include "fqdn.h"
#include "recipient_cache.h"
#include "smtpd.h"
#include "tls.h"
#include "upstream.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_RELAY_NETWORKS 64
#define MAX_MAILMAN_DOMAINS 64
/* MailmanProxy remembers this many of Mailman's answers, each this long. */
#define MAILMAN_MEMORY 10000
#define MAILMAN_MEMORY_SECONDS 3600
/* The longest SMTP AUTH username or password (smtpd.h). */
#define AUTH_MAX 255

struct smtpd_proxy {
    struct smtpd_proxy_config cfg;
    struct event_base *base;
    struct evdns_base *dns;
    char *hostname;
    struct upstream *smarthost;
    struct upstream *mailman; /* NULL: PureProxy */
    struct cidr nets[MAX_RELAY_NETWORKS];
    size_t n_nets;
    char *domains[MAX_MAILMAN_DOMAINS]; /* asked of Mailman; none: all */
    size_t n_domains;
    struct recipient_cache *answers; /* what Mailman said of recent recipients */
    unsigned long next_id;
    SSL_CTX *tls_ctx;                    /* the smarthost's TLS client context; NULL: none */
    char *auth_username, *auth_password; /* SMTP AUTH to the smarthost; NULL: none */
};

/* Which answer the session waits for. */
enum relay_step {
    RS_NONE,
    RS_MAIL,       /* PureProxy: MAIL at the smarthost */
    RS_LMTP_MAIL,  /* MailmanProxy: opening the LMTP transaction for a RCPT */
    RS_LMTP_RCPT,  /* asking Mailman about a forward-path */
    RS_SMART_MAIL, /* MailmanProxy: opening the smarthost transaction */
    RS_SMART_RCPT, /* the forward-path at the smarthost */
    RS_DATA,       /* the message at every leg that has recipients */
};

/* The relay state of one client session. */
struct relay {
    struct smtpd_proxy *p;
    struct smtpd_session *s;
    struct leg smart, lmtp;
    enum relay_step step;
    char *reverse_path;
    char **params;
    size_t n_params;
    char *forward_path;        /* the RCPT in progress */
    unsigned legs_left;        /* DATA replies still due, per leg */
    struct client_reply worst; /* the most serious DATA reply so far */
    struct leg *worst_leg;     /* and the leg that gave it */
    /* LMTP server: the leg of each accepted forward-path, in order (NULL
     * once its reply is given), and how many still wait for one. */
    struct leg **rcpt_legs;
    size_t n_rcpt_legs;
    size_t unanswered;
    bool per_rcpt; /* this message is answered per recipient */
    struct timespec started;
};

void smtpd_proxy_config_init(struct smtpd_proxy_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->timeout = 60;
    cfg->pool_size = 4;
    cfg->idle_timeout = 30;
    cfg->log_level = SMTPD_LOG_INFO;
    cfg->tls = SMTPD_RELAY_TLS_MAY;
}

/* Answer the client's step with @p up, which leg @p from gave (NULL: we
 * did); the log line of the transaction names that upstream. */
static void answer(struct relay *r, const struct client_reply *up, const struct leg *from)
{
    r->step = RS_NONE;
    if (from)
        channel_reply_origin(r->s, upstream_label(from->u));
    smtpd_reply(r->s, up->code, up->enh[0] ? up->enh : NULL, up->text);
}

static void answer_local(struct relay *r, int code, const char *enh, const char *text)
{
    struct client_reply up;
    cp_local_reply(&up, code, enh, text);
    answer(r, &up, NULL);
}

static void log_relayed(struct relay *r, struct leg *l, const struct client_reply *up)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs =
        (double)(now.tv_sec - r->started.tv_sec) + (double)(now.tv_nsec - r->started.tv_nsec) / 1e9;
    char text[300];
    smtpd_escape(text, sizeof(text), up->text, strlen(up->text));
    smtpd_session_log(r->s, SMTPD_LOG_INFO, "relayed via %s: %d%s%s %s (%.3f s)",
                      upstream_name(l->u), up->code, up->enh[0] ? " " : "", up->enh, text, secs);
}

/* DATA replies: 250 only if every destination took it; else a temporary
 * failure anywhere wins (the client retries, nothing is lost), then a
 * permanent one. */
static int severity(int code)
{
    return code == 0 ? -1 : code < 300 ? 0 : code >= 500 ? 1 : 2;
}

/* No smarthost for a client outside relay_networks, unless it
 * authenticated: a submitter may relay from anywhere (RFC 6409). Asked at
 * each recipient: XCLIENT may have changed the client since the last. */
static bool denied(const struct relay *r)
{
    return !cidr_match(r->p->nets, r->p->n_nets, smtpd_session_peer_addr(r->s)) &&
           !smtpd_session_auth_identity(r->s);
}

static void rcpt_at_smarthost(struct relay *r)
{
    if (denied(r)) {
        answer_local(r, 554, "5.7.1", "Error: relay access denied");
        return;
    }
    if (!leg_open(&r->smart)) {
        r->step = RS_SMART_MAIL;
        leg_mail(&r->smart, r->reverse_path, (const char *const *)r->params, r->n_params);
        return;
    }
    r->step = RS_SMART_RCPT;
    leg_rcpt(&r->smart, r->forward_path);
}

/* Mailman gave no answer about the forward-path (down, or it refused the
 * LMTP transaction): one it said lately was not its own still relays;
 * any other may be a list address and is never relayed elsewhere
 * silently, so the client retries. */
static void mailman_silent(struct relay *r)
{
    if (recipient_cache_get(r->p->answers, r->forward_path, time(NULL)) == 0)
        rcpt_at_smarthost(r);
    else
        answer_local(r, 451, "4.4.1", "Error: mailing list server unavailable, try again later");
}

/* LMTP server: forward-path number n_rcpt_legs went to leg @p l. */
static bool note_rcpt_leg(struct relay *r, struct leg *l)
{
    if (!channel_config(r->s)->lmtp)
        return true;
    struct leg **v = realloc(r->rcpt_legs, (r->n_rcpt_legs + 1) * sizeof(struct leg *));
    if (!v)
        return false;
    v[r->n_rcpt_legs++] = l;
    r->rcpt_legs = v;
    return true;
}

/* A RCPT's answer from leg @p l; an accepted forward-path is noted. */
static void answer_rcpt(struct relay *r, const struct client_reply *up, struct leg *l)
{
    if (up->code < 300 && !note_rcpt_leg(r, l))
        answer_local(r, 451, "4.3.0", "Error: try again later");
    else
        answer(r, up, l);
}

/* LMTP server: a reply of leg @p l after the data is that of its next
 * recipient, its last one that of all it has left (an SMTP leg's one
 * reply, or a lost LMTP connection). The answer that completes the
 * message ends the transaction and may start the next: nothing of @p r is
 * used after it. */
static void rcpt_replied(struct relay *r, struct leg *l, const struct client_reply *up)
{
    if (up->last && --r->legs_left == 0)
        r->step = RS_NONE;
    channel_reply_origin(r->s, upstream_label(l->u));
    for (size_t i = 0; i < r->n_rcpt_legs; i++) {
        if (r->rcpt_legs[i] != l)
            continue;
        r->rcpt_legs[i] = NULL;
        bool final = --r->unanswered == 0;
        bool more = up->last;
        smtpd_reply_rcpt(r->s, i, up->code, up->enh[0] ? up->enh : NULL, up->text);
        if (final || !more)
            return;
    }
}

static void leg_replied(void *arg, struct leg *l, const struct client_reply *up)
{
    struct relay *r = arg;
    switch (r->step) {
    case RS_SMART_RCPT:
        answer_rcpt(r, up, l);
        break;
    case RS_MAIL:
    case RS_NONE:
        answer(r, up, l);
        break;
    case RS_SMART_MAIL:
        if (up->code >= 300) {
            answer(r, up, l);
        } else {
            r->step = RS_SMART_RCPT;
            leg_rcpt(&r->smart, r->forward_path);
        }
        break;
    case RS_LMTP_MAIL:
        if (up->code >= 300) {
            mailman_silent(r);
        } else {
            r->step = RS_LMTP_RCPT;
            leg_rcpt(&r->lmtp, r->forward_path);
        }
        break;
    case RS_LMTP_RCPT:
        if (up->local) {
            mailman_silent(r);
        } else if (up->code >= 500) {
            recipient_cache_put(r->p->answers, r->forward_path, false, time(NULL));
            rcpt_at_smarthost(r); /* not a Mailman address */
        } else {
            if (up->code < 300)
                recipient_cache_put(r->p->answers, r->forward_path, true, time(NULL));
            answer_rcpt(r, up, l);
        }
        break;
    case RS_DATA:
        if (up->last)
            log_relayed(r, l, up);
        if (r->per_rcpt) {
            rcpt_replied(r, l, up);
            break;
        }
        if (severity(up->code) > severity(r->worst.code)) {
            r->worst = *up;
            r->worst_leg = l;
        }
        if (up->last && --r->legs_left == 0)
            answer(r, &r->worst, r->worst_leg);
        break;
    }
}

static struct relay *relay_of(struct smtpd_proxy *p, struct smtpd_session *s)
{
    struct relay *r = smtpd_session_data(s);
    if (r)
        return r;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->p = p;
    r->s = s;
    leg_init(&r->smart, p->smarthost, leg_replied, r);
    if (p->mailman)
        leg_init(&r->lmtp, p->mailman, leg_replied, r);
    smtpd_session_set_data(s, r);
    return r;
}

static void forget_envelope(struct relay *r)
{
    free(r->reverse_path);
    r->reverse_path = NULL;
    for (size_t i = 0; i < r->n_params; i++)
        free(r->params[i]);
    free(r->params);
    r->params = NULL;
    r->n_params = 0;
    free(r->forward_path);
    r->forward_path = NULL;
    free(r->rcpt_legs);
    r->rcpt_legs = NULL;
    r->n_rcpt_legs = 0;
    r->per_rcpt = false;
}

static bool keep_envelope(struct relay *r, const char *reverse_path, const char *const *params,
                          size_t n)
{
    forget_envelope(r);
    r->reverse_path = strdup(reverse_path);
    r->params = calloc(n ? n : 1, sizeof(char *));
    if (!r->reverse_path || !r->params)
        return false;
    for (; r->n_params < n; r->n_params++)
        if (!(r->params[r->n_params] = strdup(params[r->n_params])))
            return false;
    return true;
}

static enum smtpd_verdict proxy_mail(void *arg, struct smtpd_session *s, const char *reverse_path,
                                     const char *const *params, size_t n_params)
{
    struct smtpd_proxy *p = arg;
    struct relay *r = relay_of(p, s);
    if (!r || !keep_envelope(r, reverse_path, params, n_params)) {
        smtpd_reply(s, 451, "4.3.0", NULL);
        return SMTPD_DONE;
    }
    clock_gettime(CLOCK_MONOTONIC, &r->started);
    /* MailmanProxy opens its legs per recipient; nobody outside
     * relay_networks gets a smarthost session (RCPT refuses). */
    if (p->mailman || denied(r))
        return SMTPD_DONE;
    r->step = RS_MAIL;
    leg_mail(&r->smart, reverse_path, params, n_params);
    return SMTPD_PENDING;
}

/* Whether Mailman is asked about @p fp: all, or those in its domains. */
static bool for_mailman(const struct smtpd_proxy *p, const char *fp)
{
    if (!p->mailman)
        return false;
    if (p->n_domains == 0)
        return true;
    const char *at = strrchr(fp, '@');
    for (size_t i = 0; at && i < p->n_domains; i++)
        if (strcasecmp(at + 1, p->domains[i]) == 0)
            return true;
    return false;
}

static enum smtpd_verdict proxy_rcpt(void *arg, struct smtpd_session *s, const char *forward_path,
                                     const char *const *params, size_t n_params)
{
    struct smtpd_proxy *p = arg;
    struct relay *r = relay_of(p, s);
    (void)params;
    (void)n_params;
    if (!r || !r->reverse_path) {
        smtpd_reply(s, 451, "4.3.0", NULL);
        return SMTPD_DONE;
    }
    free(r->forward_path);
    r->forward_path = strdup(forward_path);
    if (!r->forward_path) {
        smtpd_reply(s, 451, "4.3.0", NULL);
        return SMTPD_DONE;
    }
    if (!for_mailman(p, forward_path)) {
        rcpt_at_smarthost(r);
    } else if (!leg_open(&r->lmtp)) {
        r->step = RS_LMTP_MAIL;
        leg_mail(&r->lmtp, r->reverse_path, (const char *const *)r->params, r->n_params);
    } else {
        r->step = RS_LMTP_RCPT;
        leg_rcpt(&r->lmtp, forward_path);
    }
    return SMTPD_PENDING;
}

static enum smtpd_verdict proxy_message(void *arg, struct smtpd_session *s,
                                        const struct smtpd_message *m)
{
    struct smtpd_proxy *p = arg;
    struct relay *r = relay_of(p, s);
    struct leg *legs[2] = {r ? &r->smart : NULL, r && p->mailman ? &r->lmtp : NULL};
    char *data[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    unsigned n = 0;
    unsigned long id = ++p->next_id;
    for (int i = 0; i < 2; i++) {
        if (!legs[i] || legs[i]->n_rcpt == 0)
            continue;
        /* Mailman gets From: and Date: when missing, as MailmanProxy did. */
        data[i] = relay_message_data(m, p->hostname, id, i == 1, &len[i]);
        if (!data[i]) {
            free(data[0]);
            smtpd_reply(s, 451, "4.3.0", NULL);
            return SMTPD_DONE;
        }
        n++;
    }
    if (n == 0) {
        smtpd_reply(s, 451, "4.3.0", NULL);
        return SMTPD_DONE;
    }
    r->step = RS_DATA;
    r->legs_left = n;
    r->worst = (struct client_reply){.code = 0}; /* any reply beats it */
    /* LMTP: each recipient gets its own leg's reply (when the count is
     * off, the one answer of SMTP). */
    r->per_rcpt = channel_config(s)->lmtp && r->n_rcpt_legs == m->n_forward_paths;
    r->unanswered = m->n_forward_paths;
    for (int i = 0; i < 2; i++)
        if (data[i])
            leg_data(legs[i], data[i], len[i], m->chunked);
    return SMTPD_PENDING;
}

static void proxy_reset(void *arg, struct smtpd_session *s)
{
    struct relay *r = smtpd_session_data(s);
    (void)arg;
    if (!r)
        return;
    r->step = RS_NONE;
    leg_end(&r->smart);
    leg_end(&r->lmtp);
    forget_envelope(r);
}

static void proxy_close(void *arg, struct smtpd_session *s)
{
    struct relay *r = smtpd_session_data(s);
    if (!r)
        return;
    proxy_reset(arg, s);
    free(r);
    smtpd_session_set_data(s, NULL);
}

static struct upstream *make_upstream(struct smtpd_proxy *p, const char *hostport, bool lmtp,
                                      enum smtpd_err *err)
{
    const struct smtpd_proxy_config *cfg = &p->cfg;
    struct upstream_config uc = {
        .base = p->base,
        .dns = p->dns,
        .hostport = hostport,
        .helo_name = p->hostname,
        .lmtp = lmtp,
        .timeout = cfg->timeout,
        .pool_size = cfg->pool_size,
        .idle_timeout = cfg->idle_timeout,
        /* TLS to the smarthost only: Mailman's LMTP server is local. */
        .tls = lmtp ? SMTPD_RELAY_TLS_NONE : cfg->tls,
        .tls_ctx = lmtp ? NULL : p->tls_ctx,
        .smtps = !lmtp && cfg->smtps,
        .auth_username = lmtp ? NULL : p->auth_username,
        .auth_password = lmtp ? NULL : p->auth_password,
        .log = cfg->log,
        .log_arg = cfg->log_arg,
        .log_level = cfg->log_level,
    };
    return upstream_new(&uc, err);
}

static bool parse_domains(struct smtpd_proxy *p, const char *list)
{
    const char *q = list;
    while (*q) {
        size_t n = strcspn(q, ", ");
        if (n > 0) {
            if (p->n_domains >= MAX_MAILMAN_DOMAINS)
                return false;
            p->domains[p->n_domains] = strndup(q, n);
            if (!p->domains[p->n_domains++])
                return false;
        }
        q += n;
        q += strspn(q, ", ");
    }
    return true;
}

/* Both credentials or neither, each within AUTH_MAX. */
static bool auth_config_ok(const struct smtpd_proxy_config *cfg)
{
    if (!cfg->auth_username != !cfg->auth_password)
        return false;
    return !cfg->auth_username ||
           (cfg->auth_username[0] && strnlen(cfg->auth_username, AUTH_MAX + 1) <= AUTH_MAX &&
            strnlen(cfg->auth_password, AUTH_MAX + 1) <= AUTH_MAX);
}

/* The relay's own copies of the credentials. */
static bool copy_auth(struct smtpd_proxy *p, const struct smtpd_proxy_config *cfg)
{
    if (!cfg->auth_username)
        return true;
    p->auth_username = strdup(cfg->auth_username);
    p->auth_password = strdup(cfg->auth_password);
    return p->auth_username && p->auth_password;
}

struct smtpd_proxy *smtpd_proxy_new(struct event_base *base, const struct smtpd_proxy_config *cfg,
                                    enum smtpd_err *err)
{
    enum smtpd_err dummy;
    if (!err)
        err = &dummy;
    struct smtpd_proxy *p = calloc(1, sizeof(*p));
    if (!p) {
        *err = SMTPD_ERR_NOMEM;
        return NULL;
    }
    p->cfg = *cfg;
    p->base = base;
    if ((cfg->smtps && cfg->tls == SMTPD_RELAY_TLS_NONE) || !auth_config_ok(cfg)) {
        free(p);
        *err = SMTPD_ERR_CONFIG;
        return NULL;
    }
    const char *nets = cfg->relay_networks ? cfg->relay_networks : "127.0.0.0/8,::1/128";
    int n = cidr_parse_list(nets, p->nets, MAX_RELAY_NETWORKS);
    if (n < 0 || (cfg->mailman_domains && !parse_domains(p, cfg->mailman_domains))) {
        smtpd_proxy_free(p);
        *err = SMTPD_ERR_CONFIG;
        return NULL;
    }
    p->n_nets = (size_t)n;
    p->hostname = cfg->hostname ? strdup(cfg->hostname) : fqdn_lookup();
    /* Inactive resolver sockets must not keep the event loop alive after a
     * shutdown; the flag has to be set before resolv.conf is read. */
    p->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (p->dns && evdns_base_resolv_conf_parse(p->dns, DNS_OPTIONS_ALL, "/etc/resolv.conf") != 0)
        evdns_base_load_hosts(p->dns, NULL); /* no resolv.conf: /etc/hosts still */
    if (!p->hostname || !p->dns || !copy_auth(p, cfg)) {
        smtpd_proxy_free(p);
        *err = SMTPD_ERR_NOMEM;
        return NULL;
    }
    if (cfg->tls != SMTPD_RELAY_TLS_NONE) {
        char why[512];
        p->tls_ctx = tls_client_ctx_new(cfg->tls == SMTPD_RELAY_TLS_VERIFY, cfg->tls_ca_file, why,
                                        sizeof(why));
        if (!p->tls_ctx) {
            if (cfg->log && cfg->log_level >= SMTPD_LOG_ERROR)
                cfg->log(cfg->log_arg, SMTPD_LOG_ERROR, why);
            smtpd_proxy_free(p);
            *err = SMTPD_ERR_TLS;
            return NULL;
        }
    }
    p->smarthost = make_upstream(p, cfg->upstream, false, err);
    if (p->smarthost && cfg->mailman_lmtp) {
        p->mailman = make_upstream(p, cfg->mailman_lmtp, true, err);
        p->answers = recipient_cache_new(MAILMAN_MEMORY, MAILMAN_MEMORY_SECONDS);
        if (p->mailman && !p->answers)
            *err = SMTPD_ERR_NOMEM;
    }
    if (!p->smarthost || (cfg->mailman_lmtp && (!p->mailman || !p->answers))) {
        smtpd_proxy_free(p);
        return NULL;
    }
    /* The strings were copied where they are needed. */
    p->cfg.upstream = p->cfg.relay_networks = p->cfg.hostname = NULL;
    p->cfg.mailman_lmtp = p->cfg.mailman_domains = p->cfg.tls_ca_file = NULL;
    p->cfg.auth_username = p->cfg.auth_password = NULL;
    *err = SMTPD_OK;
    return p;
}

void smtpd_proxy_handler(struct smtpd_handler *h, struct smtpd_proxy *p)
{
    memset(h, 0, sizeof(*h));
    h->on_mail = proxy_mail;
    h->on_rcpt = proxy_rcpt;
    h->on_message = proxy_message;
    h->on_reset = proxy_reset;
    h->on_close = proxy_close;
    h->arg = p;
}

void smtpd_proxy_shutdown(struct smtpd_proxy *p)
{
    upstream_shutdown(p->smarthost);
    if (p->mailman)
        upstream_shutdown(p->mailman);
}

void smtpd_proxy_free(struct smtpd_proxy *p)
{
    if (!p)
        return;
    upstream_free(p->smarthost);
    upstream_free(p->mailman);
    recipient_cache_free(p->answers);
    if (p->dns)
        evdns_base_free(p->dns, 0);
    for (size_t i = 0; i < p->n_domains; i++)
        free(p->domains[i]);
    SSL_CTX_free(p->tls_ctx);
    free(p->hostname);
    free(p->auth_username);
    if (p->auth_password)
        OPENSSL_cleanse(p->auth_password, strlen(p->auth_password));
    free(p->auth_password);
    free(p);
}
