/*
 * smtpd._smtpd: the event loop every server of the process runs on, loop(),
 * and the queue through which worker threads hand answers and close
 * requests to the loop thread (see pysmtpd.h).
 */
#include "pysmtpd.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

/* The process's one loop. Fields are used with the GIL held, except `mu`
 * and `cond`, which let close() wait without it. */
/* Seconds: a loop() round longer than this has no timer of its own. */
#define ROUND_MAX 86400.0

static struct {
    struct event_base *base;
    struct event *wake;    /* made active by pyloop_queue(), from any thread */
    struct event *timer;   /* ends a round of loop() after its timeout */
    struct event *signals; /* Python's signal wakeup fd, while loop() runs */
    int sigpipe[2];
    PyObject *queue;   /* list of items for the loop thread */
    PyObject *servers; /* list of open servers */
    PyObject *log_fn;  /* smtpd._log(level, line), or NULL */
    bool running;
    unsigned long loop_thread; /* PyThread ident of loop()'s thread */
    unsigned closing;          /* pyloop_close_begin() without its end; under mu */
    PyObject *pending[3];      /* pyloop_python_failed(): loop() raises it */
    pthread_mutex_t mu;
    pthread_cond_t cond;
} L = {.sigpipe = {-1, -1}, .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

struct event_base *pyloop_base(void)
{
    return L.base;
}

bool pyloop_running(void)
{
    return L.running;
}

bool pyloop_on_loop_thread(void)
{
    return L.running && L.loop_thread == PyThread_get_thread_ident();
}

PyObject *pyloop_log_fn(void)
{
    return L.log_fn;
}

int pyloop_queue(PyObject *item)
{
    bool first = PyList_GET_SIZE(L.queue) == 0;
    if (PyList_Append(L.queue, item) < 0)
        return -1;
    if (first)
        event_active(L.wake, EV_READ, 0);
    return 0;
}

int pyloop_add_server(ServerObject *so)
{
    return PyList_Append(L.servers, (PyObject *)so);
}

void pyloop_remove_server(ServerObject *so)
{
    Py_ssize_t i = PySequence_Index(L.servers, (PyObject *)so);
    if (i >= 0)
        PySequence_DelItem(L.servers, i);
    else
        PyErr_Clear();
    pthread_mutex_lock(&L.mu);
    so->srv = NULL;
    pthread_cond_broadcast(&L.cond);
    pthread_mutex_unlock(&L.mu);
}

void pyloop_wait_closed(ServerObject *so)
{
    Py_BEGIN_ALLOW_THREADS;
    pthread_mutex_lock(&L.mu);
    /* so->srv and L.running change on the loop thread, which broadcasts
     * after each change (under mu). */
    while (so->srv && L.running)
        pthread_cond_wait(&L.cond, &L.mu);
    pthread_mutex_unlock(&L.mu);
    Py_END_ALLOW_THREADS;
}

void pyloop_close_begin(void)
{
    pthread_mutex_lock(&L.mu);
    L.closing++;
    pthread_mutex_unlock(&L.mu);
}

void pyloop_close_end(void)
{
    pthread_mutex_lock(&L.mu);
    L.closing--;
    pthread_cond_broadcast(&L.cond);
    pthread_mutex_unlock(&L.mu);
}

/* Wait until no close() is under way. It is started with the GIL held and
 * loop() not running; so once this returns, with the GIL, none can start
 * before loop() sets L.running. */
static void wait_for_closes(void)
{
    for (;;) {
        pthread_mutex_lock(&L.mu);
        bool busy = L.closing > 0;
        pthread_mutex_unlock(&L.mu);
        if (!busy)
            return;
        Py_BEGIN_ALLOW_THREADS;
        pthread_mutex_lock(&L.mu);
        while (L.closing > 0)
            pthread_cond_wait(&L.cond, &L.mu);
        pthread_mutex_unlock(&L.mu);
        Py_END_ALLOW_THREADS;
    }
}

void pyloop_python_failed(PyObject *where)
{
    if (pyloop_on_loop_thread() && !PyErr_ExceptionMatches(PyExc_Exception)) {
        if (!L.pending[0])
            PyErr_Fetch(&L.pending[0], &L.pending[1], &L.pending[2]);
        else
            PyErr_Clear();
        event_base_loopbreak(L.base);
        return;
    }
    PyErr_WriteUnraisable(where);
}

/* The error pyloop_python_failed() kept, set again; @return whether there was one. */
static bool raise_pending(void)
{
    if (!L.pending[0])
        return false;
    PyErr_Restore(L.pending[0], L.pending[1], L.pending[2]);
    L.pending[0] = L.pending[1] = L.pending[2] = NULL;
    return true;
}

/* Free the servers closed since whose sessions have all ended. */
static void reap(void)
{
    PyObject *all = PyList_GetSlice(L.servers, 0, PyList_GET_SIZE(L.servers));
    if (!all) {
        PyErr_WriteUnraisable(NULL);
        return;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all); i++)
        server_reap((ServerObject *)PyList_GET_ITEM(all, i));
    Py_DECREF(all);
}

/* Hand every queued item to libsmtpd: answers to their sessions, close
 * requests to their servers. Loop thread, GIL held, at the top level of a
 * libevent callback (never inside one of libsmtpd's). */
static void drain(void)
{
    while (PyList_GET_SIZE(L.queue) > 0) {
        PyObject *q = L.queue;
        L.queue = PyList_New(0);
        if (!L.queue) {
            L.queue = q;
            PyErr_WriteUnraisable(NULL);
            return;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(q); i++) {
            PyObject *item = PyList_GET_ITEM(q, i);
            PyObject *first = PyTuple_GET_ITEM(item, 0);
            if (Py_IS_TYPE(first, &Server_Type))
                server_shutdown((ServerObject *)first);
            else
                session_deliver(item);
        }
        Py_DECREF(q);
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    drain();
    PyGILState_Release(g);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

/* A signal arrived (Python's handler wrote to the wakeup fd): end the round
 * so that loop() runs the Python handler (KeyboardInterrupt). */
static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)what, (void)arg;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    event_base_loopbreak(L.base);
}

/* signal.set_wakeup_fd(fd): @return the old fd, -1 for none or on error. */
static int set_wakeup_fd(int fd)
{
    PyObject *sig = PyImport_ImportModule("signal");
    PyObject *r = sig ? PyObject_CallMethod(sig, "set_wakeup_fd", "i", fd) : NULL;
    long old = r ? PyLong_AsLong(r) : -1;
    Py_XDECREF(r);
    Py_XDECREF(sig);
    PyErr_Clear();
    return (int)old;
}

static bool on_main_thread(void)
{
    PyObject *threading = PyImport_ImportModule("threading");
    if (!threading)
        return false;
    PyObject *main = PyObject_CallMethod(threading, "main_thread", NULL);
    Py_DECREF(threading);
    if (!main)
        return false;
    PyObject *ident = PyObject_GetAttrString(main, "ident");
    Py_DECREF(main);
    if (!ident)
        return false;
    bool yes = PyLong_AsUnsignedLong(ident) == PyThread_get_thread_ident();
    Py_DECREF(ident);
    PyErr_Clear();
    return yes;
}

PyDoc_STRVAR(loop_doc, "loop(timeout, count)\n--\n\n"
                       "Run every open server on this thread until none is open, or for\n"
                       "count rounds (count < 0: no limit) of at most timeout seconds each.");

static PyObject *py_loop(PyObject *mod, PyObject *args)
{
    (void)mod;
    double timeout;
    long count;
    if (!PyArg_ParseTuple(args, "dl:loop", &timeout, &count))
        return NULL;
    if (isnan(timeout)) {
        PyErr_SetString(PyExc_ValueError, "smtpd.loop(): timeout is NaN");
        return NULL;
    }
    wait_for_closes();
    if (L.running) {
        PyErr_SetString(PyExc_RuntimeError, "smtpd.loop() is already running");
        return NULL;
    }
    /* Set before anything below calls Python (and so may let a close() in). */
    L.running = true;
    L.loop_thread = PyThread_get_thread_ident();
    if (timeout < 0)
        timeout = 0;
    /* A round longer than a day (or an infinite one) has no timer: it ends
     * when something happens. */
    bool timed = timeout <= ROUND_MAX;
    struct timeval tv = {0, 0};
    if (timed) {
        tv.tv_sec = (time_t)timeout;
        tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
    }
    bool main = on_main_thread();
    int old_wakeup = -1;
    if (main) {
        old_wakeup = set_wakeup_fd(L.sigpipe[1]);
        event_add(L.signals, NULL);
    }
    int failed = 0;
    for (long round = 0; PyList_GET_SIZE(L.servers) > 0 && (count < 0 || round < count); round++) {
        if (timed)
            evtimer_add(L.timer, &tv);
        Py_BEGIN_ALLOW_THREADS;
        event_base_loop(L.base, EVLOOP_ONCE);
        Py_END_ALLOW_THREADS;
        evtimer_del(L.timer);
        drain();
        reap();
        if (raise_pending() || (main && PyErr_CheckSignals() < 0)) {
            failed = 1;
            break;
        }
    }
    /* The cleanup below calls Python; keep loop()'s exception for after. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    drain();
    if (!type && raise_pending()) {
        PyErr_Fetch(&type, &value, &tb);
        failed = 1;
    } else {
        Py_CLEAR(L.pending[0]);
        Py_CLEAR(L.pending[1]);
        Py_CLEAR(L.pending[2]);
    }
    pthread_mutex_lock(&L.mu);
    L.running = false;
    pthread_cond_broadcast(&L.cond);
    pthread_mutex_unlock(&L.mu);
    if (main) {
        event_del(L.signals);
        set_wakeup_fd(old_wakeup);
    }
    PyErr_Restore(type, value, tb);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_log_doc, "set_log(fn)\n--\n\n"
                          "fn(level, line) receives libsmtpd's log lines (levels: 0 error,\n"
                          "1 warning, 2 info, 3 debug); None: no logging.");

static PyObject *py_set_log(PyObject *mod, PyObject *fn)
{
    (void)mod;
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "set_log() takes a callable or None");
        return NULL;
    }
    Py_XSETREF(L.log_fn, fn == Py_None ? NULL : Py_NewRef(fn));
    Py_RETURN_NONE;
}

static PyObject *py_servers(PyObject *mod, PyObject *noargs)
{
    (void)mod, (void)noargs;
    return PyList_GetSlice(L.servers, 0, PyList_GET_SIZE(L.servers));
}

static PyMethodDef methods[] = {
    {"loop", py_loop, METH_VARARGS, loop_doc},
    {"set_log", py_set_log, METH_O, set_log_doc},
    {"servers", py_servers, METH_NOARGS, "servers()\n--\n\nThe open servers (a new list)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "smtpd._smtpd",
    .m_doc = "The C half of smtpd: libsmtpd's servers, sessions and event loop.",
    .m_size = -1,
    .m_methods = methods,
};

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int loop_init(void)
{
    /* Threads other than the loop's make events active and add servers. */
    if (evthread_use_pthreads() < 0 || !(L.base = event_base_new()))
        return -1;
    if (pipe2(L.sigpipe, O_CLOEXEC) < 0 || set_nonblocking(L.sigpipe[0]) < 0 ||
        set_nonblocking(L.sigpipe[1]) < 0)
        return -1;
    L.wake = event_new(L.base, -1, 0, on_wake, NULL);
    L.timer = evtimer_new(L.base, on_timer, NULL);
    L.signals = event_new(L.base, L.sigpipe[0], EV_READ | EV_PERSIST, on_signal, NULL);
    L.queue = PyList_New(0);
    L.servers = PyList_New(0);
    return L.wake && L.timer && L.signals && L.queue && L.servers ? 0 : -1;
}

PyMODINIT_FUNC PyInit__smtpd(void); /* found by the import system */
PyMODINIT_FUNC PyInit__smtpd(void)
{
    if (PyType_Ready(&Server_Type) < 0 || PyType_Ready(&Session_Type) < 0)
        return NULL;
    if (!L.base && loop_init() < 0) {
        PyErr_SetString(PyExc_ImportError, "smtpd: cannot set up the event loop");
        return NULL;
    }
    PyObject *m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Server", (PyObject *)&Server_Type) < 0 ||
        PyModule_AddObjectRef(m, "Session", (PyObject *)&Session_Type) < 0 ||
        PyModule_AddStringConstant(m, "VERSION", SMTPD_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "ENGINE_PYTHON", ENGINE_PYTHON) < 0 ||
        PyModule_AddIntConstant(m, "ENGINE_DEBUGGING", ENGINE_DEBUGGING) < 0 ||
        PyModule_AddIntConstant(m, "ENGINE_RELAY", ENGINE_RELAY) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
