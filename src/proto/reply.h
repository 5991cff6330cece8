/*
 * SMTP reply formatting (RFC 5321 4.2, enhanced status codes RFC 2034/3463)
 * and escaping of peer text for logs. Pure.
 */
#ifndef SMTPD_REPLY_H
#define SMTPD_REPLY_H

#include <stdbool.h>
#include <stddef.h>

/** Longest reply line we build, CRLF included (RFC 5321 4.5.3.1.5: 512). */
#define REPLY_LINE_MAX 512

/**
 * Format one reply line "CODE[-| ][ENH ]TEXT\r\n" into @p buf (at least
 * REPLY_LINE_MAX bytes). @p more: a '-' continuation line. @p enh may be NULL.
 * Control characters in @p text become spaces; text that does not fit is cut.
 * @return the length written (no NUL is added).
 */
size_t reply_format(char *buf, int code, bool more, const char *enh, const char *text);

/** A multi-line reply (RFC 5321 4.2.1): @p n lines (n >= 1), each as
 *  reply_format() makes it, all but the last with '-'. @p buf has room for
 *  n * REPLY_LINE_MAX bytes. @return the length written. */
size_t reply_format_lines(char *buf, int code, const char *enh, const char *const *lines, size_t n);

/** Whether @p s (of @p len bytes) is valid UTF-8 (RFC 3629: no overlongs,
 *  no surrogates, nothing above U+10FFFF). */
bool utf8_valid(const char *s, size_t len);

/** Length of the valid UTF-8 sequence at @p s (at most @p len bytes), or 0. */
size_t utf8_seq_len(const unsigned char *s, size_t len);

/**
 * Parse one line of a server reply (RFC 5321 4.2): three digits 200..599,
 * then '-' (more lines follow), ' ' or nothing, then text.
 * @return false when the line is not a reply line.
 */
bool reply_parse_line(const char *line, size_t len, int *code, bool *more, const char **text,
                      size_t *text_len);

/**
 * If @p text starts with an enhanced status code "x.y.z " whose class
 * matches @p code (RFC 3463, RFC 2034 4), copy it NUL-terminated into
 * @p enh (at least 16 bytes). @return the bytes of text it took (code and
 * the space after it), or 0 if there is none.
 */
size_t reply_split_enhanced(const char *text, size_t len, int code, char *enh);
#endif
