/*
 * The channel test fixture shared by the channel's unit tests
 * (test_channel.c, test_extensions.c): a fake transport that records what
 * the channel writes, a handler whose callbacks record what they get and
 * answer as told, and dialogue helpers that check replies.
 */
#ifndef CHANNEL_FIXTURE_H
#define CHANNEL_FIXTURE_H

#include "unit_util.h"

#include "channel.h"
#include "reply.h"

#define HOST "test.example"
#define GREETING "220 " HOST " smtpd " SMTPD_VERSION " ESMTP\r\n"
#define PEER "192.0.2.1"
#define PEER_PORT 4242
#define LOCAL "198.51.100.25"
#define LOCAL_PORT 25

struct fake_io {
    char *out; /* bytes written since the last check */
    size_t len, cap;
    unsigned n_writes; /* write calls since the last check */
    unsigned n_close, n_resume;
    unsigned n_start_tls; /* start_tls calls */
    size_t after_close;   /* bytes written after close */
    size_t backlog;       /* backlogged() once this many bytes wait; 0: never */
    unsigned n_delay;     /* delay calls, and the last one's milliseconds */
    unsigned delay_ms;
};

struct msg_copy {
    char *peer_addr;
    uint16_t peer_port;
    char *helo;
    char *reverse_path;
    char **forward_paths;
    size_t n_forward_paths;
    char **mail_options;
    size_t n_mail_options;
    size_t n_rcpt_options;
    bool smtputf8;
    bool esmtp;
    char *data;
    size_t data_len;
    char *tls_protocol; /* NULL: plaintext */
    char *tls_cipher;
    int tls_cipher_bits;
};

struct rec {
    /* How to answer; 0 codes mean the default answer (SMTPD_DONE). */
    int connect_code;
    bool connect_pending;
    int mail_code;
    const char *mail_enh;
    const char *refuse_mail; /* refuse only this reverse-path (else all) */
    bool mail_pending;
    int rcpt_code;
    const char *rcpt_enh;
    const char *refuse_rcpt; /* refuse only this forward-path (else all) */
    bool rcpt_pending;
    int message_code;
    const char *message_enh;
    const char *message_text;
    bool message_pending;

    /* What happened. */
    unsigned n_connect, n_mail, n_rcpt, n_message, n_reset, n_close;
    char *last_mail;
    char **mail_params;
    size_t n_mail_params;
    char *last_rcpt;
    struct msg_copy msg;
    const char *msg_data_ptr; /* msg->data as handed over */
    size_t msg_data_len;
    struct smtpd_session *waiting; /* the session of a pending callback */
    struct smtpd_session *closed;  /* the session on_close was called for */
};

struct fx {
    struct chan_params params;
    struct fake_io io;
    struct rec rec;
    struct smtpd_session *s;
    const char *ctx; /* table row, for failure messages */
    void *user;      /* a test's own state (extension commands, hooks) */
};

/* The fixture whose recording handler got @p arg (its struct rec). */
#define FX_OF(arg) ((struct fx *)((char *)(arg)-offsetof(struct fx, rec)))

/* The fake transport (io: a struct fake_io). */
extern const struct chan_transport fake_transport;

void io_write(void *io, const char *buf, size_t len);
void io_close(void *io);
void io_resume(void *io);
bool io_backlogged(void *io);
void io_start_tls(void *io);
bool io_delay(void *io, unsigned ms);
/* Copies and frees for the recording handler. */
char *xstrdup(const char *s);
void free_strv(char **v, size_t n);
char **copy_strv(const char *const *v, size_t n);
void msg_free(struct msg_copy *m);
/* The recording handler's callbacks (arg: a struct rec). */
enum smtpd_verdict on_connect(void *arg, struct smtpd_session *s);
enum smtpd_verdict on_mail(void *arg, struct smtpd_session *s, const char *reverse_path,
                           const char *const *params, size_t n_params);
enum smtpd_verdict on_rcpt(void *arg, struct smtpd_session *s, const char *forward_path,
                           const char *const *params, size_t n_params);
enum smtpd_verdict on_message(void *arg, struct smtpd_session *s, const struct smtpd_message *m);
void on_reset(void *arg, struct smtpd_session *s);
void on_close(void *arg, struct smtpd_session *s);
/* The fixture: a channel with the recording handler, and dialogue helpers
 * (expect_replies: single-line replies as "250 2.1.0|354|252 *"). */
struct fx *fx_new(void);
void fx_free(struct fx *f);
int setup(void **state);
int teardown(void **state);
void out_clear(struct fx *f);
void expect_out(struct fx *f, const char *want);
void expect_replies(struct fx *f, const char *codes);
void fx_start(struct fx *f);
size_t feed(struct fx *f, const char *in);
void feed_all(struct fx *f, const char *in);
void dialog(struct fx *f, const char *in, const char *codes);
void fx_ehlo(struct fx *f);
void start_data(struct fx *f);
void fx_helo(struct fx *f);

#endif
