"""hard_smuggling: SMTP smuggling through PureProxy to a strict recording upstream.

The published 2023-2024 variants (SEC Consult, Postfix, Sendmail, Exim,
Cisco): an attacker ends "data" with a non-standard sequence that some
server takes for the end of DATA, followed by a second, smuggled
transaction, and then the real CRLF "." CRLF:

    ...text<VARIANT>MAIL FROM:<evil@x>\\r\\nRCPT TO:<victim@y>\\r\\nDATA\\r\\n
    ...smuggled...\\r\\n.\\r\\n

For every variant, in three deliveries (the whole data in one write; the
variant at the very end of a pipelined MAIL/RCPT/DATA batch, the rest in a
later read; the variant trickled byte by byte) and under each --bare-lf
policy, smtpd running PureProxy must

  * answer exactly one reply to the data (never run the smuggled commands),
  * hand exactly ONE message to the upstream (never the smuggled one),
  * normalize: relay CRLF everywhere (no bare CR or LF on the wire), the
    lone "." line inside the data arriving dot-stuffed as "..";
  * reject: answer 550 5.5.2 after the final dot and relay nothing;
  * accept: relay the bytes kept (checked byte for byte below), and never
    put a "." between two line ends of any kind on the wire, which a
    lenient downstream could take for the end of data.
"""

import re
import time

from hardlib import HardTestCase, main

VARIANTS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.CR": b"\r.\r",
    "CRLF.CR": b"\r\n.\r",
    "LF.CR": b"\n.\r",
    "CR.CRLF": b"\r.\r\n",
}
MODES = ("inline", "batch_end", "trickle")
SENDER = b"sender@example.com"
RCPT = b"rcpt@example.net"


def payload(token):
    """(head ending right before the variant, tail after it); the real
    end "." CRLF follows the tail."""
    head = (b"From: sender@example.com\r\nTo: rcpt@example.net\r\nSubject: carrier " + token +
            b"\r\n\r\nfirst line\r\nsmuggle-here")
    tail = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n"
            b"From: evil@x\r\nTo: victim@y\r\nSubject: smuggled " + token + b"\r\n\r\n"
            b"smuggled body\r\n")
    return head, tail


def normalized(data):
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def rfc_unstuffed(data):
    """RFC 5321 4.5.2 on CRLF-delimited lines: a line that starts with "."
    and has more on it loses the dot."""
    return b"\r\n".join(l[1:] if l.startswith(b".") and len(l) > 1 else l
                        for l in data.split(b"\r\n"))


def strip_trace(data):
    """Remove the relay's Received: field (first, folded) and X-Peer line."""
    m = re.match(rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", data)
    if m:
        data = data[m.end():]
    return data.replace(b"X-Peer: 127.0.0.1\r\n", b"", 1)


# A "." with a line end of any kind on both sides: what some servers take
# for the end of data.
LENIENT_END = re.compile(rb"(?:\r\n|\r|\n)\.(?:\r\n|\r|\n)")


class SmugglingTest(HardTestCase):

    def deliver(self, port, mode, head, variant, tail):
        """One client session; returns the list of reply codes after EHLO
        (with the first text of each) until the server closes."""
        c = self.raw(port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command("EHLO attacker.example")[0], 250)
        env = b"MAIL FROM:<" + SENDER + b">\r\nRCPT TO:<" + RCPT + b">\r\nDATA\r\n"
        rest = tail + b".\r\nQUIT\r\n"
        if mode == "inline":
            c.send(env)
            c.send(head + variant + rest)
        elif mode == "batch_end":
            # The pipelined batch ends exactly after the variant; the rest
            # comes in a later read.
            c.send(env + head + variant)
            time.sleep(0.3)
            c.send(rest)
        else:
            c.send(env + head)
            for b in variant:
                time.sleep(0.05)
                c.send(bytes([b]))
            time.sleep(0.05)
            c.send(rest)
        return c.replies_until_eof(timeout=20)

    def run_policy(self, policy):
        up = self.upstream()
        srv = self.start("--bare-lf", policy, cls="PureProxy", term_wait=1,
                         extra=["127.0.0.1:%d" % up.port])
        n = 0
        for name, variant in VARIANTS.items():
            for mode in MODES:
                n += 1
                token = ("%s-%s-%s-%d" % (policy, name, mode, n)).encode()
                with self.subTest(policy=policy, variant=name, mode=mode):
                    self.check_case(srv, up, policy, mode, token, variant)
        self.assertTrue(srv.alive(), "smtpd died; stderr:\n" + srv.stderr_text())

    def check_case(self, srv, up, policy, mode, token, variant):
        head, tail = payload(token)
        sent = head + variant + tail
        n_cmds = len(up.snapshot()[1])
        replies = self.deliver(srv.port, mode, head, variant, tail)
        codes = [r[0] for r in replies]
        final = 550 if policy == "reject" else 250
        # MAIL, RCPT, DATA, exactly one reply to the data, QUIT.
        self.assertEqual(codes, [250, 250, 354, final, 221],
                         "replies %r: the data was split at %r (the smuggled commands "
                         "were run)" % (replies, variant))
        if policy == "reject":
            self.assertTrue(replies[3][1].startswith("5.5.2 "), replies[3])
        msgs, commands = up.snapshot()
        commands = commands[n_cmds:]  # this case's only
        mine = [m for m in msgs if token in m["data"]]
        evil = [m for m in mine if b"evil" in m["mail_from"]]
        self.assertEqual(evil, [], "the upstream got the smuggled transaction")
        self.assertFalse([c for c in commands if b"evil@x" in c or b"victim@y" in c],
                         "smuggled commands reached the upstream as commands")
        if policy == "reject":
            self.assertEqual(mine, [], "a refused message was relayed")
            return
        self.assertEqual(len(mine), 1, "the upstream saw %d messages for one" % len(mine))
        m = mine[0]
        self.assertEqual(m["mail_from"], b"<" + SENDER + b">")
        wire = m["wire"]
        body_wire = wire[:-5] + b"\r\n"  # without the final "." CRLF
        got = strip_trace(m["data"])
        if policy == "normalize":
            bare = re.search(rb"\r(?!\n)|(?<!\r)\n", wire)
            self.assertIsNone(bare, "bare CR/LF on the wire at %r"
                              % (wire[max(0, bare.start() - 20):bare.start() + 20] if bare
                                 else b""))
            self.assertIn(b"smuggle-here\r\n..\r\nMAIL FROM:<evil@x>\r\n", wire,
                          "the lone '.' line is not dot-stuffed on the wire")
            self.assertEqual(got, normalized(sent))
        else:  # accept: the bytes as sent (RFC unstuffing on CRLF lines)
            expected = rfc_unstuffed(sent)
            # The relay also stuffs a dot that follows a bare line end, which
            # a strict receiver keeps: compare with those doubled dots undone.
            canon = re.sub(rb"(?:(?<=[^\r]\n)|(?<=\r))\.\.", b".", got)
            self.assertEqual(canon, expected,
                             "accept did not keep the bytes; arrived %r" % got)
        lenient = LENIENT_END.search(body_wire)
        self.assertIsNone(lenient, "the relayed data holds %r (a '.' between line ends "
                          "unstuffed): a downstream server that takes bare CR or LF as a "
                          "line end ends the data there; wire near it: %r"
                          % (lenient.group(0) if lenient else b"",
                             body_wire[max(0, lenient.start() - 20):lenient.end() + 30]
                             if lenient else b""))

    def test_normalize(self):
        self.run_policy("normalize")

    def test_reject(self):
        self.run_policy("reject")

    def test_accept(self):
        self.run_policy("accept")

    def test_clean_dot_line_relayed_stuffed(self):
        """Control: a properly stuffed "." line inside data (CRLF only)
        goes through every policy unchanged, stuffed on the wire."""
        for policy in ("normalize", "reject", "accept"):
            with self.subTest(policy=policy):
                up = self.upstream()
                srv = self.start("--bare-lf", policy, cls="PureProxy", term_wait=1,
                                 extra=["127.0.0.1:%d" % up.port])
                c = self.raw(srv.port)
                self.assertEqual(c.reply()[0], 220)
                self.assertEqual(c.command("EHLO good.example")[0], 250)
                self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
                self.assertEqual(c.command("RCPT TO:<b@example.net>")[0], 250)
                self.assertEqual(c.command("DATA")[0], 354)
                data = b"Subject: dots\r\n\r\nline\r\n.\r\n..two\r\nend\r\n"
                c.send(b"Subject: dots\r\n\r\nline\r\n..\r\n...two\r\nend\r\n.\r\n")
                self.assertEqual(c.reply()[0], 250)
                msgs, _ = up.snapshot()
                self.assertEqual(len(msgs), 1)
                self.assertEqual(strip_trace(msgs[0]["data"]), data)
                self.assertIn(b"\r\nline\r\n..\r\n...two\r\n", msgs[0]["wire"])


if __name__ == "__main__":
    main()
