"""PureProxy against an upstream that breaks the protocol, or goes away, at
each step (relay_protocol_errors), scripted with h.ScriptedUpstream.

A reply a step does not allow is an upstream protocol error: a 2xx or a 3xx
other than 354 to DATA; any 3xx to MAIL, RCPT, RSET or the final dot; a 2xx
to the final dot that comes before the relay wrote the data. The upstream
connection is then closed, never pooled; the client gets 451 4.4.0 (at MAIL,
and after its final dot for DATA and the dot), or 421 4.4.0 at RCPT, which
closes its session as any 421 does; smtpd logs a warning "protocol error:
... in reply to <step>: <what the upstream sent>".

An upstream that closes the connection or falls silent at a step gets the
client 451 4.4.1 while it was not ready yet (greeting, EHLO), 421 4.4.2
later, within the relay timeout -- at MAIL within twice that, since a MAIL
that finds its connection lost is tried once more on a fresh one.

Always: exactly one reply per client command, never 250 for data the
upstream did not acknowledge after it had it all, nothing sent upstream
after the broken step, and the next transaction works, over a fresh
upstream connection.
"""

import re
import time

import relay_harness as h

# --relay-timeout for the tests where the upstream falls silent.
SILENT_TIMEOUT = 2
# How much longer than the relay timeout a client may wait for its reply.
MARGIN = 1.5 * h.SLOW

# The client's steps: MAIL, RCPT, DATA and the final dot (with the message
# before it). The relay answers DATA itself (354) and talks to the upstream
# once the client's data is complete, so the upstream's replies to DATA and
# to the final dot both reach the client after its final dot.
STEPS = ("MAIL", "RCPT", "DATA", ".")
COMMANDS = {"MAIL": "MAIL FROM:<a@example.com>", "RCPT": "RCPT TO:<b@example.com>",
            "DATA": "DATA"}


class ProtocolErrors(h.RelayTestCase):

    def start(self, script, scripted=1, relay_timeout=5):
        """A scripted upstream (the first `scripted` connections follow
        `script`, later ones work) and the relay in front of it."""
        up = h.ScriptedUpstream(script, scripted=scripted)
        self.cleanups.append(up.stop)
        proxy = self.proxy(up.port, relay_timeout=relay_timeout)
        return up, proxy

    def client(self, proxy):
        c = h.Client(proxy.port, timeout=30 + 2 * MARGIN)
        self.cleanups.append(c.close)
        return c

    def transaction(self, c, subject="scripted"):
        """MAIL, RCPT, DATA and the message on @c, up to the first reply
        that is neither 250 nor 354. Returns [(step, (code, text),
        seconds the reply took)]."""
        out = []
        for step in STEPS:
            t0 = time.monotonic()
            if step == ".":
                c.send(h.stuff(h.message(subject=subject)) + b".\r\n")
                r = c.reply()
            else:
                r = c.cmd(COMMANDS[step])
            out.append((step, r, time.monotonic() - t0))
            if r[0] not in (250, 354):
                break
        return out

    def assert_fails_at(self, proxy, replies, step, code, enh, within=None):
        """The steps before @step got 250 (354 for DATA); @step got @code
        @enh, within @within seconds if given; no step after it was tried."""
        steps = [s for s, _, _ in replies]
        self.assertEqual(steps, list(STEPS[:STEPS.index(step) + 1]),
                         "replies %r\n%s" % (replies, proxy.stderr_text()))
        for s, r, _ in replies[:-1]:
            self.assertEqual(r[0], 354 if s == "DATA" else 250, "%s: %r" % (s, r))
        _, (got, text), took = replies[-1]
        self.assertEqual((got, text.split(" ")[0]), (code, enh),
                         "%s: %r\n%s" % (step, (got, text), proxy.stderr_text()))
        if within is not None:
            self.assertLess(took, within, "the reply to %s took %.1f s" % (step, took))
        return took

    def assert_one_reply_each(self, c, closed):
        """Nothing came beyond one reply per command: a session closed by a
        421 sends nothing more; an open one answers the next command (EXPN,
        whose 502 nothing else gives) with its own reply and nothing else."""
        if closed:
            self.assertEqual(c.buf, b"", "bytes after the last reply")
            self.assertTrue(c.closed_by_server(3 * h.SLOW), "the 421 did not close the session")
            self.assertEqual(c.buf, b"", "bytes after the 421")
            return
        code, text = c.cmd("EXPN probe")
        self.assertEqual((code, text.split(" ")[0]), (502, "5.5.1"),
                         "a reply out of step: %r" % ((code, text),))
        self.assertFalse(c.closed_by_server(0.3), "the session was closed")
        self.assertEqual(c.buf, b"", "an extra reply")

    def assert_dropped(self, up, proxy, step, verbs):
        """The first upstream connection got exactly @verbs (then nothing
        but maybe QUIT) and the relay closed it; nothing of the message got
        there as a command line."""
        first = up.conn(0)
        self.assertTrue(first.ended.wait(5 * h.SLOW),
                        "the relay kept the connection after a broken %s\n%s"
                        % (step, proxy.stderr_text()))
        got = first.verbs()
        self.assertEqual(got[:len(verbs)], verbs, got)
        self.assertEqual([v for v in got[len(verbs):] if v != "QUIT"], [],
                         "commands after the broken %s: %r" % (step, got))
        self.assertEqual(up.junk, [], "data sent as commands")

    def assert_next_transaction_works(self, up, proxy, conns_before=1):
        """A new client's transaction is relayed, over a fresh connection:
        the broken one was not pooled."""
        self.assertTrue(proxy.alive(), proxy.stderr_text())
        delivered = len(up.delivered)
        with h.Client(proxy.port) as c:
            replies = self.transaction(c, subject="next")
        self.assertEqual([r[0] for _, r, _ in replies], [250, 250, 354, 250],
                         "%r\n%s" % (replies, proxy.stderr_text()))
        self.assertEqual(up.connections, conns_before + 1,
                         "a broken connection was reused\n" + proxy.stderr_text())
        self.assertEqual(len(up.delivered), delivered + 1)
        self.assertIn(b"Subject: next\r\n", up.delivered[-1])

    def assert_log(self, proxy, up, pattern):
        """A warning line for the upstream on smtpd's stderr matching
        @pattern (bytes, a regex)."""
        prefix = rb"warning: upstream 127\.0\.0\.1:%d: " % up.port
        self.assertTrue(proxy.wait_log(prefix + pattern, 5 * h.SLOW),
                        "no log line %r:\n%s" % (pattern, proxy.stderr_text()))

    def protocol_error(self, step, answer, fail_at, code, enh, verbs, log, received=0):
        """The upstream answers @step with @answer: the client fails at
        @fail_at with @code @enh, the upstream got @verbs and @received
        whole messages and delivered none, the log says @log."""
        up, proxy = self.start({step: answer})
        c = self.client(proxy)
        replies = self.transaction(c)
        self.assert_fails_at(proxy, replies, fail_at, code, enh, within=2 * h.SLOW)
        self.assert_one_reply_each(c, closed=code == 421)
        self.assert_dropped(up, proxy, step, verbs)
        self.assertEqual(len(up.received), received)
        self.assertEqual(up.delivered, [])
        self.assert_log(proxy, up, rb"protocol error: " + log)
        self.assert_next_transaction_works(up, proxy)
        if code != 421:
            # The same session goes on too, over the working connection,
            # which was pooled.
            replies = self.transaction(c, subject="same session")
            self.assertEqual([r[0] for _, r, _ in replies], [250, 250, 354, 250], replies)
            self.assertEqual(up.connections, 2)
        return up, proxy

    # ---- replies a step does not allow ----

    def test_250_to_data(self):
        # The data was never sent, so that 250 acknowledges nothing.
        self.protocol_error("DATA", "250 2.0.0 Ok: queued", ".", 451, "4.4.0",
                            ["EHLO", "MAIL", "RCPT", "DATA"],
                            rb"2xx \(the data was never sent\) in reply to DATA: "
                            rb"250 2\.0\.0 Ok: queued\n")

    def test_3xx_other_than_354_to_data(self):
        self.protocol_error("DATA", "334 VXNlcm5hbWU6", ".", 451, "4.4.0",
                            ["EHLO", "MAIL", "RCPT", "DATA"],
                            rb"3xx in reply to DATA: 334 VXNlcm5hbWU6\n")

    def test_354_to_mail(self):
        self.protocol_error("MAIL", "354 go ahead", "MAIL", 451, "4.4.0", ["EHLO", "MAIL"],
                            rb"3xx in reply to MAIL: 354 go ahead\n")

    def test_334_to_rcpt(self):
        # 421 at RCPT: the recipients accepted so far went with the
        # connection; the client's session closes.
        self.protocol_error("RCPT", "334 x", "RCPT", 421, "4.4.0", ["EHLO", "MAIL", "RCPT"],
                            rb"3xx in reply to RCPT: 334 x\n")

    def test_354_to_the_final_dot(self):
        # The upstream had the whole message but never acknowledged it.
        self.protocol_error(".", "354 send more", ".", 451, "4.4.0",
                            ["EHLO", "MAIL", "RCPT", "DATA"],
                            rb"3xx in reply to the end of data: 354 send more\n", received=1)

    def test_premature_250_after_354(self):
        # 354 and 250 in one write: the 250 came before the relay had
        # written a byte of the data. The data is never sent.
        self.protocol_error("DATA", "354 go ahead\r\n250 2.0.0 Ok: queued", ".", 451, "4.4.0",
                            ["EHLO", "MAIL", "RCPT", "DATA"],
                            rb"2xx before the data was sent in reply to the end of data: "
                            rb"250 2\.0\.0 Ok: queued\n")

    def test_refusal_in_mid_data_is_passed_on(self):
        # 354 and a 554 in one write: a refusal before the data was sent is
        # the client's answer (it is no 250), but the connection is out of
        # step and goes.
        up, proxy = self.start({"DATA": "354 go ahead\r\n554 5.6.0 Message refused"})
        c = self.client(proxy)
        replies = self.transaction(c)
        self.assert_fails_at(proxy, replies, ".", 554, "5.6.0", within=2 * h.SLOW)
        self.assert_one_reply_each(c, closed=False)
        self.assert_dropped(up, proxy, "DATA", ["EHLO", "MAIL", "RCPT", "DATA"])
        self.assertEqual((up.received, up.delivered), ([], []))
        self.assert_log(proxy, up, rb"reply before the end of data was sent: "
                                   rb"554 5\.6\.0 Message refused\n")
        self.assert_next_transaction_works(up, proxy)

    def test_multiline_reply_with_two_codes(self):
        # "250-..." then "251 ...": not one reply, a protocol error. The
        # connection goes and the client gets 451 4.4.0 (not retried),
        # never the 250.
        up, proxy = self.start({"MAIL": "250-2.1.0 Ok\r\n251 2.1.0 Ok"}, scripted=None)
        c = self.client(proxy)
        (step, (code, text), took), = self.transaction(c)
        self.assertEqual((code, text[:5]), (451, "4.4.0"), (code, text))
        self.assertLess(took, 2 * h.SLOW)
        self.assertEqual(up.connections, 1)
        self.assert_log(proxy, up, rb"protocol error: not a reply line \(or a changed code\) "
                                   rb"in reply to MAIL: 251 ")
        self.assertTrue(up.wait_ended(5 * h.SLOW), "a broken connection was kept")

    def rset_answered(self, answer, log):
        """The client abandons a transaction (RSET after RCPT): the relay
        RSETs the upstream to reuse the connection; @answer there means it
        must not be reused."""
        up, proxy = self.start({"RSET": answer})
        c = self.client(proxy)
        self.assertEqual(c.cmd(COMMANDS["MAIL"])[0], 250)
        self.assertEqual(c.cmd(COMMANDS["RCPT"])[0], 250)
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertTrue(up.conn(0).ended.wait(5 * h.SLOW),
                        "the connection was kept after RSET got %r\n%s"
                        % (answer, proxy.stderr_text()))
        self.assertEqual(up.conn(0).verbs()[:4], ["EHLO", "MAIL", "RCPT", "RSET"])
        if log:
            self.assert_log(proxy, up, log)
        self.assert_one_reply_each(c, closed=False)
        self.assert_next_transaction_works(up, proxy)

    def test_221_to_rset(self):
        # 221 is the reply to QUIT: the upstream is closing, not reset.
        self.rset_answered("221 2.0.0 Bye", None)

    def test_334_to_rset(self):
        self.rset_answered("334 x", rb"protocol error: 3xx in reply to RSET: 334 x\n")

    # ---- connection closed ----

    def lost(self, script, fail_at, code, enh, verbs, received=0, scripted=1):
        up, proxy = self.start(script, scripted=scripted)
        c = self.client(proxy)
        replies = self.transaction(c)
        self.assert_fails_at(proxy, replies, fail_at, code, enh, within=2 * h.SLOW)
        self.assert_one_reply_each(c, closed=code == 421)
        self.assertTrue(up.wait_ended(5 * h.SLOW))
        self.assertEqual(up.conn(0).verbs()[:len(verbs)], verbs)
        self.assertEqual(len(up.received), received)
        self.assertEqual(up.delivered, [])
        self.assertEqual(up.junk, [])
        self.assert_next_transaction_works(up, proxy, conns_before=up.connections)
        return up, proxy

    def test_close_at_greeting(self):
        up, proxy = self.lost({"greeting": "close"}, "MAIL", 451, "4.4.1", [])
        self.assert_log(proxy, up, rb"connection closed by the upstream\n")

    def test_close_at_ehlo(self):
        self.lost({"EHLO": "close"}, "MAIL", 451, "4.4.1", ["EHLO"])

    def test_close_at_rcpt(self):
        self.lost({"RCPT": "close"}, "RCPT", 421, "4.4.2", ["EHLO", "MAIL", "RCPT"])

    def test_close_at_data(self):
        self.lost({"DATA": "close"}, ".", 421, "4.4.2", ["EHLO", "MAIL", "RCPT", "DATA"])

    def test_close_after_354(self):
        self.lost({"DATA": ("354 go ahead", "close")}, ".", 421, "4.4.2",
                  ["EHLO", "MAIL", "RCPT", "DATA"])

    def test_reset_after_354(self):
        self.lost({"DATA": ("354 go ahead", "reset")}, ".", 421, "4.4.2",
                  ["EHLO", "MAIL", "RCPT", "DATA"])

    def test_close_after_the_final_dot(self):
        # The upstream had the whole message and closed without a reply: it
        # may or may not have it, so never 250; 421 and the client retries.
        up, proxy = self.lost({".": "close"}, ".", 421, "4.4.2",
                              ["EHLO", "MAIL", "RCPT", "DATA"], received=1)
        self.assert_log(proxy, up, rb"connection closed by the upstream\n")

    def test_close_at_mail_every_time(self):
        # MAIL finds the connection gone: one more try on a fresh one, which
        # is gone too. 421 4.4.2 (the session closes), and two connections.
        up, proxy = self.start({"MAIL": "close"}, scripted=2)
        c = self.client(proxy)
        replies = self.transaction(c)
        self.assert_fails_at(proxy, replies, "MAIL", 421, "4.4.2", within=2 * h.SLOW)
        self.assert_one_reply_each(c, closed=True)
        self.assertEqual(up.connections, 2)
        self.assertTrue(up.wait_ended(5 * h.SLOW))
        self.assert_next_transaction_works(up, proxy, conns_before=2)

    # ---- silence: the relay timeout ----

    def silent(self, step, fail_at, code, enh, verbs, received=0):
        """The upstream never answers @step: the client's @fail_at gets
        @code @enh once the relay timeout has passed, not before, and
        within it plus a margin."""
        up, proxy = self.start({step: "silence"}, relay_timeout=SILENT_TIMEOUT)
        c = self.client(proxy)
        replies = self.transaction(c)
        took = self.assert_fails_at(proxy, replies, fail_at, code, enh,
                                    within=SILENT_TIMEOUT + MARGIN)
        self.assertGreater(took, SILENT_TIMEOUT - 0.2, "no timeout: the relay did not wait")
        self.assert_one_reply_each(c, closed=code == 421)
        # The relay gave up on the silent connection and closed it.
        self.assertTrue(up.conn(0).ended.wait(2 * h.SLOW), "the silent connection was kept")
        self.assertEqual(up.conn(0).verbs(), verbs)
        self.assertEqual(len(up.received), received)
        self.assertEqual(up.delivered, [])
        self.assert_next_transaction_works(up, proxy)
        return up, proxy

    def test_silent_greeting(self):
        up, proxy = self.silent("greeting", "MAIL", 451, "4.4.1", [])
        # (The line says "no the greeting within 2 s".)
        self.assert_log(proxy, up, rb"no (the )?greeting within %d s\n" % SILENT_TIMEOUT)

    def test_silent_ehlo(self):
        up, proxy = self.silent("EHLO", "MAIL", 451, "4.4.1", ["EHLO"])
        self.assert_log(proxy, up, rb"no reply to EHLO within %d s\n" % SILENT_TIMEOUT)

    def test_silent_rcpt(self):
        up, proxy = self.silent("RCPT", "RCPT", 421, "4.4.2", ["EHLO", "MAIL", "RCPT"])
        self.assert_log(proxy, up, rb"no reply to RCPT within %d s\n" % SILENT_TIMEOUT)

    def test_silent_data(self):
        up, proxy = self.silent("DATA", ".", 421, "4.4.2", ["EHLO", "MAIL", "RCPT", "DATA"])
        self.assert_log(proxy, up, rb"no reply to DATA within %d s\n" % SILENT_TIMEOUT)

    def test_silent_after_the_final_dot(self):
        up, proxy = self.silent(".", ".", 421, "4.4.2", ["EHLO", "MAIL", "RCPT", "DATA"],
                                received=1)
        self.assert_log(proxy, up, rb"no reply to the end of data within %d s\n"
                        % SILENT_TIMEOUT)

    def test_silent_mail(self):
        # A MAIL the upstream never answers costs the client one relay
        # timeout: a connection that timed out is not tried again (only one
        # that was lost or closing is), and the client gets 421 4.4.2.
        up, proxy = self.start({"MAIL": "silence"}, scripted=1, relay_timeout=SILENT_TIMEOUT)
        c = self.client(proxy)
        replies = self.transaction(c)
        took = self.assert_fails_at(proxy, replies, "MAIL", 421, "4.4.2",
                                    within=SILENT_TIMEOUT + MARGIN)
        self.assertGreater(took, SILENT_TIMEOUT - 0.2)
        self.assert_one_reply_each(c, closed=True)
        self.assertEqual(up.connections, 1)
        self.assertEqual(up.conn(0).verbs(), ["EHLO", "MAIL"])
        self.assert_log(proxy, up, rb"no reply to MAIL within %d s\n" % SILENT_TIMEOUT)
        self.assertTrue(up.wait_ended(2 * h.SLOW))
        self.assert_next_transaction_works(up, proxy, conns_before=1)

    def test_silent_rset_delays_nobody(self):
        # The RSET that returns an abandoned transaction's connection to
        # the pool is never answered: that connection is dropped after the
        # relay timeout, and nobody waits for it meanwhile.
        # (A longer timeout in a slow run: the next transaction, on a new
        # connection, must be over well before it.)
        timeout = int(SILENT_TIMEOUT * h.SLOW)
        up, proxy = self.start({"RSET": "silence"}, relay_timeout=timeout)
        c = self.client(proxy)
        self.assertEqual(c.cmd(COMMANDS["MAIL"])[0], 250)
        self.assertEqual(c.cmd(COMMANDS["RCPT"])[0], 250)
        t0 = time.monotonic()
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertTrue(up.silent.wait(2 * h.SLOW), "no RSET upstream")
        replies = self.transaction(c, subject="after rset")
        self.assertEqual([r[0] for _, r, _ in replies], [250, 250, 354, 250], replies)
        self.assertLess(time.monotonic() - t0, timeout, "the client waited for the RSET")
        self.assertEqual(up.connections, 2)
        self.assertTrue(up.conn(0).ended.wait(timeout + MARGIN), "the silent connection was kept")
        self.assert_log(proxy, up, rb"no reply to RSET within %d s\n" % timeout)
        # The next one takes the working (pooled) connection, not the dead one.
        self.assertEqual(h.send_one(proxy.port)[0], 250, proxy.stderr_text())
        self.assertEqual((up.connections, len(up.delivered)), (2, 2))

    # ---- pipelined: one reply per command ----

    def test_pipelined_session_one_reply_per_command(self):
        # A whole session in one write, against an upstream that answers
        # the first DATA 250: every command gets exactly one reply, in
        # order, and the second transaction (a fresh connection) is
        # delivered.
        up, proxy = self.start({"DATA": "250 2.0.0 Ok"})
        c = self.client(proxy)
        msg = h.stuff(h.message(subject="pipelined")) + b".\r\n"
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" + msg +
               b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" + msg +
               b"QUIT\r\n")
        codes = [c.reply()[0] for _ in range(9)]
        self.assertEqual(codes, [250, 250, 354, 451, 250, 250, 354, 250, 221],
                         proxy.stderr_text())
        self.assertTrue(c.closed_by_server(3 * h.SLOW))
        self.assertEqual(c.buf, b"")
        self.assertEqual(up.connections, 2)
        self.assertEqual(len(up.delivered), 1)
        self.assertTrue(re.search(rb"Subject: pipelined\r\n", up.delivered[0]))


if __name__ == "__main__":
    h.main()
