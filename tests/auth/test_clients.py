"""auth_clients: real SMTP clients authenticate (RFC 4954, SASL PLAIN and
LOGIN) against DebuggingServer with --auth-file, over STARTTLS and over
the --smtps implicit-TLS listener.

The accounts file is made for each run with the real tools: alice's hash by
`openssl passwd -6` (SHA-512 crypt), bob's by `mkpasswd -m yescrypt`, and
bob's password has spaces in it (LOGIN and PLAIN carry it whole); the file
is mode 600. Every server runs with --auth-required, so a delivered message
is itself proof that the client authenticated; DebuggingServer shows the
identity as an "X-AuthUser:" line next to the envelope, and the log names
the mechanism the client used ("AUTH LOGIN from 127.0.0.1: authenticated
as ...").

Clients: smtplib (PLAIN and LOGIN forced, and login()'s own choice),
swaks (-a PLAIN / -a LOGIN with --tls and --tlsc), curl (smtp:// with
--ssl-reqd and smtps://, the mechanism forced with --login-options), msmtp
(tls_starttls on and off, auth on / plain / login). Passwords reach the
command-line clients through files (swaks --config, curl -K, msmtp
passwordeval), never through their command lines. Each client is also run
with a wrong password: it must report the failure (exit status, the 535
5.7.8 it got) and nothing may be printed. Each failure costs the 1 s
failure delay, once per client and kind of TLS.

--auth-accept-any lets any user name and password in (DebuggingServer and
Sink).
"""

import os
import re
import smtplib
import ssl
import subprocess

from authlib import AuthCase, main, need, write_accounts

SWAKS = "/usr/bin/swaks"
CURL = "/usr/bin/curl"
MSMTP = "/usr/bin/msmtp"

SENDER = "sender@example.com"
ALICE, ALICE_PW = "alice", "Tr0ub4dor&3!"                      # openssl passwd -6
BOB, BOB_PW = "bob@example.org", "correct horse battery staple"  # mkpasswd -m yescrypt
WRONG_PW = "not the password"


def message(subject, body):
    return ("From: %s\r\nTo: rcpt@example.org\r\nSubject: %s\r\n\r\n%s\r\n"
            % (SENDER, subject, body)).encode()


def text(b):
    return b.decode("utf-8", "replace")


class ClientCase(AuthCase):
    """One accounts file per class (alice, bob), one server per test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.auth_file = write_accounts(os.path.join(cls.certs.dir, "accounts"), {
            ALICE: ("sha512", ALICE_PW), BOB: ("yescrypt", BOB_PW)})

    def start_server(self, *extra):
        return self.start_auth("--auth-file", self.auth_file, "--auth-required", *extra)

    def write_file(self, name, content, mode=0o600):
        path = os.path.join(self.tmpdir(), name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(content)
        return path

    # ---- what the server saw ----

    def assertDelivered(self, srv, user, mechanism, subject, body, rcpt):
        """Exactly one message printed, this one, with X-AuthUser: user, and
        the log says user authenticated with mechanism."""
        msgs = srv.wait_messages(1)
        self.assertEqual(len(msgs), 1, [m["data"] for m in msgs])
        m = msgs[0]
        self.assertEqual(m["mail_from"], SENDER)
        self.assertEqual(m["rcpt_tos"], [rcpt])
        head, sep, rest = m["data"].partition(b"\n\n")
        self.assertEqual(sep, b"\n\n", m["data"])
        lines = head.split(b"\n")
        self.assertIn(b"X-AuthUser: " + user.encode(), lines, m["data"])
        self.assertEqual(sum(l.startswith(b"X-AuthUser:") for l in lines), 1, m["data"])
        self.assertIn(b"Subject: " + subject.encode(), lines)
        self.assertIn(body.encode(), rest)
        srv.wait_stderr(rb"AUTH %s from 127\.0\.0\.1: authenticated as \"%s\"\n"
                        % (mechanism.encode(), re.escape(user.encode())))
        self.assertNotIn(b" failed for ", srv.stderr())

    def assertRefused(self, srv, r, name, user):
        """A client run with a wrong password failed, said why, and nothing
        was printed; smtpd logged the failure for user."""
        out = text(r.stdout) + text(r.stderr)
        self.assertNotEqual(r.returncode, 0, "%s succeeded with a wrong password:\n%s"
                            % (name, out))
        self.assertIn("535", out, "%s did not show the 535:\n%s" % (name, out))
        srv.wait_stderr(rb"AUTH (PLAIN|LOGIN) from 127\.0\.0\.1 failed for \"%s\" \(failure 1\)\n"
                        % re.escape(user.encode()))
        self.assertEqual(srv.messages(), [])
        self.assertNotIn(b" message from=", srv.stderr())
        self.assertNotIn(b"authenticated as", srv.stderr())

    def run_client(self, package, argv, stdin=b"", env=None):
        need(argv[0], package)
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=60, env=env)

    def check_client(self, name, implicit, mechanism, user, password, send):
        """The scheme of every command-line client test: send(port, user,
        password, subject, body, rcpt) with a wrong password (fails, no
        message), then on a new server with the right one (one message,
        X-AuthUser). Returns the second CompletedProcess."""
        kind = "smtps" if implicit else "starttls"
        subject = "%s %s over %s" % (name, mechanism, kind)
        body = "hello from %s, %s over %s" % (name, mechanism, kind)
        rcpt = "%s-%s-%s@example.org" % (name, mechanism.lower(), kind)

        srv = self.start_server()
        bad = send(srv.smtps if implicit else srv.port, user, WRONG_PW, subject, body, rcpt)
        self.assertRefused(srv, bad, name, user)
        srv.close()

        srv = self.start_server()
        good = send(srv.smtps if implicit else srv.port, user, password, subject, body, rcpt)
        self.assertEqual(good.returncode, 0, "%s failed:\n%s%s\nsmtpd:\n%s"
                         % (name, text(good.stdout), text(good.stderr), srv.stderr_text()))
        self.assertDelivered(srv, user, mechanism, subject, body, rcpt)
        return good


class SmtplibTest(ClientCase):
    """The standard library's client: the mechanism forced with auth()."""

    def connect(self, srv, implicit):
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        if implicit:
            s = smtplib.SMTP_SSL("localhost", srv.smtps, context=ctx, timeout=30)
        else:
            s = smtplib.SMTP("localhost", srv.port, timeout=30)
        self.addCleanup(lambda: s.close())
        s.ehlo("smtplib.example.com")
        if not implicit:
            self.assertFalse(s.has_extn("auth"), "AUTH offered before STARTTLS")
            self.assertEqual(s.starttls(context=ctx)[0], 220)
            s.ehlo("smtplib.example.com")
        self.assertTrue(s.has_extn("auth"), s.esmtp_features)
        self.assertEqual(s.esmtp_features["auth"].split(), ["PLAIN", "LOGIN"])
        return s

    def send_authenticated(self, implicit, mechanism, user, password):
        srv = self.start_server()
        s = self.connect(srv, implicit)
        s.user, s.password = user, password
        if mechanism == "PLAIN":
            r = s.auth("PLAIN", s.auth_plain)
        else:
            r = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        self.assertEqual(r, (235, b"2.7.0 Authentication successful"))
        kind = "smtps" if implicit else "starttls"
        rcpt = "smtplib-%s@example.org" % kind
        subject = "smtplib %s %s" % (mechanism, kind)
        s.sendmail(SENDER, [rcpt], message(subject, "body of " + subject))
        s.quit()
        self.assertDelivered(srv, user, mechanism, subject, "body of " + subject, rcpt)

    def test_starttls_plain(self):
        self.send_authenticated(False, "PLAIN", ALICE, ALICE_PW)

    def test_starttls_login(self):
        self.send_authenticated(False, "LOGIN", BOB, BOB_PW)

    def test_smtps_plain(self):
        self.send_authenticated(True, "PLAIN", BOB, BOB_PW)

    def test_smtps_login(self):
        self.send_authenticated(True, "LOGIN", ALICE, ALICE_PW)

    def test_login_chooses_plain(self):
        # login() tries CRAM-MD5, PLAIN, LOGIN in that order: PLAIN here.
        srv = self.start_server()
        s = self.connect(srv, False)
        self.assertEqual(s.login(BOB, BOB_PW), (235, b"2.7.0 Authentication successful"))
        s.sendmail(SENDER, ["login@example.org"], message("login()", "chosen by smtplib"))
        s.quit()
        self.assertDelivered(srv, BOB, "PLAIN", "login()", "chosen by smtplib",
                             "login@example.org")

    def test_wrong_password(self):
        # Once per mechanism, each in its own session (each answered after
        # the first failure delay, 1 s); the session goes on unauthenticated
        # and --auth-required keeps it from sending.
        srv = self.start_server()
        for mechanism, implicit in (("PLAIN", False), ("LOGIN", True)):
            s = self.connect(srv, implicit)
            s.user, s.password = ALICE, WRONG_PW
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                if mechanism == "PLAIN":
                    s.auth("PLAIN", s.auth_plain)
                else:
                    s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            self.assertEqual(cm.exception.smtp_code, 535)
            self.assertEqual(cm.exception.smtp_error, b"5.7.8 Error: authentication failed")
            self.assertEqual(s.mail(SENDER), (530, b"5.7.0 Authentication required"))
            s.quit()
            srv.wait_stderr(rb"AUTH %s from 127\.0\.0\.1 failed for \"alice\" \(failure 1\)\n"
                            % mechanism.encode())
        self.assertEqual(srv.messages(), [])
        self.assertNotIn(b"authenticated as", srv.stderr())

    def test_unknown_user(self):
        srv = self.start_server()
        s = self.connect(srv, False)
        s.user, s.password = "mallory", ALICE_PW
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            s.auth("PLAIN", s.auth_plain)
        self.assertEqual(cm.exception.smtp_code, 535)
        srv.wait_stderr(rb"AUTH PLAIN from 127\.0\.0\.1 failed for \"mallory\" \(failure 1\)\n")


class SwaksTest(ClientCase):

    def swaks(self, tls_option, mechanism):
        def send(port, user, password, subject, body, rcpt):
            config = self.write_file("swaksrc", "auth-password %s\n" % password)
            return self.run_client("swaks", [
                SWAKS, "--config", config, "--server", "127.0.0.1:%d" % port,
                "--helo", "swaks.example.com", "--timeout", "20", tls_option, "--tls-verify",
                "--tls-ca-path", self.certs.ca, "--tls-sni", "localhost",
                "-a", mechanism, "--auth-user", user,
                "--from", SENDER, "--to", rcpt, "--header", "Subject: " + subject,
                "--body", body])
        return send

    def check(self, implicit, mechanism, user, password):
        r = self.check_client("swaks", implicit, mechanism, user, password,
                              self.swaks("--tlsc" if implicit else "--tls", mechanism))
        out = text(r.stdout)
        self.assertIn(" ~> AUTH %s" % mechanism, out)
        self.assertIn("<~  235 2.7.0 Authentication successful", out)
        # Nothing about AUTH went in the clear.
        self.assertNotIn(" -> AUTH", out)
        return out

    def test_starttls_plain(self):
        self.check(False, "PLAIN", ALICE, ALICE_PW)

    def test_starttls_login(self):
        out = self.check(False, "LOGIN", BOB, BOB_PW)
        self.assertIn("<~  334 VXNlcm5hbWU6", out)
        self.assertIn("<~  334 UGFzc3dvcmQ6", out)

    def test_tlsc_plain(self):
        self.check(True, "PLAIN", BOB, BOB_PW)

    def test_tlsc_login(self):
        self.check(True, "LOGIN", ALICE, ALICE_PW)


class CurlTest(ClientCase):

    def curl(self, scheme, mechanism, *extra):
        def send(port, user, password, subject, body, rcpt):
            config = self.write_file("curlrc", 'user = "%s:%s"\n' % (user, password))
            return self.run_client("curl", [
                CURL, "-sS", "-v", "--max-time", "30", "-K", config,
                "--resolve", "localhost:%d:127.0.0.1" % port,
                "%s://localhost:%d/curl.example.com" % (scheme, port),
                "--cacert", self.certs.ca, "--login-options", "AUTH=" + mechanism,
                "--mail-from", SENDER, "--mail-rcpt", rcpt, "-T", "-", *extra],
                stdin=message(subject, body))
        return send

    def check(self, implicit, mechanism, user, password):
        scheme, extra = ("smtps", ()) if implicit else ("smtp", ("--ssl-reqd",))
        r = self.check_client("curl", implicit, mechanism, user, password,
                              self.curl(scheme, mechanism, *extra))
        err = text(r.stderr)
        self.assertIn("> AUTH %s" % mechanism, err)
        self.assertIn("< 235 2.7.0 Authentication successful", err)
        if not implicit:
            self.assertLess(err.index("> STARTTLS"), err.index("> AUTH"))

    def test_starttls_plain(self):
        self.check(False, "PLAIN", BOB, BOB_PW)

    def test_starttls_login(self):
        self.check(False, "LOGIN", ALICE, ALICE_PW)

    def test_smtps_plain(self):
        self.check(True, "PLAIN", ALICE, ALICE_PW)

    def test_smtps_login(self):
        self.check(True, "LOGIN", BOB, BOB_PW)

    def test_wrong_password_exit_status(self):
        # curl names the failure: exit 67, CURLE_LOGIN_DENIED.
        srv = self.start_server()
        r = self.curl("smtps", "PLAIN")(srv.smtps, ALICE, WRONG_PW, "x", "x", "x@example.org")
        self.assertEqual(r.returncode, 67, text(r.stderr))
        self.assertIn("< 535 5.7.8 Error: authentication failed", text(r.stderr))


class MsmtpTest(ClientCase):

    def msmtp(self, starttls, auth):
        def send(port, user, password, subject, body, rcpt):
            pwfile = self.write_file("password", password + "\n")
            rc = self.write_file("msmtprc", (
                "account default\nhost localhost\nport %d\nfrom %s\n"
                "domain msmtp.example.com\nauth %s\nuser %s\npasswordeval cat %s\n"
                "tls on\ntls_starttls %s\ntls_trust_file %s\ntimeout 20\n"
                % (port, SENDER, auth, user, pwfile, "on" if starttls else "off",
                   self.certs.ca)))
            return self.run_client("msmtp", [MSMTP, "-C", rc, "-v", rcpt],
                                   stdin=message(subject, body))
        return send

    def check(self, implicit, auth, mechanism, user, password):
        r = self.check_client("msmtp", implicit, mechanism, user, password,
                              self.msmtp(not implicit, auth))
        out = text(r.stdout) + text(r.stderr)
        self.assertIn("--> AUTH %s" % mechanism, out)
        self.assertIn("<-- 235 2.7.0 Authentication successful", out)
        if not implicit:
            self.assertLess(out.index("--> STARTTLS"), out.index("--> AUTH"))

    def test_starttls_auth_on(self):
        # auth on: msmtp picks from "AUTH PLAIN LOGIN" (PLAIN).
        self.check(False, "on", "PLAIN", ALICE, ALICE_PW)

    def test_starttls_login(self):
        self.check(False, "login", "LOGIN", BOB, BOB_PW)

    def test_smtps_plain(self):
        self.check(True, "plain", "PLAIN", BOB, BOB_PW)

    def test_smtps_login(self):
        self.check(True, "login", "LOGIN", ALICE, ALICE_PW)


class AcceptAnyTest(ClientCase):
    """--auth-accept-any: any user name and password succeed; the identity
    is the one the client gave."""

    def test_debugging_server_any_credentials(self):
        srv = self.start_auth("--auth-accept-any", "--auth-required")
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        with smtplib.SMTP("localhost", srv.port, timeout=30) as s:
            s.starttls(context=ctx)
            s.ehlo()
            self.assertEqual(s.esmtp_features["auth"].split(), ["PLAIN", "LOGIN"])
            s.user, s.password = "whoever@example.net", "anything at all"
            self.assertEqual(s.auth("LOGIN", s.auth_login, initial_response_ok=False)[0], 235)
            s.sendmail(SENDER, ["any@example.org"], message("accept any", "any body"))
        self.assertDelivered(srv, "whoever@example.net", "LOGIN", "accept any", "any body",
                             "any@example.org")

    def test_swaks_any_credentials_over_smtps(self):
        srv = self.start_auth("--auth-accept-any", "--auth-required")
        send = SwaksTest.swaks(self, "--tlsc", "PLAIN")
        r = send(srv.smtps, "made-up-user", "made-up password", "any swaks", "any swaks body",
                 "anyswaks@example.org")
        self.assertEqual(r.returncode, 0, text(r.stdout) + text(r.stderr))
        self.assertDelivered(srv, "made-up-user", "PLAIN", "any swaks", "any swaks body",
                             "anyswaks@example.org")

    def test_sink_any_credentials(self):
        srv = self.start_auth("--auth-accept-any", "--auth-required", cls="Sink")
        r = SwaksTest.swaks(self, "--tls", "LOGIN")(
            srv.port, "someone", "secret", "sink", "sink body", "sink@example.org")
        self.assertEqual(r.returncode, 0, text(r.stdout) + text(r.stderr))
        out = text(r.stdout)
        self.assertIn("<~  235 2.7.0 Authentication successful", out)
        self.assertRegex(out, r"<~  250 2\.0\.0 ")
        srv.wait_stderr(rb"AUTH LOGIN from 127\.0\.0\.1: authenticated as \"someone\"\n")
        srv.wait_stderr(rb"message from=<sender@example\.com> to=<sink@example\.org> size=\d+ "
                        rb"reply=250 ")


if __name__ == "__main__":
    main()
