"""delivery_mbox: smtpd -c Mbox --mbox FILE.

  - messages with "From " lines, already-quoted ">From " lines, 8-bit
    bytes and no final line end read back with mailbox.mbox, once the
    mboxrd quoting is undone, equal what was sent (LF line ends, the trace
    fields before it); each is preceded by "From <reverse-path> <date>",
    "MAILER-DAEMON" for <>, and followed by an empty line;
  - two --workers under load from 20 clients: the file parses into exactly
    the messages accepted, none interleaved; no lock file is left;
  - a held dot-lock file and a held fcntl lock (classic POSIX lock of
    another process): 451 4.2.0 after 30 s, nothing written, while other
    sessions are served at once; the lock released, delivery works again.

    test_mbox.py --smtpd PATH
"""

import fcntl
import mailbox
import os
import re
import smtplib
import threading
import time

from deliverlib import SLOW, DeliveryCase, delivered, main, message, send

FROM_LINE = re.compile(rb"^From (\S+) \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$")


def unquote(data):
    return re.sub(rb"(?m)^>(>*From )", rb"\1", data)


class Mbox(DeliveryCase):
    def test_quoting_read_back(self):
        path = os.path.join(self.tmpdir(), "mbox")
        srv = self.start("--mbox", path, cls="Mbox")
        bodies = [b"From the top\r\n>From once\r\n>>From twice\r\nFrom\r\n",
                  b"caf\xc3\xa9\r\nno final line end"]
        sent = []
        for i, body in enumerate(bodies):
            data = message("m%d" % i, body)
            self.assertEqual(send(srv.port, data)[0], 250)
            sent.append(data)
        self.assertEqual(send(srv.port, message("null"), sender="")[0], 250)
        raw = open(path, "rb").read()
        lines = [ln for ln in raw.split(b"\n") if ln.startswith(b"From ")]
        self.assertEqual([FROM_LINE.match(ln).group(1) for ln in lines],
                         [b"a@example.com", b"a@example.com", b"MAILER-DAEMON"])
        self.assertIn(b"\n>From the top\n>>From once\n>>>From twice\nFrom\n", raw)
        box = mailbox.mbox(path, create=False)
        got = [box.get_bytes(k) for k in box.keys()]
        self.assertEqual(len(got), 3)
        box.close()
        # mailbox drops the empty line after each message; the one with no
        # final line end got one.
        self.assertEqual(unquote(got[0]), delivered(sent[0]))
        self.assertEqual(unquote(got[1]), delivered(sent[1]) + b"\n")
        self.assertFalse(os.path.exists(path + ".lock"))

    def test_two_workers(self):
        path = os.path.join(self.tmpdir(), "mbox")
        srv = self.start("--mbox", path, "--workers", "2", cls="Mbox")
        accepted, errors = [], []

        def client(n):
            for i in range(10):
                subject = "c%d m%d" % (n, i)
                try:
                    code, text = send(srv.port, message(subject, b"From x\r\n" * 50))
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))
                    continue
                (accepted if code == 250 else errors).append(subject if code == 250 else text)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(accepted), 200)
        box = mailbox.mbox(path, create=False)
        msgs = [box.get_message(k) for k in box.keys()]
        box.close()
        self.assertEqual(sorted(m["Subject"] for m in msgs), sorted(accepted))
        for m in msgs:
            self.assertEqual(m.get_payload(), ">From x\n" * 50)
        self.assertFalse(os.path.exists(path + ".lock"))

    def test_held_locks(self):
        d = self.tmpdir()
        dot, posix = os.path.join(d, "dot"), os.path.join(d, "posix")
        open(dot + ".lock", "w").close()
        f = open(posix, "ab")
        fcntl.lockf(f, fcntl.LOCK_EX)
        results = {}
        servers = {name: self.start("--mbox", path, cls="Mbox")
                   for name, path in (("dot", dot), ("posix", posix))}

        def client(name):
            t0 = time.monotonic()
            results[name] = send(servers[name].port, message(name), timeout=60) + (
                time.monotonic() - t0,)

        threads = [threading.Thread(target=client, args=(n,)) for n in servers]
        for t in threads:
            t.start()
        # Meanwhile other sessions are served at once.
        time.sleep(1)
        for srv in servers.values():
            t0 = time.monotonic()
            with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
                self.assertEqual(c.noop()[0], 250)
            self.assertLess(time.monotonic() - t0, 1.0 * SLOW)
        for t in threads:
            t.join(90)
        for name in servers:
            code, text, took = results[name]
            self.assertEqual((code, text[:5]), (451, b"4.2.0"), name)
            self.assertGreaterEqual(took, 29, name)
            servers[name].wait_stderr(rb"cannot lock .*held for 30 s")
        self.assertEqual(os.path.getsize(posix), 0)
        self.assertFalse(os.path.exists(dot))
        os.unlink(dot + ".lock")
        fcntl.lockf(f, fcntl.LOCK_UN)
        f.close()
        for name, path in (("dot", dot), ("posix", posix)):
            self.assertEqual(send(servers[name].port, message(name))[0], 250)
            box = mailbox.mbox(path, create=False)
            self.assertEqual([m["Subject"] for m in box], [name])
            box.close()


if __name__ == "__main__":
    main()
