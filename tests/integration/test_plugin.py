"""integ_plugin: a handler loaded as a shared object (-c examples/counter.so)."""

import re

from smtpd_harness import EX_USAGE, SmtpdTestCase, counter_so, main, run_smtpd

OK_RE = r"^2\.0\.0 OK message %d \((\d+) bytes\)$"


class CounterPluginTest(SmtpdTestCase):

    def send(self, c, sender, data):
        """One transaction on a RawClient; returns the replies' codes and
        the last reply."""
        self.assertEqual(c.command("MAIL FROM:<%s>" % sender)[0], 250)
        self.assertEqual(c.command("RCPT TO:<r@example.com>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(data + b".\r\n")
        return c.reply()

    def test_counts_messages(self):
        srv = self.start(cls=counter_so())
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command("EHLO counter.example.com")[0], 250)
        for n in (1, 2, 3):
            data = b"Subject: %d\r\n\r\n" % n + b"x" * (10 * n) + b"\r\n"
            code, text = self.send(c, "s@example.com", data)
            self.assertEqual(code, 250, text)
            m = re.match(OK_RE % n, text[0])
            self.assertTrue(m, text)
            self.assertEqual(int(m.group(1)), len(data))
        self.assertEqual(c.command("QUIT")[0], 221)
        # One counter per loaded handler: a second client goes on counting.
        c2 = self.raw(srv.port)
        c2.reply()
        c2.command("HELO second.example.com")
        code, text = self.send(c2, "s@example.com", b"hi\r\n")
        self.assertEqual(code, 250)
        # Without EHLO there is no enhanced status code (RFC 2034).
        self.assertEqual(text, ["OK message 4 (4 bytes)"])
        # The plugin, not DebuggingServer, handled them.
        self.assertEqual(srv.stdout(), b"")
        srv.wait_stderr(rb"message from=<s@example.com> to=<r@example.com> size=4 reply=250")

    def test_blocked_sender(self):
        srv = self.start(cls=counter_so())
        c = self.raw(srv.port)
        c.reply()
        c.command("EHLO counter.example.com")
        code, text = c.command("MAIL FROM:<blocked@example.com>")
        self.assertEqual(code, 550)
        self.assertTrue(text[0].startswith("5.7.1 "), text)
        # The refused MAIL started no transaction ...
        self.assertEqual(c.command("RCPT TO:<r@example.com>")[0], 503)
        # ... and the session goes on.
        code, text = self.send(c, "fine@example.com", b"ok\r\n")
        self.assertEqual(code, 250)
        self.assertRegex(text[0], OK_RE % 1)

    def test_limit_argument(self):
        # examples/counter.c: `smtpd -n -c counter.so localhost:8025 [LIMIT]`;
        # smtpd.h: the plugin gets the positional arguments after
        # localhost:port.
        srv = self.start(cls=counter_so(), extra=["2"])
        c = self.raw(srv.port)
        c.reply()
        c.command("EHLO counter.example.com")
        for n in (1, 2):
            code, text = self.send(c, "s@example.com", b"m%d\r\n" % n)
            self.assertEqual(code, 250, text)
            self.assertRegex(text[0], OK_RE % n)
        code, text = self.send(c, "s@example.com", b"m3\r\n")
        self.assertEqual(code, 452, "LIMIT 2 given after localhost:port, but message 3 got %r"
                         % text)
        self.assertTrue(text[0].startswith("4.3.1 "), text)
        # Refused, still no message lost from the count: the next is refused too.
        code, text = self.send(c, "s@example.com", b"m4\r\n")
        self.assertEqual(code, 452)
        srv.wait_stderr(rb"reply=452")

    def test_missing_shared_object(self):
        r = run_smtpd(["-n", "-c", "/nonexistent/dir/handler.so", "127.0.0.1:0"])
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)
        lines = r.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("/nonexistent/dir/handler.so", lines[0])


if __name__ == "__main__":
    main()
