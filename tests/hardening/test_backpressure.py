"""hard_backpressure: accept back-pressure when descriptors run out.

smtpd runs with RLIMIT_NOFILE 64 and 200 clients connect at once. Accepting
fails with EMFILE once the descriptors are gone: the server must pause
accepting (no busy loop: its CPU time stays low while the flood waits), not
crash, keep serving the clients it has, and once the flood is gone a normal
client gets its mail through.
"""

import socket
import time

from hardlib import (HardTestCase, main, nofile_preexec, proc_cpu_seconds, raise_nofile,
                     send_mail_smtplib)

FLOOD = 200
NOFILE = 64


class BackPressureTest(HardTestCase):

    def test_emfile_flood(self):
        raise_nofile(4096)
        srv = self.start(preexec_fn=nofile_preexec(NOFILE, NOFILE))
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(FLOOD):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", srv.port))
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(1.0)
        # Hold the flood: the server is out of descriptors now.
        cpu0 = proc_cpu_seconds(srv.pid)
        t0 = time.monotonic()
        time.sleep(4.0)
        cpu = proc_cpu_seconds(srv.pid) - cpu0
        wall = time.monotonic() - t0
        greeted = 0
        for s in socks:
            try:
                if s.recv(4096).startswith(b"220"):
                    greeted += 1
            except (BlockingIOError, OSError):
                pass
        print("\n%d clients at once with RLIMIT_NOFILE %d: %d greeted, server CPU %.2f s "
              "in %.1f s" % (FLOOD, NOFILE, greeted, cpu, wall))
        self.assertTrue(srv.alive(), "smtpd died under EMFILE; stderr:\n" + srv.stderr_text())
        self.assertLess(cpu, 0.5, "smtpd used %.2f s of CPU in %.1f s while out of "
                        "descriptors: a busy accept loop" % (cpu, wall))
        self.assertGreater(greeted, 0, "no client was served at all")
        self.assertLess(greeted, FLOOD, "the descriptor limit was not reached")
        self.assertIn(b"pausing", srv.stderr(), "no log line for the accept pause")
        # The flood leaves; a normal client gets through (bounded wait).
        for s in socks:
            s.close()
        socks.clear()
        deadline = time.monotonic() + 15
        while True:
            try:
                t = time.monotonic()
                send_mail_smtplib(srv.port, "after-flood", timeout=5)
                print("delivery after the flood took %.2f s" % (time.monotonic() - t))
                break
            except Exception as e:  # still draining the backlog of the flood
                if time.monotonic() > deadline:
                    raise AssertionError("no delivery within 15 s after the flood: %r; "
                                         "stderr:\n%s" % (e, srv.stderr_text()))
                time.sleep(0.2)
        self.assertEqual(srv.wait_messages(1, 10), 1)
        # And it is quiet again.
        cpu0 = proc_cpu_seconds(srv.pid)
        time.sleep(1.5)
        self.assertLess(proc_cpu_seconds(srv.pid) - cpu0, 0.3)
        self.assertTrue(srv.alive())


if __name__ == "__main__":
    main()
