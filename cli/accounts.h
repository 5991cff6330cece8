/*
 * The accounts of --auth-file: one "user:hash" line each, the hash in
 * crypt(3) form, checked with libcrypt. accounts_check() may run on any
 * thread; the rest belongs to the main thread.
 */
#ifndef SMTPD_CLI_ACCOUNTS_H
#define SMTPD_CLI_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>

struct accounts;

/** Read @p path; each hash is checked with a crypt(3) run, but for those
 *  @p prev (the accounts in use, or NULL) already had. @return the
 *  accounts, or NULL with the reason (the file, the line number; never a
 *  hash) in @p why (@p whysz bytes). A file that group or others may read
 *  is loaded, with a warning in @p warn (empty when there is none). */
struct accounts *accounts_load(const char *path, const struct accounts *prev, char *why,
                               size_t whysz, char *warn, size_t warnsz);

/** Whether @p password is @p user's. An unknown user takes as long as the
 *  costliest account (a crypt(3) run of its hash). */
bool accounts_check(const struct accounts *a, const char *user, const char *password);

/** Another reference to @p a (a check in flight keeps the accounts it
 *  began with, whatever SIGHUP loads meanwhile). Main thread only. */
struct accounts *accounts_ref(struct accounts *a);

/** Drop a reference; the last one frees (and wipes the hashes). NULL is
 *  allowed. Main thread only. */
void accounts_free(struct accounts *a);

#endif
