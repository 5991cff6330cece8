/*
 * A C stream onto Python's sys.stdout, for DebuggingServer: the seed
 * printed with print(), so contextlib.redirect_stdout, pytest's capsys and
 * a replaced sys.stdout all saw the messages; the C handler's output goes
 * the same way. Each write looks sys.stdout up again and flushes it (the
 * handler flushes once per message).
 */
#define _GNU_SOURCE /* fopencookie() */
#include "pysmtpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of an incomplete UTF-8 sequence at the end of a write, kept for
 * the next one, so that a character cut by the stream's buffer is whole. */
struct pystdout {
    char held[4];
    size_t n_held;
};

/* How many bytes at the end of @p p (@p n bytes) begin a UTF-8 sequence
 * that is not complete yet. */
static size_t incomplete_tail(const char *p, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)p[n - back];
        if ((c & 0xc0) == 0x80)
            continue; /* a continuation byte: look further back */
        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

static int write_text(const char *p, size_t n)
{
    PyObject *out = PySys_GetObject("stdout"); /* borrowed */
    if (!out || out == Py_None)
        return 0; /* no stdout (pythonw, closed): the seed's print() did nothing either */
    PyObject *text = PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "backslashreplace");
    PyObject *r = text ? PyObject_CallMethod(out, "write", "O", text) : NULL;
    Py_XDECREF(text);
    if (r) {
        Py_DECREF(r);
        r = PyObject_CallMethod(out, "flush", NULL);
    }
    if (!r) {
        pyloop_python_failed(out);
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static ssize_t cookie_write(void *cookie, const char *buf, size_t len)
{
    struct pystdout *c = cookie;
    size_t total = c->n_held + len;
    char *all = malloc(total ? total : 1);
    if (!all)
        return -1;
    memcpy(all, c->held, c->n_held);
    memcpy(all + c->n_held, buf, len);
    size_t tail = incomplete_tail(all, total);
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = write_text(all, total - tail);
    PyGILState_Release(g);
    c->n_held = tail;
    memcpy(c->held, all + total - tail, tail);
    free(all);
    return rc < 0 ? -1 : (ssize_t)len;
}

static int cookie_close(void *cookie)
{
    free(cookie);
    return 0;
}

FILE *pystdout_open(void)
{
    struct pystdout *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    FILE *f =
        fopencookie(c, "w", (cookie_io_functions_t){.write = cookie_write, .close = cookie_close});
    if (!f)
        free(c);
    else
        setvbuf(f, NULL, _IOFBF, (size_t)64 * 1024);
    return f;
}
