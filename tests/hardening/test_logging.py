"""hard_logging: the log never carries raw peer bytes.

With -d the whole dialogue is logged. Commands with C0 controls, terminal
escape sequences (ESC [ ... m, OSC titles ending in BEL), NUL, DEL, C1
controls, bare CR, backslashes and invalid UTF-8 must appear escaped
(\\xNN, backslash doubled or \\x5c), never raw: standard error holds no
byte below 0x20 other than the newline ending each line, no DEL, no C1
control and nothing that is not UTF-8. The same for what a hostile
upstream says to PureProxy (its greeting and reply texts).
"""

import re

from hardlib import HardTestCase, main

HOSTILE_LINES = [
    b"EHLO \x1b[2J\x1b]0;pwned\x07host\x7f",
    b"NOOP \x1b[31mred\x1b[0m \x00nul \x08bs \x0bvt \x0cff \x1b[1A",
    b"NOOP a\rFAKE 2026-01-01T00:00:00 smtpd info: injected",
    b"\xff\xfe\xc0\xaf invalid utf-8 \xed\xa0\x80 \xf8\x88\x80\x80\x80",
    b"HELP \xc2\x9b31m C1 CSI \xc2\x85 NEL",
    b"\x00" * 16,
    b"NOOP back\\slash \\x1b forged escape",
    b"MAIL FROM:<\x1b[31m@example.com>",
    b"MAIL FROM:<\"\x1b[5mq\"@example.com> BODY=8BITMIME",
    b"MAIL FROM:<ok@example.com>",
    b"RCPT TO:<caf\xc3\xa9\x1b[0m@example.net>",
    b"RCPT TO:<\"\x07\x1b\"@example.net>",
    b"RCPT TO:<plain@example.net>",
    b"NOOP " + b"A" * 600 + b"\x1b[0m\x00",
    b"XTERM \x1b[?1049h\x1b[H",
]


class LoggingTest(HardTestCase):

    def assert_clean_log(self, log):
        bad = [(i, b) for i, b in enumerate(log) if (b < 0x20 and b != 0x0a) or b == 0x7f]
        if bad:
            i = bad[0][0]
            self.fail("raw control byte 0x%02x in the log at %d: %r"
                      % (bad[0][1], i, log[max(0, i - 60):i + 20]))
        try:
            text = log.decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail("the log is not UTF-8 (%s): %r" % (e, log[max(0, e.start - 60):e.end + 20]))
        c1 = re.search("[\u0080-\u009f]", text)
        self.assertIsNone(c1, "a raw C1 control in the log: %r"
                          % (text[max(0, c1.start() - 40):c1.end() + 10] if c1 else ""))
        return text

    def test_debug_dialogue_escaped(self):
        # No error budget: the lines with a NUL are refused (500), and every
        # one must still reach the log, escaped.
        srv = self.start("-d", "--max-errors", "0")
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        for line in HOSTILE_LINES:
            c.command(line)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: \x1b[31mlog test\r\n\r\nbody \x1b]0;t\x07\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.command("QUIT")[0], 221)
        self.assertTrue(c.closed_by_peer(5))
        srv.wait_stderr(rb"disconnect from 127\.0\.0\.1", 5)
        srv.close()
        log = srv.stderr()
        self.assert_clean_log(log)
        # The escapes are there: the dialogue was logged, not dropped.
        for esc in (rb"\x1b[2J", rb"\x1b]0;pwned\x07host\x7f", rb"\x00nul \x08bs \x0bvt \x0cff",
                    rb"a\x0dFAKE", rb"\xff\xfe\xc0\xaf", rb"\xed\xa0\x80", rb"\xc2\x9b31m",
                    rb"\xc2\x85", rb"\x00\x00\x00\x00", rb"\x1b[?1049h"):
            self.assertIn(esc, log, "escaped form %r missing from the log" % esc)
        # A backslash from the peer is escaped too, so "\x1b" typed by the
        # peer cannot pass for an escaped ESC.
        self.assertRegex(log, rb"back(\\\\|\\x5c)slash (\\\\|\\x5c)x1b forged")
        self.assertNotIn(b"back\\slash", log)
        # "FAKE ... smtpd info: injected" never starts a line of its own.
        self.assertFalse(re.search(rb"(^|\n)FAKE", log))
        # The accepted forward-path with an ESC is logged escaped at INFO.
        self.assertIn(b"message from=<ok@example.com> to=<plain@example.net>", log)

    def test_info_log_of_hostile_client(self):
        """Without -d: the INFO lines (transaction, errors) are clean too.
        With -u a quoted local part may hold a C1 control (U+009B, CSI)
        and a quoted backslash: both reach the transaction line, escaped."""
        srv = self.start("-u")
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        # A NUL has no place in a command (500); other controls in a
        # greeting are kept, and logged escaped.
        self.assertEqual(c.command(b"EHLO \x1b[31mx\x00")[0], 500)
        self.assertEqual(c.command(b"EHLO \x1b[31mx\x01")[0], 250)
        self.assertEqual(c.command(b'MAIL FROM:<"\xc2\x9b[31m"@example.com> SMTPUTF8')[0], 250)
        self.assertEqual(c.command(b'RCPT TO:<"a\\\\b"@example.net>')[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"hi\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        for _ in range(10):
            c.send(b"\x1b[31m\xff bad\r\n")
        replies = c.replies_until_eof(timeout=5)
        self.assertEqual(replies[-1][0], 421)
        srv.close()
        log = srv.stderr()
        self.assert_clean_log(log)
        self.assertIn(b'from=<"\\xc2\\x9b[31m"@example.com>', log)
        self.assertRegex(log, rb'to=<"a(\\\\|\\x5c){2}b"@example\.net>')
        self.assertIn(b"too many errors", log)

    def test_hostile_upstream_escaped(self):
        """PureProxy logs the upstream's words (INFO "relayed via" line and,
        with -d, the upstream dialogue): escaped as well."""
        up = self.upstream(reply_text=b"OK \x1b[31mRED\x1b[0m \xff\xfe \x07bell \x1b]0;x\x07",
                           greeting=b"evil.test \x1b[2J\x1b[H ESMTP \xc0\xc1")
        srv = self.start("-d", cls="PureProxy", extra=["127.0.0.1:%d" % up.port], term_wait=1)
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command("EHLO client.example")[0], 250)
        code, text = c.command("MAIL FROM:<a@example.com>")
        self.assertEqual(code, 250, text)
        self.assertEqual(c.command("RCPT TO:<b@example.net>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250)
        # The client never gets the upstream's control characters either.
        self.assertNotIn("\x1b", "".join(text))
        self.assertNotIn("\x07", "".join(text))
        self.assertEqual(c.command("QUIT")[0], 221)
        srv.wait_stderr(rb"relayed via", 5)
        srv.close()
        log = srv.stderr()
        self.assert_clean_log(log)
        self.assertIn(rb"\x1b[31mRED\x1b[0m \xff\xfe \x07bell", log)
        self.assertIn(rb"\x1b[2J\x1b[H ESMTP \xc0\xc1", log)


if __name__ == "__main__":
    main()
