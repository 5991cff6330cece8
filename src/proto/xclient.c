/* XCLIENT attributes; see xclient.h. */
#include "xclient.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* xtext (RFC 3461 4) into @p out (@p outsz bytes, NUL-terminated); the
 * result must be printable ASCII without spaces. */
static bool xtext_decode(const char *in, size_t len, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];
        if (c == '+') {
            int hi = i + 2 < len ? hexval(in[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(in[i + 2]) : -1;
            if (lo < 0)
                return false;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '=' || c < 33 || c > 126) {
            return false;
        }
        if (c < 33 || c > 126 || o + 1 >= outsz)
            return false;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return true;
}

static bool port_of(const char *v, uint16_t *port)
{
    size_t n = strlen(v);
    if (n == 0 || n > 5)
        return false;
    unsigned long p = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        p = p * 10 + (unsigned long)(v[i] - '0');
    }
    if (p > 65535)
        return false;
    *port = (uint16_t)p;
    return true;
}

/* IPv4, or "IPV6:" and IPv6 (Postfix's form), into @p out (46 bytes). */
static bool addr_of(const char *v, char *out)
{
    unsigned char bin[16];
    if (strncasecmp(v, "IPV6:", 5) == 0) {
        if (inet_pton(AF_INET6, v + 5, bin) != 1)
            return false;
        inet_ntop(AF_INET6, bin, out, 46);
        return true;
    }
    if (inet_pton(AF_INET, v, bin) != 1)
        return false;
    inet_ntop(AF_INET, bin, out, 46);
    return true;
}

static bool unknown(const char *v)
{
    return strcasecmp(v, "[UNAVAILABLE]") == 0 || strcasecmp(v, "[TEMPUNAVAIL]") == 0;
}

/* One "NAME=value" (@p len bytes) into @p a. */
static bool attribute(const char *p, size_t len, struct xclient_attrs *a, char *why, size_t whysz)
{
    const char *eq = memchr(p, '=', len);
    size_t nlen = eq ? (size_t)(eq - p) : len;
    char name[16] = "";
    if (nlen < sizeof(name)) {
        memcpy(name, p, nlen);
        name[nlen] = '\0';
    }
    bool letters = nlen > 0;
    for (size_t i = 0; i < nlen && letters; i++)
        letters = (p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z');
    char v[XCLIENT_VALUE_MAX + 1];
    /* The name goes into the 501 reply: letters only. */
    if (!eq || !letters || nlen >= sizeof(name)) {
        snprintf(why, whysz, "Bad XCLIENT attribute syntax");
        return false;
    }
    if (!xtext_decode(eq + 1, len - nlen - 1, v, sizeof(v))) {
        snprintf(why, whysz, "Bad XCLIENT %s value", name);
        return false;
    }
    bool unk = unknown(v);
    enum xclient_has has = unk ? XCLIENT_UNKNOWN : XCLIENT_SET;
    bool ok = true;
    if (strcasecmp(name, "ADDR") == 0) {
        a->addr = has;
        ok = unk || addr_of(v, a->addr_value);
    } else if (strcasecmp(name, "PORT") == 0) {
        a->port = has;
        ok = unk || port_of(v, &a->port_value);
    } else if (strcasecmp(name, "PROTO") == 0) {
        a->proto = has;
        a->esmtp = strcasecmp(v, "ESMTP") == 0;
        ok = unk || a->esmtp || strcasecmp(v, "SMTP") == 0;
    } else if (strcasecmp(name, "NAME") == 0 || strcasecmp(name, "HELO") == 0 ||
               strcasecmp(name, "LOGIN") == 0) {
        bool is_name = strcasecmp(name, "NAME") == 0, is_helo = strcasecmp(name, "HELO") == 0;
        enum xclient_has *field = is_name ? &a->name : is_helo ? &a->helo : &a->login;
        char *value = is_name ? a->name_value : is_helo ? a->helo_value : a->login_value;
        *field = has;
        snprintf(value, XCLIENT_VALUE_MAX + 1, "%s", unk ? "" : v);
    } else if (strcasecmp(name, "DESTADDR") == 0) {
        char ignored[46];
        ok = unk || addr_of(v, ignored);
    } else if (strcasecmp(name, "DESTPORT") == 0) {
        uint16_t ignored;
        ok = unk || port_of(v, &ignored);
    } else {
        snprintf(why, whysz, "Bad XCLIENT attribute name: %s", name);
        return false;
    }
    if (!ok)
        snprintf(why, whysz, "Bad XCLIENT %s syntax: %s", name, v);
    return ok;
}

bool xclient_parse(const char *arg, size_t len, struct xclient_attrs *out, char *why, size_t whysz)
{
    struct xclient_attrs a;
    memset(&a, 0, sizeof(a));
    size_t i = 0, seen = 0;
    while (i < len) {
        while (i < len && arg[i] == ' ')
            i++;
        size_t start = i;
        while (i < len && arg[i] != ' ')
            i++;
        if (i == start)
            break;
        if (!attribute(arg + start, i - start, &a, why, whysz))
            return false;
        seen++;
    }
    if (seen == 0) {
        snprintf(why, whysz, "Syntax: XCLIENT attribute=value...");
        return false;
    }
    *out = a;
    return true;
}
