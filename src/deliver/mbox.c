/*
 * mbox delivery (mboxrd): appended under a dot-lock file and an fcntl
 * lock, as mail readers expect, fsynced, and truncated back to its size
 * before the write when anything fails. The fcntl lock is an open file
 * description lock, so two threads of one process exclude each other as
 * two processes do (--workers), and it conflicts with classic POSIX locks.
 */
#define _GNU_SOURCE /* F_OFD_SETLK */
#include "deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { LOCK_SECONDS = 30, LOCK_RETRY_MS = 100 };

static void nap(void)
{
    struct timespec t = {0, LOCK_RETRY_MS * 1000000L};
    nanosleep(&t, NULL);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void busy(struct delivery_job *j, const char *what)
{
    char log[600];
    snprintf(log, sizeof(log), "cannot lock %s: %s held for %d s", j->d->path, what, LOCK_SECONDS);
    delivery_answer(j, 451, "4.2.0", "Error: mailbox busy, try again later", log);
}

void mbox_run(struct delivery_job *j)
{
    const char *path = j->d->path;
    double deadline = now() + LOCK_SECONDS;
    char lock[4096];
    snprintf(lock, sizeof(lock), "%s.lock", path);
    int lfd;
    while ((lfd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        if (errno != EEXIST) {
            delivery_fail(j, errno, "cannot create the lock file", lock);
            return;
        }
        if (now() >= deadline) {
            busy(j, "the lock file is");
            return;
        }
        nap();
    }
    close(lfd);

    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        delivery_fail(j, errno, "cannot open", path);
        unlink(lock);
        return;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    while (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        if ((errno != EAGAIN && errno != EACCES) || now() >= deadline) {
            if (errno != EAGAIN && errno != EACCES)
                delivery_fail(j, errno, "cannot lock", path);
            else
                busy(j, "an fcntl lock is");
            close(fd);
            unlink(lock);
            return;
        }
        nap();
    }
    struct stat st;
    int err = fstat(fd, &st) == 0 ? 0 : errno;
    const char *what = "cannot stat";
    if (!err) {
        what = "cannot write";
        err = delivery_write_all(fd, j->text, j->len);
        if (!err && fsync(fd) != 0) {
            what = "cannot fsync";
            err = errno;
        }
        /* No partial message: back to the size it had. */
        if (err && ftruncate(fd, st.st_size) == 0)
            fsync(fd);
    }
    close(fd);
    unlink(lock);
    if (err) {
        delivery_fail(j, err, what, path);
        return;
    }
    delivery_answer(j, 250, "2.0.0", "Ok: delivered", NULL);
}
