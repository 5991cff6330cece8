/*
 * Message data helpers shared by the handlers (smtpd_insert_x_peer() is the
 * public face of this). Pure.
 */
#ifndef SMTPD_MESSAGE_H
#define SMTPD_MESSAGE_H

#include <stddef.h>

/**
 * Insert @p fields (@p flen bytes of whole header lines, each ending in
 * CRLF) into message data before the first empty line (the end of the
 * header section, RFC 5322 2.1), or at the end when there is none; data
 * that does not end in a line end then gets a CRLF first.
 * @return a new buffer (free() it), its length in @p out_len; NULL when out
 *         of memory.
 */
char *message_insert_fields(const char *data, size_t len, const char *fields, size_t flen,
                            size_t *out_len);

#endif
