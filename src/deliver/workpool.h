/*
 * A small pool of threads for work that must not run on the event loop
 * (fsync, locks, child programs). A job is run on a thread, then finished
 * on the loop thread, where it may answer its session. Threads and the
 * wake-up pipe are made at the first job, so a pool made before a fork
 * (--workers) is each process's own. No global state.
 */
#ifndef SMTPD_WORKPOOL_H
#define SMTPD_WORKPOOL_H

#include <stddef.h>

struct event_base;
struct smtpd_session;
struct workpool;

/** Runs on a pool thread: does the job's work, keeps the result in it. */
typedef void (*workpool_run_fn)(void *job);
/** Runs on the loop thread after run (or instead of it, when the pool is
 *  freed first): answers @p s, NULL when the session has gone, and frees
 *  the job. */
typedef void (*workpool_done_fn)(void *job, struct smtpd_session *s, void *arg);

/** @p threads at most run at once; the others wait, oldest first.
 *  NULL: out of memory. */
struct workpool *workpool_new(struct event_base *base, unsigned threads, workpool_run_fn run,
                              workpool_done_fn done, void *arg);

/** Queue @p job for session @p s. @return 0, or -1 when no thread can be
 *  had (the caller answers itself; the job is still the caller's). */
int workpool_submit(struct workpool *p, struct smtpd_session *s, void *job);

/** @p s is closing: its jobs go on, but their done gets NULL. */
void workpool_forget(struct workpool *p, const struct smtpd_session *s);

/** Wait for the jobs that are running, finish every job with a NULL
 *  session, and free the pool. NULL is allowed. */
void workpool_free(struct workpool *p);

#endif
