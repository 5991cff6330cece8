/*
 * A new connection's PROXY protocol header (smtpd_config.proxy_protocol):
 * read from the socket, no further than the header's last byte, so that what
 * follows (SMTP, or an implicit TLS client's handshake) is still in the
 * socket for the connection proper (conn_new).
 */
#ifndef SMTPD_PROXY_WAIT_H
#define SMTPD_PROXY_WAIT_H

#include "proxy.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

struct proxy_wait;

/** Called once per wait: @p error NULL when the header is in (see
 *  struct proxy_wait's client), else why the connection must be closed.
 *  The callee frees @p w with proxy_wait_free(). */
typedef void (*proxy_wait_done_fn)(void *arg, struct proxy_wait *w, const char *error);

struct proxy_wait {
    evutil_socket_t fd;               /* -1 once taken */
    struct sockaddr_storage balancer; /* the connection's own peer */
    struct sockaddr_storage client;   /* when done: the header's source, or balancer */
    bool implicit_tls;                /* accepted on an implicit TLS listener */
    struct proxy_wait *prev, *next;   /* the server's list */
    /* private */
    struct event *ev, *timer;
    proxy_wait_done_fn done;
    void *arg;
    unsigned char buf[PROXY_V2_MAX];
    size_t have;
};

/** Wait for the header on accepted socket @p fd from @p sa, at most
 *  @p timeout seconds (0: no limit). NULL: no memory (fd closed). */
struct proxy_wait *proxy_wait_new(struct event_base *base, evutil_socket_t fd,
                                  const struct sockaddr *sa, bool implicit_tls, unsigned timeout,
                                  proxy_wait_done_fn done, void *arg);

/** Stop waiting; the socket is closed unless it was taken (fd -1). */
void proxy_wait_free(struct proxy_wait *w);

#endif
