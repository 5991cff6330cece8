/*
 * The program's on_auth: --auth-accept-any lets anyone in; --auth-file
 * accounts are checked on worker threads, since one crypt(3) run may take
 * 60 ms (yescrypt) and the event loop serves every other session meanwhile.
 * The answer goes back to its session through the pending-answer mechanism.
 */
#ifndef SMTPD_CLI_AUTH_CHECK_H
#define SMTPD_CLI_AUTH_CHECK_H

#include "accounts.h"
#include "smtpd.h"

/* Threads that run crypt(3) checks (started at the first AUTH), and the
 * checks that may wait for them; more get 454 4.7.0 at once. */
#define AUTH_CHECK_THREADS 2
#define AUTH_CHECK_QUEUE 64

/** What on_auth decides with: @c accounts (SIGHUP replaces it), or any
 *  credentials when @c accept_any. */
struct auth_policy {
    struct accounts *accounts;
    bool accept_any;
};

/** Give @p h the program's on_auth, deciding with @p p, on @p base; @p p
 *  and @p base must outlive the server. It also wraps h->on_close, to drop
 *  the answer of a session that ends while its check runs. h->arg stays
 *  the class's own, so this state is the program's one (per process; the
 *  library keeps none). */
void auth_check_handler(struct smtpd_handler *h, struct auth_policy *p, struct event_base *base);

/** Stop the threads and free what is left; after the event loop. */
void auth_check_stop(void);

#endif
