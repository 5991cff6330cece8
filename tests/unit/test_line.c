/*
 * Unit tests of the command line framing (src/proto/line.c): line ends, limits,
 * resync after overlong lines, and the same result however the input is cut.
 */
#include "unit_util.h"

#include "line.h"

#define LIMIT 512
#define MAX_EVENTS 8

/* What the reader reported for one line: LINE_OK with its text, or
 * LINE_TOO_LONG. The text is @c text, @c fill times 'x', then @c tail. */
struct line_event {
    enum line_result res;
    const char *text;
    size_t fill;
    const char *tail;
};

/* One table row: the input is pre + fill times 'x' + post. */
struct line_case {
    const char *name;
    const char *pre;
    size_t fill;
    const char *post;
    size_t limit;
    struct line_event ev[MAX_EVENTS]; /* ends at the first res == 0 (LINE_NEED_MORE) */
    bool pending;                     /* a partial line is left at the end */
};

static const struct line_case cases[] = {
    {.name = "CRLF ends lines",
     .pre = "HELO a.example\r\nNOOP\r\n",
     .ev = {{.res = LINE_OK, .text = "HELO a.example"}, {.res = LINE_OK, .text = "NOOP"}}},
    {.name = "bare LF ends lines",
     .pre = "HELO a.example\nNOOP\n",
     .ev = {{.res = LINE_OK, .text = "HELO a.example"}, {.res = LINE_OK, .text = "NOOP"}}},
    {.name = "mixed line ends",
     .pre = "A\nB\r\nC\n",
     .ev = {{.res = LINE_OK, .text = "A"},
            {.res = LINE_OK, .text = "B"},
            {.res = LINE_OK, .text = "C"}}},
    {.name = "empty line CRLF", .pre = "\r\n", .ev = {{.res = LINE_OK, .text = ""}}},
    {.name = "empty line LF", .pre = "\n", .ev = {{.res = LINE_OK, .text = ""}}},
    {.name = "empty lines between",
     .pre = "A\r\n\r\nB\r\n",
     .ev = {{.res = LINE_OK, .text = "A"},
            {.res = LINE_OK, .text = ""},
            {.res = LINE_OK, .text = "B"}}},
    {.name = "CR in the middle is kept",
     .pre = "NO\rOP\r\n",
     .ev = {{.res = LINE_OK, .text = "NO\rOP"}}},
    {.name = "only the CR before LF is dropped",
     .pre = "A\r\r\n",
     .ev = {{.res = LINE_OK, .text = "A\r"}}},
    {.name = "lone CR does not end a line", .pre = "A\rB", .pending = true},
    {.name = "no line end yet", .pre = "NOOP", .pending = true},
    {.name = "line then partial line",
     .pre = "NOOP\r\nQU",
     .ev = {{.res = LINE_OK, .text = "NOOP"}},
     .pending = true},
    {.name = "exactly at the limit, CRLF",
     .fill = LIMIT,
     .post = "\r\n",
     .ev = {{.res = LINE_OK, .text = "", .fill = LIMIT}}},
    {.name = "exactly at the limit, LF",
     .fill = LIMIT,
     .post = "\n",
     .ev = {{.res = LINE_OK, .text = "", .fill = LIMIT}}},
    {.name = "limit + 1, CRLF", .fill = LIMIT + 1, .post = "\r\n", .ev = {{.res = LINE_TOO_LONG}}},
    {.name = "limit + 1, LF", .fill = LIMIT + 1, .post = "\n", .ev = {{.res = LINE_TOO_LONG}}},
    {.name = "limit - 1 with CR CR LF is at the limit",
     .fill = LIMIT - 1,
     .post = "\r\r\n",
     .ev = {{.res = LINE_OK, .text = "", .fill = LIMIT - 1, .tail = "\r"}}},
    {.name = "limit with CR CR LF is too long",
     .fill = LIMIT,
     .post = "\r\r\n",
     .ev = {{.res = LINE_TOO_LONG}}},
    {.name = "overlong line, then resync",
     .fill = LIMIT + 1,
     .post = "\r\nNOOP\r\nQUIT\r\n",
     .ev = {{.res = LINE_TOO_LONG},
            {.res = LINE_OK, .text = "NOOP"},
            {.res = LINE_OK, .text = "QUIT"}}},
    {.name = "line before an overlong one",
     .pre = "RSET\r\n",
     .fill = 600,
     .post = "\r\nQUIT\r\n",
     .ev = {{.res = LINE_OK, .text = "RSET"},
            {.res = LINE_TOO_LONG},
            {.res = LINE_OK, .text = "QUIT"}}},
    {.name = "10000-byte line, then resync",
     .fill = 10000,
     .post = "\r\nQUIT\r\n",
     .ev = {{.res = LINE_TOO_LONG}, {.res = LINE_OK, .text = "QUIT"}}},
    {.name = "two overlong lines in a row",
     .fill = 2000,
     .post = "\n"
             "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n"
             "NOOP\n",
     .limit = 20,
     .ev = {{.res = LINE_TOO_LONG}, {.res = LINE_TOO_LONG}, {.res = LINE_OK, .text = "NOOP"}}},
    {.name = "overlong line not ended yet", .fill = 700, .pending = true},
    {.name = "small limit, at and over",
     .pre = "abcd\r\nabcde\r\nabc\r\n",
     .limit = 4,
     .ev = {{.res = LINE_OK, .text = "abcd"},
            {.res = LINE_TOO_LONG},
            {.res = LINE_OK, .text = "abc"}}},
    {.name = "0xff bytes are kept",
     .pre = "A\xff",
     .post = "B\r\n",
     .ev = {{.res = LINE_OK,
             .text = "A\xff"
                     "B"}}},
    {.name = "limit above LINE_LIMIT_MAX is clamped (LINE_LIMIT_MAX ok)",
     .fill = LINE_LIMIT_MAX,
     .post = "\r\n",
     .limit = 5000,
     .ev = {{.res = LINE_OK, .text = "", .fill = LINE_LIMIT_MAX}}},
    {.name = "limit above LINE_LIMIT_MAX is clamped (one more too long)",
     .fill = LINE_LIMIT_MAX + 1,
     .post = "\r\n",
     .limit = 5000,
     .ev = {{.res = LINE_TOO_LONG}}},
};

static char *build_input(const struct line_case *c, size_t *len)
{
    size_t pre = c->pre ? strlen(c->pre) : 0, post = c->post ? strlen(c->post) : 0;
    *len = pre + c->fill + post;
    char *in = malloc(*len + 1);
    assert_non_null(in);
    memcpy(in, c->pre ? c->pre : "", pre);
    memset(in + pre, 'x', c->fill);
    memcpy(in + pre + c->fill, c->post ? c->post : "", post);
    return in;
}

/* Run one row, feeding the input in chunks of @p chunk bytes (0: whole),
 * and check every event in order. */
static void run_case(const struct line_case *c, size_t chunk)
{
    char ctx[200];
    snprintf(ctx, sizeof(ctx), "%s (chunk %zu)", c->name, chunk);
    size_t len;
    char *in = build_input(c, &len);
    size_t limit = c->limit ? c->limit : LIMIT;
    struct line_reader lr;
    line_reader_init(&lr);
    assert_false(line_reader_pending(&lr));

    size_t n_ev = 0, pos = 0;
    while (pos < len) {
        size_t end = chunk == 0 || pos + chunk > len ? len : pos + chunk;
        /* Feed the current chunk until the reader has taken all of it. */
        while (pos < end) {
            size_t used = 12345;
            const char *line = NULL;
            size_t line_len = 0;
            enum line_result r =
                line_next(&lr, limit, in + pos, end - pos, &used, &line, &line_len);
            unit_assert(ctx, used <= end - pos);
            pos += used;
            if (r == LINE_NEED_MORE) {
                unit_assert(ctx, pos == end);
                continue;
            }
            unit_assert(ctx, used > 0);
            unit_assert(ctx, n_ev < MAX_EVENTS && c->ev[n_ev].res != LINE_NEED_MORE);
            const struct line_event *e = &c->ev[n_ev++];
            unit_assert(ctx, r == e->res);
            if (r == LINE_OK) {
                char exp[LINE_LIMIT_MAX + 64];
                size_t tl = strlen(e->text), el = e->tail ? strlen(e->tail) : 0;
                memcpy(exp, e->text, tl);
                memset(exp + tl, 'x', e->fill);
                memcpy(exp + tl + e->fill, e->tail ? e->tail : "", el);
                unit_check_bytes(ctx, line, line_len, exp, tl + e->fill + el);
            }
        }
    }
    unit_assert(ctx, n_ev == MAX_EVENTS || c->ev[n_ev].res == LINE_NEED_MORE);
    unit_assert(ctx, line_reader_pending(&lr) == c->pending);
    free(in);
}

static void test_line_table(void **state)
{
    (void)state;
    static const size_t chunks[] = {0, 1, 2, 3, 7, 100, 511, 513};
    for (size_t i = 0; i < N_ROWS(cases); i++)
        for (size_t k = 0; k < N_ROWS(chunks); k++)
            run_case(&cases[i], chunks[k]);
}

/* A line cut in two at every position gives the same line. */
static void test_line_every_split(void **state)
{
    (void)state;
    const char *in = "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n";
    size_t len = strlen(in);
    for (size_t cut = 0; cut <= len; cut++) {
        char ctx[64];
        snprintf(ctx, sizeof(ctx), "cut at %zu", cut);
        struct line_reader lr;
        line_reader_init(&lr);
        const char *parts[2] = {in, in + cut};
        size_t lens[2] = {cut, len - cut};
        char got[4][64];
        size_t n = 0;
        for (int p = 0; p < 2; p++) {
            size_t off = 0;
            while (off < lens[p]) {
                size_t used;
                const char *line;
                size_t ll;
                enum line_result r =
                    line_next(&lr, LIMIT, parts[p] + off, lens[p] - off, &used, &line, &ll);
                off += used;
                if (r == LINE_OK) {
                    unit_assert(ctx, n < 4 && ll < sizeof(got[0]));
                    memcpy(got[n], line, ll);
                    got[n++][ll] = '\0';
                } else {
                    unit_assert(ctx, r == LINE_NEED_MORE);
                }
            }
        }
        unit_assert(ctx, n == 2);
        assert_string_equal(got[0], "MAIL FROM:<a@example.com>");
        assert_string_equal(got[1], "RCPT TO:<b@example.com>");
        unit_assert(ctx, !line_reader_pending(&lr));
    }
}

/* Bytes after a complete line are not consumed, and the line points at the
 * input when it was not buffered. */
static void test_line_consumed(void **state)
{
    (void)state;
    struct line_reader lr;
    line_reader_init(&lr);
    const char *in = "NOOP\r\nQUIT\r\nRS";
    size_t used;
    const char *line;
    size_t ll;
    assert_int_equal(line_next(&lr, LIMIT, in, strlen(in), &used, &line, &ll), LINE_OK);
    assert_int_equal(used, 6);
    assert_int_equal(ll, 4);
    assert_memory_equal(line, "NOOP", 4);
    assert_int_equal(line_next(&lr, LIMIT, in + 6, strlen(in + 6), &used, &line, &ll), LINE_OK);
    assert_int_equal(used, 6);
    assert_memory_equal(line, "QUIT", 4);
    assert_false(line_reader_pending(&lr));
    assert_int_equal(line_next(&lr, LIMIT, in + 12, 2, &used, &line, &ll), LINE_NEED_MORE);
    assert_int_equal(used, 2);
    assert_true(line_reader_pending(&lr));
    assert_int_equal(line_next(&lr, LIMIT, "ET\r\n", 4, &used, &line, &ll), LINE_OK);
    assert_int_equal(used, 4);
    assert_int_equal(ll, 4);
    assert_memory_equal(line, "RSET", 4);
    assert_false(line_reader_pending(&lr));

    /* An overlong line is reported once, when it ends, with its bytes gone. */
    char big[600];
    memset(big, 'x', sizeof(big));
    assert_int_equal(line_next(&lr, LIMIT, big, sizeof(big), &used, &line, &ll), LINE_NEED_MORE);
    assert_int_equal(used, sizeof(big));
    assert_true(line_reader_pending(&lr));
    assert_int_equal(line_next(&lr, LIMIT, big, sizeof(big), &used, &line, &ll), LINE_NEED_MORE);
    assert_int_equal(line_next(&lr, LIMIT, "xx\r\nNOOP\r\n", 10, &used, &line, &ll), LINE_TOO_LONG);
    assert_int_equal(used, 4);
    assert_false(line_reader_pending(&lr));
    assert_int_equal(line_next(&lr, LIMIT, "NOOP\r\n", 6, &used, &line, &ll), LINE_OK);
    assert_int_equal(ll, 4);

    /* A NUL byte is data like any other. */
    assert_int_equal(line_next(&lr, LIMIT, "A\0B\r\n", 5, &used, &line, &ll), LINE_OK);
    assert_int_equal(used, 5);
    assert_int_equal(ll, 3);
    assert_memory_equal(line, "A\0B", 3);
}

/* The limit applies to the buffered part and the new part together. */
static void test_line_limit_across_feeds(void **state)
{
    (void)state;
    char a[LIMIT];
    memset(a, 'a', sizeof(a));
    for (size_t first = 0; first <= LIMIT; first += 64) {
        for (size_t extra = 0; extra <= 1; extra++) {
            char ctx[64];
            snprintf(ctx, sizeof(ctx), "first %zu, extra %zu", first, extra);
            struct line_reader lr;
            line_reader_init(&lr);
            size_t used;
            const char *line;
            size_t ll;
            size_t rest = LIMIT - first + extra; /* total LIMIT + extra octets */
            char buf[LIMIT + 8];
            memset(buf, 'a', rest);
            memcpy(buf + rest, "\r\n", 2);
            enum line_result r = LINE_NEED_MORE;
            if (first > 0)
                unit_assert(ctx,
                            line_next(&lr, LIMIT, a, first, &used, &line, &ll) == LINE_NEED_MORE);
            r = line_next(&lr, LIMIT, buf, rest + 2, &used, &line, &ll);
            unit_assert(ctx, used == rest + 2);
            if (extra) {
                unit_assert(ctx, r == LINE_TOO_LONG);
            } else {
                unit_assert(ctx, r == LINE_OK);
                unit_assert(ctx, ll == LIMIT);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_table),
        cmocka_unit_test(test_line_every_split),
        cmocka_unit_test(test_line_consumed),
        cmocka_unit_test(test_line_limit_across_feeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
