/*
 * fuzz_proxy: the PROXY protocol header parser (proxy.c), v1 and v2.
 *
 * Input: the bytes a connection begins with. Invariants:
 *  - the result is PROXY_MORE, PROXY_BAD or a length within the input, at
 *    most PROXY_V1_MAX (v1) or PROXY_V2_MAX (v2);
 *  - a parsed header's addresses are NUL-terminated numeric addresses
 *    (inet_pton takes them back), of one family;
 *  - the bytes after the header do not matter: the header alone parses to
 *    the same length and fields, and every shorter prefix asks for more;
 *  - a refusal is final: once a prefix is PROXY_BAD, so is the whole input.
 */
#include "fuzz.h"
#include "proxy.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

static int family_of(const char *a)
{
    unsigned char bin[16];
    if (memchr(a, '\0', 46) == NULL)
        return -1;
    if (inet_pton(AF_INET, a, bin) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, a, bin) == 1)
        return AF_INET6;
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_header h;
    int r = proxy_parse(data, size, &h);
    FUZZ_CHECK(r == PROXY_MORE || r == PROXY_BAD || (r > 0 && (size_t)r <= size));
    for (size_t n = 0; n < size; n += 1 + n / 4) {
        struct proxy_header p;
        int rp = proxy_parse(data, n, &p);
        if (rp == PROXY_BAD)
            FUZZ_CHECK(r == PROXY_BAD);
        if (r > 0 && n < (size_t)r)
            FUZZ_CHECK(rp == PROXY_MORE);
    }
    if (r <= 0)
        return 0;
    FUZZ_CHECK(h.version == 1 || h.version == 2);
    FUZZ_CHECK((size_t)r <= (h.version == 1 ? PROXY_V1_MAX : PROXY_V2_MAX));
    if (!h.local) {
        int f = family_of(h.src_addr);
        FUZZ_CHECK(f != -1 && f == family_of(h.dst_addr));
    }
    struct proxy_header again;
    FUZZ_CHECK(proxy_parse(data, (size_t)r, &again) == r);
    FUZZ_CHECK(again.version == h.version && again.local == h.local);
    if (!h.local)
        FUZZ_CHECK(strcmp(again.src_addr, h.src_addr) == 0 &&
                   strcmp(again.dst_addr, h.dst_addr) == 0 && again.src_port == h.src_port &&
                   again.dst_port == h.dst_port);
    return 0;
}
