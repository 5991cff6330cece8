/*
 * Maildir delivery (https://cr.yp.to/proto/maildir.html): the message is
 * written to tmp/ under a unique name, fsynced, and renamed into new/;
 * the folder's directory is fsynced so that the rename survives a crash.
 */
#include "deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* DIR (and the folders above it), DIR/tmp, DIR/new and DIR/cur, those
 * that are missing. */
static int make_folder(const char *dir)
{
    char up[4096];
    snprintf(up, sizeof(up), "%s", dir);
    for (char *p = strchr(up + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(up, 0700) != 0 && errno != EEXIST)
            return errno;
        *p = '/';
    }
    static const char *const subs[] = {"", "/tmp", "/new", "/cur"};
    for (size_t i = 0; i < 4; i++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s%s", dir, subs[i]);
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return errno;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return err;
}

void maildir_run(struct delivery_job *j)
{
    struct smtpd_delivery *d = (struct smtpd_delivery *)j->d;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* time, then a part unique on this host (microseconds, process, a
     * counter of this process), then the host */
    char name[512], tmp[4096], new[4096], newdir[4096];
    snprintf(name, sizeof(name), "%lld.M%06ldP%ldQ%lu.%s", (long long)ts.tv_sec, ts.tv_nsec / 1000,
             (long)getpid(), atomic_fetch_add(&d->counter, 1) + 1, d->host);
    snprintf(tmp, sizeof(tmp), "%s/tmp/%s", d->path, name);
    snprintf(new, sizeof(new), "%s/new/%s", d->path, name);
    snprintf(newdir, sizeof(newdir), "%s/new", d->path);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT) {
        int err = make_folder(d->path);
        if (err) {
            delivery_fail(j, err, "cannot create the Maildir", d->path);
            return;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        delivery_fail(j, errno, "cannot create", tmp);
        return;
    }
    int err = delivery_write_all(fd, j->text, j->len);
    const char *what = "cannot write";
    if (!err && fsync(fd) != 0) {
        err = errno;
        what = "cannot fsync";
    }
    if (close(fd) != 0 && !err) {
        err = errno;
        what = "cannot close";
    }
    if (!err && rename(tmp, new) != 0) {
        err = errno;
        what = "cannot rename into new/:";
    }
    if (err) {
        unlink(tmp); /* nothing partial stays behind */
        delivery_fail(j, err, what, tmp);
        return;
    }
    err = fsync_dir(newdir);
    if (err) {
        /* The file is in new/, and may not be after a crash: the client
         * must not count on it, and may find it twice. */
        unlink(new);
        delivery_fail(j, err, "cannot fsync", newdir);
        return;
    }
    delivery_answer(j, 250, "2.0.0", "Ok: delivered", NULL);
}
