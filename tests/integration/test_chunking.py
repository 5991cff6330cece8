"""integ_chunking: CHUNKING (RFC 3030) against the real program, from a
raw-socket client: pipelined BDAT chunks with binary octets, LAST in a later
chunk and alone, the same message through BDAT and through DATA, the size
limit (-s), DATA refused inside a BDAT transaction, bad sizes, and a client
that sends fewer octets than it announced (--data-timeout)."""

import time

from smtpd_harness import SmtpdTestCase, main, normalized
from smtpdtest import stuff

# A message with what DATA would need stuffing for, 8-bit and binary octets,
# a bare LF, and an end-of-data look-alike in the middle.
MESSAGE = (b"From: a@example.com\r\nSubject: chunks\r\n\r\n"
           b".leading dot\r\n.\r\n\r\n.\r\n\xc3\xa9t\xc3\xa9 \x00\x01\xff\r\nbare\nlf\r\n")


def chunks_of(data, sizes):
    """data cut into pieces of the given sizes, the rest in a last one."""
    out, pos = [], 0
    for n in sizes:
        out.append(data[pos:pos + n])
        pos += n
    out.append(data[pos:])
    return out


class ChunkingTest(SmtpdTestCase):

    def open(self, srv):
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.command("EHLO client.example")
        self.assertEqual(code, 250)
        self.assertIn("CHUNKING", lines)
        return c

    def chunk(self, c, wire):
        """Send a BDAT line and its octets (wire as it goes out); the reply."""
        c.send(wire)
        return c.reply()

    def assertTimesOut(self, c, low, high):
        t0 = time.monotonic()
        code, text = c.reply()
        elapsed = time.monotonic() - t0
        self.assertEqual((code, text[0][:5]), (421, "4.4.2"))
        self.assertTrue(c.closed_by_peer(), "still connected after the 421")
        self.assertGreaterEqual(elapsed, low)
        self.assertLess(elapsed, high)

    def envelope(self, c):
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 250)

    def test_pipelined_chunks_same_as_data(self):
        srv = self.start()
        c = self.open(srv)
        # All chunks in one write, LAST in a chunk of its own, and a
        # BDAT 0 LAST after a transaction of chunks.
        self.envelope(c)
        pieces = chunks_of(MESSAGE, [5, 40, 1, 17])
        wire = b"".join(b"BDAT %d\r\n%s" % (len(p), p) for p in pieces[:-1])
        wire += b"BDAT %d LAST\r\n%s" % (len(pieces[-1]), pieces[-1])
        c.send(wire)
        for p in pieces[:-1]:
            code, text = c.reply()
            self.assertEqual((code, text), (250, ["2.0.0 OK: %d octets received" % len(p)]))
        self.assertEqual(c.reply()[0], 250)
        self.envelope(c)
        c.send(b"BDAT %d\r\n%sBDAT 0 LAST\r\n" % (len(MESSAGE), MESSAGE))
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 250)
        # The same message after DATA, stuffed.
        self.envelope(c)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(stuff(MESSAGE) + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.command("QUIT")[0], 221)
        msgs = srv.wait_messages(3)
        self.assertEqual(msgs[0]["data"], msgs[2]["data"])
        self.assertEqual(msgs[1]["data"], msgs[2]["data"])
        self.assertIn(b"\x00\x01\xff", msgs[0]["data"])
        # The transaction log line gives the size the handler got, as for DATA.
        srv.wait_stderr(rb"disconnect from")
        line = (b"message from=<a@example.com> to=<b@example.org> size=%d reply=250 2.0.0 OK\n"
                % len(normalized(MESSAGE)))
        self.assertEqual(srv.stderr().count(line), 3, srv.stderr_text())

    def test_size_limit(self):
        srv = self.start("-s", "100")
        c = self.open(srv)
        self.envelope(c)
        c.send(b"BDAT 60\r\n" + b"x" * 60 + b"BDAT 60\r\n" + b"y" * 60 + b"BDAT 3 LAST\r\nzz\n")
        self.assertEqual(c.reply()[0], 250)
        code, text = c.reply()
        self.assertEqual((code, text[0][:5]), (552, "5.3.4"))
        # The transaction is over: the last chunk is read and refused, and
        # the session is in step.
        self.assertEqual(c.reply()[0], 503)
        self.assertEqual(c.command("NOOP")[0], 250)
        self.envelope(c)
        self.assertEqual(self.chunk(c, b"BDAT 100 LAST\r\n" + b"w" * 98 + b"\r\n")[0], 250)
        self.assertEqual(len(srv.wait_messages(1)), 1)

    def test_no_data_in_bdat_transaction(self):
        srv = self.start()
        c = self.open(srv)
        self.envelope(c)
        self.assertEqual(self.chunk(c, b"BDAT 3\r\nab\r")[0], 250)
        code, text = c.command("DATA")
        self.assertEqual((code, text[0][:5]), (503, "5.5.1"))
        self.assertEqual(self.chunk(c, b"BDAT 3 LAST\r\n\ncd")[0], 250)
        msgs = srv.wait_messages(1)
        self.assertEqual(msgs[0]["data"].split(b"X-Peer")[0], b"ab\ncd\n")

    def test_bad_sizes_and_sequence(self):
        srv = self.start()
        c = self.open(srv)
        for bad in ("BDAT", "BDAT -5", "BDAT 99999999999999999999", "BDAT 1x"):
            code, text = c.command(bad)
            self.assertEqual((code, text[0][:5]), (501, "5.5.4"), bad)
        # A good size before the junk: its octets are skipped (a command in
        # them never runs), then 501.
        code, text = self.chunk(c, b"BDAT 6 LAST now\r\nQUIT\r\n")
        self.assertEqual((code, text[0][:5]), (501, "5.5.4"))
        # Without MAIL the chunk is read (a command inside it never runs)
        # and refused.
        code, text = self.chunk(c, b"BDAT 6\r\nQUIT\r\n")
        self.assertEqual((code, text[0][:5]), (503, "5.5.1"))
        self.assertEqual(c.command("NOOP")[0], 250)

    def test_short_chunk_hits_data_timeout(self):
        srv = self.start("--command-timeout", "30", "--data-timeout", "1")
        c = self.open(srv)
        self.envelope(c)
        c.send(b"BDAT 1000 LAST\r\nonly a few octets")
        self.assertTimesOut(c, 0.7, 4)
        self.assertEqual(srv.messages(), [])


if __name__ == "__main__":
    main()
