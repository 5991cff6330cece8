/*
 * fuzz_message: smtpd_insert_x_peer() (message.c).
 *
 * Input: 1 byte peer address length n (0..255), n bytes of peer address (a
 * C string: it ends at a NUL), then the message data. Invariants: the result
 * is the data with "X-Peer: <addr>\r\n" inserted before the first empty
 * line, or at the end (after an added CRLF when the data does not end in a
 * line end); so its length is the input's + the X-Peer line (+ 2).
 */
#include "fuzz.h"
#include "smtpd.h"

#include <string.h>

/* The model's header end: the first line (at 0 or after a LF) that is
 * empty, "\n" or "\r\n". */
static size_t model_header_end(const char *d, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && d[i - 1] != '\n')
            continue;
        if (d[i] == '\n' || (d[i] == '\r' && i + 1 < len && d[i + 1] == '\n'))
            return i;
    }
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    size_t plen = fuzz_byte(&in); /* any length: the public API sets none */
    if (plen > in.n)
        plen = in.n;
    char *peer = malloc(plen + 1);
    FUZZ_CHECK(peer != NULL);
    memcpy(peer, in.p, plen);
    peer[plen] = '\0';
    in.p += plen;
    in.n -= plen;

    size_t len = in.n;
    char *msg = malloc(len ? len : 1);
    FUZZ_CHECK(msg != NULL);
    if (len)
        memcpy(msg, in.p, len);

    size_t out_len = (size_t)-1;
    char *out = smtpd_insert_x_peer(msg, len, peer, &out_len);
    FUZZ_CHECK(out != NULL);

    size_t at = model_header_end(msg, len);
    bool eol = at == len && len > 0 && msg[len - 1] != '\n';
    char *xline = malloc(strlen(peer) + 11);
    FUZZ_CHECK(xline != NULL);
    size_t xl = (size_t)sprintf(xline, "X-Peer: %s\r\n", peer);
    FUZZ_CHECK(out_len == len + xl + (eol ? 2 : 0));

    size_t o = 0;
    FUZZ_CHECK(memcmp(out, msg, at) == 0);
    o += at;
    if (eol) {
        FUZZ_CHECK(memcmp(out + o, "\r\n", 2) == 0);
        o += 2;
    }
    FUZZ_CHECK(memcmp(out + o, xline, xl) == 0);
    o += xl;
    FUZZ_CHECK(memcmp(out + o, msg + at, len - at) == 0);

    free(xline);
    free(out);
    free(msg);
    free(peer);
    return 0;
}
