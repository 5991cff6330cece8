/*
 * Unit tests of CHUNKING (RFC 3030) in the channel: BDAT chunks counted in
 * octets whatever they hold, pipelined, LAST in a later chunk or alone
 * (BDAT 0 LAST), the size limit (552 and the rest of the chunk read and
 * dropped), DATA never mixed in, bad sizes (501), chunks without MAIL or
 * RCPT (503 once read), an on_data refusal that ends the transaction, and
 * the bare CR/LF policy across chunk borders. The message must reach the
 * handler as it would after DATA.
 */
#include "channel_fixture.h"

#include "bdat_cmd.h"

static const struct chan_ext *const exts[] = {&bdat_ext};

/* A channel with BDAT, greeted with EHLO, and a transaction open. */
static void start(struct fx *f)
{
    f->params.exts = exts;
    f->params.n_exts = 1;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n", "250 2.1.0|250 2.1.5");
}

/* Feed @p n bytes (binary) that must be taken whole. */
static void feed_bytes(struct fx *f, const char *in, size_t n)
{
    assert_int_equal(channel_feed(f->s, in, n), n);
}

static void test_ehlo_offers_chunking(void **state)
{
    struct fx *f = *state;
    f->params.exts = exts;
    f->params.n_exts = 1;
    fx_start(f);
    out_clear(f);
    feed_all(f, "EHLO c.example\r\n");
    assert_non_null(strstr(f->io.out, "250 CHUNKING\r\n"));
    out_clear(f);
    dialog(f, "HELP BDAT\r\n", "250 2.0.0 *");
}

static void test_pipelined_chunks_binary(void **state)
{
    struct fx *f = *state;
    start(f);
    /* NUL, 0xff, a "." line and an end-of-data look-alike: all data. */
    static const char in[] = "BDAT 14\r\nSub: x\r\n\r\n\0\xff\r\n"
                             "BDAT 10\r\n.\r\n.\r\nab\r\n"
                             "BDAT 0 LAST\r\nNOOP\r\n";
    feed_bytes(f, in, sizeof(in) - 1);
    expect_replies(f, "250 2.0.0|250 2.0.0|250 2.0.0|250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
    static const char want[] = "Sub: x\r\n\r\n\0\xff\r\n.\r\n.\r\nab\r\n";
    assert_int_equal(f->rec.msg.data_len, sizeof(want) - 1);
    assert_memory_equal(f->rec.msg.data, want, sizeof(want) - 1);
}

static void test_one_byte_at_a_time(void **state)
{
    struct fx *f = *state;
    start(f);
    const char *in = "BDAT 5\r\nab\r\nc"
                     "BDAT 5 LAST\r\nd\r\n\r\n";
    for (const char *p = in; *p; p++)
        feed_bytes(f, p, 1);
    expect_replies(f, "250 2.0.0|250 2.0.0");
    unit_check_str("1 byte", f->rec.msg.data, f->rec.msg.data_len, "ab\r\ncd\r\n\r\n");
}

static void test_last_alone_and_empty(void **state)
{
    struct fx *f = *state;
    start(f);
    dialog(f, "BDAT 0 LAST\r\n", "250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
    assert_int_equal(f->rec.msg.data_len, 0);
    /* "last" in any case; no final CRLF gets one, as DATA's data has. */
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3 last\r\nxyz",
           "250 2.1.0|250 2.1.5|250 2.0.0");
    unit_check_str("no final CRLF", f->rec.msg.data, f->rec.msg.data_len, "xyz\r\n");
}

static void test_size_limit(void **state)
{
    struct fx *f = *state;
    f->params.cfg.data_size_limit = 10;
    start(f);
    /* 8 fit; 8 more do not: 552 once those 8 are read, and the
     * transaction is over, so the next chunk is read and refused too. */
    dialog(f, "BDAT 8\r\n12345678BDAT 8\r\n12345678BDAT 2 LAST\r\nxx",
           "250 2.0.0|552 5.3.4|503 5.5.1");
    assert_int_equal(f->rec.n_message, 0);
    dialog(f, "NOOP\r\n", "250 2.0.0");
    /* Exactly the limit is fine. */
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 10 LAST\r\n123456789\n",
           "250 2.1.0|250 2.1.5|250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
    /* A size far past the limit: refused, and its octets still skipped. */
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 99999999999 LAST\r\n",
           "250 2.1.0|250 2.1.5");
    feed_all(f, "NOOP\r\nQUIT\r\n");
    expect_out(f, "");
}

static void test_no_mixing_with_data(void **state)
{
    struct fx *f = *state;
    start(f);
    dialog(f, "BDAT 3\r\nab\n", "250 2.0.0");
    dialog(f, "DATA\r\n", "503 5.5.1");
    dialog(f, "BDAT 2 LAST\r\ncd", "250 2.0.0");
    unit_check_str("after DATA refused", f->rec.msg.data, f->rec.msg.data_len, "ab\r\ncd\r\n");
    /* DATA, then what looks like BDAT is message data. */
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nBDAT 1\r\n.\r\n",
           "250 2.1.0|250 2.1.5|354|250 2.0.0");
    unit_check_str("BDAT in DATA", f->rec.msg.data, f->rec.msg.data_len, "BDAT 1\r\n");
}

static void test_bad_size(void **state)
{
    struct fx *f = *state;
    f->params.cfg.max_errors = 20; /* each 501 counts */
    start(f);
    static const char *const bad[] = {
        "BDAT\r\n",      "BDAT x\r\n",  "BDAT -1\r\n",
        "BDAT 0x10\r\n", "BDAT 1x\r\n", "BDAT 18446744073709551616\r\n",
    };
    for (size_t i = 0; i < N_ROWS(bad); i++) {
        f->ctx = bad[i];
        dialog(f, bad[i], "501 5.5.4");
    }
    /* A good size, then something else: the chunk is skipped first. */
    static const char *const bad_end[] = {"BDAT 1 LAST x\r\nQ", "BDAT 1 FIRST\r\nQ",
                                          "BDAT 1  LAST\r\nQ", "BDAT 0 x\r\n"};
    for (size_t i = 0; i < N_ROWS(bad_end); i++) {
        f->ctx = bad_end[i];
        dialog(f, bad_end[i], "501 5.5.4");
    }
    f->ctx = "";
    /* The transaction is still open. */
    dialog(f, "BDAT 1 LAST\r\nz", "250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
}

static void test_out_of_sequence(void **state)
{
    struct fx *f = *state;
    f->params.exts = exts;
    f->params.n_exts = 1;
    fx_start(f);
    out_clear(f);
    /* Before the greeting, MAIL, RCPT: 503, each once its octets are read
     * (they hold a command, which must not run). */
    dialog(f, "BDAT 6\r\nQUIT\r\n", "503");
    feed_all(f, "EHLO c\r\n");
    out_clear(f);
    dialog(f, "BDAT 6 LAST\r\nQUIT\r\n", "503 5.5.1");
    dialog(f, "MAIL FROM:<a@b>\r\nBDAT 6\r\nQUIT\r\n", "250 2.1.0|503 5.5.1");
    dialog(f, "RCPT TO:<c@d>\r\nBDAT 1 LAST\r\nx", "250 2.1.5|250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
    assert_int_equal(f->io.n_close, 0);
}

static void test_rset_ends_chunked_transaction(void **state)
{
    struct fx *f = *state;
    start(f);
    dialog(f, "BDAT 4\r\nold\n", "250 2.0.0");
    dialog(f, "RSET\r\n", "250 2.0.0");
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nnew\r\n.\r\n",
           "250 2.1.0|250 2.1.5|354|250 2.0.0");
    unit_check_str("after RSET", f->rec.msg.data, f->rec.msg.data_len, "new\r\n");
}

/* on_data refuses: the first chunk is read, answered 554, and the
 * transaction ends, so a pipelined later chunk cannot become a message. */
static enum smtpd_verdict refuse_data(void *arg, struct smtpd_session *s)
{
    (void)arg;
    smtpd_reply(s, 554, "5.7.1", "no mail today");
    return SMTPD_DONE;
}

static void test_on_data_refusal(void **state)
{
    struct fx *f = *state;
    f->params.handler.on_data = refuse_data;
    start(f);
    dialog(f, "BDAT 4\r\nheadBDAT 4 LAST\r\ntail", "554 5.7.1|503 5.5.1");
    assert_int_equal(f->rec.n_message, 0);
}

static void test_bare_line_ends(void **state)
{
    struct fx *f = *state;
    start(f);
    /* A CRLF split over two chunks is one line end; a bare LF and a bare
     * CR become CRLF (the default policy), as in DATA. */
    dialog(f, "BDAT 3\r\na\r\rBDAT 5 LAST\r\n\nb\nc\r", "250 2.0.0|250 2.0.0");
    unit_check_str("normalized", f->rec.msg.data, f->rec.msg.data_len, "a\r\n\r\nb\r\nc\r\n");
    f->params.cfg.bare_lf = SMTPD_BARE_LF_REJECT;
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3 LAST\r\na\nb",
           "250 2.1.0|250 2.1.5|550 5.5.2");
    assert_int_equal(f->rec.n_message, 1);
}

static void test_pending_answer(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    start(f);
    /* Nothing more is read until the message is answered. */
    const char *in = "BDAT 2 LAST\r\nhiNOOP\r\n";
    size_t used = feed(f, in);
    assert_int_equal(used, strlen(in) - strlen("NOOP\r\n"));
    expect_out(f, "");
    assert_int_equal(smtpd_session_state(f->s), SMTPD_SESSION_COMMAND);
    smtpd_reply(f->rec.waiting, 250, NULL, "queued");
    expect_replies(f, "250 2.0.0");
    dialog(f, "NOOP\r\n", "250 2.0.0");
}

static void test_one_data_phase(void **state)
{
    struct fx *f = *state;
    start(f);
    assert_int_equal(channel_phase(f->s), PHASE_COMMAND);
    /* The whole transaction is one data phase, its data counted across
     * chunks (--min-data-rate must see the message, not one chunk). */
    dialog(f, "BDAT 3\r\nabc", "250 2.0.0");
    assert_int_equal(channel_phase(f->s), PHASE_DATA);
    assert_int_equal(channel_data_received(f->s), 3);
    feed_all(f, "BDAT 4\r\nxy");
    assert_int_equal(channel_phase(f->s), PHASE_DATA);
    assert_int_equal(channel_data_received(f->s), 5);
    dialog(f, "zzBDAT 0 LAST\r\n", "250 2.0.0|250 2.0.0");
    assert_int_equal(channel_phase(f->s), PHASE_COMMAND);
    assert_int_equal(channel_data_received(f->s), 0);
}

static void test_no_rcpt_after_bdat(void **state)
{
    struct fx *f = *state;
    start(f);
    dialog(f, "BDAT 2\r\nab", "250 2.0.0");
    dialog(f, "RCPT TO:<late@x.example>\r\n", "503 5.5.1");
    dialog(f, "BDAT 1 LAST\r\nc", "250 2.0.0");
    assert_int_equal(f->rec.msg.n_forward_paths, 1);
}

static void test_error_budget_after_chunk(void **state)
{
    struct fx *f = *state;
    f->params.cfg.max_errors = 2;
    f->params.exts = exts;
    f->params.n_exts = 1;
    fx_ehlo(f);
    /* The second error is a chunk's 503: the 421 follows it at once. */
    dialog(f, "FOO\r\nBDAT 3\r\nabc", "500 5.5.1|503 5.5.1|421 4.7.0");
    assert_int_equal(f->io.n_close, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ehlo_offers_chunking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_chunks_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_byte_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_alone_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_mixing_with_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rset_ends_chunked_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_data_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_line_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_data_phase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_rcpt_after_bdat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_budget_after_chunk, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
