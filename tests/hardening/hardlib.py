"""Shared helpers for the hardening tests (tests/hardening, CTest hard_*).

Each test_*.py here (and hostile.py) is one CTest test. They are run as

    /usr/bin/python3 -B test_<topic>.py --smtpd PATH/smtpd

(or with SMTPD_BIN in the environment). Everything talks to 127.0.0.1 only,
every loop is bounded in count and in time, and a missing tool or a missing
privilege makes a test fail, never skip.

What is here:
  Smtpd              the real program on 127.0.0.1:0, stdout/stderr collected
  RawClient          a byte-exact SMTP client on a plain socket
  RecordingUpstream  a strict SMTP server (threads) that records the raw DATA
                     bytes exactly as they came over the wire
  proc_* helpers     RSS, CPU time, descriptors and ids of a process (/proc)
"""

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

BEGIN = b"---------- MESSAGE FOLLOWS ----------\n"
END = b"------------ END MESSAGE ------------\n"

_paths = {"smtpd": os.environ.get("SMTPD_BIN")}


def smtpd_bin():
    path = _paths["smtpd"]
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("smtpd binary not given or not executable: %r "
                             "(pass --smtpd PATH or set SMTPD_BIN)" % path)
    return path


def take_smtpd_arg(argv):
    """Remove --smtpd PATH / --smtpd=PATH from argv (a list); return the rest."""
    rest = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--smtpd" and i + 1 < len(argv):
            _paths["smtpd"] = argv[i + 1]
            i += 2
            continue
        if a.startswith("--smtpd="):
            _paths["smtpd"] = a.split("=", 1)[1]
            i += 1
            continue
        rest.append(a)
        i += 1
    return rest


def main():
    """Take --smtpd off the command line, then run unittest."""
    argv = [sys.argv[0]] + take_smtpd_arg(sys.argv[1:])
    unittest.main(argv=argv, verbosity=2)


def raise_nofile(want):
    """Raise this process's RLIMIT_NOFILE soft limit to min(want, hard).
    Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nofile_preexec(soft, hard=None):
    """A preexec_fn that sets the child's RLIMIT_NOFILE."""
    def fn():
        h = hard
        if h is None:
            h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            if h != resource.RLIM_INFINITY:
                h = max(h, soft)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, h))
    return fn


# ---- /proc ----

def proc_status(pid):
    """/proc/PID/status as a dict of str -> str."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def proc_rss_kib(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def proc_cpu_seconds(pid):
    """User + system CPU time of the process so far, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    # The command name may contain spaces: fields start after the last ')'.
    fields = s[s.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def proc_socket_count(pid):
    """Sockets the process holds open (listeners included)."""
    n = 0
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, name)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


# ---- the program ----

class Collector:
    """Reads a pipe on a thread into a growing buffer; remembers when each
    chunk arrived (monotonic clock) so tests can time what was printed."""

    def __init__(self, pipe):
        self.buf = bytearray()
        self.times = []  # (offset after the chunk, monotonic time)
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
            now = time.monotonic()
            with self.cond:
                if not chunk:
                    self.closed = True
                    self.cond.notify_all()
                    break
                self.buf += chunk
                self.times.append((len(self.buf), now))
                self.cond.notify_all()
        pipe.close()

    def data(self):
        with self.cond:
            return bytes(self.buf)

    def time_of(self, offset):
        """When the byte at @offset had arrived (None: not yet)."""
        with self.cond:
            for end, t in self.times:
                if end > offset:
                    return t
        return None

    def wait_for(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                r = predicate(bytes(self.buf))
                if r or self.closed:
                    return r
                left = deadline - time.monotonic()
                if left <= 0:
                    return r
                self.cond.wait(min(left, 1.0))


class Smtpd:
    """One running smtpd on 127.0.0.1:0. Use as a context manager or close()."""

    def __init__(self, *options, cls="DebuggingServer", listen="127.0.0.1:0", extra=(),
                 nosetuid=True, preexec_fn=None, stdout=subprocess.PIPE, start_timeout=15,
                 term_wait=5):
        self.term_wait = term_wait
        self.argv = [smtpd_bin()]
        if nosetuid:
            self.argv.append("-n")
        if cls is not None:
            self.argv += ["-c", cls]
        self.argv += list(options)
        self.argv.append(listen)
        self.argv += list(extra)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=stdout,
                                     stderr=subprocess.PIPE, preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self.out = Collector(self.proc.stdout) if stdout == subprocess.PIPE else None
        self.err = Collector(self.proc.stderr)
        self.port = None
        try:
            found = self.err.wait_for(
                lambda b: re.search(rb"listening on [0-9.]+:([1-9][0-9]*)\n", b), start_timeout)
            if not found:
                raise AssertionError("smtpd did not report a listening socket within %ss; "
                                     "exit status %r; stderr:\n%s"
                                     % (start_timeout, self.proc.poll(), self.stderr_text()))
            self.port = int(found.group(1))
        except BaseException:
            self.close()
            raise

    def stdout(self):
        return self.out.data() if self.out else b""

    def stderr(self):
        return self.err.data()

    def stderr_text(self, tail=6000):
        t = self.err.data().decode("utf-8", "backslashreplace")
        return t if len(t) <= tail else "...\n" + t[-tail:]

    def alive(self):
        return self.proc.poll() is None and proc_alive(self.pid)

    def message_count(self):
        return self.stdout().count(END)

    def wait_messages(self, n, timeout=20):
        self.out.wait_for(lambda b: b.count(END) >= n, timeout)
        return self.message_count()

    def wait_stderr(self, pattern, timeout=10):
        rx = re.compile(pattern)
        m = self.err.wait_for(lambda b: rx.search(b), timeout)
        if not m:
            raise AssertionError("no %r on smtpd's stderr within %ss; stderr:\n%s"
                                 % (pattern, timeout, self.stderr_text()))
        return m

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=10):
        """Wait for exit; return the status. Fails (and kills it) when late."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError("smtpd did not exit within %ss; stderr:\n%s"
                                 % (timeout, self.stderr_text()))
        if self.out:
            self.out.thread.join(5)
        self.err.thread.join(5)
        return rc

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.term_wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.out:
            self.out.thread.join(5)
        self.err.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- clients ----

class RawClient:
    """A minimal SMTP client on a plain socket: send bytes, read replies."""

    def __init__(self, port, host="127.0.0.1", timeout=10, source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; unread: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self, timeout=None):
        """One reply: (code, [text of each line])."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        texts = []
        while True:
            line = self._line()
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b""):
                raise AssertionError("not an SMTP reply line: %r" % line)
            texts.append(line[4:].decode("utf-8", "backslashreplace"))
            if line[3:4] != b"-":
                return int(line[:3]), texts

    def replies_until_eof(self, timeout=10, limit=50):
        """Every reply until the server closes: a list of (code, first text)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("server did not close within %ss; replies so far %r"
                                     % (timeout, out))
            self.sock.settimeout(left)
            try:
                code, texts = self.reply()
            except EOFError:
                break
            except ConnectionResetError:
                break
            out.append((code, texts[0]))
        return out

    def command(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def closed_by_peer(self, timeout=5):
        """True when the server closes the connection within timeout (any
        unread bytes are discarded)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def send_mail_smtplib(port, token, timeout=30, source=None):
    """Send one small message with smtplib; return the data sent (bytes).
    Raises on any refusal."""
    import smtplib
    msg = ("From: good@example.com\r\nTo: rcpt@example.net\r\nSubject: %s\r\n\r\n"
           "well-behaved client, token %s\r\n" % (token, token)).encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout,
                      source_address=(source, 0) if source else None) as s:
        s.ehlo("good.example.com")
        refused = s.sendmail("good@example.com", ["rcpt@example.net"], msg)
        if refused:
            raise AssertionError("recipients refused: %r" % refused)
    return msg


# ---- a recording upstream ----

class RecordingUpstream:
    """A strict SMTP server for relay tests: only CRLF "." CRLF ends DATA
    (as RFC 5321 says), and every message is recorded with its raw wire
    bytes, so a test sees exactly what the relay sent.

    messages: list of dicts {mail_from, rcpts, wire (bytes from after the
    354 up to and including the final ".\\r\\n"), data (dot-unstuffed,
    without the final dot line)}. commands: every command line received.
    reply_text: text used in the 250 replies (tests may make it hostile)."""

    def __init__(self, reply_text=b"OK", greeting=b"upstream.test ESMTP recorder"):
        self.reply_text = reply_text
        self.greeting = greeting
        self.lock = threading.Lock()
        self.messages = []
        self.commands = []
        self.connections = 0
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        self.lsock.settimeout(0.2)
        while not self.stopping:
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(60)
        buf = b""

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    raise EOFError
                buf += chunk
            ln, buf = buf.split(b"\r\n", 1)
            return ln

        def data():
            nonlocal buf
            # The DATA line's CRLF counts as the first CRLF of the end.
            while True:
                if buf.startswith(b".\r\n"):
                    wire, buf = buf[:3], buf[3:]
                    return wire
                i = buf.find(b"\r\n.\r\n")
                if i >= 0:
                    wire, buf = buf[:i + 5], buf[i + 5:]
                    return wire
                chunk = conn.recv(65536)
                if not chunk:
                    raise EOFError
                buf += chunk

        try:
            conn.sendall(b"220 " + self.greeting + b"\r\n")
            mail_from, rcpts = None, []
            while True:
                ln = line()
                with self.lock:
                    self.commands.append(ln)
                verb = ln[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-upstream.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                                 b"250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
                elif verb in (b"HELO", b"NOOP"):
                    conn.sendall(b"250 " + self.reply_text + b"\r\n")
                elif verb == b"RSET":
                    mail_from, rcpts = None, []
                    conn.sendall(b"250 2.0.0 " + self.reply_text + b"\r\n")
                elif verb == b"MAIL":
                    mail_from, rcpts = ln[10:].split(b" ")[0], []
                    conn.sendall(b"250 2.1.0 " + self.reply_text + b"\r\n")
                elif verb == b"RCPT":
                    rcpts.append(ln[8:])
                    conn.sendall(b"250 2.1.5 " + self.reply_text + b"\r\n")
                elif verb == b"DATA":
                    if mail_from is None or not rcpts:
                        conn.sendall(b"503 5.5.1 need MAIL and RCPT\r\n")
                        continue
                    conn.sendall(b"354 go ahead\r\n")
                    wire = data()
                    body = wire[:-3]  # without ".\r\n" (the CRLF before it stays)
                    lines = body.split(b"\r\n")
                    unstuffed = b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)
                    with self.lock:
                        self.messages.append({"mail_from": mail_from, "rcpts": list(rcpts),
                                              "wire": wire, "data": unstuffed})
                    mail_from, rcpts = None, []
                    conn.sendall(b"250 2.0.0 " + self.reply_text + b"\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    break
                else:
                    conn.sendall(b"500 5.5.1 unknown\r\n")
        except (EOFError, OSError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def snapshot(self):
        with self.lock:
            return list(self.messages), list(self.commands)

    def close(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        self.thread.join(2)


def _quiet_close(x):
    try:
        x.close()
    except Exception:
        pass


class HardTestCase(unittest.TestCase):
    """Base class: servers and clients are always cleaned up."""

    maxDiff = 4000

    def start(self, *options, **kw):
        srv = Smtpd(*options, **kw)
        self.addCleanup(srv.close)
        return srv

    def raw(self, port, **kw):
        c = RawClient(port, **kw)
        self.addCleanup(c.close)
        return c

    def upstream(self, **kw):
        u = RecordingUpstream(**kw)
        self.addCleanup(u.close)
        return u
