/*
 * smtpd._smtpd: the C half of the Python module `smtpd`, on libsmtpd's
 * public API only (include/smtpd.h).
 *
 * Threads. One event loop (struct event_base) per process serves every
 * server; loop() runs it on the calling thread with the GIL released.
 * libsmtpd's callbacks therefore run without the GIL and take it for as long
 * as they touch Python objects. Python code of the user (process_message,
 * smtp_<VERB> methods) runs on the Python side's worker threads; its answer
 * comes back through Session.answer(), which only queues it (under the GIL)
 * and wakes the loop (event_active, thread-safe with evthread_use_pthreads).
 * The loop thread then hands it to libsmtpd (smtpd_reply), at the top level
 * of a libevent callback. Every field below is read and written with the GIL
 * held, which is what makes the queue safe.
 */
#ifndef PYSMTPD_H
#define PYSMTPD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdbool.h>

#include <smtpd.h>

/* What a server does with a message. */
enum engine {
    ENGINE_PYTHON,    /* process_message of the Python object, on a worker */
    ENGINE_DEBUGGING, /* smtpd_debugging_handler() to sys.stdout (pystdout.c) */
    ENGINE_RELAY,     /* smtpd_proxy (PureProxy, MailmanProxy) */
};

/* _smtpd.Server: one smtpd_server and the Python SMTPServer it serves. */
typedef struct server_object {
    PyObject_HEAD struct smtpd_server *srv; /* NULL once closed */
    struct smtpd_proxy *proxy;
    /* The engine's handler, and the one libsmtpd has: the engine's callbacks
     * wrapped (handler arg = this object) and the channel's commands. */
    struct smtpd_handler inner;
    struct smtpd_handler outer;
    struct smtpd_command *commands;
    size_t n_commands;
    PyObject *target;   /* the Python SMTPServer; cleared at close */
    PyObject *sessions; /* {session pointer (int): Session} of open sessions
                           Python has seen; libsmtpd's session data is the
                           relay's, so it cannot hold them */
    enum engine engine;
    bool decode_data;
    bool close_queued;
    bool draining; /* shut down on the loop thread: freed once no session is left */
    bool closing;  /* server_close_now() is under way (it runs Python) */
    FILE *out;     /* ENGINE_DEBUGGING: pystdout_open()'s stream */
} ServerObject;

/* _smtpd.Session: a client session as Python code sees it. */
typedef struct session_object {
    PyObject_HEAD struct smtpd_session *s; /* NULL once the session has closed */
    ServerObject *server;                  /* strong reference */
    /* Number of the callback waiting for an answer; an answer given for
     * another number (an earlier callback's, late) is dropped. */
    unsigned long seq;
    bool waiting;
    PyObject *channel; /* the SMTPChannel object, made by the Python side */
} SessionObject;

extern PyTypeObject Server_Type;
extern PyTypeObject Session_Type;

/* The process's event loop (module.c). */
struct event_base *pyloop_base(void);
/* Queue @p item (a tuple, see session.c and server.c) for the loop thread
 * and wake it. The GIL is held. @return 0, or -1 with an exception set. */
int pyloop_queue(PyObject *item);
/* Whether loop() is running now (then servers close on the loop thread). */
bool pyloop_running(void);
/* Whether this thread is the one running loop(). */
bool pyloop_on_loop_thread(void);
/* Register an open server (a strong reference while open); unregister it
 * once its smtpd_server is freed (this sets so->srv to NULL and wakes the
 * threads waiting in pyloop_wait_closed()). */
int pyloop_add_server(ServerObject *so);
void pyloop_remove_server(ServerObject *so);
/* The log line sink set by the Python side (smtpd._log), or NULL. */
PyObject *pyloop_log_fn(void);
/* Wait, the GIL released, until @p so has closed on the loop thread, or
 * until loop() has stopped. */
void pyloop_wait_closed(ServerObject *so);
/* Around a close() made while loop() is not running: loop() does not start
 * on another thread until it is over (the sessions' on_close run Python,
 * which lets other threads in while libsmtpd frees the server). */
void pyloop_close_begin(void);
void pyloop_close_end(void);
/* A call into Python made inside a libevent callback failed (the error is
 * set). On the loop thread a KeyboardInterrupt or SystemExit (a signal
 * handler ran there) ends the round and loop() raises it; anything else
 * goes to sys.unraisablehook with @p where. Clears the error. */
void pyloop_python_failed(PyObject *where);

/* server.c */
void server_close_now(ServerObject *so);
/* A close() on the loop thread: stop listening and let the sessions end
 * (libsmtpd's graceful shutdown); server_reap() frees it once they have. */
void server_shutdown(ServerObject *so);
/* Free @p so if it is draining and has no session left. */
void server_reap(ServerObject *so);
/* pystdout.c: a write-only stream onto sys.stdout (looked up at each write,
 * flushed after it); NULL: no memory. */
FILE *pystdout_open(void);
/* session.c */
/* The Session of @p s (a new reference), made at first use; NULL with an
 * exception. */
SessionObject *session_of(ServerObject *so, struct smtpd_session *s);
/* Hand a queued answer to libsmtpd (loop thread, GIL held). */
void session_deliver(PyObject *item);
/* Send "451 4.3.0" for the callback waiting on @p s, and log @p why. */
void session_fail(struct smtpd_session *s, const char *why);

#endif
