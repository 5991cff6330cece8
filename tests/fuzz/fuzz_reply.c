/*
 * fuzz_reply: reply formatting, UTF-8 validation and log escaping (reply.c).
 *
 * Input: 1 byte mode, then parameters and strings taken from the input.
 *  - reply_format(): code, '-' flag, enhanced code (NULL or a printable
 *    string of any length) and text into a heap buffer of exactly
 *    REPLY_LINE_MAX bytes. The result is one line within the buffer, ending
 *    in CRLF, with no other control character; text that fits is kept byte
 *    for byte.
 *  - utf8_valid() / utf8_seq_len(): against a table-driven model of the
 *    well-formed sequences of RFC 3629 / Unicode table 3-7.
 *  - smtpd_escape(): output of exactly outsz bytes (0 .. 700 from the
 *    input); always NUL-terminated within bounds, return value = strlen,
 *    no control characters (C0, DEL, C1), valid UTF-8, separators and
 *    bidirectional controls as \uXXXX; when it fits, equal
 *    to a model escaping; when cut, the longest run of whole units of the
 *    model that leaves room for "...", then "...".
 *  - reply_parse_line() / reply_split_enhanced(): an upstream reply line;
 *    slices within it, the code and flags as the bytes say, an enhanced
 *    code "class.d{1,3}.d{1,3}" of the reply's class, NUL-terminated in 16.
 */
#include "fuzz.h"
#include "reply.h"
#include "smtpd.h"

#include <string.h>

/* Length of the well-formed UTF-8 sequence at s, 0 if none. */
static size_t model_seq(const unsigned char *s, size_t len)
{
    static const struct {
        unsigned char lo, hi, lo1, hi1;
        size_t n;
    } t[] = {
        {0x00, 0x7f, 0, 0, 1},       {0xc2, 0xdf, 0x80, 0xbf, 2}, {0xe0, 0xe0, 0xa0, 0xbf, 3},
        {0xe1, 0xec, 0x80, 0xbf, 3}, {0xed, 0xed, 0x80, 0x9f, 3}, {0xee, 0xef, 0x80, 0xbf, 3},
        {0xf0, 0xf0, 0x90, 0xbf, 4}, {0xf1, 0xf3, 0x80, 0xbf, 4}, {0xf4, 0xf4, 0x80, 0x8f, 4},
    };
    for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
        if (s[0] < t[k].lo || s[0] > t[k].hi)
            continue;
        if (t[k].n == 1)
            return 1;
        if (len < t[k].n || s[1] < t[k].lo1 || s[1] > t[k].hi1)
            return 0;
        for (size_t i = 2; i < t[k].n; i++)
            if (s[i] < 0x80 || s[i] > 0xbf)
                return 0;
        return t[k].n;
    }
    return 0;
}

static bool model_valid(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = model_seq(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* Characters escaped as \uXXXX (separators, bidirectional controls), by
 * their UTF-8 bytes. */
static const struct {
    const char *utf8, *esc;
} spoofing[] = {
    {"\xd8\x9c", "\\u061c"},     {"\xe2\x80\x8e", "\\u200e"}, {"\xe2\x80\x8f", "\\u200f"},
    {"\xe2\x80\xa8", "\\u2028"}, {"\xe2\x80\xa9", "\\u2029"}, {"\xe2\x80\xaa", "\\u202a"},
    {"\xe2\x80\xab", "\\u202b"}, {"\xe2\x80\xac", "\\u202c"}, {"\xe2\x80\xad", "\\u202d"},
    {"\xe2\x80\xae", "\\u202e"}, {"\xe2\x81\xa6", "\\u2066"}, {"\xe2\x81\xa7", "\\u2067"},
    {"\xe2\x81\xa8", "\\u2068"}, {"\xe2\x81\xa9", "\\u2069"},
};

static const char *model_spoofing(const unsigned char *p, size_t n)
{
    for (size_t k = 0; k < sizeof(spoofing) / sizeof(spoofing[0]); k++)
        if (strlen(spoofing[k].utf8) == n && memcmp(spoofing[k].utf8, p, n) == 0)
            return spoofing[k].esc;
    return NULL;
}

/* The whole escaping, without a size limit. */
/* bound[k]: a unit (byte or UTF-8 sequence) of the escaping ends at k. */
static size_t model_escape(char *out, bool *bound, const unsigned char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    bound[0] = true;
    for (size_t i = 0; i < len;) {
        size_t n = p[i] >= 0x80 ? model_seq(p + i, len - i) : 0;
        if (n == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0)
            n = 0; /* a C1 control, U+0080..U+009F: escaped byte by byte */
        const char *esc = n > 0 ? model_spoofing(p + i, n) : NULL;
        if (esc) {
            memcpy(out + o, esc, strlen(esc));
            o += strlen(esc);
            i += n;
            bound[o] = true;
            continue;
        }
        if (n > 0) {
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
            bound[o] = true;
            continue;
        }
        if (p[i] == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else if (p[i] >= 0x20 && p[i] < 0x7f) {
            out[o++] = (char)p[i];
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[p[i] >> 4];
            out[o++] = hex[p[i] & 0xf];
        }
        i++;
        bound[o] = true;
    }
    return o;
}

static void check_no_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

/* No C1 control (U+0080..U+009F) either: a terminal may act on them. */
static void check_no_c1(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        FUZZ_CHECK(!((unsigned char)s[i] == 0xc2 && (unsigned char)s[i + 1] < 0xa0));
}

/* A NUL-terminated heap copy of n bytes of the input (NULs stay: C string). */
static char *take_str(struct fuzz_in *in, size_t n)
{
    if (n > in->n)
        n = in->n;
    char *s = malloc(n + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, in->p, n);
    s[n] = '\0';
    in->p += n;
    in->n -= n;
    return s;
}

static void fuzz_format(struct fuzz_in *in)
{
    uint8_t flags = fuzz_byte(in);
    int code = (int16_t)fuzz_u16(in);
    if (flags & 4)
        code = 200 + code % 400 * (code < 0 ? -1 : 1); /* mostly real codes */
    bool more = flags & 1;
    size_t enh_len = fuzz_u16(in) % 1024; /* any length: the contract sets none */
    char *enh = (flags & 2) ? take_str(in, enh_len) : NULL;
    /* The enhanced code is the caller's, never peer text: printable ASCII
     * (smtpd_reply() checks it), but of any length. */
    for (char *e = enh; e && *e; e++)
        *e = (char)(0x20 + (unsigned char)*e % 95);
    char *text = (flags & 8) ? NULL : take_str(in, in->n);

    char *buf = malloc(REPLY_LINE_MAX);
    FUZZ_CHECK(buf != NULL);
    size_t n = reply_format(buf, code, more, enh, text);
    FUZZ_CHECK(n >= 2 && n <= REPLY_LINE_MAX);
    FUZZ_CHECK(buf[n - 2] == '\r' && buf[n - 1] == '\n');

    char head[64 + 1024];
    /* A code that is not three digits is written as 000. */
    int shown = (code < 0 || code > 999) ? 0 : code;
    snprintf(head, sizeof(head), "%03d%c%s%s", shown, more ? '-' : ' ', enh ? enh : "",
             enh ? " " : "");
    size_t hl = strlen(head);
    const char *t = text ? text : "";
    size_t tl = strlen(t);
    if (hl + tl + 2 <= REPLY_LINE_MAX) {
        /* It fits: the head, then the text with controls as spaces. */
        FUZZ_CHECK(n == hl + tl + 2);
        FUZZ_CHECK(memcmp(buf, head, hl) == 0);
        for (size_t i = 0; i < tl; i++) {
            unsigned char c = (unsigned char)t[i];
            FUZZ_CHECK(buf[hl + i] == ((c < 0x20 || c == 0x7f) ? ' ' : t[i]));
        }
        check_no_ctl(buf + hl, tl);
    } else {
        FUZZ_CHECK(n == REPLY_LINE_MAX);
    }
    /* One line: the only CR and LF are the line end. */
    FUZZ_CHECK(memchr(buf, '\r', n - 2) == NULL && memchr(buf, '\n', n - 2) == NULL);
    free(buf);
    free(enh);
    free(text);
}

static void fuzz_utf8(const uint8_t *p, size_t len)
{
    char *s = malloc(len ? len : 1);
    FUZZ_CHECK(s != NULL);
    if (len)
        memcpy(s, p, len);
    FUZZ_CHECK(utf8_valid(s, len) == model_valid(p, len));
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(utf8_seq_len((const unsigned char *)s + i, len - i) ==
                   model_seq(p + i, len - i));
    free(s);
}

static void fuzz_escape(struct fuzz_in *in)
{
    size_t outsz = fuzz_u16(in) % 701;
    const uint8_t *p = in->p;
    size_t len = in->n;
    char *src = malloc(len ? len : 1);
    FUZZ_CHECK(src != NULL);
    if (len)
        memcpy(src, p, len);

    char *out = malloc(outsz ? outsz : 1);
    FUZZ_CHECK(out != NULL);
    if (outsz == 0)
        out[0] = 'Z';
    size_t o = smtpd_escape(out, outsz, src, len);
    if (outsz == 0) {
        FUZZ_CHECK(o == 0);
        FUZZ_CHECK(out[0] == 'Z'); /* nothing written */
    } else {
        FUZZ_CHECK(o < outsz);
        FUZZ_CHECK(out[o] == '\0');
        FUZZ_CHECK(strlen(out) == o);
        check_no_ctl(out, o);
        check_no_c1(out, o);
        /* Log lines promise escaped invalid UTF-8: a cut must not split a
         * sequence. */
        FUZZ_CHECK(model_valid((const unsigned char *)out, o));

        char *full = malloc(len * 4 + 1);
        bool *bound = calloc(len * 4 + 1, sizeof(bool));
        FUZZ_CHECK(full != NULL && bound != NULL);
        size_t fl = model_escape(full, bound, p, len);
        if (fl + 1 <= outsz) {
            FUZZ_CHECK(o == fl);
            FUZZ_CHECK(memcmp(out, full, fl) == 0);
        } else if (outsz >= 4) {
            /* Cut: whole units of the escaping, as many as leave room for
             * "...", then "...". */
            FUZZ_CHECK(o >= 3 && memcmp(out + o - 3, "...", 3) == 0);
            FUZZ_CHECK(memcmp(out, full, o - 3) == 0);
            size_t best = 0;
            for (size_t k = 0; k <= fl && k + 4 <= outsz; k++)
                if (bound[k])
                    best = k;
            FUZZ_CHECK(o - 3 == best);
        } else {
            FUZZ_CHECK(o <= fl && bound[o] && memcmp(out, full, o) == 0);
        }
        free(full);
        free(bound);
    }
    free(out);
    free(src);
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

/* An upstream server's reply line, as the relay's client reads it. */
static void fuzz_parse(struct fuzz_in *in)
{
    int other_code = (int16_t)fuzz_u16(in);
    size_t len = in->n;
    char *line = malloc(len ? len : 1);
    FUZZ_CHECK(line != NULL);
    if (len)
        memcpy(line, in->p, len);
    int code = -1;
    bool more = false;
    const char *text = NULL;
    size_t text_len = (size_t)-1;
    if (reply_parse_line(line, len, &code, &more, &text, &text_len)) {
        FUZZ_CHECK(len >= 3 && digits(line, 3));
        FUZZ_CHECK(code >= 200 && code <= 599);
        FUZZ_CHECK(code == (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
        FUZZ_CHECK(more == (len > 3 && line[3] == '-'));
        FUZZ_CHECK(len == 3 || line[3] == ' ' || line[3] == '-');
        FUZZ_CHECK(text >= line && text_len <= len && text + text_len == line + len);
        FUZZ_CHECK(text_len == (len > 4 ? len - 4 : 0));
    } else {
        text = line;
        text_len = len;
        code = other_code;
    }
    char *enh = malloc(16);
    FUZZ_CHECK(enh != NULL);
    size_t took = reply_split_enhanced(text, text_len, code, enh);
    FUZZ_CHECK(took <= text_len);
    if (took > 0) {
        /* class "." 1*3digit "." 1*3digit, then a space or the end */
        size_t n = strnlen(enh, 16);
        FUZZ_CHECK(n < 16 && n <= 9 && n >= 5);
        FUZZ_CHECK(memcmp(enh, text, n) == 0);
        FUZZ_CHECK(took == n || (took == n + 1 && text[n] == ' '));
        FUZZ_CHECK(took == n ? n == text_len : true);
        FUZZ_CHECK(enh[0] == '0' + code / 100 && enh[1] == '.');
        const char *dot = memchr(enh + 2, '.', n - 2);
        FUZZ_CHECK(dot != NULL);
        size_t a = (size_t)(dot - (enh + 2)), b = n - 3 - a;
        FUZZ_CHECK(a <= 3 && b <= 3 && digits(enh + 2, a) && digits(dot + 1, b));
    }
    free(enh);
    free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    switch (fuzz_byte(&in) % 4) {
    case 0:
        fuzz_format(&in);
        break;
    case 1:
        fuzz_utf8(in.p, in.n);
        break;
    case 2:
        fuzz_escape(&in);
        break;
    default:
        fuzz_parse(&in);
        break;
    }
    return 0;
}
