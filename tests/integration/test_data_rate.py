"""integ_data_rate: --min-data-rate, 500 bytes/s by default after 10 s of DATA.

A client that sends its message data at 4 bytes/s gets "421 4.4.2" and is
disconnected about 10 s after the 354 (the first check after the 10 s of
grace); with --min-data-rate 0 the same client is not cut off within 14 s
and its message is taken. Both clients run at the same time (this file
takes about 15 s).
"""

import select
import threading
import time

from smtpd_harness import SmtpdTestCase, main
from smtpdtest import SLOW

INTERVAL = 0.25  # one byte every 0.25 s: 4 bytes/s, far below 500


def trickle(c, limit):
    """Send one byte every INTERVAL seconds until a reply line comes or
    limit seconds pass. Returns (reply or None, seconds taken, bytes sent)."""
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < limit:
        readable, _, _ = select.select([c.sock], [], [], INTERVAL)
        if readable:
            return c.reply(timeout=5), time.monotonic() - start, sent
        try:
            c.sock.sendall(b"y")
        except OSError:  # closed on us: the reply must be there
            return c.reply(timeout=5), time.monotonic() - start, sent
        sent += 1
    return None, time.monotonic() - start, sent


class DataRateTest(SmtpdTestCase):

    def open_data(self, srv):
        c = self.raw(srv.port, timeout=30)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command("EHLO slow.example.com")[0], 250)
        self.assertEqual(c.command("MAIL FROM:<slow@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<r@example.com>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        return c

    def test_slow_client_cut_off_by_default_not_with_zero(self):
        default = self.start()
        off = self.start("--min-data-rate", "0")
        results = {}

        def run(name, srv, limit):
            try:
                c = self.open_data(srv)
                results[name] = trickle(c, limit) + (c,)
            except BaseException as e:  # reported below, not lost in the thread
                results[name] = e

        threads = [threading.Thread(target=run, args=("default", default, 16.0 * SLOW)),
                   threading.Thread(target=run, args=("off", off, 14.0))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40 * SLOW)
        for name in ("default", "off"):
            if isinstance(results.get(name), BaseException):
                raise results[name]
            self.assertIn(name, results, "the %s client did not finish" % name)

        reply, took, sent, c = results["default"]
        print("\ndefault --min-data-rate: %r after %.1f s of DATA (%d bytes)" % (reply, took, sent))
        self.assertIsNotNone(reply, "a client sending 4 bytes/s in DATA was not cut off within "
                             "%.1f s" % took)
        code, text = reply
        self.assertEqual(code, 421, text)
        self.assertTrue(text[0].startswith("4.4.2 "), text)
        self.assertGreaterEqual(took, 9.5, "cut off before the 10 s of grace")
        self.assertLess(took, 12.5 * SLOW, "cut off too late")
        self.assertTrue(c.closed_by_peer(5 * SLOW), "still connected after the 421")
        default.wait_stderr(rb"\] data too slow from 127\.0\.0\.1\n")
        self.assertEqual(default.stdout(), b"")

        reply, took, sent, c = results["off"]
        print("--min-data-rate 0: %r after %.1f s of DATA (%d bytes)" % (reply, took, sent))
        self.assertIsNone(reply, "--min-data-rate 0 cut the client off after %.1f s" % took)
        c.send(b"\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        (m,) = off.wait_messages(1)
        self.assertMessage(m, b"y" * sent + b"\r\n", mail_from="slow@example.com",
                           rcpt_tos=["r@example.com"])
        self.assertNotIn(b"data too slow", off.stderr())


if __name__ == "__main__":
    main()
