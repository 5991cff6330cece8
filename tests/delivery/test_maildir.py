"""delivery_maildir: smtpd -c Maildir --maildir DIR, and DebuggingServer
--also-maildir DIR.

  - a message with 8-bit bytes and "From " lines, sent with smtplib, reads
    back with mailbox.Maildir byte for byte, apart from the LF line ends
    and the Return-Path and Delivered-To fields put before it; it is in
    new/, tmp/ is empty, and the name follows the Maildir form;
  - 20 smtplib clients at once, 5 messages each: 100 files with 100 unique
    names, each message exactly once;
  - swaks delivers too; a folder that does not exist yet (nor its parent)
    is made with tmp, new and cur;
  - --also-maildir prints the message (DebuggingServer) and keeps it;
  - --workers 2: each worker's messages arrive, under unique names.

    test_maildir.py --smtpd PATH
"""

import mailbox
import os
import re
import subprocess
import threading

from deliverlib import DeliveryCase, Smtpd, delivered, main, message, send

NAME = re.compile(r"^\d+\.M\d{6}P\d+Q\d+\.[^/:]+$")


class Maildir(DeliveryCase):
    def files(self, d, sub="new"):
        return sorted(os.listdir(os.path.join(d, sub)))

    def test_bytes_kept(self):
        d = self.tmpdir()
        srv = self.start("--maildir", d, cls="Maildir")
        body = (b"From the start\r\n>From quoted\r\ncaf\xc3\xa9 \xff\xfe bytes\r\n"
                b".leading dot\r\nlast line\r\n")
        data = message("eight bit", body)
        code, text = send(srv.port, data)
        self.assertEqual(code, 250, text)
        names = self.files(d)
        self.assertEqual(len(names), 1)
        self.assertRegex(names[0], NAME)
        self.assertEqual(self.files(d, "tmp"), [])
        self.assertEqual(self.files(d, "cur"), [])
        md = mailbox.Maildir(d, factory=None, create=False)
        (key,) = md.keys()
        self.assertEqual(md.get_bytes(key), delivered(data))

    def test_twenty_clients(self):
        d = self.tmpdir()
        srv = self.start("--maildir", d, cls="Maildir")
        errors = []

        def client(n):
            try:
                for i in range(5):
                    code, text = send(srv.port, message("c%d m%d" % (n, i)))
                    if code != 250:
                        errors.append((code, text))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        names = self.files(d)
        self.assertEqual(len(names), 100)
        self.assertEqual(len(set(names)), 100)
        md = mailbox.Maildir(d, factory=None, create=False)
        subjects = sorted(md.get_message(k)["Subject"] for k in md.keys())
        self.assertEqual(subjects, sorted("c%d m%d" % (n, i) for n in range(20) for i in range(5)))

    def test_swaks_and_missing_folder(self):
        d = os.path.join(self.tmpdir(), "not", "yet")
        srv = self.start("--maildir", d, cls="Maildir")
        out = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % srv.port, "--from",
                              "s@example.com", "--to", "r@example.com,q@example.com",
                              "--header", "Subject: by swaks"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("250 2.0.0 Ok: delivered", out.stdout)
        for sub in ("tmp", "new", "cur"):
            self.assertTrue(os.path.isdir(os.path.join(d, sub)), sub)
        md = mailbox.Maildir(d, factory=None, create=False)
        (msg,) = md
        self.assertEqual(msg["Return-Path"], "<s@example.com>")
        self.assertEqual(msg["Delivered-To"], "r@example.com")
        self.assertEqual(msg["Subject"], "by swaks")

    def test_also_maildir(self):
        d = self.tmpdir()
        srv = self.start("--also-maildir", d)
        data = message("watch and keep")
        self.assertEqual(send(srv.port, data)[0], 250)
        srv.out.wait_for(lambda b: b"END MESSAGE" in b, 10)
        self.assertIn(b"Subject: watch and keep", srv.stdout())
        md = mailbox.Maildir(d, factory=None, create=False)
        self.assertEqual([md.get_bytes(k) for k in md.keys()], [delivered(data)])

    def test_workers(self):
        d = self.tmpdir()
        srv = self.start("--maildir", d, "--workers", "2", cls="Maildir")
        for i in range(30):
            self.assertEqual(send(srv.port, message("w%d" % i))[0], 250)
        names = self.files(d)
        self.assertEqual(len(set(names)), 30)
        pids = {re.search(r"P(\d+)Q", n).group(1) for n in names}
        self.assertGreaterEqual(len(pids), 1)
        md = mailbox.Maildir(d, factory=None, create=False)
        self.assertEqual(sorted(md.get_message(k)["Subject"] for k in md.keys()),
                         sorted("w%d" % i for i in range(30)))


if __name__ == "__main__":
    main()
