/* The --relay-auth-file reader; see relay_auth.h. */
#include "relay_auth.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A credentials file is a few lines; anything bigger is a mistake. */
#define FILE_MAX 65536
/* The library's limit on a username or password (smtpd.h). */
#define CRED_MAX 255

/* A host and optional port, cut out of "host", "host:port", "[host]" or
 * "[host]:port" (brackets needed around an IPv6 address). */
struct hostport {
    const char *host;
    size_t host_len;
    const char *port; /* NULL: none */
    size_t port_len;
};

static bool valid_port(const char *p, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

static bool split_hostport(const char *s, size_t n, struct hostport *hp)
{
    const char *rest;
    memset(hp, 0, sizeof(*hp));
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return false;
        hp->host = s + 1;
        hp->host_len = (size_t)(close - s) - 1;
        rest = close + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        hp->host = s;
        hp->host_len = colon ? (size_t)(colon - s) : n;
        rest = s + hp->host_len;
    }
    size_t left = n - (size_t)(rest - s);
    if (left > 0) {
        if (rest[0] != ':' || !valid_port(rest + 1, left - 1))
            return false;
        hp->port = rest + 1;
        hp->port_len = left - 1;
    }
    return hp->host_len > 0;
}

static bool same(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && strncasecmp(a, b, an) == 0;
}

/* What one line is: nothing (blank, comment), an entry, or malformed. */
enum line_kind { LINE_NONE, LINE_ENTRY, LINE_BAD };

struct entry {
    struct hostport key;
    const char *user, *pass;
    size_t user_len, pass_len;
};

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Where the run of blanks (@p want_blank) or non-blanks from @p i ends. */
static size_t skip(const char *line, size_t n, size_t i, bool want_blank)
{
    while (i < n && blank(line[i]) == want_blank)
        i++;
    return i;
}

static enum line_kind parse_line(const char *line, size_t n, struct entry *e)
{
    while (n > 0 && (line[n - 1] == '\r' || blank(line[n - 1])))
        n--;
    size_t i = skip(line, n, 0, true);
    if (i >= n || line[i] == '#')
        return LINE_NONE;
    size_t key_end = skip(line, n, i, false);
    if (key_end >= n || !split_hostport(line + i, key_end - i, &e->key))
        return LINE_BAD;
    size_t v = skip(line, n, key_end, true);
    const char *colon = memchr(line + v, ':', n - v);
    if (!colon)
        return LINE_BAD;
    e->user = line + v;
    e->user_len = (size_t)(colon - e->user);
    e->pass = colon + 1;
    e->pass_len = n - (size_t)(e->pass - line);
    if (e->user_len == 0 || e->pass_len == 0 || e->user_len > CRED_MAX || e->pass_len > CRED_MAX ||
        memchr(e->user, '\0', e->user_len) || memchr(e->pass, '\0', e->pass_len))
        return LINE_BAD;
    return LINE_ENTRY;
}

/* The whole file, if only its owner may read it. NULL with why in @p err. */
static char *read_private(const char *path, size_t *len, char *err, size_t errsz)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errsz, "cannot read --relay-auth-file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    const char *problem = !S_ISREG(st.st_mode)    ? "not a regular file"
                          : (st.st_mode & 077)    ? "group or others may read it"
                          : st.st_size > FILE_MAX ? "larger than 64 KiB"
                                                  : NULL;
    if (problem) {
        snprintf(err, errsz, "--relay-auth-file %s: %s (mode %04o; chmod 600 it)", path, problem,
                 (unsigned)(st.st_mode & 07777));
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t got = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    int e = errno;
    close(fd);
    if (got < 0) {
        snprintf(err, errsz, "cannot read --relay-auth-file %s: %s", path, strerror(e));
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    *len = (size_t)got;
    return buf;
}

/* Find the entry for @p want: host:port first, else host alone. */
static int find_entry(char *buf, size_t len, const struct hostport *want, const char *path,
                      struct entry *found, char *err, size_t errsz)
{
    bool have = false, exact = false;
    unsigned lineno = 0;
    for (size_t o = 0; o < len;) {
        const char *line = buf + o;
        size_t n = strcspn(line, "\n");
        o += n + 1;
        lineno++;
        struct entry e;
        enum line_kind kind = parse_line(line, n, &e);
        if (kind == LINE_BAD) {
            snprintf(err, errsz,
                     "--relay-auth-file %s line %u: expected 'host[:port] username:password'", path,
                     lineno);
            return -1;
        }
        if (kind == LINE_NONE || !same(e.key.host, e.key.host_len, want->host, want->host_len))
            continue;
        bool port_match =
            e.key.port && same(e.key.port, e.key.port_len, want->port, want->port_len);
        if ((port_match && !exact) || (!e.key.port && !have)) {
            *found = e;
            have = true;
            exact = port_match;
        }
    }
    if (!have) {
        snprintf(err, errsz, "--relay-auth-file %s has no entry for the smarthost %.*s:%.*s", path,
                 (int)want->host_len, want->host, (int)want->port_len, want->port);
        return -1;
    }
    return 0;
}

int relay_auth_load(const char *path, const char *upstream, struct relay_auth *out, char *err,
                    size_t errsz)
{
    memset(out, 0, sizeof(*out));
    struct hostport want;
    /* The options checked the smarthost's host:port already. */
    if (!split_hostport(upstream, strlen(upstream), &want) || !want.port) {
        snprintf(err, errsz, "bad smarthost '%s' for --relay-auth-file", upstream);
        return -1;
    }
    size_t len = 0;
    char *buf = read_private(path, &len, err, errsz);
    if (!buf)
        return -1;
    struct entry e;
    int rc = find_entry(buf, len, &want, path, &e, err, errsz);
    if (rc == 0) {
        out->username = strndup(e.user, e.user_len);
        out->password = strndup(e.pass, e.pass_len);
        if (!out->username || !out->password) {
            relay_auth_free(out);
            snprintf(err, errsz, "--relay-auth-file %s: out of memory", path);
            rc = -1;
        }
    }
    OPENSSL_cleanse(buf, len);
    free(buf);
    return rc;
}

void relay_auth_free(struct relay_auth *a)
{
    if (a->password)
        OPENSSL_cleanse(a->password, strlen(a->password));
    free(a->password);
    free(a->username);
    a->password = a->username = NULL;
}
