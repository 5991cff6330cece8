/*
 * The DATA engine (RFC 5321 4.1.1.4, 4.5.2): takes the bytes that follow the
 * 354 reply, removes dot-stuffing, finds the end of data and counts the
 * message size. Only <CRLF>.<CRLF> ends the data (the CRLF that ends the
 * DATA command line counts as the first one), so a bare LF or CR can never
 * end a message (no SMTP smuggling). Line ends are kept as sent.
 *
 * The size counted is that of smtpd: the octets between the DATA line and
 * the final <CRLF>.<CRLF>, stuffing dots included, before any normalizing. Once it passes the limit
 * the engine stops storing and only looks for the end, so the 552 reply comes
 * after the final dot. Pure: the caller owns the output buffer.
 */
#ifndef SMTPD_DATA_H
#define SMTPD_DATA_H

#include <stdbool.h>
#include <stddef.h>

enum data_state {
    DATA_LINE_START, /* at the start of a line */
    DATA_DOT,        /* a '.' at the start of a line */
    DATA_DOT_CR,     /* ".\r" at the start of a line */
    DATA_MID,        /* inside a line */
    DATA_CR,         /* a CR inside a line, next byte not seen (strict policies) */
};

/* What to do with a CR or LF that is not part of a CRLF (RFC 5321 2.3.8
 * forbids them; SMTP smuggling hides commands behind them). */
enum data_bare_policy {
    BARE_NORMALIZE, /* a line end: stored as CRLF, the next byte starts a line */
    BARE_REJECT,    /* kept, and the message is refused after the final dot */
    BARE_ACCEPT,    /* kept as data */
};

struct data_engine {
    enum data_state state;
    enum data_bare_policy policy;
    bool bare;      /* a bare CR or LF was seen */
    bool soft_line; /* BARE_NORMALIZE: this line began after a bare CR/LF,
                       so a "." line here is data, never the end */
    bool prev_cr;   /* BARE_ACCEPT: last byte taken inside a line was CR */
    size_t raw;     /* wire octets taken before the end line */
    size_t limit;   /* size limit in octets, 0 = none */
    bool too_much;  /* over the limit: nothing more is stored */
    bool chunked;   /* BDAT: no dot-stuffing, no end line (data_engine_chunked) */
};

enum data_result {
    DATA_NEED_MORE, /* all input taken, end not yet seen */
    DATA_END,       /* end of data seen; *consumed stops after it */
    DATA_NOMEM,     /* the output buffer could not grow */
};

/** Output: a growable buffer the engine appends unstuffed data to. */
struct data_buf {
    char *p;
    size_t len, cap;
};

/* A buffer's first size, in bytes: a typical small message fits. */
#define DATA_BUF_FIRST ((size_t)4096)

/** Empty @p b for the next message. A buffer still at its first size is
 *  kept (no malloc per message on a busy session); a grown one is freed, so
 *  an idle session holds the same few bytes whatever it sent before. */
void data_buf_reset(struct data_buf *b);

void data_engine_init(struct data_engine *de, size_t limit, enum data_bare_policy policy);

/** Make @p de (just initialized) take BDAT chunks (RFC 3030): every octet
 *  is data, with no dot-stuffing and no end line; the caller counts each
 *  chunk's octets, feeds nothing past it, and calls data_chunked_end()
 *  after the last. The bare CR/LF policy still applies, and the size is
 *  every octet fed. */
void data_engine_chunked(struct data_engine *de);

/** After the last chunk: a CR at its very end is a bare CR (the policy
 *  applies), and data that does not end in CRLF gets one, so the handler
 *  sees what DATA would have given it. @return false when out of memory. */
bool data_chunked_end(struct data_engine *de, struct data_buf *out);

/** Feed @p in; unstuffed bytes are appended to @p out (which grows with
 *  realloc). *consumed: bytes of @p in taken. */
enum data_result data_feed(struct data_engine *de, struct data_buf *out, const char *in,
                           size_t in_len, size_t *consumed);

/** The message size after DATA_END, as smtpd counts it (see above); for
 *  chunks, the octets fed. */
size_t data_size(const struct data_engine *de);

/** Whether the message went over the limit (552 after the final dot). */
bool data_too_much(const struct data_engine *de);

/** Whether a bare CR or LF was seen (BARE_REJECT refuses the message). */
bool data_bare_seen(const struct data_engine *de);

#endif
