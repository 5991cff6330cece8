"""PureProxy against aiosmtpd as a recording upstream (relay_recording).

What arrives upstream must be the client's message byte for byte (8-bit
clean, CRLF kept, dot-stuffing undone and redone), with exactly two
changes: a Received: trace field at the top (RFC 5321 4.4) and one
"X-Peer: <client ip>" line right before the first empty line. The envelope
(reverse-path, forward-paths, BODY/SMTPUTF8) arrives unchanged. A message
that needs SMTPUTF8 is refused 553 at MAIL when the upstream lacks it.

TransactionLog: every transaction ends with exactly one line on smtpd's
standard error (a message, a refusal at MAIL, or how it ended without a
message), and a refusal the relay passed on names the upstream that gave it.
"""

import email.utils
import re
import smtplib
import time
import unittest

import relay_harness as h

RECEIVED = re.compile(
    rb"^Received: from (?P<helo>\S+) \((?:[^()]* )?\[(?P<addr>127\.0\.0\.1)\]\) "
    rb"by (?P<by>\S+)(?: \([^()]*\))? with (?P<with>ESMTP|UTF8SMTP|SMTP) id (?P<id>[0-9A-Za-z]+)"
    rb"(?: for <[^>]*>)?; (?P<date>.+)$")


def split_received(data):
    """(unfolded Received field, the rest of the data) of the first field."""
    if not data.startswith(b"Received:"):
        raise AssertionError("the data does not start with a Received: field: %r" % data[:200])
    end = 0
    while True:
        nl = data.index(b"\r\n", end)
        end = nl + 2
        if data[end:end + 1] not in (b" ", b"\t"):
            break
    field = data[:end - 2]
    unfolded = re.sub(rb"\r\n[ \t]+", b" ", field)
    return unfolded, data[end:]


def with_x_peer(msg, peer=b"127.0.0.1"):
    """msg with the X-Peer line inserted as the relay must insert it: before
    the first empty line, or at the end when there is none."""
    line = b"X-Peer: " + peer + b"\r\n"
    if msg.startswith(b"\r\n"):
        return line + msg
    i = msg.find(b"\r\n\r\n")
    if i < 0:
        return msg + line
    return msg[:i + 2] + line + msg[i + 2:]


class Recording(unittest.TestCase):

    def setUp(self):
        self.rec = None
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.close()
        if self.rec:
            self.rec.cleanup()

    def start(self, *proxy_options, recorder_options=()):
        self.rec = h.Recorder(*recorder_options)
        self.proxy = h.Proxy(self.rec.port, *proxy_options)

    def assertRelayed(self, rec_msg, sent, with_="ESMTP", helo=b"client.example"):
        """The recorded data is Received + sent with X-Peer, byte for byte."""
        data = rec_msg["data"]
        received, rest = split_received(data)
        m = RECEIVED.match(received)
        self.assertIsNotNone(m, "Received field not as RFC 5321 4.4 wants: %r" % received)
        self.assertEqual(m.group("helo"), helo)
        self.assertEqual(m.group("by"), h.Proxy.HOSTNAME.encode())
        self.assertEqual(m.group("with"), with_.encode())
        when = email.utils.parsedate_to_datetime(m.group("date").decode())
        self.assertLess(abs(when.timestamp() - time.time()), 300, received)
        self.assertEqual(rest.count(b"X-Peer:"), 1, "exactly one X-Peer line: %r" % rest[:300])
        # Everything else byte for byte: X-Peer right before the first
        # empty line, nothing else added, removed or changed.
        self.assertEqual(rest, with_x_peer(sent))
        # No line end other than CRLF appeared.
        self.assertEqual(data.count(b"\n"), data.count(b"\r\n"))
        return m

    # ---- 8-bit and SMTPUTF8 ----

    def test_8bit_body_byte_for_byte(self):
        self.start()
        high = bytes(range(0x80, 0x100))
        body = b"".join(b"line %d: " % i + high[i:i + 32] + b"\r\n" for i in range(0, 128, 32))
        body += high + b"\r\n"                       # all 128 values on one line
        body += b"\xff\r\n\x80\r\n\r\n \xe9t\xe9 \r\n"  # short lines, empty line, spaces
        msg = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: 8-bit\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=latin1\r\n"
               b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)
        with h.Client(self.proxy.port) as c:
            self.assertIn("8BITMIME", c.ehlo_reply[1])
            self.assertEqual(c.cmd("MAIL FROM:<sender@example.com> BODY=8BITMIME")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<rcpt1@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<rcpt2@example.org>")[0], 250)
            d, end = c.data(msg)
            self.assertEqual(end[0], 250, end)
        (m,) = self.rec.wait_messages(1)
        self.assertEqual(m["mail_from"], "sender@example.com")
        self.assertEqual(m["rcpt_tos"], ["rcpt1@example.com", "rcpt2@example.org"])
        self.assertEqual(m["mail_options"], ["BODY=8BITMIME"])
        self.assertRelayed(m, msg)
        for b in high:
            self.assertIn(bytes([b]), m["data"])

    def test_8bit_with_smtplib(self):
        # The same through Python's own client (dot-stuffing by smtplib).
        self.start()
        msg = (b"From: a@example.com\r\nSubject: smtplib\r\n\r\n.dot first\r\n"
               b"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7\r\n\xfe\xff\r\n")
        with smtplib.SMTP("127.0.0.1", self.proxy.port, local_hostname="smtplib.example",
                          timeout=15) as s:
            refused = s.sendmail("a@example.com", ["b@example.com"], msg,
                                 mail_options=["BODY=8BITMIME"])
            self.assertEqual(refused, {})
        (m,) = self.rec.wait_messages(1)
        # smtplib adds SIZE; the client's parameters are passed on as sent.
        self.assertEqual(m["mail_options"], ["SIZE=%d" % len(msg), "BODY=8BITMIME"])
        self.assertRelayed(m, msg, helo=b"smtplib.example")

    def test_smtputf8_byte_for_byte(self):
        self.start("-u")
        sender = "jörg.müller@exämple.org"
        rcpts = ["δοκιμή@παράδειγμα.δοκιμή", "用户@例子.广告"]
        msg = ("From: Jörg <%s>\r\nTo: %s\r\nSubject: Grüße, ✉\r\n\r\n"
               "Ünïcödé body ✓\r\n.leading dot\r\n" % (sender, ", ".join(rcpts))).encode()
        with h.Client(self.proxy.port) as c:
            self.assertIn("SMTPUTF8", c.ehlo_reply[1])
            self.assertEqual(c.cmd("MAIL FROM:<%s> SMTPUTF8 BODY=8BITMIME" % sender)[0], 250)
            for r in rcpts:
                self.assertEqual(c.cmd("RCPT TO:<%s>" % r)[0], 250)
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertEqual(m["mail_from"], sender)
        self.assertEqual(m["rcpt_tos"], rcpts)
        self.assertEqual(sorted(m["mail_options"]), ["BODY=8BITMIME", "SMTPUTF8"])
        self.assertRelayed(m, msg, with_="UTF8SMTP")

    def test_smtputf8_needed_but_upstream_lacks_it(self):
        # aiosmtpd without enable_SMTPUTF8 does not advertise it: 553 at
        # MAIL, and nothing arrives.
        self.start("-u", recorder_options=["--no-smtputf8"])
        with h.Client(self.proxy.port) as c:
            self.assertIn("SMTPUTF8", c.ehlo_reply[1])
            code, text = c.cmd("MAIL FROM:<jörg@exämple.org> SMTPUTF8")
            self.assertEqual(code, 553, text)
            self.assertTrue(text.startswith("5.6.7 "), text)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0] // 100, 5)
            # An ASCII message without SMTPUTF8 still goes through.
            self.assertEqual(c.cmd("RSET")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            msg = h.message(subject="ascii after 553")
            self.assertEqual(c.data(msg)[1][0], 250)
        msgs = self.rec.wait_messages(1)
        time.sleep(0.2)
        msgs = self.rec.messages()
        self.assertEqual(len(msgs), 1, "only the ASCII message may arrive")
        self.assertEqual(msgs[0]["mail_options"], [])
        self.assertRelayed(msgs[0], msg)

    # ---- the trace fields and the rest of the message ----

    def test_received_and_x_peer_placement(self):
        self.start()
        msg = (b"Received: from earlier.example by mx.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
               b"From: a@example.com\r\nSubject: folded\r\n header line\r\n"
               b"\r\n"
               b"X-Peer: this is body text, not a header\r\n\r\nsecond paragraph\r\n")
        with h.Client(self.proxy.port, helo="helo.name.example") as c:
            ids = []
            for _ in range(2):
                self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
                self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
                self.assertEqual(c.data(msg)[1][0], 250)
        msgs = self.rec.wait_messages(2)
        self.assertEqual(len(msgs), 2)
        for m in msgs:
            data = m["data"]
            # X-Peer (ours) once in the header, the body's line untouched.
            self.assertEqual(data.count(b"X-Peer: 127.0.0.1\r\n"), 1)
            _, rest = split_received(data)
            self.assertEqual(rest, msg[:msg.index(b"\r\n\r\n") + 2] + b"X-Peer: 127.0.0.1\r\n"
                             + msg[msg.index(b"\r\n\r\n") + 2:])
            ids.append(self.assertRelayed_rest(m, msg, b"helo.name.example"))
        self.assertNotEqual(ids[0], ids[1], "each message needs its own id")

    def assertRelayed_rest(self, m, msg, helo):
        data = m["data"]
        received, rest = split_received(data)
        mm = RECEIVED.match(received)
        self.assertIsNotNone(mm, received)
        self.assertEqual(mm.group("helo"), helo)
        # The original Received field follows ours.
        self.assertTrue(rest.startswith(b"Received: from earlier.example"))
        return mm.group("id")

    def test_headers_only_message(self):
        # No empty line at all: X-Peer goes at the end.
        self.start()
        msg = b"From: a@example.com\r\nSubject: no body\r\n"
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertRelayed(m, msg)
        self.assertTrue(m["data"].endswith(b"Subject: no body\r\nX-Peer: 127.0.0.1\r\n"))

    def test_body_only_message(self):
        # The very first line is empty: no header section; X-Peer first.
        self.start()
        msg = b"\r\nno headers at all\r\n"
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertRelayed(m, msg)

    def test_empty_message(self):
        # DATA and at once the final dot: accepted (RFC 5321 4.1.1.4); the
        # upstream gets the trace fields only.
        self.start()
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(b".\r\n")
            self.assertEqual(c.reply()[0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertRelayed(m, b"")

    def test_helo_client(self):
        # A client that greets with HELO: "with SMTP" in Received.
        self.start()
        msg = h.message(subject="helo")
        with h.Client(self.proxy.port, ehlo=False) as c:
            self.assertEqual(c.cmd("HELO old.client.example")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            code, text = c.cmd("RCPT TO:<reject-me@example.com>")
            self.assertEqual(code, 550, text)
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertEqual(m["rcpt_tos"], ["b@example.com"])
        self.assertRelayed(m, msg, with_="SMTP", helo=b"old.client.example")

    def test_pipelined_transaction(self):
        # RFC 2920: MAIL, RCPTs and DATA in one write; replies in order.
        self.start()
        msg = h.message(subject="pipelined")
        with h.Client(self.proxy.port) as c:
            self.assertIn("PIPELINING", c.ehlo_reply[1])
            c.send(b"MAIL FROM:<p@example.com>\r\nRCPT TO:<one@example.com>\r\n"
                   b"RCPT TO:<reject-two@example.com>\r\nRCPT TO:<three@example.com>\r\n"
                   b"DATA\r\n")
            codes = [c.reply()[0] for _ in range(5)]
            self.assertEqual(codes, [250, 250, 550, 250, 354])
            c.send(h.stuff(msg) + b".\r\nMAIL FROM:<q@example.com>\r\n"
                   b"RCPT TO:<four@example.com>\r\nDATA\r\n")
            codes = [c.reply()[0] for _ in range(4)]
            self.assertEqual(codes, [250, 250, 250, 354])
            c.send(h.stuff(msg) + b".\r\n")
            self.assertEqual(c.reply()[0], 250)
        msgs = self.rec.wait_messages(2)
        self.assertEqual([(m["mail_from"], m["rcpt_tos"]) for m in msgs],
                         [("p@example.com", ["one@example.com", "three@example.com"]),
                          ("q@example.com", ["four@example.com"])])
        for m in msgs:
            self.assertRelayed(m, msg)

    def test_rset_in_mid_transaction(self):
        # RSET after RCPT: the upstream transaction is abandoned; the next
        # one in the same session carries only its own envelope.
        self.start()
        msg = h.message(subject="after rset")
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<first@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<old@example.com>")[0], 250)
            self.assertEqual(c.cmd("RSET")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<second@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<new@example.com>")[0], 250)
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        time.sleep(0.2)
        self.assertEqual(len(self.rec.messages()), 1)
        self.assertEqual(m["mail_from"], "second@example.com")
        self.assertEqual(m["rcpt_tos"], ["new@example.com"])
        self.assertRelayed(m, msg)

    def test_log_one_line_per_transaction(self):
        self.start("-d")
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<log@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<logged@example.com>")[0], 250)
            self.assertEqual(c.data(h.message())[1][0], 250)
        up = ("127.0.0.1:%d" % self.rec.port).encode()
        # The transaction: client, envelope, upstream reply, time taken.
        self.assertTrue(self.proxy.wait_log(
            rb"relayed via " + re.escape(up) + rb": 250 2\.0\.0 [^\n]*\(\d+\.\d+ s\)"),
            self.proxy.stderr_text())
        self.assertTrue(self.proxy.wait_log(
            rb"from=<log@example\.com> to=<logged@example\.com>[^\n]*reply=250"),
            self.proxy.stderr_text())
        # -d: the upstream dialogue too.
        self.assertTrue(self.proxy.wait_log(rb"upstream [^\n]*> MAIL FROM:<log@example\.com>"),
                        self.proxy.stderr_text())
        self.assertTrue(self.proxy.wait_log(rb"upstream [^\n]*< 250"), self.proxy.stderr_text())

    def test_dot_stuffing_both_ways(self):
        self.start()
        body = (b".\r\n..\r\n...\r\n.leading\r\n..two leading\r\n . space first\r\n"
                b"end.\r\n.\r\n")
        msg = b"From: a@example.com\r\nSubject: dots\r\n\r\n" + body
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            # Sent stuffed by the client (h.stuff): ".." "..." "...." ...
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertRelayed(m, msg)
        self.assertTrue(m["data"].endswith(body))

    def test_crlf_kept_and_no_final_newline_added_twice(self):
        self.start()
        msg = b"From: a@example.com\r\n\r\nline one\r\n\r\n\r\nline after two empty lines\r\n"
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertRelayed(m, msg)

    def test_control_and_nul_bytes(self):
        # DESIGN: data stays bytes, NUL allowed. Every byte but CR and LF.
        self.start()
        low = bytes(b for b in range(0x00, 0x80) if b not in (0x0a, 0x0d))
        msg = b"From: a@example.com\r\nSubject: low bytes\r\n\r\n" + low + b"\r\n"
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertRelayed(m, msg)

    def test_large_message_long_lines(self):
        self.start()
        line = bytes((0x41 + i % 26) for i in range(998)) + b"\r\n"
        body = line * 1200   # about 1.2 MB
        msg = b"From: a@example.com\r\nSubject: large\r\n\r\n" + body
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com> SIZE=%d" % len(msg))[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertRelayed(m, msg)
        # SIZE is passed on: aiosmtpd advertises it.
        self.assertEqual(len(m["mail_options"]), 1)
        self.assertTrue(m["mail_options"][0].startswith("SIZE="), m["mail_options"])

    def test_hundred_recipients_in_order(self):
        # RFC 5321 4.5.3.1.8: at least 100 recipients; all passed on, in order.
        self.start()
        rcpts = ["r%03d@example.com" % i for i in range(100)]
        msg = h.message(subject="hundred")
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            for r in rcpts:
                self.assertEqual(c.cmd("RCPT TO:<%s>" % r)[0], 250)
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertEqual(m["rcpt_tos"], rcpts)
        self.assertRelayed(m, msg)

    def test_null_reverse_path(self):
        # Bounces (MAIL FROM:<>) are relayed with the null reverse-path.
        self.start()
        msg = h.message(subject="bounce")
        with h.Client(self.proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.data(msg)[1][0], 250)
        (m,) = self.rec.wait_messages(1)
        self.assertIn(m["mail_from"], ("", "<>"))
        self.assertRelayed(m, msg)


class TransactionLog(h.RelayTestCase):
    """The one log line that ends each transaction, for every way it ends."""

    def setUp(self):
        super().setUp()
        self.rec = h.Recorder()
        self.cleanups.append(self.rec.cleanup)
        self.up = ("(smarthost 127.0.0.1:%d)" % self.rec.port).encode()

    def start(self, *options, upstream=None):
        return self.proxy(upstream or self.rec.port, *options)

    def session_id(self, proxy, c):
        """The [ID] smtpd gave client @c's session."""
        m = proxy.wait_stderr(rb"\[(\d+)\] connect from 127\.0\.0\.1:%d\n"
                              % c.sock.getsockname()[1])
        return m.group(1)

    def lines(self, proxy, sid, n):
        """The transaction lines of session @sid, once there are @n of them
        (and a moment later, so that a line too many shows)."""
        rx = re.compile(rb"(?m)^.* info: \[" + sid + rb"\] ((?:message|transaction) .*)$")
        proxy.err.wait_for(lambda b: len(rx.findall(b)) >= n, 5 * h.SLOW)
        time.sleep(0.2)
        got = rx.findall(proxy.stderr())
        self.assertEqual(len(got), n, "%d transaction lines expected:\n%s"
                         % (n, proxy.stderr_text()))
        return got

    def open_transaction(self, c, rcpts=("ok@example.com", "reject-x@example.com",
                                          "ok2@example.com")):
        self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
        for r in rcpts:
            c.cmd("RCPT TO:<%s>" % r)

    REFUSED = (rb"1 recipient refused, last <reject-x@example\.com> "
               rb"reply=550 5\.1\.1 <reject-x@example\.com>: Recipient address rejected ")

    def assert_ended(self, line, how, where=b"before DATA", refused=REFUSED,
                     to=b"ok@example.com,ok2@example.com"):
        want = (rb"transaction from=<a@example\.com> to=<" + re.escape(to) + rb"> ended by " +
                re.escape(how) + b" " + re.escape(where))
        if refused:
            want += b"; " + refused + re.escape(self.up)
        self.assertRegex(line, b"^" + want + b"$")

    def test_message_line(self):
        proxy = self.start()
        msg = h.message(subject="logged")
        with h.Client(proxy.port) as c:
            sid = self.session_id(proxy, c)
            self.open_transaction(c)
            self.assertEqual(c.data(msg)[1][0], 250)
        (line,) = self.lines(proxy, sid, 1)
        # The size is the client's data, before Received and X-Peer.
        self.assertRegex(line, rb"^message from=<a@example\.com> "
                               rb"to=<ok@example\.com,ok2@example\.com> size=%d "
                               rb"reply=250 [^\n]*" % len(msg) + re.escape(self.up) + b"$")
        self.assertEqual(len(self.rec.wait_messages(1)), 1)

    def test_refused_at_mail(self):
        fake = h.ScriptedUpstream({"MAIL": "550 5.1.0 <a@example.com>: Sender address rejected"})
        self.cleanups.append(fake.stop)
        proxy = self.start(upstream=fake.port)
        with h.Client(proxy.port) as c:
            sid = self.session_id(proxy, c)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 550)
        (line,) = self.lines(proxy, sid, 1)
        self.assertEqual(line, b"transaction from=<a@example.com> to=<> refused at MAIL: "
                               b"reply=550 5.1.0 <a@example.com>: Sender address rejected "
                               b"(smarthost 127.0.0.1:%d)" % fake.port)

    def test_refused_after_data_names_the_upstream(self):
        fake = h.ScriptedUpstream({".": "554 5.7.1 Message rejected as spam"})
        self.cleanups.append(fake.stop)
        proxy = self.start(upstream=fake.port)
        msg = h.message()
        with h.Client(proxy.port) as c:
            sid = self.session_id(proxy, c)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.data(msg)[1][0], 554)
        (line,) = self.lines(proxy, sid, 1)
        self.assertEqual(line, b"message from=<a@example.com> to=<b@example.com> size=%d "
                               b"reply=554 5.7.1 Message rejected as spam "
                               b"(smarthost 127.0.0.1:%d)" % (len(msg), fake.port))

    def test_ended_by_rset_quit_ehlo(self):
        # One session, four transactions: one line each, in order.
        proxy = self.start()
        with h.Client(proxy.port) as c:
            sid = self.session_id(proxy, c)
            self.open_transaction(c)
            self.assertEqual(c.cmd("RSET")[0], 250)
            self.open_transaction(c)
            self.assertEqual(c.cmd("EHLO again.example")[0], 250)
            self.open_transaction(c)
            self.assertEqual(c.data(h.message())[1][0], 250)
            self.open_transaction(c, rcpts=("reject-1@example.com", "defer-2@example.com"))
            self.assertEqual(c.cmd("QUIT")[0], 221)
        rset, ehlo, message, quit = self.lines(proxy, sid, 4)
        self.assert_ended(rset, b"RSET")
        self.assert_ended(ehlo, b"EHLO")
        self.assertTrue(message.startswith(b"message from=<a@example.com> "
                                           b"to=<ok@example.com,ok2@example.com> "), message)
        self.assert_ended(quit, b"QUIT", to=b"", refused=(
            rb"2 recipients refused, last <defer-2@example\.com> "
            rb"reply=450 4\.2\.1 <defer-2@example\.com>: Recipient address deferred "))

    def test_ended_by_helo(self):
        # A HELO session (no enhanced codes in its replies) greets again.
        proxy = self.start()
        with h.Client(proxy.port, ehlo=False) as c:
            sid = self.session_id(proxy, c)
            self.assertEqual(c.cmd("HELO client.example")[0], 250)
            self.open_transaction(c)
            self.assertEqual(c.cmd("HELO client.example")[0], 250)
        (line,) = self.lines(proxy, sid, 1)
        self.assert_ended(line, b"HELO", refused=(
            rb"1 recipient refused, last <reject-x@example\.com> "
            rb"reply=550 <reject-x@example\.com>: Recipient address rejected "))

    def test_ended_by_a_lost_connection(self):
        proxy = self.start()
        c = h.Client(proxy.port)
        sid = self.session_id(proxy, c)
        self.open_transaction(c)
        c.reset()
        (line,) = self.lines(proxy, sid, 1)
        self.assert_ended(line, b"a lost connection")

    def test_ended_by_a_timeout(self):
        proxy = self.start("--command-timeout", "1")
        with h.Client(proxy.port) as c:
            sid = self.session_id(proxy, c)
            self.open_transaction(c)
            self.assertEqual(c.reply(timeout=5 * h.SLOW)[0], 421)
        (line,) = self.lines(proxy, sid, 1)
        self.assert_ended(line, b"a timeout")

    def test_ended_by_a_421_from_the_upstream(self):
        # The upstream closes at the second RCPT: its 421 reaches the client
        # and closes the session; the line names who sent it.
        fake = h.ScriptedUpstream({"RCPT": ["250 2.1.5 Ok",
                                            ("421 4.3.2 Service shutting down", "close")]})
        self.cleanups.append(fake.stop)
        proxy = self.start(upstream=fake.port)
        with h.Client(proxy.port) as c:
            sid = self.session_id(proxy, c)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<ok@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<x@example.com>")[0], 421)
            self.assertTrue(c.closed_by_server(3 * h.SLOW))
        (line,) = self.lines(proxy, sid, 1)
        self.assertEqual(line, b"transaction from=<a@example.com> to=<ok@example.com> ended by "
                               b"a 421 reply before DATA; 1 recipient refused, last "
                               b"<x@example.com> reply=421 4.3.2 Service shutting down "
                               b"(smarthost 127.0.0.1:%d)" % fake.port)

    def test_ended_by_a_disconnect(self):
        # The client closes its side (no QUIT): a disconnect, not a loss.
        proxy = self.start()
        c = h.Client(proxy.port)
        sid = self.session_id(proxy, c)
        self.open_transaction(c)
        c.sock.close()
        (line,) = self.lines(proxy, sid, 1)
        self.assert_ended(line, b"a disconnect")

    # Ended while the client sends its data: "in DATA".

    def test_ended_in_data_by_a_timeout(self):
        proxy = self.start("--data-timeout", "1")
        with h.Client(proxy.port) as c:
            sid = self.session_id(proxy, c)
            self.open_transaction(c)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(b"Subject: never finished\r\n\r\n")
            self.assertEqual(c.reply(timeout=5 * h.SLOW)[0], 421)
        (line,) = self.lines(proxy, sid, 1)
        self.assert_ended(line, b"a timeout", where=b"in DATA")

    def test_ended_in_data_by_a_lost_connection(self):
        proxy = self.start()
        c = h.Client(proxy.port)
        sid = self.session_id(proxy, c)
        self.open_transaction(c)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: never finished\r\n\r\n")
        time.sleep(0.2)
        c.reset()
        (line,) = self.lines(proxy, sid, 1)
        self.assert_ended(line, b"a lost connection", where=b"in DATA")


if __name__ == "__main__":
    h.main()
