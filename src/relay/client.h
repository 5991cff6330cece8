/*
 * The asynchronous SMTP/LMTP client used by the relays (RFC 5321 as a
 * client, RFC 2033 LMTP): the protocol machine of client_proto.h on
 * libevent. The upstream name is resolved with evdns and every address is
 * tried in turn; every step has a timeout. One command is in flight at a
 * time and its reply comes back through a callback, never from inside the
 * call that sent it.
 */
#ifndef SMTPD_CLIENT_H
#define SMTPD_CLIENT_H

#include "client_proto.h"
#include "smtpd.h"

#include <stdbool.h>
#include <stddef.h>

struct evdns_base;

typedef void (*client_cb)(void *arg, const struct client_reply *r);

struct client_config {
    struct event_base *base;
    struct evdns_base *dns;
    const char *host; /* name or numeric address */
    const char *port;
    const char *helo_name; /* our name in EHLO/LHLO */
    bool lmtp;
    unsigned timeout; /* seconds for each step (connect, each reply) */
    /* TLS: the policy, the client context (NULL for SMTPD_RELAY_TLS_NONE;
     * borrowed, it outlives the client) and implicit TLS (RFC 8314). */
    enum smtpd_relay_tls tls;
    SSL_CTX *tls_ctx;
    bool smtps;
    /* SMTP AUTH (RFC 4954): the credentials (borrowed; NULL: no AUTH) and
     * whether they may go without TLS (only when TLS is off by
     * configuration, never after "may" found no TLS). */
    const char *auth_username;
    const char *auth_password;
    bool auth_plaintext;
    smtpd_log_fn log;
    void *log_arg;
    enum smtpd_log_level log_level;
};

struct smtp_client;

/** Connect, greet, (as the policy says) start TLS and authenticate. @p cb
 *  gets 250 once the client is ready, or a local 451 4.4.1 (unreachable,
 *  refused greeting), 451 4.7.5 (TLS required and failed, or not offered)
 *  or 451 4.7.0 (AUTH refused or impossible); the log says why. The config's strings must outlive
 * the client. NULL: no memory. */
struct smtp_client *client_open(const struct client_config *cfg, client_cb cb, void *arg);

/** Extensions advertised (enum client_ext bits); valid once ready. */
unsigned client_extensions(const struct smtp_client *c);

/** Whether the client is connected with no command in flight. */
bool client_ready(const struct smtp_client *c);

/** MAIL FROM:<@p reverse_path>@p params (params start with a space or are
 *  ""). Only when client_ready(). */
void client_mail(struct smtp_client *c, const char *reverse_path, const char *params, client_cb cb,
                 void *arg);
/** RCPT TO:<@p forward_path>. */
void client_rcpt(struct smtp_client *c, const char *forward_path, client_cb cb, void *arg);
/** DATA, then @p data (CRLF line ends; dot-stuffed here) and the final dot.
 *  Takes ownership of @p data (malloc'd). LMTP: @p cb runs once per
 *  accepted recipient (RFC 2033 4.2), r->last on the final one. */
void client_data(struct smtp_client *c, char *data, size_t len, bool chunked, client_cb cb,
                 void *arg);
/** RSET. */
void client_rset(struct smtp_client *c, client_cb cb, void *arg);

/** While idle, call @p cb (a local reply) if the upstream closes or says
 *  something, or @p secs seconds pass (0: no limit): the client must then
 *  be closed (client_close() says QUIT to an upstream that is still
 *  there). A NULL @p cb stops watching. A command on a connection that
 *  died replies 421. */
void client_watch_idle(struct smtp_client *c, client_cb cb, void *arg, unsigned secs);

/** Send QUIT if connected and idle, and free the client. Safe inside its
 *  callbacks; no callback runs after this. NULL is allowed. */
void client_close(struct smtp_client *c);

#endif
