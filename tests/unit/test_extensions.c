/*
 * Unit tests of the extension mechanism of the channel: extension commands
 * (struct smtpd_command) with every flag, replacing built-in verbs and
 * running the built-in behaviour, continuations after a 3xx, multi-line
 * replies, the on_helo / on_ehlo / on_data hooks, HELP and the session
 * accessors, through the socket-free channel of channel_fixture.h.
 */
#include "channel_fixture.h"

/* What the test's extension commands do, and what they saw. */
struct ext {
    enum { ANSWER, DEFAULT, PEND, BUILTIN, ASK } mode;
    int code;
    const char *text;
    unsigned calls;
    char params[600];
    struct smtpd_session *waiting;
    /* on_helo / on_data / on_ehlo */
    int helo_code;
    bool helo_pending;
    char helo_seen[64];
    bool helo_esmtp;
    int data_code;
    unsigned data_calls;
    const char *ehlo_remove, *ehlo_add;
};

static struct ext *ext_of(void *arg)
{
    return FX_OF(arg)->user;
}

static enum smtpd_verdict ext_fn(void *arg, struct smtpd_session *s, const char *params, size_t len)
{
    struct ext *x = ext_of(arg);
    x->calls++;
    assert_true(len < sizeof(x->params));
    memcpy(x->params, params, len);
    x->params[len] = '\0';
    switch (x->mode) {
    case DEFAULT:
        return SMTPD_DONE;
    case PEND:
        x->waiting = s;
        return SMTPD_PENDING;
    case BUILTIN:
        assert_int_equal(smtpd_run_builtin(s, params, len), SMTPD_OK);
        return SMTPD_DONE;
    case ASK:
        /* A continuation: 334 first, then 235 for the line that follows. */
        assert_int_equal(smtpd_reply(s, x->calls % 2 ? 334 : 235, NULL, x->calls % 2 ? "" : "ok"),
                         SMTPD_OK);
        return SMTPD_DONE;
    case ANSWER:
        break;
    }
    assert_int_equal(smtpd_reply(s, x->code, NULL, x->text), SMTPD_OK);
    return SMTPD_DONE;
}

/* A MAIL that refuses one sender and runs the built-in for the rest, as a
 * SMTPChannel subclass's smtp_MAIL calling super(). */
static enum smtpd_verdict mail_fn(void *arg, struct smtpd_session *s, const char *params,
                                  size_t len)
{
    struct ext *x = ext_of(arg);
    x->calls++;
    if (len >= 18 && memcmp(params, "FROM:<blocked@x.o>", 18) == 0) {
        smtpd_reply(s, 550, "5.7.1", "Sender blocked");
        return SMTPD_DONE;
    }
    if (x->mode == PEND) {
        memcpy(x->params, params, len);
        x->params[len] = '\0';
        x->waiting = s;
        return SMTPD_PENDING;
    }
    assert_int_equal(smtpd_run_builtin(s, params, len), SMTPD_OK);
    /* The answer is given: a second one is refused. */
    assert_int_equal(smtpd_run_builtin(s, params, len), SMTPD_ERR_STATE);
    assert_int_equal(smtpd_reply(s, 250, NULL, NULL), SMTPD_ERR_STATE);
    return SMTPD_DONE;
}

static enum smtpd_verdict on_helo(void *arg, struct smtpd_session *s, const char *domain,
                                  bool esmtp)
{
    struct ext *x = ext_of(arg);
    snprintf(x->helo_seen, sizeof(x->helo_seen), "%s", domain);
    x->helo_esmtp = esmtp;
    if (x->helo_pending) {
        x->waiting = s;
        return SMTPD_PENDING;
    }
    if (x->helo_code)
        assert_int_equal(smtpd_reply(s, x->helo_code, NULL, "not you"), SMTPD_OK);
    return SMTPD_DONE;
}

static void on_ehlo(void *arg, struct smtpd_session *s, struct smtpd_ehlo *e)
{
    struct ext *x = ext_of(arg);
    (void)s;
    if (x->ehlo_remove)
        assert_int_equal(smtpd_ehlo_remove(e, x->ehlo_remove), 1);
    if (x->ehlo_add)
        assert_int_equal(smtpd_ehlo_add(e, x->ehlo_add), SMTPD_OK);
    assert_int_equal(smtpd_ehlo_add(e, ""), SMTPD_ERR_CONFIG);
    assert_int_equal(smtpd_ehlo_add(e, "BAD\r\nLINE"), SMTPD_ERR_CONFIG);
    assert_null(smtpd_ehlo_line(e, smtpd_ehlo_count(e)));
}

/* DATA is refused when a forward-path starts with "nodata@". */
static enum smtpd_verdict on_data(void *arg, struct smtpd_session *s)
{
    struct ext *x = ext_of(arg);
    x->data_calls++;
    size_t n;
    const char *const *fp = smtpd_session_forward_paths(s, &n);
    for (size_t i = 0; i < n; i++)
        if (strncmp(fp[i], "nodata@", 7) == 0) {
            smtpd_reply(s, x->data_code ? x->data_code : 554, "5.7.1", "No data for nodata@");
            return SMTPD_DONE;
        }
    return SMTPD_DONE;
}

/* A fixture whose handler has @p cmds (n of them) and the hooks. */
static struct fx *fx_ext(const struct smtpd_command *cmds, size_t n, struct ext *x)
{
    struct fx *f = fx_new();
    memset(x, 0, sizeof(*x));
    f->user = x;
    f->params.handler.commands = cmds;
    f->params.handler.n_commands = n;
    return f;
}

static const struct smtpd_command xstate[] = {
    {.verb = "XSTATE", .fn = ext_fn, .ehlo = "XSTATE", .help = "XSTATE"},
    {.verb = "xgreet", .fn = ext_fn, .flags = SMTPD_CMD_NEED_GREETING, .help = "XGREET <n>"},
    {.verb = "XINTXN", .fn = ext_fn, .flags = SMTPD_CMD_NEED_MAIL},
    {.verb = "XOUTTXN", .fn = ext_fn, .ehlo = "XOUTTXN 10", .flags = SMTPD_CMD_NO_TRANSACTION},
};

/* ---- new commands and their flags ---- */

static void test_new_command(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    x.code = 250;
    x.text = "state here";
    fx_start(f);
    expect_out(f, GREETING);
    /* Allowed any time, before the greeting too; the verb in any case. */
    dialog(f, "xState  some  params \r\n", "250 *");
    assert_int_equal(x.calls, 1);
    assert_string_equal(x.params, "some  params");
    dialog(f, "XSTATE\r\n", "250 *");
    assert_string_equal(x.params, "");
    /* Unknown verbs stay 500 5.5.1 (no enhanced code before EHLO). */
    dialog(f, "XSTATES\r\n", "500");
    feed_all(f, "EHLO c.example\r\n");
    /* EHLO lists the extensions' keyword lines after the built-in ones. */
    assert_non_null(strstr(f->io.out, "250-HELP\r\n250-XSTATE\r\n250 XOUTTXN 10\r\n"));
    out_clear(f);
    dialog(f, "XSTATE\r\n", "250 2.0.0");
    dialog(f, "XNOPE\r\n", "500 5.5.1");
    fx_free(f);
}

static void test_flags(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    x.mode = DEFAULT;
    fx_start(f);
    out_clear(f);
    /* NEED_GREETING, NEED_MAIL: 503 5.5.1 as a built-in's use out of order. */
    dialog(f, "XGREET\r\n", "503");
    dialog(f, "XINTXN\r\n", "503");
    dialog(f, "XOUTTXN\r\n", "250");
    assert_int_equal(x.calls, 1);
    fx_free(f);
}

static void test_flags_after_greeting(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    x.mode = DEFAULT;
    fx_ehlo(f);
    dialog(f, "XGREET 1\r\n", "250 2.0.0");
    dialog(f, "XINTXN\r\n", "503 5.5.1");
    dialog(f, "MAIL FROM:<a@b>\r\n", "250 2.1.0");
    /* Inside a transaction: NEED_MAIL passes, NO_TRANSACTION does not. */
    dialog(f, "XINTXN\r\n", "250 2.0.0");
    dialog(f, "XOUTTXN\r\n", "503 5.5.1");
    dialog(f, "RSET\r\n", "250 2.0.0");
    dialog(f, "XOUTTXN\r\n", "250 2.0.0");
    assert_int_equal(x.calls, 3);
    fx_free(f);
}

/* ---- replacing built-in verbs ---- */

static const struct smtpd_command vrfy[] = {
    {.verb = "VRFY", .fn = ext_fn, .help = "VRFY <anything>"},
};

static void test_replace_vrfy(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(vrfy, N_ROWS(vrfy), &x);
    x.code = 252;
    x.text = "quoted";
    fx_ehlo(f);
    /* The built-in would say 501 without an argument: the extension answers. */
    dialog(f, "VRFY\r\n", "252 2.0.0");
    dialog(f, "vrfy ???\r\n", "252 2.0.0");
    assert_string_equal(x.params, "???");
    assert_int_equal(x.calls, 2);
    /* HELP VRFY shows the replacement's syntax. */
    feed_all(f, "HELP VRFY\r\n");
    expect_out(f, "250 2.0.0 Syntax: VRFY <anything>\r\n");
    fx_free(f);
}

static const struct smtpd_command ehlo_cmds[] = {
    {.verb = "EHLO", .fn = ext_fn},
    {.verb = "HELO", .fn = ext_fn},
};

/* A replacement of EHLO that answers 2xx itself greets the session (MAIL
 * may follow, enhanced codes from then on) and its reply carries no
 * enhanced code; a refusal does not greet. */
static void test_replace_ehlo_greets(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(ehlo_cmds, N_ROWS(ehlo_cmds), &x);
    fx_start(f);
    out_clear(f);
    x.code = 550;
    x.text = "not you";
    dialog(f, "EHLO bad.example\r\n", "550");
    dialog(f, "MAIL FROM:<a@example.com>\r\n", "503");
    x.code = 250;
    x.text = "testhost";
    dialog(f, "EHLO client.example\r\n", "250");
    assert_string_equal(smtpd_session_helo(f->s), "client.example");
    dialog(f, "MAIL FROM:<a@example.com>\r\n", "250 2.1.0");
    /* A new greeting resets the transaction, as the built-in one does; its
     * reply has no enhanced code, even after EHLO. */
    dialog(f, "EHLO again.example\r\n", "250");
    dialog(f, "RCPT TO:<b@example.com>\r\n", "503 5.5.1");
    dialog(f, "HELO old.example\r\n", "250");
    dialog(f, "MAIL FROM:<a@example.com>\r\n", "250");
    fx_free(f);
}

static const struct smtpd_command mail[] = {
    {.verb = "MAIL", .fn = mail_fn},
};

static void test_replace_mail_runs_builtin(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(mail, N_ROWS(mail), &x);
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<blocked@x.o>\r\n", "550 5.7.1");
    assert_null(smtpd_session_reverse_path(f->s));
    assert_int_equal(f->rec.n_mail, 0);
    /* The built-in runs for the rest: its checks, on_mail, the state. */
    dialog(f, "MAIL FROM:<a@b.c> SIZE=10\r\n", "250 2.1.0");
    assert_int_equal(f->rec.n_mail, 1);
    assert_string_equal(smtpd_session_reverse_path(f->s), "a@b.c");
    dialog(f, "MAIL FROM:<d@e.f>\r\n", "503 5.5.1"); /* nested, as the built-in says */
    dialog(f, "RSET\r\n", "250 2.0.0");
    dialog(f, "MAIL FROM:<x@y> SIZE=abc\r\n", "501 5.5.4");
    assert_int_equal(x.calls, 4);
    fx_free(f);
}

static void test_replace_mail_builtin_later(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(mail, N_ROWS(mail), &x);
    f->rec.mail_pending = true; /* and the built-in's on_mail is slow too */
    fx_ehlo(f);
    x.mode = PEND;
    /* Pipelined: nothing after MAIL is read while its answer is owed. */
    const char *in = "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n";
    size_t used = feed(f, in);
    assert_int_equal(used, strlen("MAIL FROM:<a@b.c>\r\n"));
    expect_out(f, "");
    assert_int_equal(channel_phase(f->s), PHASE_WAIT);
    /* From the event loop: the built-in runs, and waits for on_mail. */
    assert_int_equal(smtpd_run_builtin(x.waiting, x.params, strlen(x.params)), SMTPD_OK);
    expect_out(f, "");
    assert_int_equal(f->rec.n_mail, 1);
    assert_int_equal(channel_phase(f->s), PHASE_WAIT);
    assert_int_equal(smtpd_reply(f->s, 250, NULL, NULL), SMTPD_OK);
    expect_replies(f, "250 2.1.0");
    assert_true(f->io.n_resume >= 1);
    dialog(f, in + used, "250 2.1.5");
    fx_free(f);
}

static void test_run_builtin_only_for_replacements(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    x.mode = PEND;
    fx_ehlo(f);
    feed_all(f, "XSTATE\r\n");
    /* XSTATE is no built-in verb: there is nothing to run. */
    assert_int_equal(smtpd_run_builtin(f->s, "", 0), SMTPD_ERR_STATE);
    assert_int_equal(smtpd_reply(f->s, 250, NULL, "late"), SMTPD_OK);
    expect_out(f, "250 2.0.0 late\r\n");
    fx_free(f);
}

/* ---- answers ---- */

static void test_default_answer(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    x.mode = DEFAULT;
    fx_ehlo(f);
    feed_all(f, "XSTATE\r\n");
    expect_out(f, "250 2.0.0 OK\r\n");
    fx_free(f);
}

static enum smtpd_verdict lines_fn(void *arg, struct smtpd_session *s, const char *params,
                                   size_t len)
{
    (void)arg;
    (void)params;
    (void)len;
    const char *lines[] = {"first", "second\r\nhidden", "third"};
    assert_int_equal(smtpd_reply_lines(s, 250, "2.0.0", lines, 3), SMTPD_OK);
    return SMTPD_DONE;
}

static const struct smtpd_command lines_cmd[] = {{.verb = "XLINES", .fn = lines_fn}};

static void test_multi_line_reply(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(lines_cmd, 1, &x);
    fx_ehlo(f);
    feed_all(f, "XLINES\r\n");
    /* RFC 5321 4.2.1, each line with the enhanced code (RFC 2034 3), and
     * CR/LF in a line's text made spaces (no reply injection). */
    assert_int_equal(f->io.n_writes, 1);
    expect_out(f, "250-2.0.0 first\r\n250-2.0.0 second  hidden\r\n250 2.0.0 third\r\n");
    fx_free(f);

    /* After HELO: no enhanced codes. */
    f = fx_ext(lines_cmd, 1, &x);
    fx_helo(f);
    feed_all(f, "XLINES\r\n");
    expect_out(f, "250-first\r\n250-second  hidden\r\n250 third\r\n");
    fx_free(f);
}

static void test_answer_errors(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    x.mode = PEND;
    fx_ehlo(f);
    feed_all(f, "XSTATE\r\n");
    assert_int_equal(smtpd_reply(f->s, 600, NULL, NULL), SMTPD_ERR_REPLY);
    assert_int_equal(smtpd_reply(f->s, 199, NULL, NULL), SMTPD_ERR_REPLY);
    assert_int_equal(smtpd_reply(f->s, 550, "4.0.0", NULL), SMTPD_ERR_CONFIG);
    assert_int_equal(smtpd_reply(f->s, 550, "5.0", NULL), SMTPD_ERR_CONFIG);
    assert_int_equal(smtpd_reply(f->s, 334, "3.0.0", NULL), SMTPD_ERR_CONFIG);
    const char *many[65];
    for (size_t i = 0; i < N_ROWS(many); i++)
        many[i] = "x";
    assert_int_equal(smtpd_reply_lines(f->s, 250, NULL, many, 65), SMTPD_ERR_CONFIG);
    expect_out(f, "");
    /* An extension's 501 counts against the error budget, as a built-in's. */
    assert_int_equal(smtpd_reply(f->s, 501, "5.5.4", "bad"), SMTPD_OK);
    expect_out(f, "501 5.5.4 bad\r\n");
    fx_free(f);
}

static void test_error_budget(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    f->params.cfg.max_errors = 3;
    x.code = 501;
    fx_ehlo(f);
    dialog(f, "XSTATE\r\n", "501 5.0.0");
    dialog(f, "XINTXN\r\n", "503 5.5.1");
    feed_all(f, "XSTATE\r\n");
    expect_replies(f, "501 5.0.0|421 4.7.0");
    assert_int_equal(f->io.n_close, 1);
    fx_free(f);
}

/* ---- continuations ---- */

static const struct smtpd_command ask_cmd[] = {{.verb = "XAUTH", .fn = ext_fn, .ehlo = "XAUTH"}};

static void test_continuation(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(ask_cmd, 1, &x);
    x.mode = ASK;
    fx_ehlo(f);
    feed_all(f, "XAUTH PLAIN\r\n");
    expect_out(f, "334 \r\n");
    assert_string_equal(x.params, "PLAIN");
    /* The next line is the extension's, whatever it holds: no command runs. */
    feed_all(f, "MAIL FROM:<a@b>\r\n");
    expect_out(f, "235 2.7.0 ok\r\n");
    assert_string_equal(x.params, "MAIL FROM:<a@b>");
    assert_null(smtpd_session_reverse_path(f->s));
    assert_int_equal(f->rec.n_mail, 0);
    /* Pipelined: question, answer and a command in one read. */
    dialog(f, "XAUTH\r\n\r\nNOOP\r\n", "334|235 2.7.0|250 2.0.0");
    assert_string_equal(x.params, "");
    assert_int_equal(x.calls, 4);
    fx_free(f);
}

/* ---- late answers, a client that leaves ---- */

static void test_pending_answer_later(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    x.mode = PEND;
    fx_ehlo(f);
    size_t used = feed(f, "XSTATE\r\nNOOP\r\n");
    assert_int_equal(used, 8);
    expect_out(f, "");
    unsigned resumes = f->io.n_resume;
    assert_int_equal(smtpd_reply(x.waiting, 250, NULL, "later"), SMTPD_OK);
    expect_out(f, "250 2.0.0 later\r\n");
    assert_int_equal(f->io.n_resume, resumes + 1);
    dialog(f, "NOOP\r\n", "250 2.0.0");
    fx_free(f);
}

static void test_pending_client_left(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    x.mode = PEND;
    fx_ehlo(f);
    feed_all(f, "XSTATE\r\n");
    assert_ptr_equal(x.waiting, f->s);
    /* The client leaves: on_close tells the handler, whose answer is gone. */
    channel_lost(f->s, "eof");
    struct smtpd_session *s = f->s;
    f->s = NULL;
    channel_free(s);
    assert_int_equal(f->rec.n_close, 1);
    assert_ptr_equal(f->rec.closed, s);
    expect_out(f, "");
    fx_free(f);
}

/* ---- hooks ---- */

static void test_on_helo(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(NULL, 0, &x);
    f->params.handler.on_helo = on_helo;
    fx_start(f);
    out_clear(f);
    x.helo_code = 550;
    dialog(f, "HELO bad.example\r\n", "550");
    assert_string_equal(x.helo_seen, "bad.example");
    assert_false(x.helo_esmtp);
    assert_null(smtpd_session_helo(f->s));
    dialog(f, "MAIL FROM:<a@b>\r\n", "503");
    x.helo_code = 0;
    dialog(f, "HELO good.example\r\n", "250 *");
    assert_string_equal(smtpd_session_helo(f->s), "good.example");
    /* A refused EHLO keeps the greeting the session had. */
    x.helo_code = 550;
    dialog(f, "EHLO other.example\r\n", "550 *");
    assert_string_equal(smtpd_session_helo(f->s), "good.example");
    assert_false(smtpd_session_esmtp(f->s));
    assert_true(x.helo_esmtp);
    fx_free(f);
}

static void test_on_helo_later(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(NULL, 0, &x);
    f->params.handler.on_helo = on_helo;
    x.helo_pending = true;
    fx_start(f);
    out_clear(f);
    feed_all(f, "EHLO slow.example\r\n");
    expect_out(f, "");
    assert_int_equal(channel_phase(f->s), PHASE_WAIT);
    /* 3xx is not a greeting's answer. */
    assert_int_equal(smtpd_reply(x.waiting, 354, NULL, NULL), SMTPD_ERR_REPLY);
    /* Accepted: the built-in EHLO reply goes out, not the handler's text. */
    assert_int_equal(smtpd_reply(x.waiting, 250, NULL, "ignored"), SMTPD_OK);
    assert_non_null(strstr(f->io.out, "250-" HOST "\r\n"));
    assert_non_null(strstr(f->io.out, "250 HELP\r\n"));
    assert_null(strstr(f->io.out, "ignored"));
    assert_string_equal(smtpd_session_helo(f->s), "slow.example");
    assert_true(smtpd_session_esmtp(f->s));
    fx_free(f);
}

static void test_on_ehlo(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    f->params.handler.on_ehlo = on_ehlo;
    x.ehlo_remove = "pipelining";
    x.ehlo_add = "XFOO 42";
    fx_start(f);
    out_clear(f);
    feed_all(f, "EHLO c.example\r\n");
    expect_out(f, "250-" HOST "\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n"
                  "250-ENHANCEDSTATUSCODES\r\n250-HELP\r\n250-XSTATE\r\n250-XOUTTXN 10\r\n"
                  "250 XFOO 42\r\n");
    fx_free(f);
}

static void capture_log(void *arg, enum smtpd_log_level level, const char *line);

static void test_on_data(void **state)
{
    (void)state;
    struct ext x;
    static char log[4096];
    log[0] = '\0';
    struct fx *f = fx_ext(NULL, 0, &x);
    f->params.handler.on_data = on_data;
    f->params.cfg.log = capture_log;
    f->params.cfg.log_arg = log;
    fx_ehlo(f);
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<nodata@x.org>\r\nDATA\r\n",
           "250 2.1.0|250 2.1.5|554 5.7.1");
    assert_int_equal(x.data_calls, 1);
    /* The transaction is still there; no 354, no data mode. */
    assert_string_equal(smtpd_session_reverse_path(f->s), "a@b");
    assert_int_equal(smtpd_session_state(f->s), SMTPD_SESSION_COMMAND);
    dialog(f, "RSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<ok@x.org>\r\nDATA\r\n",
           "250 2.0.0|250 2.1.0|250 2.1.5|354");
    /* The refused DATA is in the line that ends its transaction. */
    assert_non_null(strstr(log, "transaction from=<a@b> to=<nodata@x.org> ended by RSET before "
                                "DATA; DATA refused: reply=554 5.7.1 No data for nodata@\n"));
    assert_int_equal(smtpd_session_state(f->s), SMTPD_SESSION_DATA);
    dialog(f, "hi\r\n.\r\n", "250 2.0.0");
    assert_int_equal(f->rec.n_message, 1);
    assert_int_equal(x.data_calls, 2);
    fx_free(f);
}

/* ---- HELP, accessors ---- */

static void test_help(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    fx_ehlo(f);
    feed_all(f, "HELP\r\n");
    expect_out(f, "250 2.0.0 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY "
                  "XSTATE xgreet XINTXN XOUTTXN\r\n");
    feed_all(f, "HELP XGREET\r\n");
    expect_out(f, "250 2.0.0 Syntax: XGREET <n>\r\n");
    feed_all(f, "HELP XINTXN\r\n");
    expect_out(f, "250 2.0.0 Syntax: XINTXN\r\n");
    dialog(f, "HELP XNOPE\r\n", "501 5.5.4");
    fx_free(f);
}

static void test_help_many_commands(void **state)
{
    (void)state;
    static struct smtpd_command many[80];
    static char verbs[80][16];
    for (size_t i = 0; i < N_ROWS(many); i++) {
        snprintf(verbs[i], sizeof(verbs[i]), "XCOMMAND%02zu", i);
        many[i] = (struct smtpd_command){.verb = verbs[i], .fn = ext_fn};
    }
    struct ext x;
    struct fx *f = fx_ext(many, N_ROWS(many), &x);
    fx_ehlo(f);
    feed_all(f, "HELP\r\n");
    /* Too many for one line: a multi-line reply, every line within limits. */
    assert_true(strncmp(f->io.out, "250-2.0.0 Supported commands:", 29) == 0);
    assert_non_null(strstr(f->io.out, "XCOMMAND79\r\n"));
    for (const char *p = f->io.out; *p;) {
        const char *eol = strstr(p, "\r\n");
        assert_non_null(eol);
        assert_true(eol - p + 2 <= REPLY_LINE_MAX);
        p = eol + 2;
    }
    fx_free(f);
}

static void test_accessors(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(NULL, 0, &x);
    fx_ehlo(f);
    size_t n = 99;
    assert_null(smtpd_session_reverse_path(f->s));
    assert_non_null(smtpd_session_forward_paths(f->s, &n));
    assert_int_equal(n, 0);
    assert_string_equal(smtpd_session_hostname(f->s), HOST);
    assert_string_equal(smtpd_session_local_addr(f->s), LOCAL);
    assert_int_equal(smtpd_session_local_port(f->s), LOCAL_PORT);
    assert_int_equal(smtpd_session_state(f->s), SMTPD_SESSION_COMMAND);
    dialog(f, "MAIL FROM:<>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@y>\r\n",
           "250 2.1.0|250 2.1.5|250 2.1.5");
    assert_string_equal(smtpd_session_reverse_path(f->s), "");
    const char *const *fp = smtpd_session_forward_paths(f->s, &n);
    assert_int_equal(n, 2);
    assert_string_equal(fp[0], "a@x");
    assert_string_equal(fp[1], "b@y");
    dialog(f, "QUIT\r\n", "221 2.0.0");
    assert_int_equal(smtpd_session_state(f->s), SMTPD_SESSION_CLOSED);
    fx_free(f);
}

/* ---- NUL bytes, logs of multi-line answers ---- */

static void test_nul_in_command(void **state)
{
    (void)state;
    struct ext x;
    struct fx *f = fx_ext(xstate, N_ROWS(xstate), &x);
    fx_ehlo(f);
    /* A NUL would cut the C strings a handler gets: refused. */
    feed_all(f, "HELO a");
    channel_feed(f->s, "\0b\r\n", 4);
    expect_replies(f, "500 5.5.2");
    channel_feed(f->s, "XSTATE \0\r\n", 10);
    expect_replies(f, "500 5.5.2");
    assert_int_equal(x.calls, 0);
    assert_string_equal(smtpd_session_helo(f->s), "client.example");
    fx_free(f);
}

static void capture_log(void *arg, enum smtpd_log_level level, const char *line)
{
    char *buf = arg;
    (void)level;
    size_t n = strlen(buf);
    snprintf(buf + n, 4096 - n, "%s\n", line);
}

static void test_multi_line_refusal_logged(void **state)
{
    (void)state;
    struct ext x;
    static char log[4096];
    log[0] = '\0';
    struct fx *f = fx_ext(NULL, 0, &x);
    f->params.cfg.log = capture_log;
    f->params.cfg.log_arg = log;
    f->rec.mail_pending = true;
    fx_ehlo(f);
    feed_all(f, "MAIL FROM:<a@b>\r\n");
    const char *lines[] = {"first of two", "second"};
    assert_int_equal(smtpd_reply_lines(f->s, 550, "5.7.1", lines, 2), SMTPD_OK);
    expect_out(f, "550-5.7.1 first of two\r\n550 5.7.1 second\r\n");
    /* The transaction's log line has the reply's first line. */
    assert_non_null(strstr(
        log, "transaction from=<a@b> to=<> refused at MAIL: reply=550 5.7.1 first of two\n"));
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_command),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_flags_after_greeting),
        cmocka_unit_test(test_replace_vrfy),
        cmocka_unit_test(test_replace_ehlo_greets),
        cmocka_unit_test(test_replace_mail_runs_builtin),
        cmocka_unit_test(test_replace_mail_builtin_later),
        cmocka_unit_test(test_run_builtin_only_for_replacements),
        cmocka_unit_test(test_default_answer),
        cmocka_unit_test(test_multi_line_reply),
        cmocka_unit_test(test_answer_errors),
        cmocka_unit_test(test_error_budget),
        cmocka_unit_test(test_continuation),
        cmocka_unit_test(test_pending_answer_later),
        cmocka_unit_test(test_pending_client_left),
        cmocka_unit_test(test_on_helo),
        cmocka_unit_test(test_on_helo_later),
        cmocka_unit_test(test_on_ehlo),
        cmocka_unit_test(test_on_data),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_help_many_commands),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_nul_in_command),
        cmocka_unit_test(test_multi_line_refusal_logged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
