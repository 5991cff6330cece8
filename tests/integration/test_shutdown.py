"""integ_shutdown: SIGTERM and SIGINT stop the server gracefully."""

import signal
import time

from smtpd_harness import SmtpdTestCase, main


class ShutdownTest(SmtpdTestCase):

    def greeted(self, srv, verb="EHLO"):
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command(verb + " client.example.com")[0], 250)
        return c

    def test_sigterm_idle_client_gets_421(self):
        srv = self.start()
        c = self.greeted(srv)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        code, text = c.reply()
        self.assertEqual(code, 421, text)
        self.assertTrue(text[0].startswith("4.3.2 "), text)
        self.assertTrue(c.closed_by_peer())
        self.assertEqual(srv.wait(10), 0, srv.stderr_text())
        # Idle clients do not wait for the grace period.
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn(b"SIGTERM", srv.stderr())

    def test_sigint_idle_clients(self):
        srv = self.start()
        a = self.greeted(srv)
        b = self.raw(srv.port)  # connected, greeted by the server only
        self.assertEqual(b.reply()[0], 220)
        srv.signal(signal.SIGINT)
        for c in (a, b):
            self.assertEqual(c.reply()[0], 421)
            self.assertTrue(c.closed_by_peer())
        self.assertEqual(srv.wait(10), 0, srv.stderr_text())

    def test_sigterm_during_data_lets_transfer_finish(self):
        srv = self.start()
        c = self.greeted(srv)
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<b@example.com>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        part1 = b"Subject: interrupted\r\n\r\nfirst half\r\n"
        c.send(part1)
        idle = self.greeted(srv)
        srv.signal(signal.SIGTERM)
        srv.wait_stderr(rb"shutting down")
        # The idle client is let go at once, the one in DATA is not.
        self.assertEqual(idle.reply()[0], 421)
        self.assertTrue(idle.closed_by_peer())
        time.sleep(0.3)
        # Still running, still waiting for the rest of the data.
        self.assertIsNone(srv.proc.poll(), srv.stderr_text())
        part2 = b"second half\r\n" + b"y" * 100000 + b"\r\n"
        c.send(part2 + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        # Then the server says goodbye and leaves.
        code, text = c.reply()
        self.assertEqual(code, 421, text)
        self.assertTrue(c.closed_by_peer())
        self.assertEqual(srv.wait(10), 0, srv.stderr_text())
        (m,) = srv.messages()
        self.assertMessage(m, part1 + part2)

    def test_sigterm_mid_transaction_before_data(self):
        srv = self.start()
        c = self.greeted(srv)
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
        srv.signal(signal.SIGTERM)
        srv.wait_stderr(rb"shutting down")
        self.assertEqual(c.command("RCPT TO:<b@example.com>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: late\r\n\r\nstill delivered\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 421)
        self.assertTrue(c.closed_by_peer())
        self.assertEqual(srv.wait(10), 0, srv.stderr_text())
        self.assertEqual(len(srv.messages()), 1)

    def test_sigterm_no_clients(self):
        srv = self.start()
        self.assertEqual(srv.stop(5), 0, srv.stderr_text())


if __name__ == "__main__":
    main()
