"""PureProxy and CHUNKING (relay_chunking).

A message the client sent in BDAT chunks goes upstream as one chunk,
"BDAT <size> LAST" and its octets as they are, when the upstream offers
CHUNKING; else with DATA, dot-stuffed, and the upstream gets the same data.
A message sent after DATA goes with DATA either way. aiosmtpd (no CHUNKING)
gets BDAT mail byte for byte as DATA mail. A real Postfix server (a private
instance, which offers CHUNKING) takes the relay's BDAT and delivers the
message on to a DebuggingServer. (Postfix's SMTP client sends no BDAT, so
Postfix can only be the server here.)
"""

import unittest

import relay_harness as h

FAKE_EHLO = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 100000000")
# Lines DATA would need stuffing for, 8-bit octets, an end-of-data look-alike.
BODY = b".leading dot\r\n.\r\n\r\n.\r\n\xc3\xa9t\xc3\xa9\r\nlast line\r\n"


def send_chunked(port, msg, sizes):
    """One transaction whose data goes in BDAT chunks of the given sizes
    (the rest in a last one, with LAST); the reply to the last chunk."""
    with h.Client(port) as c:
        assert c.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME")[0] == 250
        assert c.cmd("RCPT TO:<b@example.com>")[0] == 250
        pos, wire = 0, b""
        for n in sizes:
            wire += b"BDAT %d\r\n" % n + msg[pos:pos + n]
            pos += n
        wire += b"BDAT %d LAST\r\n" % (len(msg) - pos) + msg[pos:]
        c.send(wire)
        for n in sizes:
            code, text = c.reply()
            assert code == 250, (code, text)
        return c.reply()


class ChunkingRelayTest(h.RelayTestCase):

    def fake(self, chunking):
        fake = h.FakeUpstream(ehlo=FAKE_EHLO + (("CHUNKING",) if chunking else ()))
        self.cleanups.append(fake.stop)
        return fake

    def commands(self, fake, verb):
        with fake.lock:
            return [c for c in fake.commands if c[:len(verb)].upper() == verb]

    def test_bdat_upstream_when_offered(self):
        fake = self.fake(chunking=True)
        proxy = self.proxy(fake.port)
        msg = h.message(subject="chunked", body=BODY)
        end = send_chunked(proxy.port, msg, [10, 1, 30])
        self.assertEqual(end[0], 250, "%r\n%s" % (end, proxy.stderr_text()))
        self.assertEqual(len(fake.delivered), 1)
        data = fake.delivered[0]
        # One chunk with the exact size, and no DATA.
        self.assertEqual(self.commands(fake, b"BDAT"), [b"BDAT %d LAST\r\n" % len(data)])
        self.assertEqual(self.commands(fake, b"DATA"), [])
        # The client's octets, after the relay's trace lines.
        self.assertTrue(data.startswith(b"Received: "), data[:100])
        self.assertTrue(data.endswith(b"\r\n\r\n" + BODY), data[-120:])
        self.assertIn(b"\r\nX-Peer: 127.0.0.1\r\n", data)

    def test_data_message_stays_data(self):
        fake = self.fake(chunking=True)
        proxy = self.proxy(fake.port)
        end = h.send_one(proxy.port, body=h.message(body=BODY))
        self.assertEqual(end[0], 250, end)
        self.assertEqual(self.commands(fake, b"BDAT"), [])
        self.assertEqual(len(self.commands(fake, b"DATA")), 1)
        self.assertTrue(fake.delivered[0].endswith(BODY))

    def test_data_upstream_without_chunking(self):
        fake = self.fake(chunking=False)
        proxy = self.proxy(fake.port)
        end = send_chunked(proxy.port, h.message(body=BODY), [7])
        self.assertEqual(end[0], 250, end)
        self.assertEqual(self.commands(fake, b"BDAT"), [])
        self.assertEqual(len(self.commands(fake, b"DATA")), 1)
        # Dot-stuffed on the way, unstuffed there: the same octets.
        self.assertTrue(fake.delivered[0].endswith(b"\r\n\r\n" + BODY), fake.delivered[0][-120:])

    def test_aiosmtpd_gets_bdat_mail_as_data_mail(self):
        rec = h.Recorder()
        self.cleanups.append(rec.cleanup)
        self.cleanups.append(rec.close)
        proxy = self.proxy(rec.port)
        msg = h.message(subject="same", body=BODY)
        self.assertEqual(send_chunked(proxy.port, msg, [3, 50])[0], 250)
        with h.Client(proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.data(msg)[1][0], 250)
        got = [m["data"] for m in rec.wait_messages(2)]
        # Apart from the Received field (its id and time), the same.
        after = [d[d.index(b"\r\nFrom: ") + 2:] for d in got]
        self.assertEqual(after[0], after[1])
        self.assertTrue(got[0].endswith(BODY))


class PostfixUpstreamTest(h.RelayTestCase):

    def test_bdat_to_postfix(self):
        final = h.smtpdtest.Smtpd(cls="DebuggingServer")
        self.cleanups.append(final.close)
        postfix = h.PrivatePostfix(final.port)
        self.cleanups.append(postfix.close)
        proxy = self.proxy(postfix.port, "-d")
        msg = h.message(subject="through postfix", body=BODY)
        end = send_chunked(proxy.port, msg, [20, 20])
        self.assertEqual(end[0], 250, "%r\n%s" % (end, proxy.stderr_text()))
        self.assertIn("queued as", end[1])
        # One chunk to Postfix, and Postfix took it.
        self.assertRegex(proxy.stderr_text(), r"upstream 127\.0\.0\.1:%d: > BDAT \d+ LAST\n"
                         % postfix.port)
        # Postfix delivered it on (with DATA): the body arrives whole.
        final.out.wait_for(lambda out: h.smtpdtest.END in out, 30)
        printed = final.stdout()
        self.assertIn(BODY.replace(b"\r\n", b"\n"), printed, postfix.log())
        self.assertIn(b"Subject: through postfix\n", printed)


if __name__ == "__main__":
    h.main()
