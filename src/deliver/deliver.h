/*
 * The delivery handlers' shared parts (Maildir, mbox, pipe): the object,
 * the job a message becomes on the loop thread, and each kind's run
 * function, which a pool thread calls. See smtpd_maildir_new() and the
 * others in smtpd.h.
 */
#ifndef SMTPD_DELIVER_H
#define SMTPD_DELIVER_H

#include "smtpd.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum delivery_kind { DELIVER_MAILDIR, DELIVER_MBOX, DELIVER_PIPE };

struct workpool;

struct smtpd_delivery {
    enum delivery_kind kind;
    char *path;           /* Maildir folder or mbox file */
    char host[256];       /* Maildir: this host, for unique names */
    atomic_ulong counter; /* Maildir: unique within the process */
    char **argv;          /* pipe: the command, with {sender} and {recipient} */
    size_t argc;
    unsigned timeout; /* pipe: seconds */
    struct workpool *pool;
    void *print_out; /* smtpd_debugging_keep_handler(): where it prints */
};

/** One message on its way. Built on the loop thread; a pool thread runs
 *  it and sets the answer; the loop thread sends it. */
struct delivery_job {
    const struct smtpd_delivery *d;
    char *text; /* what is written: LF line ends, what the kind adds */
    size_t len;
    char **argv, **envp; /* pipe: expanded */
    int code;            /* the answer, 250 when it worked */
    char enh[8];
    char reply[256];
    char log[512]; /* "" or why it failed, for the session's log */
};

/** Run @p j on a pool thread (one per kind). */
void maildir_run(struct delivery_job *j);
void mbox_run(struct delivery_job *j);
void pipe_run(struct delivery_job *j);

/** Set @p j's answer for a failed system call: 452 4.3.1 for a full disk
 *  or quota, 451 4.3.0 otherwise, and a log line "WHAT PATH: strerror". */
void delivery_fail(struct delivery_job *j, int err, const char *what, const char *path);

/** Set @p j's answer to @p code @p enh @p reply, and log line @p log. */
void delivery_answer(struct delivery_job *j, int code, const char *enh, const char *reply,
                     const char *log);

/** Write all of @p len bytes of @p p to @p fd. @return 0 or an errno. */
int delivery_write_all(int fd, const char *p, size_t len);

/** on_message of the delivery handlers, also DebuggingServer's with
 *  smtpd_debugging_keep_handler(): queue @p m for @p d. */
enum smtpd_verdict delivery_submit(struct smtpd_delivery *d, struct smtpd_session *s,
                                   const struct smtpd_message *m);

/** on_close of the same: @p s's answers go nowhere. */
void delivery_forget(struct smtpd_delivery *d, struct smtpd_session *s);

#endif
