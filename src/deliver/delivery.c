/* The delivery handlers' object, handler and jobs; see deliver.h. */
#include "deliver.h"
#include "workpool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum {
    MAILDIR_THREADS = 4, /* fsyncs of different files overlap */
    MBOX_THREADS = 1,    /* one file: one writer per process */
};

static const char *const local_error = "Error: local error in processing, try again later";

void delivery_answer(struct delivery_job *j, int code, const char *enh, const char *reply,
                     const char *log)
{
    j->code = code;
    snprintf(j->enh, sizeof(j->enh), "%s", enh ? enh : "");
    snprintf(j->reply, sizeof(j->reply), "%s", reply ? reply : "");
    snprintf(j->log, sizeof(j->log), "%s", log ? log : "");
}

void delivery_fail(struct delivery_job *j, int err, const char *what, const char *path)
{
    char log[512];
    snprintf(log, sizeof(log), "%s %s: %s", what, path, strerror(err));
    if (err == ENOSPC || err == EDQUOT)
        delivery_answer(j, 452, "4.3.1", "Error: insufficient system storage", log);
    else
        delivery_answer(j, 451, "4.3.0", local_error, log);
}

int delivery_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno : EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A growing buffer; on failure it is freed and stays empty. */
struct buf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (!b->p || b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            free(b->p);
            *b = (struct buf){.failed = true};
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Message data with LF line ends, as local mail files and programs take
 * it; @p mboxrd quotes each line that matches ">*From " with one more
 * '>' (mboxrd); the text then ends with an empty line. */
static void put_data(struct buf *b, const char *p, size_t n, bool mboxrd)
{
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - p) : n; /* the line is p[i..end) */
        size_t stop = end > i && p[end - 1] == '\r' && nl ? end - 1 : end;
        if (mboxrd) {
            size_t k = i;
            while (k < stop && p[k] == '>')
                k++;
            if (k + 5 <= stop && memcmp(p + k, "From ", 5) == 0)
                put(b, ">", 1);
        }
        put(b, p + i, stop - i);
        if (nl || mboxrd)
            put(b, "\n", 1);
        i = nl ? end + 1 : n;
    }
    if (mboxrd)
        put(b, "\n", 1);
}

static void put_trace(struct buf *b, const struct smtpd_message *m)
{
    puts_(b, "Return-Path: <");
    puts_(b, m->reverse_path);
    puts_(b, ">\nDelivered-To: ");
    puts_(b, m->n_forward_paths ? m->forward_paths[0] : "");
    puts_(b, "\n");
}

static char *joined(const struct smtpd_message *m)
{
    struct buf b = {0};
    for (size_t i = 0; i < m->n_forward_paths; i++) {
        if (i)
            puts_(&b, ",");
        puts_(&b, m->forward_paths[i]);
    }
    return b.p ? b.p : strdup("");
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* "{sender}" replaced by the reverse-path, "{recipient}" by @p rcpt. */
static char *expand(const char *tmpl, const char *sender, const char *rcpt)
{
    struct buf b = {0};
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{sender}", 8) == 0) {
            puts_(&b, sender);
            p += 8;
        } else if (strncmp(p, "{recipient}", 11) == 0) {
            puts_(&b, rcpt);
            p += 11;
        } else {
            put(&b, p++, 1);
        }
    }
    return b.p ? b.p : strdup("");
}

/* The command's words, where one that holds {recipient} becomes one word
 * per forward-path (as in Postfix's pipe(8)). NULL: out of memory. */
static char **expand_argv(const struct smtpd_delivery *d, const struct smtpd_message *m)
{
    size_t n = 0;
    for (size_t i = 0; i < d->argc; i++)
        n += strstr(d->argv[i], "{recipient}") ? m->n_forward_paths : 1;
    char **v = calloc(n + 1, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; v && i < d->argc; i++) {
        bool each = strstr(d->argv[i], "{recipient}") != NULL;
        for (size_t r = 0; r < (each ? m->n_forward_paths : 1); r++) {
            v[k] = expand(d->argv[i], m->reverse_path, each ? m->forward_paths[r] : "");
            if (!v[k++]) {
                free_strv(v);
                return NULL;
            }
        }
    }
    return v;
}

static const char *const env_names[] = {
    "SENDER=", "RECIPIENTS=", "CLIENT_ADDRESS=", "HELO=", "SIZE="};

/* The program's environment: ours without the envelope's names, then the
 * envelope. NULL: out of memory. */
static char **make_envp(const struct smtpd_message *m)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **v = calloc(n + 6, sizeof(*v));
    if (!v)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool ours = false;
        for (size_t e = 0; e < 5; e++)
            ours |= strncmp(environ[i], env_names[e], strlen(env_names[e])) == 0;
        if (!ours && !(v[k++] = strdup(environ[i])))
            goto fail;
    }
    char *rcpts = joined(m), size[32];
    snprintf(size, sizeof(size), "%zu", m->data_len);
    const char *vals[] = {m->reverse_path, rcpts, m->peer_addr, m->helo ? m->helo : "", size};
    for (size_t e = 0; e < 5; e++) {
        struct buf b = {0};
        puts_(&b, env_names[e]);
        puts_(&b, vals[e] ? vals[e] : "");
        if (!(v[k++] = b.p)) {
            free(rcpts);
            goto fail;
        }
    }
    free(rcpts);
    return v;
fail:
    free_strv(v);
    return NULL;
}

static void job_free(struct delivery_job *j)
{
    free(j->text);
    free_strv(j->argv);
    free_strv(j->envp);
    free(j);
}

static struct delivery_job *job_new(const struct smtpd_delivery *d, const struct smtpd_message *m)
{
    struct delivery_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->d = d;
    delivery_answer(j, 451, "4.3.0", local_error, "the delivery did not run");
    struct buf b = {0};
    if (d->kind == DELIVER_MBOX) {
        char date[64];
        time_t now = time(NULL);
        struct tm tm;
        strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", localtime_r(&now, &tm));
        puts_(&b, "From ");
        puts_(&b, m->reverse_path[0] ? m->reverse_path : "MAILER-DAEMON");
        puts_(&b, " ");
        puts_(&b, date);
        puts_(&b, "\n");
    }
    if (d->kind != DELIVER_PIPE)
        put_trace(&b, m);
    put_data(&b, m->data, m->data_len, d->kind == DELIVER_MBOX);
    j->text = b.failed ? NULL : b.p ? b.p : strdup("");
    j->len = b.p ? b.len : 0;
    if (d->kind == DELIVER_PIPE) {
        j->argv = expand_argv(d, m);
        j->envp = make_envp(m);
    }
    if (!j->text || (d->kind == DELIVER_PIPE && (!j->argv || !j->envp))) {
        job_free(j);
        return NULL;
    }
    return j;
}

static void run(void *job)
{
    struct delivery_job *j = job;
    switch (j->d->kind) {
    case DELIVER_MAILDIR:
        maildir_run(j);
        break;
    case DELIVER_MBOX:
        mbox_run(j);
        break;
    case DELIVER_PIPE:
        pipe_run(j);
        break;
    }
}

static void done(void *job, struct smtpd_session *s, void *arg)
{
    (void)arg;
    struct delivery_job *j = job;
    if (s) {
        if (j->log[0]) {
            char esc[1100];
            smtpd_escape(esc, sizeof(esc), j->log, strlen(j->log));
            smtpd_session_log(s, j->code < 300 ? SMTPD_LOG_DEBUG : SMTPD_LOG_ERROR, "%s", esc);
        }
        if (smtpd_reply(s, j->code, j->enh[0] ? j->enh : NULL, j->reply[0] ? j->reply : NULL) ==
            SMTPD_ERR_CONFIG) /* text the reply cannot carry: the code still goes */
            smtpd_reply(s, j->code, j->enh[0] ? j->enh : NULL, NULL);
    }
    job_free(j);
}

enum smtpd_verdict delivery_submit(struct smtpd_delivery *d, struct smtpd_session *s,
                                   const struct smtpd_message *m)
{
    struct delivery_job *j = job_new(d, m);
    if (!j || workpool_submit(d->pool, s, j) != 0) {
        if (j)
            job_free(j);
        smtpd_session_log(s, SMTPD_LOG_ERROR, "cannot queue the message for delivery");
        smtpd_reply(s, 451, "4.3.0", local_error);
        return SMTPD_DONE;
    }
    return SMTPD_PENDING;
}

void delivery_forget(struct smtpd_delivery *d, struct smtpd_session *s)
{
    workpool_forget(d->pool, s);
}

static enum smtpd_verdict on_message(void *arg, struct smtpd_session *s,
                                     const struct smtpd_message *m)
{
    return delivery_submit(arg, s, m);
}

static void on_close(void *arg, struct smtpd_session *s)
{
    delivery_forget(arg, s);
}

void smtpd_delivery_handler(struct smtpd_handler *h, struct smtpd_delivery *d)
{
    memset(h, 0, sizeof(*h));
    h->arg = d;
    h->on_message = on_message;
    h->on_close = on_close;
}

static struct smtpd_delivery *delivery_new(struct event_base *base, enum delivery_kind kind,
                                           const char *path, unsigned threads)
{
    struct smtpd_delivery *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->kind = kind;
    d->path = path ? strdup(path) : NULL;
    d->pool = workpool_new(base, threads, run, done, d);
    if ((path && !d->path) || !d->pool) {
        smtpd_delivery_free(d);
        return NULL;
    }
    return d;
}

/* Maildir names must not hold '/' or ':' (the info separator). */
static void maildir_host(char *out, size_t outsz)
{
    char h[256];
    if (gethostname(h, sizeof(h)) != 0)
        snprintf(h, sizeof(h), "localhost");
    h[sizeof(h) - 1] = '\0';
    size_t k = 0;
    for (const char *p = h; *p && k + 5 < outsz; p++)
        k += (size_t)snprintf(out + k, outsz - k,
                              *p == '/'   ? "\\057"
                              : *p == ':' ? "\\072"
                                          : "%c",
                              *p);
    out[k] = '\0';
}

struct smtpd_delivery *smtpd_maildir_new(struct event_base *base, const char *dir)
{
    if (!base || !dir || !dir[0])
        return NULL;
    struct smtpd_delivery *d = delivery_new(base, DELIVER_MAILDIR, dir, MAILDIR_THREADS);
    if (d)
        maildir_host(d->host, sizeof(d->host));
    return d;
}

struct smtpd_delivery *smtpd_mbox_new(struct event_base *base, const char *file)
{
    if (!base || !file || !file[0])
        return NULL;
    return delivery_new(base, DELIVER_MBOX, file, MBOX_THREADS);
}

struct smtpd_delivery *smtpd_pipe_new(struct event_base *base, const char *const *argv,
                                      unsigned timeout, unsigned concurrency)
{
    size_t argc = 0;
    while (argv && argv[argc])
        argc++;
    if (!base || argc == 0 || timeout == 0 || concurrency == 0)
        return NULL;
    struct smtpd_delivery *d = delivery_new(base, DELIVER_PIPE, NULL, concurrency);
    if (!d)
        return NULL;
    d->timeout = timeout;
    d->argv = calloc(argc + 1, sizeof(*d->argv));
    for (size_t i = 0; d->argv && i < argc; i++)
        if (!(d->argv[d->argc++] = strdup(argv[i]))) {
            smtpd_delivery_free(d);
            return NULL;
        }
    if (!d->argv) {
        smtpd_delivery_free(d);
        return NULL;
    }
    return d;
}

void smtpd_delivery_free(struct smtpd_delivery *d)
{
    if (!d)
        return;
    workpool_free(d->pool);
    free_strv(d->argv);
    free(d->path);
    free(d);
}
