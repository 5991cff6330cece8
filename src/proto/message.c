/* Message data helpers shared by the handlers; see message.h and smtpd.h. */
#include "message.h"
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

char *message_insert_fields(const char *data, size_t len, const char *fields, size_t flen,
                            size_t *out_len)
{
    size_t at = end_of_headers(data, len);
    /* Data that does not end in a line end gets one before the fields. */
    bool need_eol = at == len && len > 0 && data[len - 1] != '\n';
    char *out = malloc(len + flen + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    memcpy(out, data, at);
    o += at;
    if (need_eol) {
        memcpy(out + o, "\r\n", 2);
        o += 2;
    }
    memcpy(out + o, fields, flen);
    o += flen;
    memcpy(out + o, data + at, len - at);
    o += len - at;
    *out_len = o;
    return out;
}

char *smtpd_insert_x_peer(const char *data, size_t len, const char *peer_addr, size_t *out_len)
{
    size_t flen = strlen("X-Peer: \r\n") + strlen(peer_addr);
    char *field = malloc(flen + 1);
    if (!field)
        return NULL;
    snprintf(field, flen + 1, "X-Peer: %s\r\n", peer_addr);
    char *out = message_insert_fields(data, len, field, flen, out_len);
    free(field);
    return out;
}
