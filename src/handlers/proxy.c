/*
 * PureProxy: relay each transaction to a smarthost in real time through the
 * asynchronous client (client.c), so that every upstream reply reaches the
 * client at the step it belongs to, and 250 after DATA means the upstream
 * has the message. Idle upstream connections are pooled and reused.
 */
#include "cidr.h"
#include "client.h"
#include "fqdn.h"
#include "smtpd.h"
#include "upstream.h"

#include <event2/dns.h>
#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RELAY_NETWORKS 64

struct smtpd_proxy {
    struct smtpd_proxy_config cfg;
    struct event_base *base;
    struct evdns_base *dns;
    char *hostname;
    struct upstream *up;
    struct cidr nets[MAX_RELAY_NETWORKS];
    size_t n_nets;
    unsigned long next_id;
};

/* The relay state of one client session. */
struct relay {
    struct smtpd_proxy *p;
    struct smtpd_session *s;
    struct leg leg;
    bool denied;    /* client outside relay_networks */
    bool data_sent; /* the message is on its way: log the outcome */
    struct timespec started;
};

void smtpd_proxy_config_init(struct smtpd_proxy_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->timeout = 60;
    cfg->pool_size = 4;
    cfg->idle_timeout = 30;
    cfg->log_level = SMTPD_LOG_INFO;
}

/* An upstream step finished: its reply is the client's. */
static void relayed(void *arg, const struct client_reply *up)
{
    struct relay *r = arg;
    if (r->data_sent) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double secs = (double)(now.tv_sec - r->started.tv_sec) +
                      (double)(now.tv_nsec - r->started.tv_nsec) / 1e9;
        char text[300];
        smtpd_escape(text, sizeof(text), up->text, strlen(up->text));
        smtpd_session_log(r->s, SMTPD_LOG_INFO, "relayed via %s: %d%s%s %s (%.3f s)",
                          upstream_name(r->p->up), up->code, up->enh[0] ? " " : "", up->enh, text, secs);
        r->data_sent = false;
    }
    smtpd_reply(r->s, up->code, up->enh[0] ? up->enh : NULL, up->text);
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
    leg_init(&r->leg, p->up, relayed, r);
    r->denied = !cidr_match(p->nets, p->n_nets, smtpd_session_peer_addr(s));
    smtpd_session_set_data(s, r);
    return r;
}

static enum smtpd_verdict proxy_mail(void *arg, struct smtpd_session *s, const char *reverse_path,
                                     const char *const *params, size_t n_params)
{
    struct relay *r = relay_of(arg, s);
    if (!r) {
        smtpd_reply(s, 451, "4.3.0", NULL);
        return SMTPD_DONE;
    }
    clock_gettime(CLOCK_MONOTONIC, &r->started);
    /* Nobody outside relay_networks gets an upstream session: RCPT refuses. */
    if (r->denied)
        return SMTPD_DONE;
    leg_mail(&r->leg, reverse_path, params, n_params);
    return SMTPD_PENDING;
}

static enum smtpd_verdict proxy_rcpt(void *arg, struct smtpd_session *s, const char *forward_path,
                                     const char *const *params, size_t n_params)
{
    struct relay *r = relay_of(arg, s);
    (void)params;
    (void)n_params;
    if (!r || r->denied) {
        smtpd_reply(s, 554, "5.7.1", "Error: relay access denied");
        return SMTPD_DONE;
    }
    leg_rcpt(&r->leg, forward_path);
    return SMTPD_PENDING;
}

static enum smtpd_verdict proxy_message(void *arg, struct smtpd_session *s,
                                        const struct smtpd_message *m)
{
    struct smtpd_proxy *p = arg;
    struct relay *r = relay_of(p, s);
    size_t len;
    char *data = r ? relay_message_data(m, p->hostname, ++p->next_id, &len) : NULL;
    if (!data) {
        smtpd_reply(s, 451, "4.3.0", NULL);
        return SMTPD_DONE;
    }
    r->data_sent = true;
    leg_data(&r->leg, data, len);
    return SMTPD_PENDING;
}

static void proxy_reset(void *arg, struct smtpd_session *s)
{
    struct relay *r = smtpd_session_data(s);
    (void)arg;
    if (r)
        leg_end(&r->leg);
}

static void proxy_close(void *arg, struct smtpd_session *s)
{
    struct relay *r = smtpd_session_data(s);
    (void)arg;
    if (!r)
        return;
    leg_end(&r->leg);
    free(r);
    smtpd_session_set_data(s, NULL);
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
    const char *nets = cfg->relay_networks ? cfg->relay_networks : "127.0.0.0/8,::1/128";
    int n = cidr_parse_list(nets, p->nets, MAX_RELAY_NETWORKS);
    if (n < 0) {
        free(p);
        *err = SMTPD_ERR_CONFIG;
        return NULL;
    }
    p->n_nets = (size_t)n;
    p->hostname = cfg->hostname ? strdup(cfg->hostname) : fqdn_lookup();
    p->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!p->dns) /* no resolv.conf: names still come from /etc/hosts */
        p->dns = evdns_base_new(base, 0);
    if (!p->hostname || !p->dns) {
        smtpd_proxy_free(p);
        *err = SMTPD_ERR_NOMEM;
        return NULL;
    }
    struct upstream_config uc = {
        .base = base,
        .dns = p->dns,
        .hostport = cfg->upstream,
        .helo_name = p->hostname,
        .lmtp = false,
        .timeout = cfg->timeout,
        .pool_size = cfg->pool_size,
        .idle_timeout = cfg->idle_timeout,
        .log = cfg->log,
        .log_arg = cfg->log_arg,
        .log_level = cfg->log_level,
    };
    p->up = upstream_new(&uc, err);
    if (!p->up) {
        smtpd_proxy_free(p);
        return NULL;
    }
    p->cfg.upstream = NULL;
    p->cfg.relay_networks = NULL;
    p->cfg.hostname = NULL;
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

void smtpd_proxy_free(struct smtpd_proxy *p)
{
    if (!p)
        return;
    upstream_free(p->up);
    if (p->dns)
        evdns_base_free(p->dns, 0);
    free(p->hostname);
    free(p);
}
