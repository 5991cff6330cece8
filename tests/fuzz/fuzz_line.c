/*
 * fuzz_line: command-line framing (line.c).
 *
 * Input: 2 bytes limit (mod 1200, so some are above LINE_LIMIT_MAX), the
 * chunk spec of fuzz.h, then the byte stream, fed to line_next() in those
 * chunks. Every result is checked against a model of the whole stream:
 * each LF ends a line, one CR before it is dropped, a line over the limit is
 * reported once as LINE_TOO_LONG. Also: consumed <= input and > 0, lines
 * never exceed the limit, line pointers stay inside the input or the reader.
 */
#include "fuzz.h"
#include "line.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    size_t limit = fuzz_u16(&in) % 1200;
    struct fuzz_chunks ch;
    fuzz_chunks_read(&ch, &in);
    const char *stream = (const char *)in.p;
    size_t len = in.n;
    size_t eff = limit > LINE_LIMIT_MAX ? LINE_LIMIT_MAX : limit;

    struct line_reader lr;
    line_reader_init(&lr);
    FUZZ_CHECK(!line_reader_pending(&lr));
    size_t pos = 0;     /* bytes of the stream fed so far */
    size_t line_at = 0; /* where the model's next line starts */
    while (pos < len) {
        size_t n = fuzz_chunk_next(&ch, len - pos);
        /* A copy of exactly the chunk, so that ASan sees any read past it. */
        char *chunk = malloc(n);
        FUZZ_CHECK(chunk != NULL);
        memcpy(chunk, stream + pos, n);
        const char *p = chunk;
        size_t left = n;
        while (left > 0) {
            size_t used = (size_t)-1;
            const char *line = NULL;
            size_t line_len = (size_t)-1;
            enum line_result r = line_next(&lr, limit, p, left, &used, &line, &line_len);
            FUZZ_CHECK(used <= left);
            FUZZ_CHECK(used > 0);
            size_t abs_end = pos + (size_t)(p - chunk) + used; /* stream offset after it */
            if (r == LINE_NEED_MORE) {
                FUZZ_CHECK(used == left);
                FUZZ_CHECK(memchr(p, '\n', used) == NULL);
                FUZZ_CHECK(line_reader_pending(&lr)); /* bytes of a line are held */
            } else {
                FUZZ_CHECK(r == LINE_OK || r == LINE_TOO_LONG);
                FUZZ_CHECK(p[used - 1] == '\n');
                FUZZ_CHECK(memchr(p, '\n', used - 1) == NULL);
                FUZZ_CHECK(!line_reader_pending(&lr));
                /* The model's line: from line_at to this LF. */
                size_t mlen = abs_end - 1 - line_at;
                const char *mline = stream + line_at;
                if (mlen > 0 && mline[mlen - 1] == '\r')
                    mlen--;
                if (mlen > eff) {
                    FUZZ_CHECK(r == LINE_TOO_LONG);
                } else {
                    FUZZ_CHECK(r == LINE_OK);
                    FUZZ_CHECK(line_len == mlen);
                    FUZZ_CHECK(line_len <= eff);
                    bool in_chunk = line >= p && line + line_len <= p + used;
                    bool in_reader = line >= lr.buf && line + line_len <= lr.buf + sizeof(lr.buf);
                    FUZZ_CHECK(in_chunk || in_reader);
                    FUZZ_CHECK(memcmp(line, mline, mlen) == 0);
                }
                line_at = abs_end;
            }
            p += used;
            left -= used;
        }
        free(chunk);
        pos += n;
    }
    /* A partial line is pending exactly when bytes follow the last LF. */
    FUZZ_CHECK(line_reader_pending(&lr) == (line_at < len));
    return 0;
}
