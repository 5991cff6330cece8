"""Shared helpers for the smtpd integration tests.

Each test_*.py file in this directory is one CTest test (integ_<topic>). It is
run as

    python3 -B test_<topic>.py --smtpd PATH/smtpd --counter PATH/counter.so

(the options may also come from the environment as SMTPD_BIN and
SMTPD_COUNTER_SO). The tests start the real program on 127.0.0.1 with port 0,
read the chosen port from the "listening on" log line on standard error, talk
to it with real clients and always stop it again.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

BEGIN = b"---------- MESSAGE FOLLOWS ----------\n"
END = b"------------ END MESSAGE ------------\n"

# Every line the program logs: "2026-01-01T00:00:00 smtpd info: text".
LOG_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d smtpd\[\d+\] (error|warning|info|debug): (.*)$")

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_OSERR = 71
EX_NOPERM = 77

_paths = {
    "smtpd": os.environ.get("SMTPD_BIN"),
    "counter": os.environ.get("SMTPD_COUNTER_SO"),
}


def smtpd_bin():
    path = _paths["smtpd"]
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("smtpd binary not given or not executable: %r "
                             "(pass --smtpd PATH or set SMTPD_BIN)" % path)
    return path


def counter_so():
    path = _paths["counter"]
    if not path or not os.path.isfile(path):
        raise AssertionError("counter.so not given or missing: %r "
                             "(pass --counter PATH or set SMTPD_COUNTER_SO)" % path)
    return os.path.abspath(path)


def main():
    """Take --smtpd/--counter off the command line, then run unittest."""
    argv = [sys.argv[0]]
    args = sys.argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        key = None
        for k in ("smtpd", "counter"):
            if a == "--" + k and i + 1 < len(args):
                key, value, i = k, args[i + 1], i + 2
                break
            if a.startswith("--%s=" % k):
                key, value, i = k, a.split("=", 1)[1], i + 1
                break
        if key:
            _paths[key] = value
        else:
            argv.append(a)
            i += 1
    unittest.main(argv=argv, verbosity=2)


def run_smtpd(args, timeout=5, **kw):
    """Run the program to completion, for command lines that must make it
    exit. One that goes on running (e.g. serving instead of refusing the
    command line) is killed and reported as a failure."""
    argv = [smtpd_bin()] + list(args)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("%s did not exit within %ss (is it serving?); stderr: %r"
                             % (" ".join(argv), timeout, err))
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


class _Collector:
    """Reads a pipe on a thread into a growing buffer."""

    def __init__(self, pipe):
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.thread.start()

    def _run(self, pipe):
        fd = pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.closed = True
                    self.cond.notify_all()
                    break
                self.buf += chunk
                self.cond.notify_all()
        pipe.close()

    def data(self):
        with self.cond:
            return bytes(self.buf)

    def wait_for(self, predicate, timeout):
        """Wait until predicate(bytes so far) is true; return its value or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                r = predicate(bytes(self.buf))
                if r or self.closed:
                    return r
                left = deadline - time.monotonic()
                if left <= 0:
                    return r
                self.cond.wait(left)


class Smtpd:
    """One running smtpd. Use as a context manager or call close()."""

    def __init__(self, *options, cls="DebuggingServer", listen="127.0.0.1:0", extra=(),
                 nosetuid=True, preexec_fn=None):
        self.argv = [smtpd_bin()]
        if nosetuid:
            self.argv.append("-n")
        if cls is not None:
            self.argv += ["-c", cls]
        self.argv += list(options)
        self.argv.append(listen)
        self.argv += list(extra)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self.out = _Collector(self.proc.stdout)
        self.err = _Collector(self.proc.stderr)
        self.port = None
        try:
            self.port = self._wait_port()
        except BaseException:
            self.close()
            raise

    # ---- start-up ----

    def _wait_port(self, timeout=10):
        """The port of the first "listening on 127.0.0.1:PORT" line (or
        [::1]:PORT), once logged; a line naming port 0 would be the address
        asked for, not a socket."""
        rx = re.compile(rb"listening on (?:127\.0\.0\.1|\[::1\]):([0-9]+)\n")

        def ready(err):
            return next((int(p) for p in rx.findall(err) if int(p) != 0), None)

        port = self.err.wait_for(ready, timeout)
        if not port:
            raise AssertionError("smtpd did not report a listening socket within %ss; "
                                 "exit status %r; stderr:\n%s"
                                 % (timeout, self.proc.poll(), self.stderr_text()))
        return port

    # ---- output ----

    def stdout(self):
        return self.out.data()

    def stderr(self):
        return self.err.data()

    def stderr_text(self):
        return self.err.data().decode("utf-8", "backslashreplace")

    def wait_stderr(self, pattern, timeout=10):
        """Wait for a regex (bytes) on standard error; return the match."""
        rx = re.compile(pattern)
        m = self.err.wait_for(lambda b: rx.search(b), timeout)
        if not m:
            raise AssertionError("no %r on smtpd's stderr within %ss; stderr:\n%s"
                                 % (pattern, timeout, self.stderr_text()))
        return m

    def startup_log(self):
        """Standard error once start-up is over: a client is served (so the
        event loop runs) and its "connect from" line, logged after every
        start-up line, has been read."""
        c = RawClient(self.port)
        try:
            code, text = c.reply()
            if code != 220:
                raise AssertionError("greeting %d %r" % (code, text))
            self.wait_stderr(rb"connect from 127\.0\.0\.1:%d\n" % c.sock.getsockname()[1])
        finally:
            c.close()
        return self.stderr()

    def messages(self):
        return parse_messages(self.out.data())

    def wait_messages(self, n, timeout=20):
        """Wait until DebuggingServer has printed n whole messages."""
        def enough(out):
            return out.count(END) >= n
        self.out.wait_for(enough, timeout)
        msgs = self.messages()
        if len(msgs) < n:
            raise AssertionError("expected %d messages on stdout, got %d; stderr:\n%s"
                                 % (n, len(msgs), self.stderr_text()))
        return msgs

    # ---- stopping ----

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=10):
        """Wait for the program to exit; return its exit status.

        Fails (and kills it) when it does not exit in time."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError("smtpd did not exit within %ss; stderr:\n%s"
                                 % (timeout, self.stderr_text()))
        self.out.thread.join(5)
        self.err.thread.join(5)
        return rc

    def stop(self, timeout=10):
        """SIGTERM, then wait; return the exit status (negative: a signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def close(self):
        """Stop the program whatever its state (for clean-ups)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.thread.join(5)
        self.err.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_messages(out):
    """Split DebuggingServer's output into dicts with 'mail_options',
    'rcpt_options' (lists of str, None when no such line) and 'data' (bytes,
    as printed)."""
    msgs = []
    pos = 0
    while True:
        b = out.find(BEGIN, pos)
        if b < 0:
            break
        b += len(BEGIN)
        e = out.find(END, b)
        if e < 0:
            break
        block = out[b:e]
        pos = e + len(END)
        m = {"mail_options": None, "rcpt_options": None}
        for key, prefix in (("mail_options", b"mail options: "), ("rcpt_options", b"rcpt options: ")):
            if block.startswith(prefix):
                nl = block.index(b"\n")
                m[key] = block[len(prefix):nl].decode("utf-8").split(" ")
                block = block[nl + 1:]
        m["data"] = block
        msgs.append(m)
    return msgs


def debugging_view(data, peer="127.0.0.1"):
    """What DebuggingServer prints for message data as the handler got it:
    "X-Peer: <peer>" inserted before the first empty line (a line, ended by
    LF, that is empty or only CR), at the end when there is none (after a
    CRLF of its own if the data does not end in LF), then every CRLF turned
    into LF; all other bytes unchanged."""
    xpeer = b"X-Peer: " + peer.encode() + b"\r\n"
    lines = re.findall(rb"[^\n]*\n|[^\n]+$", data)
    out = []
    inserted = False
    for line in lines:
        if not inserted and line in (b"\r\n", b"\n"):
            out.append(xpeer)
            inserted = True
        out.append(line)
    if not inserted:
        if out and not out[-1].endswith(b"\n"):
            out[-1] += b"\r\n"
        out.append(xpeer)
    return b"".join(out).replace(b"\r\n", b"\n")


def normalized(data):
    """Data as the default --bare-lf normalize hands it on: every CR or LF
    that is not part of a CRLF made a CRLF."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def smtplib_wire(msg):
    """The data smtplib sends for a bytes message (before dot-stuffing):
    the bytes as they are (bare CR and LF included) plus a final CRLF when
    they do not end in one."""
    return msg if msg.endswith(b"\r\n") else msg + b"\r\n"


class RawClient:
    """A minimal SMTP client on a plain socket: send bytes, read replies."""

    def __init__(self, port, host="127.0.0.1", timeout=10, source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; unread: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """One reply: (code, [text of each line]) with the text as str."""
        texts = []
        while True:
            line = self._line()
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b""):
                raise AssertionError("not an SMTP reply line: %r" % line)
            texts.append(line[4:].decode("utf-8", "backslashreplace"))
            if line[3:4] != b"-":
                return int(line[:3]), texts

    def command(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def closed_by_peer(self, timeout=5):
        """True when the server closes the connection (and sends nothing
        more) within timeout."""
        self.sock.settimeout(timeout)
        try:
            extra = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if extra:
            raise AssertionError("unexpected data before close: %r" % (self.buf + extra))
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class SmtpdTestCase(unittest.TestCase):
    """Base class: start servers and clients that are cleaned up always."""

    maxDiff = 4000

    def start(self, *options, **kw):
        srv = Smtpd(*options, **kw)
        self.addCleanup(srv.close)
        return srv

    def raw(self, port, **kw):
        c = RawClient(port, **kw)
        self.addCleanup(c.close)
        return c

    def smtp(self, port, **kw):
        import smtplib
        s = smtplib.SMTP("127.0.0.1", port, timeout=kw.pop("timeout", 30), **kw)
        self.addCleanup(_quiet_close, s)
        return s

    def assertMessage(self, msg, data, mail_options=None):
        """A printed message is @data as received, with X-Peer, and the
        'mail options' line exactly when options were given."""
        self.assertEqual(msg["mail_options"], mail_options)
        expected = debugging_view(data)
        if msg["data"] != expected:
            # Show where they differ rather than two huge blobs.
            got = msg["data"]
            i = next((k for k in range(min(len(got), len(expected))) if got[k] != expected[k]),
                     min(len(got), len(expected)))
            self.fail("printed data differs at byte %d (lengths: got %d, expected %d):\n"
                      "got      %r\nexpected %r" % (i, len(got), len(expected),
                                                   got[max(0, i - 40):i + 40],
                                                   expected[max(0, i - 40):i + 40]))


def _quiet_close(s):
    try:
        s.close()
    except Exception:
        pass
