"""integ_logging: what smtpd logs on standard error, with and without -d."""

import re

from smtpd_harness import LOG_LINE, SmtpdTestCase, main


def session_lines(log, sid):
    prefix = b"[%s] " % sid
    out = []
    for line in log.split(b"\n")[:-1]:
        m = LOG_LINE.match(line)
        if m and m.group(2).startswith(prefix):
            out.append((m.group(1), m.group(2)[len(prefix):]))
    return out


class LoggingTest(SmtpdTestCase):

    def assertLogLines(self, log):
        """Every line has the log format and is clean text: valid UTF-8,
        no control characters but the newline that ends it."""
        text = log.decode("utf-8")  # raises on invalid UTF-8
        for line in log.split(b"\n")[:-1]:
            self.assertRegex(line, LOG_LINE)
        bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f]
        self.assertEqual(bad, [], "control characters in the log: %r" % log)

    def session_id(self, srv, client):
        port = client.sock.getsockname()[1]
        m = srv.wait_stderr(rb"\[(\d+)\] connect from 127\.0\.0\.1:%d\n" % port)
        return m.group(1)

    def test_info_one_line_per_connection_and_transaction(self):
        srv = self.start()
        a = self.raw(srv.port)
        self.assertEqual(a.reply()[0], 220)
        sid = self.session_id(srv, a)
        a.command("EHLO logger.example.com")
        for n, rcpts in ((1, ["x@example.com"]), (2, ["y@example.com", "z@example.com"])):
            self.assertEqual(a.command("MAIL FROM:<s%d@example.com>" % n)[0], 250)
            for r in rcpts:
                self.assertEqual(a.command("RCPT TO:<%s>" % r)[0], 250)
            self.assertEqual(a.command("RCPT TO:<>")[0], 501)  # refused: not logged as a message
            self.assertEqual(a.command("DATA")[0], 354)
            a.send(b"Subject: %d\r\n\r\n" % n + b"x" * n + b"\r\n.\r\n")
            self.assertEqual(a.reply()[0], 250)
        self.assertEqual(a.command("MAIL FROM:<abandoned@example.com>")[0], 250)
        self.assertEqual(a.command("RSET")[0], 250)
        self.assertEqual(a.command("QUIT")[0], 221)
        self.assertTrue(a.closed_by_peer())
        b = self.raw(srv.port)
        b.reply()
        sid_b = self.session_id(srv, b)
        self.assertNotEqual(sid, sid_b)
        b.command("QUIT")
        self.assertTrue(b.closed_by_peer())
        self.assertEqual(srv.stop(), 0)
        log = srv.stderr()
        self.assertLogLines(log)
        lines = session_lines(log, sid)
        self.assertTrue(all(level == b"info" for level, _ in lines), lines)
        texts = [t for _, t in lines]
        connects = [t for t in texts if t.startswith(b"connect from ")]
        self.assertEqual(len(connects), 1, texts)
        msgs = [t for t in texts if t.startswith(b"message ")]
        # size: the message data, up to and with the CRLF before the final ".".
        self.assertEqual(msgs, [
            b"message from=<s1@example.com> to=<x@example.com> size=17 reply=250 2.0.0 OK",
            b"message from=<s2@example.com> to=<y@example.com,z@example.com> size=18 "
            b"reply=250 2.0.0 OK",
        ])
        # The abandoned transaction ends with a line too.
        ended = [t for t in texts if t.startswith(b"transaction ")]
        self.assertEqual(ended, [b"transaction from=<abandoned@example.com> to=<> "
                                 b"ended by RSET before DATA"])
        # Nothing else but at most a closing summary; no dialogue at info level.
        rest = [t for t in texts if t not in connects and t not in msgs and t not in ended]
        self.assertLessEqual(len(rest), 1, rest)
        self.assertNotIn(b"EHLO", log)
        self.assertNotIn(b"RCPT", log)
        self.assertNotIn(b" debug: ", log)
        self.assertEqual(len(re.findall(rb"\] connect from ", log)), 2)

    def test_debug_dialogue_escaped(self):
        srv = self.start("-d")
        c = self.raw(srv.port)
        c.reply()
        sid = self.session_id(srv, c)
        self.assertEqual(c.command("EHLO esc.example.com")[0], 250)
        # Invalid UTF-8: refused, and logged escaped.
        code, _ = c.command(b"NOOP \x01\x07\x1b[2J\x7f\\ caf\xc3\xa9 \xff\xfe \xc3( \x80")
        self.assertEqual(code, 500)
        # Valid UTF-8 with control characters: accepted (NOOP ignores its
        # argument), still logged escaped.
        code, _ = c.command(b"NOOP tab\there cr\rhere esc\x1b[31m red")
        self.assertEqual(code, 250)
        self.assertEqual(c.command("QUIT")[0], 221)
        self.assertTrue(c.closed_by_peer())
        self.assertEqual(srv.stop(), 0)
        log = srv.stderr()
        self.assertLogLines(log)
        lines = session_lines(log, sid)
        texts = [t.decode("utf-8") for _, t in lines]
        debug = [t for level, t in zip([l for l, _ in lines], texts) if level == b"debug"]
        # The whole dialogue, both ways.
        self.assertIn("< EHLO esc.example.com", debug)
        self.assertTrue(any(t.startswith("> 220 ") for t in debug), debug)
        self.assertTrue(any(t.startswith("> 250-") for t in debug), debug)
        self.assertIn("< QUIT", debug)
        self.assertTrue(any(t.startswith("> 221 ") for t in debug), debug)
        low = [t.lower() for t in debug]
        self.assertIn(r"< noop \x01\x07\x1b[2j\x7f\\ café \xff\xfe \xc3( \x80", low, debug)
        self.assertIn(r"< noop tab\x09here cr\x0dhere esc\x1b[31m red", low, debug)
        self.assertTrue(any(t.startswith("> 500 ") for t in debug), debug)

    def test_debug_c1_controls_escaped(self):
        # U+0080..U+009F are control characters too (C1; U+009B is CSI, which
        # terminals obey like ESC [). Valid UTF-8, but must not reach the log raw.
        srv = self.start("-d")
        c = self.raw(srv.port)
        c.reply()
        self.assertEqual(c.command(b"NOOP csi\xc2\x9b31m nel\xc2\x85end")[0], 250)
        self.assertEqual(c.command("QUIT")[0], 221)
        self.assertTrue(c.closed_by_peer())
        srv.stop()
        log = srv.stderr()
        self.assertIn(b"< NOOP csi", log)
        self.assertNotIn(b"\xc2\x9b", log)
        self.assertNotIn(b"\xc2\x85", log)
        self.assertLogLines(log)


if __name__ == "__main__":
    main()
