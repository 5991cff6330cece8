"""MailmanProxy against a real Mailman 3 core (issue 4).

    /usr/bin/python3 -B test_mailman_proxy.py --smtpd PATH/smtpd [unittest args]

(or SMTPD_BIN in the environment). One private Mailman instance serves the
whole run (mailman_fixture.Mailman): domain example.org, lists
test@example.org and my-list@example.org, member member@example.com of
test@. Two recording SMTP servers (recorder.py): the proxy's smarthost, and
the sink for Mailman's own outgoing mail. Each test starts its own
`smtpd -c MailmanProxy` on 127.0.0.1:0 and talks SMTP to it with a raw
client, so every reply is seen.

What Mailman got is read from its smtp.log (the LMTP runner logs, at debug
level, "<message-id> to: ADDRESS, list: ..." for each recipient it took in
DATA), from its held-messages queue over REST, and from the mail it sends
out (the list post with List-Id, the -request results, the -owner copy).

The last test stops Mailman. Mailman missing is a failure, never a skip.
Logs of each proxy and Mailman's logs are kept in ./mailman-proxy-logs/.
"""

import email.utils
import os
import shutil
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailman_fixture as fx  # noqa: E402

MEMBER = "member@example.com"
OUTSIDER = "outsider@elsewhere.example"
LOGDIR = os.path.abspath("mailman-proxy-logs")
MAILMAN_WAIT = 60  # seconds for mail to come out of Mailman's queues

ENV = {}  # mailman, smarthost, mailman_out, workdir


def save_mailman_logs():
    mm = ENV.get("mailman")
    if not mm:
        return
    os.makedirs(LOGDIR, exist_ok=True)
    for name in ("smtp.log", "mailman.log", "error.log", "vette.log"):
        text = mm.log_text(name)
        if text:
            with open(os.path.join(LOGDIR, "mailman-" + name), "w") as f:
                f.write(text)


def setUpModule():
    fx.smtpd_bin()
    fx.need_mailman()
    shutil.rmtree(LOGDIR, ignore_errors=True)
    os.makedirs(LOGDIR)
    workdir = tempfile.mkdtemp(prefix="smtpd-mmtest-")
    unittest.addModuleCleanup(shutil.rmtree, workdir, True)
    ENV["workdir"] = workdir
    ENV["mailman_out"] = fx.Recorder(workdir, "mailman-out")
    unittest.addModuleCleanup(ENV["mailman_out"].stop)
    ENV["smarthost"] = fx.Recorder(workdir, "smarthost")
    unittest.addModuleCleanup(ENV["smarthost"].stop)
    mm = fx.Mailman(ENV["mailman_out"].port)
    ENV["mailman"] = mm
    # Cleanups run last-in first-out: save the logs, stop, then remove.
    unittest.addModuleCleanup(mm.remove)
    unittest.addModuleCleanup(mm.stop)
    unittest.addModuleCleanup(save_mailman_logs)
    mm.start()
    mm.rest_ok("POST", "/domains", {"mail_host": "example.org"})
    mm.rest_ok("POST", "/lists", {"fqdn_listname": "test@example.org"})
    mm.rest_ok("POST", "/lists", {"fqdn_listname": "my-list@example.org"})
    mm.rest_ok("POST", "/members", {"list_id": "test.example.org", "subscriber": MEMBER,
                                    "pre_verified": "true", "pre_confirmed": "true",
                                    "pre_approved": "true"})
    lists = sorted(e["fqdn_listname"] for e in mm.rest_ok("GET", "/lists")["entries"])
    assert lists == ["my-list@example.org", "test@example.org"], lists


def message(token, frm=MEMBER, to="test@example.org", subject=None, date=True, extra=""):
    """A small message whose Message-ID is <token@client.test>; no words
    that Mailman would take for a command (administrivia)."""
    lines = []
    if frm:
        lines.append("From: %s" % frm)
    lines.append("To: %s" % to)
    lines.append("Subject: %s" % (subject or "Proxy test %s" % token))
    lines.append("Message-ID: <%s@client.test>" % token)
    if date:
        lines.append("Date: %s" % email.utils.formatdate(localtime=True))
    if extra:
        lines.append(extra)
    lines.append("")
    lines.append("Greetings from the MailmanProxy test, token %s." % token)
    lines.append("Second line.")
    return ("\r\n".join(lines) + "\r\n").encode()


class Base(unittest.TestCase):
    maxDiff = None

    @property
    def mailman(self):
        return ENV["mailman"]

    @property
    def smarthost(self):
        return ENV["smarthost"]

    @property
    def mailman_out(self):
        return ENV["mailman_out"]

    def setUp(self):
        t0 = time.monotonic()
        self.addCleanup(lambda: fx.log("%s: %.1f s" % (self.id().split(".", 1)[1],
                                                       time.monotonic() - t0)))
        self.token = "t" + uuid.uuid4().hex[:16]
        self.msgid = "<%s@client.test>" % self.token
        self.proxies = []
        self.clients = []

    def start_proxy(self, *extra, lmtp_port=None):
        p = fx.Proxy(lmtp_port or self.mailman.lmtp_port, self.smarthost.port, *extra)
        self.proxies.append(p)
        self.addCleanup(self._stop_proxy, p)
        return p

    def _stop_proxy(self, p):
        p.stop()
        with open(os.path.join(LOGDIR, "%s.proxy%d.log" % (self.id().rsplit(".", 1)[-1],
                                                          self.proxies.index(p))), "w") as f:
            f.write(" ".join(p.argv) + "\n\n" + p.log() + "\n")

    def connect(self, proxy):
        c = fx.Client(proxy.port)
        self.clients.append(c)
        self.addCleanup(c.close)
        self.assertEqual(c.greeting[0], 220, self.ctx())
        code, _ = c.cmd("EHLO client.test")
        self.assertEqual(code, 250, self.ctx())
        return c

    def ctx(self):
        """Client transcripts and proxy logs, for failure messages."""
        parts = []
        for c in self.clients:
            parts.append("client transcript:\n  " + "\n  ".join(c.transcript))
        for p in self.proxies:
            parts.append("proxy log (%s):\n%s" % (" ".join(p.argv), p.log()[-6000:]))
        return "\n" + "\n".join(parts)

    # -- one transaction

    def transaction(self, client, sender, rcpts, data):
        """MAIL, one RCPT per (address, expected code class) in rcpts, then
        DATA when any was accepted. Returns the DATA reply (or None) and
        checks that the server sends nothing more after it."""
        code, text = client.cmd("MAIL FROM:<%s>" % sender)
        self.assertEqual(code, 250, "MAIL: %d %s%s" % (code, text, self.ctx()))
        accepted = 0
        for addr, want in rcpts:
            code, text = client.cmd("RCPT TO:<%s>" % addr)
            self.assertEqual(code, want, "RCPT TO:<%s>: expected %d, got %d %s%s" %
                             (addr, want, code, text, self.ctx()))
            if code < 300:
                accepted += 1
        if not accepted:
            return None
        reply = client.data(data)
        extra = client.unsolicited(1.0)
        self.assertEqual(extra, b"", "more than one reply after DATA: %r%s" % (extra, self.ctx()))
        return reply

    def assert_250(self, reply):
        self.assertIsNotNone(reply)
        self.assertEqual(reply[0], 250, "DATA reply %r%s" % (reply, self.ctx()))

    # -- what each side got

    def lmtp_got(self, expected):
        """Mailman's LMTP runner took exactly these recipients (lower-case,
        in order) for this test's message."""
        got = self.mailman.lmtp_deliveries(self.msgid)
        self.assertEqual(got, expected, "recipients Mailman took in LMTP DATA for %s%s" %
                         (self.msgid, self.ctx()))

    def smarthost_got(self, rcpts, sender=MEMBER):
        """The smarthost got exactly one message with this token, for
        exactly these envelope recipients; returns it."""
        msgs = self.smarthost.messages(self.token)
        if not rcpts:
            self.assertEqual(msgs, [], "the smarthost got mail it should not have%s" %
                             self.ctx())
            return None
        self.assertEqual(len(msgs), 1, "messages at the smarthost: %r%s" %
                         ([m["rcpt_tos"] for m in msgs], self.ctx()))
        m = msgs[0]
        self.assertEqual(m["rcpt_tos"], rcpts, self.ctx())
        self.assertEqual(m["mail_from"], sender, self.ctx())
        self.assertIn(b"Received: from client.test ([127.0.0.1])", m["data"])
        self.assertIn(b"X-Peer: 127.0.0.1\r\n", m["data"])
        self.assertIn(("token %s." % self.token).encode(), m["data"])
        return m

    def list_post_out(self, list_id="test.example.org", rcpt=MEMBER):
        """Wait for the list's copy of this message to come out of Mailman."""
        def is_post(e):
            return (e["msg"]["List-Id"] or "").strip() == "<%s>" % list_id and \
                rcpt in e["rcpt_tos"] and (e["msg"]["Message-ID"] or "").strip() == self.msgid
        got = self.mailman_out.wait_messages(self.token, 1, MAILMAN_WAIT, is_post)
        self.assertTrue(got, "no list copy of %s reached Mailman's outgoing sink in %d s; "
                        "there: %r%s" % (self.msgid, MAILMAN_WAIT,
                                         [(e["rcpt_tos"], e["msg"]["Subject"])
                                          for e in self.mailman_out.messages()][-10:],
                                         self.ctx()))
        return got[0]

    def held(self):
        """Wait until Mailman holds this message for moderation; return it."""
        def find():
            return [h for h in self.mailman.held("test.example.org")
                    if h.get("message_id") == self.msgid]
        got = fx.wait_until(find, MAILMAN_WAIT, 0.5)
        self.assertTrue(got, "%s is not in test@example.org's held messages after %d s%s" %
                        (self.msgid, MAILMAN_WAIT, self.ctx()))
        return got[0]


class T1MailmanUp(Base):
    """Mailman running; the proxy asks it about every recipient."""

    def test_list_post_from_member_is_distributed(self):
        p = self.start_proxy()
        c = self.connect(p)
        connects = self.smarthost.connects()
        reply = self.transaction(c, MEMBER, [("test@example.org", 250)], message(self.token))
        self.assert_250(reply)
        self.lmtp_got(["test@example.org"])
        out = self.list_post_out()
        self.assertTrue(out["msg"]["Subject"].startswith("[Test] "), out["msg"]["Subject"])
        self.assertEqual(out["mail_from"], "test-bounces@example.org")
        self.smarthost_got([])
        self.assertEqual(self.smarthost.connects(), connects,
                         "list-only mail opened a smarthost connection%s" % self.ctx())

    def test_list_post_from_nonmember_is_held(self):
        p = self.start_proxy()
        c = self.connect(p)
        reply = self.transaction(c, OUTSIDER, [("test@example.org", 250)],
                                 message(self.token, frm=OUTSIDER))
        self.assert_250(reply)
        self.lmtp_got(["test@example.org"])
        h = self.held()
        self.assertEqual(h["sender"], OUTSIDER)
        # From: and Date: were there: not added a second time.
        text = h["msg"]
        self.assertEqual(text.count("\nFrom: "), 1, text)
        self.assertEqual(text.count("\nDate: "), 1, text)
        self.smarthost_got([])

    def test_list_request(self):
        p = self.start_proxy()
        c = self.connect(p)
        reply = self.transaction(c, MEMBER, [("test-request@example.org", 250)],
                                 message(self.token, to="test-request@example.org"))
        self.assert_250(reply)
        self.lmtp_got(["test-request@example.org"])
        res = self.mailman_out.wait_messages(
            self.token, 1, MAILMAN_WAIT,
            lambda e: e["msg"]["Subject"] == "The results of your email commands" and
            e["rcpt_tos"] == [MEMBER])
        self.assertTrue(res, "no command results for %s from Mailman%s" % (self.msgid, self.ctx()))
        self.smarthost_got([])

    def test_non_list_recipients_go_to_smarthost(self):
        p = self.start_proxy()
        c = self.connect(p)
        rcpts = ["nobody@example.org", "someone@elsewhere.example"]
        reply = self.transaction(c, MEMBER, [(r, 250) for r in rcpts],
                                 message(self.token, to="someone@elsewhere.example"))
        self.assert_250(reply)
        self.smarthost_got(rcpts)
        time.sleep(1)
        self.lmtp_got([])

    def test_mix(self):
        """The issue's mixed transaction: each side gets exactly its part."""
        p = self.start_proxy()
        c = self.connect(p)
        to_mailman = ["test@example.org", "test-request@example.org",
                      "my-list-owner@example.org", "TEST+x@Example.org"]
        to_smarthost = ["nobody@example.org", "someone@elsewhere.example",
                        "test-admin@example.org"]
        order = ["test@example.org", "test-request@example.org", "my-list-owner@example.org",
                 "TEST+x@Example.org", "nobody@example.org", "someone@elsewhere.example",
                 "test-admin@example.org"]
        self.assertEqual(sorted(order), sorted(to_mailman + to_smarthost))
        reply = self.transaction(c, MEMBER, [(r, 250) for r in order], message(self.token))
        self.assert_250(reply)
        # Mailman lower-cases what it logs and keeps the +extension.
        self.lmtp_got(["test@example.org", "test-request@example.org",
                       "my-list-owner@example.org", "test+x@example.org"])
        self.smarthost_got(to_smarthost)
        # And Mailman acted on each: the post, the -request results, the
        # -owner copy (my-list has no owner: it goes to the site owner).
        self.list_post_out()
        self.assertTrue(self.mailman_out.wait_messages(
            self.token, 1, MAILMAN_WAIT,
            lambda e: e["msg"]["Subject"] == "The results of your email commands"),
            "no -request results%s" % self.ctx())
        self.assertTrue(self.mailman_out.wait_messages(
            self.token, 1, MAILMAN_WAIT,
            lambda e: e["rcpt_tos"] == ["postmaster@example.org"] and
            e["mail_from"].startswith("my-list-bounces")),
            "no -owner copy to the site owner%s" % self.ctx())

    def test_from_and_date_added_for_mailman(self):
        p = self.start_proxy()
        c = self.connect(p)
        data = message(self.token, frm=None, date=False)
        self.assertNotIn(b"From:", data)
        self.assertNotIn(b"Date:", data)
        reply = self.transaction(c, OUTSIDER, [("test@example.org", 250),
                                               ("someone@elsewhere.example", 250)], data)
        self.assert_250(reply)
        self.lmtp_got(["test@example.org"])
        h = self.held()
        msg = email.message_from_string(h["msg"])
        self.assertEqual(msg.get_all("From"), [OUTSIDER], h["msg"])
        dates = msg.get_all("Date")
        self.assertEqual(len(dates or []), 1, h["msg"])
        when = email.utils.parsedate_to_datetime(dates[0])  # RFC 5322 form
        self.assertIsNotNone(when.tzinfo, dates[0])
        self.assertLess(abs(time.time() - when.timestamp()), 600, dates[0])
        self.assertEqual(h["sender"], OUTSIDER)
        # The smarthost gets the message as PureProxy would relay it.
        m = self.smarthost_got(["someone@elsewhere.example"], sender=OUTSIDER)
        self.assertIsNone(m["msg"]["From"], m["data"])
        self.assertIsNone(m["msg"]["Date"], m["data"])

    def test_smarthost_reply_reaches_client(self):
        """A recipient the smarthost refuses gets the smarthost's reply; the
        list part is unaffected."""
        p = self.start_proxy()
        c = self.connect(p)
        reply = self.transaction(c, MEMBER, [("test@example.org", 250),
                                             ("reject-me@elsewhere.example", 550),
                                             ("someone@elsewhere.example", 250)],
                                 message(self.token))
        self.assert_250(reply)
        self.assertIn("Recipient address rejected", "\n".join(c.transcript))
        self.lmtp_got(["test@example.org"])
        self.smarthost_got(["someone@elsewhere.example"])

    def test_two_messages_one_session(self):
        """The LMTP and smarthost legs are reset between transactions."""
        p = self.start_proxy()
        c = self.connect(p)
        first = self.token
        self.assert_250(self.transaction(c, MEMBER, [("test@example.org", 250),
                                                     ("someone@elsewhere.example", 250)],
                                         message(first)))
        self.lmtp_got(["test@example.org"])
        self.smarthost_got(["someone@elsewhere.example"])
        self.token = "t" + uuid.uuid4().hex[:16]
        self.msgid = "<%s@client.test>" % self.token
        self.assert_250(self.transaction(c, MEMBER, [("someone@elsewhere.example", 250),
                                                     ("my-list@example.org", 250)],
                                         message(self.token, to="my-list@example.org")))
        self.lmtp_got(["my-list@example.org"])
        self.smarthost_got(["someone@elsewhere.example"])

    def test_mailman_domains_limits_the_questions(self):
        """--mailman-domains example.org: addresses elsewhere are not asked
        of Mailman at all; those in example.org still are."""
        p = self.start_proxy("--mailman-domains", "example.org")
        c = self.connect(p)
        elsewhere = "%s@elsewhere.example" % self.token
        local = "n%s@example.org" % self.token
        reply = self.transaction(c, MEMBER, [("test@example.org", 250), (elsewhere, 250),
                                             (local, 250)], message(self.token))
        self.assert_250(reply)
        self.lmtp_got(["test@example.org"])
        self.smarthost_got([elsewhere, local])
        smtp_log = self.mailman.log_text("smtp.log").lower()
        self.assertIn("rcpt to:<%s>" % local, smtp_log, "Mailman was not asked about %s%s" %
                      (local, self.ctx()))
        self.assertNotIn("rcpt to:<%s>" % elsewhere, smtp_log,
                         "Mailman was asked about %s%s" % (elsewhere, self.ctx()))

    def test_relay_networks(self):
        """A client outside --relay-networks: list mail is local delivery and
        still accepted; any other recipient gets 554 5.7.1."""
        p = self.start_proxy("--relay-networks", "10.0.0.0/8")
        c = self.connect(p)
        connects = self.smarthost.connects()
        reply = self.transaction(c, OUTSIDER, [("test@example.org", 250),
                                               ("someone@elsewhere.example", 554),
                                               ("nobody@example.org", 554),
                                               ("test-admin@example.org", 554),
                                               ("test-request@example.org", 250)],
                                 message(self.token, frm=OUTSIDER))
        self.assert_250(reply)
        denials = [l for l in c.transcript if l.startswith("S: 554")]
        self.assertEqual(len(denials), 3, self.ctx())
        for l in denials:
            self.assertTrue(l.startswith("S: 554 5.7.1"), l)
        self.lmtp_got(["test@example.org", "test-request@example.org"])
        self.held()
        self.smarthost_got([])
        self.assertEqual(self.smarthost.connects(), connects,
                         "a denied client caused a smarthost connection%s" % self.ctx())

    def test_mailman_refuses_the_message(self):
        """Mailman's LMTP server refuses a message with MIME defects after
        DATA (501); the smarthost takes it. The client gets one reply: the
        permanent failure, not 250."""
        p = self.start_proxy()
        c = self.connect(p)
        data = message(self.token, extra="MIME-Version: 1.0\r\n"
                       "Content-Type: multipart/mixed; boundary=\"nowhere-%s\"" % self.token)
        reply = self.transaction(c, MEMBER, [("test@example.org", 250),
                                             ("someone@elsewhere.example", 250)], data)
        self.assertIsNotNone(reply)
        self.assertEqual(reply[0] // 100, 5, "DATA reply %r%s" % (reply, self.ctx()))
        self.smarthost_got(["someone@elsewhere.example"])
        self.lmtp_got([])

    def test_sigterm_exits_promptly(self):
        """After a message that used both legs (LMTP and smarthost
        connections now idle in the pools), SIGTERM with no client left
        ends the program at once, with status 0."""
        p = self.start_proxy()
        c = self.connect(p)
        self.assert_250(self.transaction(c, MEMBER, [("test@example.org", 250),
                                                     ("someone@elsewhere.example", 250)],
                                         message(self.token)))
        c.close()
        time.sleep(0.5)
        t0 = time.monotonic()
        status = p.terminate(5)
        self.assertEqual(status, 0, "smtpd -c MailmanProxy still ran %.1f s after SIGTERM "
                         "with no client (status %r)%s" % (time.monotonic() - t0, status,
                                                           self.ctx()))


class T2LmtpUnreachable(Base):
    """The proxy pointed at a loopback port where nothing listens."""

    def test_every_recipient_deferred_without_mailman_domains(self):
        p = self.start_proxy(lmtp_port=fx.closed_port())
        c = self.connect(p)
        reply = self.transaction(c, MEMBER, [("test@example.org", 451),
                                             ("test-request@example.org", 451),
                                             ("someone@elsewhere.example", 451)],
                                 message(self.token))
        self.assertIsNone(reply)
        for l in c.transcript:
            if l.startswith("S: 451"):
                self.assertTrue(l.startswith("S: 451 4.4.1"), l)
        code, _ = c.cmd("RSET")
        self.assertEqual(code, 250)
        self.smarthost_got([])

    def test_other_domains_still_relay(self):
        p = self.start_proxy("--mailman-domains", "example.org", lmtp_port=fx.closed_port())
        c = self.connect(p)
        reply = self.transaction(c, MEMBER, [("test@example.org", 451),
                                             ("someone@elsewhere.example", 250),
                                             ("my-list-request@example.org", 451),
                                             ("nobody@example.org", 451)],
                                 message(self.token))
        self.assert_250(reply)
        self.smarthost_got(["someone@elsewhere.example"])
        self.lmtp_got([])


class T3MailmanStopped(Base):
    """Runs last: stops the Mailman instance under a running proxy."""

    def test_mailman_stopped(self):
        p = self.start_proxy("--mailman-domains", "example.org")
        c = self.connect(p)
        # A first message while Mailman runs (its LMTP connection may be pooled).
        self.assert_250(self.transaction(c, MEMBER, [("test@example.org", 250)],
                                         message(self.token)))
        self.lmtp_got(["test@example.org"])
        c.close()
        self.mailman.stop()
        self.assertFalse(self.mailman.lmtp_ready())
        c = self.connect(p)
        for attempt in range(2):  # a new connection, then the same one again
            self.token = "t" + uuid.uuid4().hex[:16]
            self.msgid = "<%s@client.test>" % self.token
            reply = self.transaction(c, MEMBER, [("test@example.org", 451),
                                                 ("test-owner@example.org", 451),
                                                 ("someone@elsewhere.example", 250)],
                                     message(self.token))
            self.assert_250(reply)
            self.smarthost_got(["someone@elsewhere.example"])
        for l in c.transcript:
            if l.startswith("S: 451"):
                self.assertTrue(l.startswith("S: 451 4.4.1"), l)


def load_tests(loader, tests, pattern):
    """Fixed order: Mailman is stopped by the last test."""
    suite = unittest.TestSuite()
    for cls in (T1MailmanUp, T2LmtpUnreachable, T3MailmanStopped):
        suite.addTests(loader.loadTestsFromTestCase(cls))
    return suite


def main():
    argv = [sys.argv[0]] + fx.take_path_args(sys.argv[1:])
    t0 = time.monotonic()
    prog = unittest.main(module=sys.modules[__name__], argv=argv, verbosity=2, exit=False)
    fx.log("total %.1f s" % (time.monotonic() - t0))
    sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
