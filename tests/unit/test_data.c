/*
 * Unit tests of the DATA engine (src/proto/data.c): dot-unstuffing, the end of
 * data (only CRLF.CRLF, whatever the bare CR/LF policy), size counting and
 * the size limit. Every row runs under the three bare CR/LF policies and is
 * fed whole, byte by byte, cut once at every position and cut twice at every
 * pair of positions: all must give the same result.
 */
#include "unit_util.h"

#include "data.h"

/* Expected stored data as bytes and length: EXP with BARE_ACCEPT and
 * BARE_REJECT (bytes kept), NORM with BARE_NORMALIZE when it differs. */
#define EXP(s) .exp = (s), .exp_len = sizeof(s) - 1
#define NORM(s) .norm = (s), .norm_len = sizeof(s) - 1, .bare = true

struct data_case {
    const char *name;
    const char *in;
    size_t in_len;
    size_t limit;
    bool end;        /* DATA_END expected (else DATA_NEED_MORE) */
    const char *exp; /* stored data (empty when too_much) */
    size_t exp_len;
    const char *norm; /* stored data with BARE_NORMALIZE; NULL: as exp */
    size_t norm_len;
    bool bare;       /* a bare CR or LF comes before the end */
    size_t size;     /* data_size() after the end */
    bool too_much;   /* data_too_much() after the end */
    size_t consumed; /* bytes taken; 0: all of the input */
};

static const struct data_case cases[] = {
    {.name = "one line", BYTES("abc\r\n.\r\n"), .end = true, EXP("abc\r\n"), .size = 3},
    {.name = "empty message", BYTES(".\r\n"), .end = true, EXP(""), .size = 0},
    {.name = "one empty line", BYTES("\r\n.\r\n"), .end = true, EXP("\r\n"), .size = 0},
    {.name = "dot-unstuffing", BYTES("..x\r\n.\r\n"), .end = true, EXP(".x\r\n"), .size = 3},
    {.name = "stuffed lone dot",
     BYTES("a..b\r\n..\r\n.\r\n"),
     .end = true,
     EXP("a..b\r\n.\r\n"),
     .size = 8},
    {.name = "three dots", BYTES("...\r\n.\r\n"), .end = true, EXP("..\r\n"), .size = 3},
    {.name = "two dots only", BYTES("..\r\n.\r\n"), .end = true, EXP(".\r\n"), .size = 2},
    {.name = "CRLF kept",
     BYTES("Subject: t\r\n\r\nline1\r\nline2\r\n.\r\n"),
     .end = true,
     EXP("Subject: t\r\n\r\nline1\r\nline2\r\n"),
     .size = 26},
    {.name = "LF . LF is not an end",
     BYTES("a\n.\nb\r\n.\r\n"),
     .end = true,
     EXP("a\n.\nb\r\n"),
     NORM("a\r\n.\r\nb\r\n"),
     .size = 5},
    {.name = "CR . CR is not an end",
     BYTES("a\r.\rb\r\n.\r\n"),
     .end = true,
     EXP("a\r.\rb\r\n"),
     NORM("a\r\n.\r\nb\r\n"),
     .size = 5},
    {.name = "LF . CRLF is not an end",
     BYTES("a\n.\r\nb\r\n.\r\n"),
     .end = true,
     EXP("a\n.\r\nb\r\n"),
     NORM("a\r\n.\r\nb\r\n"),
     .size = 6},
    {.name = "CR . CRLF is not an end",
     BYTES("a\r.\r\n.\r\n"),
     .end = true,
     EXP("a\r.\r\n"),
     NORM("a\r\n.\r\n"),
     .size = 3},
    {.name = "LF . CRLF smuggling a second message",
     BYTES("a\r\nb\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"),
     .end = true,
     EXP("a\r\nb\n.\r\nMAIL FROM:<x@y>\r\n"),
     NORM("a\r\nb\r\n.\r\nMAIL FROM:<x@y>\r\n"),
     .size = 23},
    {.name = "CRLF . CR . CRLF is not an end",
     BYTES("a\r\n.\r.\r\nb\r\n.\r\n"),
     .end = true,
     EXP("a\r\n\r.\r\nb\r\n"),
     NORM("a\r\n.\r\n.\r\nb\r\n"),
     .size = 9},
    /* The line ".<LF>b" starts with a dot and has more: the dot goes
     * (RFC 5321 4.5.2); it is not the end of data. */
    {.name = "CRLF . LF is not an end",
     BYTES("a\r\n.\nb\r\n.\r\n"),
     .end = true,
     EXP("a\r\n\nb\r\n"),
     NORM("a\r\n.\r\nb\r\n"),
     .size = 6},
    {.name = "CRLF . CR x is not an end",
     BYTES("a\r\n.\rx\r\n.\r\n"),
     .end = true,
     EXP("a\r\n\rx\r\n"),
     NORM("a\r\n.\r\nx\r\n"),
     .size = 6},
    {.name = "CRLF . CR CR LF is not an end",
     BYTES("a\r\n.\r\r\n.\r\n"),
     .end = true,
     EXP("a\r\n\r\r\n"),
     NORM("a\r\n.\r\n\r\n"),
     .size = 5},
    {.name = "dot CR at the start",
     BYTES(".\rx\r\n.\r\n"),
     .end = true,
     EXP("\rx\r\n"),
     NORM(".\r\nx\r\n"),
     .size = 3},
    {.name = "bare LF lines, then a real end",
     BYTES("a\nb\n\r\n.\r\n"),
     .end = true,
     EXP("a\nb\n\r\n"),
     NORM("a\r\nb\r\n\r\n"),
     .size = 4},
    {.name = "stuffed dot after a bare LF",
     BYTES("a\n..b\r\n.\r\n"),
     .end = true,
     EXP("a\n..b\r\n"),
     NORM("a\r\n.b\r\n"),
     .size = 5},
    {.name = "dot space line",
     BYTES("a\r\n. \r\n.\r\n"),
     .end = true,
     EXP("a\r\n \r\n"),
     .size = 5},
    {.name = "bare LF endings never end",
     BYTES("a\n.\n"),
     .end = false,
     EXP("a\n.\n"),
     NORM("a\r\n.\r\n")},
    {.name = "bare CR endings never end",
     BYTES("a\r.\r"),
     .end = false,
     EXP("a\r.\r"),
     NORM("a\r\n")},
    {.name = "LF . CRLF at the start never ends",
     BYTES("\n.\r\n"),
     .end = false,
     EXP("\n.\r\n"),
     NORM("\r\n.\r\n")},
    {.name = "no end yet", BYTES("abc\r\n."), .end = false, EXP("abc\r\n")},
    {.name = "no end yet, dot CR", BYTES("abc\r\n.\r"), .end = false, EXP("abc\r\n")},
    {.name = "NUL and 0xff kept",
     BYTES("a\0b\xff\r\n\0\r\n.\r\n"),
     .end = true,
     EXP("a\0b\xff\r\n\0\r\n"),
     .size = 7},
    {.name = "bytes after the end are not consumed",
     BYTES("abc\r\n.\r\nQUIT\r\n"),
     .end = true,
     EXP("abc\r\n"),
     .size = 3,
     .consumed = 8},
    {.name = "empty message then a command",
     BYTES(".\r\nMAIL FROM:<a@b>\r\n"),
     .end = true,
     EXP(""),
     .size = 0,
     .consumed = 3},
    {.name = "next message is not consumed",
     BYTES("a\r\n.\r\nb\r\n.\r\n"),
     .end = true,
     EXP("a\r\n"),
     .size = 1,
     .consumed = 6},
    {.name = "limit, exactly at it",
     BYTES("0123456789\r\n.\r\n"),
     .limit = 10,
     .end = true,
     EXP("0123456789\r\n"),
     .size = 10},
    {.name = "limit, one over",
     BYTES("0123456789X\r\n.\r\n"),
     .limit = 10,
     .end = true,
     EXP(""),
     .size = 11,
     .too_much = true},
    {.name = "limit, stuffing dots count (at)",
     BYTES("..ab\r\n.\r\n"),
     .limit = 4,
     .end = true,
     EXP(".ab\r\n"),
     .size = 4},
    {.name = "limit, stuffing dots count (over)",
     BYTES("..ab\r\n.\r\n"),
     .limit = 3,
     .end = true,
     EXP(""),
     .size = 4,
     .too_much = true},
    {.name = "limit, line ends count",
     BYTES("ab\r\ncd\r\n.\r\n"),
     .limit = 6,
     .end = true,
     EXP("ab\r\ncd\r\n"),
     .size = 6},
    {.name = "limit, line ends count (over)",
     BYTES("ab\r\ncd\r\n.\r\n"),
     .limit = 5,
     .end = true,
     EXP(""),
     .size = 6,
     .too_much = true},
    {.name = "limit, empty message", BYTES(".\r\n"), .limit = 1, .end = true, EXP(""), .size = 0},
    {.name = "limit, after the end is not counted",
     BYTES("ab\r\n.\r\nxxxxxxxxxx"),
     .limit = 2,
     .end = true,
     EXP("ab\r\n"),
     .size = 2,
     .consumed = 7},
};

/* Result of one run. */
struct run {
    enum data_result r;
    size_t consumed;
    struct data_buf out;
    size_t size;
    bool too_much;
    bool bare;
    size_t max_out_len; /* the most bytes stored at any time */
    bool feed_ok;       /* every call took what it should */
};

static const char *const policy_names[] = {
    [BARE_NORMALIZE] = "normalize",
    [BARE_REJECT] = "reject",
    [BARE_ACCEPT] = "accept",
};

/* Feed @p in cut at the @p n_cuts positions of @p cuts (ascending). */
static void feed_cuts(const char *in, size_t len, size_t limit, enum data_bare_policy policy,
                      const size_t *cuts, size_t n_cuts, struct run *res)
{
    struct data_engine de;
    data_engine_init(&de, limit, policy);
    memset(res, 0, sizeof(*res));
    res->r = DATA_NEED_MORE;
    res->feed_ok = true;
    size_t pos = 0;
    for (size_t k = 0; k <= n_cuts && res->r == DATA_NEED_MORE; k++) {
        size_t end = k < n_cuts ? cuts[k] : len;
        if (end < pos)
            continue;
        size_t used = 99999;
        res->r = data_feed(&de, &res->out, in + pos, end - pos, &used);
        if (used > end - pos || (res->r == DATA_NEED_MORE && used != end - pos))
            res->feed_ok = false;
        pos += used <= end - pos ? used : end - pos;
        if (res->out.len > res->max_out_len)
            res->max_out_len = res->out.len;
    }
    res->consumed = pos;
    res->size = data_size(&de);
    res->too_much = data_too_much(&de);
    res->bare = data_bare_seen(&de);
}

/* Check one run against row @p c; false (reported) on a mismatch. */
static bool check_run(const char *ctx, const struct data_case *c, enum data_bare_policy policy,
                      struct run *res)
{
    size_t want_consumed = c->consumed ? c->consumed : c->in_len;
    if (res->r == DATA_END && (!c->end || res->consumed != want_consumed))
        print_error("%s: data ended after %zu of %zu bytes (expected: %s)\n", ctx, res->consumed,
                    c->in_len, c->end ? "later" : "no end");
    if (c->end && res->r == DATA_END && res->size != c->size)
        print_error("%s: size %zu, expected %zu\n", ctx, res->size, c->size);
    bool ok = UNIT_SOFT(ctx, res->feed_ok) &&
              UNIT_SOFT(ctx, res->r == (c->end ? DATA_END : DATA_NEED_MORE)) &&
              UNIT_SOFT(ctx, res->consumed == (c->consumed ? c->consumed : c->in_len));
    if (ok) {
        bool norm = policy == BARE_NORMALIZE && c->norm;
        ok = unit_soft_bytes(ctx, res->out.p, res->out.len, norm ? c->norm : c->exp,
                             norm ? c->norm_len : c->exp_len);
    }
    if (ok && c->end)
        ok = UNIT_SOFT(ctx, res->size == c->size) && UNIT_SOFT(ctx, res->too_much == c->too_much);
    if (ok)
        ok = UNIT_SOFT(ctx, res->bare == (policy != BARE_ACCEPT && c->bare));
    /* Over the limit nothing more is stored (normalizing may add a CR per
     * bare LF to what is stored). */
    if (ok && c->limit && policy != BARE_NORMALIZE)
        ok = UNIT_SOFT(ctx, res->max_out_len <= c->limit + 2);
    free(res->out.p);
    res->out.p = NULL;
    return ok;
}

/* Run a row under one policy whole, byte by byte, at every cut and (when
 * short) at every pair of cuts; stop at its first failure. */
static void run_policy(const struct data_case *c, enum data_bare_policy policy)
{
    char ctx[256];
    struct run res;
    size_t len = c->in_len;
    const char *pn = policy_names[policy];

    snprintf(ctx, sizeof(ctx), "%s [%s] (whole)", c->name, pn);
    feed_cuts(c->in, len, c->limit, policy, NULL, 0, &res);
    if (!check_run(ctx, c, policy, &res))
        return;

    size_t *cuts = malloc((len + 1) * sizeof(size_t));
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    snprintf(ctx, sizeof(ctx), "%s [%s] (byte by byte)", c->name, pn);
    feed_cuts(c->in, len, c->limit, policy, cuts, len, &res);
    bool ok = check_run(ctx, c, policy, &res);
    free(cuts);

    for (size_t i = 0; ok && i <= len; i++) {
        snprintf(ctx, sizeof(ctx), "%s [%s] (cut at %zu)", c->name, pn, i);
        feed_cuts(c->in, len, c->limit, policy, &i, 1, &res);
        ok = check_run(ctx, c, policy, &res);
    }
    for (size_t i = 0; ok && len <= 64 && i <= len; i++) {
        for (size_t j = i; ok && j <= len; j++) {
            size_t two[2] = {i, j};
            snprintf(ctx, sizeof(ctx), "%s [%s] (cut at %zu and %zu)", c->name, pn, i, j);
            feed_cuts(c->in, len, c->limit, policy, two, 2, &res);
            ok = check_run(ctx, c, policy, &res);
        }
    }
}

static void run_all_splits(const struct data_case *c)
{
    run_policy(c, BARE_ACCEPT);
    run_policy(c, BARE_REJECT);
    run_policy(c, BARE_NORMALIZE);
}

static void test_data_table(void **state)
{
    (void)state;
    unit_soft_begin();
    for (size_t i = 0; i < N_ROWS(cases); i++)
        run_all_splits(&cases[i]);
    unit_soft_end();
}

/* Size limit 100 with real-sized data built at run time. */
static void run_built(const char *name, size_t limit, const char *lines[], size_t n_lines,
                      bool too_much, size_t size)
{
    size_t len = 0;
    for (size_t i = 0; i < n_lines; i++)
        len += strlen(lines[i]);
    char *in = malloc(len + 8);
    char *exp = malloc(len + 8);
    assert_non_null(in);
    assert_non_null(exp);
    size_t o = 0;
    for (size_t i = 0; i < n_lines; i++) {
        memcpy(in + o, lines[i], strlen(lines[i]));
        o += strlen(lines[i]);
    }
    memcpy(exp, in, len); /* no stuffing in these rows */
    memcpy(in + len, ".\r\n", 3);
    struct data_case c = {
        .name = name,
        .in = in,
        .in_len = len + 3,
        .limit = limit,
        .end = true,
        .exp = too_much ? "" : exp,
        .exp_len = too_much ? 0 : len,
        .size = size,
        .too_much = too_much,
    };
    run_all_splits(&c);
    free(in);
    free(exp);
}

static char *repeat(char ch, size_t n, const char *tail)
{
    size_t tl = strlen(tail);
    char *s = malloc(n + tl + 1);
    assert_non_null(s);
    memset(s, ch, n);
    memcpy(s + n, tail, tl + 1);
    return s;
}

static void test_data_limit_100(void **state)
{
    (void)state;
    unit_soft_begin();
    char *x100 = repeat('x', 100, "\r\n");
    char *x101 = repeat('x', 101, "\r\n");
    char *x48 = repeat('a', 48, "\r\n");
    char *y50 = repeat('b', 50, "\r\n");
    char *y51 = repeat('b', 51, "\r\n");
    char *x10000 = repeat('z', 10000, "\r\n");
    char *x99 = repeat('x', 99, "\r\n");

    const char *exact[] = {x100};
    run_built("100 octets, limit 100", 100, exact, 1, false, 100);
    const char *over[] = {x101};
    run_built("101 octets, limit 100", 100, over, 1, true, 101);
    const char *two_exact[] = {x48, y50};
    run_built("48 + CRLF + 50 octets, limit 100", 100, two_exact, 2, false, 100);
    const char *two_over[] = {x48, y51};
    run_built("48 + CRLF + 51 octets, limit 100", 100, two_over, 2, true, 101);
    const char *big[] = {x10000};
    run_built("10000 octets, limit 100", 100, big, 1, true, 10000);
    const char *big_nolimit[] = {x10000, x10000};
    run_built("20004 octets, no limit", 0, big_nolimit, 2, false, 20002);
    const char *below[] = {x99};
    run_built("99 octets, limit 100", 100, below, 1, false, 99);

    free(x100);
    free(x101);
    free(x48);
    free(y50);
    free(y51);
    free(x10000);
    free(x99);
    unit_soft_end();
}

/* Over the limit, the engine keeps looking for the end and stores nothing
 * more: the buffer is empty once data_too_much() is true. */
static void test_data_too_much_stores_nothing(void **state)
{
    (void)state;
    struct data_engine de;
    struct data_buf out = {0};
    data_engine_init(&de, 100, BARE_REJECT);
    char line[52];
    memset(line, 'q', 50);
    memcpy(line + 50, "\r\n", 2);
    size_t used;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(data_feed(&de, &out, line, sizeof(line), &used), DATA_NEED_MORE);
        assert_int_equal(used, sizeof(line));
        assert_true(out.len <= 102);
    }
    assert_int_equal(out.len, 0);
    assert_true(data_too_much(&de));
    assert_int_equal(data_feed(&de, &out, ".\r\nNOOP\r\n", 9, &used), DATA_END);
    assert_int_equal(used, 3);
    assert_int_equal(out.len, 0);
    assert_true(data_too_much(&de));
    assert_int_equal(data_size(&de), 100 * 52 - 2);
    free(out.p);
}

/* After the end, a fresh engine reads the next message from the rest, into
 * the same buffer emptied by data_buf_reset() as the channel does. */
static void test_data_two_messages(void **state)
{
    (void)state;
    const char *in = "first\r\n..dot\r\n.\r\nsecond\r\n.\r\n";
    size_t len = strlen(in), off = 0, used;
    struct data_engine de;
    struct data_buf out = {0};
    data_engine_init(&de, 0, BARE_NORMALIZE);
    assert_int_equal(data_feed(&de, &out, in, len, &used), DATA_END);
    unit_check_str("first", out.p, out.len, "first\r\n.dot\r\n");
    assert_int_equal(data_size(&de), 12);
    assert_false(data_too_much(&de));
    off += used;
    char *first_buffer = out.p;
    data_buf_reset(&out);
    assert_ptr_equal(out.p, first_buffer); /* still at its first size: kept */
    assert_int_equal(out.len, 0);
    assert_int_equal(out.cap, DATA_BUF_FIRST);
    data_engine_init(&de, 0, BARE_NORMALIZE);
    assert_int_equal(data_feed(&de, &out, in + off, len - off, &used), DATA_END);
    assert_int_equal(off + used, len);
    unit_check_str("second", out.p, out.len, "second\r\n");
    assert_int_equal(data_size(&de), 6);
    free(out.p);
}

/* A buffer grown for a big message is freed by data_buf_reset(): what an
 * idle session holds must not depend on what it sent before. */
static void test_data_buf_reset_frees_grown(void **state)
{
    (void)state;
    struct data_engine de;
    struct data_buf out = {0};
    data_engine_init(&de, 0, BARE_NORMALIZE);
    char line[1002];
    memset(line, 'g', 1000);
    memcpy(line + 1000, "\r\n", 2);
    size_t used;
    for (int i = 0; i < 10; i++)
        assert_int_equal(data_feed(&de, &out, line, sizeof(line), &used), DATA_NEED_MORE);
    assert_true(out.cap > DATA_BUF_FIRST);
    data_buf_reset(&out);
    assert_null(out.p);
    assert_int_equal(out.len, 0);
    assert_int_equal(out.cap, 0);
    data_buf_reset(&out); /* an empty buffer stays empty */
    assert_null(out.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_table),
        cmocka_unit_test(test_data_limit_100),
        cmocka_unit_test(test_data_too_much_stores_nothing),
        cmocka_unit_test(test_data_two_messages),
        cmocka_unit_test(test_data_buf_reset_frees_grown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
