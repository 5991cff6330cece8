/*
 * The program's AUTH: the accounts of --auth-file (one "user:hash" line
 * each, the hash in crypt(3) form), checked with libcrypt, or
 * --auth-accept-any; and the on_auth callback that uses them.
 */
#ifndef SMTPD_CLI_ACCOUNTS_H
#define SMTPD_CLI_ACCOUNTS_H

#include "smtpd.h"

#include <stdbool.h>
#include <stddef.h>

struct accounts;

/** Read @p path. @return the accounts, or NULL with the reason (the file,
 *  the line number; never a hash) in @p why (@p whysz bytes). A file that
 *  group or others may read is loaded, with a warning in @p warn (empty
 *  when there is none). */
struct accounts *accounts_load(const char *path, char *why, size_t whysz, char *warn,
                               size_t warnsz);

/** Whether @p password is @p user's. Takes as long for an unknown user as
 *  for a known one (a crypt(3) run either way). */
bool accounts_check(const struct accounts *a, const char *user, const char *password);

void accounts_free(struct accounts *a);

/** What on_auth asks: @c accounts (replaced on SIGHUP), or any
 *  credentials when @c accept_any. */
struct auth_policy {
    struct accounts *accounts;
    bool accept_any;
};

/** Set @p h->on_auth to decide with @p p, which must outlive the server.
 *  h->arg is the class's own, so the program's one policy is kept in
 *  accounts.c (one per process; the library keeps no such state). */
void accounts_handler(struct smtpd_handler *h, struct auth_policy *p);

#endif
