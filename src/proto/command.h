/*
 * Command line parsing (RFC 5321 4.1): the verb, MAIL FROM / RCPT TO paths
 * (4.1.2, with SMTPUTF8 addresses of RFC 6531) and ESMTP parameters
 * (4.1.2 esmtp-param). Pure: results are slices of the input line.
 */
#ifndef SMTPD_COMMAND_H
#define SMTPD_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cmd_verb {
    CMD_UNKNOWN = 0,
    CMD_HELO,
    CMD_EHLO,
    CMD_MAIL,
    CMD_RCPT,
    CMD_DATA,
    CMD_RSET,
    CMD_NOOP,
    CMD_QUIT,
    CMD_VRFY,
    CMD_EXPN,
    CMD_HELP,
    CMD_COUNT
};

/** Split a command line at its first space, as smtpd does: the verb
 *  (case-insensitive) and the argument with surrounding spaces removed
 *  (*arg_len 0 when there is none). */
enum cmd_verb cmd_split(const char *line, size_t len, const char **arg, size_t *arg_len);

/** Length of a command line's verb: the bytes before its first space. */
size_t cmd_verb_len(const char *line, size_t len);

/** Verb by name (case-insensitive), CMD_UNKNOWN if none. */
enum cmd_verb cmd_lookup(const char *name, size_t len);

/** Upper-case name of a verb ("MAIL"). */
const char *cmd_name(enum cmd_verb verb);

/** A parsed "FROM:<path> params" or "TO:<path> params" argument. */
struct path_arg {
    const char *addr;   /* mailbox without brackets and source route */
    size_t addr_len;    /* 0 for the null path <> */
    bool null_path;     /* the path was <> */
    bool non_ascii;     /* the mailbox holds UTF-8 (needs SMTPUTF8) */
    const char *params; /* the parameters after the path, trimmed */
    size_t params_len;
};

/**
 * Parse @p arg after verb: @p keyword ("FROM:" or "TO:", case-insensitive),
 * optional spaces, then a path in angle brackets (with an optional source
 * route, which is dropped) or a bare mailbox, then parameters.
 * @return true when it parsed; false for any syntax error.
 */
bool cmd_parse_path(const char *arg, size_t len, const char *keyword, struct path_arg *out);

/** Whether @p s is a valid mailbox (local-part [@ domain]) as a whole. */
bool cmd_valid_mailbox(const char *s, size_t len);

/** Whether @p line is an HTTP request line ("GET / HTTP/1.1"; the methods
 *  of RFC 9110 and PATCH): a browser or proxy steered to an SMTP port. */
bool cmd_is_http_request(const char *line, size_t len);

/** One ESMTP parameter (RFC 5321 4.1.2 esmtp-param). */
struct esmtp_param {
    const char *key;
    size_t key_len;
    const char *value; /* NULL when there is no "=" */
    size_t value_len;
};

enum param_result { PARAM_OK, PARAM_END, PARAM_SYNTAX };

/** Take the next parameter from *p (advanced past it) before @p end. */
enum param_result cmd_next_param(const char **p, const char *end, struct esmtp_param *out);

enum bdat_syntax {
    BDAT_OK,
    BDAT_BAD_SIZE, /* no chunk-size: nothing can be skipped */
    BDAT_BAD_END,  /* a good chunk-size (in *size), then neither nothing nor " LAST" */
};

/** BDAT's argument (RFC 3030 2): chunk-size (1*DIGIT, at most UINT64_MAX)
 *  in *size, then optionally one SP and "LAST" (any case) in *last. */
enum bdat_syntax cmd_parse_bdat(const char *arg, size_t len, uint64_t *size, bool *last);

/** Case-insensitive compare of a slice with a NUL-terminated upper-case word. */
bool slice_ieq(const char *s, size_t len, const char *word);

#endif
