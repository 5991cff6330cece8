/*
 * The TLS glue: OpenSSL contexts with the project's defaults, and what a
 * finished handshake or a failed one says. The TLS itself is OpenSSL's and
 * libevent's bufferevent_openssl; nothing here reads or writes records.
 */
#ifndef SMTPD_TLS_H
#define SMTPD_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct bufferevent;

/** A server context: @p cert_file (PEM, the chain after the certificate)
 *  and @p key_file (PEM), TLS 1.2 and 1.3 only, OpenSSL's default cipher
 *  lists, no compression, no renegotiation, buffers released while idle.
 *  @return the context (SSL_CTX_free() it), or NULL with why in @p why. */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *why, size_t whysz);

/** A client context (for the smarthost): the same protocol limits; with
 *  @p verify, the peer's chain is checked against @p ca_file (PEM), or the
 *  system's store when it is NULL. NULL with why in @p why. */
SSL_CTX *tls_client_ctx_new(bool verify, const char *ca_file, char *why, size_t whysz);

/** A client connection of @p ctx to @p host: SNI set and, when the context
 *  verifies, the certificate must name @p host. NULL: out of memory. */
SSL *tls_client_ssl_new(SSL_CTX *ctx, const char *host);

/** What an established connection uses. */
struct tls_info {
    char protocol[16]; /* "TLSv1.3" */
    char cipher[64];   /* "TLS_AES_256_GCM_SHA384" */
    int bits;          /* secret bits of the cipher */
};
void tls_info_of(const SSL *ssl, struct tls_info *info);

/** Why the handshake (or the TLS connection) of @p bev failed: OpenSSL's
 *  errors of that connection, the certificate check's result, or "the
 *  peer closed the connection". Into @p buf of @p n bytes. */
void tls_failure(struct bufferevent *bev, char *buf, size_t n);

#endif
