/* Worker processes; see workers.h. */
#include "workers.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int workers_spawn(struct workers *w, struct event_base *base, unsigned total)
{
    w->n = 0;
    w->child = false;
    w->index = 0;
    for (unsigned i = 1; i < total && i < WORKERS_MAX; i++) {
        fflush(NULL); /* no buffered output written twice */
        pid_t pid = fork();
        if (pid < 0) {
            workers_signal(w, SIGTERM);
            workers_wait(w);
            return -1;
        }
        if (pid == 0) {
            w->child = true;
            w->index = i;
            w->n = 0;
            /* epoll and signal state must not be shared with the parent. */
            return event_reinit(base) == 0 ? 0 : -1;
        }
        w->pids[w->n++] = pid;
    }
    return 0;
}

void workers_signal(const struct workers *w, int sig)
{
    for (unsigned i = 0; i < w->n; i++)
        kill(w->pids[i], sig);
}

int workers_wait(const struct workers *w)
{
    int rc = 0;
    for (unsigned i = 0; i < w->n; i++) {
        int status;
        while (waitpid(w->pids[i], &status, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            rc = 1;
    }
    return rc;
}
