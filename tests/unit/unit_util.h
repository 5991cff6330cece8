/*
 * Helpers shared by the unit tests: cmocka includes in the order it needs,
 * and byte-exact comparisons that print both sides escaped on failure.
 */
#ifndef UNIT_UTIL_H
#define UNIT_UTIL_H

/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Number of rows of a table. */
#define N_ROWS(a) (sizeof(a) / sizeof((a)[0]))

/* A string literal as bytes and length (NUL bytes inside allowed). */
#define BYTES(s) .in = (s), .in_len = sizeof(s) - 1

/* Show @p n bytes of @p p for a failure message: printable ASCII as is,
 * everything else as \xNN; long input is cut with "...". */
static inline const char *unit_show(char *dst, size_t dstsz, const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (o + 8 >= dstsz) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 0xf];
        }
    }
    dst[o] = '\0';
    return dst;
}

/* Fail unless @p got (@p got_len bytes) equals @p exp (@p exp_len bytes). */
static inline void unit_check_bytes(const char *ctx, const char *got, size_t got_len,
                                    const char *exp, size_t exp_len)
{
    if (got_len == exp_len && (exp_len == 0 || memcmp(got, exp, exp_len) == 0))
        return;
    char a[2048], b[2048];
    print_error("%s:\n  expected %zu bytes: \"%s\"\n  got      %zu bytes: \"%s\"\n", ctx, exp_len,
                unit_show(a, sizeof(a), exp, exp_len), got_len,
                unit_show(b, sizeof(b), got ? got : "", got ? got_len : 0));
    fail();
}

/* Same for a NUL-terminated expectation. */
static inline void unit_check_str(const char *ctx, const char *got, size_t got_len, const char *exp)
{
    unit_check_bytes(ctx, got, got_len, exp, strlen(exp));
}

/* Fail with a message about table row @p ctx unless @p cond holds. */
#define unit_assert(ctx, cond)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error("%s: check failed: %s\n", (ctx), #cond);                                   \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

/*
 * Soft checks for tables: a failing row is reported and counted, the other
 * rows still run, and unit_soft_end() fails the test if any row failed.
 */
static int unit_soft_failures;

static inline void unit_soft_begin(void)
{
    unit_soft_failures = 0;
}

static inline bool unit_soft(const char *ctx, bool cond, const char *what)
{
    if (!cond) {
        print_error("%s: check failed: %s\n", ctx, what);
        unit_soft_failures++;
    }
    return cond;
}

#define UNIT_SOFT(ctx, cond) unit_soft((ctx), (cond), #cond)

/* Soft byte comparison; prints both sides on a mismatch. */
static inline bool unit_soft_bytes(const char *ctx, const char *got, size_t got_len,
                                   const char *exp, size_t exp_len)
{
    if (got_len == exp_len && (exp_len == 0 || memcmp(got, exp, exp_len) == 0))
        return true;
    char a[2048], b[2048];
    print_error("%s:\n  expected %zu bytes: \"%s\"\n  got      %zu bytes: \"%s\"\n", ctx, exp_len,
                unit_show(a, sizeof(a), exp, exp_len), got_len,
                unit_show(b, sizeof(b), got ? got : "", got ? got_len : 0));
    unit_soft_failures++;
    return false;
}

static inline void unit_soft_end(void)
{
    if (unit_soft_failures) {
        print_error("%d table row(s) failed\n", unit_soft_failures);
        fail();
    }
}

#endif
