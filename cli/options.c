/* Command line parsing for smtpd; see options.h. */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "plugin.h"
#include "smtpd.h"

const char options_usage[] =
    "Usage: smtpd [options] [localhost:localport [remotehost:remoteport]]\n"
    "\n"
    "An SMTP server (RFC 5321) that does what Python's smtpd module did.\n"
    "\n"
    "  -n, --nosetuid          do not drop root privileges to \"nobody\" after binding\n"
    "      --user NAME         drop root privileges to NAME, not \"nobody\"\n"
    "  -V, --version           print the version and exit\n"
    "  -c, --class NAME        PureProxy (the default), MailmanProxy,\n"
    "                          DebuggingServer, Sink, Maildir, Mbox, Pipe, or a\n"
    "                          shared object (a path, or NAME.so in the working\n"
    "                          directory) that exports smtpd_plugin_init_v1\n"
    "  -s, --size BYTES        largest message accepted, advertised as SIZE; 0: no\n"
    "                          limit (default 33554432)\n"
    "  -u, --smtputf8          enable SMTPUTF8 (RFC 6531)\n"
    "  -d, --debug             log the whole dialogue to standard error\n"
    "  -h, --help              print this text and exit\n"
    "      --decode-data       require UTF-8 message data; no 8BITMIME (not with -u)\n"
    "      --hostname NAME     name in the greeting (default: this machine's FQDN)\n"
    "      --workers N         processes serving the same addresses (default 1)\n"
    "      --max-connections N simultaneous clients per worker (default 1000; 0: no\n"
    "                          limit)\n"
    "      --command-timeout S seconds to wait for a command (default 300)\n"
    "      --data-timeout S    seconds to wait for message data (default 300)\n"
    "      --max-connections-per-ip N\n"
    "                          simultaneous clients from one address, per worker\n"
    "                          (default 0: no limit)\n"
    "      --max-errors N      bad commands before 421 and close (default 10; 0: no\n"
    "                          limit)\n"
    "      --max-recipients N  forward-paths per transaction, then 452 (default 1000)\n"
    "      --min-data-rate B   bytes/second a client must keep up in DATA after 10\n"
    "                          seconds (default 500; 0: none)\n"
    "      --bare-lf POLICY    bare CR/LF in message data: normalize (to CRLF, the\n"
    "                          default), reject (550 5.5.2) or accept\n"
    "      --relay-networks CIDR[,CIDR...]\n"
    "                          clients that may relay through PureProxy (default\n"
    "                          127.0.0.0/8,::1/128: never an open relay)\n"
    "      --relay-timeout S   seconds for each upstream step (default 60)\n"
    "      --relay-idle-timeout S\n"
    "                          seconds an idle upstream connection is kept for the\n"
    "                          next message (default 30)\n"
    "      --mailman-lmtp HOST:PORT\n"
    "                          MailmanProxy: Mailman 3's LMTP server (default\n"
    "                          127.0.0.1:8024)\n"
    "      --mailman-domains D[,D...]\n"
    "                          MailmanProxy: ask Mailman only about these domains\n"
    "                          (default: about every recipient)\n"
    "      --tls-cert FILE     certificate (PEM, its chain after it): offer STARTTLS\n"
    "      --tls-key FILE      private key (PEM) of --tls-cert; read before root is\n"
    "                          dropped; SIGHUP reads both again\n"
    "      --smtps HOST:PORT   also listen there with implicit TLS (port 465 style;\n"
    "                          every address of HOST); needs --tls-cert\n"
    "      --require-tls       before TLS only EHLO, HELO, STARTTLS, NOOP, RSET and\n"
    "                          QUIT (530 5.7.0 for the rest); needs --tls-cert\n"
    "      --tls-handshake-timeout S\n"
    "                          seconds a TLS handshake may take (default 30; 0: no\n"
    "                          limit)\n"
    "      --auth-file FILE    offer AUTH PLAIN and LOGIN (over TLS only) to the\n"
    "                          accounts of FILE, one user:hash line each (crypt(3)\n"
    "                          hashes: openssl passwd -6, mkpasswd -m yescrypt);\n"
    "                          SIGHUP reads it again\n"
    "      --auth-accept-any   DebuggingServer and Sink: AUTH takes any user name\n"
    "                          and password (for testing applications)\n"
    "      --auth-insecure     offer AUTH on plaintext sessions too\n"
    "      --auth-required     MAIL, RCPT and DATA need AUTH first (530 5.7.0)\n"
    "      --relay-tls POLICY  TLS to the smarthost: none, may (STARTTLS if offered,\n"
    "                          the default), encrypt (STARTTLS required) or verify\n"
    "                          (required, certificate and name verified)\n"
    "      --relay-ca FILE     CA certificates (PEM) for --relay-tls verify (default:\n"
    "                          the system's)\n"
    "      --relay-smtps       implicit TLS to the smarthost (port 465 style; not with\n"
    "                          --relay-tls none)\n"
    "      --relay-auth-file FILE\n"
    "                          SMTP AUTH to the smarthost: lines 'host[:port]\n"
    "                          user:password' (Postfix's sasl_passwd); mode 600,\n"
    "                          read at start-up; sent over TLS only, unless\n"
    "                          --relay-tls none\n"
    "      --maildir DIR       Maildir: the folder messages are delivered to\n"
    "      --mbox FILE         Mbox: the mbox file (mboxrd) messages are appended to\n"
    "      --pipe 'PROGRAM ARGS...'\n"
    "                          Pipe: the program each message is given to (no\n"
    "                          shell; {sender} and {recipient} in ARGS)\n"
    "      --pipe-timeout S    Pipe: seconds a program may run (default 60)\n"
    "      --pipe-concurrency N\n"
    "                          Pipe: programs running at once (default 4)\n"
    "      --also-maildir DIR  DebuggingServer: also keep each message in Maildir DIR\n"
    "      --proxy-protocol    every connection begins with a PROXY header (v1 or v2,\n"
    "                          HAProxy's send-proxy, send-proxy-v2): the client's\n"
    "                          address in it is the session's\n"
    "      --proxy-networks CIDR[,CIDR...]\n"
    "                          who may send a PROXY header (default 127.0.0.0/8,::1)\n"
    "      --proxy-timeout S   seconds to wait for the PROXY header (default 10)\n"
    "      --xclient-networks CIDR[,CIDR...]\n"
    "                          proxies that may use XCLIENT to name the client\n"
    "                          (default: none)\n"
    "      --lmtp              speak LMTP (RFC 2033): LHLO, and after the data a\n"
    "                          reply for each recipient\n"
    "\n"
    "localhost:localport defaults to localhost:8025 (every address the name has);\n"
    "remotehost:remoteport defaults to localhost:25 (for the relaying classes).\n";

enum {
    OPT_DECODE = 256,
    OPT_HOSTNAME,
    OPT_MAXCONN,
    OPT_CMD_TIMEOUT,
    OPT_DATA_TIMEOUT,
    OPT_RELAY_NETWORKS,
    OPT_RELAY_TIMEOUT,
    OPT_MAXCONN_IP,
    OPT_MAX_ERRORS,
    OPT_MIN_RATE,
    OPT_BARE_LF,
    OPT_MAILMAN_LMTP,
    OPT_MAILMAN_DOMAINS,
    OPT_WORKERS,
    OPT_MAX_RCPT,
    OPT_RELAY_IDLE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_SMTPS,
    OPT_REQUIRE_TLS,
    OPT_TLS_TIMEOUT,
    OPT_AUTH_FILE,
    OPT_AUTH_ANY,
    OPT_AUTH_INSECURE,
    OPT_AUTH_REQUIRED,
    OPT_RELAY_TLS,
    OPT_RELAY_CA,
    OPT_RELAY_SMTPS,
    OPT_RELAY_AUTH_FILE,
    OPT_USER,
    OPT_MAILDIR,
    OPT_MBOX,
    OPT_PIPE,
    OPT_PIPE_TIMEOUT,
    OPT_PIPE_CONCURRENCY,
    OPT_ALSO_MAILDIR,
    OPT_PROXY_PROTOCOL,
    OPT_PROXY_NETWORKS,
    OPT_PROXY_TIMEOUT,
    OPT_XCLIENT_NETWORKS,
    OPT_LMTP
};

static const struct option long_opts[] = {
    {"nosetuid", no_argument, NULL, 'n'},
    {"version", no_argument, NULL, 'V'},
    {"class", required_argument, NULL, 'c'},
    {"size", required_argument, NULL, 's'},
    {"smtputf8", no_argument, NULL, 'u'},
    {"debug", no_argument, NULL, 'd'},
    {"help", no_argument, NULL, 'h'},
    {"decode-data", no_argument, NULL, OPT_DECODE},
    {"hostname", required_argument, NULL, OPT_HOSTNAME},
    {"max-connections", required_argument, NULL, OPT_MAXCONN},
    {"command-timeout", required_argument, NULL, OPT_CMD_TIMEOUT},
    {"data-timeout", required_argument, NULL, OPT_DATA_TIMEOUT},
    {"relay-networks", required_argument, NULL, OPT_RELAY_NETWORKS},
    {"relay-timeout", required_argument, NULL, OPT_RELAY_TIMEOUT},
    {"max-connections-per-ip", required_argument, NULL, OPT_MAXCONN_IP},
    {"max-errors", required_argument, NULL, OPT_MAX_ERRORS},
    {"min-data-rate", required_argument, NULL, OPT_MIN_RATE},
    {"bare-lf", required_argument, NULL, OPT_BARE_LF},
    {"mailman-lmtp", required_argument, NULL, OPT_MAILMAN_LMTP},
    {"mailman-domains", required_argument, NULL, OPT_MAILMAN_DOMAINS},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"max-recipients", required_argument, NULL, OPT_MAX_RCPT},
    {"relay-idle-timeout", required_argument, NULL, OPT_RELAY_IDLE},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"smtps", required_argument, NULL, OPT_SMTPS},
    {"require-tls", no_argument, NULL, OPT_REQUIRE_TLS},
    {"tls-handshake-timeout", required_argument, NULL, OPT_TLS_TIMEOUT},
    {"relay-tls", required_argument, NULL, OPT_RELAY_TLS},
    {"relay-ca", required_argument, NULL, OPT_RELAY_CA},
    {"auth-file", required_argument, NULL, OPT_AUTH_FILE},
    {"auth-accept-any", no_argument, NULL, OPT_AUTH_ANY},
    {"auth-insecure", no_argument, NULL, OPT_AUTH_INSECURE},
    {"auth-required", no_argument, NULL, OPT_AUTH_REQUIRED},
    {"relay-smtps", no_argument, NULL, OPT_RELAY_SMTPS},
    {"relay-auth-file", required_argument, NULL, OPT_RELAY_AUTH_FILE},
    {"user", required_argument, NULL, OPT_USER},
    {"maildir", required_argument, NULL, OPT_MAILDIR},
    {"mbox", required_argument, NULL, OPT_MBOX},
    {"pipe", required_argument, NULL, OPT_PIPE},
    {"pipe-timeout", required_argument, NULL, OPT_PIPE_TIMEOUT},
    {"pipe-concurrency", required_argument, NULL, OPT_PIPE_CONCURRENCY},
    {"also-maildir", required_argument, NULL, OPT_ALSO_MAILDIR},
    {"proxy-protocol", no_argument, NULL, OPT_PROXY_PROTOCOL},
    {"proxy-networks", required_argument, NULL, OPT_PROXY_NETWORKS},
    {"proxy-timeout", required_argument, NULL, OPT_PROXY_TIMEOUT},
    {"xclient-networks", required_argument, NULL, OPT_XCLIENT_NETWORKS},
    {"lmtp", no_argument, NULL, OPT_LMTP},
    {NULL, 0, NULL, 0},
};

/* A whole decimal number no larger than max. */
static bool parse_num(const char *s, unsigned long long max, unsigned long long *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

static const char *option_name(int c)
{
    for (const struct option *lo = long_opts; lo->name; lo++)
        if (lo->val == c)
            return lo->name;
    return "?";
}

/* Check "host:port" or "[v6]:port", as smtpd's "remote spec"; @p any_host:
 * ":port" (every address) is allowed too. NULL when it is fine, else why. */
static const char *hostport_problem(const char *hp, bool any_host)
{
    const char *colon = strrchr(hp, ':');
    unsigned long long port;
    if (!colon || (!any_host && colon == hp) || !parse_num(colon + 1, ULLONG_MAX, &port))
        return "expected host:port";
    if (port > 65535)
        return "port out of range 0-65535";
    return NULL;
}

/* A list of networks for option @p name: NULL when fine, else -1 and why. */
static int check_networks(const char *name, const char *list, char *err, size_t errsz)
{
    struct cidr nets[64];
    if (cidr_parse_list(list, nets, sizeof(nets) / sizeof(nets[0])) >= 0)
        return 0;
    snprintf(err, errsz,
             "invalid --%s '%s' (comma-separated addr/prefix, IPv4 or IPv6; at most 64)", name,
             list);
    return -1;
}

/* The AUTH options that do not fit together; 0 when they do. */
static int auth_problem(const struct options *o, char *err, size_t errsz)
{
    bool test_class =
        strcmp(o->class_name, "DebuggingServer") == 0 || strcmp(o->class_name, "Sink") == 0;
    const char *why = NULL;
    if (o->auth_accept_any && !test_class)
        why = "--auth-accept-any is for DebuggingServer and Sink only: it lets anyone in";
    else if (o->auth_accept_any && o->auth_file)
        why = "--auth-accept-any and --auth-file cannot be used together";
    else if ((o->auth_insecure || o->auth_required) && !o->auth_file && !o->auth_accept_any &&
             !plugin_is_path(o->class_name))
        why = "--auth-insecure and --auth-required need --auth-file or --auth-accept-any";
    if (!why)
        return 0;
    snprintf(err, errsz, "%s", why);
    return -1;
}

/* Each delivery option goes with its class, and each class needs its
 * option; 0 when they fit. */
static int delivery_problem(const struct options *o, char *err, size_t errsz)
{
    static const struct {
        const char *class_name, *option;
        size_t offset;
    } pairs[] = {
        {"Maildir", "--maildir", offsetof(struct options, maildir)},
        {"Mbox", "--mbox", offsetof(struct options, mbox)},
        {"Pipe", "--pipe", offsetof(struct options, pipe)},
        {"DebuggingServer", "--also-maildir", offsetof(struct options, also_maildir)},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        bool is = strcmp(o->class_name, pairs[i].class_name) == 0;
        bool given = *(const char *const *)((const char *)o + pairs[i].offset) != NULL;
        if (given && !is) {
            snprintf(err, errsz, "%s is for -c %s", pairs[i].option, pairs[i].class_name);
            return -1;
        }
        if (is && !given && i < 3) {
            snprintf(err, errsz, "-c %s needs %s", pairs[i].class_name, pairs[i].option);
            return -1;
        }
    }
    if ((o->pipe_timeout_set || o->pipe_concurrency_set) && !o->pipe) {
        snprintf(err, errsz, "--pipe-timeout and --pipe-concurrency are for -c Pipe");
        return -1;
    }
    return 0;
}

int options_parse(struct options *o, int argc, char **argv, char *err, size_t errsz)
{
    *o = (struct options){
        .class_name = "PureProxy",
        .size = 33554432,
        .max_connections = 1000,
        .command_timeout = 300,
        .data_timeout = 300,
        .relay_timeout = 60,
        .relay_idle_timeout = 30,
        .mailman_lmtp = "127.0.0.1:8024",
        .max_errors = 10,
        .max_recipients = 1000,
        .min_data_rate = 500,
        .workers = 1,
        .bare_lf = SMTPD_BARE_LF_NORMALIZE,
        .tls_handshake_timeout = 30,
        .proxy_timeout = 10,
        .relay_tls = SMTPD_RELAY_TLS_MAY,
        .pipe_timeout = 60,
        .pipe_concurrency = 4,
        .user = "nobody",
        .local = "localhost:8025",
        .remote = "localhost:25",
    };
    optind = 1;
    opterr = 0;
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, ":nVc:s:udh", long_opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            o->nosetuid = true;
            break;
        case 'V':
            o->version = true;
            break;
        case 'c':
            o->class_name = optarg;
            break;
        case 's':
            if (!parse_num(optarg, SIZE_MAX, &v)) {
                snprintf(err, errsz, "invalid size for -s: '%s' (bytes expected)", optarg);
                return -1;
            }
            o->size = (size_t)v;
            break;
        case 'u':
            o->smtputf8 = true;
            break;
        case 'd':
            o->debug = true;
            break;
        case 'h':
            o->help = true;
            break;
        case OPT_DECODE:
            o->decode_data = true;
            break;
        case OPT_HOSTNAME:
            o->hostname = optarg;
            break;
        case OPT_RELAY_NETWORKS:
            if (check_networks("relay-networks", optarg, err, errsz) != 0)
                return -1;
            o->relay_networks = optarg;
            break;
        case OPT_PROXY_PROTOCOL:
            o->proxy_protocol = true;
            break;
        case OPT_PROXY_NETWORKS:
            if (check_networks("proxy-networks", optarg, err, errsz) != 0)
                return -1;
            o->proxy_networks = optarg;
            break;
        case OPT_XCLIENT_NETWORKS:
            if (check_networks("xclient-networks", optarg, err, errsz) != 0)
                return -1;
            o->xclient_networks = optarg;
            break;
        case OPT_LMTP:
            o->lmtp = true;
            break;
        case OPT_MAILMAN_LMTP:
            if (hostport_problem(optarg, false)) {
                snprintf(err, errsz, "invalid --mailman-lmtp '%s' (%s)", optarg,
                         hostport_problem(optarg, false));
                return -1;
            }
            o->mailman_lmtp = optarg;
            break;
        case OPT_MAILMAN_DOMAINS:
            o->mailman_domains = optarg;
            break;
        case OPT_BARE_LF:
            if (strcmp(optarg, "normalize") == 0) {
                o->bare_lf = SMTPD_BARE_LF_NORMALIZE;
            } else if (strcmp(optarg, "reject") == 0) {
                o->bare_lf = SMTPD_BARE_LF_REJECT;
            } else if (strcmp(optarg, "accept") == 0) {
                o->bare_lf = SMTPD_BARE_LF_ACCEPT;
            } else {
                snprintf(err, errsz, "invalid --bare-lf '%s' (normalize, reject or accept)",
                         optarg);
                return -1;
            }
            break;
        case OPT_WORKERS:
            if (!parse_num(optarg, 64, &v) || v == 0) {
                snprintf(err, errsz, "invalid --workers '%s' (1 to 64)", optarg);
                return -1;
            }
            o->workers = (unsigned)v;
            break;
        case OPT_MAX_RCPT:
            if (!parse_num(optarg, UINT_MAX, &v) || v == 0) {
                snprintf(err, errsz, "invalid --max-recipients '%s' (1 or more)", optarg);
                return -1;
            }
            o->max_recipients = (unsigned)v;
            break;
        case OPT_TLS_CERT:
            o->tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            o->tls_key = optarg;
            break;
        case OPT_SMTPS:
            if (o->smtps) {
                snprintf(err, errsz,
                         "--smtps given twice (one listens on every address of "
                         "its host name)");
                return -1;
            }
            if (hostport_problem(optarg, true)) {
                snprintf(err, errsz, "invalid --smtps '%s' (%s)", optarg,
                         hostport_problem(optarg, true));
                return -1;
            }
            o->smtps = optarg;
            break;
        case OPT_REQUIRE_TLS:
            o->require_tls = true;
            break;
        case OPT_AUTH_FILE:
            o->auth_file = optarg;
            break;
        case OPT_AUTH_ANY:
            o->auth_accept_any = true;
            break;
        case OPT_AUTH_INSECURE:
            o->auth_insecure = true;
            break;
        case OPT_AUTH_REQUIRED:
            o->auth_required = true;
            break;
        case OPT_RELAY_TLS: {
            static const char *const names[] = {"none", "may", "encrypt", "verify"};
            int found = -1;
            for (int i = 0; i < 4; i++)
                if (strcmp(optarg, names[i]) == 0)
                    found = i;
            if (found < 0) {
                snprintf(err, errsz, "invalid --relay-tls '%s' (none, may, encrypt or verify)",
                         optarg);
                return -1;
            }
            o->relay_tls = found; /* the names in enum smtpd_relay_tls's order */
            break;
        }
        case OPT_RELAY_CA:
            o->relay_ca = optarg;
            break;
        case OPT_RELAY_SMTPS:
            o->relay_smtps = true;
            break;
        case OPT_RELAY_AUTH_FILE:
            o->relay_auth_file = optarg;
            break;
        case OPT_USER:
            o->user = optarg;
            break;
        case OPT_MAILDIR:
            o->maildir = optarg;
            break;
        case OPT_MBOX:
            o->mbox = optarg;
            break;
        case OPT_ALSO_MAILDIR:
            o->also_maildir = optarg;
            break;
        case OPT_PIPE:
            o->pipe = optarg;
            break;
        case OPT_PIPE_TIMEOUT:
        case OPT_PIPE_CONCURRENCY:
            if (!parse_num(optarg, c == OPT_PIPE_TIMEOUT ? 86400 : 64, &v) || v == 0) {
                snprintf(err, errsz, "invalid --%s '%s' (%s)", option_name(c), optarg,
                         c == OPT_PIPE_TIMEOUT ? "1 to 86400 seconds" : "1 to 64");
                return -1;
            }
            if (c == OPT_PIPE_TIMEOUT) {
                o->pipe_timeout = (unsigned)v;
                o->pipe_timeout_set = true;
            } else {
                o->pipe_concurrency = (unsigned)v;
                o->pipe_concurrency_set = true;
            }
            break;
        case OPT_TLS_TIMEOUT:
        case OPT_PROXY_TIMEOUT:
        case OPT_MAXCONN_IP:
        case OPT_MAX_ERRORS:
        case OPT_MIN_RATE:
        case OPT_MAXCONN:
        case OPT_CMD_TIMEOUT:
        case OPT_DATA_TIMEOUT:
        case OPT_RELAY_TIMEOUT:
        case OPT_RELAY_IDLE:
            if (!parse_num(optarg, UINT_MAX, &v)) {
                snprintf(err, errsz, "invalid number for --%s: '%s'", option_name(c), optarg);
                return -1;
            }
            if (c == OPT_MAXCONN)
                o->max_connections = (unsigned)v;
            else if (c == OPT_MAXCONN_IP)
                o->max_connections_per_ip = (unsigned)v;
            else if (c == OPT_MAX_ERRORS)
                o->max_errors = (unsigned)v;
            else if (c == OPT_MIN_RATE)
                o->min_data_rate = (unsigned)v;
            else if (c == OPT_CMD_TIMEOUT)
                o->command_timeout = (unsigned)v;
            else if (c == OPT_RELAY_TIMEOUT)
                o->relay_timeout = (unsigned)v;
            else if (c == OPT_RELAY_IDLE)
                o->relay_idle_timeout = (unsigned)v;
            else if (c == OPT_TLS_TIMEOUT)
                o->tls_handshake_timeout = (unsigned)v;
            else if (c == OPT_PROXY_TIMEOUT) {
                o->proxy_timeout = (unsigned)v;
                o->proxy_timeout_set = true;
            } else
                o->data_timeout = (unsigned)v;
            break;
        case ':':
            snprintf(err, errsz, "option '%s' needs a value", argv[optind - 1]);
            return -1;
        default:
            snprintf(err, errsz, "unknown option '%s'", argv[optind - 1]);
            return -1;
        }
    }
    if (o->nosetuid && strcmp(o->user, "nobody") != 0) {
        snprintf(err, errsz, "-n keeps the user: no --user with it");
        return -1;
    }
    if (o->smtputf8 && o->decode_data) {
        snprintf(err, errsz, "--decode-data and -u/--smtputf8 cannot be used together");
        return -1;
    }
    if ((o->proxy_networks || o->proxy_timeout_set) && !o->proxy_protocol) {
        snprintf(err, errsz, "--proxy-networks and --proxy-timeout are for --proxy-protocol");
        return -1;
    }
    if (!o->tls_cert != !o->tls_key) {
        snprintf(err, errsz, "--tls-cert and --tls-key go together");
        return -1;
    }
    if ((o->smtps || o->require_tls) && !o->tls_cert) {
        snprintf(err, errsz, "%s needs --tls-cert and --tls-key",
                 o->smtps ? "--smtps" : "--require-tls");
        return -1;
    }
    if (auth_problem(o, err, errsz) != 0 || delivery_problem(o, err, errsz) != 0)
        return -1;
    if (o->relay_ca && o->relay_tls != SMTPD_RELAY_TLS_VERIFY) {
        snprintf(err, errsz, "--relay-ca is for --relay-tls verify");
        return -1;
    }
    if (o->relay_smtps && o->relay_tls == SMTPD_RELAY_TLS_NONE) {
        snprintf(err, errsz, "--relay-smtps and --relay-tls none cannot be used together");
        return -1;
    }
    if (o->relay_auth_file && strcmp(o->class_name, "PureProxy") != 0 &&
        strcmp(o->class_name, "MailmanProxy") != 0) {
        snprintf(err, errsz, "--relay-auth-file is for PureProxy and MailmanProxy");
        return -1;
    }
    if (optind < argc)
        o->local = argv[optind++];
    /* A shared-object handler gets every argument after localhost:port. */
    if (optind < argc && !plugin_is_path(o->class_name))
        o->remote = argv[optind++];
    o->n_extra = argc - optind;
    o->extra = argv + optind;
    const char *why = hostport_problem(o->local, true);
    if (why) {
        snprintf(err, errsz, "bad local address '%s' (%s)", o->local, why);
        return -1;
    }
    why = plugin_is_path(o->class_name) ? NULL : hostport_problem(o->remote, false);
    if (why) {
        snprintf(err, errsz, "bad remote address '%s' (%s)", o->remote, why);
        return -1;
    }
    return 0;
}
