/*
 * fuzz_command: command line parsing (command.c).
 *
 * Input: one command line (any bytes). It goes through cmd_split(), then its
 * argument (and the raw line too) through cmd_parse_path() with "FROM:" and
 * "TO:" and the parameters through the cmd_next_param() loop. Invariants:
 * every slice lies within the input, the parameter loop always advances and
 * ends, a parsed address is a valid mailbox by cmd_valid_mailbox(), flags
 * agree with the bytes.
 */
#include "command.h"
#include "fuzz.h"

#include <stdio.h>
#include <string.h>

static bool within(const char *s, size_t n, const char *base, size_t len)
{
    return s >= base && s <= base + len && n <= (size_t)(base + len - s);
}

static bool is_sp(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_alnum_c(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* The parameter loop over [p, end), as channel.c runs it. */
static void check_params(const char *p, const char *end)
{
    const char *start = p;
    size_t len = (size_t)(end - p);
    struct esmtp_param prm;
    for (size_t iter = 0;; iter++) {
        FUZZ_CHECK(iter <= len + 1);
        const char *before = p;
        enum param_result r = cmd_next_param(&p, end, &prm);
        FUZZ_CHECK(p >= before && p <= end);
        if (r == PARAM_END) {
            FUZZ_CHECK(p == end);
            for (const char *q = before; q < end; q++)
                FUZZ_CHECK(is_sp(*q));
            return;
        }
        if (r == PARAM_SYNTAX)
            return;
        FUZZ_CHECK(r == PARAM_OK);
        FUZZ_CHECK(p > before);
        FUZZ_CHECK(prm.key_len > 0);
        FUZZ_CHECK(within(prm.key, prm.key_len, start, len));
        FUZZ_CHECK(is_alnum_c((unsigned char)prm.key[0]));
        for (size_t i = 0; i < prm.key_len; i++)
            FUZZ_CHECK(is_alnum_c((unsigned char)prm.key[i]) || prm.key[i] == '-');
        if (prm.value) {
            FUZZ_CHECK(prm.value == prm.key + prm.key_len + 1);
            FUZZ_CHECK(prm.value[-1] == '=');
            FUZZ_CHECK(prm.value_len > 0);
            FUZZ_CHECK(within(prm.value, prm.value_len, start, len));
            for (size_t i = 0; i < prm.value_len; i++) {
                unsigned char c = (unsigned char)prm.value[i];
                FUZZ_CHECK(c > 0x20 && c != 0x7f && c != '=');
            }
            FUZZ_CHECK(p == prm.value + prm.value_len);
        } else {
            FUZZ_CHECK(prm.value_len == 0);
            FUZZ_CHECK(p == prm.key + prm.key_len);
        }
        FUZZ_CHECK(p == end || is_sp(*p));
    }
}

static void check_path(const char *arg, size_t len, const char *keyword)
{
    struct path_arg pa;
    if (!cmd_parse_path(arg, len, keyword, &pa))
        return;
    size_t klen = strlen(keyword);
    FUZZ_CHECK(len >= klen && slice_ieq(arg, klen, keyword));
    FUZZ_CHECK(within(pa.addr, pa.addr_len, arg, len));
    FUZZ_CHECK(pa.addr >= arg + klen);
    if (pa.null_path) {
        FUZZ_CHECK(pa.addr_len == 0);
    } else {
        FUZZ_CHECK(pa.addr_len > 0);
        FUZZ_CHECK(cmd_valid_mailbox(pa.addr, pa.addr_len));
    }
    bool high = false;
    for (size_t i = 0; i < pa.addr_len; i++)
        high |= (unsigned char)pa.addr[i] >= 0x80;
    FUZZ_CHECK(pa.non_ascii == high);
    FUZZ_CHECK(within(pa.params, pa.params_len, arg, len));
    FUZZ_CHECK(pa.params + pa.params_len == arg + len);
    FUZZ_CHECK(pa.params >= pa.addr + pa.addr_len);
    FUZZ_CHECK(pa.params_len == 0 || !is_sp(pa.params[0]));
    check_params(pa.params, pa.params + pa.params_len);
}

/* BDAT's argument: a size is digits, alone or before a space; taken
 * whole, then nothing or " LAST". */
static void check_bdat(const char *arg, size_t len)
{
    uint64_t size = 0;
    bool last = false;
    enum bdat_syntax r = cmd_parse_bdat(arg, len, &size, &last);
    if (r == BDAT_BAD_SIZE)
        return;
    size_t digits = 0;
    while (digits < len && arg[digits] >= '0' && arg[digits] <= '9')
        digits++;
    FUZZ_CHECK(digits > 0 && (digits == len || arg[digits] == ' '));
    if (r == BDAT_OK)
        FUZZ_CHECK(last ? len == digits + 5 && slice_ieq(arg + digits + 1, 4, "LAST")
                        : len == digits);
    else
        FUZZ_CHECK(r == BDAT_BAD_END && !last && digits < len);
    /* The value: the digits without their leading zeros. */
    size_t z = 0;
    while (z + 1 < digits && arg[z] == '0')
        z++;
    char text[32];
    int n = snprintf(text, sizeof(text), "%llu", (unsigned long long)size);
    FUZZ_CHECK((size_t)n == digits - z && memcmp(text, arg + z, digits - z) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact copy, so that ASan sees any read past the line. */
    char *line = malloc(size ? size : 1);
    FUZZ_CHECK(line != NULL);
    if (size)
        memcpy(line, data, size);

    for (int v = 0; v < CMD_COUNT; v++) {
        const char *name = cmd_name((enum cmd_verb)v);
        FUZZ_CHECK(name != NULL);
        if (v != CMD_UNKNOWN)
            FUZZ_CHECK(cmd_lookup(name, strlen(name)) == (enum cmd_verb)v);
    }

    const char *arg = NULL;
    size_t arg_len = (size_t)-1;
    enum cmd_verb v = cmd_split(line, size, &arg, &arg_len);
    FUZZ_CHECK((unsigned)v < CMD_COUNT);
    FUZZ_CHECK(within(arg, arg_len, line, size));
    FUZZ_CHECK(arg_len == 0 || (!is_sp(arg[0]) && !is_sp(arg[arg_len - 1])));
    const char *sp = memchr(line, ' ', size);
    size_t vlen = sp ? (size_t)(sp - line) : size;
    FUZZ_CHECK(v == cmd_lookup(line, vlen));
    if (v != CMD_UNKNOWN)
        FUZZ_CHECK(vlen == 4 && slice_ieq(line, 4, cmd_name(v)));
    FUZZ_CHECK(sp ? arg > sp : arg_len == 0);

    check_path(arg, arg_len, "FROM:");
    check_path(arg, arg_len, "TO:");
    check_path(line, size, "FROM:");
    check_path(line, size, "TO:");
    check_params(line, line + size);
    (void)cmd_valid_mailbox(line, size);
    check_bdat(arg, arg_len);
    check_bdat(line, size);

    free(line);
    return 0;
}
