/*
 * MailmanProxy's memory of Mailman's recent answers: which forward-paths
 * it said were (not) its own, so that while Mailman is down a recipient it
 * said was not its own still relays to the smarthost. Bounded: at most cap
 * answers, each for ttl seconds, the oldest forgotten first. No I/O.
 */
#ifndef SMTPD_RECIPIENT_CACHE_H
#define SMTPD_RECIPIENT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct recipient_cache;

/** NULL: no memory. */
struct recipient_cache *recipient_cache_new(size_t cap, unsigned ttl);
void recipient_cache_free(struct recipient_cache *rc);

/** Remember that Mailman said @p addr is (@p mailmans) or is not its own,
 *  at time @p now. Addresses compare case-insensitively. */
void recipient_cache_put(struct recipient_cache *rc, const char *addr, bool mailmans, time_t now);

/** What Mailman said of @p addr within the last ttl seconds: 1 its own, 0
 *  not its own, -1 nothing known. */
int recipient_cache_get(struct recipient_cache *rc, const char *addr, time_t now);

#endif
