"""Shared helpers for the PureProxy relay tests.

Each test_*.py file here is one CTest test (relay_<topic>), run as

    /usr/bin/python3 -B test_<topic>.py --smtpd PATH/smtpd

(or with SMTPD_BIN in the environment). Every test starts its
own servers on 127.0.0.1 free ports -- the relay (smtpd -c PureProxy or
MailmanProxy), and as its upstream Postfix's smtp-sink, an aiosmtpd recorder
(recorder.py) or a hand-written socket server (FakeUpstream, and
ScriptedUpstream whose answer at each step the test sets) -- and always
stops them again. A missing tool is a failure, never a skip.

What every test directory shares (starting and stopping smtpd, smtp-sink,
the recorder, the raw client) is in tests/pylib/smtpdtest.py; this module
re-exports what the tests here use, and adds the relay under test (Proxy),
FakeUpstream, ScriptedUpstream, the Client's conveniences and a sample
message.
"""

import os
import pwd
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import smtpdtest  # noqa: E402
from smtpdtest import (SLOW, Disconnected, Recorder, SmtpSink, free_port, refused_port,  # noqa: E402,F401
                       port_closed, smtpd_bin, stuff)


def main():
    smtpdtest.main()


# ---------------------------------------------------------------- the relay

class Proxy(smtpdtest.Smtpd):
    """smtpd -n -c PureProxy [options] 127.0.0.1:0 127.0.0.1:<upstream_port>
    (cls="MailmanProxy": that class, with --mailman-lmtp among the options)."""

    HOSTNAME = "relay.test"
    # close(): SIGTERM, then SIGKILL after this many seconds. (That SIGTERM
    # alone stops the relay is test_shutdown's business; here it must not
    # cost every test its time.)
    TERM_WAIT = 0.5

    def __init__(self, upstream, *options, relay_timeout=5, listen="127.0.0.1:0",
                 cls="PureProxy", idle_timeout=None):
        """upstream: a port on 127.0.0.1, or "host:port" as given.
        idle_timeout: --relay-idle-timeout, seconds a pooled upstream
        connection is kept."""
        if isinstance(upstream, int):
            upstream = "127.0.0.1:%d" % upstream
        self.cls = cls
        if idle_timeout is not None:
            options = ("--relay-idle-timeout", str(idle_timeout)) + options
        super().__init__("--hostname", self.HOSTNAME, "--relay-timeout", str(relay_timeout),
                         *options, cls=cls, listen=listen, extra=[upstream],
                         stdout=subprocess.DEVNULL)

    def close(self):
        super().close()
        # Under SMTPD_SANITIZE a memory error aborts with a report on stderr.
        err = self.err.data()
        for mark in (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:"):
            if mark in err:
                raise AssertionError("%s reported a sanitizer error:\n%s"
                                     % (self.cls, self.stderr_text()))


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
    ehlo: the keywords of its EHLO reply; with "CHUNKING" among them it
        takes BDAT (RFC 3030) too.
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
        chunks = []  # BDAT chunks of the message being received
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
            elif verb == b"BDAT" and "CHUNKING" in self.ehlo:
                # RFC 3030: exactly the octets counted; LAST ends the message.
                words = line.split()
                got = f.read(int(words[1]))
                chunks.append(got)
                if words[2:] and words[2].upper() == b"LAST":
                    with self.lock:
                        self.delivered.append(b"".join(chunks))
                    chunks = []
                    delivered_here += 1
                    conn.sendall(b"250 2.0.0 Ok: queued\r\n")
                else:
                    conn.sendall(b"250 2.0.0 Ok: %d octets\r\n" % len(got))
            elif verb == b"RSET" or verb == b"NOOP":
                chunks = []
                conn.sendall(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                with self.lock:
                    self.closed_by_relay += 1
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")


class PrivatePostfix:
    """A Postfix instance of its own (Debian's postfix package): a
    configuration and queue in a temporary directory, its smtpd on
    127.0.0.1:self.port (offering CHUNKING, as Postfix's server does), and
    everything it accepts sent on to 127.0.0.1:relay_port. Started with
    "postfix -c DIR start" (as root: Postfix's master needs it), logging to
    DIR/maillog; close() stops it and removes the directory."""

    MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

    def __init__(self, relay_port):
        smtpdtest.need("/usr/sbin/postfix", "postfix")
        if os.geteuid() != 0:
            raise AssertionError("a private Postfix needs root (its master process)")
        self.dir = tempfile.mkdtemp(prefix="smtpd-postfix-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        etc = os.path.join(self.dir, "etc")
        data = os.path.join(self.dir, "data")
        for d in (etc, data, os.path.join(self.dir, "queue")):
            os.mkdir(d)
        os.chown(data, pwd.getpwnam("postfix").pw_uid, -1)
        self.maillog = os.path.join(self.dir, "maillog")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": os.path.join(self.dir, "queue"),
            "data_directory": data,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.dir,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "postfix.test",
            "mydestination": "",
            "relayhost": "[127.0.0.1]:%d" % relay_port,
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtp_tls_security_level": "none",
            "alias_maps": "",
            "local_recipient_maps": "",
            "smtputf8_enable": "no",
        }
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write("".join("%s = %s\n" % kv for kv in main.items()))
        with open(os.path.join(etc, "master.cf"), "w") as f:
            f.write(self.MASTER_CF.format(port=self.port))
        self.etc = etc
        r = subprocess.run(["postfix", "-c", etc, "start"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
        if r.returncode != 0:
            log = self.log()
            self.close()
            raise AssertionError("postfix did not start (%d): %s\n%s"
                                 % (r.returncode, r.stderr.decode(errors="replace"), log))
        if not smtpdtest.wait_port(self.port, timeout=20):
            log = self.log()
            self.close()
            raise AssertionError("postfix's smtpd did not listen on %d:\n%s" % (self.port, log))

    def log(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
        # stop returns once master is told; wait for it to be gone.
        pidfile = os.path.join(self.dir, "queue", "pid", "master.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.read().split()[0])
            smtpdtest.wait_until(lambda: not smtpdtest.proc_alive(pid), 20)
        except (OSError, ValueError, IndexError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class ScriptedUpstream(smtpdtest.ThreadedServer):
    """A hand-written SMTP (or LMTP) server whose answer at each step is
    set by the test, for upstreams that break the protocol.

    script: {step: answer}. Steps: "greeting", "EHLO" (LHLO too), "HELO",
        "MAIL", "RCPT", "DATA", "." (the final dot), "RSET", "NOOP", "QUIT".
        An answer is
          - a reply: "354 go" (CRLF added); several replies joined by CRLF
            ("354 go\r\n250 ok") go out in one write;
          - "close": close the connection without a reply; "reset": the
            same with a TCP reset; "silence": never answer (read until the
            relay gives up and closes);
          - a tuple of those, done in order, the replies in one write:
            ("354 go", "close") closes right after the 354; a number in
            it is a pause of that many seconds: ("250 ok", 0.3, "close")
            closes the connection once the relay has it back idle;
          - a list: the answer to the first, second... such command on a
            connection (past its end: the default answer);
          - a callable(conn, line) that returns one of those.
        After a DATA answer that has a 354 in it, the data is read up to
        the final dot, whose answer is the "." step's.
    scripted: how many connections (the first ones) follow the script;
        None: all of them. The others get the defaults, a working server.
    lmtp: the final dot gets one reply per accepted recipient (RFC 2033).

    What it saw, under self.lock: conns (one Conn per connection, in
    order), delivered (the data of each message whose final dot was read
    and then answered with a 2xx: a message the relay may say 250 for),
    received (the data of every message read to its final dot, answered or
    not), junk (lines read in command state that are not commands: data
    the relay must not have sent).
    """

    DEFAULTS = {
        "greeting": "220 scripted.upstream ESMTP",
        "EHLO": "250-scripted.upstream\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                "250-ENHANCEDSTATUSCODES\r\n250 SIZE 100000000",
        "HELO": "250 scripted.upstream",
        "MAIL": "250 2.1.0 Ok",
        "RCPT": "250 2.1.5 Ok",
        "DATA": "354 End data with <CR><LF>.<CR><LF>",
        ".": "250 2.0.0 Ok: queued",
        "RSET": "250 2.0.0 Ok",
        "NOOP": "250 2.0.0 Ok",
        "QUIT": "221 2.0.0 Bye",
    }
    VERBS = {b"EHLO": "EHLO", b"LHLO": "EHLO", b"HELO": "HELO", b"MAIL": "MAIL",
             b"RCPT": "RCPT", b"DATA": "DATA", b"RSET": "RSET", b"NOOP": "NOOP",
             b"QUIT": "QUIT"}

    class Conn:
        """One connection: every command line (CRLF kept), how it ended
        ("quit": the relay sent QUIT, "eof": the relay closed it,
        "server": we closed it), and ended, set when it is over."""

        def __init__(self, n):
            self.n = n
            self.commands = []
            self.how = None
            self.ended = threading.Event()
            self.counts = {}
            self.rcpts_ok = 0

        def verbs(self):
            return [c[:4].upper().decode("ascii", "replace") for c in self.commands]

    def __init__(self, script=None, scripted=None, lmtp=False):
        self.script = dict(script or {})
        self.scripted = scripted
        self.lmtp = lmtp
        self.conns = []
        self.delivered = []
        self.received = []
        self.junk = []
        self.silent = threading.Event()   # a step is being left unanswered
        super().__init__(backlog=50)

    stop = smtpdtest.ThreadedServer.close

    def conn(self, i):
        """The i-th connection (0: the first), once it was accepted."""
        wait_until = time.monotonic() + 5
        while time.monotonic() < wait_until:
            with self.lock:
                if len(self.conns) > i:
                    return self.conns[i]
            time.sleep(0.01)
        raise AssertionError("the scripted upstream never had connection %d" % i)

    def wait_ended(self, timeout=5):
        """Wait until every connection so far is over; False if one is not."""
        deadline = time.monotonic() + timeout
        with self.lock:
            conns = list(self.conns)
        return all(c.ended.wait(max(0, deadline - time.monotonic())) for c in conns)

    def _answer(self, c, step, line):
        a = self.DEFAULTS[step]
        if self.scripted is None or c.n < self.scripted:
            a = self.script.get(step, a)
        if callable(a):
            a = a(c, line)
        if isinstance(a, list):
            i = c.counts.get(step, 0)
            c.counts[step] = i + 1
            a = a[i] if i < len(a) else self.DEFAULTS[step]
        return a if isinstance(a, tuple) else (a,)

    @staticmethod
    def _codes(actions):
        """The codes of the replies in @actions, up to a close or silence."""
        codes = []
        for a in actions:
            if a in ("close", "reset", "silence"):
                break
            if isinstance(a, str):
                for l in a.replace("\r\n", "\n").rstrip("\n").split("\n"):
                    if l[3:4] in (" ", ""):
                        codes.append(int(l[:3]))
        return codes

    def _do(self, conn, c, actions):
        """Do @actions: send their replies (those before a pause or the end
        in one write), pause, close or fall silent. Returns (the codes of
        the replies, whether the connection goes on)."""
        out = []
        codes = self._codes(actions)

        def flush():
            if out:
                conn.sendall("".join(out).encode())
                del out[:]
        for a in actions:
            if isinstance(a, (int, float)):
                flush()
                time.sleep(a)
                continue
            if a in ("close", "reset", "silence"):
                flush()
                if a == "silence":
                    self.silent.set()
                    while conn.recv(65536):
                        pass
                    c.how = "eof"
                else:
                    if a == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    c.how = "server"
                return codes, False
            out.append(a.replace("\r\n", "\n").rstrip("\n").replace("\n", "\r\n") + "\r\n")
        flush()
        return codes, True

    def serve(self, conn):
        with self.lock:
            c = self.Conn(len(self.conns))
            self.conns.append(c)
        try:
            self._session(conn, c)
        finally:
            if c.how is None:
                c.how = "eof"
            c.ended.set()

    def _session(self, conn, c):
        f = conn.makefile("rb")
        if not self._do(conn, c, self._answer(c, "greeting", None))[1]:
            return
        while True:
            line = f.readline(4096)
            if not line:
                return
            with self.lock:
                c.commands.append(line)
            step = self.VERBS.get(line[:4].upper())
            if step is None:
                with self.lock:
                    self.junk.append(line)
                conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")
                continue
            if step == "QUIT":
                c.how = "quit"
            if step == "MAIL":
                c.rcpts_ok = 0
            codes, alive = self._do(conn, c, self._answer(c, step, line))
            if step == "RCPT":
                c.rcpts_ok += sum(1 for x in codes if x // 100 == 2)
            if not alive or step == "QUIT":
                return
            if step != "DATA" or 354 not in codes:
                continue
            data = []
            while True:
                l = f.readline()
                if not l:
                    return
                if l == b".\r\n":
                    break
                data.append(l[1:] if l.startswith(b".") else l)
            data = b"".join(data)
            with self.lock:
                self.received.append(data)
            # Several RCPTs: an LMTP server answers the dot for each.
            n = max(1, c.rcpts_ok) if self.lmtp else 1
            acked = False
            for _ in range(n):
                actions = self._answer(c, ".", line)
                # Counted before the 2xx goes out: the relay may pass it on
                # at once.
                if not acked and any(x // 100 == 2 for x in self._codes(actions)):
                    acked = True
                    with self.lock:
                        self.delivered.append(data)
                if not self._do(conn, c, actions)[1]:
                    return


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
