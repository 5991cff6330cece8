/*
 * DebuggingServer: print every message to a stream, as smtpd's
 * DebuggingServer did, but as readable text (line ends as the terminal's
 * "\n") instead of Python byte reprs, and flushed after each message.
 */
#include "smtpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_options(FILE *out, const char *what, const char *const *opts, size_t n)
{
    if (n == 0)
        return;
    fprintf(out, "%s options:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(out, " %s", opts[i]);
    fputc('\n', out);
}

/* Write data with CRLF turned into LF; every other byte as it is. */
static void print_data(FILE *out, const char *p, size_t n)
{
    while (n > 0) {
        const char *lf = memchr(p, '\n', n);
        size_t len = lf ? (size_t)(lf - p) + 1 : n;
        if (lf && len >= 2 && lf[-1] == '\r') {
            fwrite(p, 1, len - 2, out);
            fputc('\n', out);
        } else {
            fwrite(p, 1, len, out);
        }
        p += len;
        n -= len;
    }
}

static enum smtpd_verdict debugging_message(void *arg, struct smtpd_session *s,
                                            const struct smtpd_message *m)
{
    FILE *out = arg;
    size_t len;
    char *data = smtpd_insert_x_peer(m->data, m->data_len, m->peer_addr, &len);
    if (!data) {
        smtpd_reply(s, 451, "4.3.0", "Error: local error in processing");
        return SMTPD_DONE;
    }
    fputs("---------- MESSAGE FOLLOWS ----------\n", out);
    print_options(out, "mail", m->mail_options, m->n_mail_options);
    print_options(out, "rcpt", m->rcpt_options, m->n_rcpt_options);
    print_data(out, data, len);
    fputs("------------ END MESSAGE ------------\n", out);
    fflush(out);
    free(data);
    return SMTPD_DONE;
}

void smtpd_debugging_handler(struct smtpd_handler *h, void *out)
{
    memset(h, 0, sizeof(*h));
    h->on_message = debugging_message;
    h->arg = out;
}
