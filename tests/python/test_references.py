"""References (issue 14): 100,000 messages through a Python process_message
leave the process's RSS and its count of live objects where they were after
the first 1,000.

The server runs in this process (smtpd.loop() on a thread), so what the
module keeps per message, per session or per reply (a reference it forgets
to drop in the C code, a session object, an answer in the queue, a worker
future) shows up here. Postfix's smtp-source sends the messages, 20 sessions
at once, mostly over kept connections (-d) and some with a connection per
message, so that sessions come and go too. process_message answers None and
a reply string in turn, so both paths back to the session are taken.

The measure after each phase, with gc.collect() first:
  - objects: len(gc.get_objects()), the objects the collector tracks;
  - blocks: sys.getallocatedblocks(), every block of Python's allocator;
  - RSS: VmRSS of /proc/self/status, which also sees the C side (libsmtpd's
    sessions, libevent's buffers).
A leak of one object per message would add 99,000 objects and a leak of a
message's 1 KB 97 MB of RSS; the bounds below are far under that and far
over what warm caches and malloc's arenas move.
"""

import gc
import os
import subprocess
import sys
import threading
import unittest

import pyharness
from pyharness import QUICK, SLOW, ServerTestCase, port_of, smtpd
from smtpdtest import SMTP_SOURCE, need

WARM = 1000
TOTAL = 100000
SESSIONS = 20
# New connections in each phase (the rest are messages over kept ones): few
# enough that TIME_WAIT does not use up loopback's ephemeral ports.
WARM_CONNECTS = 500
BULK_CONNECTS = 4000

MAX_OBJECTS = 2000     # gc-tracked objects more than after the first 1,000
MAX_BLOCKS = 20000     # allocator blocks more (a few per message is 200,000+)
MAX_RSS_KIB = 8 * 1024  # a leak of 100 bytes a message is 9.7 MB


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def measure():
    gc.collect()
    return {"objects": len(gc.get_objects()), "blocks": sys.getallocatedblocks(), "rss_kib": rss_kib()}


class Counting(smtpd.SMTPServer):
    """Counts its calls; answers None and a reply string in turn."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.lock = threading.Lock()
        self.count = 0
        self.bad = []

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        with self.lock:
            self.count += 1
            n = self.count
            if len(data) < 1024 or not rcpttos or not mailfrom:
                self.bad.append((peer, mailfrom, rcpttos, len(data)))
        return None if n % 2 else "250 Ok: queued as %d" % n


class ReferencesTest(ServerTestCase):

    def send(self, port, messages, connects):
        """smtp-source: messages in all, connects of them one connection per
        message, the rest over 20 kept connections."""
        for n, keep in ((connects, False), (messages - connects, True)):
            argv = [SMTP_SOURCE, "-s", str(SESSIONS), "-l", "1024", "-m", str(n),
                    "-f", "sender@example.com", "-t", "rcpt@example.com"]
            if keep:
                argv.append("-d")
            argv.append("127.0.0.1:%d" % port)
            r = subprocess.run(argv, capture_output=True, text=True, timeout=300 * SLOW)
            self.assertEqual(r.returncode, 0, "smtp-source failed: %s %s" % (r.stdout, r.stderr))

    def test_100000_messages_leave_rss_and_objects_alone(self):
        need(SMTP_SOURCE, "postfix")
        server = self.serve(Counting)
        port = port_of(server)
        self.send(port, WARM, WARM_CONNECTS)
        self.assertTrue(pyharness.wait_until(lambda: server.count >= WARM, QUICK))
        self.assertTrue(pyharness.wait_until(lambda: server._core.session_count() == 0, QUICK))
        first = measure()
        self.send(port, TOTAL - WARM, BULK_CONNECTS)
        self.assertTrue(pyharness.wait_until(lambda: server.count >= TOTAL, QUICK))
        # Sessions end on the loop thread after smtp-source has gone.
        self.assertTrue(pyharness.wait_until(lambda: server._core.session_count() == 0, QUICK))
        last = measure()
        report = "after %d: %r; after %d: %r" % (WARM, first, TOTAL, last)
        print(report, file=sys.stderr)
        self.assertEqual(server.count, TOTAL)
        self.assertEqual(server.bad, [])
        self.assertLessEqual(last["objects"] - first["objects"], MAX_OBJECTS, report)
        self.assertLessEqual(last["blocks"] - first["blocks"], MAX_BLOCKS, report)
        self.assertLessEqual(last["rss_kib"] - first["rss_kib"], MAX_RSS_KIB, report)


if __name__ == "__main__":
    if pyharness.STDLIB:
        raise SystemExit("test_references measures our module; PYTHONPATH must lead to the build")
    unittest.main(verbosity=2)
