"""auth_later: an on_auth that answers late (SMTPD_PENDING, then a libevent
timer of the plugin tests/plugins/auth_later.c on the program's event loop)
does not hold up the server.

  - while one client waits for its AUTH answer, a second client's greeting,
    EHLO, NOOP and a whole message are answered promptly (each reply well
    under the plugin's 1 s); then the first gets 235 after about 1 s and
    sends a message, logged with its identity;
  - a wrong password gets 535 5.7.8 after the timer plus the failure delay
    (1 s), so about 2 s;
  - clients that disconnect (or reset) while their answer is pending, or
    during the failure delay, do not crash the server: their sessions end
    and the server keeps serving (a pending session reads nothing, so the
    end is seen after the answer; on_close would cancel a timer still
    armed).

    test_later.py --smtpd PATH --plugin PATH   (or --tp-auth-later PATH)
"""

import base64
import os
import socket
import ssl
import struct
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
sys.path.insert(0, os.path.join(HERE, "..", "tls"))
from smtpdtest import RawClient, SLOW, Smtpd, paths, take_path_args  # noqa: E402
import tlslib  # noqa: E402

DELAY = 1.0 * SLOW       # the plugin's timer (its argument, in ms below)
FAILURE_DELAY = 1.0      # smtpd's first failure delay (auth_failure_delay)
PROMPT = 0.3 * SLOW      # "at once": well under the plugin's delay
MESSAGE = "Subject: later\r\n\r\nbody\r\n.\r\n"


def plain(user, password):
    return base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()


def plugin_path():
    p = paths.get("plugin") or paths.get("tp-auth-later")
    if not p or not os.access(p, os.R_OK):
        raise AssertionError("tp_auth_later.so not given: pass --plugin PATH")
    return os.path.abspath(p)


class Client(RawClient):
    """RawClient with STARTTLS against the test CA."""

    def __init__(self, port, ca, **kw):
        super().__init__(port, **kw)
        self.ca = ca

    def timed(self, line):
        """Send a command: (code, texts, seconds until its reply)."""
        t0 = time.monotonic()
        code, texts = self.command(line)
        return code, texts, time.monotonic() - t0

    def to_tls(self):
        code, _ = self.reply()
        assert code == 220, code
        code, _ = self.command("EHLO client.example")
        assert code == 250, code
        code, text = self.command("STARTTLS")
        assert code == 220, (code, text)
        ctx = ssl.create_default_context(cafile=self.ca)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        code, lines = self.command("EHLO client.example")
        assert code == 250, code
        return [l.split(" ", 1)[0].upper() for l in lines[1:]]


class LaterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tlslib.Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def setUp(self):
        self.srv = Smtpd("--tls-cert", self.certs.cert, "--tls-key", self.certs.key,
                         cls=plugin_path(), extra=[str(int(DELAY * 1000))])
        self.addCleanup(self.srv.close)

    def client(self, tls=True):
        c = Client(self.srv.port, self.certs.ca, timeout=10 * SLOW + 10)
        self.addCleanup(c.close)
        if tls:
            self.assertIn("AUTH", c.to_tls())
        return c

    def send_message(self, c):
        for line, want in (("MAIL FROM:<alice@example.org>", 250),
                           ("RCPT TO:<bob@example.com>", 250), ("DATA", 354)):
            code, text = c.command(line)
            self.assertEqual(code, want, (line, text))
        c.send(MESSAGE)
        code, text = c.reply()
        self.assertEqual(code, 250, text)

    def assert_serving(self):
        """A new client is served: greeting, EHLO, a successful AUTH."""
        self.assertTrue(self.srv.alive(), self.srv.stderr_text())
        c = self.client()
        code, text = c.command("AUTH PLAIN " + plain("alice", "s3cret"))
        self.assertEqual(code, 235, text)
        c.command("QUIT")

    def test_other_client_served_while_answer_pending(self):
        first = self.client()
        t0 = time.monotonic()
        first.send("AUTH PLAIN %s\r\n" % plain("alice", "s3cret"))
        # Meanwhile a second client, in plaintext, gets every reply at once.
        second = Client(self.srv.port, self.certs.ca, timeout=10 * SLOW + 10)
        self.addCleanup(second.close)
        t = time.monotonic()
        code, _ = second.reply()
        self.assertEqual(code, 220)
        self.assertLess(time.monotonic() - t, PROMPT)
        for line, want in (("EHLO second.example", 250), ("NOOP", 250),
                           ("MAIL FROM:<carol@example.org>", 250),
                           ("RCPT TO:<dave@example.com>", 250), ("DATA", 354)):
            code, text, took = second.timed(line)
            self.assertEqual(code, want, (line, text))
            self.assertLess(took, PROMPT, line)
        t = time.monotonic()
        second.send(MESSAGE)
        code, text = second.reply()
        self.assertEqual(code, 250, text)
        self.assertLess(time.monotonic() - t, PROMPT)
        # All of that happened while the first still waited.
        self.assertLess(time.monotonic() - t0, DELAY * 0.9)
        code, text = first.reply()
        waited = time.monotonic() - t0
        self.assertEqual(code, 235, text)
        self.assertEqual(text, ["2.7.0 Authentication successful"])
        self.assertGreaterEqual(waited, DELAY * 0.95)
        self.assertLess(waited, DELAY + 2 * SLOW)
        self.send_message(first)
        self.srv.wait_stderr(rb"tp_auth_later: message from alice")
        self.srv.wait_stderr(rb"tp_auth_later: message from nobody")
        self.assertEqual(second.command("QUIT")[0], 221)
        self.assertEqual(first.command("QUIT")[0], 221)

    def test_wrong_password_after_timer_and_failure_delay(self):
        c = self.client()
        code, text, took = c.timed("AUTH PLAIN " + plain("alice", "wrong"))
        self.assertEqual(code, 535, text)
        self.assertTrue(text[0].startswith("5.7.8 "), text)
        # The timer, then the first failure delay (1 s).
        self.assertGreaterEqual(took, DELAY + FAILURE_DELAY * 0.95)
        self.assertLess(took, DELAY + FAILURE_DELAY + 2 * SLOW)
        # Not authenticated: a correct AUTH now works (after its timer).
        code, text, took = c.timed("AUTH LOGIN " + base64.b64encode(b"alice").decode())
        self.assertEqual(code, 334, text)
        self.assertLess(took, PROMPT)
        code, text, took = c.timed(base64.b64encode(b"s3cret").decode())
        self.assertEqual(code, 235, text)
        self.assertGreaterEqual(took, DELAY * 0.95)
        self.assertLess(took, DELAY + 2 * SLOW)

    def test_disconnect_while_answer_pending(self):
        for _ in range(5):
            c = self.client()
            c.send("AUTH PLAIN %s\r\n" % plain("alice", "s3cret"))
            time.sleep(0.05)
            c.close()
        # A reset instead of a close (SO_LINGER 0) while pending.
        c = self.client()
        c.send("AUTH PLAIN %s\r\n" % plain("alice", "s3cret"))
        time.sleep(0.05)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        # The session reads nothing while the answer is pending, so it sees
        # the end of the connection once the timer has answered: all six
        # sessions end, and the server goes on.
        deadline = time.monotonic() + DELAY + 5 * SLOW
        while (self.srv.stderr().count(b"disconnect from 127.0.0.1") < 6
               and time.monotonic() < deadline):
            time.sleep(0.1)
        self.assertGreaterEqual(self.srv.stderr().count(b"disconnect from 127.0.0.1"), 6,
                                self.srv.stderr_text())
        self.assert_serving()

    def test_disconnect_during_failure_delay(self):
        c = self.client()
        c.send("AUTH PLAIN %s\r\n" % plain("alice", "wrong"))
        # The timer answers 535, which smtpd holds for the failure delay.
        time.sleep(DELAY + FAILURE_DELAY / 2)
        c.close()
        time.sleep(FAILURE_DELAY)
        self.assert_serving()


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + take_path_args(sys.argv[1:],
                                                      ("smtpd", "plugin", "tp-auth-later")),
                  verbosity=2)
