/* Command, path and parameter parsing; see command.h. */
#include "command.h"

#include <string.h>

static const char *const verb_names[CMD_COUNT] = {
    [CMD_UNKNOWN] = "",  [CMD_HELO] = "HELO", [CMD_EHLO] = "EHLO", [CMD_MAIL] = "MAIL",
    [CMD_RCPT] = "RCPT", [CMD_DATA] = "DATA", [CMD_RSET] = "RSET", [CMD_NOOP] = "NOOP",
    [CMD_QUIT] = "QUIT", [CMD_VRFY] = "VRFY", [CMD_EXPN] = "EXPN", [CMD_HELP] = "HELP",
};

static char upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

bool slice_ieq(const char *s, size_t len, const char *word)
{
    size_t i = 0;
    for (; i < len; i++)
        if (word[i] == '\0' || upper(s[i]) != word[i])
            return false;
    return word[i] == '\0';
}

enum cmd_verb cmd_lookup(const char *name, size_t len)
{
    if (len != 4)
        return CMD_UNKNOWN;
    for (int v = CMD_HELO; v < CMD_COUNT; v++)
        if (slice_ieq(name, len, verb_names[v]))
            return (enum cmd_verb)v;
    return CMD_UNKNOWN;
}

const char *cmd_name(enum cmd_verb verb)
{
    return verb_names[verb < CMD_COUNT ? verb : CMD_UNKNOWN];
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

size_t cmd_verb_len(const char *line, size_t len)
{
    const char *sp = memchr(line, ' ', len);
    return sp ? (size_t)(sp - line) : len;
}

enum cmd_verb cmd_split(const char *line, size_t len, const char **arg, size_t *arg_len)
{
    size_t vlen = cmd_verb_len(line, len);
    const char *a = vlen < len ? line + vlen + 1 : line + len;
    const char *e = line + len;
    while (a < e && is_space(*a))
        a++;
    while (e > a && is_space(e[-1]))
        e--;
    *arg = a;
    *arg_len = (size_t)(e - a);
    return cmd_lookup(line, vlen);
}

static bool is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* atext of RFC 5322 3.2.3, plus UTF-8 bytes (RFC 6531 3.3). Validity of the
 * UTF-8 itself is checked on the whole command line. */
static bool is_atext(unsigned char c)
{
    return is_alnum(c) || c >= 0x80 || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Dot-string (RFC 5321 4.1.2), leniently: atext and dots in any order.
 * Carriers issued addresses with leading, trailing and doubled dots
 * ("user..name@docomo.ne.jp", "taro.@ezweb.ne.jp"), and Python's smtpd and
 * Postfix take them, so refusing them would only lose mail. */
static const char *scan_dot_string(const char *p, const char *end)
{
    const char *start = p;
    while (p < end && (is_atext((unsigned char)*p) || *p == '.'))
        p++;
    return p == start ? NULL : p;
}

/* Quoted-string: qtextSMTP or quoted-pairSMTP inside DQUOTEs. */
static const char *scan_quoted(const char *p, const char *end)
{
    if (p >= end || *p != '"')
        return NULL;
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            if (++p >= end || (unsigned char)*p < 0x20 || *p == 0x7f)
                return NULL;
        } else if (c < 0x20 || c == 0x7f) {
            return NULL;
        }
    }
    return NULL;
}

/* Domain (labels of letters, digits, hyphens or UTF-8) or address literal. */
static const char *scan_domain(const char *p, const char *end)
{
    if (p < end && *p == '[') {
        for (p++; p < end; p++) {
            unsigned char c = (unsigned char)*p;
            if (c == ']')
                return p + 1;
            if (c <= 0x20 || c == '[' || c == '\\' || c == 0x7f)
                return NULL;
        }
        return NULL;
    }
    for (;;) {
        const char *start = p;
        while (p < end && (is_alnum((unsigned char)*p) || *p == '-' || (unsigned char)*p >= 0x80))
            p++;
        if (p == start || *start == '-' || p[-1] == '-')
            return NULL;
        if (p < end && *p == '.')
            p++;
        else
            return p;
    }
}

/* Mailbox = Local-part ["@" domain]; returns the end or NULL. A local part
 * alone is allowed, as smtpd and RFC 5321's <Postmaster> have it. */
static const char *scan_mailbox(const char *p, const char *end)
{
    const char *q = (p < end && *p == '"') ? scan_quoted(p, end) : scan_dot_string(p, end);
    if (!q)
        return NULL;
    if (q < end && *q == '@')
        return scan_domain(q + 1, end);
    return q;
}

/* A-d-l (source route, RFC 5321 4.1.2): "@dom,@dom:" */
static const char *scan_route(const char *p, const char *end)
{
    for (;;) {
        if (p >= end || *p != '@')
            return NULL;
        p = scan_domain(p + 1, end);
        if (!p || p >= end)
            return NULL;
        if (*p == ':')
            return p + 1;
        if (*p != ',')
            return NULL;
        p++;
    }
}

bool cmd_valid_mailbox(const char *s, size_t len)
{
    return len > 0 && scan_mailbox(s, s + len) == s + len;
}

bool cmd_parse_path(const char *arg, size_t len, const char *keyword, struct path_arg *out)
{
    size_t klen = strlen(keyword);
    if (len < klen || !slice_ieq(arg, klen, keyword))
        return false;
    const char *p = arg + klen, *end = arg + len;
    while (p < end && is_space(*p))
        p++;
    if (p >= end)
        return false;
    memset(out, 0, sizeof(*out));
    const char *q;
    if (*p == '<') {
        p++;
        bool route = p < end && *p == '@';
        if (route) {
            p = scan_route(p, end);
            if (!p)
                return false;
        }
        if (p < end && *p == '>' && !route) {
            out->null_path = true;
            out->addr = p;
            q = p;
        } else {
            q = scan_mailbox(p, end);
            if (!q || q >= end || *q != '>')
                return false;
            out->addr = p;
        }
        out->addr_len = (size_t)(q - p);
        q++; /* '>' */
    } else {
        q = scan_mailbox(p, end);
        if (!q)
            return false;
        out->addr = p;
        out->addr_len = (size_t)(q - p);
    }
    if (q < end && !is_space(*q))
        return false;
    for (size_t i = 0; i < out->addr_len; i++)
        if ((unsigned char)out->addr[i] >= 0x80)
            out->non_ascii = true;
    while (q < end && is_space(*q))
        q++;
    out->params = q;
    out->params_len = (size_t)(end - q);
    return true;
}

bool cmd_is_http_request(const char *line, size_t len)
{
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    const char *sp = memchr(line, ' ', len);
    if (!sp)
        return false;
    size_t mlen = (size_t)(sp - line);
    bool method = false;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        method |= strlen(methods[i]) == mlen && memcmp(line, methods[i], mlen) == 0;
    /* "METHOD SP request-target SP HTTP/1.x" (RFC 9112 3) */
    const char *target = sp + 1, *end = line + len;
    const char *sp2 = memchr(target, ' ', (size_t)(end - target));
    static const char version[] = "HTTP/1.";
    return method && sp2 && sp2 > target && (size_t)(end - sp2) == sizeof(version) + 1 &&
           memcmp(sp2 + 1, version, sizeof(version) - 1) == 0 && end[-1] >= '0' && end[-1] <= '9';
}

enum param_result cmd_next_param(const char **pp, const char *end, struct esmtp_param *out)
{
    const char *p = *pp;
    while (p < end && is_space(*p))
        p++;
    if (p >= end) {
        *pp = p;
        return PARAM_END;
    }
    /* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
    out->key = p;
    if (!is_alnum((unsigned char)*p))
        return PARAM_SYNTAX;
    while (p < end && (is_alnum((unsigned char)*p) || *p == '-'))
        p++;
    out->key_len = (size_t)(p - out->key);
    out->value = NULL;
    out->value_len = 0;
    if (p < end && *p == '=') {
        /* esmtp-value = 1*(%d33-60 / %d62-126), or UTF-8 (RFC 6531) */
        out->value = ++p;
        while (p < end && *p != '=' && ((unsigned char)*p > 0x20 && *p != 0x7f))
            p++;
        out->value_len = (size_t)(p - out->value);
        if (out->value_len == 0)
            return PARAM_SYNTAX;
    }
    if (p < end && !is_space(*p))
        return PARAM_SYNTAX;
    *pp = p;
    return PARAM_OK;
}

enum bdat_syntax cmd_parse_bdat(const char *arg, size_t len, uint64_t *size, bool *last)
{
    size_t i = 0;
    uint64_t n = 0;
    for (; i < len && arg[i] >= '0' && arg[i] <= '9'; i++) {
        unsigned d = (unsigned)(arg[i] - '0');
        if (n > (UINT64_MAX - d) / 10)
            return BDAT_BAD_SIZE;
        n = n * 10 + d;
    }
    if (i == 0 || (i < len && arg[i] != ' '))
        return BDAT_BAD_SIZE;
    *size = n;
    *last = false;
    if (i == len)
        return BDAT_OK;
    if (!slice_ieq(arg + i + 1, len - i - 1, "LAST"))
        return BDAT_BAD_END;
    *last = true;
    return BDAT_OK;
}
