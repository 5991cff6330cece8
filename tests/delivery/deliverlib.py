"""What the delivery tests share: sending with smtplib and what a message
looks like once delivered (LF line ends, Return-Path and Delivered-To
prepended)."""

import os
import smtplib
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
from smtpdtest import SLOW, Smtpd, TestCase, main, paths, wait_until  # noqa: E402,F401


def message(subject, body=b"body\r\n", extra=b""):
    """A message as sent: CRLF line ends, bytes."""
    return (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: " + subject.encode() +
            b"\r\n" + extra + b"\r\n" + body)


def delivered(data, sender="a@example.com", rcpt="b@example.com"):
    """What a local file holds for message data: LF, the trace fields."""
    return (b"Return-Path: <" + sender.encode() + b">\nDelivered-To: " + rcpt.encode() +
            b"\n" + data.replace(b"\r\n", b"\n"))


def send(port, data, sender="a@example.com", rcpts=("b@example.com",), timeout=30):
    """Send one message; return the reply (code, text) to the end of data."""
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout * SLOW) as c:
        c.ehlo("client.example")
        code, text = c.mail(sender, ["BODY=8BITMIME"])
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = c.rcpt(r)
            assert code == 250, (code, text)
        return c.data(data)


class DeliveryCase(TestCase):
    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="smtpd-delivery-", dir="/var/tmp")
        self.addCleanup(lambda: os.system("rm -rf '%s'" % d))
        return d
