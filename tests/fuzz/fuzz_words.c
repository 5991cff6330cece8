/*
 * fuzz_words: --pipe's word splitting (cli/words.c).
 *
 * Input: the command line (NUL bytes end it, as in argv). Checked: no
 * crash or leak; the words are fewer than half the line's length plus one
 * and none is longer than the line; a line without quotes or backslashes
 * splits exactly at spaces, tabs and newlines, as a model does.
 */
#include "fuzz.h"
#include "words.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    FUZZ_CHECK(line != NULL);
    memcpy(line, data, size);
    line[size] = '\0';
    size_t len = strlen(line);
    char err[128];
    char **w = words_split(line, err, sizeof(err));
    if (w) {
        size_t n = 0;
        for (; w[n]; n++)
            FUZZ_CHECK(strlen(w[n]) <= len);
        FUZZ_CHECK(n >= 1 && n <= len / 2 + 1);
        if (!strpbrk(line, "'\"\\")) {
            size_t k = 0;
            for (char *tok = strtok(line, " \t\n"); tok; tok = strtok(NULL, " \t\n"), k++)
                FUZZ_CHECK(k < n && strcmp(tok, w[k]) == 0);
            FUZZ_CHECK(k == n);
        }
        words_free(w);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    free(line);
    return 0;
}
