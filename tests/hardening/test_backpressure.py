"""hard_backpressure: back-pressure on accepting and on reading.

test_emfile_flood: smtpd runs with RLIMIT_NOFILE 64 and 200 clients connect
at once. Accepting fails with EMFILE once the descriptors are gone: the
server must pause accepting (no busy loop: its CPU time stays low while the
flood waits), not crash, keep serving the clients it has, and once the flood
is gone a normal client gets its mail through.

test_clients_that_do_not_read: clients pipeline EHLOs and never read the
replies. Once the socket stops taking them, smtpd must stop reading those
clients (their input waits in the kernel, seen in /proc/net/tcp), hold only
a batch of replies (8 KiB) for each (its log line says how many when it pauses;
an allocator-independent figure, so it holds under ASan and valgrind too),
keep serving others, and lose no reply once they do read.
"""

import socket
import threading
import time

from hardlib import (EHLO, HardTestCase, main, nofile_preexec, noread_client, pauses,
                     proc_cpu_seconds, proc_rss_kib, push_until_unread, raise_nofile,
                     send_mail_smtplib)

FLOOD = 200
NOFILE = 64

NOREAD_CLIENTS = 6
HELD_PER_CLIENT = 16 * 1024  # replies smtpd may hold for one such client: a batch, twice


def finish_and_read(sock, sent, reply, timeout):
    """Complete the last EHLO line, read every reply to the EHLOs sent and
    check them; then QUIT."""
    rest = (-sent) % len(EHLO)
    n = (sent + rest) // len(EHLO)
    t = threading.Thread(target=sock.sendall, args=(EHLO[len(EHLO) - rest:],), daemon=True)
    t.start()
    want = len(reply) * n
    got = bytearray()
    sock.settimeout(timeout)
    while len(got) < want:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise AssertionError("smtpd closed after %d of %d bytes of replies" % (len(got), want))
        got += chunk
    t.join(timeout)
    if bytes(got) != reply * n:
        raise AssertionError("replies lost or out of order: %d bytes, %d expected" % (len(got), want))
    sock.sendall(b"QUIT\r\n")
    if not sock.recv(100).startswith(b"221"):
        raise AssertionError("no 221 after the replies")
    return n


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

    def noread_clients(self, srv, n):
        """n connected clients, greeted; returns (sockets, one EHLO reply)."""
        socks = []
        for _ in range(n):
            s = noread_client(srv.port)
            self.addCleanup(s.close)
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220"))
            s.sendall(EHLO)
            reply = b""
            while not reply.endswith(b"\r\n") or reply.split(b"\r\n")[-2][3:4] != b" ":
                reply += f.readline()
            f.close()
            socks.append(s)
        return socks, reply

    def replies_held(self, srv, socks):
        """For each client: the most reply bytes smtpd said were waiting
        when it paused reading it."""
        held = pauses(srv.stderr())
        for s in socks:
            self.assertIn(s.getsockname()[1], held,
                          "no pause logged for a client:\n" + srv.stderr_text())
        return [max(held[s.getsockname()[1]]) for s in socks]

    def test_clients_that_do_not_read(self):
        srv = self.start()
        # A first client warms up every code path (and the allocator).
        socks, reply = self.noread_clients(srv, 1)
        sent = push_until_unread(srv, socks, 60)
        finish_and_read(socks[0], sent[0], reply, 60)
        socks, reply = self.noread_clients(srv, NOREAD_CLIENTS)
        rss0 = proc_rss_kib(srv.pid)
        sent = push_until_unread(srv, socks, 120)
        grown = proc_rss_kib(srv.pid) - rss0
        held = self.replies_held(srv, socks)
        print("\n%d clients stopped after %s bytes of unread EHLOs each; smtpd held %s bytes "
              "of replies for them when it paused; its RSS grew %d KiB"
              % (NOREAD_CLIENTS, "/".join(str(x) for x in sent), "/".join(str(x) for x in held),
                 grown))
        for n in held:
            self.assertLess(n, HELD_PER_CLIENT, "smtpd holds too much for a client that "
                            "does not read")
        # Others are served meanwhile.
        send_mail_smtplib(srv.port, "beside-noread", timeout=30)
        self.assertEqual(srv.wait_messages(1, 10), 1)
        # Once they read, every reply comes, in order, and the session goes on.
        for s, n in zip(socks, sent):
            finish_and_read(s, n, reply, 120)
        self.assertTrue(srv.alive())


if __name__ == "__main__":
    main()
