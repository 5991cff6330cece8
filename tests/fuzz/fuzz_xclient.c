/*
 * fuzz_xclient: the XCLIENT attribute parser (xclient.c).
 *
 * Input: the argument of an XCLIENT command line, any bytes. Invariants:
 *  - on success, every value given is NUL-terminated, printable ASCII
 *    without spaces and at most XCLIENT_VALUE_MAX bytes; an address is
 *    numeric (inet_pton takes it back); unknown values are empty;
 *  - on failure, the reason is a NUL-terminated line within its buffer
 *    (it becomes a 501 reply), and the output is untouched;
 *  - only the given bytes are read (the input is copied to a buffer of
 *    exactly its length).
 */
#include "fuzz.h"
#include "xclient.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

static void check_value(enum xclient_has has, const char *v)
{
    size_t n = strnlen(v, XCLIENT_VALUE_MAX + 1);
    FUZZ_CHECK(n <= XCLIENT_VALUE_MAX);
    if (has != XCLIENT_SET)
        return;
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(v[i] > 32 && v[i] < 127);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *arg = malloc(size ? size : 1);
    if (!arg)
        return 0;
    memcpy(arg, data, size);
    struct xclient_attrs a, before;
    memset(&a, 0x5a, sizeof(a));
    before = a;
    char why[64];
    memset(why, 0x5a, sizeof(why));
    if (xclient_parse(arg, size, &a, why, sizeof(why))) {
        check_value(a.name, a.name_value);
        check_value(a.helo, a.helo_value);
        check_value(a.login, a.login_value);
        if (a.addr == XCLIENT_SET) {
            unsigned char bin[16];
            FUZZ_CHECK(memchr(a.addr_value, '\0', sizeof(a.addr_value)) != NULL);
            FUZZ_CHECK(inet_pton(AF_INET, a.addr_value, bin) == 1 ||
                       inet_pton(AF_INET6, a.addr_value, bin) == 1);
        }
    } else {
        FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL && why[0] != '\0');
        for (const char *p = why; *p; p++)
            FUZZ_CHECK(*p != '\r' && *p != '\n');
        FUZZ_CHECK(memcmp(&a, &before, sizeof(a)) == 0);
    }
    free(arg);
    return 0;
}
