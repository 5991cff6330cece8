/*
 * Command line of the smtpd program: the options of `python -m smtpd` plus
 * our own. Parsing never exits or prints; main() does.
 */
#ifndef SMTPD_CLI_OPTIONS_H
#define SMTPD_CLI_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

struct options {
    bool nosetuid;
    bool debug;
    bool help;
    bool version;
    bool smtputf8;
    bool decode_data;
    const char *class_name; /* -c: built-in class or path of a .so */
    size_t size;            /* -s: bytes, 0 = no limit */
    const char *hostname;   /* --hostname, NULL = FQDN */
    unsigned max_connections;
    unsigned command_timeout;
    unsigned data_timeout;
    unsigned workers; /* processes serving the listeners */
    unsigned max_connections_per_ip;
    unsigned max_errors;
    unsigned max_recipients;
    unsigned min_data_rate;      /* bytes per second in DATA, 0 = none */
    int bare_lf;                 /* enum smtpd_bare_lf */
    const char *relay_networks;  /* --relay-networks, NULL = loopback */
    const char *mailman_lmtp;    /* --mailman-lmtp host:port */
    const char *mailman_domains; /* --mailman-domains, NULL = ask for all */
    unsigned relay_timeout;      /* --relay-timeout: seconds per upstream step */
    unsigned relay_idle_timeout; /* --relay-idle-timeout: seconds a pooled connection is kept */
    const char *tls_cert;        /* --tls-cert FILE (PEM, chain after it) */
    const char *tls_key;         /* --tls-key FILE (PEM) */
    const char *smtps;           /* --smtps HOST:PORT: implicit TLS listener */
    bool require_tls;            /* --require-tls */
    unsigned tls_handshake_timeout;
    bool proxy_protocol;        /* --proxy-protocol */
    const char *proxy_networks; /* --proxy-networks, NULL = loopback */
    unsigned proxy_timeout;     /* --proxy-timeout: seconds */
    bool proxy_timeout_set;
    const char *xclient_networks; /* --xclient-networks, NULL = nobody */
    bool lmtp;                    /* --lmtp: speak LMTP (RFC 2033) */
    const char *auth_file;        /* --auth-file FILE: user:hash lines */
    bool auth_accept_any;         /* --auth-accept-any */
    bool auth_insecure;           /* --auth-insecure */
    bool auth_required;           /* --auth-required */
    int relay_tls;                /* enum smtpd_relay_tls */
    const char *relay_ca;         /* --relay-ca FILE */
    bool relay_smtps;             /* --relay-smtps */
    const char *relay_auth_file;  /* --relay-auth-file FILE: the smarthost's credentials */
    const char *user;             /* --user: who to drop root privileges to */
    const char *maildir;          /* --maildir DIR (-c Maildir) */
    const char *mbox;             /* --mbox FILE (-c Mbox) */
    const char *pipe;             /* --pipe 'PROGRAM ARGS...' (-c Pipe), unsplit */
    unsigned pipe_timeout;        /* --pipe-timeout: seconds */
    unsigned pipe_concurrency;    /* --pipe-concurrency */
    bool pipe_timeout_set, pipe_concurrency_set;
    const char *also_maildir; /* --also-maildir DIR (-c DebuggingServer) */
    const char *local;        /* localhost:localport */
    const char *remote;       /* remotehost:remoteport */
    int n_extra;              /* arguments after localhost:port, for a .so handler */
    char **extra;
};

/** Parse argv into @p o (defaults first). @return 0, or -1 with a one-line
 *  reason in @p err (of @p errsz bytes). */
int options_parse(struct options *o, int argc, char **argv, char *err, size_t errsz);

/** The usage text for --help. */
extern const char options_usage[];

#endif
