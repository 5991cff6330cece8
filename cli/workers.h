/*
 * --workers N: N processes, each with its own event loop and its own server
 * on the same addresses (SO_REUSEPORT, bound before the fork and before root
 * is dropped; the kernel spreads the clients over them). The first process is
 * the parent: it forwards SIGINT/SIGTERM to the others and waits for them
 * before it exits.
 */
#ifndef SMTPD_CLI_WORKERS_H
#define SMTPD_CLI_WORKERS_H

#include <stdbool.h>
#include <sys/types.h>

struct event_base;

#define WORKERS_MAX 64

struct workers {
    pid_t pids[WORKERS_MAX];
    unsigned n;     /* children started (the parent's count) */
    bool child;     /* this process is a child */
    unsigned index; /* this process's worker number: 0 for the parent */
};

/** Start @p total - 1 children; each reinitialises @p base. @return 0, or
 *  -1 (fork failed; the children already started are stopped). */
int workers_spawn(struct workers *w, struct event_base *base, unsigned total);

/** Parent: send @p sig to every child. */
void workers_signal(const struct workers *w, int sig);

/** Parent: wait for every child. @return 0 if all exited 0, else 1. */
int workers_wait(const struct workers *w);

#endif
