"""Shared helpers for the PureProxy relay tests.

Each test_*.py file here is one CTest test (relay_<topic>), run as

    /usr/bin/python3 -B test_<topic>.py --smtpd PATH/smtpd

(or with SMTPD_BIN in the environment). Every test starts its own servers on
127.0.0.1 free ports -- the relay (smtpd -c PureProxy), and as its upstream
Postfix's smtp-sink, an aiosmtpd recorder (recorder.py) or a hand-written
socket server (FakeUpstream) -- and always stops them again. A missing tool
is a failure, never a skip.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_PYTHON = "/usr/bin/python3"
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"

_paths = {"smtpd": os.environ.get("SMTPD_BIN")}


def smtpd_bin():
    path = _paths["smtpd"]
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("smtpd binary not given or not executable: %r "
                             "(pass --smtpd PATH or set SMTPD_BIN)" % path)
    return path


def need(path):
    if not os.access(path, os.X_OK):
        raise AssertionError("%s is missing (Debian package postfix / python3-aiosmtpd); "
                             "the relay tests need it" % path)
    return path


def main():
    """Take --smtpd PATH off the command line, then run unittest."""
    argv = [sys.argv[0]]
    args = sys.argv[1:]
    i = 0
    while i < len(args):
        if args[i] == "--smtpd" and i + 1 < len(args):
            _paths["smtpd"] = args[i + 1]
            i += 2
        elif args[i].startswith("--smtpd="):
            _paths["smtpd"] = args[i].split("=", 1)[1]
            i += 1
        else:
            argv.append(args[i])
            i += 1
    unittest.main(argv=argv, verbosity=2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    """Wait until something accepts on 127.0.0.1:port (connect and close)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def port_closed(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def stop_process(proc, sig=signal.SIGTERM, timeout=5):
    """Stop one process we started, by its own id: sig, then after timeout
    seconds SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except ProcessLookupError:
        pass


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
                chunk = os.read(fd, 65536)
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


# ---------------------------------------------------------------- the relay

class Proxy:
    """smtpd -n -c PureProxy [options] 127.0.0.1:0 127.0.0.1:<upstream_port>."""

    HOSTNAME = "relay.test"

    def __init__(self, upstream, *options, relay_timeout=2, listen="127.0.0.1:0"):
        """upstream: a port on 127.0.0.1, or "host:port" as given."""
        if isinstance(upstream, int):
            upstream = "127.0.0.1:%d" % upstream
        self.argv = [smtpd_bin(), "-n", "-c", "PureProxy", "--hostname", self.HOSTNAME,
                     "--relay-timeout", str(relay_timeout)] + list(options) + [listen, upstream]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.err = _Collector(self.proc.stderr)
        rx = re.compile(rb"listening on (?:\[[0-9a-fA-F:.]+\]|[0-9.]+):([1-9][0-9]*)\n")
        m = self.err.wait_for(lambda b: rx.search(b), 10)
        if not m:
            self.close()
            raise AssertionError("PureProxy did not start: %r; exit %r; stderr:\n%s"
                                 % (self.argv, self.proc.poll(), self.stderr_text()))
        self.port = int(m.group(1))

    def stderr_text(self):
        return self.err.data().decode("utf-8", "backslashreplace")

    def wait_log(self, pattern, timeout=5):
        rx = re.compile(pattern)
        return self.err.wait_for(lambda b: rx.search(b), timeout)

    def alive(self):
        return self.proc.poll() is None

    def close(self, timeout=0.5):
        """SIGTERM, then SIGKILL after timeout seconds. (That SIGTERM alone
        stops the relay is test_shutdown's business; here it must not cost
        every test its time.)"""
        stop_process(self.proc, signal.SIGTERM, timeout)
        self.err.thread.join(5)
        # Under SMTPD_SANITIZE a memory error aborts with a report on stderr.
        err = self.err.data()
        for mark in (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:"):
            if mark in err:
                raise AssertionError("PureProxy reported a sanitizer error:\n"
                                     + self.stderr_text())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- upstreams

class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1 with the given options.

    dump_dir: write every delivered message to a file there (-d).
    """

    def __init__(self, *options, port=None, dump_dir=None, backlog=100):
        need(SMTP_SINK)
        self.options = list(options)
        self.dump_dir = dump_dir
        last = None
        for _ in range(5):
            self.port = port or free_port()
            argv = [SMTP_SINK]
            if os.geteuid() == 0:
                argv += ["-u", "nobody"]
            if dump_dir:
                os.makedirs(dump_dir, exist_ok=True)
                # smtp-sink writes as "nobody": the directory must be writable
                # and its (mkdtemp, 0700) parent passable.
                os.chmod(dump_dir, 0o777)
                os.chmod(os.path.dirname(os.path.abspath(dump_dir)), 0o711)
                argv += ["-d", os.path.join(dump_dir, "%Y%m%d%H%M%S.")]
            argv += self.options + ["127.0.0.1:%d" % self.port, str(backlog)]
            self.argv = argv
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.err = _Collector(self.proc.stderr)
            if wait_port(self.port, 10, self.proc):
                return
            last = self.err.data().decode("utf-8", "replace")
            stop_process(self.proc)
            if port:  # a fixed port (restart): wait for it to be free again
                time.sleep(0.2)
        raise AssertionError("smtp-sink did not start: %r\n%s" % (self.argv, last))

    def messages(self):
        """The dumped messages (bytes), with smtp-sink's own header lines."""
        out = []
        if not self.dump_dir:
            return out
        for name in sorted(os.listdir(self.dump_dir)):
            with open(os.path.join(self.dump_dir, name), "rb") as f:
                out.append(f.read())
        return out

    def close(self, sig=signal.SIGTERM):
        stop_process(self.proc, sig)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Recorder:
    """recorder.py (aiosmtpd) in a subprocess, journaling to a file."""

    def __init__(self, *options, port=None, journal=None):
        need(SYSTEM_PYTHON)
        self.tmp = None
        if journal is None:
            self.tmp = tempfile.mkdtemp(prefix="relay-rec-")
            journal = os.path.join(self.tmp, "journal.jsonl")
        self.journal = journal
        last = None
        for _ in range(5):
            self.port = port or free_port()
            self.argv = [SYSTEM_PYTHON, "-B", os.path.join(HERE, "recorder.py"),
                         "--port", str(self.port), "--out", journal] + list(options)
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.out = _Collector(self.proc.stdout)
            self.err = _Collector(self.proc.stderr)
            if self.out.wait_for(lambda b: b"READY\n" in b, 15):
                return
            last = self.err.data().decode("utf-8", "replace")
            stop_process(self.proc)
            if port:
                time.sleep(0.2)
        raise AssertionError("aiosmtpd recorder did not start: %r\n%s" % (self.argv, last))

    def events(self):
        try:
            with open(self.journal, "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            e = json.loads(line)
            if "data" in e:
                e["data"] = base64.b64decode(e["data"])
            out.append(e)
        return out

    def messages(self):
        return [e for e in self.events() if e["event"] == "message"]

    def connections(self):
        return [e for e in self.events() if e["event"] == "connect"]

    def wait_messages(self, n, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.messages()
            if len(m) >= n:
                return m
            time.sleep(0.02)
        return self.messages()

    def close(self, sig=signal.SIGTERM):
        stop_process(self.proc, sig)

    def cleanup(self):
        self.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


class FakeUpstream:
    """A hand-written SMTP server on a thread, for behaviour the real servers
    cannot be made to show.

    hang:  steps never answered: "CONNECT" (no greeting), "MAIL", "RCPT",
        "DATA", "." (the end of data).
    close_after_data: after 354, read this many bytes of data, then close.
    drop_mail_on_reuse: a MAIL on a connection that has already delivered a
        message gets no reply; the connection is closed (a pooled connection
        that died unseen).
    """

    def __init__(self, hang=(), close_after_data=None, drop_mail_on_reuse=False,
                 ehlo=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 100000000")):
        self.hang = set(hang)
        self.close_after_data = close_after_data
        self.drop_mail_on_reuse = drop_mail_on_reuse
        self.ehlo = list(ehlo)
        self.lock = threading.Lock()
        self.connections = 0
        self.delivered = []      # data of messages answered 250 after the dot
        self.commands = []       # every command line received, in order
        self.hangs_ended = 0     # unanswered connections the relay closed
        self.closed_by_relay = 0 # connections the relay closed between commands
        self.data_started = threading.Event()
        self.socks = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(50)
        self.port = self.listener.getsockname()[1]
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.stopped:
                    conn.close()
                    return
                self.connections += 1
                self.socks.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self._dialogue(conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _hang(self, conn):
        # Never answer; read until the other side gives up.
        while conn.recv(65536):
            pass
        with self.lock:
            self.hangs_ended += 1

    def _dialogue(self, conn):
        f = conn.makefile("rb")
        if "CONNECT" in self.hang:
            return self._hang(conn)
        conn.sendall(b"220 fake.upstream ESMTP\r\n")
        delivered_here = 0
        while True:
            line = f.readline(4096)
            if not line:
                with self.lock:
                    self.closed_by_relay += 1
                return
            with self.lock:
                self.commands.append(line)
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                if verb == b"EHLO":
                    lines = ["fake.upstream"] + self.ehlo
                    reply = "".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l)
                                    for i, l in enumerate(lines))
                    conn.sendall(reply.encode())
                else:
                    conn.sendall(b"250 fake.upstream\r\n")
            elif verb == b"MAIL":
                if self.drop_mail_on_reuse and delivered_here > 0:
                    return
                if "MAIL" in self.hang:
                    return self._hang(conn)
                conn.sendall(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                if "RCPT" in self.hang:
                    return self._hang(conn)
                conn.sendall(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                if "DATA" in self.hang:
                    return self._hang(conn)
                conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                self.data_started.set()
                if self.close_after_data is not None:
                    got = b""
                    while len(got) < self.close_after_data:
                        chunk = f.read1(self.close_after_data - len(got))
                        if not chunk:
                            break
                        got += chunk
                    # Close with unread data: the relay sees a reset.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                data = []
                while True:
                    l = f.readline()
                    if not l:
                        return
                    if l == b".\r\n":
                        break
                    data.append(l[1:] if l.startswith(b".") else l)
                if "." in self.hang:
                    return self._hang(conn)
                with self.lock:
                    self.delivered.append(b"".join(data))
                delivered_here += 1
                conn.sendall(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"RSET" or verb == b"NOOP":
                conn.sendall(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                with self.lock:
                    self.closed_by_relay += 1
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

    def stop(self):
        with self.lock:
            self.stopped = True
            socks, self.socks = self.socks, []
        try:
            self.listener.close()
        except OSError:
            pass
        # Wake the accept() with a connection of our own if it still waits.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            pass
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self.thread.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------- a client

class Disconnected(Exception):
    pass


class Client:
    """A plain SMTP client on a socket: every reply as (code, text), so that
    each step's code can be asserted. source: the local address to bind."""

    def __init__(self, port, source=None, host="127.0.0.1", timeout=15, helo="client.example",
                 ehlo=True):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.f = self.sock.makefile("rb")
        self.greeting = self.reply()
        if ehlo:
            self.ehlo_reply = self.cmd("EHLO " + helo)

    def reply(self):
        """(code, text) of the next reply; text of all lines joined by newline."""
        lines = []
        while True:
            line = self.f.readline(8192)
            if not line:
                raise Disconnected("connection closed by the server after %r" % lines)
            if not line.endswith(b"\r\n") or len(line) < 5 or not line[:3].isdigit():
                raise AssertionError("malformed reply line %r" % line)
            lines.append(line[4:-2].decode("utf-8", "replace"))
            if line[3:4] == b" ":
                return int(line[:3]), "\n".join(lines)

    def send(self, raw):
        self.sock.sendall(raw)

    def cmd(self, line):
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def data(self, body):
        """DATA; then (if 354) the dot-stuffed body and the final dot.
        Returns (code of DATA, (code, text) after the dot or None)."""
        code, text = self.cmd("DATA")
        if code != 354:
            return (code, text), None
        self.sock.sendall(stuff(body) + b".\r\n")
        return (code, text), self.reply()

    def closed_by_server(self, timeout=3):
        """True if the server has closed the connection (EOF within timeout)."""
        self.sock.settimeout(timeout)
        try:
            return self.f.read(1) == b""
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self.f.close()   # (the file holds the descriptor open too)
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Drop the connection with a TCP reset, sending nothing more."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.f.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def stuff(body):
    """Dot-stuff message bytes (RFC 5321 4.5.2) and end them with CRLF."""
    out = re.sub(rb"(?m)^\.", b"..", body)
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def message(subject="relay test", body=b"Hello.\r\n", extra_headers=b""):
    return (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: " + subject.encode() +
            b"\r\nMessage-ID: <%d.%f@client.example>\r\n" % (os.getpid(), time.time()) +
            extra_headers + b"\r\n" + body)


def send_one(port, mail_from="a@example.com", rcpts=("b@example.com",), body=None,
             source=None):
    """One whole transaction on a new connection; the reply after the dot."""
    with Client(port, source=source) as c:
        code, text = c.cmd("MAIL FROM:<%s>" % mail_from)
        if code != 250:
            return code, text
        ok = 0
        last = None
        for r in rcpts:
            last = c.cmd("RCPT TO:<%s>" % r)
            ok += last[0] == 250
        if not ok:
            return last
        d, end = c.data(body if body is not None else message())
        return end if end is not None else d
