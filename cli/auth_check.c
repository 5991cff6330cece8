/* The program's on_auth and its worker threads; see auth_check.h. */
#include "auth_check.h"

#include <event2/event.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One check. The main thread owns it, but for @c done, which a worker
 * sets, and the credentials, which a worker reads, both under mu. */
struct job {
    struct job *next;        /* all jobs in flight, newest first */
    struct job *next_todo;   /* not started yet, oldest first */
    struct smtpd_session *s; /* NULL: the session ended, nobody to answer */
    struct accounts *accounts;
    char user[256], password[256];
    bool ok, done;
};

static struct {
    struct auth_policy *policy;
    struct event_base *base;
    void (*inner_close)(void *arg, struct smtpd_session *s);
    bool started, stopping;
    pthread_t threads[AUTH_CHECK_THREADS];
    size_t n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *jobs, *todo, **todo_end;
    size_t n_jobs;
    int pipe[2];      /* a worker writes a byte there when a job is done */
    struct event *ev; /* added only while jobs are in flight */
} w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .pipe = {-1, -1}};

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&w.mu);
    while (!w.stopping) {
        struct job *j = w.todo;
        if (!j) {
            pthread_cond_wait(&w.cv, &w.mu);
            continue;
        }
        w.todo = j->next_todo;
        if (!w.todo)
            w.todo_end = &w.todo;
        /* Its session ended (on_close): no hash for nobody. */
        bool ok = false;
        if (j->s) {
            pthread_mutex_unlock(&w.mu);
            ok = accounts_check(j->accounts, j->user, j->password);
            pthread_mutex_lock(&w.mu);
        }
        j->ok = ok;
        j->done = true;
        /* A full pipe already holds a wake-up: losing this byte is fine. */
        ssize_t n = write(w.pipe[1], "", 1);
        (void)n;
    }
    pthread_mutex_unlock(&w.mu);
    return NULL;
}

static void job_free(struct job *j)
{
    OPENSSL_cleanse(j->password, sizeof(j->password));
    accounts_free(j->accounts);
    free(j);
}

/* Main thread: answer the sessions whose checks are done. */
static void collect(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    struct job *done = NULL;
    pthread_mutex_lock(&w.mu);
    for (struct job **p = &w.jobs; *p;) {
        struct job *j = *p;
        if (j->done) {
            *p = j->next;
            j->next = done;
            done = j;
            w.n_jobs--;
        } else {
            p = &j->next;
        }
    }
    bool idle = w.jobs == NULL;
    pthread_mutex_unlock(&w.mu);
    if (idle)
        event_del(w.ev); /* nothing in flight must not keep the loop alive */
    while (done) {
        struct job *j = done;
        done = j->next;
        if (j->s && j->ok)
            smtpd_reply(j->s, 235, NULL, NULL);
        else if (j->s)
            smtpd_reply(j->s, 535, "5.7.8", "Error: authentication failed");
        job_free(j);
    }
}

/* At the first AUTH (in each --workers process: threads do not survive a
 * fork). false: check on the loop instead. */
static bool start(void)
{
    if (w.started)
        return w.n_threads > 0;
    w.started = true;
    w.todo_end = &w.todo;
    if (pipe(w.pipe) != 0)
        return false;
    for (int i = 0; i < 2; i++)
        fcntl(w.pipe[i], F_SETFL, O_NONBLOCK);
    w.ev = event_new(w.base, w.pipe[0], EV_READ | EV_PERSIST, collect, NULL);
    while (w.ev && w.n_threads < AUTH_CHECK_THREADS &&
           pthread_create(&w.threads[w.n_threads], NULL, worker, NULL) == 0)
        w.n_threads++;
    return w.n_threads > 0;
}

static bool copy(char *dst, size_t dstsz, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstsz)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

static enum smtpd_verdict on_auth(void *arg, struct smtpd_session *s, const char *mechanism,
                                  const char *identity, const char *password)
{
    (void)arg;
    (void)mechanism;
    if (w.policy->accept_any) {
        smtpd_reply(s, 235, NULL, NULL);
        return SMTPD_DONE;
    }
    if (w.n_jobs >= AUTH_CHECK_QUEUE) {
        /* Checks are asked for faster than they can be made: the client
         * tries later, and the sessions already waiting keep their turn. */
        smtpd_reply(s, 454, "4.7.0", "Error: temporary authentication failure, try again later");
        return SMTPD_DONE;
    }
    struct job *j = start() ? calloc(1, sizeof(*j)) : NULL;
    if (!j || !copy(j->user, sizeof(j->user), identity) ||
        !copy(j->password, sizeof(j->password), password)) {
        free(j);
        bool ok = accounts_check(w.policy->accounts, identity, password);
        smtpd_reply(s, ok ? 235 : 535, ok ? NULL : "5.7.8",
                    ok ? NULL : "Error: authentication failed");
        return SMTPD_DONE;
    }
    j->s = s;
    j->accounts = accounts_ref(w.policy->accounts);
    pthread_mutex_lock(&w.mu);
    bool was_idle = w.jobs == NULL;
    w.n_jobs++;
    j->next = w.jobs;
    w.jobs = j;
    *w.todo_end = j;
    w.todo_end = &j->next_todo;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    if (was_idle)
        event_add(w.ev, NULL);
    return SMTPD_PENDING;
}

/* The session ends: its check may go on, but its answer goes nowhere. */
static void on_close(void *arg, struct smtpd_session *s)
{
    pthread_mutex_lock(&w.mu);
    for (struct job *j = w.jobs; j; j = j->next)
        if (j->s == s)
            j->s = NULL;
    pthread_mutex_unlock(&w.mu);
    if (w.inner_close)
        w.inner_close(arg, s);
}

void auth_check_handler(struct smtpd_handler *h, struct auth_policy *p, struct event_base *base)
{
    w.policy = p;
    w.base = base;
    w.inner_close = h->on_close;
    h->on_auth = on_auth;
    h->on_close = on_close;
}

void auth_check_stop(void)
{
    pthread_mutex_lock(&w.mu);
    w.stopping = true;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
    for (size_t i = 0; i < w.n_threads; i++)
        pthread_join(w.threads[i], NULL);
    w.n_threads = 0;
    while (w.jobs) {
        struct job *j = w.jobs;
        w.jobs = j->next;
        job_free(j);
    }
    if (w.ev)
        event_free(w.ev);
    w.ev = NULL;
    for (int i = 0; i < 2; i++)
        if (w.pipe[i] >= 0)
            close(w.pipe[i]);
}
