"""integ_curl: curl's smtp:// upload against DebuggingServer."""

import re
import shutil
import subprocess
import tempfile

from smtpd_harness import SmtpdTestCase, main


def curl_path():
    path = shutil.which("curl")
    if not path:
        raise AssertionError("curl is not installed; these tests need it")
    return path


class CurlTest(SmtpdTestCase):

    def curl(self, port, data, *args):
        with tempfile.NamedTemporaryFile(suffix=".eml") as f:
            f.write(data)
            f.flush()
            return subprocess.run([curl_path(), "-sS", "-v", "--max-time", "30",
                                   "smtp://127.0.0.1:%d/curl.example.com" % port,
                                   "-T", f.name] + list(args),
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=60)

    def test_upload(self):
        srv = self.start()
        data = (b"From: b@example.com\r\nTo: a@example.com\r\nSubject: curl\r\n\r\n"
                b"body line\r\n.leading dot\r\n.\r\n..\r\n8bit \xe2\x98\x83 \xff\r\nend\r\n")
        r = self.curl(srv.port, data, "--mail-from", "b@example.com",
                      "--mail-rcpt", "a@example.com", "--mail-rcpt", "c@example.com")
        err = r.stderr.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, err)
        self.assertIn("> EHLO curl.example.com", err)
        self.assertIn("< 354 ", err)
        self.assertIn("< 250 2.0.0", err)
        (m,) = srv.wait_messages(1)
        # curl offers the size it is about to send.
        self.assertMessage(m, data, ["SIZE=%d" % len(data)])
        srv.wait_stderr(re.escape(b"message from=<b@example.com> to=<a@example.com,c@example.com> "
                                  b"size=%d reply=250" % len(data)))

    def test_upload_without_final_line_end(self):
        srv = self.start()
        data = b"Subject: no final CRLF\r\n\r\nlast line"
        r = self.curl(srv.port, data, "--mail-from", "b@example.com", "--mail-rcpt", "a@example.com")
        self.assertEqual(r.returncode, 0, r.stderr.decode("utf-8", "replace"))
        (m,) = srv.wait_messages(1)
        # curl ends the data with CRLF "." CRLF, so the last line gets its CRLF.
        self.assertMessage(m, data + b"\r\n", ["SIZE=%d" % len(data)])

    def test_refused_recipient_fails_curl(self):
        # RFC 5321 4.1.1.3: the null path is no forward-path; curl must see
        # the refusal and fail.
        srv = self.start()
        r = self.curl(srv.port, b"Subject: x\r\n\r\nx\r\n", "--mail-from", "b@example.com",
                      "--mail-rcpt", "<>")
        err = r.stderr.decode("utf-8", "replace")
        self.assertNotEqual(r.returncode, 0, err)
        self.assertRegex(err, r"< 5\d\d ")
        self.assertEqual(srv.messages(), [])


if __name__ == "__main__":
    main()
