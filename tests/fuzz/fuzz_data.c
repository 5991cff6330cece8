/*
 * fuzz_data: the DATA engine (data.c).
 *
 * Input: 1 byte choosing the size limit, 1 byte the bare CR/LF policy, the
 * chunk spec of fuzz.h, then the bytes that follow a 354 reply. The stream is fed to data_feed()
 * once in one chunk and once in the chunks of the spec; after an end of data the next message
 * starts with a fresh engine on the rest. Invariants: both feeds give identical results, output,
 * end position, size and over-limit flag; and the result matches a line-at-a-time model of RFC
 * 5321 4.5.2 and of the policies of data.h (only <CRLF>.<CRLF> ends the data, whatever the policy,
 * so no message can be split in two; a leading dot is removed; the size
 * counts the wire octets before the final <CRLF>.<CRLF>).
 */
#include "data.h"
#include "fuzz.h"

#include <string.h>

static size_t pick_limit(uint8_t b)
{
    if (b == 0)
        return 0;
    if (b <= 200)
        return b;
    if (b <= 248)
        return (size_t)(b - 200) * 100;
    switch (b) {
    case 249:
        return 4096;
    case 250:
        return 33554432;
    case 251:
        return (size_t)1 << 20;
    case 252:
        return SIZE_MAX;
    case 253:
        return SIZE_MAX - 1;
    case 254:
        return SIZE_MAX - 2;
    default:
        return SIZE_MAX / 2;
    }
}

struct model {
    bool ended;
    size_t end;  /* bytes up to and including the final LF */
    size_t size; /* octets between the DATA line and the final CRLF.CRLF */
    bool too_much;
    bool bare; /* data_bare_seen() */
    char *out;
    size_t out_len;
};

/* A line starts at the beginning (the CRLF of the DATA line came before) or
 * after a CR LF pair on the wire. */
static bool crlf_before(const char *in, size_t i)
{
    return i == 0 || (i >= 2 && in[i - 2] == '\r' && in[i - 1] == '\n');
}

/*
 * What data.h and smtpd.h promise, read one line at a time. Whatever the
 * policy, the data ends at the first "." CRLF that follows a CRLF on the
 * wire; the size counts the wire octets before that CRLF. With BARE_ACCEPT
 * and BARE_REJECT the data is kept as sent, without the stuffing dots of
 * lines that start after a CRLF; BARE_REJECT notes any CR not followed by LF
 * and any LF not after a CR. BARE_NORMALIZE ends lines at CRLF, a bare CR or
 * a bare LF alike and stores each with CRLF; a leading dot is removed, but a
 * line that is just "." (which can only be one after a bare line end) stays
 * ".", data for a relay to stuff.
 */
static void model_run(struct model *m, const char *in, size_t len, size_t limit,
                      enum data_bare_policy policy)
{
    memset(m, 0, sizeof(*m));
    size_t dot = len;
    for (size_t i = 0; i + 2 < len; i++) {
        if (in[i] == '.' && in[i + 1] == '\r' && in[i + 2] == '\n' && crlf_before(in, i)) {
            dot = i;
            break;
        }
    }
    if (dot == len)
        return; /* not ended (or not known yet) */
    m->ended = true;
    m->end = dot + 3;
    m->size = dot >= 2 ? dot - 2 : 0;
    m->too_much = limit && m->size > limit;
    /* The data: in[0, dot), empty or ending in CRLF. */
    for (size_t k = 0; k < dot; k++) {
        if ((in[k] == '\r' && in[k + 1] != '\n') ||
            (in[k] == '\n' && (k == 0 || in[k - 1] != '\r')))
            m->bare = true;
    }
    m->out = malloc(2 * dot + 1);
    FUZZ_CHECK(m->out != NULL);
    if (policy != BARE_NORMALIZE) {
        if (policy == BARE_ACCEPT)
            m->bare = false; /* not tracked */
        for (size_t k = 0; k < dot; k++) {
            if (in[k] == '.' && crlf_before(in, k))
                continue;
            m->out[m->out_len++] = in[k];
        }
        return;
    }
    size_t k = 0;
    while (k < dot) {
        size_t start = k;
        while (in[k] != '\r' && in[k] != '\n')
            k++;
        size_t clen = k - start;
        k += (in[k] == '\r' && in[k + 1] == '\n') ? 2 : 1;
        const char *c = in + start;
        if (clen > 1 && c[0] == '.') {
            c++;
            clen--;
        }
        memcpy(m->out + m->out_len, c, clen);
        m->out_len += clen;
        memcpy(m->out + m->out_len, "\r\n", 2);
        m->out_len += 2;
    }
}

struct run {
    struct data_engine de;
    struct data_buf out;
    enum data_result r;
    size_t consumed;
};

static void run_free(struct run *r)
{
    free(r->out.p);
}

static void check_same(const struct run *a, const struct run *b)
{
    FUZZ_CHECK(a->r == b->r);
    FUZZ_CHECK(a->consumed == b->consumed);
    FUZZ_CHECK(a->de.raw == b->de.raw);
    FUZZ_CHECK(a->de.too_much == b->de.too_much);
    FUZZ_CHECK(data_bare_seen(&a->de) == data_bare_seen(&b->de));
    FUZZ_CHECK(data_too_much(&a->de) == data_too_much(&b->de));
    FUZZ_CHECK(data_size(&a->de) == data_size(&b->de));
    FUZZ_CHECK(a->out.len == b->out.len);
    FUZZ_CHECK(a->out.len <= a->out.cap && b->out.len <= b->out.cap);
    if (a->out.len)
        FUZZ_CHECK(memcmp(a->out.p, b->out.p, a->out.len) == 0);
    if (a->r == DATA_NEED_MORE) {
        FUZZ_CHECK(a->de.state == b->de.state);
        FUZZ_CHECK(a->de.prev_cr == b->de.prev_cr);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    size_t limit = pick_limit(fuzz_byte(&in));
    enum data_bare_policy policy = (enum data_bare_policy)(fuzz_byte(&in) % 3);
    struct fuzz_chunks ch;
    fuzz_chunks_read(&ch, &in);
    const char *stream = (const char *)in.p;
    size_t len = in.n;

    size_t pos = 0;
    for (;;) {
        const char *msg = stream + pos;
        size_t mlen = len - pos;

        /* One chunk (an exact copy, so that ASan sees reads past it). */
        struct run one = {0};
        char *copy = malloc(mlen ? mlen : 1);
        FUZZ_CHECK(copy != NULL);
        if (mlen)
            memcpy(copy, msg, mlen);
        data_engine_init(&one.de, limit, policy);
        one.r = data_feed(&one.de, &one.out, copy, mlen, &one.consumed);
        free(copy);
        FUZZ_CHECK(one.r == DATA_NEED_MORE || one.r == DATA_END);
        FUZZ_CHECK(one.consumed <= mlen);
        if (one.r == DATA_NEED_MORE)
            FUZZ_CHECK(one.consumed == mlen);

        /* The same bytes in chunks. */
        struct run split = {0};
        data_engine_init(&split.de, limit, policy);
        split.r = DATA_NEED_MORE;
        while (split.consumed < mlen) {
            size_t n = fuzz_chunk_next(&ch, mlen - split.consumed);
            char *c = malloc(n);
            FUZZ_CHECK(c != NULL);
            memcpy(c, msg + split.consumed, n);
            size_t used = (size_t)-1;
            split.r = data_feed(&split.de, &split.out, c, n, &used);
            free(c);
            FUZZ_CHECK(used <= n);
            split.consumed += used;
            if (split.r != DATA_NEED_MORE)
                break;
            FUZZ_CHECK(used == n);
        }
        check_same(&one, &split);

        /* The model. */
        struct model m;
        model_run(&m, msg, mlen, limit, policy);
        FUZZ_CHECK(m.ended == (one.r == DATA_END));
        if (m.ended) {
            FUZZ_CHECK(one.consumed == m.end);
            FUZZ_CHECK(data_size(&one.de) == m.size);
            FUZZ_CHECK(data_too_much(&one.de) == m.too_much);
            FUZZ_CHECK(data_bare_seen(&one.de) == m.bare);
            if (!m.too_much) {
                FUZZ_CHECK(one.out.len == m.out_len);
                if (m.out_len)
                    FUZZ_CHECK(memcmp(one.out.p, m.out, m.out_len) == 0);
                /* The data ends at a line end (CRLF). */
                FUZZ_CHECK(m.out_len == 0 ||
                           (m.out_len >= 2 && memcmp(m.out + m.out_len - 2, "\r\n", 2) == 0));
            }
        }
        free(m.out);
        run_free(&one);
        run_free(&split);
        if (!m.ended)
            break;
        pos += m.end;
    }
    return 0;
}
