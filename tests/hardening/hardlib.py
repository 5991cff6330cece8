"""Shared helpers for the hardening tests (tests/hardening, CTest hard_*).

Each test_*.py here (and hostile.py) is one CTest test. They are run as

    /usr/bin/python3 -B test_<topic>.py --smtpd PATH/smtpd

(or with SMTPD_BIN in the environment). Everything talks to 127.0.0.1 only,
every loop is bounded in count and in time, and a missing tool or a missing
privilege makes a test fail, never skip.

What every test directory shares is in tests/pylib/smtpdtest.py (starting
and stopping smtpd, collecting its output, the raw client, /proc readers);
this module re-exports what the tests here import, and adds:
  Smtpd              counts DebuggingServer's messages; a short stderr tail
  RawClient          TCP_NODELAY, every reply until EOF, unread bytes dropped
  RecordingUpstream  a strict SMTP server (threads) that records the raw DATA
                     bytes exactly as they came over the wire
"""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import smtpdtest  # noqa: E402
from smtpdtest import (END, SLOW, main, nofile_preexec, paths,  # noqa: E402,F401
                       proc_cpu_seconds, proc_rss_kib, proc_socket_count, proc_status,
                       raise_nofile)


EHLO = b"EHLO x\r\n"  # valid, and its reply is ten times as long


def noread_client(port):
    """A connected socket with a small receive window, so that replies it
    does not read pile up in smtpd's socket soon."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    return s


def server_unread_input(port):
    """Bytes each of smtpd's client sockets on 127.0.0.1:port has received but
    not read (rx_queue in /proc/net/tcp), keyed by the client's port."""
    me = "0100007F:%04X" % port  # 127.0.0.1 as the kernel prints it
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
            if local == me and state == "01":  # ESTABLISHED
                out[int(remote.split(":")[1], 16)] = int(queues.split(":")[1], 16)
    return out


def pauses(log):
    """From smtpd's log: for each client port whose reading smtpd paused,
    the reply bytes it said were waiting each time ("[id] connect from
    127.0.0.1:port", then "[id] reading paused: N bytes of replies wait")."""
    ids = {m.group(1): int(m.group(2))
           for m in re.finditer(rb"\[(\d+)\] connect from 127\.0\.0\.1:(\d+)\n", log)}
    out = {}
    for i, n in re.findall(rb"\[(\d+)\] reading paused: (\d+) bytes of replies wait", log):
        if i in ids:
            out.setdefault(ids[i], []).append(int(n))
    return out


def push_until_unread(srv, socks, timeout):
    """Send EHLO lines on every socket without reading any reply, until
    smtpd has stopped reading each one: it logged the pause, and input waits
    unread in smtpd's socket and stays there for a second. Returns the bytes
    sent on each. (Waiting for the log line, not only for unread input,
    keeps a slow smtpd, e.g. under valgrind, from looking paused.)"""
    chunk = EHLO * 512
    sent = [0] * len(socks)
    ports = [s.getsockname()[1] for s in socks]
    deadline = time.monotonic() + timeout
    for s in socks:
        s.setblocking(False)
    while True:
        unread = server_unread_input(srv.port)
        for i, s in enumerate(socks):
            if unread.get(ports[i], 0) == 0:
                try:
                    sent[i] += s.send(chunk[sent[i] % len(chunk):])
                except BlockingIOError:
                    pass
        if (all(unread.get(p, 0) > 0 for p in ports)
                and set(pauses(srv.stderr())).issuperset(ports)):
            time.sleep(1.0)
            again = server_unread_input(srv.port)
            if all(again.get(p, 0) >= unread[p] for p in ports):
                break
        if time.monotonic() > deadline:
            raise AssertionError("smtpd kept reading clients that do not read its replies: "
                                 "sent %r, unread %r, paused %r"
                                 % (sent, unread, sorted(pauses(srv.stderr()))))
        time.sleep(0.02)
    for s in socks:
        s.setblocking(True)
    return sent


class Smtpd(smtpdtest.Smtpd):
    """One running smtpd on 127.0.0.1:0 (see smtpdtest.Smtpd)."""

    START_TIMEOUT = 15
    STDERR_TAIL = 6000

    def message_count(self):
        return self.stdout().count(END)

    def wait_messages(self, n, timeout=20):
        self.out.wait_for(lambda b: b.count(END) >= n, timeout)
        return self.message_count()


class RawClient(smtpdtest.RawClient):
    """The raw client (see smtpdtest.RawClient), writing without delay."""

    def __init__(self, port, host="127.0.0.1", timeout=10, source=None):
        super().__init__(port, host=host, timeout=timeout, source=source, nodelay=True)

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

class RecordingUpstream(smtpdtest.ThreadedServer):
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
        self.messages = []
        self.commands = []
        super().__init__(backlog=128)

    def serve(self, conn):
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

    def snapshot(self):
        with self.lock:
            return list(self.messages), list(self.commands)


class HardTestCase(smtpdtest.TestCase):
    """Base class: servers and clients are always cleaned up."""

    server_class = Smtpd
    client_class = RawClient

    def upstream(self, **kw):
        u = RecordingUpstream(**kw)
        self.addCleanup(u.close)
        return u
