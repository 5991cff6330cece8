/*
 * Unit tests of LMTP (RFC 2033) in the channel (smtpd_config.lmtp): LHLO
 * instead of HELO/EHLO, one reply per accepted recipient after the end of
 * data, in RCPT order, each the handler's own (smtpd_reply_rcpt) or the
 * message's answer; refusals at the end of data (size, bare LF) for every
 * recipient; and what smtpd_reply_rcpt refuses.
 */
#include "channel_fixture.h"

#include "bdat_cmd.h"

static const struct chan_ext *const exts[] = {&bdat_ext};

/* An LMTP channel after LHLO, with a transaction of three recipients of
 * which the second is refused at RCPT. */
static void start(struct fx *f)
{
    f->params.cfg.lmtp = true;
    f->params.exts = exts;
    f->params.n_exts = 1;
    f->rec.refuse_rcpt = "no@x.example";
    f->rec.rcpt_code = 550;
    f->rec.rcpt_enh = "5.1.1";
    fx_start(f);
    expect_out(f, "220 " HOST " smtpd " SMTPD_VERSION " LMTP\r\n");
    feed_all(f, "LHLO client.example\r\n");
    out_clear(f);
    dialog(f,
           "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<no@x.example>\r\n"
           "RCPT TO:<c@x.example>\r\nRCPT TO:<d@x.example>\r\n",
           "250 2.1.0|250 2.1.5|550 5.1.1|250 2.1.5|250 2.1.5");
}

static void test_lhlo_only(void **state)
{
    struct fx *f = *state;
    f->params.cfg.lmtp = true;
    fx_start(f);
    out_clear(f);
    dialog(f, "HELO client.example\r\n", "500");
    dialog(f, "EHLO client.example\r\n", "500");
    dialog(f, "MAIL FROM:<a@b>\r\n", "503");
    feed_all(f, "lhlo client.example\r\n");
    assert_non_null(strstr(f->io.out, "250-" HOST "\r\n"));
    out_clear(f);
    dialog(f, "EHLO again\r\n", "500 5.5.1");
    assert_string_equal(smtpd_session_helo(f->s), "client.example");
    assert_true(smtpd_session_esmtp(f->s));
}

static void test_message_answer_for_each(void **state)
{
    struct fx *f = *state;
    f->rec.message_code = 451;
    f->rec.message_text = "try later";
    start(f);
    dialog(f, "DATA\r\nhi\r\n.\r\n", "354|451 4.0.0|451 4.0.0|451 4.0.0");
    assert_int_equal(f->rec.n_message, 1);
    assert_int_equal(f->rec.msg.n_forward_paths, 3);
}

static void test_own_answers_then_message_answer(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    start(f);
    dialog(f, "DATA\r\nhi\r\n.\r\n", "354");
    struct smtpd_session *s = f->rec.waiting;
    assert_int_equal(smtpd_reply_rcpt(s, 2, 452, "4.2.2", "mailbox full"), SMTPD_OK);
    assert_int_equal(smtpd_reply_rcpt(s, 0, 550, NULL, "no such user"), SMTPD_OK);
    /* Nothing goes out before the message is answered. */
    expect_out(f, "");
    assert_int_equal(smtpd_reply(s, 250, NULL, "delivered"), SMTPD_OK);
    expect_out(f, "550 5.0.0 no such user\r\n250 2.0.0 delivered\r\n452 4.2.2 mailbox full\r\n");
    dialog(f, "NOOP\r\n", "250 2.0.0");
}

static void test_all_own_answers_end_the_message(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    start(f);
    /* BDAT LAST: the same replies as after the final dot. */
    dialog(f, "BDAT 3 LAST\r\nabc", "");
    struct smtpd_session *s = f->rec.waiting;
    assert_int_equal(smtpd_reply_rcpt(s, 1, 250, NULL, NULL), SMTPD_OK);
    assert_int_equal(smtpd_reply_rcpt(s, 0, 250, "2.1.5", "stored"), SMTPD_OK);
    assert_int_equal(smtpd_reply_rcpt(s, 2, 554, "5.7.1", "rejected"), SMTPD_OK);
    expect_out(f, "250 2.1.5 stored\r\n250 2.0.0 OK\r\n554 5.7.1 rejected\r\n");
    assert_int_equal(smtpd_reply(s, 250, NULL, NULL), SMTPD_ERR_STATE);
    assert_int_equal(smtpd_reply_rcpt(s, 0, 250, NULL, NULL), SMTPD_ERR_STATE);
    dialog(f, "NOOP\r\n", "250 2.0.0");
}

static void test_what_is_refused(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    start(f);
    struct smtpd_session *s = f->s;
    /* Nothing is being answered. */
    assert_int_equal(smtpd_reply_rcpt(s, 0, 250, NULL, NULL), SMTPD_ERR_STATE);
    dialog(f, "DATA\r\nhi\r\n.\r\n", "354");
    assert_int_equal(smtpd_reply_rcpt(s, 3, 250, NULL, NULL), SMTPD_ERR_STATE);
    assert_int_equal(smtpd_reply_rcpt(s, 0, 354, NULL, NULL), SMTPD_ERR_REPLY);
    assert_int_equal(smtpd_reply_rcpt(s, 0, 199, NULL, NULL), SMTPD_ERR_REPLY);
    assert_int_equal(smtpd_reply_rcpt(s, 0, 250, "5.1.1", NULL), SMTPD_ERR_CONFIG);
    assert_int_equal(smtpd_reply_rcpt(s, 0, 250, NULL, NULL), SMTPD_OK);
    assert_int_equal(smtpd_reply_rcpt(s, 0, 250, NULL, NULL), SMTPD_ERR_STATE);
    expect_out(f, "");
    assert_int_equal(smtpd_reply(s, 250, NULL, NULL), SMTPD_OK);
    expect_replies(f, "250 2.0.0|250 2.0.0|250 2.0.0");
}

static void test_not_lmtp(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\nx\r\n.\r\n",
           "250 2.1.0|250 2.1.5|250 2.1.5|354");
    assert_int_equal(smtpd_reply_rcpt(f->s, 0, 250, NULL, NULL), SMTPD_ERR_STATE);
    assert_int_equal(smtpd_reply(f->s, 250, NULL, NULL), SMTPD_OK);
    expect_replies(f, "250 2.0.0");
}

static void test_end_of_data_refusals_for_each(void **state)
{
    struct fx *f = *state;
    f->params.cfg.data_size_limit = 5;
    start(f);
    dialog(f, "DATA\r\n0123456789\r\n.\r\n", "354|552 5.3.4|552 5.3.4|552 5.3.4");
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n",
           "250 2.1.0|250 2.1.5|250 2.1.5");
    /* A chunk before the last gets one reply; LAST one per recipient. */
    dialog(f, "BDAT 3\r\nabcBDAT 6 LAST\r\n123456", "250 2.0.0|552 5.3.4|552 5.3.4");
    assert_int_equal(f->rec.n_message, 0);
    f->params.cfg.bare_lf = SMTPD_BARE_LF_REJECT;
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\na\nb\r\n.\r\n",
           "250 2.1.0|250 2.1.5|250 2.1.5|354|550 5.5.2|550 5.5.2");
}

static void test_recipient_421_closes(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    start(f);
    dialog(f, "DATA\r\nhi\r\n.\r\n", "354");
    struct smtpd_session *s = f->rec.waiting;
    assert_int_equal(smtpd_reply_rcpt(s, 0, 421, NULL, "going down"), SMTPD_OK);
    assert_int_equal(smtpd_reply(s, 250, NULL, NULL), SMTPD_OK);
    /* RFC 5321 3.8: a 421 closes the session, whoever's reply it is. */
    expect_replies(f, "421 4.0.0|250 2.0.0|250 2.0.0");
    assert_int_equal(f->io.n_close, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lhlo_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_answer_for_each, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_answers_then_message_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_own_answers_end_the_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_what_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_lmtp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_of_data_refusals_for_each, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recipient_421_closes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
