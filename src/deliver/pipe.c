/*
 * Delivery to a program (in the spirit of Postfix's pipe(8)): spawned
 * without a shell, the message on its standard input, the envelope in its
 * environment. A pool thread feeds it and reads its standard error while
 * waiting for it to exit, within the timeout.
 */
#define _GNU_SOURCE /* pipe2, posix_spawn_file_actions_addclosefrom_np */
#include "deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { EX_TEMPFAIL_ = 75 };

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static pid_t spawn(struct delivery_job *j, int in, int err_w, int *errn)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, err_w, 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    /* Its own process group, to be killed whole; default signals and an
     * empty mask, not our threads' (all blocked) or SIGPIPE ignored. */
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    *errn = posix_spawnp(&pid, j->argv[0], &fa, &at, j->argv, j->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return *errn ? -1 : pid;
}

/* What the program said first on its standard error, as reply text. */
static void first_line(const char *err, size_t n, char *out, size_t outsz)
{
    size_t len = 0;
    while (len < n && err[len] != '\n' && err[len] != '\r')
        len++;
    smtpd_escape(out, outsz, err, len);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?'; /* reply text is ASCII */
}

void pipe_run(struct delivery_job *j)
{
    int in[2], er[2];
    if (pipe2(in, O_CLOEXEC) != 0) {
        delivery_fail(j, errno, "cannot make a pipe for", j->argv[0]);
        return;
    }
    if (pipe2(er, O_CLOEXEC) != 0) {
        delivery_fail(j, errno, "cannot make a pipe for", j->argv[0]);
        close(in[0]);
        close(in[1]);
        return;
    }
    int errn;
    pid_t pid = spawn(j, in[0], er[1], &errn);
    close(in[0]);
    close(er[1]);
    /* Its exit wakes poll() through a pidfd; where there is none (valgrind
     * lacks pidfd_open) it is looked for every 20 ms. */
    int pidfd = pid > 0 ? pidfd_open(pid, 0) : -1;
    bool no_pidfd = pid > 0 && pidfd < 0 && errno == ENOSYS;
    if (pid < 0 || (pidfd < 0 && !no_pidfd)) {
        if (pid > 0) {
            kill(-pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        close(in[1]);
        close(er[0]);
        delivery_fail(j, pid < 0 ? errn : errno, "cannot run", j->argv[0]);
        return;
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(er[0], F_SETFL, O_NONBLOCK);

    long long deadline = now_ms() + (long long)j->d->timeout * 1000;
    size_t off = 0;
    bool unread = false, exited = false, timed_out = false;
    int status = 0;
    char err[512];
    size_t n_err = 0;
    int infd = in[1], errfd = er[0];
    if (j->len == 0) {
        close(infd);
        infd = -1;
    }
    /* Until it exits; its standard error is drained meanwhile (a program
     * that writes much there must not block on it). */
    while (!exited) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pf[3] = {{.fd = pidfd, .events = POLLIN},
                               {.fd = errfd, .events = POLLIN},
                               {.fd = infd, .events = POLLOUT}};
        long long wait = no_pidfd ? 20 : 1000;
        if (poll(pf, 3, (int)(left > wait ? wait : left)) < 0 && errno != EINTR)
            break;
        if (pf[1].revents) {
            char buf[4096];
            ssize_t n = read(errfd, buf, sizeof(buf));
            if (n > 0 && n_err < sizeof(err)) {
                size_t k = (size_t)n < sizeof(err) - n_err ? (size_t)n : sizeof(err) - n_err;
                memcpy(err + n_err, buf, k);
                n_err += k;
            }
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                close(errfd);
                errfd = -1;
            }
        }
        if (pf[2].revents) {
            ssize_t n = write(infd, j->text + off, j->len - off);
            if (n > 0)
                off += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || off == j->len) {
                unread = off < j->len; /* EPIPE: it closed its input */
                close(infd);
                infd = -1;
            }
        }
        exited = no_pidfd ? waitpid(pid, &status, WNOHANG) == pid : pf[0].revents != 0;
    }
    if (!exited || !no_pidfd) {
        if (!exited)
            kill(-pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (errfd >= 0) { /* what it wrote before it exited */
        ssize_t n = read(errfd, err + n_err, sizeof(err) - n_err);
        if (n > 0)
            n_err += (size_t)n;
        close(errfd);
    }
    if (infd >= 0) {
        unread = off < j->len;
        close(infd);
    }
    if (pidfd >= 0)
        close(pidfd);

    char log[512], text[200];
    const char *prog = j->argv[0];
    if (timed_out) {
        snprintf(log, sizeof(log), "%s: killed after %u s", prog, j->d->timeout);
        delivery_answer(j, 451, "4.3.0", "Error: the delivery program timed out, try again later",
                        log);
    } else if (WIFSIGNALED(status)) {
        snprintf(log, sizeof(log), "%s: killed by signal %d", prog, WTERMSIG(status));
        delivery_answer(j, 451, "4.3.0", "Error: the delivery program failed, try again later",
                        log);
    } else if (WEXITSTATUS(status) == 0 && unread) {
        snprintf(log, sizeof(log), "%s: exited 0 without reading the whole message", prog);
        delivery_answer(j, 451, "4.3.0",
                        "Error: the delivery program did not take the message, try again later",
                        log);
    } else if (WEXITSTATUS(status) == 0) {
        delivery_answer(j, 250, "2.0.0", "Ok: delivered", NULL);
    } else if (WEXITSTATUS(status) == 126 || WEXITSTATUS(status) == 127) {
        /* The shell's "cannot run" (and posix_spawn's where it forks, as
         * under valgrind): a setup error, mail is not refused for it. */
        snprintf(log, sizeof(log), "cannot run %s: exit status %d", prog, WEXITSTATUS(status));
        delivery_answer(j, 451, "4.3.0", "Error: the delivery program failed, try again later",
                        log);
    } else if (WEXITSTATUS(status) == EX_TEMPFAIL_) {
        snprintf(log, sizeof(log), "%s: exit status 75 (temporary failure)", prog);
        delivery_answer(j, 451, "4.3.0", "Error: the delivery program failed, try again later",
                        log);
    } else {
        first_line(err, n_err, text, sizeof(text));
        snprintf(log, sizeof(log), "%s: exit status %d", prog, WEXITSTATUS(status));
        if (!text[0])
            snprintf(text, sizeof(text), "Error: the delivery program failed (exit status %d)",
                     WEXITSTATUS(status));
        delivery_answer(j, 554, "5.3.0", text, log);
    }
}
