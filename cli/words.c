/* Shell-like word splitting for --pipe; see words.h. */
#include "words.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void words_free(char **words)
{
    for (size_t i = 0; words && words[i]; i++)
        free(words[i]);
    free(words);
}

char **words_split(const char *line, char *err, size_t errsz)
{
    size_t len = strlen(line);
    /* No word is longer than the line, nor are there more words than
     * half its length plus one. */
    char **words = calloc(len / 2 + 2, sizeof(*words));
    char *word = malloc(len + 1);
    size_t n = 0;
    if (!words || !word) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    const char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        size_t k = 0;
        char quote = 0;
        for (; *p && (quote || (*p != ' ' && *p != '\t' && *p != '\n')); p++) {
            if (quote == '\'') {
                if (*p == '\'')
                    quote = 0;
                else
                    word[k++] = *p;
            } else if (*p == '\\' && p[1] && (!quote || strchr("\"\\$`", p[1]))) {
                word[k++] = *++p;
            } else if (quote == '"' && *p == '"') {
                quote = 0;
            } else if (!quote && (*p == '\'' || *p == '"')) {
                quote = *p;
            } else {
                word[k++] = *p;
            }
        }
        if (quote) {
            snprintf(err, errsz, "unclosed %c quote", quote);
            goto fail;
        }
        word[k] = '\0';
        if (!(words[n++] = strdup(word))) {
            snprintf(err, errsz, "out of memory");
            goto fail;
        }
    }
    free(word);
    if (n == 0) {
        snprintf(err, errsz, "no program");
        words_free(words);
        return NULL;
    }
    return words;
fail:
    free(word);
    words_free(words);
    return NULL;
}
