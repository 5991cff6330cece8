"""What the tests of the Python module `smtpd` (python/, built into
build/python/cpXYZ/) share.

Each test_*.py here is one CTest test, run as

    PYTHONPATH=build/python/cp311 SMTPD_BIN=build/smtpd python3 -B tests/python/test_server.py

with the interpreter under test; `import smtpd` then gives the module of the
build folder (without PYTHONPATH: the stdlib's, on Python 3.11 and older,
which these tests were first written against; see STDLIB).

What every test directory shares (free ports, waiting, the raw client, the
recording upstream) comes from tests/pylib/smtpdtest.py; here is what only
these tests use:

  smtpd, STDLIB       the module under test; whether it is the stdlib's
  Recording           an SMTPServer whose process_message records each call
  ServerTestCase      servers in this process, smtpd.loop() on a thread,
                      always closed (and the loop seen to return) after a test
  ModuleProcess       `python -m smtpd ...` in a subprocess
  tool                a client program by path (swaks, curl): fails if missing
"""

import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
import smtpdtest  # noqa: E402
from smtpdtest import (RawClient, Recorder, SLOW, free_port, quiet_close,  # noqa: E402,F401
                       refused_port, stop_process, wait_port, wait_until, Collector)

with warnings.catch_warnings():
    # The stdlib's module warns that it is deprecated (3.11).
    warnings.simplefilter("ignore", DeprecationWarning)
    import smtpd  # noqa: E402

# True when `import smtpd` found the stdlib's module (no PYTHONPATH to the
# build folder): the tests then still run, to check the tests themselves,
# with asyncore's loop standing in for smtpd.loop(). The differences of ours
# (CRLF data, worker threads, reply checking, ...) fail there by design.
STDLIB = os.path.dirname(os.path.abspath(smtpd.__file__)) == \
    os.path.abspath(sysconfig.get_paths()["stdlib"])

BEGIN = smtpdtest.BEGIN
END = smtpdtest.END

# Upper bound for things that should be quick (a reply, a message to arrive).
QUICK = 10 * SLOW


def describe_module():
    return "%s (%s)" % (smtpd.__file__, "stdlib" if STDLIB else "ours")


# ---------------------------------------------------------------- the loop

def _stdlib_loop(timeout=0.1):
    import asyncore
    while asyncore.socket_map:
        asyncore.loop(timeout=timeout, use_poll=True, count=1)


def _stdlib_close_all():
    import asyncore
    asyncore.close_all()


def run_loop(timeout=0.1):
    """smtpd.loop(timeout=...) (asyncore's on the stdlib module)."""
    if STDLIB and not hasattr(smtpd, "loop"):
        return _stdlib_loop(timeout)
    return smtpd.loop(timeout=timeout)


def close_all():
    if STDLIB and not hasattr(smtpd, "close_all"):
        return _stdlib_close_all()
    return smtpd.close_all()


class LoopThread:
    """smtpd.loop(timeout=0.1) on a thread of its own; remembers an
    exception it ended with."""

    def __init__(self):
        self.error = None
        self.returned = threading.Event()
        self.thread = threading.Thread(target=self._run, name="smtpd-loop", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            run_loop(timeout=0.1)
        except BaseException as e:  # noqa: B902 - reported by the test
            self.error = e
        finally:
            self.returned.set()

    def join(self, timeout=5):
        """True when the loop has returned within timeout seconds."""
        self.thread.join(timeout)
        return not self.thread.is_alive()


# ---------------------------------------------------------------- replies

_ENHANCED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}(?: |$)")


def plain(code, text):
    """A reply's text without the enhanced status code (RFC 2034) the engine
    may put first: a reply pushed as "250 hello" reaches an ESMTP client as
    "250 2.0.0 hello". text: a str, bytes, or a list of lines."""
    if isinstance(text, list):
        return [plain(code, t) for t in text]
    if isinstance(text, bytes):
        return b"\n".join(plain(code, t.decode("utf-8")).encode("utf-8")
                           for t in text.split(b"\n"))
    m = _ENHANCED.match(text)
    if m and m.group(0)[0] == str(code)[0]:
        return text[m.end():]
    return text


# ---------------------------------------------------------------- servers

def port_of(server):
    return server.socket.getsockname()[1]


class Recording(smtpd.SMTPServer):
    """Records each process_message call as a dict (peer, mailfrom,
    rcpttos, data, kwargs, thread); answers what self.answer(call) returns
    (None: 250)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.calls = []
        self.cond = threading.Condition()

    def answer(self, call):
        return None

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        call = {"peer": peer, "mailfrom": mailfrom, "rcpttos": rcpttos, "data": data,
                "kwargs": kwargs, "thread": threading.current_thread()}
        with self.cond:
            self.calls.append(call)
            self.cond.notify_all()
        return self.answer(call)

    def wait_calls(self, n, timeout=QUICK):
        """The calls once there are n (fails after timeout seconds)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.calls) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("expected %d process_message calls within %ss, got %d: %r"
                                         % (n, timeout, len(self.calls), self.calls))
                self.cond.wait(left)
            return list(self.calls)


class ServerTestCase(unittest.TestCase):
    """Servers made in this process, served by smtpd.loop() on a thread.

    self.serve(server, ...) takes servers already made (they bind at
    construction) and starts the loop (once per test). After the test every
    client is closed, then every server, and the loop must return in 5 s."""

    maxDiff = 4000

    def setUp(self):
        self.servers = []
        self.loop = None
        self.addCleanup(self._stop_servers)

    def make(self, cls, localaddr=("127.0.0.1", 0), remoteaddr=None, **kw):
        """cls(localaddr, remoteaddr, **kw), closed after the test."""
        server = cls(localaddr, remoteaddr, **kw)
        self.servers.append(server)
        return server

    def serve(self, cls=Recording, *args, **kw):
        """A server made by make(cls, ...), then the loop started."""
        server = self.make(cls, *args, **kw)
        self.start_loop()
        return server

    def start_loop(self):
        if self.loop is None:
            self.loop = LoopThread()
        return self.loop

    def stop_loop(self, timeout=5):
        """Close every server; assert that the loop returns."""
        for s in self.servers:
            s.close()
        if STDLIB:  # asyncore's loop runs while any channel is open
            _stdlib_close_all()
        if self.loop is not None:
            self.assertTrue(self.loop.join(timeout * SLOW),
                            "smtpd.loop() did not return within %ss of closing every server"
                            % (timeout * SLOW))
            if self.loop.error is not None:
                raise AssertionError("smtpd.loop() raised %r" % (self.loop.error,))

    def _stop_servers(self):
        try:
            self.stop_loop()
        finally:
            self.loop = None
            for s in self.servers:
                quiet_close(s)
            self.servers = []

    # ---- clients ----

    def smtp(self, server_or_port, timeout=QUICK, ehlo=True):
        """smtplib.SMTP to the server, closed after the test (before the
        servers are)."""
        port = server_or_port if isinstance(server_or_port, int) else port_of(server_or_port)
        s = smtplib.SMTP("127.0.0.1", port, timeout=timeout)
        self.addCleanup(quiet_close, s)
        if ehlo:
            s.ehlo("client.example.org")
        return s

    def raw(self, server_or_port, timeout=QUICK, greeting=True):
        """A RawClient (tests/pylib/smtpdtest.py), its 220 greeting read."""
        port = server_or_port if isinstance(server_or_port, int) else port_of(server_or_port)
        c = RawClient(port, timeout=timeout)
        self.addCleanup(c.close)
        if greeting:
            code, text = c.reply()
            self.assertEqual(code, 220, text)
            c.greeting = text
        return c

    def raw_transaction(self, c, data, sender="a@example.com", rcpts=("b@example.com",),
                        mail_params=""):
        """MAIL, RCPT..., DATA on a greeted RawClient, the data dot-stuffed
        and sent; returns the reply to the final dot."""
        code, text = c.command("MAIL FROM:<%s>%s" % (sender, mail_params))
        self.assertEqual(code, 250, text)
        for r in rcpts:
            code, text = c.command("RCPT TO:<%s>" % r)
            self.assertEqual(code, 250, text)
        code, text = c.command("DATA")
        self.assertEqual(code, 354, text)
        c.send(smtpdtest.stuff(data) + b".\r\n")
        return c.reply()


# ---------------------------------------------------------------- subprocesses

def tool(name, candidates=None):
    """The path of a client program (swaks, curl, ...): fails loudly when it
    is not installed, never skips."""
    for path in (candidates or ["/usr/bin/" + name, "/usr/sbin/" + name]):
        if os.access(path, os.X_OK):
            return path
    path = shutil.which(name)
    if path:
        return path
    raise AssertionError("%s is not installed; the tests need it" % name)


def child_env(extra_path=(), **extra):
    """The environment for `python -m smtpd`: ours through the same
    PYTHONPATH (build folder first), with extra_path folders after it."""
    env = dict(os.environ)
    # Absolute: the child runs in another folder.
    parts = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    parts += list(extra_path)
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_module(*args, timeout=QUICK, env=None, cwd=None):
    """`python -m smtpd ARGS` to its end: the CompletedProcess (bytes)."""
    return subprocess.run([sys.executable, "-m", "smtpd"] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                          env=env or child_env(), cwd=cwd or tempfile.gettempdir())


class ModuleProcess:
    """`python -m smtpd OPTIONS 127.0.0.1:PORT [EXTRA...]` running, PORT a
    free one, started again on another port when it was taken meanwhile.
    Standard output and error are collected (self.out, self.err)."""

    def __init__(self, *options, extra=(), env=None, cwd=None, start_timeout=QUICK, tries=3):
        last = None
        for _ in range(tries):
            self.port = free_port()
            self.argv = ([sys.executable, "-m", "smtpd"] + list(options)
                         + ["127.0.0.1:%d" % self.port] + list(extra))
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=env or child_env(),
                                         cwd=cwd or tempfile.gettempdir())
            self.out = Collector(self.proc.stdout)
            self.err = Collector(self.proc.stderr)
            if wait_port(self.port, start_timeout, self.proc):
                return
            self.close()
            last = self.stderr_text()
            if b"in use" not in self.err.data():
                break
        raise AssertionError("python -m smtpd did not start listening: %r, exit status %r; "
                             "stderr:\n%s" % (self.argv, self.proc.poll(), last))

    def stdout(self):
        return self.out.data()

    def stderr_text(self):
        return self.err.data().decode("utf-8", "backslashreplace")

    def wait_stdout(self, predicate, timeout=QUICK):
        """Wait until predicate(stdout so far); fail after timeout."""
        r = self.out.wait_for(predicate, timeout)
        if not r:
            raise AssertionError("not on the standard output of %r within %ss; stdout:\n%r\n"
                                 "stderr:\n%s" % (self.argv, timeout, self.stdout(),
                                                  self.stderr_text()))
        return r

    def close(self, sig=signal.SIGTERM):
        stop_process(self.proc, sig, 5)
        for c in (self.out, self.err):
            c.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main():
    sys.stderr.write("smtpd module under test: %s\n" % describe_module())
    unittest.main(verbosity=2)
