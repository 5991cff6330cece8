/*
 * What extensions (RFC 5321 2.2) need outside the state machine: the EHLO
 * reply's keyword lines (4.1.1.1), assembled in one place -- the built-in
 * extensions, then each extension command's line, then the handler's
 * on_ehlo hook edits them for the session -- and the check of a handler's
 * command table. struct smtpd_ehlo is public as an opaque type (smtpd.h);
 * it lives on the stack of the EHLO command only.
 */
#ifndef SMTPD_EXTENSION_H
#define SMTPD_EXTENSION_H

#include "smtpd.h"

#define EHLO_MAX_LINES 64
#define EHLO_LINE_MAX 200

struct smtpd_ehlo {
    size_t n;
    char line[EHLO_MAX_LINES][EHLO_LINE_MAX + 1];
};

/** One of the library's own extension commands (STARTTLS...): an entry
 *  like a handler's, looked up after the handler's table (a handler's
 *  command of the same verb replaces it), and offered in EHLO and HELP only
 *  while @c offered says so (NULL: always). Its fn gets a NULL arg. */
struct chan_ext {
    struct smtpd_command cmd;
    bool (*offered)(const struct smtpd_session *s);
    /* Whether its EHLO line is in this session's EHLO reply; NULL: when
     * offered. (XCLIENT answers everyone, 550 to most, and is listed only
     * to those who may use it.) */
    bool (*advertised)(const struct smtpd_session *s);
};

/** The built-in keywords of a server with @p cfg, then the ehlo lines of
 *  @p cmds (@p n of them). */
void ehlo_init(struct smtpd_ehlo *e, const struct smtpd_config *cfg,
               const struct smtpd_command *cmds, size_t n);

/** The whole 250 reply: @p hostname on the first line, then the keyword
 *  lines. @return a malloc'd buffer and its length in @p *len; NULL when out
 *  of memory. */
char *ehlo_reply(const struct smtpd_ehlo *e, const char *hostname, size_t *len);

#endif
