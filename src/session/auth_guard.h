/*
 * Recent AUTH failures per client address, for one server: a client that
 * opens a new session for each guess, and takes a slow answer as a "no",
 * would escape the per-session failure delay. With failures of its address
 * on record, every AUTH answer of that address is held, a success as long
 * as a failure, so the speed of the answer tells nothing. Pure: the caller
 * gives the time; the table is bounded (the oldest entry makes room).
 */
#ifndef SMTPD_AUTH_GUARD_H
#define SMTPD_AUTH_GUARD_H

#include <time.h>

/* Addresses remembered, and how long a failure is held against one. */
#define AUTH_GUARD_SLOTS 256
#define AUTH_GUARD_WINDOW 600

struct auth_guard;

/** A new, empty table; NULL when out of memory. */
struct auth_guard *auth_guard_new(void);
void auth_guard_free(struct auth_guard *g);

/** Failures of @p addr in the last AUTH_GUARD_WINDOW seconds before
 *  @p now (a run of failures, each within the window of the one before). */
unsigned auth_guard_failures(const struct auth_guard *g, const char *addr, time_t now);

/** Count a failure of @p addr at @p now. */
void auth_guard_failed(struct auth_guard *g, const char *addr, time_t now);

#endif
