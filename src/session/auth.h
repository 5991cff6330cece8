/*
 * AUTH (RFC 4954) as an entry on the extension mechanism: the SASL
 * mechanisms PLAIN (RFC 4616) and LOGIN, their 334 challenges and base64,
 * decoded here; the handler's on_auth only checks the credentials
 * (channel_auth_check). A server whose handler has on_auth puts auth_ext in
 * its chan_params.exts.
 */
#ifndef SMTPD_AUTH_H
#define SMTPD_AUTH_H

#include "extension.h"

/* RFC 4616 2: each field of a PLAIN response is at most 255 octets. */
#define AUTH_FIELD_MAX 255

/* RFC 4954 4 lets an AUTH line outgrow RFC 5321's 512 octets. Ours: a
 * PLAIN response of three whole fields (767 octets, 1024 in base64) after
 * "AUTH PLAIN ", or alone as the answer to a 334. */
#define AUTH_LINE_MAX (11 + 1024)

/* Where a session's SASL exchange is; the channel keeps one per session. */
struct auth_exchange {
    enum { AUTH_IDLE, AUTH_PLAIN, AUTH_LOGIN_USER, AUTH_LOGIN_PASS } step;
    char user[AUTH_FIELD_MAX + 1]; /* LOGIN's user name, until its password */
};

/** The session's exchange (channel.c). */
struct auth_exchange *channel_auth_exchange(struct smtpd_session *s);

extern const struct chan_ext auth_ext;

/** Decode strict base64 (RFC 4648 4, padded, no spaces) of @p len bytes
 *  into @p out of @p outsz bytes. "=" alone is the empty response (RFC 4954
 *  4). @return the decoded length, or -1 when it is not base64 or does not
 *  fit. */
long auth_base64_decode(const char *in, size_t len, unsigned char *out, size_t outsz);

#endif
