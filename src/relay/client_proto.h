/*
 * The relay client's protocol, without I/O: which command is in flight,
 * which replies each step allows (RFC 5321 4.3.2; LMTP, RFC 2033 4.2),
 * EHLO keywords, dot-stuffing. Lines come in through cp_line(), commands
 * and data go out through a small output interface, so the whole machine
 * runs in a fuzzer. client.c adds DNS, sockets and timers.
 *
 * A reply the protocol does not allow at a step (250 to DATA, 354 to MAIL,
 * a 2xx to the final dot before the data was sent) is an upstream protocol
 * error: the connection is unusable, and the step gets a local 4xx, never
 * the upstream's code.
 *
 * SMTP AUTH (RFC 4954) as a SASL client, when credentials are set: after
 * the last EHLO, PLAIN with its initial response (RFC 4616), or LOGIN's
 * username/password exchange when only LOGIN is offered. The connection is
 * ready only once the upstream said 235. Credentials go only over TLS
 * unless plaintext was allowed; a refusal, no mechanism we know, or no TLS
 * is a local 451 4.7.0 (our configuration, or the upstream's, must change;
 * the client retries later).
 */
#ifndef SMTPD_CLIENT_PROTO_H
#define SMTPD_CLIENT_PROTO_H

#include "reply.h"

#include <stdbool.h>
#include <stddef.h>

/** Extensions the upstream advertised in its EHLO/LHLO reply. */
enum client_ext {
    EXT_SIZE = 1,
    EXT_8BITMIME = 2,
    EXT_SMTPUTF8 = 4,
    EXT_PIPELINING = 8,
    EXT_ENHANCEDSTATUSCODES = 16,
    EXT_STARTTLS = 32,
    EXT_CHUNKING = 64,
};

/** SASL mechanisms the upstream advertised (the EHLO's AUTH keyword). */
enum client_auth_mech {
    AUTH_MECH_PLAIN = 1,
    AUTH_MECH_LOGIN = 2,
};

/** What the machine does about STARTTLS (RFC 3207) after EHLO. */
enum cp_tls_want {
    CP_TLS_NO,   /* never */
    CP_TLS_MAY,  /* when offered; else, or when refused, go on in plaintext */
    CP_TLS_MUST, /* when offered; else fail with 451 4.7.5 */
};

/** One upstream reply, or one made here when the upstream failed. */
struct client_reply {
    int code;                  /* reply code; local failures are 451 or 421 */
    bool local;                /* made here: unreachable, lost, timed out, protocol error */
    bool last;                 /* the last reply of this step (LMTP DATA has several) */
    bool timed_out;            /* local: the upstream did not answer in time */
    char enh[16];              /* enhanced status code, "" when there was none */
    char text[REPLY_LINE_MAX]; /* text of the first line, without enh */
};

/** Where the machine is. */
enum cp_state {
    CP_CONNECTING, /* no connection yet: nothing is read */
    CP_GREETING,
    CP_EHLO, /* or LHLO */
    CP_HELO,
    CP_STARTTLS,   /* STARTTLS sent, waiting for 220 */
    CP_TLS,        /* the handshake is the caller's (CP_START_TLS) */
    CP_AUTH_PLAIN, /* AUTH PLAIN with the initial response sent, waiting for 235 */
    CP_AUTH_LOGIN, /* AUTH LOGIN sent, waiting for 334 (the username prompt) */
    CP_AUTH_USER,  /* LOGIN: the username sent, waiting for 334 */
    CP_AUTH_PASS,  /* LOGIN: the password sent, waiting for 235 */
    CP_READY,      /* connected, no command in flight */
    CP_MAIL,
    CP_RCPT,
    CP_DATA_CMD, /* DATA sent, waiting for 354 */
    CP_DATA_END, /* data and the final dot sent, or BDAT LAST and its chunk */
    CP_RSET,
    CP_DEAD, /* unusable: closed, failed or out of sync */
};

/** What the machine writes; both calls queue bytes for the upstream. */
struct cp_out {
    /** One command line, CRLF included. @p shown: what a log may show
     *  instead of the line, which carries credentials; NULL: the line. */
    void (*command)(void *arg, const char *line, size_t len, const char *shown);
    /** Message data, already dot-stuffed, final dot included; or the
     *  octets of a BDAT chunk, as they are. */
    void (*data)(void *arg, const char *buf, size_t len);
    void *arg;
};

struct client_proto {
    enum cp_state st;
    bool lmtp;
    const char *helo_name; /* borrowed: outlives the machine */
    struct cp_out out;
    unsigned ext;
    unsigned auth_mechs; /* enum client_auth_mech bits of the last EHLO */
    /* The reply being read. */
    bool in_reply;
    struct client_reply cur;
    /* Data for the DATA step, sent after 354. */
    char *data;
    size_t data_len;
    enum cp_tls_want tls_want;
    bool tls_active; /* the connection is TLS (after STARTTLS, or implicit) */
    /* SMTP AUTH credentials (borrowed; NULL: no AUTH), and whether they
     * may go without TLS. */
    const char *auth_user, *auth_pass;
    bool auth_plaintext;
    unsigned rcpts_ok;  /* accepted RCPTs in this transaction (LMTP) */
    unsigned lmtp_left; /* LMTP replies still due after the final dot */
    /* Why the machine died, for the log; peer text escaped. */
    char why[400];
    /* The failure is one of configuration (credentials refused, no
     * mechanism, no TLS for them): worth an error, not a warning. */
    bool config_error;
};

/** What a line (or a lost connection) means for the caller. */
enum cp_event {
    CP_MORE,      /* nothing for the user yet: read on */
    CP_REPLY,     /* *r answers the step in flight (r->last: the step is over) */
    CP_FAILED,    /* the connection is unusable (p->why says why); *r is the
                     local reply for whoever waits; close the connection */
    CP_START_TLS, /* STARTTLS was accepted: throw away what else was read,
                     do the handshake, then cp_tls_done() or cp_tls_failed() */
};

/** Start a machine. @p helo_name is borrowed. */
void cp_init(struct client_proto *p, bool lmtp, const char *helo_name, struct cp_out out);

/** Before connecting: what to do about STARTTLS; @p implicit: the
 *  connection is TLS from the start (RFC 8314), so STARTTLS is not used. */
void cp_set_tls(struct client_proto *p, enum cp_tls_want want, bool implicit);

/** Before connecting: authenticate as @p user with @p pass (borrowed; they
 *  outlive the machine; NULL: no AUTH), over TLS only unless
 *  @p plaintext. */
void cp_set_auth(struct client_proto *p, const char *user, const char *pass, bool plaintext);

/** The TCP connection is up (for implicit TLS, the handshake is done):
 *  wait for the greeting. */
void cp_connected(struct client_proto *p);

/** The handshake after STARTTLS finished: EHLO again (RFC 3207 4.2). */
void cp_tls_done(struct client_proto *p);

/** The handshake after STARTTLS failed (@p why, for the log): *r is the
 *  local 451 4.7.5 for whoever waits; the machine is dead. */
void cp_tls_failed(struct client_proto *p, const char *why, struct client_reply *r);

/**
 * One reply line from the upstream, CRLF removed. @p output_drained: every
 * byte written so far has been handed to the kernel (a reply to the final
 * dot that comes before that is premature). @return the event; for
 * CP_REPLY and CP_FAILED, *r is filled.
 */
enum cp_event cp_line(struct client_proto *p, const char *line, size_t len, bool output_drained,
                      struct client_reply *r);

/**
 * The connection was lost (@p why: "timeout", "connection closed", ...) or
 * must be dropped. Fills *r with the local reply for the step in flight:
 * 451 4.4.1 before the upstream is ready, 421 4.4.2 later. The machine is
 * then dead; p->why is @p why.
 */
void cp_lost(struct client_proto *p, const char *why, struct client_reply *r);

/** Commands; each only when cp_ready(). The reply comes through cp_line(). */
/** MAIL FROM:<@p reverse_path>@p params (params start with a space or are ""). */
void cp_mail(struct client_proto *p, const char *reverse_path, const char *params);
/** RCPT TO:<@p forward_path>. */
void cp_rcpt(struct client_proto *p, const char *forward_path);
/** The message @p data (CRLF line ends), and ownership of it (malloc'd):
 *  with @p chunked and an upstream that offers CHUNKING, as one chunk
 *  "BDAT <len> LAST" (RFC 3030 2) and the octets as they are; else DATA,
 *  then after 354 the data dot-stuffed here and the final dot. */
void cp_data(struct client_proto *p, char *data, size_t len, bool chunked);
/** RSET. */
void cp_rset(struct client_proto *p);
/** QUIT; the machine is then dead (the reply is not awaited). */
void cp_quit(struct client_proto *p);

bool cp_ready(const struct client_proto *p);
/** Extensions advertised (enum client_ext bits); valid once ready. */
unsigned cp_extensions(const struct client_proto *p);
/** Free what the machine holds (not the struct itself). */
void cp_free(struct client_proto *p);

/** What the upstream is being waited for in state @p st, for log lines
 *  ("MAIL", "the greeting"...). */
const char *cp_step_name(enum cp_state st, bool lmtp);

/** Fill @p r as a local reply. */
void cp_local_reply(struct client_reply *r, int code, const char *enh, const char *text);

#endif
