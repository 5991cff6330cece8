/* Worker threads answered through a pipe event; see workpool.h. */
#define _GNU_SOURCE /* pipe2 */
#include "workpool.h"

#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

enum { MAX_THREADS = 64 };

struct item {
    struct item *next;      /* every item in flight, newest first */
    struct item *next_todo; /* not started yet, oldest first */
    struct smtpd_session *s;
    void *job;
    bool done; /* set by the thread that ran it, under mu */
};

struct workpool {
    struct event_base *base;
    workpool_run_fn run;
    workpool_done_fn finish;
    void *arg;
    unsigned want;
    bool started, stopping;
    pthread_t threads[MAX_THREADS];
    unsigned n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct item *items, *todo, **todo_end;
    int pipe[2];      /* a thread writes a byte when a job is done */
    struct event *ev; /* added only while jobs are in flight */
};

static void *worker(void *arg)
{
    struct workpool *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        struct item *it = p->todo;
        if (!it) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        p->todo = it->next_todo;
        if (!p->todo)
            p->todo_end = &p->todo;
        pthread_mutex_unlock(&p->mu);
        p->run(it->job);
        pthread_mutex_lock(&p->mu);
        it->done = true;
        /* A full pipe already holds a wake-up: losing this byte is fine. */
        ssize_t n = write(p->pipe[1], "", 1);
        (void)n;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Loop thread: finish the jobs that are done. */
static void collect(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct workpool *p = arg;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    struct item *done = NULL;
    pthread_mutex_lock(&p->mu);
    for (struct item **pp = &p->items; *pp;) {
        struct item *it = *pp;
        if (it->done) {
            *pp = it->next;
            it->next = done;
            done = it;
        } else {
            pp = &it->next;
        }
    }
    bool idle = p->items == NULL;
    pthread_mutex_unlock(&p->mu);
    if (idle)
        event_del(p->ev); /* nothing in flight must not keep the loop alive */
    while (done) {
        struct item *it = done;
        done = it->next;
        p->finish(it->job, it->s, p->arg);
        free(it);
    }
}

static bool start(struct workpool *p)
{
    if (p->started)
        return p->n_threads > 0;
    p->started = true;
    if (pipe2(p->pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        return false;
    p->ev = event_new(p->base, p->pipe[0], EV_READ | EV_PERSIST, collect, p);
    /* Signals stay with the main thread; a thread's write to a closed pipe
     * gives EPIPE, not a SIGPIPE that would end the process. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (p->ev && p->n_threads < p->want &&
           pthread_create(&p->threads[p->n_threads], NULL, worker, p) == 0)
        p->n_threads++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return p->n_threads > 0;
}

struct workpool *workpool_new(struct event_base *base, unsigned threads, workpool_run_fn run,
                              workpool_done_fn done, void *arg)
{
    struct workpool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->base = base;
    p->run = run;
    p->finish = done;
    p->arg = arg;
    p->want = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    p->todo_end = &p->todo;
    p->pipe[0] = p->pipe[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
}

int workpool_submit(struct workpool *p, struct smtpd_session *s, void *job)
{
    struct item *it = start(p) ? calloc(1, sizeof(*it)) : NULL;
    if (!it)
        return -1;
    it->s = s;
    it->job = job;
    pthread_mutex_lock(&p->mu);
    bool was_idle = p->items == NULL;
    it->next = p->items;
    p->items = it;
    *p->todo_end = it;
    p->todo_end = &it->next_todo;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (was_idle)
        event_add(p->ev, NULL);
    return 0;
}

void workpool_forget(struct workpool *p, const struct smtpd_session *s)
{
    pthread_mutex_lock(&p->mu);
    for (struct item *it = p->items; it; it = it->next)
        if (it->s == s)
            it->s = NULL;
    pthread_mutex_unlock(&p->mu);
}

void workpool_free(struct workpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    while (p->items) {
        struct item *it = p->items;
        p->items = it->next;
        p->finish(it->job, NULL, p->arg);
        free(it);
    }
    if (p->ev)
        event_free(p->ev);
    for (int i = 0; i < 2; i++)
        if (p->pipe[i] >= 0)
            close(p->pipe[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
