"""integ_session: how a session starts and what its transactions log.

  * A first command line that is an HTTP request line ends the session at
    once (no reply after the greeting, nothing after it run); later, or in
    lower case, it is only an unknown command.
  * Local parts with leading, trailing or doubled dots are accepted, as
    Python's smtpd (3.11) accepts them; doubled dots in a domain are not.
  * Every transaction ends with one info line on standard error: the
    message, a refusal at MAIL, or what ended it (RSET, QUIT, EHLO, a
    disconnect, a timeout; before or in DATA) with the refused recipients.
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request

from smtpd_harness import LOG_LINE, SmtpdTestCase, main
import smtpdtest  # noqa: E402  (smtpd_harness puts tests/pylib on sys.path)

HTTP_LINES = [
    b"GET / HTTP/1.1",
    b"POST /cgi-bin/form HTTP/1.1",
    b"CONNECT mail.example.com:25 HTTP/1.1",
    b"HEAD /index.html HTTP/1.0",
    b"PUT /upload HTTP/1.1",
    b"DELETE /x?y=z HTTP/1.1",
    b"OPTIONS * HTTP/1.1",
    b"TRACE / HTTP/1.0",
    b"PATCH /thing HTTP/1.1",
]

# What an HTTP client would make the server run, if it read on.
SMUGGLED = (b"MAIL FROM:<attacker@example.com>\r\nRCPT TO:<victim@example.com>\r\n"
            b"DATA\r\nSubject: via HTTP\r\n\r\nspam\r\n.\r\nQUIT\r\n")

DOTTED = ["user..name@docomo.ne.jp", "taro.@ezweb.ne.jp", ".hanako@docomo.ne.jp"]

# Python 3.11's smtpd, as the reference: prints the envelope it got, as JSON.
REFERENCE = r"""
import asyncore, json, smtpd, sys
class Ref(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kw):
        print(json.dumps({"mailfrom": mailfrom, "rcpttos": rcpttos}), flush=True)
server = Ref(("127.0.0.1", 0), None)
print("READY %d" % server.socket.getsockname()[1], flush=True)
asyncore.loop(timeout=0.2)
"""


def session_id(srv, client):
    port = client.sock.getsockname()[1]
    m = srv.wait_stderr(rb"\[(\d+)\] connect from 127\.0\.0\.1:%d\n" % port)
    return m.group(1)


def session_log(srv, sid):
    """(level, text) of every log line of session sid, its "[sid] " cut off."""
    prefix = b"[%s] " % sid
    out = []
    for line in srv.stderr().split(b"\n")[:-1]:
        m = LOG_LINE.match(line)
        if m and m.group(2).startswith(prefix):
            out.append((m.group(1).decode(), m.group(2)[len(prefix):].decode("utf-8")))
    return out


class HttpRequestTest(SmtpdTestCase):

    def assertClosedAfterGreeting(self, srv, c, what):
        self.assertTrue(c.closed_by_peer(5), "%r: the session went on" % what)
        self.assertEqual(c.buf, b"", "%r: something was sent after the greeting" % what)

    def test_each_method_closes_at_once(self):
        srv = self.start()
        for line in HTTP_LINES:
            with self.subTest(line=line):
                c = self.raw(srv.port)
                self.assertEqual(c.reply()[0], 220)
                sid = session_id(srv, c)
                c.send(line + b"\r\nHost: smtp.example.com\r\nUser-Agent: test\r\n\r\n")
                self.assertClosedAfterGreeting(srv, c, line)
                srv.wait_stderr(rb"\[%s\] disconnect from 127\.0\.0\.1 messages=0\n" % sid)
                # The whole session: no command run, no transaction.
                self.assertEqual(session_log(srv, sid), [
                    ("info", "connect from 127.0.0.1:%d" % c.sock.getsockname()[1]),
                    ("info", "HTTP request from 127.0.0.1: closing"),
                    ("info", "disconnect from 127.0.0.1 messages=0")])
        log = srv.stderr()
        self.assertEqual(len(re.findall(rb"\] HTTP request from 127\.0\.0\.1: closing\n", log)),
                         len(HTTP_LINES))

    def test_commands_after_it_never_run(self):
        # A browser made to POST SMTP commands to port 25 (cross-protocol):
        # request, headers and the commands in one write.
        srv = self.start()
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        sid = session_id(srv, c)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED)
        self.assertClosedAfterGreeting(srv, c, "GET with commands")
        srv.wait_stderr(rb"\[%s\] disconnect from 127\.0\.0\.1 messages=0\n" % sid)
        self.assertEqual(srv.stdout(), b"")
        texts = [t for _, t in session_log(srv, sid)]
        self.assertFalse([t for t in texts if t.startswith(("message ", "transaction "))], texts)
        # The server is fine: the next client is served.
        s = self.smtp(srv.port)
        self.assertEqual(s.noop()[0], 250)

    def test_real_http_client(self):
        # urllib POSTs a form whose body is SMTP commands: it gets no HTTP
        # reply, and nothing of the body is run.
        srv = self.start()
        req = urllib.request.Request("http://127.0.0.1:%d/" % srv.port, data=SMUGGLED,
                                     method="POST")
        with self.assertRaises((http.client.HTTPException, urllib.error.URLError,
                                ConnectionError)):
            urllib.request.urlopen(req, timeout=10).read()
        srv.wait_stderr(rb"\] HTTP request from 127\.0\.0\.1: closing\n")
        srv.wait_stderr(rb"\] disconnect from 127\.0\.0\.1 messages=0\n")
        self.assertEqual(srv.stdout(), b"")
        self.assertNotIn(b"attacker", srv.stderr())

    def test_not_first_is_unknown_command(self):
        srv = self.start()
        for first in ("EHLO client.example.com", "NOOP"):
            with self.subTest(first=first):
                c = self.raw(srv.port)
                c.reply()
                self.assertEqual(c.command(first)[0], 250)
                code, text = c.command("GET / HTTP/1.1")
                self.assertEqual(code, 500, text)
                self.assertEqual(c.command("NOOP")[0], 250)
                self.assertEqual(c.command("QUIT")[0], 221)
        self.assertNotIn(b"HTTP request", srv.stderr())

    def test_lower_case_is_not_http(self):
        # HTTP methods are case-sensitive (RFC 9110 9.1); SMTP verbs are not,
        # but "get" is none.
        srv = self.start()
        for line in ("get / http/1.1", "Get / HTTP/1.1", "GET / HTTP/2", "GETX / HTTP/1.1"):
            with self.subTest(line=line):
                c = self.raw(srv.port)
                c.reply()
                code, text = c.command(line)
                self.assertEqual(code, 500, text)
                self.assertEqual(c.command("EHLO after.example.com")[0], 250)
                self.assertEqual(c.command("QUIT")[0], 221)
        self.assertNotIn(b"HTTP request", srv.stderr())


class DottedLocalPartTest(SmtpdTestCase):

    def test_raw_client(self):
        srv = self.start()
        c = self.raw(srv.port)
        c.reply()
        c.command("EHLO docomo.example")
        code, text = c.command("MAIL FROM:<%s>" % DOTTED[0])
        self.assertEqual(code, 250, text)
        for r in DOTTED[1:]:
            code, text = c.command("RCPT TO:<%s>" % r)
            self.assertEqual(code, 250, text)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: dots\r\n\r\nhi\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.command("QUIT")[0], 221)
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, b"Subject: dots\r\n\r\nhi\r\n", mail_from=DOTTED[0],
                           rcpt_tos=DOTTED[1:])
        srv.wait_stderr(rb"message from=<user\.\.name@docomo\.ne\.jp> "
                        rb"to=<taro\.@ezweb\.ne\.jp,\.hanako@docomo\.ne\.jp> size=21 reply=250 ")

    def test_smtplib_and_swaks(self):
        srv = self.start()
        s = self.smtp(srv.port)
        msg = b"Subject: smtplib\r\n\r\nx\r\n"
        self.assertEqual(s.sendmail(DOTTED[1], [DOTTED[2], DOTTED[0]], msg), {})
        s.quit()
        swaks = shutil.which("swaks")
        self.assertTrue(swaks, "swaks is not installed; these tests need it")
        r = subprocess.run([swaks, "--server", "127.0.0.1:%d" % srv.port, "--helo", "swaks.example",
                            "--from", DOTTED[2], "--to", ",".join(DOTTED), "--timeout", "20"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout.decode("utf-8", "replace"))
        m1, m2 = srv.wait_messages(2)
        self.assertEqual((m1["mail_from"], m1["rcpt_tos"]), (DOTTED[1], [DOTTED[2], DOTTED[0]]))
        self.assertEqual((m2["mail_from"], m2["rcpt_tos"]), (DOTTED[2], DOTTED))

    def test_doubled_dot_in_domain_refused(self):
        srv = self.start()
        c = self.raw(srv.port)
        c.reply()
        c.command("EHLO x.example.com")
        code, text = c.command("MAIL FROM:<a@x..org>")
        self.assertEqual(code, 501, text)
        self.assertEqual(c.command("MAIL FROM:<a..b@x.org>")[0], 250)
        code, text = c.command("RCPT TO:<c@x..org>")
        self.assertEqual(code, 501, text)
        code, text = c.command("RCPT TO:<.c.@x.org>")
        self.assertEqual(code, 250, text)
        self.assertEqual(c.command("QUIT")[0], 221)

    def test_same_as_python_smtpd(self):
        # The same dialogue against smtpd and Python 3.11's smtpd module:
        # the same reply codes and the same envelope.
        ref = subprocess.Popen([smtpdtest.SYSTEM_PYTHON, "-W", "ignore", "-c", REFERENCE],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.addCleanup(smtpdtest.stop_process, ref)
        out = smtpdtest.Collector(ref.stdout)
        err = smtpdtest.Collector(ref.stderr)
        ready = out.wait_for(re.compile(rb"READY (\d+)\n").search, 15)
        if not ready:
            self.fail("Python's smtpd did not start (it was removed in 3.12): %r" % err.data())
        port = int(ready.group(1))
        srv = self.start()
        dialogue = ["EHLO x.example.com", "MAIL FROM:<%s>" % DOTTED[0]] + \
                   ["RCPT TO:<%s>" % r for r in DOTTED] + ["DATA", "Subject: x\r\n\r\nbody\r\n.",
                                                           "QUIT"]
        codes = {}
        for name, p in (("smtpd.py", port), ("smtpd", srv.port)):
            c = self.raw(p)
            codes[name] = [c.reply()[0]] + [c.command(line)[0] for line in dialogue]
        self.assertEqual(codes["smtpd"], codes["smtpd.py"])
        self.assertEqual(codes["smtpd"], [220, 250, 250, 250, 250, 250, 354, 250, 221])
        out.wait_for(lambda b: b"}\n" in b, 10)
        ref_env = json.loads(out.data()[ready.end():].split(b"\n")[0])
        (m,) = srv.wait_messages(1)
        self.assertEqual({"mailfrom": m["mail_from"], "rcpttos": m["rcpt_tos"]}, ref_env)
        self.assertEqual(ref_env, {"mailfrom": DOTTED[0], "rcpttos": DOTTED})


class TransactionLogTest(SmtpdTestCase):
    """The line that ends each transaction: "[ID] message ..." or
    "[ID] transaction ..." at info level, ID the session's."""

    def client(self, srv, ehlo=True):
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        c.sid = session_id(srv, c)
        if ehlo:
            self.assertEqual(c.command("EHLO log.example.com")[0], 250)
        return c

    def ends(self, srv, c, timeout=10):
        """The session's transaction lines, once it is over. (The last one
        is logged just after "disconnect from": stopping smtpd makes sure
        it is there.)"""
        srv.wait_stderr(rb"\[%s\] disconnect from " % c.sid, timeout)
        self.assertEqual(srv.stop(), 0)
        return [(lvl, t) for lvl, t in session_log(srv, c.sid)
                if t.startswith(("message ", "transaction "))]

    def test_message(self):
        srv = self.start()
        c = self.client(srv)
        c.command("MAIL FROM:<a@example.com>")
        c.command("RCPT TO:<b@example.com>")
        c.command("RCPT TO:<c@example.com>")
        c.command("DATA")
        data = b"Subject: logged\r\n\r\n0123456789\r\n"
        c.send(data + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.command("QUIT")
        self.assertEqual(self.ends(srv, c), [
            ("info", "message from=<a@example.com> to=<b@example.com,c@example.com> size=%d "
                     "reply=250 2.0.0 OK" % len(data))])

    def test_refused_at_mail(self):
        srv = self.start("-s", "1000")
        c = self.client(srv)
        code, text = c.command("MAIL FROM:<big@example.com> SIZE=5000")
        self.assertEqual(code, 552, text)
        c.command("QUIT")
        (line,) = self.ends(srv, c)
        self.assertEqual(line[0], "info")
        self.assertEqual(line[1], "transaction from=<big@example.com> to=<> refused at MAIL: "
                                  "reply=552 " + text[0])
        self.assertTrue(text[0].startswith("5.3.4 "), text)

    def test_ended_by_commands(self):
        srv = self.start()
        c = self.client(srv)
        c.command("MAIL FROM:<r@example.com>")
        c.command("RCPT TO:<x@example.com>")
        self.assertEqual(c.command("RSET")[0], 250)
        c.command("MAIL FROM:<e@example.com>")
        c.command("RCPT TO:<y@example.com>")
        c.command("RCPT TO:<z@example.com>")
        self.assertEqual(c.command("EHLO again.example.com")[0], 250)
        c.command("MAIL FROM:<q@example.com>")
        self.assertEqual(c.command("QUIT")[0], 221)
        self.assertEqual(self.ends(srv, c), [
            ("info", "transaction from=<r@example.com> to=<x@example.com> "
                     "ended by RSET before DATA"),
            ("info", "transaction from=<e@example.com> to=<y@example.com,z@example.com> "
                     "ended by EHLO before DATA"),
            ("info", "transaction from=<q@example.com> to=<> ended by QUIT before DATA"),
        ])

    def test_ended_by_disconnect_before_data(self):
        srv = self.start()
        c = self.client(srv)
        c.command("MAIL FROM:<gone@example.com>")
        c.command("RCPT TO:<x@example.com>")
        c.close()
        self.assertEqual(self.ends(srv, c), [
            ("info", "transaction from=<gone@example.com> to=<x@example.com> "
                     "ended by a disconnect before DATA")])

    def test_ended_by_disconnect_in_data(self):
        srv = self.start()
        c = self.client(srv)
        c.command("MAIL FROM:<gone@example.com>")
        c.command("RCPT TO:<x@example.com>")
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: half\r\n\r\nhalf a mess")
        c.close()
        self.assertEqual(self.ends(srv, c), [
            ("info", "transaction from=<gone@example.com> to=<x@example.com> "
                     "ended by a disconnect in DATA")])
        self.assertEqual(srv.stdout(), b"")

    def test_ended_by_timeout(self):
        srv = self.start("--command-timeout", "1")
        c = self.client(srv)
        c.command("MAIL FROM:<slow@example.com>")
        c.command("RCPT TO:<x@example.com>")
        self.assertEqual(c.reply(timeout=10)[0], 421)
        self.assertEqual(self.ends(srv, c), [
            ("info", "transaction from=<slow@example.com> to=<x@example.com> "
                     "ended by a timeout before DATA")])

    def test_ended_by_timeout_in_data(self):
        srv = self.start("--data-timeout", "1")
        c = self.client(srv)
        c.command("MAIL FROM:<slow@example.com>")
        c.command("RCPT TO:<x@example.com>")
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: stuck\r\n\r\n")
        self.assertEqual(c.reply(timeout=10)[0], 421)
        self.assertEqual(self.ends(srv, c), [
            ("info", "transaction from=<slow@example.com> to=<x@example.com> "
                     "ended by a timeout in DATA")])

    def test_refused_recipients(self):
        srv = self.start("--max-recipients", "1")
        c = self.client(srv)
        c.command("MAIL FROM:<s@example.com>")
        self.assertEqual(c.command("RCPT TO:<ok@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<y@z.example>")[0], 452)
        self.assertEqual(c.command("RSET")[0], 250)
        c.command("MAIL FROM:<t@example.com>")
        self.assertEqual(c.command("RCPT TO:<ok@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<no1@example.com>")[0], 452)
        self.assertEqual(c.command("RCPT TO:<no2@example.com>")[0], 452)
        self.assertEqual(c.command("QUIT")[0], 221)
        self.assertEqual(self.ends(srv, c), [
            ("info", "transaction from=<s@example.com> to=<ok@example.com> ended by RSET "
                     "before DATA; 1 recipient refused, last <y@z.example> "
                     "reply=452 4.5.3 Error: too many recipients"),
            ("info", "transaction from=<t@example.com> to=<ok@example.com> ended by QUIT "
                     "before DATA; 2 recipients refused, last <no2@example.com> "
                     "reply=452 4.5.3 Error: too many recipients"),
        ])

    def test_long_recipient_list(self):
        # 60 forward-paths of 40 characters: far more than one line holds.
        rcpts = [("rcpt%02d-" % i).ljust(28, "x") + "@example.com" for i in range(60)]
        self.assertEqual({len(r) for r in rcpts}, {40})
        srv = self.start()
        c = self.client(srv)
        c.send(b"MAIL FROM:<many@example.com>\r\n" +
               b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts))
        self.assertEqual([c.reply()[0] for _ in range(61)], [250] * 61)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: many\r\n\r\nx\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.send(b"MAIL FROM:<again@example.com>\r\n" +
               b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts))
        self.assertEqual([c.reply()[0] for _ in range(61)], [250] * 61)
        self.assertEqual(c.command("RSET")[0], 250)
        c.command("QUIT")
        (msg, rset) = self.ends(srv, c)
        (m,) = srv.wait_messages(1)
        self.assertEqual(m["rcpt_tos"], rcpts)  # the printed envelope has them all
        for (_, text), rx in ((msg, r"message from=<many@example\.com> to=<(.*)> size=20 "
                                    r"reply=250 2\.0\.0 OK"),
                              (rset, r"transaction from=<again@example\.com> to=<(.*)> "
                                     r"ended by RSET before DATA")):
            found = re.fullmatch(rx, text)
            self.assertTrue(found, text)
            shown = found.group(1).split(",")
            last = re.fullmatch(r"\.\.\. \((\d+) more\)", shown.pop())
            self.assertTrue(last, text)
            self.assertGreater(len(shown), 0, text)
            self.assertEqual(shown, rcpts[:len(shown)], text)
            self.assertEqual(int(last.group(1)), len(rcpts) - len(shown), text)


if __name__ == "__main__":
    main()
