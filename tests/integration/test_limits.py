"""integ_limits: --max-connections, --command-timeout, --data-timeout, -s,
--max-recipients."""

import time

from smtpd_harness import SmtpdTestCase, main


class ConnectionLimitTest(SmtpdTestCase):

    def test_third_client_gets_421(self):
        srv = self.start("--max-connections", "2")
        a = self.raw(srv.port)
        b = self.raw(srv.port)
        self.assertEqual(a.reply()[0], 220)
        self.assertEqual(b.reply()[0], 220)
        c = self.raw(srv.port)
        code, text = c.reply()
        self.assertEqual(code, 421, text)
        self.assertTrue(text[0].startswith("4.3.2 "), text)
        self.assertTrue(c.closed_by_peer())
        # The two admitted clients are served as usual.
        self.assertEqual(a.command("EHLO a.example.com")[0], 250)
        self.assertEqual(b.command("NOOP")[0], 250)
        # When one leaves, a new client is admitted.
        self.assertEqual(a.command("QUIT")[0], 221)
        self.assertTrue(a.closed_by_peer())
        d = self.raw(srv.port)
        self.assertEqual(d.reply()[0], 220)
        self.assertEqual(d.command("QUIT")[0], 221)
        srv.wait_stderr(rb"connection refused")


    def test_per_ip_limit(self):
        srv = self.start("--max-connections-per-ip", "1")
        a = self.raw(srv.port)
        self.assertEqual(a.reply()[0], 220)
        b = self.raw(srv.port)
        code, text = b.reply()
        self.assertEqual(code, 421, text)
        self.assertTrue(text[0].startswith("4.3.2 "), text)
        self.assertTrue(b.closed_by_peer())
        # Another address of the loopback network is another client.
        other = self.raw(srv.port, source="127.0.0.2")
        self.assertEqual(other.reply()[0], 220)
        self.assertEqual(other.command("QUIT")[0], 221)


class ErrorBudgetTest(SmtpdTestCase):

    def test_max_errors(self):
        srv = self.start("--max-errors", "3")
        c = self.raw(srv.port)
        c.reply()
        self.assertEqual(c.command("EHLO x.example.com")[0], 250)
        self.assertEqual(c.command("BOGUS")[0], 500)
        self.assertEqual(c.command("NOOP")[0], 250)  # good commands do not count
        self.assertEqual(c.command("RCPT TO:<a@example.com>")[0], 503)
        code, text = c.command("ALSO BOGUS")
        # The third error is answered, then the budget is spent.
        self.assertEqual(code, 500, text)
        code, text = c.reply()
        self.assertEqual(code, 421, text)
        self.assertTrue(text[0].startswith("4.7.0 "), text)
        self.assertTrue(c.closed_by_peer())

    def test_default_budget_is_ten(self):
        srv = self.start()
        c = self.raw(srv.port)
        c.reply()
        for _ in range(9):
            self.assertEqual(c.command("BOGUS")[0], 500)
        self.assertEqual(c.command("NOOP")[0], 250)
        self.assertEqual(c.command("BOGUS")[0], 500)
        self.assertEqual(c.reply()[0], 421)
        self.assertTrue(c.closed_by_peer())


class TimeoutTest(SmtpdTestCase):

    def assertTimesOut(self, c, low, high, enhanced=True):
        t0 = time.monotonic()
        code, text = c.reply()
        elapsed = time.monotonic() - t0
        self.assertEqual(code, 421, text)
        if enhanced:
            self.assertTrue(text[0].startswith("4.4.2 "), text)
        self.assertTrue(c.closed_by_peer(), "still connected after the 421")
        self.assertGreaterEqual(elapsed, low)
        self.assertLess(elapsed, high)

    def test_idle_client(self):
        srv = self.start("--command-timeout", "1")
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command("EHLO x.example.com")[0], 250)
        self.assertTimesOut(c, 0.5, 4)
        srv.wait_stderr(rb"timeout from 127\.0\.0\.1")

    def test_idle_client_before_ehlo(self):
        # Enhanced codes only after EHLO (RFC 2034 3), but the 421 all the same.
        srv = self.start("--command-timeout", "1")
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertTimesOut(c, 0.5, 4, enhanced=False)

    def test_each_command_restarts_the_timer(self):
        srv = self.start("--command-timeout", "2")
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command("EHLO x.example.com")[0], 250)
        # Four commands 1 s apart: 4 s in all, never 2 s idle (1 s of slack
        # for a slow smtpd each time).
        for _ in range(4):
            time.sleep(1.0)
            self.assertEqual(c.command("NOOP")[0], 250)
        self.assertTimesOut(c, 1.5, 6)

    def test_silent_during_data(self):
        srv = self.start("--command-timeout", "30", "--data-timeout", "1")
        c = self.raw(srv.port)
        c.reply()
        c.command("EHLO x.example.com")
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<b@example.com>")
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: never finished\r\n\r\npartial")
        self.assertTimesOut(c, 0.7, 4)
        self.assertEqual(srv.messages(), [])


class SizeLimitTest(SmtpdTestCase):

    def test_size_option(self):
        srv = self.start("-s", "1000")
        s = self.smtp(srv.port)
        s.ehlo("x.example.com")
        self.assertEqual(s.esmtp_features.get("size"), "1000")
        # Declared too big at MAIL (RFC 1870): 552.
        self.assertEqual(s.mail("a@example.com", ["SIZE=1001"])[0], 552)
        # Found too big after DATA: 552, and the session goes on in
        # command state (DESIGN.md, unlike smtpd.py).
        self.assertEqual(s.mail("a@example.com")[0], 250)
        self.assertEqual(s.rcpt("b@example.com")[0], 250)
        code, _ = s.data(b"Subject: big\r\n\r\n" + b"z" * 2000 + b"\r\n")
        self.assertEqual(code, 552)
        self.assertEqual(s.noop()[0], 250)
        ok = b"Subject: small\r\n\r\nfits\r\n"
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], ok), {})
        s.quit()
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, ok, ["SIZE=%d" % len(ok)])

    def test_size_zero_means_no_limit(self):
        srv = self.start("-s", "0")
        s = self.smtp(srv.port)
        s.ehlo("x.example.com")
        self.assertNotIn("size", s.esmtp_features)
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"],
                                    b"Subject: any\r\n\r\n" + b"q" * 50000 + b"\r\n"), {})
        srv.wait_messages(1)


class RecipientLimitTest(SmtpdTestCase):

    def test_max_recipients(self):
        srv = self.start("--max-recipients", "3")
        c = self.raw(srv.port)
        c.reply()
        c.command("EHLO x.example.com")
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
        for i in range(3):
            self.assertEqual(c.command("RCPT TO:<r%d@example.com>" % i)[0], 250)
        # The 4th (and every later one) is refused, 452 4.5.3 (RFC 5321
        # 4.5.3.1.10); the transaction goes on with the three.
        for i in (3, 4):
            code, text = c.command("RCPT TO:<r%d@example.com>" % i)
            self.assertEqual(code, 452, text)
            self.assertTrue(text[0].startswith("4.5.3 "), text)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: three\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        # The count is per transaction: the next one has three again.
        self.assertEqual(c.command("MAIL FROM:<b@example.com>")[0], 250)
        for i in range(3):
            self.assertEqual(c.command("RCPT TO:<s%d@example.com>" % i)[0], 250)
        self.assertEqual(c.command("RCPT TO:<s3@example.com>")[0], 452)
        # RSET starts afresh too.
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertEqual(c.command("MAIL FROM:<c@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<t0@example.com>")[0], 250)
        self.assertEqual(c.command("QUIT")[0], 221)
        (m,) = srv.wait_messages(1)
        self.assertEqual(m["rcpt_tos"], ["r0@example.com", "r1@example.com", "r2@example.com"])

    def test_smtplib_sees_the_refusal(self):
        srv = self.start("--max-recipients", "1")
        s = self.smtp(srv.port)
        refused = s.sendmail("a@example.com", ["one@example.com", "two@example.com"],
                             b"Subject: one\r\n\r\nx\r\n")
        self.assertEqual(list(refused), ["two@example.com"])
        self.assertEqual(refused["two@example.com"][0], 452)
        s.quit()
        (m,) = srv.wait_messages(1)
        self.assertEqual(m["rcpt_tos"], ["one@example.com"])

    def test_default_is_1000(self):
        srv = self.start()
        c = self.raw(srv.port, timeout=30)
        c.reply()
        c.command("EHLO x.example.com")
        c.send(b"MAIL FROM:<a@example.com>\r\n" +
               b"".join(b"RCPT TO:<r%d@example.com>\r\n" % i for i in range(1001)))
        self.assertEqual(c.reply()[0], 250)
        codes = [c.reply()[0] for _ in range(1001)]
        self.assertEqual(codes, [250] * 1000 + [452])


if __name__ == "__main__":
    main()
