/* Message data helpers shared by the handlers; see smtpd.h. */
#include "smtpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offset of the first empty line ("\r\n" or "\n" alone), or len if none. */
static size_t end_of_headers(const char *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (data[i] == '\n' || (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n'))
            return i;
        const char *lf = memchr(data + i, '\n', len - i);
        if (!lf)
            break;
        i = (size_t)(lf - data) + 1;
    }
    return len;
}

char *smtpd_insert_x_peer(const char *data, size_t len, const char *peer_addr, size_t *out_len)
{
    size_t at = end_of_headers(data, len);
    /* Data that does not end in a line end gets one before X-Peer. */
    bool need_eol = at == len && len > 0 && data[len - 1] != '\n';
    size_t ll = strlen("X-Peer: \r\n") + strlen(peer_addr);
    char *out = malloc(len + ll + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    memcpy(out, data, at);
    o += at;
    if (need_eol) {
        memcpy(out + o, "\r\n", 2);
        o += 2;
    }
    o += (size_t)sprintf(out + o, "X-Peer: %s\r\n", peer_addr);
    memcpy(out + o, data + at, len - at);
    o += len - at;
    *out_len = o;
    return out;
}
