"""tls_session: the SMTP session rules around STARTTLS (RFC 3207), with a
raw socket wrapped by ssl.SSLContext (verifying the test CA's certificate
for localhost) against DebuggingServer.

  - Plaintext pipelined after STARTTLS is thrown away, never run as a
    command under TLS (the STARTTLS command injection of CVE-2011-0411):
    "STARTTLS\\r\\nRSET\\r\\n" in one write gets no RSET reply after the
    handshake, "STARTTLS\\r\\nMAIL FROM:<...>\\r\\n" opens no transaction,
    and more plaintext than one read only makes the handshake fail. What
    was pipelined before STARTTLS is answered before the 220.
  - The session starts over after the handshake (RFC 3207 4.2): no
    greeting, MAIL before a new EHLO gets 503 (with no enhanced status code,
    which only EHLO brings), the new EHLO no longer offers STARTTLS, and a
    second STARTTLS gets 503.
  - STARTTLS with an argument gets 501, inside a transaction 503; without
    --tls-cert it is an unknown command (500) and neither EHLO nor HELP
    offers it.
  - --require-tls: MAIL, RCPT, DATA, VRFY and HELP get 530 5.7.0 before
    TLS, EHLO, HELO, NOOP, RSET and QUIT do not; after STARTTLS and EHLO a
    message is accepted; an --smtps session needs no STARTTLS.
  - A message sent under TLS (large, dot-stuffed, 8-bit, pipelined) is
    printed exactly as sent; a client that half-closes without a TLS
    close_notify still gets its replies (an EOF, not an error).
"""

import os
import random
import socket
import ssl
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from smtpd_harness import RawClient, SmtpdTestCase, main, xcommands_so  # noqa: E402
from smtpdtest import stuff  # noqa: E402
import tlslib  # noqa: E402

# Replies carry enhanced status codes only after EHLO (RFC 2034), so their
# absence after the handshake shows that the EHLO before it was forgotten.
READY = (220, ["2.0.0 Ready to start TLS"])
SEND_HELO_FIRST = (503, ["Error: send HELO first"])  # no EHLO (yet) under TLS
OK = (250, ["OK"])                                  # NOOP, the same
EHLO_OK = (250, ["2.0.0 OK"])                       # NOOP after EHLO
MUST_STARTTLS = (530, ["5.7.0 Must issue a STARTTLS command first"])


class TlsClient(RawClient):
    """RawClient that can go on under TLS on the same socket."""

    def ehlo(self, name="client.example.com"):
        """EHLO: its code and keywords (the first word of each line after
        the first), upper case."""
        code, lines = self.command("EHLO " + name)
        return code, [line.split(" ")[0].upper() for line in lines[1:]]

    def wrap(self, context):
        """The TLS handshake on the socket. Nothing may have come after the
        220 in plaintext."""
        if self.buf:
            raise AssertionError("plaintext after the 220: %r" % self.buf)
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def starttls(self, context):
        """STARTTLS (it must be accepted), then the handshake."""
        r = self.command("STARTTLS")
        if r != READY:
            raise AssertionError("STARTTLS answered %r" % (r,))
        self.wrap(context)

    def silent(self, seconds=1.0):
        """Wait @seconds; True when nothing arrived (nor was buffered)."""
        if self.buf:
            return False
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(10)
        self.buf += data
        return False


class SessionTest(SmtpdTestCase):

    client_class = TlsClient

    @classmethod
    def setUpClass(cls):
        cls.certs = tlslib.Certs()
        cls.context = ssl.create_default_context(cafile=cls.certs.ca)

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def start_tls(self, *options):
        return self.start("--tls-cert", self.certs.cert, "--tls-key", self.certs.key, *options)

    def start_smtps(self, *options):
        """smtpd with an --smtps listener too: (srv, its port)."""
        srv = self.start_tls("--smtps", "127.0.0.1:0", *options)
        return srv, srv.smtps_port()

    def connect(self, srv):
        """A client that has read the 220 greeting."""
        c = self.raw(srv.port)
        code, _ = c.reply()
        self.assertEqual(code, 220)
        return c

    def connect_smtps(self, port):
        """A client on an --smtps port: the handshake, then the greeting."""
        c = self.raw(port)
        c.wrap(self.context)
        code, text = c.reply()
        self.assertEqual(code, 220, text)
        return c

    def tls_session(self, srv):
        """A client after EHLO, STARTTLS and the handshake (not greeted again)."""
        c = self.connect(srv)
        code, keywords = c.ehlo()
        self.assertEqual(code, 250)
        self.assertIn("STARTTLS", keywords)
        c.starttls(self.context)
        return c

    def send_message(self, c, rcpt, data):
        """One transaction, each command after the reply to the one before."""
        self.assertEqual(c.command("MAIL FROM:<sender@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<%s>" % rcpt)[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(stuff(data) + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, text)

    def assertLoggedTls(self, srv):
        srv.wait_stderr(rb"\[1\] TLS from 127\.0\.0\.1: TLSv1\.3 with cipher TLS_\w+ "
                        rb"\(\d+ bits\)\n")

    # ---- plaintext injection (CVE-2011-0411) ----

    def inject_after_starttls(self, srv, injected):
        """EHLO, then "STARTTLS\\r\\n" + injected in one write; the 220, the
        handshake. Returns the client, now under TLS."""
        c = self.connect(srv)
        self.assertEqual(c.ehlo()[0], 250)
        c.send(b"STARTTLS\r\n" + injected)
        self.assertEqual(c.reply(), READY)
        c.wrap(self.context)
        self.assertLoggedTls(srv)
        return c

    def test_rset_pipelined_after_starttls_is_never_answered(self):
        srv = self.start_tls()
        c = self.inject_after_starttls(srv, b"RSET\r\n")
        self.assertTrue(c.silent(1.0), "an answer to the injected RSET: %r" % c.buf)
        self.assertEqual(c.command("NOOP"), OK)

    def test_mail_pipelined_after_starttls_is_never_run(self):
        srv = self.start_tls()
        c = self.inject_after_starttls(srv, b"MAIL FROM:<injected@example.com>\r\n")
        self.assertTrue(c.silent(1.0), "an answer to the injected MAIL: %r" % c.buf)
        # Not "nested MAIL": no transaction was opened, and the EHLO given
        # before TLS is forgotten.
        self.assertEqual(c.command("MAIL FROM:<a@example.com>"), SEND_HELO_FIRST)
        self.assertEqual(c.ehlo()[0], 250)
        self.send_message(c, "rcpt@example.org", b"Subject: after injection\r\n\r\nbody\r\n")
        (m,) = srv.wait_messages(1)
        self.assertEqual(m["mail_from"], "sender@example.com")
        self.assertNotIn(b"injected@example.com", srv.stderr())

    def test_injection_beyond_one_read_goes_to_the_handshake(self):
        # 60 kB of plaintext after STARTTLS (more than smtpd reads at once,
        # less than the socket buffers hold, so the write does not block):
        # what smtpd had not read when it took the STARTTLS line is fed to
        # the handshake, which fails on it. None of it is answered, in
        # plaintext or otherwise.
        srv = self.start_tls()
        c = self.connect(srv)
        self.assertEqual(c.ehlo()[0], 250)
        c.send(b"STARTTLS\r\n" + b"RSET\r\n" * 10000)
        self.assertEqual(c.reply(), READY)
        self.assertEqual(c.buf, b"")
        got = b""
        c.sock.settimeout(5)
        try:
            while True:
                chunk = c.sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        self.assertEqual(got, b"")
        srv.wait_stderr(rb"\[1\] lost connection from 127\.0\.0\.1 \(TLS handshake failed: ")

    def test_commands_pipelined_before_starttls_are_answered(self):
        # What comes before STARTTLS in the same write is served, in
        # plaintext, before the 220 (a long burst is answered in batches);
        # what comes after is not.
        srv = self.start_tls()
        c = self.connect(srv)
        c.send(b"EHLO client.example.com\r\n" + b"NOOP\r\n" * 5000 + b"STARTTLS\r\nNOOP\r\n")
        self.assertEqual(c.reply()[0], 250)
        for _ in range(5000):
            self.assertEqual(c.reply(), EHLO_OK)
        self.assertEqual(c.reply(), READY)
        c.wrap(self.context)
        self.assertTrue(c.silent(1.0), c.buf)
        self.assertEqual(c.command("NOOP"), OK)

    # ---- the session starts over ----

    def test_session_starts_over_after_the_handshake(self):
        srv = self.start_tls()
        c = self.tls_session(srv)
        # RFC 3207 4.2: no new greeting; the client speaks first.
        self.assertTrue(c.silent(0.5), "sent after the handshake: %r" % c.buf)
        self.assertEqual(c.command("MAIL FROM:<a@example.com>"), SEND_HELO_FIRST)
        code, keywords = c.ehlo()
        self.assertEqual(code, 250)
        self.assertNotIn("STARTTLS", keywords)
        for kw in ("SIZE", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES"):
            self.assertIn(kw, keywords)
        self.assertEqual(c.command("STARTTLS"), (503, ["5.5.1 Error: TLS already active"]))
        self.send_message(c, "rcpt@example.org", b"Subject: starts over\r\n\r\nbody\r\n")
        (m,) = srv.wait_messages(1)
        self.assertEqual(m["rcpt_tos"], ["rcpt@example.org"])
        self.assertLoggedTls(srv)

    def test_helo_after_the_handshake(self):
        srv = self.start_tls()
        c = self.tls_session(srv)
        self.assertEqual(c.command("HELO client.example.com")[0], 250)
        self.send_message(c, "helo@example.org", b"Subject: helo\r\n\r\nbody\r\n")
        (m,) = srv.wait_messages(1)
        self.assertEqual(m["rcpt_tos"], ["helo@example.org"])

    def test_help_lists_starttls_only_before_tls(self):
        srv = self.start_tls()
        c = self.connect(srv)
        code, text = c.command("HELP")
        self.assertEqual(code, 250, text)
        self.assertIn("STARTTLS", " ".join(text).split())
        self.assertEqual(c.ehlo()[0], 250)
        c.starttls(self.context)
        code, text = c.command("HELP")
        self.assertEqual(code, 250, text)
        self.assertNotIn("STARTTLS", " ".join(text).split())
        self.assertIn("MAIL", " ".join(text).split())

    # ---- refused STARTTLS ----

    def test_starttls_with_an_argument(self):
        srv = self.start_tls()
        c = self.connect(srv)
        self.assertEqual(c.ehlo()[0], 250)
        self.assertEqual(c.command("STARTTLS now"), (501, ["5.5.4 Syntax: STARTTLS"]))
        # Still plaintext, and STARTTLS still works.
        self.assertEqual(c.command("NOOP"), EHLO_OK)
        c.starttls(self.context)
        self.assertEqual(c.ehlo()[0], 250)

    def test_starttls_inside_a_transaction(self):
        srv = self.start_tls()
        c = self.connect(srv)
        self.assertEqual(c.ehlo()[0], 250)
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(c.command("STARTTLS"),
                         (503, ["5.5.1 Error: MAIL transaction in progress"]))
        # The transaction is still there (no TLS started): RCPT is taken.
        self.assertEqual(c.command("RCPT TO:<b@example.org>")[0], 250)
        self.assertEqual(c.command("RSET")[0], 250)
        c.starttls(self.context)
        self.assertEqual(c.ehlo()[0], 250)

    def test_no_starttls_without_a_certificate(self):
        srv = self.start()
        c = self.connect(srv)
        code, keywords = c.ehlo()
        self.assertEqual(code, 250)
        self.assertNotIn("STARTTLS", keywords)
        self.assertEqual(c.command("STARTTLS"), (500, ["5.5.1 Error: command not recognized"]))
        code, text = c.command("HELP")
        self.assertEqual(code, 250)
        self.assertNotIn("STARTTLS", " ".join(text).split())
        self.assertEqual(c.command("NOOP"), EHLO_OK)

    def test_smtps_session(self):
        # Implicit TLS: the greeting comes under TLS, and STARTTLS is over.
        srv, smtps = self.start_smtps()
        c = self.connect_smtps(smtps)
        code, keywords = c.ehlo()
        self.assertEqual(code, 250)
        self.assertNotIn("STARTTLS", keywords)
        self.assertEqual(c.command("STARTTLS"), (503, ["5.5.1 Error: TLS already active"]))
        self.send_message(c, "smtps@example.org", b"Subject: smtps\r\n\r\nbody\r\n")
        (m,) = srv.wait_messages(1)
        self.assertEqual(m["rcpt_tos"], ["smtps@example.org"])

    # ---- --require-tls ----

    def test_require_tls_before_starttls(self):
        srv = self.start_tls("--require-tls")
        c = self.connect(srv)
        code, keywords = c.ehlo()
        self.assertEqual(code, 250)
        self.assertIn("STARTTLS", keywords)
        for line in ("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.org>", "DATA",
                     "VRFY b@example.org", "HELP", "EXPN list"):
            self.assertEqual(c.command(line), MUST_STARTTLS, line)
        self.assertEqual(c.command("NOOP"), EHLO_OK)
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertEqual(c.command("QUIT")[0], 221)
        self.assertTrue(c.closed_by_peer())
        # HELO too (a second one in a session would be a duplicate).
        c = self.connect(srv)
        self.assertEqual(c.command("HELO client.example.com")[0], 250)
        self.assertEqual(c.command("MAIL FROM:<a@example.com>"),
                         (530, ["Must issue a STARTTLS command first"]))  # HELO: no 5.7.0
        self.assertEqual(srv.messages(), [])

    def test_require_tls_after_starttls(self):
        srv = self.start_tls("--require-tls")
        c = self.tls_session(srv)
        self.assertEqual(c.command("MAIL FROM:<a@example.com>"), SEND_HELO_FIRST)
        self.assertEqual(c.ehlo()[0], 250)
        code, text = c.command("HELP")
        self.assertEqual(code, 250, text)
        data = b"Subject: required TLS\r\n\r\nsent under TLS\r\n"
        self.send_message(c, "required@example.org", data)
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, data,
                           mail_from="sender@example.com", rcpt_tos=["required@example.org"])
        self.assertEqual(c.command("QUIT")[0], 221)

    def test_require_tls_smtps_needs_no_starttls(self):
        srv, smtps = self.start_smtps("--require-tls")
        c = self.connect_smtps(smtps)
        self.assertEqual(c.ehlo()[0], 250)
        self.send_message(c, "smtps@example.org", b"Subject: smtps\r\n\r\nbody\r\n")
        self.assertEqual(len(srv.wait_messages(1)), 1)

    # ---- the message under TLS ----

    def test_large_message_arrives_intact(self):
        # Much more than one TLS record (16 KiB), with lines that need
        # dot-stuffing, 8-bit bytes and a long line.
        rnd = random.Random(3207)
        lines = [b"From: sender@example.com", b"To: big@example.org",
                 b"Subject: big message over TLS", b""]
        for i in range(6000):
            n = rnd.randrange(0, 90)
            line = bytes(rnd.choice(b"abc XYZ.\xc3\xa9\xff-") for _ in range(n))
            lines.append(b"." + line if i % 50 == 0 else line)
        lines.append(b"x" * 990)
        data = b"\r\n".join(lines) + b"\r\n"
        self.assertGreater(len(data), 200000)
        srv = self.start_tls()
        c = self.tls_session(srv)
        self.assertEqual(c.ehlo()[0], 250)
        self.send_message(c, "big@example.org", data)
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, data, mail_from="sender@example.com", rcpt_tos=["big@example.org"])

    def test_pipelined_transaction_under_tls(self):
        srv = self.start_tls()
        c = self.tls_session(srv)
        self.assertEqual(c.ehlo()[0], 250)
        data = b"Subject: pipelined\r\n\r\n.one dot\r\n..two\r\n"
        c.send(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<p1@example.org>\r\n"
               b"RCPT TO:<p2@example.org>\r\nDATA\r\n")
        self.assertEqual([c.reply()[0] for _ in range(4)], [250, 250, 250, 354])
        c.send(stuff(data) + b".\r\nQUIT\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 221)
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, data, mail_from="sender@example.com",
                           rcpt_tos=["p1@example.org", "p2@example.org"])

    def test_close_without_close_notify_is_an_eof(self):
        """A client that sends its last commands and half-closes TCP without
        a TLS close_notify (as many do) gets every reply, as in plaintext:
        an EOF, not a TLS error that would drop what it is still owed (here
        the answer of xcommands.so's XDELAY, which comes a second later)."""
        srv = self.start("--tls-cert", self.certs.cert, "--tls-key", self.certs.key,
                         "--smtps", "127.0.0.1:0", cls=xcommands_so())
        port = srv.smtps_port()
        for how in ("smtps", "starttls"):
            with self.subTest(how=how):
                c = self.connect_smtps(port) if how == "smtps" else self.tls_session(srv)
                c.send(b"EHLO client.example.com\r\nXDELAY 1\r\nQUIT\r\n")
                socket.socket.shutdown(c.sock, socket.SHUT_WR)  # TCP only, no close_notify
                self.assertEqual([c.reply()[0] for _ in range(3)], [250, 250, 221])
        self.assertNotRegex(srv.stderr_text(), r"lost connection|TLS error")


if __name__ == "__main__":
    main()
