"""integ_lmtp: --lmtp (RFC 2033) against the real program, from Python's
smtplib.LMTP and a raw socket: LHLO greets (HELO and EHLO get 500), and
after the final dot, or BDAT LAST, one reply per accepted recipient in RCPT
order. DebuggingServer and Sink give every recipient the message's answer;
the test plugin tp_lmtp_rcpt answers each recipient on its own, some at
once and some from a timer (smtpd_reply_rcpt), the rest with the message's
answer. MailmanProxy, whose LMTP client talks to Mailman 3, takes those
replies from an smtpd --lmtp in Mailman's place."""

import smtplib

from smtpd_harness import SmtpdTestCase, main, plugin_path
from smtpdtest import Recorder, SmtpSink

MSG = b"From: a@example.com\r\nSubject: lmtp\r\n\r\nHello.\r\n"


class LmtpTestCase(SmtpdTestCase):

    def lmtp(self, port):
        c = smtplib.LMTP("127.0.0.1", port, timeout=30)
        self.addCleanup(c.close)
        return c

    def data_replies(self, c, n):
        """DATA, the message, and the n replies that follow the final dot."""
        code, _ = c.docmd("DATA")
        self.assertEqual(code, 354)
        c.send(MSG + b".\r\n")
        return [c.getreply() for _ in range(n)]


class LmtpServerTest(LmtpTestCase):

    def test_smtplib_lmtp_several_recipients(self):
        srv = self.start("--lmtp", "--max-recipients", "3")
        c = self.lmtp(srv.port)
        self.assertEqual(c.ehlo("client.example")[0], 250)  # smtplib.LMTP: LHLO
        self.assertEqual(c.ehlo_msg, "lhlo")
        self.assertTrue(c.has_extn("pipelining") and c.has_extn("chunking"))
        self.assertEqual(c.mail("a@example.com")[0], 250)
        for r in ("b@example.org", "c@example.org", "d@example.org"):
            self.assertEqual(c.rcpt(r)[0], 250)
        # The fourth is refused, so it gets no reply after the dot.
        self.assertEqual(c.rcpt("e@example.org")[0], 452)
        replies = self.data_replies(c, 3)
        self.assertEqual([r[0] for r in replies], [250, 250, 250])
        self.assertEqual(c.noop()[0], 250)  # nothing more was sent
        msgs = srv.wait_messages(1)
        self.assertEqual(msgs[0]["rcpt_tos"], ["b@example.org", "c@example.org", "d@example.org"])
        srv.wait_stderr(rb"message from=<a@example\.com> to=<d@example\.org> size=\d+ reply=250")

    def test_sendmail_one_recipient(self):
        # smtplib's sendmail reads one reply after the dot: right for one.
        srv = self.start("--lmtp", cls="Sink")
        c = self.lmtp(srv.port)
        self.assertEqual(c.sendmail("a@example.com", ["b@example.org"], MSG), {})

    def test_helo_and_ehlo_refused(self):
        srv = self.start("--lmtp")
        c = self.raw(srv.port)
        code, text = c.reply()
        self.assertEqual(code, 220)
        self.assertTrue(text[0].endswith(" LMTP"), text)
        for verb in ("HELO", "EHLO"):
            code, text = c.command(verb + " client.example")
            self.assertEqual(code, 500, text)
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 503)
        code, lines = c.command("LHLO client.example")
        self.assertEqual(code, 250)
        self.assertIn("CHUNKING", lines)
        code, text = c.command("HELP")
        self.assertTrue(text[0].startswith("2.0.0 Supported commands: LHLO MAIL"), text)

    def test_bdat_last_and_pipelining(self):
        srv = self.start("--lmtp")
        c = self.raw(srv.port)
        c.reply()
        c.command("LHLO client.example")
        # Two transactions in one write: DATA with two recipients, BDAT with
        # three; every reply in order.
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\n"
               b"DATA\r\n" + MSG + b".\r\n"
               b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\n"
               b"RCPT TO:<d@x.example>\r\nBDAT %d LAST\r\n%sQUIT\r\n" % (len(MSG), MSG))
        codes = [c.reply()[0] for _ in range(14)]
        self.assertEqual(codes, [250, 250, 250, 354, 250, 250,
                                 250, 250, 250, 250, 250, 250, 250, 221])
        self.assertEqual(len(srv.wait_messages(2)), 2)


class PerRecipientTest(LmtpTestCase):

    def test_plugin_answers_each_recipient(self):
        srv = self.start("--lmtp", cls=plugin_path("tp_lmtp_rcpt"))
        c = self.lmtp(srv.port)
        c.ehlo("client.example")
        rcpts = ["now1@x.example", "reject1@x.example", "full1@x.example", "ok1@x.example",
                 "same1@x.example", "now2@x.example"]
        self.assertEqual(c.mail("a@example.com")[0], 250)
        for r in rcpts:
            self.assertEqual(c.rcpt(r)[0], 250)
        replies = self.data_replies(c, len(rcpts))
        self.assertEqual(replies, [
            (250, b"2.1.5 delivered now"),
            (550, b"5.1.1 no such mailbox"),
            (452, b"4.2.2 mailbox full"),
            (250, b"2.0.0 delivered later"),
            (250, b"2.0.0 delivered with the message's answer"),
            (250, b"2.1.5 delivered now"),
        ])
        # Every recipient answered at once, in on_message: no timer.
        self.assertEqual(c.mail("a@example.com")[0], 250)
        self.assertEqual(c.rcpt("now3@x.example")[0], 250)
        self.assertEqual(c.rcpt("now4@x.example")[0], 250)
        self.assertEqual(self.data_replies(c, 2), [(250, b"2.1.5 delivered now")] * 2)
        self.assertEqual(c.noop()[0], 250)
        c.quit()
        err = srv.wait_stderr(rb"disconnect from").string
        self.assertNotIn(b"second answer taken", err)
        self.assertIn(b"to=<full1@x.example> size=", err)
        self.assertIn(b"reply=452 4.2.2 mailbox full", err)

    def test_client_gone_while_answers_pending(self):
        srv = self.start("--lmtp", cls=plugin_path("tp_lmtp_rcpt"), extra=["2000"])
        c = self.raw(srv.port)
        c.reply()
        c.command("LHLO client.example")
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<ok@x.example>\r\nDATA\r\n" + MSG + b".\r\n")
        self.assertEqual([c.reply()[0] for _ in range(3)], [250, 250, 354])
        c.close()
        srv.wait_stderr(rb"disconnect from")
        # The server goes on.
        d = self.lmtp(srv.port)
        self.assertEqual(d.ehlo("again.example")[0], 250)


class RelayTest(LmtpTestCase):

    def test_pureproxy_in_lmtp_mode(self):
        # Each accepted recipient gets the smarthost's one answer; a
        # recipient the smarthost refused at RCPT gets none after the dot.
        rec = Recorder()
        self.addCleanup(rec.cleanup)
        self.addCleanup(rec.close)
        proxy = self.start("--lmtp", cls="PureProxy", extra=["127.0.0.1:%d" % rec.port])
        c = self.lmtp(proxy.port)
        c.ehlo("client.example")
        self.assertEqual(c.mail("a@example.com")[0], 250)
        self.assertEqual(c.rcpt("b@example.org")[0], 250)
        self.assertEqual(c.rcpt("reject-me@example.org")[0], 550)
        self.assertEqual(c.rcpt("c@example.org")[0], 250)
        self.assertEqual([r[0] for r in self.data_replies(c, 2)], [250, 250])
        self.assertEqual(c.noop()[0], 250)
        msgs = rec.wait_messages(1)
        self.assertEqual(msgs[0]["rcpt_tos"], ["b@example.org", "c@example.org"])
        self.assertRegex(msgs[0]["data"], rb"^Received: from client\.example \([^)]*\)\r\n"
                         rb"\tby \S+ \(smtpd [^)]*\) with LMTP id ")


class MailmanStyleTest(LmtpTestCase):

    def test_mailmanproxy_lmtp_client(self):
        # MailmanProxy's LMTP client (LHLO, per-recipient replies) against
        # smtpd --lmtp standing in for Mailman 3: every recipient is a list
        # (250 at RCPT), so the message goes to it alone.
        lmtp = self.start("--lmtp", cls=plugin_path("tp_lmtp_rcpt"), extra=["0"])
        sink = SmtpSink()
        self.addCleanup(sink.close)
        proxy = self.start("--mailman-lmtp", "127.0.0.1:%d" % lmtp.port, cls="MailmanProxy",
                           extra=["127.0.0.1:%d" % sink.port])
        s = self.smtp(proxy.port)
        self.assertEqual(s.sendmail("a@example.com", ["ok1@lists.example", "ok2@lists.example"],
                                    MSG), {})
        with self.assertRaises(smtplib.SMTPDataError) as e:
            s.sendmail("a@example.com", ["ok3@lists.example", "full@lists.example"], MSG)
        self.assertEqual(e.exception.smtp_code // 100, 4)
        lmtp.wait_stderr(rb"to=<full@lists\.example> size=\d+ reply=452 4\.2\.2 mailbox full")

    def test_mailmanproxy_in_lmtp_mode_answers_each_recipient(self):
        # MailmanProxy --lmtp: a recipient relayed to the smarthost gets the
        # smarthost's reply, one delivered to Mailman gets Mailman's own,
        # so mail one side took is never refused for the other's sake.
        lmtp = self.start("--lmtp", cls=plugin_path("tp_lmtp_rcpt"), extra=["0"])
        sink = SmtpSink()
        self.addCleanup(sink.close)
        proxy = self.start("--lmtp", "--mailman-lmtp", "127.0.0.1:%d" % lmtp.port,
                           "--mailman-domains", "lists.example", cls="MailmanProxy",
                           extra=["127.0.0.1:%d" % sink.port])
        c = self.lmtp(proxy.port)
        c.ehlo("client.example")
        self.assertEqual(c.mail("a@example.com")[0], 250)
        for r in ("u@example.org", "ok@lists.example", "reject1@lists.example", "v@example.org"):
            self.assertEqual(c.rcpt(r)[0], 250, r)
        replies = self.data_replies(c, 4)
        self.assertEqual([r[0] for r in replies], [250, 250, 550, 250], replies)
        self.assertEqual(replies[1], (250, b"2.0.0 delivered later"))
        self.assertEqual(c.noop()[0], 250)
        # The next transaction on the same session works too.
        self.assertEqual(c.mail("a@example.com")[0], 250)
        self.assertEqual(c.rcpt("ok2@lists.example")[0], 250)
        self.assertEqual(self.data_replies(c, 1), [(250, b"2.0.0 delivered later")])


if __name__ == "__main__":
    main()
