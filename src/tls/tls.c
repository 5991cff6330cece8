/* OpenSSL contexts and failure texts; see tls.h. */
#include "tls.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* "what file: reason" into @p why, with the queue's oldest error, the cause
 * (ENOENT from fopen, "no start line" from the PEM reader), not the "PEM
 * lib" or "system lib" that the layers above add. */
static void first_error(char *why, size_t whysz, const char *what, const char *file)
{
    unsigned long e, first = 0;
    while ((e = ERR_get_error()) != 0)
        if (!first)
            first = e;
    const char *reason = !first                              ? NULL
                         : ERR_GET_LIB(first) == ERR_LIB_SYS ? strerror(ERR_GET_REASON(first))
                                                             : ERR_reason_error_string(first);
    snprintf(why, whysz, "%s %s: %s", what, file, reason ? reason : "unknown error");
}

/* What both sides share: TLS 1.2+ (RFC 8996 retired 1.0 and 1.1, RFC 8314
 * asks for 1.2), no compression (CRIME), no renegotiation, and no 16 KiB
 * read and write buffers held by a connection that is idle. */
static SSL_CTX *ctx_new(const SSL_METHOD *method)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* A peer that closes without close_notify is an EOF (the dialogue says
     * whether anything was cut short; SMTP needs no truncation check of
     * TLS), not an error that would drop replies still owed to it. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* OpenSSL would ask for a passphrase on the terminal, which a server
 * cannot answer: an encrypted key fails at once, and says so. */
static int no_passphrase(char *buf, int size, int rwflag, void *asked)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(bool *)asked = true;
    return 0;
}

SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *why, size_t whysz)
{
    ERR_clear_error();
    SSL_CTX *ctx = ctx_new(TLS_server_method());
    if (!ctx) {
        snprintf(why, whysz, "cannot create a TLS context (out of memory)");
        return NULL;
    }
    bool asked = false;
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        first_error(why, whysz, "cannot load the certificate", cert_file);
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        first_error(why, whysz, "cannot load the private key", key_file);
        if (asked)
            snprintf(why, whysz,
                     "cannot load the private key %s: it is encrypted, and smtpd cannot ask "
                     "for a passphrase (decrypt it: openssl pkey -in KEY -out NEWKEY)",
                     key_file);
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        first_error(why, whysz, "the private key does not match the certificate in", cert_file);
    } else {
        /* The defaults (an in-memory session cache, tickets) are kept. */
        SSL_CTX_set_default_passwd_cb(ctx, NULL);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tls_client_ctx_new(bool verify, const char *ca_file, char *why, size_t whysz)
{
    ERR_clear_error();
    SSL_CTX *ctx = ctx_new(TLS_client_method());
    if (!ctx) {
        snprintf(why, whysz, "cannot create a TLS context (out of memory)");
        return NULL;
    }
    if (!verify)
        return ctx; /* Postfix's "may" and "encrypt": no verification */
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        first_error(why, whysz, "cannot load the CA certificates", ca_file ? ca_file : "(system)");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

SSL *tls_client_ssl_new(SSL_CTX *ctx, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    /* SNI is for names only (RFC 6066 3), never for an address. */
    unsigned char addr[16];
    bool is_addr = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (!is_addr)
        SSL_set_tlsext_host_name(ssl, host);
    if (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        int ok = is_addr ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                         : X509_VERIFY_PARAM_set1_host(param, host, 0);
        if (ok != 1) {
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}

void tls_info_of(const SSL *ssl, struct tls_info *info)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    snprintf(info->protocol, sizeof(info->protocol), "%s", SSL_get_version(ssl));
    snprintf(info->cipher, sizeof(info->cipher), "%s", c ? SSL_CIPHER_get_name(c) : "none");
    info->bits = c ? SSL_CIPHER_get_bits(c, NULL) : 0;
}

void tls_failure(struct bufferevent *bev, char *buf, size_t n)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    /* libevent hands the errors back newest first, and keeps SSL_get_error()'s
     * code among them (no library part): the first real one is the reason. */
    unsigned long e, first = 0;
    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        if (!first && ERR_GET_LIB(e) != 0)
            first = e;
    const char *reason = first ? ERR_reason_error_string(first) : NULL;
    if (vr != X509_V_OK) {
        snprintf(buf, n, "certificate verification failed: %s", X509_verify_cert_error_string(vr));
    } else if (reason) {
        snprintf(buf, n, "%s", reason);
    } else if (first) {
        char text[256];
        ERR_error_string_n(first, text, sizeof(text));
        snprintf(buf, n, "%s", text);
    } else {
        snprintf(buf, n, "the peer closed the connection");
    }
}
