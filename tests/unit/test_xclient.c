/*
 * Unit tests of the XCLIENT attribute parser (src/proto/xclient.c), as
 * Postfix's XCLIENT_README defines the command: names in any case, xtext
 * values (RFC 3461 4), [UNAVAILABLE] and [TEMPUNAVAIL], IPv4 and "IPV6:"
 * addresses, ports, PROTO, and every way to get one wrong.
 */
#include "unit_util.h"

#include "xclient.h"

struct ok_case {
    const char *arg;
    enum xclient_has addr, port, name, helo, proto, login;
    const char *addr_value;
    uint16_t port_value;
    const char *name_value, *helo_value, *login_value;
    bool esmtp;
};

static const struct ok_case ok_cases[] = {
    {"ADDR=192.0.2.7", XCLIENT_SET, 0, 0, 0, 0, 0, "192.0.2.7", 0, "", "", "", false},
    {"addr=IPV6:2001:db8::1 port=25", XCLIENT_SET, XCLIENT_SET, 0, 0, 0, 0, "2001:db8::1", 25, "",
     "", "", false},
    {"ADDR=ipv6:2001:DB8:0:0:0:0:0:1", XCLIENT_SET, 0, 0, 0, 0, 0, "2001:db8::1", 0, "", "", "",
     false},
    {"NAME=client.example HELO=helo+2Eexample LOGIN=alice+40example.org PROTO=ESMTP", 0, 0,
     XCLIENT_SET, XCLIENT_SET, XCLIENT_SET, XCLIENT_SET, "", 0, "client.example", "helo.example",
     "alice@example.org", true},
    {"PROTO=smtp", 0, 0, 0, 0, XCLIENT_SET, 0, "", 0, "", "", "", false},
    {"NAME=[UNAVAILABLE] ADDR=[TEMPUNAVAIL] PORT=[unavailable] LOGIN=[UNAVAILABLE]",
     XCLIENT_UNKNOWN, XCLIENT_UNKNOWN, XCLIENT_UNKNOWN, 0, 0, XCLIENT_UNKNOWN, "", 0, "", "", "",
     false},
    {"  ADDR=192.0.2.8   PORT=65535  ", XCLIENT_SET, XCLIENT_SET, 0, 0, 0, 0, "192.0.2.8", 65535,
     "", "", "", false},
    {"DESTADDR=198.51.100.1 DESTPORT=587", 0, 0, 0, 0, 0, 0, "", 0, "", "", "", false},
    {"ADDR=192.0.2.1 ADDR=192.0.2.2", XCLIENT_SET, 0, 0, 0, 0, 0, "192.0.2.2", 0, "", "", "",
     false},
    {"HELO=+5Bbracketed+5D", 0, 0, 0, XCLIENT_SET, 0, 0, "", 0, "", "[bracketed]", "", false},
};

static void test_ok(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(ok_cases); i++) {
        const struct ok_case *c = &ok_cases[i];
        struct xclient_attrs a;
        char why[200] = "";
        bool ok = xclient_parse(c->arg, strlen(c->arg), &a, why, sizeof(why));
        if (!ok) {
            print_error("%s: refused: %s\n", c->arg, why);
            fail();
        }
        unit_assert(c->arg, a.addr == c->addr && a.port == c->port && a.name == c->name);
        unit_assert(c->arg, a.helo == c->helo && a.proto == c->proto && a.login == c->login);
        if (a.addr == XCLIENT_SET)
            unit_check_str(c->arg, a.addr_value, strlen(a.addr_value), c->addr_value);
        if (a.port == XCLIENT_SET)
            unit_assert(c->arg, a.port_value == c->port_value);
        if (a.name == XCLIENT_SET)
            unit_check_str(c->arg, a.name_value, strlen(a.name_value), c->name_value);
        if (a.helo == XCLIENT_SET)
            unit_check_str(c->arg, a.helo_value, strlen(a.helo_value), c->helo_value);
        if (a.login == XCLIENT_SET)
            unit_check_str(c->arg, a.login_value, strlen(a.login_value), c->login_value);
        if (a.proto == XCLIENT_SET)
            unit_assert(c->arg, a.esmtp == c->esmtp);
    }
}

struct bad_case {
    const char *arg;
    const char *why;
};

static const struct bad_case bad_cases[] = {
    {"", "Syntax: XCLIENT attribute=value..."},
    {"   ", "Syntax: XCLIENT attribute=value..."},
    {"FOO=bar", "Bad XCLIENT attribute name: FOO"},
    {"ADDR", "Bad XCLIENT attribute syntax"},
    {"=192.0.2.1", "Bad XCLIENT attribute syntax"},
    {"AD\x01DR=192.0.2.1", "Bad XCLIENT attribute syntax"},
    {"AVERYLONGATTRIBUTENAME=x", "Bad XCLIENT attribute syntax"},
    {"ADDR=300.0.0.1", "Bad XCLIENT ADDR syntax: 300.0.0.1"},
    {"ADDR=2001:db8::1", "Bad XCLIENT ADDR syntax: 2001:db8::1"},
    {"ADDR=IPV6:192.0.2.1", "Bad XCLIENT ADDR syntax: IPV6:192.0.2.1"},
    {"ADDR=localhost", "Bad XCLIENT ADDR syntax: localhost"},
    {"PORT=65536", "Bad XCLIENT PORT syntax: 65536"},
    {"PORT=-1", "Bad XCLIENT PORT syntax: -1"},
    {"PORT=", "Bad XCLIENT PORT syntax: "},
    {"PROTO=LMTP", "Bad XCLIENT PROTO syntax: LMTP"},
    {"HELO=a+2", "Bad XCLIENT HELO value"},
    {"HELO=a+ZZb", "Bad XCLIENT HELO value"},
    {"HELO=a+20b", "Bad XCLIENT HELO value"}, /* a space, decoded */
    {"HELO=a+0Db", "Bad XCLIENT HELO value"}, /* CR */
    {"HELO=a+00b", "Bad XCLIENT HELO value"}, /* NUL */
    {"HELO=a=b", "Bad XCLIENT HELO value"},
    {"HELO=caf\xc3\xa9", "Bad XCLIENT HELO value"},
    {"ADDR=192.0.2.1 BOGUS=1", "Bad XCLIENT attribute name: BOGUS"},
};

static void test_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(bad_cases); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct xclient_attrs a;
        memset(&a, 0x5a, sizeof(a));
        struct xclient_attrs before = a;
        char why[200] = "";
        unit_assert(c->arg, !xclient_parse(c->arg, strlen(c->arg), &a, why, sizeof(why)));
        unit_check_str(c->arg, why, strlen(why), c->why);
        unit_assert(c->arg, memcmp(&a, &before, sizeof(a)) == 0);
    }
}

/* A value of XCLIENT_VALUE_MAX bytes is kept; one more is refused. */
static void test_value_length(void **state)
{
    (void)state;
    char arg[600];
    struct xclient_attrs a;
    char why[200];
    int n = snprintf(arg, sizeof(arg), "HELO=%0*d", XCLIENT_VALUE_MAX, 0);
    assert_true(xclient_parse(arg, (size_t)n, &a, why, sizeof(why)));
    assert_int_equal(strlen(a.helo_value), XCLIENT_VALUE_MAX);
    n = snprintf(arg, sizeof(arg), "HELO=%0*d", XCLIENT_VALUE_MAX + 1, 0);
    assert_false(xclient_parse(arg, (size_t)n, &a, why, sizeof(why)));
    /* Only the given length is read. */
    assert_true(xclient_parse("ADDR=192.0.2.1 FOO=x", 14, &a, why, sizeof(why)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_value_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
