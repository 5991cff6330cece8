/*
 * _smtpd.Session: a client session as the Python side sees it, and the way
 * an answer made on a worker thread reaches libsmtpd (pysmtpd.h).
 */
#include "pysmtpd.h"

#include <string.h>

SessionObject *session_of(ServerObject *so, struct smtpd_session *s)
{
    PyObject *key = PyLong_FromVoidPtr(s);
    if (!key)
        return NULL;
    SessionObject *se = (SessionObject *)PyDict_GetItemWithError(so->sessions, key);
    if (se || PyErr_Occurred()) {
        Py_DECREF(key);
        return se ? (SessionObject *)Py_NewRef(se) : NULL;
    }
    se = PyObject_GC_New(SessionObject, &Session_Type);
    if (se) {
        se->s = s;
        se->server = (ServerObject *)Py_NewRef(so);
        se->seq = 0;
        se->waiting = false;
        se->channel = Py_NewRef(Py_None);
        PyObject_GC_Track(se);
        if (PyDict_SetItem(so->sessions, key, (PyObject *)se) < 0)
            Py_CLEAR(se);
    }
    Py_DECREF(key);
    return se;
}

void session_fail(struct smtpd_session *s, const char *why)
{
    smtpd_session_log(s, SMTPD_LOG_ERROR, "%s", why);
    smtpd_reply(s, 451, "4.3.0", NULL);
}

/* The UTF-8 of str @p o, or NULL with an exception. */
static const char *utf8(PyObject *o, Py_ssize_t *len)
{
    if (!PyUnicode_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "a reply is made of str");
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(o, len);
}

static enum smtpd_err send_reply(struct smtpd_session *s, PyObject *item)
{
    int code = (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
    PyObject *enh = PyTuple_GET_ITEM(item, 3);
    PyObject *lines = PyTuple_GET_ITEM(item, 4);
    const char *enhanced = NULL;
    if (enh != Py_None && !(enhanced = utf8(enh, NULL)))
        return SMTPD_ERR_REPLY;
    Py_ssize_t n = PyTuple_GET_SIZE(lines);
    const char *text[64];
    if (n < 1 || n > 64)
        return SMTPD_ERR_REPLY;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyTuple_GET_ITEM(lines, i);
        if (n == 1 && line == Py_None)
            text[i] = NULL; /* the standard text */
        else if (!(text[i] = utf8(line, NULL)))
            return SMTPD_ERR_REPLY;
    }
    if (n == 1)
        return smtpd_reply(s, code, enhanced, text[0]);
    return smtpd_reply_lines(s, code, enhanced, text, (size_t)n);
}

void session_deliver(PyObject *item)
{
    SessionObject *se = (SessionObject *)PyTuple_GET_ITEM(item, 0);
    unsigned long seq = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 1));
    if (!se->s || !se->waiting || se->seq != seq)
        return; /* closed, or an answer already given */
    se->waiting = false;
    struct smtpd_session *s = se->s;
    enum smtpd_err err;
    if (PyTuple_GET_ITEM(item, 2) == Py_None) {
        Py_ssize_t len = 0;
        const char *params = utf8(PyTuple_GET_ITEM(item, 3), &len);
        err = params ? smtpd_run_builtin(s, params, (size_t)len) : SMTPD_ERR_STATE;
    } else {
        err = send_reply(s, item);
    }
    if (err != SMTPD_OK) {
        PyErr_Clear();
        /* libsmtpd refused it (a 3xx after DATA, a bad enhanced code...):
         * the Python side had checked its form, so say which rule. */
        char why[160];
        snprintf(why, sizeof(why), "a Python answer was refused (%s): 451 sent instead",
                 smtpd_strerror(err));
        session_fail(s, why);
    }
}

/* Queue an answer; GIL held (any thread). */
static PyObject *queue_answer(PyObject *item)
{
    if (!item)
        return NULL;
    int rc = pyloop_queue(item);
    Py_DECREF(item);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(answer_doc, "answer(seq, code, enhanced, lines)\n--\n\n"
                         "Answer callback number seq with reply code (int), enhanced status\n"
                         "code (str or None: the standard one) and lines (a tuple of str, one\n"
                         "per reply line). Any thread; it is sent from the loop thread. An\n"
                         "answer for a session that has closed, or given twice, is dropped.");

static PyObject *Session_answer(SessionObject *se, PyObject *args)
{
    unsigned long seq;
    int code;
    PyObject *enh, *lines;
    if (!PyArg_ParseTuple(args, "kiOO!:answer", &seq, &code, &enh, &PyTuple_Type, &lines))
        return NULL;
    return queue_answer(Py_BuildValue("(OkiOO)", se, seq, code, enh, lines));
}

PyDoc_STRVAR(run_builtin_doc, "run_builtin(seq, params)\n--\n\n"
                              "Answer callback number seq (an smtp_<VERB> method that replaces a\n"
                              "built-in command) by running the built-in command with params.");

static PyObject *Session_run_builtin(SessionObject *se, PyObject *args)
{
    unsigned long seq;
    PyObject *params;
    if (!PyArg_ParseTuple(args, "kU:run_builtin", &seq, &params))
        return NULL;
    return queue_answer(Py_BuildValue("(OkOO)", se, seq, Py_None, params));
}

static PyMethodDef Session_methods[] = {
    {"answer", (PyCFunction)Session_answer, METH_VARARGS, answer_doc},
    {"run_builtin", (PyCFunction)Session_run_builtin, METH_VARARGS, run_builtin_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *Session_get_channel(SessionObject *se, void *closure)
{
    (void)closure;
    return Py_NewRef(se->channel);
}

static int Session_set_channel(SessionObject *se, PyObject *v, void *closure)
{
    (void)closure;
    Py_XSETREF(se->channel, Py_NewRef(v ? v : Py_None));
    return 0;
}

static PyObject *Session_get_closed(SessionObject *se, void *closure)
{
    (void)closure;
    return PyBool_FromLong(se->s == NULL);
}

static PyGetSetDef Session_getset[] = {
    {"channel", (getter)Session_get_channel, (setter)Session_set_channel,
     "The SMTPChannel object of the session (set by the Python side).", NULL},
    {"closed", (getter)Session_get_closed, NULL, "Whether the session has ended.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static int Session_traverse(SessionObject *se, visitproc visit, void *arg)
{
    Py_VISIT(se->channel);
    Py_VISIT(se->server);
    return 0;
}

static int Session_clear(SessionObject *se)
{
    Py_CLEAR(se->channel);
    Py_CLEAR(se->server);
    return 0;
}

static void Session_dealloc(SessionObject *se)
{
    PyObject_GC_UnTrack(se);
    Session_clear(se);
    PyObject_GC_Del(se);
}

PyTypeObject Session_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "smtpd._smtpd.Session",
    .tp_doc = "A client session (made by the server, not by Python code).",
    .tp_basicsize = sizeof(SessionObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_traverse = (traverseproc)Session_traverse,
    .tp_clear = (inquiry)Session_clear,
    .tp_methods = Session_methods,
    .tp_getset = Session_getset,
};
