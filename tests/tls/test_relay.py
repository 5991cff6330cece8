"""TLS to the smarthost: PureProxy against aiosmtpd upstreams (tls_relay).

    /usr/bin/python3 -B test_relay.py --smtpd PATH/smtpd

Each test starts an aiosmtpd upstream in a child process (the script
UPSTREAM below, written to the certificates' temporary directory) in one of
four modes -- plain (no STARTTLS), starttls (offered), require (offered and
required before MAIL) or smtps (implicit TLS) -- and smtpd -c PureProxy in
front of it, with its own --tls-cert/--tls-key for the client's STARTTLS.
The upstream records every EHLO, MAIL and message as a JSON line, each with
whether the session was under TLS (and its protocol, cipher and SNI name).

What is checked:
  --relay-tls verify with --relay-ca: the message arrives byte for byte over
      TLS, SNI names the smarthost, the log says "certificate verified";
      the smarthost given as 127.0.0.1 (the certificate has that IP) passes
  verify with the wrong CA, or a certificate for another name: 451 4.7.5 at
      MAIL, the log says why, nothing reaches the upstream
  encrypt or verify to an upstream without STARTTLS: 451 4.7.5, no MAIL in
      plaintext; encrypt does not look at the certificate
  may (and the default) to that upstream: plaintext; to an upstream that
      offers STARTTLS: TLS, "certificate not verified"; to one whose TLS
      fails (it speaks only TLS 1.1): again at once in plaintext, delivered
  none to an upstream offering STARTTLS: delivered without STARTTLS
  --relay-smtps with verify and with may: delivered over implicit TLS; with
      the wrong CA, or to a plaintext upstream: 451 4.4.1, and the log line
      has the reason (the verify error, OpenSSL's "wrong version number")
  two messages in a row: one pooled upstream connection, TLS both times
  the Received field: "with ESMTPS" and "(using PROTOCOL with cipher C (N
      bits))" -- the client's own protocol and cipher -- when the client
      used STARTTLS to smtpd; "with ESMTP" without "using" when it did not
"""

import os
import re
import smtplib
import ssl
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
import smtpdtest  # noqa: E402
from smtpdtest import SLOW, Collector, stop_process, wait_until  # noqa: E402

import tlslib  # noqa: E402

# The upstream: aiosmtpd (Debian python3-aiosmtpd) under the system Python.
UPSTREAM = r'''
import argparse, base64, json, os, signal, ssl, threading
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--mode", choices=("plain", "starttls", "require", "smtps", "brokentls"),
                required=True)
ap.add_argument("--cert")
ap.add_argument("--key")
args = ap.parse_args()
fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
lock = threading.Lock()


def record(server, event, **kw):
    """One JSON line: the event, the peer, and the TLS of the session."""
    tls = server.transport.get_extra_info("ssl_object")
    kw.update(event=event, peer=list(server.session.peer[:2]), tls=tls is not None)
    if tls is not None:
        kw.update(protocol=tls.version(), cipher=tls.cipher()[0], bits=tls.cipher()[2],
                  sni=getattr(tls, "sni", None))
    with lock:
        os.write(fd, (json.dumps(kw) + "\n").encode())


class Recording(SMTP):
    greeted = False

    async def smtp_EHLO(self, arg):
        if not self.greeted:  # the controller's start-up probe never greets
            self.greeted = True
            record(self, "connect")
        record(self, "ehlo")
        await super().smtp_EHLO(arg)

    async def smtp_MAIL(self, arg):
        record(self, "mail", arg=arg)
        await super().smtp_MAIL(arg)


class Handler:
    async def handle_DATA(self, server, session, envelope):
        record(server, "message", mail_from=envelope.mail_from, rcpt_tos=envelope.rcpt_tos,
               data=base64.b64encode(envelope.original_content).decode())
        return "250 2.0.0 OK: queued"


class Upstream(Controller):
    def factory(self):
        return Recording(self.handler, **self.SMTP_kwargs)


def remember_sni(sslobj, name, ctx):
    sslobj.sni = name


kw = {}
if args.mode != "plain":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.sni_callback = remember_sni
    if args.mode == "brokentls":
        # STARTTLS offered, but only with TLS 1.1, which smtpd refuses: every
        # handshake fails; plaintext mail is still taken.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    if args.mode == "smtps":
        kw = {"ssl_context": ctx}
    else:
        kw = {"tls_context": ctx, "require_starttls": args.mode == "require"}
ctl = Upstream(Handler(), hostname="127.0.0.1", port=args.port, decode_data=False,
               ready_timeout=10, **kw)
ctl.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
print("READY", flush=True)
stop.wait()
ctl.stop()
'''

BODY = (b"Line one.\r\n"
        b".a line that starts with a dot\r\n"
        b"\r\n"
        b"The end.\r\n")


def message(subject):
    return (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: " + subject +
            b"\r\n\r\n" + BODY)


# The trace field, unfolded: its protocol, and the TLS comment if any.
RECEIVED = re.compile(
    rb"^Received: from \S+ \([^()]*\[127\.0\.0\.1\]\) by relay\.test \(smtpd [^()]*\) "
    rb"with (?P<with>ESMTPS|ESMTP) id [0-9A-Za-z]+"
    rb"(?: \(using (?P<protocol>\S+) with cipher (?P<cipher>\S+) \((?P<bits>\d+) bits\)\))?"
    rb"(?: for <[^>]*>)?; .+$")


class Upstream:
    """The UPSTREAM script on a free 127.0.0.1 port in one of its modes,
    with cert/key for the TLS ones; events() reads its journal."""

    def __init__(self, script, mode, cert=None, key=None, start_timeout=15):
        smtpdtest.need(smtpdtest.SYSTEM_PYTHON, "python3-aiosmtpd")
        last = None
        for _ in range(5):
            self.port = smtpdtest.free_port()
            # A new file each time: a port comes free again, and an earlier
            # upstream's journal must never be read as this one's.
            fd, self.journal = tempfile.mkstemp(prefix="journal-%d-" % self.port,
                                                suffix=".jsonl", dir=os.path.dirname(script))
            os.close(fd)
            self.argv = [smtpdtest.SYSTEM_PYTHON, "-B", script, "--port", str(self.port),
                         "--out", self.journal, "--mode", mode]
            if cert:
                self.argv += ["--cert", cert, "--key", key]
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.out = Collector(self.proc.stdout)
            self.err = Collector(self.proc.stderr)
            if self.out.wait_for(lambda b: b"READY\n" in b, start_timeout):
                return
            last = self.err.data().decode("utf-8", "replace")
            stop_process(self.proc)
        raise AssertionError("aiosmtpd upstream did not start: %r\n%s" % (self.argv, last))

    def events(self):
        return smtpdtest.read_journal(self.journal)

    def of(self, event):
        return [e for e in self.events() if e["event"] == event]

    def close(self):
        stop_process(self.proc)


class Relay(smtpdtest.Smtpd):
    """smtpd -n -c PureProxy --hostname relay.test [--tls-cert/--tls-key]
    OPTIONS 127.0.0.1:0 HOST:UPSTREAM_PORT"""

    TERM_WAIT = 2
    START_TIMEOUT = 10 * SLOW

    def __init__(self, certs, upstream_port, *options, host="localhost"):
        super().__init__("--hostname", "relay.test", "--relay-timeout", str(int(30 * SLOW)),
                         "--tls-cert", certs.cert, "--tls-key", certs.key, *options,
                         cls="PureProxy", extra=["%s:%d" % (host, upstream_port)],
                         stdout=subprocess.DEVNULL)
        self.upstream = "%s:%d" % (host, upstream_port)


def unfold_received(data):
    """The first field of data, unfolded; it must be Received."""
    m = re.match(rb"Received:.*?\r\n(?![ \t])", data, re.S)
    if not m:
        raise AssertionError("the data does not start with a Received field: %r" % data[:300])
    return re.sub(rb"\r\n[ \t]+", b" ", m.group(0)[:-2])


class RelayTLS(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.certs = tlslib.Certs()
        # A certificate from the right CA, but for another name (and 127.0.0.1).
        cls.other_name = cls.certs.new_pair("other-name", cn="mail.example")
        cls.script = cls.certs.path("upstream.py")
        with open(cls.script, "w") as f:
            f.write(UPSTREAM)

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    # ---- servers and the client ----

    def upstream(self, mode, pair=None):
        cert, key = pair or (self.certs.cert, self.certs.key)
        up = Upstream(self.script, mode, cert, key)
        self.addCleanup(up.close)
        return up

    def relay(self, up, *options, host="localhost"):
        r = Relay(self.certs, up.port, *options, host=host)
        self.addCleanup(r.close)
        return r

    def client(self, relay, starttls=True):
        """smtplib to the relay, after EHLO (and STARTTLS, verified, and
        EHLO again)."""
        s = smtplib.SMTP("127.0.0.1", relay.port, local_hostname="client.example",
                         timeout=30 * SLOW)
        self.addCleanup(s.close)
        s.ehlo()
        if starttls:
            code, _ = s.starttls(context=ssl.create_default_context(cafile=self.certs.ca))
            self.assertEqual(code, 220)
            s.ehlo()
        return s

    def deliver(self, relay, up, starttls=True, subject=b"tls relay"):
        """One message from a new client, which then says QUIT. Returns the
        upstream's message event (checked against what was sent) and the
        client's (protocol, cipher, bits) to smtpd, None without STARTTLS."""
        before = len(up.of("message"))
        s = self.client(relay, starttls)
        msg = message(subject)
        try:
            self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], msg), {})
        except smtplib.SMTPException as e:
            raise AssertionError("not delivered: %r\nsmtpd's log:\n%s"
                                 % (e, relay.stderr_text()))
        tls = (s.sock.version(), s.sock.cipher()[0], s.sock.cipher()[2]) if starttls else None
        s.quit()
        msgs = wait_until(lambda: len(up.of("message")) > before and up.of("message"),
                          10 * SLOW, 0.02)
        self.assertIsNotNone(msgs, "the upstream got no message; smtpd's log:\n%s"
                             % relay.stderr_text())
        self.assertEqual(len(msgs), before + 1, msgs)
        self.assertMessage(msgs[-1], msg)
        return msgs[-1], tls

    def refused_at_mail(self, relay, up, code, enhanced, why):
        """MAIL gets code with the enhanced status (a second try too), the
        log says why, and the upstream never saw a MAIL."""
        s = self.client(relay)
        for _ in range(2):
            got, text = s.mail("a@example.com")
            self.assertEqual((got, text.split()[0]), (code, enhanced.encode()),
                             "%r\nsmtpd's log:\n%s" % (text, relay.stderr_text()))
        line = relay.wait_stderr(re.escape(b"upstream %s: " % relay.upstream.encode()) +
                                 rb"[^\n]*TLS [^\n]*\n", 10 * SLOW)
        self.assertRegex(line.group(0), why)
        self.assertEqual(up.of("mail"), [])
        self.assertEqual(up.of("message"), [])

    # ---- assertions ----

    def assertMessage(self, m, sent):
        """The envelope, the headers and the body byte for byte: the relay
        adds a Received field and an X-Peer line, nothing else."""
        self.assertEqual((m["mail_from"], m["rcpt_tos"]), ("a@example.com", ["b@example.com"]))
        head, _, body = m["data"].partition(b"\r\n\r\n")
        self.assertEqual(body, BODY)
        sent_head = sent.partition(b"\r\n\r\n")[0]
        self.assertTrue(head.startswith(b"Received: "), head)
        self.assertTrue(head.endswith(sent_head + b"\r\nX-Peer: 127.0.0.1"), head)

    def assertUpstreamTLS(self, up, relay, verified):
        """Every MAIL and message upstream under TLS, with the protocol
        and cipher the relay's log line names."""
        msgs, mails = up.of("message"), up.of("mail")
        self.assertTrue(msgs)
        self.assertTrue(all(e["tls"] for e in msgs + mails), msgs + mails)
        m = msgs[0]
        line = relay.wait_stderr(re.escape(b"upstream %s: TLS " % relay.upstream.encode()) +
                                 rb"(\S+) with cipher (\S+) \((\d+) bits\), certificate " +
                                 (b"verified" if verified else b"not verified") + b"\n",
                                 10 * SLOW)
        self.assertEqual(line.groups(), (m["protocol"].encode(), m["cipher"].encode(),
                                         str(m["bits"]).encode()))
        self.assertIn(m["protocol"], ("TLSv1.2", "TLSv1.3"))

    def assertPlaintext(self, up, relay):
        """No TLS anywhere upstream, and no TLS line in the relay's log."""
        events = up.of("ehlo") + up.of("mail") + up.of("message")
        self.assertTrue(up.of("message"))
        self.assertEqual([e for e in events if e["tls"]], [])
        self.assertNotIn(b"upstream %s: TLS " % relay.upstream.encode(), relay.stderr())

    def assertReceived(self, data, tls):
        """The Received field: ESMTPS with the client's protocol and cipher
        (tls: (protocol, cipher, bits)), or ESMTP without a TLS comment."""
        field = unfold_received(data)
        m = RECEIVED.match(field)
        self.assertIsNotNone(m, field)
        if tls is None:
            self.assertEqual(m.group("with"), b"ESMTP")
            self.assertNotIn(b"using", field)
        else:
            self.assertEqual(m.group("with", "protocol", "cipher", "bits"),
                             (b"ESMTPS",) + tuple(str(x).encode() for x in tls))

    # ---- (1) verify ----

    def test_verify_delivers_over_verified_tls(self):
        up = self.upstream("require")
        relay = self.relay(up, "--relay-tls", "verify", "--relay-ca", self.certs.ca)
        m, tls = self.deliver(relay, up)
        self.assertReceived(m["data"], tls)
        self.assertUpstreamTLS(up, relay, verified=True)
        self.assertEqual(m["sni"], "localhost")
        # Before STARTTLS only the EHLO went in plaintext.
        self.assertEqual([e["tls"] for e in up.of("ehlo")], [False, True])

    def test_verify_upstream_given_as_ip(self):
        # The certificate names 127.0.0.1 too (an IP SAN): verified. No SNI
        # for an address (RFC 6066 3).
        up = self.upstream("require")
        relay = self.relay(up, "--relay-tls", "verify", "--relay-ca", self.certs.ca,
                           host="127.0.0.1")
        m, _ = self.deliver(relay, up)
        self.assertUpstreamTLS(up, relay, verified=True)
        self.assertIsNone(m["sni"])

    # ---- (2) verification fails ----

    def test_verify_wrong_ca(self):
        up = self.upstream("require")
        relay = self.relay(up, "--relay-tls", "verify", "--relay-ca", self.certs.other_ca)
        self.refused_at_mail(relay, up, 451, "4.7.5",
                             rb"TLS handshake failed: certificate verification failed: "
                             rb"unable to get local issuer certificate")

    def test_verify_certificate_for_another_name(self):
        up = self.upstream("require", self.other_name)
        relay = self.relay(up, "--relay-tls", "verify", "--relay-ca", self.certs.ca)
        self.refused_at_mail(relay, up, 451, "4.7.5",
                             rb"TLS handshake failed: certificate verification failed: "
                             rb"[^\n]*[Hh]ostname mismatch")

    # ---- (3) TLS required, not offered ----

    def test_required_tls_not_offered(self):
        for policy in ("encrypt", "verify"):
            with self.subTest(policy=policy):
                up = self.upstream("plain")
                options = ["--relay-tls", policy]
                if policy == "verify":
                    options += ["--relay-ca", self.certs.ca]
                relay = self.relay(up, *options)
                self.refused_at_mail(
                    relay, up, 451, "4.7.5",
                    rb"TLS required, but the upstream does not offer STARTTLS")
                self.assertTrue(up.of("ehlo"), "the relay never greeted the upstream")

    def test_encrypt_does_not_verify(self):
        # encrypt wants TLS, but any certificate will do.
        up = self.upstream("require", self.other_name)
        relay = self.relay(up, "--relay-tls", "encrypt")
        self.deliver(relay, up)
        self.assertUpstreamTLS(up, relay, verified=False)

    # ---- (4) may, (5) none ----

    def test_may_and_default_to_plaintext_upstream(self):
        for options in (["--relay-tls", "may"], []):
            with self.subTest(options=options):
                up = self.upstream("plain")
                relay = self.relay(up, *options)
                self.deliver(relay, up)
                self.assertPlaintext(up, relay)

    def test_may_and_default_use_starttls_when_offered(self):
        for options in (["--relay-tls", "may"], []):
            with self.subTest(options=options):
                up = self.upstream("starttls", self.other_name)
                relay = self.relay(up, *options)
                self.deliver(relay, up)
                self.assertUpstreamTLS(up, relay, verified=False)

    def test_may_goes_on_in_plaintext_when_tls_fails(self):
        """Under may, a STARTTLS whose handshake fails is retried at once on
        a new connection without TLS (plaintext is allowed); under encrypt
        the same upstream gets 451 4.7.5 and no MAIL."""
        up = self.upstream("brokentls")
        relay = self.relay(up, "--relay-tls", "may")
        self.deliver(relay, up)
        self.assertEqual([e["tls"] for e in up.of("mail")], [False])
        self.assertRegex(relay.stderr_text(), r"TLS handshake failed: [a-z]")
        self.assertIn("again without TLS (--relay-tls may)", relay.stderr_text())
        up2 = self.upstream("brokentls")
        relay2 = self.relay(up2, "--relay-tls", "encrypt")
        self.refused_at_mail(relay2, up2, 451, "4.7.5", rb"TLS handshake failed: [a-z]")

    def test_none_ignores_starttls(self):
        up = self.upstream("starttls")
        relay = self.relay(up, "--relay-tls", "none")
        self.deliver(relay, up)
        self.assertPlaintext(up, relay)

    # ---- (6) implicit TLS ----

    def test_smtps(self):
        for options, verified in ((["--relay-tls", "verify", "--relay-ca", self.certs.ca], True),
                                  (["--relay-tls", "may"], False),
                                  ([], False)):
            with self.subTest(options=options):
                up = self.upstream("smtps")
                relay = self.relay(up, "--relay-smtps", *options)
                m, _ = self.deliver(relay, up)
                self.assertUpstreamTLS(up, relay, verified=verified)
                # TLS from the first byte: even the first EHLO.
                self.assertEqual([e["tls"] for e in up.of("ehlo")], [True])
                if verified:
                    self.assertEqual(m["sni"], "localhost")

    def test_smtps_wrong_ca(self):
        up = self.upstream("smtps")
        relay = self.relay(up, "--relay-smtps", "--relay-tls", "verify",
                           "--relay-ca", self.certs.other_ca)
        self.refused_at_mail(relay, up, 451, "4.4.1",
                             rb"TLS handshake failed: certificate verification failed: "
                             rb"unable to get local issuer certificate")

    def test_smtps_to_plaintext_upstream(self):
        # The upstream's "220" greeting is no TLS record: OpenSSL's reason
        # ("wrong version number") must be in the log line.
        up = self.upstream("plain")
        relay = self.relay(up, "--relay-smtps")
        self.refused_at_mail(relay, up, 451, "4.4.1",
                             rb"TLS handshake failed: [^\n]*wrong version number")

    # ---- (7) the pool ----

    def test_pooled_connection_keeps_tls(self):
        up = self.upstream("require")
        relay = self.relay(up, "--relay-tls", "verify", "--relay-ca", self.certs.ca,
                           "--relay-idle-timeout", str(int(30 * SLOW)))
        first, _ = self.deliver(relay, up, subject=b"first")
        second, _ = self.deliver(relay, up, subject=b"second")
        self.assertEqual(len(up.of("connect")), 1, up.events())
        self.assertEqual(first["peer"], second["peer"])
        self.assertTrue(first["tls"] and second["tls"])
        self.assertUpstreamTLS(up, relay, verified=True)
        # One handshake for both.
        self.assertEqual(relay.stderr().count(b"upstream %s: TLS " % relay.upstream.encode()),
                         1, relay.stderr_text())

    # ---- (8) the client's side in the Received field ----

    def test_plaintext_client_received_esmtp(self):
        up = self.upstream("require")
        relay = self.relay(up, "--relay-tls", "verify", "--relay-ca", self.certs.ca)
        m, tls = self.deliver(relay, up, starttls=False)
        self.assertIsNone(tls)
        self.assertReceived(m["data"], tls)
        self.assertUpstreamTLS(up, relay, verified=True)


if __name__ == "__main__":
    smtpdtest.main()
