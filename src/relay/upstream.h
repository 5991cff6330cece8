/*
 * The relays' shared parts: an upstream (smarthost or LMTP server) with its
 * pool of idle connections, and a leg: one session's transaction with one
 * upstream, step by step (MAIL, RCPT, DATA), each step's reply handed to the
 * relay through a callback. PureProxy has one leg per session; MailmanProxy
 * two (Mailman's LMTP server and the smarthost).
 */
#ifndef SMTPD_UPSTREAM_H
#define SMTPD_UPSTREAM_H

#include "client.h"
#include "smtpd.h"

struct upstream_config {
    struct event_base *base;
    struct evdns_base *dns;
    const char *hostport; /* "host:port" */
    const char *helo_name;
    bool lmtp;
    unsigned timeout;
    unsigned pool_size;
    unsigned idle_timeout;
    /* TLS policy and client context (borrowed; NULL with
     * SMTPD_RELAY_TLS_NONE); pooled connections keep their TLS session. */
    enum smtpd_relay_tls tls;
    SSL_CTX *tls_ctx;
    bool smtps;
    /* SMTP AUTH credentials (borrowed: they outlive the upstream; NULL: no
     * AUTH). Every connection, pooled or new, authenticates with these. */
    const char *auth_username;
    const char *auth_password;
    smtpd_log_fn log;
    void *log_arg;
    enum smtpd_log_level log_level;
};

struct upstream;

/** NULL with *err SMTPD_ERR_ADDRESS or SMTPD_ERR_NOMEM. hostport is copied;
 *  the other strings are borrowed. */
struct upstream *upstream_new(const struct upstream_config *cfg, enum smtpd_err *err);
/** "host:port" as configured. */
const char *upstream_name(const struct upstream *u);
/** "smarthost host:port" or "LMTP host:port", for log lines; lives as long
 *  as @p u. */
const char *upstream_label(const struct upstream *u);
/** Close the idle connections and keep no more: transactions in flight
 *  finish, then their connections close (server shutdown). */
void upstream_shutdown(struct upstream *u);
void upstream_free(struct upstream *u);

struct leg;
/** A step of leg @p l finished with reply @p r (LMTP DATA: once per
 *  accepted recipient, r->last on the final one). */
typedef void (*leg_done_fn)(void *arg, struct leg *l, const struct client_reply *r);

struct leg {
    struct upstream *u;
    leg_done_fn done;
    void *arg;
    struct smtp_client *c;
    bool waiting;     /* a step is in flight */
    bool in_txn;      /* the upstream accepted MAIL; no DATA end yet */
    bool retried;     /* MAIL was answered 421 once; a fresh connection was tried */
    bool plain_retry; /* "may": TLS failed, a plaintext connection was tried */
    char *reverse_path;
    char params[160];
    bool need_smtputf8, need_8bitmime;
    unsigned n_rcpt; /* forward-paths the upstream accepted */
};

void leg_init(struct leg *l, struct upstream *u, leg_done_fn done, void *arg);
/** MAIL FROM with the client's parameters; connects (or takes a pooled
 *  connection) first. Passes on SIZE, BODY=8BITMIME and SMTPUTF8 where the
 *  upstream has them; refuses 553 5.6.7 / 554 5.6.3 where it lacks
 *  SMTPUTF8 / 8BITMIME. */
void leg_mail(struct leg *l, const char *reverse_path, const char *const *params, size_t n);
void leg_rcpt(struct leg *l, const char *forward_path);
/** Takes ownership of @p data (malloc'd); @p chunked: send it with BDAT
 *  when the upstream offers CHUNKING (cp_data). */
void leg_data(struct leg *l, char *data, size_t len, bool chunked);
/** The transaction ended or was abandoned: a step in flight is cancelled
 *  (the connection dropped, so the upstream discards it); an open upstream
 *  transaction is RSET; the connection goes back to the pool. */
void leg_end(struct leg *l);

/** Whether the leg has an open upstream transaction (MAIL accepted). */
bool leg_open(const struct leg *l);

/**
 * The data a relay sends: a Received: trace field (RFC 5321 4.4) naming
 * @p by_host and queue id @p id, then the message with X-Peer inserted as
 * smtpd's PureProxy did. With @p add_from_date, a From: (the reverse-path)
 * and a Date: field are added when the header section lacks them, as
 * smtpd's MailmanProxy did for Mailman. @return malloc'd bytes and *len;
 * NULL: no memory.
 */
char *relay_message_data(const struct smtpd_message *m, const char *by_host, unsigned long id,
                         bool add_from_date, size_t *len);

#endif
