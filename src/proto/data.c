/* The DATA engine; see data.h. */
#include "data.h"

#include <stdlib.h>
#include <string.h>

void data_engine_init(struct data_engine *de, size_t limit, enum data_bare_policy policy)
{
    de->state = DATA_LINE_START;
    de->policy = policy;
    de->bare = false;
    de->soft_line = false;
    de->prev_cr = false;
    de->raw = 0;
    de->limit = limit;
    de->too_much = false;
    de->chunked = false;
}

void data_engine_chunked(struct data_engine *de)
{
    de->chunked = true;
}

void data_buf_reset(struct data_buf *b)
{
    if (b->cap > DATA_BUF_FIRST) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
    b->len = 0;
}

/* Append unless over the limit (the stored data may exceed the counted
 * size by the final CRLF, which data_size() leaves out). */
static bool put(struct data_engine *de, struct data_buf *out, const char *p, size_t n)
{
    if (de->too_much || n == 0)
        return true;
    if (de->limit && data_size(de) > de->limit) {
        de->too_much = true;
        free(out->p);
        out->p = NULL;
        out->len = out->cap = 0;
        return true;
    }
    if (out->len + n > out->cap) {
        size_t cap = out->cap ? out->cap : DATA_BUF_FIRST;
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

/* Inside a line, BARE_ACCEPT: take up to and including the next LF in one
 * copy; only CRLF starts a new line. */
static enum data_result mid_accept(struct data_engine *de, struct data_buf *out, const char *p,
                                   size_t n, size_t *used)
{
    const char *lf = memchr(p, '\n', n);
    size_t k = lf ? (size_t)(lf - p) + 1 : n;
    bool crlf = lf && (k >= 2 ? p[k - 2] == '\r' : de->prev_cr);
    de->raw += k;
    if (!put(de, out, p, k))
        return DATA_NOMEM;
    de->prev_cr = p[k - 1] == '\r';
    if (crlf) {
        de->state = DATA_LINE_START;
        de->prev_cr = false;
    }
    *used = k;
    return DATA_NEED_MORE;
}

/* Inside a line, strict policies: copy up to the next CR or LF and decide. */
static enum data_result mid_strict(struct data_engine *de, struct data_buf *out, const char *p,
                                   size_t n, size_t *used)
{
    const char *lf = memchr(p, '\n', n);
    size_t upto = lf ? (size_t)(lf - p) : n;
    const char *cr = memchr(p, '\r', upto);
    size_t k;
    if (cr) {
        k = (size_t)(cr - p) + 1;
        de->state = DATA_CR;
    } else if (lf) {
        de->bare = true;
        k = upto + 1;
        if (de->policy == BARE_NORMALIZE) {
            de->raw += k;
            *used = k;
            de->state = DATA_LINE_START;
            de->soft_line = true;
            return put(de, out, p, upto) && put(de, out, "\r\n", 2) ? DATA_NEED_MORE : DATA_NOMEM;
        }
    } else {
        k = n;
    }
    de->raw += k;
    *used = k;
    return put(de, out, p, k) ? DATA_NEED_MORE : DATA_NOMEM;
}

enum data_result data_feed(struct data_engine *de, struct data_buf *out, const char *in,
                           size_t in_len, size_t *consumed)
{
    size_t i = 0;
    bool normalize = de->policy == BARE_NORMALIZE;
    while (i < in_len) {
        size_t used = 0;
        enum data_result r = DATA_NEED_MORE;
        switch (de->state) {
        case DATA_LINE_START:
            if (in[i] == '.' && !de->chunked) {
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
            } else if (in[i] == '\n' && normalize) {
                /* A "." line ended by a bare LF: data, not the end. */
                de->bare = true;
                de->raw += 2;
                de->state = DATA_LINE_START;
                de->soft_line = true;
                i++;
                r = put(de, out, ".\r\n", 3) ? DATA_NEED_MORE : DATA_NOMEM;
            } else {
                /* A stuffing dot: counted, not stored. */
                de->raw++;
                de->state = DATA_MID;
            }
            break;
        case DATA_DOT_CR:
            if (in[i] == '\n' && de->soft_line) {
                /* ".\r\n" after a bare line end: data. Only a real
                 * <CRLF>.<CRLF> ends the message. */
                de->raw += 3;
                i++;
                de->state = DATA_LINE_START;
                de->soft_line = false;
                r = put(de, out, ".\r\n", 3) ? DATA_NEED_MORE : DATA_NOMEM;
                break;
            }
            if (in[i] == '\n') {
                *consumed = i + 1;
                return DATA_END;
            }
            de->raw += 2;
            if (de->policy != BARE_ACCEPT)
                de->bare = true;
            if (normalize) {
                /* ".\r" and a bare CR: a "." data line. */
                de->state = DATA_LINE_START;
                de->soft_line = true;
                r = put(de, out, ".\r\n", 3) ? DATA_NEED_MORE : DATA_NOMEM;
            } else {
                /* The dot was stuffing; the CR is data. */
                de->prev_cr = true;
                de->state = DATA_MID;
                r = put(de, out, "\r", 1) ? DATA_NEED_MORE : DATA_NOMEM;
            }
            break;
        case DATA_CR:
            if (in[i] == '\n') {
                de->raw++;
                i++;
                de->state = DATA_LINE_START;
                de->soft_line = false;
                r = put(de, out, "\n", 1) ? DATA_NEED_MORE : DATA_NOMEM;
            } else {
                de->bare = true;
                if (normalize) {
                    de->state = DATA_LINE_START;
                    de->soft_line = true;
                    r = put(de, out, "\n", 1) ? DATA_NEED_MORE : DATA_NOMEM;
                } else {
                    de->state = DATA_MID;
                }
            }
            break;
        case DATA_MID:
            r = de->policy == BARE_ACCEPT ? mid_accept(de, out, in + i, in_len - i, &used)
                                          : mid_strict(de, out, in + i, in_len - i, &used);
            i += used;
            break;
        }
        if (r == DATA_NOMEM)
            return r;
    }
    *consumed = i;
    return DATA_NEED_MORE;
}

size_t data_size(const struct data_engine *de)
{
    if (de->chunked)
        return de->raw;
    /* The CRLF before the final dot belongs to the terminator. */
    return de->raw >= 2 ? de->raw - 2 : 0;
}

bool data_chunked_end(struct data_engine *de, struct data_buf *out)
{
    if (de->state == DATA_CR) {
        de->bare = true;
        if (de->policy == BARE_NORMALIZE && !put(de, out, "\n", 1))
            return false;
    }
    de->state = DATA_LINE_START;
    if (de->too_much || out->len == 0 ||
        (out->len >= 2 && out->p[out->len - 2] == '\r' && out->p[out->len - 1] == '\n'))
        return true;
    return put(de, out, "\r\n", 2);
}

bool data_too_much(const struct data_engine *de)
{
    return de->too_much || (de->limit && data_size(de) > de->limit);
}

bool data_bare_seen(const struct data_engine *de)
{
    return de->bare;
}
