"""integ_swaks: the swaks command-line client against DebuggingServer and counter.so."""

import re
import shutil
import subprocess
import tempfile

from smtpd_harness import SmtpdTestCase, counter_so, main


def swaks_path():
    path = shutil.which("swaks")
    if not path:
        raise AssertionError("swaks is not installed; these tests need it")
    return path


class SwaksTest(SmtpdTestCase):

    def swaks(self, port, *args):
        return subprocess.run([swaks_path(), "--server", "127.0.0.1:%d" % port,
                               "--helo", "swaks.example.com", "--timeout", "20"] + list(args),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=60)

    def test_default_message_with_body(self):
        srv = self.start()
        r = self.swaks(srv.port, "--to", "a@example.com", "--from", "b@example.com",
                       "--body", "hello from swaks")
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        # swaks shows the dialogue: every step of the transaction succeeded.
        self.assertRegex(out, r"<-  220 .*smtpd")
        self.assertIn("<-  250 2.1.0", out)
        self.assertIn("<-  250 2.1.5", out)
        self.assertIn("<-  354 ", out)
        self.assertRegex(out, r" -> \.\n<-  250 2\.0\.0")
        self.assertIn("<-  221 ", out)
        (m,) = srv.wait_messages(1)
        self.assertIsNone(m["mail_options"])
        head, sep, body = m["data"].partition(b"\n\n")
        self.assertEqual(sep, b"\n\n")
        headers = head.split(b"\n")
        self.assertEqual(headers[-1], b"X-Peer: 127.0.0.1")
        self.assertIn(b"To: a@example.com", headers)
        self.assertIn(b"From: b@example.com", headers)
        self.assertTrue(body.startswith(b"hello from swaks\n"), body)
        self.assertNotIn(b"\r", m["data"])
        srv.wait_stderr(rb"message from=<b@example\.com> to=<a@example\.com> ")

    def test_data_file_byte_for_byte_pipelined(self):
        srv = self.start()
        data = (b"From: b@example.com\r\nTo: a@example.com, c@example.com\r\nSubject: swaks data\r\n"
                b"\r\nfirst line\r\n.leading dot\r\n..two dots\r\n \r\n.\r\n8bit: \xc3\xa9\xe9\r\nlast")
        with tempfile.NamedTemporaryFile(suffix=".eml") as f:
            f.write(data)
            f.flush()
            r = self.swaks(srv.port, "--pipeline", "--to", "a@example.com,c@example.com",
                           "--from", "b@example.com", "--data", "@" + f.name)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out + r.stderr.decode())
        # With --pipeline swaks sends MAIL, RCPT, RCPT, DATA before reading.
        self.assertRegex(out, r" -> MAIL FROM:<b@example.com>\n -> RCPT TO:<a@example.com>\n"
                              r" -> RCPT TO:<c@example.com>\n -> DATA\n<-  250 2\.1\.0 [^\n]*\n"
                              r"<-  250 2\.1\.5 [^\n]*\n<-  250 2\.1\.5 [^\n]*\n<-  354 ")
        # swaks ends the data with CRLF "." CRLF.
        data += b"\r\n"
        (m,) = srv.wait_messages(1)
        self.assertMessage(m, data)
        srv.wait_stderr(re.escape(b"message from=<b@example.com> to=<a@example.com,c@example.com> "
                                  b"size=%d reply=250" % len(data)))

    def test_refusals_reach_swaks(self):
        srv = self.start(cls=counter_so())
        r = self.swaks(srv.port, "--to", "a@example.com", "--from", "blocked@example.com")
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 23, out)  # 23: error in MAIL
        self.assertIn("<** 550 5.7.1 ", out)
        for n in (1, 2):
            r = self.swaks(srv.port, "--to", "a@example.com", "--from", "ok@example.com")
            out = r.stdout.decode("utf-8", "replace")
            self.assertEqual(r.returncode, 0, out)
            self.assertRegex(out, r"<-  250 2\.0\.0 OK message %d \(\d+ bytes\)" % n)


if __name__ == "__main__":
    main()
