"""integ_extensions: commands of a plugin's own (-c examples/xcommands.so).

examples/xcommands.c adds XSTATE (the session's state, one 250 line per
fact, advertised in EHLO) and XDELAY <seconds> (answered from a libevent
timer while other clients are served), replaces VRFY, and refuses DATA
through its on_data hook when a forward-path starts with "nodata@". Driven
by smtplib (docmd, ehlo_resp) and raw sockets.
"""

import math
import signal
import smtplib
import socket
import struct
import time

from smtpd_harness import LOG_LINE, SmtpdTestCase, main, smtpdtest, xcommands_so

HOST = "mx.example.com"
SUPPORTED = "Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY BDAT XSTATE XDELAY"
SLOW = smtpdtest.SLOW


def delay(seconds):
    """An XDELAY long enough that the work done meanwhile fits in it, also
    when smtpd runs SLOW times slower (valgrind); at most XDELAY's 60."""
    return int(min(60, max(seconds, math.ceil(seconds * SLOW))))


def xstate(greeting="none", reverse_path="none", forward_paths=(), enhanced=True):
    """XSTATE's lines as RawClient.reply() gives their text."""
    lines = ["greeting: " + greeting, "reverse-path: " + reverse_path]
    lines += ["forward-path: " + fp for fp in forward_paths]
    lines.append("state: command")
    return ["2.0.0 " + line if enhanced else line for line in lines]


def docmd_text(lines):
    """The same lines as smtplib's docmd() joins them."""
    return "\n".join(lines).encode()


class XcommandsTestCase(SmtpdTestCase):

    def setUp(self):
        self.srv = self.start("--hostname", HOST, cls=xcommands_so())

    def client(self, verb="EHLO", srv=None, **kw):
        """A raw client greeted by the server and, unless verb is None,
        having greeted it with verb."""
        c = self.raw((srv or self.srv).port, **kw)
        self.assertEqual(c.reply()[0], 220)
        if verb:
            self.assertEqual(c.command(verb + " client.example.com")[0], 250)
        return c

    def session_id(self, c):
        """The server's session id ("[N]") of raw client c."""
        port = c.sock.getsockname()[1]
        m = self.srv.wait_stderr(rb"\[(\d+)\] connect from 127\.0\.0\.1:%d\n" % port)
        return m.group(1)

    def assertQuietLog(self):
        """No error or warning line on standard error."""
        bad = [line for line in self.srv.stderr().splitlines()
               if (LOG_LINE.match(line) and LOG_LINE.match(line).group(1) in (b"error", b"warning"))
               or not LOG_LINE.match(line)]
        self.assertEqual(bad, [], self.srv.stderr_text())


class XstateTest(XcommandsTestCase):

    def test_ehlo_advertises_xstate(self):
        s = self.smtp(self.srv.port)
        code, _ = s.ehlo("client.example.com")
        self.assertEqual(code, 250)
        lines = s.ehlo_resp.split(b"\n")
        self.assertEqual(lines[0], HOST.encode())
        for kw in (b"PIPELINING", b"ENHANCEDSTATUSCODES", b"HELP", b"8BITMIME", b"CHUNKING"):
            self.assertIn(kw, lines)
        # The extension's keyword comes after the built-in ones, once, then
        # the library's own (CHUNKING); XDELAY has no EHLO line.
        self.assertEqual(lines[-2:], [b"XSTATE", b"CHUNKING"])
        self.assertEqual(lines.count(b"XSTATE"), 1)
        self.assertTrue(s.has_extn("xstate"))
        self.assertFalse(s.has_extn("xdelay"))
        # A second EHLO builds the list afresh: still one XSTATE.
        s.ehlo("again.example.com")
        self.assertEqual(s.ehlo_resp.split(b"\n"), lines)
        # HELO shows no keywords at all.
        s2 = self.smtp(self.srv.port)
        self.assertEqual(s2.helo("plain.example.com"), (250, HOST.encode()))

    def test_before_the_greeting(self):
        c = self.client(verb=None)
        # Allowed at any time; no enhanced codes before EHLO (RFC 2034).
        self.assertEqual(c.command("XSTATE"), (250, xstate(enhanced=False)))
        c.send("XSTATE\r\n")
        self.assertEqual(c.buf, b"")
        raw = b""
        while not raw.endswith(b"250 state: command\r\n"):
            chunk = c.sock.recv(4096)
            self.assertTrue(chunk, raw)
            raw += chunk
        # The exact wire form of a multi-line reply (RFC 5321 4.2.1).
        self.assertEqual(raw, b"250-greeting: none\r\n250-reverse-path: none\r\n"
                              b"250 state: command\r\n")
        self.assertEqual(c.command("HELO helo.example.com")[0], 250)
        self.assertEqual(c.command("XSTATE"),
                         (250, xstate("HELO helo.example.com", enhanced=False)))

    def test_after_ehlo(self):
        s = self.smtp(self.srv.port)
        s.ehlo("ehlo.example.com")
        self.assertEqual(s.docmd("XSTATE"),
                         (250, docmd_text(xstate("EHLO ehlo.example.com"))))
        # Verbs match case-insensitively; XSTATE takes no argument and
        # ignores one.
        self.assertEqual(s.docmd("xstate"), (250, docmd_text(xstate("EHLO ehlo.example.com"))))
        self.assertEqual(s.docmd("XSTATE", "whatever"),
                         (250, docmd_text(xstate("EHLO ehlo.example.com"))))

    def test_inside_a_transaction(self):
        s = self.smtp(self.srv.port)
        s.ehlo("ehlo.example.com")
        self.assertEqual(s.mail("a@example.com")[0], 250)
        self.assertEqual(s.rcpt("b@example.com")[0], 250)
        self.assertEqual(s.docmd("RCPT TO:<broken")[0], 501)  # refused: not listed
        self.assertEqual(s.rcpt("c@example.com")[0], 250)
        want = xstate("EHLO ehlo.example.com", "<a@example.com>",
                      ["<b@example.com>", "<c@example.com>"])
        self.assertEqual(s.docmd("XSTATE"), (250, docmd_text(want)))
        # The transaction is unchanged by XSTATE: DATA takes the message.
        msg = b"Subject: t\r\n\r\nbody\r\n"
        self.assertEqual(s.data(msg)[0], 250)
        self.assertEqual(s.docmd("XSTATE"), (250, docmd_text(xstate("EHLO ehlo.example.com"))))
        # The null reverse-path, then RSET.
        self.assertEqual(s.docmd("MAIL FROM:<>")[0], 250)
        self.assertEqual(s.docmd("XSTATE"),
                         (250, docmd_text(xstate("EHLO ehlo.example.com", "<>"))))
        self.assertEqual(s.rset()[0], 250)
        self.assertEqual(s.docmd("XSTATE"), (250, docmd_text(xstate("EHLO ehlo.example.com"))))
        # A new EHLO resets the transaction and names the new greeting.
        s.mail("a@example.com")
        s.rcpt("b@example.com")
        s.ehlo("second.example.com")
        self.assertEqual(s.docmd("XSTATE"), (250, docmd_text(xstate("EHLO second.example.com"))))
        self.srv.wait_stderr(rb"xcommands: took %d bytes" % len(msg))

    def test_exact_lines_on_the_wire(self):
        c = self.client()
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<b@example.com>")
        c.command("RCPT TO:<c@example.com>")
        self.assertEqual(c.buf, b"")
        c.send("XSTATE\r\n")
        raw = b""
        while not raw.endswith(b"250 2.0.0 state: command\r\n"):
            chunk = c.sock.recv(4096)
            self.assertTrue(chunk, raw)
            raw += chunk
        self.assertEqual(raw.split(b"\r\n")[:-1], [
            b"250-2.0.0 greeting: EHLO client.example.com",
            b"250-2.0.0 reverse-path: <a@example.com>",
            b"250-2.0.0 forward-path: <b@example.com>",
            b"250-2.0.0 forward-path: <c@example.com>",
            b"250 2.0.0 state: command",
        ])


    def test_many_recipients_fill_64_lines(self):
        # A reply has at most 64 lines (smtpd_reply_lines): xcommands shows
        # the first 61 forward-paths, then the state line.
        c = self.client()
        domain = ("d" * 60 + ".") * 3 + "example.com"
        paths = ["<%s%03d@%s>" % ("l" * 60, i, domain) for i in range(100)]
        c.send("MAIL FROM:<a@example.com>\r\n" + "".join("RCPT TO:%s\r\n" % p for p in paths))
        for _ in range(101):
            self.assertEqual(c.reply()[0], 250)
        code, lines = c.command("XSTATE")
        self.assertEqual(code, 250)
        self.assertEqual(lines, xstate("EHLO client.example.com", "<a@example.com>", paths[:61]))
        self.assertEqual(len(lines), 64)


class XdelayTest(XcommandsTestCase):

    def test_other_clients_are_served_meanwhile(self):
        d = delay(2)
        a = self.client()
        t0 = time.monotonic()
        a.send("XDELAY %d\r\n" % d)
        # A second client does a whole transaction while the first waits.
        s = self.smtp(self.srv.port)
        s.ehlo("b.example.com")
        self.assertEqual(s.docmd("XSTATE")[0], 250)
        msg = b"Subject: meanwhile\r\n\r\nserved\r\n"
        refused = s.sendmail("b@example.com", ["r@example.com"], msg)
        self.assertEqual(refused, {})
        self.assertEqual(s.quit()[0], 221)
        tb = time.monotonic()
        code, text = a.reply(timeout=d + 10 * SLOW)
        ta = time.monotonic()
        self.assertEqual((code, text), (250, ["2.0.0 Delayed OK"]))
        self.assertGreaterEqual(ta - t0, d - 0.05, "XDELAY %d answered after %.2fs" % (d, ta - t0))
        self.assertLess(tb - t0, d - 0.5,
                        "the second client took %.2fs: it waited for the first's XDELAY %d"
                        % (tb - t0, d))
        self.assertLess(ta - t0, d + 2 * SLOW)
        self.srv.wait_stderr(rb"xcommands: took %d bytes" % len(msg))
        # The first session goes on as usual.
        self.assertEqual(a.command("XSTATE"), (250, xstate("EHLO client.example.com")))

    def test_many_delays_at_once(self):
        # 20 clients each wait 1 s: together about 1 s, not 20.
        d = delay(1)
        clients = [self.client() for _ in range(20)]
        t0 = time.monotonic()
        for c in clients:
            c.send("XDELAY %d\r\n" % d)
        for c in clients:
            self.assertEqual(c.reply(timeout=d + 10 * SLOW), (250, ["2.0.0 Delayed OK"]))
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, d - 0.05)
        self.assertLess(elapsed, d + 1.5 * SLOW, "20 x XDELAY %d took %.2fs" % (d, elapsed))

    def test_zero_and_spaces(self):
        c = self.client()
        t0 = time.monotonic()
        self.assertEqual(c.command("XDELAY 0"), (250, ["2.0.0 Delayed OK"]))
        self.assertEqual(c.command("xdelay   0  "), (250, ["2.0.0 Delayed OK"]))
        self.assertLess(time.monotonic() - t0, 1 * SLOW)

    def test_pipelined_batch_across_xdelay(self):
        d = delay(1)
        c = self.client()
        batch = ("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nXSTATE\r\n"
                 "XDELAY %d\r\nRCPT TO:<c@example.com>\r\nXSTATE\r\nQUIT\r\n" % d)
        t0 = time.monotonic()
        c.send(batch)  # one write
        got = []
        for _ in range(7):
            r = c.reply(timeout=d + 10 * SLOW)
            got.append((time.monotonic() - t0, r))
        self.assertEqual([r for _, r in got], [
            (250, ["2.1.0 OK"]),
            (250, ["2.1.5 OK"]),
            (250, xstate("EHLO client.example.com", "<a@example.com>", ["<b@example.com>"])),
            (250, ["2.0.0 Delayed OK"]),
            (250, ["2.1.5 OK"]),
            (250, xstate("EHLO client.example.com", "<a@example.com>",
                         ["<b@example.com>", "<c@example.com>"])),
            (221, ["2.0.0 Bye"]),
        ])
        times = [t for t, _ in got]
        # The replies before XDELAY are not held back until it ends ...
        self.assertLess(times[2], d * 0.8, "replies before XDELAY came after %.2fs" % times[2])
        # ... and nothing after it is answered before the delay is over.
        self.assertGreaterEqual(times[3], d - 0.05)
        self.assertGreaterEqual(times[4], d - 0.05, "the RCPT after XDELAY %d was answered "
                                "after %.2fs" % (d, times[4]))
        self.assertTrue(c.closed_by_peer())
        self.srv.wait_stderr(rb"transaction from=<a@example.com> "
                             rb"to=<b@example.com,c@example.com> ended by QUIT before DATA")

    def test_client_leaves_during_xdelay(self):
        d = delay(2)
        # Sockets held with no client: the listener, libevent's own.
        idle_sockets = smtpdtest.proc_socket_count(self.srv.pid)
        a = self.client()
        ida = self.session_id(a)
        a.send("XDELAY %d\r\n" % d)
        b = self.client()
        idb = self.session_id(b)
        b.send("XDELAY %d\r\n" % d)
        time.sleep(0.2)
        t0 = time.monotonic()
        a.close()  # FIN
        # RST: SO_LINGER with a zero timeout.
        b.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()
        # The server goes on serving while those timers are pending.
        s = self.smtp(self.srv.port)
        s.ehlo("next.example.com")
        self.assertEqual(s.sendmail("n@example.com", ["r@example.com"], b"next\r\n"), {})
        self.assertEqual(s.quit()[0], 221)
        self.assertLess(time.monotonic() - t0, d - 0.5)
        # Both sessions end (at the latest when the delay is over) with
        # their usual lines; the cancelled answers go nowhere.
        for sid in (ida, idb):
            self.srv.wait_stderr(rb"\[%s\] disconnect from 127\.0\.0\.1 messages=0" % sid,
                                 timeout=d + 10 * SLOW)
        self.assertTrue(smtpdtest.wait_until(
            lambda: smtpdtest.proc_socket_count(self.srv.pid) == idle_sockets, 5 * SLOW, 0.05),
            "sockets still open: %d (idle: %d)"
            % (smtpdtest.proc_socket_count(self.srv.pid), idle_sockets))
        # Past the delay: nothing more happens for those sessions.
        time.sleep(max(0.0, d + 0.3 - (time.monotonic() - t0)))
        self.assertTrue(self.srv.alive(), self.srv.stderr_text())
        self.assertQuietLog()
        # And the next client is served as the first was.
        c = self.client()
        self.assertEqual(c.command("XDELAY 1"), (250, ["2.0.0 Delayed OK"]))
        self.assertEqual(c.command("QUIT")[0], 221)
        self.assertEqual(self.srv.stop(), 0, self.srv.stderr_text())
        self.assertQuietLog()

    def test_sigterm_during_xdelay(self):
        d = delay(1)
        c = self.client()
        idle = self.client()
        t0 = time.monotonic()
        c.send("XDELAY %d\r\n" % d)
        time.sleep(0.2)
        self.srv.signal(signal.SIGTERM)
        # The idle client is let go at once; the pending answer still comes,
        # then the goodbye.
        self.assertEqual(idle.reply()[0], 421)
        code, text = c.reply(timeout=d + 10 * SLOW)
        self.assertEqual((code, text), (250, ["2.0.0 Delayed OK"]))
        self.assertGreaterEqual(time.monotonic() - t0, d - 0.05)
        code, text = c.reply()
        self.assertEqual(code, 421, text)
        self.assertTrue(text[0].startswith("4.3.2 "), text)
        self.assertTrue(c.closed_by_peer())
        self.assertEqual(self.srv.wait(10 * SLOW), 0, self.srv.stderr_text())
        self.assertQuietLog()

    def test_command_timeout_waits_for_the_answer(self):
        # --command-timeout is the client's time to send a command: it does
        # not run while the server owes an answer, and starts again after it.
        d = delay(2)
        srv = self.start("--command-timeout", "1", cls=xcommands_so())
        c = self.client(srv=srv)
        t0 = time.monotonic()
        c.send("XDELAY %d\r\n" % d)
        self.assertEqual(c.reply(timeout=d + 10 * SLOW), (250, ["2.0.0 Delayed OK"]))
        t1 = time.monotonic()
        self.assertGreaterEqual(t1 - t0, d - 0.05)
        code, text = c.reply(timeout=5 * SLOW)
        self.assertEqual(code, 421, text)
        self.assertGreaterEqual(time.monotonic() - t1, 0.9)
        self.assertTrue(c.closed_by_peer())

    def test_bad_arguments(self):
        s = self.smtp(self.srv.port)
        s.ehlo("client.example.com")
        # Inside a transaction: a refused XDELAY leaves it alone.
        s.mail("a@example.com")
        self.assertEqual(s.docmd("XDELAY"), (501, b"5.5.4 Syntax: XDELAY <seconds>"))
        for arg in ("abc", "61", "-1", "1.5", "1 2", "0x10"):
            self.assertEqual(s.docmd("XDELAY", arg),
                             (501, b"5.5.4 Syntax: XDELAY <seconds> (0 to 60)"), arg)
        self.assertEqual(s.docmd("XDELAY", "99999999"), (501, b"5.5.4 Syntax: XDELAY <seconds>"))
        self.assertEqual(s.docmd("XSTATE"),
                         (250, docmd_text(xstate("EHLO client.example.com", "<a@example.com>"))))
        self.assertEqual(s.noop()[0], 250)
        # Without EHLO: the same reply without the enhanced code.
        c = self.client(verb=None)
        self.assertEqual(c.command("XDELAY 61"), (501, ["Syntax: XDELAY <seconds> (0 to 60)"]))

    def test_errors_count_toward_max_errors(self):
        srv = self.start("--max-errors", "3", cls=xcommands_so())
        c = self.client(srv=srv)
        # A refused DATA (554 from on_data) is no protocol error ...
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<nodata@example.com>")
        for _ in range(4):
            self.assertEqual(c.command("DATA")[0], 554)
        # ... an extension's 501 is, like a built-in's.
        self.assertEqual(c.command("XDELAY a")[0], 501)
        self.assertEqual(c.command("XDELAY b")[0], 501)
        self.assertEqual(c.command("NOOP")[0], 250)
        self.assertEqual(c.command("XDELAY c")[0], 501)
        code, text = c.reply()
        self.assertEqual(code, 421, text)
        self.assertTrue(text[0].startswith("4.7.0 "), text)
        self.assertTrue(c.closed_by_peer())


class HooksAndReplacementsTest(XcommandsTestCase):

    def test_data_refused_for_nodata(self):
        s = self.smtp(self.srv.port)
        s.ehlo("client.example.com")
        self.assertEqual(s.mail("a@example.com")[0], 250)
        self.assertEqual(s.rcpt("ok@example.com")[0], 250)
        self.assertEqual(s.rcpt("nodata@example.com")[0], 250)
        self.assertEqual(s.docmd("DATA"),
                         (554, b"5.7.1 No data accepted for nodata@ recipients"))
        # The transaction stays as it was: more RCPTs, still refused.
        want = xstate("EHLO client.example.com", "<a@example.com>",
                      ["<ok@example.com>", "<nodata@example.com>"])
        self.assertEqual(s.docmd("XSTATE"), (250, docmd_text(want)))
        self.assertEqual(s.rcpt("more@example.com")[0], 250)
        self.assertEqual(s.docmd("DATA")[0], 554)
        # The session reads commands, not data, after the refusal.
        self.assertEqual(s.noop()[0], 250)
        self.assertEqual(s.rset()[0], 250)
        self.assertEqual(s.docmd("XSTATE"), (250, docmd_text(xstate("EHLO client.example.com"))))
        # A normal message works, and is the plugin's (nothing on stdout).
        msg = b"Subject: fine\r\n\r\nhello\r\n"
        self.assertEqual(s.sendmail("a@example.com", ["ok@example.com"], msg), {})
        self.srv.wait_stderr(rb"xcommands: took %d bytes" % len(msg))
        self.srv.wait_stderr(rb"message from=<a@example.com> to=<ok@example.com> size=%d "
                             rb"reply=250" % len(msg))
        # Through smtplib's sendmail: SMTPDataError, and (smtplib's data()
        # does not RSET when DATA itself is refused) the transaction is
        # still there until the client resets it.
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            s.sendmail("a@example.com", ["nodata@example.com"], msg)
        self.assertEqual(cm.exception.smtp_code, 554)
        self.assertEqual(s.docmd("XSTATE"), (250, docmd_text(xstate(
            "EHLO client.example.com", "<a@example.com>", ["<nodata@example.com>"]))))
        self.assertEqual(s.rset()[0], 250)
        self.assertEqual(s.sendmail("a@example.com", ["x@example.com"], msg), {})
        self.assertEqual(s.quit()[0], 221)
        self.assertEqual(self.srv.stdout(), b"")
        # Only a forward-path that starts with "nodata@" counts.
        c = self.client(verb="HELO")
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<xnodata@example.com>")
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"x\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<nodata@example.com>")
        self.assertEqual(c.command("DATA"),
                         (554, ["No data accepted for nodata@ recipients"]))

    def test_vrfy_replaced(self):
        s = self.smtp(self.srv.port)
        s.ehlo("client.example.com")
        tail = b'", but will take mail for it'
        self.assertEqual(s.verify("someone@example.com"),
                         (252, b'2.5.2 Cannot VRFY "someone@example.com' + tail))
        self.assertEqual(s.docmd("VRFY"), (252, b'2.5.2 Cannot VRFY "", but will take mail for it'))
        self.assertEqual(s.docmd("vrfy", "<a@b.example>  "),
                         (252, b'2.5.2 Cannot VRFY "<a@b.example>", but will take mail for it'))
        self.assertEqual(s.docmd("VRFY", "x" * 300),
                         (252, b'2.5.2 Cannot VRFY "' + b"x" * 200 + tail))
        c = self.client(verb=None)
        self.assertEqual(c.command("VRFY"), (252, ['Cannot VRFY "", but will take mail for it']))

    def test_help(self):
        c = self.client(verb=None)
        self.assertEqual(c.command("HELP"), (250, [SUPPORTED]))
        self.assertEqual(c.command("HELP XDELAY"), (250, ["Syntax: XDELAY <seconds>"]))
        s = self.smtp(self.srv.port)
        s.ehlo("client.example.com")
        self.assertEqual(s.help(), b"2.0.0 " + SUPPORTED.encode())
        self.assertEqual(s.docmd("HELP", "XDELAY"), (250, b"2.0.0 Syntax: XDELAY <seconds>"))
        self.assertEqual(s.docmd("HELP", "xdelay"), (250, b"2.0.0 Syntax: XDELAY <seconds>"))
        self.assertEqual(s.docmd("HELP", "XSTATE"), (250, b"2.0.0 Syntax: XSTATE"))
        # The replacement's syntax, not the built-in's.
        self.assertEqual(s.docmd("HELP", "VRFY"), (250, b"2.0.0 Syntax: VRFY <anything>"))
        # Built-ins keep theirs.
        self.assertEqual(s.docmd("HELP", "NOOP"), (250, b"2.0.0 Syntax: NOOP"))
        self.assertEqual(s.docmd("HELP", "XFOO"), (501, b"5.5.4 " + SUPPORTED.encode()))

    def test_unknown_verbs(self):
        c = self.client(verb=None)
        self.assertEqual(c.command("XFOO"), (500, ["Error: command not recognized"]))
        s = self.smtp(self.srv.port)
        s.ehlo("client.example.com")
        # No prefix or longer-word matches of the extension verbs.
        for line in ("XFOO", "XSTAT", "XSTATES", "XDELAYX 1", "X-STATE"):
            self.assertEqual(s.docmd(line), (500, b"5.5.1 Error: command not recognized"), line)
        self.assertEqual(s.docmd("XSTATE")[0], 250)


if __name__ == "__main__":
    main()
