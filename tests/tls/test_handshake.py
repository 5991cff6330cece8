"""tls_handshake: handshakes that fail or stall, on STARTTLS and on --smtps.

  * TLS 1.0 and TLS 1.1 clients (Python's ssl with SECLEVEL=0, one version
    only) are refused on both: their ClientHello, read off the wire, offers
    that version and nothing newer; the client gets a protocol_version alert;
    smtpd logs one failure line with OpenSSL's protocol-version reason. TLS
    1.2 (the client's maximum) and TLS 1.3 both work: a message goes through.
  * Garbage instead of a ClientHello (a plaintext EHLO, random bytes, a
    handshake record that is not a ClientHello), on --smtps and after
    STARTTLS: the connection is closed at once, nothing but TLS alerts comes
    back (no SMTP reply in plaintext), and smtpd logs exactly one failure
    line for that connection.
  * A client that sends nothing, or half a ClientHello, and then stalls:
    closed --tls-handshake-timeout (2 s) later, not before and well before
    30 s, with "no handshake within 2 s"; one that trickles its ClientHello
    a byte at a time is closed as soon: the timeout is for the whole
    handshake, not for each read.
  * While several bad handshakes are pending, a TLS session on each listener
    and a plaintext session complete at once.
  * 50 failed handshakes in a row: smtpd is still alive and serving, has
    logged 50 failure lines, and holds no more descriptors than before.
"""

import os
import random
import re
import select
import socket
import ssl
import sys
import threading
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import smtpdtest  # noqa: E402
import tlslib  # noqa: E402
from smtpdtest import SLOW  # noqa: E402

STALL = 2  # --tls-handshake-timeout for the stall tests, in seconds
STALL_LIMIT = STALL + 2 * SLOW + 1  # by then a stalled handshake must be closed

VERSION_NAMES = {0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}

# What OpenSSL says when the client's versions are all below the server's
# minimum ("unsupported protocol"), in whichever words this OpenSSL uses.
PROTOCOL_VERSION_REASON = rb"(?i)unsupported protocol|protocol version|version too low"

# OpenSSL's reason for a handshake it failed ("wrong version number"), maybe
# in its long form ("error:0A00010B:SSL routines::wrong version number"):
# words, not a bare code ("error:00000001:lib(0)::reason(1)").
OPENSSL_REASON = rb"^(?:error:[0-9A-F]{8}:SSL routines::)?[a-z][a-z0-9 ]*[a-z]$"
PEER_CLOSED = b"the peer closed the connection"

GARBAGE = {
    "plaintext EHLO": b"EHLO x\r\n",
    "random bytes": random.Random(8314).randbytes(512),
    # A handshake record whose message is a ServerHello (2), not a ClientHello.
    "not a ClientHello": b"\x16\x03\x01\x00\x30\x02\x00\x00\x2c" + b"\x03\x03" + bytes(42),
}


# ---------------------------------------------------------------- the client side

def legacy_context(version):
    """A client context that offers @version (ssl.TLSVersion) and nothing
    else: SECLEVEL=0 lets OpenSSL 3 build a TLS 1.0/1.1 ClientHello at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1, TLSv1_1
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def client_hello(ctx):
    """The first flight of a client handshake with @ctx (a ClientHello record)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def bio_handshake(sock, ctx, timeout):
    """A client handshake with @ctx over @sock through memory BIOs, so that
    what it sends can be looked at. Returns (the first flight it sent, the
    ssl.SSLError it ended with or None)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    sock.settimeout(timeout)
    first = None
    while True:
        try:
            obj.do_handshake()
            error = None
        except ssl.SSLWantReadError:
            error = "more"
        except ssl.SSLError as e:
            error = e
        data = outgoing.read()
        if first is None:
            first = data
        if data:
            try:
                sock.sendall(data)
            except OSError:
                pass  # the server closed first: its alert may still be there to read
        if error != "more":
            return first, error
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if chunk:
            incoming.write(chunk)
        else:
            incoming.write_eof()


def offered_versions(record):
    """The versions a ClientHello record offers: its supported_versions
    extension (RFC 8446 4.2.1) if it has one, else its legacy_version."""
    assert record[:1] == b"\x16", "not a handshake record: %r" % record[:16]
    body = record[5:5 + int.from_bytes(record[3:5], "big")]
    assert body[:1] == b"\x01", "not a ClientHello: %r" % body[:16]
    legacy = int.from_bytes(body[4:6], "big")
    p = 6 + 32                                          # version, random
    p += 1 + body[p]                                    # session id
    p += 2 + int.from_bytes(body[p:p + 2], "big")       # cipher suites
    p += 1 + body[p]                                    # compression methods
    end = p + 2 + int.from_bytes(body[p:p + 2], "big") if p + 2 <= len(body) else p
    p += 2
    while p + 4 <= end:
        kind, n = int.from_bytes(body[p:p + 2], "big"), int.from_bytes(body[p + 2:p + 4], "big")
        if kind == 43:  # supported_versions: a length byte, then 2 bytes a version
            data = body[p + 5:p + 4 + n]
            return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
        p += 4 + n
    return [legacy]


def records(data):
    """The content types of the TLS records in @data (all of it must be records)."""
    types = []
    while data:
        assert len(data) >= 5, "not TLS records: %r" % data
        types.append(data[0])
        data = data[5 + int.from_bytes(data[3:5], "big"):]
    return types


def wait_closed(sock, timeout):
    """Read until the peer closes: (the bytes read, seconds it took). Fails
    when it is still open after @timeout seconds."""
    start = time.monotonic()
    got = b""
    while True:
        left = start + timeout - time.monotonic()
        if left <= 0:
            raise AssertionError("connection still open after %.1f s; read %r" % (timeout, got))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            continue
        if not chunk:
            return got, time.monotonic() - start
        got += chunk


def still_open(sock):
    """True when the peer has neither closed @sock nor sent anything on it."""
    r, _, _ = select.select([sock], [], [], 0)
    return not r


def send_message(c, tag):
    """A whole SMTP session on client @c (greeting read; TLS or not)."""
    for line, code in (("EHLO client.example", 250), ("MAIL FROM:<a@example.com>", 250),
                       ("RCPT TO:<b@example.net>", 250), ("DATA", 354)):
        got = c.command(line)
        assert got[0] == code, "%s: %r" % (line, got)
    got = c.command("Subject: %s\r\n\r\nbody of %s\r\n." % (tag, tag))
    assert got[0] == 250, "end of DATA: %r" % (got,)
    assert c.command("QUIT")[0] == 221


# ---------------------------------------------------------------- the tests

class HandshakeTest(smtpdtest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = tlslib.Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def start_tls(self, timeout=STALL):
        """smtpd with STARTTLS on srv.port and implicit TLS on srv.smtps."""
        srv = self.start("--tls-cert", self.certs.cert, "--tls-key", self.certs.key,
                         "--smtps", "127.0.0.1:0", "--tls-handshake-timeout", str(timeout))
        srv.smtps = srv.smtps_port()
        return srv

    def context(self, minimum=None, maximum=None):
        """A client that checks the server certificate against our CA."""
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        if minimum:
            ctx.minimum_version = minimum
        if maximum:
            ctx.maximum_version = maximum
        return ctx

    def open_raw(self, srv, how):
        """A client at the point where its TLS handshake starts: connected to
        --smtps, or STARTTLS answered 220 on the plaintext port."""
        if how == "smtps":
            return self.raw(srv.smtps, timeout=10 * SLOW)
        c = self.raw(srv.port, timeout=10 * SLOW)
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.command("EHLO client.example")
        self.assertEqual(code, 250)
        self.assertIn("STARTTLS", lines)
        self.assertEqual(c.command("STARTTLS")[0], 220)
        self.assertEqual(c.buf, b"", "bytes after STARTTLS's 220")
        return c

    def open_tls(self, srv, how, ctx=None):
        """A client in TLS with its greeting read (smtps) or before its
        second EHLO (STARTTLS)."""
        c = self.open_raw(srv, how)
        c.sock = (ctx or self.context()).wrap_socket(c.sock, server_hostname="localhost")
        if how == "smtps":
            self.assertEqual(c.reply()[0], 220)
        return c

    def failure_lines(self, srv, c, how):
        """smtpd's "TLS handshake failed" lines about client @c's connection."""
        log = srv.stderr()
        port = c.sock.getsockname()[1]
        if how == "smtps":
            return re.findall(rb"\[\d+\] TLS handshake failed: (.*) \(implicit TLS from "
                              rb"127\.0\.0\.1:%d\)\n" % port, log)
        m = re.search(rb"\[(\d+)\] connect from 127\.0\.0\.1:%d\n" % port, log)
        self.assertTrue(m, "no connect line for port %d" % port)
        return re.findall(rb"\[%s\] lost connection from 127\.0\.0\.1 "
                          rb"\(TLS handshake failed: (.*)\)\n" % m.group(1), log)

    def one_failure(self, srv, c, how):
        """Wait for smtpd's failure line about @c; fail unless there is
        exactly one. Returns its reason (after "TLS handshake failed: ")."""
        lines = smtpdtest.wait_until(lambda: self.failure_lines(srv, c, how), 5 * SLOW, 0.05)
        self.assertTrue(lines, "no failure line for the %s client; stderr:\n%s"
                        % (how, srv.stderr_text()))
        time.sleep(0.2)  # a second line would come right after the first
        lines = self.failure_lines(srv, c, how)
        self.assertEqual(len(lines), 1, "failure lines for one %s client: %r" % (how, lines))
        return lines[0]

    def assert_serving(self, srv, tag):
        """A TLS session on each listener and a plaintext one deliver; returns
        the seconds each took."""
        took = {}
        for how in ("smtps", "starttls", "plaintext"):
            start = time.monotonic()
            if how == "plaintext":
                c = self.raw(srv.port, timeout=10 * SLOW)
                self.assertEqual(c.reply()[0], 220)
            else:
                c = self.open_tls(srv, how)
            send_message(c, "%s-%s" % (tag, how))
            took[how] = time.monotonic() - start
            subject = b"Subject: %s-%s" % (tag.encode(), how.encode())
            self.assertTrue(srv.out.wait_for(lambda b: subject in b, 5 * SLOW),
                            "%s message not delivered" % how)
        return took

    # ---- versions ----

    def test_tls10_and_tls11_refused(self):
        srv = self.start_tls()
        for version, wire in ((ssl.TLSVersion.TLSv1, 0x0301), (ssl.TLSVersion.TLSv1_1, 0x0302)):
            for how in ("smtps", "starttls"):
                with self.subTest(version=VERSION_NAMES[wire], listener=how):
                    c = self.open_raw(srv, how)
                    hello, error = bio_handshake(c.sock, legacy_context(version), 10 * SLOW)
                    # The client really offered that version, and only that one.
                    self.assertEqual(offered_versions(hello), [wire])
                    self.assertIsInstance(error, ssl.SSLError, "the handshake succeeded")
                    self.assertIn("PROTOCOL_VERSION", str(error.reason))
                    wait_closed(c.sock, 5 * SLOW)
                    reason = self.one_failure(srv, c, how)
                    self.assertRegex(reason, PROTOCOL_VERSION_REASON,
                                     "the log does not say why the %s client was refused"
                                     % VERSION_NAMES[wire])
        self.assertNotRegex(srv.stderr(), rb"\] TLS from")  # no session went on in TLS

    def test_tls12_and_tls13_work(self):
        srv = self.start_tls()
        for name, ctx in (("TLSv1.2", self.context(maximum=ssl.TLSVersion.TLSv1_2)),
                          ("TLSv1.3", self.context(minimum=ssl.TLSVersion.TLSv1_3))):
            for how in ("smtps", "starttls"):
                with self.subTest(version=name, listener=how):
                    c = self.open_tls(srv, how, ctx)
                    self.assertEqual(c.sock.version(), name)
                    send_message(c, "%s-%s" % (name, how))
                    subject = ("Subject: %s-%s" % (name, how)).encode()
                    self.assertTrue(srv.out.wait_for(lambda b: subject in b, 5 * SLOW))
        log = srv.stderr()
        self.assertEqual(log.count(b"TLS handshake failed"), 0, log)
        # Each session, on either listener, logs the TLS it got.
        for name in ("TLSv1.2", "TLSv1.3"):
            got = re.findall(rb"\] TLS from 127\.0\.0\.1: %s with cipher " % name.encode(), log)
            self.assertEqual(len(got), 2, log)

    # ---- garbage ----

    def test_garbage_instead_of_client_hello(self):
        srv = self.start_tls()
        for how in ("smtps", "starttls"):
            for name, data in GARBAGE.items():
                with self.subTest(listener=how, garbage=name):
                    c = self.open_raw(srv, how)
                    c.send(data)
                    got, took = wait_closed(c.sock, 5 * SLOW)
                    self.assertLess(took, STALL, "closed only by the handshake timeout")
                    # At most a TLS alert: never an SMTP reply in plaintext.
                    self.assertTrue(set(records(got)) <= {0x15}, got)
                    reason = self.one_failure(srv, c, how)
                    self.assertRegex(reason, OPENSSL_REASON)
                    self.assertNotEqual(reason, PEER_CLOSED)
        self.assertTrue(srv.alive())

    # ---- stalls ----

    def run_stalled(self, srv, how, first, trickle=b""):
        """A client that sends @first, then @trickle a byte every 0.4 s, then
        nothing. Returns (seconds from the start of its handshake to the
        close, or None: still open after STALL_LIMIT s; client)."""
        c = self.open_raw(srv, how)
        start = time.monotonic()
        c.send(first)
        for i in range(len(trickle)):
            if time.monotonic() - start > STALL_LIMIT:
                break
            closed, _, _ = select.select([c.sock], [], [], 0.4)
            if closed:
                break
            try:
                c.send(trickle[i:i + 1])
            except OSError:
                break
        try:
            wait_closed(c.sock, max(0.1, start + STALL_LIMIT - time.monotonic()))
        except AssertionError:
            return None, c
        return time.monotonic() - start, c

    def test_stalled_handshakes_closed_after_timeout(self):
        srv = self.start_tls(STALL)
        hello = client_hello(self.context())
        half = hello[:len(hello) // 2]
        cases = {}
        for how in ("smtps", "starttls"):
            cases[(how, "nothing")] = (how, b"", b"")
            cases[(how, "half a ClientHello")] = (how, half, b"")
            cases[(how, "a ClientHello trickled")] = (how, b"", hello)
        results = {}

        def run(key):
            results[key] = self.run_stalled(srv, *cases[key])

        threads = [threading.Thread(target=run, args=(key,)) for key in cases]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60 + 10 * SLOW)
        for key in cases:
            with self.subTest(listener=key[0], sent=key[1]):
                self.assertIn(key, results, "the client thread failed")
                took, c = results[key]
                shown = "more than %.1f s" % STALL_LIMIT if took is None else "%.2f s" % took
                print("\n%s, %s: closed after %s" % (key[0], key[1], shown))
                self.assertIsNotNone(took, "still open %.1f s into a handshake with "
                                     "--tls-handshake-timeout %d" % (STALL_LIMIT, STALL))
                self.assertGreaterEqual(took, STALL - 0.25, "closed before the timeout")
                self.assertEqual(self.one_failure(srv, c, key[0]),
                                 b"no handshake within %d s" % STALL)
        self.assertTrue(srv.alive())

    def test_other_sessions_undisturbed(self):
        # The bad handshakes must outlast the good sessions, even under valgrind.
        srv = self.start_tls(timeout=int(10 + 10 * SLOW))
        hello = client_hello(self.context())
        bad = []
        for how in ("smtps", "starttls"):
            for first in (b"", hello[:len(hello) // 2], hello[:5]):
                for _ in range(2):
                    c = self.open_raw(srv, how)
                    c.send(first)
                    bad.append(c)
        time.sleep(0.3)  # smtpd has read what the bad ones sent
        took = self.assert_serving(srv, "undisturbed")
        print("\nwith %d handshakes pending: %s" % (len(bad), ", ".join(
            "%s %.2f s" % kv for kv in took.items())))
        for how, t in took.items():
            self.assertLess(t, 2 * SLOW, "a %s session took %.1f s" % (how, t))
        for c in bad:
            self.assertTrue(still_open(c.sock), "a pending handshake ended early")
        self.assertNotIn(b"TLS handshake failed", srv.stderr())

    # ---- many failures ----

    def test_many_failed_handshakes(self):
        srv = self.start_tls()
        self.assert_serving(srv, "before")
        sockets = smtpdtest.proc_socket_count(srv.pid)
        fds = len(os.listdir("/proc/%d/fd" % srv.pid))
        kinds = [("smtps", data) for data in GARBAGE.values()] + \
                [("starttls", data) for data in GARBAGE.values()] + \
                [("smtps", client_hello(legacy_context(ssl.TLSVersion.TLSv1_1)))]
        for i in range(50):
            how, data = kinds[i % len(kinds)]
            c = self.open_raw(srv, how)
            c.send(data)
            wait_closed(c.sock, 5 * SLOW)
            c.close()
        self.assertTrue(srv.alive(), srv.stderr_text())

        def failures():
            return srv.stderr().count(b"TLS handshake failed")

        smtpdtest.wait_until(lambda: failures() >= 50, 5 * SLOW, 0.05)
        self.assertEqual(failures(), 50)
        smtpdtest.wait_until(lambda: smtpdtest.proc_socket_count(srv.pid) <= sockets,
                             5 * SLOW, 0.05)
        self.assertLessEqual(smtpdtest.proc_socket_count(srv.pid), sockets, "sockets leaked")
        self.assertLessEqual(len(os.listdir("/proc/%d/fd" % srv.pid)), fds, "descriptors leaked")
        self.assert_serving(srv, "after")


if __name__ == "__main__":
    smtpdtest.main()
