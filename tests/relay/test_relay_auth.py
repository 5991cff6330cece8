"""SMTP AUTH to the smarthost (RFC 4954): PureProxy with --relay-auth-file
against aiosmtpd upstreams that require STARTTLS and AUTH (relay_auth).

    /usr/bin/python3 -B test_relay_auth.py --smtpd PATH/smtpd

Each test starts an aiosmtpd upstream (the script UPSTREAM below) with
certificates made by tlslib, in one of three modes -- tls (STARTTLS
required, then AUTH PLAIN or LOGIN required, over TLS only), tls-login (the
same without PLAIN) or plain (no STARTTLS, AUTH offered in plaintext) --
and smtpd -d -c PureProxy in front of it. The upstream journals every
connection, AUTH command, successful authentication (mechanism and user)
and message as JSON lines, in a file of its own (tempfile.mkstemp).

What is checked:
  --relay-tls verify --relay-ca CA --relay-auth-file FILE: the message is
      delivered, the upstream saw AUTH PLAIN over TLS with the right user;
      the client got 250
  an upstream offering only LOGIN: AUTH LOGIN, delivered
  a wrong password: 451 4.7.0 at MAIL, nothing delivered, an error line
      in the log with the upstream's 535
  under --relay-tls may, an upstream without STARTTLS that offers AUTH in
      plaintext: 451 4.7.0, the upstream never saw an AUTH command
  two messages in a row over the pooled connection: one AUTH
  the file: 0644 (group/others may read it), unreadable, a malformed line,
      no entry for the smarthost: exit 78 at start-up, the message names
      the file (and the line), never the password; an entry with the port
      wins over one without; --relay-auth-file for DebuggingServer: 64
  smtpd runs with -d everywhere: its log shows AUTH lines as placeholders,
      and neither the password nor the base64 of "\\0user\\0password", of
      the user or of the password appears in it
"""

import base64
import os
import smtplib
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
sys.path.insert(0, os.path.join(HERE, "..", "tls"))
import smtpdtest  # noqa: E402
from smtpdtest import SLOW, wait_until  # noqa: E402

import test_relay as tls_relay  # noqa: E402  (its Upstream and Relay)
import tlslib  # noqa: E402

USER = "relay@example.com"
PASSWORD = "s3cret pass:1"
WRONG = "not the password"

# The upstream: aiosmtpd (Debian python3-aiosmtpd) under the system Python.
UPSTREAM = r'''
import argparse, base64, json, os, signal, ssl, threading
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--mode", choices=("tls", "tls-login", "plain"), required=True)
ap.add_argument("--cert")
ap.add_argument("--key")
ap.add_argument("--user", default="USER")
ap.add_argument("--password", default="PASSWORD")
args = ap.parse_args()
fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
lock = threading.Lock()


def record(server, event, **kw):
    kw.update(event=event, peer=list(server.session.peer[:2]),
              tls=server.transport.get_extra_info("ssl_object") is not None)
    with lock:
        os.write(fd, (json.dumps(kw) + "\n").encode())


class Recording(SMTP):
    greeted = False

    async def smtp_EHLO(self, arg):
        if not self.greeted:  # the controller's start-up probe never greets
            self.greeted = True
            record(self, "connect")
        await super().smtp_EHLO(arg)

    async def smtp_AUTH(self, arg):
        record(self, "auth_command", mechanism=arg.split()[0].upper() if arg else "")
        await super().smtp_AUTH(arg)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == args.user.encode()
          and auth_data.password == args.password.encode())
    record(server, "auth", mechanism=mechanism, ok=ok,
           login=auth_data.login.decode("utf-8", "replace"))
    return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers 535 itself


class Handler:
    async def handle_DATA(self, server, session, envelope):
        record(server, "message", mail_from=envelope.mail_from, rcpt_tos=envelope.rcpt_tos,
               data=base64.b64encode(envelope.original_content).decode())
        return "250 2.0.0 OK: queued"


class Upstream(Controller):
    def factory(self):
        return Recording(self.handler, **self.SMTP_kwargs)


kw = dict(authenticator=authenticator, auth_required=True)
if args.mode == "plain":
    kw.update(auth_require_tls=False)   # AUTH offered in plaintext: smtpd must not take it
else:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    kw.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
    if args.mode == "tls-login":
        kw.update(auth_exclude_mechanism=["PLAIN"])
ctl = Upstream(Handler(), hostname="127.0.0.1", port=args.port, decode_data=False,
               ready_timeout=10, **kw)
ctl.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
print("READY", flush=True)
stop.wait()
ctl.stop()
'''.replace('"USER"', repr(USER)).replace('"PASSWORD"', repr(PASSWORD))


def secrets():
    """What must never be in smtpd's log: the password, and the base64 of
    PLAIN's message, of the user and of the password (LOGIN)."""
    b64 = lambda b: base64.b64encode(b)  # noqa: E731
    return [PASSWORD.encode(), b64(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()),
            b64(USER.encode()), b64(PASSWORD.encode())]


class RelayAuth(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.certs = tlslib.Certs()
        cls.script = cls.certs.path("auth-upstream.py")
        with open(cls.script, "w") as f:
            f.write(UPSTREAM)

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    # ---- servers, files and the client ----

    def upstream(self, mode):
        up = tls_relay.Upstream(self.script, mode, self.certs.cert, self.certs.key)
        self.addCleanup(up.close)
        return up

    def auth_file(self, text, mode=0o600):
        fd, path = tempfile.mkstemp(prefix="relay-auth-", dir=self.certs.dir)
        os.write(fd, text.encode())
        os.close(fd)
        os.chmod(path, mode)
        self.addCleanup(os.unlink, path)
        return path

    def relay(self, up, password=PASSWORD, tls=("--relay-tls", "verify"), *options):
        path = self.auth_file("# the smarthost\nlocalhost:%d %s:%s\n" % (up.port, USER, password))
        if tls[-1] == "verify":
            tls = tls + ("--relay-ca", self.certs.ca)
        r = tls_relay.Relay(self.certs, up.port, "-d", *tls, "--relay-auth-file", path,
                            *options)
        self.addCleanup(self.assertNoSecrets, r)  # after close: the whole log
        self.addCleanup(r.close)
        return r

    def client(self, relay):
        s = smtplib.SMTP("127.0.0.1", relay.port, local_hostname="client.example",
                         timeout=30 * SLOW)
        self.addCleanup(s.close)
        s.ehlo()
        return s

    def deliver(self, relay, up, subject=b"auth relay"):
        """One message from a new client; the upstream's message event."""
        before = len(up.of("message"))
        s = self.client(relay)
        msg = tls_relay.message(subject)
        try:
            self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], msg), {})
        except smtplib.SMTPException as e:
            raise AssertionError("not delivered: %r\nsmtpd's log:\n%s"
                                 % (e, relay.stderr_text()))
        s.quit()
        msgs = wait_until(lambda: len(up.of("message")) > before and up.of("message"),
                          10 * SLOW, 0.02)
        self.assertIsNotNone(msgs, "the upstream got no message; smtpd's log:\n%s"
                             % relay.stderr_text())
        self.assertEqual(len(msgs), before + 1, msgs)
        self.assertTrue(msgs[-1]["data"].endswith(tls_relay.BODY), msgs[-1])
        self.assertTrue(msgs[-1]["tls"])
        return msgs[-1]

    def refused_at_mail(self, relay, up, why):
        """MAIL gets 451 4.7.0 (twice), an error line says why, nothing is
        delivered."""
        s = self.client(relay)
        for _ in range(2):
            code, text = s.mail("a@example.com")
            self.assertEqual((code, text.split()[0]), (451, b"4.7.0"),
                             "%r\nsmtpd's log:\n%s" % (text, relay.stderr_text()))
        line = relay.wait_stderr(rb"error: upstream localhost:%d: [^\n]*\n" % up.port, 10 * SLOW)
        self.assertRegex(line.group(0), why)
        self.assertEqual(up.of("message"), [])

    def start_fails(self, path, *options, upstream="localhost:2525", cls="PureProxy"):
        """smtpd with --relay-auth-file path: its exit status and stderr."""
        argv = smtpdtest.smtpd_argv() + ["-n", "-c", cls, "--relay-auth-file", path, *options,
                                         "127.0.0.1:0", upstream]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=10 * SLOW)
        self.assertNotIn(b"listening on", p.stderr)
        for s in secrets():
            self.assertNotIn(s, p.stderr)
        return p.returncode, p.stderr.decode()

    # ---- assertions ----

    def assertNoSecrets(self, relay):
        log = relay.stderr()
        for s in secrets():
            self.assertNotIn(s, log, "a secret in smtpd's log:\n%s" % relay.stderr_text())

    def assertAuthenticated(self, up, mechanism):
        auths = up.of("auth")
        self.assertEqual([(a["mechanism"], a["login"], a["ok"], a["tls"]) for a in auths],
                         [(mechanism, USER, True, True)], up.events())

    # ---- the tests ----

    def test_plain_over_verified_tls(self):
        up = self.upstream("tls")
        relay = self.relay(up)
        self.deliver(relay, up)
        self.assertAuthenticated(up, "PLAIN")
        self.assertIn(b"> AUTH PLAIN [credentials not logged]", relay.stderr())
        self.assertRegex(relay.stderr_text(), r"upstream localhost:\d+: < 235 ")

    def test_login_when_plain_is_not_offered(self):
        up = self.upstream("tls-login")
        relay = self.relay(up)
        self.deliver(relay, up)
        self.assertAuthenticated(up, "LOGIN")
        log = relay.stderr()
        self.assertIn(b"> AUTH LOGIN\n", log)
        self.assertIn(b"> [AUTH LOGIN username not logged]", log)
        self.assertIn(b"> [AUTH LOGIN password not logged]", log)

    def test_wrong_password(self):
        up = self.upstream("tls")
        relay = self.relay(up, password=WRONG)
        self.refused_at_mail(relay, up, rb"AUTH refused: 535 ")
        self.assertTrue(up.of("auth"))
        self.assertFalse(any(a["ok"] for a in up.of("auth")))
        self.assertNotIn(WRONG.encode(), relay.stderr())

    def test_may_sends_no_credentials_in_plaintext(self):
        up = self.upstream("plain")
        relay = self.relay(up, PASSWORD, ("--relay-tls", "may"))
        self.refused_at_mail(relay, up, rb"no TLS, so no AUTH")
        self.assertTrue(up.of("connect"), "the relay never greeted the upstream")
        self.assertEqual(up.of("auth_command"), [])

    def test_pooled_connection_stays_authenticated(self):
        up = self.upstream("tls")
        relay = self.relay(up, PASSWORD, ("--relay-tls", "verify"),
                           "--relay-idle-timeout", str(int(30 * SLOW)))
        first = self.deliver(relay, up, subject=b"first")
        second = self.deliver(relay, up, subject=b"second")
        self.assertEqual(first["peer"], second["peer"])
        self.assertEqual(len(up.of("connect")), 1, up.events())
        self.assertEqual(len(up.of("auth_command")), 1, up.events())
        self.assertAuthenticated(up, "PLAIN")

    def test_file_readable_by_others_is_refused(self):
        for mode in (0o644, 0o640, 0o604):
            with self.subTest(mode=oct(mode)):
                path = self.auth_file("localhost:2525 %s:%s\n" % (USER, PASSWORD), mode)
                rc, err = self.start_fails(path)
                self.assertEqual(rc, 78, err)
                self.assertIn(path, err)
                self.assertIn("group or others may read it", err)

    def test_bad_files_are_refused(self):
        good = "localhost:2525 %s:%s\n" % (USER, PASSWORD)
        cases = [
            ("# x\n\nlocalhost:2525 :%s\n" % PASSWORD, "line 3: expected"),  # no username
            (good + "  localhost:2525\n", "line 2: expected"),               # no user:password
            (good + "localhost:99999 u:p\n", "line 2: expected"),            # bad port
            ("[localhost:2525 u:%s\n" % PASSWORD, "line 1: expected"),       # unclosed bracket
            ("other.example:2525 u:p\nlocalhost:2526 u:p\n", "has no entry for the smarthost"),
        ]
        for text, why in cases:
            with self.subTest(why=why):
                rc, err = self.start_fails(self.auth_file(text))
                self.assertEqual(rc, 78, err)
                self.assertIn(why, err)
        missing = os.path.join(self.certs.dir, "no-such-file")
        rc, err = self.start_fails(missing)
        self.assertEqual((rc, missing in err), (78, True), err)

    def test_option_is_for_the_relays_only(self):
        path = self.auth_file("localhost:2525 u:p\n")
        rc, err = self.start_fails(path, cls="DebuggingServer")
        self.assertEqual(rc, 64, err)
        self.assertIn("--relay-auth-file is for PureProxy and MailmanProxy", err)

    def test_entry_with_port_wins_and_brackets(self):
        """Of "[localhost]" (any port) and "localhost:PORT", the latter is
        used wherever it stands; "[localhost]" alone matches any port."""
        up = self.upstream("tls")
        path = self.auth_file("[localhost] %s:%s\nlocalhost:%d %s:%s\n"
                              % (USER, WRONG, up.port, USER, PASSWORD))
        relay = tls_relay.Relay(self.certs, up.port, "-d", "--relay-tls", "verify",
                                "--relay-ca", self.certs.ca, "--relay-auth-file", path)
        self.addCleanup(relay.close)
        self.deliver(relay, up)
        self.assertAuthenticated(up, "PLAIN")
        up2 = self.upstream("tls")
        path2 = self.auth_file("# any port\n[localhost] %s:%s\n" % (USER, PASSWORD))
        relay2 = tls_relay.Relay(self.certs, up2.port, "--relay-tls", "verify",
                                 "--relay-ca", self.certs.ca, "--relay-auth-file", path2)
        self.addCleanup(relay2.close)
        self.deliver(relay2, up2)
        self.assertAuthenticated(up2, "PLAIN")


if __name__ == "__main__":
    smtpdtest.main()
