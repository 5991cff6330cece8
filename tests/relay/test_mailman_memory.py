"""MailmanProxy remembers what Mailman said about each recipient
(relay_mailman_memory), against a fake LMTP server (h.ScriptedUpstream,
lmtp=True) and the aiosmtpd recorder as the smarthost.

At each RCPT, Mailman's LMTP server is asked (LHLO, MAIL, RCPT): 250 is a
list address, delivered over LMTP; 550 is not Mailman's and is relayed to
the smarthost. smtpd remembers those answers (up to 10,000, an hour each):
while Mailman gives no answer (its port closed, its MAIL refused, its RCPT
never answered), a recipient Mailman said 550 to earlier still relays to
the smarthost (250 at RCPT, delivered there), while one it said 250 to, or
never saw, gets 451 4.4.1: a list's mail never goes elsewhere silently.

(The hour and the 10,000 are not tested here: an hour is too long to wait,
and 10,000 LMTP round trips too slow under valgrind.)
"""

import re
import time

import relay_harness as h

LIST_DOMAIN = "lists.example.org"


class FakeMailman(h.ScriptedUpstream):
    """An LMTP server that says 250 to the addresses in self.lists and
    550 to the others, and delivers with one reply per recipient."""

    def __init__(self, lists=()):
        self.lists = set(lists)
        self.asked = []  # every forward-path a RCPT asked about, in order
        super().__init__({"greeting": "220 fake.mailman LMTP server ready",
                          "RCPT": self.rcpt}, lmtp=True)

    def rcpt(self, conn, line):
        addr = re.match(rb"RCPT TO:<([^>]*)>", line, re.I).group(1).decode()
        with self.lock:
            self.asked.append(addr)
            if addr.lower() in self.lists:
                return "250 2.1.5 OK"
        return "550 5.1.1 <%s>: no such list" % addr


class MailmanMemory(h.RelayTestCase):

    def start(self, lists=(), relay_timeout=5):
        self.rec = h.Recorder()
        self.cleanups.append(self.rec.cleanup)
        self.mm = FakeMailman(lists)
        self.cleanups.append(self.mm.stop)
        self.relay = self.proxy(self.rec.port, "--mailman-lmtp", "127.0.0.1:%d" % self.mm.port,
                                cls="MailmanProxy", relay_timeout=relay_timeout)
        return self.relay

    def client(self):
        c = h.Client(self.relay.port, timeout=30 * h.SLOW)
        self.cleanups.append(c.close)
        return c

    def send(self, rcpts, subject, expect=None):
        """One transaction to @rcpts on a new connection; @expect: the RCPT
        codes (default all 250). Returns the reply after the dot."""
        c = self.client()
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.com>")[0], 250)
        codes = []
        for r in rcpts:
            code, text = c.cmd("RCPT TO:<%s>" % r)
            codes.append(code)
            if code == 451:
                self.assertTrue(text.startswith("4.4.1 "), text)
        self.assertEqual(codes, expect or [250] * len(rcpts), self.relay.stderr_text())
        if 250 not in codes:
            d, end = c.data(h.message(subject=subject))
            self.assertNotEqual(d[0], 354, "DATA with no recipient")
            c.close()
            return None
        d, end = c.data(h.message(subject=subject))
        self.assertEqual(d[0], 354)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        return end

    def smarthost_got(self, n):
        """(envelope recipients, Subject) of the smarthost's first @n messages."""
        msgs = self.rec.wait_messages(n, 5 * h.SLOW)
        self.assertEqual(len(msgs), n, self.relay.stderr_text())
        return [(m["rcpt_tos"], re.search(rb"Subject: ([^\r]*)", m["data"]).group(1).decode())
                for m in msgs]

    def mailman_got(self):
        with self.mm.lock:
            return [re.search(rb"Subject: ([^\r]*)", d).group(1).decode()
                    for d in self.mm.delivered]

    def learn(self):
        """Mailman is asked about a list, a non-list and a recipient that
        is first not a list and then one; the routing is right."""
        self.assertEqual(self.send(["announce@" + LIST_DOMAIN, "user@example.com",
                                    "newlist@" + LIST_DOMAIN], "learn")[0], 250)
        self.mm.lists.add("newlist@" + LIST_DOMAIN)
        self.assertEqual(self.send(["newlist@" + LIST_DOMAIN], "learn 2")[0], 250)
        self.assertEqual(self.smarthost_got(1), [(["user@example.com", "newlist@" + LIST_DOMAIN],
                                                 "learn")])
        self.assertEqual(self.mailman_got(), ["learn", "learn 2"])

    def assert_remembered(self, subject):
        """Mailman gives no answer now: only what it said 550 to (last)
        relays; list addresses and unknown ones get 451 4.4.1."""
        before = len(self.rec.messages())
        end = self.send(["user@example.com", "announce@" + LIST_DOMAIN, "never@example.com",
                         "newlist@" + LIST_DOMAIN, "USER@example.com"], subject,
                        expect=[250, 451, 451, 451, 250])
        self.assertEqual(end[0], 250, self.relay.stderr_text())
        got = self.smarthost_got(before + 1)[-1]
        self.assertEqual(got, (["user@example.com", "USER@example.com"], subject))
        # Nobody Mailman never saw gets through, alone either.
        self.assertIsNone(self.send(["someone-else@example.com"], subject + " 2", expect=[451]))
        time.sleep(0.2)
        self.assertEqual(len(self.rec.messages()), before + 1)

    def test_routing_while_mailman_is_up(self):
        self.start(lists=["announce@" + LIST_DOMAIN])
        self.learn()
        # Mailman was asked about every recipient, once per transaction.
        self.assertEqual(self.mm.asked, ["announce@" + LIST_DOMAIN, "user@example.com",
                                         "newlist@" + LIST_DOMAIN, "newlist@" + LIST_DOMAIN])

    def test_mailman_down(self):
        self.start(lists=["announce@" + LIST_DOMAIN])
        self.learn()
        self.mm.stop()
        self.assertTrue(h.port_closed(self.mm.port))
        self.assert_remembered("while down")
        self.relay.wait_stderr(rb"warning: upstream 127\.0\.0\.1:%d: cannot connect: "
                               rb"127\.0\.0\.1: Connection refused\n" % self.mm.port)
        self.assertEqual(self.mailman_got(), ["learn", "learn 2"])

    def test_mailman_refuses_the_transaction(self):
        # Up, but refusing MAIL (temporarily): no answer about anyone.
        self.start(lists=["announce@" + LIST_DOMAIN])
        self.learn()
        self.mm.script["MAIL"] = "451 4.3.0 Mailman is busy"
        self.assert_remembered("mail refused")
        self.assertEqual(self.mailman_got(), ["learn", "learn 2"])

    def test_mailman_silent_at_rcpt(self):
        # Up, but never answering RCPT: each question costs the relay
        # timeout, then the same as when it is down.
        self.start(lists=["announce@" + LIST_DOMAIN], relay_timeout=1)
        self.learn()
        self.mm.script["RCPT"] = "silence"
        t0 = time.monotonic()
        self.assert_remembered("rcpt silent")
        self.assertLess(time.monotonic() - t0, 6 * (1 + 1.5 * h.SLOW))
        self.assertEqual(self.mailman_got(), ["learn", "learn 2"])


if __name__ == "__main__":
    h.main()
