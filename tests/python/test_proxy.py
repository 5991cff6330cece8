"""python_proxy: PureProxy of the Python module, relaying to an upstream.

The upstream is tests/pylib/recorder.py (aiosmtpd) through
smtpdtest.Recorder: it journals each message, refuses recipients whose
local part starts with "reject" (550 5.1.1) or "defer" (450 4.2.1).

  * In-process smtpd.PureProxy(('127.0.0.1', 0), ('127.0.0.1', UP)): the
    message arrives with its envelope and data (X-Peer added), 8-bit data
    and BODY=8BITMIME passed on, several messages on one connection.
  * An upstream refusal reaches the client with the upstream's code.
  * An unreachable upstream is 451 for the client, never 250.
  * The same through `python -m smtpd -n -c PureProxy LOCAL UPSTREAM`, with
    swaks as the client.
"""

import smtplib
import subprocess
import uuid

import pyharness
from pyharness import QUICK, Recorder, ServerTestCase, smtpd


def message(tag, body="relayed body\r\n.leading dot\r\n"):
    return ("From: a@example.com\r\nTo: b@example.com\r\nSubject: %s\r\n"
            "Message-ID: <%s@test.example>\r\n\r\n%s" % (tag, tag, body)).encode()


class UpstreamCase(ServerTestCase):
    """One recording upstream for the class."""

    @classmethod
    def setUpClass(cls):
        cls.upstream = Recorder()

    @classmethod
    def tearDownClass(cls):
        cls.upstream.cleanup()

    def arrived(self, tag, timeout=QUICK):
        """The upstream's journal entry for the message whose Subject is tag."""
        needle = ("Subject: %s\r\n" % tag).encode()
        found = pyharness.wait_until(
            lambda: [m for m in self.upstream.messages() if needle in m["data"]], timeout, 0.05)
        if not found:
            raise AssertionError("message %r never reached the upstream; journal: %r"
                                 % (tag, self.upstream.events()))
        self.assertEqual(len(found), 1, "message %r relayed more than once: %r" % (tag, found))
        return found[0]

    def never_arrived(self, tag):
        needle = ("Subject: %s\r\n" % tag).encode()
        self.assertEqual([m for m in self.upstream.messages() if needle in m["data"]], [])

    def proxy(self, upstream_port=None):
        return self.serve(smtpd.PureProxy, remoteaddr=("127.0.0.1",
                                                       upstream_port or self.upstream.port))


class PureProxyTest(UpstreamCase):

    def test_relayed(self):
        server = self.proxy()
        tag = "relay-" + uuid.uuid4().hex
        msg = message(tag)
        s = self.smtp(server)
        self.assertEqual(s.sendmail("sender@example.com",
                                    ["one@example.com", "two@example.net"], msg), {})
        s.quit()
        m = self.arrived(tag)
        self.assertEqual(m["mail_from"], "sender@example.com")
        self.assertEqual(m["rcpt_tos"], ["one@example.com", "two@example.net"])
        head, sep, body = m["data"].partition(b"\r\n\r\n")
        self.assertEqual(sep, b"\r\n\r\n")
        # The body byte for byte, dots unstuffed upstream as they were sent.
        self.assertEqual(body, b"relayed body\r\n.leading dot\r\n")
        lines = head.split(b"\r\n")
        for line in msg.partition(b"\r\n\r\n")[0].split(b"\r\n"):
            self.assertIn(line, lines)
        self.assertIn(b"X-Peer: 127.0.0.1", lines)

    def test_eight_bit_passed_on(self):
        server = self.proxy()
        tag = "8bit-" + uuid.uuid4().hex
        body = "Gr\u00fc\u00dfe aus K\u00f6ln\r\n".encode("utf-8")
        msg = message(tag, body="") + body
        s = self.smtp(server)
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], msg,
                                    mail_options=["BODY=8BITMIME"]), {})
        m = self.arrived(tag)
        self.assertIn("BODY=8BITMIME", [o.upper() for o in m["mail_options"]])
        self.assertTrue(m["data"].endswith(b"\r\n\r\n" + body), m["data"])

    def test_several_messages_on_one_connection(self):
        server = self.proxy()
        s = self.smtp(server)
        tags = ["seq%d-%s" % (i, uuid.uuid4().hex) for i in range(3)]
        for i, tag in enumerate(tags):
            self.assertEqual(s.sendmail("s%d@example.com" % i, ["r%d@example.com" % i],
                                        message(tag)), {})
        s.quit()
        for i, tag in enumerate(tags):
            m = self.arrived(tag)
            self.assertEqual((m["mail_from"], m["rcpt_tos"]),
                             ("s%d@example.com" % i, ["r%d@example.com" % i]))

    def test_upstream_refusal_reaches_the_client(self):
        server = self.proxy()
        s = self.smtp(server)
        tag = "refused-" + uuid.uuid4().hex
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            s.sendmail("a@example.com", ["reject-me@example.com"], message(tag))
        (code, text), = cm.exception.recipients.values()
        self.assertEqual(code, 550, text)
        self.assertIn(b"5.1.1", text)
        s.rset()
        # A temporary refusal keeps its class.
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            s.sendmail("a@example.com", ["defer-me@example.com"], message(tag))
        (code, text), = cm.exception.recipients.values()
        self.assertEqual(code, 450, text)
        s.rset()
        # One of two refused: the other gets the message.
        tag2 = "half-" + uuid.uuid4().hex
        refused = s.sendmail("a@example.com", ["ok@example.com", "reject-x@example.com"],
                             message(tag2))
        self.assertEqual(list(refused), ["reject-x@example.com"])
        self.assertEqual(refused["reject-x@example.com"][0], 550)
        s.quit()
        self.assertEqual(self.arrived(tag2)["rcpt_tos"], ["ok@example.com"])
        self.never_arrived(tag)

    def test_unreachable_upstream_is_451(self):
        server = self.proxy(pyharness.refused_port())
        c = self.raw(server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        replies = []
        for cmd in ("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"):
            code, text = c.command(cmd)
            replies.append((cmd, code, text))
            if code >= 400:
                break
        if code == 354:
            c.send(message("unreachable") + b".\r\n")
            code, text = c.reply()
            replies.append(("final dot", code, text))
        self.assertNotEqual(code, 250, replies)
        self.assertEqual(code, 451, replies)
        for step, code, text in replies[:-1]:
            self.assertIn(code, (250, 354), replies)
        # The session goes on.
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertEqual(c.command("QUIT")[0], 221)
        # smtplib's view: an exception with the 451, never success.
        s = self.smtp(server)
        with self.assertRaises(smtplib.SMTPException) as cm:
            s.sendmail("a@example.com", ["b@example.com"], message("unreachable2"))
        e = cm.exception
        codes = ([v[0] for v in e.recipients.values()]
                 if isinstance(e, smtplib.SMTPRecipientsRefused) else [e.smtp_code])
        self.assertEqual(codes, [451], repr(e))


class PureProxyCliTest(UpstreamCase):

    def test_cli_pure_proxy_with_swaks(self):
        proc = pyharness.ModuleProcess("-n", "-c", "PureProxy",
                                       extra=["127.0.0.1:%d" % self.upstream.port])
        self.addCleanup(proc.close)
        tag = "swaks-" + uuid.uuid4().hex
        r = subprocess.run([pyharness.tool("swaks"), "--server", "127.0.0.1:%d" % proc.port,
                            "--from", "c@d.example", "--to", "a@b.example",
                            "--header", "Subject: %s" % tag, "--body", "via the cli"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=QUICK)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out)
        m = self.arrived(tag)
        self.assertEqual(m["mail_from"], "c@d.example")
        self.assertEqual(m["rcpt_tos"], ["a@b.example"])
        self.assertIn(b"\r\n\r\nvia the cli\r\n", m["data"])
        # And a refusal through the CLI's proxy.
        r = subprocess.run([pyharness.tool("swaks"), "--server", "127.0.0.1:%d" % proc.port,
                            "--from", "c@d.example", "--to", "reject-cli@b.example",
                            "--body", "no"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=QUICK)
        out = r.stdout.decode("utf-8", "replace")
        self.assertNotEqual(r.returncode, 0, out)
        self.assertIn("<** 550 5.1.1", out)


if __name__ == "__main__":
    pyharness.main()
