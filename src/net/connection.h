/*
 * libevent glue for one client: bufferevent bytes into the channel, replies
 * out, per-phase timeouts, output back-pressure and a deferred free (a
 * connection is never freed from inside a channel call).
 */
#ifndef SMTPD_CONNECTION_H
#define SMTPD_CONNECTION_H

#include "channel.h"

#include <event2/util.h>

struct smtpd_server;
struct sockaddr;

struct conn;

/** Take over accepted socket @p fd from client @p sa and start the
 *  dialogue; with @p implicit_tls, the TLS handshake first (server_tls_ctx()
 *  must be set). @p via: the load balancer that named @p sa in a PROXY
 *  header, NULL when @p sa is the socket's own peer. NULL: no memory (fd
 *  closed). */
struct conn *conn_new(struct smtpd_server *srv, struct event_base *base,
                      const struct chan_params *params, evutil_socket_t fd,
                      const struct sockaddr *sa, const struct sockaddr *via, unsigned long id,
                      bool implicit_tls);

/** Server shutdown: see channel_shutdown(). */
void conn_shutdown(struct conn *c, bool now);

/** Free at once (server teardown). */
void conn_free(struct conn *c);

/** Give up on a client at once: the channel hears of it as a lost
 *  connection (@p why goes to the log), then the connection is freed. */
void conn_drop(struct conn *c, const char *why);

/** The client's IP address (numeric text). */
const char *conn_peer_addr(const struct conn *c);

/** Numeric text and port of IPv4/IPv6 address @p sa into @p addr (at
 *  least 64 bytes; "?" for another family) and @p port. */
void sockaddr_text(const struct sockaddr *sa, char *addr, uint16_t *port);

/** List links, owned by the server. */
struct conn *conn_next(const struct conn *c);
void conn_link(struct conn *c, struct conn **head);

/** Called by the connection when it is freed; implemented in server.c. */
void server_conn_closed(struct smtpd_server *srv);

/** The server's TLS context for new handshakes (server.c); NULL: none. */
struct ssl_ctx_st *server_tls_ctx(const struct smtpd_server *srv);

#endif
