/* Reply formatting and log escaping; see reply.h and smtpd.h. */
#include "reply.h"
#include "smtpd.h"

#include <stdio.h>
#include <string.h>

/* Copy @p src into buf from len up to room, control characters as spaces. */
static size_t put_text(char *buf, size_t len, size_t room, const char *src)
{
    for (; *src && len < room; src++)
        buf[len++] = ((unsigned char)*src < 0x20 || *src == 0x7f) ? ' ' : *src;
    return len;
}

/* Built by hand, not with snprintf: every reply of every session comes here. */
size_t reply_format(char *buf, int code, bool more, const char *enh, const char *text)
{
    /* Room for the CRLF is kept out of the text. */
    const size_t room = REPLY_LINE_MAX - 2;
    if (code < 0 || code > 999)
        code = 0;
    buf[0] = (char)('0' + code / 100);
    buf[1] = (char)('0' + code / 10 % 10);
    buf[2] = (char)('0' + code % 10);
    buf[3] = more ? '-' : ' ';
    size_t len = 4;
    if (enh) {
        len = put_text(buf, len, room, enh);
        if (len < room)
            buf[len++] = ' ';
    }
    len = put_text(buf, len, room, text ? text : "");
    buf[len++] = '\r';
    buf[len++] = '\n';
    return len;
}

size_t reply_format_lines(char *buf, int code, const char *enh, const char *const *lines, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += reply_format(buf + o, code, i + 1 < n, enh, lines[i]);
    return o;
}

size_t utf8_seq_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned min;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* Characters that would let a peer forge how a log line reads: the line
 * and paragraph separators and the bidirectional controls (U+061C, U+200E,
 * U+200F, U+2028..U+202E, U+2066..U+2069). @p seq is a valid UTF-8 sequence. */
static unsigned spoofing_char(const unsigned char *p, size_t seq)
{
    unsigned cp = seq == 2 ? (unsigned)(p[0] & 0x1f) << 6 | (p[1] & 0x3f)
                  : seq == 3
                      ? (unsigned)(p[0] & 0x0f) << 12 | (unsigned)(p[1] & 0x3f) << 6 | (p[2] & 0x3f)
                      : 0;
    bool bad = cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
               (cp >= 0x2066 && cp <= 0x2069);
    return bad ? cp : 0;
}

/* Escape one unit (a byte, or a whole UTF-8 sequence) at p into tmp. C0 and
 * C1 controls (U+0080..U+009F), DEL and invalid bytes become \xNN; the
 * characters of spoofing_char() become \uXXXX. */
static size_t escape_unit(const unsigned char *p, size_t len, char *tmp, size_t *took)
{
    static const char hex[] = "0123456789abcdef";
    size_t seq = p[0] >= 0x80 ? utf8_seq_len(p, len) : 0;
    bool c1 = seq == 2 && p[0] == 0xc2 && p[1] < 0xa0;
    unsigned cp = seq > 0 ? spoofing_char(p, seq) : 0;
    if (cp) {
        tmp[0] = '\\';
        tmp[1] = 'u';
        for (int k = 0; k < 4; k++)
            tmp[2 + k] = hex[(cp >> (12 - 4 * k)) & 0xf];
        *took = seq;
        return 6;
    }
    if (seq > 0 && !c1) {
        memcpy(tmp, p, seq);
        *took = seq;
        return seq;
    }
    *took = 1;
    if (p[0] == '\\') {
        memcpy(tmp, "\\\\", 2);
        return 2;
    }
    if (p[0] >= 0x20 && p[0] < 0x7f) {
        tmp[0] = (char)p[0];
        return 1;
    }
    tmp[0] = '\\';
    tmp[1] = 'x';
    tmp[2] = hex[p[0] >> 4];
    tmp[3] = hex[p[0] & 0xf];
    return 4;
}

size_t smtpd_escape(char *out, size_t outsz, const char *in, size_t len)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0;
    /* Ends of the last few units written, to cut at a unit boundary. */
    size_t ends[4] = {0, 0, 0, 0};
    if (outsz == 0)
        return 0;
    for (size_t i = 0; i < len;) {
        char tmp[8];
        size_t took;
        size_t tn = escape_unit(p + i, len - i, tmp, &took);
        if (o + tn + 1 > outsz) {
            /* Cut after the last whole unit that leaves room for "...". */
            if (outsz >= 4) {
                size_t cut = 0;
                for (int k = 0; k < 4; k++)
                    if (ends[k] + 4 <= outsz && ends[k] > cut)
                        cut = ends[k];
                o = cut;
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(out + o, tmp, tn);
        o += tn;
        i += took;
        memmove(ends, ends + 1, 3 * sizeof(ends[0]));
        ends[3] = o;
    }
    out[o] = '\0';
    return o;
}

bool reply_parse_line(const char *line, size_t len, int *code, bool *more, const char **text,
                      size_t *text_len)
{
    if (len < 3)
        return false;
    for (int i = 0; i < 3; i++)
        if (line[i] < '0' || line[i] > '9')
            return false;
    int c = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (c < 200 || c > 599)
        return false;
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return false;
    *code = c;
    *more = len > 3 && line[3] == '-';
    *text = len > 4 ? line + 4 : line + len;
    *text_len = len > 4 ? len - 4 : 0;
    return true;
}

size_t reply_split_enhanced(const char *text, size_t len, int code, char *enh)
{
    /* class "." 1*3digit "." 1*3digit */
    if (len < 5 || text[0] != '0' + code / 100 || text[1] != '.')
        return 0;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (i < len && i - start < 3 && text[i] >= '0' && text[i] <= '9')
            i++;
        if (i == start)
            return 0;
        if (part == 0) {
            if (i >= len || text[i] != '.')
                return 0;
            i++;
        }
    }
    if (i < len && text[i] != ' ')
        return 0;
    memcpy(enh, text, i);
    enh[i] = '\0';
    return i < len ? i + 1 : i;
}
