"""hard_errors: the error budget (--max-errors, default 10).

After 10 unknown or malformed commands (replies 500-503 and 555) the client
gets "421 4.7.0" and the connection closes; good commands in between do not
refill the budget; pipelined garbage gets exactly 10 answers, the 421 and
nothing more; --max-errors 3 takes a smaller budget.
"""

from hardlib import HardTestCase, main, send_mail_smtplib

# Each one is refused 500-503 or 555 in a session after EHLO.
BAD = [
    b"FOO bar",                                   # unknown verb
    b"MAIL FROM:<a@b",                            # malformed path: 501
    b"RCPT TO:<x@example.com>",                   # bad sequence: 503
    b"\xff\xfe\x80 invalid utf-8",                # 500
    b"",                                          # empty line: 500
    b"NOOP " + b"A" * 2000,                       # overlong line: 500
    b"DATA",                                      # no recipients: 503
    b"VRFY",                                      # 501
    b"EXPN list",                                 # 502
    b"\x00\x01\x02 NUL and controls",             # unknown
    b"XYZZY", b"HELO", b"EHLO", b"QUIT!", b"MAIL FROM:<a@b> FOO=BAR",
]


class ErrorBudgetTest(HardTestCase):

    def session(self, srv):
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command("EHLO errors.example")[0], 250)
        return c

    def test_ten_errors_then_421(self):
        srv = self.start()
        c = self.session(srv)
        for i, line in enumerate(BAD[:10]):
            code, text = c.command(line)
            self.assertTrue(500 <= code <= 503 or code == 555,
                            "command %d %r: %d %r" % (i + 1, line[:40], code, text))
            if i < 9:
                self.assertEqual(c.command("NOOP")[0], 250, "closed after %d errors" % (i + 1))
        code, text = c.reply(timeout=5)
        self.assertEqual(code, 421)
        self.assertTrue(text[0].startswith("4.7.0"), text)
        self.assertTrue(c.closed_by_peer(3), "connection left open after 421 4.7.0")
        # The log line is read by a collector thread: wait for it.
        self.assertTrue(srv.err.wait_for(lambda b: b"too many errors" in b, 5), srv.stderr_text())
        # Other clients are unaffected.
        send_mail_smtplib(srv.port, "after-budget")
        self.assertEqual(srv.wait_messages(1, 10), 1)

    def test_pipelined_garbage(self):
        srv = self.start()
        c = self.session(srv)
        c.send(b"".join(l + b"\r\n" for l in BAD) + b"NOOP\r\n" * 5)
        replies = c.replies_until_eof(timeout=10)
        codes = [r[0] for r in replies]
        self.assertEqual(len(codes), 11, replies)
        self.assertTrue(all(500 <= x <= 503 or x == 555 for x in codes[:10]), replies)
        self.assertEqual(replies[10][0], 421)
        self.assertTrue(replies[10][1].startswith("4.7.0"), replies)

    def test_smaller_budget(self):
        srv = self.start("--max-errors", "3")
        c = self.session(srv)
        c.send(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
        codes = [r[0] for r in c.replies_until_eof(timeout=10)]
        self.assertEqual(codes, [500, 500, 500, 421])


if __name__ == "__main__":
    main()
