"""auth_session: the AUTH dialogue (RFC 4954) on a raw socket, reply by
reply, against DebuggingServer with --auth-file.

Where AUTH is offered: not before TLS (not in EHLO, 538 5.7.11), after
STARTTLS and on the --smtps listener, in plaintext with --auth-insecure,
nowhere without --auth-file or --auth-accept-any. --auth-required: 530
5.7.0 for MAIL, RCPT and DATA until AUTH, 250 after (and after RSET).

The exchange: PLAIN with and without an initial response (an empty 334),
LOGIN's two challenges ("Username:" and "Password:" in base64) and LOGIN
with the user name as initial response; an authorization identity other
than the user refused (RFC 4616); "*" cancels (501 5.0.0, no failure
counted); bad base64 (501 5.5.2); a second AUTH, AUTH in a transaction,
before EHLO and after HELO (503 5.5.1); an unknown mechanism (504 5.5.4),
none (501 5.5.4); MAIL FROM:<...> AUTH=<> (250).

Brute force: ten failures in one session, each answered after 1, 2, 4, 4,
... seconds (each measured), the tenth followed by 421 4.7.0 and the close
(--max-errors 10), while another session is served at once. This test
takes about 35 s by design; every other failure here is a first one (1 s).

Secrets: at -d the dialogue is logged but never a password, nor its base64,
nor a PLAIN response, for PLAIN with and without initial response and
LOGIN, failed and successful; the failure line names the user.

The accounts file: world-readable gives a warning; a malformed line makes
smtpd exit 78 naming the line; SIGHUP after rewriting it makes the new
password work and the old one fail; SIGHUP with a broken file keeps the
old accounts.
"""

import os
import re
import signal
import subprocess
import sys
import time

from authlib import (AuthCase, EX_CONFIG, PASSWORD_CHALLENGE, SLOW, USERNAME_CHALLENGE,
                     b64, main, plain_b64, run_smtpd, write_accounts, keywords)
from smtpdtest import Collector, smtpd_argv, stop_process

USER, PW = "alice", "S3cret-Passw0rd-xyzzy"
USER2, PW2 = "carol@example.org", "another pass phrase"
SENDER = "sender@example.com"

OK = (235, ["2.7.0 Authentication successful"])
FAILED = (535, ["5.7.8 Error: authentication failed"])


class SessionCase(AuthCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.auth_file = write_accounts(os.path.join(cls.certs.dir, "accounts"), {
            USER: ("sha512", PW), USER2: ("yescrypt", PW2)})

    def server(self, *extra, **kw):
        return self.start_auth("--auth-file", self.auth_file, *extra, **kw)

    def auth_plain(self, c, user=USER, pw=PW):
        return c.command("AUTH PLAIN " + plain_b64(user, pw))

    def timed(self, c, line):
        """Send a line: (seconds until its whole reply, the reply)."""
        t0 = time.monotonic()
        r = c.command(line)
        return time.monotonic() - t0, r


class OfferedTest(SessionCase):

    def test_not_offered_before_tls(self):
        srv = self.server()
        c = self.plain_session(srv)
        code, lines = c.ehlo()
        self.assertNotIn("AUTH", keywords(lines))
        self.assertIn("STARTTLS", keywords(lines))
        self.assertEqual(self.auth_plain(c)[:1], (538,))
        self.assertEqual(c.command("AUTH PLAIN " + plain_b64(USER, PW)),
                         (538, ["5.7.11 Error: encryption required for authentication"]))
        self.assertEqual(c.command("AUTH LOGIN")[0], 538)
        # Refusing is no failed attempt: no delay, no failure logged.
        t, r = self.timed(c, "AUTH PLAIN")
        self.assertEqual(r[0], 538)
        self.assertLess(t, 0.5 * SLOW)
        self.assertNotIn(b"failed for", srv.stderr())
        # After STARTTLS it is offered and works.
        c.starttls()
        code, lines = c.ehlo()
        self.assertIn("AUTH PLAIN LOGIN", lines)
        self.assertNotIn("STARTTLS", keywords(lines))
        self.assertEqual(self.auth_plain(c), OK)

    def test_offered_on_smtps(self):
        srv = self.server()
        c = self.implicit_client(srv.smtps)
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.ehlo()
        self.assertIn("AUTH PLAIN LOGIN", lines)
        self.assertEqual(self.auth_plain(c, USER2, PW2), OK)

    def test_starttls_forgets_nothing_learnt_before(self):
        # RFC 3207 4.2: after STARTTLS the client greets again; AUTH before
        # that new EHLO is refused like AUTH before any EHLO.
        srv = self.server()
        c = self.plain_session(srv)
        c.starttls()
        self.assertEqual(self.auth_plain(c)[:1], (503,))
        self.assertEqual(c.ehlo()[0], 250)
        self.assertEqual(self.auth_plain(c), OK)

    def test_auth_insecure_offers_plaintext(self):
        srv = self.server("--auth-insecure")
        c = self.plain_session(srv)
        code, lines = c.ehlo()
        self.assertIn("AUTH PLAIN LOGIN", lines)
        self.assertEqual(self.auth_plain(c), OK)
        srv.wait_stderr(rb"AUTH PLAIN from 127\.0\.0\.1: authenticated as \"alice\"\n")

    def test_auth_insecure_without_tls_cert(self):
        srv = self.start("--auth-file", self.auth_file, "--auth-insecure")
        c = self.plain_session(srv)
        self.assertIn("AUTH PLAIN LOGIN", c.ehlo()[1])
        self.assertEqual(self.auth_plain(c, USER2, PW2), OK)

    def test_not_offered_without_accounts(self):
        # TLS alone offers no AUTH, and the verb is unknown.
        srv = self.start_auth()
        c = self.tls_session(srv)
        code, lines = c.ehlo()
        self.assertNotIn("AUTH", keywords(lines))
        code, text = self.auth_plain(c)
        self.assertIn(code, (500, 502), text)
        # Nor is MAIL's AUTH= parameter known then.
        self.assertNotEqual(c.command("MAIL FROM:<%s> AUTH=<>" % SENDER)[0], 250)

    def test_auth_required(self):
        srv = self.server("--auth-required")
        c = self.tls_session(srv)
        required = (530, ["5.7.0 Authentication required"])
        self.assertEqual(c.command("MAIL FROM:<%s>" % SENDER), required)
        self.assertEqual(c.command("RCPT TO:<r@example.org>"), required)
        self.assertEqual(c.command("DATA"), required)
        # What needs no transaction still works.
        self.assertEqual(c.command("NOOP")[0], 250)
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertEqual(self.auth_plain(c), OK)
        self.assertEqual(c.command("MAIL FROM:<%s>" % SENDER)[0], 250)
        self.assertEqual(c.command("RCPT TO:<r@example.org>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        self.assertEqual(c.command("Subject: required\r\n\r\nafter AUTH\r\n.")[0], 250)
        # Still authenticated after the transaction and RSET.
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertEqual(c.command("MAIL FROM:<%s>" % SENDER)[0], 250)
        msgs = srv.wait_messages(1)
        self.assertIn(b"X-AuthUser: alice\n", msgs[0]["data"])
        self.assertIn(b"after AUTH", msgs[0]["data"])

    def test_auth_required_plaintext_session(self):
        # Without --auth-insecure a plaintext client can never authenticate:
        # 530 for MAIL, 538 for AUTH.
        srv = self.server("--auth-required")
        c = self.plain_session(srv)
        self.assertEqual(c.command("MAIL FROM:<%s>" % SENDER)[:1], (530,))
        self.assertEqual(self.auth_plain(c)[0], 538)
        self.assertEqual(c.command("MAIL FROM:<%s>" % SENDER)[:1], (530,))
        self.assertEqual(srv.messages(), [])


class ExchangeTest(SessionCase):
    """Over --smtps (quicker than STARTTLS, the same AUTH)."""

    def session(self, *extra):
        srv = self.server(*extra)
        return srv, self.tls_session(srv, implicit=True)

    def test_plain_without_initial_response(self):
        srv, c = self.session()
        self.assertEqual(c.command("AUTH PLAIN"), (334, [""]))
        self.assertEqual(c.command(plain_b64(USER2, PW2)), OK)
        srv.wait_stderr(rb"AUTH PLAIN from 127\.0\.0\.1: authenticated as \"carol@example\.org\"")

    def test_login_challenges(self):
        srv, c = self.session()
        self.assertEqual(c.command("AUTH LOGIN"), (334, [USERNAME_CHALLENGE]))
        self.assertEqual(c.command(b64(USER)), (334, [PASSWORD_CHALLENGE]))
        self.assertEqual(c.command(b64(PW)), OK)
        srv.wait_stderr(rb"AUTH LOGIN from 127\.0\.0\.1: authenticated as \"alice\"\n")

    def test_login_with_initial_response(self):
        # The user name as initial response: only the password is asked.
        srv, c = self.session()
        self.assertEqual(c.command("AUTH LOGIN " + b64(USER2)), (334, [PASSWORD_CHALLENGE]))
        self.assertEqual(c.command(b64(PW2)), OK)

    def test_mechanism_names_any_case(self):
        srv, c = self.session()
        self.assertEqual(c.command("auth plain " + plain_b64(USER, PW)), OK)

    def test_authorization_identity(self):
        # The same identity as authzid is fine; another one is refused (no
        # acting for someone else) even with the right password.
        srv, c = self.session()
        self.assertEqual(c.command("AUTH PLAIN " + plain_b64(USER, PW, authzid=USER)), OK)
        c2 = self.tls_session(srv, implicit=True)
        code, text = c2.command("AUTH PLAIN " + plain_b64(USER, PW, authzid=USER2))
        self.assertEqual(code, 535, text)
        self.assertTrue(text[0].startswith("5.7.8 "), text)
        self.assertEqual(c2.command("MAIL FROM:<%s>" % SENDER)[0], 250)  # not required here
        self.assertEqual(c2.command("RCPT TO:<r@example.org>")[0], 250)
        self.assertEqual(c2.command("DATA")[0], 354)
        self.assertEqual(c2.command("Subject: z\r\n\r\nunauthenticated\r\n.")[0], 250)
        msgs = srv.wait_messages(1)
        self.assertNotIn(b"X-AuthUser:", msgs[0]["data"])

    def test_cancel(self):
        srv, c = self.session()
        cancelled = (501, ["5.0.0 Error: authentication cancelled"])
        self.assertEqual(c.command("AUTH PLAIN")[0], 334)
        t, r = self.timed(c, "*")
        self.assertEqual(r, cancelled)
        self.assertEqual(c.command("AUTH LOGIN")[0], 334)
        self.assertEqual(c.command("*"), cancelled)
        self.assertEqual(c.command("AUTH LOGIN")[0], 334)
        self.assertEqual(c.command(b64(USER))[0], 334)
        t2, r = self.timed(c, "*")
        self.assertEqual(r, cancelled)
        # A cancel is no failed attempt: answered at once, nothing logged.
        self.assertLess(max(t, t2), 0.5 * SLOW)
        self.assertNotIn(b"failed for", srv.stderr())
        self.assertEqual(c.command("NOOP")[0], 250)
        self.assertEqual(self.auth_plain(c), OK)

    def test_bad_base64(self):
        srv, c = self.session()
        bad = (501, ["5.5.2 Error: invalid base64 data"])
        self.assertEqual(c.command("AUTH PLAIN !!!not-base64!!!"), bad)
        self.assertEqual(c.command("AUTH PLAIN AGFsaWNl="), bad)       # length not 4k
        self.assertEqual(c.command("AUTH PLAIN")[0], 334)
        self.assertEqual(c.command("%%%%"), bad)
        self.assertEqual(c.command("AUTH LOGIN")[0], 334)
        self.assertEqual(c.command("YWxp Y2U="), bad)
        # The session goes on: a good AUTH still works.
        self.assertEqual(c.command("NOOP")[0], 250)
        self.assertEqual(self.auth_plain(c), OK)

    def test_second_auth(self):
        srv, c = self.session()
        self.assertEqual(self.auth_plain(c), OK)
        self.assertEqual(self.auth_plain(c, USER2, PW2),
                         (503, ["5.5.1 Error: already authenticated"]))
        self.assertEqual(c.command("AUTH LOGIN")[:1], (503,))
        # Still alice.
        for line, code in (("MAIL FROM:<%s>" % SENDER, 250), ("RCPT TO:<r@example.org>", 250),
                           ("DATA", 354), ("Subject: s\r\n\r\nsecond\r\n.", 250)):
            self.assertEqual(c.command(line)[0], code, line)
        self.assertIn(b"X-AuthUser: alice\n", srv.wait_messages(1)[0]["data"])

    def test_auth_in_transaction(self):
        srv, c = self.session()
        self.assertEqual(c.command("MAIL FROM:<%s>" % SENDER)[0], 250)
        code, text = self.auth_plain(c)
        self.assertEqual(code, 503, text)
        self.assertTrue(text[0].startswith("5.5.1 "), text)
        self.assertEqual(c.command("RCPT TO:<r@example.org>")[0], 250)
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertEqual(self.auth_plain(c), OK)

    def test_unknown_or_no_mechanism(self):
        srv, c = self.session()
        self.assertEqual(c.command("AUTH CRAM-MD5"),
                         (504, ["5.5.4 Error: unrecognized authentication type"]))
        self.assertEqual(c.command("AUTH GSSAPI " + b64("x"))[0], 504)
        self.assertEqual(c.command("AUTH XOAUTH2")[0], 504)
        code, text = c.command("AUTH")
        self.assertEqual(code, 501, text)
        self.assertTrue(text[0].startswith("5.5.4 "), text)
        self.assertEqual(self.auth_plain(c), OK)

    def test_auth_before_ehlo_and_after_helo(self):
        srv = self.server()
        c = self.implicit_client(srv.smtps)
        self.assertEqual(c.reply()[0], 220)
        # No EHLO, so no ENHANCEDSTATUSCODES either (RFC 2034): a bare 503,
        # as for MAIL before HELO.
        self.assertEqual(self.auth_plain(c), (503, ["Error: send EHLO first"]))
        self.assertEqual(c.command("HELO client.example.com")[0], 250)
        self.assertEqual(self.auth_plain(c), (503, ["Error: send EHLO first"]))
        self.assertEqual(c.command("AUTH LOGIN")[0], 503)
        self.assertEqual(c.ehlo()[0], 250)
        self.assertEqual(self.auth_plain(c), OK)

    def test_mail_auth_parameter(self):
        # RFC 4954 5: AUTH=<> (submitter unknown), and an addr-spec.
        srv, c = self.session()
        self.assertEqual(c.command("MAIL FROM:<a@b> AUTH=<>")[0], 250)
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertEqual(self.auth_plain(c), OK)
        self.assertEqual(c.command("MAIL FROM:<a@b> AUTH=alice@example.org")[0], 250)
        self.assertEqual(c.command("RCPT TO:<r@example.org>")[0], 250)

    def test_failed_then_succeeded(self):
        # One failure (the 1 s delay), then the right password in the same
        # session; the failure line names the user and counts.
        srv, c = self.session()
        t, r = self.timed(c, "AUTH PLAIN " + plain_b64(USER, "wrong"))
        self.assertEqual(r, FAILED)
        self.assertGreaterEqual(t, 0.8)
        srv.wait_stderr(rb"AUTH PLAIN from 127\.0\.0\.1 failed for \"alice\" \(failure 1\)\n")
        self.assertEqual(self.auth_plain(c), OK)


class BruteForceTest(SessionCase):

    def test_ten_failures(self):
        srv = self.server()
        c = self.tls_session(srv, implicit=True)
        expected = [1, 2, 4, 4, 4, 4, 4, 4, 4, 4]
        delays = []
        for i, want in enumerate(expected):
            if i % 2:
                line = "AUTH PLAIN " + plain_b64(USER, "guess-%d" % i)
                t0 = time.monotonic()
                c.send(line + "\r\n")
            else:
                self.assertEqual(c.command("AUTH LOGIN")[0], 334)
                self.assertEqual(c.command(b64(USER))[0], 334)
                t0 = time.monotonic()
                c.send(b64("guess-%d" % i) + "\r\n")
            if i == 3:
                # Meanwhile another session is served at once: greeting,
                # EHLO, a successful AUTH, a message. From another address:
                # this one's successes wait as long as its failures.
                t1 = time.monotonic()
                other = self.tls_session(srv, implicit=True, source="127.0.0.2")
                self.assertEqual(self.auth_plain(other, USER2, PW2), OK)
                for l, code in (("MAIL FROM:<%s>" % SENDER, 250),
                                ("RCPT TO:<r@example.org>", 250), ("DATA", 354),
                                ("Subject: meanwhile\r\n\r\nmeanwhile\r\n.", 250)):
                    self.assertEqual(other.command(l)[0], code, l)
                other_time = time.monotonic() - t1
                self.assertLess(other_time, 1.0 * SLOW,
                                "another session waited for the failure delay")
                self.assertLess(time.monotonic() - t0, want * 0.8,
                                "the other session was done after the delay had passed")
            r = c.reply(timeout=want * 3 + 10)
            delays.append(time.monotonic() - t0)
            self.assertEqual(r, FAILED, "attempt %d" % (i + 1))
            srv.wait_stderr(rb"AUTH (PLAIN|LOGIN) from 127\.0\.0\.1 failed for \"alice\" "
                            rb"\(failure %d\)\n" % (i + 1))
        msg = "delays %s, expected %s" % (["%.2f" % d for d in delays], expected)
        sys.stderr.write("\n  measured failure delays: %s s\n  " % msg)
        for d, want in zip(delays, expected):
            self.assertGreaterEqual(d, 0.8 * want, msg)
            self.assertLess(d, want + 1.0 * SLOW, msg)
        # They grow up to 4 s and stay there.
        self.assertLess(delays[0], delays[1], msg)
        self.assertLess(delays[1], delays[2], msg)
        # The tenth failure used up --max-errors (10): 421 and the close,
        # without another delay.
        t0 = time.monotonic()
        code, text = c.reply(timeout=10)
        self.assertEqual(code, 421, text)
        self.assertTrue(text[0].startswith("4.7.0 "), text)
        self.assertLess(time.monotonic() - t0, 0.5 * SLOW)
        self.assertTrue(c.closed_by_peer(5))
        self.assertEqual(len(srv.wait_messages(1)), 1)
        self.assertIn(b"X-AuthUser: carol@example.org\n", srv.messages()[0]["data"])
        # The server still serves; this address waits 4 s even to succeed.
        c3 = self.tls_session(srv, implicit=True)
        t, r = self.timed(c3, "AUTH PLAIN " + plain_b64(USER, PW))
        self.assertEqual(r, OK)
        self.assertGreaterEqual(t, 0.8 * 4)

    def test_new_session_per_guess(self):
        # A client that opens a session per guess, and takes a slow answer
        # for a "no", gains nothing: once its address has failed, every AUTH
        # answer of that address waits, a success as long as a failure;
        # another address is answered at once.
        srv = self.server()
        c = self.tls_session(srv, implicit=True)
        t, r = self.timed(c, "AUTH PLAIN " + plain_b64(USER, "wrong"))
        self.assertEqual(r, FAILED)
        c.close()
        for n, want in ((2, 2), (3, 4)):  # the address's n-th failure, its delay
            c = self.tls_session(srv, implicit=True)
            t, r = self.timed(c, "AUTH PLAIN " + plain_b64(USER, "wrong-%d" % n))
            self.assertEqual(r, FAILED)
            self.assertGreaterEqual(t, 0.8 * want, "failure %d" % n)
            c.close()
        c = self.tls_session(srv, implicit=True)
        t, r = self.timed(c, "AUTH PLAIN " + plain_b64(USER, PW))
        self.assertEqual(r, OK)
        self.assertGreaterEqual(t, 0.8 * 4, "a success after three failures")
        other = self.tls_session(srv, implicit=True, source="127.0.0.2")
        t, r = self.timed(other, "AUTH PLAIN " + plain_b64(USER, PW))
        self.assertEqual(r, OK)
        self.assertLess(t, 0.5 * SLOW, "another address")

    def test_max_errors_counts_failures(self):
        # --max-errors 1: the first failure's 535 (after 1 s) is the last
        # reply of the session.
        srv = self.server("--max-errors", "1")
        c = self.tls_session(srv, implicit=True)
        t, r = self.timed(c, "AUTH PLAIN " + plain_b64(USER, "nope"))
        self.assertEqual(r, FAILED)
        self.assertGreaterEqual(t, 0.8)
        self.assertEqual(c.reply(timeout=5)[0], 421)
        self.assertTrue(c.closed_by_peer(5))


class SecretsTest(SessionCase):
    """-d logs the dialogue, never a password."""

    def secrets(self, user, pw):
        return [pw, b64(pw), plain_b64(user, pw), b64("%s\0%s" % (user, pw)),
                plain_b64(user, pw, authzid=user)]

    def assertNoSecrets(self, srv, pairs):
        log = srv.stderr().decode("utf-8", "replace")
        for user, pw in pairs:
            for s in self.secrets(user, pw):
                self.assertNotIn(s, log, "a secret (%r) is in the -d log:\n%s" % (s, log))

    def test_debug_log_redacts(self):
        srv = self.server("-d", "--auth-insecure")
        # Successful: PLAIN with and without initial response, LOGIN with
        # and without, over STARTTLS, --smtps and plaintext.
        c = self.tls_session(srv)
        self.assertEqual(self.auth_plain(c), OK)
        c = self.tls_session(srv, implicit=True)
        self.assertEqual(c.command("AUTH PLAIN")[0], 334)
        self.assertEqual(c.command(plain_b64(USER2, PW2)), OK)
        c = self.plain_session(srv)
        self.assertEqual(c.command("AUTH LOGIN")[0], 334)
        self.assertEqual(c.command(b64(USER))[0], 334)
        self.assertEqual(c.command(b64(PW)), OK)
        c = self.plain_session(srv)
        self.assertEqual(c.command("auth login " + b64(USER2))[0], 334)
        self.assertEqual(c.command(b64(PW2)), OK)
        # Failed, in three sessions at once (one 1 s delay for all).
        wrong = [(USER, "wrong-%d-Passw0rd" % i) for i in range(3)]
        fails = [self.tls_session(srv, implicit=True) for _ in range(3)]
        fails[0].send("AUTH PLAIN %s\r\n" % plain_b64(*wrong[0]))
        self.assertEqual(fails[1].command("AUTH PLAIN")[0], 334)
        fails[1].send(plain_b64(*wrong[1]) + "\r\n")
        self.assertEqual(fails[2].command("AUTH LOGIN")[0], 334)
        self.assertEqual(fails[2].command(b64(USER))[0], 334)
        fails[2].send(b64(wrong[2][1]) + "\r\n")
        for f in fails:
            self.assertEqual(f.reply(timeout=10), FAILED)
            self.assertEqual(f.command("QUIT")[0], 221)
        # A cancel and a bad response are responses too.
        c = self.plain_session(srv)
        self.assertEqual(c.command("AUTH PLAIN")[0], 334)
        self.assertEqual(c.command("*")[0], 501)
        self.assertEqual(c.command("AUTH LOGIN " + b64(USER))[0], 334)
        self.assertEqual(c.command(b64(PW) + "!")[0], 501)
        self.assertEqual(c.command("QUIT")[0], 221)
        # Everything is logged once the four QUITs are answered.
        self.assertTrue(srv.err.wait_for(lambda b: b.count(b"> 221 ") >= 4, 10),
                        srv.stderr_text())

        self.assertNoSecrets(srv, [(USER, PW), (USER2, PW2)] + wrong)
        log = srv.stderr()
        # The redacted forms are there instead.
        self.assertIn(b"< AUTH PLAIN [initial response not logged]\n", log)
        self.assertIn(b"< auth login [initial response not logged]\n", log)
        self.assertIn(b"< AUTH LOGIN\n", log)
        self.assertIn(b"< AUTH PLAIN\n", log)
        for response in (plain_b64(USER2, PW2), b64(USER), b64(PW), b64(PW2), "*",
                         b64(wrong[2][1]), b64(PW) + "!"):
            self.assertIn(b"< [a response of %d octets, not logged]\n" % len(response), log)
        self.assertIn(b"> 334 VXNlcm5hbWU6\n", log)
        self.assertIn(b"> 235 2.7.0 Authentication successful\n", log)
        self.assertIn(b"> 535 5.7.8 Error: authentication failed\n", log)
        # The info lines name the users.
        self.assertEqual(len(re.findall(rb"AUTH (PLAIN|LOGIN) from 127\.0\.0\.1: authenticated as "
                                        rb"\"(alice|carol@example\.org)\"\n", log)), 4, log)
        self.assertEqual(len(re.findall(rb"AUTH (PLAIN|LOGIN) from 127\.0\.0\.1 failed for "
                                        rb"\"alice\" \(failure 1\)\n", log)), 3, log)


class AccountsFileTest(SessionCase):

    def test_world_readable_warns(self):
        path = write_accounts(os.path.join(self.tmpdir(), "accounts"),
                              {USER: ("sha512", PW)}, mode=0o644)
        srv = self.start_auth("--auth-file", path)
        srv.wait_stderr(rb"warning: [^\n]*%s can be read by group or others"
                        % re.escape(path.encode()))
        c = self.tls_session(srv, implicit=True)
        self.assertEqual(self.auth_plain(c), OK)

    def test_private_file_does_not_warn(self):
        srv = self.server()
        self.tls_session(srv, implicit=True)
        self.assertNotIn(b"can be read by group or others", srv.stderr())

    def run_with(self, lines):
        """smtpd with an --auth-file of these lines (mode 600), to its exit:
        (exit status, standard error)."""
        path = os.path.join(self.tmpdir(), "accounts")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        argv = smtpd_argv() + ["-n", "-c", "DebuggingServer", "--auth-file", path,
                               *self.tls_options(), "127.0.0.1:0"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.addCleanup(stop_process, proc)
        err = Collector(proc.stderr)
        serving = err.wait_for(lambda b: b"listening on" in b, 10 * SLOW)
        if serving:  # it loaded the file: no exit status
            return None, err.data().decode("utf-8", "replace")
        rc = proc.wait(10 * SLOW)
        err.thread.join(5)
        return rc, err.data().decode("utf-8", "replace")

    def good_line(self):
        path = write_accounts(os.path.join(self.tmpdir(), "good"), {USER: ("sha512", PW)})
        with open(path) as f:
            return f.read().splitlines()[1]

    def test_malformed_exits_78(self):
        good = self.good_line()
        cases = [
            ("no colon", ["# comment", good, "bob-without-a-hash"], 3),
            ("empty user", [good, ":" + good.split(":", 1)[1]], 2),
            ("empty hash", ["", good, "bob:"], 3),
            ("one-character hash", [good, "bob:x"], 2),
            ("locked hash", ["bob:!", good], 1),
        ]
        for name, lines, n in cases:
            with self.subTest(name):
                rc, err = self.run_with(lines)
                self.assertEqual(rc, EX_CONFIG, "%s: %s" % (name, err))
                self.assertIn("line %d" % n, err, name)
                self.assertNotIn("listening on", err)

    def test_unusable_hash_exits_78(self):
        # Lines that are no crypt(3) hash of any password: a password
        # written in clear, a SHA-512 hash cut after its salt, a bare
        # two-character "DES salt". No password can ever match them, so
        # they must be refused like the other bad lines, not loaded.
        good = self.good_line()
        for name, bad in (("clear-text password", "bob:secret"),
                          ("truncated $6$ hash", "bob:$6$saltsalt"),
                          ("two characters", "bob:ab")):
            with self.subTest(name):
                rc, err = self.run_with([good, bad])
                self.assertNotIn("listening on", err,
                                 "%s (%r) was loaded: smtpd serves" % (name, bad))
                self.assertEqual(rc, EX_CONFIG, "%s: %s" % (name, err))
                self.assertIn("line 2", err, name)

    def test_unreadable_or_empty_file(self):
        d = self.tmpdir()
        empty = os.path.join(d, "empty")
        with open(empty, "w") as f:
            f.write("# nobody yet\n")
        os.chmod(empty, 0o600)
        for path in (empty, os.path.join(d, "missing")):
            r = run_smtpd(["-n", "-c", "DebuggingServer", "--auth-file", path]
                          + self.tls_options() + ["127.0.0.1:0"])
            err = r.stderr.decode("utf-8", "replace")
            self.assertNotEqual(r.returncode, 0, err)
            self.assertIn(path, err)
            self.assertNotIn("listening on", err)

    def test_sighup_reload(self):
        path = write_accounts(os.path.join(self.tmpdir(), "accounts"), {USER: ("sha512", PW)})
        srv = self.start_auth("--auth-file", path)
        c = self.tls_session(srv, implicit=True)
        self.assertEqual(self.auth_plain(c), OK)
        new_pw = "the-new-password"
        write_accounts(path, {USER: ("yescrypt", new_pw), USER2: ("sha512", PW2)})
        srv.signal(signal.SIGHUP)
        srv.wait_stderr(rb"SIGHUP: --auth-file %s reloaded\n" % re.escape(path.encode()))
        # A session authenticated before keeps its identity.
        self.assertEqual(c.command("MAIL FROM:<%s>" % SENDER)[0], 250)
        # New sessions: the new password and the new user work, the old
        # password fails.
        c = self.tls_session(srv, implicit=True)
        self.assertEqual(self.auth_plain(c, USER, new_pw), OK)
        c = self.tls_session(srv, implicit=True)
        self.assertEqual(self.auth_plain(c, USER2, PW2), OK)
        c = self.tls_session(srv, implicit=True)
        self.assertEqual(self.auth_plain(c, USER, PW), FAILED)
        # A broken file at the next SIGHUP: the accounts in use are kept.
        with open(path, "w") as f:
            f.write("this is not an accounts file\n")
        srv.signal(signal.SIGHUP)
        srv.wait_stderr(rb"SIGHUP: keeping the accounts in use: [^\n]*line 1")
        self.assertTrue(srv.alive())
        c = self.tls_session(srv, implicit=True)
        self.assertEqual(self.auth_plain(c, USER, new_pw), OK)


if __name__ == "__main__":
    main()
