/* Dropping root after binding: setgroups, setgid, setuid, then a check that
 * root cannot be taken back. Fails closed. */
#ifndef SMTPD_CLI_PRIVDROP_H
#define SMTPD_CLI_PRIVDROP_H

#include <stddef.h>

/** Become user @p name with only its primary group. @return 0, or -1 with
 *  the reason in @p err (of @p errsz bytes). */
int privdrop(const char *name, char *err, size_t errsz);

#endif
