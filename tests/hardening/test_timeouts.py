"""hard_timeouts: slow clients are cut off (slowloris), fast ones are not.

  * --command-timeout 2: a client that trickles one byte every 0.3 s of a
    command line that never ends gets "421 4.4.2" about 2 s after its last
    complete command (never later than 4 s), then the connection closes. The
    timeout is the time to send a whole command line (smtpd.h: "Seconds a
    client may take to send the next command line"), not the time between
    two bytes.
  * --min-data-rate 1000: a client that sends 10 bytes/s in DATA gets
    "421 4.4.2" some seconds after the 10 s grace; a client that keeps
    2000 bytes/s at the same time gets its message through.
"""

import select
import socket
import threading
import time

from hardlib import HardTestCase, main, send_mail_smtplib


def trickle_until_reply(c, data, interval, limit):
    """Send @data one byte every @interval seconds until a reply line comes
    or @limit seconds pass. Returns (reply line or None, seconds taken,
    bytes sent)."""
    start = time.monotonic()
    sent = 0
    c.sock.setblocking(False)
    buf = b""
    try:
        while time.monotonic() - start < limit:
            if sent < len(data):
                try:
                    c.sock.send(data[sent:sent + 1])
                    sent += 1
                except (BrokenPipeError, ConnectionResetError):
                    pass
            deadline = time.monotonic() + interval
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                r, _, _ = select.select([c.sock], [], [], left)
                if not r:
                    continue
                try:
                    chunk = c.sock.recv(4096)
                except (ConnectionResetError, BlockingIOError):
                    chunk = b""
                if not chunk:
                    return (buf or None), time.monotonic() - start, sent
                buf += chunk
                if b"\r\n" in buf:
                    return buf.split(b"\r\n")[0], time.monotonic() - start, sent
    finally:
        c.sock.setblocking(True)
    return None, time.monotonic() - start, sent


class TimeoutTest(HardTestCase):

    def test_command_trickle_cut_after_timeout(self):
        srv = self.start("--command-timeout", "2")
        results = {}

        def run(name, greet):
            c = self.raw(srv.port)
            code, _ = c.reply()
            if greet:
                c.send(b"EHLO trickle.example\r\n")
                code, _ = c.reply()
            # The clock starts at the last complete command (or the greeting).
            line = b"NOOP " + b"x" * 60 + b"\r\n"
            results[name] = trickle_until_reply(c, line, 0.3, 8.0) + (c,)

        threads = [threading.Thread(target=run, args=("after EHLO", True)),
                   threading.Thread(target=run, args=("before EHLO", False))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        for name, (line, took, sent, c) in results.items():
            print("\ntrickling client (%s): %r after %.1f s (%d bytes)" % (name, line, took, sent))
            with self.subTest(client=name):
                self.assertIsNotNone(line, "a client trickling one byte every 0.3 s was not cut "
                                     "off within %.1f s by --command-timeout 2 (%d bytes sent)"
                                     % (took, sent))
                if name == "after EHLO":
                    self.assertTrue(line.startswith(b"421 4.4.2"), line)
                else:  # no enhanced codes before EHLO (RFC 2034)
                    self.assertTrue(line.startswith(b"421"), line)
                self.assertGreaterEqual(took, 1.5, "cut off too early: %.2f s" % took)
                self.assertLessEqual(took, 4.0, "cut off too late: %.2f s" % took)
                self.assertTrue(c.closed_by_peer(3), "connection left open after the 421")
        # The server still serves.
        send_mail_smtplib(srv.port, "after-trickle")
        self.assertEqual(srv.wait_messages(1, 10), 1)

    def test_min_data_rate(self):
        srv = self.start("--min-data-rate", "1000")
        out = {}

        def open_data(c):
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.command("EHLO rate.example")[0], 250)
            self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.command("RCPT TO:<b@example.net>")[0], 250)
            self.assertEqual(c.command("DATA")[0], 354)

        def slow():
            c = self.raw(srv.port)
            open_data(c)
            c.send(b"Subject: slow\r\n\r\n")
            # 10 bytes per second (one every 0.1 s), for at most 15 s.
            out["slow"] = trickle_until_reply(c, b"y" * 200, 0.1, 15.0) + (c,)

        def fast():
            c = self.raw(srv.port)
            open_data(c)
            c.send(b"Subject: fast\r\n\r\n")
            start = time.monotonic()
            n = 0
            while time.monotonic() - start < 12.5:
                c.send(b"z" * 198 + b"\r\n")  # 2000 bytes/s
                n += 1
                time.sleep(0.1)
            c.send(b".\r\n")
            out["fast"] = c.reply(timeout=10), n

        threads = [threading.Thread(target=slow), threading.Thread(target=fast)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        line, took, sent, c = out["slow"]
        print("\n10 bytes/s client: %r after %.1f s of DATA (%d bytes)" % (line, took, sent))
        self.assertIsNotNone(line, "a client sending 10 bytes/s in DATA was not cut off "
                             "within %.1f s by --min-data-rate 1000" % took)
        self.assertTrue(line.startswith(b"421 4.4.2"), line)
        self.assertGreaterEqual(took, 9.0, "cut off before the 10 s grace: %.2f s" % took)
        self.assertLessEqual(took, 13.5, "cut off too late: %.2f s" % took)
        self.assertTrue(c.closed_by_peer(3))
        (code, text), lines = out["fast"]
        self.assertEqual(code, 250, "a client keeping 2000 bytes/s was refused: %r" % text)
        self.assertEqual(srv.wait_messages(1, 10), 1)
        self.assertNotIn(b"Subject: slow", srv.stdout())


if __name__ == "__main__":
    main()
