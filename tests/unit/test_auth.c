/*
 * Unit tests of AUTH (RFC 4954) in the channel: the base64 decoder, the
 * SASL mechanisms PLAIN (RFC 4616) and LOGIN with and without an initial
 * response, cancelling and bad base64 at each step, what on_auth may answer
 * (at once or later), the failure delay (the fake transport's delay only
 * records the call; the test ends it with channel_delay_done()) and the
 * error budget, where AUTH is offered and allowed, auth_required, STARTTLS
 * forgetting the authentication, MAIL's AUTH parameter, overlong
 * continuations and the debug log, which must never show a password.
 */
#include "auth.h"
#include "auth_guard.h"
#include "channel_fixture.h"
#include "starttls.h"

#include <openssl/evp.h>

#define EHLO_TLS_AUTH                                                                              \
    "250-" HOST "\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-PIPELINING\r\n"                      \
    "250-ENHANCEDSTATUSCODES\r\n250-HELP\r\n250 AUTH PLAIN LOGIN\r\n"
#define EHLO_PLAIN_STARTTLS                                                                        \
    "250-" HOST "\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-PIPELINING\r\n"                      \
    "250-ENHANCEDSTATUSCODES\r\n250-HELP\r\n250 STARTTLS\r\n"
#define EHLO_PLAIN_BOTH                                                                            \
    "250-" HOST "\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-PIPELINING\r\n"                      \
    "250-ENHANCEDSTATUSCODES\r\n250-HELP\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n"
#define OK_235 "235 2.7.0 Authentication successful\r\n"

/* base64 of the responses used below (user "alice", password "s3cret"). */
#define PLAIN_OK "AGFsaWNlAHMzY3JldA=="              /* \0alice\0s3cret */
#define PLAIN_WRONG "AGFsaWNlAHdyb25n"               /* \0alice\0wrong */
#define PLAIN_AUTHZ_SAME "YWxpY2UAYWxpY2UAczNjcmV0"  /* alice\0alice\0s3cret */
#define PLAIN_AUTHZ_OTHER "Ym9iAGFsaWNlAHMzY3JldA==" /* bob\0alice\0s3cret */
#define LOGIN_USER "YWxpY2U="                        /* alice */
#define LOGIN_PASS "czNjcmV0"                        /* s3cret */
#define USER_CHALLENGE "334 VXNlcm5hbWU6\r\n"
#define PASS_CHALLENGE "334 UGFzc3dvcmQ6\r\n"

/* What the test's on_auth does and saw, and the log lines. */
struct auth_rec {
    enum { A_CHECK, A_CODE, A_SILENT, A_PEND } mode;
    int code; /* A_CODE: the answer */
    const char *enh;
    enum smtpd_err reply_rc; /* what smtpd_reply returned for it */
    unsigned calls;
    char mech[16];
    char id[AUTH_FIELD_MAX + 2];
    char pw[AUTH_FIELD_MAX + 2];
    struct smtpd_session *waiting;
    /* on_message */
    unsigned n_msg;
    char *msg_auth; /* its auth_identity, NULL when it had none */
    /* every log line, '\n' after each */
    char *log;
    size_t log_len;
};

static struct auth_rec *ar_of(void *arg)
{
    return FX_OF(arg)->user;
}

static void collect_log(void *arg, enum smtpd_log_level level, const char *line)
{
    struct auth_rec *a = arg;
    (void)level;
    size_t n = strlen(line);
    a->log = realloc(a->log, a->log_len + n + 2);
    assert_non_null(a->log);
    memcpy(a->log + a->log_len, line, n);
    a->log_len += n;
    a->log[a->log_len++] = '\n';
    a->log[a->log_len] = '\0';
}

static enum smtpd_verdict test_on_auth(void *arg, struct smtpd_session *s, const char *mechanism,
                                       const char *identity, const char *password)
{
    struct auth_rec *a = ar_of(arg);
    a->calls++;
    assert_true(strlen(identity) <= AUTH_FIELD_MAX && strlen(password) <= AUTH_FIELD_MAX);
    snprintf(a->mech, sizeof(a->mech), "%s", mechanism);
    snprintf(a->id, sizeof(a->id), "%s", identity);
    snprintf(a->pw, sizeof(a->pw), "%s", password);
    /* Not authenticated while it is being decided. */
    assert_null(smtpd_session_auth_identity(s));
    switch (a->mode) {
    case A_CHECK:
        if (strcmp(identity, "alice") == 0 && strcmp(password, "s3cret") == 0)
            assert_int_equal(smtpd_reply(s, 235, NULL, NULL), SMTPD_OK);
        else
            assert_int_equal(smtpd_reply(s, 535, "5.7.8", "Bad credentials"), SMTPD_OK);
        /* One answer only. */
        assert_int_equal(smtpd_reply(s, 235, NULL, NULL), SMTPD_ERR_STATE);
        return SMTPD_DONE;
    case A_CODE:
        a->reply_rc = smtpd_reply(s, a->code, a->enh, NULL);
        return SMTPD_DONE;
    case A_SILENT:
        return SMTPD_DONE;
    case A_PEND:
        a->waiting = s;
        return SMTPD_PENDING;
    }
    return SMTPD_DONE;
}

static enum smtpd_verdict auth_on_message(void *arg, struct smtpd_session *s,
                                          const struct smtpd_message *m)
{
    struct auth_rec *a = ar_of(arg);
    a->n_msg++;
    free(a->msg_auth);
    a->msg_auth = m->auth_identity ? xstrdup(m->auth_identity) : NULL;
    return on_message(arg, s, m);
}

static const struct chan_ext *const auth_only[] = {&auth_ext};
static const struct chan_ext *const tls_and_auth[] = {&starttls_ext, &auth_ext};

/* A fixture whose handler has on_auth and the AUTH entry, logging at debug
 * level into its auth_rec. */
static struct fx *auth_fx(void)
{
    struct fx *f = fx_new();
    struct auth_rec *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    f->user = a;
    f->params.exts = auth_only;
    f->params.n_exts = 1;
    f->params.handler.on_auth = test_on_auth;
    f->params.handler.on_message = auth_on_message;
    f->params.cfg.log = collect_log;
    f->params.cfg.log_arg = a;
    f->params.cfg.log_level = SMTPD_LOG_DEBUG;
    return f;
}

static void auth_fx_free(struct fx *f)
{
    struct auth_rec *a = f->user;
    fx_free(f); /* on_close may still log */
    free(a->msg_auth);
    free(a->log);
    free(a);
}

static int setup_auth(void **state)
{
    *state = auth_fx();
    return 0;
}

static int teardown_auth(void **state)
{
    auth_fx_free(*state);
    return 0;
}

/* Start as implicit TLS does (the handshake before the greeting). */
static void start_tls(struct fx *f)
{
    const struct chan_addrs addrs = {PEER, PEER_PORT, LOCAL, LOCAL_PORT, NULL, 0};
    f->s = channel_new(&f->params, &fake_transport, &f->io, &addrs, 7);
    assert_non_null(f->s);
    channel_tls_started(f->s, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256);
    channel_start(f->s);
    expect_out(f, GREETING);
}

/* A TLS session after EHLO, whose reply offers AUTH. */
static void tls_ehlo(struct fx *f)
{
    start_tls(f);
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_TLS_AUTH);
}

/* The answer to what was fed: when it is held for the failure delay,
 * nothing is out yet and the delay ends now. */
static void end_delay(struct fx *f, unsigned n_delay_before)
{
    if (f->io.n_delay > n_delay_before) {
        assert_int_equal(f->io.n_delay, n_delay_before + 1);
        expect_out(f, "");
        channel_delay_done(f->s);
    }
}

/* ---- base64 ---- */

static void test_base64_decode(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t outsz;
        long want; /* -1: refused */
        const char *out;
    } rows[] = {
        {"YWxpY2U=", 64, 5, "alice"},
        {"YWJj", 64, 3, "abc"},
        {"YWI=", 64, 2, "ab"},
        {"YQ==", 64, 1, "a"},
        {"AGFsaWNlAHMzY3JldA==", 64, 13, "\0alice\0s3cret"},
        {"+/+/", 64, 3, "\xfb\xff\xbf"},
        {"=", 64, 0, ""},      /* the empty response (RFC 4954 4) */
        {"=", 0, 0, ""},       /* fits in nothing */
        {"", 64, -1, NULL},    /* no response at all */
        {"YWJ", 64, -1, NULL}, /* not a multiple of 4 */
        {"YWJjZ", 64, -1, NULL},
        {"YQ=", 64, -1, NULL},
        {"YW*j", 64, -1, NULL}, /* not in the alphabet */
        {"YW j", 64, -1, NULL}, /* no spaces */
        {"YWJ\xff", 64, -1, NULL},
        {"YW-_", 64, -1, NULL}, /* base64url is not base64 */
        {"Y=Jj", 64, -1, NULL}, /* padding only at the end */
        {"YQ=A", 64, -1, NULL},
        {"Y===", 64, -1, NULL},
        {"====", 64, -1, NULL},
        {"==", 64, -1, NULL},
        {"YWJjZA==YWJj", 64, -1, NULL}, /* padding in the middle */
        {"YWJj", 3, 3, "abc"},          /* fits exactly */
        {"YWJj", 2, -1, NULL},          /* too long for the buffer */
        {"YWJjZGVm", 5, -1, NULL},
    };
    for (size_t i = 0; i < N_ROWS(rows); i++) {
        unsigned char out[64];
        memset(out, 0xAA, sizeof(out));
        long n = auth_base64_decode(rows[i].in, strlen(rows[i].in), out, rows[i].outsz);
        if (n != rows[i].want) {
            print_error("row %zu \"%s\" (outsz %zu): got %ld, expected %ld\n", i, rows[i].in,
                        rows[i].outsz, n, rows[i].want);
            fail();
        }
        if (n > 0)
            unit_check_bytes(rows[i].in, (const char *)out, (size_t)n, rows[i].out, (size_t)n);
        /* Nothing written past what fits. */
        for (size_t k = rows[i].outsz; k < sizeof(out); k++)
            unit_assert(rows[i].in, out[k] == 0xAA);
    }
}

/* ---- PLAIN ---- */

static void expect_authenticated(struct fx *f, const char *mech)
{
    struct auth_rec *a = f->user;
    assert_string_equal(a->mech, mech);
    assert_string_equal(a->id, "alice");
    assert_string_equal(a->pw, "s3cret");
    assert_string_equal(smtpd_session_auth_identity(f->s), "alice");
    /* The message handed on says who submitted it. */
    start_data(f);
    dialog(f, "Subject: t\r\n\r\nbody\r\n.\r\n", "250 2.0.0");
    assert_int_equal(a->n_msg, 1);
    assert_string_equal(a->msg_auth, "alice");
    assert_int_equal(f->io.n_delay, 0);
}

static void test_plain_initial_response(void **state)
{
    struct fx *f = *state;
    tls_ehlo(f);
    assert_null(smtpd_session_auth_identity(f->s));
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    expect_out(f, OK_235);
    assert_int_equal(((struct auth_rec *)f->user)->calls, 1);
    expect_authenticated(f, "PLAIN");
}

static void test_plain_challenge(void **state)
{
    struct fx *f = *state;
    tls_ehlo(f);
    feed_all(f, "auth plain\r\n"); /* verb and mechanism in any case */
    expect_out(f, "334 \r\n");
    assert_int_equal(((struct auth_rec *)f->user)->calls, 0);
    feed_all(f, PLAIN_OK "\r\n");
    expect_out(f, OK_235);
    expect_authenticated(f, "PLAIN");
}

/* A message without AUTH has no identity. */
static void test_message_without_auth(void **state)
{
    struct fx *f = *state;
    tls_ehlo(f);
    start_data(f);
    dialog(f, "\r\nbody\r\n.\r\n", "250 2.0.0");
    struct auth_rec *a = f->user;
    assert_int_equal(a->n_msg, 1);
    assert_null(a->msg_auth);
    assert_null(smtpd_session_auth_identity(f->s));
}

/* PLAIN responses, each as the initial response and after the 334. */
static void test_plain_responses(void **state)
{
    (void)state;
    static const struct {
        const char *name, *b64, *reply;
        unsigned calls;
        bool authenticated;
    } rows[] = {
        {"authzid = authcid", PLAIN_AUTHZ_SAME, "235 2.7.0", 1, true},
        {"authzid another", PLAIN_AUTHZ_OTHER, "535 5.7.8", 0, false},
        {"wrong password", PLAIN_WRONG, "535 5.7.8", 1, false},
        {"one NUL", "YWxpY2UAczNjcmV0", "501 5.5.2", 0, false},    /* alice\0s3cret */
        {"no NUL", "YWxpY2U=", "501 5.5.2", 0, false},             /* alice */
        {"empty user", "AABzM2NyZXQ=", "501 5.5.2", 0, false},     /* \0\0s3cret */
        {"empty password", "AGFsaWNlAA==", "501 5.5.2", 0, false}, /* \0alice\0 */
        {"control in user", "AGFsAWljZQBzM2NyZXQ=", "501 5.5.2", 0, false},
        {"NUL in password", "AGFsaWNlAHMzAGNyZXQ=", "501 5.5.2", 0, false}, /* s3\0cret */
        {"invalid UTF-8", "AGFs/2ljZQBzM2NyZXQ=", "501 5.5.2", 0, false},
        {"empty response", "=", "501 5.5.2", 0, false},
        {"bad base64", "AGFsaWNl!HMzY3JldA==", "501 5.5.2", 0, false},
        {"bad length", "AGFsaWNlAHMzY3JldA=", "501 5.5.2", 0, false},
    };
    for (size_t i = 0; i < N_ROWS(rows); i++) {
        for (int ir = 0; ir < 2; ir++) {
            struct fx *f = auth_fx();
            char ctx[96];
            snprintf(ctx, sizeof(ctx), "%s (%s)", rows[i].name,
                     ir ? "initial response" : "after 334");
            f->ctx = ctx;
            tls_ehlo(f);
            char line[128];
            if (ir) {
                snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", rows[i].b64);
            } else {
                dialog(f, "AUTH PLAIN\r\n", "334 *");
                snprintf(line, sizeof(line), "%s\r\n", rows[i].b64);
            }
            feed_all(f, line);
            end_delay(f, 0);
            expect_replies(f, rows[i].reply);
            struct auth_rec *a = f->user;
            unit_assert(ctx, a->calls == rows[i].calls);
            unit_assert(ctx, (smtpd_session_auth_identity(f->s) != NULL) == rows[i].authenticated);
            /* A failed exchange is over: the next line is a command. */
            dialog(f, "NOOP\r\n", "250 2.0.0");
            auth_fx_free(f);
        }
    }
}

/* ---- LOGIN ---- */

static void test_login_challenges(void **state)
{
    struct fx *f = *state;
    tls_ehlo(f);
    feed_all(f, "AUTH LOGIN\r\n");
    expect_out(f, USER_CHALLENGE);
    feed_all(f, LOGIN_USER "\r\n");
    expect_out(f, PASS_CHALLENGE);
    assert_int_equal(((struct auth_rec *)f->user)->calls, 0);
    feed_all(f, LOGIN_PASS "\r\n");
    expect_out(f, OK_235);
    assert_int_equal(((struct auth_rec *)f->user)->calls, 1);
    expect_authenticated(f, "LOGIN");
}

static void test_login_initial_response(void **state)
{
    struct fx *f = *state;
    tls_ehlo(f);
    feed_all(f, "AUTH LOGIN " LOGIN_USER "\r\n");
    expect_out(f, PASS_CHALLENGE);
    feed_all(f, LOGIN_PASS "\r\n");
    expect_out(f, OK_235);
    expect_authenticated(f, "LOGIN");
}

/* The longest identity and password on_auth may get (255 bytes each). */
static void test_login_longest_fields(void **state)
{
    struct fx *f = *state;
    tls_ehlo(f);
    for (int field = 0; field < 2; field++) {
        /* 255 'x' (0x78) are 85 groups of "eHh4". */
        char line[AUTH_FIELD_MAX / 3 * 4 + 3];
        for (size_t i = 0; i < AUTH_FIELD_MAX / 3; i++)
            memcpy(line + 4 * i, "eHh4", 4);
        memcpy(line + AUTH_FIELD_MAX / 3 * 4, "\r\n", 3);
        if (field == 0) {
            dialog(f, "AUTH LOGIN\r\n", "334");
            feed_all(f, line);
            expect_out(f, PASS_CHALLENGE);
        } else {
            ((struct auth_rec *)f->user)->mode = A_SILENT;
            feed_all(f, line);
        }
    }
    struct auth_rec *a = f->user;
    assert_int_equal(a->calls, 1);
    assert_int_equal(strlen(a->id), AUTH_FIELD_MAX);
    assert_int_equal(strlen(a->pw), AUTH_FIELD_MAX);
    end_delay(f, 0);
    expect_replies(f, "535 5.7.8");
    /* One byte more is refused before on_auth: 256 'x' in base64. */
    char line[400];
    size_t o = 0;
    for (size_t i = 0; i < AUTH_FIELD_MAX / 3; i++, o += 4)
        memcpy(line + o, "eHh4", 4);
    memcpy(line + o, "eA==\r\n", 7);
    dialog(f, "AUTH LOGIN\r\n", "334");
    feed_all(f, line);
    expect_replies(f, "501 5.5.2");
    assert_int_equal(a->calls, 1);
}

/* The longest PLAIN response, three 255-byte fields (1024 characters of
 * base64), passes the line limit as AUTH's initial response and as the
 * answer to its 334 (RFC 4954 4). */
static void test_plain_longest_response(void **state)
{
    struct fx *f = *state;
    tls_ehlo(f);
    /* authzid = authcid = 255 'x', password 255 'y': "x..x\0x..x\0y..y". */
    unsigned char raw[3 * AUTH_FIELD_MAX + 2];
    memset(raw, 'x', 2 * AUTH_FIELD_MAX + 1);
    raw[AUTH_FIELD_MAX] = '\0';
    raw[2 * AUTH_FIELD_MAX + 1] = '\0';
    memset(raw + 2 * AUTH_FIELD_MAX + 2, 'y', AUTH_FIELD_MAX);
    char b64[1100];
    int n = EVP_EncodeBlock((unsigned char *)b64, raw, (int)sizeof(raw));
    assert_int_equal(n, 1024);
    struct auth_rec *a = f->user;
    for (int challenge = 0; challenge < 2; challenge++) {
        char line[1200];
        snprintf(line, sizeof(line), "%s%s\r\n", challenge ? "" : "AUTH PLAIN ", b64);
        if (challenge)
            dialog(f, "AUTH PLAIN\r\n", "334");
        a->mode = A_SILENT;
        unsigned delays = f->io.n_delay;
        feed_all(f, line);
        end_delay(f, delays);
        expect_replies(f, "535 5.7.8");
        assert_int_equal(a->calls, challenge + 1);
        assert_int_equal(strlen(a->id), AUTH_FIELD_MAX);
        assert_int_equal(strlen(a->pw), AUTH_FIELD_MAX);
    }
}

/* ---- failures per address (auth_guard) ---- */

static void test_guard_counts_per_address(void **state)
{
    (void)state;
    struct auth_guard *g = auth_guard_new();
    assert_non_null(g);
    assert_int_equal(auth_guard_failures(g, "192.0.2.1", 1000), 0);
    auth_guard_failed(g, "192.0.2.1", 1000);
    auth_guard_failed(g, "192.0.2.1", 1000 + AUTH_GUARD_WINDOW - 1);
    assert_int_equal(auth_guard_failures(g, "192.0.2.1", 1000 + AUTH_GUARD_WINDOW), 2);
    assert_int_equal(auth_guard_failures(g, "192.0.2.2", 1000), 0);
    /* A window after the last failure the address starts afresh. */
    time_t later = 1000 + 2 * AUTH_GUARD_WINDOW;
    assert_int_equal(auth_guard_failures(g, "192.0.2.1", later), 0);
    auth_guard_failed(g, "192.0.2.1", later);
    assert_int_equal(auth_guard_failures(g, "192.0.2.1", later), 1);
    /* A full table makes room with the oldest entry. */
    char addr[32];
    for (int i = 0; i < AUTH_GUARD_SLOTS; i++) {
        snprintf(addr, sizeof(addr), "198.51.100.%d", i);
        auth_guard_failed(g, addr, later + 1 + i);
    }
    assert_int_equal(auth_guard_failures(g, "192.0.2.1", later + 1), 0);
    assert_int_equal(auth_guard_failures(g, "198.51.100.255", later + AUTH_GUARD_SLOTS), 1);
    auth_guard_free(g);
}

/* A session from an address that failed before waits for its answer, a
 * success too, as long as the address's failures say. */
static void test_guard_delays_other_sessions(void **state)
{
    struct fx *f = *state;
    f->params.auth_guard = auth_guard_new();
    assert_non_null(f->params.auth_guard);
    tls_ehlo(f);
    struct auth_rec *a = f->user;
    a->mode = A_SILENT;
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    assert_int_equal(f->io.delay_ms, 1000);
    channel_delay_done(f->s);
    expect_replies(f, "535 5.7.8");
    channel_free(f->s);
    f->s = NULL;
    /* The next session of the address: its first failure waits 2 s, and
     * then its success 2 s too. */
    tls_ehlo(f);
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    assert_int_equal(f->io.delay_ms, 2000);
    channel_delay_done(f->s);
    expect_replies(f, "535 5.7.8");
    a->mode = A_CHECK;
    unsigned delays = f->io.n_delay;
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    assert_int_equal(f->io.n_delay, delays + 1);
    assert_int_equal(f->io.delay_ms, 2000);
    expect_out(f, "");
    assert_string_equal(smtpd_session_auth_identity(f->s), "alice");
    channel_delay_done(f->s);
    expect_out(f, OK_235);
    auth_guard_free(f->params.auth_guard);
}

/* ---- cancel and bad base64 at each step ---- */

static const struct {
    const char *name, *before, *replies; /* the exchange up to the step */
    const char *ir_prefix;               /* or: the step is AUTH's initial response */
} steps[] = {
    {"PLAIN response", "AUTH PLAIN\r\n", "334", NULL},
    {"LOGIN user name", "AUTH LOGIN\r\n", "334", NULL},
    {"LOGIN password", "AUTH LOGIN\r\n" LOGIN_USER "\r\n", "334|334", NULL},
    {"LOGIN password after initial response", "AUTH LOGIN " LOGIN_USER "\r\n", "334", NULL},
    {"PLAIN initial response", "", "", "AUTH PLAIN "},
    {"LOGIN initial response", "", "", "AUTH LOGIN "},
};

static void run_steps(const char *response, const char *reply)
{
    for (size_t i = 0; i < N_ROWS(steps); i++) {
        struct fx *f = auth_fx();
        f->ctx = steps[i].name;
        tls_ehlo(f);
        if (steps[i].before[0])
            dialog(f, steps[i].before, steps[i].replies);
        char line[128];
        snprintf(line, sizeof(line), "%s%s\r\n", steps[i].ir_prefix ? steps[i].ir_prefix : "",
                 response);
        dialog(f, line, reply);
        struct auth_rec *a = f->user;
        unit_assert(f->ctx, a->calls == 0);
        unit_assert(f->ctx, f->io.n_delay == 0);
        /* The exchange is over: a command again, and AUTH may start anew. */
        dialog(f, "NOOP\r\n", "250 2.0.0");
        feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
        expect_out(f, OK_235);
        unit_assert(f->ctx, a->calls == 1);
        auth_fx_free(f);
    }
}

static void test_cancel_each_step(void **state)
{
    (void)state;
    run_steps("*", "501 5.0.0");
}

static void test_bad_base64_each_step(void **state)
{
    (void)state;
    run_steps("YW!j", "501 5.5.2");
    run_steps("YWJ", "501 5.5.2");
}

/* ---- what on_auth answers ---- */

static void test_silence_refuses(void **state)
{
    struct fx *f = *state;
    struct auth_rec *a = f->user;
    a->mode = A_SILENT;
    tls_ehlo(f);
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    end_delay(f, 0);
    expect_replies(f, "535 5.7.8");
    assert_int_equal(a->calls, 1);
    assert_int_equal(f->io.n_delay, 1);
    assert_null(smtpd_session_auth_identity(f->s));
}

static void test_answer_codes(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *enh;
        enum smtpd_err rc;
        const char *reply;
        bool delayed, closed, authenticated;
    } rows[] = {
        {235, NULL, SMTPD_OK, "235 2.7.0", false, false, true},
        {235, "2.0.0", SMTPD_OK, "235 2.0.0", false, false, true},
        {535, NULL, SMTPD_OK, "535 5.7.8", true, false, false},
        {454, "4.7.0", SMTPD_OK, "454 4.7.0", true, false, false},
        {550, "5.7.1", SMTPD_OK, "550 5.7.1", true, false, false},
        {421, "4.7.0", SMTPD_OK, "421 4.7.0", false, true, false},
        /* Other 2xx and any 3xx are no answer to AUTH: silence, 535. */
        {250, NULL, SMTPD_ERR_REPLY, "535 5.7.8", true, false, false},
        {220, NULL, SMTPD_ERR_REPLY, "535 5.7.8", true, false, false},
        {299, NULL, SMTPD_ERR_REPLY, "535 5.7.8", true, false, false},
        {334, NULL, SMTPD_ERR_REPLY, "535 5.7.8", true, false, false},
        {354, NULL, SMTPD_ERR_REPLY, "535 5.7.8", true, false, false},
        {199, NULL, SMTPD_ERR_REPLY, "535 5.7.8", true, false, false},
        {600, NULL, SMTPD_ERR_REPLY, "535 5.7.8", true, false, false},
    };
    for (size_t i = 0; i < N_ROWS(rows); i++) {
        struct fx *f = auth_fx();
        char ctx[32];
        snprintf(ctx, sizeof(ctx), "answer %d", rows[i].code);
        f->ctx = ctx;
        struct auth_rec *a = f->user;
        a->mode = A_CODE;
        a->code = rows[i].code;
        a->enh = rows[i].enh;
        tls_ehlo(f);
        feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
        unit_assert(ctx, a->reply_rc == rows[i].rc);
        unit_assert(ctx, f->io.n_delay == (rows[i].delayed ? 1u : 0u));
        end_delay(f, 0);
        expect_replies(f, rows[i].reply);
        unit_assert(ctx, f->io.n_close == (rows[i].closed ? 1u : 0u));
        unit_assert(ctx, (smtpd_session_auth_identity(f->s) != NULL) == rows[i].authenticated);
        if (!rows[i].closed)
            dialog(f, "NOOP\r\n", "250 2.0.0");
        auth_fx_free(f);
    }
}

/* A late answer: nothing is read meanwhile, then it is applied. */
static void test_pending_then_accepted(void **state)
{
    struct fx *f = *state;
    struct auth_rec *a = f->user;
    a->mode = A_PEND;
    tls_ehlo(f);
    const char *in = "AUTH PLAIN " PLAIN_OK "\r\nMAIL FROM:<a@b>\r\n";
    assert_int_equal(feed(f, in), strlen("AUTH PLAIN " PLAIN_OK "\r\n"));
    expect_out(f, "");
    assert_non_null(a->waiting);
    assert_int_equal(channel_phase(f->s), PHASE_WAIT);
    assert_int_equal(feed(f, "MAIL FROM:<a@b>\r\n"), 0);
    assert_int_equal(f->rec.n_mail, 0);
    assert_null(smtpd_session_auth_identity(f->s));
    assert_int_equal(f->io.n_resume, 0);
    assert_int_equal(smtpd_reply(a->waiting, 250, NULL, NULL), SMTPD_ERR_REPLY);
    expect_out(f, "");
    assert_int_equal(smtpd_reply(a->waiting, 235, NULL, NULL), SMTPD_OK);
    expect_out(f, OK_235);
    assert_int_equal(f->io.n_resume, 1);
    assert_int_equal(smtpd_reply(a->waiting, 235, NULL, NULL), SMTPD_ERR_STATE);
    assert_string_equal(smtpd_session_auth_identity(f->s), "alice");
    assert_int_equal(channel_phase(f->s), PHASE_COMMAND);
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
    assert_int_equal(f->io.n_delay, 0);
}

/* A late refusal is held for the failure delay as well. */
static void test_pending_then_refused(void **state)
{
    struct fx *f = *state;
    struct auth_rec *a = f->user;
    a->mode = A_PEND;
    tls_ehlo(f);
    feed_all(f, "AUTH LOGIN " LOGIN_USER "\r\n");
    expect_out(f, PASS_CHALLENGE);
    feed_all(f, LOGIN_PASS "\r\n");
    assert_non_null(a->waiting);
    assert_string_equal(a->mech, "LOGIN");
    assert_int_equal(smtpd_reply(a->waiting, 535, NULL, "no"), SMTPD_OK);
    assert_int_equal(f->io.n_delay, 1);
    assert_int_equal(f->io.delay_ms, 1000);
    expect_out(f, "");
    assert_int_equal(feed(f, "NOOP\r\n"), 0);
    channel_delay_done(f->s);
    expect_out(f, "535 5.7.8 no\r\n");
    dialog(f, "NOOP\r\n", "250 2.0.0");
    assert_null(smtpd_session_auth_identity(f->s));
}

/* The session closes while the answer is pending: on_close cancels it. */
static void test_pending_then_closed(void **state)
{
    struct fx *f = *state;
    struct auth_rec *a = f->user;
    a->mode = A_PEND;
    tls_ehlo(f);
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    assert_non_null(a->waiting);
    channel_lost(f->s, "eof");
    channel_free(f->s);
    f->s = NULL;
    assert_int_equal(f->rec.n_close, 1);
    expect_out(f, "");
}

/* ---- the failure delay and the error budget ---- */

static void test_failure_delay_grows(void **state)
{
    struct fx *f = *state;
    static const unsigned want[] = {1000, 2000, 4000, 4000};
    tls_ehlo(f);
    for (unsigned i = 0; i < N_ROWS(want); i++) {
        const char *in = "AUTH PLAIN " PLAIN_WRONG "\r\nNOOP\r\n";
        assert_int_equal(feed(f, in), strlen("AUTH PLAIN " PLAIN_WRONG "\r\n"));
        assert_int_equal(f->io.n_delay, i + 1);
        assert_int_equal(f->io.delay_ms, want[i]);
        /* Nothing is written, nothing read until the delay is over. */
        expect_out(f, "");
        assert_int_equal(channel_phase(f->s), PHASE_WAIT);
        assert_int_equal(feed(f, "NOOP\r\n"), 0);
        unsigned resumes = f->io.n_resume;
        channel_delay_done(f->s);
        expect_out(f, "535 5.7.8 Bad credentials\r\n");
        assert_int_equal(f->io.n_resume, resumes + 1);
        channel_delay_done(f->s); /* once only */
        expect_out(f, "");
        dialog(f, "NOOP\r\n", "250 2.0.0");
    }
    assert_int_equal(f->io.n_close, 0);
    /* Success is answered at once. */
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    expect_out(f, OK_235);
    assert_int_equal(f->io.n_delay, N_ROWS(want));
}

static void test_failure_delay_scaled(void **state)
{
    struct fx *f = *state;
    f->params.cfg.auth_failure_delay = 300;
    static const unsigned want[] = {300, 600, 1200, 1200, 1200};
    tls_ehlo(f);
    for (unsigned i = 0; i < N_ROWS(want); i++) {
        feed_all(f, "AUTH PLAIN " PLAIN_WRONG "\r\n");
        assert_int_equal(f->io.delay_ms, want[i]);
        end_delay(f, i);
        expect_replies(f, "535 5.7.8");
    }
}

static void test_no_failure_delay(void **state)
{
    struct fx *f = *state;
    f->params.cfg.auth_failure_delay = 0;
    tls_ehlo(f);
    dialog(f, "AUTH PLAIN " PLAIN_WRONG "\r\nAUTH LOGIN " LOGIN_USER "\r\nd3Jvbmc=\r\n",
           "535 5.7.8|334|535 5.7.8");
    ((struct auth_rec *)f->user)->mode = A_SILENT;
    dialog(f, "AUTH PLAIN " PLAIN_OK "\r\n", "535 5.7.8");
    assert_int_equal(f->io.n_delay, 0);
}

/* Each failure is an error: at max_errors, the last 535 then 421 and close. */
static void test_failures_spend_error_budget(void **state)
{
    struct fx *f = *state;
    f->params.cfg.max_errors = 3;
    tls_ehlo(f);
    for (unsigned i = 0; i < 3; i++) {
        feed_all(f, "AUTH PLAIN " PLAIN_WRONG "\r\n");
        assert_int_equal(f->io.n_delay, i + 1);
        expect_out(f, "");
        assert_int_equal(f->io.n_close, 0);
        channel_delay_done(f->s);
        expect_replies(f, i < 2 ? "535 5.7.8" : "535 5.7.8|421 4.7.0");
    }
    assert_int_equal(f->io.n_close, 1);
    assert_int_equal(channel_phase(f->s), PHASE_CLOSED);
}

/* Other bad commands and failures share one budget. */
static void test_failures_and_errors_share_budget(void **state)
{
    struct fx *f = *state;
    f->params.cfg.max_errors = 2;
    tls_ehlo(f);
    dialog(f, "BOGUS\r\n", "500 5.5.1");
    feed_all(f, "AUTH LOGIN " LOGIN_USER "\r\n");
    expect_out(f, PASS_CHALLENGE);
    feed_all(f, "d3Jvbmc=\r\n");
    expect_out(f, "");
    channel_delay_done(f->s);
    expect_replies(f, "535 5.7.8|421 4.7.0");
    assert_int_equal(f->io.n_close, 1);
}

/* ---- where AUTH is offered and allowed ---- */

static void test_not_offered_before_tls(void **state)
{
    struct fx *f = *state;
    f->params.exts = tls_and_auth;
    f->params.n_exts = 2;
    fx_start(f);
    expect_out(f, GREETING);
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_PLAIN_STARTTLS);
    dialog(f, "AUTH PLAIN " PLAIN_OK "\r\nAUTH LOGIN\r\n", "538 5.7.11|538 5.7.11");
    assert_int_equal(((struct auth_rec *)f->user)->calls, 0);
    assert_null(smtpd_session_auth_identity(f->s));
    /* After STARTTLS it is offered (and STARTTLS no more). */
    dialog(f, "STARTTLS\r\n", "220 2.0.0");
    channel_tls_started(f->s, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256);
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_TLS_AUTH);
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    expect_out(f, OK_235);
}

static void test_insecure_offered_in_plaintext(void **state)
{
    struct fx *f = *state;
    f->params.exts = tls_and_auth;
    f->params.n_exts = 2;
    f->params.cfg.auth_insecure = true;
    fx_start(f);
    expect_out(f, GREETING);
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_PLAIN_BOTH);
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    expect_out(f, OK_235);
    assert_string_equal(smtpd_session_auth_identity(f->s), "alice");
    start_data(f);
    dialog(f, "\r\nbody\r\n.\r\n", "250 2.0.0");
    assert_string_equal(((struct auth_rec *)f->user)->msg_auth, "alice");
    assert_null(f->rec.msg.tls_protocol);
}

/* Without on_auth there is no AUTH, even with the entry. */
static void test_no_on_auth_no_keyword(void **state)
{
    struct fx *f = *state;
    f->params.handler.on_auth = NULL;
    f->params.exts = NULL;
    f->params.n_exts = 0;
    start_tls(f);
    feed_all(f, "EHLO client.example\r\n");
    assert_null(strstr(f->io.out, "AUTH"));
    out_clear(f);
    dialog(f, "AUTH PLAIN " PLAIN_OK "\r\n", "500 5.5.1");
}

static void test_auth_required(void **state)
{
    struct fx *f = *state;
    f->params.cfg.auth_required = true;
    tls_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", "530 5.7.0|530 5.7.0|530 5.7.0");
    assert_int_equal(f->rec.n_mail, 0);
    dialog(f, "NOOP\r\nRSET\r\nVRFY x\r\n", "250 2.0.0|250 2.0.0|252 *");
    /* A failed AUTH changes nothing. */
    feed_all(f, "AUTH PLAIN " PLAIN_WRONG "\r\n");
    end_delay(f, 0);
    expect_replies(f, "535 5.7.8");
    dialog(f, "MAIL FROM:<a@b>\r\n", "530 5.7.0");
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    expect_out(f, OK_235);
    start_data(f);
    dialog(f, "\r\nbody\r\n.\r\n", "250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
}

/* The 530s count as errors: a client cannot try for ever. */
static void test_auth_required_counts_errors(void **state)
{
    struct fx *f = *state;
    f->params.cfg.auth_required = true;
    f->params.cfg.max_errors = 2;
    tls_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\n", "530 5.7.0|530 5.7.0|421 4.7.0");
    assert_int_equal(f->io.n_close, 1);
}

static void test_sequence_errors(void **state)
{
    (void)state;
    static const struct {
        const char *name, *before, *before_replies, *auth, *reply;
    } rows[] = {
        {"before any greeting", "", "", "AUTH PLAIN " PLAIN_OK, "503"},
        {"after HELO", "HELO client.example\r\n", "250 *", "AUTH PLAIN " PLAIN_OK, "503"},
        {"after HELO, no response", "HELO client.example\r\n", "250 *", "AUTH LOGIN", "503"},
        {"in a transaction", "EHLO client.example\r\nMAIL FROM:<a@b>\r\n", "250 *|250 2.1.0",
         "AUTH PLAIN " PLAIN_OK, "503 5.5.1"},
        {"no mechanism", "EHLO client.example\r\n", "250 *", "AUTH", "501 5.5.4"},
        {"unknown mechanism", "EHLO client.example\r\n", "250 *", "AUTH CRAM-MD5", "504 5.5.4"},
        {"prefix of a mechanism", "EHLO client.example\r\n", "250 *", "AUTH PLAI", "504 5.5.4"},
        {"two arguments", "EHLO client.example\r\n", "250 *", "AUTH PLAIN " PLAIN_OK " x",
         "501 5.5.4"},
    };
    for (size_t i = 0; i < N_ROWS(rows); i++) {
        struct fx *f = auth_fx();
        f->ctx = rows[i].name;
        start_tls(f);
        if (rows[i].before[0]) {
            feed_all(f, rows[i].before);
            /* The EHLO reply is multi-line: keep its last line only. */
            if (strncmp(rows[i].before, "EHLO", 4) == 0) {
                const char *last = strstr(f->io.out, "250 AUTH");
                assert_non_null(last);
                size_t skip = (size_t)(last - f->io.out);
                memmove(f->io.out, last, f->io.len - skip + 1);
                f->io.len -= skip;
            }
            expect_replies(f, rows[i].before_replies);
        }
        char line[128];
        snprintf(line, sizeof(line), "%s\r\n", rows[i].auth);
        dialog(f, line, rows[i].reply);
        unit_assert(f->ctx, ((struct auth_rec *)f->user)->calls == 0);
        unit_assert(f->ctx, smtpd_session_auth_identity(f->s) == NULL);
        dialog(f, "NOOP\r\n", "250 *"); /* not taken as a response */
        auth_fx_free(f);
    }
}

static void test_second_auth(void **state)
{
    struct fx *f = *state;
    tls_ehlo(f);
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    expect_out(f, OK_235);
    dialog(f, "AUTH PLAIN " PLAIN_OK "\r\nAUTH LOGIN\r\n", "503 5.5.1|503 5.5.1");
    assert_int_equal(((struct auth_rec *)f->user)->calls, 1);
    assert_string_equal(smtpd_session_auth_identity(f->s), "alice");
    /* RSET keeps the authentication: it is the session's. */
    dialog(f, "RSET\r\n", "250 2.0.0");
    assert_string_equal(smtpd_session_auth_identity(f->s), "alice");
}

/* RFC 3207 4.2: after STARTTLS nothing learnt before counts, AUTH included. */
static void test_starttls_forgets_auth(void **state)
{
    struct fx *f = *state;
    f->params.exts = tls_and_auth;
    f->params.n_exts = 2;
    f->params.cfg.auth_insecure = true;
    f->params.cfg.auth_required = true;
    fx_start(f);
    expect_out(f, GREETING);
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_PLAIN_BOTH);
    feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
    expect_out(f, OK_235);
    assert_string_equal(smtpd_session_auth_identity(f->s), "alice");
    dialog(f, "STARTTLS\r\n", "220 2.0.0");
    channel_tls_started(f->s, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256);
    assert_null(smtpd_session_auth_identity(f->s));
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_TLS_AUTH);
    dialog(f, "MAIL FROM:<a@b>\r\n", "530 5.7.0");
    feed_all(f, "AUTH LOGIN " LOGIN_USER "\r\n" LOGIN_PASS "\r\n");
    expect_out(f, PASS_CHALLENGE OK_235);
    assert_int_equal(((struct auth_rec *)f->user)->calls, 2);
    start_data(f);
    dialog(f, "\r\nbody\r\n.\r\n", "250 2.0.0");
    assert_string_equal(((struct auth_rec *)f->user)->msg_auth, "alice");
}

/* STARTTLS while an exchange is under way is its response, not STARTTLS. */
static void test_starttls_inside_exchange(void **state)
{
    struct fx *f = *state;
    f->params.exts = tls_and_auth;
    f->params.n_exts = 2;
    f->params.cfg.auth_insecure = true;
    fx_start(f);
    expect_out(f, GREETING);
    feed_all(f, "EHLO client.example\r\n");
    out_clear(f);
    dialog(f, "AUTH PLAIN\r\nSTARTTLS\r\n", "334|501 5.5.2");
    assert_int_equal(f->io.n_start_tls, 0);
}

/* ---- MAIL's AUTH parameter (RFC 4954 5) ---- */

static void test_mail_auth_parameter(void **state)
{
    struct fx *f = *state;
    tls_ehlo(f);
    dialog(f, "MAIL FROM:<a@b> AUTH=<>\r\n", "250 2.1.0");
    assert_int_equal(f->rec.n_mail_params, 1);
    assert_string_equal(f->rec.mail_params[0], "AUTH=<>");
    dialog(f, "RSET\r\nMAIL FROM:<a@b> AUTH=alice+40example.org\r\n", "250 2.0.0|250 2.1.0");
    dialog(f, "RSET\r\nMAIL FROM:<a@b> AUTH\r\n", "250 2.0.0|501 5.5.4");
}

static void test_mail_auth_parameter_without_on_auth(void **state)
{
    struct fx *f = *state; /* the plain fixture: no on_auth */
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b> AUTH=<>\r\n", "555 5.5.4");
    assert_int_equal(f->rec.n_mail, 0);
}

/* ---- overlong continuations ---- */

static void test_overlong_response_cancels(void **state)
{
    (void)state;
    static const struct {
        const char *name, *start, *replies, *after, *after_reply;
    } rows[] = {
        /* The next line is a command again: a PLAIN response there is none. */
        {"PLAIN", "AUTH PLAIN\r\n", "334", PLAIN_OK "\r\n", "500 5.5.1"},
        {"LOGIN user", "AUTH LOGIN\r\n", "334", LOGIN_USER "\r\n", "500 5.5.1"},
        {"LOGIN password", "AUTH LOGIN " LOGIN_USER "\r\n", "334", LOGIN_PASS "\r\n", "500 5.5.1"},
    };
    for (size_t i = 0; i < N_ROWS(rows); i++) {
        struct fx *f = auth_fx();
        f->ctx = rows[i].name;
        tls_ehlo(f);
        dialog(f, rows[i].start, rows[i].replies);
        char line[2100];
        memset(line, 'A', 2000);
        memcpy(line + 2000, "\r\n", 3);
        dialog(f, line, "500 5.5.2");
        dialog(f, rows[i].after, rows[i].after_reply);
        dialog(f, "NOOP\r\n", "250 2.0.0");
        struct auth_rec *a = f->user;
        unit_assert(f->ctx, a->calls == 0);
        /* AUTH can start over. */
        feed_all(f, "AUTH PLAIN " PLAIN_OK "\r\n");
        expect_out(f, OK_235);
        auth_fx_free(f);
    }
}

/* ---- the debug log ---- */

static void test_log_never_has_password(void **state)
{
    (void)state;
    static const struct {
        const char *name, *in;
        int mode;
        bool insecure_plaintext;
    } rows[] = {
        {"PLAIN initial response", "AUTH PLAIN " PLAIN_OK "\r\n", A_CHECK, false},
        {"plain lower case", "auth plain " PLAIN_OK "\r\n", A_CHECK, false},
        {"PLAIN extra spaces", "AUTH  PLAIN " PLAIN_OK "\r\n", A_CHECK, false},
        {"PLAIN authzid", "AUTH PLAIN " PLAIN_AUTHZ_SAME "\r\n", A_CHECK, false},
        {"PLAIN after 334", "AUTH PLAIN\r\n" PLAIN_OK "\r\n", A_CHECK, false},
        {"LOGIN", "AUTH LOGIN\r\n" LOGIN_USER "\r\n" LOGIN_PASS "\r\n", A_CHECK, false},
        {"LOGIN initial response", "AUTH LOGIN " LOGIN_USER "\r\n" LOGIN_PASS "\r\n", A_CHECK,
         false},
        {"refused", "AUTH PLAIN " PLAIN_OK "\r\n", A_SILENT, false},
        {"pending", "AUTH PLAIN " PLAIN_OK "\r\n", A_PEND, false},
        {"in a transaction", "MAIL FROM:<a@b>\r\nAUTH PLAIN " PLAIN_OK "\r\n", A_CHECK, false},
        {"plaintext refused", "AUTH PLAIN " PLAIN_OK "\r\n", -1, false},
        {"plaintext allowed", "AUTH LOGIN " LOGIN_USER "\r\n" LOGIN_PASS "\r\n", A_CHECK, true},
        /* A client that sends its response without waiting for the 538. */
        {"response after a refusal", "AUTH PLAIN\r\n" PLAIN_OK "\r\n", -1, false},
        {"LOGIN after a refusal", "AUTH LOGIN\r\n" LOGIN_USER "\r\n" LOGIN_PASS "\r\n", -1, false},
        {"a TAB after the mechanism", "AUTH PLAIN\t" PLAIN_OK "\r\n", A_CHECK, false},
        {"base64 for a mechanism", "AUTH " PLAIN_OK "\r\n", A_CHECK, false},
        {"short LOGIN fields after a refusal",
         "MAIL FROM:<a@b>\r\nAUTH LOGIN\r\n" LOGIN_USER "\r\nczNj\r\n", A_CHECK, false},
    };
    static const char *const secrets[] = {
        "s3cret", LOGIN_PASS, PLAIN_OK, PLAIN_AUTHZ_SAME, "czNjcmV", "HMzY3JldA", "czNj",
    };
    for (size_t i = 0; i < N_ROWS(rows); i++) {
        struct fx *f = auth_fx();
        f->ctx = rows[i].name;
        struct auth_rec *a = f->user;
        a->mode = rows[i].mode < 0 ? A_CHECK : rows[i].mode;
        f->params.cfg.auth_insecure = rows[i].insecure_plaintext;
        if (rows[i].mode < 0 || rows[i].insecure_plaintext)
            fx_start(f);
        else
            start_tls(f);
        feed_all(f, "EHLO client.example\r\n");
        feed_all(f, rows[i].in);
        if (a->waiting)
            smtpd_reply(a->waiting, 535, NULL, NULL);
        if (f->io.n_delay)
            channel_delay_done(f->s);
        feed_all(f, "QUIT\r\n");
        channel_free(f->s);
        f->s = NULL;
        assert_non_null(a->log);
        /* The dialogue is in the log, the secrets are not. */
        unit_assert(f->ctx, strstr(a->log, "< EHLO client.example") != NULL);
        for (size_t k = 0; k < N_ROWS(secrets); k++) {
            if (strstr(a->log, secrets[k])) {
                print_error("%s: the log shows \"%s\":\n%s", f->ctx, secrets[k], a->log);
                fail();
            }
        }
        if (a->calls)
            unit_assert(f->ctx, strstr(a->log, "\"alice\"") != NULL);
        auth_fx_free(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_decode),
        cmocka_unit_test_setup_teardown(test_plain_initial_response, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_plain_challenge, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_message_without_auth, setup_auth, teardown_auth),
        cmocka_unit_test(test_plain_responses),
        cmocka_unit_test_setup_teardown(test_login_challenges, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_login_initial_response, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_plain_longest_response, setup_auth, teardown_auth),
        cmocka_unit_test(test_guard_counts_per_address),
        cmocka_unit_test_setup_teardown(test_guard_delays_other_sessions, setup_auth,
                                        teardown_auth),
        cmocka_unit_test_setup_teardown(test_login_longest_fields, setup_auth, teardown_auth),
        cmocka_unit_test(test_cancel_each_step),
        cmocka_unit_test(test_bad_base64_each_step),
        cmocka_unit_test_setup_teardown(test_silence_refuses, setup_auth, teardown_auth),
        cmocka_unit_test(test_answer_codes),
        cmocka_unit_test_setup_teardown(test_pending_then_accepted, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_pending_then_refused, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_pending_then_closed, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_failure_delay_grows, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_failure_delay_scaled, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_no_failure_delay, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_failures_spend_error_budget, setup_auth,
                                        teardown_auth),
        cmocka_unit_test_setup_teardown(test_failures_and_errors_share_budget, setup_auth,
                                        teardown_auth),
        cmocka_unit_test_setup_teardown(test_not_offered_before_tls, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_insecure_offered_in_plaintext, setup_auth,
                                        teardown_auth),
        cmocka_unit_test_setup_teardown(test_no_on_auth_no_keyword, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_auth_required, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_auth_required_counts_errors, setup_auth,
                                        teardown_auth),
        cmocka_unit_test(test_sequence_errors),
        cmocka_unit_test_setup_teardown(test_second_auth, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_starttls_forgets_auth, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_starttls_inside_exchange, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_mail_auth_parameter, setup_auth, teardown_auth),
        cmocka_unit_test_setup_teardown(test_mail_auth_parameter_without_on_auth, setup, teardown),
        cmocka_unit_test(test_overlong_response_cancels),
        cmocka_unit_test(test_log_never_has_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
