/* Command line framing; see line.h. */
#include "line.h"

#include <string.h>

void line_reader_init(struct line_reader *lr)
{
    lr->len = 0;
    lr->overlong = false;
}

bool line_reader_pending(const struct line_reader *lr)
{
    return lr->len > 0 || lr->overlong;
}

enum line_result line_next(struct line_reader *lr, size_t limit, const char *in, size_t in_len,
                           size_t *consumed, const char **line, size_t *line_len)
{
    if (limit > LINE_LIMIT_MAX)
        limit = LINE_LIMIT_MAX;
    const char *lf = memchr(in, '\n', in_len);
    size_t take = lf ? (size_t)(lf - in) : in_len; /* bytes before the LF */
    *consumed = lf ? take + 1 : in_len;

    /* Keep at most limit + 1 bytes: the extra one may be the CR of CRLF. */
    if (!lr->overlong) {
        if (lr->len + take > limit + 1) {
            lr->overlong = true;
            lr->len = 0;
        } else if (!lf || lr->len > 0) {
            memcpy(lr->buf + lr->len, in, take);
            lr->len += take;
        }
    }
    if (!lf)
        return LINE_NEED_MORE;

    if (lr->overlong) {
        line_reader_init(lr);
        return LINE_TOO_LONG;
    }
    const char *p = lr->len > 0 ? lr->buf : in;
    size_t n = lr->len > 0 ? lr->len : take;
    lr->len = 0;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n > limit)
        return LINE_TOO_LONG;
    *line = p;
    *line_len = n;
    return LINE_OK;
}
