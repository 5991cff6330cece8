/*
 * smtpd: the program. Parses the command line, picks the handler class,
 * reads the TLS certificate and key, binds, drops root, logs to standard
 * error and runs the event loop until SIGINT/SIGTERM; SIGHUP reads the
 * certificate and key and the --auth-file again. Exit codes follow
 * sysexits.h.
 */
#include "auth_check.h"
#include "memory.h"
#include "options.h"
#include "plugin.h"
#include "privdrop.h"
#include "words.h"
#include "relay_auth.h"
#include "workers.h"
#include "smtpd.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <netdb.h>
#include <sys/socket.h>

/* Seconds that transactions in flight get after SIGINT/SIGTERM. */
#define SHUTDOWN_GRACE_SECONDS 30

/* Seconds between handing free heap pages back to the kernel (memory.h). */
#define MEMORY_TRIM_SECONDS 10

/* The program's one log sink: standard error, a line per event. The pid
 * (set again in each worker) and the formatted second are kept, since a busy
 * server logs a line per message. */
static struct {
    long pid;
    time_t second;
    char when[32];
    enum smtpd_log_level level; /* the most verbose level written (-d: debug) */
} logger = {.level = SMTPD_LOG_INFO};

static void log_stderr(void *arg, enum smtpd_log_level level, const char *line)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    (void)arg;
    if (level > logger.level)
        return;
    time_t now = time(NULL);
    if (now != logger.second || !logger.when[0]) {
        struct tm tm;
        strftime(logger.when, sizeof(logger.when), "%Y-%m-%dT%H:%M:%S", gmtime_r(&now, &tm));
        logger.second = now;
    }
    if (logger.pid == 0)
        logger.pid = (long)getpid();
    fprintf(stderr, "%s smtpd[%ld] %s: %s\n", logger.when, logger.pid, names[level], line);
}

struct run {
    const struct options *o;
    struct smtpd_server *srv;
    struct smtpd_proxy *proxy;
    struct plugin *plugin;
    struct event *sigint, *sigterm, *sighup;
    struct memory *memory;
    struct workers workers;
    struct auth_policy auth;
};

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct run *r = arg;
    (void)what;
    log_stderr(NULL, SMTPD_LOG_INFO, sig == SIGINT ? "SIGINT: stopping" : "SIGTERM: stopping");
    workers_signal(&r->workers, (int)sig);
    smtpd_server_shutdown(r->srv, SHUTDOWN_GRACE_SECONDS);
    if (r->proxy)
        smtpd_proxy_shutdown(r->proxy);
    plugin_shutdown(r->plugin);
    /* With the signal events gone the loop ends when the last client does;
     * a second signal gets the default action. */
    event_del(r->sigint);
    event_del(r->sigterm);
    event_del(r->sighup);
    memory_free(r->memory);
    r->memory = NULL;
}

/* SIGHUP: the accounts again; a file that cannot be read leaves the old
 * ones in use. */
static void reload_accounts(struct run *r)
{
    char why[512], warn[512], line[700];
    struct accounts *a =
        accounts_load(r->o->auth_file, r->auth.accounts, why, sizeof(why), warn, sizeof(warn));
    if (warn[0])
        log_stderr(NULL, SMTPD_LOG_WARNING, warn);
    if (!a) {
        snprintf(line, sizeof(line), "SIGHUP: keeping the accounts in use: %s", why);
        log_stderr(NULL, SMTPD_LOG_ERROR, line);
        return;
    }
    accounts_free(r->auth.accounts);
    r->auth.accounts = a;
    snprintf(line, sizeof(line), "SIGHUP: --auth-file %s reloaded", r->o->auth_file);
    log_stderr(NULL, SMTPD_LOG_INFO, line);
}

/* SIGHUP: a renewed certificate and key for the next handshakes; a pair
 * that cannot be loaded leaves the old one in use. */
static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    struct run *r = arg;
    (void)what;
    workers_signal(&r->workers, (int)sig);
    char line[700];
    if (r->o->auth_file)
        reload_accounts(r);
    if (!r->o->tls_cert) {
        if (!r->o->auth_file)
            log_stderr(NULL, SMTPD_LOG_INFO, "SIGHUP: no --tls-cert, nothing to reload");
        return;
    }
    char why[512];
    SSL_CTX *ctx = smtpd_tls_context_new(r->o->tls_cert, r->o->tls_key, why, sizeof(why));
    if (!ctx) {
        snprintf(line, sizeof(line), "SIGHUP: keeping the certificate in use: %s", why);
        log_stderr(NULL, SMTPD_LOG_ERROR, line);
        return;
    }
    smtpd_server_set_tls_context(r->srv, ctx);
    SSL_CTX_free(ctx); /* the server holds its own reference */
    snprintf(line, sizeof(line), "SIGHUP: certificate %s reloaded", r->o->tls_cert);
    log_stderr(NULL, SMTPD_LOG_INFO, line);
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "smtpd: %s (see smtpd --help)\n", msg);
    return EX_USAGE;
}

/* What -c NAME made: a handler and what it needs freed at exit. */
struct class_state {
    struct smtpd_handler h;
    struct plugin plugin;
    struct smtpd_proxy *proxy;
    struct smtpd_delivery *delivery; /* Maildir, Mbox, Pipe, --also-maildir */
};

/* Mistakes that would only show as 451s or as spam later: say so now. */
static void warn_relay_setup(const struct options *o, bool mailman)
{
    const char *hosts[2] = {o->remote, mailman ? o->mailman_lmtp : NULL};
    for (int i = 0; i < 2 && hosts[i]; i++) {
        char host[256];
        const char *colon = strrchr(hosts[i], ':');
        size_t n = (size_t)(colon - hosts[i]);
        if (n >= sizeof(host))
            continue;
        memcpy(host, hosts[i], n);
        host[n] = '\0';
        if (host[0] == '[' && n >= 2 && host[n - 1] == ']') {
            memmove(host, host + 1, n - 2);
            host[n - 2] = '\0';
        }
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        if (getaddrinfo(host, NULL, &hints, &res) != 0) {
            char line[400];
            snprintf(line, sizeof(line), "%s does not resolve now: mail to it will get 451",
                     hosts[i]);
            log_stderr(NULL, SMTPD_LOG_WARNING, line);
        }
        if (res)
            freeaddrinfo(res);
    }
    if (o->relay_networks && (strstr(o->relay_networks, "/0") != NULL))
        log_stderr(NULL, SMTPD_LOG_WARNING,
                   "--relay-networks includes a /0 network: this is an open relay");
}

static int make_proxy(const struct options *o, struct event_base *base, bool mailman,
                      struct class_state *cs)
{
    struct smtpd_proxy_config pc;
    smtpd_proxy_config_init(&pc);
    pc.upstream = o->remote;
    if (mailman) {
        pc.mailman_lmtp = o->mailman_lmtp;
        pc.mailman_domains = o->mailman_domains;
    }
    pc.relay_networks = o->relay_networks;
    pc.hostname = o->hostname;
    pc.timeout = o->relay_timeout;
    pc.idle_timeout = o->relay_idle_timeout;
    pc.log = log_stderr;
    pc.log_level = o->debug ? SMTPD_LOG_DEBUG : SMTPD_LOG_INFO;
    pc.tls = (enum smtpd_relay_tls)o->relay_tls;
    pc.tls_ca_file = o->relay_ca;
    pc.smtps = o->relay_smtps;
    /* Read now, while a root-only file can still be read. */
    struct relay_auth auth = {0};
    if (o->relay_auth_file) {
        char why[512];
        if (relay_auth_load(o->relay_auth_file, o->remote, &auth, why, sizeof(why)) != 0) {
            fprintf(stderr, "smtpd: %s\n", why);
            return EX_CONFIG;
        }
        pc.auth_username = auth.username;
        pc.auth_password = auth.password;
    }
    enum smtpd_err err;
    cs->proxy = smtpd_proxy_new(base, &pc, &err);
    relay_auth_free(&auth); /* the relay keeps its own copy */
    if (!cs->proxy && err == SMTPD_ERR_TLS) {
        /* The reason is in the log line before. */
        fprintf(stderr, "smtpd: cannot set up TLS to the smarthost (--relay-ca %s)\n",
                o->relay_ca ? o->relay_ca : "(system)");
        return EX_CONFIG;
    }
    if (!cs->proxy) {
        /* The addresses and networks were checked with the options: what
         * is left is the list of domains, or memory. */
        if (err == SMTPD_ERR_NOMEM) {
            fprintf(stderr, "smtpd: cannot start the relay: %s\n", smtpd_strerror(err));
            return EX_OSERR;
        }
        char msg[300];
        snprintf(msg, sizeof(msg),
                 "cannot start the relay: %s (remote '%s', --mailman-domains '%s')",
                 smtpd_strerror(err), o->remote, o->mailman_domains ? o->mailman_domains : "");
        return usage_error(msg);
    }
    smtpd_proxy_handler(&cs->h, cs->proxy);
    warn_relay_setup(o, mailman);
    return 0;
}

/* A handler from a shared object: the program's event loop, log and
 * arguments go to its init. */
static int load_plugin(const struct options *o, struct event_base *base, struct class_state *cs)
{
    const struct smtpd_plugin_host host = {
        .version = SMTPD_PLUGIN_VERSION,
        .base = base,
        .log = log_stderr,
        .log_level = logger.level,
        .argc = o->n_extra,
        .argv = o->extra,
    };
    char err[512];
    int rc = plugin_load(&cs->plugin, o->class_name, &host, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "smtpd: %s\n", err);
        return rc;
    }
    cs->h = cs->plugin.p.handler;
    return 0;
}

/* -c Maildir, Mbox and Pipe, and DebuggingServer --also-maildir. */
static int make_delivery(const struct options *o, struct event_base *base, struct class_state *cs)
{
    const char *name = o->class_name;
    if (strcmp(name, "Pipe") == 0) {
        char why[128];
        char **argv = words_split(o->pipe, why, sizeof(why));
        if (!argv) {
            char msg[256];
            snprintf(msg, sizeof(msg), "invalid --pipe (%s)", why);
            return usage_error(msg);
        }
        cs->delivery =
            smtpd_pipe_new(base, (const char *const *)argv, o->pipe_timeout, o->pipe_concurrency);
        words_free(argv);
    } else if (strcmp(name, "Mbox") == 0) {
        cs->delivery = smtpd_mbox_new(base, o->mbox);
    } else {
        cs->delivery = smtpd_maildir_new(base, o->maildir ? o->maildir : o->also_maildir);
    }
    if (!cs->delivery) {
        fprintf(stderr, "smtpd: cannot set up -c %s\n", name);
        return EX_OSERR;
    }
    if (o->also_maildir)
        smtpd_debugging_keep_handler(&cs->h, stdout, cs->delivery);
    else
        smtpd_delivery_handler(&cs->h, cs->delivery);
    return 0;
}

/* Fill the handler for -c NAME. Returns 0 or a sysexits code. */
static int pick_class(const struct options *o, struct event_base *base, struct class_state *cs)
{
    struct smtpd_handler *h = &cs->h;
    const char *name = o->class_name;
    if (plugin_is_path(name))
        return load_plugin(o, base, cs);
    if (o->n_extra > 0)
        return usage_error("too many arguments");
    if (strcmp(name, "DebuggingServer") == 0 && o->also_maildir)
        return make_delivery(o, base, cs);
    if (strcmp(name, "DebuggingServer") == 0) {
        smtpd_debugging_handler(h, stdout);
        return 0;
    }
    if (strcmp(name, "Maildir") == 0 || strcmp(name, "Mbox") == 0 || strcmp(name, "Pipe") == 0)
        return make_delivery(o, base, cs);
    if (strcmp(name, "PureProxy") == 0 || strcmp(name, "MailmanProxy") == 0)
        return make_proxy(o, base, strcmp(name, "MailmanProxy") == 0, cs);
    if (strcmp(name, "Sink") == 0) {
        smtpd_sink_handler(h);
        return 0;
    }
    if (strcmp(name, "SMTPServer") == 0)
        return usage_error("SMTPServer is the abstract base class and handles no message; "
                           "use -c DebuggingServer, -c Sink or a handler of your own");
    char msg[256];
    snprintf(msg, sizeof(msg),
             "unknown class '%.100s' (PureProxy, MailmanProxy, DebuggingServer, Sink, "
             "Maildir, Mbox, Pipe, "
             "or a shared object: path/name.so exporting %s)",
             name, SMTPD_PLUGIN_SYMBOL_V1);
    return usage_error(msg);
}

/* --auth-file (read now, before root is dropped) or --auth-accept-any
 * gives @p h its on_auth. Returns 0 or a sysexits code. */
static int setup_auth(const struct options *o, struct auth_policy *p, struct smtpd_handler *h,
                      struct event_base *base)
{
    if (!o->auth_file && !o->auth_accept_any)
        return 0;
    if (h->on_auth) {
        fprintf(stderr,
                "smtpd: the handler of -c %s checks AUTH itself: no --auth-file or "
                "--auth-accept-any with it\n",
                o->class_name);
        return EX_USAGE;
    }
    if (o->auth_file) {
        char why[512], warn[512];
        p->accounts = accounts_load(o->auth_file, NULL, why, sizeof(why), warn, sizeof(warn));
        if (warn[0])
            log_stderr(NULL, SMTPD_LOG_WARNING, warn);
        if (!p->accounts) {
            fprintf(stderr, "smtpd: %s\n", why);
            return EX_CONFIG;
        }
    }
    p->accept_any = o->auth_accept_any;
    auth_check_handler(h, p, base);
    if (!o->tls_cert && !o->auth_insecure)
        log_stderr(NULL, SMTPD_LOG_WARNING,
                   "AUTH is offered over TLS only, and there is no --tls-cert: no client can "
                   "authenticate (--auth-insecure offers AUTH in plaintext)");
    return 0;
}

/* Listen on @p addr (implicit TLS: @p tls). Returns 0 or a sysexits code. */
static int listen_on(struct smtpd_server *srv, const char *addr, bool tls)
{
    enum smtpd_err err = tls ? smtpd_server_listen_tls(srv, addr) : smtpd_server_listen(srv, addr);
    if (err == SMTPD_OK)
        return 0;
    int e = errno;
    fprintf(stderr, "smtpd: cannot listen on %s: %s\n", addr,
            err == SMTPD_ERR_BIND ? strerror(e) : smtpd_strerror(err));
    return err == SMTPD_ERR_ADDRESS                                         ? EX_USAGE
           : err == SMTPD_ERR_BIND && e != EADDRINUSE && e != EADDRNOTAVAIL ? EX_OSERR
                                                                            : EX_UNAVAILABLE;
}

static int serve(const struct options *o)
{
    struct smtpd_config cfg;
    smtpd_config_init(&cfg);
    cfg.data_size_limit = o->size;
    cfg.enable_smtputf8 = o->smtputf8;
    cfg.decode_data = o->decode_data;
    cfg.hostname = o->hostname;
    cfg.max_connections = o->max_connections;
    cfg.command_timeout = o->command_timeout;
    cfg.data_timeout = o->data_timeout;
    cfg.max_connections_per_ip = o->max_connections_per_ip;
    cfg.max_errors = o->max_errors;
    cfg.max_recipients = o->max_recipients;
    cfg.min_data_rate = o->min_data_rate;
    cfg.bare_lf = (enum smtpd_bare_lf)o->bare_lf;
    cfg.reuse_port = o->workers > 1;
    cfg.log = log_stderr;
    cfg.log_level = logger.level;
    cfg.require_tls = o->require_tls;
    cfg.tls_handshake_timeout = o->tls_handshake_timeout;
    cfg.proxy_protocol = o->proxy_protocol;
    cfg.proxy_networks = o->proxy_networks;
    cfg.proxy_timeout = o->proxy_timeout;
    cfg.xclient_networks = o->xclient_networks;
    cfg.lmtp = o->lmtp;
    cfg.auth_insecure = o->auth_insecure;
    cfg.auth_required = o->auth_required;
    SSL_CTX *tls_ctx = NULL;
    if (o->tls_cert) {
        /* Read now, while the key may still be readable by root only. */
        char why[512];
        tls_ctx = smtpd_tls_context_new(o->tls_cert, o->tls_key, why, sizeof(why));
        if (!tls_ctx) {
            fprintf(stderr, "smtpd: %s\n", why);
            return EX_CONFIG;
        }
        cfg.tls_ctx = tls_ctx;
    }

    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "smtpd: cannot create the event loop\n");
        SSL_CTX_free(tls_ctx);
        return EX_OSERR;
    }
    struct class_state cs = {0};
    struct run r = {.o = o};
    struct smtpd_server *others[WORKERS_MAX] = {0}; /* --workers: not yet forked */
    enum smtpd_err err;
    int rc = pick_class(o, base, &cs);
    if (rc != 0)
        goto out;
    r.proxy = cs.proxy;
    r.plugin = &cs.plugin;
    rc = setup_auth(o, &r.auth, &cs.h, base);
    if (rc != 0)
        goto out;
    r.srv = smtpd_server_new(base, &cfg, &cs.h, &err);
    if (!r.srv) {
        fprintf(stderr, "smtpd: %s\n", smtpd_strerror(err));
        rc = err == SMTPD_ERR_CONFIG ? EX_USAGE : EX_OSERR;
        goto out;
    }
    rc = listen_on(r.srv, o->local, false);
    if (rc == 0 && o->smtps)
        rc = listen_on(r.srv, o->smtps, true);
    if (rc != 0)
        goto out;
    /* --workers: one more server per worker on the very same addresses. */
    for (unsigned i = 1; i < o->workers && i < WORKERS_MAX; i++) {
        others[i] = smtpd_server_new(base, &cfg, &cs.h, &err);
        for (size_t j = 0; others[i] && j < smtpd_server_listener_count(r.srv); j++) {
            char addr[80];
            bool tls = smtpd_server_listener_tls(r.srv, j);
            if (smtpd_server_address(r.srv, j, addr, sizeof(addr)) != SMTPD_OK ||
                (tls ? smtpd_server_listen_tls(others[i], addr)
                     : smtpd_server_listen(others[i], addr)) != SMTPD_OK) {
                smtpd_server_free(others[i]);
                others[i] = NULL;
            }
        }
        if (!others[i]) {
            fprintf(stderr, "smtpd: cannot listen for worker %u\n", i + 1);
            rc = EX_OSERR;
            goto out;
        }
    }
    if (!o->nosetuid) {
        char why[256];
        if (privdrop(o->user, why, sizeof(why)) != 0) {
            fprintf(stderr, "smtpd: %s; run as root, or use -n to keep this user\n", why);
            rc = EX_NOPERM;
            goto out;
        }
        char line[300];
        snprintf(line, sizeof(line), "running as user %s", o->user);
        log_stderr(NULL, SMTPD_LOG_INFO, line);
    }
    if (o->workers > 1 && workers_spawn(&r.workers, base, o->workers) != 0) {
        fprintf(stderr, "smtpd: cannot start %u worker processes\n", o->workers);
        rc = EX_OSERR;
        goto out;
    }
    /* Each process keeps its own worker's server and closes the others. */
    if (o->workers > 1) {
        unsigned me = r.workers.index;
        if (me > 0) {
            smtpd_server_free(r.srv);
            r.srv = others[me];
            others[me] = NULL;
        }
        for (unsigned i = 1; i < o->workers; i++) {
            smtpd_server_free(others[i]);
            others[i] = NULL;
        }
    }
    logger.pid = (long)getpid(); /* a worker logs its own pid */
    plugin_start(&cs.plugin, r.srv);
    r.memory = memory_start(base, MEMORY_TRIM_SECONDS);
    r.sigint = evsignal_new(base, SIGINT, on_signal, &r);
    r.sigterm = evsignal_new(base, SIGTERM, on_signal, &r);
    r.sighup = evsignal_new(base, SIGHUP, on_sighup, &r);
    if (!r.sigint || !r.sigterm || !r.sighup || event_add(r.sigint, NULL) ||
        event_add(r.sigterm, NULL) || event_add(r.sighup, NULL)) {
        fprintf(stderr, "smtpd: cannot set up signal handling\n");
        rc = EX_OSERR;
        goto out;
    }
    /* Logged once the signals are handled: tests and scripts start there. */
    for (size_t i = 0; !r.workers.child && i < smtpd_server_listener_count(r.srv); i++) {
        char addr[80];
        if (smtpd_server_address(r.srv, i, addr, sizeof(addr)) == SMTPD_OK) {
            char line[128];
            snprintf(line, sizeof(line), "listening on %s%s", addr,
                     smtpd_server_listener_tls(r.srv, i) ? " (implicit TLS)" : "");
            log_stderr(NULL, SMTPD_LOG_INFO, line);
        }
    }
    fflush(stderr);
    event_base_dispatch(base);
    if (workers_wait(&r.workers) != 0)
        rc = EX_SOFTWARE;
out:
    memory_free(r.memory);
    if (r.sigint)
        event_free(r.sigint);
    if (r.sigterm)
        event_free(r.sigterm);
    if (r.sighup)
        event_free(r.sighup);
    SSL_CTX_free(tls_ctx);
    auth_check_stop();
    accounts_free(r.auth.accounts);
    for (unsigned i = 1; i < WORKERS_MAX; i++)
        smtpd_server_free(others[i]);
    smtpd_server_free(r.srv);
    smtpd_proxy_free(cs.proxy);
    smtpd_delivery_free(cs.delivery);
    plugin_unload(&cs.plugin);
    event_base_free(base);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o;
    char err[256];
    if (options_parse(&o, argc, argv, err, sizeof(err)) != 0)
        return usage_error(err);
    if (o.help) {
        fputs(options_usage, stdout);
        return EX_OK;
    }
    if (o.version) {
        printf("smtpd %s\n", SMTPD_VERSION);
        return EX_OK;
    }
    logger.level = o.debug ? SMTPD_LOG_DEBUG : SMTPD_LOG_INFO;
    /* Writes to a client that has gone must not kill the server. */
    signal(SIGPIPE, SIG_IGN);
    /* Nor may a SIGHUP (a reload) before the event loop handles it: the
     * parent forwards one to a worker that may not have got that far. */
    signal(SIGHUP, SIG_IGN);
    return serve(&o);
}
