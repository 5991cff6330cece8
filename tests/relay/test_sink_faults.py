"""PureProxy against Postfix's smtp-sink with fault injection (relay_sink_faults).

smtp-sink -f CMD rejects CMD with a hard error (-B sets the reply), -r CMD
with a soft one (-b), -q CMD drops the connection without a reply, -Q CMD
sends 421 and drops it. Every refusal must reach the client with the
upstream's code and enhanced code at the step it belongs to; a dropped
upstream gives 421 4.4.2 (or 451), never 250; and the client can retry on a
new connection once the fault is gone.

The upstream sees DATA only once the client has sent the whole message (the
relay has no hook at the client's DATA command), so a refusal of DATA
reaches the client as the reply to its final dot.
"""

import os
import shutil
import tempfile
import unittest

import relay_harness as h

HARD = "550 5.7.1 hard reject by smtp-sink"
SOFT = "451 4.7.1 soft reject by smtp-sink"


class SinkFaults(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="relay-sink-")
        self.procs = []

    def tearDown(self):
        for p in reversed(self.procs):
            p.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sink(self, *options, port=None):
        # One dump directory per smtp-sink process.
        d = os.path.join(self.tmp, "dump%d" % len(self.procs))
        s = h.SmtpSink(*options, port=port, dump_dir=d)
        self.procs.append(s)
        return s

    def proxy(self, port, *options):
        p = h.Proxy(port, *options)
        self.procs.append(p)
        return p

    def assertReply(self, got, code, enh, text=None, msg=None):
        self.assertEqual(got[0], code, msg or "reply %r" % (got,))
        self.assertTrue(got[1].startswith(enh + " "), "enhanced code %s expected in %r"
                        % (enh, got))
        if text:
            self.assertIn(text, got[1])

    def delivered(self, sink):
        """Messages smtp-sink took (answered 250 after the dot). smtp-sink
        dumps as it reads, so a message it then refused (-f .) or lost is
        in its dump too: only for sinks without faults after the dot."""
        return [m for m in sink.messages() if m]

    # ---- refusals: hard and soft, at each step ----

    def refusal(self, flag, reply, step):
        code = int(reply[:3])
        enh, text = reply[4:].split(" ", 1)
        bounce = "-B" if flag == "-f" else "-b"
        sink = self.sink(flag, step, bounce, reply)
        proxy = self.proxy(sink.port)
        with h.Client(proxy.port) as c:
            mail = c.cmd("MAIL FROM:<a@example.com>")
            if step == "MAIL":
                self.assertReply(mail, code, enh, text)
                # The session goes on: a new transaction is possible.
                self.assertEqual(c.cmd("RSET")[0], 250)
                self.assertReply(c.cmd("MAIL FROM:<a@example.com>"), code, enh, text)
                return
            self.assertReply(mail, 250, "2.1.0")
            rcpt = c.cmd("RCPT TO:<b@example.com>")
            if step == "RCPT":
                self.assertReply(rcpt, code, enh, text)
                # No recipient accepted: DATA must not be accepted either.
                d, end = c.data(h.message())
                self.assertNotEqual(d[0], 354, "DATA after the only RCPT was refused: %r" % (d,))
                self.assertGreaterEqual(d[0], 500)
                self.assertIsNone(end)
                return
            self.assertReply(rcpt, 250, "2.1.5")
            d, end = c.data(h.message())
            self.assertEqual(d[0], 354)
            # DATA or the final dot refused upstream: the reply to the dot.
            self.assertReply(end, code, enh, text)
            # The session goes on.
            self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_hard_reject_at_mail(self):
        self.refusal("-f", HARD, "MAIL")

    def test_soft_reject_at_mail(self):
        self.refusal("-r", SOFT, "MAIL")

    def test_hard_reject_at_rcpt(self):
        self.refusal("-f", HARD, "RCPT")

    def test_soft_reject_at_rcpt(self):
        self.refusal("-r", SOFT, "RCPT")

    def test_hard_reject_at_data(self):
        self.refusal("-f", HARD, "DATA")

    def test_soft_reject_at_data(self):
        self.refusal("-r", SOFT, "DATA")

    def test_hard_reject_at_end_of_data(self):
        self.refusal("-f", HARD, ".")

    def test_soft_reject_at_end_of_data(self):
        self.refusal("-r", SOFT, ".")

    def test_default_sink_replies_pass_unchanged(self):
        # smtp-sink's own default texts: 500 5.3.0 / 450 4.3.0.
        sink = self.sink("-f", "RCPT")
        proxy = self.proxy(sink.port)
        with h.Client(proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertReply(c.cmd("RCPT TO:<b@example.com>"), 500, "5.3.0",
                             "Error: command failed")
        sink2 = self.sink("-r", ".")
        proxy2 = self.proxy(sink2.port)
        with h.Client(proxy2.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertReply(c.data(h.message())[1], 450, "4.3.0", "Error: command failed")

    # ---- the transaction goes on after a refused recipient ----

    def test_transaction_goes_on_after_refused_rcpt(self):
        # smtp-sink refuses every RCPT, so the per-recipient refusals come
        # from the aiosmtpd recorder (reject* 550, defer* 450).
        with h.Recorder() as rec, h.Proxy(rec.port) as proxy:
            with h.Client(proxy.port) as c:
                self.assertReply(c.cmd("MAIL FROM:<a@example.com>"), 250, "2.1.0")
                self.assertReply(c.cmd("RCPT TO:<reject-me@example.com>"), 550, "5.1.1")
                self.assertReply(c.cmd("RCPT TO:<defer-me@example.com>"), 450, "4.2.1")
                self.assertEqual(c.cmd("RCPT TO:<good@example.com>")[0], 250)
                body = h.message(subject="after refused rcpt")
                d, end = c.data(body)
                self.assertEqual(d[0], 354)
                self.assertEqual(end[0], 250, end)
            msgs = rec.wait_messages(1)
            self.assertEqual(len(msgs), 1)
            self.assertEqual(msgs[0]["rcpt_tos"], ["good@example.com"])
            self.assertTrue(msgs[0]["data"].endswith(body[body.index(b"\r\n\r\n"):]))

    def test_refused_rcpt_then_accepted_rcpt_with_sink(self):
        # The same with smtp-sink: after its refusal the client is still in
        # the transaction (a further RCPT is relayed, not 503), and RSET and
        # a new transaction work against a fault-free sink on the same port.
        sink = self.sink("-f", "RCPT")
        proxy = self.proxy(sink.port)
        with h.Client(proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertReply(c.cmd("RCPT TO:<b@example.com>"), 500, "5.3.0")
            self.assertReply(c.cmd("RCPT TO:<c@example.com>"), 500, "5.3.0")
            self.assertEqual(c.cmd("RSET")[0], 250)
        sink.close()
        sink2 = self.sink(port=sink.port)
        self.assertEqual(h.send_one(proxy.port)[0], 250)
        self.assertEqual(len(self.delivered(sink2)), 1)

    # ---- the upstream drops the connection mid-transaction ----

    def disconnect(self, flag, step):
        body = h.message(subject="disconnect %s %s" % (flag, step))
        sink = self.sink(flag, step)
        proxy = self.proxy(sink.port)
        c = h.Client(proxy.port)
        replies = []
        try:
            r = c.cmd("MAIL FROM:<a@example.com>")
            replies.append(r)
            if r[0] == 250:
                r = c.cmd("RCPT TO:<b@example.com>")
                replies.append(r)
                if r[0] == 250:
                    d, end = c.data(body)
                    replies.append(d)
                    self.assertEqual(d[0], 354)
                    r = end
                    replies.append(r)
        finally:
            closed = c.closed_by_server()
            c.close()
        expected_step = {"MAIL": 0, "RCPT": 1, "DATA": 3, ".": 3}[step]
        self.assertEqual(len(replies), expected_step + 1,
                         "the failure must come at %s: %r" % (step, replies))
        code, text = replies[-1]
        self.assertNotEqual(code, 250)
        if flag == "-q":
            # Dropped without a reply: the relay's own 421 4.4.2 (or 451).
            self.assertIn(code, (421, 451), replies)
            self.assertTrue(text.startswith("4.4.2 ") or text.startswith("4.4.1 ")
                            or code == 451, replies)
        else:
            # smtp-sink said 421 itself: that reply reaches the client.
            self.assertEqual(code, 421, replies)
        if code == 421:
            self.assertTrue(closed, "after 421 the relay must close the session")
        # The fault goes away: the same upstream port, a fault-free sink.
        sink.close()
        sink2 = self.sink(port=sink.port)
        self.assertTrue(proxy.alive())
        end = h.send_one(proxy.port, body=body)
        self.assertEqual(end[0], 250, "retry after the fault: %r\n%s" % (end, proxy.stderr_text()))
        msgs = self.delivered(sink2)
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"Subject: disconnect %s %s" % (flag.encode(), step.encode()), msgs[0])

    def test_disconnect_at_mail(self):
        self.disconnect("-q", "MAIL")

    def test_disconnect_at_rcpt(self):
        self.disconnect("-q", "RCPT")

    def test_disconnect_at_data(self):
        self.disconnect("-q", "DATA")

    def test_disconnect_at_end_of_data(self):
        self.disconnect("-q", ".")

    def test_421_and_disconnect_at_rcpt(self):
        self.disconnect("-Q", "RCPT")

    def test_421_and_disconnect_at_end_of_data(self):
        self.disconnect("-Q", ".")

    # ---- what the upstream offers ----

    def test_ehlo_refused_falls_back_to_helo(self):
        sink = self.sink("-f", "EHLO")
        proxy = self.proxy(sink.port)
        self.assertEqual(h.send_one(proxy.port)[0], 250)
        msgs = self.delivered(sink)
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"X-Client-Proto: SMTP\n", msgs[0])

    def test_upstream_without_8bitmime(self):
        # smtp-sink -8 does not announce 8BITMIME: BODY=8BITMIME is refused
        # 554 5.6.3 at MAIL, not mangled; a 7-bit message still goes through.
        sink = self.sink("-8")
        proxy = self.proxy(sink.port)
        with h.Client(proxy.port) as c:
            self.assertReply(c.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME"), 554, "5.6.3")
            self.assertEqual(c.cmd("RSET")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com> BODY=7BIT")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.data(h.message())[1][0], 250)
        msgs = self.delivered(sink)
        self.assertEqual(len(msgs), 1)
        # BODY= is not passed to an upstream that lacks 8BITMIME.
        self.assertIn(b"X-Mail-Args: <a@example.com>\n", msgs[0])

    def test_greeting_refused(self):
        # smtp-sink -f CONNECT greets with 5xx: the upstream is unavailable;
        # the client gets 4xx at MAIL, never 250.
        sink = self.sink("-f", "CONNECT")
        proxy = self.proxy(sink.port)
        with h.Client(proxy.port) as c:
            code, text = c.cmd("MAIL FROM:<a@example.com>")
            self.assertEqual(code // 100, 4, (code, text))


if __name__ == "__main__":
    h.main()
