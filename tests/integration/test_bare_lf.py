"""integ_bare_lf: bare CR / LF in message data (--bare-lf) and SMTP smuggling.

smtpd.h: whatever the policy, only CRLF "." CRLF ends the data, so no message
can be split in two (SMTP smuggling). normalize (the default) makes every
bare CR or LF a CRLF, reject answers 550 5.5.2, accept keeps the bytes.
"""

from smtpd_harness import SmtpdTestCase, main, normalized

# Header and body lines ended by a bare LF, a bare CR and CRLF. No line
# after a bare line end starts with a dot (stuffing there is ambiguous).
MIXED = (b"Subject: bare\r\nX-A: lf\nX-B: cr\rX-C: crlf\r\n\r\n"
         b"body lf\nbody cr\rbody crlf\r\nend\r\n")

# A "." between bare and real line ends, then what a smuggler would want
# run as a second transaction.
SMUGGLE_TAIL = (b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nsmuggled\r\n")
SEPARATORS = {
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "LF.LF": b"\n.\n",
    "CRLF.LF": b"\r\n.\n",
    "CRLF.CR": b"\r\n.\r",
}


class BareLineEndTest(SmtpdTestCase):

    def transaction(self, c, data):
        """MAIL, RCPT, DATA, the data and the final dot; returns the reply
        to the final dot, then checks that the session goes on."""
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<b@example.com>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(data + b".\r\n")
        return c.reply()

    def session(self, policy):
        srv = self.start(*(["--bare-lf", policy] if policy else []))
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command("EHLO bare.example.com")[0], 250)
        return srv, c

    def test_default_normalizes(self):
        srv, c = self.session(None)
        code, text = self.transaction(c, MIXED)
        self.assertEqual(code, 250, text)
        self.assertEqual(c.command("QUIT")[0], 221)
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, normalized(MIXED))
        self.assertNotIn(b"\r", m["data"])

    def test_accept_keeps_bytes(self):
        srv, c = self.session("accept")
        code, text = self.transaction(c, MIXED)
        self.assertEqual(code, 250, text)
        self.assertEqual(c.command("QUIT")[0], 221)
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, MIXED)
        self.assertIn(b"X-A: lf\nX-B: cr\rX-C: crlf\n", m["data"])

    def test_reject(self):
        srv, c = self.session("reject")
        for data in (b"Subject: lf\r\n\r\nbare\nlf\r\n", b"Subject: cr\r\n\r\nbare\rcr\r\n"):
            code, text = self.transaction(c, data)
            self.assertEqual(code, 550, text)
            self.assertTrue(text[0].startswith("5.5.2 "), text)
        # Clean data is still taken, in the same session.
        clean = b"Subject: clean\r\n\r\nfine\r\n"
        self.assertEqual(self.transaction(c, clean)[0], 250)
        self.assertEqual(c.command("QUIT")[0], 221)
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, clean)

    def check_no_smuggling(self, policy):
        """Whatever the policy: one transaction, never two."""
        for name, sep in SEPARATORS.items():
            with self.subTest(policy=policy or "default", separator=name):
                srv, c = self.session(policy)
                data = b"Subject: carrier\r\n\r\nbefore" + sep + SMUGGLE_TAIL
                self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
                self.assertEqual(c.command("RCPT TO:<b@example.com>")[0], 250)
                self.assertEqual(c.command("DATA")[0], 354)
                c.send(data + b".\r\nQUIT\r\n")
                replies = []
                while True:
                    try:
                        replies.append(c.reply()[0])
                    except EOFError:
                        break
                # One reply to the real final dot, then QUIT's. A split would
                # add replies to the smuggled MAIL, RCPT, DATA and dot.
                final = 550 if policy == "reject" else 250
                self.assertEqual(replies, [final, 221],
                                 "data ended early at %r: the smuggled commands ran" % sep)
                srv.stop()
                msgs = srv.messages()
                self.assertLessEqual(len(msgs), 1, "the data was split into %d messages"
                                     % len(msgs))
                self.assertNotIn(b"from=<evil@example.com>", srv.stderr())
                if policy != "reject":
                    self.assertIn(b"\nsmuggled\n", msgs[0]["data"])

    def test_no_smuggling_default(self):
        self.check_no_smuggling(None)

    def test_no_smuggling_accept(self):
        self.check_no_smuggling("accept")

    def test_no_smuggling_reject(self):
        self.check_no_smuggling("reject")


if __name__ == "__main__":
    main()
