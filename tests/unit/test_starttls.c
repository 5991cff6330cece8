/*
 * Unit tests of STARTTLS (RFC 3207) in the channel, without TLS itself: the
 * fake transport's start_tls only counts calls, and the test says when the
 * handshake "finished" with channel_tls_started(). Covers the EHLO keyword,
 * the 220 and what the channel takes after it (nothing: CVE-2011-0411), the
 * reset of RFC 3207 4.2, 501/503/500, --require-tls's 530 and implicit TLS.
 */
#include "channel_fixture.h"
#include "starttls.h"

#define EHLO_WITH_STARTTLS                                                                         \
    "250-" HOST "\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-PIPELINING\r\n"                      \
    "250-ENHANCEDSTATUSCODES\r\n250-HELP\r\n250 STARTTLS\r\n"
#define EHLO_WITHOUT_STARTTLS                                                                      \
    "250-" HOST "\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-PIPELINING\r\n"                      \
    "250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n"
#define READY "220 2.0.0 Ready to start TLS\r\n"

static const struct chan_ext *const exts[] = {&starttls_ext};

static int setup_tls(void **state)
{
    struct fx *f = fx_new();
    f->params.exts = exts;
    f->params.n_exts = 1;
    *state = f;
    return 0;
}

/* EHLO, STARTTLS, and the handshake done. */
static void to_tls(struct fx *f)
{
    fx_start(f);
    expect_out(f, GREETING);
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_WITH_STARTTLS);
    feed_all(f, "STARTTLS\r\n");
    expect_out(f, READY);
    assert_int_equal(f->io.n_start_tls, 1);
    assert_int_equal(channel_phase(f->s), PHASE_TLS);
    channel_tls_started(f->s, "TLSv1.3", "TLS_AES_128_GCM_SHA256", 128);
    expect_out(f, ""); /* no second greeting (RFC 3207 4.2) */
}

static void test_not_offered_without_tls(void **state)
{
    struct fx *f = *state; /* no STARTTLS entry: no TLS context */
    fx_start(f);
    expect_out(f, GREETING);
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_WITHOUT_STARTTLS);
    dialog(f, "STARTTLS\r\n", "500 5.5.1");
    dialog(f, "HELP STARTTLS\r\n", "501 5.5.4");
    assert_int_equal(f->io.n_start_tls, 0);
    assert_null(smtpd_session_tls_protocol(f->s));
}

static void test_starttls_then_session_starts_over(void **state)
{
    struct fx *f = *state;
    to_tls(f);
    assert_string_equal(smtpd_session_tls_protocol(f->s), "TLSv1.3");
    assert_string_equal(smtpd_session_tls_cipher(f->s), "TLS_AES_128_GCM_SHA256");
    /* The EHLO before TLS is forgotten: the client must greet again. */
    assert_null(smtpd_session_helo(f->s));
    assert_false(smtpd_session_esmtp(f->s));
    dialog(f, "MAIL FROM:<a@b>\r\n", "503");
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_WITHOUT_STARTTLS);
    dialog(f, "STARTTLS\r\n", "503 5.5.1");
    assert_int_equal(f->io.n_start_tls, 1);
    start_data(f);
    dialog(f, "Subject: t\r\n\r\nbody\r\n.\r\n", "250 2.0.0");
    assert_string_equal(f->rec.msg.tls_protocol, "TLSv1.3");
    assert_string_equal(f->rec.msg.tls_cipher, "TLS_AES_128_GCM_SHA256");
    assert_int_equal(f->rec.msg.tls_cipher_bits, 128);
}

/* A plaintext message says so to the handler. */
static void test_plaintext_message_has_no_tls(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    start_data(f);
    dialog(f, "\r\nbody\r\n.\r\n", "250 2.0.0");
    assert_null(f->rec.msg.tls_protocol);
    assert_null(f->rec.msg.tls_cipher);
    assert_int_equal(f->rec.msg.tls_cipher_bits, 0);
}

/* Commands pipelined after STARTTLS are not the channel's to read: they
 * stay with the transport, which throws them away. */
static void test_pipelined_after_starttls_not_taken(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    const char *in = "STARTTLS\r\nRSET\r\nMAIL FROM:<a@b>\r\n";
    assert_int_equal(feed(f, in), strlen("STARTTLS\r\n"));
    expect_out(f, READY);
    assert_int_equal(feed(f, "RSET\r\n"), 0); /* not even in a later feed */
    expect_out(f, "");
    channel_tls_started(f->s, "TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", 256);
    expect_out(f, "");
    dialog(f, "NOOP\r\n", "250");
    assert_int_equal(f->rec.n_mail, 0);
}

static void test_argument_and_transaction_refused(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "STARTTLS now\r\n", "501 5.5.4");
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
    dialog(f, "STARTTLS\r\n", "503 5.5.1");
    dialog(f, "RSET\r\nSTARTTLS\r\n", "250 2.0.0|220 2.0.0");
    assert_int_equal(f->io.n_start_tls, 1);
}

static void test_help_lists_starttls_before_tls(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "HELP STARTTLS\r\n", "250 2.0.0");
    feed_all(f, "HELP\r\n");
    assert_non_null(strstr(f->io.out, " STARTTLS\r\n"));
    out_clear(f);
}

static void test_require_tls(void **state)
{
    struct fx *f = *state;
    f->params.cfg.require_tls = true;
    f->params.cfg.max_errors = 0;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\n", "530 5.7.0");
    dialog(f, "RCPT TO:<c@d>\r\nDATA\r\nVRFY <a@b>\r\nHELP\r\nEXPN x\r\n",
           "530 5.7.0|530 5.7.0|530 5.7.0|530 5.7.0|530 5.7.0");
    /* HELO gets through (the 503 is for going back from EHLO, not 530). */
    dialog(f, "NOOP\r\nRSET\r\nHELO client.example\r\n", "250 2.0.0|250 2.0.0|503 5.5.1");
    assert_int_equal(f->rec.n_mail, 0);
    feed_all(f, "EHLO client.example\r\n");
    out_clear(f);
    dialog(f, "STARTTLS\r\n", "220 2.0.0");
    channel_tls_started(f->s, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256);
    feed_all(f, "EHLO client.example\r\n");
    out_clear(f);
    start_data(f);
    dialog(f, "\r\nbody\r\n.\r\n", "250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
}

/* 530s count against the error budget: a client that never starts TLS
 * cannot go on sending commands for ever. */
static void test_require_tls_counts_errors(void **state)
{
    struct fx *f = *state;
    f->params.cfg.require_tls = true;
    f->params.cfg.max_errors = 3;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\n",
           "530 5.7.0|530 5.7.0|530 5.7.0|421 4.7.0");
    assert_int_equal(f->io.n_close, 1);
}

/* Implicit TLS: the handshake came first, so the greeting is the first
 * thing sent and STARTTLS is neither offered nor taken. */
static void test_implicit_tls(void **state)
{
    struct fx *f = *state;
    const struct chan_addrs addrs = {PEER, PEER_PORT, LOCAL, LOCAL_PORT, NULL, 0};
    f->s = channel_new(&f->params, &fake_transport, &f->io, &addrs, 7);
    assert_non_null(f->s);
    channel_tls_started(f->s, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256);
    expect_out(f, "");
    channel_start(f->s);
    expect_out(f, GREETING);
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_WITHOUT_STARTTLS);
    dialog(f, "STARTTLS\r\n", "503 5.5.1");
    assert_int_equal(f->io.n_start_tls, 0);
    assert_string_equal(smtpd_session_tls_protocol(f->s), "TLSv1.3");
}

/* A server shutdown while the handshake is under way: nothing goes out in
 * plaintext, and the 421 follows once the session is in TLS. */
static void test_shutdown_during_handshake(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "STARTTLS\r\n", "220 2.0.0");
    channel_shutdown(f->s, false);
    expect_out(f, "");
    assert_int_equal(f->io.n_close, 0);
    channel_tls_started(f->s, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256);
    expect_replies(f, "421");
    assert_int_equal(f->io.n_close, 1);
}

/* A handler's STARTTLS replaces the library's, as for any verb: one
 * keyword in EHLO (the handler's), the handler's answer, no TLS. */
static enum smtpd_verdict my_starttls(void *arg, struct smtpd_session *s, const char *params,
                                      size_t len)
{
    (void)params;
    (void)len;
    assert_ptr_equal(arg, &FX_OF(arg)->rec);
    smtpd_reply(s, 454, "4.7.0", "not today");
    return SMTPD_DONE;
}

static void test_handler_replaces_starttls(void **state)
{
    struct fx *f = *state;
    static const struct smtpd_command cmds[] = {
        {.verb = "starttls", .fn = my_starttls, .ehlo = "STARTTLS"},
    };
    f->params.handler.commands = cmds;
    f->params.handler.n_commands = 1;
    fx_start(f);
    expect_out(f, GREETING);
    feed_all(f, "EHLO client.example\r\n");
    expect_out(f, EHLO_WITH_STARTTLS);
    dialog(f, "STARTTLS\r\n", "454 4.7.0");
    assert_int_equal(f->io.n_start_tls, 0);
    assert_null(smtpd_session_tls_protocol(f->s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_not_offered_without_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_starttls_then_session_starts_over, setup_tls,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_message_has_no_tls, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_after_starttls_not_taken, setup_tls,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_argument_and_transaction_refused, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_help_lists_starttls_before_tls, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_require_tls, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_require_tls_counts_errors, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_implicit_tls, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_during_handshake, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_handler_replaces_starttls, setup_tls, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
