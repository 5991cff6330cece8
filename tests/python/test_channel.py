"""python_channel: SMTPChannel subclasses (channel_class) on the C engine.

  * A new verb (smtp_XHELLO), a built-in one replaced (smtp_VRFY), one
    extended with super() (smtp_MAIL): what the client gets, and that the
    built-in commands not overridden go on working (HELP lists the new verb).
  * The attributes a method reads: smtp_server, conn, addr, peer,
    received_lines, smtp_state, seen_greeting, mailfrom, rcpttos,
    received_data, fqdn; as the session goes on.
  * Several push() calls: one multi-line reply. One channel object per
    connection. A method that raises does not take the server down.
"""

import smtplib

import pyharness
from pyharness import Recording, ServerTestCase, port_of, smtpd


def said(reply):
    """(code, text) of a reply, the text without an enhanced status code
    the engine put first (an ESMTP session: RFC 2034)."""
    code, text = reply
    return code, pyharness.plain(code, text)


class Channel(smtpd.SMTPChannel):

    def smtp_XHELLO(self, arg):
        self.push("250 hello " + arg)

    def smtp_VRFY(self, arg):
        self.push("252 2.5.2 maybe")

    def smtp_MAIL(self, arg):
        if arg and "blocked" in arg:
            self.push("550 5.7.1 go away")
        else:
            super().smtp_MAIL(arg)

    def smtp_XSTATE(self, arg):
        # Read everything here, on whatever thread the engine runs us on;
        # the test looks at the values afterwards.
        self.smtp_server.states.append({
            "arg": arg,
            "server": self.smtp_server,
            "conn_peer": tuple(self.conn.getpeername()[:2]),
            "conn_sock": tuple(self.conn.getsockname()[:2]),
            "addr": tuple(self.addr[:2]),
            "peer": tuple(self.peer[:2]),
            "received_lines": self.received_lines,
            "smtp_state": self.smtp_state,
            "COMMAND": self.COMMAND,
            "seen_greeting": self.seen_greeting,
            "mailfrom": self.mailfrom,
            "rcpttos": list(self.rcpttos),
            "received_data": self.received_data,
            "fqdn": self.fqdn,
            "channel": self,
        })
        self.push("250 state %d" % len(self.smtp_server.states))

    def smtp_XMULTI(self, arg):
        self.push("250-one")
        self.push("250-two")
        self.push("250 three")

    def smtp_XCOUNT(self, arg):
        self.count = getattr(self, "count", 0) + 1
        self.push("250 %d" % self.count)

    def smtp_XBOOM(self, arg):
        raise RuntimeError("a channel method failed on purpose")


class Server(Recording):
    channel_class = Channel

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.states = []


class ChannelTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.server = self.serve(Server)

    def test_new_verb(self):
        c = self.raw(self.server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        self.assertEqual(said(c.command("XHELLO world")), (250, ["hello world"]))
        # Before any greeting too, and in any case.
        c2 = self.raw(self.server)
        self.assertEqual(said(c2.command("xhello there")), (250, ["hello there"]))
        s = self.smtp(self.server)
        self.assertEqual(said(s.docmd("XHELLO", "smtplib")), (250, b"hello smtplib"))

    def test_override_built_in_verb(self):
        c = self.raw(self.server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        self.assertEqual(c.command("VRFY someone@example.com"), (252, ["2.5.2 maybe"]))
        s = self.smtp(self.server)
        self.assertEqual(s.verify("x@example.com"), (252, b"2.5.2 maybe"))

    def test_extend_built_in_verb_with_super(self):
        c = self.raw(self.server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        self.assertEqual(c.command("MAIL FROM:<blocked@example.com>"), (550, ["5.7.1 go away"]))
        # Refused before the built-in MAIL: no transaction, so no 503 now.
        code, text = c.command("MAIL FROM:<ok@example.com>")
        self.assertEqual(code, 250, text)
        # The built-in MAIL keeps its state: a second MAIL is nested.
        code, text = c.command("MAIL FROM:<again@example.com>")
        self.assertEqual(code, 503, text)
        self.assertEqual(c.command("RCPT TO:<r@example.com>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: via super\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        (call,) = self.server.wait_calls(1)
        self.assertEqual(call["mailfrom"], "ok@example.com")
        self.assertEqual(call["rcpttos"], ["r@example.com"])
        self.assertEqual(call["data"], b"Subject: via super\r\n\r\nbody\r\n")

    def test_smtplib_through_the_overrides(self):
        s = self.smtp(self.server)
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            s.sendmail("blocked@example.com", ["r@example.com"], b"Subject: no\r\n\r\nx\r\n")
        self.assertEqual(cm.exception.smtp_code, 550)
        s.rset()
        self.assertEqual(s.sendmail("fine@example.com", ["r@example.com"],
                                    b"Subject: yes\r\n\r\nx\r\n"), {})
        (call,) = self.server.wait_calls(1)
        self.assertEqual(call["mailfrom"], "fine@example.com")

    def test_built_in_verbs_still_work(self):
        c = self.raw(self.server)
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 503)  # HELO first
        code, lines = c.command("EHLO client.example.org")
        self.assertEqual(code, 250)
        self.assertIn("SIZE 33554432", lines)
        self.assertEqual(c.command("NOOP")[0], 250)
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertEqual(c.command("RCPT TO:<r@example.com>")[0], 503)  # MAIL first
        self.assertEqual(c.command("DATA")[0], 503)
        self.assertEqual(c.command("XNOSUCH thing")[0], 500)
        self.assertEqual(c.command("QUIT")[0], 221)
        self.assertTrue(c.closed_by_peer())

    def test_help_lists_the_new_verb(self):
        c = self.raw(self.server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        code, lines = c.command("HELP")
        self.assertIn(code, (211, 214, 250), lines)
        words = " ".join(lines).split()
        for verb in ("XHELLO", "XSTATE", "MAIL", "RCPT", "DATA"):
            self.assertIn(verb, words, "HELP: %r" % lines)

    def test_multi_line_reply(self):
        c = self.raw(self.server)
        self.assertEqual(said(c.command("XMULTI")), (250, ["one", "two", "three"]))
        self.assertEqual(c.command("NOOP")[0], 250)  # nothing left over
        s = self.smtp(self.server)
        self.assertEqual(said(s.docmd("XMULTI")), (250, b"one\ntwo\nthree"))

    def test_one_channel_per_connection(self):
        a, b = self.raw(self.server), self.raw(self.server)
        self.assertEqual(said(a.command("XCOUNT")), (250, ["1"]))
        self.assertEqual(said(a.command("XCOUNT")), (250, ["2"]))
        self.assertEqual(said(b.command("XCOUNT")), (250, ["1"]))
        self.assertEqual(said(a.command("XCOUNT")), (250, ["3"]))

    def test_attributes(self):
        c = self.raw(self.server)
        client = c.sock.getsockname()[:2]
        self.assertEqual(c.command("XSTATE before greeting")[0], 250)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        self.assertEqual(c.command("MAIL FROM:<sender@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<one@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<two@example.com>")[0], 250)
        self.assertEqual(c.command("XSTATE in transaction")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: s\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(said(c.command("XSTATE after data")), (250, ["state 3"]))
        self.assertEqual(c.command("MAIL FROM:<>")[0], 250)
        self.assertEqual(c.command("XSTATE null sender")[0], 250)
        self.assertEqual(c.command("RSET")[0], 250)
        self.assertEqual(c.command("XSTATE after rset")[0], 250)
        before, during, after, null, rset = self.server.states

        for st in (before, during, after, null, rset):
            self.assertIs(st["server"], self.server)
            self.assertIs(st["channel"], before["channel"])
            self.assertEqual(st["peer"], client)
            self.assertEqual(st["addr"], client)
            self.assertEqual(st["conn_peer"], client)
            self.assertEqual(st["conn_sock"], ("127.0.0.1", port_of(self.server)))
            self.assertIsInstance(st["received_lines"], list)
            self.assertEqual(st["smtp_state"], smtpd.SMTPChannel.COMMAND)
            self.assertEqual(st["COMMAND"], 0)
            self.assertIsInstance(st["received_data"], (str, bytes))
            self.assertIsInstance(st["fqdn"], str)
            self.assertTrue(st["fqdn"])
        self.assertIn(before["fqdn"], c.greeting[0])

        self.assertEqual(before["arg"], "before greeting")
        self.assertEqual(before["seen_greeting"], "")
        self.assertIsNone(before["mailfrom"])
        self.assertEqual(before["rcpttos"], [])

        self.assertEqual(during["arg"], "in transaction")
        self.assertEqual(during["seen_greeting"], "client.example.org")
        self.assertEqual(during["mailfrom"], "sender@example.com")
        self.assertEqual(during["rcpttos"], ["one@example.com", "two@example.com"])

        self.assertEqual(after["seen_greeting"], "client.example.org")
        self.assertIsNone(after["mailfrom"])
        self.assertEqual(after["rcpttos"], [])

        self.assertEqual(null["mailfrom"], "")
        self.assertIsNone(rset["mailfrom"])
        self.assertEqual(rset["seen_greeting"], "client.example.org")

        (call,) = self.server.wait_calls(1)
        self.assertEqual(call["rcpttos"], ["one@example.com", "two@example.com"])

    def test_two_clients_see_their_own_state(self):
        a, b = self.raw(self.server), self.raw(self.server)
        self.assertEqual(a.command("EHLO a.example.org")[0], 250)
        self.assertEqual(b.command("HELO b.example.org")[0], 250)
        self.assertEqual(a.command("MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(a.command("XSTATE a")[0], 250)
        self.assertEqual(b.command("XSTATE b")[0], 250)
        sa, sb = self.server.states
        self.assertEqual((sa["seen_greeting"], sa["mailfrom"], sa["peer"]),
                         ("a.example.org", "a@example.com", a.sock.getsockname()[:2]))
        self.assertEqual((sb["seen_greeting"], sb["mailfrom"], sb["peer"]),
                         ("b.example.org", None, b.sock.getsockname()[:2]))
        self.assertIsNot(sa["channel"], sb["channel"])

    def test_method_that_raises(self):
        c = self.raw(self.server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        c.send("XBOOM\r\n")
        try:
            code, text = c.reply()
        except EOFError:  # the session dropped: acceptable
            pass
        else:
            self.assertTrue(400 <= code < 600, (code, text))
            self.assertEqual(c.command("NOOP")[0], 250)
        # The server serves on.
        s = self.smtp(self.server)
        self.assertEqual(said(s.docmd("XHELLO", "again")), (250, b"hello again"))
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"],
                                    b"Subject: after boom\r\n\r\nx\r\n"), {})
        self.server.wait_calls(1)


class DefaultChannelTest(ServerTestCase):

    def test_plain_server_has_no_extra_verbs(self):
        server = self.serve(Recording)
        c = self.raw(server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        self.assertEqual(c.command("XHELLO world")[0], 500)
        code, text = c.command("VRFY someone@example.com")
        self.assertEqual(code, 252, text)


class AuthMockChannel(smtpd.SMTPChannel):
    """The usual test double of a server with AUTH: smtp_EHLO answers by
    itself (no super()), advertising AUTH; smtp_AUTH says 235."""

    def smtp_EHLO(self, arg):
        self.push("250-testhost\r\n250-AUTH PLAIN LOGIN\r\n250-SIZE 20000000\r\n250 HELP")
        self.seen_greeting = arg
        self.extended_smtp = True

    def smtp_AUTH(self, arg):
        self.push("235 2.7.0 Authentication successful")

    def smtp_MAIL(self, arg):
        if "refuse" in arg:
            self.push("530 5.7.0 Authentication required")
        else:
            super().smtp_MAIL(arg)


class AuthMockServer(Recording):
    channel_class = AuthMockChannel


class GreetingOverrideTest(ServerTestCase):

    def test_smtp_ehlo_without_super_greets_the_session(self):
        server = self.serve(AuthMockServer)
        s = self.smtp(server, ehlo=False)
        code, text = s.ehlo("client.example.org")
        self.assertEqual(code, 250)
        self.assertTrue(s.has_extn("auth"), text)
        self.assertEqual(s.esmtp_features.get("size"), "20000000")
        s.login("user", "password")
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"],
                                    b"Subject: after mock AUTH\r\n\r\nx\r\n"), {})
        calls = server.wait_calls(1)
        self.assertEqual(calls[0]["mailfrom"], "a@example.com")
        # The session is an ESMTP one: the channel's own enhanced code stays.
        self.assertEqual(s.docmd("MAIL", "FROM:<refuse@example.com>"),
                         (530, b"5.7.0 Authentication required"))


if __name__ == "__main__":
    pyharness.main()
