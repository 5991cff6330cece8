"""integ_smtplib: Python's smtplib (and a raw socket) against DebuggingServer."""

import re
import threading
from email.message import EmailMessage

from smtpd_harness import SmtpdTestCase, main, normalized, smtplib_wire

FROM = "sender@example.com"
TO = ["rcpt1@example.com", "rcpt2@example.com"]


def sized(msg, *options):
    """The MAIL parameters smtplib.sendmail() sends to a server with SIZE."""
    return ["SIZE=%d" % len(msg)] + list(options)


def message(subject, body_lines):
    head = b"From: sender@example.com\r\nTo: rcpt1@example.com\r\nSubject: " + subject + b"\r\n"
    return head + b"\r\n" + b"".join(l + b"\r\n" for l in body_lines)


class SmtplibTest(SmtpdTestCase):

    def test_plain_send(self):
        srv = self.start()
        s = self.smtp(srv.port)
        code, _ = s.ehlo("client.example.com")
        self.assertEqual(code, 250)
        self.assertEqual(s.esmtp_features.get("size"), "33554432")  # the documented default
        for kw in ("8bitmime", "pipelining", "enhancedstatuscodes"):
            self.assertIn(kw, s.esmtp_features)
        self.assertNotIn("smtputf8", s.esmtp_features)  # only with -u
        msg = message(b"plain", [b"Hello,", b"", b".a line with a leading dot", b"..two dots",
                                 b".", b"tab\there  trailing space ", b"bye"])
        self.assertEqual(s.sendmail(FROM, TO, msg), {})
        s.quit()
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, msg, sized(msg))
        # X-Peer goes just before the first empty line, i.e. after the headers.
        self.assertTrue(m["data"].startswith(
            b"From: sender@example.com\nTo: rcpt1@example.com\nSubject: plain\n"
            b"X-Peer: 127.0.0.1\n\nHello,\n"), m["data"][:200])

    def test_message_without_header_end_and_bare_lf(self):
        # No empty line: X-Peer goes at the end. smtplib sends a bytes message
        # as it is (here with a bare LF) and adds the final CRLF; the server
        # makes the bare LF a CRLF (--bare-lf normalize, the default).
        srv = self.start()
        s = self.smtp(srv.port)
        msg = b"Subject: no body\nX-Second: line"
        s.sendmail(FROM, TO[:1], msg)
        s.quit()
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, normalized(smtplib_wire(msg)), sized(msg))
        self.assertEqual(m["data"], b"Subject: no body\nX-Second: line\nX-Peer: 127.0.0.1\n")

    def test_pipelined_batch_replies_in_order(self):
        srv = self.start()
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.command("EHLO pipeliner.example.com")
        self.assertEqual(code, 250)
        self.assertIn("PIPELINING", lines)
        # One write: MAIL, RCPT, RCPT, DATA (RFC 2920: DATA ends the group).
        c.send(b"MAIL FROM:<p@example.com>\r\nRCPT TO:<one@example.com>\r\n"
               b"RCPT TO:<two@example.com>\r\nDATA\r\n")
        replies = [c.reply() for _ in range(4)]
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 354], replies)
        self.assertTrue(replies[0][1][0].startswith("2.1.0"), replies)
        self.assertTrue(replies[1][1][0].startswith("2.1.5"), replies)
        self.assertTrue(replies[2][1][0].startswith("2.1.5"), replies)
        data = b"Subject: pipelined\r\n\r\nbody\r\n"
        # Data, end of data and the next transaction up to DATA, in one write.
        c.send(data + b".\r\nRSET\r\nMAIL FROM:<q@example.com>\r\nRCPT TO:<>\r\n"
               b"RCPT TO:<three@example.com>\r\nNOOP\r\nDATA\r\n")
        replies = [c.reply() for _ in range(7)]
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 501, 250, 250, 354], replies)
        c.send(b"second\r\n.\r\nQUIT\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 221)
        self.assertTrue(c.closed_by_peer())
        m1, m2 = srv.wait_messages(2)
        self.assertMessage(m1, data)
        self.assertMessage(m2, b"second\r\n")
        srv.wait_stderr(rb"message from=<p@example\.com> to=<one@example\.com,two@example\.com> ")
        srv.wait_stderr(rb"message from=<q@example\.com> to=<three@example\.com> ")

    def test_long_pipelined_batch(self):
        # 4000 commands in one go, without reading: more replies than the
        # server buffers before it stops reading (back-pressure); all must
        # come back, in order.
        srv = self.start()
        c = self.raw(srv.port, timeout=30)
        c.reply()
        c.command("EHLO pipeliner.example.com")
        group = [(b"MAIL FROM:<a%d@example.com>", 250, "2.1.0"),
                 (b"RCPT TO:<b%d@example.com>", 250, "2.1.5"),
                 (b"RSET", 250, "2.0.0"),
                 (b"VRFY <c%d@example.com>", 252, "2.5.2")]
        batch, expected = [], []
        for i in range(1000):
            for cmd, code, enh in group:
                batch.append(cmd % i if b"%d" in cmd else cmd)
                expected.append((code, enh))
        payload = b"".join(l + b"\r\n" for l in batch)
        writer = threading.Thread(target=c.send, args=(payload,), daemon=True)
        writer.start()
        got = []
        for _ in expected:
            code, text = c.reply()
            got.append((code, text[0][:5]))
        writer.join(10)
        self.assertEqual(got, expected)
        self.assertEqual(c.command("QUIT")[0], 221)

    def test_empty_message(self):
        # DESIGN.md: DATA then a lone "." is an empty message, 250.
        srv = self.start()
        c = self.raw(srv.port)
        c.reply()
        c.command("EHLO x.example.com")
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<b@example.com>")
        self.assertEqual(c.command("DATA")[0], 354)
        self.assertEqual(c.command(".")[0], 250)
        (m,) = srv.wait_messages(1)
        self.assertEqual(m["data"], b"X-Peer: 127.0.0.1\n")

    def test_smtputf8(self):
        srv = self.start("-u")
        s = self.smtp(srv.port)
        s.ehlo("client.example.com")
        self.assertIn("smtputf8", s.esmtp_features)
        sender = "dörte@exämple.com"
        rcpt = ["ñoño@例え.jp", "plain@example.com"]
        msg = ("From: Dörte <dörte@exämple.com>\r\nTo: ñoño@例え.jp\r\nSubject: Grüße ☃\r\n"
               "\r\nÜnïcödé bödy: 日本語, emoji 📬\r\n.dot ☃\r\n").encode("utf-8")
        self.assertEqual(s.sendmail(sender, rcpt, msg, mail_options=["SMTPUTF8"]), {})
        # send_message() finds the non-ASCII addresses and asks for SMTPUTF8
        # (and BODY=8BITMIME) itself.
        em = EmailMessage()
        em["From"] = "zoë@exämple.com"
        em["To"] = "jürgen@example.com"
        em["Subject"] = "send_message ☃"
        em.set_content("Tschüß 日本\n")
        self.assertEqual(s.send_message(em), {})
        s.quit()
        m1, m2 = srv.wait_messages(2)
        self.assertMessage(m1, msg, sized(msg, "SMTPUTF8"))
        self.assertRegex(m2["mail_options"][0], r"^SIZE=[0-9]+$")
        self.assertEqual(m2["mail_options"][1:], ["SMTPUTF8", "BODY=8BITMIME"])
        text = m2["data"].decode("utf-8")
        self.assertIn("From: zoë@exämple.com\n", text)
        self.assertIn("To: jürgen@example.com\n", text)
        self.assertRegex(text, r"\nX-Peer: 127\.0\.0\.1\n\n")
        self.assertIn("Tschüß 日本\n", text)
        # The log keeps valid UTF-8 as it is.
        srv.wait_stderr(re.escape("message from=<dörte@exämple.com> to=<ñoño@例え.jp,plain@example.com> "
                                  .encode("utf-8")))

    def test_smtputf8_refused_without_u(self):
        srv = self.start()
        c = self.raw(srv.port)
        c.reply()
        code, lines = c.command("EHLO x.example.com")
        self.assertNotIn("SMTPUTF8", lines)
        code, _ = c.command("MAIL FROM:<a@example.com> SMTPUTF8")
        self.assertEqual(code, 555)
        # The session goes on.
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)

    def test_8bit_body(self):
        srv = self.start()
        s = self.smtp(srv.port)
        s.ehlo("client.example.com")
        high = bytes(range(0x80, 0x100))
        msg = message(b"8bit", [high, high[::-1], b"mixed \xe9t\xe9 \xff\xfe \x80 end", b"." + high])
        self.assertEqual(s.sendmail(FROM, TO, msg, mail_options=["BODY=8BITMIME"]), {})
        s.quit()
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, msg, sized(msg, "BODY=8BITMIME"))
        self.assertIn(b"\n" + high + b"\n", m["data"])

    def test_nul_and_control_bytes_kept(self):
        # DESIGN.md: data stays bytes, NUL allowed; the printer changes only CRLF.
        srv = self.start()
        s = self.smtp(srv.port)
        msg = message(b"ctl", [b"nul:\x00: esc:\x1b[1m: del:\x7f: bell:\x07 ff:\x0c vt:\x0b",
                               b"\x00\x00"])
        s.sendmail(FROM, TO[:1], msg)
        s.quit()
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, msg, sized(msg))
        self.assertIn(b"nul:\x00: esc:\x1b[1m: del:\x7f: bell:\x07 ff:\x0c vt:\x0b\n\x00\x00\n",
                      m["data"])

    def test_10mb_message(self):
        srv = self.start()
        s = self.smtp(srv.port, timeout=60)
        lines = []
        size = 0
        i = 0
        while size < 10 * 1024 * 1024:
            # Some lines start with a dot to exercise (un)stuffing at scale.
            line = (b"." if i % 97 == 0 else b"") + (b"%08d " % i) + b"abcdefghij" * 7
            lines.append(line)
            size += len(line) + 2
            i += 1
        msg = message(b"big", lines)
        self.assertGreaterEqual(len(msg), 10 * 1024 * 1024)
        self.assertEqual(s.sendmail(FROM, TO, msg), {})
        s.quit()
        (m,) = srv.wait_messages(1, timeout=60)
        self.assertMessage(m, msg, sized(msg))
        srv.wait_stderr(rb"message from=<sender@example\.com> to=<[^>]*> size=%d reply=250"
                        % len(msg))

    def test_100_messages_one_connection(self):
        srv = self.start()
        s = self.smtp(srv.port)
        sent = []
        for n in range(100):
            msg = message(b"number %d" % n, [b"message %d of 100" % n, b"." * (n % 5 + 1)])
            self.assertEqual(s.sendmail("s%d@example.com" % n, ["r%d@example.com" % n], msg), {})
            sent.append(msg)
        s.quit()
        got = srv.wait_messages(100)
        self.assertEqual(len(got), 100)
        for m, msg in zip(got, sent):
            self.assertMessage(m, msg, sized(msg))
        srv.wait_stderr(rb"disconnect from 127\.0\.0\.1 messages=100")
        log = srv.stderr()
        self.assertEqual(len(re.findall(rb"\] connect from 127\.0\.0\.1:", log)), 1)
        senders = re.findall(rb"message from=<s(\d+)@example.com> to=<r(\d+)@example.com> ", log)
        self.assertEqual(senders, [(b"%d" % n, b"%d" % n) for n in range(100)])

    def test_rset_between_transactions(self):
        srv = self.start()
        s = self.smtp(srv.port)
        s.ehlo("client.example.com")
        # A transaction with options and recipients, abandoned by RSET.
        self.assertEqual(s.mail("old@example.com", ["BODY=8BITMIME", "SIZE=100"])[0], 250)
        self.assertEqual(s.rcpt("old-rcpt@example.com")[0], 250)
        self.assertEqual(s.rset()[0], 250)
        # After RSET there is no transaction: RCPT and DATA need a MAIL first.
        self.assertEqual(s.rcpt("x@example.com")[0], 503)
        s.putcmd("DATA")
        self.assertEqual(s.getreply()[0], 503)
        # RSET with nothing to reset is fine too.
        self.assertEqual(s.rset()[0], 250)
        # mail/rcpt/data by hand: sendmail() would add SIZE=.
        msg = message(b"after rset", [b"only this one"])
        self.assertEqual(s.mail("new@example.com")[0], 250)
        self.assertEqual(s.rcpt("new-rcpt@example.com")[0], 250)
        self.assertEqual(s.data(msg)[0], 250)
        # RSET between two complete transactions.
        self.assertEqual(s.rset()[0], 250)
        msg2 = message(b"second", [b"and this one"])
        self.assertEqual(s.mail("new2@example.com", ["BODY=7BIT"])[0], 250)
        self.assertEqual(s.rcpt("new2-rcpt@example.com")[0], 250)
        self.assertEqual(s.data(msg2)[0], 250)
        s.quit()
        m1, m2 = srv.wait_messages(2)
        self.assertMessage(m1, msg)  # no "mail options" line: RSET dropped them
        self.assertMessage(m2, msg2, ["BODY=7BIT"])
        self.assertEqual(srv.stop(), 0)
        log = srv.stderr()
        # The abandoned transaction is logged as such, never as a message.
        self.assertIn(b"transaction from=<old@example.com> to=<old-rcpt@example.com> "
                      b"ended by RSET before DATA\n", log)
        self.assertNotIn(b"message from=<old", log)
        self.assertIn(b"message from=<new@example.com> to=<new-rcpt@example.com> ", log)
        self.assertIn(b"message from=<new2@example.com> to=<new2-rcpt@example.com> ", log)
        self.assertEqual(len(srv.messages()), 2)


if __name__ == "__main__":
    main()
