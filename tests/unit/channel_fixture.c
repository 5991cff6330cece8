/* The channel test fixture; see channel_fixture.h. */
#include "channel_fixture.h"

/* ---- fake transport ---- */

void io_write(void *io, const char *buf, size_t len)
{
    struct fake_io *f = io;
    assert_true(len > 0);
    if (f->n_close)
        f->after_close += len;
    if (f->len + len + 1 > f->cap) {
        size_t cap = f->cap ? f->cap : 1024;
        while (cap < f->len + len + 1)
            cap *= 2;
        f->out = realloc(f->out, cap);
        assert_non_null(f->out);
        f->cap = cap;
    }
    memcpy(f->out + f->len, buf, len);
    f->len += len;
    f->out[f->len] = '\0';
    f->n_writes++;
}

void io_close(void *io)
{
    ((struct fake_io *)io)->n_close++;
}

void io_resume(void *io)
{
    ((struct fake_io *)io)->n_resume++;
}

bool io_backlogged(void *io)
{
    const struct fake_io *f = io;
    return f->backlog && f->len >= f->backlog;
}

void io_start_tls(void *io)
{
    ((struct fake_io *)io)->n_start_tls++;
}

bool io_delay(void *io, unsigned ms)
{
    struct fake_io *f = io;
    f->n_delay++;
    f->delay_ms = ms;
    return true;
}

const struct chan_transport fake_transport = {io_write,      io_close,     io_resume,
                                              io_backlogged, io_start_tls, io_delay};

/* ---- recording handler ---- */

char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "(null)");
    assert_non_null(d);
    return d;
}

void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

char **copy_strv(const char *const *v, size_t n)
{
    char **c = calloc(n + 1, sizeof(char *));
    assert_non_null(c);
    for (size_t i = 0; i < n; i++)
        c[i] = xstrdup(v[i]);
    return c;
}

void msg_free(struct msg_copy *m)
{
    free(m->peer_addr);
    free(m->helo);
    free(m->reverse_path);
    free_strv(m->forward_paths, m->n_forward_paths);
    free_strv(m->mail_options, m->n_mail_options);
    free(m->data);
    free(m->tls_protocol);
    free(m->tls_cipher);
    memset(m, 0, sizeof(*m));
}

enum smtpd_verdict on_connect(void *arg, struct smtpd_session *s)
{
    struct rec *r = arg;
    r->n_connect++;
    assert_string_equal(smtpd_session_peer_addr(s), PEER);
    assert_int_equal(smtpd_session_peer_port(s), PEER_PORT);
    assert_null(smtpd_session_helo(s));
    if (r->connect_pending) {
        r->waiting = s;
        return SMTPD_PENDING;
    }
    if (r->connect_code)
        assert_int_equal(smtpd_reply(s, r->connect_code, NULL, NULL), SMTPD_OK);
    return SMTPD_DONE;
}

enum smtpd_verdict on_mail(void *arg, struct smtpd_session *s, const char *reverse_path,
                           const char *const *params, size_t n_params)
{
    struct rec *r = arg;
    r->n_mail++;
    free(r->last_mail);
    r->last_mail = xstrdup(reverse_path);
    free_strv(r->mail_params, r->n_mail_params);
    r->mail_params = copy_strv(params, n_params);
    r->n_mail_params = n_params;
    if (r->mail_pending) {
        r->waiting = s;
        return SMTPD_PENDING;
    }
    if (r->mail_code && (!r->refuse_mail || strcmp(r->refuse_mail, reverse_path) == 0))
        assert_int_equal(smtpd_reply(s, r->mail_code, r->mail_enh, NULL), SMTPD_OK);
    return SMTPD_DONE;
}

enum smtpd_verdict on_rcpt(void *arg, struct smtpd_session *s, const char *forward_path,
                           const char *const *params, size_t n_params)
{
    struct rec *r = arg;
    (void)params;
    r->n_rcpt++;
    assert_int_equal(n_params, 0);
    free(r->last_rcpt);
    r->last_rcpt = xstrdup(forward_path);
    if (r->rcpt_pending) {
        r->waiting = s;
        return SMTPD_PENDING;
    }
    if (r->rcpt_code && (!r->refuse_rcpt || strcmp(r->refuse_rcpt, forward_path) == 0))
        assert_int_equal(smtpd_reply(s, r->rcpt_code, r->rcpt_enh, NULL), SMTPD_OK);
    return SMTPD_DONE;
}

enum smtpd_verdict on_message(void *arg, struct smtpd_session *s, const struct smtpd_message *m)
{
    struct rec *r = arg;
    r->n_message++;
    msg_free(&r->msg);
    r->msg.peer_addr = xstrdup(m->peer_addr);
    r->msg.peer_port = m->peer_port;
    r->msg.helo = xstrdup(m->helo);
    r->msg.reverse_path = xstrdup(m->reverse_path);
    r->msg.forward_paths = copy_strv(m->forward_paths, m->n_forward_paths);
    r->msg.n_forward_paths = m->n_forward_paths;
    r->msg.mail_options = copy_strv(m->mail_options, m->n_mail_options);
    r->msg.n_mail_options = m->n_mail_options;
    r->msg.n_rcpt_options = m->n_rcpt_options;
    r->msg.smtputf8 = m->smtputf8;
    r->msg.esmtp = m->esmtp;
    r->msg.tls_protocol = m->tls_protocol ? xstrdup(m->tls_protocol) : NULL;
    r->msg.tls_cipher = m->tls_cipher ? xstrdup(m->tls_cipher) : NULL;
    r->msg.tls_cipher_bits = m->tls_cipher_bits;
    assert_non_null(m->data);
    r->msg.data = malloc(m->data_len + 1);
    assert_non_null(r->msg.data);
    memcpy(r->msg.data, m->data, m->data_len);
    r->msg.data[m->data_len] = '\0';
    r->msg.data_len = m->data_len;
    r->msg_data_ptr = m->data;
    r->msg_data_len = m->data_len;
    if (r->message_pending) {
        r->waiting = s;
        return SMTPD_PENDING;
    }
    if (r->message_code)
        assert_int_equal(smtpd_reply(s, r->message_code, r->message_enh, r->message_text),
                         SMTPD_OK);
    return SMTPD_DONE;
}

void on_reset(void *arg, struct smtpd_session *s)
{
    (void)s;
    ((struct rec *)arg)->n_reset++;
}

void on_close(void *arg, struct smtpd_session *s)
{
    struct rec *r = arg;
    r->n_close++;
    r->closed = s;
    if (r->waiting == s)
        r->waiting = NULL;
}

/* ---- fixture ---- */

struct fx *fx_new(void)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    smtpd_config_init(&f->params.cfg);
    f->params.cfg.hostname = HOST;
    f->params.handler = (struct smtpd_handler){
        .on_connect = on_connect,
        .on_mail = on_mail,
        .on_rcpt = on_rcpt,
        .on_message = on_message,
        .on_reset = on_reset,
        .on_close = on_close,
        .arg = &f->rec,
    };
    f->ctx = "";
    return f;
}

void fx_free(struct fx *f)
{
    if (!f)
        return;
    channel_free(f->s);
    free(f->io.out);
    free(f->rec.last_mail);
    free(f->rec.last_rcpt);
    free_strv(f->rec.mail_params, f->rec.n_mail_params);
    msg_free(&f->rec.msg);
    free(f);
}

int setup(void **state)
{
    *state = fx_new();
    return 0;
}

int teardown(void **state)
{
    fx_free(*state);
    return 0;
}

/* Forget what was written so far. */
void out_clear(struct fx *f)
{
    f->io.len = 0;
    f->io.n_writes = 0;
    if (f->io.out)
        f->io.out[0] = '\0';
}

/* The output since the last check must be exactly @p want. */
void expect_out(struct fx *f, const char *want)
{
    unit_check_str(f->ctx, f->io.out, f->io.len, want);
    out_clear(f);
}

/* The output since the last check must be the single-line replies listed in
 * @p codes, separated by '|': "250 2.1.0" (code and enhanced code), "354"
 * (code, no enhanced code), "252 *" (code, any text). */
void expect_replies(struct fx *f, const char *codes)
{
    const char *o = f->io.out ? f->io.out : "", *oend = o + f->io.len;
    const char *c = codes;
    char shown[2048];
    unit_show(shown, sizeof(shown), o, f->io.len);
    while (*c) {
        const char *bar = strchr(c, '|');
        size_t cl = bar ? (size_t)(bar - c) : strlen(c);
        const char *eol = memchr(o, '\n', (size_t)(oend - o));
        bool ok = eol && eol > o && eol[-1] == '\r';
        bool any = cl >= 2 && c[cl - 1] == '*';
        size_t want = any ? cl - 2 : cl;
        ok = ok && (size_t)(eol - o) > want && memcmp(o, c, want) == 0 && o[want] == ' ';
        if (ok && !any && cl == 3) {
            /* No enhanced code: the text must not start with "d.d". */
            const char *t = o + 4;
            ok = !(t + 2 < eol && t[0] >= '2' && t[0] <= '5' && t[1] == '.');
        }
        if (!ok) {
            print_error("%s: expected replies \"%s\", got \"%s\" (at \"%.*s\")\n", f->ctx, codes,
                        shown, (int)cl, c);
            fail();
        }
        o = eol + 1;
        c += cl + (bar ? 1 : 0);
    }
    if (o != oend) {
        print_error("%s: expected replies \"%s\", got more: \"%s\"\n", f->ctx, codes, shown);
        fail();
    }
    out_clear(f);
}

void fx_start(struct fx *f)
{
    const struct chan_addrs addrs = {PEER, PEER_PORT, LOCAL, LOCAL_PORT, NULL, 0};
    f->s = channel_new(&f->params, &fake_transport, &f->io, &addrs, 7);
    assert_non_null(f->s);
    channel_start(f->s);
}

/* Feed a string; @return the bytes taken. */
size_t feed(struct fx *f, const char *in)
{
    return channel_feed(f->s, in, strlen(in));
}

/* Feed a string that must be taken whole. */
void feed_all(struct fx *f, const char *in)
{
    size_t n = strlen(in);
    size_t used = channel_feed(f->s, in, n);
    if (used != n) {
        char shown[256];
        print_error("%s: channel took %zu of %zu bytes of \"%s\"\n", f->ctx, used, n,
                    unit_show(shown, sizeof(shown), in, n));
        fail();
    }
}

/* Send @p in and expect the replies @p codes (see expect_replies). */
void dialog(struct fx *f, const char *in, const char *codes)
{
    feed_all(f, in);
    expect_replies(f, codes);
}

/* Start and greet with EHLO; the output is cleared. */
void fx_ehlo(struct fx *f)
{
    fx_start(f);
    expect_out(f, GREETING);
    feed_all(f, "EHLO client.example\r\n");
    assert_true(f->io.len > 0);
    out_clear(f);
}

void start_data(struct fx *f)
{
    dialog(f, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", "250 2.1.0|250 2.1.5|354");
}

void fx_helo(struct fx *f)
{
    fx_start(f);
    expect_out(f, GREETING);
    dialog(f, "HELO client.example\r\n", "250 *");
}
