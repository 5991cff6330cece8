/* --auth-file and --auth-accept-any; see accounts.h. */
#include "accounts.h"

#include <crypt.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct account {
    char *user;
    char *hash;
    double cost; /* seconds one check took when the file was read */
};

struct accounts {
    struct account *v;
    size_t n;
    size_t slowest; /* the account whose hash an unknown user is checked against */
    unsigned refs;  /* the program's, and each check in flight */
};

struct accounts *accounts_ref(struct accounts *a)
{
    a->refs++;
    return a;
}

void accounts_free(struct accounts *a)
{
    if (!a || --a->refs > 0)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].user);
        OPENSSL_cleanse(a->v[i].hash, strlen(a->v[i].hash));
        free(a->v[i].hash);
    }
    free(a->v);
    free(a);
}

/* Whether @p hash is a whole hash of a method libcrypt knows: one it
 * cannot use would refuse its user, silently. A password in clear or a
 * cut hash is taken by crypt(3) as a setting (a DES salt, a salt without
 * its hash): its result then has another length. */
static bool hash_usable(const char *hash, double *cost)
{
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const char *r = crypt_rn("", hash, &cd, sizeof(cd));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *cost = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return r && r[0] != '*' && strlen(r) == strlen(hash);
}

/* Whether @p hash is usable, and its cost: from @p prev (the accounts a
 * SIGHUP replaces) when it held the very same hash, so that a reload runs
 * crypt(3) only for what changed, on the event loop's time. */
static bool hash_known(const struct accounts *prev, const char *hash, double *cost)
{
    for (size_t i = 0; prev && i < prev->n; i++)
        if (strcmp(prev->v[i].hash, hash) == 0) {
            *cost = prev->v[i].cost;
            return true;
        }
    return hash_usable(hash, cost);
}

/* One "user:hash" line (its newline gone) into @p a; false: malformed. */
static bool add_line(struct accounts *a, const struct accounts *prev, char *line, size_t *cap)
{
    char *colon = strchr(line, ':');
    double cost;
    if (!colon || colon == line || !hash_known(prev, colon + 1, &cost))
        return false;
    *colon = '\0';
    if (a->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct account *nv = realloc(a->v, ncap * sizeof(*nv));
        if (!nv)
            return false;
        a->v = nv;
        *cap = ncap;
    }
    a->v[a->n].user = strdup(line);
    a->v[a->n].hash = strdup(colon + 1);
    if (!a->v[a->n].user || !a->v[a->n].hash) {
        free(a->v[a->n].user);
        free(a->v[a->n].hash);
        return false;
    }
    a->v[a->n].cost = cost;
    if (cost > a->v[a->slowest].cost)
        a->slowest = a->n;
    a->n++;
    return true;
}

struct accounts *accounts_load(const char *path, const struct accounts *prev, char *why,
                               size_t whysz, char *warn, size_t warnsz)
{
    warn[0] = '\0';
    FILE *f = fopen(path, "re");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        snprintf(why, whysz, "cannot read --auth-file %s: %s", path, strerror(errno));
        if (f)
            fclose(f);
        return NULL;
    }
    if (st.st_mode & 077)
        snprintf(warn, warnsz, "--auth-file %s can be read by group or others (chmod 600 it)",
                 path);
    struct accounts *a = calloc(1, sizeof(*a));
    if (a)
        a->refs = 1;
    char line[1024];
    size_t cap = 0;
    unsigned no = 0;
    bool ok = a != NULL;
    while (ok && fgets(line, sizeof(line), f)) {
        no++;
        size_t len = strcspn(line, "\r\n");
        bool whole = line[len] != '\0' || feof(f);
        line[len] = '\0';
        if (line[0] != '\0' && line[0] != '#' && (!whole || !add_line(a, prev, line, &cap))) {
            snprintf(why, whysz, "--auth-file %s, line %u: not \"user:hash\" with a crypt(3) hash",
                     path, no);
            ok = false;
        }
        OPENSSL_cleanse(line, sizeof(line));
    }
    fclose(f);
    if (ok && a->n == 0) {
        snprintf(why, whysz, "--auth-file %s has no account", path);
        ok = false;
    }
    if (!ok) {
        if (!a)
            snprintf(why, whysz, "--auth-file %s: out of memory", path);
        accounts_free(a);
        return NULL;
    }
    return a;
}

bool accounts_check(const struct accounts *a, const char *user, const char *password)
{
    const struct account *found = NULL;
    for (size_t i = 0; i < a->n && !found; i++)
        if (strcmp(a->v[i].user, user) == 0)
            found = &a->v[i];
    /* An unknown user costs a crypt(3) run too, of the costliest hash: the
     * time of the answer must not tell which user names exist. */
    const char *hash = found ? found->hash : a->v[a->slowest].hash;
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    const char *r = crypt_rn(password, hash, &cd, sizeof(cd));
    size_t n = strlen(hash);
    bool match = r && strlen(r) == n && CRYPTO_memcmp(r, hash, n) == 0;
    OPENSSL_cleanse(&cd, sizeof(cd));
    return found && match;
}
