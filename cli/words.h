/*
 * --pipe's command line split into words as a shell would split it, with
 * none of the rest of a shell: 'single' and "double" quotes and
 * backslashes are understood; nothing is expanded, nothing is run.
 */
#ifndef SMTPD_CLI_WORDS_H
#define SMTPD_CLI_WORDS_H

#include <stddef.h>

/** Split @p line. @return a NULL-terminated array (free with words_free()),
 *  or NULL with a reason in @p err: an unclosed quote, no word at all, or
 *  out of memory. */
char **words_split(const char *line, char *err, size_t errsz);

void words_free(char **words);

#endif
