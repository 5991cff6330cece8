/*
 * --relay-auth-file: the smarthost's SMTP AUTH credentials, in the format of
 * Postfix's sasl_passwd, one entry a line:
 *
 *     # comment
 *     smtp.provider.example:587   user@example.com:the password
 *     [mail.example.net]          user2:pw2
 *
 * The key is host[:port] ("[host]:port" and "[v6addr]:port" too); an entry
 * without a port matches any port, one with a port wins over it. The value
 * is username:password, split at the first colon. The file must not be
 * readable by group or others; nothing of it is ever printed.
 */
#ifndef SMTPD_CLI_RELAY_AUTH_H
#define SMTPD_CLI_RELAY_AUTH_H

#include <stddef.h>

struct relay_auth {
    char *username; /* malloc'd */
    char *password; /* malloc'd; relay_auth_free() wipes it */
};

/** Read @p path and take the entry for @p upstream ("host:port" as given on
 *  the command line). @return 0, or -1 with why in @p err (names the file
 *  and the line number, never a line's content). */
int relay_auth_load(const char *path, const char *upstream, struct relay_auth *out, char *err,
                    size_t errsz);

/** Wipe and free what relay_auth_load() filled; a zeroed struct is fine. */
void relay_auth_free(struct relay_auth *a);

#endif
