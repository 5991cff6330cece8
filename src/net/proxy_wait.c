/* Reading a PROXY protocol header off a new connection; see proxy_wait.h. */
#include "proxy_wait.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The header's source address as a socket address (the connection's own
 * when the header names none: LOCAL, UNKNOWN). */
static void set_client(struct proxy_wait *w, const struct proxy_header *h)
{
    w->client = w->balancer;
    if (h->local)
        return;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, h->src_addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(h->src_port);
    } else if (inet_pton(AF_INET6, h->src_addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(h->src_port);
    } else {
        return; /* proxy_parse gives numeric addresses only */
    }
    w->client = ss;
}

static void finish(struct proxy_wait *w, const char *error)
{
    event_del(w->ev);
    if (w->timer)
        event_del(w->timer);
    w->done(w->arg, w, error);
}

/* What the socket holds is looked at first (MSG_PEEK); only bytes that are
 * the header's are taken from it. While the header is incomplete every
 * byte so far is the header's, so they are all taken (a level-triggered
 * read event would otherwise fire again at once). */
static void readable(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_wait *w = arg;
    (void)what;
    ssize_t n = recv(fd, w->buf + w->have, sizeof(w->buf) - w->have, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        finish(w,
               n == 0 ? "closed before its PROXY header" : "a read error before its PROXY header");
        return;
    }
    struct proxy_header h;
    int r = proxy_parse(w->buf, w->have + (size_t)n, &h);
    if (r == PROXY_BAD) {
        finish(w, "not a valid PROXY header");
        return;
    }
    size_t take = r == PROXY_MORE ? (size_t)n : (size_t)r - w->have;
    if (recv(fd, w->buf + w->have, take, 0) != (ssize_t)take) {
        finish(w, "a read error in its PROXY header");
        return;
    }
    w->have += take;
    if (r == PROXY_MORE)
        return;
    set_client(w, &h);
    finish(w, NULL);
}

static void timed_out(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish(arg, "no complete PROXY header in time");
}

struct proxy_wait *proxy_wait_new(struct event_base *base, evutil_socket_t fd,
                                  const struct sockaddr *sa, bool implicit_tls, unsigned timeout,
                                  proxy_wait_done_fn done, void *arg)
{
    struct proxy_wait *w = calloc(1, sizeof(*w));
    if (!w) {
        close(fd);
        return NULL;
    }
    w->fd = fd;
    memcpy(&w->balancer, sa,
           sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    w->implicit_tls = implicit_tls;
    w->done = done;
    w->arg = arg;
    w->ev = event_new(base, fd, EV_READ | EV_PERSIST, readable, w);
    w->timer = timeout ? evtimer_new(base, timed_out, w) : NULL;
    struct timeval tv = {(time_t)timeout, 0};
    if (!w->ev || (timeout && !w->timer) || event_add(w->ev, NULL) != 0 ||
        (w->timer && evtimer_add(w->timer, &tv) != 0)) {
        proxy_wait_free(w);
        return NULL;
    }
    return w;
}

void proxy_wait_free(struct proxy_wait *w)
{
    if (!w)
        return;
    if (w->ev)
        event_free(w->ev);
    if (w->timer)
        event_free(w->timer);
    if (w->fd >= 0)
        close(w->fd);
    free(w);
}
