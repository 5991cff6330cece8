/*
 * The per-client SMTP state machine (smtpd's SMTPChannel). It never sees a
 * socket: bytes come in through channel_feed(), replies go out through a
 * small transport interface, so whole dialogues run in unit tests and
 * fuzzers. libevent lives in connection.c and server.c only.
 */
#ifndef SMTPD_CHANNEL_H
#define SMTPD_CHANNEL_H

#include "smtpd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chan_ext;
struct auth_guard;
struct cidr;
struct xclient_attrs;

/** What the channel needs from the connection below it. */
struct chan_transport {
    /** Queue @p len bytes for the client (one whole reply). */
    void (*write)(void *io, const char *buf, size_t len);
    /** Close once the queued replies are sent. The channel is then inert;
     *  the transport frees it later with channel_free(), never from inside
     *  a channel call. */
    void (*close)(void *io);
    /** A pending handler answer arrived outside channel_feed(): call
     *  channel_feed() again soon with the buffered input (not from inside
     *  this call). */
    void (*resume)(void *io);
    /** Whether so many replies wait unsent that no more commands should be
     *  taken now (the client is not reading them); NULL means never. When
     *  it says so after a command, channel_feed() returns early and the
     *  caller feeds the rest once the replies have gone out. */
    bool (*backlogged)(void *io);
    /** STARTTLS was answered 220 (queued with write; channel_request_tls):
     *  once it is sent,
     *  throw away every byte the client sent after the STARTTLS line (RFC
     *  3207 5, CVE-2011-0411: they must never be read as commands), do the
     *  handshake, then call channel_tls_started(), or drop the connection.
     *  Until then channel_feed() takes nothing. NULL: TLS cannot start
     *  (channel_request_tls() says so). */
    void (*start_tls)(void *io);
    /** A failed AUTH is answered late (smtpd_config.auth_failure_delay):
     *  call channel_delay_done() in @p ms milliseconds, from the event loop.
     *  Until then channel_feed() takes nothing. @return false when no timer
     *  can be had: the answer goes out at once. NULL: no delays. */
    bool (*delay)(void *io, unsigned ms);
};

/** Settings shared by all channels of a server; immutable while they run. */
struct chan_params {
    struct smtpd_config cfg; /* hostname is set */
    struct smtpd_handler handler;
    /* The library's own extension commands (STARTTLS when a TLS context is
     * there), after the handler's; see struct chan_ext. */
    const struct chan_ext *const *exts;
    size_t n_exts;
    /* AUTH failures per client address, shared by the server's sessions
     * (the one mutable thing here); NULL: per session only. */
    struct auth_guard *auth_guard;
    /* smtpd_config.xclient_networks, parsed: who may use XCLIENT. */
    const struct cidr *xclient_nets;
    size_t n_xclient_nets;
};

/** Which timeout applies now. */
enum chan_phase {
    PHASE_COMMAND, /* waiting for a command line: command_timeout */
    PHASE_DATA,    /* receiving data (after 354, or a BDAT transaction): data_timeout */
    PHASE_WAIT,    /* waiting for a handler: answer_timeout */
    PHASE_TLS,     /* STARTTLS answered: the TLS handshake comes next */
    PHASE_CLOSED,  /* closing: read nothing more */
};

/** Both ends of a client's connection, numeric text and ports. */
struct chan_addrs {
    const char *peer_addr;
    uint16_t peer_port;
    const char *local_addr;
    uint16_t local_port;
    /* The load balancer that sent a PROXY header for the peer, for the
     * connect log line; NULL: none. */
    const char *via_addr;
    uint16_t via_port;
};

/** Create a channel for a client. The addresses are copied. NULL: no memory. */
struct smtpd_session *channel_new(const struct chan_params *params, const struct chan_transport *tr,
                                  void *io, const struct chan_addrs *addrs, unsigned long id);

/** Run on_connect and send the greeting (or the refusal). */
void channel_start(struct smtpd_session *s);

/** Whether this session's client (its address when it connected) is in
 *  xclient_nets. */
bool channel_xclient_allowed(const struct smtpd_session *s);

/** From the library's own XCLIENT command, outside a transaction: the
 *  client is now the one @p a describes (address, port, HELO name, SASL
 *  login; an unknown one cleared, one not given as a new connection has
 *  it), and the session starts over as a new connection does, with one log
 *  line. The command then sends the new greeting (channel_greeting). */
void channel_xclient(struct smtpd_session *s, const struct xclient_attrs *a);

/** XCLIENT's PROTO, once its 220 is queued (that reply has no enhanced
 *  code): @p esmtp true is as after EHLO (ESMTP parameters, enhanced
 *  codes), false as after HELO. */
void channel_xclient_esmtp(struct smtpd_session *s, bool esmtp);

/** The text of the 220 greeting ("<hostname> smtpd <version> ESMTP") into
 *  @p buf (@p bufsz bytes). */
void channel_greeting(const struct smtpd_session *s, char *buf, size_t bufsz);

/** From the library's own BDAT command (RFC 3030 2), its argument parsed:
 *  once the command's step is over, the next @p size octets are the
 *  chunk, read whatever happens (so the session stays in step), then
 *  answered: 501 5.5.4 when not @p syntax_ok (a good size, then junk),
 *  503 5.5.1 when no greeting, MAIL or accepted RCPT came first,
 *  552 5.3.4 when the message would pass the size limit (the transaction
 *  ends), else 250 for a chunk before the last, and after the one @p last
 *  marks the handler's answer to the message, as after DATA's final dot.
 *  The command itself must not answer. */
void channel_bdat(struct smtpd_session *s, uint64_t size, bool last, bool syntax_ok);

/** From the library's own STARTTLS command: once its 220 answer is sent,
 *  ask the transport to start TLS. @return false when the transport cannot
 *  (then nothing happens). */
bool channel_request_tls(struct smtpd_session *s);

/** The TLS handshake finished, with @p protocol, @p cipher (copied) and
 *  @p bits. After STARTTLS the session starts over (RFC 3207 4.2: the
 *  greeting, EHLO and any transaction are forgotten); for implicit TLS call
 *  it before channel_start(). */
void channel_tls_started(struct smtpd_session *s, const char *protocol, const char *cipher,
                         int bits);

/** The settings of the server @p s belongs to. */
const struct smtpd_config *channel_config(const struct smtpd_session *s);

/** The library's AUTH command (auth.c) has decoded credentials: remember
 *  @p identity (copied) as the one being tried and ask the handler's
 *  on_auth. Its answer then decides: 235 authenticates the session, a
 *  refusal is counted, logged and answered after the failure delay.
 *  @p mechanism must be a string constant. */
enum smtpd_verdict channel_auth_check(struct smtpd_session *s, const char *mechanism,
                                      const char *identity, const char *password);

/** The failure delay asked for with transport->delay is over: send the
 *  answer it held and read on. */
void channel_delay_done(struct smtpd_session *s);

/** Feed client bytes. @return how many were taken; the rest must be fed
 *  again after transport->resume (a handler is pending), once the replies
 *  are sent (transport->backlogged said so) or never (closed). */
size_t channel_feed(struct smtpd_session *s, const char *buf, size_t len);

enum chan_phase channel_phase(const struct smtpd_session *s);

/** Whether part of a command line is buffered (the client is sending one). */
bool channel_line_pending(const struct smtpd_session *s);

/** Octets of message data received so far in DATA, or in the chunks of a
 *  BDAT transaction (0 outside them). */
size_t channel_data_received(const struct smtpd_session *s);

/** The client sends data below the minimum rate: 421 4.4.2 and close. */
void channel_too_slow(struct smtpd_session *s);

/** The client was silent too long: 421 4.4.2 and close. */
void channel_timeout(struct smtpd_session *s);

/** A handler left its answer pending longer than answer_timeout: 421
 *  4.3.0 and close; the late answer is refused (SMTPD_ERR_STATE). */
void channel_answer_timeout(struct smtpd_session *s);

/** Name who gave the answer a handler gives now (for relays, the
 *  upstream, "upstream 127.0.0.1:25"), for the transaction's log line.
 *  @p origin is borrowed and must outlive the session. */
void channel_reply_origin(struct smtpd_session *s, const char *origin);

/** Server shutdown: 421 4.3.2 now if idle, else once the transaction in
 *  progress ends. @p now: close at once with 421 whatever the state. */
void channel_shutdown(struct smtpd_session *s, bool now);

/** The client went away (EOF or error): log it; then free with channel_free. */
void channel_lost(struct smtpd_session *s, const char *why);

/** Free the channel; tells the handler (on_close), cancelling a pending
 *  answer. */
void channel_free(struct smtpd_session *s);

#endif
