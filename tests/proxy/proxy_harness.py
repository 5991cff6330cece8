"""What the PROXY protocol tests share.

Each test_*.py here is one CTest test (proxy_<topic>), run as

    /usr/bin/python3 -B test_<topic>.py --smtpd PATH/smtpd

Every test starts its own servers on loopback free ports (smtpd, the
aiosmtpd recorder, HAProxy with a configuration written for the test) and
stops them again. A missing tool is a failure, never a skip.

From tests/pylib/smtpdtest.py (starting smtpd, the recorder, the raw
client) and tests/tls/tlslib.py (certificates made for the run); added
here: TlsFiles, a certificate pair for one test, and DialogueTestCase, a
transaction on a raw client and the DebuggingServer output it printed.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
sys.path.insert(0, os.path.join(HERE, "..", "tls"))
import smtpdtest  # noqa: E402
import tlslib  # noqa: E402
from smtpdtest import (SLOW, Recorder, RawClient, Smtpd, TestCase, free_port, need,  # noqa: E402,F401
                       smtpd_bin, stop_process, wait_port, wait_until)


def main():
    smtpdtest.main()


class TlsFiles:
    """A certificate for localhost and 127.0.0.1 and its key (cert, key),
    made for one test and removed after it."""

    def __init__(self, test):
        certs = tlslib.Certs()
        test.addCleanup(certs.cleanup)
        self.cert, self.key = certs.cert, certs.key
        self.ca = certs.ca


class DialogueTestCase(TestCase):

    def transaction(self, c, subject, rcpt="bob@example.com"):
        """MAIL, RCPT, DATA on greeted client c: the reply to the final dot,
        or the RCPT reply when that is not 250."""
        self.assertEqual(c.command("MAIL FROM:<alice@example.org>")[0], 250)
        code, text = c.command("RCPT TO:<%s>" % rcpt)
        if code != 250:
            return code, text
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: " + subject.encode() + b"\r\n\r\nhello\r\n.\r\n")
        return c.reply()

    def printed(self, srv, subject, timeout=5 * SLOW):
        """The DebuggingServer output block of the message with this subject."""
        def block():
            for b in srv.stdout().split(b"---------- MESSAGE FOLLOWS ----------"):
                if b"Subject: " + subject.encode() in b:
                    return b
        found = wait_until(block, timeout, 0.05)
        self.assertIsNotNone(found, "message %r not printed:\n%r" % (subject, srv.stdout()))
        return found
