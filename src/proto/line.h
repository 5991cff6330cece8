/*
 * Command line framing: split a byte stream into lines ended by LF (a CR
 * before it is dropped), with a hard length limit. An overlong line is
 * skipped up to its end and reported once, so the dialogue stays in sync
 * (RFC 5321 4.5.3.1.4: 512 octets with CRLF... counted here without it, as
 * smtpd does). Pure: no I/O, no allocation.
 */
#ifndef SMTPD_LINE_H
#define SMTPD_LINE_H

#include <stdbool.h>
#include <stddef.h>

/** Longest line limit a reader can enforce, in octets without CRLF: room
 *  for the longest AUTH line (AUTH_LINE_MAX, session/auth.h). */
#define LINE_LIMIT_MAX 1040

struct line_reader {
    size_t len;    /* bytes of a partial line held in buf */
    bool overlong; /* skipping the rest of an overlong line */
    char buf[LINE_LIMIT_MAX + 1];
};

enum line_result {
    LINE_NEED_MORE, /* all input consumed, no complete line yet */
    LINE_OK,        /* *line / *line_len hold a line without its CRLF */
    LINE_TOO_LONG,  /* a line over the limit ended (its bytes are gone) */
};

void line_reader_init(struct line_reader *lr);

/**
 * Take bytes from @p in (@p in_len) until one line is complete.
 * @p limit: maximum octets without the line end (<= LINE_LIMIT_MAX).
 * *consumed: bytes of @p in used. On LINE_OK, *line points into @p in or into
 * the reader and stays valid until the next call.
 */
enum line_result line_next(struct line_reader *lr, size_t limit, const char *in, size_t in_len,
                           size_t *consumed, const char **line, size_t *line_len);

/** Whether a partial line is buffered (bytes of a command not yet ended). */
bool line_reader_pending(const struct line_reader *lr);

#endif
