"""tls_clients: real clients over STARTTLS (RFC 3207) and implicit TLS (RFC
8314, --smtps) against DebuggingServer.

Each client sends one message over each kind of TLS, verifying the server's
certificate against the test CA made by tlslib.py for localhost and
127.0.0.1: smtplib (starttls() and SMTP_SSL), swaks (--tls, --tlsc), curl
(smtp:// --ssl-reqd, smtps://), openssl s_client (-starttls smtp with
-ign_eof; implicit TLS with -quiet) and msmtp (tls_starttls on, off). The
message is checked as DebuggingServer prints it (subject, body, X-RcptTo),
and in the log its session is one that went over TLS: a "TLS from ...
TLSv1.3 with cipher ..." line before the message for STARTTLS, a "connect
from ... (implicit TLS)" line for --smtps.

Every command-line client is first run trusting another CA: it must fail
and deliver nothing, so that it is the verification against the test CA
that makes the second run pass. smtplib is shown to refuse the server with
the system's CAs and with a wrong host name, and smtpd to log the failed
handshakes. openssl s_client without -ign_eof is shown to swallow a lone
"RCPT" line (its renegotiation command letter), the reason the tests pass
-ign_eof or -quiet.
"""

import os
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from smtpd_harness import SmtpdTestCase, main, quiet_close  # noqa: E402
from smtpdtest import Collector, need, stop_process  # noqa: E402
import tlslib  # noqa: E402

SWAKS = "/usr/bin/swaks"
CURL = "/usr/bin/curl"
OPENSSL = "/usr/bin/openssl"
MSMTP = "/usr/bin/msmtp"

SENDER = "sender@example.com"
TLS_LINE = rb"TLS from 127\.0\.0\.1: (TLSv1\.3) with cipher (TLS_[A-Z0-9_]+) \((\d+) bits\)\n"


def message(subject, body):
    return ("From: %s\r\nTo: rcpt@example.org\r\nSubject: %s\r\n\r\n%s\r\n"
            % (SENDER, subject, body)).encode()


def text(b):
    return b.decode("utf-8", "replace")


class TlsClientCase(SmtpdTestCase):
    """One DebuggingServer with STARTTLS and an --smtps listener per test;
    one set of certificates per class."""

    @classmethod
    def setUpClass(cls):
        cls.certs = tlslib.Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def start_tls(self, *options):
        srv = self.start("--tls-cert", self.certs.cert, "--tls-key", self.certs.key,
                         "--smtps", "127.0.0.1:0", *options)
        srv.smtps = srv.smtps_port()
        return srv

    def tmpdir(self):
        d = tempfile.TemporaryDirectory(prefix="smtpd-tlsclient-")
        self.addCleanup(d.cleanup)
        return d.name

    # ---- what the server saw ----

    def assertDelivered(self, srv, subject, body, rcpt):
        """Exactly one message was printed: this one, for rcpt alone."""
        msgs = srv.wait_messages(1)
        self.assertEqual(len(msgs), 1, [m["data"] for m in msgs])
        m = msgs[0]
        self.assertEqual(m["mail_from"], SENDER)
        self.assertEqual(m["rcpt_tos"], [rcpt])
        head, sep, rest = m["data"].partition(b"\n\n")
        self.assertEqual(sep, b"\n\n", m["data"])
        self.assertIn(b"Subject: " + subject.encode(), head.split(b"\n"))
        self.assertIn(b"X-Peer: 127.0.0.1", head.split(b"\n"))
        self.assertIn(body.encode(), rest)

    def assertTlsSession(self, srv, rcpt, implicit):
        """The session that delivered the message to rcpt went over TLS:
        for --smtps its connect line says so, for STARTTLS its TLS line
        comes before the message. Returns the log's (protocol, cipher, bits)
        for STARTTLS."""
        msg = srv.wait_stderr(rb"\[(\d+)\] message from=<%s> to=<%s> size=\d+ reply=250 "
                              % (re.escape(SENDER.encode()), re.escape(rcpt.encode())))
        sid = msg.group(1)
        log = srv.stderr()
        connect = re.search(rb"\[%s\] connect from 127\.0\.0\.1:\d+( \(implicit TLS\))?\n"
                            % sid, log)
        self.assertIsNotNone(connect, srv.stderr_text())
        self.assertEqual(connect.group(1) is not None, implicit, connect.group(0))
        if implicit:
            return None
        tls = re.search(rb"\[%s\] %s" % (sid, TLS_LINE), log)
        self.assertIsNotNone(tls, "no TLS line for session %s:\n%s" % (sid, srv.stderr_text()))
        self.assertLess(connect.end(), tls.start())
        self.assertLess(tls.end(), msg.start())
        return text(tls.group(1)), text(tls.group(2)), int(tls.group(3))

    # ---- command-line clients ----

    def run_client(self, package, argv, stdin=b""):
        """Run a client program (of Debian package @package) to its end."""
        need(argv[0], package)
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=60)

    def check_client(self, name, implicit, send):
        """The scheme of every command-line client test: send(port, ca,
        subject, body, rcpt) first trusting the other CA (it must fail and
        deliver nothing), then the test CA (it must succeed). Returns the
        second CompletedProcess."""
        srv = self.start_tls()
        port = srv.smtps if implicit else srv.port
        kind = "implicit TLS" if implicit else "STARTTLS"
        subject = "%s over %s" % (name, kind)
        body = "hello from %s over %s" % (name, kind)
        rcpt = "%s-%s@example.org" % (name, "smtps" if implicit else "starttls")

        bad = send(port, self.certs.other_ca, subject, body, "refused-" + rcpt)
        self.assertNotEqual(bad.returncode, 0, "%s trusted a certificate of another CA:\n%s%s"
                            % (name, text(bad.stdout), text(bad.stderr)))

        good = send(port, self.certs.ca, subject, body, rcpt)
        self.assertEqual(good.returncode, 0, "%s failed:\n%s%s\nsmtpd:\n%s"
                         % (name, text(good.stdout), text(good.stderr), srv.stderr_text()))
        self.assertDelivered(srv, subject, body, rcpt)
        self.assertTlsSession(srv, rcpt, implicit)
        return good


class SmtplibTest(TlsClientCase):
    """The standard library's client, checking the certificate and the name
    localhost with the test CA."""

    def context(self):
        return ssl.create_default_context(cafile=self.certs.ca)

    def test_starttls(self):
        srv = self.start_tls()
        with smtplib.SMTP("localhost", srv.port, local_hostname="smtplib.example.com",
                          timeout=30) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("starttls"))
            self.assertEqual(s.starttls(context=self.context())[0], 220)
            cipher, protocol, bits = s.sock.cipher()
            self.assertEqual(s.sock.getpeercert()["subject"], ((("commonName", "localhost"),),))
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            s.sendmail(SENDER, ["smtplib@example.org"],
                       message("smtplib starttls", "body over STARTTLS"))
        self.assertDelivered(srv, "smtplib starttls", "body over STARTTLS", "smtplib@example.org")
        # The log names what the client negotiated.
        self.assertEqual(self.assertTlsSession(srv, "smtplib@example.org", False),
                         (protocol, cipher, bits))
        self.assertEqual(protocol, "TLSv1.3")

    def test_smtp_ssl(self):
        srv = self.start_tls()
        with smtplib.SMTP_SSL("localhost", srv.smtps, local_hostname="smtplib.example.com",
                              context=self.context(), timeout=30) as s:
            self.assertEqual(s.sock.version(), "TLSv1.3")
            s.ehlo()
            # Already under TLS: no STARTTLS to offer.
            self.assertFalse(s.has_extn("starttls"))
            s.sendmail(SENDER, ["smtps@example.org"], message("smtplib smtps", "body over SMTPS"))
        self.assertDelivered(srv, "smtplib smtps", "body over SMTPS", "smtps@example.org")
        self.assertTlsSession(srv, "smtps@example.org", True)

    def test_implicit_tls_session_logs_protocol_and_cipher(self):
        # Like a STARTTLS session, an --smtps session should log what was
        # negotiated: "[N] TLS from 127.0.0.1: TLSv1.3 with cipher ...".
        srv = self.start_tls()
        with smtplib.SMTP_SSL("localhost", srv.smtps, context=self.context(), timeout=30) as s:
            cipher, protocol, bits = s.sock.cipher()
            s.noop()
        m = srv.wait_stderr(rb"\[(\d+)\] connect from 127\.0\.0\.1:\d+ \(implicit TLS\)\n")
        srv.wait_stderr(rb"\[%s\] disconnect from " % m.group(1))
        tls = re.search(rb"\[%s\] %s" % (m.group(1), TLS_LINE), srv.stderr())
        self.assertIsNotNone(tls, "the implicit TLS session logged no protocol and cipher:\n"
                             + srv.stderr_text())
        self.assertEqual((text(tls.group(1)), text(tls.group(2)), int(tls.group(3))),
                         (protocol, cipher, bits))

    def test_unverifiable_certificate_is_refused(self):
        srv = self.start_tls()
        # The system's CAs do not know the test CA, for STARTTLS or SMTPS.
        with smtplib.SMTP("localhost", srv.port, timeout=30) as s:
            with self.assertRaisesRegex(ssl.SSLCertVerificationError,
                                        "unable to get local issuer certificate"):
                s.starttls(context=ssl.create_default_context())
        with self.assertRaises(ssl.SSLCertVerificationError):
            smtplib.SMTP_SSL("localhost", srv.smtps, context=ssl.create_default_context(),
                             timeout=30)
        # Trusting the other CA is no better.
        other = ssl.create_default_context(cafile=self.certs.other_ca)
        with self.assertRaises(ssl.SSLCertVerificationError):
            smtplib.SMTP_SSL("localhost", srv.smtps, context=other, timeout=30)
        # The right CA, but a name the certificate is not for.
        with socket.create_connection(("127.0.0.1", srv.smtps), timeout=30) as raw:
            with self.assertRaisesRegex(ssl.SSLCertVerificationError, "Hostname mismatch"):
                self.context().wrap_socket(raw, server_hostname="mail.example.com")
        # smtpd saw four failed handshakes (one STARTTLS session, three
        # implicit) and no message; it still serves a verifying client.
        self.assertTrue(srv.err.wait_for(
            lambda b: b.count(b"TLS handshake failed: ") >= 4, 10), srv.stderr_text())
        self.assertEqual(srv.stderr().count(b"(implicit TLS from 127.0.0.1:"), 3,
                         srv.stderr_text())
        with smtplib.SMTP_SSL("localhost", srv.smtps, context=self.context(), timeout=30) as s:
            self.assertEqual(s.noop()[0], 250)
        self.assertEqual(srv.messages(), [])
        self.assertNotIn(b" message from=", srv.stderr())

    def test_failed_handshake_log_names_the_reason(self):
        # The client rejects the certificate and sends an unknown_ca alert
        # (RFC 8446 6.2): the log should say so, not print a bare
        # SSL_get_error() code ("error:00000001:lib(0)::reason(1)").
        srv = self.start_tls()
        with socket.create_connection(("127.0.0.1", srv.smtps), timeout=30) as raw:
            with self.assertRaises(ssl.SSLCertVerificationError):
                ssl.create_default_context().wrap_socket(raw, server_hostname="localhost")
        m = srv.wait_stderr(rb"TLS handshake failed: ([^\n]*)\n")
        self.assertRegex(text(m.group(1)), r"alert unknown ca")


class SwaksTest(TlsClientCase):

    def swaks(self, tls_option):
        def send(port, ca, subject, body, rcpt):
            return self.run_client("swaks", [
                SWAKS, "--server", "127.0.0.1:%d" % port, "--helo", "swaks.example.com",
                "--timeout", "20", tls_option, "--tls-verify", "--tls-ca-path", ca,
                "--tls-sni", "localhost", "--from", SENDER, "--to", rcpt,
                "--header", "Subject: " + subject, "--body", body])
        return send

    def test_starttls(self):
        r = self.check_client("swaks", False, self.swaks("--tls"))
        out = text(r.stdout)
        self.assertIn(" -> STARTTLS\n<-  220 2.0.0 Ready to start TLS\n", out)
        self.assertRegex(out, r"=== TLS started with cipher TLSv1\.3:TLS_\w+:\d+")
        # The whole transaction after the handshake is encrypted (~> / <~),
        # beginning with a new EHLO.
        self.assertRegex(out, r"=== TLS started [^\n]*\n(=== [^\n]*\n)*"
                              r" ~> EHLO swaks\.example\.com")
        self.assertIn(" ~> MAIL FROM:<%s>" % SENDER, out)
        self.assertRegex(out, r"<~  250 2\.0\.0 ")
        self.assertNotIn(" -> MAIL FROM", out)

    def test_tls_on_connect(self):
        r = self.check_client("swaks", True, self.swaks("--tlsc"))
        out = text(r.stdout)
        self.assertRegex(out, r"=== TLS started with cipher TLSv1\.3:TLS_\w+:\d+")
        self.assertRegex(out, r"<~  220 [^\n]* ESMTP")
        self.assertNotIn("STARTTLS", out)
        self.assertRegex(out, r"<~  250 2\.0\.0 ")


class CurlTest(TlsClientCase):

    def curl(self, scheme, *extra):
        def send(port, ca, subject, body, rcpt):
            return self.run_client("curl", [
                CURL, "-sS", "-v", "--max-time", "30",
                "--resolve", "localhost:%d:127.0.0.1" % port,
                "%s://localhost:%d/curl.example.com" % (scheme, port), "--cacert", ca,
                "--mail-from", SENDER, "--mail-rcpt", rcpt, "-T", "-", *extra],
                stdin=message(subject, body))
        return send

    def test_starttls_ssl_reqd(self):
        r = self.check_client("curl", False, self.curl("smtp", "--ssl-reqd"))
        err = text(r.stderr)
        self.assertIn("> STARTTLS", err)
        self.assertIn("< 220 2.0.0 Ready to start TLS", err)
        self.assertRegex(err, r"SSL connection using TLSv1\.3 / TLS_\w+")
        # curl greets again after the handshake.
        self.assertEqual(err.count("> EHLO curl.example.com"), 2, err)

    def test_smtps(self):
        r = self.check_client("curl", True, self.curl("smtps"))
        err = text(r.stderr)
        self.assertRegex(err, r"SSL connection using TLSv1\.3 / TLS_\w+")
        self.assertNotIn("STARTTLS", err)
        self.assertEqual(err.count("> EHLO curl.example.com"), 1, err)

    def test_refused_certificate_error(self):
        # curl names the failure: exit 60, "SSL certificate problem".
        srv = self.start_tls()
        r = self.curl("smtps")(srv.smtps, self.certs.other_ca, "x", "x", "x@example.org")
        self.assertEqual(r.returncode, 60, text(r.stderr))
        self.assertIn("SSL certificate problem", text(r.stderr))


class SClient:
    """openssl s_client driven through its standard input, one line at a
    time: send() a line, reply() the next SMTP reply it printed. Its
    standard output has the server's data (after the certificate and
    session details, which hold no line beginning with three digits), its
    standard error the verification and its own messages."""

    REPLY = re.compile(rb"^(\d{3})([ -])([^\r\n]*)\r?\n", re.M)

    def __init__(self, port, ca, *flags):
        self.argv = [need(OPENSSL, "openssl"), "s_client", "-connect", "127.0.0.1:%d" % port,
                     "-servername", "localhost", "-verify_hostname", "localhost",
                     "-CAfile", ca, "-verify_return_error", *flags]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = Collector(self.proc.stdout)
        self.err = Collector(self.proc.stderr)
        self.seen = 0  # reply lines already returned

    def handshake(self, timeout=10):
        """True once the certificate was verified (the details s_client
        prints without -quiet), False when it exits first."""
        done = self.out.wait_for(lambda b: b"Verify return code: " in b, timeout)
        return bool(done) and b"Verify return code: 0 (ok)\n" in self.out.data()

    def send(self, data):
        self.proc.stdin.write(data.encode() + b"\r\n")
        self.proc.stdin.flush()

    def reply(self, timeout=10):
        """(code, last line's text) of the next whole reply, or None."""
        def whole(out):
            lines = self.REPLY.findall(out)[self.seen:]
            for i, (_, sep, _) in enumerate(lines):
                if sep == b" ":
                    return lines[:i + 1]
            return None
        lines = self.out.wait_for(whole, timeout)
        if not lines:
            return None
        self.seen += len(lines)
        return int(lines[-1][0]), text(lines[-1][2])

    def finish(self, timeout=20):
        """Close its input and wait for it to exit: the exit status."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout)
        finally:
            stop_process(self.proc)
            self.out.thread.join(5)
            self.err.thread.join(5)

    def close(self):
        stop_process(self.proc)
        quiet_close(self.proc.stdin)


class OpensslTest(TlsClientCase):

    def s_client(self, *args):
        c = SClient(*args)
        self.addCleanup(c.close)
        return c

    def transaction(self, c, rcpt, subject, body):
        """EHLO, MAIL, RCPT, DATA, the message, QUIT, each after the reply
        to the one before."""
        steps = [("EHLO openssl.example.com", 250), ("MAIL FROM:<%s>" % SENDER, 250),
                 ("RCPT TO:<%s>" % rcpt, 250), ("DATA", 354),
                 (text(message(subject, body)) + ".", 250), ("QUIT", 221)]
        for line, code in steps:
            c.send(line)
            r = c.reply()
            self.assertIsNotNone(r, "no reply to %r; s_client said:\n%s"
                                 % (line, text(c.err.data())))
            self.assertEqual(r[0], code, (line, r))

    def sender(self, *flags, implicit):
        """send() for check_client: with implicit TLS the greeting comes
        after the handshake; with STARTTLS (no greeting then) the verified
        certificate shows that it is over. A failed handshake ends s_client."""
        def send(port, ca, subject, body, rcpt):
            c = self.s_client(port, ca, *flags)
            if implicit:
                greeting = c.reply()
                ok = greeting is not None
                if ok:
                    self.assertEqual(greeting[0], 220)
            else:
                ok = c.handshake()
            if ok:
                self.transaction(c, rcpt, subject, body)
            rc = c.finish()
            return subprocess.CompletedProcess(c.argv, rc, c.out.data(), c.err.data())
        return send

    def test_starttls_ign_eof(self):
        # -ign_eof: lines beginning with R (RCPT) or Q (QUIT) are sent, not
        # taken as s_client's commands; s_client exits when smtpd closes
        # after QUIT.
        r = self.check_client("s_client", False,
                              self.sender("-starttls", "smtp", "-ign_eof", implicit=False))
        out = text(r.stdout)
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertRegex(out, r"New, TLSv1\.3, Cipher is TLS_\w+")
        # s_client sent EHLO and STARTTLS itself; smtpd sent no greeting
        # after the handshake, so the first reply is the one to our EHLO.
        ehlo = out[out.index("Verify return code"):]
        self.assertRegex(ehlo, r"\n250-[^\n]*\n(250-[^\n]*\n)*250 [^\n]*\n")
        self.assertNotIn("\n220 ", out)
        self.assertNotIn("STARTTLS", ehlo)

    def test_smtps_quiet(self):
        # -quiet: no certificate or session details, and -ign_eof implied.
        r = self.check_client("s_client", True, self.sender("-quiet", implicit=True))
        out = text(r.stdout)
        self.assertRegex(out, r"^220 [^\n]* ESMTP")
        self.assertNotIn("Verify return code", out)
        self.assertIn("depth=0 CN = localhost\nverify return:1", text(r.stderr))

    def test_command_letters_without_ign_eof(self):
        # Without -ign_eof (or -quiet) s_client reads a line beginning with
        # R as "renegotiate" and does not send it: the RCPT never reaches
        # smtpd, whose transaction ends with no recipient when s_client
        # leaves at the end of its input.
        srv = self.start_tls()
        c = self.s_client(srv.port, self.certs.ca, "-starttls", "smtp")
        for line in ("EHLO openssl.example.com", "MAIL FROM:<%s>" % SENDER):
            c.send(line)
            self.assertEqual(c.reply()[0], 250, line)
        c.send("RCPT TO:<lost@example.org>")
        self.assertTrue(c.err.wait_for(lambda b: b"RENEGOTIATING" in b, 10), c.err.data())
        self.assertIsNone(c.reply(timeout=1))
        c.finish()
        srv.wait_stderr(rb"transaction from=<%s> to=<> ended by a disconnect before DATA"
                        % re.escape(SENDER.encode()))
        self.assertNotIn(b"lost@example.org", srv.stderr())
        self.assertEqual(srv.messages(), [])


class MsmtpTest(TlsClientCase):

    def msmtp(self, starttls):
        def send(port, ca, subject, body, rcpt):
            rc = os.path.join(self.tmpdir(), "msmtprc")
            with open(rc, "w") as f:
                f.write("account default\nhost localhost\nport %d\nfrom %s\n"
                        "domain msmtp.example.com\nauth off\ntls on\ntls_starttls %s\n"
                        "tls_trust_file %s\ntimeout 20\n"
                        % (port, SENDER, "on" if starttls else "off", ca))
            os.chmod(rc, 0o600)
            return self.run_client("msmtp", [MSMTP, "-C", rc, "-v", rcpt],
                                   stdin=message(subject, body))
        return send

    def test_starttls(self):
        r = self.check_client("msmtp", False, self.msmtp(True))
        out = text(r.stdout) + text(r.stderr)
        self.assertIn("--> STARTTLS", out)
        self.assertIn("<-- 220 2.0.0 Ready to start TLS", out)
        self.assertEqual(out.count("--> EHLO msmtp.example.com"), 2, out)
        self.assertRegex(out, r"TLS session parameters:\s*\(TLS1\.3\)")

    def test_tls_without_starttls(self):
        r = self.check_client("msmtp", True, self.msmtp(False))
        out = text(r.stdout) + text(r.stderr)
        self.assertNotIn("STARTTLS", out)
        self.assertRegex(out, r"<-- 220 [^\n]* ESMTP")
        self.assertRegex(out, r"TLS session parameters:\s*\(TLS1\.3\)")


if __name__ == "__main__":
    main()
