"""Shared helpers for the PureProxy relay tests.

Each test_*.py file here is one CTest test (relay_<topic>), run as

    /usr/bin/python3 -B test_<topic>.py --smtpd PATH/smtpd

(or with SMTPD_BIN in the environment). Every test starts its own servers on
127.0.0.1 free ports -- the relay (smtpd -c PureProxy), and as its upstream
Postfix's smtp-sink, an aiosmtpd recorder (recorder.py) or a hand-written
socket server (FakeUpstream) -- and always stops them again. A missing tool
is a failure, never a skip.

What every test directory shares (starting and stopping smtpd, smtp-sink,
the recorder, the raw client) is in tests/pylib/smtpdtest.py; this module
re-exports what the tests here use, and adds the relay under test (Proxy),
FakeUpstream, the Client's conveniences and a sample message.
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import smtpdtest  # noqa: E402
from smtpdtest import (SLOW, Disconnected, Recorder, SmtpSink, free_port, main,  # noqa: E402,F401
                       port_closed, smtpd_bin, stuff)


# ---------------------------------------------------------------- the relay

class Proxy(smtpdtest.Smtpd):
    """smtpd -n -c PureProxy [options] 127.0.0.1:0 127.0.0.1:<upstream_port>."""

    HOSTNAME = "relay.test"
    # close(): SIGTERM, then SIGKILL after this many seconds. (That SIGTERM
    # alone stops the relay is test_shutdown's business; here it must not
    # cost every test its time.)
    TERM_WAIT = 0.5

    def __init__(self, upstream, *options, relay_timeout=5, listen="127.0.0.1:0"):
        """upstream: a port on 127.0.0.1, or "host:port" as given."""
        if isinstance(upstream, int):
            upstream = "127.0.0.1:%d" % upstream
        super().__init__("--hostname", self.HOSTNAME, "--relay-timeout", str(relay_timeout),
                         *options, cls="PureProxy", listen=listen, extra=[upstream],
                         stdout=subprocess.DEVNULL)

    def close(self):
        super().close()
        # Under SMTPD_SANITIZE a memory error aborts with a report on stderr.
        err = self.err.data()
        for mark in (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:"):
            if mark in err:
                raise AssertionError("PureProxy reported a sanitizer error:\n"
                                     + self.stderr_text())


# ---------------------------------------------------------------- upstreams

class RelayTestCase(unittest.TestCase):
    """A test case whose servers are stopped, newest first, after each test."""

    def setUp(self):
        self.cleanups = []

    def tearDown(self):
        for f in reversed(self.cleanups):
            f()

    def proxy(self, port, *options, **kw):
        p = Proxy(port, *options, **kw)
        self.cleanups.append(p.close)
        return p


class FakeUpstream(smtpdtest.ThreadedServer):
    """A hand-written SMTP server on a thread, for behaviour the real servers
    cannot be made to show.

    hang:  steps never answered: "CONNECT" (no greeting), "MAIL", "RCPT",
        "DATA", "." (the end of data).
    close_after_data: after 354, read this many bytes of data, then close.
    mail_on_reuse: what a MAIL gets on a connection that has already
        delivered a message (a pooled connection the upstream is dropping):
        "close" closes it without a reply, "421" answers 421 and closes.
    mail_421: the first this many connections answer MAIL with 421 and close
        (an upstream that timed the session out, or is going down).
    """

    def __init__(self, hang=(), close_after_data=None, mail_on_reuse=None, mail_421=0,
                 ehlo=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 100000000")):
        self.hang = set(hang)
        self.close_after_data = close_after_data
        self.mail_on_reuse = mail_on_reuse
        self.mail_421 = mail_421
        self.ehlo = list(ehlo)
        self.delivered = []      # data of messages answered 250 after the dot
        self.commands = []       # every command line received, in order
        self.hangs_ended = 0     # unanswered connections the relay closed
        self.closed_by_relay = 0 # connections the relay closed between commands
        self.data_started = threading.Event()
        self.hanging = threading.Event()  # a step is being left unanswered
        super().__init__(backlog=50)

    stop = smtpdtest.ThreadedServer.close

    def _hang(self, conn):
        # Never answer; read until the other side gives up.
        self.hanging.set()
        while conn.recv(65536):
            pass
        with self.lock:
            self.hangs_ended += 1

    def serve(self, conn):
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
                with self.lock:
                    closing = self.mail_421 > 0
                    self.mail_421 -= closing
                if delivered_here > 0 and self.mail_on_reuse:
                    closing = self.mail_on_reuse == "421"
                    if not closing:
                        return
                if closing:
                    conn.sendall(b"421 4.4.2 fake.upstream Error: timeout exceeded\r\n")
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


# ---------------------------------------------------------------- a client

class Client(smtpdtest.RawClient):
    """A plain SMTP client on a socket (see smtpdtest.RawClient) with every
    reply as (code, text), the texts of its lines joined by newlines, so that
    each step's code can be asserted. It reads the greeting and says EHLO
    at once. source: the local address to bind."""

    ERRORS = "replace"

    def __init__(self, port, source=None, host="127.0.0.1", timeout=15, helo="client.example",
                 ehlo=True):
        super().__init__(port, host=host, timeout=timeout, source=source)
        self.greeting = self.reply()
        if ehlo:
            self.ehlo_reply = self.cmd("EHLO " + helo)

    def reply(self, timeout=None):
        """(code, text) of the next reply; text of all lines joined by newline."""
        code, texts = super().reply(timeout)
        return code, "\n".join(texts)

    cmd = smtpdtest.RawClient.command

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
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True
        self.buf += chunk
        return not chunk

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        super().close()

    def reset(self):
        """Drop the connection with a TCP reset, sending nothing more."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


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
