"""hard_shutdown: SIGTERM during 50 open transactions loses nothing.

50 clients: 20 in the middle of DATA, 15 idle after EHLO, 15 after RCPT.
On SIGTERM the listener closes, idle clients get "421 4.3.2" and are closed,
clients in DATA finish their data and get 250 (then 421), clients after
RCPT may finish their transaction (250) or get 421; the server exits 0
well within its 30 s grace period, and every message a client saw 250 for
was printed by DebuggingServer (counted, and each one by its token).
The same for PureProxy: the process must exit once its clients are gone.
A client that never reads its replies cannot hold the server past the
grace period: it is dropped at the last call, 5 s later.
"""

import re
import signal
import socket
import threading
import time

from hardlib import HardTestCase, main, noread_client, push_until_unread

N_DATA, N_IDLE, N_RCPT = 20, 15, 15
GRACE = 30  # SHUTDOWN_GRACE_SECONDS in cli/main.c
LAST_CALL = 5  # LAST_CALL_SECONDS in src/net/server.c


class ShutdownTest(HardTestCase):

    def open_clients(self, port):
        data, idle, rcpt = [], [], []
        for i in range(N_DATA + N_IDLE + N_RCPT):
            c = self.raw(port, timeout=15)
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.command("EHLO c%d.example" % i)[0], 250)
            if i < N_IDLE:
                idle.append(c)
                continue
            self.assertEqual(c.command("MAIL FROM:<s%d@example.com>" % i)[0], 250)
            self.assertEqual(c.command("RCPT TO:<r%d@example.net>" % i)[0], 250)
            if i < N_IDLE + N_RCPT:
                rcpt.append((i, c))
                continue
            self.assertEqual(c.command("DATA")[0], 354)
            c.send(b"Subject: token-%d\r\n\r\nfirst half of the data\r\n" % i)
            data.append((i, c))
        return data, idle, rcpt

    def test_sigterm_with_50_open_transactions(self):
        srv = self.start()
        data, idle, rcpt = self.open_clients(srv.port)
        time.sleep(0.3)
        t_term = time.monotonic()
        srv.signal(signal.SIGTERM)
        accepted = []  # tokens a client saw 250 for
        # Idle clients: 421 4.3.2 at once, then closed.
        for c in idle:
            code, text = c.reply(timeout=5)
            self.assertEqual(code, 421)
            self.assertTrue(text[0].startswith("4.3.2"), text)
            self.assertTrue(c.closed_by_peer(5))
        # No new clients once shutting down.
        with self.assertRaises(OSError):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
            try:
                banner = s.recv(100)
            finally:
                s.close()
            raise AssertionError("a new client was served during shutdown: %r" % banner)
        # Clients in DATA finish theirs.
        for i, c in data:
            c.send(b"second half, after SIGTERM\r\n.\r\n")
        for i, c in data:
            code, text = c.reply(timeout=10)
            self.assertEqual(code, 250, "client %d in DATA: %d %r" % (i, code, text))
            accepted.append(i)
            code, text = c.reply(timeout=5)
            self.assertEqual(code, 421, "after its message, client %d: %d %r" % (i, code, text))
            self.assertTrue(c.closed_by_peer(5))
        # Clients after RCPT: either their transaction finishes or 421.
        rcpt_outcome = {"250": 0, "421": 0}
        for i, c in rcpt:
            try:
                code, text = c.command("DATA")
            except (EOFError, ConnectionResetError):
                rcpt_outcome["421"] += 1  # closed (after a 421 we did not read)
                continue
            if code == 354:
                c.send(b"Subject: token-%d\r\n\r\nafter RCPT\r\n.\r\n" % i)
                code, text = c.reply(timeout=10)
                self.assertEqual(code, 250, (i, code, text))
                accepted.append(i)
                rcpt_outcome["250"] += 1
                code, text = c.reply(timeout=5)
            else:
                rcpt_outcome["421"] += 1
            self.assertEqual(code, 421, (i, code, text))
            self.assertTrue(c.closed_by_peer(5))
        rc = srv.wait(GRACE)
        took = time.monotonic() - t_term
        print("\nSIGTERM with %d clients: exit %d after %.2f s; %d messages accepted "
              "(%d in DATA, %d after RCPT), after-RCPT outcomes %r"
              % (N_DATA + N_IDLE + N_RCPT, rc, took, len(accepted), N_DATA,
                 rcpt_outcome["250"], rcpt_outcome))
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertLess(took, GRACE)
        out = srv.stdout()
        self.assertEqual(out.count(b"------------ END MESSAGE ------------\n"), len(accepted),
                         "messages printed != messages a client saw 250 for")
        for i in accepted:
            self.assertIn(b"Subject: token-%d\n" % i, out)
            if i >= N_IDLE + N_RCPT:
                self.assertIn(b"Subject: token-%d\nX-Peer: 127.0.0.1\nX-MailFrom: s%d@example.com\n"
                              b"X-RcptTo: r%d@example.net\n\nfirst half of the data\n"
                              b"second half, after SIGTERM\n" % (i, i, i), out)

    def test_sigterm_pureproxy_exits(self):
        """PureProxy: a message in DATA is still relayed, the idle client gets
        421, and the process exits 0 once its clients are gone (well within
        the grace period)."""
        up = self.upstream()
        srv = self.start(cls="PureProxy", extra=["127.0.0.1:%d" % up.port], term_wait=1)
        idle = self.raw(srv.port)
        self.assertEqual(idle.reply()[0], 220)
        self.assertEqual(idle.command("EHLO idle.example")[0], 250)
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.command("EHLO busy.example")[0], 250)
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
        self.assertEqual(c.command("RCPT TO:<b@example.net>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: relayed during shutdown\r\n\r\nfirst\r\n")
        t_term = time.monotonic()
        srv.signal(signal.SIGTERM)
        code, text = idle.reply(timeout=5)
        self.assertEqual(code, 421, text)
        c.send(b"second\r\n.\r\n")
        code, text = c.reply(timeout=10)
        self.assertEqual(code, 250, text)
        msgs, _ = up.snapshot()
        self.assertEqual(len(msgs), 1)
        self.assertEqual(c.reply(timeout=5)[0], 421)
        self.assertTrue(c.closed_by_peer(5))
        deadline = t_term + 10
        while srv.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        rc = srv.proc.poll()
        self.assertIsNotNone(rc, "PureProxy smtpd still running %.0f s after SIGTERM with no "
                             "client left (upstream connections made: %d); stderr:\n%s"
                             % (time.monotonic() - t_term, up.connections, srv.stderr_text()))
        self.assertEqual(rc, 0)

    def test_sigterm_with_a_client_that_does_not_read(self):
        srv = self.start(term_wait=GRACE + LAST_CALL + 20)
        s = noread_client(srv.port)
        self.addCleanup(s.close)
        push_until_unread(srv, [s], 60)
        t_term = time.monotonic()
        srv.signal(signal.SIGTERM)
        while srv.proc.poll() is None and time.monotonic() < t_term + GRACE + LAST_CALL + 15:
            time.sleep(0.2)
        took = time.monotonic() - t_term
        rc = srv.proc.poll()
        print("\nSIGTERM with a client that does not read: exit %r after %.1f s" % (rc, took))
        self.assertIsNotNone(rc, "smtpd still running %.0f s after SIGTERM; stderr:\n%s"
                             % (took, srv.stderr_text()))
        self.assertEqual(rc, 0, srv.stderr_text())
        self.assertGreater(took, GRACE - 1)
        self.assertIn(b"dropping 1 clients that did not take their last replies", srv.stderr())


if __name__ == "__main__":
    main()
