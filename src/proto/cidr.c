/* Address ranges; see cidr.h. */
#include "cidr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static bool parse_one(const char *s, size_t len, struct cidr *c)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, buf, c->addr) == 1) {
        c->family = AF_INET;
        c->prefix = 32;
    } else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
        c->family = AF_INET6;
        c->prefix = 128;
    } else {
        return false;
    }
    if (slash) {
        char *end;
        const char *p = slash + 1;
        if (*p < '0' || *p > '9')
            return false;
        unsigned long bits = strtoul(p, &end, 10);
        if (*end || bits > c->prefix)
            return false;
        c->prefix = (unsigned)bits;
    }
    return true;
}

int cidr_parse_list(const char *list, struct cidr *out, size_t cap)
{
    size_t n = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (n >= cap || !parse_one(p, len, &out[n]))
            return -1;
        n++;
        if (!comma)
            return (int)n;
        p = comma + 1;
    }
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

bool cidr_match(const struct cidr *nets, size_t n, const char *addr)
{
    uint8_t a4[4], a6[16];
    bool v4 = inet_pton(AF_INET, addr, a4) == 1;
    bool v6 = !v4 && inet_pton(AF_INET6, addr, a6) == 1;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (v6 && memcmp(a6, mapped, 12) == 0) {
        /* An IPv4 client on an IPv6 socket is judged as IPv4. */
        memcpy(a4, a6 + 12, 4);
        v4 = true;
    }
    for (size_t i = 0; i < n; i++) {
        if (nets[i].family == AF_INET && v4 && prefix_equal(nets[i].addr, a4, nets[i].prefix))
            return true;
        if (nets[i].family == AF_INET6 && v6 && prefix_equal(nets[i].addr, a6, nets[i].prefix))
            return true;
    }
    return false;
}
