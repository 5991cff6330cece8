/* The AUTH command and its SASL mechanisms; see auth.h. */
#include "auth.h"
#include "channel.h"
#include "reply.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

/* A PLAIN response: authzid NUL authcid NUL passwd (RFC 4616 2). */
#define PLAIN_MAX (3 * AUTH_FIELD_MAX + 2)

/* LOGIN's challenges, "Username:" and "Password:" in base64. */
#define LOGIN_USER_CHALLENGE "VXNlcm5hbWU6"
#define LOGIN_PASS_CHALLENGE "UGFzc3dvcmQ6"

static bool base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

long auth_base64_decode(const char *in, size_t len, unsigned char *out, size_t outsz)
{
    if (len == 1 && in[0] == '=')
        return 0;
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > outsz)
        return -1;
    /* EVP_DecodeBlock skips spaces and counts padding as data: only the
     * strict form goes to it, and the padding is taken off after. */
    size_t pad = in[len - 1] == '=' ? (in[len - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < len - pad; i++)
        if (!base64_char(in[i]))
            return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    return n < 0 ? -1 : (long)((size_t)n - pad);
}

static enum smtpd_verdict cancelled(struct auth_exchange *x, struct smtpd_session *s)
{
    x->step = AUTH_IDLE;
    smtpd_reply(s, 501, "5.0.0", "Error: authentication cancelled");
    return SMTPD_DONE;
}

static enum smtpd_verdict bad_base64(struct auth_exchange *x, struct smtpd_session *s)
{
    x->step = AUTH_IDLE;
    smtpd_reply(s, 501, "5.5.2", "Error: invalid base64 data");
    return SMTPD_DONE;
}

/* A decoded field the handler may get as a C string: UTF-8 without NUL,
 * not empty, short enough. */
static bool field_ok(const unsigned char *p, size_t n)
{
    return n > 0 && n <= AUTH_FIELD_MAX && !memchr(p, '\0', n) && utf8_valid((const char *)p, n);
}

/* An identity also goes into logs and header fields (X-AuthUser): no
 * control characters at all. */
static bool identity_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return false;
    return field_ok(p, n);
}

static enum smtpd_verdict plain(struct auth_exchange *x, struct smtpd_session *s, const char *b64,
                                size_t len)
{
    unsigned char buf[PLAIN_MAX + 3];
    long n = auth_base64_decode(b64, len, buf, sizeof(buf));
    x->step = AUTH_IDLE;
    if (n < 0)
        return bad_base64(x, s);
    const unsigned char *end = buf + n;
    const unsigned char *nul1 = memchr(buf, '\0', (size_t)n);
    const unsigned char *nul2 = nul1 ? memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1)) : NULL;
    size_t zlen = nul1 ? (size_t)(nul1 - buf) : 0;
    size_t clen = nul2 ? (size_t)(nul2 - nul1 - 1) : 0;
    size_t plen = nul2 ? (size_t)(end - nul2 - 1) : 0;
    enum smtpd_verdict v = SMTPD_DONE;
    if (!nul2 || !identity_ok(nul1 + 1, clen) || !field_ok(nul2 + 1, plen)) {
        smtpd_reply(s, 501, "5.5.2", "Error: malformed PLAIN response");
    } else if (zlen && (zlen != clen || memcmp(buf, nul1 + 1, clen) != 0)) {
        /* Acting for another identity (RFC 4616 2) is not offered. */
        smtpd_reply(s, 535, "5.7.8", "Error: authorization identity refused");
    } else {
        char id[AUTH_FIELD_MAX + 1], pw[AUTH_FIELD_MAX + 1];
        memcpy(id, nul1 + 1, clen);
        id[clen] = '\0';
        memcpy(pw, nul2 + 1, plen);
        pw[plen] = '\0';
        v = channel_auth_check(s, "PLAIN", id, pw);
        OPENSSL_cleanse(pw, sizeof(pw));
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return v;
}

/* One LOGIN response: the user name, then the password. */
static enum smtpd_verdict login(struct auth_exchange *x, struct smtpd_session *s, const char *b64,
                                size_t len)
{
    unsigned char buf[AUTH_FIELD_MAX + 3];
    long n = auth_base64_decode(b64, len, buf, sizeof(buf));
    if (n < 0)
        return bad_base64(x, s);
    enum smtpd_verdict v = SMTPD_DONE;
    if (x->step == AUTH_LOGIN_PASS ? !field_ok(buf, (size_t)n) : !identity_ok(buf, (size_t)n)) {
        x->step = AUTH_IDLE;
        smtpd_reply(s, 501, "5.5.2", "Error: malformed LOGIN response");
    } else if (x->step != AUTH_LOGIN_PASS) {
        memcpy(x->user, buf, (size_t)n);
        x->user[n] = '\0';
        x->step = AUTH_LOGIN_PASS;
        smtpd_reply(s, 334, NULL, LOGIN_PASS_CHALLENGE);
    } else {
        buf[n] = '\0';
        x->step = AUTH_IDLE;
        v = channel_auth_check(s, "LOGIN", x->user, (const char *)buf);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return v;
}

/* A line after our 334: the client's response, or "*" to cancel. */
static enum smtpd_verdict respond(struct auth_exchange *x, struct smtpd_session *s,
                                  const char *line, size_t len)
{
    if (len == 1 && line[0] == '*')
        return cancelled(x, s);
    return x->step == AUTH_PLAIN ? plain(x, s, line, len) : login(x, s, line, len);
}

static bool offered(const struct smtpd_session *s)
{
    return smtpd_session_tls_protocol(s) || channel_config(s)->auth_insecure;
}

/* A known mechanism, with the initial response (RFC 4954 4) or a first
 * challenge: PLAIN's is empty, LOGIN's asks for the user name. */
static enum smtpd_verdict start(struct auth_exchange *x, struct smtpd_session *s, bool is_plain,
                                const char *ir, size_t irlen)
{
    x->step = is_plain ? AUTH_PLAIN : AUTH_LOGIN_USER;
    if (ir)
        return respond(x, s, ir, irlen);
    smtpd_reply(s, 334, NULL, is_plain ? "" : LOGIN_USER_CHALLENGE);
    return SMTPD_DONE;
}

/* RFC 4954 4: AUTH mechanism [initial-response]. */
static enum smtpd_verdict auth(void *arg, struct smtpd_session *s, const char *params, size_t len)
{
    (void)arg;
    struct auth_exchange *x = channel_auth_exchange(s);
    if (x->step != AUTH_IDLE)
        return respond(x, s, params, len);
    const char *sp = memchr(params, ' ', len);
    size_t mlen = sp ? (size_t)(sp - params) : len;
    const char *ir = sp ? sp + 1 : NULL;
    size_t irlen = sp ? len - mlen - 1 : 0;
    bool is_plain = mlen == 5 && strncasecmp(params, "PLAIN", 5) == 0;
    bool is_login = mlen == 5 && strncasecmp(params, "LOGIN", 5) == 0;
    if (!smtpd_session_esmtp(s))
        smtpd_reply(s, 503, "5.5.1", "Error: send EHLO first");
    else if (smtpd_session_auth_identity(s))
        smtpd_reply(s, 503, "5.5.1", "Error: already authenticated");
    else if (!offered(s))
        smtpd_reply(s, 538, "5.7.11", "Error: encryption required for authentication");
    else if (mlen == 0 || (ir && memchr(ir, ' ', irlen)))
        smtpd_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
    else if (!is_plain && !is_login)
        smtpd_reply(s, 504, "5.5.4", "Error: unrecognized authentication type");
    else
        return start(x, s, is_plain, ir, irlen);
    return SMTPD_DONE;
}

const struct chan_ext auth_ext = {
    .cmd = {.verb = "AUTH",
            .fn = auth,
            .ehlo = "AUTH PLAIN LOGIN",
            .help = "AUTH mechanism [initial-response]",
            .flags = SMTPD_CMD_NO_TRANSACTION},
    .offered = offered,
};
