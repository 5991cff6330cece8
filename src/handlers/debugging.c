/*
 * DebuggingServer: print every message to a stream, as smtpd's
 * DebuggingServer did, but as readable text (line ends as the terminal's
 * "\n") instead of Python byte reprs, with the envelope shown as aiosmtpd's
 * Message handler does (X-MailFrom, X-RcptTo next to X-Peer), flushed after
 * each message. A message is 250 only once all of it was written: a failed
 * or short write (a closed pipe, a full disk) gives 451.
 */
#include "message.h"
#include "reply.h"
#include "smtpd.h"
#include "deliver.h"

#include <errno.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The envelope as header fields: X-Peer (smtpd's), X-MailFrom and X-RcptTo
 * (every forward-path, so Bcc recipients show), and X-AuthUser, who
 * authenticated (AUTH). */
static void print_envelope(FILE *f, const struct smtpd_message *m)
{
    fprintf(f, "X-Peer: %s\r\nX-MailFrom: %s\r\nX-RcptTo: ", m->peer_addr,
            m->reverse_path[0] ? m->reverse_path : "<>");
    for (size_t i = 0; i < m->n_forward_paths; i++)
        fprintf(f, "%s%s", i ? ", " : "", m->forward_paths[i]);
    fputs("\r\n", f);
    if (m->auth_identity)
        fprintf(f, "X-AuthUser: %s\r\n", m->auth_identity);
}

static void print_options(FILE *f, const char *what, const char *const *opts, size_t n)
{
    if (n == 0)
        return;
    fprintf(f, "%s options:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(f, " %s", opts[i]);
    fputc('\n', f);
}

/* One byte or UTF-8 sequence for a terminal: a control character (C0 but
 * TAB, DEL, C1 as a raw byte or as UTF-8) or a byte that is not UTF-8
 * could drive the terminal, so it is written as \xNN. */
static size_t put_for_terminal(FILE *f, const unsigned char *p, size_t n)
{
    size_t seq = utf8_seq_len(p, n);
    bool c1 = seq == 2 && p[0] == 0xc2 && p[1] < 0xa0;
    if (seq > 1 && !c1) {
        fwrite(p, 1, seq, f);
        return seq;
    }
    if (p[0] == '\t' || (p[0] >= 0x20 && p[0] < 0x7f))
        fputc(p[0], f);
    else
        fprintf(f, "\\x%02x", p[0]);
    return 1;
}

/* Data with CRLF written as "\n"; every other byte as it is, or escaped
 * for a terminal. */
static void print_data(FILE *f, const char *p, size_t n, bool terminal)
{
    while (n > 0) {
        const char *lf = memchr(p, '\n', n);
        size_t len = lf ? (size_t)(lf - p) + 1 : n;
        size_t text = len;
        if (lf)
            text -= len >= 2 && lf[-1] == '\r' ? 2 : 1;
        if (terminal) {
            for (size_t i = 0; i < text;)
                i += put_for_terminal(f, (const unsigned char *)p + i, text - i);
        } else {
            fwrite(p, 1, text, f);
        }
        if (lf)
            fputc('\n', f);
        p += len;
        n -= len;
    }
}

/* The whole output for one message, in memory: it goes out in one write
 * whose result says whether the message was printed. */
static char *render(const struct smtpd_message *m, bool terminal, size_t *len)
{
    char *fields = NULL, *out = NULL;
    size_t flen = 0;
    FILE *f = open_memstream(&fields, &flen);
    if (!f)
        return NULL;
    print_envelope(f, m);
    if (fclose(f) != 0) {
        free(fields);
        return NULL;
    }
    size_t dlen;
    char *data = message_insert_fields(m->data, m->data_len, fields, flen, &dlen);
    free(fields);
    if (!data)
        return NULL;
    f = open_memstream(&out, len);
    if (f) {
        fputs("---------- MESSAGE FOLLOWS ----------\n", f);
        print_options(f, "mail", m->mail_options, m->n_mail_options);
        print_options(f, "rcpt", m->rcpt_options, m->n_rcpt_options);
        print_data(f, data, dlen, terminal);
        fputs("------------ END MESSAGE ------------\n", f);
        if (fclose(f) != 0) {
            free(out);
            out = NULL;
        }
    }
    free(data);
    return out;
}

/* Print @p m to @p out. false: it could not be, and @p s was answered. */
static bool print_message(FILE *out, struct smtpd_session *s, const struct smtpd_message *m)
{
    int fd = fileno(out);
    size_t len;
    char *text = render(m, fd >= 0 && isatty(fd), &len);
    if (!text) {
        smtpd_reply(s, 451, "4.3.0", "Error: local error in processing, try again later");
        return false;
    }
    errno = 0;
    bool ok = fwrite(text, 1, len, out) == len;
    ok = fflush(out) == 0 && ok;
    free(text);
    if (!ok) {
        smtpd_session_log(s, SMTPD_LOG_ERROR, "cannot print the message: %s",
                          errno ? strerror(errno) : "short write");
        /* Drop what stdio still holds, so that the next message starts
         * clean once the output works again. */
        __fpurge(out);
        clearerr(out);
        smtpd_reply(s, 451, "4.3.0", "Error: local error in processing, try again later");
    }
    return ok;
}

static enum smtpd_verdict debugging_message(void *arg, struct smtpd_session *s,
                                            const struct smtpd_message *m)
{
    print_message(arg, s, m);
    return SMTPD_DONE;
}

void smtpd_debugging_handler(struct smtpd_handler *h, void *out)
{
    memset(h, 0, sizeof(*h));
    h->on_message = debugging_message;
    h->arg = out;
}

/* --also-maildir: print, then keep. */
static enum smtpd_verdict keep_message(void *arg, struct smtpd_session *s,
                                       const struct smtpd_message *m)
{
    struct smtpd_delivery *d = arg;
    return print_message(d->print_out, s, m) ? delivery_submit(d, s, m) : SMTPD_DONE;
}

static void keep_close(void *arg, struct smtpd_session *s)
{
    delivery_forget(arg, s);
}

void smtpd_debugging_keep_handler(struct smtpd_handler *h, void *out, struct smtpd_delivery *d)
{
    memset(h, 0, sizeof(*h));
    d->print_out = out;
    h->arg = d;
    h->on_message = keep_message;
    h->on_close = keep_close;
}
