/*
 * Unit tests of command parsing (src/proto/command.c): verb split, MAIL/RCPT paths
 * (RFC 5321 4.1.2, RFC 6531) and ESMTP parameters.
 */
#include "unit_util.h"

#include "command.h"

/* ---- cmd_split ---- */

struct split_case {
    const char *line;
    enum cmd_verb verb;
    const char *arg;
};

static const struct split_case split_cases[] = {
    {.line = "HELO client.example", .verb = CMD_HELO, .arg = "client.example"},
    {.line = "helo client.example", .verb = CMD_HELO, .arg = "client.example"},
    {.line = "eHlO  client.example  ", .verb = CMD_EHLO, .arg = "client.example"},
    {.line = "MAIL FROM:<a@example.com>", .verb = CMD_MAIL, .arg = "FROM:<a@example.com>"},
    {.line = "mail FROM:<a@b>  SIZE=1 \t ", .verb = CMD_MAIL, .arg = "FROM:<a@b>  SIZE=1"},
    {.line = "Rcpt TO:<b@example.com>", .verb = CMD_RCPT, .arg = "TO:<b@example.com>"},
    {.line = "DATA", .verb = CMD_DATA, .arg = ""},
    {.line = "data   ", .verb = CMD_DATA, .arg = ""},
    {.line = "RSET", .verb = CMD_RSET, .arg = ""},
    {.line = "NOOP anything at all", .verb = CMD_NOOP, .arg = "anything at all"},
    {.line = "QUIT", .verb = CMD_QUIT, .arg = ""},
    {.line = "VRFY \t <a@b> \t", .verb = CMD_VRFY, .arg = "<a@b>"},
    {.line = "expn list", .verb = CMD_EXPN, .arg = "list"},
    {.line = "HELP mail", .verb = CMD_HELP, .arg = "mail"},
    {.line = "STARTTLS", .verb = CMD_UNKNOWN, .arg = ""},
    {.line = "XYZZY plugh", .verb = CMD_UNKNOWN, .arg = "plugh"},
    {.line = "MAILX FROM:<a@b>", .verb = CMD_UNKNOWN, .arg = "FROM:<a@b>"},
    {.line = "MAI", .verb = CMD_UNKNOWN, .arg = ""},
    {.line = "", .verb = CMD_UNKNOWN, .arg = ""},
    {.line = " NOOP", .verb = CMD_UNKNOWN, .arg = "NOOP"},
    {.line = "H\xc3\xa9LO x", .verb = CMD_UNKNOWN, .arg = "x"},
};

static void test_cmd_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(split_cases); i++) {
        const struct split_case *c = &split_cases[i];
        const char *arg = NULL;
        size_t arg_len = 999;
        enum cmd_verb v = cmd_split(c->line, strlen(c->line), &arg, &arg_len);
        unit_assert(c->line, v == c->verb);
        unit_assert(c->line, arg != NULL);
        unit_check_str(c->line, arg, arg_len, c->arg);
    }
}

/* Only the given length is looked at: the verb of "NOOPX" cut to 4 bytes. */
static void test_cmd_split_length(void **state)
{
    (void)state;
    const char *arg;
    size_t arg_len;
    assert_int_equal(cmd_split("NOOPX", 4, &arg, &arg_len), CMD_NOOP);
    assert_int_equal(arg_len, 0);
    assert_int_equal(cmd_split("QUIT now", 6, &arg, &arg_len), CMD_QUIT);
    unit_check_str("QUIT now cut", arg, arg_len, "n");
}

static void test_cmd_lookup_name(void **state)
{
    (void)state;
    static const char *const names[] = {"HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET",
                                        "NOOP", "QUIT", "VRFY", "EXPN", "HELP"};
    assert_int_equal(N_ROWS(names), CMD_COUNT - 1);
    for (int v = CMD_HELO; v < CMD_COUNT; v++) {
        assert_string_equal(cmd_name((enum cmd_verb)v), names[v - 1]);
        assert_int_equal(cmd_lookup(names[v - 1], 4), v);
        char lower[5];
        for (int k = 0; k < 4; k++)
            lower[k] = (char)(names[v - 1][k] | 0x20);
        lower[4] = '\0';
        assert_int_equal(cmd_lookup(lower, 4), v);
    }
    assert_int_equal(cmd_lookup("HEL", 3), CMD_UNKNOWN);
    assert_int_equal(cmd_lookup("HELOO", 5), CMD_UNKNOWN);
    assert_int_equal(cmd_lookup("TURN", 4), CMD_UNKNOWN);
    assert_string_equal(cmd_name(CMD_UNKNOWN), "");
    assert_string_equal(cmd_name(CMD_COUNT), "");
}

/* ---- cmd_parse_path: accepted ---- */

struct path_ok {
    const char *arg;
    const char *keyword;
    const char *addr;
    bool null_path;
    bool non_ascii;
    const char *params;
};

static const struct path_ok path_ok_cases[] = {
    {.arg = "FROM:<a@example.com>", .addr = "a@example.com"},
    {.arg = "from:<a@example.com>", .addr = "a@example.com"},
    {.arg = "From:<A.B-c+d@Sub-1.Example.COM>", .addr = "A.B-c+d@Sub-1.Example.COM"},
    {.arg = "FROM:a@example.com", .addr = "a@example.com"},
    {.arg = "FROM:   <a@example.com>", .addr = "a@example.com"},
    {.arg = "FROM:\t<a@example.com>", .addr = "a@example.com"},
    {.arg = "FROM: a@example.com", .addr = "a@example.com"},
    {.arg = "FROM:<>", .addr = "", .null_path = true},
    {.arg = "FROM: <>", .addr = "", .null_path = true},
    {.arg = "FROM:<> SIZE=10", .addr = "", .null_path = true, .params = "SIZE=10"},
    {.arg = "FROM:<\"Fred Blogs\"@example.com>", .addr = "\"Fred Blogs\"@example.com"},
    {.arg = "FROM:<\"a\\\"b\\\\c\"@example.com>", .addr = "\"a\\\"b\\\\c\"@example.com"},
    {.arg = "FROM:<\"\"@example.com>", .addr = "\"\"@example.com"},
    {.arg = "TO:<@r1,@r2:u@x.org>", .keyword = "TO:", .addr = "u@x.org"},
    {.arg = "TO:<@relay.example:u@x.org>", .keyword = "TO:", .addr = "u@x.org"},
    {.arg = "TO:<Postmaster>", .keyword = "TO:", .addr = "Postmaster"},
    {.arg = "to:<postmaster>", .keyword = "TO:", .addr = "postmaster"},
    {.arg = "TO:<a@[IPv6:::1]>", .keyword = "TO:", .addr = "a@[IPv6:::1]"},
    {.arg = "TO:<a@[192.0.2.1]>", .keyword = "TO:", .addr = "a@[192.0.2.1]"},
    {.arg = "TO:<!#$%&'*+-/=?^_`{|}~@x.org>",
     .keyword = "TO:",
     .addr = "!#$%&'*+-/=?^_`{|}~@x.org"},
    {.arg = "TO:<a@123.example>", .keyword = "TO:", .addr = "a@123.example"},
    {.arg = "TO:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>",
     .keyword = "TO:",
     .addr = "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a",
     .non_ascii = true},
    {.arg = "FROM:<j\xc3\xb6rg@example.com> SMTPUTF8",
     .addr = "j\xc3\xb6rg@example.com",
     .non_ascii = true,
     .params = "SMTPUTF8"},
    {.arg = "FROM:<a@b\xc3\xbc.example>", .addr = "a@b\xc3\xbc.example", .non_ascii = true},
    {.arg = "FROM:<a@example.com> SIZE=100 BODY=8BITMIME",
     .addr = "a@example.com",
     .params = "SIZE=100 BODY=8BITMIME"},
    {.arg = "FROM:<a@example.com>    SIZE=100", .addr = "a@example.com", .params = "SIZE=100"},
    {.arg = "FROM:<a@example.com>\tSIZE=100", .addr = "a@example.com", .params = "SIZE=100"},
    {.arg = "FROM:a@example.com SIZE=1", .addr = "a@example.com", .params = "SIZE=1"},
    /* Local parts that carriers issued: taken as Python's smtpd and Postfix
     * take them, passed on unchanged. */
    {.arg = "FROM:<user..name@docomo.ne.jp>", .addr = "user..name@docomo.ne.jp"},
    {.arg = "TO:<taro.@ezweb.ne.jp>", .keyword = "TO:", .addr = "taro.@ezweb.ne.jp"},
    {.arg = "TO:<.hanako@docomo.ne.jp>", .keyword = "TO:", .addr = ".hanako@docomo.ne.jp"},
};

static void test_parse_path_ok(void **state)
{
    (void)state;
    unit_soft_begin();
    for (size_t i = 0; i < N_ROWS(path_ok_cases); i++) {
        const struct path_ok *c = &path_ok_cases[i];
        struct path_arg pa;
        memset(&pa, 0xa5, sizeof(pa));
        bool ok = cmd_parse_path(c->arg, strlen(c->arg), c->keyword ? c->keyword : "FROM:", &pa);
        if (!UNIT_SOFT(c->arg, ok))
            continue;
        unit_soft_bytes(c->arg, pa.addr, pa.addr_len, c->addr, strlen(c->addr));
        UNIT_SOFT(c->arg, pa.null_path == c->null_path);
        UNIT_SOFT(c->arg, pa.non_ascii == c->non_ascii);
        const char *params = c->params ? c->params : "";
        unit_soft_bytes(c->arg, pa.params, pa.params_len, params, strlen(params));
    }
    unit_soft_end();
}

/* ---- cmd_parse_path: refused ---- */

struct path_bad {
    const char *arg;
    const char *keyword;
};

static const struct path_bad path_bad_cases[] = {
    {.arg = "FROM a@b"},
    {.arg = "FROM <a@b>"},
    {.arg = "FROM:"},
    {.arg = "FROM:   "},
    {.arg = ""},
    {.arg = "FRO"},
    {.arg = "TO:<a@b>"},
    {.arg = "FROM:<a@b>", .keyword = "TO:"},
    {.arg = "FROM:<a@>"},
    {.arg = "FROM:a@"},
    {.arg = "FROM:<@example.com>"},
    {.arg = "FROM:<.@>"},
    {.arg = "FROM:<a@b"},
    {.arg = "FROM:<a@example.com"},
    {.arg = "FROM:<"},
    {.arg = "FROM:<a@b>x"},
    {.arg = "FROM:<a@b>>"},
    {.arg = "FROM:<a@b><c@d>"},
    {.arg = "FROM:a@b>"},
    {.arg = "FROM:<a@-x.org>"},
    {.arg = "FROM:<a@x.-y.org>"},
    {.arg = "FROM:<a@x-.org>"},
    {.arg = "FROM:<a@x..org>"},
    {.arg = "FROM:<a@.x.org>"},
    {.arg = "FROM:<a@x.org.>"},
    {.arg = "FROM:<a b@x.org>"},
    {.arg = "FROM:<a@x_y.org>"},
    {.arg = "FROM:<a\x01@x.org>"},
    {.arg = "FROM:<\"unterminated@x.org>"},
    {.arg = "FROM:<\"a\x01\"@x.org>"},
    {.arg = "FROM:<\"a\\\x01\"@x.org>"},
    {.arg = "FROM:<\"a\\"},
    {.arg = "FROM:<a@[1.2.3.4>"},
    {.arg = "FROM:<a@[1.2 .3.4]>"},
    {.arg = "TO:<@r1,u@x.org>", .keyword = "TO:"},
    {.arg = "TO:<@r1:@r2:u@x.org>", .keyword = "TO:"},
    {.arg = "TO:<@:u@x.org>", .keyword = "TO:"},
    {.arg = "TO:<@r1,@r2>", .keyword = "TO:"},
    /* RFC 5321 4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">"; a source route
     * needs a mailbox after it, it cannot make a null path. */
    {.arg = "FROM:<@r1:>"},
    {.arg = "FROM:<<a@b>>"},
};

static void test_parse_path_bad(void **state)
{
    (void)state;
    unit_soft_begin();
    for (size_t i = 0; i < N_ROWS(path_bad_cases); i++) {
        const struct path_bad *c = &path_bad_cases[i];
        struct path_arg pa;
        bool ok = cmd_parse_path(c->arg, strlen(c->arg), c->keyword ? c->keyword : "FROM:", &pa);
        if (ok) {
            char a[128];
            print_error("accepted \"%s\" as addr \"%s\" (null_path %d)\n",
                        unit_show(a, 64, c->arg, strlen(c->arg)),
                        unit_show(a + 64, 64, pa.addr, pa.addr_len), pa.null_path);
        }
        UNIT_SOFT(c->arg, !ok);
    }
    unit_soft_end();
}

/* The parser reads only @p len bytes: a path cut before its '>' fails. */
static void test_parse_path_length(void **state)
{
    (void)state;
    struct path_arg pa;
    const char *s = "FROM:<a@example.com>";
    assert_false(cmd_parse_path(s, strlen(s) - 1, "FROM:", &pa));
    assert_true(cmd_parse_path(s, strlen(s), "FROM:", &pa));
    assert_int_equal(pa.addr_len, 13);
}

static void test_valid_mailbox(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
    } rows[] = {
        {"a@example.com", true}, {"Postmaster", true}, {"\"x y\"@b.c", true},
        {"a@[::1]", true},       {"", false},          {"a@", false},
        {"<a@b>", false},        {"a@b c", false},     {"a..b@c", true},
        {"@b", false},           {"a@b.", false},      {"a@b@c", false},
    };
    for (size_t i = 0; i < N_ROWS(rows); i++)
        unit_assert(rows[i].s, cmd_valid_mailbox(rows[i].s, strlen(rows[i].s)) == rows[i].ok);
}

/* ---- cmd_next_param ---- */

#define MAX_PARAMS 4

struct param_case {
    const char *in;
    struct {
        const char *key;
        const char *value; /* NULL: no "=" */
    } want[MAX_PARAMS];
    size_t n_want;
    enum param_result last; /* PARAM_END or PARAM_SYNTAX after the wanted ones */
};

static const struct param_case param_cases[] = {
    {.in = "SIZE=100", .want = {{"SIZE", "100"}}, .n_want = 1, .last = PARAM_END},
    {.in = "BODY=8BITMIME", .want = {{"BODY", "8BITMIME"}}, .n_want = 1, .last = PARAM_END},
    {.in = "SMTPUTF8", .want = {{"SMTPUTF8", NULL}}, .n_want = 1, .last = PARAM_END},
    {.in = "size=100", .want = {{"size", "100"}}, .n_want = 1, .last = PARAM_END},
    {.in = "SIZE=100 BODY=8BITMIME SMTPUTF8",
     .want = {{"SIZE", "100"}, {"BODY", "8BITMIME"}, {"SMTPUTF8", NULL}},
     .n_want = 3,
     .last = PARAM_END},
    {.in = "  SIZE=1 \t BODY=7BIT  ",
     .want = {{"SIZE", "1"}, {"BODY", "7BIT"}},
     .n_want = 2,
     .last = PARAM_END},
    {.in = "X-FOO-1=a!b+c", .want = {{"X-FOO-1", "a!b+c"}}, .n_want = 1, .last = PARAM_END},
    {.in = "ENVID=\xc3\xa9t\xc3\xa9",
     .want = {{"ENVID", "\xc3\xa9t\xc3\xa9"}},
     .n_want = 1,
     .last = PARAM_END},
    {.in = "", .n_want = 0, .last = PARAM_END},
    {.in = "   ", .n_want = 0, .last = PARAM_END},
    {.in = "A!B=1", .n_want = 0, .last = PARAM_SYNTAX},
    {.in = "SIZE=", .n_want = 0, .last = PARAM_SYNTAX},
    {.in = "SIZE= 1", .n_want = 0, .last = PARAM_SYNTAX},
    {.in = "=1", .n_want = 0, .last = PARAM_SYNTAX},
    {.in = "-X=1", .n_want = 0, .last = PARAM_SYNTAX},
    {.in = "A=b=c", .n_want = 0, .last = PARAM_SYNTAX},
    {.in = "A=b\x01", .n_want = 0, .last = PARAM_SYNTAX},
    {.in = "\xc3\xa9=1", .n_want = 0, .last = PARAM_SYNTAX},
    {.in = "SIZE=1 A!B", .want = {{"SIZE", "1"}}, .n_want = 1, .last = PARAM_SYNTAX},
    {.in = "SIZE=1 BODY=", .want = {{"SIZE", "1"}}, .n_want = 1, .last = PARAM_SYNTAX},
};

static void test_next_param(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(param_cases); i++) {
        const struct param_case *c = &param_cases[i];
        const char *p = c->in, *end = c->in + strlen(c->in);
        struct esmtp_param prm;
        for (size_t k = 0; k < c->n_want; k++) {
            unit_assert(c->in, cmd_next_param(&p, end, &prm) == PARAM_OK);
            unit_check_str(c->in, prm.key, prm.key_len, c->want[k].key);
            if (c->want[k].value) {
                unit_assert(c->in, prm.value != NULL);
                unit_check_str(c->in, prm.value, prm.value_len, c->want[k].value);
            } else {
                unit_assert(c->in, prm.value == NULL);
            }
            unit_assert(c->in, p > c->in && p <= end);
        }
        unit_assert(c->in, cmd_next_param(&p, end, &prm) == c->last);
        if (c->last == PARAM_END)
            unit_assert(c->in, cmd_next_param(&p, end, &prm) == PARAM_END);
    }
}

static void test_slice_ieq(void **state)
{
    (void)state;
    assert_true(slice_ieq("size", 4, "SIZE"));
    assert_true(slice_ieq("SiZe", 4, "SIZE"));
    assert_true(slice_ieq("SIZEX", 4, "SIZE"));
    assert_false(slice_ieq("SIZEX", 5, "SIZE"));
    assert_false(slice_ieq("SIZ", 3, "SIZE"));
    assert_false(slice_ieq("BODY", 4, "SIZE"));
    assert_true(slice_ieq("", 0, ""));
    assert_true(slice_ieq("8bitmime", 8, "8BITMIME"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmd_split),       cmocka_unit_test(test_cmd_split_length),
        cmocka_unit_test(test_cmd_lookup_name), cmocka_unit_test(test_parse_path_ok),
        cmocka_unit_test(test_parse_path_bad),  cmocka_unit_test(test_parse_path_length),
        cmocka_unit_test(test_valid_mailbox),   cmocka_unit_test(test_next_param),
        cmocka_unit_test(test_slice_ieq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
