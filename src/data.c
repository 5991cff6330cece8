/* The DATA engine; see data.h. */
#include "data.h"

#include <stdlib.h>
#include <string.h>

void data_engine_init(struct data_engine *de, size_t limit)
{
    de->state = DATA_LINE_START;
    de->prev_cr = false;
    de->raw = 0;
    de->limit = limit;
    de->too_much = false;
}

/* Append unless over the limit. The stored data may exceed the counted size
 * by the final CRLF, hence limit + 2. */
static bool put(struct data_engine *de, struct data_buf *out, const char *p, size_t n)
{
    if (de->too_much)
        return true;
    if (de->limit && de->raw > de->limit + 2) {
        de->too_much = true;
        free(out->p);
        out->p = NULL;
        out->len = out->cap = 0;
        return true;
    }
    if (out->len + n > out->cap) {
        size_t cap = out->cap ? out->cap : 4096;
        while (cap < out->len + n)
            cap *= 2;
        char *np = realloc(out->p, cap);
        if (!np)
            return false;
        out->p = np;
        out->cap = cap;
    }
    memcpy(out->p + out->len, p, n);
    out->len += n;
    return true;
}

enum data_result data_feed(struct data_engine *de, struct data_buf *out, const char *in,
                           size_t in_len, size_t *consumed)
{
    size_t i = 0;
    while (i < in_len) {
        switch (de->state) {
        case DATA_LINE_START:
            if (in[i] == '.') {
                de->state = DATA_DOT;
                i++;
            } else {
                de->state = DATA_MID;
            }
            break;
        case DATA_DOT:
            if (in[i] == '\r') {
                de->state = DATA_DOT_CR;
                i++;
            } else {
                /* A stuffing dot: counted, not stored. */
                de->raw++;
                de->state = DATA_MID;
            }
            break;
        case DATA_DOT_CR:
            if (in[i] == '\n') {
                *consumed = i + 1;
                return DATA_END;
            }
            /* ".\r" then something else: the dot was stuffing, CR is data. */
            de->raw += 2;
            if (!put(de, out, "\r", 1))
                return DATA_NOMEM;
            de->prev_cr = true;
            de->state = DATA_MID;
            break;
        case DATA_MID: {
            /* Take the rest of the line in one copy. */
            const char *lf = memchr(in + i, '\n', in_len - i);
            size_t n = lf ? (size_t)(lf - (in + i)) + 1 : in_len - i;
            bool crlf = lf && (n >= 2 ? in[i + n - 2] == '\r' : de->prev_cr);
            de->raw += n;
            if (!put(de, out, in + i, n))
                return DATA_NOMEM;
            de->prev_cr = in[i + n - 1] == '\r';
            i += n;
            if (crlf) {
                de->state = DATA_LINE_START;
                de->prev_cr = false;
            }
            break;
        }
        }
    }
    *consumed = i;
    return DATA_NEED_MORE;
}

size_t data_size(const struct data_engine *de)
{
    /* The CRLF before the final dot belongs to the terminator. */
    return de->raw >= 2 ? de->raw - 2 : 0;
}

bool data_too_much(const struct data_engine *de)
{
    return de->too_much || (de->limit && data_size(de) > de->limit);
}
