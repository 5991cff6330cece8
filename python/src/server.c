/*
 * _smtpd.Server: an smtpd_server on the module's loop, the handler that
 * hands its messages and commands to the Python side, and its closing.
 */
#include "pysmtpd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

static void log_cb(void *arg, enum smtpd_log_level level, const char *line)
{
    (void)arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *fn = pyloop_log_fn();
    if (fn) {
        PyObject *r = PyObject_CallFunction(fn, "is", (int)level, line);
        if (r)
            Py_DECREF(r);
        else
            pyloop_python_failed(fn);
    }
    PyGILState_Release(g);
}

static PyObject *text(const char *p, size_t len)
{
    /* Addresses are UTF-8 (SMTPUTF8) or ASCII; surrogateescape keeps any
     * byte, as the seed's str(line, 'utf-8') would have refused. */
    return PyUnicode_DecodeUTF8(p, (Py_ssize_t)len, "surrogateescape");
}

static PyObject *strv(const char *const *v, size_t n)
{
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *o = text(v[i], strlen(v[i]));
        if (!o)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, o);
    }
    return list;
}

/* Call target.<method>((session, seq, *args)) for a callback of @p s that
 * is to be answered later: the method is the put() of a worker queue (C
 * code, so no Python code runs in this libsmtpd callback). @return
 * SMTPD_PENDING, or SMTPD_DONE after a 451 when Python failed. GIL held. */
static enum smtpd_verdict dispatch(ServerObject *so, struct smtpd_session *s, const char *method,
                                   PyObject *args)
{
    SessionObject *se = args ? session_of(so, s) : NULL;
    PyObject *r = NULL;
    if (se && so->target) {
        se->seq++;
        se->waiting = true;
        PyObject *name = PyUnicode_FromString(method);
        PyObject *head = name ? Py_BuildValue("(Ok)", se, se->seq) : NULL;
        PyObject *all = head ? PySequence_Concat(head, args) : NULL;
        PyObject *fn = name ? PyObject_GetAttr(so->target, name) : NULL;
        if (fn && all)
            r = PyObject_CallOneArg(fn, all);
        Py_XDECREF(fn);
        Py_XDECREF(all);
        Py_XDECREF(head);
        Py_XDECREF(name);
        if (!r)
            se->waiting = false;
    }
    Py_XDECREF(se);
    Py_XDECREF(args);
    if (r) {
        Py_DECREF(r);
        return SMTPD_PENDING;
    }
    if (PyErr_Occurred())
        pyloop_python_failed(so->target);
    session_fail(s, "the Python server could not take the callback");
    return SMTPD_DONE;
}

static enum smtpd_verdict py_on_message(void *arg, struct smtpd_session *s,
                                        const struct smtpd_message *m)
{
    ServerObject *so = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *data = so->decode_data
                         ? PyUnicode_DecodeUTF8(m->data, (Py_ssize_t)m->data_len, "surrogateescape")
                         : PyBytes_FromStringAndSize(m->data, (Py_ssize_t)m->data_len);
    PyObject *args = NULL;
    if (data)
        args = Py_BuildValue("((sH)NNNN)", m->peer_addr, m->peer_port,
                             text(m->reverse_path, strlen(m->reverse_path)),
                             strv(m->forward_paths, m->n_forward_paths), data,
                             strv(m->mail_options, m->n_mail_options));
    enum smtpd_verdict v = dispatch(so, s, "_on_message", args);
    PyGILState_Release(g);
    return v;
}

/* What an SMTPChannel method sees of its session (its attributes). */
static PyObject *snapshot(struct smtpd_session *s)
{
    const char *helo = smtpd_session_helo(s);
    const char *rp = smtpd_session_reverse_path(s);
    size_t n;
    const char *const *fp = smtpd_session_forward_paths(s, &n);
    PyObject *rev = rp ? text(rp, strlen(rp)) : Py_NewRef(Py_None);
    return Py_BuildValue("((sH)(sH)NONNis)", smtpd_session_peer_addr(s), smtpd_session_peer_port(s),
                         smtpd_session_local_addr(s), smtpd_session_local_port(s),
                         text(helo ? helo : "", helo ? strlen(helo) : 0),
                         smtpd_session_esmtp(s) ? Py_True : Py_False, rev, strv(fp, n),
                         (int)smtpd_session_state(s), smtpd_session_hostname(s));
}

static enum smtpd_verdict py_command(void *arg, struct smtpd_session *s, const char *params,
                                     size_t len)
{
    ServerObject *so = arg;
    const struct smtpd_command *cmd = smtpd_session_command(s);
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *p = len ? text(params, len) : Py_NewRef(Py_None);
    PyObject *args = Py_BuildValue("(sNN)", cmd ? cmd->verb : "", p, snapshot(s));
    enum smtpd_verdict v = dispatch(so, s, "_on_command", args);
    PyGILState_Release(g);
    return v;
}

/* The engine's callbacks, called through the handler libsmtpd has (whose
 * arg is this object), so that one handler carries the channel's commands
 * and learns of closed sessions whatever the engine. */
#define INNER(arg) (&((ServerObject *)(arg))->inner)

static enum smtpd_verdict w_connect(void *arg, struct smtpd_session *s)
{
    return INNER(arg)->on_connect(INNER(arg)->arg, s);
}

static enum smtpd_verdict w_mail(void *arg, struct smtpd_session *s, const char *rp,
                                 const char *const *params, size_t n)
{
    return INNER(arg)->on_mail(INNER(arg)->arg, s, rp, params, n);
}

static enum smtpd_verdict w_rcpt(void *arg, struct smtpd_session *s, const char *fp,
                                 const char *const *params, size_t n)
{
    return INNER(arg)->on_rcpt(INNER(arg)->arg, s, fp, params, n);
}

static enum smtpd_verdict w_message(void *arg, struct smtpd_session *s,
                                    const struct smtpd_message *m)
{
    return INNER(arg)->on_message(INNER(arg)->arg, s, m);
}

static void w_reset(void *arg, struct smtpd_session *s)
{
    INNER(arg)->on_reset(INNER(arg)->arg, s);
}

static enum smtpd_verdict w_helo(void *arg, struct smtpd_session *s, const char *d, bool esmtp)
{
    return INNER(arg)->on_helo(INNER(arg)->arg, s, d, esmtp);
}

static enum smtpd_verdict w_data(void *arg, struct smtpd_session *s)
{
    return INNER(arg)->on_data(INNER(arg)->arg, s);
}

static void w_close(void *arg, struct smtpd_session *s)
{
    ServerObject *so = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *key = PyLong_FromVoidPtr(s);
    PyObject *se = key ? PyDict_GetItemWithError(so->sessions, key) : NULL;
    if (se) {
        ((SessionObject *)se)->s = NULL; /* late answers are dropped */
        PyDict_DelItem(so->sessions, key);
    }
    if (PyErr_Occurred())
        PyErr_WriteUnraisable(NULL);
    Py_XDECREF(key);
    PyGILState_Release(g);
    if (INNER(arg)->on_close)
        INNER(arg)->on_close(INNER(arg)->arg, s);
}

static void wrap_handler(ServerObject *so)
{
    const struct smtpd_handler *in = &so->inner;
    so->outer = (struct smtpd_handler){
        .on_connect = in->on_connect ? w_connect : NULL,
        .on_mail = in->on_mail ? w_mail : NULL,
        .on_rcpt = in->on_rcpt ? w_rcpt : NULL,
        .on_message = w_message,
        .on_reset = in->on_reset ? w_reset : NULL,
        .on_close = w_close,
        .arg = so,
        .commands = so->commands,
        .n_commands = so->n_commands,
        .on_helo = in->on_helo ? w_helo : NULL,
        .on_data = in->on_data ? w_data : NULL,
    };
}

/* The channel's smtp_<VERB> methods as commands, all served by py_command. */
static int make_commands(ServerObject *so, PyObject *verbs)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(verbs);
    so->commands = n ? calloc((size_t)n, sizeof(*so->commands)) : NULL;
    if (n && !so->commands) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *v = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(verbs, i));
        char *copy = v ? strdup(v) : NULL;
        if (!copy) {
            if (v)
                PyErr_NoMemory();
            return -1;
        }
        so->commands[so->n_commands++] = (struct smtpd_command){.verb = copy, .fn = py_command};
    }
    return 0;
}

static void free_commands(ServerObject *so)
{
    for (size_t i = 0; i < so->n_commands; i++)
        free((char *)so->commands[i].verb);
    free(so->commands);
    so->commands = NULL;
    so->n_commands = 0;
}

static int make_relay(ServerObject *so, const char *upstream, const char *networks,
                      const char *hostname, const char *lmtp, const char *domains, int level)
{
    struct smtpd_proxy_config pc;
    smtpd_proxy_config_init(&pc);
    pc.upstream = upstream;
    pc.relay_networks = networks;
    pc.hostname = hostname;
    pc.mailman_lmtp = lmtp;
    pc.mailman_domains = domains;
    pc.log = log_cb;
    pc.log_level = (enum smtpd_log_level)level;
    enum smtpd_err err = SMTPD_OK;
    so->proxy = smtpd_proxy_new(pyloop_base(), &pc, &err);
    if (!so->proxy) {
        PyErr_Format(PyExc_ValueError, "relay: %s (upstream %s, relay networks %s)",
                     smtpd_strerror(err), upstream ? upstream : "none",
                     networks ? networks : "the default");
        return -1;
    }
    smtpd_proxy_handler(&so->inner, so->proxy);
    return 0;
}

static int Server_init(ServerObject *so, PyObject *args, PyObject *kw)
{
    static char *names[] = {"target",          "engine",      "listen",         "data_size_limit",
                            "smtputf8",        "decode_data", "hostname",       "log_level",
                            "verbs",           "upstream",    "relay_networks", "mailman_lmtp",
                            "mailman_domains", NULL};
    PyObject *target, *verbs;
    int engine, smtputf8, decode, level;
    const char *listen, *hostname, *upstream, *networks, *lmtp, *domains;
    Py_ssize_t size;
    if (so->target) {
        PyErr_SetString(PyExc_RuntimeError, "Server is already set up");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Ois$nppziOzzzz:Server", names, &target, &engine,
                                     &listen, &size, &smtputf8, &decode, &hostname, &level, &verbs,
                                     &upstream, &networks, &lmtp, &domains))
        return -1;
    if (size < 0 || level < SMTPD_LOG_ERROR || level > SMTPD_LOG_DEBUG || engine < ENGINE_PYTHON ||
        engine > ENGINE_RELAY) {
        PyErr_SetString(PyExc_ValueError, "Server: size, log level or engine out of range");
        return -1;
    }
    PyObject *fast = PySequence_Fast(verbs, "verbs must be a sequence of str");
    if (!fast)
        return -1;
    so->target = Py_NewRef(target);
    so->engine = (enum engine)engine;
    so->decode_data = decode;
    int rc = make_commands(so, fast);
    Py_DECREF(fast);
    if (rc < 0)
        return -1;
    if (engine == ENGINE_PYTHON)
        so->inner = (struct smtpd_handler){.on_message = py_on_message, .arg = so};
    else if (engine == ENGINE_DEBUGGING && (so->out = pystdout_open()) != NULL)
        smtpd_debugging_handler(&so->inner, so->out);
    else if (engine == ENGINE_DEBUGGING) {
        PyErr_NoMemory();
        return -1;
    } else if (make_relay(so, upstream, networks, hostname, lmtp, domains, level) < 0)
        return -1;
    wrap_handler(so);

    struct smtpd_config cfg;
    smtpd_config_init(&cfg);
    cfg.data_size_limit = (size_t)size;
    cfg.enable_smtputf8 = smtputf8;
    cfg.decode_data = decode;
    cfg.hostname = hostname;
    cfg.log = log_cb;
    cfg.log_level = (enum smtpd_log_level)level;
    char why[200] = "";
    if (smtpd_handler_check(&so->outer, why, sizeof(why)) != SMTPD_OK) {
        PyErr_Format(PyExc_ValueError, "channel class: %s", why);
        return -1;
    }
    enum smtpd_err err = SMTPD_OK;
    struct smtpd_server *srv;
    int e = 0;
    /* The machine's FQDN and the listening address are looked up (DNS):
     * other threads run meanwhile. The server is not registered yet, so no
     * other thread can reach it; its log lines take the GIL (log_cb). */
    Py_BEGIN_ALLOW_THREADS;
    srv = smtpd_server_new(pyloop_base(), &cfg, &so->outer, &err);
    if (srv) {
        err = smtpd_server_listen(srv, listen);
        e = errno;
    }
    Py_END_ALLOW_THREADS;
    if (!srv) {
        PyErr_SetString(PyExc_ValueError, smtpd_strerror(err));
        return -1;
    }
    if (err != SMTPD_OK) {
        smtpd_server_free(srv);
        errno = e;
        if (err == SMTPD_ERR_BIND)
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, listen);
        else
            PyErr_Format(PyExc_OSError, "%s: %s", listen, smtpd_strerror(err));
        return -1;
    }
    so->srv = srv;
    if (pyloop_add_server(so) < 0) {
        server_close_now(so);
        return -1;
    }
    return 0;
}

void server_close_now(ServerObject *so)
{
    if (!so->srv || so->closing)
        return; /* closed, or being closed by a caller the GIL left for a while */
    so->closing = true;
    Py_INCREF(so);
    /* on_close of each session runs now (w_close), the GIL held. */
    smtpd_server_free(so->srv);
    smtpd_proxy_free(so->proxy);
    so->proxy = NULL;
    pyloop_remove_server(so);
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(so->sessions, &pos, &key, &value))
        ((SessionObject *)value)->s = NULL;
    PyDict_Clear(so->sessions);
    Py_CLEAR(so->target);
    Py_DECREF(so);
}

/* Seconds a transaction in progress may take to finish after close(), as
 * the smtpd program gives them at SIGTERM. */
#define CLOSE_GRACE 30

void server_shutdown(ServerObject *so)
{
    if (!so->srv || so->draining)
        return;
    so->draining = true;
    smtpd_server_shutdown(so->srv, CLOSE_GRACE);
    server_reap(so);
}

void server_reap(ServerObject *so)
{
    if (so->draining && so->srv && smtpd_server_session_count(so->srv) == 0)
        server_close_now(so);
}

PyDoc_STRVAR(close_doc, "close(wait=True)\n--\n\n"
                        "Stop listening. While loop() runs, the loop thread ends the sessions as\n"
                        "the smtpd program does at SIGTERM: idle ones get 421 now, a transaction\n"
                        "in progress finishes first (up to 30 s); close() returns once they\n"
                        "have, unless wait is false or it runs on the loop thread. Without a\n"
                        "running loop every session is closed at once.");

static PyObject *Server_close(ServerObject *so, PyObject *args, PyObject *kw)
{
    static char *names[] = {"wait", NULL};
    int wait = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:close", names, &wait))
        return NULL;
    if (!so->srv)
        Py_RETURN_NONE;
    if (!pyloop_running()) {
        /* No loop to let the sessions end: at once, or (wait false) at the
         * next loop(). */
        pyloop_close_begin();
        server_shutdown(so);
        if (wait)
            server_close_now(so);
        pyloop_close_end();
        Py_RETURN_NONE;
    }
    if (!so->close_queued) {
        PyObject *item = PyTuple_Pack(1, (PyObject *)so);
        if (!item || pyloop_queue(item) < 0) {
            Py_XDECREF(item);
            return NULL;
        }
        Py_DECREF(item);
        so->close_queued = true;
    }
    if (wait && !pyloop_on_loop_thread())
        pyloop_wait_closed(so);
    Py_RETURN_NONE;
}

static PyObject *Server_addresses(ServerObject *so, PyObject *noargs)
{
    (void)noargs;
    PyObject *list = PyList_New(0);
    size_t n = so->srv ? smtpd_server_listener_count(so->srv) : 0;
    for (size_t i = 0; list && i < n; i++) {
        char buf[128];
        if (smtpd_server_address(so->srv, i, buf, sizeof(buf)) != SMTPD_OK)
            continue;
        PyObject *s = PyUnicode_FromString(buf);
        if (!s || PyList_Append(list, s) < 0)
            Py_CLEAR(list);
        Py_XDECREF(s);
    }
    return list;
}

static PyObject *Server_session_count(ServerObject *so, PyObject *noargs)
{
    (void)noargs;
    return PyLong_FromSize_t(so->srv ? smtpd_server_session_count(so->srv) : 0);
}

static PyMethodDef Server_methods[] = {
    {"close", (PyCFunction)(void (*)(void))Server_close, METH_VARARGS | METH_KEYWORDS, close_doc},
    {"addresses", (PyCFunction)Server_addresses, METH_NOARGS,
     "addresses()\n--\n\nThe listening addresses, as 'host:port' strings ('[::1]:25')."},
    {"session_count", (PyCFunction)Server_session_count, METH_NOARGS,
     "session_count()\n--\n\nClient sessions open now."},
    {NULL, NULL, 0, NULL},
};

static PyObject *Server_get_closed(ServerObject *so, void *closure)
{
    (void)closure;
    return PyBool_FromLong(so->srv == NULL);
}

static PyGetSetDef Server_getset[] = {
    {"closed", (getter)Server_get_closed, NULL, "Whether close() has run.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *Server_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)args, (void)kw;
    ServerObject *so = (ServerObject *)type->tp_alloc(type, 0);
    if (so && !(so->sessions = PyDict_New()))
        Py_CLEAR(so);
    return (PyObject *)so;
}

static int Server_traverse(ServerObject *so, visitproc visit, void *arg)
{
    Py_VISIT(so->target);
    Py_VISIT(so->sessions);
    return 0;
}

static int Server_clear(ServerObject *so)
{
    Py_CLEAR(so->target);
    Py_CLEAR(so->sessions);
    return 0;
}

static void Server_dealloc(ServerObject *so)
{
    PyObject_GC_UnTrack(so);
    /* An open server is in the loop's list, so it is closed by now; one
     * whose setup failed has no smtpd_server but may have a relay. */
    smtpd_proxy_free(so->proxy);
    free_commands(so);
    if (so->out)
        fclose(so->out);
    Server_clear(so);
    Py_TYPE(so)->tp_free((PyObject *)so);
}

PyTypeObject Server_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "smtpd._smtpd.Server",
    .tp_doc = "Server(target, engine, listen, *, data_size_limit, smtputf8, decode_data,\n"
              "hostname, log_level, verbs, upstream, relay_networks, mailman_lmtp,\n"
              "mailman_domains)\n\n"
              "An smtpd_server listening on 'host:port' listen, on the module's loop.\n"
              "engine ENGINE_PYTHON calls target._on_message((session, seq, peer,\n"
              "mailfrom, rcpttos, data, mail_options)) for each message; every verb of\n"
              "verbs is a command that calls target._on_command((session, seq, verb,\n"
              "arg, snapshot)). Both take one tuple (a queue's put) and are answered\n"
              "later with session.answer(seq, ...).",
    .tp_basicsize = sizeof(ServerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Server_new,
    .tp_init = (initproc)Server_init,
    .tp_dealloc = (destructor)Server_dealloc,
    .tp_traverse = (traverseproc)Server_traverse,
    .tp_clear = (inquiry)Server_clear,
    .tp_methods = Server_methods,
    .tp_getset = Server_getset,
};
