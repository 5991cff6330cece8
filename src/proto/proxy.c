/* PROXY protocol headers, versions 1 and 2; see proxy.h. */
#include "proxy.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <string.h>

static const char v1_sig[] = "PROXY ";
#define V1_SIG_LEN (sizeof(v1_sig) - 1)
static const unsigned char v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* A port: 1 to 5 digits, no leading zero, at most 65535. */
static bool v1_port(const char *s, size_t n, uint16_t *port)
{
    if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* A numeric address of @p family, copied into @p out (46 bytes) as given:
 * inet_pton takes only the canonical forms (no leading zeros in IPv4). */
static bool v1_addr(int family, const char *s, size_t n, char *out)
{
    unsigned char bin[16];
    if (n == 0 || n >= 46)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return inet_pton(family, out, bin) == 1;
}

/* The next field of @p line up to a space (or the end), advancing *pos past it. */
static size_t v1_field(const char *line, size_t len, size_t *pos, const char **start)
{
    *start = line + *pos;
    size_t n = 0;
    while (*pos + n < len && line[*pos + n] != ' ')
        n++;
    *pos += n;
    return n;
}

/* "PROXY TCP4|TCP6 src dst sport dport" or "PROXY UNKNOWN[ anything]",
 * @p len bytes without the CRLF (spec 2.1: single spaces). */
static bool v1_line(const char *line, size_t len, struct proxy_header *h)
{
    size_t pos = V1_SIG_LEN;
    const char *f;
    size_t n = v1_field(line, len, &pos, &f);
    memset(h, 0, sizeof(*h));
    h->version = 1;
    if (n == 7 && memcmp(f, "UNKNOWN", 7) == 0) {
        h->local = true; /* the rest of the line is ignored */
        return true;
    }
    int family;
    if (n == 4 && memcmp(f, "TCP4", 4) == 0)
        family = AF_INET;
    else if (n == 4 && memcmp(f, "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return false;
    const char *fields[4];
    size_t lens[4];
    for (int i = 0; i < 4; i++) {
        if (pos >= len || line[pos] != ' ')
            return false;
        pos++;
        lens[i] = v1_field(line, len, &pos, &fields[i]);
    }
    return pos == len && v1_addr(family, fields[0], lens[0], h->src_addr) &&
           v1_addr(family, fields[1], lens[1], h->dst_addr) &&
           v1_port(fields[2], lens[2], &h->src_port) && v1_port(fields[3], lens[3], &h->dst_port);
}

static int parse_v1(const unsigned char *buf, size_t len, struct proxy_header *out)
{
    /* The CR is at most at PROXY_V1_MAX - 2, so that the line with its CRLF
     * is at most PROXY_V1_MAX bytes. */
    size_t limit = min_size(len, PROXY_V1_MAX - 1);
    for (size_t i = V1_SIG_LEN; i < limit; i++) {
        if (buf[i] != '\r') {
            if (buf[i] < 0x20 || buf[i] > 0x7e)
                return PROXY_BAD; /* a bare LF, a NUL: the line is printable ASCII */
            continue;
        }
        if (i + 1 >= len)
            return PROXY_MORE;
        if (buf[i + 1] != '\n')
            return PROXY_BAD;
        struct proxy_header h;
        if (!v1_line((const char *)buf, i, &h))
            return PROXY_BAD;
        *out = h;
        return (int)(i + 2);
    }
    return len >= PROXY_V1_MAX - 1 ? PROXY_BAD : PROXY_MORE;
}

static uint16_t be16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* Spec 2.2: 12 bytes signature, version and command, family and transport,
 * length of what follows (network order), then the address block and TLVs. */
static int parse_v2(const unsigned char *buf, size_t len, struct proxy_header *out)
{
    if (len < 16)
        return PROXY_MORE;
    unsigned version = buf[12] >> 4, command = buf[12] & 0x0f;
    if (version != 2 || command > 1)
        return PROXY_BAD;
    size_t total = 16 + (size_t)be16(buf + 14);
    if (total > PROXY_V2_MAX)
        return PROXY_BAD;
    struct proxy_header h;
    memset(&h, 0, sizeof(h));
    h.version = 2;
    /* TCP over IPv4 (0x11) or IPv6 (0x21): source and destination
     * addresses, then their ports; anything else (LOCAL, another family or
     * transport) keeps the connection's own. */
    unsigned fam = command == 0 ? 0 : buf[13];
    int af = fam == 0x11 ? AF_INET : fam == 0x21 ? AF_INET6 : AF_UNSPEC;
    size_t n = af == AF_INET ? 4 : 16; /* bytes of one address */
    if (af != AF_UNSPEC && total - 16 < 2 * n + 4)
        return PROXY_BAD;
    if (len < total)
        return PROXY_MORE;
    const unsigned char *a = buf + 16;
    if (af == AF_UNSPEC) {
        h.local = true;
    } else {
        inet_ntop(af, a, h.src_addr, sizeof(h.src_addr));
        inet_ntop(af, a + n, h.dst_addr, sizeof(h.dst_addr));
        h.src_port = be16(a + 2 * n);
        h.dst_port = be16(a + 2 * n + 2);
    }
    *out = h;
    return (int)total;
}

int proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *out)
{
    if (len > 0 && memcmp(buf, v1_sig, min_size(len, V1_SIG_LEN)) == 0)
        return len < V1_SIG_LEN ? PROXY_MORE : parse_v1(buf, len, out);
    if (len > 0 && memcmp(buf, v2_sig, min_size(len, sizeof(v2_sig))) == 0)
        return len < sizeof(v2_sig) ? PROXY_MORE : parse_v2(buf, len, out);
    return len == 0 ? PROXY_MORE : PROXY_BAD;
}
