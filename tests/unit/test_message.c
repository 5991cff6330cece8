/*
 * Unit tests of smtpd_insert_x_peer (src/proto/message.c): where the X-Peer line
 * goes, as smtpd's DebuggingServer and PureProxy put it.
 */
#include "unit_util.h"

#include "smtpd.h"

#define WANT(s) .want = (s), .want_len = sizeof(s) - 1

struct xpeer_case {
    const char *name;
    const char *in;
    size_t in_len;
    const char *peer;
    const char *want;
    size_t want_len;
};

static const struct xpeer_case cases[] = {
    {.name = "before the first empty line",
     BYTES("Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n"),
     .peer = "192.0.2.1",
     WANT("Subject: hi\r\nFrom: a@b\r\nX-Peer: 192.0.2.1\r\n\r\nbody\r\n")},
    {.name = "only the first empty line counts",
     BYTES("A: 1\r\n\r\nB\r\n\r\nC\r\n"),
     .peer = "192.0.2.1",
     WANT("A: 1\r\nX-Peer: 192.0.2.1\r\n\r\nB\r\n\r\nC\r\n")},
    {.name = "no empty line: at the end",
     BYTES("Subject: hi\r\nFrom: a@b\r\n"),
     .peer = "192.0.2.1",
     WANT("Subject: hi\r\nFrom: a@b\r\nX-Peer: 192.0.2.1\r\n")},
    {.name = "data starts with an empty line: first",
     BYTES("\r\nbody\r\n"),
     .peer = "192.0.2.1",
     WANT("X-Peer: 192.0.2.1\r\n\r\nbody\r\n")},
    {.name = "empty data", BYTES(""), .peer = "192.0.2.1", WANT("X-Peer: 192.0.2.1\r\n")},
    {.name = "last line has no line end",
     BYTES("Subject: hi"),
     .peer = "192.0.2.1",
     WANT("Subject: hi\r\nX-Peer: 192.0.2.1\r\n")},
    {.name = "two lines, the last without line end",
     BYTES("A: 1\r\nB: 2"),
     .peer = "192.0.2.1",
     WANT("A: 1\r\nB: 2\r\nX-Peer: 192.0.2.1\r\n")},
    {.name = "IPv6 peer",
     BYTES("Subject: hi\r\n\r\nx"),
     .peer = "2001:db8::1",
     WANT("Subject: hi\r\nX-Peer: 2001:db8::1\r\n\r\nx")},
    {.name = "NUL bytes kept",
     BYTES("A: \0x\r\n\r\nb\0dy"),
     .peer = "127.0.0.1",
     WANT("A: \0x\r\nX-Peer: 127.0.0.1\r\n\r\nb\0dy")},
    {.name = "header with a CR inside is not an empty line",
     BYTES("A: x\r\n\rB\r\n\r\nbody"),
     .peer = "127.0.0.1",
     WANT("A: x\r\n\rB\r\nX-Peer: 127.0.0.1\r\n\r\nbody")},
    {.name = "dot lines in the body are untouched",
     BYTES("A: 1\r\n\r\n.\r\n..\r\n"),
     .peer = "127.0.0.1",
     WANT("A: 1\r\nX-Peer: 127.0.0.1\r\n\r\n.\r\n..\r\n")},
};

static void test_x_peer_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ROWS(cases); i++) {
        const struct xpeer_case *c = &cases[i];
        size_t out_len = 12345;
        char *out = smtpd_insert_x_peer(c->in, c->in_len, c->peer, &out_len);
        unit_assert(c->name, out != NULL);
        unit_check_bytes(c->name, out, out_len, c->want, c->want_len);
        free(out);
    }
}

/* A big message: the result is the data with one line added, and the input
 * is left as it was. */
static void test_x_peer_big(void **state)
{
    (void)state;
    size_t body = 1 << 20;
    const char *head = "Subject: big\r\n\r\n";
    size_t hl = strlen(head);
    char *in = malloc(hl + body);
    assert_non_null(in);
    memcpy(in, head, hl);
    memset(in + hl, 'b', body);
    size_t out_len;
    char *out = smtpd_insert_x_peer(in, hl + body, "198.51.100.7", &out_len);
    assert_non_null(out);
    const char *line = "X-Peer: 198.51.100.7\r\n";
    assert_int_equal(out_len, hl + body + strlen(line));
    assert_memory_equal(out, "Subject: big\r\n", 14);
    assert_memory_equal(out + 14, line, strlen(line));
    assert_memory_equal(out + 14 + strlen(line), "\r\n", 2);
    assert_memory_equal(out + hl + strlen(line), in + hl, body);
    assert_memory_equal(in, head, hl);
    free(out);
    free(in);
}

/* smtpd_insert_x_peer is public: a long peer_addr (e.g. a host name a
 * handler passes) must still give one whole "X-Peer: <addr>" CRLF line. */
static void test_x_peer_long_peer(void **state)
{
    (void)state;
    char peer[301];
    memset(peer, 'h', sizeof(peer) - 1);
    peer[sizeof(peer) - 1] = '\0';
    const char *in = "Subject: x\r\n\r\nbody\r\n";
    char want[512];
    int wl = snprintf(want, sizeof(want), "Subject: x\r\nX-Peer: %s\r\n\r\nbody\r\n", peer);
    size_t out_len;
    char *out = smtpd_insert_x_peer(in, strlen(in), peer, &out_len);
    assert_non_null(out);
    unit_check_bytes("300-byte peer_addr", out, out_len, want, (size_t)wl);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_x_peer_table),
        cmocka_unit_test(test_x_peer_big),
        cmocka_unit_test(test_x_peer_long_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
