"""integ_debugging: what DebuggingServer prints, and when it cannot print.

  * The envelope: X-MailFrom and X-RcptTo after X-Peer, every forward-path
    (Bcc recipients too), "<>" for the null reverse-path.
  * Standard output a terminal (a pty here): control characters but TAB,
    and bytes that are not UTF-8, are printed as \\xNN; valid UTF-8 stays.
    A pipe or a file gets the bytes exactly.
  * Standard output that fails (a pipe whose reader is gone, /dev/full):
    451 4.3.0 after the final dot, an error line on stderr, and smtpd goes
    on serving.
"""

import os
import re
import smtplib
import subprocess
import tempfile
import tty
from email.message import EmailMessage

from smtpd_harness import BEGIN, END, SmtpdTestCase, debugging_view, main, parse_messages
import smtpdtest  # noqa: E402  (smtpd_harness puts tests/pylib on sys.path)

FROM = "sender@example.com"


class PtyOutput(smtpdtest.Collector):
    """A pseudo-terminal for smtpd's standard output: the slave side (raw
    mode, so that the terminal driver passes bytes unchanged) is given to
    the program, the master side is read on a thread."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        super().__init__(os.fdopen(self.master, "rb", buffering=0))

    def started(self):
        """The program has its copy of the slave: drop ours, so that the
        master reads EOF (EIO) once the program exits."""
        os.close(self.slave)

    def wait_messages(self, n, timeout=20):
        self.wait_for(lambda out: out.count(END) >= n, timeout)
        out = self.data()
        if out.count(END) < n:
            raise AssertionError("expected %d messages on the terminal, got: %r" % (n, out))
        return out


def send_raw_message(test, port, data, sender="a@example.com", rcpts=("b@example.com",),
                     ehlo="EHLO tty.example.com", mail_params=""):
    """One transaction on a raw socket, data sent as it is (then the final
    dot); returns the reply to the end of data."""
    c = test.raw(port)
    test.assertEqual(c.reply()[0], 220)
    test.assertEqual(c.command(ehlo)[0], 250)
    test.assertEqual(c.command("MAIL FROM:<%s>%s" % (sender, mail_params))[0], 250)
    for r in rcpts:
        test.assertEqual(c.command(b"RCPT TO:<" + (r.encode() if isinstance(r, str) else r)
                                   + b">")[0], 250)
    test.assertEqual(c.command("DATA")[0], 354)
    c.send(data + b".\r\n")
    reply = c.reply()
    test.assertEqual(c.command("QUIT")[0], 221)
    return reply


def every_byte():
    """A message whose body has all 256 byte values, in order, on one line
    (with --bare-lf accept, the LF in it is a line end of its own)."""
    return b"Subject: every byte\r\n\r\n" + bytes(range(256)) + b"\r\n"


def terminal_bytes(line):
    """How a terminal shows a line of single bytes that form no multi-byte
    UTF-8 sequence: printable ASCII and TAB as they are, LF a line end,
    everything else \\xNN."""
    out = []
    for b in line:
        if b == 0x09 or 0x20 <= b < 0x7f or b == 0x0a:
            out.append(bytes([b]))
        else:
            out.append(b"\\x%02x" % b)
    return b"".join(out)


class EnvelopeTest(SmtpdTestCase):

    def test_bcc_recipient_shown(self):
        # smtplib's send_message() takes the Bcc addresses off the header
        # and sends them as RCPT: only the envelope shows them.
        srv = self.start()
        s = self.smtp(srv.port)
        em = EmailMessage()
        em["From"] = FROM
        em["To"] = "to@example.com"
        em["Bcc"] = "hidden@example.net"
        em["Subject"] = "bcc"
        em.set_content("secret copy\n")
        self.assertEqual(s.send_message(em), {})
        s.quit()
        (m,) = srv.wait_messages(1)
        self.assertEqual(m["mail_from"], FROM)
        self.assertEqual(m["rcpt_tos"], ["to@example.com", "hidden@example.net"])
        self.assertNotIn(b"hidden@", m["data"])
        self.assertNotIn(b"Bcc:", m["data"])
        self.assertIn(b"\nX-Peer: 127.0.0.1\nX-MailFrom: sender@example.com\n"
                      b"X-RcptTo: to@example.com, hidden@example.net\n\n",
                      srv.stdout())

    def test_null_reverse_path(self):
        # smtplib sends MAIL FROM:<> for an empty sender (a bounce).
        srv = self.start()
        s = self.smtp(srv.port)
        msg = b"Subject: bounce\r\n\r\nundeliverable\r\n"
        self.assertEqual(s.sendmail("", ["postmaster@example.com"], msg), {})
        s.quit()
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, msg, ["SIZE=%d" % len(msg)], mail_from="<>",
                           rcpt_tos=["postmaster@example.com"])
        self.assertEqual(srv.stdout(),
                         BEGIN + b"mail options: SIZE=%d\n" % len(msg) +
                         b"Subject: bounce\nX-Peer: 127.0.0.1\nX-MailFrom: <>\n"
                         b"X-RcptTo: postmaster@example.com\n\nundeliverable\n" + END)
        srv.wait_stderr(rb"message from=<> to=<postmaster@example\.com> size=%d reply=250 "
                        % len(msg))

    def test_several_recipients_in_order(self):
        srv = self.start()
        s = self.smtp(srv.port)
        rcpts = ["r%d@example%d.com" % (i, i % 3) for i in range(7)]
        # Given twice, a recipient is sent (and shown) twice.
        rcpts.append(rcpts[2])
        msg = b"Subject: many\r\n\r\nhello all\r\n"
        self.assertEqual(s.sendmail(FROM, rcpts, msg), {})
        # A message without an empty line: the envelope comes last.
        bare = b"Subject: no body"
        self.assertEqual(s.sendmail("second@example.org", rcpts[:2], bare), {})
        s.quit()
        m1, m2 = srv.wait_messages(2)
        self.assertMessage(m1, msg, ["SIZE=%d" % len(msg)], mail_from=FROM, rcpt_tos=rcpts)
        self.assertMessage(m2, bare + b"\r\n", ["SIZE=%d" % len(bare)],
                           mail_from="second@example.org", rcpt_tos=rcpts[:2])
        out = srv.stdout()
        self.assertIn(b"\nX-RcptTo: " + ", ".join(rcpts).encode() + b"\n\nhello all\n", out)
        self.assertIn(b"Subject: no body\nX-Peer: 127.0.0.1\nX-MailFrom: second@example.org\n"
                      b"X-RcptTo: r0@example0.com, r1@example1.com\n" + END, out)

    def test_utf8_envelope(self):
        srv = self.start("-u")
        s = self.smtp(srv.port)
        sender, rcpts = "dörte@exämple.com", ["ñoño@例え.jp", "plain@example.com"]
        msg = "Subject: ☃\r\n\r\nGrüße\r\n".encode("utf-8")
        self.assertEqual(s.sendmail(sender, rcpts, msg, mail_options=["SMTPUTF8"]), {})
        s.quit()
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, msg, ["SIZE=%d" % len(msg), "SMTPUTF8"], mail_from=sender,
                           rcpt_tos=rcpts)
        self.assertIn("X-MailFrom: dörte@exämple.com\nX-RcptTo: ñoño@例え.jp, plain@example.com\n"
                      .encode("utf-8"), srv.stdout())


class TerminalTest(SmtpdTestCase):
    """stdout on a pty: isatty() is true there, as in an interactive shell."""

    def start_on_pty(self, *options):
        pty = PtyOutput()
        try:
            srv = self.start(*options, stdout=pty.slave)
        finally:
            pty.started()
        return srv, pty

    def test_control_characters_escaped(self):
        srv, pty = self.start_on_pty("--bare-lf", "accept")
        data = (b"Subject: esc\x1b[31m red\x1b[0m\r\n"
                b"X-Tab: a\tb\r\n"
                b"\r\n"
                b"nul\x00 bell\x07 bs\x08 bare-cr\rafter del\x7f\r\n"
                b"c1 raw\x80\x85\x9b\x9f c1 as utf-8 \xc2\x80\xc2\x85\xc2\x9b\xc2\x9f\r\n"
                b"not utf-8: \xff\xfe \xc3( \xe2\x82 \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80\r\n"
                b"utf-8: \xc2\xa0nbsp caf\xc3\xa9 \xe2\x82\xac \xe6\x97\xa5\xe6\x9c\xac "
                b"\xf0\x9f\x93\xac \xf4\x8f\xbf\xbf\r\n"
                b"cr before crlf\r\r\n")
        code, text = send_raw_message(self, srv.port, data)
        self.assertEqual(code, 250, text)
        out = pty.wait_messages(1)
        self.assertEqual(out, BEGIN +
                         b"Subject: esc\\x1b[31m red\\x1b[0m\n"
                         b"X-Tab: a\tb\n"
                         b"X-Peer: 127.0.0.1\nX-MailFrom: a@example.com\nX-RcptTo: b@example.com\n"
                         b"\n"
                         b"nul\\x00 bell\\x07 bs\\x08 bare-cr\\x0dafter del\\x7f\n"
                         b"c1 raw\\x80\\x85\\x9b\\x9f c1 as utf-8 \\xc2\\x80\\xc2\\x85\\xc2\\x9b"
                         b"\\xc2\\x9f\n"
                         b"not utf-8: \\xff\\xfe \\xc3( \\xe2\\x82 \\xc0\\xaf \\xed\\xa0\\x80 "
                         b"\\xf4\\x90\\x80\\x80\n"
                         b"utf-8: \xc2\xa0nbsp caf\xc3\xa9 \xe2\x82\xac \xe6\x97\xa5\xe6\x9c\xac "
                         b"\xf0\x9f\x93\xac \xf4\x8f\xbf\xbf\n"
                         b"cr before crlf\\x0d\n" + END)
        # Lower-case hex, always two digits.
        self.assertNotRegex(out, rb"\\x[0-9a-f]?[A-F]")

    def test_every_byte_value(self):
        srv, pty = self.start_on_pty("--bare-lf", "accept")
        code, text = send_raw_message(self, srv.port, every_byte())
        self.assertEqual(code, 250, text)
        out = pty.wait_messages(1)
        # What reaches the terminal is text: valid UTF-8 without a control
        # character but TAB and the line ends.
        text = out.decode("utf-8")
        bad = [c for c in text if (ord(c) < 0x20 and c not in "\t\n") or 0x7f <= ord(c) <= 0x9f]
        self.assertEqual(bad, [], out)
        (m,) = parse_messages(out)
        self.assertEqual(m["data"], b"Subject: every byte\nX-Peer: 127.0.0.1\n\n" +
                         terminal_bytes(bytes(range(256))) + b"\n")

    def test_envelope_escaped(self):
        # UTF-8 addresses (-u) may hold C1 controls (U+009B is CSI): the
        # envelope lines are escaped on a terminal like the rest.
        srv, pty = self.start_on_pty("-u")
        code, text = send_raw_message(self, srv.port, b"Subject: x\r\n\r\nbody\r\n",
                                      sender="csi\u009b2J@example.com",
                                      rcpts=[b"nel\xc2\x85@example.com", "zo\u00eb@example.com"],
                                      mail_params=" SMTPUTF8")
        self.assertEqual(code, 250, text)
        out = pty.wait_messages(1)
        self.assertIn(b"\nX-MailFrom: csi\\xc2\\x9b2J@example.com\n"
                      b"X-RcptTo: nel\\xc2\\x85@example.com, zo\xc3\xab@example.com\n\nbody\n", out)

    def test_pipe_gets_exact_bytes(self):
        # The same messages as above, to a pipe (the harness): every byte as
        # it came, only CRLF made LF.
        srv = self.start("--bare-lf", "accept")
        data = (b"Subject: esc\x1b[31m red\r\n\r\nnul\x00 cr\rx del\x7f c1\x80\xc2\x9b "
                b"bad\xff\xfe caf\xc3\xa9\r\n")
        for msg in (data, every_byte()):
            code, text = send_raw_message(self, srv.port, msg)
            self.assertEqual(code, 250, text)
        m1, m2 = srv.wait_messages(2)
        self.assertMessage(m1, data, mail_from="a@example.com", rcpt_tos=["b@example.com"])
        self.assertMessage(m2, every_byte())
        self.assertIn(b"\x1b[31m", srv.stdout())
        self.assertNotIn(b"\\x", srv.stdout())

    def test_file_gets_exact_bytes(self):
        fd, path = tempfile.mkstemp(prefix="smtpd-debug-")
        self.addCleanup(os.unlink, path)
        try:
            srv = self.start(stdout=fd)
        finally:
            os.close(fd)
        data = b"Subject: file\x1b]0;title\x07\r\n\r\n\x00\x9b\xc2\x85\xff\r\n"
        code, text = send_raw_message(self, srv.port, data)
        self.assertEqual(code, 250, text)
        # 250 comes after the flush: the file holds the whole message now.
        with open(path, "rb") as f:
            out = f.read()
        (m,) = parse_messages(out)
        self.assertMessage(m, data, mail_from="a@example.com", rcpt_tos=["b@example.com"])
        self.assertEqual(out, BEGIN + debugging_view(data).replace(
            b"X-Peer: 127.0.0.1\n",
            b"X-Peer: 127.0.0.1\nX-MailFrom: a@example.com\nX-RcptTo: b@example.com\n") + END)


class OutputFailureTest(SmtpdTestCase):

    def send(self, s, n):
        """One message on smtplib connection s: (code, text) of its DATA reply."""
        msg = b"Subject: message %d\r\n\r\nline one\r\nline two\r\n" % n
        code, text = s.mail(FROM)
        self.assertEqual(code, 250, text)
        code, text = s.rcpt("rcpt@example.com")
        self.assertEqual(code, 250, text)
        return s.data(msg)

    def assertRefused(self, reply):
        code, text = reply
        self.assertEqual(code, 451, text)
        self.assertTrue(text.startswith(b"4.3.0 "), text)

    def assertStillServing(self, srv, s, error, count):
        """After the failures: smtpd runs, the session goes on, a new client
        is served (and refused the same way); the error line was logged for
        every message."""
        self.assertEqual(s.noop()[0], 250)
        s.quit()
        self.assertTrue(srv.alive())
        s2 = self.smtp(srv.port)
        self.assertEqual(s2.ehlo("second.example.com")[0], 250)
        self.assertRefused(self.send(s2, 99))
        s2.quit()
        self.assertTrue(srv.alive())
        # Stopped, so that every line it logged has been read.
        self.assertEqual(srv.stop(), 0)
        log = srv.stderr()
        pattern = rb"smtpd\[\d+\] error: \[\d+\] cannot print the message: " + error + rb"\n"
        self.assertEqual(len(re.findall(pattern, log)), count + 1, srv.stderr_text())
        self.assertEqual(len(re.findall(rb"message from=<[^>]*> to=<rcpt@example\.com> size=\d+ "
                                        rb"reply=451 4\.3\.0 ", log)), count + 1, srv.stderr_text())

    def test_pipe_closed_by_head(self):
        # smtpd ... | head -n 3: a real pipe into a real head.
        r, w = os.pipe()
        head = subprocess.Popen(["head", "-n", "3"], stdin=r, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        self.addCleanup(smtpdtest.stop_process, head)
        os.close(r)
        try:
            srv = self.start(stdout=w)
        finally:
            os.close(w)
        s = self.smtp(srv.port)
        self.assertEqual(s.ehlo("client.example.com")[0], 250)
        # The first message goes into the pipe before head exits: 250.
        code, text = self.send(s, 1)
        self.assertEqual(code, 250, text)
        out, err = head.communicate(timeout=10)
        self.assertEqual(head.returncode, 0, err)
        self.assertEqual(out, BEGIN + b"Subject: message 1\nX-Peer: 127.0.0.1\n")
        # No reader any more: every message after it is refused, 451.
        for n in (2, 3, 4):
            self.assertRefused(self.send(s, n))
        self.assertStillServing(srv, s, rb"Broken pipe", 3)
        self.assertIn(b"message from=<sender@example.com> to=<rcpt@example.com> size=42 "
                      b"reply=250 2.0.0 OK\n", srv.stderr())

    def test_message_cut_short(self):
        # A message far bigger than the pipe holds: head exits after three
        # lines while smtpd is still writing it. Part of it was printed, so
        # it is not 250.
        r, w = os.pipe()
        head = subprocess.Popen(["head", "-n", "3"], stdin=r, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        self.addCleanup(smtpdtest.stop_process, head)
        os.close(r)
        try:
            srv = self.start(stdout=w)
        finally:
            os.close(w)
        s = self.smtp(srv.port, timeout=60)
        big = b"Subject: big\r\n\r\n" + b"0123456789abcdef\r\n" * 100000
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            s.sendmail(FROM, ["rcpt@example.com"], big)
        self.assertEqual(cm.exception.smtp_code, 451)
        out, _ = head.communicate(timeout=10)
        self.assertEqual(out.count(b"\n"), 3)
        self.assertStillServing(srv, s, rb"Broken pipe", 1)

    def test_full_device(self):
        # Writing to /dev/full fails with ENOSPC, as on a full disk.
        self.assertTrue(os.path.exists("/dev/full"), "/dev/full is missing")
        with open("/dev/full", "wb") as full:
            srv = self.start(stdout=full)
        s = self.smtp(srv.port)
        self.assertEqual(s.ehlo("client.example.com")[0], 250)
        for n in (1, 2):
            self.assertRefused(self.send(s, n))
        self.assertStillServing(srv, s, rb"No space left on device", 2)


if __name__ == "__main__":
    main()
