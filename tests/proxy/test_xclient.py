"""XCLIENT (Postfix's XCLIENT_README, --xclient-networks): a proxy in
front of smtpd (nginx's mail proxy) names the client it speaks for.

Allowed only for clients in --xclient-networks (default: nobody): they see
XCLIENT in EHLO, and "XCLIENT ADDR=... PORT=... HELO=... LOGIN=..." makes
those the session's, starts it over and answers a new 220. The relay
decision, X-Peer, Received and the log follow the XCLIENT address. Others
get 550 5.7.0 and never see it in EHLO or HELP.
"""

import smtplib
import subprocess
import time

import proxy_harness as h


class XClient(h.DialogueTestCase):

    def server(self, *options, cls="DebuggingServer", **kw):
        return self.start(*options, cls=cls, **kw)

    def greeted(self, srv, source=None):
        c = self.raw(srv.port, source=source)
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.command("EHLO proxy.example")
        self.assertEqual(code, 250, lines)
        return c, lines


    def test_allowed_proxy_names_the_client(self):
        srv = self.server("--xclient-networks", "127.0.0.1/32")
        c, lines = self.greeted(srv)
        self.assertIn("XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT", lines)
        code, text = c.command("XCLIENT NAME=client.example ADDR=192.0.2.7 PORT=4444 "
                               "HELO=client+2Eexample PROTO=ESMTP")
        self.assertEqual(code, 220, text)
        self.assertIn("ESMTP", text[0])
        # A new session: the proxy greets again with the client's name.
        self.assertEqual(c.command("EHLO client.example")[0], 250)
        self.assertEqual(self.transaction(c, "via-xclient")[0], 250)
        self.assertIn(b"X-Peer: 192.0.2.7\n", self.printed(srv, "via-xclient"))
        self.assertIsNotNone(srv.wait_log(
            rb"XCLIENT from 127\.0\.0\.1:\d+: client 192\.0\.2\.7:4444 name=client\.example "
            rb"helo=client\.example"), srv.stderr_text())
        # The client, now 192.0.2.7, may not use XCLIENT itself (a proxy such
        # as nginx passes the client's bytes through after its XCLIENT).
        code, lines = c.command("EHLO client.example")
        self.assertFalse([l for l in lines if "XCLIENT" in l], lines)
        self.assertEqual(c.command("XCLIENT ADDR=127.0.0.1 LOGIN=admin"),
                         (550, ["5.7.0 Error: insufficient authorization"]))
        # IPv6 and unknown values (a new connection from the proxy).
        c, _ = self.greeted(srv)
        code, text = c.command("XCLIENT ADDR=IPV6:2001:db8::5 PORT=[UNAVAILABLE]")
        self.assertEqual(code, 220, text)
        self.assertEqual(c.command("HELO client6.example")[0], 250)
        self.assertEqual(self.transaction(c, "via-xclient6")[0], 250)
        self.assertIn(b"X-Peer: 2001:db8::5\n", self.printed(srv, "via-xclient6"))

    def test_errors_keep_the_session(self):
        srv = self.server("--xclient-networks", "127.0.0.1/32")
        c, _ = self.greeted(srv)
        for line, code, text in (
                ("XCLIENT", 501, "5.5.4 Syntax: XCLIENT attribute=value..."),
                ("XCLIENT FOO=bar", 501, "5.5.4 Bad XCLIENT attribute name: FOO"),
                ("XCLIENT ADDR=300.0.0.1", 501, "5.5.4 Bad XCLIENT ADDR syntax: 300.0.0.1"),
                ("XCLIENT PORT=99999", 501, "5.5.4 Bad XCLIENT PORT syntax: 99999"),
                ("XCLIENT HELO=a+0D+0Ab", 501, "5.5.4 Bad XCLIENT HELO value")):
            with self.subTest(line):
                self.assertEqual(c.command(line), (code, [text]))
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(c.command("XCLIENT ADDR=192.0.2.1"),
                         (503, ["5.5.1 Error: MAIL transaction in progress"]))
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertEqual(c.command("XCLIENT ADDR=192.0.2.1")[0], 220)

    def test_others_get_550_and_never_see_it(self):
        for options, source in ((["--xclient-networks", "127.0.0.1/32"], "127.0.0.2"), ([], None)):
            with self.subTest(options=options, source=source):
                srv = self.server(*options)
                c, lines = self.greeted(srv, source=source)
                self.assertFalse([l for l in lines if "XCLIENT" in l], lines)
                self.assertEqual(c.command("XCLIENT ADDR=192.0.2.1"),
                                 (550, ["5.7.0 Error: insufficient authorization"]))
                code, help_lines = c.command("HELP")
                self.assertNotIn("XCLIENT", " ".join(help_lines))
                self.assertEqual(self.transaction(c, "still-fine")[0], 250)
                self.assertNotIn(b"X-Peer: 192.0.2.1", srv.stdout())

    def test_relay_decision_follows_the_xclient_address(self):
        rec = h.Recorder()
        self.addCleanup(rec.cleanup)
        srv = self.server("--xclient-networks", "127.0.0.1/32", "--relay-networks",
                          "192.0.2.0/24", "--hostname", "relay.test", cls="PureProxy",
                          extra=["127.0.0.1:%d" % rec.port], stdout=subprocess.DEVNULL)
        c, _ = self.greeted(srv)
        # The proxy itself (127.0.0.1) may not relay here.
        self.assertEqual(self.transaction(c, "proxy-itself")[0], 554)
        self.assertEqual(c.command("RSET")[0], 250)
        # As 192.0.2.9 it may; as 198.51.100.9 not; authenticated (LOGIN) it
        # may, but an empty LOGIN= is nobody. One connection each.
        for xclient, subject, want in (
                ("ADDR=192.0.2.9 HELO=inside.example", "inside", 250),
                ("ADDR=198.51.100.9 HELO=outside.example", "outside", 554),
                ("ADDR=198.51.100.9 HELO=outside.example LOGIN=", "empty-login", 554),
                ("ADDR=198.51.100.9 HELO=outside.example LOGIN=alice", "authenticated", 250)):
            with self.subTest(xclient):
                c, _ = self.greeted(srv)
                self.assertEqual(c.command("XCLIENT " + xclient)[0], 220)
                self.assertEqual(c.command("EHLO " + xclient.split("HELO=")[1].split()[0])[0], 250)
                self.assertEqual(self.transaction(c, subject)[0], want)
                self.assertEqual(c.command("RSET")[0], 250)
        msgs = rec.wait_messages(2, 5 * h.SLOW)
        time.sleep(0.2)
        by_subject = {[l for l in m["data"].split(b"\r\n") if l.startswith(b"Subject: ")][0][9:]: m
                      for m in rec.messages()}
        self.assertEqual(sorted(by_subject), [b"authenticated", b"inside"], msgs)
        inside = by_subject[b"inside"]["data"]
        self.assertIn(b"\r\nX-Peer: 192.0.2.9\r\n", inside)
        self.assertIn(b"Received: from inside.example ([192.0.2.9])", inside)
        auth = by_subject[b"authenticated"]["data"]
        self.assertIn(b"Received: from outside.example ([198.51.100.9])", auth)
        self.assertIn(b"with ESMTPA", auth)
        self.assertNotIn(b"alice", auth.split(b"\r\n\r\n")[0].split(b"Subject:")[0])

    def test_proto_esmtp(self):
        srv = self.server("--xclient-networks", "127.0.0.1/32")
        c, _ = self.greeted(srv)
        self.assertEqual(c.command("XCLIENT ADDR=192.0.2.30 HELO=c.example PROTO=ESMTP")[0], 220)
        # As after EHLO: ESMTP parameters, enhanced codes; no new EHLO needed.
        self.assertEqual(c.command("MAIL FROM:<a@example.com> SIZE=10 BODY=8BITMIME"),
                         (250, ["2.1.0 OK"]))
        c, _ = self.greeted(srv)
        self.assertEqual(c.command("XCLIENT ADDR=192.0.2.31 HELO=c.example PROTO=SMTP")[0], 220)
        self.assertEqual(c.command("MAIL FROM:<a@example.com> SIZE=10")[0], 501)

    def test_smtplib_as_the_proxy(self):
        srv = self.server("--xclient-networks", "127.0.0.0/8")
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as s:
            s.ehlo("proxy.example")
            self.assertTrue(s.has_extn("xclient"))
            code, text = s.docmd("XCLIENT", "ADDR=203.0.113.5 PORT=1025 HELO=mua.example")
            self.assertEqual(code, 220, text)
            s.ehlo_resp = None
            s.ehlo("mua.example")
            self.assertEqual(s.sendmail("a@example.com", ["b@example.com"],
                                        b"Subject: smtplib-xclient\r\n\r\nx\r\n"), {})
        self.assertIn(b"X-Peer: 203.0.113.5\n", self.printed(srv, "smtplib-xclient"))


if __name__ == "__main__":
    h.main()
