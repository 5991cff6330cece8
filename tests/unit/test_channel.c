/*
 * Unit tests of the per-client state machine (src/session/channel.c): whole SMTP
 * dialogues through a fake transport that records what the channel writes,
 * with a handler whose callbacks record what they get and answer as told.
 */
#include "channel_fixture.h"

/* ---- greeting and EHLO ---- */

static void test_greeting(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    expect_out(f, GREETING);
    assert_int_equal(f->rec.n_connect, 1);
    assert_int_equal(f->io.n_close, 0);
    assert_int_equal(channel_phase(f->s), PHASE_COMMAND);
    assert_null(smtpd_session_helo(f->s));
    assert_false(smtpd_session_esmtp(f->s));
}

struct ehlo_case {
    const char *name;
    size_t limit;
    bool decode_data;
    bool smtputf8;
    const char *want;
};

static const struct ehlo_case ehlo_cases[] = {
    {.name = "defaults",
     .limit = 33554432,
     .want = "250-" HOST "\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-PIPELINING\r\n"
             "250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n"},
    {.name = "no size limit: no SIZE",
     .limit = 0,
     .want = "250-" HOST "\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
             "250 HELP\r\n"},
    {.name = "SIZE 1000",
     .limit = 1000,
     .want = "250-" HOST "\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-PIPELINING\r\n"
             "250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n"},
    {.name = "decode_data: no 8BITMIME",
     .limit = 1000,
     .decode_data = true,
     .want = "250-" HOST "\r\n250-SIZE 1000\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
             "250 HELP\r\n"},
    {.name = "SMTPUTF8",
     .limit = 1000,
     .smtputf8 = true,
     .want = "250-" HOST "\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n"
             "250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n"},
    {.name = "SMTPUTF8, no size limit",
     .limit = 0,
     .smtputf8 = true,
     .want = "250-" HOST "\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n"
             "250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n"},
};

static void test_ehlo_keywords(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(ehlo_cases); i++) {
        const struct ehlo_case *c = &ehlo_cases[i];
        struct fx *f = fx_new();
        f->ctx = c->name;
        f->params.cfg.data_size_limit = c->limit;
        f->params.cfg.decode_data = c->decode_data;
        f->params.cfg.enable_smtputf8 = c->smtputf8;
        fx_start(f);
        expect_out(f, GREETING);
        feed_all(f, "EHLO client.example\r\n");
        unit_assert(c->name, f->io.n_writes == 1); /* the whole reply in one write */
        expect_out(f, c->want);
        unit_assert(c->name, smtpd_session_esmtp(f->s));
        assert_string_equal(smtpd_session_helo(f->s), "client.example");
        fx_free(f);
    }
}

static void test_helo_vs_ehlo(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    expect_out(f, GREETING);
    feed_all(f, "HELO client.example\r\n");
    expect_out(f, "250 " HOST "\r\n");
    assert_false(smtpd_session_esmtp(f->s));
    assert_string_equal(smtpd_session_helo(f->s), "client.example");
    /* No enhanced status codes after HELO (RFC 2034 3). */
    feed_all(f, "MAIL FROM:<a@example.com>\r\n");
    expect_out(f, "250 OK\r\n");
    dialog(f, "RCPT TO:<b@example.com>\r\n", "250");
    dialog(f, "RCPT TO:<>\r\n", "501");
    dialog(f, "NOOP\r\n", "250");
    dialog(f, "RSET\r\n", "250");
    dialog(f, "FOO\r\n", "500");
    /* HELO again is fine (it resets), EHLO then switches to ESMTP. */
    dialog(f, "HELO other.example\r\n", "250");
    assert_string_equal(smtpd_session_helo(f->s), "other.example");
    feed_all(f, "EHLO client.example\r\n");
    out_clear(f);
    assert_true(smtpd_session_esmtp(f->s));
    feed_all(f, "MAIL FROM:<a@example.com>\r\n");
    expect_out(f, "250 2.1.0 OK\r\n");
    dialog(f, "RCPT TO:<b@example.com>\r\n", "250 2.1.5");
    dialog(f, "FOO\r\n", "500 5.5.1");
}

static void test_helo_ehlo_need_argument(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    out_clear(f);
    dialog(f, "HELO\r\n", "501");
    dialog(f, "EHLO\r\n", "501");
    dialog(f, "HELO   \r\n", "501");
    assert_null(smtpd_session_helo(f->s));
    dialog(f, "MAIL FROM:<a@b>\r\n", "503");
}

/* ---- transactions ---- */

static void test_full_transaction(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<> size=10 body=8bitmime\r\n", "250 2.1.0");
    assert_int_equal(f->rec.n_mail, 1);
    assert_string_equal(f->rec.last_mail, "");
    assert_int_equal(f->rec.n_mail_params, 2);
    assert_string_equal(f->rec.mail_params[0], "SIZE=10");
    assert_string_equal(f->rec.mail_params[1], "BODY=8BITMIME");
    dialog(f, "RCPT TO:<b@example.org>\r\n", "250 2.1.5");
    dialog(f, "RCPT TO:<@relay.example:c@example.net>\r\n", "250 2.1.5");
    assert_string_equal(f->rec.last_rcpt, "c@example.net");
    dialog(f, "RCPT TO:<Postmaster>\r\n", "250 2.1.5");
    feed_all(f, "DATA\r\n");
    expect_out(f, "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_int_equal(channel_phase(f->s), PHASE_DATA);
    feed_all(f, "Subject: test\r\n\r\n..leading dot\r\nbare\nlf\r\n\r\n");
    expect_out(f, "");
    assert_int_equal(f->rec.n_message, 0);
    dialog(f, ".\r\n", "250 2.0.0");
    assert_int_equal(channel_phase(f->s), PHASE_COMMAND);

    const struct msg_copy *m = &f->rec.msg;
    assert_int_equal(f->rec.n_message, 1);
    assert_string_equal(m->peer_addr, PEER);
    assert_int_equal(m->peer_port, PEER_PORT);
    assert_string_equal(m->helo, "client.example");
    assert_string_equal(m->reverse_path, "");
    assert_int_equal(m->n_forward_paths, 3);
    assert_string_equal(m->forward_paths[0], "b@example.org");
    assert_string_equal(m->forward_paths[1], "c@example.net");
    assert_string_equal(m->forward_paths[2], "Postmaster");
    assert_int_equal(m->n_mail_options, 2);
    assert_string_equal(m->mail_options[0], "SIZE=10");
    assert_string_equal(m->mail_options[1], "BODY=8BITMIME");
    assert_int_equal(m->n_rcpt_options, 0);
    assert_false(m->smtputf8);
    assert_true(m->esmtp);
    /* Unstuffed, CRLF kept; the bare LF became CRLF (the default policy). */
    unit_check_str("message data", m->data, m->data_len,
                   "Subject: test\r\n\r\n.leading dot\r\nbare\r\nlf\r\n\r\n");
    /* The transaction is over: a reset, and a new one can start. */
    assert_int_equal(f->rec.n_reset, 1);
    dialog(f, "RCPT TO:<b@example.org>\r\n", "503 5.5.1");
    dialog(f, "MAIL FROM:<a@example.com>\r\n", "250 2.1.0");
    assert_int_equal(f->rec.n_mail_params, 0);
    dialog(f, "RCPT TO:<b@example.org>\r\n", "250 2.1.5");
    dialog(f, "DATA\r\n", "354");
    dialog(f, "x\r\n.\r\n", "250 2.0.0");
    assert_string_equal(f->rec.msg.reverse_path, "a@example.com");
    assert_int_equal(f->rec.msg.n_mail_options, 0);
    assert_int_equal(f->rec.msg.n_forward_paths, 1);
    unit_check_str("second message", f->rec.msg.data, f->rec.msg.data_len, "x\r\n");
    assert_int_equal(f->rec.n_message, 2);
    dialog(f, "QUIT\r\n", "221 2.0.0");
    assert_int_equal(f->io.n_close, 1);
}

static void test_empty_message(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", "250 2.1.0|250 2.1.5|354");
    dialog(f, ".\r\n", "250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
    assert_int_equal(f->rec.msg.data_len, 0);
}

static void test_pipelining(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    const char *in = "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
                     "RCPT TO:<c@example.com>\r\nDATA\r\nhello\r\n.\r\nNOOP\r\nQUIT\r\nNOOP\r\n";
    size_t used = feed(f, in);
    /* Everything up to QUIT is taken; nothing after it. */
    assert_int_equal(used, strlen(in) - strlen("NOOP\r\n"));
    expect_replies(f, "250 2.1.0|250 2.1.5|250 2.1.5|354|250 2.0.0|250 2.0.0|221 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
    assert_int_equal(f->rec.msg.n_forward_paths, 2);
    assert_string_equal(f->rec.msg.forward_paths[0], "b@example.com");
    assert_string_equal(f->rec.msg.forward_paths[1], "c@example.com");
    unit_check_str("pipelined data", f->rec.msg.data, f->rec.msg.data_len, "hello\r\n");
    assert_int_equal(f->io.n_close, 1);
    assert_int_equal(channel_phase(f->s), PHASE_CLOSED);
    assert_int_equal(feed(f, "NOOP\r\n"), 0);
    expect_out(f, "");
}

/* A whole dialogue fed byte by byte, or in odd chunks, gives the same
 * replies and message as fed at once, under each bare CR/LF policy. */
static void test_any_chunking(void **state)
{
    (void)state;
    const char *in = "EHLO c.example\r\nMAIL FROM:<a@example.com> BODY=8BITMIME\r\n"
                     "RCPT TO:<b@example.com>\r\nDATA\r\nSubject: x\r\n\r\n..a\r\n.b\r\n"
                     "\n.\n\r.\r\r\n.\r\nRSET\r\nQUIT\r\n";
    static const struct {
        enum smtpd_bare_lf policy;
        const char *data;
    } policies[] = {
        {SMTPD_BARE_LF_ACCEPT, "Subject: x\r\n\r\n.a\r\nb\r\n\n.\n\r.\r\r\n"},
        {SMTPD_BARE_LF_NORMALIZE, "Subject: x\r\n\r\n.a\r\nb\r\n\r\n.\r\n\r\n.\r\n\r\n"},
    };
    size_t len = strlen(in);
    static const size_t chunks[] = {0, 1, 2, 3, 5, 7, 11, 64};
    for (size_t p = 0; p < N_ROWS(policies); p++) {
        char *ref = NULL;
        size_t ref_len = 0;
        for (size_t k = 0; k < N_ROWS(chunks); k++) {
            char ctx[64];
            snprintf(ctx, sizeof(ctx), "policy %d, chunk %zu", (int)policies[p].policy, chunks[k]);
            struct fx *f = fx_new();
            f->ctx = ctx;
            f->params.cfg.bare_lf = policies[p].policy;
            fx_start(f);
            size_t off = 0;
            while (off < len) {
                size_t n = chunks[k] == 0 || off + chunks[k] > len ? len - off : chunks[k];
                size_t used = channel_feed(f->s, in + off, n);
                unit_assert(ctx, used == n);
                off += used;
            }
            unit_assert(ctx, f->rec.n_message == 1);
            unit_check_str(ctx, f->rec.msg.data, f->rec.msg.data_len, policies[p].data);
            unit_assert(ctx, f->io.n_close == 1);
            if (!ref) {
                ref = malloc(f->io.len);
                assert_non_null(ref);
                memcpy(ref, f->io.out, f->io.len);
                ref_len = f->io.len;
            } else {
                unit_check_bytes(ctx, f->io.out, f->io.len, ref, ref_len);
            }
            fx_free(f);
        }
        free(ref);
    }
}

/* ---- bad sequences ---- */

struct seq_case {
    const char *name;
    bool greet;         /* EHLO first */
    const char *before; /* commands whose replies are not checked */
    const char *cmd;
    const char *codes;
};

static const struct seq_case seq_cases[] = {
    {.name = "MAIL before HELO", .cmd = "MAIL FROM:<a@b>\r\n", .codes = "503"},
    {.name = "RCPT before HELO", .cmd = "RCPT TO:<a@b>\r\n", .codes = "503"},
    {.name = "DATA before HELO", .cmd = "DATA\r\n", .codes = "503"},
    {.name = "RCPT before MAIL", .greet = true, .cmd = "RCPT TO:<a@b>\r\n", .codes = "503 5.5.1"},
    {.name = "DATA before MAIL", .greet = true, .cmd = "DATA\r\n", .codes = "503 5.5.1"},
    {.name = "DATA before RCPT",
     .greet = true,
     .before = "MAIL FROM:<a@b>\r\n",
     .cmd = "DATA\r\n",
     .codes = "503 5.5.1"},
    {.name = "DATA after refused RCPT",
     .greet = true,
     .before = "MAIL FROM:<a@b>\r\nRCPT TO:<>\r\n",
     .cmd = "DATA\r\n",
     .codes = "503 5.5.1"},
    {.name = "nested MAIL",
     .greet = true,
     .before = "MAIL FROM:<a@b>\r\n",
     .cmd = "MAIL FROM:<c@d>\r\n",
     .codes = "503 5.5.1"},
    {.name = "nested MAIL after RCPT",
     .greet = true,
     .before = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
     .cmd = "MAIL FROM:<c@d>\r\n",
     .codes = "503 5.5.1"},
    {.name = "RCPT after RSET",
     .greet = true,
     .before = "MAIL FROM:<a@b>\r\nRSET\r\n",
     .cmd = "RCPT TO:<c@d>\r\n",
     .codes = "503 5.5.1"},
    {.name = "EHLO then HELO", .greet = true, .cmd = "HELO x.example\r\n", .codes = "503 5.5.1"},
    {.name = "empty line", .greet = true, .cmd = "\r\n", .codes = "500 5.5.2"},
    {.name = "empty line before HELO", .cmd = "\r\n", .codes = "500"},
    {.name = "unknown command", .greet = true, .cmd = "STARTTLS\r\n", .codes = "500 5.5.1"},
    {.name = "unknown command before HELO", .cmd = "XYZZY\r\n", .codes = "500"},
    {.name = "DATA with argument",
     .greet = true,
     .before = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
     .cmd = "DATA now\r\n",
     .codes = "501 5.5.4"},
    {.name = "RSET with argument", .greet = true, .cmd = "RSET now\r\n", .codes = "501 5.5.4"},
};

static void test_bad_sequences(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(seq_cases); i++) {
        const struct seq_case *c = &seq_cases[i];
        struct fx *f = fx_new();
        f->ctx = c->name;
        if (c->greet)
            fx_ehlo(f);
        else
            fx_start(f);
        if (c->before)
            feed_all(f, c->before);
        out_clear(f);
        dialog(f, c->cmd, c->codes);
        /* The session goes on. */
        dialog(f, "NOOP\r\n", c->greet ? "250 2.0.0" : "250");
        unit_assert(c->name, f->io.n_close == 0);
        fx_free(f);
    }
}

/* ---- MAIL and RCPT arguments ---- */

struct arg_case {
    const char *name;
    const char *cmd;
    const char *codes;
    bool helo;          /* greet with HELO instead of EHLO */
    bool smtputf8;      /* enable_smtputf8 */
    bool decode_data;   /* decode_data */
    bool no_limit;      /* data_size_limit 0 */
    const char *before; /* for RCPT rows: "MAIL FROM:<a@b>\r\n" */
};

static const struct arg_case arg_cases[] = {
    {.name = "MAIL plain", .cmd = "MAIL FROM:<a@example.com>\r\n", .codes = "250 2.1.0"},
    {.name = "MAIL bare address", .cmd = "MAIL FROM:a@example.com\r\n", .codes = "250 2.1.0"},
    {.name = "MAIL space after colon",
     .cmd = "MAIL FROM: <a@example.com>\r\n",
     .codes = "250 2.1.0"},
    {.name = "MAIL lower case", .cmd = "mail from:<a@example.com>\r\n", .codes = "250 2.1.0"},
    {.name = "MAIL null path", .cmd = "MAIL FROM:<>\r\n", .codes = "250 2.1.0"},
    {.name = "MAIL SIZE", .cmd = "MAIL FROM:<a@b> SIZE=100\r\n", .codes = "250 2.1.0"},
    {.name = "MAIL SIZE at the limit",
     .cmd = "MAIL FROM:<a@b> SIZE=33554432\r\n",
     .codes = "250 2.1.0"},
    {.name = "MAIL SIZE over the limit",
     .cmd = "MAIL FROM:<a@b> SIZE=33554433\r\n",
     .codes = "552 5.3.4"},
    {.name = "MAIL SIZE 20 digits",
     .cmd = "MAIL FROM:<a@b> SIZE=99999999999999999999\r\n",
     .codes = "552 5.3.4"},
    {.name = "MAIL SIZE 21 digits",
     .cmd = "MAIL FROM:<a@b> SIZE=123456789012345678901\r\n",
     .codes = "501 5.5.4"},
    {.name = "MAIL SIZE huge, no limit",
     .cmd = "MAIL FROM:<a@b> SIZE=99999999999\r\n",
     .codes = "250 2.1.0",
     .no_limit = true},
    {.name = "MAIL SIZE not a number", .cmd = "MAIL FROM:<a@b> SIZE=abc\r\n", .codes = "501 5.5.4"},
    {.name = "MAIL SIZE without value", .cmd = "MAIL FROM:<a@b> SIZE\r\n", .codes = "501 5.5.4"},
    {.name = "MAIL SIZE empty value", .cmd = "MAIL FROM:<a@b> SIZE=\r\n", .codes = "501 5.5.4"},
    {.name = "MAIL BODY=8BITMIME",
     .cmd = "MAIL FROM:<a@b> BODY=8BITMIME\r\n",
     .codes = "250 2.1.0"},
    {.name = "MAIL BODY=7BIT", .cmd = "MAIL FROM:<a@b> body=7bit\r\n", .codes = "250 2.1.0"},
    {.name = "MAIL BODY=BINARYMIME",
     .cmd = "MAIL FROM:<a@b> BODY=BINARYMIME\r\n",
     .codes = "501 5.5.4"},
    {.name = "MAIL BODY without value", .cmd = "MAIL FROM:<a@b> BODY\r\n", .codes = "501 5.5.4"},
    {.name = "MAIL BODY with decode_data",
     .cmd = "MAIL FROM:<a@b> BODY=8BITMIME\r\n",
     .codes = "555 5.5.4",
     .decode_data = true},
    {.name = "MAIL unknown parameter", .cmd = "MAIL FROM:<a@b> FOO=BAR\r\n", .codes = "555 5.5.4"},
    {.name = "MAIL SMTPUTF8 not enabled",
     .cmd = "MAIL FROM:<a@b> SMTPUTF8\r\n",
     .codes = "555 5.5.4"},
    {.name = "MAIL SMTPUTF8 enabled",
     .cmd = "MAIL FROM:<j\xc3\xb6rg@b> SMTPUTF8\r\n",
     .codes = "250 2.1.0",
     .smtputf8 = true},
    {.name = "MAIL SMTPUTF8 with value",
     .cmd = "MAIL FROM:<a@b> SMTPUTF8=yes\r\n",
     .codes = "501 5.5.4",
     .smtputf8 = true},
    {.name = "MAIL parameter syntax", .cmd = "MAIL FROM:<a@b> A!B\r\n", .codes = "501 5.5.4"},
    {.name = "MAIL several parameters",
     .cmd = "MAIL FROM:<a@b> SIZE=10 BODY=7BIT\r\n",
     .codes = "250 2.1.0"},
    {.name = "MAIL missing colon", .cmd = "MAIL FROM a@b\r\n", .codes = "501 5.1.7"},
    {.name = "MAIL no argument", .cmd = "MAIL\r\n", .codes = "501 5.1.7"},
    {.name = "MAIL empty path", .cmd = "MAIL FROM:\r\n", .codes = "501 5.1.7"},
    {.name = "MAIL unterminated", .cmd = "MAIL FROM:<a@b\r\n", .codes = "501 5.1.7"},
    {.name = "MAIL garbage after >", .cmd = "MAIL FROM:<a@b>x\r\n", .codes = "501 5.1.7"},
    {.name = "MAIL bad domain", .cmd = "MAIL FROM:<a@-b.example>\r\n", .codes = "501 5.1.7"},
    {.name = "MAIL params after HELO",
     .cmd = "MAIL FROM:<a@b> SIZE=100\r\n",
     .codes = "501",
     .helo = true},
    {.name = "MAIL after HELO", .cmd = "MAIL FROM:<a@b>\r\n", .codes = "250", .helo = true},
    {.name = "RCPT plain",
     .cmd = "RCPT TO:<b@example.com>\r\n",
     .codes = "250 2.1.5",
     .before = "MAIL FROM:<a@b>\r\n"},
    {.name = "RCPT bare",
     .cmd = "RCPT TO:b@example.com\r\n",
     .codes = "250 2.1.5",
     .before = "MAIL FROM:<a@b>\r\n"},
    {.name = "RCPT Postmaster",
     .cmd = "RCPT TO:<Postmaster>\r\n",
     .codes = "250 2.1.5",
     .before = "MAIL FROM:<a@b>\r\n"},
    {.name = "RCPT null path",
     .cmd = "RCPT TO:<>\r\n",
     .codes = "501 5.1.3",
     .before = "MAIL FROM:<a@b>\r\n"},
    {.name = "RCPT null path after HELO",
     .cmd = "RCPT TO:<>\r\n",
     .codes = "501",
     .helo = true,
     .before = "MAIL FROM:<a@b>\r\n"},
    {.name = "RCPT parameter",
     .cmd = "RCPT TO:<b@c> NOTIFY=NEVER\r\n",
     .codes = "555 5.5.4",
     .before = "MAIL FROM:<a@b>\r\n"},
    {.name = "RCPT parameter syntax",
     .cmd = "RCPT TO:<b@c> A!B\r\n",
     .codes = "501 5.5.4",
     .before = "MAIL FROM:<a@b>\r\n"},
    {.name = "RCPT missing colon",
     .cmd = "RCPT TO b@c\r\n",
     .codes = "501 5.1.3",
     .before = "MAIL FROM:<a@b>\r\n"},
    {.name = "RCPT unterminated",
     .cmd = "RCPT TO:<b@c\r\n",
     .codes = "501 5.1.3",
     .before = "MAIL FROM:<a@b>\r\n"},
    {.name = "RCPT FROM: keyword",
     .cmd = "RCPT FROM:<b@c>\r\n",
     .codes = "501 5.1.3",
     .before = "MAIL FROM:<a@b>\r\n"},
};

static void test_mail_rcpt_arguments(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(arg_cases); i++) {
        const struct arg_case *c = &arg_cases[i];
        struct fx *f = fx_new();
        f->ctx = c->name;
        f->params.cfg.enable_smtputf8 = c->smtputf8;
        f->params.cfg.decode_data = c->decode_data;
        if (c->no_limit)
            f->params.cfg.data_size_limit = 0;
        if (c->helo)
            fx_helo(f);
        else
            fx_ehlo(f);
        if (c->before) {
            feed_all(f, c->before);
            out_clear(f);
        }
        dialog(f, c->cmd, c->codes);
        bool ok = c->codes[0] == '2';
        if (!c->before) {
            /* A refused MAIL leaves no transaction: MAIL again works; an
             * accepted one makes the next MAIL nested. */
            dialog(f, "MAIL FROM:<x@y>\r\n",
                   ok ? (c->helo ? "503" : "503 5.5.1") : (c->helo ? "250" : "250 2.1.0"));
        } else {
            /* RCPT refused: still no forward-path; accepted: DATA goes on. */
            dialog(f, "DATA\r\n", ok ? "354" : (c->helo ? "503" : "503 5.5.1"));
        }
        fx_free(f);
    }
}

static void test_smtputf8_transaction(void **state)
{
    struct fx *f = *state;
    f->params.cfg.enable_smtputf8 = true;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<j\xc3\xb6rg@b\xc3\xbc.example> smtputf8\r\n", "250 2.1.0");
    dialog(f, "RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf>\r\n",
           "250 2.1.5");
    dialog(f, "DATA\r\n\xc3\xa9t\xc3\xa9\r\n.\r\n", "354|250 2.0.0");
    assert_true(f->rec.msg.smtputf8);
    assert_string_equal(f->rec.msg.reverse_path, "j\xc3\xb6rg@b\xc3\xbc.example");
    assert_string_equal(f->rec.msg.forward_paths[0],
                        "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf");
    assert_int_equal(f->rec.msg.n_mail_options, 1);
    assert_string_equal(f->rec.msg.mail_options[0], "SMTPUTF8");
}

static void test_second_ehlo_resets(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", "250 2.1.0|250 2.1.5");
    feed_all(f, "EHLO again.example\r\n");
    assert_memory_equal(f->io.out, "250-" HOST "\r\n", strlen("250-" HOST "\r\n"));
    out_clear(f);
    assert_int_equal(f->rec.n_reset, 1);
    assert_string_equal(smtpd_session_helo(f->s), "again.example");
    dialog(f, "RCPT TO:<c@d>\r\n", "503 5.5.1");
    dialog(f, "DATA\r\n", "503 5.5.1");
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
    /* HELO after EHLO is refused and changes nothing. */
    dialog(f, "HELO x.example\r\n", "503 5.5.1");
    assert_true(smtpd_session_esmtp(f->s));
    assert_string_equal(smtpd_session_helo(f->s), "again.example");
    dialog(f, "RCPT TO:<c@d>\r\n", "250 2.1.5");
}

static void test_rset_resets(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "RSET\r\n", "250 2.0.0");
    assert_int_equal(f->rec.n_reset, 0); /* nothing to reset */
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRSET\r\n", "250 2.1.0|250 2.1.5|250 2.0.0");
    assert_int_equal(f->rec.n_reset, 1);
    dialog(f, "RCPT TO:<c@d>\r\n", "503 5.5.1");
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
}

static void test_noop_vrfy_expn(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "NOOP\r\n", "250 2.0.0");
    dialog(f, "NOOP with an argument\r\n", "250 2.0.0");
    dialog(f, "noop\r\n", "250 2.0.0");
    dialog(f, "VRFY <a@example.com>\r\n", "252 *");
    dialog(f, "VRFY a@example.com\r\n", "252 *");
    dialog(f, "VRFY Postmaster\r\n", "252 *");
    dialog(f, "VRFY\r\n", "501 5.5.4");
    dialog(f, "VRFY <a@>\r\n", "502 *");
    dialog(f, "EXPN\r\n", "502 5.5.1");
    dialog(f, "EXPN staff\r\n", "502 5.5.1");
    /* None of these needs a greeting. */
    struct fx *g = fx_new();
    fx_start(g);
    out_clear(g);
    dialog(g, "NOOP x\r\nVRFY <a@b>\r\nEXPN x\r\nRSET\r\n", "250|252 *|502|250");
    fx_free(g);
}

static void test_help(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    out_clear(f);
    /* HELP works before the greeting too. */
    feed_all(f, "HELP\r\n");
    expect_out(f, "250 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY\r\n");
    feed_all(f, "HELP MAIL\r\n");
    expect_out(f, "250 Syntax: MAIL FROM: <address>\r\n");
    feed_all(f, "EHLO c.example\r\n");
    out_clear(f);
    feed_all(f, "HELP\r\n");
    expect_out(f, "250 2.0.0 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY\r\n");
    feed_all(f, "HELP MAIL\r\n");
    expect_out(f, "250 2.0.0 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n");
    feed_all(f, "help rcpt\r\n");
    expect_out(f, "250 2.0.0 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n");
    feed_all(f, "HELP DATA\r\n");
    expect_out(f, "250 2.0.0 Syntax: DATA\r\n");
    feed_all(f, "HELP VRFY\r\n");
    expect_out(f, "250 2.0.0 Syntax: VRFY <address>\r\n");
    dialog(f, "HELP EHLO\r\nHELP HELO\r\nHELP RSET\r\nHELP NOOP\r\nHELP QUIT\r\n",
           "250 2.0.0|250 2.0.0|250 2.0.0|250 2.0.0|250 2.0.0");
    dialog(f, "HELP SPAM\r\n", "501 5.5.4");
    dialog(f, "HELP MAIL FROM\r\n", "501 5.5.4");
}

/* ---- line limits ---- */

/* A command line of exactly @p total octets (without CRLF): @p head, then
 * 'x' up to the length, then @p tail. */
static char *line_of(const char *head, size_t total, const char *tail)
{
    size_t hl = strlen(head), tl = strlen(tail);
    assert_true(total >= hl + tl);
    char *s = malloc(total + 3);
    assert_non_null(s);
    memcpy(s, head, hl);
    memset(s + hl, 'x', total - hl - tl);
    memcpy(s + total - tl, tail, tl);
    memcpy(s + total, "\r\n", 3);
    return s;
}

struct len_case {
    const char *name;
    const char *head;
    const char *tail;
    size_t total;
    const char *codes;
    bool helo;
    bool smtputf8;
    bool no_limit;
};

static const struct len_case len_cases[] = {
    {.name = "NOOP 512", .head = "NOOP ", .tail = "", .total = 512, .codes = "250 2.0.0"},
    {.name = "NOOP 513", .head = "NOOP ", .tail = "", .total = 513, .codes = "500 5.5.2"},
    {.name = "NOOP 538", .head = "NOOP ", .tail = "", .total = 538, .codes = "500 5.5.2"},
    {.name = "NOOP 539", .head = "NOOP ", .tail = "", .total = 539, .codes = "500 5.5.2"},
    {.name = "NOOP 10000", .head = "NOOP ", .tail = "", .total = 10000, .codes = "500 5.5.2"},
    {.name = "MAIL 538 with SIZE",
     .head = "MAIL FROM:<",
     .tail = "@example.com> SIZE=1000",
     .total = 538,
     .codes = "250 2.1.0"},
    {.name = "MAIL 539 with SIZE",
     .head = "MAIL FROM:<",
     .tail = "@example.com> SIZE=1000",
     .total = 539,
     .codes = "500 5.5.2"},
    {.name = "MAIL 548 with SMTPUTF8",
     .head = "MAIL FROM:<",
     .tail = "@example.com> SIZE=1 SMTPUTF8",
     .total = 548,
     .codes = "250 2.1.0",
     .smtputf8 = true},
    {.name = "MAIL 549 with SMTPUTF8",
     .head = "MAIL FROM:<",
     .tail = "@example.com> SIZE=1 SMTPUTF8",
     .total = 549,
     .codes = "500 5.5.2",
     .smtputf8 = true},
    {.name = "MAIL 512 without SIZE",
     .head = "MAIL FROM:<",
     .tail = "@example.com>",
     .total = 512,
     .codes = "250 2.1.0",
     .no_limit = true},
    {.name = "MAIL 513 without SIZE",
     .head = "MAIL FROM:<",
     .tail = "@example.com>",
     .total = 513,
     .codes = "500 5.5.2",
     .no_limit = true},
    {.name = "MAIL 512 after HELO",
     .head = "MAIL FROM:<",
     .tail = "@example.com>",
     .total = 512,
     .codes = "250",
     .helo = true},
    {.name = "MAIL 513 after HELO",
     .head = "MAIL FROM:<",
     .tail = "@example.com>",
     .total = 513,
     .codes = "500",
     .helo = true},
    {.name = "RCPT 513",
     .head = "RCPT TO:<",
     .tail = "@example.com>",
     .total = 513,
     .codes = "500 5.5.2"},
};

static void test_line_limits(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(len_cases); i++) {
        const struct len_case *c = &len_cases[i];
        for (int bytewise = 0; bytewise <= 1; bytewise++) {
            char ctx[128];
            snprintf(ctx, sizeof(ctx), "%s%s", c->name, bytewise ? " (byte by byte)" : "");
            struct fx *f = fx_new();
            f->ctx = ctx;
            f->params.cfg.enable_smtputf8 = c->smtputf8;
            if (c->no_limit)
                f->params.cfg.data_size_limit = 0;
            if (c->helo)
                fx_helo(f);
            else
                fx_ehlo(f);
            char *line = line_of(c->head, c->total, c->tail);
            if (bytewise) {
                for (size_t k = 0; line[k]; k++)
                    unit_assert(ctx, channel_feed(f->s, line + k, 1) == 1);
            } else {
                feed_all(f, line);
            }
            expect_replies(f, c->codes);
            free(line);
            /* In sync: the next command gets its own reply. */
            dialog(f, "NOOP\r\n", c->helo ? "250" : "250 2.0.0");
            unit_assert(ctx, f->io.n_close == 0);
            fx_free(f);
        }
    }
}

static void test_invalid_utf8_command(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "NOOP \xff\r\n", "500 5.5.2");
    dialog(f, "MAIL FROM:<\xc3@example.com>\r\n", "500 5.5.2");
    dialog(f, "MAIL FROM:<\xed\xa0\x80@example.com>\r\n", "500 5.5.2");
    dialog(f, "\xc0\xaf\r\n", "500 5.5.2");
    /* The session goes on, with no transaction started. */
    dialog(f, "RCPT TO:<a@b>\r\n", "503 5.5.1");
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
    assert_int_equal(f->io.n_close, 0);
}

/* Commands may end in a bare LF; data may not (only CRLF.CRLF ends it). */
static void test_bare_lf(void **state)
{
    (void)state;
    static const struct {
        enum smtpd_bare_lf policy;
        const char *codes; /* replies after the final dot */
        const char *data;  /* NULL: no message */
    } rows[] = {
        {SMTPD_BARE_LF_ACCEPT, "250 2.0.0", "one\n.\ntwo\r\n\n\r\n"},
        {SMTPD_BARE_LF_NORMALIZE, "250 2.0.0", "one\r\n.\r\ntwo\r\n.\r\n\r\n"},
        {SMTPD_BARE_LF_REJECT, "550 5.5.2", NULL},
    };
    for (size_t i = 0; i < N_ROWS(rows); i++) {
        char ctx[32];
        snprintf(ctx, sizeof(ctx), "policy %d", (int)rows[i].policy);
        struct fx *f = fx_new();
        f->ctx = ctx;
        f->params.cfg.bare_lf = rows[i].policy;
        fx_start(f);
        out_clear(f);
        feed_all(f, "EHLO c.example\n");
        assert_int_equal(memcmp(f->io.out, "250-" HOST "\r\n", strlen("250-" HOST "\r\n")), 0);
        out_clear(f);
        dialog(f, "MAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\n", "250 2.1.0|250 2.1.5|354");
        dialog(f, "one\n.\ntwo\r\n.\n", "");
        assert_int_equal(channel_phase(f->s), PHASE_DATA);
        dialog(f, "\r\n.\r\n", rows[i].codes);
        assert_int_equal(f->rec.n_message, rows[i].data ? 1 : 0);
        if (rows[i].data)
            unit_check_str(ctx, f->rec.msg.data, f->rec.msg.data_len, rows[i].data);
        /* Back in command state either way. */
        dialog(f, "RCPT TO:<c@d>\r\n", "503 5.5.1");
        fx_free(f);
    }
}

/* SMTP smuggling: whatever the policy, <LF>.<CRLF> or <CR>.<CRLF> does not
 * end the data, so a second message cannot hide in the first one. */
static void test_no_smuggling(void **state)
{
    (void)state;
    static const char *const ends[] = {"\n.\r\n", "\r.\r\n", "\r\n.\r.\r\n", "\r\n.\n"};
    static const enum smtpd_bare_lf policies[] = {SMTPD_BARE_LF_ACCEPT, SMTPD_BARE_LF_NORMALIZE,
                                                  SMTPD_BARE_LF_REJECT};
    unit_soft_begin();
    for (size_t e = 0; e < N_ROWS(ends); e++) {
        for (size_t p = 0; p < N_ROWS(policies); p++) {
            char ctx[96], shown[32];
            snprintf(ctx, sizeof(ctx), "policy %d, fake end \"%s\"", (int)policies[p],
                     unit_show(shown, sizeof(shown), ends[e], strlen(ends[e])));
            struct fx *f = fx_new();
            f->ctx = ctx;
            f->params.cfg.bare_lf = policies[p];
            fx_ehlo(f);
            start_data(f);
            char in[512];
            snprintf(in, sizeof(in),
                     "Subject: one%sMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n"
                     "Subject: smuggled\r\n\r\n.\r\n",
                     ends[e]);
            size_t used = feed(f, in);
            /* One message at most, ending at the real CRLF.CRLF. */
            bool ok = UNIT_SOFT(ctx, used == strlen(in)) && UNIT_SOFT(ctx, f->rec.n_message <= 1) &&
                      UNIT_SOFT(ctx, f->rec.n_mail == 1);
            if (ok && f->rec.n_message == 1)
                UNIT_SOFT(ctx, strstr(f->rec.msg.data, "smuggled") != NULL);
            UNIT_SOFT(ctx, strstr(f->io.out ? f->io.out : "", "354") == NULL);
            fx_free(f);
        }
    }
    unit_soft_end();
}

/* ---- DATA: size limit, decode_data ---- */

static void test_size_limit(void **state)
{
    (void)state;
    for (size_t over = 0; over <= 1; over++) {
        struct fx *f = fx_new();
        f->ctx = over ? "101 octets" : "100 octets";
        f->params.cfg.data_size_limit = 100;
        fx_ehlo(f);
        start_data(f);
        /* 48 + CRLF + 50 (+1) octets */
        char *a = line_of("", 48, "");
        char *b = line_of("", 50 + over, "");
        feed_all(f, a);
        feed_all(f, b);
        expect_out(f, ""); /* no reply before the final dot */
        assert_int_equal(channel_phase(f->s), PHASE_DATA);
        dialog(f, ".\r\n", over ? "552 5.3.4" : "250 2.0.0");
        assert_int_equal(f->rec.n_message, over ? 0 : 1);
        if (!over)
            assert_int_equal(f->rec.msg.data_len, 48 + 2 + 50 + 2);
        /* Back in command state, the transaction gone. */
        assert_int_equal(channel_phase(f->s), PHASE_COMMAND);
        dialog(f, "RCPT TO:<c@d>\r\n", "503 5.5.1");
        dialog(f, "NOOP\r\n", "250 2.0.0");
        start_data(f);
        dialog(f, "small\r\n.\r\n", "250 2.0.0");
        unit_check_str(f->ctx, f->rec.msg.data, f->rec.msg.data_len, "small\r\n");
        free(a);
        free(b);
        fx_free(f);
    }
}

/* Far over the limit, pipelined commands after the dot still work. */
static void test_size_limit_pipelined(void **state)
{
    struct fx *f = *state;
    f->params.cfg.data_size_limit = 1000;
    fx_ehlo(f);
    start_data(f);
    char *big = line_of("", 900, "");
    for (int i = 0; i < 10; i++)
        feed_all(f, big);
    free(big);
    expect_out(f, "");
    dialog(f, ".\r\nNOOP\r\nQUIT\r\n", "552 5.3.4|250 2.0.0|221 2.0.0");
    assert_int_equal(f->rec.n_message, 0);
}

static void test_decode_data(void **state)
{
    struct fx *f = *state;
    f->params.cfg.decode_data = true;
    fx_ehlo(f);
    start_data(f);
    dialog(f, "caf\xe9\r\n.\r\n", "554 5.6.0");
    assert_int_equal(f->rec.n_message, 0);
    dialog(f, "RCPT TO:<c@d>\r\n", "503 5.5.1");
    start_data(f);
    dialog(f, "caf\xc3\xa9 \xe2\x82\xac\r\n.\r\n", "250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
    unit_check_str("utf-8 data", f->rec.msg.data, f->rec.msg.data_len,
                   "caf\xc3\xa9 \xe2\x82\xac\r\n");
}

/* Without decode_data, data is bytes: invalid UTF-8, NUL and 0xff pass. */
static void test_data_is_bytes(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    start_data(f);
    const char in[] = "a\0b\xff\xfe\r\n.\r\n";
    size_t used = channel_feed(f->s, in, sizeof(in) - 1);
    assert_int_equal(used, sizeof(in) - 1);
    expect_replies(f, "250 2.0.0");
    unit_check_bytes("binary data", f->rec.msg.data, f->rec.msg.data_len, "a\0b\xff\xfe\r\n", 7);
}

static void test_max_recipients(void **state)
{
    struct fx *f = *state;
    f->params.cfg.max_recipients = 2;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nRCPT TO:<r3@x>\r\n",
           "250 2.1.0|250 2.1.5|250 2.1.5|452 4.5.3");
    assert_int_equal(f->rec.n_rcpt, 2);
    dialog(f, "DATA\r\nx\r\n.\r\n", "354|250 2.0.0");
    assert_int_equal(f->rec.msg.n_forward_paths, 2);
    assert_string_equal(f->rec.msg.forward_paths[1], "r2@x");
    /* The count is per transaction. */
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\n",
           "250 2.1.0|250 2.1.5|250 2.1.5");
}

/* A client that does not read its replies: once the transport says too
 * many wait, the channel stops after the command that made it so and takes
 * the rest when fed again (after the replies went out). */
static void test_backlog_stops_feeding(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    f->io.backlog = 1;
    const char *burst = "NOOP\r\nNOOP\r\nRSET\r\n";
    assert_int_equal(feed(f, burst), 6);
    expect_replies(f, "250 2.0.0");
    assert_int_equal(feed(f, burst + 6), 6);
    expect_replies(f, "250 2.0.0");
    f->io.backlog = 0;
    assert_int_equal(feed(f, burst + 12), 6);
    expect_replies(f, "250 2.0.0");
    /* Message data is not cut short; the reply at its end counts. */
    f->io.backlog = 1;
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
    dialog(f, "RCPT TO:<r@x>\r\n", "250 2.1.5");
    dialog(f, "DATA\r\n", "354");
    const char *tail = "one\r\ntwo\r\n.\r\nNOOP\r\n";
    assert_int_equal(feed(f, tail), strlen(tail) - 6);
    expect_replies(f, "250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
}

static void test_quit(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    assert_int_equal(feed(f, "QUIT\r\nNOOP\r\n"), 6);
    expect_out(f, "221 2.0.0 Bye\r\n");
    assert_int_equal(f->io.n_close, 1);
    assert_int_equal(channel_phase(f->s), PHASE_CLOSED);
    assert_int_equal(feed(f, "NOOP\r\n"), 0);
    channel_timeout(f->s); /* closed: nothing more */
    channel_shutdown(f->s, true);
    expect_out(f, "");
    assert_int_equal(f->io.n_close, 1);

    /* Before any greeting, QUIT works and has no enhanced code. */
    struct fx *g = fx_new();
    fx_start(g);
    out_clear(g);
    dialog(g, "QUIT\r\n", "221");
    assert_int_equal(g->io.n_close, 1);
    fx_free(g);
}

/* ---- handler answers ---- */

static void test_async_message(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    fx_ehlo(f);
    const char *head = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello\r\n.\r\n";
    const char *rest = "NOOP\r\nQUIT\r\n";
    char in[256];
    snprintf(in, sizeof(in), "%s%s", head, rest);
    size_t used = feed(f, in);
    /* The pipelined commands wait while the handler has not answered. */
    assert_int_equal(used, strlen(head));
    expect_replies(f, "250 2.1.0|250 2.1.5|354");
    assert_int_equal(f->rec.n_message, 1);
    assert_non_null(f->rec.waiting);
    assert_ptr_equal(f->rec.waiting, f->s);
    assert_int_equal(channel_phase(f->s), PHASE_WAIT);
    assert_int_equal(feed(f, rest), 0);
    expect_out(f, "");
    assert_int_equal(f->io.n_resume, 0);
    /* The message stays valid until the answer. */
    unit_check_str("pending data", f->rec.msg_data_ptr, f->rec.msg_data_len, "hello\r\n");
    /* The answer comes later, from the event loop. */
    assert_int_equal(smtpd_reply(f->s, 250, NULL, "queued as 42"), SMTPD_OK);
    expect_out(f, "250 2.0.0 queued as 42\r\n");
    assert_int_equal(f->io.n_resume, 1);
    assert_int_equal(channel_phase(f->s), PHASE_COMMAND);
    assert_int_equal(f->rec.n_reset, 1);
    /* A second answer is refused. */
    assert_int_equal(smtpd_reply(f->s, 250, NULL, NULL), SMTPD_ERR_STATE);
    expect_out(f, "");
    /* The input that waited is read now. */
    assert_int_equal(feed(f, rest), strlen(rest));
    expect_replies(f, "250 2.0.0|221 2.0.0");
    assert_int_equal(f->io.n_close, 1);
}

static void test_async_message_temp_failure(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    fx_ehlo(f);
    start_data(f);
    dialog(f, "x\r\n.\r\n", "");
    assert_int_equal(smtpd_reply(f->s, 451, "4.4.1", "upstream down"), SMTPD_OK);
    expect_out(f, "451 4.4.1 upstream down\r\n");
    assert_int_equal(f->io.n_resume, 1);
    /* The transaction is over anyway. */
    dialog(f, "RCPT TO:<c@d>\r\n", "503 5.5.1");
}

/* A handler may also answer inside the callback and still say PENDING. */
static enum smtpd_verdict on_message_reply_and_pending(void *arg, struct smtpd_session *s,
                                                       const struct smtpd_message *m)
{
    struct rec *r = arg;
    (void)m;
    r->n_message++;
    assert_int_equal(smtpd_reply(s, 250, NULL, "at once"), SMTPD_OK);
    assert_int_equal(smtpd_reply(s, 250, NULL, "twice"), SMTPD_ERR_STATE);
    return SMTPD_PENDING;
}

static void test_reply_inside_pending(void **state)
{
    struct fx *f = *state;
    f->params.handler.on_message = on_message_reply_and_pending;
    fx_ehlo(f);
    start_data(f);
    dialog(f, "x\r\n.\r\nNOOP\r\n", "250 2.0.0|250 2.0.0");
    assert_int_equal(f->io.n_resume, 0);
    assert_int_equal(f->rec.n_message, 1);
}

static void test_async_mail(void **state)
{
    struct fx *f = *state;
    f->rec.mail_pending = true;
    fx_ehlo(f);
    const char *in = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n";
    assert_int_equal(feed(f, in), strlen("MAIL FROM:<a@b>\r\n"));
    expect_out(f, "");
    assert_int_equal(channel_phase(f->s), PHASE_WAIT);
    assert_int_equal(smtpd_reply(f->s, 550, "5.7.1", "not you"), SMTPD_OK);
    expect_out(f, "550 5.7.1 not you\r\n");
    assert_int_equal(f->io.n_resume, 1);
    /* The refused MAIL started nothing. */
    dialog(f, "RCPT TO:<c@d>\r\n", "503 5.5.1");
    f->rec.mail_pending = false;
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
}

static void test_async_rcpt(void **state)
{
    struct fx *f = *state;
    f->rec.rcpt_pending = true;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
    const char *in = "RCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n";
    assert_int_equal(feed(f, in), 15);
    assert_int_equal(smtpd_reply(f->s, 250, NULL, NULL), SMTPD_OK);
    expect_replies(f, "250 2.1.5");
    assert_int_equal(feed(f, in + 15), 15);
    assert_int_equal(smtpd_reply(f->s, 450, NULL, NULL), SMTPD_OK);
    expect_replies(f, "450 4.0.0");
    f->rec.rcpt_pending = false;
    dialog(f, "DATA\r\nx\r\n.\r\n", "354|250 2.0.0");
    assert_int_equal(f->rec.msg.n_forward_paths, 1);
    assert_string_equal(f->rec.msg.forward_paths[0], "c@d");
}

static void test_async_connect(void **state)
{
    struct fx *f = *state;
    f->rec.connect_pending = true;
    fx_start(f);
    expect_out(f, "");
    assert_int_equal(feed(f, "EHLO c.example\r\n"), 0);
    assert_int_equal(smtpd_reply(f->s, 220, NULL, "welcome"), SMTPD_OK);
    expect_out(f, "220 " HOST " welcome\r\n");
    assert_int_equal(f->io.n_resume, 1);
    feed_all(f, "EHLO c.example\r\n");
    assert_int_equal(memcmp(f->io.out, "250-", 4), 0);
}

static void test_mail_refused(void **state)
{
    struct fx *f = *state;
    f->rec.mail_code = 550;
    f->rec.mail_enh = "5.1.8";
    f->rec.refuse_mail = "bad@example.com";
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<bad@example.com>\r\n", "550 5.1.8");
    assert_int_equal(f->rec.n_mail, 1);
    dialog(f, "RCPT TO:<c@d>\r\n", "503 5.5.1");
    dialog(f, "MAIL FROM:<good@example.com>\r\n", "250 2.1.0");
    dialog(f, "RCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n", "250 2.1.5|354|250 2.0.0");
    assert_string_equal(f->rec.msg.reverse_path, "good@example.com");
}

static void test_rcpt_refused(void **state)
{
    struct fx *f = *state;
    f->rec.rcpt_code = 550;
    f->rec.rcpt_enh = "5.1.1";
    f->rec.refuse_rcpt = "nobody@example.com";
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<nobody@example.com>\r\n", "250 2.1.0|550 5.1.1");
    /* Only that forward-path is refused: the transaction goes on. */
    dialog(f, "DATA\r\n", "503 5.5.1");
    dialog(f,
           "RCPT TO:<one@example.com>\r\nRCPT TO:<nobody@example.com>\r\n"
           "RCPT TO:<two@example.com>\r\n",
           "250 2.1.5|550 5.1.1|250 2.1.5");
    dialog(f, "DATA\r\nx\r\n.\r\n", "354|250 2.0.0");
    assert_int_equal(f->rec.msg.n_forward_paths, 2);
    assert_string_equal(f->rec.msg.forward_paths[0], "one@example.com");
    assert_string_equal(f->rec.msg.forward_paths[1], "two@example.com");
    assert_int_equal(f->rec.n_rcpt, 4);
}

static void test_message_refused(void **state)
{
    struct fx *f = *state;
    f->rec.message_code = 554;
    f->rec.message_enh = "5.7.1";
    f->rec.message_text = "spam\r\n250 fake";
    fx_ehlo(f);
    start_data(f);
    feed_all(f, "x\r\n.\r\n");
    /* CR and LF in the handler's text become spaces: one reply line. */
    expect_out(f, "554 5.7.1 spam  250 fake\r\n");
    dialog(f, "RCPT TO:<c@d>\r\n", "503 5.5.1");
}

/* The enhanced code of an answer: the handler's when it is valid and of
 * the reply's class (RFC 3463 2), the standard one of the step for NULL; a
 * malformed one is refused (SMTPD_ERR_CONFIG), nothing is sent, and the
 * step still waits for its answer. */
static void test_reply_enhanced_codes(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *enh;
        const char *want; /* NULL: refused with SMTPD_ERR_CONFIG */
    } rows[] = {
        {550, "5.1.1", "550 5.1.1 Error: refused\r\n"},
        {550, NULL, "550 5.0.0 Error: refused\r\n"},
        {550, "4.1.1", NULL},
        {550, "5.1", NULL},
        {550, "5.1.1.1", NULL},
        {550, "5.1234.1", NULL},
        {550, "x", NULL},
        {550, "", NULL},
        {451, NULL, "451 4.0.0 Error: try again later\r\n"},
        {250, NULL, "250 2.1.0 OK\r\n"},
        {251, "2.1.0", "251 2.1.0 OK\r\n"},
    };
    for (size_t i = 0; i < N_ROWS(rows); i++) {
        char ctx[64];
        snprintf(ctx, sizeof(ctx), "%d %s", rows[i].code, rows[i].enh ? rows[i].enh : "NULL");
        struct fx *f = fx_new();
        f->ctx = ctx;
        f->rec.mail_pending = true;
        fx_ehlo(f);
        feed_all(f, "MAIL FROM:<a@b>\r\n");
        enum smtpd_err err = smtpd_reply(f->s, rows[i].code, rows[i].enh, NULL);
        if (rows[i].want) {
            unit_assert(ctx, err == SMTPD_OK);
            expect_out(f, rows[i].want);
        } else {
            unit_assert(ctx, err == SMTPD_ERR_CONFIG);
            expect_out(f, "");
            unit_assert(ctx, channel_phase(f->s) == PHASE_WAIT);
            unit_assert(ctx, smtpd_reply(f->s, rows[i].code, NULL, NULL) == SMTPD_OK);
            expect_out(f, "550 5.0.0 Error: refused\r\n");
        }
        fx_free(f);
    }
}

static void test_reply_errors(void **state)
{
    struct fx *f = *state;
    f->rec.mail_pending = true;
    fx_ehlo(f);
    /* Nothing is waiting for an answer. */
    assert_int_equal(smtpd_reply(f->s, 250, NULL, NULL), SMTPD_ERR_STATE);
    feed_all(f, "MAIL FROM:<a@b>\r\n");
    /* Codes outside 200-599, and a 3xx where the step takes none. */
    assert_int_equal(smtpd_reply(f->s, 199, NULL, NULL), SMTPD_ERR_REPLY);
    assert_int_equal(smtpd_reply(f->s, 600, NULL, NULL), SMTPD_ERR_REPLY);
    assert_int_equal(smtpd_reply(f->s, 0, NULL, NULL), SMTPD_ERR_REPLY);
    assert_int_equal(smtpd_reply(f->s, 354, NULL, NULL), SMTPD_ERR_REPLY);
    assert_int_equal(smtpd_reply(f->s, 334, NULL, "x"), SMTPD_ERR_REPLY);
    const char *lines[2] = {"a", "b"};
    assert_int_equal(smtpd_reply_lines(f->s, 250, NULL, lines, 0), SMTPD_ERR_CONFIG);
    assert_int_equal(smtpd_reply_lines(f->s, 250, NULL, NULL, 1), SMTPD_ERR_CONFIG);
    assert_int_equal(smtpd_run_builtin(f->s, "x", 1), SMTPD_ERR_STATE);
    expect_out(f, "");
    assert_int_equal(channel_phase(f->s), PHASE_WAIT);
    assert_int_equal(smtpd_reply(f->s, 250, NULL, NULL), SMTPD_OK);
    expect_out(f, "250 2.1.0 OK\r\n");
    assert_int_equal(smtpd_reply(f->s, 250, NULL, NULL), SMTPD_ERR_STATE);
    assert_string_equal(smtpd_strerror(SMTPD_ERR_REPLY),
                        "reply code not allowed here (200-599; 3xx only for an extension command)");
}

static void test_connect_refused(void **state)
{
    struct fx *f = *state;
    f->rec.connect_code = 554;
    fx_start(f);
    expect_replies(f, "554 *");
    assert_int_equal(f->io.n_close, 1);
    assert_int_equal(channel_phase(f->s), PHASE_CLOSED);
    assert_int_equal(feed(f, "EHLO c.example\r\n"), 0);
    expect_out(f, "");
}

static void test_connect_refused_text(void **state)
{
    struct fx *f = *state;
    f->rec.connect_pending = true;
    fx_start(f);
    assert_int_equal(smtpd_reply(f->s, 554, NULL, "no service for you"), SMTPD_OK);
    /* The refusal names the server, as a greeting does (RFC 5321 4.3.1). */
    expect_out(f, "554 " HOST " no service for you\r\n");
    assert_int_equal(f->io.n_close, 1);
    assert_int_equal(f->io.n_resume, 0);
}

static void test_free_while_pending(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    fx_ehlo(f);
    start_data(f);
    dialog(f, "x\r\n.\r\n", "");
    assert_non_null(f->rec.waiting);
    struct smtpd_session *s = f->s;
    f->s = NULL;
    channel_lost(s, "eof");
    channel_free(s);
    assert_int_equal(f->rec.n_close, 1);
    assert_ptr_equal(f->rec.closed, s);
    assert_null(f->rec.waiting);
    expect_out(f, "");
}

/* After the client went away, the channel takes and writes nothing. */
static void test_lost(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
    channel_lost(f->s, "eof");
    assert_int_equal(channel_phase(f->s), PHASE_CLOSED);
    assert_int_equal(feed(f, "RCPT TO:<c@d>\r\n"), 0);
    channel_timeout(f->s);
    channel_shutdown(f->s, false);
    expect_out(f, "");
    assert_int_equal(f->rec.n_close, 0); /* on_close comes with channel_free */
    struct smtpd_session *s = f->s;
    f->s = NULL;
    channel_free(s);
    assert_int_equal(f->rec.n_close, 1);
}

static void test_free_calls_on_close(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    smtpd_session_set_data(f->s, &f->rec);
    assert_ptr_equal(smtpd_session_data(f->s), &f->rec);
    struct smtpd_session *s = f->s;
    f->s = NULL;
    channel_free(s);
    assert_int_equal(f->rec.n_close, 1);
    channel_free(NULL);
}

static void test_shutdown_idle(void **state)
{
    (void)state;
    for (int greet = 0; greet <= 1; greet++) {
        struct fx *f = fx_new();
        f->ctx = greet ? "after EHLO" : "before EHLO";
        if (greet)
            fx_ehlo(f);
        else
            fx_start(f);
        out_clear(f);
        channel_shutdown(f->s, false);
        expect_replies(f, greet ? "421 4.3.2" : "421");
        assert_int_equal(f->io.n_close, 1);
        assert_int_equal(channel_phase(f->s), PHASE_CLOSED);
        assert_int_equal(feed(f, "NOOP\r\n"), 0);
        channel_shutdown(f->s, false); /* twice: nothing more */
        expect_out(f, "");
        fx_free(f);
    }
}

static void test_shutdown_during_transaction(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
    channel_shutdown(f->s, false);
    expect_out(f, "");
    assert_int_equal(f->io.n_close, 0);
    dialog(f, "RCPT TO:<c@d>\r\nDATA\r\n", "250 2.1.5|354");
    dialog(f, "body\r\n", "");
    /* The transaction finishes, then the server says goodbye. */
    dialog(f, ".\r\n", "250 2.0.0|421 4.3.2");
    assert_int_equal(f->rec.n_message, 1);
    assert_int_equal(f->io.n_close, 1);
}

static void test_shutdown_after_rset(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
    channel_shutdown(f->s, false);
    expect_out(f, "");
    assert_int_equal(feed(f, "RSET\r\nNOOP\r\n"), 6);
    expect_replies(f, "250 2.0.0|421 4.3.2");
    assert_int_equal(f->io.n_close, 1);
}

/* A command half received is let finish before the 421. */
static void test_shutdown_partial_line(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    feed_all(f, "NO");
    channel_shutdown(f->s, false);
    expect_out(f, "");
    feed_all(f, "OP\r\n");
    expect_replies(f, "250 2.0.0|421 4.3.2");
    assert_int_equal(f->io.n_close, 1);
}

static void test_shutdown_while_pending(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    fx_ehlo(f);
    start_data(f);
    dialog(f, "x\r\n.\r\n", "");
    channel_shutdown(f->s, false);
    expect_out(f, "");
    assert_int_equal(smtpd_reply(f->s, 250, NULL, NULL), SMTPD_OK);
    expect_replies(f, "250 2.0.0|421 4.3.2");
    assert_int_equal(f->io.n_close, 1);
    assert_int_equal(f->io.n_resume, 0);
}

static void test_shutdown_now(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhalf\r\n", "250 2.1.0|250 2.1.5|354");
    channel_shutdown(f->s, true);
    expect_replies(f, "421 4.3.2");
    assert_int_equal(f->io.n_close, 1);
    assert_int_equal(f->rec.n_message, 0);
}

/* After the channel closed (421), a late answer of a pending handler must
 * not write anything: the transport is closing and the channel is inert. */
static void test_late_answer_after_forced_shutdown(void **state)
{
    struct fx *f = *state;
    f->rec.message_pending = true;
    fx_ehlo(f);
    start_data(f);
    dialog(f, "x\r\n.\r\n", "");
    channel_shutdown(f->s, true);
    expect_replies(f, "421 4.3.2");
    assert_int_equal(f->io.n_close, 1);
    smtpd_reply(f->s, 250, NULL, NULL); /* the result does not matter */
    expect_out(f, "");
    assert_int_equal(f->io.after_close, 0);
    assert_int_equal(f->io.n_resume, 0);
}

static void test_timeout(void **state)
{
    (void)state;
    for (int greet = 0; greet <= 1; greet++) {
        struct fx *f = fx_new();
        f->ctx = greet ? "after EHLO" : "before EHLO";
        if (greet)
            fx_ehlo(f);
        else
            fx_start(f);
        out_clear(f);
        channel_timeout(f->s);
        expect_replies(f, greet ? "421 4.4.2" : "421");
        assert_int_equal(f->io.n_close, 1);
        assert_int_equal(channel_phase(f->s), PHASE_CLOSED);
        fx_free(f);
    }
    /* In DATA too. */
    struct fx *f = fx_new();
    fx_ehlo(f);
    start_data(f);
    assert_int_equal(channel_phase(f->s), PHASE_DATA);
    channel_timeout(f->s);
    expect_replies(f, "421 4.4.2");
    assert_int_equal(f->rec.n_message, 0);
    fx_free(f);
}

/* ---- hardening: error budget, slow data, 421 answers ---- */

static void test_max_errors(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->params.cfg.max_errors = 3;
    fx_ehlo(f);
    const char *in = "FOO\r\nRCPT TO:<a@b>\r\nNOOP\r\nMAIL FROM:<a@>\r\nNOOP\r\nNOOP\r\n";
    size_t used = feed(f, in);
    /* The third bad command is answered, then 421 and close. */
    assert_int_equal(used, strlen(in) - strlen("NOOP\r\nNOOP\r\n"));
    expect_replies(f, "500 5.5.1|503 5.5.1|250 2.0.0|501 5.1.7|421 4.7.0");
    assert_int_equal(f->io.n_close, 1);
    assert_int_equal(channel_phase(f->s), PHASE_CLOSED);
    fx_free(f);

    /* The default budget is 10. */
    f = fx_new();
    assert_int_equal(f->params.cfg.max_errors, 10);
    fx_ehlo(f);
    for (int i = 0; i < 9; i++)
        dialog(f, "FOO\r\n", "500 5.5.1");
    dialog(f, "FOO\r\n", "500 5.5.1|421 4.7.0");
    fx_free(f);

    /* 0: no limit. */
    f = fx_new();
    f->params.cfg.max_errors = 0;
    fx_ehlo(f);
    for (int i = 0; i < 50; i++)
        dialog(f, "FOO\r\n", "500 5.5.1");
    dialog(f, "NOOP\r\n", "250 2.0.0");
    assert_int_equal(f->io.n_close, 0);
    fx_free(f);
}

/* Good commands, refusals by the handler and 4xx/552 replies do not use up
 * the error budget. */
static void test_max_errors_only_bad_commands(void **state)
{
    struct fx *f = *state;
    f->params.cfg.max_errors = 2;
    f->params.cfg.data_size_limit = 10;
    f->rec.rcpt_code = 550;
    f->rec.refuse_rcpt = "no@x";
    fx_ehlo(f);
    for (int i = 0; i < 5; i++) {
        dialog(f, "MAIL FROM:<a@b> SIZE=100\r\n", "552 5.3.4");
        dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<no@x>\r\nRSET\r\n", "250 2.1.0|550 *|250 2.0.0");
        dialog(f, "NOOP\r\nHELP\r\n", "250 2.0.0|250 2.0.0");
    }
    assert_int_equal(f->io.n_close, 0);
}

static void test_too_slow(void **state)
{
    struct fx *f = *state;
    fx_ehlo(f);
    assert_int_equal(channel_data_received(f->s), 0);
    start_data(f);
    assert_int_equal(channel_data_received(f->s), 0);
    feed_all(f, "abc\r\n..x\r\n");
    assert_int_equal(channel_data_received(f->s), 10);
    channel_too_slow(f->s);
    expect_replies(f, "421 4.4.2");
    assert_int_equal(f->io.n_close, 1);
    assert_int_equal(f->rec.n_message, 0);
    assert_int_equal(channel_data_received(f->s), 0);
    channel_too_slow(f->s);
    expect_out(f, "");
}

/* A 421 from the handler closes the session (RFC 5321 3.8). */
static void test_handler_421_closes(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool mail, rcpt, message;
        const char *codes;
    } rows[] = {
        {"on_mail 421", .mail = true, .codes = "421 4.0.0"},
        {"on_rcpt 421", .rcpt = true, .codes = "250 2.1.0|421 4.0.0"},
        {"on_message 421", .message = true, .codes = "250 2.1.0|250 2.1.5|354|421 4.0.0"},
    };
    for (size_t i = 0; i < N_ROWS(rows); i++) {
        struct fx *f = fx_new();
        f->ctx = rows[i].name;
        if (rows[i].mail)
            f->rec.mail_code = 421;
        if (rows[i].rcpt)
            f->rec.rcpt_code = 421;
        if (rows[i].message)
            f->rec.message_code = 421;
        fx_ehlo(f);
        const char *in = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n";
        feed(f, in);
        expect_replies(f, rows[i].codes);
        unit_assert(rows[i].name, f->io.n_close == 1);
        unit_assert(rows[i].name, channel_phase(f->s) == PHASE_CLOSED);
        fx_free(f);
    }
}

/* ---- logging ---- */

struct log_rec {
    char buf[16384];
    size_t len;
    unsigned n_lines;
};

static void log_fn(void *arg, enum smtpd_log_level level, const char *line)
{
    struct log_rec *l = arg;
    (void)level;
    size_t n = strlen(line);
    assert_true(l->len + n + 1 < sizeof(l->buf));
    memcpy(l->buf + l->len, line, n);
    l->len += n;
    l->buf[l->len++] = '\n';
    l->buf[l->len] = '\0';
    l->n_lines++;
}

/* At DEBUG level the dialogue is logged, peer bytes escaped: no control
 * characters, and valid UTF-8 only. */
static void test_log_escapes_peer_text(void **state)
{
    struct fx *f = *state;
    struct log_rec *l = calloc(1, sizeof(*l));
    assert_non_null(l);
    f->params.cfg.log = log_fn;
    f->params.cfg.log_arg = l;
    f->params.cfg.log_level = SMTPD_LOG_DEBUG;
    fx_ehlo(f);
    dialog(f, "NOOP a\x01\\b\xff\x1b[2J\r\n", "500 5.5.2");
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n",
           "250 2.1.0|250 2.1.5|354|250 2.0.0");
    assert_true(l->n_lines > 5);
    assert_non_null(strstr(l->buf, "NOOP a\\x01\\\\b\\xff\\x1b[2J"));
    assert_non_null(strstr(l->buf, "500 5.5.2"));
    assert_non_null(strstr(l->buf, PEER));
    for (size_t i = 0; i < l->len; i++)
        assert_true(l->buf[i] == '\n' || (unsigned char)l->buf[i] >= 0x20);
    assert_true(utf8_valid(l->buf, l->len));
    /* Nothing above the chosen level. */
    struct fx *g = fx_new();
    struct log_rec *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    g->params.cfg.log = log_fn;
    g->params.cfg.log_arg = m;
    g->params.cfg.log_level = SMTPD_LOG_WARNING;
    fx_ehlo(g);
    dialog(g, "NOOP\r\n", "250 2.0.0");
    assert_int_equal(m->n_lines, 0);
    fx_free(g);
    free(m);
    fx_free(f);
    *state = NULL;
    free(l);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_greeting),
        T(test_ehlo_keywords),
        T(test_helo_vs_ehlo),
        T(test_helo_ehlo_need_argument),
        T(test_full_transaction),
        T(test_empty_message),
        T(test_pipelining),
        T(test_any_chunking),
        T(test_bad_sequences),
        T(test_mail_rcpt_arguments),
        T(test_smtputf8_transaction),
        T(test_second_ehlo_resets),
        T(test_rset_resets),
        T(test_noop_vrfy_expn),
        T(test_help),
        T(test_line_limits),
        T(test_invalid_utf8_command),
        T(test_bare_lf),
        T(test_no_smuggling),
        T(test_size_limit),
        T(test_size_limit_pipelined),
        T(test_decode_data),
        T(test_data_is_bytes),
        T(test_max_recipients),
        T(test_backlog_stops_feeding),
        T(test_quit),
        T(test_async_message),
        T(test_async_message_temp_failure),
        T(test_reply_inside_pending),
        T(test_async_mail),
        T(test_async_rcpt),
        T(test_async_connect),
        T(test_mail_refused),
        T(test_rcpt_refused),
        T(test_message_refused),
        T(test_reply_enhanced_codes),
        T(test_reply_errors),
        T(test_connect_refused),
        T(test_connect_refused_text),
        T(test_free_while_pending),
        T(test_free_calls_on_close),
        T(test_lost),
        T(test_shutdown_idle),
        T(test_shutdown_during_transaction),
        T(test_shutdown_after_rset),
        T(test_shutdown_partial_line),
        T(test_shutdown_while_pending),
        T(test_shutdown_now),
        T(test_late_answer_after_forced_shutdown),
        T(test_timeout),
        T(test_max_errors),
        T(test_max_errors_only_bad_commands),
        T(test_too_slow),
        T(test_handler_421_closes),
        T(test_log_escapes_peer_text),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
