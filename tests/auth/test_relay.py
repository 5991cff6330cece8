"""auth_relay: AUTH lets a client outside --relay-networks relay through
PureProxy, to an aiosmtpd recording upstream (smtpdtest.Recorder).

The relay runs with --tls-cert/--tls-key (STARTTLS and --smtps), an
--auth-file, and --relay-networks 192.0.2.0/24, so that the test's own
127.0.0.1 is outside: without AUTH every RCPT gets 554 5.7.1 and the
upstream sees nothing, not even a connection (after STARTTLS alone, or a
failed AUTH, too). Authenticated over STARTTLS or implicit TLS, the message
is relayed whole and the Received field the relay prepends says "with
ESMTPSA" (RFC 3848) and names the TLS protocol; with --auth-insecure on a
plaintext session it says "with ESMTPA". The relayed message never holds
the password, its base64 or the PLAIN response, nor (by design) the user
name in the Received field; a client inside the networks over TLS without
AUTH gets "with ESMTPS" for contrast.

--auth-accept-any is for the classes that deliver nowhere: with PureProxy
or MailmanProxy it is a usage error (exit 64).
"""

import os
import re
import time

from authlib import (AuthCase, EX_USAGE, b64, main, plain_b64, run_smtpd, write_accounts)
from smtpdtest import Recorder

USER, PW = "relayuser@example.org", "relay-Passw0rd-42"
SENDER = "relayuser@example.org"
RCPT = "someone@example.net"
OK = (235, ["2.7.0 Authentication successful"])


def received_field(data):
    """(the first header field, unfolded, as str; the rest) of data that
    must start with the relay's Received field."""
    if not data.startswith(b"Received:"):
        raise AssertionError("the relayed data does not start with Received: %r" % data[:200])
    lines = data.split(b"\r\n")
    n = 1
    while n < len(lines) and lines[n][:1] in (b" ", b"\t"):
        n += 1
    field = b" ".join(l.strip() for l in lines[:n]).decode("utf-8", "replace")
    return field, b"\r\n".join(lines[n:])


class RelayAuthTest(AuthCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.auth_file = write_accounts(os.path.join(cls.certs.dir, "accounts"),
                                       {USER: ("yescrypt", PW)})

    def setUp(self):
        self.rec = Recorder()
        self.addCleanup(self.rec.cleanup)

    def relay(self, *options, networks="192.0.2.0/24"):
        return self.start_auth("--auth-file", self.auth_file, "--relay-networks", networks,
                               "--hostname", "relay.test", "--relay-tls", "none", *options,
                               cls="PureProxy", extra=["127.0.0.1:%d" % self.rec.port])

    def message(self, subject):
        return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n"
                "relayed after AUTH\r\n" % (SENDER, RCPT, subject, subject.replace(" ", "-")))

    def denied(self, c):
        """MAIL is accepted, every RCPT gets 554 5.7.1, DATA is refused."""
        self.assertEqual(c.command("MAIL FROM:<%s>" % SENDER)[0], 250)
        for rcpt in (RCPT, "postmaster@example.net"):
            code, text = c.command("RCPT TO:<%s>" % rcpt)
            self.assertEqual(code, 554, text)
            self.assertTrue(text[0].startswith("5.7.1 "), text)
        self.assertNotEqual(c.command("DATA")[0], 354)
        self.assertEqual(c.command("RSET")[0], 250)

    def assertNothingUpstream(self, srv):
        time.sleep(0.3)  # what a relay would do upstream is done by now
        self.assertEqual(self.rec.messages(), [])
        self.assertEqual(self.rec.connections(), [],
                         "a client that may not relay made the relay connect upstream")

    def send(self, c, subject):
        msg = self.message(subject)
        self.assertEqual(c.command("MAIL FROM:<%s>" % SENDER)[0], 250)
        self.assertEqual(c.command("RCPT TO:<%s>" % RCPT)[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        code, text = c.command(msg + ".")
        self.assertEqual(code, 250, text)
        self.assertEqual(c.command("QUIT")[0], 221)
        msgs = self.rec.wait_messages(1)
        self.assertEqual(len(msgs), 1, "the upstream got %d messages" % len(msgs))
        m = msgs[0]
        self.assertEqual(m["mail_from"], SENDER)
        self.assertEqual(m["rcpt_tos"], [RCPT])
        field, rest = received_field(m["data"])
        self.assertIn(b"Subject: %s\r\n" % subject.encode(), rest)
        self.assertTrue(rest.endswith(b"\r\n\r\nrelayed after AUTH\r\n"), rest)
        return field, m["data"]

    def assertNoSecrets(self, srv, field, data):
        for secret in (PW, b64(PW), plain_b64(USER, PW), b64("\0%s\0%s" % (USER, PW))):
            self.assertNotIn(secret.encode(), data, "relayed data holds %r" % secret)
            self.assertNotIn(secret.encode(), srv.stderr(), "the log holds %r" % secret)
        # Who authenticated is the submitter's business, not the trace's.
        self.assertNotIn(USER, field)

    # ---- refused ----

    def test_without_auth_denied(self):
        srv = self.relay()
        for implicit in (False, True):
            self.denied(self.tls_session(srv, implicit=implicit))
        self.denied(self.plain_session(srv))
        self.assertNothingUpstream(srv)

    def test_failed_auth_denied(self):
        srv = self.relay()
        c = self.tls_session(srv)
        code, text = c.command("AUTH PLAIN " + plain_b64(USER, "not-" + PW))
        self.assertEqual(code, 535, text)
        self.denied(c)
        self.assertNothingUpstream(srv)

    def test_auth_refused_in_plaintext(self):
        # Without --auth-insecure a plaintext client cannot authenticate,
        # so it cannot relay either.
        srv = self.relay()
        c = self.plain_session(srv)
        self.assertEqual(c.command("AUTH PLAIN " + plain_b64(USER, PW))[0], 538)
        self.denied(c)
        self.assertNothingUpstream(srv)

    # ---- relayed ----

    def test_starttls_plain_relays_esmtpsa(self):
        srv = self.relay()
        c = self.tls_session(srv)
        self.assertEqual(c.command("AUTH PLAIN " + plain_b64(USER, PW)), OK)
        field, data = self.send(c, "starttls plain")
        self.assertRegex(field, r"^Received: from client\.example\.com \(\S*\s*\[127\.0\.0\.1\]\) "
                                r"by relay\.test \(smtpd [^)]*\) with ESMTPSA id ")
        self.assertRegex(field, r"\(using TLSv1\.3 with cipher TLS_\w+ \(\d+ bits\)\)")
        self.assertIn("for <%s>" % RCPT, field)
        self.assertNoSecrets(srv, field, data)
        srv.wait_stderr(rb"AUTH PLAIN from 127\.0\.0\.1: authenticated as \"%s\"\n"
                        % re.escape(USER.encode()))

    def test_smtps_login_relays_esmtpsa(self):
        srv = self.relay()
        c = self.tls_session(srv, implicit=True)
        self.assertEqual(c.command("AUTH LOGIN")[0], 334)
        self.assertEqual(c.command(b64(USER))[0], 334)
        self.assertEqual(c.command(b64(PW)), OK)
        field, data = self.send(c, "smtps login")
        self.assertRegex(field, r" with ESMTPSA id ")
        self.assertRegex(field, r"\(using TLSv1\.3 with cipher ")
        self.assertNoSecrets(srv, field, data)

    def test_auth_insecure_relays_esmtpa(self):
        srv = self.relay("--auth-insecure")
        c = self.plain_session(srv)
        self.assertEqual(c.command("AUTH PLAIN")[0], 334)
        self.assertEqual(c.command(plain_b64(USER, PW)), OK)
        field, data = self.send(c, "plaintext auth")
        self.assertRegex(field, r" with ESMTPA id ")
        self.assertNotIn("using TLS", field)
        self.assertNoSecrets(srv, field, data)

    def test_inside_networks_tls_without_auth_esmtps(self):
        # For contrast: a client inside --relay-networks needs no AUTH, and
        # its trace says ESMTPS, no A.
        srv = self.relay(networks="127.0.0.0/8")
        c = self.tls_session(srv)
        field, data = self.send(c, "inside networks")
        self.assertRegex(field, r" with ESMTPS id ")

    def test_auth_required_on_relay(self):
        srv = self.relay("--auth-required", networks="127.0.0.0/8")
        c = self.tls_session(srv)
        self.assertEqual(c.command("MAIL FROM:<%s>" % SENDER),
                         (530, ["5.7.0 Authentication required"]))
        self.assertEqual(c.command("AUTH PLAIN " + plain_b64(USER, PW)), OK)
        field, data = self.send(c, "required")
        self.assertRegex(field, r" with ESMTPSA id ")

    # ---- usage ----

    def test_accept_any_with_relaying_classes(self):
        for cls, extra in (("PureProxy", ["127.0.0.1:%d" % self.rec.port]),
                           ("MailmanProxy", ["127.0.0.1:%d" % self.rec.port])):
            with self.subTest(cls):
                r = run_smtpd(["-n", "-c", cls, "--auth-accept-any", *self.tls_options(),
                               "127.0.0.1:0", *extra], timeout=10)
                err = r.stderr.decode("utf-8", "replace")
                self.assertEqual(r.returncode, EX_USAGE, err)
                self.assertIn("--auth-accept-any", err)
                self.assertNotIn("listening on", err)


if __name__ == "__main__":
    main()
