/*
 * libsmtpd: an embeddable SMTP server (RFC 5321) on libevent 2.1.
 *
 * The library does what Python's smtpd module did with SMTPServer and
 * SMTPChannel: it accepts clients, runs one SMTP dialogue per client and hands
 * every accepted message to a handler (a struct of callbacks plus a void *arg).
 * Extensions: SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531),
 * PIPELINING (RFC 2920), ENHANCEDSTATUSCODES (RFC 2034, codes of RFC 3463),
 * STARTTLS (RFC 3207) and implicit TLS (RFC 8314) with OpenSSL 3, AUTH
 * (RFC 4954) with the SASL mechanisms PLAIN (RFC 4616) and LOGIN.
 * A handler may add commands of its own or replace built-in ones, and hook
 * the greeting, the EHLO keywords and DATA, as a subclass of smtpd's
 * SMTPChannel did (struct smtpd_command, struct smtpd_handler).
 *
 * Threading: a server and everything it hands out belong to the thread that
 * runs its event_base. The library has no global mutable state, never exits
 * and never prints; it reports through return values and the log callback.
 *
 * Signals: the library writes to sockets; the program must ignore SIGPIPE.
 *
 * OpenSSL: the only OpenSSL type in this API is SSL_CTX (a TLS context,
 * declared below as OpenSSL declares it); include <openssl/ssl.h> to make or
 * use one. Who frees what is said at each function that takes one.
 */
#ifndef SMTPD_H
#define SMTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks the library's exported functions; everything else is hidden. */
#define SMTPD_API __attribute__((visibility("default")))

/** Library version, also sent in the 220 greeting. */
#define SMTPD_VERSION "0.1.0"

struct event_base;
struct sockaddr;
/** OpenSSL's TLS context (<openssl/ssl.h> declares it the same way). */
typedef struct ssl_ctx_st SSL_CTX;

/** Errors returned by the library's functions. 0 is success. */
enum smtpd_err {
    SMTPD_OK = 0,
    SMTPD_ERR_NOMEM,   /**< out of memory */
    SMTPD_ERR_CONFIG,  /**< invalid configuration (see smtpd_strerror) */
    SMTPD_ERR_ADDRESS, /**< a "host:port" string that cannot be parsed */
    SMTPD_ERR_RESOLVE, /**< a host name that does not resolve */
    SMTPD_ERR_BIND,    /**< socket, bind or listen failed (errno is kept) */
    SMTPD_ERR_STATE,   /**< call not allowed now (e.g. a second reply) */
    SMTPD_ERR_REPLY,   /**< a reply code outside 200-599, or a 3xx where the step
                            takes none (see smtpd_reply) */
    SMTPD_ERR_TLS,     /**< a certificate, key or CA file that cannot be loaded,
                            or TLS asked for where none is configured */
};

/** A constant English text for an error code. Never NULL. */
SMTPD_API const char *smtpd_strerror(enum smtpd_err err);

/** Log levels of the log callback, most severe first. */
enum smtpd_log_level {
    SMTPD_LOG_ERROR = 0,
    SMTPD_LOG_WARNING,
    SMTPD_LOG_INFO,  /**< one line per connection and per transaction */
    SMTPD_LOG_DEBUG, /**< the whole dialogue, peer text escaped */
};

/**
 * Log callback. @p line is one NUL-terminated line without a newline, in
 * which every byte that came from a peer has been escaped (control
 * characters, backslash and invalid UTF-8 as \xNN). Valid only during the call.
 */
typedef void (*smtpd_log_fn)(void *arg, enum smtpd_log_level level, const char *line);

/** What to do with a CR or LF in message data that is not part of a CRLF
 *  (RFC 5321 2.3.8). Whatever the policy, only CRLF "." CRLF ends the data,
 *  so no message can be split in two (SMTP smuggling). */
enum smtpd_bare_lf {
    /** Treat it as a line end: the data handed on has CRLF everywhere, and a
     *  "." line inside it is dot-stuffed when relayed (Postfix's
     *  smtpd_forbid_bare_newline = normalize). The default. */
    SMTPD_BARE_LF_NORMALIZE = 0,
    /** Refuse the message with 550 5.5.2 after the final dot. */
    SMTPD_BARE_LF_REJECT,
    /** Keep the bytes as they came. */
    SMTPD_BARE_LF_ACCEPT,
};

/**
 * Server configuration. Fill it with smtpd_config_init() first, then change
 * fields. The server copies it (strings included) in smtpd_server_new().
 */
struct smtpd_config {
    /** Largest message in bytes (RFC 1870), advertised as SIZE. 0: no limit,
     *  no SIZE keyword. Default 33554432. */
    size_t data_size_limit;
    /** Advertise SMTPUTF8 and accept the SMTPUTF8 MAIL parameter (RFC 6531).
     *  Default false. */
    bool enable_smtputf8;
    /** smtpd's decode_data: 8BITMIME is not advertised, BODY is refused and
     *  message data must be valid UTF-8 (else 5xx after the final dot). Cannot
     *  be combined with enable_smtputf8. Default false. */
    bool decode_data;
    /** Name used in the greeting and EHLO reply. NULL: the machine's FQDN,
     *  looked up once in smtpd_server_new(). */
    const char *hostname;
    /** Seconds a client may take to send the next command line (RFC 5321
     *  4.5.3.2.7), and may go without reading a byte of its replies: a
     *  client is not read while its socket takes no more replies. 0: no
     *  timeout. Default 300. */
    unsigned command_timeout;
    /** Seconds a client may stay silent during DATA (RFC 5321 4.5.3.2.6).
     *  0: no timeout. Default 300. */
    unsigned data_timeout;
    /** Seconds a handler may take to answer a callback it left pending
     *  (SMTPD_PENDING); then the client gets "421 4.3.0", the session
     *  closes and on_close() cancels the answer. 0: no limit. Default 600,
     *  the longest a client waits for any reply (RFC 5321 4.5.3.2.6). */
    unsigned answer_timeout;
    /** Simultaneous clients; the next one gets "421 4.3.2" and is closed.
     *  0: no limit. Default 1000. */
    unsigned max_connections;
    /** Forward-paths per transaction; more get "452 4.5.3" (RFC 5321
     *  4.5.3.1.10). Default 1000. */
    unsigned max_recipients;
    /** Simultaneous clients from one IP address; the next gets "421 4.3.2".
     *  0: no limit (the default). */
    unsigned max_connections_per_ip;
    /** Unknown or malformed commands (replies 500-503, 555) a client may send;
     *  then "421 4.7.0" and close. 0: no limit. Default 10. */
    unsigned max_errors;
    /** Bytes per second a client must keep up during DATA, measured from
     *  10 seconds after the 354; a slower one gets "421 4.4.2", so that
     *  trickling clients cannot hold every slot. Default 500, as Postfix's
     *  smtpd_min_data_rate; 0: no minimum (data_timeout still applies). */
    unsigned min_data_rate;
    /** Bare CR / LF in message data. Default SMTPD_BARE_LF_NORMALIZE. */
    enum smtpd_bare_lf bare_lf;
    /** Set SO_REUSEPORT on the listening sockets, so that several servers
     *  (in several processes) can listen on one address and the kernel
     *  spreads the clients over them. Default false. */
    bool reuse_port;
    /** Log callback and its argument; NULL: no logging. */
    smtpd_log_fn log;
    void *log_arg;
    /** Most verbose level passed to the log callback. Default SMTPD_LOG_INFO. */
    enum smtpd_log_level log_level;
    /** TLS for clients (STARTTLS, RFC 3207, and implicit TLS listeners): a
     *  server context the application made (smtpd_tls_context_new() makes
     *  one with safe defaults). The server takes a reference of its own
     *  (SSL_CTX_up_ref) and frees it in smtpd_server_free(); the caller
     *  still frees its own. NULL: see tls_cert_file. */
    SSL_CTX *tls_ctx;
    /** When tls_ctx is NULL: PEM files of the certificate (its chain after
     *  it) and of the private key, loaded by smtpd_server_new() (a failure
     *  is SMTPD_ERR_TLS, and the reason goes to the log). Both NULL, the
     *  default: no TLS, STARTTLS is not offered. */
    const char *tls_cert_file;
    const char *tls_key_file;
    /** Before TLS, accept only EHLO, HELO, STARTTLS, NOOP, RSET and QUIT;
     *  everything else gets "530 5.7.0" (RFC 3207 4). Needs TLS. Default
     *  false. */
    bool require_tls;
    /** Seconds a TLS handshake may take, then the connection is closed.
     *  0: no limit. Default 30. */
    unsigned tls_handshake_timeout;
    /** AUTH (RFC 4954) is offered when the handler has on_auth, and by
     *  default only on TLS sessions: before TLS it is not in the EHLO reply
     *  and gets "538 5.7.11", since PLAIN and LOGIN send the password in
     *  the clear. true: offer it on plaintext sessions too. Default false. */
    bool auth_insecure;
    /** MAIL, RCPT and DATA get "530 5.7.0" until the client has
     *  authenticated (the submission rule of RFC 6409 4.3). Needs on_auth.
     *  Default false. */
    bool auth_required;
    /** Milliseconds before a failed AUTH is answered, doubled at each
     *  further failure of the session up to four times this (1 s, 2 s, 4 s,
     *  4 s... by default), so that guessing passwords is slow; every failure
     *  also counts toward max_errors. The failures of a client address are
     *  remembered for 10 minutes (256 addresses per server): a new session
     *  from it waits as long for every AUTH answer, a success included.
     *  0: no delay. Default 1000. */
    unsigned auth_failure_delay;
    /** Every connection begins with a PROXY protocol header, version 1 or
     *  2 (HAProxy's "The PROXY protocol" specification; HAProxy's
     *  send-proxy and send-proxy-v2), sent by a TCP load balancer before
     *  the client's bytes. The greeting (or the TLS handshake of an
     *  implicit TLS listener) waits for it; from then on the client's
     *  address in the header is the session's peer address
     *  (smtpd_session_peer_addr, struct smtpd_message, the relay decision,
     *  max_connections_per_ip, the log). A v2 LOCAL header (the balancer's
     *  health check) keeps the balancer's own address. A connection from
     *  outside proxy_networks, with a malformed header, or without a
     *  complete one within proxy_timeout is closed with one log line and
     *  no reply. Default false. */
    bool proxy_protocol;
    /** Who may send a PROXY header: "CIDR[,CIDR...]" (IPv4, IPv6). NULL,
     *  the default: loopback only ("127.0.0.0/8,::1"). */
    const char *proxy_networks;
    /** Seconds a connection may take to send its PROXY header. 0: no
     *  limit. Default 10. */
    unsigned proxy_timeout;
    /** XCLIENT (Postfix's XCLIENT_README): clients in these networks
     *  ("CIDR[,CIDR...]", matched against the address they connected
     *  from) see XCLIENT in EHLO and may send "XCLIENT ADDR=... PORT=...
     *  NAME=... HELO=... PROTO=... LOGIN=..." (xtext values;
     *  "[UNAVAILABLE]" and "[TEMPUNAVAIL]" for unknown) outside a
     *  transaction, as a proxy in front of smtpd (nginx's mail proxy) does:
     *  the session's client address, port, HELO name and authenticated
     *  identity (LOGIN, as if by AUTH) become those, the session starts
     *  over, and the answer is a new 220 greeting (PROTO=ESMTP: an ESMTP
     *  session from then on). After it the client is the one named: it may
     *  use XCLIENT again only if that address is in these networks too. An
     *  empty LOGIN= is no identity. on_connect is not run again; later
     *  callbacks see the new values. Others get "550 5.7.0". NULL, the
     *  default: nobody. */
    const char *xclient_networks;
    /** Speak LMTP (RFC 2033) instead of SMTP: LHLO greets the session as
     *  EHLO would (HELO and EHLO get 500), and after the end of data (the
     *  final dot, or BDAT LAST) every accepted recipient gets a reply of its
     *  own, in RCPT order: the handler's answer for it
     *  (smtpd_reply_rcpt()), else the message's one answer. The greeting
     *  says LMTP. Default false. */
    bool lmtp;
};

/** Fill @p cfg with the defaults documented above. */
SMTPD_API void smtpd_config_init(struct smtpd_config *cfg);

/**
 * One client session (smtpd's SMTPChannel). Owned by the library; a handler
 * receives it in each callback and may keep it until on_close() is called for
 * it, never after.
 */
struct smtpd_session;

/** A received message, as handed to on_message(). All pointers are owned by
 *  the library and valid until the handler has answered (smtpd_reply(), or
 *  in LMTP the smtpd_reply_rcpt() that answers the last recipient) or
 *  on_close() was called; copy what you need longer. */
struct smtpd_message {
    const char *peer_addr;            /**< client IP address, numeric text */
    uint16_t peer_port;               /**< client TCP port */
    const char *helo;                 /**< HELO/EHLO argument */
    const char *reverse_path;         /**< MAIL FROM address; "" for <> */
    const char *const *forward_paths; /**< RCPT TO addresses, in order */
    size_t n_forward_paths;
    const char *const *mail_options; /**< MAIL parameters, upper-cased */
    size_t n_mail_options;
    const char *const *rcpt_options; /**< RCPT parameters, upper-cased */
    size_t n_rcpt_options;
    bool smtputf8; /**< the client sent MAIL ... SMTPUTF8 */
    bool esmtp;    /**< the client greeted with EHLO */
    /** Message data: dot-unstuffed, CRLF line ends kept, may hold NUL bytes.
     *  Not NUL-terminated. */
    const char *data;
    size_t data_len; /**< bytes in data */
    /** The session's TLS: protocol ("TLSv1.3") and cipher (OpenSSL's name),
     *  NULL for plaintext; the cipher's secret bits (0 for plaintext). */
    const char *tls_protocol;
    const char *tls_cipher;
    int tls_cipher_bits;
    /** The identity the client authenticated as (AUTH, RFC 4954), NULL when
     *  it did not. */
    const char *auth_identity;
    /** The data came in BDAT chunks (CHUNKING, RFC 3030), not after DATA;
     *  data is the same either way. The relays send such a message with
     *  BDAT when the upstream offers CHUNKING. */
    bool chunked;
    /** The message came over LMTP (smtpd_config.lmtp): Received says
     *  "with LMTP" (RFC 3848). */
    bool lmtp;
};

/** What a handler callback returns. */
enum smtpd_verdict {
    /** The callback has answered with smtpd_reply(), or gives the default
     *  answer (250 for every callback; 220 greeting for on_connect). */
    SMTPD_DONE = 0,
    /** The callback will answer later, from the event loop, with exactly one
     *  smtpd_reply() (unless on_close() comes first). Until then the
     *  session reads no further commands. */
    SMTPD_PENDING = 1,
};

/** Where an extension command is allowed (struct smtpd_command.flags, or-ed).
 *  A command used elsewhere gets "503 5.5.1", as a built-in one does. */
enum smtpd_command_flags {
    /** Only after HELO/EHLO. */
    SMTPD_CMD_NEED_GREETING = 1,
    /** Only inside a transaction (after MAIL FROM was accepted). */
    SMTPD_CMD_NEED_MAIL = 2,
    /** Only outside a transaction. */
    SMTPD_CMD_NO_TRANSACTION = 4,
};

/**
 * An extension command (RFC 5321 2.2.1: a verb a server adds), as an
 * smtp_<VERB> method of a SMTPChannel subclass was. The handler's table of
 * them (smtpd_handler.commands) must outlive the server.
 *
 * A verb that names a built-in command (HELO, EHLO, MAIL, RCPT, DATA, RSET,
 * NOOP, QUIT, VRFY, EXPN, HELP) replaces it; the replacement may run the
 * built-in behaviour for the same line with smtpd_run_builtin() (the
 * subclass's super().smtp_MAIL(arg)). Only built-in behaviour changes the
 * session's state (transaction, DATA): an extension answers, and asks for
 * the rest; but a replacement of HELO or EHLO that answers 2xx itself greets
 * the session as the built-in one would (the argument becomes the HELO name,
 * the transaction is reset, MAIL may follow, and after EHLO replies carry
 * enhanced status codes), as a SMTPChannel subclass's smtp_EHLO did; its own
 * reply carries none (RFC 2034 3). The library's own extension commands (STARTTLS, on a
 * server with TLS) come after the handler's table: a handler's command of
 * the same verb replaces one, keyword included, and cannot run it.
 */
struct smtpd_command {
    /** The verb, matched case-insensitively against the command's first
     *  word; letters, digits and '-' (RFC 5321 4.1.1). */
    const char *verb;
    /**
     * The command arrived and its flags allow it. @p params: what follows
     * the verb, surrounding spaces removed (len 0: none), not
     * NUL-terminated, valid during the call only. Answer like any callback:
     * smtpd_reply() / smtpd_reply_lines() / smtpd_run_builtin() now or,
     * after returning SMTPD_PENDING, later; no answer gives 250 2.0.0.
     * A 3xx answer (334, as AUTH's challenges, RFC 4954 4) makes the next
     * line the client sends a continuation: it is handed whole, as @p
     * params, to this same fn, and to no command (unless it is longer than
     * the line limit: then it gets "500 5.5.2" and the exchange is over).
     */
    enum smtpd_verdict (*fn)(void *arg, struct smtpd_session *s, const char *params, size_t len);
    /** The EHLO keyword line it adds ("XSTATE", "XFOO 10"), or NULL. */
    const char *ehlo;
    /** Its HELP syntax ("XDELAY <seconds>"), or NULL: HELP lists the verb
     *  only. */
    const char *help;
    /** enum smtpd_command_flags, or-ed; 0: allowed at any time. */
    unsigned flags;
};

/** The EHLO reply's keyword lines (RFC 5321 4.1.1.1), as an on_ehlo hook
 *  sees them; owned by the library, valid during the hook only. */
struct smtpd_ehlo;

/** Lines in @p e (the reply's first line, the greeting, is not one). */
SMTPD_API size_t smtpd_ehlo_count(const struct smtpd_ehlo *e);
/** Line @p i (0-based), e.g. "SIZE 33554432"; NULL when out of range. */
SMTPD_API const char *smtpd_ehlo_line(const struct smtpd_ehlo *e, size_t i);
/** Add keyword line @p line (copied). @return SMTPD_OK, SMTPD_ERR_CONFIG for
 *  an empty line, one with control characters or longer than 200 bytes,
 *  SMTPD_ERR_STATE when the list is full (64 lines). */
SMTPD_API enum smtpd_err smtpd_ehlo_add(struct smtpd_ehlo *e, const char *line);
/** Remove every line whose keyword (first word) is @p keyword,
 *  case-insensitively. @return how many were removed. */
SMTPD_API size_t smtpd_ehlo_remove(struct smtpd_ehlo *e, const char *keyword);

/**
 * A handler: what the server does with sessions and messages. Every callback
 * is optional except on_message. Each gets the handler's @c arg first.
 * Fields after @c arg came later; a zeroed struct leaves them unused.
 */
struct smtpd_handler {
    /** A client connected, before the greeting. A reply of 4xx/5xx refuses it
     *  (RFC 5321 3.1, 554) and closes the session. */
    enum smtpd_verdict (*on_connect)(void *arg, struct smtpd_session *s);
    /** MAIL FROM passed the syntax checks. @p reverse_path is "" for <>;
     *  @p params are the upper-cased parameters. A non-2xx reply refuses it. */
    enum smtpd_verdict (*on_mail)(void *arg, struct smtpd_session *s, const char *reverse_path,
                                  const char *const *params, size_t n_params);
    /** RCPT TO passed the syntax checks. A non-2xx reply refuses this
     *  forward-path only; the transaction goes on. */
    enum smtpd_verdict (*on_rcpt)(void *arg, struct smtpd_session *s, const char *forward_path,
                                  const char *const *params, size_t n_params);
    /** The final dot was received: deliver @p msg. No reply: 250 2.0.0. */
    enum smtpd_verdict (*on_message)(void *arg, struct smtpd_session *s,
                                     const struct smtpd_message *msg);
    /** The transaction was reset (RSET, HELO/EHLO, or after DATA). */
    void (*on_reset)(void *arg, struct smtpd_session *s);
    /** The session ends (QUIT, disconnect, timeout, shutdown). If a callback
     *  was pending, its answer is cancelled: the handler must not call
     *  smtpd_reply() for @p s, nor use @p s, after this returns. */
    void (*on_close)(void *arg, struct smtpd_session *s);
    void *arg;
    /** Extension commands, looked up before the built-in ones (see struct
     *  smtpd_command); NULL/0: none. */
    const struct smtpd_command *commands;
    size_t n_commands;
    /** HELO or EHLO (@p esmtp) passed the syntax checks, with @p domain
     *  (RFC 5321 4.1.1.1). A 2xx answer, or none, accepts the greeting and
     *  the built-in reply goes out (for EHLO, with the keyword lines); a
     *  4xx/5xx answer refuses it and the session keeps its earlier
     *  greeting, if any. */
    enum smtpd_verdict (*on_helo)(void *arg, struct smtpd_session *s, const char *domain,
                                  bool esmtp);
    /** The EHLO reply is being built: add or remove keyword lines for this
     *  session (smtpd_ehlo_add(), smtpd_ehlo_remove()). Called after an
     *  accepted EHLO, synchronously: a decision that takes time belongs in
     *  on_helo, which may answer later. */
    void (*on_ehlo)(void *arg, struct smtpd_session *s, struct smtpd_ehlo *keywords);
    /** The DATA command, before the 354 (RFC 5321 4.1.1.4). A 2xx answer, or
     *  none, lets the data come; a 4xx/5xx refuses it and the transaction
     *  stays as it was (the client may RSET or send more RCPTs). With BDAT
     *  (RFC 3030) it is asked once the first chunk has been read; a refusal
     *  then answers that chunk and ends the transaction (later chunks get
     *  503), since they would otherwise become a shorter message. When
     *  that first chunk is also the last, an answer given later runs
     *  on_message() before smtpd_reply() returns. */
    enum smtpd_verdict (*on_data)(void *arg, struct smtpd_session *s);
    /**
     * The client sent credentials with AUTH (RFC 4954 4): decide. Setting
     * it makes the server offer AUTH with the SASL mechanisms PLAIN (RFC
     * 4616) and LOGIN (where, see smtpd_config.auth_insecure); the library
     * does the SASL exchange and the base64, the handler only checks.
     * @p mechanism: "PLAIN" or "LOGIN". @p identity: the authentication
     * identity (user name, UTF-8, no NUL; at most 255 bytes); a PLAIN
     * authorization identity other than it is refused before this call.
     * @p password: the password (at most 255 bytes). Both are valid during
     * the call only and the password is wiped after it: copy it (and wipe
     * the copy) to check it later.
     * Answer at once or later (SMTPD_PENDING) with smtpd_reply(): 235 (the
     * library's "235 2.7.0 Authentication successful" with a NULL text)
     * authenticates the session as @p identity; 535 5.7.8 (bad
     * credentials), 454 4.7.0 (cannot check now) or any other 4xx/5xx
     * refuses. Other 2xx and 3xx codes are SMTPD_ERR_REPLY. No answer
     * (SMTPD_DONE without a reply) refuses with 535 5.7.8: silence never
     * authenticates. A refusal is answered after smtpd_config's
     * auth_failure_delay and logged with the identity, never the password.
     */
    enum smtpd_verdict (*on_auth)(void *arg, struct smtpd_session *s, const char *mechanism,
                                  const char *identity, const char *password);
};

/**
 * Answer the current callback of session @p s, at once or later.
 * @p code: a reply code 2xx, 4xx or 5xx (RFC 5321 4.2); an extension
 * command may also answer 3xx (a continuation, see struct smtpd_command).
 * @p enhanced: an enhanced status code "class.subject.detail" whose class
 * is the code's (RFC 3463 2), or NULL for the standard one of the step; it
 * is sent only to clients that used EHLO (RFC 2034 3). @p text: one line
 * of text, or NULL for the standard text; CR, LF and control characters
 * are replaced with spaces, and a line is cut at 512 octets. Strings are
 * copied. Nothing is sent when it fails.
 * @return SMTPD_OK; SMTPD_ERR_STATE when nothing is waiting for an answer
 *         (or it was given already); SMTPD_ERR_REPLY for a code outside
 *         200-599 or a 3xx where the step takes none; SMTPD_ERR_CONFIG for
 *         a malformed enhanced code.
 */
SMTPD_API enum smtpd_err smtpd_reply(struct smtpd_session *s, int code, const char *enhanced,
                                     const char *text);

/**
 * Answer with a multi-line reply (RFC 5321 4.2.1): @p n lines of text
 * (n >= 1), sent as "code-text" lines and a last "code text" line, each
 * with @p enhanced (RFC 2034 3). Codes, escaping, copying and errors as
 * smtpd_reply(); SMTPD_ERR_CONFIG also when @p n is 0 or above 64.
 */
SMTPD_API enum smtpd_err smtpd_reply_lines(struct smtpd_session *s, int code, const char *enhanced,
                                           const char *const *lines, size_t n);

/**
 * LMTP (RFC 2033 4.2; smtpd_config.lmtp): answer for one recipient of the
 * message on_message() was given, at once or later, before the message's
 * answer. The call that answers the last recipient answers the message:
 * the smtpd_message is gone when it returns (copy the forward-paths you
 * still need first), and the session may go on to its next command. @p index: the recipient's
 * position in smtpd_message's forward_paths (0 first). @p code, @p enhanced and @p text as for
 * smtpd_reply(), one line, no 3xx. Once every recipient has an answer the
 * message is answered, with no smtpd_reply(); an smtpd_reply() answers all
 * recipients still without one. The replies go out, in RCPT order, only
 * then. Strings are copied; nothing is sent when it fails.
 * @return SMTPD_OK; SMTPD_ERR_STATE when the server is not LMTP, no message
 *         waits for its answer, @p index is past the last recipient or it
 *         has its answer already; SMTPD_ERR_REPLY and SMTPD_ERR_CONFIG as
 *         smtpd_reply(); SMTPD_ERR_NOMEM.
 */
SMTPD_API enum smtpd_err smtpd_reply_rcpt(struct smtpd_session *s, size_t index, int code,
                                          const char *enhanced, const char *text);

/**
 * From an extension command that replaced a built-in verb: answer by
 * running the built-in command with @p params (@p len bytes, copied), as
 * if no extension had it (the built-in's own checks and hooks included).
 * At once or later, like any answer. @return SMTPD_OK, or SMTPD_ERR_STATE
 * when no such extension is waiting for its answer.
 */
SMTPD_API enum smtpd_err smtpd_run_builtin(struct smtpd_session *s, const char *params, size_t len);

/** Per-session pointer for the handler; NULL until set. */
SMTPD_API void smtpd_session_set_data(struct smtpd_session *s, void *data);
SMTPD_API void *smtpd_session_data(const struct smtpd_session *s);
/** Client IP address (numeric text, valid for the session's life) and port. */
SMTPD_API const char *smtpd_session_peer_addr(const struct smtpd_session *s);
SMTPD_API uint16_t smtpd_session_peer_port(const struct smtpd_session *s);
/** HELO/EHLO argument so far, or NULL before the greeting. */
SMTPD_API const char *smtpd_session_helo(const struct smtpd_session *s);
/** The extension command whose fn is running or has not answered yet: a
 *  pointer into the handler's table (smtpd_handler.commands), so that one
 *  fn can serve several verbs (a binding's smtp_<VERB> methods); NULL at
 *  any other time. */
SMTPD_API const struct smtpd_command *smtpd_session_command(const struct smtpd_session *s);
/** Whether the client greeted with EHLO (ESMTP). */
SMTPD_API bool smtpd_session_esmtp(const struct smtpd_session *s);
/** The session's TLS protocol ("TLSv1.2", "TLSv1.3") and cipher (OpenSSL's
 *  name, "TLS_AES_256_GCM_SHA384"), or NULL while it is plaintext. Valid for
 *  the session's life. */
SMTPD_API const char *smtpd_session_tls_protocol(const struct smtpd_session *s);
SMTPD_API const char *smtpd_session_tls_cipher(const struct smtpd_session *s);
/** The identity the client authenticated as with AUTH (RFC 4954), or NULL
 *  before (and when it never did). Valid for the session's life. */
SMTPD_API const char *smtpd_session_auth_identity(const struct smtpd_session *s);

/* The session's state, read-only, at any time (the seed's SMTPChannel
 * attributes). Strings and arrays stay valid until the next callback of
 * that session. */

/** The transaction's reverse-path ("" for <>), or NULL before MAIL FROM was
 *  accepted (smtpd's mailfrom). */
SMTPD_API const char *smtpd_session_reverse_path(const struct smtpd_session *s);
/** The forward-paths accepted so far, in order, their number in @p *n
 *  (smtpd's rcpttos). Never NULL. */
SMTPD_API const char *const *smtpd_session_forward_paths(const struct smtpd_session *s, size_t *n);

/** What the session is doing (smtpd's smtp_state). */
enum smtpd_session_state {
    SMTPD_SESSION_COMMAND, /**< reading commands */
    SMTPD_SESSION_DATA,    /**< reading message data after 354 */
    SMTPD_SESSION_CLOSED,  /**< closing: nothing more is read */
};
SMTPD_API enum smtpd_session_state smtpd_session_state(const struct smtpd_session *s);
/** The server's name, as in the greeting (smtpd's fqdn). */
SMTPD_API const char *smtpd_session_hostname(const struct smtpd_session *s);
/** The address (numeric text) and port the client connected to. */
SMTPD_API const char *smtpd_session_local_addr(const struct smtpd_session *s);
SMTPD_API uint16_t smtpd_session_local_port(const struct smtpd_session *s);
/** Log a line through the server's log callback, prefixed with the session
 *  id. @p fmt is printf-style; the caller escapes peer text (smtpd_escape). */
SMTPD_API void smtpd_session_log(const struct smtpd_session *s, enum smtpd_log_level level,
                                 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/**
 * Escape @p len bytes of @p in for a log line into @p out (capacity
 * @p outsz bytes, always NUL-terminated): printable ASCII and valid UTF-8
 * are kept, other bytes and backslash become \xNN or \\, and the Unicode
 * line separators and bidirectional controls (which could make a log line
 * read otherwise) become \uXXXX. Output that does not
 * fit is cut and ends in "...". @return the length written, without the NUL.
 */
SMTPD_API size_t smtpd_escape(char *out, size_t outsz, const char *in, size_t len);

/**
 * Insert the line "X-Peer: <peer_addr>" into message data as smtpd's
 * DebuggingServer and PureProxy did: before the first empty line (the end
 * of the header section), or at the end when there is none.
 * @return a new buffer (free() it) holding the result, its length in
 *         @p out_len; NULL when out of memory.
 */
SMTPD_API char *smtpd_insert_x_peer(const char *data, size_t len, const char *peer_addr,
                                    size_t *out_len);

/**
 * Check a handler as smtpd_server_new() does: on_message set, and each
 * command of the table with a verb (1-32 letters, digits or '-', no two
 * alike), a fn, printable ehlo/help lines and known flags.
 * @return SMTPD_OK, or SMTPD_ERR_CONFIG with the reason, naming the field,
 *         in @p why (@p whysz bytes, NUL-terminated; may be NULL).
 */
SMTPD_API enum smtpd_err smtpd_handler_check(const struct smtpd_handler *h, char *why,
                                             size_t whysz);

/** The listening server (smtpd's SMTPServer). */
struct smtpd_server;

/**
 * Create a server on @p base with a copy of @p cfg and @p handler.
 * Looks up the FQDN once when cfg->hostname is NULL. Does not listen yet.
 * @return the server, or NULL with *err set: SMTPD_ERR_CONFIG (decode_data
 *         together with enable_smtputf8, or a handler smtpd_handler_check()
 *         refuses), SMTPD_ERR_NOMEM.
 */
SMTPD_API struct smtpd_server *smtpd_server_new(struct event_base *base,
                                                const struct smtpd_config *cfg,
                                                const struct smtpd_handler *handler,
                                                enum smtpd_err *err);

/**
 * Listen on every address that @p hostport resolves to. @p hostport is
 * "host:port", "[v6addr]:port" or ":port" (all addresses); port 0 takes a
 * free port. SO_REUSEADDR, backlog SOMAXCONN. Blocks for the name lookup
 * (call it at start-up).
 * @return SMTPD_OK, SMTPD_ERR_ADDRESS, SMTPD_ERR_RESOLVE or SMTPD_ERR_BIND
 *         (errno tells why; addresses bound before the failure are kept).
 */
SMTPD_API enum smtpd_err smtpd_server_listen(struct smtpd_server *srv, const char *hostport);

/**
 * Listen as smtpd_server_listen() does, with implicit TLS (RFC 8314 3.3,
 * port 465 in production): the handshake comes first, then the greeting;
 * the sessions are TLS from the first byte.
 * @return as smtpd_server_listen(), or SMTPD_ERR_TLS when the server has no
 *         TLS context.
 */
SMTPD_API enum smtpd_err smtpd_server_listen_tls(struct smtpd_server *srv, const char *hostport);

/** Number of listening sockets so far. */
SMTPD_API size_t smtpd_server_listener_count(const struct smtpd_server *srv);

/** Whether listening socket @p i (0-based) is an implicit TLS one. */
SMTPD_API bool smtpd_server_listener_tls(const struct smtpd_server *srv, size_t i);

/**
 * A server TLS context with the library's defaults: the certificate chain
 * in PEM file @p cert_file, the private key in PEM file @p key_file, TLS 1.2
 * and 1.3 only, OpenSSL's default cipher lists, no compression, no
 * renegotiation, SSL_MODE_RELEASE_BUFFERS (an idle session keeps no record
 * buffers). Reads both files now (call it before dropping privileges).
 * @return the context, which the caller frees with SSL_CTX_free(); NULL
 *         with the reason (file and OpenSSL's error) in @p why (@p whysz
 *         bytes, NUL-terminated).
 */
SMTPD_API SSL_CTX *smtpd_tls_context_new(const char *cert_file, const char *key_file, char *why,
                                         size_t whysz);

/**
 * Use @p ctx for the handshakes that start from now on (a renewed
 * certificate); sessions already in TLS keep theirs. The server takes a
 * reference (SSL_CTX_up_ref) and drops the one it had; the caller frees its
 * own. A server that had no TLS starts offering STARTTLS.
 * @return SMTPD_OK, or SMTPD_ERR_CONFIG when @p ctx is NULL.
 */
SMTPD_API enum smtpd_err smtpd_server_set_tls_context(struct smtpd_server *srv, SSL_CTX *ctx);

/**
 * Address of listening socket @p i (0-based) as "host:port" text ("[::1]:25"
 * for IPv6) into @p buf of @p bufsz bytes. @return SMTPD_OK or
 * SMTPD_ERR_STATE when @p i is out of range.
 */
SMTPD_API enum smtpd_err smtpd_server_address(const struct smtpd_server *srv, size_t i, char *buf,
                                              size_t bufsz);

/** The event_base the server runs on, for handlers that do their own I/O. */
SMTPD_API struct event_base *smtpd_server_base(const struct smtpd_server *srv);

/** Number of client sessions open now. */
SMTPD_API size_t smtpd_server_session_count(const struct smtpd_server *srv);

/**
 * Graceful shutdown: stop accepting, send "421 4.3.2" to idle clients and
 * close them, let transactions in progress finish, and after @p grace_seconds
 * close whatever is left with 421; a client that has not taken its replies
 * 5 seconds later (it does not read) is dropped. When the last session is
 * gone the server holds no events, so event_base_dispatch() returns once the
 * program's own events are gone too. Calling it twice does nothing more.
 */
SMTPD_API void smtpd_server_shutdown(struct smtpd_server *srv, unsigned grace_seconds);

/** Close every listener and session at once (handlers get on_close) and free
 *  the server. NULL is allowed. */
SMTPD_API void smtpd_server_free(struct smtpd_server *srv);

/** Built-in handlers, as smtpd's classes. */

/** DebuggingServer: prints each message to @p out (a FILE *, e.g. stdout)
 *  between "---------- MESSAGE FOLLOWS ----------" and
 *  "------------ END MESSAGE ------------", with the envelope inserted at
 *  the end of the header section as X-Peer (the client's address),
 *  X-MailFrom (the reverse-path, "<>" for the null path) and X-RcptTo (every
 *  forward-path, comma-separated), and flushes. Line ends are written as
 *  "\n". When @p out is a terminal, control characters other than TAB (C0,
 *  DEL, C1) and bytes that are not UTF-8 are written as \xNN, so a message
 *  cannot drive the terminal; to a file or pipe the bytes are kept. A write
 *  or flush that fails gives the client 451 4.3.0 and an error log line,
 *  never 250. @p out must outlive the server. */
SMTPD_API void smtpd_debugging_handler(struct smtpd_handler *h, void *out);

/** Sink: accepts every message and discards it. */
SMTPD_API void smtpd_sink_handler(struct smtpd_handler *h);

/**
 * Delivery handlers: Maildir, mbox and a program. Each keeps a message
 * before the client gets 250, on a few threads of its own (the writes,
 * fsyncs, locks and programs never run on the event loop; the session
 * waits, the others go on), and answers through the pending-answer
 * mechanism. Local files get LF line ends, "Return-Path: <reverse-path>"
 * and "Delivered-To: <first forward-path>" prepended, as local delivery
 * agents do. Failures are never 250: a full disk or quota gives
 * "452 4.3.1", another system error (permission, a missing or read-only
 * folder) "451 4.3.0", and nothing partial is left behind; the log line
 * says what failed. The object is made before a fork (--workers) if need
 * be: its threads start at the first message, in the process that takes it.
 */
struct smtpd_delivery;

/** Maildir (https://cr.yp.to/proto/maildir.html) at folder @p dir (copied):
 *  each message is written to dir/tmp under a unique name (seconds, then
 *  microseconds, process and counter, then the host), fsynced, renamed into
 *  dir/new, and dir/new fsynced. dir, tmp, new and cur are created (mode
 *  700) when missing, at delivery, by the user the process runs as then.
 *  Four messages at most are written at once.
 *  @return the object, or NULL when @p base or @p dir is NULL or empty, or
 *  out of memory. Free it with smtpd_delivery_free() after the servers that
 *  use it. */
SMTPD_API struct smtpd_delivery *smtpd_maildir_new(struct event_base *base, const char *dir);

/** An mbox file at @p file (copied; created, mode 600, when missing), in
 *  the mboxrd form: a "From <reverse-path or MAILER-DAEMON> <date>" line,
 *  one more '>' before each line that matches ">*From ", an empty line
 *  after each message. Appended under a dot-lock file (FILE.lock) and an
 *  fcntl write lock (an open file description lock: it excludes other
 *  processes, other threads and classic POSIX locks), fsynced, and
 *  truncated back to the size it had when the write or fsync fails. A lock
 *  that cannot be had in 30 seconds gives "451 4.2.0". One message at a
 *  time per process. @return as smtpd_maildir_new(). */
SMTPD_API struct smtpd_delivery *smtpd_mbox_new(struct event_base *base, const char *file);

/**
 * Delivery to a program (as Postfix's pipe(8)): @p argv (NULL-terminated,
 * copied; argv[0] is looked up on PATH) is run without a shell, in its own
 * process group, with the message (LF line ends, nothing added) on its
 * standard input, smtpd's standard output, and in its environment smtpd's
 * own plus SENDER (the reverse-path, "" for <>), RECIPIENTS (the
 * forward-paths, comma-separated), CLIENT_ADDRESS, HELO and SIZE (bytes of
 * the message as received). In each word "{sender}" is replaced by the
 * reverse-path, and a word that holds "{recipient}" becomes one word per
 * forward-path. Its exit status decides: 0 gives 250, unless it exited
 * before reading the whole message ("451 4.3.0"); 75 (EX_TEMPFAIL), a
 * signal, or still running after @p timeout seconds (then the group is
 * killed), and 126 or 127 (it could not be run) give "451 4.3.0"; any
 * other status gives "554 5.3.0" with the first line of its standard error
 * (escaped, at most 200 bytes) as the reply text. At most @p concurrency
 * programs run at once; the messages after them wait, oldest first, their
 * sessions paused.
 * @return the object, or NULL when @p base is NULL, @p argv empty, a count
 * 0, or out of memory.
 */
SMTPD_API struct smtpd_delivery *smtpd_pipe_new(struct event_base *base, const char *const *argv,
                                                unsigned timeout, unsigned concurrency);

/** Fill @p h (zeroed first) to deliver each message with @p d, which must
 *  outlive the servers that use @p h. on_message and on_close are set. */
SMTPD_API void smtpd_delivery_handler(struct smtpd_handler *h, struct smtpd_delivery *d);

/** DebuggingServer that also keeps each message (smtpd --also-maildir): as
 *  smtpd_debugging_handler(), and once printed the message is delivered
 *  with @p d; the client gets 250 only when both worked. */
SMTPD_API void smtpd_debugging_keep_handler(struct smtpd_handler *h, void *out,
                                            struct smtpd_delivery *d);

/** Wait for deliveries in progress (a program up to its timeout), free
 *  @p d. Call it after freeing the servers that use it. NULL is allowed. */
SMTPD_API void smtpd_delivery_free(struct smtpd_delivery *d);

/**
 * PureProxy and MailmanProxy: a relay to a smarthost, in real time. The upstream session
 * opens at MAIL FROM; each RCPT TO is passed on and the upstream's reply is
 * the client's; the data goes up after the final dot and the client gets 250
 * only once the upstream has taken the message. Upstream unreachable or
 * timed out: 451 4.4.1; lost in mid-transaction: 421 4.4.2 (the session
 * closes). A Received: trace field (RFC 5321 4.4) is prepended and X-Peer
 * inserted after the header section. Clients outside relay_networks get
 * 554 5.7.1 at RCPT TO (no open relay), unless they authenticated (AUTH:
 * a submitter may relay from anywhere); the Received field then says
 * ESMTPA or ESMTPSA (RFC 3848).
 *
 * MailmanProxy (mailman_lmtp set): at each RCPT TO, Mailman 3's LMTP server
 * (RFC 2033) is asked first. 250: a list address, delivered to Mailman over
 * that LMTP session (From: and Date: added when missing), from any client.
 * 550: not Mailman's, relayed to the smarthost as above. Mailman
 * unreachable: 451 4.4.1 for that recipient. After DATA the client gets 250
 * only if every destination took the message; a temporary failure anywhere
 * gives 4xx (a retry may then duplicate to the side that had accepted).
 */
/** TLS towards the smarthost, with Postfix's smtp_tls_security_level
 *  meanings. A TLS failure, or no STARTTLS where it is required, gives the
 *  client "451 4.7.5" at MAIL FROM and a log line that says why; it never
 *  falls back to plaintext where the policy forbids it. Pooled connections
 *  keep their TLS session (one relay has one policy). */
enum smtpd_relay_tls {
    SMTPD_RELAY_TLS_NONE = 0, /**< plaintext, STARTTLS is never used */
    SMTPD_RELAY_TLS_MAY,      /**< STARTTLS when offered, unverified; else plaintext */
    SMTPD_RELAY_TLS_ENCRYPT,  /**< STARTTLS required, unverified */
    /** STARTTLS required, the chain verified (tls_ca_file or the system's
     *  store) and the certificate must name the smarthost (SNI sent) */
    SMTPD_RELAY_TLS_VERIFY,
};

struct smtpd_proxy_config {
    /** Smarthost as "host:port" (name or address; "[v6]:port"). Required. */
    const char *upstream;
    /** Who may relay: "CIDR[,CIDR...]", IPv4 and IPv6. NULL: the default
     *  "127.0.0.0/8,::1/128". */
    const char *relay_networks;
    /** Our name in EHLO and in Received; NULL: the machine's FQDN. */
    const char *hostname;
    /** MailmanProxy: Mailman's LMTP server as "host:port" (Mailman 3's
     *  default is 127.0.0.1:8024). NULL: PureProxy. */
    const char *mailman_lmtp;
    /** MailmanProxy: only forward-paths in these domains ("a.org,b.org")
     *  are asked of Mailman; others go straight to the smarthost, even when
     *  Mailman is down. NULL: every forward-path is asked. */
    const char *mailman_domains;
    /** Seconds for each upstream step (connect, each reply). Default 60. */
    unsigned timeout;
    /** Idle upstream connections kept for reuse (RSET between messages).
     *  Default 4; 0: a new connection per transaction. */
    unsigned pool_size;
    /** Seconds an idle upstream connection is kept. Default 30. */
    unsigned idle_timeout;
    /** Log callback (relay lines, and the upstream dialogue at DEBUG). */
    smtpd_log_fn log;
    void *log_arg;
    enum smtpd_log_level log_level;
    /** TLS to the smarthost (not to Mailman's LMTP server). Default
     *  SMTPD_RELAY_TLS_MAY. */
    enum smtpd_relay_tls tls;
    /** SMTPD_RELAY_TLS_VERIFY: the CA certificates (PEM) the smarthost's
     *  chain must lead to; NULL: the system's store. */
    const char *tls_ca_file;
    /** Implicit TLS to the smarthost (RFC 8314 3.3, port 465) instead of
     *  STARTTLS; verified under SMTPD_RELAY_TLS_VERIFY. Not with
     *  SMTPD_RELAY_TLS_NONE. Default false. */
    bool smtps;
    /** SMTP AUTH to the smarthost (RFC 4954), as a SASL client: after EHLO
     *  (and after STARTTLS and the second EHLO) the relay authenticates
     *  with PLAIN (RFC 4616), or LOGIN when PLAIN is not offered, before
     *  the first MAIL of each connection; pooled connections stay
     *  authenticated. Both or neither (NULL, the default: no AUTH); each at
     *  most 255 bytes. Copied by smtpd_proxy_new() (the password's copy is
     *  wiped when the relay is freed), so the caller may wipe its own.
     *  The credentials go only over TLS, unless tls is
     *  SMTPD_RELAY_TLS_NONE; without TLS, or when the smarthost offers
     *  neither mechanism or refuses the credentials, the client gets
     *  "451 4.7.0" at MAIL FROM and the log says why (never the
     *  credentials). Not used towards Mailman's LMTP server. */
    const char *auth_username;
    const char *auth_password;
};

/** Fill @p cfg with the defaults documented above (upstream NULL). */
SMTPD_API void smtpd_proxy_config_init(struct smtpd_proxy_config *cfg);

struct smtpd_proxy;

/**
 * Create a relay on @p base with a copy of @p cfg. Starts no connection;
 * reads tls_ca_file now.
 * @return NULL with *err: SMTPD_ERR_ADDRESS (bad upstream), SMTPD_ERR_CONFIG
 *         (bad relay_networks, smtps without TLS, only one of the AUTH
 *         credentials or one too long), SMTPD_ERR_TLS (the CA
 *         file cannot be loaded; the reason goes to the log), SMTPD_ERR_NOMEM.
 */
SMTPD_API struct smtpd_proxy *
smtpd_proxy_new(struct event_base *base, const struct smtpd_proxy_config *cfg, enum smtpd_err *err);

/** Fill @p h with the relay's callbacks; @p p must outlive the server. */
SMTPD_API void smtpd_proxy_handler(struct smtpd_handler *h, struct smtpd_proxy *p);

/** Server shutdown: close the idle upstream connections and keep none from
 *  now on (transactions in flight still finish), so that the event loop can
 *  end. */
SMTPD_API void smtpd_proxy_shutdown(struct smtpd_proxy *p);

/** Close idle upstream connections and free the relay, after the server
 *  that used it. NULL is allowed. */
SMTPD_API void smtpd_proxy_free(struct smtpd_proxy *p);

/*
 * Plugins: a shared object loaded with `smtpd -c path.so [args...]` (the C
 * form of `python -m smtpd -c package.module.Class`). It exports
 *
 *     int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host,
 *                              struct smtpd_plugin *plugin);
 *
 * which fills plugin->handler (on_message at least) and may set start,
 * shutdown and teardown; it returns 0, or -1 with plugin->error set to why.
 * The older `int smtpd_plugin_init(struct smtpd_handler *h, int argc, char
 * **argv)` is still loaded when the v1 symbol is absent.
 */

/** The version of struct smtpd_plugin_host and struct smtpd_plugin in this
 *  header; a later version only adds fields at their ends. */
#define SMTPD_PLUGIN_VERSION 1
#define SMTPD_PLUGIN_SYMBOL_V1 "smtpd_plugin_init_v1"

/** What the program gives a plugin; valid for the program's life. */
struct smtpd_plugin_host {
    unsigned version;        /**< SMTPD_PLUGIN_VERSION of the program */
    struct event_base *base; /**< the event loop, for timers and I/O of its own */
    /** The program's log sink: call log(log_arg, level, line) for lines that
     *  are not about a session (smtpd_session_log() is for those); levels
     *  above log_level are dropped by the sink. */
    smtpd_log_fn log;
    void *log_arg;
    enum smtpd_log_level log_level;
    int argc; /**< the positional arguments after localhost:port */
    char **argv;
};

/** What a plugin gives the program; zeroed before init is called. */
struct smtpd_plugin {
    /** The handler, as an embedding program passes it to
     *  smtpd_server_new(); handler.arg is also the arg of the calls below. */
    struct smtpd_handler handler;
    /** The server was created and listens (with --workers: in each worker
     *  process, for its own server). May be NULL. */
    void (*start)(void *arg, struct smtpd_server *srv);
    /** SIGINT/SIGTERM: the server stops taking clients and the event loop
     *  ends once its sessions are gone, so release events that would keep it
     *  running (timers, sockets of your own). May be NULL. */
    void (*shutdown)(void *arg);
    /** After the event loop: free everything; the object is unloaded next.
     *  May be NULL. */
    void (*teardown)(void *arg);
    /** Why init failed, for the program's message (a static string). */
    const char *error;
};

typedef int (*smtpd_plugin_init_v1_fn)(const struct smtpd_plugin_host *host,
                                       struct smtpd_plugin *plugin);

/** The first plugin interface: fill @p h, @p argc/@p argv are the
 *  positional arguments after localhost:port; return 0 on success. Loaded
 *  when smtpd_plugin_init_v1 is not exported. */
#define SMTPD_PLUGIN_SYMBOL "smtpd_plugin_init"
typedef int (*smtpd_plugin_init_fn)(struct smtpd_handler *h, int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
