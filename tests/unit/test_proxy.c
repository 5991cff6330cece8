/*
 * Unit tests of the PROXY protocol parser (src/proto/proxy.c): version 1
 * lines and version 2 headers as HAProxy's specification (sections 2.1,
 * 2.2) defines them, every prefix of a valid header, and the bad ones.
 */
#include "unit_util.h"

#include "proxy.h"

#define V2_SIG "\r\n\r\n\0\r\nQUIT\n"

struct proxy_case {
    const char *name;
    const char *in;
    size_t in_len;
    int result; /* the header's length, or PROXY_MORE / PROXY_BAD */
    int version;
    bool local;
    const char *src, *dst;
    uint16_t sport, dport;
};

#define IN(s) .in = (s), .in_len = sizeof(s) - 1

static const struct proxy_case cases[] = {
    /* version 1 */
    {"v1 tcp4", IN("PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\nEHLO x\r\n"), 45, 1, false,
     "192.0.2.10", "198.51.100.1", 56324, 25},
    {"v1 tcp6", IN("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n"), 36, 1, false, "2001:db8::1", "::1",
     65535, 0},
    {"v1 unknown", IN("PROXY UNKNOWN\r\n"), 15, 1, true, "", "", 0, 0},
    {"v1 unknown with addresses", IN("PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n"), 35, 1, true, "", "",
     0, 0},
    {"v1 longest",
     IN("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
     104, 1, false, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535},
    {"v1 107 bytes",
     IN("PROXY UNKNOWN "
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "x\r\n"),
     107, 1, true, "", "", 0, 0},
    {"v1 108 bytes",
     IN("PROXY UNKNOWN "
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xx\r\n"),
     PROXY_BAD},
    {"v1 incomplete", IN("PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r"), PROXY_MORE},
    {"v1 bare LF", IN("PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\n"), PROXY_BAD},
    {"v1 CR without LF", IN("PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\rX"), PROXY_BAD},
    {"v1 lower case", IN("proxy TCP4 192.0.2.10 198.51.100.1 1 2\r\n"), PROXY_BAD},
    {"v1 tcp4 with v6", IN("PROXY TCP4 ::1 ::1 1 2\r\n"), PROXY_BAD},
    {"v1 tcp6 with v4", IN("PROXY TCP6 192.0.2.1 192.0.2.2 1 2\r\n"), PROXY_BAD},
    {"v1 leading zero address", IN("PROXY TCP4 192.0.2.010 192.0.2.2 1 2\r\n"), PROXY_BAD},
    {"v1 name not address", IN("PROXY TCP4 localhost 192.0.2.2 1 2\r\n"), PROXY_BAD},
    {"v1 port too big", IN("PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n"), PROXY_BAD},
    {"v1 port leading zero", IN("PROXY TCP4 192.0.2.1 192.0.2.2 025 2\r\n"), PROXY_BAD},
    {"v1 port sign", IN("PROXY TCP4 192.0.2.1 192.0.2.2 -1 2\r\n"), PROXY_BAD},
    {"v1 missing port", IN("PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n"), PROXY_BAD},
    {"v1 extra field", IN("PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n"), PROXY_BAD},
    {"v1 double space", IN("PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n"), PROXY_BAD},
    {"v1 trailing space", IN("PROXY TCP4 192.0.2.1 192.0.2.2 1 2 \r\n"), PROXY_BAD},
    {"v1 other protocol", IN("PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n"), PROXY_BAD},
    {"v1 no protocol", IN("PROXY \r\n"), PROXY_BAD},
    {"v1 NUL inside", IN("PROXY TCP4 192.0.2.1\0 192.0.2.2 1 2\r\n"), PROXY_BAD},
    {"v1 over 107 bytes",
     IN("PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"),
     PROXY_BAD},
    {"v1 107 bytes without end",
     IN("PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
     PROXY_BAD},
    /* version 2: TCP over IPv4, 192.0.2.10:56324 -> 198.51.100.1:25 */
    {"v2 tcp4",
     IN(V2_SIG "\x21\x11\x00\x0c\xc0\x00\x02\x0a\xc6\x33\x64\x01\xdc\x04\x00\x19"
               "EHLO"),
     28, 2, false, "192.0.2.10", "198.51.100.1", 56324, 25},
    {"v2 tcp4 with TLVs",
     IN(V2_SIG "\x21\x11\x00\x14\xc0\x00\x02\x0a\xc6\x33\x64\x01\xdc\x04\x00"
               "\x19\x01\x00\x02h2\x04\x00\x00"),
     36, 2, false, "192.0.2.10", "198.51.100.1", 56324, 25},
    {"v2 tcp6",
     IN(V2_SIG "\x21\x21\x00\x24"
               "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
               "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
               "\x01\xbb\x00\x19"),
     52, 2, false, "2001:db8::1", "::1", 443, 25},
    {"v2 local", IN(V2_SIG "\x20\x00\x00\x00"), 16, 2, true, "", "", 0, 0},
    {"v2 local with addresses",
     IN(V2_SIG "\x20\x11\x00\x0c\xc0\x00\x02\x0a\xc6\x33\x64\x01\xdc"
               "\x04\x00\x19"),
     28, 2, true, "", "", 0, 0},
    {"v2 unix",
     IN(V2_SIG "\x21\x31\x00\x04"
               "abcd"),
     20, 2, true, "", "", 0, 0},
    {"v2 udp4", IN(V2_SIG "\x21\x12\x00\x0c\xc0\x00\x02\x0a\xc6\x33\x64\x01\xdc\x04\x00\x19"), 28,
     2, true, "", "", 0, 0},
    {"v2 unspec", IN(V2_SIG "\x21\x00\x00\x00"), 16, 2, true, "", "", 0, 0},
    {"v2 incomplete address", IN(V2_SIG "\x21\x11\x00\x0c\xc0\x00\x02\x0a\xc6"), PROXY_MORE},
    {"v2 incomplete TLVs",
     IN(V2_SIG "\x21\x11\x00\x14\xc0\x00\x02\x0a\xc6\x33\x64\x01\xdc\x04\x00"
               "\x19\x01\x00"),
     PROXY_MORE},
    {"v2 version 1", IN(V2_SIG "\x11\x11\x00\x0c"), PROXY_BAD},
    {"v2 version 3", IN(V2_SIG "\x31\x11\x00\x0c"), PROXY_BAD},
    {"v2 command 2", IN(V2_SIG "\x22\x11\x00\x0c"), PROXY_BAD},
    {"v2 tcp4 too short", IN(V2_SIG "\x21\x11\x00\x0b\xc0\x00\x02\x0a\xc6\x33\x64\x01\xdc\x04\x00"),
     PROXY_BAD},
    {"v2 tcp6 too short",
     IN(V2_SIG "\x21\x21\x00\x0c\xc0\x00\x02\x0a\xc6\x33\x64\x01\xdc\x04\x00"
               "\x19"),
     PROXY_BAD},
    {"v2 oversized", IN(V2_SIG "\x21\x11\xff\xff"), PROXY_BAD},
    {"v2 bad signature", IN("\r\n\r\n\0\r\nQUIT\r\x21\x11\x00\x0c"), PROXY_BAD},
    /* neither */
    {"SMTP at once", IN("EHLO client.example\r\n"), PROXY_BAD},
    {"empty", IN(""), PROXY_MORE},
    {"v1 prefix", IN("PRO"), PROXY_MORE},
    {"v2 prefix", IN("\r\n\r"), PROXY_MORE},
    {"CRLF then text", IN("\r\nEHLO"), PROXY_BAD},
};

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(cases); i++) {
        const struct proxy_case *c = &cases[i];
        struct proxy_header h;
        memset(&h, 0x5a, sizeof(h));
        int r = proxy_parse((const unsigned char *)c->in, c->in_len, &h);
        if (r != c->result) {
            print_error("%s: expected %d, got %d\n", c->name, c->result, r);
            fail();
        }
        if (r <= 0)
            continue;
        unit_assert(c->name, h.version == c->version);
        unit_assert(c->name, h.local == c->local);
        if (c->local)
            continue;
        unit_check_str(c->name, h.src_addr, strlen(h.src_addr), c->src);
        unit_check_str(c->name, h.dst_addr, strlen(h.dst_addr), c->dst);
        unit_assert(c->name, h.src_port == c->sport);
        unit_assert(c->name, h.dst_port == c->dport);
    }
}

/* Every proper prefix of a valid header asks for more, whatever the
 * byte at the cut would have been: a header may arrive a byte at a time. */
static void test_prefixes_ask_for_more(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(cases); i++) {
        const struct proxy_case *c = &cases[i];
        if (c->result <= 0)
            continue;
        for (size_t n = 0; n < (size_t)c->result; n++) {
            struct proxy_header h;
            int r = proxy_parse((const unsigned char *)c->in, n, &h);
            if (r != PROXY_MORE) {
                print_error("%s: %zu of %d bytes gave %d\n", c->name, n, c->result, r);
                fail();
            }
        }
    }
}

/* On failure and while incomplete, the output is left alone. */
static void test_output_untouched(void **state)
{
    (void)state;
    struct proxy_header h, before;
    memset(&h, 0x5a, sizeof(h));
    before = h;
    assert_int_equal(proxy_parse((const unsigned char *)"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", 30, &h),
                     PROXY_MORE);
    assert_int_equal(proxy_parse((const unsigned char *)"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 30, &h),
                     PROXY_BAD);
    assert_memory_equal(&h, &before, sizeof(h));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_prefixes_ask_for_more),
        cmocka_unit_test(test_output_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
