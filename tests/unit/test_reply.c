/*
 * Unit tests of reply formatting, UTF-8 validation and log escaping
 * (src/proto/reply.c).
 */
#include "unit_util.h"

#include "reply.h"
#include "smtpd.h"

/* ---- reply_format ---- */

struct fmt_case {
    int code;
    bool more;
    const char *enh;
    const char *text;
    const char *want;
};

static const struct fmt_case fmt_cases[] = {
    {.code = 250, .text = "OK", .want = "250 OK\r\n"},
    {.code = 250, .enh = "2.0.0", .text = "OK", .want = "250 2.0.0 OK\r\n"},
    {.code = 250, .more = true, .text = "test.example", .want = "250-test.example\r\n"},
    {.code = 250, .more = true, .enh = "2.0.0", .text = "x", .want = "250-2.0.0 x\r\n"},
    {.code = 550, .enh = "5.1.1", .text = "No such user", .want = "550 5.1.1 No such user\r\n"},
    {.code = 220, .text = "", .want = "220 \r\n"},
    {.code = 221, .text = NULL, .want = "221 \r\n"},
    {.code = 554,
     .text = "a\rb\nc\td\x7f"
             "e\x01"
             "f\x1f",
     .want = "554 a b c d e f \r\n"},
    {.code = 451,
     .enh = "4.3.0",
     .text = "line1\r\n250 fake",
     .want = "451 4.3.0 line1  250 fake\r\n"},
    {.code = 250, .text = "caf\xc3\xa9 \xe2\x82\xac", .want = "250 caf\xc3\xa9 \xe2\x82\xac\r\n"},
};

static void test_reply_format(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(fmt_cases); i++) {
        const struct fmt_case *c = &fmt_cases[i];
        char buf[REPLY_LINE_MAX + 16];
        memset(buf, '#', sizeof(buf));
        size_t n = reply_format(buf, c->code, c->more, c->enh, c->text);
        unit_check_str(c->want, buf, n, c->want);
        unit_assert(c->want, buf[n] == '#'); /* nothing written past the reply */
    }
}

/* Text too long for one line is cut so that the line, CRLF included, is
 * REPLY_LINE_MAX bytes. */
static void test_reply_format_overlong(void **state)
{
    (void)state;
    char text[2000];
    memset(text, 'a', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    static const struct {
        const char *enh;
        bool more;
        const char *prefix;
    } rows[] = {
        {NULL, false, "250 "},
        {"2.0.0", false, "250 2.0.0 "},
        {NULL, true, "250-"},
        {"5.5.2", true, "250-5.5.2 "},
    };
    for (size_t r = 0; r < N_ROWS(rows); r++) {
        char buf[REPLY_LINE_MAX + 16];
        memset(buf, '#', sizeof(buf));
        size_t n = reply_format(buf, 250, rows[r].more, rows[r].enh, text);
        size_t pl = strlen(rows[r].prefix);
        assert_int_equal(n, REPLY_LINE_MAX);
        assert_memory_equal(buf, rows[r].prefix, pl);
        for (size_t k = pl; k < n - 2; k++)
            assert_int_equal(buf[k], 'a');
        assert_memory_equal(buf + n - 2, "\r\n", 2);
        assert_int_equal(buf[n], '#');
    }
    /* Text that exactly fits is not cut. */
    char fit[REPLY_LINE_MAX];
    size_t room = REPLY_LINE_MAX - 2 - 4; /* "250 " and CRLF */
    memset(fit, 'b', room);
    fit[room] = '\0';
    char buf[REPLY_LINE_MAX + 16];
    size_t n = reply_format(buf, 250, false, NULL, fit);
    assert_int_equal(n, REPLY_LINE_MAX);
    assert_int_equal(buf[n - 3], 'b');
    fit[room - 1] = '\0';
    n = reply_format(buf, 250, false, NULL, fit);
    assert_int_equal(n, REPLY_LINE_MAX - 1);
    assert_memory_equal(buf + n - 3, "b\r\n", 3);
}

/* ---- utf8_valid ---- */

struct utf8_case {
    const char *name;
    const char *in;
    size_t in_len;
    bool valid;
};

static const struct utf8_case utf8_cases[] = {
    {.name = "empty", BYTES(""), .valid = true},
    {.name = "ASCII", BYTES("MAIL FROM:<a@b>"), .valid = true},
    {.name = "NUL", BYTES("\0"), .valid = true},
    {.name = "DEL", BYTES("\x7f"), .valid = true},
    {.name = "2 bytes e-acute", BYTES("\xc3\xa9"), .valid = true},
    {.name = "2 bytes lowest U+0080", BYTES("\xc2\x80"), .valid = true},
    {.name = "3 bytes euro", BYTES("\xe2\x82\xac"), .valid = true},
    {.name = "3 bytes lowest U+0800", BYTES("\xe0\xa0\x80"), .valid = true},
    {.name = "3 bytes U+D7FF", BYTES("\xed\x9f\xbf"), .valid = true},
    {.name = "3 bytes U+E000", BYTES("\xee\x80\x80"), .valid = true},
    {.name = "3 bytes U+FFFF", BYTES("\xef\xbf\xbf"), .valid = true},
    {.name = "4 bytes emoji", BYTES("\xf0\x9f\x98\x80"), .valid = true},
    {.name = "4 bytes lowest U+10000", BYTES("\xf0\x90\x80\x80"), .valid = true},
    {.name = "4 bytes highest U+10FFFF", BYTES("\xf4\x8f\xbf\xbf"), .valid = true},
    {.name = "mixed", BYTES("j\xc3\xb6rg \xe7\x94\xa8 \xf0\x9f\x98\x80!"), .valid = true},
    {.name = "overlong / as C0 AF", BYTES("\xc0\xaf"), .valid = false},
    {.name = "overlong NUL C0 80", BYTES("\xc0\x80"), .valid = false},
    {.name = "overlong C1 BF", BYTES("\xc1\xbf"), .valid = false},
    {.name = "overlong 3 bytes E0 80 80", BYTES("\xe0\x80\x80"), .valid = false},
    {.name = "overlong 3 bytes E0 9F BF", BYTES("\xe0\x9f\xbf"), .valid = false},
    {.name = "overlong 4 bytes F0 80 80 80", BYTES("\xf0\x80\x80\x80"), .valid = false},
    {.name = "overlong 4 bytes F0 8F BF BF", BYTES("\xf0\x8f\xbf\xbf"), .valid = false},
    {.name = "surrogate U+D800", BYTES("\xed\xa0\x80"), .valid = false},
    {.name = "surrogate U+DFFF", BYTES("\xed\xbf\xbf"), .valid = false},
    {.name = "surrogate pair as CESU-8", BYTES("\xed\xa0\xbd\xed\xb8\x80"), .valid = false},
    {.name = "above U+10FFFF F4 90", BYTES("\xf4\x90\x80\x80"), .valid = false},
    {.name = "F5 lead", BYTES("\xf5\x80\x80\x80"), .valid = false},
    {.name = "F8 lead (5 bytes)", BYTES("\xf8\x88\x80\x80\x80"), .valid = false},
    {.name = "FE", BYTES("\xfe"), .valid = false},
    {.name = "FF", BYTES("\xff"), .valid = false},
    {.name = "lone continuation 80", BYTES("\x80"), .valid = false},
    {.name = "lone continuation BF after ASCII", BYTES("a\xbf"), .valid = false},
    {.name = "truncated 2 bytes", BYTES("\xc3"), .valid = false},
    {.name = "truncated 2 bytes after ASCII", BYTES("abc\xc3"), .valid = false},
    {.name = "truncated 3 bytes", BYTES("\xe2\x82"), .valid = false},
    {.name = "truncated 4 bytes", BYTES("\xf0\x9f\x98"), .valid = false},
    {.name = "bad continuation C3 41", BYTES("\xc3\x41"), .valid = false},
    {.name = "bad continuation E2 28 A1", BYTES("\xe2\x28\xa1"), .valid = false},
    {.name = "bad continuation F0 9F 98 41", BYTES("\xf0\x9f\x98\x41"), .valid = false},
    {.name = "Latin-1 e-acute", BYTES("caf\xe9"), .valid = false},
};

static void test_utf8_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(utf8_cases); i++) {
        const struct utf8_case *c = &utf8_cases[i];
        unit_assert(c->name, utf8_valid(c->in, c->in_len) == c->valid);
    }
    /* The length is respected: a valid string cut inside a sequence. */
    assert_true(utf8_valid("\xe2\x82\xac", 3));
    assert_false(utf8_valid("\xe2\x82\xac", 2));
    assert_true(utf8_valid("a\xff", 1));
}

static void test_utf8_seq_len(void **state)
{
    (void)state;
    assert_int_equal(utf8_seq_len((const unsigned char *)"a", 1), 1);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\xc3\xa9x", 3), 2);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\xe2\x82\xac", 3), 3);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\xf0\x9f\x98\x80", 3), 0);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\xc0\x80", 2), 0);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\xed\xa0\x80", 3), 0);
    assert_int_equal(utf8_seq_len((const unsigned char *)"\x80", 1), 0);
}

/* ---- smtpd_escape ---- */

struct esc_case {
    const char *name;
    const char *in;
    size_t in_len;
    size_t outsz;     /* 0: a large buffer */
    const char *want; /* exact output */
};

static const struct esc_case esc_cases[] = {
    {.name = "plain", BYTES("hello world"), .outsz = 0, .want = "hello world"},
    {.name = "empty", BYTES(""), .outsz = 0, .want = ""},
    {.name = "CRLF", BYTES("a\r\nb"), .outsz = 0, .want = "a\\x0d\\x0ab"},
    {.name = "control chars", BYTES("\x01\x1f\x7f\t"), .outsz = 0, .want = "\\x01\\x1f\\x7f\\x09"},
    {.name = "NUL", BYTES("a\0b"), .outsz = 0, .want = "a\\x00b"},
    {.name = "backslash doubled", BYTES("back\\slash\\"), .outsz = 0, .want = "back\\\\slash\\\\"},
    {.name = "valid UTF-8 kept",
     BYTES("j\xc3\xb6rg \xe2\x82\xac \xf0\x9f\x98\x80"),
     .outsz = 0,
     .want = "j\xc3\xb6rg \xe2\x82\xac \xf0\x9f\x98\x80"},
    {.name = "invalid bytes", BYTES("\xff\xfe"), .outsz = 0, .want = "\\xff\\xfe"},
    /* A peer must not be able to make a log line read otherwise. */
    {.name = "right-to-left override",
     BYTES("evil\xe2\x80\xaegpj.exe"),
     .outsz = 0,
     .want = "evil\\u202egpj.exe"},
    {.name = "line and paragraph separators",
     BYTES("a\xe2\x80\xa8"
           "b\xe2\x80\xa9"
           "c"),
     .outsz = 0,
     .want = "a\\u2028b\\u2029c"},
    {.name = "isolates and marks",
     BYTES("\xe2\x81\xa6\xe2\x81\xa9\xe2\x80\x8f\xd8\x9c"),
     .outsz = 0,
     .want = "\\u2066\\u2069\\u200f\\u061c"},
    {.name = "neighbours kept",
     BYTES("\xe2\x80\xa7\xe2\x80\xaf\xe2\x81\xa5\xd8\x9b"),
     .outsz = 0,
     .want = "\xe2\x80\xa7\xe2\x80\xaf\xe2\x81\xa5\xd8\x9b"},
    {.name = "cut before \\u", BYTES("abcd\xe2\x80\xae"), .outsz = 9, .want = "abcd..."},
    {.name = "Latin-1", BYTES("caf\xe9!"), .outsz = 0, .want = "caf\\xe9!"},
    {.name = "truncated sequence", BYTES("a\xc3"), .outsz = 0, .want = "a\\xc3"},
    {.name = "truncated sequence then ASCII",
     BYTES("\xe2\x82z"),
     .outsz = 0,
     .want = "\\xe2\\x82z"},
    {.name = "overlong", BYTES("\xc0\x80"), .outsz = 0, .want = "\\xc0\\x80"},
    {.name = "surrogate", BYTES("\xed\xa0\x80"), .outsz = 0, .want = "\\xed\\xa0\\x80"},
    {.name = "above U+10FFFF",
     BYTES("\xf4\x90\x80\x80"),
     .outsz = 0,
     .want = "\\xf4\\x90\\x80\\x80"},
    {.name = "cut with dots", BYTES("abcdefghijklmnop"), .outsz = 10, .want = "abcdef..."},
    {.name = "exact fit", BYTES("abcdefghi"), .outsz = 10, .want = "abcdefghi"},
    {.name = "one too many", BYTES("abcdefghij"), .outsz = 10, .want = "abcdef..."},
    {.name = "cut before an escape", BYTES("abcdef\x01"), .outsz = 10, .want = "abcdef..."},
    {.name = "cut before UTF-8", BYTES("abcde\xe2\x82\xac"), .outsz = 8, .want = "abcd..."},
    {.name = "outsz 4", BYTES("abcdef"), .outsz = 4, .want = "..."},
    {.name = "outsz 4, fits", BYTES("abc"), .outsz = 4, .want = "abc"},
    {.name = "outsz 2", BYTES("abcdef"), .outsz = 2, .want = "a"},
    {.name = "outsz 1", BYTES("abcdef"), .outsz = 1, .want = ""},
    {.name = "outsz 1, empty input", BYTES(""), .outsz = 1, .want = ""},
    /* A cut must not split a UTF-8 sequence or an escape: the log line
     * would carry invalid UTF-8 or a dangling backslash. */
    {.name = "cut does not split UTF-8",
     BYTES("a\xe2\x82\xac\xc3\xa9xy"),
     .outsz = 7,
     .want = "a..."},
    {.name = "cut does not split an escape",
     BYTES("ab\x01"
           "cd"),
     .outsz = 7,
     .want = "ab..."},
    {.name = "cut does not split a doubled backslash",
     BYTES("abc\\def"),
     .outsz = 8,
     .want = "abc..."},
};

static void test_escape_table(void **state)
{
    (void)state;
    unit_soft_begin();
    for (size_t i = 0; i < N_ROWS(esc_cases); i++) {
        const struct esc_case *c = &esc_cases[i];
        char out[512];
        size_t outsz = c->outsz ? c->outsz : sizeof(out);
        memset(out, '#', sizeof(out));
        size_t n = smtpd_escape(out, outsz, c->in, c->in_len);
        if (UNIT_SOFT(c->name, n < outsz) && UNIT_SOFT(c->name, out[n] == '\0'))
            unit_soft_bytes(c->name, out, n, c->want, strlen(c->want));
        UNIT_SOFT(c->name, outsz == sizeof(out) || out[outsz] == '#');
    }
    unit_soft_end();
}

static void test_escape_outsz_zero(void **state)
{
    (void)state;
    char out[4] = "###";
    assert_int_equal(smtpd_escape(out, 0, "abc", 3), 0);
    assert_string_equal(out, "###");
}

/* The escape of each input unit (one valid UTF-8 sequence or one byte), so
 * that a cut output can be checked to end on a unit boundary. */
static size_t unit_bounds(const char *in, size_t len, size_t *bounds, char *full)
{
    size_t nb = 0, o = 0;
    bounds[nb++] = 0;
    for (size_t i = 0; i < len;) {
        const unsigned char *p = (const unsigned char *)in + i;
        size_t seq = *p >= 0x80 ? utf8_seq_len(p, len - i) : 1;
        if (seq == 0)
            seq = 1;
        char tmp[16];
        size_t tn = smtpd_escape(tmp, sizeof(tmp), in + i, seq);
        memcpy(full + o, tmp, tn);
        o += tn;
        bounds[nb++] = o;
        i += seq;
    }
    full[o] = '\0';
    return nb;
}

/* For every output size, the result is NUL-terminated, valid UTF-8, and
 * either the whole escape or a prefix of it ending on a unit boundary,
 * followed by "..." when there is room. */
static void test_escape_every_size(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t in_len;
    } inputs[] = {
        {BYTES("plain ascii text")},
        {BYTES("a\xe2\x82\xac\xc3\xa9xyz\xf0\x9f\x98\x80q")},
        {BYTES("ab\x01"
               "cd\r\nef\\gh\xffij")},
        {BYTES("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9")},
        {BYTES("\x01\x02\x03\x04\x05\x06")},
        {BYTES("a\\\\b\\\\c\\\\")},
    };
    unit_soft_begin();
    for (size_t k = 0; k < N_ROWS(inputs); k++) {
        const char *in = inputs[k].in;
        size_t len = inputs[k].in_len;
        size_t bounds[64];
        char full[256];
        size_t nb = unit_bounds(in, len, bounds, full);
        size_t full_len = strlen(full);
        /* Stop at the first bad size of each input. */
        bool ok = true;
        for (size_t outsz = 1; ok && outsz <= full_len + 2; outsz++) {
            char ctx[256], shown[128];
            snprintf(ctx, sizeof(ctx), "input %zu \"%s\", outsz %zu", k,
                     unit_show(shown, sizeof(shown), in, len), outsz);
            char out[300];
            memset(out, '#', sizeof(out));
            size_t n = smtpd_escape(out, outsz, in, len);
            ok = UNIT_SOFT(ctx, n < outsz) && UNIT_SOFT(ctx, out[n] == '\0') &&
                 UNIT_SOFT(ctx, strlen(out) == n) && UNIT_SOFT(ctx, out[outsz] == '#');
            if (!ok)
                break;
            if (full_len < outsz) {
                ok = unit_soft_bytes(ctx, out, n, full, full_len);
                continue;
            }
            size_t body = n;
            if (outsz >= 4) {
                ok = UNIT_SOFT(ctx, n >= 3 && memcmp(out + n - 3, "...", 3) == 0);
                body = n >= 3 ? n - 3 : 0;
            }
            bool on_bound = false;
            for (size_t b = 0; b < nb; b++)
                on_bound |= bounds[b] == body;
            if (ok && (!on_bound || memcmp(out, full, body) != 0 || !utf8_valid(out, n))) {
                print_error("%s: \"%s\" is not the escape \"%s\" cut between units%s\n", ctx,
                            unit_show(shown, sizeof(shown), out, n), full,
                            utf8_valid(out, n) ? "" : " (and not valid UTF-8)");
                unit_soft_failures++;
                ok = false;
            }
        }
    }
    unit_soft_end();
}

static void test_strerror(void **state)
{
    (void)state;
    static const enum smtpd_err errs[] = {SMTPD_OK,          SMTPD_ERR_NOMEM,   SMTPD_ERR_CONFIG,
                                          SMTPD_ERR_ADDRESS, SMTPD_ERR_RESOLVE, SMTPD_ERR_BIND,
                                          SMTPD_ERR_STATE};
    for (size_t i = 0; i < N_ROWS(errs); i++) {
        const char *s = smtpd_strerror(errs[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(s, smtpd_strerror(errs[j]));
    }
    assert_non_null(smtpd_strerror((enum smtpd_err)1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_format),      cmocka_unit_test(test_reply_format_overlong),
        cmocka_unit_test(test_utf8_valid),        cmocka_unit_test(test_utf8_seq_len),
        cmocka_unit_test(test_escape_table),      cmocka_unit_test(test_escape_outsz_zero),
        cmocka_unit_test(test_escape_every_size), cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
